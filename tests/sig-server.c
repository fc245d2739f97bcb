/*
 * sig-server: a tiny single-threaded HTTP/1.1 server for the SIGTERM/SIGINT
 * tests (tests/integration/test-sigterm.sh). Left alone, it keeps the
 * dispositions it inherited: it never touches SIGTERM or SIGINT.
 *
 * usage: sig-server [--handler-after N] [--ignore-after N] [--report] [--toggle-after N]
 *   --handler-after N  after N requests (0: at start), install a SIGTERM
 *                      handler with sigaction; it prints what oldact
 *                      reported. On SIGTERM the loop ends and main calls
 *                      exit(0) after printing "handler ran".
 *   --ignore-after N   after N requests (0: at start), signal(SIGTERM, SIG_IGN);
 *                      prints what signal() returned.
 *   --report           after each request, prints what sigaction(sig, NULL,
 *                      &old) reports for SIGTERM and SIGINT.
 *   --toggle-after N   after N requests, signal(SIGTERM, SIG_IGN) then
 *                      signal(SIGTERM, SIG_DFL); prints what each returned.
 *
 * Prints "listening on 127.0.0.1:PORT", then "served N" after each request.
 * Every response is "ok\n" with Connection: close.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

static const char *name(void (*h)(int))
{
	if (h == SIG_DFL)
		return "SIG_DFL";
	if (h == SIG_IGN)
		return "SIG_IGN";
	if (h == SIG_ERR)
		return "SIG_ERR";
	if (h == on_term)
		return "on_term";
	return "other";
}

static void report(int sig)
{
	struct sigaction old;
	unsigned long long m = 0;

	memset(&old, 0x5a, sizeof old);
	if (sigaction(sig, NULL, &old) != 0) {
		printf("%s: sigaction failed: %s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", strerror(errno));
		return;
	}
	for (int s = 1; s < 64; s++)
		if (sigismember(&old.sa_mask, s) == 1)
			m |= 1ull << (s - 1);
	printf("%s: handler=%s flags=%#x mask=%#llx restorer=%s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	       name(old.sa_handler), (unsigned)old.sa_flags, m, old.sa_restorer ? "set" : "null");
}

static void install_handler(void)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;   /* no SA_RESTART: accept() returns EINTR */
	memset(&old, 0x5a, sizeof old);
	if (sigaction(SIGTERM, &sa, &old) != 0) {
		perror("sigaction");
		exit(2);
	}
	printf("installed handler; old=%s flags=%#x\n", name(old.sa_handler), (unsigned)old.sa_flags);
}

static void ignore(void)
{
	void (*prev)(int) = signal(SIGTERM, SIG_IGN);
	printf("ignoring SIGTERM; signal returned %s\n", name(prev));
}

static void toggle(void)
{
	void (*a)(int) = signal(SIGTERM, SIG_IGN);
	void (*b)(int) = signal(SIGTERM, SIG_DFL);
	printf("toggle: signal(SIG_IGN) returned %s, signal(SIG_DFL) returned %s\n", name(a), name(b));
}

static void serve(int c)
{
	char buf[4096];
	size_t have = 0;

	while (have < sizeof buf - 1) {
		ssize_t n = read(c, buf + have, sizeof buf - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
				   "Connection: close\r\n\r\nok\n";
	size_t off = 0;
	while (off < sizeof resp - 1) {
		ssize_t n = write(c, resp + off, sizeof resp - 1 - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(c);
}

int main(int argc, char **argv)
{
	long handler_after = -1, ignore_after = -1, toggle_after = -1;
	int want_report = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--handler-after") == 0 && i + 1 < argc)
			handler_after = atol(argv[++i]);
		else if (strcmp(argv[i], "--ignore-after") == 0 && i + 1 < argc)
			ignore_after = atol(argv[++i]);
		else if (strcmp(argv[i], "--toggle-after") == 0 && i + 1 < argc)
			toggle_after = atol(argv[++i]);
		else if (strcmp(argv[i], "--report") == 0)
			want_report = 1;
		else {
			fprintf(stderr, "usage: sig-server [--handler-after N] [--ignore-after N] [--report] [--toggle-after N]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;
	if (s < 0 || bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(s, 16) != 0 ||
	    getsockname(s, (struct sockaddr *)&sin, &len) != 0) {
		perror("sig-server");
		return 1;
	}
	if (handler_after == 0)
		install_handler();
	if (ignore_after == 0)
		ignore();
	if (want_report) {
		report(SIGTERM);
		report(SIGINT);
	}
	printf("listening on 127.0.0.1:%u\n", ntohs(sin.sin_port));

	for (long served = 0; !got_term;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("accept");
			return 1;
		}
		serve(c);
		served++;
		if (handler_after == served)
			install_handler();
		if (ignore_after == served)
			ignore();
		if (toggle_after == served)
			toggle();
		if (want_report) {
			report(SIGTERM);
			report(SIGINT);
		}
		printf("served %ld\n", served);
	}
	printf("handler ran\n");
	exit(0);
}
