/*
 * host-probe: ordinary program behaviours the agent must not disturb, for
 * test-host-safety.sh. No tracing code.
 *
 *   host-probe fds PORT closefrom|loop|range SPANS
 *       GET http://127.0.0.1:PORT/ok (a root CLIENT span under the agent),
 *       waits for the export (until the file SPANS, the sink's JSON lines,
 *       has a line per GET so far), then closes every descriptor from 3 up, as a
 *       daemon does (closefrom(3), close() of 3..1023, or the raw close_range
 *       syscall, which no hook sees), opens
 *       pipes that take the lowest numbers, GETs again (a second span to
 *       export), waits, and checks that each pipe holds exactly what the
 *       probe wrote to it. Prints "pipes intact" or what went wrong.
 *   host-probe sigclose PORT SPANS
 *       GET PORT and wait for the export (the agent then holds its
 *       connection to the collector), then close(-1) in a loop while
 *       another thread sends SIGUSR1 whose handler calls close(-1) too
 *       (close is async-signal-safe), for 2 s. Prints "sigclose ok" when it
 *       ends (a hang is what it looks for).
 *   host-probe mainexit PORT
 *       The main thread ends with pthread_exit while another thread waits a
 *       moment, GETs PORT and ends: the process exits with status 0 when
 *       that last thread ends, as POSIX says (the agent's export thread
 *       must not keep it alive). Prints "mainexit: GET ok".
 *   host-probe threads PORT
 *       threads with PTHREAD_STACK_MIN stacks, each GETs PORT; one thread with
 *       a 64 KiB stack uses 44 KiB of it first. Prints "threads ok".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PIPES 6

static int port;
static const char *spans_file;

/* Waits (at most 10 s) until the sink's file has n lines: the agent exported. */
static void wait_exported(int n)
{
	for (int i = 0; i < 1000; i++) {
		int fd = open(spans_file, O_RDONLY);
		int lines = 0;
		char buf[65536];
		ssize_t got;
		if (fd >= 0) {
			while ((got = read(fd, buf, sizeof buf)) > 0)
				for (ssize_t k = 0; k < got; k++)
					lines += buf[k] == '\n';
			close(fd);
		}
		if (lines >= n)
			return;
		usleep(10 * 1000);
	}
}

/* One GET on a new connection; returns the status code, or -1. */
static int get(const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	char buf[1024];
	ssize_t got, total = 0;
	int status = -1;
	while ((got = read(fd, buf + total, sizeof buf - 1 - (size_t)total)) > 0) {
		total += got;
		if ((size_t)total >= sizeof buf - 1)
			break;
	}
	buf[total] = '\0';
	if (total > 12 && strncmp(buf, "HTTP/1.", 7) == 0)
		status = atoi(buf + 9);
	close(fd);
	return status;
}

static int fds(const char *how)
{
	if (get("/ok") != 200) {
		printf("first GET failed\n");
		return 1;
	}
	wait_exported(1);   /* the export thread connected and sent: its socket is open */
	if (strcmp(how, "closefrom") == 0) {
		closefrom(3);
	} else if (strcmp(how, "range") == 0) {
		/* the raw syscall, which no hook sees (a program that bypasses libc) */
		syscall(SYS_close_range, 3u, ~0u, 0);
	} else {
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	}
	int p[PIPES][2];
	for (int i = 0; i < PIPES; i++) {
		if (pipe2(p[i], O_NONBLOCK) != 0) {
			printf("pipe: %s\n", strerror(errno));
			return 1;
		}
	}
	if (get("/ok") != 200) {
		printf("second GET failed\n");
		return 1;
	}
	wait_exported(2);   /* a second export: the agent must not use the pipes' numbers */
	if (get("/ok") != 200) {
		printf("third GET failed\n");
		return 1;
	}
	wait_exported(3);
	int bad = 0;
	for (int i = 0; i < PIPES; i++) {
		char mine[16], buf[4096];
		int n = snprintf(mine, sizeof mine, "pipe %d\n", i);
		if (write(p[i][1], mine, (size_t)n) != n) {
			printf("pipe %d (fds %d,%d): write failed: %s\n", i, p[i][0], p[i][1], strerror(errno));
			bad++;
			continue;
		}
		ssize_t got = read(p[i][0], buf, sizeof buf);
		if (got != n || memcmp(buf, mine, (size_t)n) != 0) {
			printf("pipe %d (fds %d,%d): read %zd bytes: %.60s\n", i, p[i][0], p[i][1], got,
			       got > 0 ? buf : "");
			bad++;
		}
	}
	if (!bad)
		printf("pipes intact\n");
	return bad ? 1 : 0;
}

static void on_usr1(int sig)
{
	(void)sig;
	close(-1);
}

static volatile int closing = 1;

static void *signaller(void *arg)
{
	pthread_t main_thread = *(pthread_t *)arg;
	while (closing)
		pthread_kill(main_thread, SIGUSR1);
	return NULL;
}

static int sigclose(void)
{
	if (get("/ok") != 200) {
		printf("GET failed\n");
		return 1;
	}
	wait_exported(1);
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t self = pthread_self(), t;
	pthread_create(&t, NULL, signaller, &self);
	/* Two seconds of it (a signal storm slows the loop down a lot on a
	 * loaded machine: a count of iterations could take minutes). */
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0;; i++) {
		close(-1);
		if (!(i & 1023)) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec >= 2)
				break;
		}
	}
	closing = 0;
	pthread_join(t, NULL);
	printf("sigclose ok\n");
	return 0;
}

static void *small_thread(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)(get("/ok") == 200);
}

static void *stack_user(void *arg)
{
	(void)arg;
	volatile char use[44 * 1024];
	memset((char *)use, 1, sizeof use);
	return (void *)(intptr_t)(use[100] == 1 && get("/ok") == 200);
}

static int spawn(void *(*fn)(void *), size_t stack)
{
	pthread_attr_t attr;
	pthread_t t;
	void *res = NULL;
	pthread_attr_init(&attr);
	int e = pthread_attr_setstacksize(&attr, stack);
	if (!e)
		e = pthread_create(&t, &attr, fn, NULL);
	pthread_attr_destroy(&attr);
	if (e) {
		printf("pthread_create with a %zu-byte stack: %s\n", stack, strerror(e));
		return 1;
	}
	pthread_join(t, &res);
	if (!res) {
		printf("the thread with a %zu-byte stack failed its GET\n", stack);
		return 1;
	}
	return 0;
}

static void *last_thread(void *arg)
{
	(void)arg;
	usleep(200000);   /* the main thread has ended by then */
	printf("mainexit: GET %s\n", get("/ok") == 200 ? "ok" : "failed");
	return NULL;
}

static int mainexit(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, last_thread, NULL))
		return 1;
	pthread_exit(NULL);
}

static int threads(void)
{
	int bad = 0;
	bad += spawn(small_thread, PTHREAD_STACK_MIN);
	bad += spawn(small_thread, 2 * PTHREAD_STACK_MIN);
	bad += spawn(stack_user, 64 * 1024);
	if (!bad)
		printf("threads ok\n");
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc >= 5 && strcmp(argv[1], "fds") == 0) {
		port = atoi(argv[2]);
		spans_file = argv[4];
		return fds(argv[3]);
	}
	if (argc >= 4 && strcmp(argv[1], "sigclose") == 0) {
		port = atoi(argv[2]);
		spans_file = argv[3];
		return sigclose();
	}
	if (argc >= 3 && strcmp(argv[1], "mainexit") == 0) {
		port = atoi(argv[2]);
		return mainexit();
	}
	if (argc >= 3 && strcmp(argv[1], "threads") == 0) {
		port = atoi(argv[2]);
		return threads();
	}
	fprintf(stderr, "usage: host-probe fds PORT closefrom|loop|range SPANS | sigclose PORT SPANS | mainexit PORT | threads PORT\n");
	return 2;
}
