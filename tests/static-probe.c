/*
 * static-probe: a small program built with musl-gcc (dynamic and static) and
 * with gcc -static by test-static-musl.sh, which runs it with and without the
 * agent and compares output and exit status. It makes the calls the agent
 * hooks: an HTTP GET over a TCP socket (connect, write, read), fork + execv,
 * posix_spawn, a signal handler, stdio. No tracing code.
 *
 *   static-probe PORT   prints what it saw, exits 7
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
	got = sig;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 0;
	printf("argc=%d\n", argc);

	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
		char req[256];
		int n = snprintf(req, sizeof req,
				 "GET /static-probe HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", port);
		if (write(s, req, (size_t)n) != n)
			puts("write failed");
		char buf[2048];
		size_t got_n = 0;
		ssize_t r;
		while (got_n < sizeof buf - 1 && (r = read(s, buf + got_n, sizeof buf - 1 - got_n)) > 0)
			got_n += (size_t)r;
		buf[got_n] = '\0';
		char *eol = strstr(buf, "\r\n");
		if (eol)
			*eol = '\0';
		printf("http: %s\n", buf);
	} else {
		puts("http: no connection");
	}
	if (s >= 0)
		close(s);
	fflush(stdout);

	pid_t pid = fork();
	if (pid == 0) {
		char *const cargv[] = { "echo", "child via execv", NULL };
		execv("/bin/echo", cargv);
		_exit(126);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("fork+execv: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	fflush(stdout);

	char *const sargv[] = { "sh", "-c", "echo spawned; exit 5", NULL };
	if (posix_spawn(&pid, "/bin/sh", NULL, NULL, sargv, environ) == 0) {
		waitpid(pid, &st, 0);
		printf("posix_spawn: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	} else {
		puts("posix_spawn failed");
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	printf("signal: %d\n", (int)got);
	fprintf(stderr, "to stderr\n");
	puts("done");
	return 7;
}
