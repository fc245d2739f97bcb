/* Log correlation: " trace_id=... span_id=..." (or JSON members) on the lines the app writes to stdout/stderr, raw or through stdio. */
#include "logcorr.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <wchar.h>

#include "agent/context.h"
#include "hooks/kernel.h"

/* pthread_cleanup_push/pop call these glibc functions; weak, like every
 * glibc-only symbol we reference, so musl's loader can still load us (the
 * agent stays off there and never calls them). */
#pragma weak __pthread_register_cancel
#pragma weak __pthread_unregister_cancel

/* With optimisation, glibc's headers make some of these macros or inline
 * functions; we define the real, exported ones. */
#undef fwrite_unlocked

/*
 * Each stream (raw fd 1, raw fd 2, stdio stdout, stdio stderr) has a line
 * state: what the current, unfinished line looks like so far. Ids are added
 * only where a newline is written, with the context current at that moment,
 * so a line written in pieces gets them once, at its end. The app's bytes
 * are never held back: what it wrote goes out in the same call. The one
 * thing kept between calls is the rest of a decoration a partial write cut
 * short ("owed"), written before anything else on that stream, so nothing
 * is lost or written twice and return values count only the app's bytes.
 *
 * stdio writes through libc-internal calls, never through our write(): the
 * stdio output functions are interposed too, for the stdout and stderr
 * streams only. They format into a buffer and hand the decorated text to
 * the real fwrite under the stream's lock.
 */

/* ",\"trace_id\":\"" 32 "\",\"span_id\":\"" 16 "\"" is 75 bytes. */
#define DECOR_MAX 80
/* Insertions per real write; a call with more lines takes several. */
#define INS_MAX 32
/* A writev with more pieces passes through undecorated (its bytes still
 * count towards the line state). */
#define APP_IOV_MAX 64
#define OUT_MAX (1 + APP_IOV_MAX + 2 * INS_MAX + 1)

bool logcorr_enabled;

struct line {
	unsigned char first;       /* first non-blank byte of the line; 0 while none */
	unsigned char last;        /* last non-blank byte so far */
	unsigned char before_last; /* the non-blank byte before it */
	bool binary;               /* a byte that is not text was seen on this line */
	bool done;                 /* this line already carries its ids */
	uint8_t owed_len;          /* bytes of owed[] still to write */
	char owed[DECOR_MAX];
};

/* Raw fds 1 and 2: the mutex orders state updates with the writes they describe. */
static struct {
	pthread_mutex_t mu;
	struct line line;
} raw[2] = { { PTHREAD_MUTEX_INITIALIZER, { 0 } }, { PTHREAD_MUTEX_INITIALIZER, { 0 } } };

/* The stdout and stderr streams: guarded by the stream's own lock. */
static struct line stdio_line[2];

enum { C_TEXT, C_BLANK, C_NL, C_BIN };

/* Text is printable ASCII, any byte >= 0x80 (UTF-8), tab, CR, VT, FF,
 * backspace and ESC (colour codes); NUL, DEL and other controls are binary. */
static inline int byte_class(unsigned char c)
{
	if (c >= 0x20)
		return c == ' ' ? C_BLANK : c == 0x7f ? C_BIN : C_TEXT;
	if (c == '\n')
		return C_NL;
	if (c == '\t' || c == '\r' || c == '\v' || c == '\f')
		return C_BLANK;
	return c == '\b' || c == 0x1b ? C_TEXT : C_BIN;
}

static inline void line_reset(struct line *l)
{
	l->first = l->last = l->before_last = 0;
	l->binary = l->done = false;
}

/* Moves the line state over bytes that went out. Only what follows the
 * last newline matters: a stream of any size costs a memrchr. */
static void feed(struct line *l, const unsigned char *p, size_t n)
{
	const unsigned char *nl = NULL;
	if (n > 64) {
		nl = memrchr(p, '\n', n);
	} else {
		/* a log line: plain code (memrchr's vector unit is slow to wake after a syscall) */
		for (size_t i = n; i-- > 0;)
			if (p[i] == '\n') {
				nl = p + i;
				break;
			}
	}
	if (nl) {
		line_reset(l);
		n -= (size_t)(nl + 1 - p);
		p = nl + 1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		switch (byte_class(c)) {
		case C_NL:
			line_reset(l);
			break;
		case C_BIN:
			l->binary = true;
			break;
		case C_BLANK:
			break;
		default:
			if (!l->first)
				l->first = c;
			l->before_last = l->last;
			l->last = c;
		}
	}
}

/* The app's data: an iovec and its total. */
struct src {
	const struct iovec *iov;
	int cnt;
	size_t n;
};

static void feed_src(struct line *l, const struct src *s, size_t n)
{
	for (int i = 0; i < s->cnt && n; i++) {
		size_t k = s->iov[i].iov_len < n ? s->iov[i].iov_len : n;
		feed(l, s->iov[i].iov_base, k);
		n -= k;
	}
}

/* Writes out[0..cnt) (app_only: exactly the app's iovec) and returns what
 * was taken, like writev: >= 0, or -1 with errno. */
typedef ssize_t (*emit_fn)(void *arg, const struct iovec *out, int cnt, bool app_only);

enum { P_OWED, P_APP, P_DECOR };

struct round {
	struct iovec out[OUT_MAX];
	uint8_t tag[OUT_MAX];
	int k;
	int cur_i;          /* the app iovec entry that holds offset cur_base.. */
	size_t cur_base;    /* app offset of iov[cur_i]'s first byte */
};

/* Appends the app's bytes [from, to) as pieces (ranges only move forward). */
static void add_app(struct round *r, const struct src *s, size_t from, size_t to)
{
	while (from < to) {
		while (from >= r->cur_base + s->iov[r->cur_i].iov_len) {
			r->cur_base += s->iov[r->cur_i].iov_len;
			r->cur_i++;
		}
		size_t in = from - r->cur_base;
		size_t take = s->iov[r->cur_i].iov_len - in;
		if (take > to - from)
			take = to - from;
		r->out[r->k] = (struct iovec){ (char *)s->iov[r->cur_i].iov_base + in, take };
		r->tag[r->k++] = P_APP;
		from += take;
	}
}

static char *hex(char *p, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		*p++ = digits[b[i] >> 4];
		*p++ = digits[b[i] & 15];
	}
	return p;
}

/* " trace_id=<32> span_id=<16>" and ",\"trace_id\":\"<32>\",\"span_id\":\"<16>\"". */
static size_t make_text(char *out, const struct trace_context *c)
{
	char *p = out;
	memcpy(p, " trace_id=", 10);
	p = hex(p + 10, c->trace_id, 16);
	memcpy(p, " span_id=", 9);
	p = hex(p + 9, c->span_id, 8);
	return (size_t)(p - out);
}

static size_t make_json(char *out, const struct trace_context *c)
{
	char *p = out;
	memcpy(p, ",\"trace_id\":\"", 13);
	p = hex(p + 13, c->trace_id, 16);
	memcpy(p, "\",\"span_id\":\"", 13);
	p = hex(p + 13, c->span_id, 8);
	*p++ = '"';
	return (size_t)(p - out);
}

/* Writes the owed rest of a decoration on its own (before a call we pass
 * through whole). Returns false, with errno, when it could not. */
static bool flush_owed(struct line *l, emit_fn emit, void *arg)
{
	while (l->owed_len) {
		struct iovec v = { l->owed, l->owed_len };
		ssize_t r = emit(arg, &v, 1, false);
		if (r <= 0) {
			if (r == 0)
				errno = EAGAIN;
			return false;
		}
		l->owed_len = (uint8_t)(l->owed_len - r);
		memmove(l->owed, l->owed + r, l->owed_len);
	}
	return true;
}

/*
 * Writes the app's data s through emit, decorating the lines it ends.
 * Returns the app's bytes taken (a partial count when the kernel took part
 * of it), or -1 with errno when none were.
 */
static ssize_t run(struct line *l, const struct src *s, emit_fn emit, void *arg)
{
	/* A span of this thread's, not the parent inherited through TRACEPARENT:
	 * that would put ids on every line of a child program, its data too. */
	const struct trace_context *ctx = context_thread();
	bool decorate = ctx->valid && s->cnt <= APP_IOV_MAX, has_nl = false;

	if (decorate) {
		/* A call holding any binary byte is passed through whole. */
		for (int i = 0; i < s->cnt && decorate; i++) {
			const unsigned char *p = s->iov[i].iov_base;
			for (size_t j = 0; j < s->iov[i].iov_len; j++) {
				int k = byte_class(p[j]);
				if (k == C_NL)
					has_nl = true;
				else if (k == C_BIN) {
					decorate = false;
					break;
				}
			}
		}
	}
	if (!decorate || !has_nl) {
		if (l->owed_len && (s->cnt > APP_IOV_MAX || !decorate)) {
			if (!flush_owed(l, emit, arg))
				return -1;
		}
		if (!l->owed_len) {
			ssize_t r = emit(arg, s->iov, s->cnt, true);
			if (r > 0)
				feed_src(l, s, (size_t)r);
			return r;
		}
		/* else: owed bytes go out in front of the app's, below */
	}

	char text[DECOR_MAX], json[DECOR_MAX];
	size_t text_len = 0, json_len = 0;
	if (decorate) {
		text_len = make_text(text, ctx);
		json_len = make_json(json, ctx);
	}

	size_t taken = 0;
	for (;;) {
		struct round rd;
		rd.k = 0;
		rd.cur_i = 0;
		rd.cur_base = 0;
		if (l->owed_len) {
			rd.out[rd.k] = (struct iovec){ l->owed, l->owed_len };
			rd.tag[rd.k++] = P_OWED;
		}
		/* Plan on a copy of the state: where do this round's lines end? */
		struct line L = *l;
		size_t seg = taken, end = s->n, lastpos = SIZE_MAX;
		unsigned ins = 0;
		unsigned char prev = 0;
		bool stop = false;
		size_t base = 0;
		for (int i = 0; i < s->cnt && !stop; base += s->iov[i].iov_len, i++) {
			const unsigned char *p = s->iov[i].iov_base;
			size_t len = s->iov[i].iov_len;
			if (base + len <= taken)
				continue;
			for (size_t j = base < taken ? taken - base : 0; j < len && !stop; j++) {
				size_t pos = base + j;
				unsigned char c = p[j];
				switch (byte_class(c)) {
				case C_NL:
					if (decorate && !L.done && !L.binary && L.first) {
						size_t q = SIZE_MAX;
						const char *d = text;
						size_t dl = text_len;
						if (L.first == '{' && L.last == '}') {
							/* A JSON object: members before its closing
							 * brace, if that brace is still ours to write. */
							if (lastpos != SIZE_MAX) {
								q = lastpos;
								d = L.before_last == '{' ? json + 1 : json;
								dl = L.before_last == '{' ? json_len - 1 : json_len;
							}
						} else {
							q = pos > taken && prev == '\r' ? pos - 1 : pos;
						}
						if (q != SIZE_MAX) {
							if (ins == INS_MAX) {
								end = seg;
								stop = true;
								break;
							}
							add_app(&rd, s, seg, q);
							rd.out[rd.k] = (struct iovec){ (void *)d, dl };
							rd.tag[rd.k++] = P_DECOR;
							seg = q;
							ins++;
						}
					}
					line_reset(&L);
					lastpos = SIZE_MAX;
					break;
				case C_BIN:
					L.binary = true;
					break;
				case C_BLANK:
					break;
				default:
					if (!L.first)
						L.first = c;
					L.before_last = L.last;
					L.last = c;
					lastpos = pos;
				}
				prev = c;
			}
		}
		add_app(&rd, s, seg, end);

		size_t round_len = 0;
		for (int i = 0; i < rd.k; i++)
			round_len += rd.out[i].iov_len;
		ssize_t r = emit(arg, rd.out, rd.k, false);
		if (r < 0)
			return taken ? (ssize_t)taken : -1;

		/* Move the state over what went out, piece by piece. */
		size_t left = (size_t)r;
		for (int i = 0; i < rd.k; i++) {
			size_t len = rd.out[i].iov_len, t = left < len ? left : len;
			left -= t;
			if (rd.tag[i] == P_OWED) {
				l->owed_len = (uint8_t)(l->owed_len - t);
				memmove(l->owed, l->owed + t, l->owed_len);
			} else if (rd.tag[i] == P_APP) {
				feed(l, rd.out[i].iov_base, t);
				taken += t;
			} else if (t) {
				l->done = true;
				if (t < len) {
					l->owed_len = (uint8_t)(len - t);
					memcpy(l->owed, (const char *)rd.out[i].iov_base + t, l->owed_len);
				}
			}
			if (t < len)
				break;
		}
		if ((size_t)r == round_len) {
			if (end == s->n)
				return (ssize_t)taken;
			continue;
		}
		/* A partial write: report the app's bytes. When only ours went
		 * (the rest of a decoration), try again: the app must see a count
		 * of its own bytes or an error, never 0 for a non-empty write. */
		if (taken || r == 0)
			return (ssize_t)taken;
	}
}

/* --- what fds 1 and 2 lead to --- */

/*
 * A terminal, file, pipe or AF_UNIX socket (journald's stdout stream) takes
 * ids. A network socket never does: an inetd-style service, or a server that
 * dup2()s a connection onto stdout (CGI style) or gets fd 1 back from accept
 * after closing it, writes its protocol there, and ids would corrupt it.
 * Classified once (fstat, getsockname) and kept until the fd changes: the
 * close, dup2, dup3, close_range, accept and connect hooks call
 * logcorr_fd_forget. Per fd: (generation << 2) | class, so a classification
 * that raced with a change is not stored over it.
 */
enum { FD_UNKNOWN = 0, FD_LOG = 1, FD_NOT_LOG = 2 };
static _Atomic uint32_t fd_class[2];

void logcorr_fd_forget(int fd)
{
	_Atomic uint32_t *c = &fd_class[fd - 1];
	uint32_t v = atomic_load_explicit(c, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(c, &v, ((v >> 2) + 1) << 2 | FD_UNKNOWN,
						      memory_order_release, memory_order_relaxed))
		;
}

static uint32_t fd_classify(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return FD_UNKNOWN;   /* closed: the app's write fails by itself; look again next time */
	if (!S_ISSOCK(st.st_mode))
		return FD_LOG;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return FD_NOT_LOG;
	return ss.ss_family == AF_UNIX ? FD_LOG : FD_NOT_LOG;
}

/* True when lines written to fd (1 or 2) may carry ids. Keeps errno. */
static bool fd_is_log(int fd)
{
	_Atomic uint32_t *c = &fd_class[fd - 1];
	uint32_t v = atomic_load_explicit(c, memory_order_acquire);
	if (__builtin_expect((v & 3) != FD_UNKNOWN, 1))
		return (v & 3) == FD_LOG;
	uint32_t cls;
	KERNEL_QUIET(cls = fd_classify(fd));
	if (cls != FD_UNKNOWN)
		atomic_compare_exchange_strong_explicit(c, &v, (v & ~3u) | cls, memory_order_release,
							memory_order_relaxed);
	return cls == FD_LOG;
}

/* --- raw write()/writev() on fds 1 and 2 --- */

struct raw_arg {
	int fd;
	bool single;   /* the app called write(), not writev() */
};

static ssize_t raw_emit(void *arg, const struct iovec *out, int cnt, bool app_only)
{
	const struct raw_arg *a = arg;
	if (app_only && a->single)
		return REAL(write)(a->fd, out[0].iov_base, out[0].iov_len);
	return REAL(writev)(a->fd, out, cnt);
}

/* A thread cancelled inside the real write (a cancellation point) must not
 * leave the stream locked: every later line would wait for ever. (The guard
 * is thread-local and dies with the thread.) */
static void raw_unlock(void *mu)
{
	pthread_mutex_unlock(mu);
}

static __attribute__((noinline)) ssize_t raw_locked(int fd, const struct src *s, const struct raw_arg *a)
{
	ssize_t r;
	pthread_mutex_lock(&raw[fd - 1].mu);
	pthread_cleanup_push(raw_unlock, &raw[fd - 1].mu);
	r = run(&raw[fd - 1].line, s, raw_emit, (void *)a);
	pthread_cleanup_pop(0);
	KERNEL_QUIET(pthread_mutex_unlock(&raw[fd - 1].mu));
	return r;
}

static ssize_t raw_run(int fd, const struct src *s, bool single)
{
	struct raw_arg a = { fd, single };
	ssize_t r;
	KERNEL_LEAVE(r = raw_locked(fd, s, &a); if (r < 0) app_errno = errno);
	return r;
}

ssize_t logcorr_write(int fd, const void *buf, size_t n)
{
	if (n == 0 || n > SSIZE_MAX || !fd_is_log(fd) || !context_guard_enter())
		return REAL(write)(fd, buf, n);
	struct iovec one = { (void *)buf, n };
	struct src s = { &one, 1, n };
	return raw_run(fd, &s, true);
}

ssize_t logcorr_writev(int fd, const struct iovec *iov, int cnt)
{
	if (cnt <= 0 || cnt > IOV_MAX)
		return REAL(writev)(fd, iov, cnt);
	size_t n = 0;
	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - n)
			return REAL(writev)(fd, iov, cnt);
		n += iov[i].iov_len;
	}
	if (n == 0 || !fd_is_log(fd) || !context_guard_enter())
		return REAL(writev)(fd, iov, cnt);
	struct src s = { iov, cnt, n };
	return raw_run(fd, &s, false);
}

/* --- stdio: the stdout and stderr streams --- */

static ssize_t stdio_emit(void *arg, const struct iovec *out, int cnt, bool app_only)
{
	(void)app_only;
	FILE *f = arg;
	size_t total = 0;
	for (int i = 0; i < cnt; i++)
		total += out[i].iov_len;
	/* One fwrite per call when it fits: an unbuffered stderr then makes one
	 * write(2) per line, as stdio itself would. */
	char cat[4096];
	struct iovec one = { cat, total };
	if (cnt > 1 && total <= sizeof cat) {
		char *p = cat;
		for (int i = 0; i < cnt; i++) {
			memcpy(p, out[i].iov_base, out[i].iov_len);
			p += out[i].iov_len;
		}
		out = &one;
		cnt = 1;
	}
	size_t done = 0;
	for (int i = 0; i < cnt; i++) {
		size_t w = REAL(fwrite)(out[i].iov_base, 1, out[i].iov_len, f);
		done += w;
		if (w < out[i].iov_len)
			return done ? (ssize_t)done : -1;
	}
	return (ssize_t)done;
}

/* The line state of f when f is stdout or stderr, with the guard entered
 * and the app's errno in *e (for stdio_run); NULL (pass through, errno
 * untouched) otherwise. Hooks call it only when the feature is on:
 * off, each hook is one predictable branch and a jump to libc's function. */
#define OFF __builtin_expect(!logcorr_enabled, 1)
static struct line *stdio_enter(FILE *f, int *e)
{
	struct line *l = f == stdout ? &stdio_line[0] : f == stderr ? &stdio_line[1] : NULL;
	if (!l)
		return NULL;
	/* The stream's fd must be 1 or 2 and lead to a log, as for raw writes
	 * (fileno sets errno for a stream without one). */
	*e = errno;
	int fd = fileno(f);
	errno = *e;
	if ((unsigned)fd - 1u >= 2u || !fd_is_log(fd) || !context_guard_enter())
		return NULL;
	/* A wide-oriented stream takes no byte output: leave it to libc. */
	if (fwide(f, 0) > 0) {
		context_guard_leave();
		return NULL;
	}
	return l;
}

static void stdio_unlock(void *f)
{
	funlockfile(f);
}

/* run() under the stream's lock; fwrite is a cancellation point, and a
 * cancelled thread must not leave the stream locked. Sets errno. */
static __attribute__((noinline)) ssize_t stdio_locked(FILE *f, struct line *l, const struct src *s)
{
	ssize_t r;
	flockfile(f);
	pthread_cleanup_push(stdio_unlock, f);
	r = run(l, s, stdio_emit, f);
	pthread_cleanup_pop(0);
	KERNEL_QUIET(funlockfile(f));
	return r;
}

/* Writes the app's bytes through the stream; the app's errno is e. Returns
 * the app's bytes taken, or -1 with stdio's errno. Leaves the guard. */
static ssize_t stdio_run(FILE *f, struct line *l, const struct iovec *iov, int cnt, size_t n, int e)
{
	ssize_t r = 0;
	if (n) {
		struct src s = { iov, cnt, n };
		r = stdio_locked(f, l, &s);
		if (r < 0)
			e = errno;
	}
	context_guard_leave();
	errno = e;
	return r;
}

static ssize_t stdio_buf(FILE *f, struct line *l, const void *p, size_t n, int e)
{
	struct iovec v = { (void *)p, n };
	return stdio_run(f, l, &v, 1, n, e);
}

/* glibc's; weak, like every glibc-only symbol we call, so musl can still load us. */
extern int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *fmt, va_list ap)
	__attribute__((weak));

/* The printf family on stdout/stderr: formatted here (flag < 0: plain,
 * otherwise the _FORTIFY_SOURCE check level), then written as one call. */
static int vfp(FILE *f, int flag, const char *fmt, va_list ap)
{
	if (OFF)
		return flag < 0 ? REAL(vfprintf)(f, fmt, ap)
				: REAL(__vfprintf_chk)(f, flag, fmt, ap);
	int e;
	struct line *l = stdio_enter(f, &e);
	if (!l) {
		return flag < 0 ? REAL(vfprintf)(f, fmt, ap)
				: REAL(__vfprintf_chk)(f, flag, fmt, ap);
	}
	char small[512], *buf = small;
	va_list ap2;
	va_copy(ap2, ap);
	errno = e;   /* %m prints the app's errno */
	if (!__vsnprintf_chk)
		flag = -1;
	int len = flag < 0 ? vsnprintf(small, sizeof small, fmt, ap)
			   : __vsnprintf_chk(small, sizeof small, flag, sizeof small, fmt, ap);
	if (len >= (int)sizeof small) {
		buf = malloc((size_t)len + 1);
		if (!buf) {
			/* No memory for the text: let libc print it, undecorated. */
			context_guard_leave();
			errno = e;
			int r = flag < 0 ? REAL(vfprintf)(f, fmt, ap2)
					 : REAL(__vfprintf_chk)(f, flag, fmt, ap2);
			va_end(ap2);
			return r;
		}
		errno = e;
		len = flag < 0 ? vsnprintf(buf, (size_t)len + 1, fmt, ap2)
			       : __vsnprintf_chk(buf, (size_t)len + 1, flag, (size_t)len + 1, fmt, ap2);
	}
	va_end(ap2);
	if (len < 0) {
		context_guard_leave();
		return -1;
	}
	ssize_t r = stdio_buf(f, l, buf, (size_t)len, e);
	if (buf != small)
		KERNEL_QUIET(free(buf));
	return r == len ? len : -1;
}

HOOK int vfprintf(FILE *f, const char *fmt, va_list ap)
{
	return vfp(f, -1, fmt, ap);
}

HOOK int vprintf(const char *fmt, va_list ap)
{
	return vfp(stdout, -1, fmt, ap);
}

HOOK int fprintf(FILE *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfp(f, -1, fmt, ap);
	va_end(ap);
	return r;
}

HOOK int printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfp(stdout, -1, fmt, ap);
	va_end(ap);
	return r;
}

HOOK int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap)
{
	return vfp(f, flag, fmt, ap);
}

HOOK int __vprintf_chk(int flag, const char *fmt, va_list ap)
{
	return vfp(stdout, flag, fmt, ap);
}

HOOK int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfp(f, flag, fmt, ap);
	va_end(ap);
	return r;
}

HOOK int __printf_chk(int flag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfp(stdout, flag, fmt, ap);
	va_end(ap);
	return r;
}

/* fputs/puts: like glibc, 1 (or the count, for puts) on success, EOF on error. */
HOOK int fputs(const char *str, FILE *f)
{
	if (OFF)
		return REAL(fputs)(str, f);
	int e;
	struct line *l = stdio_enter(f, &e);
	if (!l)
		return REAL(fputs)(str, f);
	size_t n = strlen(str);
	return stdio_buf(f, l, str, n, e) == (ssize_t)n ? 1 : EOF;
}

HOOK int fputs_unlocked(const char *str, FILE *f)
{
	if (OFF)
		return REAL(fputs_unlocked)(str, f);
	int e;
	struct line *l = stdio_enter(f, &e);
	if (!l)
		return REAL(fputs_unlocked)(str, f);
	size_t n = strlen(str);
	return stdio_buf(f, l, str, n, e) == (ssize_t)n ? 1 : EOF;
}

HOOK int puts(const char *str)
{
	if (OFF)
		return REAL(puts)(str);
	int e;
	struct line *l = stdio_enter(stdout, &e);
	if (!l)
		return REAL(puts)(str);
	size_t n = strlen(str);
	struct iovec v[2] = { { (void *)str, n }, { "\n", 1 } };
	if (stdio_run(stdout, l, v, 2, n + 1, e) != (ssize_t)(n + 1))
		return EOF;
	return n + 1 > INT_MAX ? INT_MAX : (int)(n + 1);
}

static size_t fw(const void *p, size_t size, size_t nmemb, FILE *f, struct line *l, int e)
{
	if (size == 0 || nmemb == 0 || nmemb > SSIZE_MAX / size) {
		context_guard_leave();
		errno = e;
		return REAL(fwrite)(p, size, nmemb, f);
	}
	ssize_t r = stdio_buf(f, l, p, size * nmemb, e);
	return r <= 0 ? 0 : (size_t)r / size;
}

HOOK size_t fwrite(const void *p, size_t size, size_t nmemb, FILE *f)
{
	if (OFF)
		return REAL(fwrite)(p, size, nmemb, f);
	int e;
	struct line *l = stdio_enter(f, &e);
	if (!l)
		return REAL(fwrite)(p, size, nmemb, f);
	return fw(p, size, nmemb, f, l, e);
}

HOOK size_t fwrite_unlocked(const void *p, size_t size, size_t nmemb, FILE *f)
{
	if (OFF)
		return REAL(fwrite_unlocked)(p, size, nmemb, f);
	int e;
	struct line *l = stdio_enter(f, &e);
	if (!l)
		return REAL(fwrite_unlocked)(p, size, nmemb, f);
	return fw(p, size, nmemb, f, l, e);
}

static int fc(int c, FILE *f, struct line *l, int e)
{
	unsigned char b = (unsigned char)c;
	return stdio_buf(f, l, &b, 1, e) == 1 ? b : EOF;
}

#define PUTC_HOOK(name)                                  \
	HOOK int name(int c, FILE *f)                         \
	{                                                     \
		if (OFF)                                      \
			return REAL(name)(c, f);   \
		int e;                                        \
		struct line *l = stdio_enter(f, &e);          \
		if (!l)                                       \
			return REAL(name)(c, f);   \
		return fc(c, f, l, e);                        \
	}

PUTC_HOOK(fputc)
PUTC_HOOK(fputc_unlocked)
PUTC_HOOK(putc)
PUTC_HOOK(putc_unlocked)

HOOK int putchar(int c)
{
	if (OFF)
		return REAL(putchar)(c);
	int e;
	struct line *l = stdio_enter(stdout, &e);
	if (!l)
		return REAL(putchar)(c);
	return fc(c, stdout, l, e);
}

HOOK int putchar_unlocked(int c)
{
	if (OFF)
		return REAL(putchar_unlocked)(c);
	int e;
	struct line *l = stdio_enter(stdout, &e);
	if (!l)
		return REAL(putchar_unlocked)(c);
	return fc(c, stdout, l, e);
}

/* --- set-up --- */


static void after_fork_child(void)
{
	/* The forking thread may not have been the one holding a mutex. */
	for (int i = 0; i < 2; i++)
		pthread_mutex_init(&raw[i].mu, NULL);
}

void logcorr_init(const struct config *c)
{
	if (!c->log_correlation)
		return;
	/* pthread_atfork from libc_nonshared would reference this strongly. */
	__register_atfork(NULL, NULL, after_fork_child, __dso_handle);
	logcorr_enabled = true;
}
