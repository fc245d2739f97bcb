/* libFuzzer harness for agent/http.c: detection, request/response heads and bodies fed whole, split and byte by byte, targets and routes, checked against their invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/http.h"

/* A broken invariant must stop the fuzzer with a reproducer, in any build. */
#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define HEAD_MAX      65536u
#define BYTEWISE_MAX  4096    /* byte-by-byte feeding above this costs too much per input */

static const struct http_capture_names capture = {
	.count = 5,
	.name = { "accept", "x-a", "content-type", "user-agent", "traceparent" },
	.len = { 6, 3, 12, 10, 11 },
};

/* Exactly-sized heap copy, so ASan sees any read past len. */
static char *copy(const char *p, size_t n)
{
	char *c = malloc(n ? n : 1);

	memcpy(c, p, n);
	return c;
}

static bool is_trim(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* --- detection --- */

static void fuzz_detect(const char *in, size_t size)
{
	enum http_detect decided = HTTP_DETECT_NEED_MORE;
	size_t lim = size < 16 ? size : 16;

	CHECK(http_detect(in, 0) == HTTP_DETECT_NEED_MORE);

	for (size_t k = 1; k <= lim; k++) {
		char *p = copy(in, k);
		enum http_detect d = http_detect(p, k);

		free(p);
		/* once decided, more bytes never change the answer */
		if (decided != HTTP_DETECT_NEED_MORE)
			CHECK(d == decided);
		/* the longest start token is "OPTIONS " (8 bytes) */
		if (d == HTTP_DETECT_NEED_MORE)
			CHECK(k < 8);
		if (d == HTTP_DETECT_RESPONSE)
			CHECK(k >= 7 && memcmp(in, "HTTP/1.", 7) == 0);
		if (d == HTTP_DETECT_REQUEST) {
			const char *sp = memchr(in, ' ', k);

			CHECK(sp && sp - in >= 3 && sp - in <= 7);
		}
		decided = d;
	}
}

/* --- heads --- */

static bool framing_same(const struct http_framing *a, const struct http_framing *b)
{
	return a->has_content_length == b->has_content_length && a->content_length == b->content_length &&
	       a->chunked == b->chunked && a->conn_close == b->conn_close &&
	       a->conn_keep_alive == b->conn_keep_alive && a->bad_framing == b->bad_framing &&
	       a->has_transfer_encoding == b->has_transfer_encoding;
}

static bool captured_same(const struct http_captured *a, const struct http_captured *b)
{
	for (unsigned i = 0; i < HTTP_CAPTURE_MAX; i++)
		if (a[i].present != b[i].present || a[i].len != b[i].len || memcmp(a[i].value, b[i].value, a[i].len))
			return false;
	return true;
}

static void check_same_request(const struct http_request *a, const struct http_request *b)
{
	bool ca, cb;

	CHECK(a->head_len == b->head_len);
	CHECK(a->method_len == b->method_len && !memcmp(a->method, b->method, a->method_len));
	CHECK(a->method_id == b->method_id);
	CHECK(a->target_len == b->target_len && !memcmp(a->target, b->target, a->target_len));
	CHECK(a->target_truncated == b->target_truncated);
	CHECK(a->version_minor == b->version_minor);
	CHECK(a->host_len == b->host_len && !memcmp(a->host, b->host, a->host_len));
	CHECK(a->user_agent_len == b->user_agent_len && !memcmp(a->user_agent, b->user_agent, a->user_agent_len));
	CHECK(framing_same(&a->framing, &b->framing));
	CHECK(a->expect_continue == b->expect_continue);
	CHECK(a->traceparent_count == b->traceparent_count);
	CHECK(a->traceparent_len == b->traceparent_len && !memcmp(a->traceparent, b->traceparent, a->traceparent_len));
	CHECK(a->traceparent_off == b->traceparent_off);
	CHECK(a->tracestate_len == b->tracestate_len && !memcmp(a->tracestate, b->tracestate, a->tracestate_len));
	CHECK(a->tracestate_truncated == b->tracestate_truncated);
	CHECK(a->baggage_len == b->baggage_len && !memcmp(a->baggage, b->baggage, a->baggage_len));
	CHECK(captured_same(a->captured, b->captured));
	CHECK(http_request_end_of_headers(a, &ca) == http_request_end_of_headers(b, &cb) && ca == cb);
}

static void check_same_response(const struct http_response *a, const struct http_response *b)
{
	CHECK(a->head_len == b->head_len);
	CHECK(a->status == b->status && a->version_minor == b->version_minor);
	CHECK(framing_same(&a->framing, &b->framing));
	CHECK(captured_same(a->captured, b->captured));
}

/* Stored values never start or end with OWS once done (values may hold
 * commas of their own, so only whitespace is checked at the edges). */
static void check_joined(const char *s, size_t n)
{
	if (!n)
		return;
	CHECK(!is_trim(s[0]) && !is_trim(s[n - 1]));
}

static void check_request_fields(const struct http_request *r, enum http_state st)
{
	CHECK(r->method_len < HTTP_METHOD_MAX);
	CHECK(r->target_len <= HTTP_TARGET_MAX);
	CHECK(r->target_truncated == false || r->target_len == HTTP_TARGET_MAX);
	CHECK(r->host_len < HTTP_HOST_MAX && r->user_agent_len < HTTP_UA_MAX);
	CHECK(r->traceparent_len <= TRACEPARENT_RAW_MAX);
	CHECK(r->tracestate_len <= sizeof r->tracestate);
	CHECK(r->baggage_len <= BAGGAGE_MAX);
	for (unsigned i = 0; i < HTTP_CAPTURE_MAX; i++)
		CHECK(r->captured[i].len < HTTP_CAPTURE_VAL_MAX);
	if (st != HTTP_HEAD_DONE)
		return;
	CHECK(r->head_len <= HEAD_MAX);
	CHECK(r->method_len > 0 && r->method[r->method_len] == '\0');
	CHECK(r->method_id == http_method_id(r->method, r->method_len));
	CHECK(r->target_len > 0);
	CHECK(r->version_minor <= 1);
	CHECK(r->host[r->host_len] == '\0' && r->user_agent[r->user_agent_len] == '\0');
	check_joined(r->host, r->host_len);
	check_joined(r->tracestate, r->tracestate_len);
	check_joined(r->baggage, r->baggage_len);
	for (unsigned i = 0; i < HTTP_CAPTURE_MAX; i++) {
		const struct http_captured *c = &r->captured[i];

		CHECK(c->value[c->len] == '\0');
		CHECK(c->present || c->len == 0);
		check_joined(c->value, c->len);
		if (i >= capture.count)
			CHECK(!c->present);
	}
	if (r->version_minor == 0) {
		CHECK(!r->expect_continue);
		CHECK(r->framing.conn_close || r->framing.conn_keep_alive);
	}
	if (r->framing.has_transfer_encoding && (!r->framing.chunked || r->version_minor == 0))
		CHECK(r->framing.bad_framing);
	if (r->framing.chunked)
		CHECK(r->framing.has_transfer_encoding);
}

/* Feeds in[0..size) cut at at (0 or size: whole) or byte by byte (bytewise);
 * slow: with the line-at-a-time path off. */
static enum http_state feed_request(struct http_request *r, const char *in, size_t size, size_t at, bool bytewise,
				    bool slow, size_t *used)
{
	enum http_state st = HTTP_HEAD_PARTIAL;
	size_t start = 0, total = 0;

	http_request_init(r, &capture);
	if (slow)
		http_request_slow_only(r);
	do {
		size_t end = bytewise ? start + 1 : (start < at ? at : size);

		if (end > size)
			end = size;
		size_t len = end - start, u;
		char *p = copy(in + start, len);

		st = http_request_feed(r, p, len, &u);
		free(p);
		CHECK(u <= len);
		if (st == HTTP_HEAD_PARTIAL)
			CHECK(u == len);
		total += u;
		start = end;
	} while (st == HTTP_HEAD_PARTIAL && start < size);
	*used = total;
	return st;
}

static enum http_state feed_response(struct http_response *r, const char *in, size_t size, size_t at, bool bytewise,
				     bool slow, size_t *used)
{
	enum http_state st = HTTP_HEAD_PARTIAL;
	size_t start = 0, total = 0;

	http_response_init(r, &capture);
	if (slow)
		http_response_slow_only(r);
	do {
		size_t end = bytewise ? start + 1 : (start < at ? at : size);

		if (end > size)
			end = size;
		size_t len = end - start, u;
		char *p = copy(in + start, len);

		st = http_response_feed(r, p, len, &u);
		free(p);
		CHECK(u <= len);
		if (st == HTTP_HEAD_PARTIAL)
			CHECK(u == len);
		total += u;
		start = end;
	} while (st == HTTP_HEAD_PARTIAL && start < size);
	*used = total;
	return st;
}

/* Feeds a body from *b cut at at (or byte by byte); returns bytes consumed. */
static size_t feed_body(struct http_body *b, const char *in, size_t size, size_t at, bool bytewise)
{
	size_t start = 0, total = 0;

	do {
		size_t end = bytewise ? start + 1 : (start < at ? at : size);

		if (end > size)
			end = size;
		size_t len = end - start;
		char *p = copy(in + start, len);
		size_t c = http_body_feed(b, p, len);

		free(p);
		CHECK(c <= len);
		CHECK(!(b->done && b->error));
		total += c;
		if (c < len) {
			CHECK(b->done || b->error);
			break;
		}
		start = end;
	} while (!b->done && !b->error && start < size);
	return total;
}

/* The same body framing fed whole, split and byte by byte agrees. */
static size_t check_body(const struct http_body *start, const char *in, size_t size, size_t at)
{
	struct http_body w = *start, s = *start, y = *start;
	size_t cw = feed_body(&w, in, size, size, false);
	size_t cs = feed_body(&s, in, size, at, false);

	CHECK(cw == cs && w.done == s.done && w.error == s.error && w.remaining == s.remaining && w.st == s.st);
	if (size <= BYTEWISE_MAX) {
		size_t cy = feed_body(&y, in, size, 0, true);

		CHECK(cw == cy && w.done == y.done && w.error == y.error && w.remaining == y.remaining);
	}
	switch (start->kind) {
	case HTTP_BODY_NONE:
		CHECK(cw == 0);
		break;
	case HTTP_BODY_LENGTH:
		if (!start->error)
			CHECK(cw == (size < start->remaining ? size : start->remaining));
		break;
	case HTTP_BODY_UNTIL_CLOSE:
		CHECK(cw == size && !w.done);
		break;
	case HTTP_BODY_CHUNKED:
		if (w.done)
			CHECK(cw >= 3 && in[cw - 1] == '\n');   /* at least "0\n\n" */
		break;
	}
	return cw;
}

static void fuzz_request(const char *in, size_t size, size_t at, size_t body_at)
{
	static struct http_request w, s, y, again;
	size_t uw, us, uy;
	enum http_state sw = feed_request(&w, in, size, size, false, false, &uw);
	enum http_state ss = feed_request(&s, in, size, at, false, false, &us);

	CHECK(uw <= size);
	CHECK(sw == ss && uw == us);
	check_same_request(&w, &s);
	/* the line-at-a-time path gives exactly the byte-by-byte results */
	ss = feed_request(&s, in, size, size, false, true, &us);
	CHECK(sw == ss && uw == us);
	check_same_request(&w, &s);
	ss = feed_request(&s, in, size, at, false, true, &us);
	CHECK(sw == ss && uw == us);
	check_same_request(&w, &s);
	check_request_fields(&w, sw);
	if (size <= BYTEWISE_MAX) {
		enum http_state sy = feed_request(&y, in, size, 0, true, false, &uy);

		CHECK(sy == sw && uy == uw);
		check_same_request(&w, &y);
	}
	if (sw == HTTP_HEAD_ERROR)
		CHECK(uw <= HEAD_MAX);
	if (sw != HTTP_HEAD_DONE)
		return;

	bool crlf;
	size_t ua;
	uint32_t eoh = http_request_end_of_headers(&w, &crlf);

	CHECK(w.head_len == uw && uw <= HEAD_MAX);
	CHECK(eoh == uw - (crlf ? 2 : 1) && in[uw - 1] == '\n');
	/* the stored traceparent is the head's bytes at its offset (a proxy's
	 * forwarded copy is overwritten there) */
	if (w.traceparent_len)
		CHECK(w.traceparent_off + w.traceparent_len < uw &&
		      !memcmp(in + w.traceparent_off, w.traceparent, w.traceparent_len));
	/* a finished head takes nothing more */
	CHECK(http_request_feed(&w, in + uw, size - uw, &ua) == HTTP_HEAD_DONE && ua == 0);
	if (crlf)
		CHECK(in[eoh] == '\r');
	/* the head alone parses the same: nothing after it was looked at */
	CHECK(feed_request(&again, in, uw, uw, false, false, &ua) == HTTP_HEAD_DONE && ua == uw);
	check_same_request(&w, &again);

	struct http_body b;
	http_body_for_request(&b, &w);
	CHECK(b.kind != HTTP_BODY_UNTIL_CLOSE);
	CHECK(b.error == w.framing.bad_framing);
	check_body(&b, in + uw, size - uw, body_at < size - uw ? body_at : size - uw);
}

static void fuzz_response(const char *in, size_t size, size_t at, size_t body_at, bool head)
{
	static struct http_response w, s, y;
	size_t uw, us, uy;
	enum http_state sw = feed_response(&w, in, size, size, false, false, &uw);
	enum http_state ss = feed_response(&s, in, size, at, false, false, &us);

	CHECK(uw <= size);
	CHECK(sw == ss && uw == us);
	check_same_response(&w, &s);
	ss = feed_response(&s, in, size, size, false, true, &us);
	CHECK(sw == ss && uw == us);
	check_same_response(&w, &s);
	if (size <= BYTEWISE_MAX) {
		enum http_state sy = feed_response(&y, in, size, 0, true, false, &uy);

		CHECK(sy == sw && uy == uw);
		check_same_response(&w, &y);
	}
	if (sw == HTTP_HEAD_ERROR)
		CHECK(uw <= HEAD_MAX && http_response_feed(&w, in, size, &us) == HTTP_HEAD_ERROR && us == 0);
	if (sw != HTTP_HEAD_DONE)
		return;
	CHECK(w.head_len == uw && uw <= HEAD_MAX && in[uw - 1] == '\n');
	CHECK(w.status >= 100 && w.status <= 999 && w.version_minor <= 1);

	struct http_body b;
	http_body_for_response(&b, &w, head);
	if (head || w.status < 200 || w.status == 204 || w.status == 304)
		CHECK(b.kind == HTTP_BODY_NONE && b.done && !b.error);
	check_body(&b, in + uw, size - uw, body_at < size - uw ? body_at : size - uw);
}

/* Every body kind over the raw input. */
static void fuzz_bodies(const char *in, size_t size, size_t at, uint8_t ctl)
{
	struct http_body b;

	memset(&b, 0, sizeof b);
	for (int kind = HTTP_BODY_NONE; kind <= HTTP_BODY_UNTIL_CLOSE; kind++) {
		memset(&b, 0, sizeof b);
		b.kind = (uint8_t)kind;
		if (kind == HTTP_BODY_LENGTH)
			b.remaining = (uint64_t)ctl * 3;
		check_body(&b, in, size, at);
	}
}

/* --- targets and routes --- */

static void fuzz_target(const char *in, size_t size)
{
	const char *path, *query;
	size_t pl, ql;

	http_split_target(in, size, &path, &pl, &query, &ql);
	CHECK((path >= in && path + pl <= in + size) || (pl == 1 && path[0] == '/'));
	CHECK(!memchr(path, '#', pl) && !memchr(path, '?', pl));
	if (query) {
		CHECK(query > in && query + ql <= in + size && query[-1] == '?');
		CHECK(!memchr(query, '#', ql));
	} else {
		CHECK(ql == 0);
	}
}

static void fuzz_routes(const char *in, size_t size)
{
	static struct http_routes r;
	size_t tl;

	http_routes_parse(&r, in, size);
	CHECK(r.count <= HTTP_ROUTES_MAX);
	for (unsigned i = 0; i < r.count; i++) {
		CHECK(r.len[i] > 0 && r.tmpl[i][0] == '/' && r.tmpl[i][r.len[i]] == '\0');
		CHECK(r.tmpl[i] >= r.buf && r.tmpl[i] + r.len[i] < r.buf + sizeof r.buf);
		/* a template's own text is a path it matches ({x} and * included) */
		char *p = copy(r.tmpl[i], r.len[i]);
		const char *m = http_routes_match(&r, p, r.len[i], &tl);

		CHECK(m != NULL);
		free(p);
	}
	const char *m = http_routes_match(&r, in, size, &tl);
	if (m)
		CHECK(m[tl] == '\0');
}

/*
 * The first byte picks the split points and options; the rest is the
 * stream. With the top three bits set, one byte of the stream is repeated
 * 1 KiB to 128 KiB times ("inflated"), so small inputs reach the size
 * limits: long targets, full tracestate and baggage, 64 KiB heads, long
 * chunk lines.
 */
/* --- Retry-After, and the payload a client keeps of a body --- */

static void fuzz_retry_after(const char *in, size_t n, uint8_t ctl)
{
	uint64_t ms = 0;
	int64_t now = (int64_t)ctl * 86400 * 365;
	if (http_retry_after(in, n, now, &ms)) {
		/* an accepted value is digits (with blanks) or a whole date */
		CHECK(n > 0);
		uint64_t ms2 = 0;
		CHECK(http_retry_after(in, n, now, &ms2) && ms2 == ms);   /* pure */
	}
}

static void fuzz_payload(const char *in, size_t n, uint8_t ctl)
{
	struct http_body b = { .kind = (uint8_t)(ctl % 4 == 0 ? HTTP_BODY_CHUNKED : ctl % 4 == 1 ? HTTP_BODY_LENGTH
							 : ctl % 4 == 2 ? HTTP_BODY_UNTIL_CLOSE : HTTP_BODY_NONE),
			       .remaining = ctl };
	size_t kept = 0;
	while (n && !b.done && !b.error) {
		uint64_t ahead = http_body_payload_ahead(&b);
		size_t take = ahead ? (ahead < n ? (size_t)ahead : n) : 1;
		size_t used = http_body_feed(&b, in, take);
		CHECK(used <= take);
		if (ahead)
			kept += used;
		if (!used)
			break;
		in += used;
		n -= used;
	}
	CHECK(kept <= SIZE_MAX / 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t ctl = data[0];
	size_t n = size - 1;
	char *in;

	if ((ctl & 0xe0) == 0xe0 && n > 0) {
		size_t pos = n * (uint8_t)(ctl * 97) / 256, run = (size_t)1024 << (ctl & 7);

		in = malloc(n + run - 1);
		memcpy(in, data + 1, pos);
		memset(in + pos, data[1 + pos], run);
		memcpy(in + pos + run, data + 1 + pos + 1, n - pos - 1);
		n += run - 1;
	} else {
		in = copy((const char *)data + 1, n);
	}
	size_t at = n * ctl / 255;
	size_t body_at = n * (uint8_t)(ctl * 37) / 255;

	fuzz_detect(in, n);
	fuzz_request(in, n, at, body_at);
	fuzz_response(in, n, at, body_at, ctl & 1);
	fuzz_bodies(in, n, at, ctl);
	fuzz_target(in, n);
	fuzz_routes(in, n);
	fuzz_retry_after(in, n < 64 ? n : 64, ctl);
	fuzz_payload(in, n, ctl);
	free(in);
	return 0;
}
