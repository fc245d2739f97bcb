/* io-bench: ns per read() and write() call on a regular file and a pipe, through the interposable symbol and straight into libc, alternating in one process. */
/*
 * usage: io-bench [ROUNDS] [CALLS_PER_ROUND]
 *
 * Every call moves one byte, so the figure is the cost of the call path, not
 * of copying. Each round times CALLS_PER_ROUND calls made through the normal
 * `read`/`write` symbols (which LD_PRELOAD interposes) and as many made
 * through libc's own functions (dlsym on libc.so.6, which nothing
 * interposes), in alternating order. Pairing the two inside one process
 * cancels most of the syscall-time noise of a VM; the "added" figure is the
 * median over rounds of the per-round difference. Without LD_PRELOAD it
 * should be about 0 (the control).
 *
 * "fd1 write" is a two-byte line ("x\n") per call on fd 1 (a file behind it):
 * the path log correlation watches (one branch when TRACEAGENT_LOG_CORRELATION
 * is off). IO_BENCH_INIT=1 first makes a refused connect(), which starts the
 * agent as a traced program's first call would (the variable takes effect then).
 *
 * Output, one line per figure:
 *   "<file|pipe|fd1> <read|write> <symbol ns> <libc ns> <added ns> ns/call"
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);

static read_fn libc_read;
static write_fn libc_write;

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *x, const void *y)
{
	double p = *(const double *)x, q = *(const double *)y;
	return p < q ? -1 : p > q;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
	fprintf(stderr, "io-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* One measured batch: n one-byte writes then n one-byte reads on the given
 * fds (the same fd and a rewind for a file; the two ends for a pipe), either
 * through the symbols or through libc directly. Returns ns per call in *w, *r. */
static void batch(int wfd, int rfd, int is_file, int direct, int n, double *w, double *r)
{
	char c = 'x';
	if (is_file && lseek(wfd, 0, SEEK_SET) < 0)
		die("lseek");
	double a = now_ns();
	if (direct) {
		for (int i = 0; i < n; i++)
			if (libc_write(wfd, &c, 1) != 1)
				die("write");
	} else {
		for (int i = 0; i < n; i++)
			if (write(wfd, &c, 1) != 1)
				die("write");
	}
	double b = now_ns();
	if (is_file && lseek(rfd, 0, SEEK_SET) < 0)
		die("lseek");
	double d = now_ns();
	if (direct) {
		for (int i = 0; i < n; i++)
			if (libc_read(rfd, &c, 1) != 1)
				die("read");
	} else {
		for (int i = 0; i < n; i++)
			if (read(rfd, &c, 1) != 1)
				die("read");
	}
	double e = now_ns();
	*w = (b - a) / n;
	*r = (e - d) / n;
}

struct series {
	double *sym_w, *sym_r, *dir_w, *dir_r, *add_w, *add_r;
};

static void series_alloc(struct series *s, int rounds)
{
	double **all[] = { &s->sym_w, &s->sym_r, &s->dir_w, &s->dir_r, &s->add_w, &s->add_r };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!(*all[i] = calloc((size_t)rounds, sizeof(double))))
			die("calloc");
}

static void run(const char *name, int wfd, int rfd, int is_file, int rounds, int n)
{
	struct series s;
	series_alloc(&s, rounds);
	double w, r;
	batch(wfd, rfd, is_file, 0, n, &w, &r); /* warm up both paths */
	batch(wfd, rfd, is_file, 1, n, &w, &r);
	for (int i = 0; i < rounds; i++) {
		int first_direct = i & 1;
		batch(wfd, rfd, is_file, first_direct, n, first_direct ? &s.dir_w[i] : &s.sym_w[i],
		      first_direct ? &s.dir_r[i] : &s.sym_r[i]);
		batch(wfd, rfd, is_file, !first_direct, n, first_direct ? &s.sym_w[i] : &s.dir_w[i],
		      first_direct ? &s.sym_r[i] : &s.dir_r[i]);
		s.add_w[i] = s.sym_w[i] - s.dir_w[i];
		s.add_r[i] = s.sym_r[i] - s.dir_r[i];
	}
	printf("%s write %.1f %.1f %+.1f ns/call\n", name, median(s.sym_w, rounds), median(s.dir_w, rounds),
	       median(s.add_w, rounds));
	printf("%s read %.1f %.1f %+.1f ns/call\n", name, median(s.sym_r, rounds), median(s.dir_r, rounds),
	       median(s.add_r, rounds));
	free(s.sym_w);
	free(s.sym_r);
	free(s.dir_w);
	free(s.dir_r);
	free(s.add_w);
	free(s.add_r);
}

/* write() on fd 1, "x\n" per call, through the symbol and libc direct, alternating. */
static void run_fd1(int fd, int rounds, int n)
{
	double *sym = calloc((size_t)rounds, sizeof(double)), *dir = calloc((size_t)rounds, sizeof(double)),
	       *add = calloc((size_t)rounds, sizeof(double));
	if (!sym || !dir || !add)
		die("calloc");
	fflush(stdout);
	int saved = dup(1);
	if (saved < 0 || dup2(fd, 1) < 0)
		die("dup2");
	for (int i = -1; i < rounds; i++) {   /* round -1 warms up */
		double t[2];
		for (int k = 0; k < 2; k++) {
			int direct = (i & 1) ^ k;
			if (lseek(1, 0, SEEK_SET) < 0)
				die("lseek");
			double a = now_ns();
			for (int j = 0; j < n; j++)
				if ((direct ? libc_write(1, "x\n", 2) : write(1, "x\n", 2)) != 2)
					die("write");
			t[direct] = (now_ns() - a) / n;
		}
		if (i >= 0) {
			sym[i] = t[0];
			dir[i] = t[1];
			add[i] = t[0] - t[1];
		}
	}
	if (dup2(saved, 1) < 0)
		die("dup2");
	close(saved);
	printf("fd1 write %.1f %.1f %+.1f ns/call\n", median(sym, rounds), median(dir, rounds), median(add, rounds));
	free(sym);
	free(dir);
	free(add);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 1001;
	int n = argc > 2 ? atoi(argv[2]) : 256;
	if (rounds < 1)
		rounds = 1;
	if (n < 16)
		n = 16;
	if (n > 60000)
		n = 60000; /* stays below a pipe's 64 KiB buffer */

	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		libc = dlopen("libc.so.6", RTLD_NOW);
	if (!libc) {
		fprintf(stderr, "io-bench: dlopen(libc.so.6): %s\n", dlerror());
		return 1;
	}
	libc_read = (read_fn)dlsym(libc, "read");
	libc_write = (write_fn)dlsym(libc, "write");
	if (!libc_read || !libc_write) {
		fprintf(stderr, "io-bench: dlsym: %s\n", dlerror());
		return 1;
	}

	char path[] = "/tmp/io-bench.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		die("mkstemp");
	unlink(path);
	int p[2];
	if (pipe(p) < 0)
		die("pipe");

	if (getenv("IO_BENCH_INIT")) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(1), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s >= 0) {
			if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
				/* nothing listens on port 1 */
			}
			close(s);
		}
	}
	run("file", fd, fd, 1, rounds, n);
	run("pipe", p[1], p[0], 0, rounds, n);
	run_fd1(fd, rounds, n);
	close(fd);
	close(p[0]);
	close(p[1]);
	return 0;
}
