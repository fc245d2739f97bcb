/*
 * exec-probe: runs child programs through every exec variant, from inside a
 * SERVER span or outside any span, for test-exec-context.sh. No tracing code.
 *
 *   exec-probe serve
 *       HTTP/1.1 server on 127.0.0.1 (prints "listening on 127.0.0.1:PORT"),
 *       one connection at a time, one request per connection. The request is
 *       read with read(), so under the agent its SERVER span is current while
 *       the request is handled:
 *         GET /exec/VARIANT[?env=own]  runs `env` through VARIANT and answers
 *                                      its carrier lines (see below)
 *         GET /fork?port=N             forks; parent and child each GET
 *                                      127.0.0.1:N/from-{parent,child}; the
 *                                      child closes the inherited connection
 *                                      and exits; answers "forked rc=S"
 *         GET /quit                    answers, then exits 0
 *   exec-probe run VARIANT [PORT]
 *       the same outside any span (after a TCP connect to PORT, if given, so
 *       that the agent is initialised), printing the carrier lines.
 *   exec-probe get PORT PATH
 *       one GET (a root CLIENT span), prints the status line.
 *
 * VARIANT: execve execv execvp execvpe execl execle execlp fexecve execveat
 * vfork (vfork + execve) posix_spawn posix_spawnp system.
 * The child is env(1); its lines TRACEPARENT=, TRACESTATE=, BAGGAGE= and
 * APPVAR= are kept. The envp given to the envp variants is a copy of environ
 * plus APPVAR=1 (env=own: APPVAR=1, a TRACEPARENT and a TRACESTATE of the app's
 * own, PATH). After posix_spawn/posix_spawnp the probe checks that the array
 * it passed, and its strings, are unchanged, and adds "envp-intact=yes|no".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define ENV_BIN "/usr/bin/env"
#define OWN_TP "TRACEPARENT=00-abababababababababababababababab-cdcdcdcdcdcdcdcd-01"

static char *own_env[] = { "APPVAR=1", OWN_TP, "TRACESTATE=own=1", "PATH=/usr/bin:/bin", NULL };

/* A copy of environ plus APPVAR=1 (the app's own array, on the heap). */
static char **copy_env(void)
{
	size_t n = 0;
	while (environ[n])
		n++;
	char **e = calloc(n + 2, sizeof *e);
	if (!e)
		exit(90);
	for (size_t i = 0; i < n; i++)
		e[i] = environ[i];
	e[n] = "APPVAR=1";
	return e;
}

/* Keeps the carrier lines of env's output. */
static size_t filter(const char *in, size_t n, char *out, size_t cap)
{
	static const char *keep[] = { "TRACEPARENT=", "TRACESTATE=", "BAGGAGE=", "APPVAR=" };
	size_t o = 0;
	const char *p = in, *end = in + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
			if (len >= strlen(keep[k]) && !strncmp(p, keep[k], strlen(keep[k])) && o + len + 2 < cap) {
				memcpy(out + o, p, len);
				o += len;
				out[o++] = '\n';
			}
		}
		p += len + 1;
	}
	out[o] = '\0';
	return o;
}

static size_t read_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == cap - 1)
			break;
	}
	buf[n] = '\0';
	return n;
}

/* fork (or vfork) and exec env through the variant, stdout on out_fd. */
static pid_t start_child(const char *v, char **envp, int fd, int out_fd)
{
	static char *const argv[] = { "env", NULL };
	pid_t pid = !strcmp(v, "vfork") ? vfork() : fork();
	if (pid != 0)
		return pid;
	dup2(out_fd, 1);
	if (!strcmp(v, "execve") || !strcmp(v, "vfork"))
		execve(ENV_BIN, argv, envp);
	else if (!strcmp(v, "execv"))
		execv(ENV_BIN, argv);
	else if (!strcmp(v, "execvp"))
		execvp("env", argv);
	else if (!strcmp(v, "execvpe"))
		execvpe("env", argv, envp);
	else if (!strcmp(v, "execl"))
		execl(ENV_BIN, "env", (char *)NULL);
	else if (!strcmp(v, "execle"))
		execle(ENV_BIN, "env", (char *)NULL, envp);
	else if (!strcmp(v, "execlp"))
		execlp("env", "env", (char *)NULL);
	else if (!strcmp(v, "fexecve"))
		fexecve(fd, argv, envp);
	else if (!strcmp(v, "execveat"))
		execveat(AT_FDCWD, ENV_BIN, argv, envp, 0);
	_exit(127);
}

/* Runs env through the variant; its carrier lines go to out. Returns 0 on success. */
static int run_variant(const char *v, int own, char *out, size_t cap)
{
	char *const argv[] = { "env", NULL };
	char **envp = own ? own_env : copy_env();
	int pfd[2];
	if (pipe(pfd) != 0)
		return -1;
	pid_t pid = -1;
	int intact = -1;

	if (!strcmp(v, "posix_spawn") || !strcmp(v, "posix_spawnp")) {
		/* Snapshot of the array and its strings, to compare afterwards. */
		size_t n = 0;
		while (envp[n])
			n++;
		char **ptrs = malloc((n + 1) * sizeof *ptrs);
		char **strs = malloc((n + 1) * sizeof *strs);
		for (size_t i = 0; i <= n; i++) {
			ptrs[i] = envp[i];
			strs[i] = envp[i] ? strdup(envp[i]) : NULL;
		}
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
		posix_spawn_file_actions_addclose(&fa, pfd[0]);
		int r = v[11] == 'p' ? posix_spawnp(&pid, "env", &fa, NULL, argv, envp)
				     : posix_spawn(&pid, ENV_BIN, &fa, NULL, argv, envp);
		posix_spawn_file_actions_destroy(&fa);
		if (r != 0)
			return -1;
		intact = 1;
		for (size_t i = 0; i <= n; i++)
			if (envp[i] != ptrs[i] || (strs[i] && strcmp(strs[i], envp[i])))
				intact = 0;
		for (size_t i = 0; i < n; i++)
			free(strs[i]);
		free(ptrs);
		free(strs);
	} else if (!strcmp(v, "system")) {
		fflush(stdout);
		int saved = dup(1);
		dup2(pfd[1], 1);
		close(pfd[1]);
		int st = system("env");
		dup2(saved, 1);
		close(saved);
		char buf[65536];
		size_t n = read_all(pfd[0], buf, sizeof buf);
		close(pfd[0]);
		filter(buf, n, out, cap);
		if (!own)
			free(envp);
		return st == 0 ? 0 : -1;
	} else {
		int fd = -1;
		if (!strcmp(v, "fexecve") && (fd = open(ENV_BIN, O_RDONLY)) < 0)
			return -1;
		pid = start_child(v, envp, fd, pfd[1]);
		if (fd >= 0)
			close(fd);
		if (pid < 0)
			return -1;
	}
	close(pfd[1]);
	char buf[65536];
	size_t n = read_all(pfd[0], buf, sizeof buf);
	close(pfd[0]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	size_t o = filter(buf, n, out, cap);
	if (intact >= 0)
		snprintf(out + o, cap - o, "envp-intact=%s\n", intact ? "yes" : "no");
	if (!own)
		free(envp);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int connect_port(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
		if (s >= 0)
			close(s);
		return -1;
	}
	return s;
}

/* One GET; returns the status line in line. */
static int http_get(int port, const char *path, char *line, size_t cap)
{
	int s = connect_port(port);
	if (s < 0)
		return -1;
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
	if (write(s, req, (size_t)n) != n) {
		close(s);
		return -1;
	}
	char buf[4096];
	size_t got = read_all(s, buf, sizeof buf);
	close(s);
	char *eol = strstr(buf, "\r\n");
	size_t l = eol ? (size_t)(eol - buf) : got;
	if (l >= cap)
		l = cap - 1;
	memcpy(line, buf, l);
	line[l] = '\0';
	return 0;
}

static void respond(int c, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 strlen(body));
	if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0)
		perror("write");
}

static int serve(void)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 16) || getsockname(ls, (struct sockaddr *)&a, &al)) {
		perror("listen");
		return 1;
	}
	printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			continue;
		char req[8192];
		size_t n = 0;
		while (n < sizeof req - 1) {
			ssize_t r = read(c, req + n, sizeof req - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[n] = '\0';
		char path[1024] = "";
		sscanf(req, "%*s %1023s", path);
		char body[65536];
		body[0] = '\0';
		if (!strncmp(path, "/exec/", 6)) {
			char v[64];
			snprintf(v, sizeof v, "%.63s", path + 6);
			char *q = strchr(v, '?');
			if (q)
				*q = '\0';
			int own = strstr(path, "env=own") != NULL;
			if (run_variant(v, own, body, sizeof body) != 0)
				snprintf(body + strlen(body), sizeof body - strlen(body), "child-failed\n");
		} else if (!strncmp(path, "/fork?port=", 11)) {
			int port = atoi(path + 11);
			fflush(stdout);
			pid_t pid = fork();
			if (pid == 0) {
				char line[256];
				close(c);  /* the inherited connection: the parent answers on it */
				int r = http_get(port, "/from-child", line, sizeof line);
				exit(r == 0 ? 0 : 3);
			}
			char line[256] = "";
			http_get(port, "/from-parent", line, sizeof line);
			int st = 0;
			waitpid(pid, &st, 0);
			snprintf(body, sizeof body, "forked rc=%d parent=%s\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1, line);
		} else if (!strcmp(path, "/quit")) {
			respond(c, "bye\n");
			close(c);
			return 0;
		} else {
			snprintf(body, sizeof body, "unknown %s\n", path);
		}
		respond(c, body);
		close(c);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return serve();
	if (argc >= 3 && !strcmp(argv[1], "run")) {
		if (argc >= 4) {
			int s = connect_port(atoi(argv[3]));
			if (s >= 0)
				close(s);
		}
		char out[65536];
		int r = run_variant(argv[2], 0, out, sizeof out);
		fputs(out, stdout);
		return r == 0 ? 0 : 1;
	}
	if (argc >= 4 && !strcmp(argv[1], "get")) {
		char line[256];
		if (http_get(atoi(argv[2]), argv[3], line, sizeof line) != 0)
			return 1;
		puts(line);
		return 0;
	}
	fprintf(stderr, "usage: exec-probe serve | run VARIANT [PORT] | get PORT PATH\n");
	return 2;
}
