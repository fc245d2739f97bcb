/* Unit tests for agent/http.c: detection, request/response heads, body framing, targets and routes as tables, each fed whole, byte by byte and at every 2-way split. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/http.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define WHOLE      (-1L)    /* expected used: the whole input */
#define NOCHECK    (-2)     /* integer expectation not checked */

/* ------------------------------------------------------------------ */
/* Feeding helpers                                                     */
/* ------------------------------------------------------------------ */

/* Copies s into an exactly-sized heap buffer, so a read past len trips
 * ASan or valgrind; the parsers get (pointer, length), never a NUL. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

/*
 * How an input is cut into calls: WAY_WHOLE (one call), WAY_BYTES (one byte
 * per call), or a single cut at `at` (two calls); WAY_SLOW is one call with
 * the line-at-a-time path off. Every head and body test goes through all of
 * them and must give identical results.
 */
enum way { WAY_WHOLE, WAY_BYTES, WAY_SPLIT, WAY_SLOW };

/* Where the piece of in[0..n) starting at start ends. */
static size_t piece_end(enum way w, size_t at, size_t n, size_t start)
{
	switch (w) {
	case WAY_BYTES:
		return start < n ? start + 1 : n;
	case WAY_SPLIT:
		return start < at ? at : n;
	default:
		return n;
	}
}

static enum http_state feed_req(struct http_request *r, const struct http_capture_names *cap,
				const char *in, size_t n, enum way w, size_t at, size_t *used)
{
	enum http_state st = HTTP_HEAD_PARTIAL;
	size_t start = 0, total = 0;

	http_request_init(r, cap);
	if (w == WAY_SLOW)
		http_request_slow_only(r);
	do {
		size_t end = piece_end(w, at, n, start);
		size_t len = end - start, u = (size_t)-1;
		char *piece = exact_copy(in + start, len);

		st = http_request_feed(r, piece, len, &u);
		free(piece);
		ck_assert_uint_le(u, len);
		if (st == HTTP_HEAD_PARTIAL)
			ck_assert_uint_eq(u, len);
		total += u;
		start = end;
	} while (st == HTTP_HEAD_PARTIAL && start < n);
	*used = total;
	return st;
}

static enum http_state feed_resp(struct http_response *r, const struct http_capture_names *cap,
				 const char *in, size_t n, enum way w, size_t at, size_t *used)
{
	enum http_state st = HTTP_HEAD_PARTIAL;
	size_t start = 0, total = 0;

	http_response_init(r, cap);
	if (w == WAY_SLOW)
		http_response_slow_only(r);
	do {
		size_t end = piece_end(w, at, n, start);
		size_t len = end - start, u = (size_t)-1;
		char *piece = exact_copy(in + start, len);

		st = http_response_feed(r, piece, len, &u);
		free(piece);
		ck_assert_uint_le(u, len);
		if (st == HTTP_HEAD_PARTIAL)
			ck_assert_uint_eq(u, len);
		total += u;
		start = end;
	} while (st == HTTP_HEAD_PARTIAL && start < n);
	*used = total;
	return st;
}

/* Feeds a body; returns the bytes that belonged to it. */
static size_t feed_body(struct http_body *b, const char *in, size_t n, enum way w, size_t at)
{
	size_t start = 0, total = 0;

	do {
		size_t end = piece_end(w, at, n, start);
		size_t len = end - start;
		char *piece = exact_copy(in + start, len);
		size_t c = http_body_feed(b, piece, len);

		free(piece);
		ck_assert_uint_le(c, len);
		total += c;
		/* a body takes a whole piece unless it ended or broke in it */
		if (c < len) {
			ck_assert(b->done || b->error);
			break;
		}
		start = end;
	} while (!b->done && !b->error && start < n);
	return total;
}

#define SAME_BYTES(a, b, n) (memcmp((a), (b), (n)) == 0)

static bool captured_same(const struct http_captured *a, const struct http_captured *b)
{
	for (unsigned i = 0; i < HTTP_CAPTURE_MAX; i++) {
		if (a[i].present != b[i].present || a[i].len != b[i].len ||
		    !SAME_BYTES(a[i].value, b[i].value, a[i].len) || a[i].value[a[i].len] != b[i].value[b[i].len])
			return false;
	}
	return true;
}

static bool framing_same(const struct http_framing *a, const struct http_framing *b)
{
	return a->has_content_length == b->has_content_length && a->content_length == b->content_length &&
	       a->chunked == b->chunked && a->conn_close == b->conn_close &&
	       a->conn_keep_alive == b->conn_keep_alive && a->bad_framing == b->bad_framing &&
	       a->has_transfer_encoding == b->has_transfer_encoding;
}

/* The first result field where a and b differ, or NULL. */
static const char *req_diff(const struct http_request *a, const struct http_request *b)
{
	bool ca, cb;

	if (a->head_len != b->head_len)
		return "head_len";
	if (a->method_len != b->method_len || !SAME_BYTES(a->method, b->method, a->method_len) ||
	    a->method_id != b->method_id)
		return "method";
	if (a->target_len != b->target_len || !SAME_BYTES(a->target, b->target, a->target_len) ||
	    a->target_truncated != b->target_truncated)
		return "target";
	if (a->version_minor != b->version_minor)
		return "version_minor";
	if (a->host_len != b->host_len || !SAME_BYTES(a->host, b->host, a->host_len))
		return "host";
	if (a->user_agent_len != b->user_agent_len || !SAME_BYTES(a->user_agent, b->user_agent, a->user_agent_len))
		return "user_agent";
	if (!framing_same(&a->framing, &b->framing))
		return "framing";
	if (a->expect_continue != b->expect_continue)
		return "expect_continue";
	if (a->traceparent_count != b->traceparent_count || a->traceparent_len != b->traceparent_len ||
	    !SAME_BYTES(a->traceparent, b->traceparent, a->traceparent_len) || a->traceparent_off != b->traceparent_off)
		return "traceparent";
	if (a->tracestate_len != b->tracestate_len || a->tracestate_truncated != b->tracestate_truncated ||
	    !SAME_BYTES(a->tracestate, b->tracestate, a->tracestate_len))
		return "tracestate";
	if (a->baggage_len != b->baggage_len || !SAME_BYTES(a->baggage, b->baggage, a->baggage_len))
		return "baggage";
	if (a->capture && !captured_same(a->captured, b->captured))
		return "captured";
	if (http_request_end_of_headers(a, &ca) != http_request_end_of_headers(b, &cb) || ca != cb)
		return "end_of_headers";
	return NULL;
}

static const char *resp_diff(const struct http_response *a, const struct http_response *b)
{
	if (a->head_len != b->head_len)
		return "head_len";
	if (a->status != b->status)
		return "status";
	if (a->version_minor != b->version_minor)
		return "version_minor";
	if (!framing_same(&a->framing, &b->framing))
		return "framing";
	if (a->capture && !captured_same(a->captured, b->captured))
		return "captured";
	return NULL;
}

/* Splits up to this length are all tried; longer inputs get a sample. */
#define ALL_SPLITS_MAX 1500

static bool try_split(size_t n, size_t at)
{
	return n <= ALL_SPLITS_MAX || at < 64 || n - at < 64 || at % 997 == 0;
}

/*
 * Parses in whole into *out and checks that byte-by-byte feeding and every
 * 2-way split give the same state, *used and result fields.
 */
static enum http_state req_all_ways(const char *name, const char *in, size_t n,
				    const struct http_capture_names *cap, struct http_request *out, size_t *used)
{
	struct http_request *r = malloc(sizeof *r);
	size_t u;
	enum http_state st = feed_req(out, cap, in, n, WAY_WHOLE, 0, used), s;
	const char *d;

	s = feed_req(r, cap, in, n, WAY_BYTES, 0, &u);
	d = req_diff(out, r);
	ck_assert_msg(s == st && u == *used && !d, "%s: byte by byte: state %d/%d used %zu/%zu %s",
		      name, s, st, u, *used, d ? d : "");
	s = feed_req(r, cap, in, n, WAY_SLOW, 0, &u);
	d = req_diff(out, r);
	ck_assert_msg(s == st && u == *used && !d, "%s: whole, line-at-a-time path off: state %d/%d used %zu/%zu %s",
		      name, s, st, u, *used, d ? d : "");
	for (size_t at = 1; at < n; at++) {
		if (!try_split(n, at))
			continue;
		s = feed_req(r, cap, in, n, WAY_SPLIT, at, &u);
		d = req_diff(out, r);
		ck_assert_msg(s == st && u == *used && !d, "%s: split at %zu: state %d/%d used %zu/%zu %s",
			      name, at, s, st, u, *used, d ? d : "");
	}
	free(r);
	return st;
}

static enum http_state resp_all_ways(const char *name, const char *in, size_t n,
				     const struct http_capture_names *cap, struct http_response *out, size_t *used)
{
	struct http_response *r = malloc(sizeof *r);
	size_t u;
	enum http_state st = feed_resp(out, cap, in, n, WAY_WHOLE, 0, used), s;
	const char *d;

	s = feed_resp(r, cap, in, n, WAY_BYTES, 0, &u);
	d = resp_diff(out, r);
	ck_assert_msg(s == st && u == *used && !d, "%s: byte by byte: state %d/%d used %zu/%zu %s",
		      name, s, st, u, *used, d ? d : "");
	s = feed_resp(r, cap, in, n, WAY_SLOW, 0, &u);
	d = resp_diff(out, r);
	ck_assert_msg(s == st && u == *used && !d, "%s: whole, line-at-a-time path off: state %d/%d used %zu/%zu %s",
		      name, s, st, u, *used, d ? d : "");
	for (size_t at = 1; at < n; at++) {
		if (!try_split(n, at))
			continue;
		s = feed_resp(r, cap, in, n, WAY_SPLIT, at, &u);
		d = resp_diff(out, r);
		ck_assert_msg(s == st && u == *used && !d, "%s: split at %zu: state %d/%d used %zu/%zu %s",
			      name, at, s, st, u, *used, d ? d : "");
	}
	free(r);
	return st;
}

/* Feeds a body whole, byte by byte and at every split from the same start
 * state *b; leaves the whole-feed result in *b. */
static size_t body_all_ways(const char *name, struct http_body *b, const char *in, size_t n)
{
	struct http_body start = *b, o;
	size_t whole = feed_body(b, in, n, WAY_WHOLE, 0), c;

	o = start;
	c = feed_body(&o, in, n, WAY_BYTES, 0);
	ck_assert_msg(c == whole && o.done == b->done && o.error == b->error && o.remaining == b->remaining,
		      "%s: byte by byte: consumed %zu/%zu done %d/%d error %d/%d", name, c, whole,
		      o.done, b->done, o.error, b->error);
	for (size_t at = 1; at < n; at++) {
		if (!try_split(n, at))
			continue;
		o = start;
		c = feed_body(&o, in, n, WAY_SPLIT, at);
		ck_assert_msg(c == whole && o.done == b->done && o.error == b->error && o.remaining == b->remaining,
			      "%s: split at %zu: consumed %zu/%zu done %d/%d error %d/%d", name, at, c, whole,
			      o.done, b->done, o.error, b->error);
	}
	return whole;
}

static void check_str(const char *name, const char *field, const char *got, size_t got_len, const char *want)
{
	if (!want)
		return;
	ck_assert_msg(got_len == strlen(want) && memcmp(got, want, got_len) == 0,
		      "%s: %s is \"%.*s\" (%zu), want \"%s\"", name, field, (int)got_len, got, got_len, want);
}

static const char *state_name(enum http_state s)
{
	return s == HTTP_HEAD_DONE ? "DONE" : s == HTTP_HEAD_ERROR ? "ERROR" : "PARTIAL";
}

static void check_state(const char *name, enum http_state got, size_t used, enum http_state want,
			long want_used, size_t n)
{
	size_t wu = want_used == WHOLE ? n : (size_t)want_used;

	ck_assert_msg(got == want, "%s: state %s, want %s (used %zu)", name, state_name(got), state_name(want), used);
	ck_assert_msg(used == wu, "%s: used %zu, want %zu", name, used, wu);
}

/* ------------------------------------------------------------------ */
/* http_detect                                                         */
/* ------------------------------------------------------------------ */

struct detect_case {
	const char *name;
	const char *in;
	size_t len;              /* 0: strlen(in) */
	enum http_detect want;
};

static const struct detect_case detect_cases[] = {
	{ "empty", "", 0, HTTP_DETECT_NEED_MORE },
	{ "GET", "GET /", 0, HTTP_DETECT_REQUEST },
	{ "HEAD", "HEAD /", 0, HTTP_DETECT_REQUEST },
	{ "POST", "POST /", 0, HTTP_DETECT_REQUEST },
	{ "PUT", "PUT /", 0, HTTP_DETECT_REQUEST },
	{ "DELETE", "DELETE /", 0, HTTP_DETECT_REQUEST },
	{ "CONNECT", "CONNECT h:443 HTTP/1.1", 0, HTTP_DETECT_REQUEST },
	{ "OPTIONS", "OPTIONS * HTTP/1.1", 0, HTTP_DETECT_REQUEST },
	{ "TRACE", "TRACE /", 0, HTTP_DETECT_REQUEST },
	{ "PATCH", "PATCH /x", 0, HTTP_DETECT_REQUEST },
	{ "QUERY (the one method list: detected as it is known)", "QUERY /q", 0, HTTP_DETECT_REQUEST },
	{ "QUER", "QUER", 0, HTTP_DETECT_NEED_MORE },
	{ "method then space is enough", "GET ", 0, HTTP_DETECT_REQUEST },
	{ "response 1.1", "HTTP/1.1 200 OK\r\n", 0, HTTP_DETECT_RESPONSE },
	{ "response 1.0", "HTTP/1.0 404", 0, HTTP_DETECT_RESPONSE },
	{ "response prefix is enough", "HTTP/1.", 0, HTTP_DETECT_RESPONSE },
	{ "G", "G", 0, HTTP_DETECT_NEED_MORE },
	{ "GET without space", "GET", 0, HTTP_DETECT_NEED_MORE },
	{ "H (HEAD or HTTP)", "H", 0, HTTP_DETECT_NEED_MORE },
	{ "HE", "HE", 0, HTTP_DETECT_NEED_MORE },
	{ "HT", "HT", 0, HTTP_DETECT_NEED_MORE },
	{ "HTTP/1", "HTTP/1", 0, HTTP_DETECT_NEED_MORE },
	{ "P (POST PUT PATCH)", "P", 0, HTTP_DETECT_NEED_MORE },
	{ "PA", "PA", 0, HTTP_DETECT_NEED_MORE },
	{ "OPTIONS without space", "OPTIONS", 0, HTTP_DETECT_NEED_MORE },
	{ "CONNEC", "CONNEC", 0, HTTP_DETECT_NEED_MORE },
	{ "DELET", "DELET", 0, HTTP_DETECT_NEED_MORE },
	{ "HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, HTTP_DETECT_OTHER },
	{ "HTTP/2 preface, 2 bytes", "PR", 0, HTTP_DETECT_OTHER },
	{ "HTTP/2 status", "HTTP/2 200", 0, HTTP_DETECT_OTHER },
	{ "HTTP/0.9-ish", "HTTP/0.9", 0, HTTP_DETECT_OTHER },
	{ "lower-case method", "get / HTTP/1.1", 0, HTTP_DETECT_OTHER },
	{ "GETX", "GETX /", 0, HTTP_DETECT_OTHER },
	{ "method then tab", "GET\t/", 0, HTTP_DETECT_OTHER },
	{ "unknown method MKCOL", "MKCOL /d HTTP/1.1", 0, HTTP_DETECT_OTHER },
	{ "unknown method PROPFIND", "PROPFIND /", 0, HTTP_DETECT_OTHER },
	{ "leading CRLF", "\r\nGET /", 0, HTTP_DETECT_OTHER },
	{ "TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01", 8, HTTP_DETECT_OTHER },
	{ "TLS, 1 byte", "\x16", 1, HTTP_DETECT_OTHER },
	{ "PostgreSQL startup", "\x00\x00\x00\x29\x00\x03\x00\x00user", 12, HTTP_DETECT_OTHER },
	{ "PostgreSQL SSLRequest", "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, HTTP_DETECT_OTHER },
	{ "PostgreSQL, 1 byte", "\x00", 1, HTTP_DETECT_OTHER },
	{ "Kafka ApiVersions", "\x00\x00\x00\x50\x00\x12\x00\x03", 8, HTTP_DETECT_OTHER },
	{ "binary", "\xff\xfe\xfd", 3, HTTP_DETECT_OTHER },
	{ "NUL after G", "G\0T ", 4, HTTP_DETECT_OTHER },
	{ "JSON", "{\"a\":1}", 0, HTTP_DETECT_OTHER },
	{ "SSH banner", "SSH-2.0-OpenSSH", 0, HTTP_DETECT_OTHER },
	{ "redis", "*1\r\n$4\r\nPING\r\n", 0, HTTP_DETECT_OTHER },
};

START_TEST(test_detect_table)
{
	const struct detect_case *c = &detect_cases[_i];
	size_t n = c->len ? c->len : strlen(c->in);
	char *p = exact_copy(c->in, n);

	ck_assert_msg(http_detect(p, n) == c->want, "%s: got %d want %d", c->name, http_detect(p, n), c->want);
	free(p);
}
END_TEST

/* Every proper prefix of a start is NEED_MORE, the whole start decides,
 * and longer inputs agree; NEED_MORE never lasts 8 bytes. */
START_TEST(test_detect_prefixes)
{
	static const char *const starts[] = {
		"GET /x HTTP/1.1\r\n", "HEAD / HTTP/1.1", "POST /", "PUT /", "DELETE /", "CONNECT a:1",
		"OPTIONS *", "TRACE /", "PATCH /", "QUERY /", "HTTP/1.1 200 OK",
	};

	for (size_t i = 0; i < N_ELEMS(starts); i++) {
		size_t n = strlen(starts[i]);
		size_t tok = i == N_ELEMS(starts) - 1 ? 7 : (size_t)(strchr(starts[i], ' ') - starts[i]) + 1;
		enum http_detect want = i == N_ELEMS(starts) - 1 ? HTTP_DETECT_RESPONSE : HTTP_DETECT_REQUEST;

		for (size_t k = 1; k <= n; k++) {
			char *p = exact_copy(starts[i], k);
			enum http_detect got = http_detect(p, k);

			free(p);
			ck_assert_msg(got == (k < tok ? HTTP_DETECT_NEED_MORE : want), "%s: prefix %zu gives %d",
				      starts[i], k, got);
		}
	}
}
END_TEST

/* A first byte decides OTHER unless it starts a method or "HTTP/1.". */
START_TEST(test_detect_first_byte)
{
	for (int b = 0; b < 256; b++) {
		char c = (char)b;
		bool plausible = b && strchr("GHPDCOTQ", b) != NULL;

		ck_assert_msg(http_detect(&c, 1) == (plausible ? HTTP_DETECT_NEED_MORE : HTTP_DETECT_OTHER),
			      "byte 0x%02x", b);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Request-line                                                        */
/* ------------------------------------------------------------------ */

struct rl_case {
	const char *name;
	const char *in;
	enum http_state st;
	long used;               /* WHOLE or the offset of the offending byte */
	const char *method;      /* NULL: not checked */
	const char *target;
	int minor;               /* NOCHECK: not checked */
};

static const struct rl_case rl_cases[] = {
	{ "origin-form", "GET /a/b?c=d HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "GET", "/a/b?c=d", 1 },
	{ "HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "GET", "/", 0 },
	{ "bare LF", "GET / HTTP/1.1\n\n", HTTP_HEAD_DONE, WHOLE, "GET", "/", 1 },
	{ "absolute-form", "GET http://h.example:8080/p?q HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "GET",
	  "http://h.example:8080/p?q", 1 },
	{ "asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "OPTIONS", "*", 1 },
	{ "authority-form", "CONNECT db.internal:5432 HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "CONNECT",
	  "db.internal:5432", 1 },
	{ "every known method: HEAD", "HEAD /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "HEAD", "/h", 1 },
	{ "every known method: POST", "POST /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "POST", "/h", 1 },
	{ "every known method: PUT", "PUT /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "PUT", "/h", 1 },
	{ "every known method: DELETE", "DELETE /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "DELETE", "/h", 1 },
	{ "every known method: TRACE", "TRACE /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "TRACE", "/h", 1 },
	{ "every known method: PATCH", "PATCH /h HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "PATCH", "/h", 1 },
	{ "extension method token", "PROPFIND /dav HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "PROPFIND", "/dav", 1 },
	{ "method with tchar symbols", "M-SEARCH! * HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "M-SEARCH!", "*", 1 },
	{ "15-character method", "ABCDEFGHIJKLMNO / HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "ABCDEFGHIJKLMNO",
	  "/", 1 },
	{ "16-character method", "ABCDEFGHIJKLMNOP / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 15, NULL, NULL, NOCHECK },
	{ "empty method", " / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 0, NULL, NULL, NOCHECK },
	{ "non-tchar in method", "GE(T / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 2, NULL, NULL, NOCHECK },
	{ "tab after method", "GET\t/ HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 3, NULL, NULL, NOCHECK },
	{ "two spaces after method", "GET  / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 4, NULL, NULL, NOCHECK },
	{ "two spaces before version", "GET /  HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 6, NULL, NULL, NOCHECK },
	{ "HTTP/0.9 (no version)", "GET /\r\n\r\n", HTTP_HEAD_ERROR, 5, NULL, NULL, NOCHECK },
	{ "HTTP/0.9 bare LF", "GET /\n", HTTP_HEAD_ERROR, 5, NULL, NULL, NOCHECK },
	{ "HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", HTTP_HEAD_ERROR, 13, NULL, NULL, NOCHECK },
	{ "HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", HTTP_HEAD_ERROR, 11, NULL, NULL, NOCHECK },
	{ "lower-case version", "GET / http/1.1\r\n\r\n", HTTP_HEAD_ERROR, 6, NULL, NULL, NOCHECK },
	{ "version too long", "GET / HTTP/1.11\r\n\r\n", HTTP_HEAD_ERROR, 14, NULL, NULL, NOCHECK },
	{ "space after version", "GET / HTTP/1.1 \r\n\r\n", HTTP_HEAD_ERROR, 14, NULL, NULL, NOCHECK },
	{ "CR not followed by LF", "GET / HTTP/1.1\rX: y\r\n\r\n", HTTP_HEAD_ERROR, 15, NULL, NULL, NOCHECK },
	{ "CTL in target", "GET /a\x01 HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 6, NULL, NULL, NOCHECK },
	{ "DEL in target", "GET /a\x7f HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 6, NULL, NULL, NOCHECK },
	{ "tab in target", "GET /a\tb HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 6, NULL, NULL, NOCHECK },
	{ "raw UTF-8 in target", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "GET", "/caf\xc3\xa9", 1 },
	{ "leading empty lines", "\r\n\nGET / HTTP/1.1\r\n\r\n", HTTP_HEAD_DONE, WHOLE, "GET", "/", 1 },
	{ "leading CR without LF", "\rGET / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 1, NULL, NULL, NOCHECK },
	{ "incomplete: request-line only", "GET /x HTTP/1.1\r\n", HTTP_HEAD_PARTIAL, WHOLE, "GET", "/x", 1 },
	{ "incomplete: mid-target", "GET /abc", HTTP_HEAD_PARTIAL, WHOLE, "GET", "/abc", NOCHECK },
	{ "body after head not consumed", "POST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", HTTP_HEAD_DONE, 39,
	  "POST", "/p", 1 },
};

START_TEST(test_request_line_table)
{
	const struct rl_case *c = &rl_cases[_i];
	struct http_request *r = malloc(sizeof *r);
	size_t n = strlen(c->in), used;
	enum http_state st = req_all_ways(c->name, c->in, n, NULL, r, &used);

	check_state(c->name, st, used, c->st, c->used, n);
	check_str(c->name, "method", r->method, r->method_len, c->method);
	if (c->method)
		ck_assert_msg(r->method[r->method_len] == '\0', "%s: method not NUL-terminated", c->name);
	check_str(c->name, "target", r->target, r->target_len, c->target);
	if (c->target)
		ck_assert(!r->target_truncated);
	if (c->minor != NOCHECK)
		ck_assert_msg(r->version_minor == c->minor, "%s: minor %d", c->name, r->version_minor);
	free(r);
}
END_TEST

/* A target longer than HTTP_TARGET_MAX is cut, flagged, and the head still parses. */
START_TEST(test_request_target_truncated)
{
	static const size_t lens[] = { HTTP_TARGET_MAX - 1, HTTP_TARGET_MAX, HTTP_TARGET_MAX + 1, 5000 };

	for (size_t k = 0; k < N_ELEMS(lens); k++) {
		size_t tl = lens[k];
		char *in = malloc(tl + 68);
		struct http_request *r = malloc(sizeof *r);
		size_t used;

		memcpy(in, "GET /", 5);
		for (size_t i = 5; i < tl + 4; i++)
			in[i] = (char)('a' + i % 26);
		int n = (int)tl + 4 + sprintf(in + tl + 4, " HTTP/1.1\r\nHost: h\r\n\r\n");

		ck_assert_int_eq(req_all_ways("long target", in, (size_t)n, NULL, r, &used), HTTP_HEAD_DONE);
		ck_assert_uint_eq(used, (size_t)n);
		ck_assert_uint_eq(r->target_len, tl < HTTP_TARGET_MAX ? tl : HTTP_TARGET_MAX);
		ck_assert(r->target_truncated == (tl > HTTP_TARGET_MAX));
		ck_assert(memcmp(r->target, in + 4, r->target_len) == 0);
		check_str("long target", "host", r->host, r->host_len, "h");
		free(in);
		free(r);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Field-line syntax and the head limit                                 */
/* ------------------------------------------------------------------ */

struct syntax_case {
	const char *name;
	const char *in;
	size_t len;              /* 0: strlen */
	enum http_state st;
	long used;
};

#define RL "GET / HTTP/1.1\r\n"   /* 16 bytes */

static const struct syntax_case syntax_cases[] = {
	{ "no fields", RL "\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "one field", RL "Accept: */*\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "no OWS", RL "Accept:*/*\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "empty value", RL "X-Empty:\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "only OWS", RL "X-Empty: \t \r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "colons in value", RL "X-Time: 12:34:56\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "bare LF lines", "GET / HTTP/1.1\nA: b\nC: d\n\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "mixed CRLF and LF", "GET / HTTP/1.1\r\nA: b\nC: d\r\n\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "obs-text in value", RL "X-Name: caf\xc3\xa9\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "NUL in skipped value", RL "X-Bin: a\0b\r\n\r\n", 16 + 14, HTTP_HEAD_DONE, WHOLE },
	{ "tchar symbols in name", RL "X-!#$%&'*+.^_`|~: v\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "long name (over 32)", RL "X-A-Very-Long-Header-Name-Beyond-Thirty-Two: v\r\n\r\n", 0, HTTP_HEAD_DONE, WHOLE },
	{ "obs-fold SP", RL "X-A: b\r\n c\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 8 },
	{ "obs-fold HT", RL "X-A: b\r\n\tc\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 8 },
	{ "whitespace before first field", RL " X-A: b\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 },
	{ "line without colon", RL "X-A b\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 3 },
	{ "name without colon at CRLF", RL "X-A\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 3 },
	{ "name without colon at LF", RL "X-A\n\n", 0, HTTP_HEAD_ERROR, 16 + 3 },
	{ "space before colon", RL "Host : h\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 4 },
	{ "empty name", RL ": v\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 },
	{ "non-tchar in name", RL "X@A: v\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 1 },
	{ "non-tchar first in name", RL "(A: v\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 },
	{ "NUL in name", RL "X\0A: v\r\n\r\n", 16 + 10, HTTP_HEAD_ERROR, 16 + 1 },
	{ "non-ASCII in name", RL "X\xc3\xa9: v\r\n\r\n", 0, HTTP_HEAD_ERROR, 16 + 1 },
	{ "CR then non-LF at end", RL "\rX\r\n", 0, HTTP_HEAD_ERROR, 16 + 1 },
	{ "CR CR LF at end", RL "A: b\r\n\r\r\n", 0, HTTP_HEAD_ERROR, 16 + 7 },
	{ "incomplete: mid-name", RL "X-Fo", 0, HTTP_HEAD_PARTIAL, WHOLE },
	{ "incomplete: mid-value", RL "X-Foo: ba", 0, HTTP_HEAD_PARTIAL, WHOLE },
	{ "incomplete: final CR", RL "X-Foo: bar\r\n\r", 0, HTTP_HEAD_PARTIAL, WHOLE },
	{ "next request follows", RL "\r\nGET /2 HTTP/1.1\r\n\r\n", 0, HTTP_HEAD_DONE, 18 },
};

START_TEST(test_syntax_table)
{
	const struct syntax_case *c = &syntax_cases[_i];
	struct http_request *r = malloc(sizeof *r);
	size_t n = c->len ? c->len : strlen(c->in), used;
	enum http_state st = req_all_ways(c->name, c->in, n, NULL, r, &used);

	check_state(c->name, st, used, c->st, c->used, n);
	if (st == HTTP_HEAD_DONE)
		ck_assert_uint_eq(r->head_len, used);
	free(r);
}
END_TEST

/* Builds a head of exactly n bytes: request-line, filler field lines, end. */
static char *head_of_size(size_t n, bool one_big_field)
{
	char *h = malloc(n);
	size_t off = 0;
	const char *rl = "GET / HTTP/1.1\r\n";

	memcpy(h, rl, strlen(rl));
	off = strlen(rl);
	while (n - off > 2) {
		size_t left = n - off - 2;       /* room before the final CRLF */
		size_t line = one_big_field ? left : (left > 200 ? 100 : left);

		if (left - line < 6 && left - line > 0)
			line = left;             /* never leave a stub too short for "X:\r\n" */
		ck_assert_uint_ge(line, 4);
		memcpy(h + off, "X:", 2);
		memset(h + off + 2, 'v', line - 4);
		memcpy(h + off + line - 2, "\r\n", 2);
		off += line;
	}
	memcpy(h + off, "\r\n", 2);
	return h;
}

START_TEST(test_head_limit)
{
	struct http_request *r = malloc(sizeof *r);
	struct http_response *s = malloc(sizeof *s);
	size_t used;
	char *h;

	/* exactly 64 KiB is accepted, one byte more is not */
	h = head_of_size(65536, false);
	ck_assert_int_eq(req_all_ways("64 KiB head", h, 65536, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(used, 65536);
	ck_assert_uint_le(r->head_len, 65536);
	free(h);

	h = head_of_size(65537, false);
	ck_assert_int_eq(req_all_ways("64 KiB + 1 head", h, 65537, NULL, r, &used), HTTP_HEAD_ERROR);
	ck_assert_uint_eq(used, 65536);
	free(h);

	/* one field line bigger than the limit */
	h = head_of_size(200000, true);
	ck_assert_int_eq(req_all_ways("200 KB field", h, 200000, NULL, r, &used), HTTP_HEAD_ERROR);
	ck_assert_uint_eq(used, 65536);
	free(h);

	/* after the error nothing more is consumed */
	ck_assert_int_eq(http_request_feed(r, "\r\n", 2, &used), HTTP_HEAD_ERROR);
	ck_assert_uint_eq(used, 0);

	/* exactly at the limit without the end yet: PARTIAL, then any byte is an error */
	h = head_of_size(65536 + 2, false);
	http_request_init(r, NULL);
	ck_assert_int_eq(http_request_feed(r, h, 65536, &used), HTTP_HEAD_PARTIAL);
	ck_assert_uint_eq(used, 65536);
	ck_assert_int_eq(http_request_feed(r, h + 65536, 0, &used), HTTP_HEAD_PARTIAL);
	ck_assert_int_eq(http_request_feed(r, h + 65536, 1, &used), HTTP_HEAD_ERROR);
	ck_assert_uint_eq(used, 0);
	free(h);

	/* responses have the same limit */
	h = head_of_size(70000, false);
	memcpy(h, "HTTP/1.1 200 A\r\n", 16);   /* same length as the request-line */
	ck_assert_int_eq(resp_all_ways("big response", h, 70000, NULL, s, &used), HTTP_HEAD_ERROR);
	ck_assert_uint_eq(used, 65536);
	free(h);
	free(r);
	free(s);
}
END_TEST

/* A 1 MB header block costs time, not memory: nothing is kept. */
START_TEST(test_huge_stream_bounded)
{
	struct http_request r;
	size_t used, total = 0;
	char chunk[4096];
	enum http_state st;

	memset(chunk, 'a', sizeof chunk);
	http_request_init(&r, NULL);
	st = http_request_feed(&r, "GET / HTTP/1.1\r\nX-Big: ", 23, &used);
	ck_assert_int_eq(st, HTTP_HEAD_PARTIAL);
	total = used;
	for (int i = 0; i < 256 && st == HTTP_HEAD_PARTIAL; i++) {
		st = http_request_feed(&r, chunk, sizeof chunk, &used);
		total += used;
	}
	ck_assert_int_eq(st, HTTP_HEAD_ERROR);
	ck_assert_uint_eq(total, 65536);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Known request fields and framing                                     */
/* ------------------------------------------------------------------ */

struct field_case {
	const char *name;
	const char *in;
	enum http_state st;
	const char *host;        /* NULL: not checked */
	const char *ua;
	int has_cl;              /* NOCHECK or 0/1, likewise below */
	uint64_t cl;
	int chunked, te, close, keep_alive, bad, expect;
};

#define R11 "GET / HTTP/1.1\r\n"
#define R10 "GET / HTTP/1.0\r\n"
#define P11 "POST / HTTP/1.1\r\n"
#define NC  NOCHECK
#define FR(has_cl, cl, chunked, te, bad) has_cl, cl, chunked, te, NC, NC, bad, NC   /* framing only */
#define CN(close, ka) NC, 0, NC, NC, close, ka, NC, NC                               /* connection only */

static const struct field_case field_cases[] = {
	/* Host and User-Agent */
	{ "host", R11 "Host: example.com\r\n\r\n", HTTP_HEAD_DONE, "example.com", NULL, CN(0, 0) },
	{ "host OWS trimmed", R11 "Host: \t example.com:8080 \t \r\n\r\n", HTTP_HEAD_DONE, "example.com:8080", NULL, CN(NC, NC) },
	{ "host no OWS", R11 "Host:h\r\n\r\n", HTTP_HEAD_DONE, "h", NULL, CN(NC, NC) },
	{ "host name case-insensitive", R11 "hOsT: h\r\n\r\n", HTTP_HEAD_DONE, "h", NULL, CN(NC, NC) },
	{ "host empty", R11 "Host:\r\n\r\n", HTTP_HEAD_DONE, "", NULL, CN(NC, NC) },
	{ "host first one kept", R11 "Host: a\r\nHost: b\r\n\r\n", HTTP_HEAD_DONE, "a", NULL, CN(NC, NC) },
	{ "host bare LF", "GET / HTTP/1.1\nHost: h \n\n", HTTP_HEAD_DONE, "h", NULL, CN(NC, NC) },
	{ "host absent", R11 "Accept: */*\r\n\r\n", HTTP_HEAD_DONE, "", "", CN(NC, NC) },
	{ "host internal space kept", R11 "Host: a b\r\n\r\n", HTTP_HEAD_DONE, "a b", NULL, CN(NC, NC) },
	{ "user-agent", R11 "User-Agent: curl/8.5.0\r\n\r\n", HTTP_HEAD_DONE, NULL, "curl/8.5.0", CN(NC, NC) },
	{ "user-agent with spaces", R11 "user-agent:  Mozilla/5.0 (X11; Linux x86_64)  \r\n\r\n", HTTP_HEAD_DONE,
	  NULL, "Mozilla/5.0 (X11; Linux x86_64)", CN(NC, NC) },
	{ "user-agent first kept", R11 "User-Agent: a\r\nUser-Agent: b\r\n\r\n", HTTP_HEAD_DONE, NULL, "a", CN(NC, NC) },
	{ "similar names are not known", R11 "Hosts: x\r\nUser-Agents: y\r\nX-Host: z\r\n\r\n", HTTP_HEAD_DONE, "", "",
	  CN(NC, NC) },

	/* Content-Length */
	{ "content-length", P11 "Content-Length: 42\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(1, 42, 0, 0, 0) },
	{ "content-length zero", P11 "content-length:0\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(1, 0, 0, 0, 0) },
	{ "content-length OWS", P11 "Content-Length: \t 7 \t\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(1, 7, 0, 0, 0) },
	{ "content-length leading zeros", P11 "Content-Length: 007\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(1, 7, 0, 0, 0) },
	{ "content-length 19 digits", P11 "Content-Length: 9999999999999999999\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(1, 9999999999999999999ull, 0, 0, 0) },
	{ "content-length 20 digits", P11 "Content-Length: 10000000000000000000\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 0, 0, 1) },
	{ "content-length repeated identical", P11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", HTTP_HEAD_DONE,
	  NULL, NULL, FR(1, 5, 0, 0, 0) },
	{ "content-length list identical", P11 "Content-Length: 5, 5,5\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(1, 5, 0, 0, 0) },
	{ "content-length repeated differing", P11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", HTTP_HEAD_DONE,
	  NULL, NULL, FR(1, 5, 0, 0, 1) },
	{ "content-length list differing", P11 "Content-Length: 5, 6\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(NC, 0, 0, 0, 1) },
	{ "content-length not digits", P11 "Content-Length: abc\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length negative", P11 "Content-Length: -1\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length plus", P11 "Content-Length: +5\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length hex", P11 "Content-Length: 0x10\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length empty", P11 "Content-Length:\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length two words", P11 "Content-Length: 5 5\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 0, 1) },
	{ "content-length empty element", P11 "Content-Length: 5,\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(1, 5, 0, 0, 1) },

	/* Transfer-Encoding */
	{ "chunked", P11 "Transfer-Encoding: chunked\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 1, 1, 0) },
	{ "chunked any case", P11 "transfer-encoding: ChUnKeD\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 1, 1, 0) },
	{ "chunked last of a list", P11 "Transfer-Encoding: gzip, chunked\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 1, 1, 0) },
	{ "chunked not last", P11 "Transfer-Encoding: chunked, gzip\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 0, 1, 1) },
	{ "chunked last across lines", P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
	  HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 1, 1, 0) },
	{ "chunked then gzip across lines", P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
	  HTTP_HEAD_DONE, NULL, NULL, FR(0, 0, 0, 1, 1) },
	{ "chunked with empty elements", P11 "Transfer-Encoding: ,gzip,, chunked ,\r\n\r\n", HTTP_HEAD_DONE, NULL,
	  NULL, FR(0, 0, 1, 1, 0) },
	{ "coding parameters ignored", P11 "Transfer-Encoding: gzip;q=1, chunked\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 1, 1, 0) },
	{ "chunkedx is not chunked", P11 "Transfer-Encoding: chunkedx\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 0, 1, 1) },
	{ "two words are not chunked", P11 "Transfer-Encoding: chun ked\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 0, 1, 1) },
	{ "identity request is bad", P11 "Transfer-Encoding: identity\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  FR(0, 0, 0, 1, 1) },
	{ "chunked overrides content-length", P11 "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
	  HTTP_HEAD_DONE, NULL, NULL, FR(1, 10, 1, 1, 0) },
	{ "chunked overrides bad content-length", P11 "Content-Length: 1, 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	  HTTP_HEAD_DONE, NULL, NULL, FR(NC, 0, 1, 1, 0) },
	{ "HTTP/1.0 with transfer-encoding", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_HEAD_DONE,
	  NULL, NULL, FR(0, 0, 1, 1, 1) },

	/* Connection */
	{ "1.1 default", R11 "\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(0, 0) },
	{ "close", R11 "Connection: close\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(1, 0) },
	{ "close any case", R11 "connection: CLOSE\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(1, 0) },
	{ "keep-alive", R11 "Connection: Keep-Alive\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(0, 1) },
	{ "list with upgrade", R11 "Connection: keep-alive, Upgrade\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(0, 1) },
	{ "close in a list", R11 "Connection: TE,close\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(1, 0) },
	{ "close across lines", R11 "Connection: upgrade\r\nConnection: close\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  CN(1, 0) },
	{ "closed is not close", R11 "Connection: closed, keep-alives\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(0, 0) },
	{ "1.0 closes by default", R10 "\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(1, 0) },
	{ "1.0 keep-alive", R10 "Connection: keep-alive\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(0, 1) },
	{ "1.0 keep-alive and close", R10 "Connection: keep-alive, close\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, CN(1, 1) },

	/* Expect */
	{ "expect 100-continue", P11 "Expect: 100-continue\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, NC, 0, NC, NC, NC,
	  NC, NC, 1 },
	{ "expect any case", P11 "expect: 100-Continue \r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, NC, 0, NC, NC, NC, NC,
	  NC, 1 },
	{ "expect other", P11 "Expect: 200-ok\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL, NC, 0, NC, NC, NC, NC, NC, 0 },
	{ "expect absent", P11 "\r\n", HTTP_HEAD_DONE, NULL, NULL, NC, 0, NC, NC, NC, NC, NC, 0 },
	{ "expect ignored in 1.0", "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", HTTP_HEAD_DONE, NULL, NULL,
	  NC, 0, NC, NC, NC, NC, NC, 0 },
};

static void check_flag(const char *name, const char *field, bool got, int want)
{
	if (want != NOCHECK)
		ck_assert_msg(got == (want != 0), "%s: %s is %d, want %d", name, field, got, want);
}

START_TEST(test_field_table)
{
	const struct field_case *c = &field_cases[_i];
	struct http_request *r = malloc(sizeof *r);
	size_t n = strlen(c->in), used;
	enum http_state st = req_all_ways(c->name, c->in, n, NULL, r, &used);
	const struct http_framing *f = &r->framing;

	check_state(c->name, st, used, c->st, WHOLE, n);
	check_str(c->name, "host", r->host, r->host_len, c->host);
	check_str(c->name, "user_agent", r->user_agent, r->user_agent_len, c->ua);
	ck_assert(r->host[r->host_len] == '\0' && r->user_agent[r->user_agent_len] == '\0');
	check_flag(c->name, "has_content_length", f->has_content_length, c->has_cl);
	if (c->has_cl == 1)
		ck_assert_msg(f->content_length == (uint64_t)c->cl, "%s: content_length %llu", c->name,
			      (unsigned long long)f->content_length);
	check_flag(c->name, "chunked", f->chunked, c->chunked);
	check_flag(c->name, "has_transfer_encoding", f->has_transfer_encoding, c->te);
	check_flag(c->name, "conn_close", f->conn_close, c->close);
	check_flag(c->name, "conn_keep_alive", f->conn_keep_alive, c->keep_alive);
	check_flag(c->name, "bad_framing", f->bad_framing, c->bad);
	check_flag(c->name, "expect_continue", r->expect_continue, c->expect);
	free(r);
}
END_TEST

/* Host and User-Agent longer than their buffers are cut, NUL-terminated. */
START_TEST(test_host_ua_cut)
{
	struct http_request *r = malloc(sizeof *r);
	char in[2048], big[600];
	size_t used;

	memset(big, 'h', sizeof big);
	big[sizeof big - 1] = '\0';
	int n = snprintf(in, sizeof in, "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s  \r\n\r\n", big, big);
	ck_assert_int_eq(req_all_ways("long host", in, (size_t)n, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->host_len, HTTP_HOST_MAX - 1);
	ck_assert_uint_eq(r->user_agent_len, HTTP_UA_MAX - 1);
	ck_assert(r->host[r->host_len] == '\0' && r->user_agent[r->user_agent_len] == '\0');

	/* a value that only overflows by trailing OWS is not cut */
	memset(big, 'u', HTTP_UA_MAX - 1);
	big[HTTP_UA_MAX - 1] = '\0';
	n = snprintf(in, sizeof in, "GET / HTTP/1.1\r\nUser-Agent: %s   \t \r\n\r\n", big);
	ck_assert_int_eq(req_all_ways("ua fits", in, (size_t)n, NULL, r, &used), HTTP_HEAD_DONE);
	check_str("ua fits", "user_agent", r->user_agent, r->user_agent_len, big);
	/* cut inside whitespace followed by more text: the cut part is trimmed */
	memset(big, 'u', HTTP_UA_MAX - 3);
	big[HTTP_UA_MAX - 3] = '\0';
	n = snprintf(in, sizeof in, "GET / HTTP/1.1\r\nUser-Agent: %s     more\r\n\r\n", big);
	ck_assert_int_eq(req_all_ways("ua cut in OWS", in, (size_t)n, NULL, r, &used), HTTP_HEAD_DONE);
	check_str("ua cut in OWS", "user_agent", r->user_agent, r->user_agent_len, big);
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Trace context fields                                                 */
/* ------------------------------------------------------------------ */

#define TP1 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TP2 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

struct trace_case {
	const char *name;
	const char *in;
	int tp_count;
	const char *tp;
	const char *ts;
	bool ts_truncated;
	const char *bag;
};

static const struct trace_case trace_cases[] = {
	{ "none", R11 "\r\n", 0, "", "", false, "" },
	{ "traceparent", R11 "traceparent: " TP1 "\r\n\r\n", 1, TP1, "", false, "" },
	{ "traceparent any case, OWS", R11 "TraceParent:\t " TP1 " \t\r\n\r\n", 1, TP1, "", false, "" },
	{ "traceparent twice: count, first kept", R11 "traceparent: " TP1 "\r\ntraceparent: " TP2 "\r\n\r\n", 2, TP1,
	  "", false, "" },
	{ "traceparent empty", R11 "traceparent:\r\n\r\n", 1, "", "", false, "" },
	{ "traceparent empty then real", R11 "traceparent:\r\ntraceparent: " TP2 "\r\n\r\n", 2, "", "", false, "" },
	{ "traceparent future version kept raw", R11 "traceparent: cc-" TP1 "-what-ever\r\n\r\n", 1,
	  "cc-" TP1 "-what-ever", "", false, "" },
	{ "tracestate", R11 "tracestate: congo=t61rcWkgMzE\r\n\r\n", 0, "", "congo=t61rcWkgMzE", false, "" },
	{ "tracestate joined", R11 "tracestate: a=1,b=2\r\nTraceState: c=3 \r\n\r\n", 0, "", "a=1,b=2,c=3", false, "" },
	{ "tracestate empty line skipped", R11 "tracestate: a=1\r\ntracestate: \r\ntracestate: b=2\r\n\r\n", 0, "",
	  "a=1,b=2", false, "" },
	{ "tracestate empty first", R11 "tracestate:\r\ntracestate: b=2\r\n\r\n", 0, "", "b=2", false, "" },
	{ "tracestate inner OWS kept", R11 "tracestate: a=1 , b=2\r\n\r\n", 0, "", "a=1 , b=2", false, "" },
	{ "baggage", R11 "baggage: userId=alice,serverNode=DF%2028\r\n\r\n", 0, "", "", false,
	  "userId=alice,serverNode=DF%2028" },
	{ "baggage joined", R11 "baggage: a=1\r\nBaggage:  b=2;p \r\n\r\n", 0, "", "", false, "a=1,b=2;p" },
	{ "all together", R11 "Host: h\r\ntraceparent: " TP1 "\r\ntracestate: x=y\r\nbaggage: k=v\r\n\r\n", 1, TP1,
	  "x=y", false, "k=v" },
	{ "traceparent after leading empty lines, bare LF", "\r\n\nGET / HTTP/1.1\nHost: h\ntraceparent:" TP2 "\n\n", 1,
	  TP2, "", false, "" },
};

START_TEST(test_trace_table)
{
	const struct trace_case *c = &trace_cases[_i];
	struct http_request *r = malloc(sizeof *r);
	size_t n = strlen(c->in), used;

	ck_assert_int_eq(req_all_ways(c->name, c->in, n, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_msg(r->traceparent_count == c->tp_count, "%s: count %d", c->name, r->traceparent_count);
	check_str(c->name, "traceparent", r->traceparent, r->traceparent_len, c->tp);
	/* The value's offset in the head: those bytes are the value, so a
	 * forwarded copy can be overwritten in place. */
	if (c->tp[0])
		ck_assert_msg(r->traceparent_off == (uint32_t)(strstr(c->in, c->tp) - c->in) &&
			      memcmp(c->in + r->traceparent_off, r->traceparent, r->traceparent_len) == 0,
			      "%s: traceparent_off %u", c->name, r->traceparent_off);
	else
		ck_assert_msg(r->traceparent_off == 0, "%s: traceparent_off %u", c->name, r->traceparent_off);
	check_str(c->name, "tracestate", r->tracestate, r->tracestate_len, c->ts);
	ck_assert(r->tracestate_truncated == c->ts_truncated);
	check_str(c->name, "baggage", r->baggage, r->baggage_len, c->bag);
	free(r);
}
END_TEST

/* Appends "name: value\r\n" with value = n copies of c. */
static size_t add_field(char *buf, size_t off, const char *name, char c, size_t n)
{
	off += (size_t)sprintf(buf + off, "%s: ", name);
	memset(buf + off, c, n);
	off += n;
	memcpy(buf + off, "\r\n", 2);
	return off + 2;
}

START_TEST(test_traceparent_cut)
{
	struct http_request *r = malloc(sizeof *r);
	char *in = malloc(4096);
	size_t off = (size_t)sprintf(in, R11), used;

	off = add_field(in, off, "traceparent", 'a', 300);
	memcpy(in + off, "\r\n", 2);
	off += 2;
	ck_assert_int_eq(req_all_ways("long traceparent", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->traceparent_len, TRACEPARENT_RAW_MAX);
	ck_assert_uint_eq(r->traceparent_count, 1);
	free(in);
	free(r);
}
END_TEST

START_TEST(test_tracestate_overflow)
{
	struct http_request *r = malloc(sizeof *r);
	char *in = malloc(8192);
	size_t cap = sizeof r->tracestate, off, used;

	/* exactly fills the buffer: not truncated */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "tracestate", 'a', cap - 100);
	off = add_field(in, off, "tracestate", 'b', 99);
	memcpy(in + off, "\r\n", 2);
	ck_assert_int_eq(req_all_ways("tracestate full", in, off + 2, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->tracestate_len, cap);
	ck_assert(!r->tracestate_truncated);
	ck_assert(r->tracestate[cap - 100] == ',');

	/* one more byte: truncated; the member cut is dropped whole (W3C:
	 * "MUST truncate whole entries"), back to the comma before it */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "tracestate", 'a', cap - 100);
	off = add_field(in, off, "tracestate", 'b', 100);
	memcpy(in + off, "\r\n", 2);
	ck_assert_int_eq(req_all_ways("tracestate over", in, off + 2, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->tracestate_len, cap - 100);
	ck_assert(r->tracestate_truncated);

	/* a cut inside one value: the members before it stay, the cut one and
	 * every later value go (dropping from the end, never the middle), and
	 * the OWS before its comma is trimmed */
	off = (size_t)sprintf(in, R11);
	off += (size_t)sprintf(in + off, "tracestate: a=1 , b=2,c=");
	memset(in + off, 'x', cap);
	off += cap;
	off += (size_t)sprintf(in + off, "\r\ntracestate: d=4\r\n\r\n");
	ck_assert_int_eq(req_all_ways("tracestate cut in a member", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->tracestate_len, 9);
	ck_assert(memcmp(r->tracestate, "a=1 , b=2", 9) == 0);
	ck_assert(r->tracestate_truncated);

	/* a full buffer leaves no room for the comma of another value */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "tracestate", 'a', cap);
	off = add_field(in, off, "tracestate", 'b', 1);
	memcpy(in + off, "\r\n", 2);
	ck_assert_int_eq(req_all_ways("tracestate no comma room", in, off + 2, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->tracestate_len, cap);
	ck_assert(r->tracestate_truncated);
	ck_assert(r->tracestate[cap - 1] == 'a');

	/* an empty extra value doesn't truncate a full one */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "tracestate", 'a', cap);
	off = add_field(in, off, "tracestate", ' ', 3);
	memcpy(in + off, "\r\n", 2);
	ck_assert_int_eq(req_all_ways("tracestate full + empty", in, off + 2, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert(!r->tracestate_truncated);
	free(in);
	free(r);
}
END_TEST

START_TEST(test_baggage_overflow)
{
	struct http_request *r = malloc(sizeof *r);
	char *in = malloc(16384);
	size_t off, used;

	/* too big alone: dropped whole; the values around it are kept */
	off = (size_t)sprintf(in, R11 "baggage: a=1\r\n");
	off = add_field(in, off, "baggage", 'x', BAGGAGE_MAX);
	off += (size_t)sprintf(in + off, "baggage: b=2\r\n\r\n");
	ck_assert_int_eq(req_all_ways("baggage too big", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	check_str("baggage too big", "baggage", r->baggage, r->baggage_len, "a=1,b=2");

	/* filling exactly is fine */
	off = (size_t)sprintf(in, R11 "baggage: a=1\r\n");
	off = add_field(in, off, "baggage", 'x', BAGGAGE_MAX - 4);
	off += (size_t)sprintf(in + off, "\r\n");
	ck_assert_int_eq(req_all_ways("baggage exact", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->baggage_len, BAGGAGE_MAX);

	/* one byte more drops that value, even if it fits once trimmed of nothing */
	off = (size_t)sprintf(in, R11 "baggage: a=1\r\n");
	off = add_field(in, off, "baggage", 'x', BAGGAGE_MAX - 3);
	off += (size_t)sprintf(in + off, "\r\n");
	ck_assert_int_eq(req_all_ways("baggage over by one", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	check_str("baggage over by one", "baggage", r->baggage, r->baggage_len, "a=1");

	/* overflowing only by trailing OWS still fits */
	off = (size_t)sprintf(in, R11 "baggage: a=1\r\n");
	off = add_field(in, off, "baggage", 'x', BAGGAGE_MAX - 4);
	off -= 2;
	off += (size_t)sprintf(in + off, "    \r\n\r\n");
	ck_assert_int_eq(req_all_ways("baggage trailing OWS", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->baggage_len, BAGGAGE_MAX);
	ck_assert(r->baggage[BAGGAGE_MAX - 1] == 'x');

	/* no room for a comma: the next value is dropped, the list stays clean */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "baggage", 'x', BAGGAGE_MAX - 1);
	off += (size_t)sprintf(in + off, "baggage: b\r\n\r\n");
	ck_assert_int_eq(req_all_ways("baggage no comma room", in, off, NULL, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->baggage_len, BAGGAGE_MAX - 1);
	ck_assert(r->baggage[BAGGAGE_MAX - 2] == 'x');
	free(in);
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Captured fields                                                     */
/* ------------------------------------------------------------------ */

static const struct http_capture_names cap_names = {
	.count = 5,
	.name = { "x-request-id", "accept", "content-type", "user-agent", "X-Tenant" },
	.len = { 12, 6, 12, 10, 8 },
};

struct capture_case {
	const char *name;
	const char *in;
	const char *want[5];    /* NULL: not present */
};

static const struct capture_case capture_cases[] = {
	{ "none present", R11 "Host: h\r\n\r\n", { NULL, NULL, NULL, NULL, NULL } },
	{ "one", R11 "X-Request-Id: abc-123\r\n\r\n", { "abc-123", NULL, NULL, NULL, NULL } },
	{ "OWS trimmed", R11 "accept: \t text/html \t\r\n\r\n", { NULL, "text/html", NULL, NULL, NULL } },
	{ "repeated joined", R11 "Accept: text/html\r\nAccept: application/json\r\n\r\n",
	  { NULL, "text/html,application/json", NULL, NULL, NULL } },
	{ "empty value present", R11 "X-Request-Id:\r\n\r\n", { "", NULL, NULL, NULL, NULL } },
	{ "empty repeated value skipped", R11 "Accept: a\r\nAccept:  \r\nAccept: b\r\n\r\n",
	  { NULL, "a,b", NULL, NULL, NULL } },
	{ "known field captured too", R11 "User-Agent: curl/8\r\n\r\n", { NULL, NULL, NULL, "curl/8", NULL } },
	{ "capture name compared case-insensitively", R11 "x-tenant: t1\r\n\r\n", { NULL, NULL, NULL, NULL, "t1" } },
	{ "several", P11 "Content-Type: application/json\r\nX-Request-Id: r1\r\nAccept: */*\r\n\r\n",
	  { "r1", "*/*", "application/json", NULL, NULL } },
	{ "bare LF", "GET / HTTP/1.1\nAccept: x\n\n", { NULL, "x", NULL, NULL, NULL } },
};

START_TEST(test_capture_table)
{
	const struct capture_case *c = &capture_cases[_i];
	struct http_request *r = malloc(sizeof *r);
	size_t n = strlen(c->in), used;

	ck_assert_int_eq(req_all_ways(c->name, c->in, n, &cap_names, r, &used), HTTP_HEAD_DONE);
	for (unsigned i = 0; i < 5; i++) {
		ck_assert_msg(r->captured[i].present == (c->want[i] != NULL), "%s: slot %u present %d", c->name, i,
			      r->captured[i].present);
		check_str(c->name, cap_names.name[i], r->captured[i].value, r->captured[i].len,
			  c->want[i] ? c->want[i] : "");
		ck_assert(r->captured[i].value[r->captured[i].len] == '\0');
	}
	for (unsigned i = 5; i < HTTP_CAPTURE_MAX; i++)
		ck_assert(!r->captured[i].present);
	free(r);
}
END_TEST

START_TEST(test_capture_cut)
{
	struct http_request *r = malloc(sizeof *r);
	char *in = malloc(4096);
	size_t off, used;
	const size_t cap = HTTP_CAPTURE_VAL_MAX - 1;

	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "Accept", 'a', 400);
	off += (size_t)sprintf(in + off, "Accept: b\r\n\r\n");
	ck_assert_int_eq(req_all_ways("capture cut", in, off, &cap_names, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->captured[1].len, cap);
	ck_assert(r->captured[1].value[cap] == '\0');
	ck_assert(r->captured[1].value[cap - 1] == 'a');

	/* joined values fill up to the cut, never ending in "," */
	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "Accept", 'a', cap - 1);
	off += (size_t)sprintf(in + off, "Accept: b\r\n\r\n");
	ck_assert_int_eq(req_all_ways("capture no comma room", in, off, &cap_names, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->captured[1].len, cap - 1);
	ck_assert(r->captured[1].value[cap - 2] == 'a');

	off = (size_t)sprintf(in, R11);
	off = add_field(in, off, "Accept", 'a', cap - 2);
	off += (size_t)sprintf(in + off, "Accept: bcd\r\n\r\n");
	ck_assert_int_eq(req_all_ways("capture joined cut", in, off, &cap_names, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(r->captured[1].len, cap);
	ck_assert(memcmp(r->captured[1].value + cap - 2, ",b", 2) == 0);
	free(in);
	free(r);
}
END_TEST

/* A capture name longer than the 32-byte name buffer never matches (documented). */
START_TEST(test_capture_long_name)
{
	static const struct http_capture_names longn = {
		.count = 2,
		.name = { "x-a-very-long-header-name-beyond-32", "x-exactly-thirty-two-characters1" },
		.len = { 35, 32 },
	};
	struct http_request *r = malloc(sizeof *r);
	const char *in = R11 "X-A-Very-Long-Header-Name-Beyond-32: v\r\nX-Exactly-Thirty-Two-Characters1: w\r\n\r\n";
	size_t used;

	ck_assert_int_eq(req_all_ways("long capture names", in, strlen(in), &longn, r, &used), HTTP_HEAD_DONE);
	ck_assert(!r->captured[0].present);
	ck_assert(r->captured[1].present);
	check_str("long capture names", "32", r->captured[1].value, r->captured[1].len, "w");
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* end of headers (where a client injects fields)                       */
/* ------------------------------------------------------------------ */

START_TEST(test_end_of_headers)
{
	static const struct {
		const char *in;
		bool crlf;
	} cases[] = {
		{ R11 "Host: h\r\n\r\n", true },
		{ "GET / HTTP/1.1\nHost: h\n\n", false },
		{ "GET / HTTP/1.1\r\nHost: h\r\n\n", false },
		{ "GET / HTTP/1.1\nHost: h\n\r\n", true },
		{ R11 "\r\n", true },
		{ "\r\n" R11 "Host: h\r\n\r\n", true },
	};
	static const struct http_capture_names inj = { .count = 1, .name = { "x-injected" }, .len = { 10 } };

	for (size_t i = 0; i < N_ELEMS(cases); i++) {
		struct http_request *r = malloc(sizeof *r);
		size_t n = strlen(cases[i].in), used;
		bool crlf;
		char buf[256];

		ck_assert_int_eq(req_all_ways("end of headers", cases[i].in, n, NULL, r, &used), HTTP_HEAD_DONE);
		uint32_t at = http_request_end_of_headers(r, &crlf);
		ck_assert(crlf == cases[i].crlf);
		ck_assert_uint_eq(at, n - (crlf ? 2 : 1));
		ck_assert(cases[i].in[at] == (crlf ? '\r' : '\n'));

		/* inserting a field line there gives a head with that field */
		int m = snprintf(buf, sizeof buf, "%.*sX-Injected: 1%s%s", (int)at, cases[i].in, crlf ? "\r\n" : "\n",
				 cases[i].in + at);
		ck_assert_int_eq(req_all_ways("injected", buf, (size_t)m, &inj, r, &used), HTTP_HEAD_DONE);
		ck_assert_uint_eq(used, (size_t)m);
		check_str("injected", "x-injected", r->captured[0].value, r->captured[0].len, "1");
		free(r);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Responses                                                           */
/* ------------------------------------------------------------------ */

struct resp_case {
	const char *name;
	const char *in;
	enum http_state st;
	long used;
	int status;              /* NOCHECK */
	int minor;
	int has_cl;
	uint64_t cl;
	int chunked, close, keep_alive, bad;
};

#define S200 "HTTP/1.1 200 OK\r\n"

static const struct resp_case resp_cases[] = {
	{ "200 OK", S200 "\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 0, 0, 0, 0, 0, 0 },
	{ "1.0 404", "HTTP/1.0 404 Not Found\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 404, 0, 0, 0, 0, 1, 0, 0 },
	{ "empty reason with SP", "HTTP/1.1 204 \r\n\r\n", HTTP_HEAD_DONE, WHOLE, 204, 1, NC, 0, NC, NC, NC, NC },
	{ "no SP, no reason", "HTTP/1.1 200\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, NC, 0, NC, NC, NC, NC },
	{ "no SP, bare LF", "HTTP/1.1 200\nContent-Length: 1\n\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 1, 1, 0, 0, 0, 0 },
	{ "reason with spaces and symbols", "HTTP/1.1 418 I'm a teapot (RFC 2324)\r\n\r\n", HTTP_HEAD_DONE, WHOLE,
	  418, 1, NC, 0, NC, NC, NC, NC },
	{ "status 100", "HTTP/1.1 100 Continue\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 100, 1, NC, 0, NC, NC, NC, NC },
	{ "status 999", "HTTP/1.1 999 X\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 999, 1, NC, 0, NC, NC, NC, NC },
	{ "status leading zero", "HTTP/1.1 099 X\r\n\r\n", HTTP_HEAD_ERROR, 9, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "status two digits", "HTTP/1.1 20 OK\r\n\r\n", HTTP_HEAD_ERROR, 11, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "status four digits", "HTTP/1.1 2000 OK\r\n\r\n", HTTP_HEAD_ERROR, 12, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "status letters", "HTTP/1.1 2OO OK\r\n\r\n", HTTP_HEAD_ERROR, 10, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "two spaces", "HTTP/1.1  200 OK\r\n\r\n", HTTP_HEAD_ERROR, 9, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "HTTP/2", "HTTP/2 200\r\n\r\n", HTTP_HEAD_ERROR, 5, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", HTTP_HEAD_ERROR, 7, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "not a response", "GET / HTTP/1.1\r\n\r\n", HTTP_HEAD_ERROR, 0, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "no empty lines before", "\r\nHTTP/1.1 200 OK\r\n\r\n", HTTP_HEAD_ERROR, 0, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "content-length", S200 "Content-Length: 17\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 1, 17, 0, 0, 0, 0 },
	{ "chunked", S200 "Transfer-Encoding: chunked\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 0, 0, 1, 0, 0, 0 },
	{ "gzip only is not bad", S200 "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", HTTP_HEAD_DONE, WHOLE,
	  200, 1, 1, 3, 0, 0, 0, 0 },
	{ "1.0 with transfer-encoding is bad", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_HEAD_DONE,
	  WHOLE, 200, 0, 0, 0, 1, 1, 0, 1 },
	{ "conflicting content-length", S200 "Content-Length: 3\r\nContent-Length: 4\r\n\r\n", HTTP_HEAD_DONE, WHOLE,
	  200, 1, 1, 3, 0, 0, 0, 1 },
	{ "connection close", S200 "Connection: close\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 0, 0, 0, 1, 0, 0 },
	{ "1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", HTTP_HEAD_DONE,
	  WHOLE, 200, 0, 1, 0, 0, 0, 1, 0 },
	{ "obs-fold", S200 "A: b\r\n c\r\n\r\n", HTTP_HEAD_ERROR, 17 + 6, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "field without colon", S200 "Oops\r\n\r\n", HTTP_HEAD_ERROR, 17 + 4, NC, NC, NC, 0, NC, NC, NC, NC },
	{ "request fields not kept", S200 "Host: h\r\nExpect: 100-continue\r\n\r\n", HTTP_HEAD_DONE, WHOLE, 200, 1, 0,
	  0, 0, 0, 0, 0 },
	{ "body follows", S200 "Content-Length: 2\r\n\r\nokHTTP/1.1", HTTP_HEAD_DONE, 17 + 21, 200, 1, 1, 2, 0, 0, 0, 0 },
};

START_TEST(test_response_table)
{
	const struct resp_case *c = &resp_cases[_i];
	struct http_response *r = malloc(sizeof *r);
	size_t n = strlen(c->in), used;
	enum http_state st = resp_all_ways(c->name, c->in, n, NULL, r, &used);
	const struct http_framing *f = &r->framing;

	check_state(c->name, st, used, c->st, c->used, n);
	if (c->status != NOCHECK)
		ck_assert_msg(r->status == c->status, "%s: status %d", c->name, r->status);
	if (c->minor != NOCHECK)
		ck_assert_msg(r->version_minor == c->minor, "%s: minor %d", c->name, r->version_minor);
	check_flag(c->name, "has_content_length", f->has_content_length, c->has_cl);
	if (c->has_cl == 1)
		ck_assert_msg(f->content_length == (uint64_t)c->cl, "%s: content_length", c->name);
	check_flag(c->name, "chunked", f->chunked, c->chunked);
	check_flag(c->name, "conn_close", f->conn_close, c->close);
	check_flag(c->name, "conn_keep_alive", f->conn_keep_alive, c->keep_alive);
	check_flag(c->name, "bad_framing", f->bad_framing, c->bad);
	free(r);
}
END_TEST

START_TEST(test_response_capture)
{
	static const struct http_capture_names rc = {
		.count = 2, .name = { "content-type", "set-cookie" }, .len = { 12, 10 },
	};
	struct http_response *r = malloc(sizeof *r);
	const char *in = S200 "Content-Type:  application/json \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\n";
	size_t used;

	ck_assert_int_eq(resp_all_ways("response capture", in, strlen(in), &rc, r, &used), HTTP_HEAD_DONE);
	check_str("response capture", "content-type", r->captured[0].value, r->captured[0].len, "application/json");
	check_str("response capture", "set-cookie", r->captured[1].value, r->captured[1].len, "a=1,b=2");
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Body framing decisions                                               */
/* ------------------------------------------------------------------ */

struct frame_case {
	const char *name;
	const char *head;
	bool response;
	bool head_request;       /* response to HEAD */
	enum http_body_kind kind;
	bool done, error;
	uint64_t remaining;
};

static const struct frame_case frame_cases[] = {
	{ "request without body", R11 "\r\n", false, false, HTTP_BODY_NONE, true, false, 0 },
	{ "request length", P11 "Content-Length: 5\r\n\r\n", false, false, HTTP_BODY_LENGTH, false, false, 5 },
	{ "request length 0", P11 "Content-Length: 0\r\n\r\n", false, false, HTTP_BODY_LENGTH, true, false, 0 },
	{ "request chunked", P11 "Transfer-Encoding: chunked\r\n\r\n", false, false, HTTP_BODY_CHUNKED, false, false, 0 },
	{ "request chunked wins", P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, false,
	  HTTP_BODY_CHUNKED, false, false, 0 },
	{ "request bad length", P11 "Content-Length: 5, 6\r\n\r\n", false, false, HTTP_BODY_NONE, false, true, 0 },
	{ "request gzip only", P11 "Transfer-Encoding: gzip\r\n\r\n", false, false, HTTP_BODY_NONE, false, true, 0 },
	{ "request 1.0 length", "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", false, false, HTTP_BODY_LENGTH, false,
	  false, 3 },
	{ "response length", S200 "Content-Length: 17\r\n\r\n", true, false, HTTP_BODY_LENGTH, false, false, 17 },
	{ "response chunked", S200 "Transfer-Encoding: chunked\r\n\r\n", true, false, HTTP_BODY_CHUNKED, false, false, 0 },
	{ "response chunked wins", S200 "Transfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", true, false,
	  HTTP_BODY_CHUNKED, false, false, 0 },
	{ "response no framing", S200 "\r\n", true, false, HTTP_BODY_UNTIL_CLOSE, false, false, 0 },
	{ "response 1.0 no framing", "HTTP/1.0 200 OK\r\n\r\n", true, false, HTTP_BODY_UNTIL_CLOSE, false, false, 0 },
	{ "response 1.0 length", "HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n", true, false, HTTP_BODY_LENGTH, false,
	  false, 4 },
	{ "response gzip then close", S200 "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", true, false,
	  HTTP_BODY_UNTIL_CLOSE, false, false, 0 },
	{ "response bad length", S200 "Content-Length: x\r\n\r\n", true, false, HTTP_BODY_NONE, false, true, 0 },
	{ "response 1.0 chunked is bad", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, false,
	  HTTP_BODY_NONE, false, true, 0 },
	{ "response to HEAD", S200 "Content-Length: 17\r\n\r\n", true, true, HTTP_BODY_NONE, true, false, 0 },
	{ "response to HEAD chunked", S200 "Transfer-Encoding: chunked\r\n\r\n", true, true, HTTP_BODY_NONE, true,
	  false, 0 },
	{ "100 continue", "HTTP/1.1 100 Continue\r\n\r\n", true, false, HTTP_BODY_NONE, true, false, 0 },
	{ "101 switching", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", true, false,
	  HTTP_BODY_NONE, true, false, 0 },
	{ "103 early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", true, false, HTTP_BODY_NONE, true,
	  false, 0 },
	{ "1xx ignores bad length", "HTTP/1.1 199 X\r\nContent-Length: x\r\n\r\n", true, false, HTTP_BODY_NONE, true,
	  false, 0 },
	{ "204", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", true, false, HTTP_BODY_NONE, true, false, 0 },
	{ "304", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", true, false, HTTP_BODY_NONE, true,
	  false, 0 },
	{ "205 has a body frame", "HTTP/1.1 205 Reset\r\nContent-Length: 0\r\n\r\n", true, false, HTTP_BODY_LENGTH,
	  true, false, 0 },
};

START_TEST(test_frame_table)
{
	const struct frame_case *c = &frame_cases[_i];
	struct http_body b;
	size_t used, n = strlen(c->head);

	memset(&b, 0xa5, sizeof b);
	if (c->response) {
		struct http_response *r = malloc(sizeof *r);

		ck_assert_int_eq(resp_all_ways(c->name, c->head, n, NULL, r, &used), HTTP_HEAD_DONE);
		http_body_for_response(&b, r, c->head_request);
		free(r);
	} else {
		struct http_request *r = malloc(sizeof *r);

		ck_assert_int_eq(req_all_ways(c->name, c->head, n, NULL, r, &used), HTTP_HEAD_DONE);
		http_body_for_request(&b, r);
		free(r);
	}
	ck_assert_msg(b.kind == c->kind, "%s: kind %d want %d", c->name, b.kind, c->kind);
	ck_assert_msg(b.done == c->done && b.error == c->error, "%s: done %d error %d", c->name, b.done, b.error);
	ck_assert_msg(b.remaining == c->remaining, "%s: remaining %llu", c->name, (unsigned long long)b.remaining);
	/* nothing is consumed by a body that is done or broken */
	if (b.done || b.error)
		ck_assert_uint_eq(http_body_feed(&b, "abc", 3), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Body feeding                                                        */
/* ------------------------------------------------------------------ */

struct chunk_case {
	const char *name;
	const char *in;
	size_t len;              /* 0: strlen */
	long consumed;           /* WHOLE: all of in */
	bool done, error;
};

static const struct chunk_case chunk_cases[] = {
	{ "one chunk", "5\r\nhello\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "next message follows", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 0, 15, true, false },
	{ "several chunks", "3\r\nabc\r\n4\r\ndefg\r\n1\r\nh\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "hex upper and lower", "A\r\n0123456789\r\nb\r\n0123456789a\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "leading zeros", "0005\r\nhello\r\n000\r\n\r\n", 0, WHOLE, true, false },
	{ "extensions", "5;name=value;x\r\nhello\r\n0;last=\"yes\"\r\n\r\n", 0, WHOLE, true, false },
	{ "BWS before extension", "5 \t;a=b\r\nhello\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "BWS before CRLF", "5  \r\nhello\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\nNEXT", 0, 44, true, false },
	{ "bare LF everywhere", "5\nhello\n0\nT: v\n\nNEXT", 0, 16, true, false },
	{ "CRLF in data is data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 0, WHOLE, true, false },
	{ "binary data", "4\r\n\0\xff\r\n\r\n0\r\n\r\n", 14, WHOLE, true, false },
	{ "incomplete: in size", "1", 0, WHOLE, false, false },
	{ "incomplete: in data", "a\r\nabc", 0, WHOLE, false, false },
	{ "incomplete: before last CRLF", "0\r\n", 0, WHOLE, false, false },
	{ "incomplete: in trailers", "0\r\nX: y\r\n", 0, WHOLE, false, false },
	{ "incomplete: final CR", "0\r\n\r", 0, WHOLE, false, false },
	{ "empty size", "\r\nhello\r\n", 0, 0, false, true },
	{ "not hex", "g\r\n", 0, 0, false, true },
	{ "negative", "-5\r\nhello\r\n", 0, 0, false, true },
	{ "leading space", " 5\r\nhello\r\n", 0, 0, false, true },
	{ "garbage after size", "5x\r\nhello\r\n0\r\n\r\n", 0, 1, false, true },
	{ "space inside size", "5 5\r\n", 0, 2, false, true },
	{ "CR without LF after size", "5\rhello", 0, 2, false, true },
	{ "data too long", "5\r\nhelloX\r\n", 0, 8, false, true },
	{ "data CR without LF", "5\r\nhello\rX", 0, 9, false, true },
	{ "final CR without LF", "0\r\n\rX", 0, 4, false, true },
	{ "trailer CR without LF at end", "0\r\nA: b\r\n\rZ", 0, 10, false, true },
	{ "16 hex digits fit", "ffffffffffffffff\r\n", 0, WHOLE, false, false },
	{ "17 hex digits overflow", "10000000000000000\r\n", 0, 16, false, true },
};

START_TEST(test_chunked_table)
{
	const struct chunk_case *c = &chunk_cases[_i];
	size_t n = c->len ? c->len : strlen(c->in);
	size_t want = c->consumed == WHOLE ? n : (size_t)c->consumed;
	struct http_body b;

	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_CHUNKED;
	size_t got = body_all_ways(c->name, &b, c->in, n);
	ck_assert_msg(got == want, "%s: consumed %zu want %zu", c->name, got, want);
	ck_assert_msg(b.done == c->done && b.error == c->error, "%s: done %d error %d", c->name, b.done, b.error);
	ck_assert(!(b.done && b.error));
	/* once done or broken nothing more is taken */
	if (b.done || b.error)
		ck_assert_uint_eq(http_body_feed(&b, "0\r\n\r\n", 5), 0);
}
END_TEST

/* A chunk-size line with endless extensions is bounded; so is a trailer line. */
START_TEST(test_chunked_line_limits)
{
	size_t n = 100000;
	char *in = malloc(n);
	struct http_body b;
	size_t got;

	memcpy(in, "5;", 2);
	memset(in + 2, 'e', n - 2);
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_CHUNKED;
	got = body_all_ways("long extension", &b, in, n);
	ck_assert(b.error && !b.done);
	ck_assert_uint_eq(got, 4096);

	/* many leading zeros: the line limit, not the value, stops it */
	memset(in, '0', n);
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_CHUNKED;
	got = body_all_ways("endless zeros", &b, in, n);
	ck_assert(b.error);
	ck_assert_uint_eq(got, 4096);

	memcpy(in, "0\r\nX: ", 6);
	memset(in + 6, 't', n - 6);
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_CHUNKED;
	got = body_all_ways("long trailer", &b, in, n);
	ck_assert(b.error);
	ck_assert_uint_eq(got, 3 + 65536);

	/* the bound is per trailer line: two of 40 KB each are fine */
	memcpy(in, "0\r\n", 3);
	for (size_t k = 0; k < 2; k++) {
		size_t at = 3 + k * 40002;
		memcpy(in + at, "X:", 2);
		memset(in + at + 2, 't', 39998);
		memcpy(in + at + 40000, "\r\n", 2);
	}
	memcpy(in + 3 + 2 * 40002, "\r\n", 2);
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_CHUNKED;
	got = body_all_ways("two long trailers", &b, in, 3 + 2 * 40002 + 2);
	ck_assert(b.done && !b.error);
	ck_assert_uint_eq(got, 3 + 2 * 40002 + 2);
	free(in);
}
END_TEST

START_TEST(test_body_length_and_close)
{
	struct http_body b;
	const char *data = "0123456789NEXT";
	size_t got;

	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_LENGTH;
	b.remaining = 10;
	got = body_all_ways("length", &b, data, strlen(data));
	ck_assert_uint_eq(got, 10);
	ck_assert(b.done && !b.error);
	ck_assert_uint_eq(b.remaining, 0);

	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_LENGTH;
	b.remaining = 100;
	got = body_all_ways("length partial", &b, data, strlen(data));
	ck_assert_uint_eq(got, strlen(data));
	ck_assert(!b.done);
	ck_assert_uint_eq(b.remaining, 100 - strlen(data));

	/* until close takes everything, forever */
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_UNTIL_CLOSE;
	got = body_all_ways("until close", &b, data, strlen(data));
	ck_assert_uint_eq(got, strlen(data));
	ck_assert(!b.done && !b.error);
	ck_assert_uint_eq(http_body_feed(&b, data, 0), 0);

	/* none is done at once and takes nothing */
	memset(&b, 0, sizeof b);
	b.kind = HTTP_BODY_NONE;
	ck_assert_uint_eq(http_body_feed(&b, data, strlen(data)), 0);
	ck_assert(b.done);

	/* an unknown kind is an error, not a crash */
	memset(&b, 0, sizeof b);
	b.kind = 42;
	ck_assert_uint_eq(http_body_feed(&b, data, strlen(data)), 0);
	ck_assert(b.error);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Request-target                                                       */
/* ------------------------------------------------------------------ */

struct target_case {
	const char *in;
	const char *path;
	const char *query;       /* NULL: no '?' */
};

static const struct target_case target_cases[] = {
	{ "/p?q", "/p", "q" },
	{ "/p", "/p", NULL },
	{ "/", "/", NULL },
	{ "/p?", "/p", "" },
	{ "/a/b?c=d&e=f", "/a/b", "c=d&e=f" },
	{ "/a?b?c", "/a", "b?c" },
	{ "/p?q#frag", "/p", "q" },
	{ "/p#frag?x", "/p", NULL },
	{ "/p#", "/p", NULL },
	{ "http://h:1/p?q", "/p", "q" },
	{ "http://h.example/", "/", NULL },
	{ "http://h:1", "/", NULL },
	{ "http://h:1?q", "/", "q" },
	{ "HTTPS://user@h/x/y", "/x/y", NULL },
	{ "http://h/p#f", "/p", NULL },
	{ "svn+ssh://h/repo", "/repo", NULL },
	{ "*", "*", NULL },
	{ "h.example:443", "h.example:443", NULL },
	{ "", "", NULL },
	{ "http:/not-absolute", "http:/not-absolute", NULL },
};

START_TEST(test_split_target_table)
{
	const struct target_case *c = &target_cases[_i];
	size_t n = strlen(c->in), pl = 99, ql = 99;
	char *t = exact_copy(c->in, n);
	const char *path = NULL, *query = (const char *)1;

	http_split_target(t, n, &path, &pl, &query, &ql);
	check_str(c->in, "path", path, pl, c->path);
	ck_assert((path >= t && path + pl <= t + n) || (pl == 1 && path[0] == '/'));
	if (c->query) {
		ck_assert_msg(query != NULL, "%s: query missing", c->in);
		check_str(c->in, "query", query, ql, c->query);
		ck_assert(query >= t && query + ql <= t + n);
	} else {
		ck_assert_msg(query == NULL && ql == 0, "%s: unexpected query", c->in);
	}
	free(t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Routes                                                              */
/* ------------------------------------------------------------------ */

struct routes_parse_case {
	const char *name;
	const char *spec;
	bool ok;
	const char *want[4];     /* the stored templates, in order */
	unsigned count;
};

static const struct routes_parse_case routes_parse_cases[] = {
	{ "example", "/api/tasks/{id},/api/health,/static/*", true,
	  { "/api/tasks/{id}", "/api/health", "/static/*" }, 3 },
	{ "whitespace trimmed", "  /a ,\t/b/{x}\n, /c ", true, { "/a", "/b/{x}", "/c" }, 3 },
	{ "empty entries ignored", ",/a,,/b,", true, { "/a", "/b" }, 2 },
	{ "empty spec", "", true, { NULL }, 0 },
	{ "blank spec", " , ", true, { NULL }, 0 },
	{ "root", "/", true, { "/" }, 1 },
	{ "star alone", "/*", true, { "/*" }, 1 },
	{ "must start with /", "/a,api/b,/c", false, { "/a", "/c" }, 2 },
	{ "unclosed brace", "/a/{id,/b", false, { "/b" }, 1 },
	{ "unopened brace", "/a/id}/x,/b", false, { "/b" }, 1 },
	{ "brace inside a segment", "/a/x{id},/b", false, { "/b" }, 1 },
	{ "empty parameter", "/a/{},/b", false, { "/b" }, 1 },
	{ "nested braces", "/a/{{id}},/b", false, { "/b" }, 1 },
	{ "star not last", "/a/*/b,/c/*", false, { "/c/*" }, 1 },
	{ "star inside a segment is literal", "/a/*.css", true, { "/a/*.css" }, 1 },
	{ "trailing slash kept as written", "/a/", true, { "/a/" }, 1 },
};

START_TEST(test_routes_parse_table)
{
	const struct routes_parse_case *c = &routes_parse_cases[_i];
	struct http_routes *r = malloc(sizeof *r);
	char *spec = exact_copy(c->spec, strlen(c->spec));

	ck_assert_msg(http_routes_parse(r, spec, strlen(c->spec)) == c->ok, "%s: ok", c->name);
	ck_assert_msg(r->count == c->count, "%s: count %u", c->name, r->count);
	for (unsigned i = 0; i < c->count; i++) {
		check_str(c->name, "template", r->tmpl[i], r->len[i], c->want[i]);
		ck_assert(r->tmpl[i][r->len[i]] == '\0');
	}
	free(spec);
	free(r);
}
END_TEST

START_TEST(test_routes_limits)
{
	struct http_routes *r = malloc(sizeof *r);
	char *spec = malloc(20000);
	size_t off = 0;

	for (int i = 0; i < HTTP_ROUTES_MAX + 3; i++)
		off += (size_t)sprintf(spec + off, "/r%d,", i);
	ck_assert(!http_routes_parse(r, spec, off));
	ck_assert_uint_eq(r->count, HTTP_ROUTES_MAX);
	check_str("many", "last", r->tmpl[HTTP_ROUTES_MAX - 1], r->len[HTTP_ROUTES_MAX - 1], "/r63");

	/* more text than the buffer holds */
	off = 0;
	for (int i = 0; i < 40; i++) {
		spec[off++] = '/';
		memset(spec + off, 'a' + i % 26, 199);
		off += 199;
		spec[off++] = ',';
	}
	ck_assert(!http_routes_parse(r, spec, off));
	ck_assert_uint_eq(r->count, sizeof r->buf / 201);

	ck_assert(http_routes_parse(r, NULL, 0));
	ck_assert_uint_eq(r->count, 0);
	free(spec);
	free(r);
}
END_TEST

struct route_match_case {
	const char *spec;
	const char *path;
	const char *want;        /* NULL: no match */
};

#define ROUTES "/api/tasks/{id},/api/health,/static/*"

static const struct route_match_case route_match_cases[] = {
	{ ROUTES, "/api/tasks/42", "/api/tasks/{id}" },
	{ ROUTES, "/api/tasks/42/", "/api/tasks/{id}" },
	{ ROUTES, "/api/tasks/", NULL },
	{ ROUTES, "/api/tasks", NULL },
	{ ROUTES, "/api/tasks/42/x", NULL },
	{ ROUTES, "/api/tasks//", NULL },
	{ ROUTES, "/api/health", "/api/health" },
	{ ROUTES, "/api/health/", "/api/health" },
	{ ROUTES, "/api/healthz", NULL },
	{ ROUTES, "/API/health", NULL },
	{ ROUTES, "/static", "/static/*" },
	{ ROUTES, "/static/", "/static/*" },
	{ ROUTES, "/static/js/app.js", "/static/*" },
	{ ROUTES, "/staticx/a", NULL },
	{ ROUTES, "/", NULL },
	{ ROUTES, "", NULL },
	{ ROUTES, "api/health", NULL },
	{ "/api/{x},/api/health", "/api/health", "/api/{x}" },
	{ "/api/health,/api/{x}", "/api/health", "/api/health" },
	{ "/a/{id}/b", "/a/1/b", "/a/{id}/b" },
	{ "/a/{id}/b", "/a//b", NULL },
	{ "/{a}/{b}", "/x/y", "/{a}/{b}" },
	{ "/{a}/{b}", "/x", NULL },
	{ "/", "/", "/" },
	{ "/", "", "/" },
	{ "/", "/a", NULL },
	{ "/*", "/", "/*" },
	{ "/*", "/any/thing/", "/*" },
	{ "/a/", "/a", "/a/" },
	{ "/a/", "/a/", "/a/" },
	{ "/a/*.css", "/a/*.css", "/a/*.css" },
	{ "/a/*.css", "/a/x.css", NULL },
	{ "/users/{id}/posts/{post}", "/users/7/posts/9", "/users/{id}/posts/{post}" },
};

START_TEST(test_routes_match_table)
{
	const struct route_match_case *c = &route_match_cases[_i];
	struct http_routes *r = malloc(sizeof *r);
	size_t n = strlen(c->path), tl = 0;
	char *path = exact_copy(c->path, n);

	http_routes_parse(r, c->spec, strlen(c->spec));
	const char *got = http_routes_match(r, path, n, &tl);
	if (!c->want) {
		ck_assert_msg(got == NULL, "%s on %s: matched %s", c->path, c->spec, got);
	} else {
		ck_assert_msg(got != NULL, "%s on %s: no match", c->path, c->spec);
		check_str(c->path, "template", got, tl, c->want);
	}
	free(path);
	free(r);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Real clients and servers, pipelining                                 */
/* ------------------------------------------------------------------ */

/* Bytes captured from the real programs (see the comment on each). */
static const char curl_get[] =  /* curl 7.88.1 */
	"GET /api/tasks/42?x=1 HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
static const char curl_post[] =  /* curl -H traceparent -d '{"a":1}' -H Content-Type */
	"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
	"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
	"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
static const char py_http_client[] =  /* Python 3.11 http.client, POST with a JSON body */
	"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nAccept-Encoding: identity\r\n"
	"Content-Length: 13\r\nContent-Type: application/json\r\n\r\n{\"title\":\"x\"}";
static const char py_urllib[] =  /* Python 3.11 urllib.request.urlopen */
	"GET /static/app.js HTTP/1.1\r\nAccept-Encoding: identity\r\nHost: 127.0.0.1:18080\r\n"
	"User-Agent: Python-urllib/3.11\r\nConnection: close\r\n\r\n";
static const char mhd_json[] =  /* libmicrohttpd 0.9.75, buffer response */
	"HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 15:42:35 GMT\r\nConnection: close\r\n"
	"Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\":\"ok\"}\n\n";
static const char mhd_chunked[] =  /* libmicrohttpd, callback response of unknown size */
	"HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 15:42:35 GMT\r\nConnection: close\r\n"
	"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nhello\r\n0\r\n\r\n";
static const char mhd_204[] =
	"HTTP/1.1 204 No Content\r\nDate: Wed, 25 Nov 2026 15:42:35 GMT\r\nConnection: close\r\n\r\n";
static const char mhd_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char py_http_server[] =  /* Python http.server (BaseHTTPRequestHandler, HTTP/1.0) */
	"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\nDate: Wed, 25 Nov 2026 15:42:35 GMT\r\n"
	"Content-type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";

static const struct http_capture_names real_cap = {
	.count = 2, .name = { "content-type", "accept" }, .len = { 12, 6 },
};

START_TEST(test_real_requests)
{
	struct http_request *r = malloc(sizeof *r);
	struct http_body b;
	size_t used, n;

	n = sizeof curl_get - 1;
	ck_assert_int_eq(req_all_ways("curl GET", curl_get, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(used, n);
	check_str("curl", "method", r->method, r->method_len, "GET");
	check_str("curl", "target", r->target, r->target_len, "/api/tasks/42?x=1");
	check_str("curl", "host", r->host, r->host_len, "127.0.0.1:18080");
	check_str("curl", "ua", r->user_agent, r->user_agent_len, "curl/7.88.1");
	check_str("curl", "accept", r->captured[1].value, r->captured[1].len, "*/*");
	ck_assert(!r->framing.conn_close && r->version_minor == 1);
	http_body_for_request(&b, r);
	ck_assert(b.kind == HTTP_BODY_NONE && b.done);

	n = sizeof curl_post - 1;
	ck_assert_int_eq(req_all_ways("curl POST", curl_post, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(used, n - 7);
	ck_assert_uint_eq(r->traceparent_count, 1);
	check_str("curl POST", "traceparent", r->traceparent, r->traceparent_len, TP1);
	check_str("curl POST", "content-type", r->captured[0].value, r->captured[0].len, "application/json");
	http_body_for_request(&b, r);
	ck_assert_uint_eq(body_all_ways("curl POST body", &b, curl_post + used, n - used), 7);
	ck_assert(b.done);

	n = sizeof py_http_client - 1;
	ck_assert_int_eq(req_all_ways("http.client", py_http_client, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	ck_assert(r->framing.has_content_length && r->framing.content_length == 13);
	ck_assert_uint_eq(r->user_agent_len, 0);
	http_body_for_request(&b, r);
	ck_assert_uint_eq(body_all_ways("http.client body", &b, py_http_client + used, n - used), 13);

	n = sizeof py_urllib - 1;
	ck_assert_int_eq(req_all_ways("urllib", py_urllib, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	check_str("urllib", "ua", r->user_agent, r->user_agent_len, "Python-urllib/3.11");
	check_str("urllib", "host", r->host, r->host_len, "127.0.0.1:18080");
	ck_assert(r->framing.conn_close);
	free(r);
}
END_TEST

START_TEST(test_real_responses)
{
	struct http_response *r = malloc(sizeof *r);
	struct http_body b;
	size_t used, n;

	n = sizeof mhd_json - 1;
	ck_assert_int_eq(resp_all_ways("mhd json", mhd_json, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	ck_assert(r->status == 200 && r->framing.conn_close && r->framing.content_length == 17);
	check_str("mhd json", "content-type", r->captured[0].value, r->captured[0].len, "application/json");
	http_body_for_response(&b, r, false);
	ck_assert_uint_eq(body_all_ways("mhd json body", &b, mhd_json + used, n - used), 17);
	ck_assert(b.done);

	n = sizeof mhd_chunked - 1;
	ck_assert_int_eq(resp_all_ways("mhd chunked", mhd_chunked, n, NULL, r, &used), HTTP_HEAD_DONE);
	http_body_for_response(&b, r, false);
	ck_assert_int_eq(b.kind, HTTP_BODY_CHUNKED);
	ck_assert_uint_eq(body_all_ways("mhd chunked body", &b, mhd_chunked + used, n - used), n - used);
	ck_assert(b.done);

	n = sizeof mhd_204 - 1;
	ck_assert_int_eq(resp_all_ways("mhd 204", mhd_204, n, NULL, r, &used), HTTP_HEAD_DONE);
	http_body_for_response(&b, r, false);
	ck_assert(b.kind == HTTP_BODY_NONE && b.done);

	n = sizeof py_http_server - 1;
	ck_assert_int_eq(resp_all_ways("http.server", py_http_server, n, &real_cap, r, &used), HTTP_HEAD_DONE);
	ck_assert(r->version_minor == 0 && r->framing.conn_close);
	check_str("http.server", "content-type", r->captured[0].value, r->captured[0].len, "text/html; charset=utf-8");
	http_body_for_response(&b, r, false);
	ck_assert_uint_eq(body_all_ways("http.server body", &b, py_http_server + used, n - used), 5);
	free(r);
}
END_TEST

/* Walks a buffer of back-to-back requests with *used and the body framer,
 * the way the hook does; returns how many heads were parsed. */
static unsigned walk_requests(const char *buf, size_t n, const char *const *targets, unsigned max)
{
	struct http_request *r = malloc(sizeof *r);
	struct http_body b;
	size_t off = 0;
	unsigned count = 0;

	while (off < n && count < max) {
		size_t used;

		http_request_init(r, NULL);
		ck_assert_int_eq(http_request_feed(r, buf + off, n - off, &used), HTTP_HEAD_DONE);
		check_str("pipelined", "target", r->target, r->target_len, targets[count]);
		off += used;
		http_body_for_request(&b, r);
		ck_assert(!b.error);
		off += http_body_feed(&b, buf + off, n - off);
		ck_assert(b.done);
		count++;
	}
	ck_assert_uint_eq(off, n);
	free(r);
	return count;
}

START_TEST(test_pipelined_requests)
{
	static const char buf[] =
		"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
		"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
		"POST /three HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
		"\r\n"  /* a stray CRLF after a body (RFC 9112 2.2) */
		"GET /four HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	static const char *const targets[] = { "/one", "/two", "/three", "/four" };
	char *p = exact_copy(buf, sizeof buf - 1);

	ck_assert_uint_eq(walk_requests(p, sizeof buf - 1, targets, 4), 4);
	/* the same bytes from curl, twice in a row */
	char two[2 * sizeof curl_get];
	memcpy(two, curl_get, sizeof curl_get - 1);
	memcpy(two + sizeof curl_get - 1, curl_get, sizeof curl_get - 1);
	static const char *const t2[] = { "/api/tasks/42?x=1", "/api/tasks/42?x=1" };
	ck_assert_uint_eq(walk_requests(two, 2 * (sizeof curl_get - 1), t2, 2), 2);
	free(p);
}
END_TEST

/* 100 Continue, then the final response with a chunked body, then another
 * response: interim responses are re-parsed with a fresh parser. */
START_TEST(test_pipelined_responses)
{
	char buf[1024];
	size_t n = 0, off = 0, used;
	struct http_response *r = malloc(sizeof *r);
	struct http_body b;
	static const int statuses[] = { 100, 200, 204, 200 };
	unsigned k = 0;

	memcpy(buf + n, mhd_continue, sizeof mhd_continue - 1);
	n += sizeof mhd_continue - 1;
	memcpy(buf + n, mhd_chunked, sizeof mhd_chunked - 1);
	n += sizeof mhd_chunked - 1;
	memcpy(buf + n, mhd_204, sizeof mhd_204 - 1);
	n += sizeof mhd_204 - 1;
	memcpy(buf + n, mhd_json, sizeof mhd_json - 1);
	n += sizeof mhd_json - 1;
	char *p = exact_copy(buf, n);

	while (off < n) {
		http_response_init(r, NULL);
		ck_assert_int_eq(http_response_feed(r, p + off, n - off, &used), HTTP_HEAD_DONE);
		off += used;
		ck_assert_int_eq(r->status, statuses[k]);
		http_body_for_response(&b, r, false);
		off += http_body_feed(&b, p + off, n - off);
		ck_assert(b.done);
		k++;
	}
	ck_assert_uint_eq(k, 4);
	ck_assert_uint_eq(off, n);
	free(p);
	free(r);
}
END_TEST

/* Re-initialising on a keep-alive connection forgets the previous message. */
START_TEST(test_reinit_forgets)
{
	struct http_request *r = malloc(sizeof *r);
	const char *a = "GET /a HTTP/1.1\r\nHost: first\r\nUser-Agent: x\r\ntraceparent: " TP1
			"\r\ntracestate: a=1\r\nbaggage: k=v\r\nAccept: y\r\nContent-Length: 3\r\n\r\n";
	const char *b = "GET /b HTTP/1.1\r\n\r\n";
	size_t used;

	http_request_init(r, &real_cap);
	ck_assert_int_eq(http_request_feed(r, a, strlen(a), &used), HTTP_HEAD_DONE);
	ck_assert_int_eq(http_request_feed(r, b, strlen(b), &used), HTTP_HEAD_DONE);
	ck_assert_uint_eq(used, 0);
	http_request_init(r, &real_cap);
	ck_assert_int_eq(http_request_feed(r, b, strlen(b), &used), HTTP_HEAD_DONE);
	check_str("reinit", "target", r->target, r->target_len, "/b");
	ck_assert(r->host_len == 0 && r->host[0] == '\0' && r->user_agent_len == 0);
	ck_assert(r->traceparent_count == 0 && r->traceparent_len == 0 && r->tracestate_len == 0 &&
		  r->baggage_len == 0);
	ck_assert(!r->captured[1].present && r->captured[1].len == 0 && r->captured[1].value[0] == '\0');
	ck_assert(!r->framing.has_content_length);
	free(r);
}
END_TEST

/* --- Retry-After --- */

/* 1994-11-06 08:49:37 UTC, the RFC's example date. */
#define RFC_EXAMPLE 784111777

static const struct {
	const char *v;
	int64_t now;
	bool ok;
	uint64_t ms;
} retry_after_cases[] = {
	{ "120", 0, true, 120000 },
	{ " 0 ", 0, true, 0 },
	{ "007", 0, true, 7000 },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE - 30, true, 30000 },
	{ "Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE - 5, true, 5000 },
	{ "Sun Nov  6 08:49:37 1994", RFC_EXAMPLE - 1, true, 1000 },
	{ "Sun Nov 16 08:49:37 1994", RFC_EXAMPLE, true, 10 * 86400000ull },
	{ "Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE + 100, true, 0 },   /* in the past: now */
	{ "Thu, 29 Feb 2024 23:59:59 GMT", 1709251199 - 2, true, 2000 },   /* a leap day */
	{ "Sat, 01 Jan 2000 00:00:00 GMT", 946684800, true, 0 },
	{ "Wed, 31 Dec 2031 12:00:00 GMT", 1956484800 - 60, true, 60000 },
	{ "", 0, false, 0 },
	{ "-5", 0, false, 0 },
	{ "1.5", 0, false, 0 },
	{ "soon", 0, false, 0 },
	{ "Sun, 06 Nov 1994 08:49:37 UTC", 0, false, 0 },
	{ "Sun, 06 Foo 1994 08:49:37 GMT", 0, false, 0 },
	{ "Sun, 06 Nov 1994 25:49:37 GMT", 0, false, 0 },
	{ "Sun, 6 Nov 1994 08:49:37 GMT", 0, false, 0 },
	{ "Sun Nov  6 08:49:37 94", 0, false, 0 },
};

START_TEST(test_retry_after_table)
{
	const char *v = retry_after_cases[_i].v;
	uint64_t ms = 12345;
	bool ok = http_retry_after(v, strlen(v), retry_after_cases[_i].now, &ms);
	ck_assert_msg(ok == retry_after_cases[_i].ok, "'%s': ok=%d", v, ok);
	if (ok)
		ck_assert_msg(ms == retry_after_cases[_i].ms, "'%s': %llu ms, expected %llu", v,
			      (unsigned long long)ms, (unsigned long long)retry_after_cases[_i].ms);
}
END_TEST

/* A huge delay-seconds neither overflows nor wraps to a small delay. */
START_TEST(test_retry_after_huge)
{
	uint64_t ms = 0;
	ck_assert(http_retry_after("99999999999999999999999", 23, 0, &ms));
	ck_assert_uint_ge(ms, 1000ull * 1000000000ull);
}
END_TEST

/* The payload of a body, as a client keeps it: chunk framing stripped. */
static size_t payload_of(struct http_body *b, const char *p, size_t n, char *out, size_t cap)
{
	size_t got = 0;
	while (n && !b->done && !b->error) {
		uint64_t ahead = http_body_payload_ahead(b);
		size_t take = ahead ? (ahead < n ? (size_t)ahead : n) : 1;
		if (ahead) {
			ck_assert_uint_le(got + take, cap);
			memcpy(out + got, p, take);
			got += take;
		}
		size_t used = http_body_feed(b, p, take);
		ck_assert_uint_eq(used, take);
		p += used;
		n -= used;
	}
	return got;
}

START_TEST(test_body_payload_ahead)
{
	static const char chunked[] = "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";
	struct http_body b = { .kind = HTTP_BODY_CHUNKED };
	char out[64];
	size_t n = payload_of(&b, chunked, sizeof chunked - 1, out, sizeof out);
	ck_assert(b.done);
	ck_assert_uint_eq(n, 11);
	ck_assert(memcmp(out, "hello world", 11) == 0);

	struct http_body l = { .kind = HTTP_BODY_LENGTH, .remaining = 4 };
	n = payload_of(&l, "abcdEXTRA", 9, out, sizeof out);
	ck_assert(l.done);
	ck_assert_uint_eq(n, 4);
	ck_assert_uint_eq(http_body_payload_ahead(&l), 0);

	struct http_body u = { .kind = HTTP_BODY_UNTIL_CLOSE };
	ck_assert_uint_eq(http_body_payload_ahead(&u), UINT64_MAX);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *det = tcase_create("detect");
	TCase *req = tcase_create("request");
	TCase *hdr = tcase_create("fields");
	TCase *resp = tcase_create("response");
	TCase *body = tcase_create("body");
	TCase *tgt = tcase_create("target-routes");
	TCase *real = tcase_create("real");

	tcase_add_loop_test(det, test_detect_table, 0, N_ELEMS(detect_cases));
	tcase_add_test(det, test_detect_prefixes);
	tcase_add_test(det, test_detect_first_byte);

	tcase_add_loop_test(req, test_request_line_table, 0, N_ELEMS(rl_cases));
	tcase_add_test(req, test_request_target_truncated);
	tcase_add_loop_test(req, test_syntax_table, 0, N_ELEMS(syntax_cases));
	tcase_add_test(req, test_head_limit);
	tcase_add_test(req, test_huge_stream_bounded);
	tcase_add_test(req, test_end_of_headers);
	/* the 64 KiB cases are fed byte by byte and at many splits */
	tcase_set_timeout(req, 120);

	tcase_add_loop_test(hdr, test_field_table, 0, N_ELEMS(field_cases));
	tcase_add_test(hdr, test_host_ua_cut);
	tcase_add_loop_test(hdr, test_trace_table, 0, N_ELEMS(trace_cases));
	tcase_add_test(hdr, test_traceparent_cut);
	tcase_add_test(hdr, test_tracestate_overflow);
	tcase_add_test(hdr, test_baggage_overflow);
	tcase_add_loop_test(hdr, test_capture_table, 0, N_ELEMS(capture_cases));
	tcase_add_test(hdr, test_capture_cut);
	tcase_add_test(hdr, test_capture_long_name);
	tcase_set_timeout(hdr, 60);

	tcase_add_loop_test(resp, test_response_table, 0, N_ELEMS(resp_cases));
	tcase_add_test(resp, test_response_capture);
	tcase_add_loop_test(resp, test_frame_table, 0, N_ELEMS(frame_cases));

	tcase_add_loop_test(body, test_chunked_table, 0, N_ELEMS(chunk_cases));
	tcase_add_test(body, test_body_payload_ahead);
	tcase_add_loop_test(body, test_retry_after_table, 0, N_ELEMS(retry_after_cases));
	tcase_add_test(body, test_retry_after_huge);
	tcase_add_test(body, test_chunked_line_limits);
	tcase_add_test(body, test_body_length_and_close);
	tcase_set_timeout(body, 60);

	tcase_add_loop_test(tgt, test_split_target_table, 0, N_ELEMS(target_cases));
	tcase_add_loop_test(tgt, test_routes_parse_table, 0, N_ELEMS(routes_parse_cases));
	tcase_add_test(tgt, test_routes_limits);
	tcase_add_loop_test(tgt, test_routes_match_table, 0, N_ELEMS(route_match_cases));

	tcase_add_test(real, test_real_requests);
	tcase_add_test(real, test_real_responses);
	tcase_add_test(real, test_pipelined_requests);
	tcase_add_test(real, test_pipelined_responses);
	tcase_add_test(real, test_reinit_forgets);
	tcase_set_timeout(real, 60);

	suite_add_tcase(s, det);
	suite_add_tcase(s, req);
	suite_add_tcase(s, hdr);
	suite_add_tcase(s, resp);
	suite_add_tcase(s, body);
	suite_add_tcase(s, tgt);
	suite_add_tcase(s, real);
	return s;
}
