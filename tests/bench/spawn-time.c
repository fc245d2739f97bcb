/* spawn-time: median wall time to spawn and reap a program, with and without LD_PRELOAD, alternating runs. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double run_once(char *const argv[], char *const envp[])
{
	struct timespec a, b;
	pid_t pid;
	int st;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, envp) != 0)
		return -1;
	waitpid(pid, &st, 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
}

static int cmp(const void *x, const void *y)
{
	double p = *(const double *)x, q = *(const double *)y;
	return p < q ? -1 : p > q;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spawn-time AGENT.so PROGRAM [RUNS]\n");
		return 2;
	}
	int runs = argc > 3 ? atoi(argv[3]) : 2000;
	char pre[4096];
	snprintf(pre, sizeof pre, "LD_PRELOAD=%s", argv[1]);
	/* OTEL_* and TRACEAGENT_* settings of the caller apply to the run with the agent. */
	char *with[64] = { pre, "PATH=/usr/bin:/bin" };
	int nw = 2;
	for (char **e = environ; *e && nw < 63; e++)
		if (!strncmp(*e, "OTEL_", 5) || !strncmp(*e, "TRACEAGENT_", 11))
			with[nw++] = *e;
	with[nw] = NULL;
	char *without[] = { "PATH=/usr/bin:/bin", NULL };
	char *args[] = { argv[2], NULL };
	double *w = calloc((size_t)runs, sizeof *w), *wo = calloc((size_t)runs, sizeof *wo);
	for (int i = 0; i < 50; i++) {
		run_once(args, with);
		run_once(args, without);
	}
	for (int i = 0; i < runs; i++) {
		wo[i] = run_once(args, without);
		w[i] = run_once(args, with);
	}
	qsort(w, (size_t)runs, sizeof *w, cmp);
	qsort(wo, (size_t)runs, sizeof *wo, cmp);
	printf("%s: median %.0f us without, %.0f us with the agent: +%.0f us (target <= 1000 us)\n",
	       argv[2], wo[runs / 2], w[runs / 2], w[runs / 2] - wo[runs / 2]);
	return 0;
}
