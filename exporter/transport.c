/* OTLP/HTTP transport: our own HTTP/1.1 client on descriptors the agent owns, TLS and gzip loaded on demand, one backoff for the whole exporter. */
#include "transport.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <zlib.h>

#include "agent/clock.h"
#include "agent/http.h"
#include "agent/ids.h"
#include "agent/log.h"
#include "agent/ownfd.h"
#include "agent/resource.h"
#include "agent/url.h"
#include "exporter/buf.h"
#include "exporter/otlp_proto.h"
#include "exporter/tls.h"

/*
 * Why not libcurl: a library with sockets of its own (its multi handle's
 * wake-up pair, resolver threads) uses descriptor numbers the agent cannot
 * account for, and after a daemon's closefrom() it would read, write and
 * close the app's files under the same numbers. Here every descriptor is
 * opened by us, registered in agent/ownfd.h, and used one non-blocking
 * syscall at a time under its lock. It is also far cheaper per batch.
 */

/* Backoff shared by every batch (OTLP: exponential, with jitter). */
#define BACKOFF_FIRST_MS   1000u
#define BACKOFF_CAP_MS     30000u
/* A Retry-After larger than this is taken as this: a collector's answer
 * must not switch export off for hours. A smaller one than the backoff's own
 * wait is the backoff's. */
#define RETRY_AFTER_CAP_MS (300u * 1000u)
/* Waits are cut into slices this long, so transport_abort is seen promptly. */
#define SLICE_MS 50
/* Response payload kept (partial_success is small). */
#define RESPONSE_KEEP_MAX (64u * 1024u)

static struct {
	__typeof__(deflateInit2_) *init2;
	__typeof__(deflate) *deflate;
	__typeof__(deflateBound) *bound;
	__typeof__(deflateReset) *reset;
} zl;

static const struct config *cfg;
static struct url ep;                  /* views into cfg->endpoint */
static char host_z[256], port_z[8];
static bool host_is_ip;                /* an IP literal: certificates are checked for it as an address */
static struct buf head;                /* the request head up to "Content-Length: " */
static size_t head_fixed;
static struct buf rbody, gz, tls_out;
static _Atomic int abort_requested;
static bool loaded;

/* The connection to the collector, kept alive between batches. */
static struct {
	int slot;          /* ownfd slot, -1 when there is none */
	struct tls *tls;
	bool reused;       /* it carried a request before this one */
} conn = { .slot = -1 };

/* While the collector fails: no attempt before blocked_until (mono_ns). */
static struct {
	uint64_t blocked_until;
	uint32_t step_ms;  /* 0 while the collector is healthy */
} backoff;

/* What one attempt came to. */
struct attempt {
	long status;               /* HTTP status, 0 when there was no answer */
	bool answered;             /* a whole response was read */
	bool retry;                /* the OTLP spec's retryable: 429, 502, 503, 504, connection failures */
	bool back_off;             /* the next attempt, of any batch, must wait */
	bool silent_close;         /* the connection was closed or reset before any answer */
	bool have_retry_after;
	uint64_t retry_after_ms;
	char err[256];             /* why, when there was no 2xx */
};

static const struct http_capture_names retry_after_name = { 1, { "retry-after" }, { 11 } };

static bool aborted(void)
{
	return atomic_load_explicit(&abort_requested, memory_order_relaxed) != 0;
}

/* --- zlib --- */

static void *sym(void *h, const char *name, bool *ok)
{
	void *p = dlsym(h, name);
	if (!p)
		*ok = false;
	return p;
}

static bool load_zlib(void)
{
	void *h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
	bool ok = h != NULL;
	if (ok) {
		zl.init2 = sym(h, "deflateInit2_", &ok);
		zl.deflate = sym(h, "deflate", &ok);
		zl.bound = sym(h, "deflateBound", &ok);
		zl.reset = sym(h, "deflateReset", &ok);
	}
	if (!ok) {
		zl.init2 = NULL;
		log_warn("zlib (libz.so.1) could not be loaded; OTEL_EXPORTER_OTLP_COMPRESSION=gzip ignored");
	}
	return ok;
}

/* One deflate stream for the life of the thread: building a new one per batch
 * means allocating and zeroing ~300 KB each time, which dominated export cost. */
static z_stream zs;
static bool zs_ready;

static bool gzip_body(const void *body, size_t len)
{
	if (!zs_ready) {
		memset(&zs, 0, sizeof zs);
		/* 15 + 16: a gzip wrapper rather than raw zlib, as Content-Encoding: gzip says. */
		if (zl.init2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
			     ZLIB_VERSION, (int)sizeof zs) != Z_OK)
			return false;
		zs_ready = true;
	} else if (zl.reset(&zs) != Z_OK) {
		return false;
	}
	buf_reset(&gz);
	if (!buf_reserve(&gz, zl.bound(&zs, len) + 32))
		return false;
	zs.next_in = (Bytef *)body;
	zs.avail_in = (uInt)len;
	zs.next_out = (Bytef *)gz.p;
	zs.avail_out = (uInt)gz.cap;
	int rc = zl.deflate(&zs, Z_FINISH);
	gz.len = zs.total_out;
	return rc == Z_STREAM_END;
}

/* --- the request head, built once --- */

/* "Authorization: Basic ..." from the URL's user:password (decoded by the
 * configuration), as curl sent it from the same URL. */
static void put_basic_auth(struct buf *b, const char *plain, size_t m)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *u = (const unsigned char *)plain;
	buf_puts(b, "Authorization: Basic ");
	for (size_t i = 0; i < m; i += 3) {
		uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < m ? (uint32_t)u[i + 1] << 8 : 0) | (i + 2 < m ? u[i + 2] : 0);
		char q[4] = { b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < m ? b64[v >> 6 & 63] : '=',
			      i + 2 < m ? b64[v & 63] : '=' };
		buf_append(b, q, 4);
	}
	buf_puts(b, "\r\n");
}

static bool header_safe(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static bool build_head(void)
{
	bool have_auth = false;

	buf_reset(&head);
	buf_puts(&head, "POST ");
	if (ep.path_len)
		buf_append(&head, ep.path, ep.path_len);
	else
		buf_putc(&head, '/');
	if (ep.query) {
		buf_putc(&head, '?');
		buf_append(&head, ep.query, ep.query_len);
	}
	buf_puts(&head, " HTTP/1.1\r\nHost: ");
	const char *auth = ep.userinfo ? ep.userinfo + ep.userinfo_len + 1 : ep.host - (ep.ipv6 ? 1 : 0);
	buf_append(&head, auth, (size_t)(ep.authority_end - auth));
	buf_puts(&head, "\r\nUser-Agent: OTel-OTLP-Exporter-C/" AGENT_VERSION " " AGENT_NAME "/" AGENT_VERSION "\r\n");
	buf_puts(&head, cfg->protocol == OTLP_HTTP_JSON ? "Content-Type: application/json\r\n"
						      : "Content-Type: application/x-protobuf\r\n");
	if (cfg->compression == COMPRESSION_GZIP && zl.init2)
		buf_puts(&head, "Content-Encoding: gzip\r\n");
	for (size_t i = 0; i < cfg->headers.count; i++) {
		const char *k = cfg->headers.key[i], *v = cfg->headers.value[i];
		if (!header_safe(k) || !header_safe(v) || strchr(k, ':')) {
			/* A line break in a value would let it forge headers. */
			log_warn("OTEL_EXPORTER_OTLP_HEADERS: header %zu holds a control character or a bad name; not sent",
				 i + 1);
			continue;
		}
		if (strcasecmp(k, "authorization") == 0)
			have_auth = true;
		buf_puts(&head, k);
		buf_puts(&head, ": ");
		buf_puts(&head, v);
		buf_puts(&head, "\r\n");
	}
	if (cfg->endpoint_userinfo_len && !have_auth)
		put_basic_auth(&head, cfg->endpoint_userinfo, cfg->endpoint_userinfo_len);
	buf_puts(&head, "Content-Length: ");
	head_fixed = head.len;
	return !head.oom;
}

bool transport_init(const struct config *c)
{
	cfg = c;
	if (loaded)
		return true;
	if (!url_parse(c->endpoint, strlen(c->endpoint), &ep) || ep.host_len >= sizeof host_z) {
		log_warn("the endpoint %s cannot be used; spans will not be exported", c->endpoint_shown);
		return false;
	}
	memcpy(host_z, ep.host, ep.host_len);
	host_z[ep.host_len] = '\0';
	unsigned char addr[16];
	host_is_ip = inet_pton(AF_INET, host_z, addr) == 1 || inet_pton(AF_INET6, host_z, addr) == 1;
	snprintf(port_z, sizeof port_z, "%u", ep.port);
	if (c->compression == COMPRESSION_GZIP)
		load_zlib();
	if (!build_head()) {
		log_warn("out of memory preparing export requests; spans will not be exported");
		return false;
	}
	loaded = true;
	return true;
}

/* --- the connection --- */

static void conn_close(void)
{
	tls_free(conn.tls);
	conn.tls = NULL;
	if (conn.slot >= 0)
		ownfd_close(conn.slot);
	conn.slot = -1;
	conn.reused = false;
}

/* Waits until the descriptor is ready for events, the deadline, or an abort.
 * Returns 1 when ready (an error or hang-up counts: the next syscall reports
 * it), 0 at the deadline or an abort, -1 when the app closed the descriptor. */
static int wait_io(short events, uint64_t deadline)
{
	for (;;) {
		if (aborted())
			return 0;
		uint64_t now = clock_mono_ns();
		if (now >= deadline)
			return 0;
		int fd = ownfd_begin(conn.slot);
		if (fd < 0)
			return -1;
		ownfd_end(conn.slot);
		/* poll outside the lock: if the app closes the number meanwhile,
		 * poll only wakes early, and the next ownfd_begin says so. */
		uint64_t left = (deadline - now) / 1000000u + 1;
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, left > SLICE_MS ? SLICE_MS : (int)left);
		if (r > 0)
			return (p.revents & POLLNVAL) ? -1 : 1;
	}
}

/* One non-blocking syscall on our descriptor; -1 with EBADF when the app closed it. */
static long sock_call(long nr, long a2, long a3, long a4, long a5, long a6)
{
	int fd = ownfd_begin(conn.slot);
	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	long r = syscall(nr, fd, a2, a3, a4, a5, a6);
	int e = errno;
	ownfd_end(conn.slot);
	errno = e;
	return r;
}

static void fail_errno(struct attempt *a, const char *what, int e)
{
	a->retry = a->back_off = true;
	a->silent_close = e == EPIPE || e == ECONNRESET || e == ENOTCONN;
	if (e == EBADF)
		snprintf(a->err, sizeof a->err, "%s: the app closed the connection's descriptor", what);
	else
		snprintf(a->err, sizeof a->err, "%s: %s", what, strerror(e));
}

static void fail_wait(struct attempt *a, const char *what, int w)
{
	a->retry = a->back_off = true;
	snprintf(a->err, sizeof a->err, "%s: %s", what,
		 w < 0 ? "the app closed the connection's descriptor" : aborted() ? "aborted at exit" : "timed out");
}

/* Sends all of iov (plaintext on the socket), waiting while it is full. */
static bool send_raw(struct iovec *iov, int cnt, uint64_t deadline, struct attempt *a)
{
	while (cnt > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
		long r = sock_call(SYS_sendmsg, (long)&m, MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0, 0);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR) {
				int w = wait_io(POLLOUT, deadline);
				if (w <= 0) {
					fail_wait(a, "sending to the collector", w);
					return false;
				}
				continue;
			}
			fail_errno(a, "sending to the collector", errno);
			return false;
		}
		size_t done = (size_t)r;
		while (cnt > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return true;
}

/* Sends the TLS records waiting in the session. */
static bool flush_tls(uint64_t deadline, struct attempt *a)
{
	for (;;) {
		buf_reset(&tls_out);
		if (!buf_reserve(&tls_out, 64 * 1024)) {
			a->retry = a->back_off = true;
			snprintf(a->err, sizeof a->err, "out of memory");
			return false;
		}
		size_t n = tls_take_out(conn.tls, tls_out.p, tls_out.cap);
		if (!n)
			return true;
		struct iovec v = { tls_out.p, n };
		if (!send_raw(&v, 1, deadline, a))
			return false;
	}
}

/* Received bytes, decrypted when TLS: > 0, 0 when the collector closed the
 * connection, -1 on failure (a->err set). */
static ssize_t recv_some(char *out, size_t cap, uint64_t deadline, struct attempt *a)
{
	char raw[16384];
	for (;;) {
		if (conn.tls) {
			char err[200];
			ssize_t r = tls_read(conn.tls, out, cap, err, sizeof err);
			if (r > 0)
				return r;
			if (r < 0) {
				a->retry = a->back_off = true;
				snprintf(a->err, sizeof a->err, "%s", err);
				return -1;
			}
			if (!flush_tls(deadline, a))   /* a renegotiation or key update may want to answer */
				return -1;
		}
		char *dst = conn.tls ? raw : out;
		size_t room = conn.tls ? sizeof raw : cap;
		long n = sock_call(SYS_recvfrom, (long)dst, (long)room, MSG_DONTWAIT, 0, 0);
		if (n > 0) {
			if (!conn.tls)
				return n;
			if (!tls_put_in(conn.tls, raw, (size_t)n)) {
				a->retry = a->back_off = true;
				snprintf(a->err, sizeof a->err, "out of memory");
				return -1;
			}
			continue;
		}
		if (n == 0)
			return 0;
		if (errno == EAGAIN || errno == EINTR) {
			int w = wait_io(POLLIN, deadline);
			if (w <= 0) {
				fail_wait(a, "waiting for the collector's answer", w);
				return -1;
			}
			continue;
		}
		fail_errno(a, "receiving from the collector", errno);
		return -1;
	}
}

static bool tls_connect(uint64_t deadline, struct attempt *a)
{
	char err[200];
	if (!tls_setup(cfg, err, sizeof err) || !(conn.tls = tls_open(host_z, host_is_ip, err, sizeof err))) {
		/* Configuration: the same next time, so back off, and don't retry. */
		a->back_off = true;
		snprintf(a->err, sizeof a->err, "%s", err);
		return false;
	}
	for (;;) {
		bool verify_failed;
		enum tls_step st = tls_handshake(conn.tls, &verify_failed, err, sizeof err);
		if (!flush_tls(deadline, a))
			return false;
		if (st == TLS_DONE)
			return true;
		if (st == TLS_FAILED) {
			a->back_off = true;
			snprintf(a->err, sizeof a->err, "%s", err);
			return false;
		}
		char raw[16384];
		long n = sock_call(SYS_recvfrom, (long)raw, sizeof raw, MSG_DONTWAIT, 0, 0);
		if (n > 0) {
			tls_put_in(conn.tls, raw, (size_t)n);
		} else if (n == 0) {
			a->retry = a->back_off = true;
			snprintf(a->err, sizeof a->err, "the collector closed the connection during the TLS handshake");
			return false;
		} else if (errno == EAGAIN || errno == EINTR) {
			int w = wait_io(POLLIN, deadline);
			if (w <= 0) {
				fail_wait(a, "TLS handshake", w);
				return false;
			}
		} else {
			fail_errno(a, "TLS handshake", errno);
			return false;
		}
	}
}

/* A new connection: every address of the host in turn (looked up again each
 * time, so a collector that moved is found), then TLS for https. */
static bool conn_open(uint64_t deadline, struct attempt *a)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host_z, port_z, &hints, &res);
	if (gai != 0) {
		a->retry = a->back_off = true;
		snprintf(a->err, sizeof a->err, "looking up the collector's host: %s", gai_strerror(gai));
		return false;
	}
	bool connected = false;
	for (struct addrinfo *ai = res; ai && !connected && !aborted(); ai = ai->ai_next) {
		long fd = syscall(SYS_socket, ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			fail_errno(a, "creating a socket", errno);
			continue;
		}
		conn.slot = ownfd_add((int)fd);
		if (conn.slot < 0) {
			syscall(SYS_close, fd);
			a->retry = a->back_off = true;
			snprintf(a->err, sizeof a->err, "no room to register another descriptor of the agent");
			break;
		}
		long r = sock_call(SYS_connect, (long)ai->ai_addr, (long)ai->ai_addrlen, 0, 0, 0);
		if (r < 0 && errno == EINPROGRESS) {
			int w = wait_io(POLLOUT, deadline);
			if (w <= 0) {
				fail_wait(a, "connecting to the collector", w);
				conn_close();
				continue;
			}
			int err = 0;
			socklen_t len = sizeof err;
			if (sock_call(SYS_getsockopt, SOL_SOCKET, SO_ERROR, (long)&err, (long)&len, 0) < 0)
				err = errno;
			r = err ? -1 : 0;
			errno = err;
		}
		if (r < 0) {
			fail_errno(a, "connecting to the collector", errno);
			conn_close();
			continue;
		}
		int one = 1;
		sock_call(SYS_setsockopt, IPPROTO_TCP, TCP_NODELAY, (long)&one, sizeof one, 0);
		connected = true;
	}
	freeaddrinfo(res);
	if (!connected)
		return false;
	if (ep.https && !tls_connect(deadline, a)) {
		conn_close();
		return false;
	}
	return true;
}

/* An idle kept-alive connection the collector has closed (or written junk
 * on) reads as ready: don't send a batch into it. */
static bool conn_idle_broken(void)
{
	int fd = ownfd_begin(conn.slot);
	if (fd < 0)
		return true;
	ownfd_end(conn.slot);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) != 0;
}

static bool send_request(const void *body, size_t len, uint64_t deadline, struct attempt *a)
{
	char n[24];
	head.len = head_fixed;
	buf_append(&head, n, (size_t)snprintf(n, sizeof n, "%zu\r\n\r\n", len));
	if (head.oom) {
		a->retry = a->back_off = true;
		snprintf(a->err, sizeof a->err, "out of memory");
		return false;
	}
	if (conn.tls) {
		if (!tls_write(conn.tls, head.p, head.len) || !tls_write(conn.tls, body, len)) {
			a->retry = a->back_off = true;
			snprintf(a->err, sizeof a->err, "TLS write failed");
			return false;
		}
		return flush_tls(deadline, a);
	}
	struct iovec v[2] = { { head.p, head.len }, { (void *)body, len } };
	return send_raw(v, 2, deadline, a);
}

static void classify_status(struct attempt *a, const struct http_response *resp)
{
	long s = resp->status;
	a->status = s;
	if (s >= 200 && s < 300)
		return;
	a->retry = a->back_off = s == 429 || s == 502 || s == 503 || s == 504;
	const struct http_captured *ra = &resp->captured[0];
	if (a->retry && ra->present && ra->len) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		a->have_retry_after = http_retry_after(ra->value, ra->len, now.tv_sec, &a->retry_after_ms);
	}
	snprintf(a->err, sizeof a->err, "HTTP %ld", s);
}

/* Reads one response. *keep: the connection may carry the next request. */
static bool read_response(uint64_t deadline, struct attempt *a, bool *keep)
{
	struct http_response resp;
	struct http_body body;
	char rx[16384];
	bool in_body = false, got_any = false;

	*keep = false;
	buf_reset(&rbody);
	http_response_init(&resp, &retry_after_name);
	for (;;) {
		ssize_t n = recv_some(rx, sizeof rx, deadline, a);
		if (n < 0) {
			a->silent_close = a->silent_close && !got_any;
			return false;
		}
		if (n == 0) {
			if (in_body && body.kind == HTTP_BODY_UNTIL_CLOSE)
				return true;
			a->retry = a->back_off = true;
			a->silent_close = !got_any;
			snprintf(a->err, sizeof a->err, "%s", got_any ? "the collector's answer was cut off"
								      : "the collector closed the connection without answering");
			return false;
		}
		got_any = true;
		const char *p = rx;
		size_t left = (size_t)n;
		while (left) {
			if (!in_body) {
				size_t used = 0;
				enum http_state hs = http_response_feed(&resp, p, left, &used);
				p += used;
				left -= used;
				if (hs == HTTP_HEAD_PARTIAL)
					break;
				if (hs == HTTP_HEAD_ERROR) {
					/* Not an OTLP/HTTP collector on that port: the same
					 * next time, so back off without retrying. */
					a->back_off = true;
					snprintf(a->err, sizeof a->err, "the answer is not HTTP/1.x");
					return false;
				}
				if (resp.status < 200 && resp.status != 101) {
					http_response_init(&resp, &retry_after_name);   /* interim */
					continue;
				}
				classify_status(a, &resp);
				http_body_for_response(&body, &resp, false);
				if (body.error) {
					a->back_off = true;
					snprintf(a->err, sizeof a->err, "HTTP %ld with a body that cannot be framed", a->status);
					return false;
				}
				in_body = true;
			}
			if (body.done)
				break;
			uint64_t ahead = http_body_payload_ahead(&body);
			size_t take = ahead ? (ahead < left ? (size_t)ahead : left) : 1;
			if (ahead && rbody.len < RESPONSE_KEEP_MAX)
				buf_append(&rbody, p, take < RESPONSE_KEEP_MAX - rbody.len ? take : RESPONSE_KEEP_MAX - rbody.len);
			size_t used = http_body_feed(&body, p, take);
			if (body.error) {
				a->back_off = true;
				snprintf(a->err, sizeof a->err, "HTTP %ld with a malformed chunked body", a->status);
				return false;
			}
			p += used;
			left -= used;
		}
		if (in_body && body.done) {
			/* Bytes after the answer would be a second one: don't reuse. */
			bool ka = resp.version_minor == 1 ? !resp.framing.conn_close : resp.framing.conn_keep_alive;
			*keep = ka && body.kind != HTTP_BODY_UNTIL_CLOSE && left == 0 && resp.status != 101;
			return true;
		}
	}
}

static int64_t parse_partial_success(void)
{
	if (!rbody.len)
		return 0;
	if (cfg->protocol == OTLP_HTTP_JSON) {
		const char *p = memmem(rbody.p, rbody.len, "rejectedSpans", 13);
		if (!p)
			return 0;
		p += 13;
		const char *end = rbody.p + rbody.len;
		while (p < end && (*p < '0' || *p > '9'))
			p++;
		int64_t v = 0;
		while (p < end && *p >= '0' && *p <= '9')
			v = v * 10 + (*p++ - '0');
		return v;
	}
	struct otlp_partial_success ps;
	if (!otlp_proto_parse_response(rbody.p, rbody.len, &ps))
		return 0;
	int64_t rejected = ps.rejected_spans;
	if (rejected || ps.error_message_len)
		log_warn("the collector rejected part of a batch: %lld spans rejected: %.*s", (long long)rejected,
			 (int)(ps.error_message_len < 200 ? ps.error_message_len : 200),
			 ps.error_message ? ps.error_message : "");
	return rejected;
}

/* One POST, on the kept connection or a new one. A kept connection the
 * collector closed without answering gets one immediate resend on a fresh
 * connection (any HTTP client does this; it is no sign of trouble). */
static void attempt(const void *body, size_t len, uint64_t deadline, struct attempt *a)
{
	for (int tries = 0; tries < 2; tries++) {
		memset(a, 0, sizeof *a);
		if (conn.slot >= 0 && conn_idle_broken())
			conn_close();
		bool fresh = conn.slot < 0;
		if (fresh && !conn_open(deadline, a))
			return;
		bool keep;
		if (send_request(body, len, deadline, a) && read_response(deadline, a, &keep)) {
			a->answered = true;
			conn.reused = true;
			if (!keep)
				conn_close();
			return;
		}
		bool again = conn.reused && a->silent_close && !aborted();
		conn_close();
		if (!again)
			return;
	}
}

/* Sleeps until mono time t, in slices; false when aborted. */
static bool sleep_until(uint64_t t)
{
	for (;;) {
		if (aborted())
			return false;
		uint64_t now = clock_mono_ns();
		if (now >= t)
			return true;
		uint64_t left = t - now, slice = (uint64_t)SLICE_MS * 1000000u;
		struct timespec ts = { 0, (long)(left < slice ? left : slice) };
		nanosleep(&ts, NULL);
	}
}

static void backoff_step(const struct attempt *a, uint64_t now)
{
	backoff.step_ms = backoff.step_ms ? (backoff.step_ms * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : backoff.step_ms * 2)
					  : BACKOFF_FIRST_MS;
	/* Equal jitter: between half the step and the step, so that processes
	 * that failed together don't all come back together. */
	uint64_t wait = backoff.step_ms / 2 + ids_random_u64() % (backoff.step_ms / 2 + 1);
	/* Retry-After lengthens the wait, never shortens it: "0" or a date in
	 * the past must not bring back a tight loop. */
	if (a->have_retry_after && a->retry_after_ms > wait)
		wait = a->retry_after_ms < RETRY_AFTER_CAP_MS ? a->retry_after_ms : RETRY_AFTER_CAP_MS;
	backoff.blocked_until = now + wait * 1000000u;
}

void transport_send(const void *body, size_t len, uint64_t deadline_ns, bool final, struct transport_outcome *out)
{
	memset(out, 0, sizeof *out);
	out->result = TRANSPORT_FAILED;
	if (!loaded)
		return;
	/* The caller's deadline is on clock_now_ns's clock; ours is monotonic. */
	uint64_t now = clock_mono_ns(), span_now = clock_now_ns();
	uint64_t deadline = now + (deadline_ns > span_now ? deadline_ns - span_now : 0);

	if (cfg->compression == COMPRESSION_GZIP && zl.init2) {
		if (!gzip_body(body, len)) {
			log_warn("gzip compression failed; batch dropped");
			return;
		}
		body = gz.p;
		len = gz.len;
	}
	for (;;) {
		now = clock_mono_ns();
		if (now < backoff.blocked_until) {
			/* One attempt per backoff interval for the whole exporter: a
			 * batch that cannot wait for it is dropped unsent. */
			if (backoff.blocked_until >= deadline || final) {
				out->backed_off = out->attempts == 0;
				return;
			}
			if (!sleep_until(backoff.blocked_until)) {
				out->result = TRANSPORT_ABORTED;
				return;
			}
		}
		struct attempt a;
		uint64_t per_try = clock_mono_ns() + (uint64_t)cfg->timeout_ms * 1000000u;
		attempt(body, len, per_try < deadline ? per_try : deadline, &a);
		out->attempts++;
		out->http_status = a.status;
		if (aborted()) {
			out->result = TRANSPORT_ABORTED;
			return;
		}
		now = clock_mono_ns();
		if (a.answered && a.status >= 200 && a.status < 300) {
			backoff.step_ms = 0;
			backoff.blocked_until = 0;
			out->rejected_spans = parse_partial_success();
			out->result = TRANSPORT_OK;
			return;
		}
		if (a.back_off) {
			backoff_step(&a, now);
		} else {
			backoff.step_ms = 0;   /* the collector answered: it is up */
			backoff.blocked_until = 0;
		}
		if (!a.retry) {
			log_warn("export to %s failed (%s); the batch is dropped, not retried", cfg->endpoint_shown, a.err);
			return;
		}
		if (backoff.blocked_until >= deadline || final) {
			log_warn("export to %s failed (%s); the batch is dropped, and exports back off while failures last",
				 cfg->endpoint_shown, a.err);
			return;
		}
		log_debug("export attempt %d failed (%s); next attempt in %llu ms", out->attempts, a.err,
			  (unsigned long long)((backoff.blocked_until - now) / 1000000u));
	}
}

void transport_abort(void)
{
	atomic_store(&abort_requested, 1);
}

void transport_reset_after_fork(void)
{
	/* The parent's connection and buffers may have been mid-use by its
	 * export thread: leak them rather than reuse them. The descriptor is
	 * the child's copy, closed by ownfd_after_fork_child. The backoff state
	 * is kept: a collector the parent found down is down for the child too. */
	conn.slot = -1;
	conn.tls = NULL;
	conn.reused = false;
	atomic_store(&abort_requested, 0);
	loaded = false;
	memset(&head, 0, sizeof head);
	memset(&rbody, 0, sizeof rbody);
	memset(&gz, 0, sizeof gz);
	memset(&tls_out, 0, sizeof tls_out);
	zs_ready = false;
}
