/* HTTP/1.x exchanges: one machine for server and client connections, the spans and attributes they make, propagation in and out, pipelining, splicing the propagation headers into a client's sends. */
#include "exchange.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "context.h"
#include "perthread.h"
#include "url.h"

/* --- configuration --- */

/* Captured header names with their attribute keys, made once: a span costs
 * no formatting for them. */
struct capture_list {
	struct http_capture_names names;
	char store[600];
	char key[HTTP_CAPTURE_MAX][96];
};

/* [role][0: request headers, 1: response headers] */
static struct capture_list captures[2][2];
static struct http_routes routes;
static bool inject_tracecontext, inject_baggage;

/* A comma-separated list of header names, lower-cased (names longer than
 * 64 characters and those past HTTP_CAPTURE_MAX are ignored). */
static void capture_parse(struct capture_list *l, const char *spec, const char *prefix)
{
	size_t used = 0, plen = strlen(prefix);
	const char *p = spec;

	l->names.count = 0;
	while (*p && l->names.count < HTTP_CAPTURE_MAX) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		const char *start = p;
		while (*p && *p != ',')
			p++;
		const char *end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		size_t n = (size_t)(end - start);
		if (!n || n > 64 || used + n + 1 > sizeof l->store)
			continue;
		char *dst = l->store + used;
		for (size_t i = 0; i < n; i++) {
			char ch = start[i];
			dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
		}
		dst[n] = '\0';
		unsigned k = l->names.count++;
		l->names.name[k] = dst;
		l->names.len[k] = (uint8_t)n;
		memcpy(l->key[k], prefix, plen);
		memcpy(l->key[k] + plen, dst, n + 1);
		used += n + 1;
	}
}

bool exchange_configure(const struct config *c)
{
	bool ok = true;

	capture_parse(&captures[EXCHANGE_SERVER][0], c->http_server_capture_request, "http.request.header.");
	capture_parse(&captures[EXCHANGE_SERVER][1], c->http_server_capture_response, "http.response.header.");
	capture_parse(&captures[EXCHANGE_CLIENT][0], c->http_client_capture_request, "http.request.header.");
	capture_parse(&captures[EXCHANGE_CLIENT][1], c->http_client_capture_response, "http.response.header.");
	routes.count = 0;
	if (c->http_routes[0])
		ok = http_routes_parse(&routes, c->http_routes, strlen(c->http_routes));
	inject_tracecontext = (c->propagators & PROPAGATOR_TRACECONTEXT) != 0;
	inject_baggage = (c->propagators & PROPAGATOR_BAGGAGE) != 0;
	return ok;
}

/* The names to capture on this side of the exchange (NULL: none). */
static inline const struct http_capture_names *capture_names(const struct exchange *x, int response)
{
	const struct capture_list *l = &captures[x->role][response];
	return l->names.count ? &l->names : NULL;
}

/* --- per-thread state --- */

/* The server request this thread is handling: its context is current. */
struct binding {
	const struct exchange *x;
	uint32_t gen;
	bool active;
	struct context_token tok;
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
#define NAME_MAX_LEN (HTTP_METHOD_MAX + HTTP_TARGET_MAX + 2)
#define URL_MAX_LEN (HTTP_HOST_MAX + HTTP_TARGET_MAX + 16)

/* All per thread, in memory made on the thread's first use of it, not in
 * static TLS, which every thread of the app would pay for (agent/perthread.h);
 * large temporaries live here, not on the stack of a read() hook, as app
 * threads may have small stacks. */
struct exchange_thread {
	struct binding binding;
	struct trace_context parent, ctx;
	struct tracestate_parser tsp;
	char name[NAME_MAX_LEN];
	char url[URL_MAX_LEN];
	struct received received[RECEIVED_MAX];
	unsigned received_next;
};
static __thread struct exchange_thread *xt_tls AGENT_TLS;

/* NULL when there is no memory for it: the connection is then given up. */
static inline struct exchange_thread *thread_state(void)
{
	return perthread_get((void **)&xt_tls, sizeof *xt_tls);
}

static void binding_release(const struct exchange *x)
{
	struct binding *b = xt_tls ? &xt_tls->binding : NULL;
	if (b && b->active && b->x == x && b->gen == x->gen) {
		context_detach(&b->tok);
		b->active = false;
	}
}

static void binding_set(struct exchange_thread *t, const struct exchange *x, const struct trace_context *ctx)
{
	struct binding *b = &t->binding;
	/* A thread serving requests one after another (or an event loop moving
	 * to another connection) replaces, never stacks, the request context. */
	if (b->active)
		context_detach(&b->tok);
	context_attach(ctx, &b->tok);
	b->x = x;
	b->gen = x->gen;
	b->active = true;
}

void exchange_after_fork_child(void)
{
	if (xt_tls)
		xt_tls->binding.active = false;
}

/* --- connection attributes --- */

static size_t put_u8(char *o, unsigned v)
{
	size_t n = 0;
	if (v >= 100)
		o[n++] = (char)('0' + v / 100);
	if (v >= 10)
		o[n++] = (char)('0' + v / 10 % 10);
	o[n++] = (char)('0' + v % 10);
	return n;
}

/* The address as text, made once per connection. */
static const char *endpoint_text(struct exchange_endpoint *e, size_t *len)
{
	if (!e->text_len) {
		if (e->family == AF_INET) {
			size_t n = 0;
			for (int i = 0; i < 4; i++) {
				if (i)
					e->text[n++] = '.';
				n += put_u8(e->text + n, e->addr[i]);
			}
			e->text_len = (uint8_t)n;
		} else if (e->family == AF_INET6 && inet_ntop(AF_INET6, e->addr, e->text, sizeof e->text)) {
			e->text_len = (uint8_t)strlen(e->text);
		}
	}
	*len = e->text_len;
	return e->text;
}

static void endpoint_set(struct exchange_endpoint *e, const struct sockaddr *sa, socklen_t len)
{
	e->family = 0;
	e->text_len = 0;
	if (!sa)
		return;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		memcpy(e->addr, &a->sin_addr, 4);
		e->port = ntohs(a->sin_port);
		e->family = AF_INET;
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		memcpy(e->addr, &a->sin6_addr, 16);
		e->port = ntohs(a->sin6_port);
		e->family = AF_INET6;
	}
}

/* address and port keys of an endpoint, when it is known */
static void endpoint_attrs(struct span *sp, struct exchange_endpoint *e, const char *kaddr, size_t kalen,
			   const char *kport, size_t kplen)
{
	size_t n;
	const char *t = endpoint_text(e, &n);
	if (!e->family)
		return;
	if (n)
		span_attr_str(sp, kaddr, kalen, t, n);
	span_attr_int(sp, kport, kplen, e->port);
}

#define KEY(lit) lit, sizeof lit - 1

/* What every span of the connection has. */
static void conn_attrs(struct exchange *x, struct span *sp)
{
	if (x->role == EXCHANGE_SERVER) {
		endpoint_attrs(sp, &x->peer, KEY("client.address"), KEY("client.port"));
		span_set_str(sp, "url.scheme", "http", 4);
	} else {
		/* The Host header names the server; the socket says which
		 * address and port actually answered. */
		endpoint_attrs(sp, &x->peer, KEY("network.peer.address"), KEY("network.peer.port"));
	}
}

/* server.address and server.port from the Host header, else from the
 * socket (the server's own address, or the peer a client reached); true when
 * the Host header gave them. */
static bool host_attrs(struct exchange *x, struct span *sp, const struct http_request *r)
{
	const char *h;
	size_t hl;
	int32_t port;
	bool v6;
	if (!url_host_port(r->host, r->host_len, &h, &hl, &port, &v6)) {
		endpoint_attrs(sp, x->role == EXCHANGE_SERVER ? &x->local : &x->peer, KEY("server.address"),
			       KEY("server.port"));
		return false;
	}
	span_set_str(sp, "server.address", h, hl);
	span_set_int(sp, "server.port", port >= 0 ? port : 80);
	return true;
}

/*
 * The attributes every span of the connection has, and those of its Host
 * header: made with the connection's first recorded span, then copied as one
 * block while requests name the same Host. True when the Host header gave
 * server.address.
 */
static bool conn_attrs_add(struct exchange *x, struct span *sp, const struct http_request *r)
{
	if (x->block_state == 0) {
		struct span *scratch = span_scratch_new();
		x->block_host_ok = host_attrs(x, scratch, r);
		conn_attrs(x, scratch);
		span_attr_block_take(&x->block, scratch);
		x->block_state = x->block.n && r->host_len <= sizeof x->block_host ? 1 : 2;
		x->block_host_len = (uint8_t)r->host_len;
		memcpy(x->block_host, r->host, x->block_state == 1 ? r->host_len : 0);
	}
	if (x->block_state == 1 && r->host_len == x->block_host_len && memcmp(r->host, x->block_host, r->host_len) == 0) {
		span_attr_block_add(sp, &x->block);
		return x->block_host_ok;
	}
	bool host = host_attrs(x, sp, r);
	conn_attrs(x, sp);
	return host;
}

/* --- spans --- */

static void method_attrs(struct span *sp, const struct http_request *r)
{
	if (r->method_id != HTTP_METHOD_OTHER) {
		span_set_str(sp, "http.request.method", r->method, r->method_len);
	} else {
		span_set_str(sp, "http.request.method", "_OTHER", 6);
		span_set_str(sp, "http.request.method_original", r->method, r->method_len);
	}
}

static void captured_attrs(struct span *sp, const struct capture_list *l, const struct http_captured *cap)
{
	for (unsigned i = 0; i < l->names.count; i++) {
		if (!cap[i].present)
			continue;
		const char *v = cap[i].value;
		size_t n = cap[i].len;
		span_set_str_array(sp, l->key[i], &v, &n, 1);
	}
}

static void server_attrs(struct exchange *x, struct exchange_thread *t, struct span *sp)
{
	const struct http_request *r = &x->req;
	const char *path, *query;
	size_t path_len, query_len;

	method_attrs(sp, r);
	http_split_target(r->target, r->target_len, &path, &path_len, &query, &query_len);
	if (routes.count) {
		size_t tl = 0;
		const char *route = http_routes_match(&routes, path, path_len, &tl);
		if (route) {
			/* "{method} {http.route}", as the conventions name it */
			size_t ml = r->method_id != HTTP_METHOD_OTHER ? r->method_len : 4, n = ml;
			memcpy(t->name, r->method_id != HTTP_METHOD_OTHER ? r->method : "HTTP", ml);
			t->name[n++] = ' ';
			size_t room = sizeof t->name - n;
			memcpy(t->name + n, route, tl < room ? tl : room);
			n += tl < room ? tl : room;
			span_set_name(sp, t->name, n);
			span_set_str(sp, "http.route", route, tl);
		}
	}
	span_set_str(sp, "url.path", path, path_len);
	if (query)
		span_set_str(sp, "url.query", query, query_len);
	conn_attrs_add(x, sp, r);
	span_set_str(sp, "network.protocol.version", r->version_minor ? "1.1" : "1.0", 3);
	if (r->user_agent_len)
		span_set_str(sp, "user_agent.original", r->user_agent, r->user_agent_len);
	if (r->capture)
		captured_attrs(sp, &captures[EXCHANGE_SERVER][0], r->captured);
}

static void client_attrs(struct exchange *x, struct exchange_thread *t, struct span *sp)
{
	const struct http_request *r = &x->req;
	size_t n = 0;

	method_attrs(sp, r);
	bool host = conn_attrs_add(x, sp, r);
	if (r->target_len && r->target[0] != '/') {
		/* absolute-form (to a proxy) */
		memcpy(t->url, r->target, r->target_len);
		n = r->target_len;
	} else if (host) {
		memcpy(t->url, "http://", 7);
		memcpy(t->url + 7, r->host, r->host_len);
		memcpy(t->url + 7 + r->host_len, r->target, r->target_len);
		n = 7 + (size_t)r->host_len + r->target_len;
	}
	if (n)
		span_set_str(sp, "url.full", t->url, n);
	span_set_str(sp, "network.protocol.version", r->version_minor ? "1.1" : "1.0", 3);
	if (r->capture)
		captured_attrs(sp, &captures[EXCHANGE_CLIENT][0], r->captured);
}

/* The final response on its span: per the conventions, 5xx is an error for
 * a server, and 4xx too for a client. */
static void response_attrs(const struct exchange *x, struct span *sp)
{
	unsigned code = x->resp.status;
	span_set_int(sp, "http.response.status_code", code);
	if (code >= (x->role == EXCHANGE_SERVER ? 500u : 400u)) {
		char et[3] = { (char)('0' + code / 100 % 10), (char)('0' + code / 10 % 10), (char)('0' + code % 10) };
		span_set_str(sp, "error.type", et, 3);
		span_set_status(sp, SPAN_STATUS_ERROR, NULL, 0);
	}
	if (x->resp.capture)
		captured_attrs(sp, &captures[x->role][1], x->resp.captured);
}

/* --- propagation --- */

/* A server's parent from the request: an invalid or repeated traceparent
 * starts a new trace and drops tracestate (W3C); never inherit whatever
 * the thread had. */
static void extract(struct exchange_thread *t, const struct http_request *r)
{
	struct trace_context *p = &t->parent;

	context_clear(p);
	if (inject_tracecontext && r->traceparent_count == 1 &&
	    propagation_parse_traceparent(r->traceparent, r->traceparent_len, p)) {
		if (r->tracestate_len) {
			propagation_tracestate_begin(&t->tsp, p);
			propagation_tracestate_add(&t->tsp, r->tracestate, r->tracestate_len);
			propagation_tracestate_end(&t->tsp);
		}
	} else {
		context_clear(p);
	}
	if (inject_baggage && r->baggage_len)
		propagation_baggage_add(p, r->baggage, r->baggage_len);
}

/* Noted for a proxy that forwards this traceparent on. */
static void note_received(struct exchange_thread *t)
{
	struct received *rc = &t->received[t->received_next++ % RECEIVED_MAX];
	memcpy(rc->trace_id, t->parent.trace_id, 16);
	memcpy(rc->parent_id, t->parent.span_id, 8);
	memcpy(rc->span_id, t->ctx.span_id, 8);
	rc->flags = t->ctx.flags;
	rc->used = true;
}

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
 * another trace) is the app's choice. On true, t->parent is the SERVER
 * span's context.
 */
static bool forwarded_traceparent(const struct http_request *r, struct exchange_thread *t)
{
	if (!inject_tracecontext || r->traceparent_count != 1 || r->traceparent_len != TRACEPARENT_LEN ||
	    memcmp(r->traceparent, "00-", 3) != 0 ||
	    !propagation_parse_traceparent(r->traceparent, r->traceparent_len, &t->parent))
		return false;
	for (unsigned k = 1; k <= RECEIVED_MAX; k++) {
		const struct received *rc = &t->received[(t->received_next - k) % RECEIVED_MAX];
		if (!rc->used || memcmp(rc->trace_id, t->parent.trace_id, 16) != 0 ||
		    memcmp(rc->parent_id, t->parent.span_id, 8) != 0)
			continue;
		context_clear(&t->parent);
		memcpy(t->parent.trace_id, rc->trace_id, 16);
		memcpy(t->parent.span_id, rc->span_id, 8);
		t->parent.flags = rc->flags;
		t->parent.valid = true;
		return true;
	}
	return false;
}

static size_t put_line(char *o, const char *name, size_t nl, const char *v, size_t vl, bool crlf)
{
	memcpy(o, name, nl);
	memcpy(o + nl, v, vl);
	size_t n = nl + vl;
	if (crlf)
		o[n++] = '\r';
	o[n++] = '\n';
	return n;
}

/* What a client's request gets: the propagation header lines in front of
 * the head's final empty line, unless the app propagates itself (then one
 * traceparent, its own); or, when it only forwards what it was sent, ours
 * in its place. */
static void plan_injection(struct exchange *x, struct exchange_thread *t, bool forwarded)
{
	const struct http_request *r = &x->req;
	const struct trace_context *c = &t->ctx;

	/* Requests pipelined in one write: while the injection of one of them
	 * is still to go out, the next one gets none (its span is made all the
	 * same); one write per request, as clients do, gets each its own. */
	if (x->inject_sent < x->inject_len)
		return;
	x->inject_len = x->inject_sent = 0;
	x->inject_pos = UINT64_MAX;
	x->inject_replaces = false;
	if (r->traceparent_count) {
		uint64_t at = x->head_start_pos + r->traceparent_off;
		/* A head written in pieces may have sent it already: then it stays. */
		if (forwarded && at >= x->sent_pos) {
			propagation_format_traceparent(c, x->inject);
			x->inject_len = TRACEPARENT_LEN;
			x->inject_pos = at;
			x->inject_replaces = true;
		}
		return;
	}
	if (!inject_tracecontext && !inject_baggage)
		return;
	bool crlf;
	uint32_t at = http_request_end_of_headers(r, &crlf);
	size_t n = 0;
	if (inject_tracecontext) {
		char tp[TRACEPARENT_LEN + 1];
		propagation_format_traceparent(c, tp);
		n += put_line(x->inject + n, "traceparent: ", 13, tp, TRACEPARENT_LEN, crlf);
		if (c->tracestate_len)
			n += put_line(x->inject + n, "tracestate: ", 12, context_tracestate(c), c->tracestate_len, crlf);
	}
	if (inject_baggage && c->baggage_len)
		n += put_line(x->inject + n, "baggage: ", 9, context_baggage(c), c->baggage_len, crlf);
	x->inject_len = (uint16_t)n;
	x->inject_pos = x->head_start_pos + at;
}

/* --- the exchange machine --- */

/* The rest of the connection can't be followed (not HTTP any more, or
 * framing we can't trust). A server's spans still waiting for their
 * responses are dropped and counted, never ended with made-up results; a
 * client's requests did go out, and their spans end as they are. */
static void give_up(struct exchange *x)
{
	for (; x->fifo_len; x->fifo_len--) {
		struct exchange_pending *p = &x->fifo[x->fifo_first];
		if (x->role == EXCHANGE_SERVER)
			span_drop(p->sp);
		else
			span_end(p->sp);
		p->sp = NULL;
		x->fifo_first = (x->fifo_first + 1) % EXCHANGE_PIPELINE_MAX;
	}
	x->fifo_first = 0;
	x->skip_head = 0;
	x->inject_len = x->inject_sent = 0;
	x->inject_pos = UINT64_MAX;
	binding_release(x);
	x->phase = EXCHANGE_IGNORED;
}

/* A request head is complete: its span starts, and it waits for its response. */
static void request_begin(struct exchange *x)
{
	struct exchange_thread *t = thread_state();
	if (!t) {
		give_up(x);
		return;
	}
	const struct http_request *r = &x->req;
	bool server = x->role == EXCHANGE_SERVER, forwarded = false;
	const struct trace_context *parent = NULL;
	if (server) {
		extract(t, r);
		parent = &t->parent;
	} else if (r->traceparent_count && forwarded_traceparent(r, t)) {
		forwarded = true;
		parent = &t->parent;
	}
	size_t ml = 4;
	const char *mn = r->method_id != HTTP_METHOD_OTHER ? http_method_name(r->method_id, &ml) : "HTTP";
	struct span *sp = span_start(server ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT, mn, ml, parent, &t->ctx);
	if (server && t->parent.valid)
		note_received(t);
	if (sp) {
		/* A head that came whole in one call started now, as the span did. */
		if (x->req_timed)
			span_set_start_time(sp, x->req_start_ns);
		if (server)
			server_attrs(x, t, sp);
		else
			client_attrs(x, t, sp);
	}
	if (!server)
		plan_injection(x, t, forwarded);

	bool head = r->method_id == HTTP_METHOD_HEAD, connect = r->method_id == HTTP_METHOD_CONNECT;
	if (x->fifo_len == EXCHANGE_PIPELINE_MAX) {
		/* Deeper pipelining than we follow: no span (counted as
		 * dropped), but its place in the order is kept. */
		struct exchange_pending *last =
			&x->fifo[(x->fifo_first + EXCHANGE_PIPELINE_MAX - 1) % EXCHANGE_PIPELINE_MAX];
		last->skip_after++;
		if (head || connect)
			last->skip_blind = true;
		span_drop(sp);
		return;
	}
	struct exchange_pending *p = &x->fifo[(x->fifo_first + x->fifo_len++) % EXCHANGE_PIPELINE_MAX];
	p->sp = sp;
	p->head = head;
	p->connect = connect;
	p->skip_blind = false;
	p->skip_after = 0;
	memcpy(p->trace_id, t->ctx.trace_id, 16);
	memcpy(p->span_id, t->ctx.span_id, 8);
	p->flags = t->ctx.flags;
	/* A server handles pipelined requests in order: the oldest unanswered
	 * one is what the thread works on now. Later ones become current as the
	 * responses before them complete (finish). */
	if (server && x->fifo_len == 1 && !x->skip_head)
		binding_set(t, x, &t->ctx);
}

/* The oldest unanswered request has its whole response: its span ends (an
 * untracked request has none), and on a server the next one becomes current. */
static void finish(struct exchange *x)
{
	if (x->skip_head) {
		x->skip_head--;
	} else if (x->fifo_len) {
		struct exchange_pending *p = &x->fifo[x->fifo_first];
		span_end(p->sp);
		p->sp = NULL;
		x->skip_head = p->skip_after;
		x->skip_head_blind = p->skip_blind;
		x->fifo_first = (x->fifo_first + 1) % EXCHANGE_PIPELINE_MAX;
		x->fifo_len--;
		binding_release(x);
	} else {
		return;
	}
	x->resp_started = x->resp_in_body = false;
	/* Requests one at a time keep using the first entry: the rest of the
	 * FIFO's pages are only touched by a connection that pipelines. */
	if (!x->fifo_len)
		x->fifo_first = 0;
	if (!x->skip_head)
		x->skip_head_blind = false;
	/* While untracked requests are answered, no request context is current. */
	struct exchange_thread *t = x->role == EXCHANGE_SERVER && x->fifo_len && !x->skip_head ? thread_state() : NULL;
	if (t) {
		/* The next pipelined request is now being handled (tracestate and
		 * baggage of pipelined requests after the first are not kept). */
		const struct exchange_pending *next = &x->fifo[x->fifo_first];
		struct trace_context *c = &t->ctx;
		context_clear(c);
		memcpy(c->trace_id, next->trace_id, 16);
		memcpy(c->span_id, next->span_id, 8);
		c->flags = next->flags;
		c->valid = true;
		binding_set(t, x, c);
	}
}

/* Request-stream bytes, in order, none fed before. */
static void requests(struct exchange *x, const char *p, size_t n)
{
	while (n > 0 && x->phase == EXCHANGE_HTTP) {
		size_t used;
		if (!x->req_in_body) {
			if (!x->req_started) {
				x->req_started = true;
				x->req_timed = false;
				x->head_start_pos = x->req_pos;
				http_request_init(&x->req, capture_names(x, 0));
			}
			enum http_state hs = http_request_feed(&x->req, p, n, &used);
			p += used;
			n -= used;
			x->req_pos += used;
			if (hs == HTTP_HEAD_PARTIAL) {
				/* The head goes on in a later call: it began about now. */
				if (!x->req_timed) {
					x->req_start_ns = span_now_ns();
					x->req_timed = true;
				}
				return;
			}
			if (hs == HTTP_HEAD_ERROR) {
				give_up(x);
				return;
			}
			request_begin(x);
			if (x->phase != EXCHANGE_HTTP)
				return;
			http_body_for_request(&x->req_body, &x->req);
			x->req_in_body = !x->req_body.done;
			if (!x->req_in_body)
				x->req_started = false;
		} else {
			used = http_body_feed(&x->req_body, p, n);
			p += used;
			n -= used;
			x->req_pos += used;
			if (x->req_body.error) {
				give_up(x);
				return;
			}
			if (!x->req_body.done)
				return;
			x->req_in_body = x->req_started = false;
		}
	}
}

/* Request-stream bytes at stream offset off: only those not fed yet (a
 * client resends what the kernel didn't take). */
static void requests_at(struct exchange *x, const char *p, size_t n, uint64_t off)
{
	if (off + n <= x->req_pos)
		return;
	if (off < x->req_pos) {
		p += x->req_pos - off;
		n -= (size_t)(x->req_pos - off);
	}
	requests(x, p, n);
}

/* Response-stream bytes; p NULL for bytes we can't see (sendfile), which
 * only count as body. */
static void responses(struct exchange *x, const char *p, size_t n)
{
	while (n > 0 && x->phase == EXCHANGE_HTTP && (x->fifo_len || x->skip_head)) {
		/* NULL: the response of a request pipelined beyond the FIFO */
		struct exchange_pending *pend = x->skip_head ? NULL : &x->fifo[x->fifo_first];
		size_t used;
		if (!x->resp_in_body) {
			if (!p)
				return;
			if (!x->resp_started) {
				if (!pend && x->skip_head_blind) {
					/* Which of them was HEAD is unknown: so is where
					 * this response ends, and every one after it. */
					give_up(x);
					return;
				}
				x->resp_started = true;
				/* captures only for a span that records them */
				http_response_init(&x->resp, pend && pend->sp ? capture_names(x, 1) : NULL);
			}
			enum http_state hs = http_response_feed(&x->resp, p, n, &used);
			p += used;
			n -= used;
			if (hs == HTTP_HEAD_PARTIAL)
				return;
			if (hs == HTTP_HEAD_ERROR) {
				give_up(x);
				return;
			}
			unsigned code = x->resp.status;
			if (code >= 100 && code < 200 && code != 101) {
				x->resp_started = false;   /* interim (100 Continue): the final response follows */
				continue;
			}
			if (pend && pend->sp)
				response_attrs(x, pend->sp);
			if (code == 101 || (pend && pend->connect && code >= 200 && code < 300)) {
				/* Switching protocols (WebSocket...) or a CONNECT tunnel:
				 * what follows isn't HTTP/1.x. */
				finish(x);
				give_up(x);
				return;
			}
			http_body_for_response(&x->resp_body, &x->resp, pend && pend->head);
			if (x->resp_body.done)
				finish(x);
			else
				x->resp_in_body = true;
		} else {
			if (p) {
				used = http_body_feed(&x->resp_body, p, n);
				p += used;
			} else {
				/* Opaque bytes can only be counted against a length. */
				if (x->resp_body.kind != HTTP_BODY_LENGTH)
					return;
				used = n < x->resp_body.remaining ? n : (size_t)x->resp_body.remaining;
				x->resp_body.remaining -= used;
				if (!x->resp_body.remaining)
					x->resp_body.done = true;
			}
			n -= used;
			if (x->resp_body.error) {
				give_up(x);
				return;
			}
			if (!x->resp_body.done)
				return;
			finish(x);
		}
	}
}

/* --- entry points --- */

void exchange_open(struct exchange *x, enum exchange_role role, const struct sockaddr *local, socklen_t llen,
		   const struct sockaddr *peer, socklen_t plen)
{
	x->gen++;
	x->role = (uint8_t)role;
	x->phase = EXCHANGE_PENDING;
	x->detect_len = 0;
	x->connecting = role == EXCHANGE_CLIENT;
	x->connect_ns = role == EXCHANGE_CLIENT ? span_now_ns() : 0;
	endpoint_set(&x->local, local, llen);
	endpoint_set(&x->peer, peer, plen);
	x->block_state = 0;
	x->req_started = x->req_in_body = x->req_timed = false;
	x->req_pos = x->head_start_pos = 0;
	x->resp_started = x->resp_in_body = x->skip_head_blind = false;
	x->skip_head = 0;
	/* entries left by a connection given up in a forked child are the
	 * parent's records: never touched */
	x->fifo_first = x->fifo_len = 0;
	x->sent_pos = 0;
	x->inject_pos = UINT64_MAX;
	x->inject_len = x->inject_sent = 0;
	x->inject_replaces = false;
}

/* The first bytes a connection carried decide whether it is followed:
 * requests for a server, requests sent by a client. p[0..n) is added to
 * what was seen (commit) or only looked at. */
static enum http_detect detect(struct exchange *x, const char *p, size_t n, bool commit)
{
	char buf[8];
	size_t have = x->detect_len, take = n < sizeof buf - have ? n : sizeof buf - have;
	memcpy(buf, x->detect, have);
	memcpy(buf + have, p, take);
	enum http_detect d = http_detect(buf, have + take);
	if (commit && d == HTTP_DETECT_NEED_MORE) {
		memcpy(x->detect, buf, have + take);
		x->detect_len = (uint8_t)(have + take);
	}
	if (d != HTTP_DETECT_NEED_MORE)
		x->phase = d == HTTP_DETECT_REQUEST ? EXCHANGE_HTTP : EXCHANGE_IGNORED;
	return d;
}

void exchange_received(struct exchange *x, const char *p, size_t n)
{
	int e = errno;
	if (x->phase == EXCHANGE_PENDING) {
		if (x->role == EXCHANGE_CLIENT) {
			x->phase = EXCHANGE_IGNORED;   /* the peer spoke first: not an HTTP client */
		} else {
			/* The first bytes may arrive one at a time: the detector
			 * keeps a few, and the parser is fed from the first byte
			 * once decided. */
			uint8_t before = x->detect_len;
			if (detect(x, p, n, true) == HTTP_DETECT_REQUEST && before)
				requests(x, x->detect, before);
		}
	}
	if (x->phase == EXCHANGE_HTTP) {
		if (x->role == EXCHANGE_SERVER)
			requests(x, p, n);
		else
			responses(x, p, n);
	}
	errno = e;
}

void exchange_received_iov(struct exchange *x, const struct iovec *iov, int cnt, size_t n)
{
	for (int i = 0; i < cnt && n > 0; i++) {
		size_t l = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (l)
			exchange_received(x, iov[i].iov_base, l);
		n -= l;
	}
}

void exchange_written(struct exchange *x, const char *p, size_t n)
{
	int e = errno;
	if (x->role == EXCHANGE_SERVER) {
		if (x->phase == EXCHANGE_PENDING)
			x->phase = EXCHANGE_IGNORED;   /* the server speaks first: not HTTP */
		else if (x->phase == EXCHANGE_HTTP)
			responses(x, p, n);
	}
	errno = e;
}

void exchange_written_iov(struct exchange *x, const struct iovec *iov, int cnt, size_t n)
{
	if (x->role != EXCHANGE_SERVER || x->phase != EXCHANGE_HTTP) {
		exchange_written(x, iov[0].iov_base, n < iov[0].iov_len ? n : iov[0].iov_len);
		return;
	}
	int e = errno;
	for (int i = 0; i < cnt && n > 0; i++) {
		size_t l = iov[i].iov_len < n ? iov[i].iov_len : n;
		if (l)
			responses(x, iov[i].iov_base, l);
		n -= l;
	}
	errno = e;
}

/* Appends to v (holding nv entries) the bytes [from, to) of the app's data
 * in iov; returns the new count. The caller bounds cnt, so the app's
 * entries, one split and the injection always fit. */
static int iov_range(struct iovec *v, int nv, const struct iovec *iov, int cnt, size_t from, size_t to)
{
	if (cnt == 1) {
		/* the usual write() or send() */
		size_t hi = to < iov[0].iov_len ? to : iov[0].iov_len;
		if (from < hi && nv < EXCHANGE_IOV_MAX) {
			v[nv].iov_base = (char *)iov[0].iov_base + from;
			v[nv++].iov_len = hi - from;
		}
		return nv;
	}
	size_t at = 0;
	for (int i = 0; i < cnt && at < to && nv < EXCHANGE_IOV_MAX; i++) {
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

/* The first up to 8 bytes of iov, for detection. */
static size_t iov_head(const struct iovec *iov, int cnt, char *out, size_t max)
{
	size_t n = 0;
	for (int i = 0; i < cnt && n < max; i++) {
		size_t l = iov[i].iov_len < max - n ? iov[i].iov_len : max - n;
		memcpy(out + n, iov[i].iov_base, l);
		n += l;
	}
	return n;
}

ssize_t exchange_send(struct exchange *x, const struct iovec *iov, int cnt, exchange_send_fn send, void *arg)
{
	size_t total = 0;
	for (int i = 0; i < cnt; i++)
		total += iov[i].iov_len;

	if (x->role == EXCHANGE_CLIENT && x->phase == EXCHANGE_PENDING && total) {
		char first[8];
		size_t fl = iov_head(iov, cnt, first, sizeof first);
		uint8_t earlier = x->detect_len;   /* bytes already sent while undecided */
		enum http_detect d = detect(x, first, fl, false);
		if (d == HTTP_DETECT_REQUEST) {
			/* Those earlier bytes are part of the request head: parse them first. */
			int e = errno;
			requests(x, x->detect, earlier);
			x->sent_pos = earlier;
			errno = e;
		} else if (d == HTTP_DETECT_NEED_MORE) {
			/* Only what the kernel took counts as sent (and only if
			 * this is still the connection it was: see below). */
			uint32_t gen = x->gen;
			ssize_t r = send(arg, iov, cnt, true);
			if (r > 0 && x->gen == gen && x->phase == EXCHANGE_PENDING) {
				int e = errno;
				detect(x, first, (size_t)r < fl ? (size_t)r : fl, true);
				errno = e;
			}
			return r;
		}
	}
	if (x->role != EXCHANGE_CLIENT || x->phase != EXCHANGE_HTTP)
		return send(arg, iov, cnt, true);

	/* The caller may let other threads at x during send (its lock is not
	 * held across the system call): what changed meanwhile (the fd closed
	 * and reused, the exchange given up) stops the accounting. */
	uint32_t gen = x->gen;
	int e = errno;
	uint64_t off = x->sent_pos;
	for (int i = 0; i < cnt; i++) {
		requests_at(x, iov[i].iov_base, iov[i].iov_len, off);
		off += iov[i].iov_len;
	}
	errno = e;

	/* Where the rest of the injection goes in the app's stream: an
	 * insertion stays at inject_pos until all of it is sent; a replacement
	 * stands for as many of the app's bytes, so it moves along with them. */
	uint64_t point = x->inject_pos + (x->inject_replaces ? x->inject_sent : 0);
	uint64_t end = x->sent_pos + total;
	bool here = x->inject_len > x->inject_sent && point >= x->sent_pos && total > 0 &&
		    (x->inject_replaces ? point < end : point <= end);
	if (!here) {
		ssize_t r = send(arg, iov, cnt, true);
		if (r > 0 && x->gen == gen && x->phase == EXCHANGE_HTTP)
			x->sent_pos += (uint64_t)r;
		return r;
	}

	/* [app bytes before the point][injection rest][app bytes after]; a
	 * replacement leaves out the app bytes it stands for (as many as this
	 * call has). */
	bool replaces = x->inject_replaces;
	size_t before = (size_t)(point - x->sent_pos);
	size_t inj_rem = x->inject_len - x->inject_sent;
	size_t covered = 0;
	if (x->inject_replaces) {
		if (inj_rem > end - point)
			inj_rem = (size_t)(end - point);
		covered = inj_rem;
	}
	struct iovec v[EXCHANGE_IOV_MAX];
	int nv = iov_range(v, 0, iov, cnt, 0, before);
	v[nv].iov_base = x->inject + x->inject_sent;
	v[nv++].iov_len = inj_rem;
	nv = iov_range(v, nv, iov, cnt, before + covered, total);

	ssize_t r;
	size_t app_sent = 0;
	for (;;) {
		r = send(arg, v, nv, false);
		e = errno;
		if (r <= 0)
			break;
		if (x->gen != gen || x->phase != EXCHANGE_HTTP || x->inject_sent + inj_rem > x->inject_len) {
			/* no longer ours to account for: report the app's share */
			size_t got = (size_t)r, ours = got > before ? got - before : 0;
			if (ours > inj_rem)
				ours = inj_rem;
			errno = e;
			return (ssize_t)(app_sent + (replaces ? got : got - ours));
		}
		size_t got = (size_t)r;
		if (got <= before) {
			app_sent += got;   /* the point not passed: the injection stays pending there */
			break;
		}
		app_sent += before;
		got -= before;
		before = 0;
		size_t took = got < inj_rem ? got : inj_rem;
		x->inject_sent += (uint16_t)took;
		if (x->inject_replaces)
			app_sent += took;   /* each byte of ours went out for one of the app's */
		if (got < inj_rem) {
			if (app_sent)
				break;   /* report the app's bytes; the rest of the injection goes first next time */
			/* An insertion of which none of the app's bytes went out yet:
			 * keep sending it (a blocking socket), or report EAGAIN below. */
			inj_rem -= got;
			nv = 0;
			v[nv].iov_base = x->inject + x->inject_sent;
			v[nv++].iov_len = inj_rem;
			nv = iov_range(v, nv, iov, cnt, 0, total);
			continue;
		}
		app_sent += got - inj_rem;
		break;
	}
	if (r < 0 && app_sent == 0) {
		errno = e;
		return -1;
	}
	x->sent_pos += app_sent;
	errno = e;
	return (ssize_t)app_sent;
}

void exchange_write_closed(struct exchange *x)
{
	int e = errno;
	/* A response delimited by close is complete once writing stops. */
	if (x->role == EXCHANGE_SERVER && x->phase == EXCHANGE_HTTP && x->resp_in_body &&
	    x->resp_body.kind == HTTP_BODY_UNTIL_CLOSE)
		finish(x);
	errno = e;
}

void exchange_close(struct exchange *x)
{
	int e = errno;
	/* A response that runs until close is complete now; anything else was cut. */
	if (x->phase == EXCHANGE_HTTP)
		while (x->fifo_len)
			finish(x);
	binding_release(x);
	x->phase = EXCHANGE_IGNORED;
	errno = e;
}

void exchange_connect_done(struct exchange *x, int err, const char *err_name)
{
	if (err == EINPROGRESS || err == EALREADY || err == EINTR)
		return;   /* still under way */
	if (err == EISCONN)
		err = 0;  /* a second connect() asking whether the first finished: it did */
	bool was = x->connecting && x->phase == EXCHANGE_PENDING;
	x->connecting = false;
	if (!was || !err || !context_current()->valid)
		return;
	int e = errno;
	struct exchange_thread *t = thread_state();
	struct span *sp = t ? span_start(SPAN_KIND_CLIENT, "connect", 7, NULL, &t->ctx) : NULL;
	if (sp) {
		span_set_start_time(sp, x->connect_ns);
		span_set_str(sp, "network.transport", "tcp", 3);
		endpoint_attrs(sp, &x->peer, KEY("network.peer.address"), KEY("network.peer.port"));
		span_set_cstr(sp, "error.type", err_name ? err_name : "_OTHER");
		const char *msg = strerror(err);
		span_set_status(sp, SPAN_STATUS_ERROR, msg, strlen(msg));
		span_end(sp);
	}
	errno = e;
}

bool exchange_after_fork(struct exchange *x)
{
	bool busy = x->phase == EXCHANGE_PENDING ? x->role == EXCHANGE_CLIENT && x->connecting
		  : x->phase == EXCHANGE_HTTP && (x->fifo_len || x->skip_head || x->req_started || x->req_in_body);
	if (busy)
		x->phase = EXCHANGE_IGNORED;
	return x->phase != EXCHANGE_IGNORED;
}
