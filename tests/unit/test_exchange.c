/* Unit tests for agent/exchange.c: server and client exchanges fed as byte streams (whole and byte by byte), the spans they finish, propagation in and out, pipelining, the splice into a client's sends. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/exchange.h"
#include "agent/propagation.h"
#include "agent/queue.h"
#include "agent/span.h"
#include "agent/spanview.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Set-up: the core as the agent has it, spans collected from the queue */
/* ------------------------------------------------------------------ */

static const char *no_env(const char *name)
{
	(void)name;
	return NULL;
}

/* Spec defaults, always_on, the propagators and no captures or routes;
 * a test changes config_global and calls configure() again. */
static void setup(void)
{
	static const struct queue_consumer none;
	static bool queue_ready;

	config_load(&config_global, no_env);
	config_global.sdk_disabled = false;
	config_global.sampler = SAMPLER_PARENTBASED_ALWAYS_ON;
	config_global.bsp_max_queue_size = 4096;
	config_global.bsp_max_export_batch_size = 512;
	ck_assert(span_pool_init(4096));
	if (!queue_ready) {
		ck_assert(queue_init(4096, 512));
		queue_ready = true;
	}
	queue_set_consumer(&none);
	queue_reset_after_fork();
	ck_assert(exchange_configure(&config_global));
}

static void configure(void)
{
	ck_assert(span_pool_init(config_global.bsp_max_queue_size));
	exchange_configure(&config_global);
}

/* The spans finished so far, in the order they ended, read back from the
 * queue's OTLP bytes (valid until the next collect). */
#define MAX_SPANS 64
static struct span_view views[MAX_SPANS];
static struct span_view *spans[MAX_SPANS];
static size_t nspans;

static void collect(void)
{
	struct queue_cursor c;
	const char *p;
	size_t len;

	nspans = 0;
	queue_cursor_start(&c);
	while (queue_next(&c, &p, &len)) {
		ck_assert(nspans < MAX_SPANS);
		ck_assert(span_view_decode(p, len, &views[nspans]));
		spans[nspans] = &views[nspans];
		nspans++;
	}
	queue_release(&c);
}

/* The one place that reads records' fields: attributes by key. */
static const struct span_attr *attr_of(const struct span_view *s, const char *key)
{
	for (unsigned i = 0; i < s->n_attrs; i++) {
		const struct span_attr *a = &s->attrs[i];
		if (a->key.len == strlen(key) && memcmp(span_view_str(s, a->key), key, a->key.len) == 0)
			return a;
	}
	return NULL;
}

static void span_name(const struct span_view *s, char *out, size_t cap)
{
	snprintf(out, cap, "%.*s", (int)s->name.len, span_view_str(s, s->name));
}

/*
 * Checks a span against "NAME|key=value|key=#123|!key|status=ERROR":
 * "=" a string (or the first element of a string array), "=#" an int, "!"
 * absent, status= the span status (UNSET, OK, ERROR).
 */
static void check_span(const char *what, const struct span_view *s, const char *spec)
{
	char buf[2048], name[256];
	snprintf(buf, sizeof buf, "%s", spec);
	char *save = NULL, *tok = strtok_r(buf, "|", &save);
	span_name(s, name, sizeof name);
	ck_assert_msg(strcmp(name, tok) == 0, "%s: span name \"%s\", want \"%s\"", what, name, tok);
	while ((tok = strtok_r(NULL, "|", &save))) {
		if (tok[0] == '!') {
			ck_assert_msg(!attr_of(s, tok + 1), "%s: %s should be absent", what, tok + 1);
			continue;
		}
		char *eq = strchr(tok, '=');
		ck_assert_msg(eq, "bad spec %s", tok);
		*eq = '\0';
		const char *want = eq + 1;
		if (strcmp(tok, "status") == 0) {
			static const char *const st[] = { "UNSET", "OK", "ERROR" };
			ck_assert_msg(strcmp(st[s->status], want) == 0, "%s: status %s, want %s", what, st[s->status], want);
			continue;
		}
		const struct span_attr *a = attr_of(s, tok);
		ck_assert_msg(a, "%s: no attribute %s (want %s)", what, tok, want);
		if (want[0] == '#') {
			ck_assert_msg(a->type == SPAN_ATTR_INT && a->v.i == strtoll(want + 1, NULL, 10),
				      "%s: %s is not the int %s", what, tok, want + 1);
		} else {
			ck_assert_msg(a->type == SPAN_ATTR_STRING || a->type == SPAN_ATTR_STRING_ARRAY,
				      "%s: %s is not a string", what, tok);
			const char *v = span_view_str(s, a->v.s);
			size_t vl = a->type == SPAN_ATTR_STRING ? a->v.s.len : strlen(v);
			ck_assert_msg(vl == strlen(want) && memcmp(v, want, vl) == 0, "%s: %s is \"%.*s\", want \"%s\"",
				      what, tok, (int)vl, v, want);
		}
	}
}

static struct sockaddr_in sin4(const char *ip, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static void open_server(struct exchange *x)
{
	struct sockaddr_in l = sin4("10.0.0.1", 8080), p = sin4("192.168.1.20", 50123);
	memset(x, 0, sizeof *x);
	exchange_open(x, EXCHANGE_SERVER, (struct sockaddr *)&l, sizeof l, (struct sockaddr *)&p, sizeof p);
}

static void open_client(struct exchange *x)
{
	struct sockaddr_in p = sin4("127.0.0.1", 9090);
	memset(x, 0, sizeof *x);
	exchange_open(x, EXCHANGE_CLIENT, NULL, 0, (struct sockaddr *)&p, sizeof p);
	exchange_connect_done(x, 0, NULL);
}

/* Feeds s to a stream whole (step 0) or step bytes per call. */
static void feed(struct exchange *x, bool written, const char *s, size_t n, size_t step)
{
	for (size_t at = 0; at < n;) {
		size_t k = step && n - at > step ? step : n - at;
		char *piece = malloc(k);
		memcpy(piece, s + at, k);
		if (written)
			exchange_written(x, piece, k);
		else
			exchange_received(x, piece, k);
		free(piece);
		at += k;
	}
}

/* ------------------------------------------------------------------ */
/* Server exchanges                                                   */
/* ------------------------------------------------------------------ */

#define CURL_GET "GET /ok?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
#define TP_A     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define OK_2     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

struct server_case {
	const char *name;
	const char *in;          /* what the server reads */
	const char *out;         /* what it writes */
	bool close;              /* the connection closes after */
	unsigned nspans;
	const char *span[4];     /* check_span specs, in the order they end */
	unsigned dropped;        /* spans given up (span_stats.dropped_unfollowed) */
};

static const struct server_case server_cases[] = {
	{ "curl GET", CURL_GET, OK_2, false, 1,
	  { "GET|http.request.method=GET|url.path=/ok|url.query=x=1|url.scheme=http|server.address=127.0.0.1"
	    "|server.port=#8080|client.address=192.168.1.20|client.port=#50123|network.protocol.version=1.1"
	    "|user_agent.original=curl/7.88.1|http.response.status_code=#200|!error.type|status=UNSET" }, 0 },
	{ "no Host: server.address from the socket", "GET / HTTP/1.0\r\n\r\n",
	  "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, 1,
	  { "GET|server.address=10.0.0.1|server.port=#8080|network.protocol.version=1.0|!user_agent.original" }, 0 },
	{ "Host without port is port 80", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", OK_2, false, 1,
	  { "GET|server.address=example.com|server.port=#80" }, 0 },
	{ "IPv6 Host", "GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", OK_2, false, 1,
	  { "GET|server.address=::1|server.port=#8443" }, 0 },
	{ "500 is an error for a server", CURL_GET, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
	  false, 1, { "GET|http.response.status_code=#500|error.type=500|status=ERROR" }, 0 },
	{ "404 is not an error for a server", CURL_GET, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false, 1,
	  { "GET|http.response.status_code=#404|!error.type|status=UNSET" }, 0 },
	{ "unknown method (after a known one: detection needs a known method)",
	  "GET / HTTP/1.1\r\nHost: h\r\n\r\nMKCOL /d HTTP/1.1\r\nHost: h\r\n\r\n", OK_2 OK_2, false, 2,
	  { "GET|http.request.method=GET", "HTTP|http.request.method=_OTHER|http.request.method_original=MKCOL" }, 0 },
	{ "QUERY is known", "QUERY /q HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na=1", OK_2, false, 1,
	  { "QUERY|http.request.method=QUERY|!http.request.method_original" }, 0 },
	{ "POST with a chunked body, chunked response", 
	  "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	  "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", false, 1,
	  { "POST|http.response.status_code=#201" }, 0 },
	{ "100 Continue, then the final response",
	  "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", false, 1,
	  { "PUT|http.response.status_code=#204" }, 0 },
	{ "HEAD: the response has no body", "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" OK_2, false, 2,
	  { "HEAD|url.path=/h|http.response.status_code=#200", "GET|url.path=/g" }, 0 },
	{ "pipelined: each response to its request",
	  "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" "HTTP/1.1 404 NF\r\nContent-Length: 1\r\n\r\nb"
	  "HTTP/1.1 503 U\r\nContent-Length: 1\r\n\r\nc", false, 3,
	  { "GET|url.path=/1|http.response.status_code=#200", "GET|url.path=/2|http.response.status_code=#404",
	    "GET|url.path=/3|http.response.status_code=#503|status=ERROR" }, 0 },
	{ "one connection, hosts that change: each span has its request's (the first one's are kept as a block)",
	  "GET /1 HTTP/1.1\r\nHost: one.example:8080\r\n\r\n" "GET /2 HTTP/1.1\r\nHost: two.example\r\n\r\n"
	  "GET /3 HTTP/1.0\r\n\r\n" "GET /4 HTTP/1.1\r\nHost: one.example:8080\r\n\r\n",
	  OK_2 OK_2 OK_2 OK_2, false, 4,
	  { "GET|url.path=/1|server.address=one.example|server.port=#8080|client.address=192.168.1.20|url.scheme=http",
	    "GET|url.path=/2|server.address=two.example|server.port=#80|client.address=192.168.1.20|url.scheme=http",
	    "GET|url.path=/3|server.address=10.0.0.1|server.port=#8080|client.port=#50123",
	    "GET|url.path=/4|server.address=one.example|server.port=#8080|client.port=#50123" }, 0 },
	{ "a connection whose first request has no Host, then one with",
	  "GET /1 HTTP/1.0\r\n\r\n" "GET /2 HTTP/1.1\r\nHost: [::1]:9\r\n\r\n" "GET /3 HTTP/1.0\r\n\r\n",
	  OK_2 OK_2 OK_2, false, 3,
	  { "GET|server.address=10.0.0.1|server.port=#8080|client.address=192.168.1.20",
	    "GET|server.address=::1|server.port=#9|client.address=192.168.1.20",
	    "GET|server.address=10.0.0.1|server.port=#8080|client.address=192.168.1.20" }, 0 },
	{ "a response delimited by close ends at close", CURL_GET, "HTTP/1.0 200 OK\r\n\r\nstreamed until close", true,
	  1, { "GET|http.response.status_code=#200" }, 0 },
	{ "a cut response still ends its span at close", CURL_GET, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok",
	  true, 1, { "GET|http.response.status_code=#200" }, 0 },
	{ "101: the rest is not HTTP", "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
	  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", false, 1,
	  { "GET|http.response.status_code=#101" }, 0 },
	{ "CONNECT 200: a tunnel", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
	  "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03", false, 1,
	  { "CONNECT|http.response.status_code=#200" }, 0 },
	{ "bad request framing: given up, span dropped",
	  "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello", OK_2, false, 0, { 0 },
	  1 },
	{ "a malformed response: given up, span dropped", CURL_GET, "HTTP/1.1 2x0 OK\r\n\r\n", false, 0, { 0 }, 1 },
	{ "not HTTP: never followed", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "\x16\x03\x03", false, 0, { 0 }, 0 },
	{ "the server speaks first: never followed", NULL, "220 smtp ready\r\n", false, 0, { 0 }, 0 },
};

static void run_server_case(const struct server_case *c, size_t step)
{
	struct exchange *x = calloc(1, sizeof *x);
	struct span_stats before, after;
	char what[256];

	span_stats_get(&before);
	open_server(x);
	if (c->in)
		feed(x, false, c->in, strlen(c->in), step);
	if (c->out)
		feed(x, true, c->out, strlen(c->out), step);
	if (c->close)
		exchange_close(x);
	collect();
	span_stats_get(&after);
	snprintf(what, sizeof what, "%s (step %zu)", c->name, step);
	ck_assert_msg(nspans == c->nspans, "%s: %zu spans, want %u", what, nspans, c->nspans);
	for (unsigned i = 0; i < c->nspans; i++) {
		ck_assert_int_eq(spans[i]->kind, SPAN_KIND_SERVER);
		check_span(what, spans[i], c->span[i]);
	}
	ck_assert_msg(after.dropped_unfollowed - before.dropped_unfollowed == c->dropped, "%s: %llu dropped, want %u",
		      what, (unsigned long long)(after.dropped_unfollowed - before.dropped_unfollowed), c->dropped);
	exchange_close(x);
	free(x);
}

START_TEST(test_server_table)
{
	for (size_t i = 0; i < N_ELEMS(server_cases); i++) {
		run_server_case(&server_cases[i], 0);
		run_server_case(&server_cases[i], 1);
		run_server_case(&server_cases[i], 7);
	}
}
END_TEST

/* Binary bodies (with NULs) the table can't hold as C strings. */
START_TEST(test_server_binary_body)
{
	static const char req[] = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n\0\1\0\2";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, req, sizeof req - 1);
	exchange_written(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	check_span("binary", spans[0], "POST|http.response.status_code=#200");
	free(x);
}
END_TEST

/* Extraction: the caller's trace is joined, its tracestate and baggage are
 * the request's context, which is the thread's current one until the
 * response is written. */
START_TEST(test_server_extract_and_bind)
{
	static const char req[] = "GET /t HTTP/1.1\r\nHost: h\r\ntraceparent: " TP_A "\r\ntracestate: v=1,w=2\r\n"
				  "baggage: user=alice\r\n\r\n";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	ck_assert(!context_current()->valid);
	exchange_received(x, req, strlen(req));
	const struct trace_context *cur = context_current();
	ck_assert(cur->valid);
	char tp[TRACEPARENT_LEN + 1];
	propagation_format_traceparent(cur, tp);
	ck_assert_mem_eq(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
	ck_assert_uint_eq(cur->tracestate_len, 7);
	ck_assert_mem_eq(context_tracestate(cur), "v=1,w=2", 7);
	ck_assert_uint_eq(cur->baggage_len, 10);
	ck_assert_mem_eq(context_baggage(cur), "user=alice", 10);
	uint8_t sid[8];
	memcpy(sid, cur->span_id, 8);
	exchange_written(x, OK_2, strlen(OK_2));
	ck_assert(!context_current()->valid);
	collect();
	ck_assert_uint_eq(nspans, 1);
	ck_assert(spans[0]->has_parent && spans[0]->parent_remote);
	ck_assert_mem_eq(spans[0]->parent_span_id, "\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8);
	ck_assert_mem_eq(spans[0]->span_id, sid, 8);
	free(x);
}
END_TEST

/* A broken or repeated traceparent starts a new trace, without tracestate. */
START_TEST(test_server_bad_traceparent)
{
	static const char *const reqs[] = {
		"GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7\r\ntracestate: a=b\r\n\r\n",
		"GET / HTTP/1.1\r\ntraceparent: " TP_A "\r\ntraceparent: " TP_A "\r\ntracestate: a=b\r\n\r\n",
	};
	for (size_t i = 0; i < N_ELEMS(reqs); i++) {
		struct exchange *x = calloc(1, sizeof *x);
		open_server(x);
		exchange_received(x, reqs[i], strlen(reqs[i]));
		exchange_written(x, OK_2, strlen(OK_2));
		collect();
		ck_assert_uint_eq(nspans, 1);
		ck_assert(!spans[0]->has_parent);
		ck_assert_uint_eq(spans[0]->trace_state.len, 0);
		ck_assert(memcmp(spans[0]->trace_id, "\x4b\xf9\x2f\x35", 4) != 0);
		free(x);
	}
}
END_TEST

/* Pipelined requests become current one after another, as their turn comes. */
START_TEST(test_server_pipeline_binding)
{
	static const char req[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, req, strlen(req));
	uint8_t first[8], second[8];
	memcpy(first, context_current()->span_id, 8);
	exchange_written(x, resp, strlen(resp));
	ck_assert(context_current()->valid);
	memcpy(second, context_current()->span_id, 8);
	ck_assert(memcmp(first, second, 8) != 0);
	exchange_written(x, resp, strlen(resp));
	ck_assert(!context_current()->valid);
	collect();
	ck_assert_uint_eq(nspans, 2);
	ck_assert_mem_eq(spans[0]->span_id, first, 8);
	ck_assert_mem_eq(spans[1]->span_id, second, 8);
	free(x);
}
END_TEST

/* Deeper than the FIFO: the extra requests get no span (dropped, counted),
 * and every response still goes to its own request. */
START_TEST(test_server_pipeline_overflow)
{
	enum { N = EXCHANGE_PIPELINE_MAX + 3 };
	char *in = malloc(N * 64), *out = malloc(N * 64);
	size_t il = 0, ol = 0;
	for (int i = 0; i < N; i++) {
		il += (size_t)sprintf(in + il, "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
		ol += (size_t)sprintf(out + ol, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", 200 + i);
	}
	struct span_stats before, after;
	span_stats_get(&before);
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, in, il);
	exchange_written(x, out, ol);
	collect();
	span_stats_get(&after);
	ck_assert_uint_eq(nspans, EXCHANGE_PIPELINE_MAX);
	ck_assert_uint_eq(after.dropped_unfollowed - before.dropped_unfollowed, 3);
	for (int i = 0; i < EXCHANGE_PIPELINE_MAX; i++) {
		char spec[128];
		snprintf(spec, sizeof spec, "GET|url.path=/%d|http.response.status_code=#%d", i, 200 + i);
		check_span("overflow", spans[i], spec);
	}
	/* still followed: the next exchange gets its span */
	exchange_received(x, CURL_GET, strlen(CURL_GET));
	exchange_written(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	free(in);
	free(out);
	free(x);
}
END_TEST

/* sendfile: bytes the agent can't see count against a Content-Length. */
START_TEST(test_server_sendfile_and_shutdown)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, CURL_GET, strlen(CURL_GET));
	exchange_written(x, head, strlen(head));
	exchange_written(x, NULL, 4000);
	collect();
	ck_assert_uint_eq(nspans, 0);
	exchange_written(x, NULL, 6000);
	collect();
	ck_assert_uint_eq(nspans, 1);
	/* until close, then shutdown(SHUT_WR) */
	exchange_received(x, CURL_GET, strlen(CURL_GET));
	exchange_written(x, "HTTP/1.0 200 OK\r\n\r\nbody", 23);
	collect();
	ck_assert_uint_eq(nspans, 0);
	exchange_write_closed(x);
	collect();
	ck_assert_uint_eq(nspans, 1);
	free(x);
}
END_TEST

START_TEST(test_server_routes_and_captures)
{
	snprintf(config_global.http_routes, sizeof config_global.http_routes, "/api/tasks/{id},/static/*");
	snprintf(config_global.http_server_capture_request, sizeof config_global.http_server_capture_request,
		 "X-Request-Id, content-type");
	snprintf(config_global.http_server_capture_response, sizeof config_global.http_server_capture_response,
		 "Cache-Control");
	configure();
	static const char req[] = "DELETE /api/tasks/42?force=1 HTTP/1.1\r\nHost: h\r\nx-request-id: abc\r\n"
				  "X-Request-Id: def\r\nContent-Length: 0\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 0\r\n\r\n";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, req, strlen(req));
	exchange_written(x, resp, strlen(resp));
	exchange_received(x, "GET /static/a/b.css HTTP/1.1\r\n\r\n", 32);
	exchange_written(x, resp, strlen(resp));
	exchange_received(x, "GET /other HTTP/1.1\r\n\r\n", 23);
	exchange_written(x, resp, strlen(resp));
	collect();
	ck_assert_uint_eq(nspans, 3);
	check_span("route", spans[0], "DELETE /api/tasks/{id}|http.route=/api/tasks/{id}|url.path=/api/tasks/42"
				      "|url.query=force=1|http.request.header.x-request-id=abc,def"
				      "|!http.request.header.content-type|http.response.header.cache-control=no-store");
	check_span("wildcard", spans[1], "GET /static/*|http.route=/static/*");
	check_span("no route", spans[2], "GET|!http.route");
	free(x);
}
END_TEST

/* The connection's attributes are made once and copied to every span. */
START_TEST(test_server_connection_block)
{
	struct sockaddr_in6 l = { .sin6_family = AF_INET6, .sin6_port = htons(443) };
	struct sockaddr_in6 p = { .sin6_family = AF_INET6, .sin6_port = htons(40000) };
	inet_pton(AF_INET6, "2001:db8::1", &l.sin6_addr);
	inet_pton(AF_INET6, "2001:db8::99", &p.sin6_addr);
	struct exchange *x = calloc(1, sizeof *x);
	exchange_open(x, EXCHANGE_SERVER, (struct sockaddr *)&l, sizeof l, (struct sockaddr *)&p, sizeof p);
	for (int i = 0; i < 3; i++) {
		exchange_received(x, "GET / HTTP/1.1\r\n\r\n", 18);
		exchange_written(x, OK_2, strlen(OK_2));
	}
	collect();
	ck_assert_uint_eq(nspans, 3);
	for (int i = 0; i < 3; i++)
		check_span("v6", spans[i], "GET|client.address=2001:db8::99|client.port=#40000|server.address=2001:db8::1"
					    "|server.port=#443|url.scheme=http");
	free(x);
}
END_TEST

/* Unsampled: no span, but the request context (flags 00) is still current
 * and extraction still happens. */
START_TEST(test_server_unsampled)
{
	config_global.sampler = SAMPLER_ALWAYS_OFF;
	configure();
	static const char req[] = "GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n\r\n";
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	exchange_received(x, req, strlen(req));
	const struct trace_context *cur = context_current();
	ck_assert(cur->valid && !(cur->flags & TRACE_FLAG_SAMPLED));
	ck_assert_mem_eq(cur->trace_id, "\x4b\xf9\x2f\x35", 4);
	exchange_written(x, OK_2, strlen(OK_2));
	ck_assert(!context_current()->valid);
	collect();
	ck_assert_uint_eq(nspans, 0);
	free(x);
}
END_TEST

/* A forked child stops following exchanges in flight (the parent's spans)
 * and keeps idle ones. */
START_TEST(test_after_fork)
{
	struct exchange *busy = calloc(1, sizeof *busy), *idle = calloc(1, sizeof *idle);
	open_server(busy);
	open_server(idle);
	exchange_received(busy, CURL_GET, strlen(CURL_GET));
	exchange_received(idle, CURL_GET, strlen(CURL_GET));
	exchange_written(idle, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	exchange_after_fork_child();
	ck_assert(!exchange_after_fork(busy));
	ck_assert(exchange_after_fork(idle));
	exchange_close(busy);   /* the parent's span: neither ended nor dropped here */
	collect();
	ck_assert_uint_eq(nspans, 0);
	free(busy);
	free(idle);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Client exchanges                                                   */
/* ------------------------------------------------------------------ */

/* The kernel's side of a client's sends: what went out, taking at most
 * max bytes a call, and failing with EAGAIN every fail_every calls. */
struct wire {
	char buf[16384];
	size_t len, max;
	unsigned calls, fail_every, app_only_calls;
};

static ssize_t wire_send(void *arg, const struct iovec *v, int k, bool app_only)
{
	struct wire *w = arg;
	w->calls++;
	if (w->fail_every && w->calls % w->fail_every == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (app_only)
		w->app_only_calls++;
	size_t took = 0;
	for (int i = 0; i < k; i++) {
		size_t n = v[i].iov_len;
		if (w->max && took + n > w->max)
			n = w->max - took;
		memcpy(w->buf + w->len, v[i].iov_base, n);
		w->len += n;
		took += n;
		if (w->max && took == w->max)
			break;
	}
	return (ssize_t)took;
}

/* The app's blocking write loop: every byte of s[0..n), whole (piece 0),
 * in pieces of at most piece bytes, or a line at a time (BY_LINE). */
#define BY_LINE ((size_t)-1)
static void app_send(struct exchange *x, struct wire *w, const char *s, size_t n, size_t piece)
{
	size_t at = 0;
	while (at < n) {
		size_t k = piece && n - at > piece ? piece : n - at;
		if (piece == BY_LINE) {
			const char *lf = memchr(s + at, '\n', n - at);
			k = lf ? (size_t)(lf - (s + at)) + 1 : n - at;
		}
		struct iovec v = { (void *)(s + at), k };
		ssize_t r = exchange_send(x, &v, 1, wire_send, w);
		if (r < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			continue;
		}
		ck_assert_int_le(r, (ssize_t)k);
		at += (size_t)r;
	}
}

/* The header line we inject for span s: "traceparent: 00-<trace>-<span>-<flags>". */
static void tp_line(const struct span_view *s, char *out, bool crlf)
{
	struct trace_context c = { .valid = true, .flags = s->trace_flags };
	memcpy(c.trace_id, s->trace_id, 16);
	memcpy(c.span_id, s->span_id, 8);
	memcpy(out, "traceparent: ", 13);
	propagation_format_traceparent(&c, out + 13);
	strcpy(out + 13 + TRACEPARENT_LEN, crlf ? "\r\n" : "\n");
}

/* want with "%TP" replaced by the injected line of s. */
static void expect_wire(const char *what, const struct wire *w, const char *want, const struct span_view *s)
{
	char exp[16384], tp[128];
	const char *m = strstr(want, "%TP");
	if (m) {
		tp_line(s, tp, m[3] == 'c');
		size_t a = (size_t)(m - want);
		memcpy(exp, want, a);
		strcpy(exp + a, tp);
		strcat(exp, m + 4);
	} else {
		strcpy(exp, want);
	}
	ck_assert_msg(w->len == strlen(exp) && memcmp(w->buf, exp, w->len) == 0, "%s: wire\n%.*s\nwant\n%s", what,
		      (int)w->len, w->buf, exp);
}

struct client_case {
	const char *name;
	const char *out;         /* what the app sends */
	const char *in;          /* what it reads back */
	const char *wire;        /* what goes out: %TPc / %TPl the injected line, CRLF / LF */
	const char *span;
};

static const struct client_case client_cases[] = {
	{ "curl GET", "GET /ok?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
	  OK_2, "GET /ok?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n%TPc\r\n",
	  "GET|http.request.method=GET|server.address=127.0.0.1|server.port=#9090|network.peer.address=127.0.0.1"
	  "|network.peer.port=#9090|url.full=http://127.0.0.1:9090/ok?x=1|network.protocol.version=1.1"
	  "|http.response.status_code=#200|!user_agent.original|status=UNSET" },
	{ "LF-only head", "GET / HTTP/1.0\nHost: a.test\n\n", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
	  "GET / HTTP/1.0\nHost: a.test\n%TPl\n",
	  "GET|server.address=a.test|server.port=#80|url.full=http://a.test/|network.protocol.version=1.0" },
	{ "no Host: server.* from the socket, no url.full", "GET /x HTTP/1.1\r\n\r\n", OK_2, "GET /x HTTP/1.1\r\n%TPc\r\n",
	  "GET|server.address=127.0.0.1|server.port=#9090|!url.full" },
	{ "absolute-form (to a proxy)", "GET http://example.com/p HTTP/1.1\r\nHost: example.com\r\n\r\n", OK_2,
	  "GET http://example.com/p HTTP/1.1\r\nHost: example.com\r\n%TPc\r\n",
	  "GET|url.full=http://example.com/p|server.address=example.com" },
	{ "404 is an error for a client", "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	  "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "GET / HTTP/1.1\r\nHost: h\r\n%TPc\r\n",
	  "GET|http.response.status_code=#404|error.type=404|status=ERROR" },
	{ "the app's own traceparent: nothing added",
	  "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\n\r\n",
	  OK_2, "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-11111111111111111111111111111111-2222222222222222-01\r\n\r\n",
	  "GET|http.response.status_code=#200" },
	{ "POST body after the injection", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", OK_2,
	  "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n%TPc\r\nhello", "POST|http.response.status_code=#200" },
	{ "HEAD response without a body", "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
	  "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", "HEAD / HTTP/1.1\r\nHost: h\r\n%TPc\r\n",
	  "HEAD|http.response.status_code=#200" },
};

static void run_client_case(const struct client_case *c, size_t piece, size_t max)
{
	char what[256];
	snprintf(what, sizeof what, "%s (pieces %zu, kernel takes %zu)", c->name, piece, max);
	struct exchange *x = calloc(1, sizeof *x);
	struct wire *w = calloc(1, sizeof *w);
	w->max = max;
	open_client(x);
	app_send(x, w, c->out, strlen(c->out), piece);
	feed(x, false, c->in, strlen(c->in), piece);
	collect();
	ck_assert_msg(nspans == 1, "%s: %zu spans", what, nspans);
	ck_assert_int_eq(spans[0]->kind, SPAN_KIND_CLIENT);
	check_span(what, spans[0], c->span);
	expect_wire(what, w, c->wire, spans[0]);
	exchange_close(x);
	free(w);
	free(x);
}

START_TEST(test_client_table)
{
	/* a line at a time, as apps that write a header per call do: the
	 * final empty line is a call of its own, where the injection goes */
	static const size_t pieces[] = { 0, BY_LINE }, maxes[] = { 0, 1, 3, 13, 60 };
	for (size_t i = 0; i < N_ELEMS(client_cases); i++)
		for (size_t p = 0; p < N_ELEMS(pieces); p++)
			for (size_t m = 0; m < N_ELEMS(maxes); m++)
				run_client_case(&client_cases[i], pieces[p], maxes[m]);
}
END_TEST

/* EAGAIN while the injection is pending reports none of the app's bytes,
 * which is true; the app's retry sends the rest. */
START_TEST(test_client_eagain)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	for (unsigned every = 2; every < 6; every++) {
		struct exchange *x = calloc(1, sizeof *x);
		struct wire *w = calloc(1, sizeof *w);
		w->max = 7;
		w->fail_every = every;
		open_client(x);
		app_send(x, w, req, strlen(req), 0);
		exchange_received(x, OK_2, strlen(OK_2));
		collect();
		ck_assert_uint_eq(nspans, 1);
		expect_wire("eagain", w, "GET / HTTP/1.1\r\nHost: h\r\n%TPc\r\n", spans[0]);
		free(w);
		free(x);
	}
}
END_TEST

/* A head written a byte at a time has sent its final CR before it is
 * known to be complete: nothing can go in front of it any more, and the
 * request goes out as the app wrote it (with LF-only line ends, the point
 * is the final LF, still to be sent, and the injection goes in). */
START_TEST(test_client_bytewise)
{
	static const char crlf[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n", lf[] = "GET / HTTP/1.1\nHost: h\n\n";
	struct exchange *x = calloc(1, sizeof *x);
	struct wire *w = calloc(1, sizeof *w);
	open_client(x);
	app_send(x, w, crlf, strlen(crlf), 1);
	exchange_received(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	expect_wire("bytewise CRLF", w, crlf, spans[0]);
	memset(w, 0, sizeof *w);
	open_client(x);
	app_send(x, w, lf, strlen(lf), 1);
	exchange_received(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	expect_wire("bytewise LF", w, "GET / HTTP/1.1\nHost: h\n%TPl\n", spans[0]);
	free(w);
	free(x);
}
END_TEST

/* Pipelined client requests: each response ends its own span. Written one
 * per call, each gets its traceparent; written in one call, the second
 * gets none while the first one's is still to go out (never a mix). */
START_TEST(test_client_pipeline)
{
	static const char r1[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n", r2[] = "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char resps[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 E\r\nContent-Length: 0\r\n\r\n";
	for (int together = 0; together < 2; together++) {
		struct exchange *x = calloc(1, sizeof *x);
		struct wire *w = calloc(1, sizeof *w);
		char both[128];
		open_client(x);
		if (together) {
			snprintf(both, sizeof both, "%s%s", r1, r2);
			app_send(x, w, both, strlen(both), 0);
		} else {
			app_send(x, w, r1, strlen(r1), 0);
			app_send(x, w, r2, strlen(r2), 0);
		}
		exchange_received(x, resps, strlen(resps));
		collect();
		ck_assert_uint_eq(nspans, 2);
		check_span("first", spans[0], "GET|url.full=http://h/1|http.response.status_code=#200");
		check_span("second", spans[1], "GET|url.full=http://h/2|http.response.status_code=#500|status=ERROR");
		char a[128], b[128], want[512];
		tp_line(spans[0], a, true);
		tp_line(spans[1], b, true);
		snprintf(want, sizeof want, "GET /1 HTTP/1.1\r\nHost: h\r\n%s\r\nGET /2 HTTP/1.1\r\nHost: h\r\n%s\r\n", a,
			 together ? "" : b);
		ck_assert_msg(w->len == strlen(want) && memcmp(w->buf, want, w->len) == 0, "%.*s", (int)w->len, w->buf);
		free(w);
		free(x);
	}
}
END_TEST

/* The thread's context is the CLIENT span's parent, and tracestate and
 * baggage go out with it; unsampled, the traceparent still goes out
 * (flags 00), and no span is made. */
START_TEST(test_client_parent_and_unsampled)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
	struct trace_context ctx = { .valid = true, .flags = TRACE_FLAG_SAMPLED };
	memcpy(ctx.trace_id, "\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36", 16);
	memcpy(ctx.span_id, "\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8);
	memcpy(ctx.buf, "k=v" "b=1", 6);
	ctx.tracestate_len = 3;
	ctx.baggage_len = 3;
	struct context_token tok;
	context_attach(&ctx, &tok);
	struct exchange *x = calloc(1, sizeof *x);
	struct wire *w = calloc(1, sizeof *w);
	open_client(x);
	app_send(x, w, req, strlen(req), 0);
	exchange_received(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 1);
	ck_assert(spans[0]->has_parent);
	ck_assert_mem_eq(spans[0]->parent_span_id, ctx.span_id, 8);
	expect_wire("context", w, "GET / HTTP/1.1\r\nHost: h\r\n%TPctracestate: k=v\r\nbaggage: b=1\r\n\r\n", spans[0]);

	ctx.flags = 0;   /* the parent says: not sampled */
	context_detach(&tok);
	context_attach(&ctx, &tok);
	memset(w, 0, sizeof *w);
	open_client(x);
	app_send(x, w, req, strlen(req), 0);
	exchange_received(x, OK_2, strlen(OK_2));
	collect();
	ck_assert_uint_eq(nspans, 0);
	static const char tp[] = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-",
			  tail[] = "-00\r\ntracestate: k=v\r\nbaggage: b=1\r\n\r\n";
	ck_assert_ptr_nonnull(memmem(w->buf, w->len, tp, strlen(tp)));
	ck_assert_ptr_nonnull(memmem(w->buf, w->len, tail, strlen(tail)));
	context_detach(&tok);
	free(w);
	free(x);
}
END_TEST

/*
 * A proxy: the server side reads a request with a traceparent, the client
 * side sends it on unchanged. The forwarded header is replaced, in place
 * and byte for byte, by the CLIENT span's context, and that span is the
 * SERVER span's child; however the kernel takes the bytes. A head written
 * in pieces may have sent the value before the head is complete: then it
 * stays (the span is still the SERVER span's child).
 */
START_TEST(test_proxy_replaces_forwarded)
{
	static const char in[] = "GET /p HTTP/1.1\r\nHost: proxy\r\ntraceparent: " TP_A "\r\n\r\n";
	static const char fwd[] = "GET /p HTTP/1.1\r\nHost: backend\r\ntraceparent: " TP_A "\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
	static const size_t pieces[] = { 0, 1, 40, BY_LINE }, maxes[] = { 0, 1, 50 };
	for (size_t pi = 0; pi < N_ELEMS(pieces); pi++) {
		for (size_t mi = 0; mi < N_ELEMS(maxes); mi++) {
			struct exchange *srv = calloc(1, sizeof *srv), *cli = calloc(1, sizeof *cli);
			struct wire *w = calloc(1, sizeof *w);
			w->max = maxes[mi];
			open_server(srv);
			exchange_received(srv, in, strlen(in));
			open_client(cli);
			app_send(cli, w, fwd, strlen(fwd), pieces[pi]);
			exchange_received(cli, OK_2, strlen(OK_2));
			exchange_written(srv, OK_2, strlen(OK_2));
			collect();
			ck_assert_uint_eq(nspans, 2);
			const struct span_view *c = spans[0], *s = spans[1];
			ck_assert_int_eq(c->kind, SPAN_KIND_CLIENT);
			ck_assert_int_eq(s->kind, SPAN_KIND_SERVER);
			ck_assert_mem_eq(c->trace_id, s->trace_id, 16);
			ck_assert(c->has_parent);
			ck_assert_mem_eq(c->parent_span_id, s->span_id, 8);
			char want[512], tp[128];
			tp_line(c, tp, true);
			if (pieces[pi])
				snprintf(tp, sizeof tp, "traceparent: %s\r\n", TP_A);
			snprintf(want, sizeof want, "GET /p HTTP/1.1\r\nHost: backend\r\n%sX-Forwarded-For: 1.2.3.4\r\n\r\n", tp);
			ck_assert_msg(w->len == strlen(want) && memcmp(w->buf, want, w->len) == 0,
				      "pieces %zu max %zu: %.*s", pieces[pi], maxes[mi], (int)w->len, w->buf);
			free(w);
			free(cli);
			free(srv);
		}
	}
}
END_TEST

/* Bytes that are not a request, sent first: the connection is passed through. */
START_TEST(test_client_not_http)
{
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	struct exchange *x = calloc(1, sizeof *x);
	struct wire *w = calloc(1, sizeof *w);
	open_client(x);
	app_send(x, w, tls, sizeof tls - 1, 1);
	ck_assert_int_eq(x->phase, EXCHANGE_IGNORED);
	ck_assert_uint_eq(w->len, sizeof tls - 1);
	ck_assert_uint_eq(w->app_only_calls, w->calls);
	/* the peer speaking first: not a client's HTTP either */
	open_client(x);
	exchange_received(x, "220 hello\r\n", 11);
	ck_assert_int_eq(x->phase, EXCHANGE_IGNORED);
	collect();
	ck_assert_uint_eq(nspans, 0);
	free(w);
	free(x);
}
END_TEST

/* A refused connect inside a trace: a "connect" CLIENT span with the error;
 * outside a trace, nothing. */
START_TEST(test_connect_failed)
{
	struct exchange *x = calloc(1, sizeof *x);
	struct sockaddr_in p = sin4("127.0.0.1", 1);
	exchange_open(x, EXCHANGE_CLIENT, NULL, 0, (struct sockaddr *)&p, sizeof p);
	exchange_connect_done(x, ECONNREFUSED, "ECONNREFUSED");
	collect();
	ck_assert_uint_eq(nspans, 0);

	struct trace_context ctx = { .valid = true, .flags = TRACE_FLAG_SAMPLED };
	memset(ctx.trace_id, 0x11, 16);
	memset(ctx.span_id, 0x22, 8);
	struct context_token tok;
	context_attach(&ctx, &tok);
	exchange_open(x, EXCHANGE_CLIENT, NULL, 0, (struct sockaddr *)&p, sizeof p);
	exchange_connect_done(x, EINPROGRESS, NULL);
	exchange_connect_done(x, ECONNREFUSED, "ECONNREFUSED");
	exchange_connect_done(x, ECONNREFUSED, "ECONNREFUSED");   /* seen once */
	collect();
	ck_assert_uint_eq(nspans, 1);
	check_span("connect", spans[0], "connect|network.transport=tcp|network.peer.address=127.0.0.1"
					"|network.peer.port=#1|error.type=ECONNREFUSED|status=ERROR");
	ck_assert_int_eq(spans[0]->kind, SPAN_KIND_CLIENT);
	context_detach(&tok);
	free(x);
}
END_TEST

/* Every exchange function leaves errno alone. */
START_TEST(test_errno_kept)
{
	struct exchange *x = calloc(1, sizeof *x);
	open_server(x);
	errno = 1234;
	exchange_received(x, CURL_GET, strlen(CURL_GET));
	ck_assert_int_eq(errno, 1234);
	exchange_written(x, OK_2, strlen(OK_2));
	ck_assert_int_eq(errno, 1234);
	exchange_close(x);
	ck_assert_int_eq(errno, 1234);
	free(x);
}
END_TEST

Suite *exchange_suite(void)
{
	Suite *s = suite_create("exchange");
	TCase *tc = tcase_create("server");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_server_table);
	tcase_add_test(tc, test_server_binary_body);
	tcase_add_test(tc, test_server_extract_and_bind);
	tcase_add_test(tc, test_server_bad_traceparent);
	tcase_add_test(tc, test_server_pipeline_binding);
	tcase_add_test(tc, test_server_pipeline_overflow);
	tcase_add_test(tc, test_server_sendfile_and_shutdown);
	tcase_add_test(tc, test_server_routes_and_captures);
	tcase_add_test(tc, test_server_connection_block);
	tcase_add_test(tc, test_server_unsampled);
	tcase_add_test(tc, test_after_fork);
	tcase_add_test(tc, test_errno_kept);
	suite_add_tcase(s, tc);
	tc = tcase_create("client");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_client_table);
	tcase_add_test(tc, test_client_eagain);
	tcase_add_test(tc, test_client_bytewise);
	tcase_add_test(tc, test_client_pipeline);
	tcase_add_test(tc, test_client_parent_and_unsampled);
	tcase_add_test(tc, test_proxy_replaces_forwarded);
	tcase_add_test(tc, test_client_not_http);
	tcase_add_test(tc, test_connect_failed);
	suite_add_tcase(s, tc);
	return s;
}
