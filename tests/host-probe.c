/*
 * host-probe: ordinary program behaviours the agent must not disturb, for
 * test-host-safety.sh. No tracing code.
 *
 *   host-probe fds PORT closefrom|loop|range
 *       GET http://127.0.0.1:PORT/ok (a root CLIENT span under the agent),
 *       waits for the export, then closes every descriptor from 3 up, as a
 *       daemon does (closefrom(3), close() of 3..1023, or the raw close_range
 *       syscall, which no hook sees), opens
 *       pipes that take the lowest numbers, GETs again (a second span to
 *       export), waits, and checks that each pipe holds exactly what the
 *       probe wrote to it. Prints "pipes intact" or what went wrong.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PIPES 6

static int port;

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
	usleep(800 * 1000);   /* the export thread connects and sends */
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
	usleep(800 * 1000);   /* a second export: the agent must not use the pipes' numbers */
	if (get("/ok") != 200) {
		printf("third GET failed\n");
		return 1;
	}
	usleep(800 * 1000);
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
	if (argc >= 3 && strcmp(argv[1], "fds") == 0) {
		port = atoi(argv[2]);
		return fds(argc > 3 ? argv[3] : "closefrom");
	}
	if (argc >= 3 && strcmp(argv[1], "threads") == 0) {
		port = atoi(argv[2]);
		return threads();
	}
	fprintf(stderr, "usage: host-probe fds PORT closefrom|loop|range | threads PORT\n");
	return 2;
}
