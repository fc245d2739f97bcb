/* logcorr-writer: writes log lines every way an app does (write, writev, stdio), inside and outside requests it serves itself, for the log-correlation test. */
/*
 * usage: logcorr-writer lines     the line shapes, on stdout and stderr (see test-log-correlation.sh)
 *        logcorr-writer partial   stdout a regular file: partial writes forced with RLIMIT_FSIZE
 *        logcorr-writer pipe      stdout a non-blocking pipe drained slowly; what came through is printed
 *        logcorr-writer threads   4 threads, each inside its own request, writing to stdout and stderr
 *        logcorr-writer sockets   inside a request, a connection made fd 1 (dup2, dup3, accept after
 *                                 close(1)) and a response written to it raw and with stdio: the peer
 *                                 must get exactly those bytes; then stdout back, a line with ids
 *        logcorr-writer cancel    a thread in a request blocked writing to a full stdout pipe is
 *                                 cancelled (raw write, then stdio); later writes must not hang
 *
 * A span is made current the way a server gets one: the program connects to
 * itself over TCP, sends "GET /NAME", reads it on the accepted side (the
 * agent starts the SERVER span and makes it current on this thread), and
 * ends it by answering. Without the agent it runs the same and prints the
 * same lines, without ids.
 *
 * Checks of return values and errno are printed on fd 3 ("ok: ..." or
 * "FAIL: ..."); the exit status is 1 if any failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

extern int __printf_chk(int flag, const char *fmt, ...);
extern int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);

static int failures;
/* Check results, kept until exit: RLIMIT_FSIZE would cut writes to fd 3 too. */
static char notes[1 << 16];
static size_t notes_len;
static pthread_mutex_t notes_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	pthread_mutex_lock(&notes_mu);
	if (notes_len + (size_t)n <= sizeof notes) {
		memcpy(notes + notes_len, buf, (size_t)n);
		notes_len += (size_t)n;
	}
	pthread_mutex_unlock(&notes_mu);
}

static void flush_notes(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_FSIZE, &rl);
	if (write(3, notes, notes_len) < 0) {
		/* no fd 3: the checks still set the exit status */
	}
	notes_len = 0;
}

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (cond) {                                                \
			note("ok: " __VA_ARGS__);                          \
		} else {                                                   \
			failures++;                                        \
			note("FAIL: " __VA_ARGS__);                        \
		}                                                          \
	} while (0)

/* write() that checks it returned n and left errno alone. */
#define W(fd, s)                                                                         \
	do {                                                                             \
		errno = 1234;                                                            \
		ssize_t r_ = write(fd, s, sizeof(s) - 1);                                \
		CHECK(r_ == (ssize_t)sizeof(s) - 1 && errno == 1234, "write(%d, %.20s...) = %zd (want %zu), errno %d", \
		      fd, s, r_, sizeof(s) - 1, errno);                                  \
	} while (0)

/* ---- a request to ourselves: the SERVER span current on this thread ---- */

struct conn {
	int lfd, cfd, sfd;
};

static void die(const char *what)
{
	note("FAIL: %s: %s", what, strerror(errno));
	exit(1);
}

static void conn_open(struct conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	c->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->lfd < 0 || bind(c->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(c->lfd, 4) < 0 ||
	    getsockname(c->lfd, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	c->cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->cfd < 0 || connect(c->cfd, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	c->sfd = accept(c->lfd, NULL, NULL);
	if (c->sfd < 0)
		die("accept");
}

/* Reads up to and including the blank line that ends a head. */
static void read_head(int fd)
{
	char last4[4] = { 0 };
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r <= 0)
			die("read head");
		memmove(last4, last4 + 1, 3);
		last4[3] = ch;
		if (memcmp(last4, "\r\n\r\n", 4) == 0)
			return;
	}
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);
	while (n) {
		ssize_t r = send(fd, s, n, 0);
		if (r <= 0)
			die("send");
		s += r;
		n -= (size_t)r;
	}
}

static void span_begin(struct conn *c, const char *path)
{
	char req[256];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: logcorr\r\n\r\n", path);
	send_all(c->cfd, req);
	read_head(c->sfd);
}

static void span_end(struct conn *c)
{
	send_all(c->sfd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	read_head(c->cfd);
}

/* ---- lines ---- */

static void *other_thread(void *arg)
{
	(void)arg;
	W(1, "other thread, no span\n");
	return NULL;
}

static int lines(void)
{
	struct conn c;
	conn_open(&c);
	W(1, "before any span\n");

	span_begin(&c, "/a");
	W(1, "raw line\n");
	W(1, "split ");
	W(1, "over ");
	W(1, "three\n");
	W(1, "{\"msg\":\"json\",\"n\":1}\n");
	W(1, "  {}  \r\n");
	W(1, "two\nlines\n");
	W(1, "crlf line\r\n");
	W(1, "bin\0ary\n");
	W(1, "\n");
	W(1, "   \n");
	W(1, "\x1b[1mbold\x1b[0m\n");
	W(1, "{\"split\":");
	W(1, "true}\n");
	W(1, "{\"brace\":1}");
	W(1, "\n");
	W(1, "{ not json\n");
	W(1, "caf\xc3\xa9\n");
	struct iovec v[3] = { { "vec ", 4 }, { "line", 4 }, { "\n", 1 } };
	errno = 1234;
	ssize_t r = writev(1, v, 3);
	CHECK(r == 9 && errno == 1234, "writev = %zd (want 9)", r);
	/* 40 lines in one call (more than one real write's worth of ids) */
	char many[40 * 8 + 1];
	for (int i = 0; i < 40; i++)
		snprintf(many + i * 8, 9, "many %02d\n", i);
	errno = 1234;
	r = write(1, many, 40 * 8);
	CHECK(r == 40 * 8 && errno == 1234, "write of 40 lines = %zd", r);
	/* writev of 20 pieces, three lines */
	struct iovec pieces[20];
	static const char *const words[20] = { "w0 ", "w1 ", "w2\n", "w3 ", "w4 ", "w5 ", "w6 ", "w7\n",
					       "w8 ", "w9 ", "w10 ", "w11 ", "w12 ", "w13 ", "w14 ",
					       "w15 ", "w16 ", "w17 ", "w18 ", "w19\n" };
	size_t total = 0;
	for (int i = 0; i < 20; i++) {
		pieces[i] = (struct iovec){ (void *)words[i], strlen(words[i]) };
		total += strlen(words[i]);
	}
	r = writev(1, pieces, 20);
	CHECK(r == (ssize_t)total, "writev of 20 pieces = %zd (want %zu)", r, total);
	pthread_t t;
	pthread_create(&t, NULL, other_thread, NULL);
	pthread_join(t, NULL);
	W(2, "stderr raw\n");

	/* stdio */
	int n = printf("printf %d\n", 42);
	CHECK(n == 10, "printf = %d (want 10)", n);
	n = fputs("fputs line\n", stdout);
	CHECK(n >= 0, "fputs = %d", n);
	n = puts("puts line");
	CHECK(n >= 0, "puts = %d", n);
	size_t z = fwrite("fwrite line\n", 1, 12, stdout);
	CHECK(z == 12, "fwrite = %zu (want 12)", z);
	z = fwrite("fwrite items\n", 13, 1, stdout);
	CHECK(z == 1, "fwrite (one 13-byte item) = %zu (want 1)", z);
	for (const char *p = "putchar\n"; *p; p++) {
		n = putchar(*p);
		CHECK(n == (unsigned char)*p, "putchar('%c') = %d", *p == '\n' ? 'n' : *p, n);
	}
	n = fputc('c', stdout);
	CHECK(n == 'c', "fputc = %d", n);
	n = putc('\n', stdout);
	CHECK(n == '\n', "putc = %d", n);
	n = printf("part1 ");
	CHECK(n == 6, "printf part1 = %d", n);
	n = printf("part2\n");
	CHECK(n == 6, "printf part2 = %d", n);
	n = printf("{\"json\":\"%s\"}\n", "printf");
	CHECK(n == 18, "printf json = %d (want 18)", n);
	n = __printf_chk(1, "chk %d\n", 7);
	CHECK(n == 6, "__printf_chk = %d", n);
	char big[700];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	n = printf("long %s\n", big);
	CHECK(n == 5 + 699 + 1, "printf long = %d", n);
	n = fputs_unlocked("unlocked\n", stdout);
	CHECK(n >= 0, "fputs_unlocked = %d", n);
	fflush(stdout);
	n = fprintf(stderr, "fprintf stderr %s\n", "x");
	CHECK(n == 17, "fprintf = %d (want 17)", n);
	errno = ENOENT;
	n = fprintf(stderr, "errno %m\n");
	CHECK(n == 32, "fprintf %%m = %d (want 32)", n);
	n = __fprintf_chk(stderr, 1, "fprintf chk\n");
	CHECK(n == 12, "__fprintf_chk = %d", n);

	/* begun inside, ended outside: no ids (the newline decides) */
	W(1, "raw begun inside, ");
	printf("stdio begun inside, ");
	span_end(&c);
	W(1, "ended outside\n");
	printf("ended outside\n");
	fflush(stdout);
	W(1, "outside raw\n");
	printf("outside printf\n");
	fflush(stdout);

	/* begun outside, ended inside /b: its ids */
	W(1, "raw begun outside, ");
	printf("stdio begun outside, ");
	span_begin(&c, "/b");
	W(1, "ended inside\n");
	printf("ended inside\n");
	fflush(stdout);
	span_end(&c);
	W(1, "after all spans\n");
	return failures ? 1 : 0;
}

/* ---- partial writes on a regular file (RLIMIT_FSIZE) ---- */

static void limit_at(off_t bytes_from_here)
{
	off_t pos = lseek(1, 0, SEEK_CUR);
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = (rlim_t)(pos + bytes_from_here);
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		die("setrlimit");
}

static void unlimit(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_FSIZE, &rl);
}

static ssize_t wr(const char *s)
{
	errno = 0;
	return write(1, s, strlen(s));
}

#define TEXT_DECOR 67   /* " trace_id=<32> span_id=<16>" */
#define JSON_DECOR 75   /* ",\"trace_id\":\"<32>\",\"span_id\":\"<16>\"" */

static int partial(void)
{
	struct conn c;
	conn_open(&c);
	signal(SIGXFSZ, SIG_IGN);
	span_begin(&c, "/partial");
	/* with the agent: "hello" and 3 bytes of ids fit; without: all 6 */
	const char *on = getenv("TRACEAGENT_LOG_CORRELATION");
	int agent = getenv("LD_PRELOAD") && on && !strcmp(on, "true");
	ssize_t r;

	/* 1. the cut inside the ids: 5 app bytes; the rest of the ids waits */
	limit_at(5 + 3);
	r = wr("hello\n");
	CHECK(r == (agent ? 5 : 6), "cut inside the ids: write = %zd", r);
	if (agent) {
		r = wr("\n");
		CHECK(r == -1 && errno == EFBIG, "no room at all: -1 EFBIG (got %zd, errno %d)", r, errno);
		/* room for 5 more of our bytes only: still -1, the app wrote nothing */
		limit_at(5);
		r = wr("\n");
		CHECK(r == -1 && errno == EFBIG, "room for part of the ids only: -1 EFBIG (got %zd, errno %d)", r, errno);
		unlimit();
		r = wr("\n");
		CHECK(r == 1, "the newline once there is room: %zd", r);
	}
	unlimit();

	/* 2. a JSON line cut inside its members, before the app's '}' */
	limit_at(6 + 10);
	r = wr("{\"k\":1}\n");
	CHECK(r == (agent ? 6 : 8), "JSON cut inside the members: write = %zd", r);
	unlimit();
	if (agent) {
		r = wr("}\n");
		CHECK(r == 2, "the rest of the JSON line: %zd", r);
	}

	/* 3. the cut right after the ids: no second set for the newline */
	limit_at(agent ? 6 + TEXT_DECOR : 6);
	r = wr("at-end\n");
	CHECK(r == 6, "cut right after the ids: write = %zd", r);
	unlimit();
	r = wr("\n");
	CHECK(r == 1, "its newline: %zd", r);

	/* 4. two lines, the cut inside the second's text */
	limit_at(agent ? 2 + TEXT_DECOR + 1 + 1 : 4);
	r = wr("ab\ncd\n");
	CHECK(r == 4, "two lines cut in the second: write = %zd", r);
	unlimit();
	r = wr("d\n");
	CHECK(r == 2, "the second line's rest: %zd", r);

	/* 5. 40 lines in one call (two real writes' worth of ids), cut inside
	 * the ids of line 34, in the second real write */
	char many[40 * 4 + 1];
	for (int i = 0; i < 40; i++)
		snprintf(many + i * 4, 5, "L%02d\n", i);
	limit_at(agent ? 34 * (4 + TEXT_DECOR) + 3 + 10 : 34 * 4 + 3);
	r = write(1, many, 160);
	CHECK(r == 34 * 4 + 3, "40 lines cut inside the ids of the 35th: write = %zd (want %d)", r, 34 * 4 + 3);
	unlimit();
	if (r > 0 && r < 160) {
		ssize_t r2 = write(1, many + r, 160 - (size_t)r);
		CHECK(r2 == 160 - r, "the other %zd bytes: %zd", 160 - r, r2);
	}

	/* 6. a failure with nothing written: -1 and errno, state unchanged */
	limit_at(0);
	r = wr("refused\n");
	CHECK(r == -1 && errno == EFBIG, "no room: -1 EFBIG (got %zd, errno %d)", r, errno);
	unlimit();
	r = wr("refused\n");
	CHECK(r == 8, "then accepted whole: %zd", r);

	/* 7. a bad fd keeps its errno */
	errno = 0;
	r = write(-1, "x\n", 2);
	CHECK(r == -1 && errno == EBADF, "write(-1): -1 EBADF (errno %d)", errno);
	span_end(&c);
	return failures ? 1 : 0;
}

/* ---- a slow reader: a non-blocking pipe, partial writes and EAGAIN ---- */

/* Two generators: the lines are the same whatever the reader's pace. */
static uint64_t rng_lines = 0x9E3779B97F4A7C15ULL, rng_io = 0xD1B54A32D192ED03ULL;
static uint32_t next(uint64_t *x, uint32_t n)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return (uint32_t)(*x % n);
}
#define rnd(n) next(&rng_lines, (n))
#define rnd_io(n) next(&rng_io, (n))

struct buf {
	char *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const char *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("realloc");
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static size_t drain(int rfd, struct buf *got, size_t max)
{
	char tmp[65536];
	if (max > sizeof tmp)
		max = sizeof tmp;
	ssize_t r = read(rfd, tmp, max);
	if (r > 0) {
		buf_add(got, tmp, (size_t)r);
		return (size_t)r;
	}
	return 0;
}

static int pipe_test(void)
{
	struct conn c;
	conn_open(&c);
	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	int out = dup(1);
	if (out < 0 || dup2(p[1], 1) < 0)
		die("dup2");
	close(p[1]);
	fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);

	struct buf got = { 0 }, want = { 0 };
	unsigned partials = 0, eagains = 0, calls = 0, bad = 0;
	span_begin(&c, "/pipe");
	for (int phase = 0; phase < 2; phase++) {
		if (phase == 1)
			span_end(&c);   /* the same lines again, outside the span */
		for (int i = 0; i < 300; i++) {
			/* a line of 1..12000 bytes, every fifth a JSON object */
			size_t len = 1 + rnd(12000);
			char *line = malloc(len + 16);
			bool json = i % 5 == 0;
			size_t k = 0;
			if (json)
				line[k++] = '{';
			k += (size_t)sprintf(line + k, "%s%d:%d ", json ? "\"l\":\"" : "line ", phase, i);
			while (k < len)
				line[k++] = (char)('a' + rnd(26));
			if (json) {
				line[k++] = '"';
				line[k++] = '}';
			}
			line[k++] = '\n';
			buf_add(&want, line, k);
			/* written in 1 to 3 pieces, each retried until taken */
			size_t off = 0;
			while (off < k) {
				size_t piece = k - off;
				if (rnd_io(3) == 0 && piece > 1)
					piece = 1 + rnd_io((uint32_t)piece);
				/* a JSON line's '}' goes with its newline (README: else no ids) */
				if (json && off + piece == k - 1)
					piece++;
				while (piece) {
					errno = 0;
					ssize_t r = write(1, line + off, piece);
					calls++;
					if (r < 0) {
						if (errno != EAGAIN)
							bad++;
						eagains++;
						drain(p[0], &got, 1 + rnd_io(9000));
						continue;
					}
					if (r == 0 || (size_t)r > piece)
						bad++;
					if ((size_t)r < piece)
						partials++;
					off += (size_t)r;
					piece -= (size_t)r;
				}
			}
			free(line);
		}
	}
	while (drain(p[0], &got, 65536))
		;
	CHECK(bad == 0, "every write returned -1/EAGAIN or 1..n (%u calls, %u EAGAIN, %u partial)", calls,
	      eagains, partials);
	CHECK(partials > 50 && eagains > 50, "the reader was slow: %u partial writes, %u EAGAIN", partials, eagains);
	/* what came through, for the test to compare with the lines it expects */
	size_t off = 0;
	while (off < got.n) {
		ssize_t r = write(out, got.p + off, got.n - off);
		if (r <= 0)
			die("write out");
		off += (size_t)r;
	}
	/* the app's own lines, for the comparison without ids */
	FILE *f = fopen(getenv("LOGCORR_WANT") ? getenv("LOGCORR_WANT") : "/dev/null", "w");
	if (f) {
		fwrite(want.p, 1, want.n, f);
		fclose(f);
	}
	return failures ? 1 : 0;
}

/* ---- threads, each in its own request ---- */

static int short_writes;

static void *thread_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct conn c;
	conn_open(&c);
	char path[32];
	snprintf(path, sizeof path, "/t%d", id);
	span_begin(&c, path);
	for (int j = 0; j < 200; j++) {
		if (j % 2)
			fprintf(stderr, "thread %d line %d\n", id, j);
		else {
			char line[64];
			int n = snprintf(line, sizeof line, "thread %d line %d\n", id, j);
			if (write(1, line, (size_t)n) != n)
				__atomic_add_fetch(&short_writes, 1, __ATOMIC_RELAXED);
		}
	}
	span_end(&c);
	return NULL;
}

static int threads(void)
{
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, thread_main, (void *)(intptr_t)i);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(short_writes == 0, "the 400 write() calls each returned their length (%d did not)", short_writes);
	return failures ? 1 : 0;
}

/* ---- a connection as fd 1: its bytes are a protocol, never a log ---- */

static const char RESPONSE[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n";

/* Writes the response onto fd 1 (raw, or with printf + fflush), closes the
 * writing side, and checks the peer got exactly its bytes. */
static void respond_on_fd1(int peer, bool stdio, const char *how)
{
	if (stdio) {
		CHECK(printf("%s", RESPONSE) == (int)sizeof RESPONSE - 1, "%s: printf returned the response's length", how);
		CHECK(fflush(stdout) == 0, "%s: fflush", how);
	} else {
		W(1, RESPONSE);
	}
	shutdown(1, SHUT_WR);
	char buf[1024];
	size_t got = 0;
	ssize_t r;
	while (got < sizeof buf - 1 && (r = read(peer, buf + got, sizeof buf - 1 - got)) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	CHECK(got == sizeof RESPONSE - 1 && memcmp(buf, RESPONSE, got) == 0,
	      "%s: the peer got exactly the %zu bytes written (got %zu%s)", how, sizeof RESPONSE - 1, got,
	      strstr(buf, "trace_id") ? ", with ids in them" : "");
}

static int sockets(void)
{
	struct conn c;
	conn_open(&c);
	span_begin(&c, "/s");
	int saved = dup(1);
	setvbuf(stdout, NULL, _IOFBF, 4096);
	W(1, "stdout before\n");
	for (int i = 0; i < 2; i++) {
		bool stdio = i == 1;
		/* dup2: the CGI-style server */
		struct conn d;
		conn_open(&d);
		CHECK(dup2(d.sfd, 1) == 1, "dup2 onto fd 1");
		respond_on_fd1(d.cfd, stdio, stdio ? "dup2, printf" : "dup2, write");
		/* dup3 */
		struct conn e;
		conn_open(&e);
		CHECK(dup3(e.sfd, 1, O_CLOEXEC) == 1, "dup3 onto fd 1");
		respond_on_fd1(e.cfd, stdio, stdio ? "dup3, printf" : "dup3, write");
		/* a daemon without stdio: accept gives fd 1 back */
		struct conn f;
		conn_open(&f);
		close(f.sfd);
		int again = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		getsockname(f.lfd, (struct sockaddr *)&a, &al);
		if (again < 0 || connect(again, (struct sockaddr *)&a, sizeof a) < 0)
			die("connect again");
		close(1);
		int one = accept(f.lfd, NULL, NULL);
		CHECK(one == 1, "accept after close(1) returned fd 1 (%d)", one);
		respond_on_fd1(again, stdio, stdio ? "accept onto fd 1, printf" : "accept onto fd 1, write");
		CHECK(dup2(saved, 1) == 1, "stdout back with dup2");
	}
	/* close_range over fd 1, then a connect()ed socket gets fd 1 */
	{
		struct conn g;
		conn_open(&g);
		CHECK(close_range(1, 1, 0) == 0, "close_range(1, 1)");
		int s1 = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		socklen_t al = sizeof a;
		getsockname(g.lfd, (struct sockaddr *)&a, &al);
		CHECK(s1 == 1 && connect(s1, (struct sockaddr *)&a, sizeof a) == 0, "socket() after close_range is fd 1, connected");
		int peer = accept(g.lfd, NULL, NULL);
		respond_on_fd1(peer, false, "close_range, connect onto fd 1, write");
		CHECK(dup2(saved, 1) == 1, "stdout back with dup2");
	}
	W(1, "stdout after\n");
	printf("stdio after\n");
	fflush(stdout);
	span_end(&c);
	return failures ? 1 : 0;
}

/* ---- cancelled in the middle of a write ---- */

static int cancel_pipe[2];
static volatile int cancel_started;

static void *blocked_writer(void *arg)
{
	bool stdio = arg != NULL;
	struct conn c;
	conn_open(&c);
	span_begin(&c, stdio ? "/cancel-stdio" : "/cancel-raw");
	static char big[1 << 17];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\n';
	cancel_started = 1;
	/* The pipe holds 64 KiB: this blocks, a cancellation point, with a span current. */
	if (stdio)
		fwrite(big, 1, sizeof big, stdout);
	else
		write(1, big, sizeof big);
	return NULL;
}

static int cancel_test(void)
{
	int saved = dup(1);
	for (int i = 0; i < 2; i++) {
		bool stdio = i == 1;
		if (pipe(cancel_pipe) < 0 || dup2(cancel_pipe[1], 1) != 1)
			die("pipe");
		cancel_started = 0;
		pthread_t t;
		pthread_create(&t, NULL, blocked_writer, stdio ? (void *)1 : NULL);
		/* Cancel once the pipe is full: the writer is then blocked in its write. */
		int queued = 0;
		while (!cancel_started || queued < 65536) {
			usleep(1000);
			if (ioctl(cancel_pipe[0], FIONREAD, &queued) < 0)
				die("FIONREAD");
		}
		pthread_cancel(t);
		pthread_join(t, NULL);
		/* Drain what the pipe holds, then write again from this thread: with
		 * the stream left locked, this would never return (alarm ends it). */
		int fl = fcntl(cancel_pipe[0], F_GETFL);
		fcntl(cancel_pipe[0], F_SETFL, fl | O_NONBLOCK);
		char buf[65536];
		while (read(cancel_pipe[0], buf, sizeof buf) > 0)
			;
		alarm(10);
		if (stdio) {
			clearerr(stdout);
			CHECK(fputs("after the cancel\n", stdout) >= 0 && fflush(stdout) == 0,
			      "stdio: stdout still usable after a thread was cancelled in fwrite");
		} else {
			W(1, "after the cancel\n");
		}
		alarm(0);
		dup2(saved, 1);
		close(cancel_pipe[0]);
		close(cancel_pipe[1]);
	}
	CHECK(1, "no write hung after a cancellation");
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	atexit(flush_notes);
	if (!strcmp(mode, "lines"))
		return lines();
	if (!strcmp(mode, "partial"))
		return partial();
	if (!strcmp(mode, "pipe"))
		return pipe_test();
	if (!strcmp(mode, "threads"))
		return threads();
	if (!strcmp(mode, "sockets"))
		return sockets();
	if (!strcmp(mode, "cancel"))
		return cancel_test();
	fprintf(stderr, "usage: logcorr-writer lines|partial|pipe|threads|sockets|cancel\n");
	return 2;
}
