/* HTTP/1.x through libc sockets: per-fd state, SERVER and CLIENT spans, W3C extraction and injection. */
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/http.h"
#include "agent/log.h"
#include "agent/ownfd.h"
#include "agent/perthread.h"
#include "agent/propagation.h"
#include "agent/span.h"
#include "hooks/init.h"
#include "hooks/logcorr.h"
#include "hooks/real.h"

/*
 * Per-fd state lives in a two-level table indexed by fd: chunks of 64 states
 * are mapped on first use and never freed, so a lookup is two loads and no
 * lock, and a regular file or pipe (an fd no accept/connect of ours marked)
 * costs only that lookup. Each tracked connection has its own mutex, taken
 * only around parsing, never around the app's blocking I/O (except while we
 * send an injected request head, which must not interleave with another
 * writer).
 */

enum fd_kind {
	FD_NONE = 0,
	FD_SERVER_PENDING,   /* accepted, first bytes not seen yet */
	FD_CLIENT_PENDING,   /* connected, first bytes not sent yet */
	FD_SERVER,           /* HTTP/1.x server connection */
	FD_CLIENT,           /* HTTP/1.x client connection */
	FD_IGNORED,          /* anything else: pass through untouched */
};

#define PIPELINE_MAX 64
#define IOV_MAX_LOCAL 64
/* Interposed entry points are the only symbols the .so exports. */
#define HOOK __attribute__((visibility("default")))
#define INJECT_MAX (TRACEPARENT_LEN + TRACESTATE_MAX + BAGGAGE_MAX + 64)

struct pending {
	struct span *sp;     /* NULL when unsampled */
	/* Enough of the span's context to make it current later, when the
	 * requests before it in a pipeline have been answered. */
	uint8_t trace_id[16], span_id[8];
	uint8_t flags;
	bool head : 1;       /* HEAD request: the response has no body */
	bool connect : 1;    /* CONNECT: a 2xx answer turns the stream into a tunnel */
	bool skip_blind : 1; /* one of the skip_after requests is a HEAD or CONNECT */
	/* Requests pipelined right after this one while the FIFO was full: they
	 * have no entry and no span (counted as dropped), but their responses,
	 * which come before the next entry's, are framed, so that every later
	 * response still goes to its own request. */
	uint32_t skip_after;
};

struct server_side {
	bool head_started, in_body, resp_started, resp_in_body;
	/* Untracked requests (see pending.skip_after) answered before
	 * fifo[fifo_first]; blind: their responses can't be framed. */
	bool skip_head_blind;
	uint32_t skip_head;
	uint64_t head_start_ns;
	struct http_request req;
	struct http_body req_body;
	struct pending fifo[PIPELINE_MAX];
	unsigned fifo_first, fifo_len;
	struct http_response resp;
	struct http_body resp_body;
};

struct client_side {
	bool req_started, req_in_body, span_open, is_head, is_connect, resp_started, resp_in_body;
	uint64_t req_start_ns;
	uint64_t stream_pos;     /* the app's bytes the kernel has taken */
	uint64_t parsed_pos;     /* the app's bytes fed to the parser */
	uint64_t head_start_pos;
	uint64_t inject_pos;     /* stream offset of the injection; UINT64_MAX when none */
	uint16_t inject_len, inject_sent;
	bool inject_replaces;    /* inject overwrites inject_len of the app's bytes at inject_pos */
	struct span *sp;
	struct http_request req;
	struct http_body req_body;
	struct http_response resp;
	struct http_body resp_body;
	char inject[INJECT_MAX];
};

struct fd_state {
	pthread_mutex_t mu;
	_Atomic uint8_t kind;
	uint8_t detect_len;
	char detect[8];
	uint32_t gen;
	bool connecting;     /* connect() not finished: a failure still to be seen */
	uint64_t connect_ns;
	struct sockaddr_storage peer, local;
	socklen_t peer_len, local_len;
	union {
		struct server_side srv;
		struct client_side cli;
	} u;
};

#define CHUNK_BITS 6
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define MAX_FD (1u << 20)

static _Atomic(struct fd_state *) chunks[MAX_FD >> CHUNK_BITS];

static struct http_capture_names cap_srv_req, cap_srv_resp, cap_cli_req, cap_cli_resp;
static struct http_routes routes;
static bool inject_tracecontext, inject_baggage;

/* The server request this thread is handling: its context is current. */
struct binding {
	struct fd_state *st;
	uint32_t gen;
	bool active;
	struct context_token tok;
};

/* Large temporaries live per thread, not on the stack of a read() hook:
 * app threads may have small stacks. */
struct scratch {
	struct trace_context parent, ctx;
	struct tracestate_parser tsp;
	char name[HTTP_METHOD_MAX + HTTP_TARGET_MAX + 2];
	char url[HTTP_HOST_MAX + HTTP_TARGET_MAX + 16];
};

/* A request this thread served that carried a traceparent: a proxy
 * forwarding that header on is recognised by it (forwarded_traceparent). */
struct received {
	uint8_t trace_id[16];
	uint8_t parent_id[8];    /* the parent-id it carried */
	uint8_t span_id[8];      /* its SERVER span */
	uint8_t flags;
	bool used;
};

/* Requests recognised among the last RECEIVED_MAX begun on a thread: an
 * event loop (nginx, haproxy) may read other requests before it forwards one. */
#define RECEIVED_MAX 16

/* All per thread, in memory made on the thread's first use of them, not in
 * static TLS, which every thread of the app would pay for (agent/perthread.h). */
struct socket_thread {
	struct binding binding;
	struct scratch scratch;
	struct received received[RECEIVED_MAX];
	unsigned received_next;
};
static __thread struct socket_thread *sock_tls AGENT_TLS;

/* NULL when there is no memory for it: the caller stops following the
 * connection, and the app's calls pass through. */
static inline struct socket_thread *sock_thread(void)
{
	return perthread_get((void **)&sock_tls, sizeof *sock_tls);
}

static inline struct fd_state *fd_lookup(int fd)
{
	if ((unsigned)fd >= MAX_FD)
		return NULL;
	struct fd_state *c = atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_acquire);
	if (!c)
		return NULL;
	struct fd_state *st = &c[(unsigned)fd & (CHUNK_SIZE - 1)];
	uint8_t k = atomic_load_explicit(&st->kind, memory_order_relaxed);
	return k == FD_NONE || k == FD_IGNORED ? NULL : st;
}

static struct fd_state *fd_claim(int fd)
{
	if ((unsigned)fd >= MAX_FD)
		return NULL;
	_Atomic(struct fd_state *) *slot = &chunks[(unsigned)fd >> CHUNK_BITS];
	struct fd_state *c = atomic_load_explicit(slot, memory_order_acquire);
	if (!c) {
		size_t bytes = CHUNK_SIZE * sizeof(struct fd_state);
		void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		struct fd_state *fresh = p;
		for (unsigned i = 0; i < CHUNK_SIZE; i++)
			pthread_mutex_init(&fresh[i].mu, NULL);
		struct fd_state *expected = NULL;
		if (atomic_compare_exchange_strong(slot, &expected, fresh)) {
			c = fresh;
		} else {
			munmap(p, bytes);
			c = expected;
		}
	}
	return &c[(unsigned)fd & (CHUNK_SIZE - 1)];
}

/* --- small helpers --- */

static bool known_method(const char *m, size_t n)
{
	static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
					     "OPTIONS", "TRACE", "PATCH", "QUERY" };
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strlen(known[i]) == n && memcmp(known[i], m, n) == 0)
			return true;
	return false;
}

static void set_addr(struct span *sp, const char *key_addr, const char *key_port,
		     const struct sockaddr_storage *ss, socklen_t len)
{
	char buf[INET6_ADDRSTRLEN];
	if (!sp || !len)
		return;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf))
			span_set_cstr(sp, key_addr, buf);
		span_set_int(sp, key_port, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf))
			span_set_cstr(sp, key_addr, buf);
		span_set_int(sp, key_port, ntohs(a->sin6_port));
	}
}

/* Splits a Host header into address and port ("[::1]:8080", "h:80", "h"). */
static bool split_host(const char *h, size_t n, const char **addr, size_t *alen, long *port)
{
	*port = -1;
	if (!n)
		return false;
	if (h[0] == '[') {
		const char *end = memchr(h, ']', n);
		if (!end)
			return false;
		*addr = h + 1;
		*alen = (size_t)(end - h - 1);
		if ((size_t)(end - h) + 1 < n && end[1] == ':') {
			long v = 0;
			for (const char *p = end + 2; p < h + n; p++) {
				if (*p < '0' || *p > '9' || v > 65535)
					return true;
				v = v * 10 + (*p - '0');
			}
			*port = v;
		}
		return true;
	}
	const char *colon = memchr(h, ':', n);
	*addr = h;
	*alen = colon ? (size_t)(colon - h) : n;
	if (colon) {
		long v = 0;
		for (const char *p = colon + 1; p < h + n; p++) {
			if (*p < '0' || *p > '9' || v > 65535)
				return true;
			v = v * 10 + (*p - '0');
		}
		*port = v;
	}
	return true;
}

static void set_captured(struct span *sp, const char *prefix, const struct http_capture_names *names,
			 const struct http_captured *cap)
{
	char key[96];
	if (!sp || !names)
		return;
	for (unsigned i = 0; i < names->count; i++) {
		if (!cap[i].present)
			continue;
		int n = snprintf(key, sizeof key, "%s%.*s", prefix, (int)names->len[i], names->name[i]);
		if (n <= 0 || (size_t)n >= sizeof key)
			continue;
		const char *v = cap[i].value;
		size_t l = cap[i].len;
		span_set_str_array(sp, key, &v, &l, 1);
	}
}

/* The final response's status on a span: per the conventions, 5xx is an
 * error for a server and 4xx too for a client (error_from). */
static void record_response(struct span *sp, const struct http_response *resp, unsigned error_from)
{
	if (!sp)
		return;
	unsigned code = resp->status;
	span_set_int(sp, "http.response.status_code", code);
	if (code >= error_from) {
		char et[8];
		int l = snprintf(et, sizeof et, "%u", code);
		span_set_str(sp, "error.type", et, (size_t)l);
		span_set_status(sp, SPAN_STATUS_ERROR, NULL, 0);
	}
	set_captured(sp, "http.response.header.", resp->capture, resp->captured);
}

/* --- thread binding: the server span current on the thread reading its request --- */

static void binding_release(struct fd_state *st)
{
	struct binding *b = sock_tls ? &sock_tls->binding : NULL;
	if (b && b->active && b->st == st && b->gen == st->gen) {
		context_detach(&b->tok);
		b->active = false;
	}
}

static void binding_set(struct fd_state *st, const struct trace_context *ctx)
{
	struct socket_thread *t = sock_thread();
	if (!t)
		return;
	struct binding *b = &t->binding;
	/* A thread serving requests one after another (or an event loop moving
	 * to another connection) replaces, never stacks, the request context. */
	if (b->active) {
		context_detach(&b->tok);
		b->active = false;
	}
	context_attach(ctx, &b->tok);
	b->st = st;
	b->gen = st->gen;
	b->active = true;
}

/* --- server side --- */

static void srv_give_up(struct fd_state *st);

/* False when the connection could not be followed further (given up). */
static bool srv_request_begin(struct fd_state *st)
{
	struct server_side *s = &st->u.srv;
	struct http_request *r = &s->req;
	struct socket_thread *t = sock_thread();
	if (!t) {
		srv_give_up(st);
		return false;
	}
	struct scratch *x = &t->scratch;

	/* Extract: an invalid or repeated traceparent starts a new trace and
	 * drops tracestate (W3C); never inherit whatever the thread had. */
	context_clear(&x->parent);
	if (inject_tracecontext && r->traceparent_count == 1 &&
	    propagation_parse_traceparent(r->traceparent, r->traceparent_len, &x->parent)) {
		if (r->tracestate_len) {
			propagation_tracestate_begin(&x->tsp, &x->parent);
			propagation_tracestate_add(&x->tsp, r->tracestate, r->tracestate_len);
			propagation_tracestate_end(&x->tsp);
		}
	} else {
		context_clear(&x->parent);
	}
	if (inject_baggage && r->baggage_len)
		propagation_baggage_add(&x->parent, r->baggage, r->baggage_len);

	const char *path, *query;
	size_t path_len, query_len;
	http_split_target(r->target, r->target_len, &path, &path_len, &query, &query_len);
	size_t tmpl_len = 0;
	const char *route = routes.count ? http_routes_match(&routes, path, path_len, &tmpl_len) : NULL;
	bool known = known_method(r->method, r->method_len);
	const char *method = known ? r->method : "HTTP";
	size_t mlen = known ? r->method_len : 4;
	int nlen = route ? snprintf(x->name, sizeof x->name, "%.*s %.*s", (int)mlen, method, (int)tmpl_len, route)
			 : snprintf(x->name, sizeof x->name, "%.*s", (int)mlen, method);
	if (nlen < 0)
		nlen = 0;
	if ((size_t)nlen >= sizeof x->name)
		nlen = sizeof x->name - 1;

	struct span *sp = span_start(SPAN_KIND_SERVER, x->name, (size_t)nlen, &x->parent, &x->ctx);
	if (x->parent.valid) {
		/* Noted for a proxy that forwards this traceparent on. */
		struct received *rc = &t->received[t->received_next++ % RECEIVED_MAX];
		memcpy(rc->trace_id, x->parent.trace_id, 16);
		memcpy(rc->parent_id, x->parent.span_id, 8);
		memcpy(rc->span_id, x->ctx.span_id, 8);
		rc->flags = x->ctx.flags;
		rc->used = true;
	}
	if (sp) {
		span_set_start_time(sp, s->head_start_ns);
		if (known) {
			span_set_str(sp, "http.request.method", r->method, r->method_len);
		} else {
			span_set_cstr(sp, "http.request.method", "_OTHER");
			span_set_str(sp, "http.request.method_original", r->method, r->method_len);
		}
		span_set_str(sp, "url.path", path, path_len);
		if (query)
			span_set_str(sp, "url.query", query, query_len);
		span_set_cstr(sp, "url.scheme", "http");
		if (route)
			span_set_str(sp, "http.route", route, tmpl_len);
		const char *haddr;
		size_t hlen;
		long hport;
		if (split_host(r->host, r->host_len, &haddr, &hlen, &hport)) {
			span_set_str(sp, "server.address", haddr, hlen);
			span_set_int(sp, "server.port", hport >= 0 ? hport : 80);
		} else {
			set_addr(sp, "server.address", "server.port", &st->local, st->local_len);
		}
		set_addr(sp, "client.address", "client.port", &st->peer, st->peer_len);
		span_set_cstr(sp, "network.protocol.version", r->version_minor ? "1.1" : "1.0");
		if (r->user_agent_len)
			span_set_str(sp, "user_agent.original", r->user_agent, r->user_agent_len);
		set_captured(sp, "http.request.header.", r->capture, r->captured);
	}
	bool head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
	bool connect = r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0;
	if (s->fifo_len == PIPELINE_MAX) {
		/* Deeper pipelining than we follow: no span (counted as
		 * dropped), but its place in the order is kept. */
		struct pending *last = &s->fifo[(s->fifo_first + PIPELINE_MAX - 1) % PIPELINE_MAX];
		last->skip_after++;
		if (head || connect)
			last->skip_blind = true;
		span_drop(sp);
		return true;
	}
	unsigned i = (s->fifo_first + s->fifo_len++) % PIPELINE_MAX;
	struct pending *pend = &s->fifo[i];
	pend->sp = sp;
	pend->head = head;
	pend->connect = connect;
	memcpy(pend->trace_id, x->ctx.trace_id, 16);
	memcpy(pend->span_id, x->ctx.span_id, 8);
	pend->flags = x->ctx.flags;
	pend->skip_blind = false;
	pend->skip_after = 0;
	/* A server handles pipelined requests in order: the oldest unanswered
	 * one is what the thread works on now. Later ones become current as
	 * the responses before them complete (srv_finish). */
	if (s->fifo_len == 1 && !s->skip_head)
		binding_set(st, &x->ctx);
	return true;
}

/* The oldest unanswered request has its whole response: its span ends (an
 * untracked request has none), and the next one becomes current. */
static void srv_finish(struct fd_state *st)
{
	struct server_side *s = &st->u.srv;
	if (s->skip_head) {
		s->skip_head--;
	} else if (s->fifo_len) {
		struct pending *p = &s->fifo[s->fifo_first];
		span_end(p->sp);
		p->sp = NULL;
		s->skip_head = p->skip_after;
		s->skip_head_blind = p->skip_blind;
		s->fifo_first = (s->fifo_first + 1) % PIPELINE_MAX;
		s->fifo_len--;
		binding_release(st);
	} else {
		return;
	}
	s->resp_started = s->resp_in_body = false;
	/* Requests one at a time keep using the first entry: the rest of the
	 * FIFO's pages are only touched by a connection that pipelines. */
	if (!s->fifo_len)
		s->fifo_first = 0;
	if (!s->skip_head)
		s->skip_head_blind = false;
	/* While untracked requests are answered, no request context is current. */
	struct socket_thread *t = s->fifo_len && !s->skip_head ? sock_thread() : NULL;
	if (t) {
		/* The next pipelined request is now being handled (tracestate and
		 * baggage of pipelined requests after the first are not kept). */
		struct pending *next = &s->fifo[s->fifo_first];
		struct trace_context *c = &t->scratch.ctx;
		context_clear(c);
		memcpy(c->trace_id, next->trace_id, 16);
		memcpy(c->span_id, next->span_id, 8);
		c->flags = next->flags;
		c->valid = true;
		binding_set(st, c);
	}
}

/* The rest of the connection can't be followed (not HTTP any more, or
 * framing we can't trust): the spans still waiting for their responses are
 * dropped and counted, never ended with made-up results. */
static void srv_give_up(struct fd_state *st)
{
	struct server_side *s = &st->u.srv;
	for (; s->fifo_len; s->fifo_len--) {
		span_drop(s->fifo[s->fifo_first].sp);
		s->fifo[s->fifo_first].sp = NULL;
		s->fifo_first = (s->fifo_first + 1) % PIPELINE_MAX;
	}
	s->fifo_first = 0;
	s->skip_head = 0;
	binding_release(st);
	atomic_store(&st->kind, FD_IGNORED);
}

static void srv_incoming(struct fd_state *st, const char *p, size_t n)
{
	struct server_side *s = &st->u.srv;
	while (n > 0) {
		if (!s->in_body) {
			if (!s->head_started) {
				s->head_started = true;
				s->head_start_ns = span_now_ns();
				http_request_init(&s->req, cap_srv_req.count ? &cap_srv_req : NULL);
			}
			size_t used = 0;
			enum http_state hs = http_request_feed(&s->req, p, n, &used);
			p += used;
			n -= used;
			if (hs == HTTP_HEAD_PARTIAL)
				return;
			if (hs == HTTP_HEAD_ERROR) {
				srv_give_up(st);
				return;
			}
			if (!srv_request_begin(st))
				return;
			http_body_for_request(&s->req_body, &s->req);
			s->in_body = !s->req_body.done;
			if (!s->in_body)
				s->head_started = false;
		} else {
			size_t used = http_body_feed(&s->req_body, p, n);
			p += used;
			n -= used;
			if (s->req_body.error) {
				srv_give_up(st);
				return;
			}
			if (!s->req_body.done)
				return;
			s->in_body = false;
			s->head_started = false;
		}
	}
}

/* p is NULL for bytes we can't see (sendfile): they only count as body. */
static void srv_outgoing(struct fd_state *st, const char *p, size_t n)
{
	struct server_side *s = &st->u.srv;
	while (n > 0 && (s->fifo_len || s->skip_head)) {
		/* NULL: the response of a request pipelined beyond the FIFO. */
		struct pending *pend = s->skip_head ? NULL : &s->fifo[s->fifo_first];
		if (!s->resp_in_body) {
			if (!p)
				return;
			if (!s->resp_started) {
				if (!pend && s->skip_head_blind) {
					/* Which of them was HEAD is unknown: so is where
					 * this response ends, and every one after it. */
					srv_give_up(st);
					return;
				}
				s->resp_started = true;
				http_response_init(&s->resp, cap_srv_resp.count ? &cap_srv_resp : NULL);
			}
			size_t used = 0;
			enum http_state hs = http_response_feed(&s->resp, p, n, &used);
			p += used;
			n -= used;
			if (hs == HTTP_HEAD_PARTIAL)
				return;
			if (hs == HTTP_HEAD_ERROR) {
				srv_give_up(st);
				return;
			}
			unsigned code = s->resp.status;
			if (code >= 100 && code < 200 && code != 101) {
				s->resp_started = false;   /* interim (100 Continue): the final response follows */
				continue;
			}
			if (pend)
				record_response(pend->sp, &s->resp, 500);
			if (code == 101 || (pend && pend->connect && code >= 200 && code < 300)) {
				/* Switching protocols (WebSocket...) or a CONNECT tunnel:
				 * what follows isn't HTTP/1.x. */
				srv_finish(st);
				srv_give_up(st);
				return;
			}
			http_body_for_response(&s->resp_body, &s->resp, pend && pend->head);
			if (s->resp_body.done)
				srv_finish(st);
			else
				s->resp_in_body = true;
		} else {
			size_t used;
			if (p) {
				used = http_body_feed(&s->resp_body, p, n);
				p += used;
			} else {
				/* Opaque bytes can only be counted against a length. */
				if (s->resp_body.kind != HTTP_BODY_LENGTH)
					return;
				used = n < s->resp_body.remaining ? n : (size_t)s->resp_body.remaining;
				s->resp_body.remaining -= used;
				if (!s->resp_body.remaining)
					s->resp_body.done = true;
			}
			n -= used;
			if (s->resp_body.error) {
				srv_give_up(st);
				return;
			}
			if (!s->resp_body.done)
				return;
			srv_finish(st);
		}
	}
}

static void srv_close(struct fd_state *st)
{
	struct server_side *s = &st->u.srv;
	/* A response that runs until close is complete now; anything else was cut. */
	while (s->fifo_len)
		srv_finish(st);
}

/* --- client side --- */

/*
 * A proxy (nginx, haproxy, lighttpd) forwards its client's traceparent as it
 * is: sent on, it would make the next hop a child of that client, beside
 * the proxy's own spans. A forwarded copy is recognised by value: one
 * version-00 traceparent whose trace-id and parent-id are exactly those a
 * request recently served on this thread carried (an event loop may have
 * read others since, so not only the current one). Then the CLIENT span is
 * that request's SERVER span's child, whatever the thread's current context,
 * and the header is replaced by the CLIENT span's context, as the exec hooks
 * do for an inherited TRACEPARENT. Any other value (the app's own context,
 * another trace) is the app's choice. On true, x->parent is the SERVER span's
 * context.
 */
static bool forwarded_traceparent(const struct http_request *r, struct socket_thread *t)
{
	struct scratch *x = &t->scratch;
	if (!inject_tracecontext || r->traceparent_count != 1 || r->traceparent_len != TRACEPARENT_LEN ||
	    memcmp(r->traceparent, "00-", 3) != 0 ||
	    !propagation_parse_traceparent(r->traceparent, r->traceparent_len, &x->parent))
		return false;
	for (unsigned k = 1; k <= RECEIVED_MAX; k++) {
		const struct received *rc = &t->received[(t->received_next - k) % RECEIVED_MAX];
		if (!rc->used || memcmp(rc->trace_id, x->parent.trace_id, 16) != 0 ||
		    memcmp(rc->parent_id, x->parent.span_id, 8) != 0)
			continue;
		context_clear(&x->parent);
		memcpy(x->parent.trace_id, rc->trace_id, 16);
		memcpy(x->parent.span_id, rc->span_id, 8);
		x->parent.flags = rc->flags;
		x->parent.valid = true;
		return true;
	}
	return false;
}

/* False when the connection could not be followed further (no memory for
 * this thread's state): it is passed through from then on. */
static bool cli_request_begin(struct fd_state *st)
{
	struct client_side *c = &st->u.cli;
	struct http_request *r = &c->req;
	struct socket_thread *t = sock_thread();
	if (!t) {
		c->inject_len = c->inject_sent = 0;
		c->inject_pos = UINT64_MAX;
		atomic_store(&st->kind, FD_IGNORED);
		return false;
	}
	struct scratch *x = &t->scratch;
	bool known = known_method(r->method, r->method_len);
	bool forwarded = r->traceparent_count && forwarded_traceparent(r, t);

	struct span *sp = span_start(SPAN_KIND_CLIENT, known ? r->method : "HTTP",
				     known ? r->method_len : 4, forwarded ? &x->parent : NULL, &x->ctx);
	c->sp = sp;
	c->span_open = true;
	c->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
	c->is_connect = r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0;
	c->resp_started = c->resp_in_body = false;
	if (sp) {
		span_set_start_time(sp, c->req_start_ns);
		if (known) {
			span_set_str(sp, "http.request.method", r->method, r->method_len);
		} else {
			span_set_cstr(sp, "http.request.method", "_OTHER");
			span_set_str(sp, "http.request.method_original", r->method, r->method_len);
		}
		const char *haddr;
		size_t hlen;
		long hport;
		bool host = split_host(r->host, r->host_len, &haddr, &hlen, &hport);
		if (host) {
			span_set_str(sp, "server.address", haddr, hlen);
			span_set_int(sp, "server.port", hport >= 0 ? hport : 80);
		} else {
			set_addr(sp, "server.address", "server.port", &st->peer, st->peer_len);
		}
		/* The Host header names the server (above); the socket says
		 * which address and port actually answered. */
		set_addr(sp, "network.peer.address", "network.peer.port", &st->peer, st->peer_len);
		int n;
		if (r->target_len && r->target[0] != '/')
			n = snprintf(x->url, sizeof x->url, "%.*s", (int)r->target_len, r->target);  /* absolute-form (proxies) */
		else if (host)
			n = snprintf(x->url, sizeof x->url, "http://%.*s%.*s", (int)r->host_len, r->host,
				     (int)r->target_len, r->target);
		else
			n = 0;
		if (n > 0)
			span_set_str(sp, "url.full", x->url, (size_t)n < sizeof x->url ? (size_t)n : sizeof x->url - 1);
		span_set_cstr(sp, "network.protocol.version", r->version_minor ? "1.1" : "1.0");
		set_captured(sp, "http.request.header.", r->capture, r->captured);
	}

	/* Inject unless the app propagates itself (then one traceparent, its
	 * own), or, when it only forwards what it was sent, put ours in its place. */
	c->inject_len = c->inject_sent = 0;
	c->inject_pos = UINT64_MAX;
	c->inject_replaces = false;
	if (r->traceparent_count) {
		uint64_t at = c->head_start_pos + r->traceparent_off;
		/* A head written in pieces may have sent it already: then it stays. */
		if (forwarded && at >= c->stream_pos) {
			propagation_format_traceparent(&x->ctx, c->inject);
			c->inject_len = TRACEPARENT_LEN;
			c->inject_pos = at;
			c->inject_replaces = true;
		}
		return true;
	}
	if (!inject_tracecontext && !inject_baggage)
		return true;
	bool crlf;
	uint32_t at = http_request_end_of_headers(r, &crlf);
	const char *eol = crlf ? "\r\n" : "\n";
	char tp[TRACEPARENT_LEN + 1];
	size_t len = 0;
	if (inject_tracecontext) {
		propagation_format_traceparent(&x->ctx, tp);
		len += (size_t)snprintf(c->inject + len, sizeof c->inject - len, "traceparent: %s%s", tp, eol);
		if (x->ctx.tracestate_len)
			len += (size_t)snprintf(c->inject + len, sizeof c->inject - len, "tracestate: %.*s%s",
						(int)x->ctx.tracestate_len, context_tracestate(&x->ctx), eol);
	}
	if (inject_baggage && x->ctx.baggage_len && len < sizeof c->inject)
		len += (size_t)snprintf(c->inject + len, sizeof c->inject - len, "baggage: %.*s%s",
					(int)x->ctx.baggage_len, context_baggage(&x->ctx), eol);
	if (len >= sizeof c->inject)
		return true;  /* can't happen with the caps above; never send a cut header */
	c->inject_len = (uint16_t)len;
	c->inject_pos = c->head_start_pos + at;
	return true;
}

static void cli_finish(struct fd_state *st)
{
	struct client_side *c = &st->u.cli;
	if (!c->span_open)
		return;
	span_end(c->sp);
	c->sp = NULL;
	c->span_open = false;
	c->resp_started = c->resp_in_body = false;
}

/* Feeds outgoing bytes at stream offset off (only those not parsed yet). */
static void cli_parse_out(struct fd_state *st, const char *p, size_t n, uint64_t off)
{
	struct client_side *c = &st->u.cli;
	if (off + n <= c->parsed_pos)
		return;
	if (off < c->parsed_pos) {
		p += c->parsed_pos - off;
		n -= (size_t)(c->parsed_pos - off);
	}
	while (n > 0) {
		if (!c->req_in_body) {
			if (!c->req_started) {
				/* A new request before the last response ended: that span is over. */
				cli_finish(st);
				c->req_started = true;
				c->req_start_ns = span_now_ns();
				c->head_start_pos = c->parsed_pos;
				http_request_init(&c->req, cap_cli_req.count ? &cap_cli_req : NULL);
			}
			size_t used = 0;
			enum http_state hs = http_request_feed(&c->req, p, n, &used);
			p += used;
			n -= used;
			c->parsed_pos += used;
			if (hs == HTTP_HEAD_PARTIAL)
				return;
			if (hs == HTTP_HEAD_ERROR) {
				atomic_store(&st->kind, FD_IGNORED);
				return;
			}
			if (!cli_request_begin(st))
				return;
			http_body_for_request(&c->req_body, &c->req);
			c->req_in_body = !c->req_body.done;
			if (!c->req_in_body)
				c->req_started = false;
		} else {
			size_t used = http_body_feed(&c->req_body, p, n);
			p += used;
			n -= used;
			c->parsed_pos += used;
			if (c->req_body.error) {
				atomic_store(&st->kind, FD_IGNORED);
				return;
			}
			if (!c->req_body.done)
				return;
			c->req_in_body = false;
			c->req_started = false;
		}
	}
}

static void cli_incoming(struct fd_state *st, const char *p, size_t n)
{
	struct client_side *c = &st->u.cli;
	while (n > 0 && c->span_open) {
		if (!c->resp_in_body) {
			if (!c->resp_started) {
				c->resp_started = true;
				http_response_init(&c->resp, cap_cli_resp.count ? &cap_cli_resp : NULL);
			}
			size_t used = 0;
			enum http_state hs = http_response_feed(&c->resp, p, n, &used);
			p += used;
			n -= used;
			if (hs == HTTP_HEAD_PARTIAL)
				return;
			if (hs == HTTP_HEAD_ERROR) {
				cli_finish(st);
				atomic_store(&st->kind, FD_IGNORED);
				return;
			}
			unsigned code = c->resp.status;
			if (code >= 100 && code < 200 && code != 101) {
				c->resp_started = false;
				continue;
			}
			record_response(c->sp, &c->resp, 400);
			if (code == 101 || (c->is_connect && code >= 200 && code < 300)) {
				cli_finish(st);
				atomic_store(&st->kind, FD_IGNORED);
				return;
			}
			http_body_for_response(&c->resp_body, &c->resp, c->is_head);
			if (c->resp_body.done)
				cli_finish(st);
			else
				c->resp_in_body = true;
		} else {
			size_t used = http_body_feed(&c->resp_body, p, n);
			p += used;
			n -= used;
			if (c->resp_body.error) {
				cli_finish(st);
				atomic_store(&st->kind, FD_IGNORED);
				return;
			}
			if (!c->resp_body.done)
				return;
			cli_finish(st);
		}
	}
}

/* --- dispatch --- */

/* First bytes of a connection decide whether we follow it. */
static bool detect(struct fd_state *st, const char *p, size_t n, enum http_detect want)
{
	size_t take = n < sizeof st->detect - st->detect_len ? n : sizeof st->detect - st->detect_len;
	memcpy(st->detect + st->detect_len, p, take);
	st->detect_len += (uint8_t)take;
	enum http_detect d = http_detect(st->detect, st->detect_len);
	if (d == HTTP_DETECT_NEED_MORE && st->detect_len < sizeof st->detect)
		return false;
	if (d != want) {
		atomic_store(&st->kind, FD_IGNORED);
		return false;
	}
	return true;
}

/* Bytes the app received on fd (already read by the real call). */
static void on_incoming(struct fd_state *st, const char *p, size_t n)
{
	pthread_mutex_lock(&st->mu);
	switch (atomic_load(&st->kind)) {
	case FD_SERVER_PENDING: {
		/* The first bytes may arrive one at a time: the detector keeps a
		 * few, and the parser is fed from the first byte once decided. */
		uint8_t before = st->detect_len;
		if (!detect(st, p, n, HTTP_DETECT_REQUEST))
			break;
		atomic_store(&st->kind, FD_SERVER);
		memset(&st->u.srv, 0, offsetof(struct server_side, req));
		st->u.srv.fifo_first = st->u.srv.fifo_len = 0;
		if (before)
			srv_incoming(st, st->detect, before);
		srv_incoming(st, p, n);
		break;
	}
	case FD_SERVER:
		srv_incoming(st, p, n);
		break;
	case FD_CLIENT:
		cli_incoming(st, p, n);
		break;
	case FD_CLIENT_PENDING:
		/* The peer spoke first: not an HTTP client connection. */
		atomic_store(&st->kind, FD_IGNORED);
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&st->mu);
}

static void on_incoming_iov(struct fd_state *st, const struct iovec *iov, int cnt, size_t n)
{
	for (int i = 0; i < cnt && n > 0; i++) {
		size_t l = iov[i].iov_len < n ? iov[i].iov_len : n;
		on_incoming(st, iov[i].iov_base, l);
		n -= l;
	}
}

/* Server responses: bytes the kernel took (after the real call). */
static void on_outgoing_server(struct fd_state *st, const struct iovec *iov, int cnt, size_t n)
{
	pthread_mutex_lock(&st->mu);
	uint8_t k = atomic_load(&st->kind);
	if (k == FD_SERVER_PENDING) {
		atomic_store(&st->kind, FD_IGNORED);   /* server speaks first: not HTTP */
	} else if (k == FD_SERVER) {
		for (int i = 0; i < cnt && n > 0; i++) {
			size_t l = iov[i].iov_len < n ? iov[i].iov_len : n;
			srv_outgoing(st, iov[i].iov_base, l);
			n -= l;
		}
	}
	pthread_mutex_unlock(&st->mu);
}

/* Appends to v (holding nv entries) the bytes [from, to) of the app's data
 * in iov; returns the new count. The caller bounds cnt (IOV_MAX_LOCAL - 3),
 * so the app's entries, one split and the injection always fit. */
static int iov_range(struct iovec *v, int nv, const struct iovec *iov, int cnt, size_t from, size_t to)
{
	size_t at = 0;
	for (int i = 0; i < cnt && at < to && nv < IOV_MAX_LOCAL; i++) {
		size_t lo = at, hi = at + iov[i].iov_len;
		at = hi;
		if (hi <= from || lo == hi)
			continue;
		size_t a = from > lo ? from - lo : 0, b = (to < hi ? to : hi) - lo;
		v[nv].iov_base = (char *)iov[i].iov_base + a;
		v[nv++].iov_len = b - a;
	}
	return nv;
}

/*
 * Client requests: parsed before they are sent, so the traceparent can go in
 * front of the head's final empty line. The return value counts only the
 * app's bytes; injected bytes the kernel didn't take yet are sent first on
 * the next call (the app resends its unsent tail, which starts exactly at the
 * injection point), and EAGAIN while they are pending means none of the
 * app's bytes went out, which is true. A replaced forwarded traceparent has
 * the length of the value it stands for, byte for byte at the same offsets,
 * so the counts are the app's as they are.
 */
static ssize_t send_client(struct fd_state *st, int fd, const struct iovec *iov, int cnt, int flags,
			   ssize_t (*plain)(int, const struct iovec *, int, int, void *), void *arg)
{
	struct client_side *c = &st->u.cli;
	size_t total = 0;
	for (int i = 0; i < cnt; i++)
		total += iov[i].iov_len;

	pthread_mutex_lock(&st->mu);
	uint8_t k = atomic_load(&st->kind);
	if (k == FD_CLIENT_PENDING) {
		const char *first = NULL;
		size_t flen = 0;
		for (int i = 0; i < cnt && !first; i++)
			if (iov[i].iov_len) {
				first = iov[i].iov_base;
				flen = iov[i].iov_len;
			}
		uint8_t earlier = st->detect_len;   /* bytes already sent while undecided */
		if (first && detect(st, first, flen, HTTP_DETECT_REQUEST)) {
			atomic_store(&st->kind, FD_CLIENT);
			memset(c, 0, offsetof(struct client_side, req));
			c->inject_pos = UINT64_MAX;
			/* Those earlier bytes are part of the request head: parse them first. */
			cli_parse_out(st, st->detect, earlier, 0);
			c->stream_pos = earlier;
			st->detect_len = 0;
			k = FD_CLIENT;
		} else if (first) {
			k = atomic_load(&st->kind);
		}
	}
	if (k != FD_CLIENT) {
		pthread_mutex_unlock(&st->mu);
		return plain(fd, iov, cnt, flags, arg);
	}

	uint64_t off = c->stream_pos;
	for (int i = 0; i < cnt; i++) {
		cli_parse_out(st, iov[i].iov_base, iov[i].iov_len, off);
		off += iov[i].iov_len;
	}

	/* Where the rest of the injection goes in the app's stream: an
	 * insertion stays at inject_pos until all of it is sent; a replacement
	 * stands for as many of the app's bytes, so it moves along with them. */
	uint64_t point = c->inject_pos + (c->inject_replaces ? c->inject_sent : 0);
	uint64_t end = c->stream_pos + total;
	bool inject_here = c->inject_len > c->inject_sent && point >= c->stream_pos && total > 0 &&
			   (c->inject_replaces ? point < end : point <= end);
	if (!inject_here) {
		ssize_t r = plain(fd, iov, cnt, flags, arg);
		int e = errno;
		if (r > 0)
			c->stream_pos += (uint64_t)r;
		pthread_mutex_unlock(&st->mu);
		errno = e;
		return r;
	}

	/* Build [app bytes before the point][injection rest][app bytes after];
	 * a replacement leaves out the app bytes it stands for (as many as
	 * this call has). */
	size_t before = (size_t)(point - c->stream_pos);
	size_t inj_rem = c->inject_len - c->inject_sent;
	size_t covered = 0;
	if (c->inject_replaces) {
		if (inj_rem > end - point)
			inj_rem = (size_t)(end - point);
		covered = inj_rem;
	}
	struct iovec v[IOV_MAX_LOCAL];
	int nv = iov_range(v, 0, iov, cnt, 0, before);
	v[nv].iov_base = c->inject + c->inject_sent;
	v[nv++].iov_len = inj_rem;
	nv = iov_range(v, nv, iov, cnt, before + covered, total);

	ssize_t r;
	size_t app_sent = 0;
	int e;
	for (;;) {
		struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)nv };
		r = REAL(sendmsg)(fd, &m, flags);
		e = errno;
		if (r <= 0)
			break;
		size_t got = (size_t)r;
		if (got <= before) {
			app_sent += got;   /* the point not passed: the injection stays pending there */
			break;
		}
		app_sent += before;
		got -= before;
		before = 0;
		size_t took = got < inj_rem ? got : inj_rem;
		c->inject_sent += (uint16_t)took;
		if (c->inject_replaces)
			app_sent += took;   /* each byte of ours went out for one of the app's */
		if (got < inj_rem) {
			if (app_sent)
				break;   /* report the app's bytes; the rest of the injection goes first next time */
			/* An insertion of which none of the app's bytes went out yet:
			 * keep sending it (a blocking socket), or report EAGAIN below. */
			inj_rem -= got;
			nv = 0;
			v[nv].iov_base = c->inject + c->inject_sent;
			v[nv++].iov_len = inj_rem;
			nv = iov_range(v, nv, iov, cnt, 0, total);
			continue;
		}
		app_sent += got - inj_rem;
		break;
	}
	if (r < 0 && app_sent == 0) {
		pthread_mutex_unlock(&st->mu);
		errno = e;
		return -1;
	}
	c->stream_pos += app_sent;
	pthread_mutex_unlock(&st->mu);
	errno = e;
	return (ssize_t)app_sent;
}

/* --- the hooks --- */

static void track_accepted(int fd, const struct sockaddr *addr, socklen_t *alen)
{
	struct fd_state *st = fd_claim(fd);
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	st->gen++;
	st->detect_len = 0;
	st->peer_len = 0;
	st->local_len = sizeof st->local;
	if (getsockname(fd, (struct sockaddr *)&st->local, &st->local_len) != 0 ||
	    (st->local.ss_family != AF_INET && st->local.ss_family != AF_INET6)) {
		atomic_store(&st->kind, FD_NONE);   /* Unix sockets and the rest: not ours */
		pthread_mutex_unlock(&st->mu);
		return;
	}
	if (addr && alen && *alen <= sizeof st->peer) {
		memcpy(&st->peer, addr, *alen);
		st->peer_len = *alen;
	} else {
		st->peer_len = sizeof st->peer;
		if (getpeername(fd, (struct sockaddr *)&st->peer, &st->peer_len) != 0)
			st->peer_len = 0;
	}
	atomic_store(&st->kind, FD_SERVER_PENDING);
	pthread_mutex_unlock(&st->mu);
}

static bool track_connected(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || len > sizeof(struct sockaddr_storage))
		return false;
	int type = 0;
	socklen_t tl = sizeof type;
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
		return false;   /* UDP "connections" (DNS resolvers) */
	struct fd_state *st = fd_claim(fd);
	if (!st)
		return false;
	pthread_mutex_lock(&st->mu);
	st->gen++;
	st->detect_len = 0;
	memcpy(&st->peer, addr, len);
	st->peer_len = len;
	st->local_len = 0;
	st->connecting = true;
	st->connect_ns = span_now_ns();
	atomic_store(&st->kind, FD_CLIENT_PENDING);
	pthread_mutex_unlock(&st->mu);
	return true;
}

/*
 * The outcome of a connect: at once for a blocking one, or when the app
 * reads SO_ERROR (how curl and most event loops learn it) for a
 * non-blocking one. A refused or unreachable peer never sees a request, so
 * no HTTP span would show the failure: inside a trace, it gets a CLIENT
 * span "connect" with the error, where the failure happened.
 */
static void connect_outcome(struct fd_state *st, int err)
{
	if (err == EINPROGRESS || err == EALREADY || err == EINTR)
		return;   /* still under way */
	if (err == EISCONN)
		err = 0;  /* a second connect() asking whether the first finished: it did */
	pthread_mutex_lock(&st->mu);
	bool was = st->connecting && atomic_load(&st->kind) == FD_CLIENT_PENDING;
	st->connecting = false;
	uint64_t start = st->connect_ns;
	struct sockaddr_storage peer = st->peer;
	socklen_t plen = st->peer_len;
	pthread_mutex_unlock(&st->mu);
	if (!was || !err || !context_current()->valid)
		return;
	struct socket_thread *t = sock_thread();
	if (!t)
		return;
	struct trace_context *ctx = &t->scratch.ctx;
	struct span *sp = span_start(SPAN_KIND_CLIENT, "connect", 7, NULL, ctx);
	if (!sp)
		return;
	span_set_start_time(sp, start);
	span_set_cstr(sp, "network.transport", "tcp");
	set_addr(sp, "network.peer.address", "network.peer.port", &peer, plen);
	const char *name = strerrorname_np(err);
	const char *msg = strerror(err);
	span_set_cstr(sp, "error.type", name ? name : "_OTHER");
	span_set_status(sp, SPAN_STATUS_ERROR, msg, strlen(msg));
	span_end(sp);
}

/* Forgets a descriptor that is being reused or closed, ending its spans. */
static void untrack(int fd)
{
	if ((unsigned)fd >= MAX_FD)
		return;
	struct fd_state *c = atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_acquire);
	if (!c)
		return;
	struct fd_state *st = &c[(unsigned)fd & (CHUNK_SIZE - 1)];
	if (atomic_load_explicit(&st->kind, memory_order_relaxed) == FD_NONE)
		return;
	pthread_mutex_lock(&st->mu);
	uint8_t k = atomic_load(&st->kind);
	if (k == FD_SERVER)
		srv_close(st);
	else if (k == FD_CLIENT)
		cli_finish(st);
	binding_release(st);
	atomic_store(&st->kind, FD_NONE);
	st->gen++;
	pthread_mutex_unlock(&st->mu);
}

static inline bool hook_enter(void)
{
	return context_guard_enter();
}

/* After accept/accept4 returned r: follow the new connection. */
static int after_accept(int r, struct sockaddr *addr, socklen_t *len)
{
	if (r < 0 || !context_guard_enter())
		return r;
	int e = errno;
	init_ensure();
	if (init_enabled) {
		untrack(r);
		track_accepted(r, addr, len);
	}
	logcorr_fd_changed(r);
	context_guard_leave();
	errno = e;
	return r;
}

HOOK int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return after_accept(REAL(accept)(fd, addr, len), addr, len);
}

HOOK int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return after_accept(REAL(accept4)(fd, addr, len, flags), addr, len);
}

HOOK int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	if (!context_guard_enter())
		return REAL(connect)(fd, addr, len);
	init_ensure();
	bool tracked = false;
	if (init_enabled) {
		untrack(fd);
		tracked = track_connected(fd, addr, len);
	}
	logcorr_fd_changed(fd);
	context_guard_leave();
	int r = REAL(connect)(fd, addr, len);
	if (tracked && context_guard_enter()) {
		int e = errno;
		struct fd_state *st = fd_lookup(fd);
		if (st)
			connect_outcome(st, r == 0 ? 0 : e);
		context_guard_leave();
		errno = e;
	}
	return r;
}

HOOK int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
	int r = REAL(getsockopt)(fd, level, optname, optval, optlen);
	if (r != 0 || level != SOL_SOCKET || optname != SO_ERROR || !optval || !optlen || *optlen < sizeof(int))
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !hook_enter())
		return r;
	int e = errno;
	connect_outcome(st, *(int *)optval);
	context_guard_leave();
	errno = e;
	return r;
}

/* Incoming: the real call, then the bytes it returned. */
#define INCOMING(fd, call, buf)                                                   \
	ssize_t r = call;                                                         \
	if (r <= 0)                                                               \
		return r;                                                         \
	struct fd_state *st = fd_lookup(fd);                                      \
	if (__builtin_expect(st == NULL, 1) || !hook_enter())                     \
		return r;                                                         \
	int e = errno;                                                            \
	on_incoming(st, (const char *)(buf), (size_t)r);                          \
	context_guard_leave();                                                    \
	errno = e;                                                                \
	return r

HOOK ssize_t read(int fd, void *buf, size_t n)
{
	INCOMING(fd, REAL(read)(fd, buf, n), buf);
}

HOOK ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	INCOMING(fd, REAL(read_chk)(fd, buf, n, buflen), buf);
}

HOOK ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	if (flags & MSG_PEEK)
		return REAL(recv)(fd, buf, n, flags);
	INCOMING(fd, REAL(recv)(fd, buf, n, flags), buf);
}

HOOK ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	if (flags & MSG_PEEK)
		return REAL(recv_chk)(fd, buf, n, buflen, flags);
	INCOMING(fd, REAL(recv_chk)(fd, buf, n, buflen, flags), buf);
}

HOOK ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr, socklen_t *alen)
{
	if (flags & MSG_PEEK)
		return REAL(recvfrom)(fd, buf, n, flags, addr, alen);
	INCOMING(fd, REAL(recvfrom)(fd, buf, n, flags, addr, alen), buf);
}

HOOK ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags, struct sockaddr *addr,
		       socklen_t *alen)
{
	if (flags & MSG_PEEK)
		return REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, alen);
	INCOMING(fd, REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, alen), buf);
}

HOOK ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	ssize_t r = REAL(readv)(fd, iov, cnt);
	if (r <= 0)
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !hook_enter())
		return r;
	int e = errno;
	on_incoming_iov(st, iov, cnt, (size_t)r);
	context_guard_leave();
	errno = e;
	return r;
}

HOOK ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	ssize_t r = REAL(recvmsg)(fd, m, flags);
	if (r <= 0 || (flags & MSG_PEEK))
		return r;
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || !hook_enter())
		return r;
	int e = errno;
	on_incoming_iov(st, m->msg_iov, (int)m->msg_iovlen, (size_t)r);
	context_guard_leave();
	errno = e;
	return r;
}

/* Outgoing: client connections may need injection (we make the call);
 * server connections are parsed after the real call. */

struct plain_args {
	int kind;  /* which libc call the app made */
	const struct sockaddr *to;
	socklen_t tolen;
};

enum { CALL_WRITE, CALL_SEND, CALL_SENDTO, CALL_SENDMSG, CALL_WRITEV };

static ssize_t plain_call(int fd, const struct iovec *iov, int cnt, int flags, void *arg)
{
	const struct plain_args *a = arg;
	switch (a->kind) {
	case CALL_WRITE:
		return REAL(write)(fd, iov[0].iov_base, iov[0].iov_len);
	case CALL_SEND:
		return REAL(send)(fd, iov[0].iov_base, iov[0].iov_len, flags);
	case CALL_SENDTO:
		return REAL(sendto)(fd, iov[0].iov_base, iov[0].iov_len, flags, a->to, a->tolen);
	case CALL_WRITEV:
		return REAL(writev)(fd, iov, cnt);
	default: {
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt };
		return REAL(sendmsg)(fd, &m, flags);
	}
	}
}

static ssize_t outgoing(struct fd_state *st, int fd, const struct iovec *iov, int cnt, int flags,
			struct plain_args *a)
{
	uint8_t k = atomic_load_explicit(&st->kind, memory_order_relaxed);
	if (k == FD_CLIENT || k == FD_CLIENT_PENDING)
		return send_client(st, fd, iov, cnt, flags, plain_call, a);
	ssize_t r = plain_call(fd, iov, cnt, flags, a);
	if (r > 0) {
		int e = errno;
		on_outgoing_server(st, iov, cnt, (size_t)r);
		errno = e;
	}
	return r;
}

#define OUTGOING_1(fd, buf, n, flags, args, fallback)                               \
	struct fd_state *st = fd_lookup(fd);                                        \
	if (__builtin_expect(st == NULL, 1) || !hook_enter())                       \
		return fallback;                                                    \
	struct iovec one = { (void *)(buf), (n) };                                  \
	ssize_t r = outgoing(st, fd, &one, 1, flags, args);                         \
	int e = errno;                                                              \
	context_guard_leave();                                                      \
	errno = e;                                                                  \
	return r

/* fd 1 or 2 made a connection by accept/connect (a daemon that closed its
 * stdio) is never rewritten as a log (hooks/logcorr.c). */
static inline bool fd_followed(int fd)
{
	struct fd_state *c = atomic_load_explicit(&chunks[0], memory_order_acquire);
	return c && atomic_load_explicit(&c[fd].kind, memory_order_relaxed) != FD_NONE;
}

HOOK ssize_t write(int fd, const void *buf, size_t n)
{
	if (logcorr_fd(fd) && !fd_followed(fd))
		return logcorr_write(fd, buf, n);
	struct plain_args a = { .kind = CALL_WRITE };
	OUTGOING_1(fd, buf, n, 0, &a, REAL(write)(fd, buf, n));
}

HOOK ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct plain_args a = { .kind = CALL_SEND };
	OUTGOING_1(fd, buf, n, flags, &a, REAL(send)(fd, buf, n, flags));
}

HOOK ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t tolen)
{
	struct plain_args a = { .kind = CALL_SENDTO, .to = to, .tolen = tolen };
	OUTGOING_1(fd, buf, n, flags, &a, REAL(sendto)(fd, buf, n, flags, to, tolen));
}

HOOK ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (logcorr_fd(fd) && !fd_followed(fd))
		return logcorr_writev(fd, iov, cnt);
	struct fd_state *st = fd_lookup(fd);
	if (__builtin_expect(st == NULL, 1) || cnt <= 0 || cnt > IOV_MAX_LOCAL - 3 || !hook_enter())
		return REAL(writev)(fd, iov, cnt);
	struct plain_args a = { .kind = CALL_WRITEV };
	ssize_t r = outgoing(st, fd, iov, cnt, 0, &a);
	int e = errno;
	context_guard_leave();
	errno = e;
	return r;
}

HOOK ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	struct fd_state *st = fd_lookup(fd);
	/* Ancillary data or a destination: pass through, never rebuild such a call. */
	if (__builtin_expect(st == NULL, 1) || m->msg_controllen || m->msg_name ||
	    m->msg_iovlen == 0 || m->msg_iovlen > IOV_MAX_LOCAL - 3 || !hook_enter())
		return REAL(sendmsg)(fd, m, flags);
	struct plain_args a = { .kind = CALL_SENDMSG };
	ssize_t r = outgoing(st, fd, m->msg_iov, (int)m->msg_iovlen, flags, &a);
	int e = errno;
	context_guard_leave();
	errno = e;
	return r;
}

static ssize_t after_sendfile(int out_fd, ssize_t r)
{
	if (r <= 0)
		return r;
	struct fd_state *st = fd_lookup(out_fd);
	if (__builtin_expect(st == NULL, 1) || !hook_enter())
		return r;
	int e = errno;
	pthread_mutex_lock(&st->mu);
	if (atomic_load(&st->kind) == FD_SERVER)
		srv_outgoing(st, NULL, (size_t)r);
	pthread_mutex_unlock(&st->mu);
	context_guard_leave();
	errno = e;
	return r;
}

HOOK ssize_t sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
	return after_sendfile(out_fd, REAL(sendfile)(out_fd, in_fd, off, count));
}

HOOK ssize_t sendfile64(int out_fd, int in_fd, off64_t *off, size_t count)
{
	return after_sendfile(out_fd, REAL(sendfile64)(out_fd, in_fd, off, count));
}

HOOK int shutdown(int fd, int how)
{
	struct fd_state *st = fd_lookup(fd);
	if (st && (how == SHUT_WR || how == SHUT_RDWR) && hook_enter()) {
		/* A response delimited by close is complete once writing stops. */
		pthread_mutex_lock(&st->mu);
		if (atomic_load(&st->kind) == FD_SERVER && st->u.srv.resp_in_body &&
		    st->u.srv.resp_body.kind == HTTP_BODY_UNTIL_CLOSE)
			srv_finish(st);
		pthread_mutex_unlock(&st->mu);
		context_guard_leave();
	}
	return REAL(shutdown)(fd, how);
}

/* The process whose connections the table describes (set at init and in a
 * forked child). A vfork child shares the table until it execs. */
static pid_t table_pid;

/* fd is closed, or about to be: the connection it was is over. */
static void fd_untrack_gone(int fd)
{
	struct fd_state *c = (unsigned)fd < MAX_FD ?
		atomic_load_explicit(&chunks[(unsigned)fd >> CHUNK_BITS], memory_order_relaxed) : NULL;
	if (c && atomic_load_explicit(&c[(unsigned)fd & (CHUNK_SIZE - 1)].kind, memory_order_relaxed) != FD_NONE &&
	    hook_enter()) {
		int e = errno;
		/* A vfork child closing its copies before exec (CPython's subprocess
		 * does, with close_range) must leave the parent's connections alone. */
		if (getpid() == table_pid)
			untrack(fd);
		context_guard_leave();
		errno = e;
	}
}

/* ... and, for fd 1 or 2, the log stream it was. */
static void fd_gone(int fd)
{
	fd_untrack_gone(fd);
	logcorr_fd_changed(fd);
}

/* Each of the close family first has the agent let go of its own
 * descriptors in the range (a daemon closing every number): agent/ownfd.h. */
HOOK int close(int fd)
{
	struct ownfd_marks m;
	ownfd_app_closing((unsigned)fd, (unsigned)fd, &m);
	fd_gone(fd);
	return REAL(close)(fd);
}

/* dup2/dup3 close newfd silently: its connection (or the log stream it was)
 * is gone. Done after the call, which either failed and left newfd alone
 * or now holds newfd, so no other thread can have been given that number. */
HOOK int dup2(int oldfd, int newfd)
{
	struct ownfd_marks m = { 0 };
	if (oldfd != newfd)
		ownfd_app_closing((unsigned)newfd, (unsigned)newfd, &m);
	int r = REAL(dup2)(oldfd, newfd);
	if (r < 0 && m.mask) {
		int e = errno;
		ownfd_app_close_failed(&m);
		errno = e;
	}
	if (r >= 0 && oldfd != newfd)
		fd_gone(newfd);
	return r;
}

HOOK int dup3(int oldfd, int newfd, int flags)
{
	struct ownfd_marks m = { 0 };
	if (oldfd != newfd)
		ownfd_app_closing((unsigned)newfd, (unsigned)newfd, &m);
	int r = REAL(dup3)(oldfd, newfd, flags);
	if (r < 0 && m.mask) {
		int e = errno;
		ownfd_app_close_failed(&m);
		errno = e;
	}
	if (r >= 0)
		fd_gone(newfd);
	return r;
}

/* Every followed fd in [first, last], before they are closed (as for close:
 * afterwards, another thread could already have been given one of them). */
static void fds_gone(unsigned first, unsigned last)
{
	for (unsigned fd = 1; fd <= 2; fd++)
		if (fd >= first && fd <= last)
			logcorr_fd_changed((int)fd);
	if (last >= MAX_FD)
		last = MAX_FD - 1;
	for (unsigned c = first >> CHUNK_BITS; first <= last && c <= last >> CHUNK_BITS; c++) {
		if (!atomic_load_explicit(&chunks[c], memory_order_relaxed))
			continue;
		unsigned lo = c << CHUNK_BITS > first ? c << CHUNK_BITS : first;
		unsigned hi = (c << CHUNK_BITS) + CHUNK_SIZE - 1 < last ? (c << CHUNK_BITS) + CHUNK_SIZE - 1 : last;
		for (unsigned fd = lo; fd <= hi; fd++)
			fd_untrack_gone((int)fd);
	}
}

HOOK int close_range(unsigned int first, unsigned int last, int flags)
{
	struct ownfd_marks m = { 0 };
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		ownfd_app_closing(first, last, &m);
		fds_gone(first, last);
	}
	int r = REAL(close_range) ? REAL(close_range)(first, last, flags)
				  : (int)syscall(SYS_close_range, first, last, flags);
	if (r < 0 && m.mask) {
		int e = errno;
		ownfd_app_close_failed(&m);
		errno = e;
	}
	return r;
}

HOOK void closefrom(int lowfd)
{
	struct ownfd_marks m;
	if (lowfd >= 0) {
		ownfd_app_closing((unsigned)lowfd, UINT_MAX, &m);
		fds_gone((unsigned)lowfd, UINT_MAX);
	}
	if (REAL(closefrom))
		REAL(closefrom)(lowfd);
	else if (lowfd >= 0)
		syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0);
}

/* --- configuration --- */

static void parse_names(struct http_capture_names *out, const char *spec, char *store, size_t store_size)
{
	size_t used = 0;
	out->count = 0;
	const char *p = spec;
	while (*p && out->count < HTTP_CAPTURE_MAX) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		const char *start = p;
		while (*p && *p != ',')
			p++;
		const char *end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		size_t n = (size_t)(end - start);
		if (!n || n > 64 || used + n + 1 > store_size)
			continue;
		for (size_t i = 0; i < n; i++) {
			char ch = start[i];
			store[used + i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
		}
		store[used + n] = '\0';
		out->name[out->count] = store + used;
		out->len[out->count] = (uint8_t)n;
		out->count++;
		used += n + 1;
	}
}

void socket_init(const struct config *c)
{
	table_pid = getpid();
	static char names[4][600];
	parse_names(&cap_srv_req, c->http_server_capture_request, names[0], sizeof names[0]);
	parse_names(&cap_srv_resp, c->http_server_capture_response, names[1], sizeof names[1]);
	parse_names(&cap_cli_req, c->http_client_capture_request, names[2], sizeof names[2]);
	parse_names(&cap_cli_resp, c->http_client_capture_response, names[3], sizeof names[3]);
	if (c->http_routes[0] && !http_routes_parse(&routes, c->http_routes, strlen(c->http_routes)))
		log_warn("TRACEAGENT_HTTP_ROUTES has an invalid template; the valid ones are used");
	inject_tracecontext = (c->propagators & PROPAGATOR_TRACECONTEXT) != 0;
	inject_baggage = (c->propagators & PROPAGATOR_BAGGAGE) != 0;
}

/*
 * In a forked child (atfork handler, one thread left). Spans of exchanges in
 * flight at the fork are the parent's to end and export: a connection in the
 * middle of one is passed through for the rest of its life in the child, so
 * that the child closing its copy (as forking servers do) neither ends nor
 * duplicates them. The request context bound to the forking thread stays
 * current, detached from its connection: the child's spans are its children.
 * Idle connections stay followed (a child handling an accepted connection,
 * a pooled keep-alive client). Locks other threads held at the fork are reset.
 */
void socket_after_fork_child(void)
{
	table_pid = getpid();
	if (sock_tls)
		sock_tls->binding.active = false;
	for (size_t i = 0; i < MAX_FD >> CHUNK_BITS; i++) {
		struct fd_state *c = atomic_load_explicit(&chunks[i], memory_order_relaxed);
		if (!c)
			continue;
		for (unsigned j = 0; j < CHUNK_SIZE; j++) {
			struct fd_state *st = &c[j];
			uint8_t k = atomic_load_explicit(&st->kind, memory_order_relaxed);
			/* Only states in use or locked: writing the others would copy
			 * every page of the table into the child. */
			if (k == FD_NONE && !st->mu.__data.__lock)
				continue;
			pthread_mutex_init(&st->mu, NULL);
			bool busy = (k == FD_SERVER && (st->u.srv.fifo_len || st->u.srv.skip_head || st->u.srv.head_started ||
							st->u.srv.in_body)) ||
				    (k == FD_CLIENT && (st->u.cli.span_open || st->u.cli.req_started)) ||
				    (k == FD_CLIENT_PENDING && st->connecting);
			if (busy)
				atomic_store_explicit(&st->kind, FD_IGNORED, memory_order_relaxed);
		}
	}
}
