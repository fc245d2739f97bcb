/* HTTP/1.x wire parsing: protocol detection, streaming request/response head parsers, RFC 9112 body framing, request-target split, route templates. */
#include "http.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "ascii.h"

/*
 * Everything here runs inside read()/send() hooks of production servers, so
 * it is pure (no I/O, allocation or mutable globals), reads only p[0..len)
 * (buffers are not NUL-terminated), and keeps all of its state in the
 * caller's structs: a message split over any number of calls gives exactly
 * the results of one call. Work is done in runs rather than per byte where
 * the bytes don't matter: values of headers we don't keep are skipped with
 * memchr, kept values are copied with memcpy and trimmed once at line end.
 */

#define HEAD_MAX          (64u * 1024u)  /* longer heads are not traced */
#define CHUNK_LINE_MAX    4096u          /* chunk-size line with extensions */
#define TRAILER_LINE_MAX  HEAD_MAX       /* one trailer field line */

/* --- character classes --- */

/* tchar (RFC 9110 5.6.2): the characters of methods and field names. */
static const uint8_t tchar_tab[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
	['~'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static inline bool is_tchar(char c)
{
	return tchar_tab[(unsigned char)c];
}

/* OWS, plus the CR of a CRLF: what is trimmed from the edges of a value. */
static const uint8_t trim_tab[256] = { [' '] = 1, ['\t'] = 1, ['\r'] = 1 };

static inline bool is_trim(char c)
{
	return trim_tab[(unsigned char)c];
}


/* --- methods and detection --- */

/* The one list of methods the agent knows: a request starting with one of
 * them makes a stream HTTP (http_detect), and a span's method is one of them
 * or "_OTHER" (http_method_id). Indexed by enum http_method. */
static const struct {
	char s[8];
	uint8_t len;
} methods[HTTP_METHOD_COUNT] = {
	[HTTP_METHOD_GET] = { "GET", 3 },         [HTTP_METHOD_HEAD] = { "HEAD", 4 },
	[HTTP_METHOD_POST] = { "POST", 4 },       [HTTP_METHOD_PUT] = { "PUT", 3 },
	[HTTP_METHOD_DELETE] = { "DELETE", 6 },   [HTTP_METHOD_CONNECT] = { "CONNECT", 7 },
	[HTTP_METHOD_OPTIONS] = { "OPTIONS", 7 }, [HTTP_METHOD_TRACE] = { "TRACE", 5 },
	[HTTP_METHOD_PATCH] = { "PATCH", 5 },     [HTTP_METHOD_QUERY] = { "QUERY", 5 },
};

enum http_method http_method_id(const char *m, size_t n)
{
	/* By length and first byte: at most two candidates, compared inline. */
#define M(len, id) (memcmp(m, methods[id].s, len) == 0 ? (id) : HTTP_METHOD_OTHER)
	switch (n) {
	case 3:
		return m[0] == 'G' ? M(3, HTTP_METHOD_GET) : M(3, HTTP_METHOD_PUT);
	case 4:
		return m[0] == 'P' ? M(4, HTTP_METHOD_POST) : M(4, HTTP_METHOD_HEAD);
	case 5:
		return m[0] == 'P' ? M(5, HTTP_METHOD_PATCH) : m[0] == 'T' ? M(5, HTTP_METHOD_TRACE)
								    : M(5, HTTP_METHOD_QUERY);
	case 6:
		return M(6, HTTP_METHOD_DELETE);
	case 7:
		return m[0] == 'C' ? M(7, HTTP_METHOD_CONNECT) : M(7, HTTP_METHOD_OPTIONS);
	default:
		return HTTP_METHOD_OTHER;
	}
#undef M
}

const char *http_method_name(enum http_method m, size_t *len)
{
	if ((unsigned)m >= HTTP_METHOD_COUNT || m == HTTP_METHOD_OTHER) {
		*len = 0;
		return "";
	}
	*len = methods[m].len;
	return methods[m].s;
}

enum http_detect http_detect(const char *p, size_t len)
{
	static const char response[] = "HTTP/1.";
	bool maybe = false;

	if (len == 0)
		return HTTP_DETECT_NEED_MORE;
	/* TLS (0x16), PostgreSQL and Kafka (a length starting 0x00), the
	 * HTTP/2 preface ("PR...") and binary all fail within the first two
	 * bytes, because no start shares their prefix. A method must be
	 * followed by a space. */
	for (unsigned i = 1; i < HTTP_METHOD_COUNT; i++) {
		size_t t = methods[i].len + 1u, n = len < t ? len : t;

		if (memcmp(p, methods[i].s, n < t ? n : t - 1) != 0 || (len >= t && p[t - 1] != ' '))
			continue;
		if (len >= t)
			return HTTP_DETECT_REQUEST;
		maybe = true;
	}
	if (memcmp(p, response, len < 7 ? len : 7) == 0) {
		if (len >= 7)
			return HTTP_DETECT_RESPONSE;
		maybe = true;
	}
	return maybe ? HTTP_DETECT_NEED_MORE : HTTP_DETECT_OTHER;
}

/* --- heads --- */

enum head_st {
	RQ_START = 0,   /* before the request-line: empty lines are skipped */
	RQ_START_CR,    /* CR of such an empty line: LF must follow */
	RQ_METHOD,
	RQ_TARGET,
	RQ_VERSION,     /* line_len: bytes of "HTTP/1.x" matched */
	RS_VERSION,     /* same, in a status-line */
	RS_STATUS,      /* line_len: digits of the status code */
	RS_REASON,
	SL_CR,          /* CR ending the start-line: LF must follow */
	H_LINE,         /* start of a field line, or of the final empty line */
	H_END_CR,       /* CR at the start of a line: the head ends at the LF */
	H_NAME,
	H_OWS,          /* leading OWS of a value we keep or scan */
	H_VALUE,
	H_SKIP,         /* value of a field we don't keep: find the LF */
	H_DONE,
	H_ERROR,
};

/* Fields the parsers know; hdr_idx holds the kind in its low byte and
 * 1 + the capture slot (0: not captured) in the next one. */
enum hdr_kind {
	K_NONE = 0,
	K_HOST,
	K_UA,
	K_CL,
	K_TE,
	K_CONN,
	K_EXPECT,
	K_TP,
	K_TS,
	K_BAGGAGE,
};

/* flags */
#define F_TOK_WS     0x01u  /* whitespace after token characters */
#define F_TOK_BAD    0x02u  /* the list element is not a single token */
#define F_TOK_PARAM  0x04u  /* in ";parameters" of a transfer-coding */
#define F_HOST_SEEN  0x08u
#define F_UA_SEEN    0x10u
#define F_END_CRLF   0x20u  /* the final empty line was CRLF */
#define F_SLOW       0x40u  /* byte by byte only (http_*_slow_only) */
#define F_TOK_MASK   (F_TOK_WS | F_TOK_BAD | F_TOK_PARAM)

#define CAPTURE_CAP  (HTTP_CAPTURE_VAL_MAX - 1)
#define NAME_CAP     sizeof(((struct http_request *)0)->name)
_Static_assert(sizeof(((struct http_response *)0)->name) == NAME_CAP, "shared name buffer size");

/*
 * The request and response structs share their parser fields by name, not
 * by type, so each feed copies them into this local view, runs the common
 * engine and copies them back. The view lives on the stack, so the compiler
 * can keep the hot fields in registers across the memcpy()s into results.
 */
struct hp {
	uint32_t st, line_len, head_len, hdr_idx, name_len, flags;
	char *name;
	struct http_framing *fr;
	const struct http_capture_names *capture;
	struct http_captured *captured;
	struct http_request *rq;    /* NULL for a response */
	struct http_response *rs;   /* NULL for a request */
	uint8_t *minor;
};

static inline uint64_t ld64(const char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t ld32(const char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/*
 * s[0..n) (4 <= n) equals lit ignoring case, where lit is lower-case letters
 * and '-' and s holds only tchars: for those, OR-ing 0x20 into every byte
 * folds case exactly (no other tchar ORs to a letter or '-'), so names are
 * compared a word at a time, the last word overlapping the one before.
 */
static inline bool name_is(const char *s, size_t n, const char *lit)
{
	if (n < 8)
		return (ld32(s) | 0x20202020u) == ld32(lit) && (ld32(s + n - 4) | 0x20202020u) == ld32(lit + n - 4);
	for (size_t i = 0; i + 8 < n; i += 8)
		if ((ld64(s + i) | 0x2020202020202020ull) != ld64(lit + i))
			return false;
	return (ld64(s + n - 8) | 0x2020202020202020ull) == ld64(lit + n - 8);
}

/* The known field a name of tchars is, in any case: by length, then by
 * first byte, then one compare. */
static inline __attribute__((always_inline)) enum hdr_kind identify(const char *n, uint32_t len, bool req)
{
	switch (len) {
	case 4:
		if (req && name_is(n, 4, "host"))
			return K_HOST;
		break;
	case 6:
		if (req && name_is(n, 6, "expect"))
			return K_EXPECT;
		break;
	case 7:
		if (req && name_is(n, 7, "baggage"))
			return K_BAGGAGE;
		break;
	case 10:
		switch (n[0] | 0x20) {
		case 'c':
			if (name_is(n, 10, "connection"))
				return K_CONN;
			break;
		case 'u':
			if (req && name_is(n, 10, "user-agent"))
				return K_UA;
			break;
		case 't':
			if (req && name_is(n, 10, "tracestate"))
				return K_TS;
			break;
		}
		break;
	case 11:
		if (req && name_is(n, 11, "traceparent"))
			return K_TP;
		break;
	case 14:
		if (name_is(n, 14, "content-length"))
			return K_CL;
		break;
	case 17:
		if (name_is(n, 17, "transfer-encoding"))
			return K_TE;
		break;
	}
	return K_NONE;
}

/* 1 + the capture slot for the name (in any case), or 0. */
static uint32_t capture_slot(const struct http_capture_names *c, const char *n, uint32_t len)
{
	unsigned count = c->count < HTTP_CAPTURE_MAX ? c->count : HTTP_CAPTURE_MAX;

	for (unsigned i = 0; i < count; i++) {
		if (c->len[i] != len || !c->name[i])
			continue;
		uint32_t j = 0;
		while (j < len && ascii_lower(c->name[i][j]) == ascii_lower(n[j]))
			j++;
		if (j == len)
			return i + 1;
	}
	return 0;
}

/*
 * Appends s[0..n) to dst (holding len of cap bytes) and returns the new
 * length. *cut is set when a byte other than trailing whitespace had to be
 * dropped: whitespace that doesn't fit may still turn out to be trailing
 * OWS, which trimming removes anyway, so only then is the value really cut.
 */
static size_t put(char *dst, size_t cap, size_t len, const char *s, size_t n, bool *cut)
{
	size_t k = cap - len < n ? cap - len : n;

	memcpy(dst + len, s, k);
	for (size_t j = k; j < n; j++) {
		if (!is_trim(s[j])) {
			*cut = true;
			break;
		}
	}
	return len + k;
}

static size_t trim_end(const char *s, size_t len)
{
	while (len && is_trim(s[len - 1]))
		len--;
	return len;
}

static void trim_host(struct http_request *r)
{
	r->host_len = (uint16_t)trim_end(r->host, r->host_len);
	r->host[r->host_len] = '\0';
}

static void trim_ua(struct http_request *r)
{
	r->user_agent_len = (uint16_t)trim_end(r->user_agent, r->user_agent_len);
	r->user_agent[r->user_agent_len] = '\0';
}

static void trim_captured(struct http_captured *c)
{
	c->len = (uint16_t)trim_end(c->value, c->len);
	c->value[c->len] = '\0';
}

static inline uint32_t set_kind(uint32_t hdr_idx, enum hdr_kind k)
{
	return (hdr_idx & ~0xffu) | k;
}

/* At the ':' ending a field name, known as k (and capture slot cap + 1, or
 * 0): what to do with its value. */
static void begin_value(struct hp *h, enum hdr_kind k, uint32_t cap)
{
	switch (k) {
	case K_HOST:
		/* more than one Host is a 400 (RFC 9112 3.2); keep the first */
		if (h->flags & F_HOST_SEEN)
			k = K_NONE;
		h->flags |= F_HOST_SEEN;
		break;
	case K_UA:
		if (h->flags & F_UA_SEEN)
			k = K_NONE;
		h->flags |= F_UA_SEEN;
		break;
	case K_TP:
		if (h->rq->traceparent_count < UINT8_MAX)
			h->rq->traceparent_count++;
		if (h->rq->traceparent_count > 1)
			k = K_NONE;
		break;
	case K_BAGGAGE:
		/* where to roll back to if this value doesn't fit whole */
		h->line_len = h->rq->baggage_len;
		break;
	case K_TE:
		h->fr->has_transfer_encoding = true;
		/* fall through */
	case K_CL:
	case K_CONN:
	case K_EXPECT:
		/* the name buffer now holds the list element being scanned */
		h->name_len = 0;
		h->flags &= ~F_TOK_MASK;
		break;
	default:
		break;
	}
	if (cap)
		h->captured[cap - 1].present = true;
	h->hdr_idx = k | cap << 8;
	h->st = (k != K_NONE || cap) ? H_OWS : H_SKIP;
}

/*
 * The first byte of a non-empty value is next: put the "," joining it to
 * earlier values of the same field. Deferring the separator to here means
 * empty values add nothing, and a comma is only written with room for at
 * least one byte after it, so a stored list never ends in ",".
 */
static void value_start(struct hp *h, uint32_t at)
{
	uint32_t k = h->hdr_idx & 0xff, cap = h->hdr_idx >> 8;
	struct http_request *r = h->rq;

	if (k == K_TP)
		r->traceparent_off = at;
	if (k == K_TS && r->tracestate_truncated) {
		/* a member was already dropped at the cut: keeping later values
		 * would drop entries from the middle, not from the end */
		h->hdr_idx = set_kind(h->hdr_idx, K_NONE);
	} else if (k == K_TS && r->tracestate_len) {
		if (r->tracestate_len + 2u > sizeof r->tracestate) {
			r->tracestate_truncated = true;
			h->hdr_idx = set_kind(h->hdr_idx, K_NONE);
		} else {
			r->tracestate[r->tracestate_len++] = ',';
		}
	} else if (k == K_BAGGAGE && r->baggage_len) {
		if (r->baggage_len + 2u > sizeof r->baggage)
			h->hdr_idx = set_kind(h->hdr_idx, K_NONE);
		else
			r->baggage[r->baggage_len++] = ',';
	}
	if (cap) {
		struct http_captured *c = &h->captured[cap - 1];

		if (c->len) {
			if (c->len + 2u > CAPTURE_CAP)
				h->hdr_idx &= 0xff;
			else
				c->value[c->len++] = ',';
		}
	}
}

/* List-valued fields (Content-Length, Transfer-Encoding, Connection, Expect)
 * are scanned one element at a time, the element kept lower-cased in name,
 * so a list split anywhere is read the same as whole. */
static bool token_is(const struct hp *h, const char *lit, uint32_t len)
{
	return !(h->flags & F_TOK_BAD) && h->name_len == len && memcmp(h->name, lit, len) == 0;
}

static void token_end(struct hp *h, uint32_t k)
{
	struct http_framing *f = h->fr;

	switch (k) {
	case K_CL: {
		/* 1*DIGIT; a list of identical values is tolerated (RFC 9110
		 * 8.6), anything else makes the framing untrustworthy. 19
		 * digits always fit in 64 bits. */
		uint64_t v = 0;
		bool ok = h->name_len && h->name_len <= 19 && !(h->flags & F_TOK_BAD);

		for (uint32_t i = 0; ok && i < h->name_len; i++) {
			if (h->name[i] < '0' || h->name[i] > '9')
				ok = false;
			v = v * 10 + (uint64_t)(h->name[i] - '0');
		}
		if (!ok || (f->has_content_length && f->content_length != v)) {
			f->bad_framing = true;
		} else {
			f->has_content_length = true;
			f->content_length = v;
		}
		break;
	}
	case K_TE:
		/* empty list elements are ignored (RFC 9110 5.6.1); each
		 * coding replaces the last, across field lines too */
		if (h->name_len)
			f->chunked = token_is(h, "chunked", 7);
		break;
	case K_CONN:
		if (token_is(h, "close", 5))
			f->conn_close = true;
		else if (token_is(h, "keep-alive", 10))
			f->conn_keep_alive = true;
		break;
	case K_EXPECT:
		if (token_is(h, "100-continue", 12))
			h->rq->expect_continue = true;
		break;
	}
	h->name_len = 0;
	h->flags &= ~F_TOK_MASK;
}

static void token_bytes(struct hp *h, uint32_t k, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == ',') {
			token_end(h, k);
		} else if (h->flags & F_TOK_PARAM) {
			continue;
		} else if (is_trim(c)) {
			if (h->name_len)
				h->flags |= F_TOK_WS;
		} else if (c == ';' && k == K_TE) {
			h->flags |= F_TOK_PARAM;
		} else {
			if (h->flags & F_TOK_WS)
				h->flags |= F_TOK_BAD;
			if (h->name_len < NAME_CAP)
				h->name[h->name_len] = ascii_lower(c);
			h->name_len++;
		}
	}
}

/* A run of value bytes (up to, not including, the LF). */
static void value_bytes(struct hp *h, const char *s, size_t n)
{
	uint32_t k = h->hdr_idx & 0xff, cap = h->hdr_idx >> 8;
	struct http_request *r = h->rq;
	bool cut = false;

	switch (k) {
	case K_NONE:
		break;
	case K_HOST:
		r->host_len = (uint16_t)put(r->host, HTTP_HOST_MAX - 1, r->host_len, s, n, &cut);
		if (cut)
			trim_host(r);
		break;
	case K_UA:
		r->user_agent_len = (uint16_t)put(r->user_agent, HTTP_UA_MAX - 1, r->user_agent_len, s, n, &cut);
		if (cut)
			trim_ua(r);
		break;
	case K_TP:
		r->traceparent_len = (uint8_t)put(r->traceparent, TRACEPARENT_RAW_MAX, r->traceparent_len, s, n, &cut);
		if (cut)
			r->traceparent_len = (uint8_t)trim_end(r->traceparent, r->traceparent_len);
		break;
	case K_TS:
		r->tracestate_len = (uint16_t)put(r->tracestate, sizeof r->tracestate, r->tracestate_len, s, n, &cut);
		if (cut) {
			/* W3C: "the vendor MUST truncate whole entries". The
			 * member being cut would pass on a changed value if its
			 * prefix happened to be valid, so it goes whole: back to
			 * the comma before it (or to nothing). */
			const char *comma = memrchr(r->tracestate, ',', r->tracestate_len);

			r->tracestate_truncated = true;
			r->tracestate_len = (uint16_t)trim_end(r->tracestate, comma ? (size_t)(comma - r->tracestate) : 0);
		}
		break;
	case K_BAGGAGE:
		r->baggage_len = (uint16_t)put(r->baggage, sizeof r->baggage, r->baggage_len, s, n, &cut);
		if (cut)  /* a cut member would be misread: drop the whole value */
			r->baggage_len = (uint16_t)h->line_len;
		break;
	default:
		token_bytes(h, k, s, n);
		break;
	}
	/* Whatever was cut ignores the rest of its line. */
	if (cut)
		h->hdr_idx = set_kind(h->hdr_idx, K_NONE);
	if (cap) {
		struct http_captured *c = &h->captured[cap - 1];

		cut = false;
		c->len = (uint16_t)put(c->value, CAPTURE_CAP, c->len, s, n, &cut);
		if (cut) {
			trim_captured(c);
			h->hdr_idx &= 0xff;
		}
	}
}

/* The LF ending a value was reached. */
static void value_end(struct hp *h)
{
	uint32_t k = h->hdr_idx & 0xff, cap = h->hdr_idx >> 8;
	struct http_request *r = h->rq;

	switch (k) {
	case K_NONE:
		break;
	case K_HOST:
		trim_host(r);
		break;
	case K_UA:
		trim_ua(r);
		break;
	case K_TP:
		r->traceparent_len = (uint8_t)trim_end(r->traceparent, r->traceparent_len);
		break;
	case K_TS:
		r->tracestate_len = (uint16_t)trim_end(r->tracestate, r->tracestate_len);
		break;
	case K_BAGGAGE:
		r->baggage_len = (uint16_t)trim_end(r->baggage, r->baggage_len);
		break;
	default:
		token_end(h, k);
		break;
	}
	if (cap)
		trim_captured(&h->captured[cap - 1]);
	h->hdr_idx = 0;
}

/* The empty line ending the head was consumed: decisions that need the whole head. */
static void finish_head(struct hp *h)
{
	struct http_framing *f = h->fr;

	if (f->has_transfer_encoding) {
		/* Transfer-Encoding overrides Content-Length, except that
		 * HTTP/1.0 has none (its framing is faulty), and a request
		 * whose final coding isn't chunked has no determinable length
		 * (the server answers 400 and closes: RFC 9112 6.1, 6.3). */
		f->bad_framing = *h->minor == 0 || (h->rq && !f->chunked);
	}
	if (*h->minor == 0) {
		if (!f->conn_keep_alive)
			f->conn_close = true;
		/* "MUST ignore" a 100-continue expectation from HTTP/1.0 (RFC 9110 10.1.1) */
		if (h->rq)
			h->rq->expect_continue = false;
	}
}

/*
 * The line-at-a-time path. A whole line (its LF in the buffer) is read in
 * runs: with SSE2 (every x86-64) the first 16 bytes of a line are compared at
 * once for LF and ':', which finds the end of most lines and of nearly every
 * field name; elsewhere memchr. A known field's name is validated by
 * matching its literal; another one's is checked for letters, digits and
 * '-' 16 bytes at once, and byte by byte only if it has other tchars. Each
 * step leaves the state the byte-by-byte path would have reached, or stops
 * at a line it doesn't take (anything but the plain case: an error, a cut,
 * an odd form), which the byte-by-byte path then reads from its start, and
 * finds what it finds.
 */

/* Offset of the first LF in p[from..avail), or avail: 16 bytes at a time,
 * the last 16 of the buffer overlapping rather than read past its end. */
static size_t find_lf(const char *p, size_t from, size_t avail)
{
#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n');
	size_t i = from;

	for (; i + 16 <= avail; i += 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const void *)(p + i)), lf));

		if (m)
			return i + (unsigned)__builtin_ctz(m);
	}
	if (i < avail && avail >= 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const void *)(p + avail - 16)), lf));

		m >>= 16 - (avail - i);
		return m ? i + (unsigned)__builtin_ctz(m) : avail;
	}
	from = i;
#endif
	const char *r = memchr(p + from, '\n', avail - from);

	return r ? (size_t)(r - p) : avail;
}

/* memcpy for the short strings of a head, without a library call for
 * the usual sizes. */
static inline void copy_short(char *dst, const char *src, size_t n)
{
	if (n >= 8 && n <= 16) {
		uint64_t a = ld64(src), b = ld64(src + n - 8);

		memcpy(dst, &a, 8);
		memcpy(dst + n - 8, &b, 8);
	} else if (n >= 4 && n < 8) {
		uint32_t a = ld32(src), b = ld32(src + n - 4);

		memcpy(dst, &a, 4);
		memcpy(dst + n - 4, &b, 4);
	} else if (n < 4) {
		for (size_t k = 0; k < n; k++)
			dst[k] = src[k];
	} else {
		memcpy(dst, src, n);
	}
}

/* A request-line p[i..e), e its LF: method SP target SP HTTP/1.x [CR]. */
static bool fast_request_line(struct hp *h, const char *p, size_t i, size_t e)
{
	struct http_request *r = h->rq;
	const char *s = p + i, *lf = p + e;
	const char *q = s;

	while (is_tchar(*q))
		q++;
	size_t m = (size_t)(q - s);
	if (*q != ' ' || m == 0 || m >= HTTP_METHOD_MAX)
		return false;
	const char *t = q + 1, *te = t;
	/* A word at a time while one fits before the LF: the first byte that is
	 * a CTL, SP or DEL ends the target (bytes >= 0x80 are obs-text). */
	for (; te + 8 <= lf; te += 8) {
		uint64_t w = ld64(te), x = w ^ 0x7f7f7f7f7f7f7f7full;
		/* high bits of bytes below 0x21, and of bytes equal to 0x7f; a
		 * borrow may flag a byte above a flagged one, never below it, so
		 * the lowest flag is exact */
		uint64_t m8 = (((w - 0x2121212121212121ull) & ~w) | ((x - 0x0101010101010101ull) & ~x)) &
			      0x8080808080808080ull;

		if (m8) {
			te += __builtin_ctzll(m8) >> 3;
			break;
		}
	}
	while ((unsigned char)*te > ' ' && *te != 0x7f)
		te++;
	size_t tl = (size_t)(te - t);
	if (*te != ' ' || tl == 0 || tl > HTTP_TARGET_MAX)
		return false;
	const char *v = te + 1;
	size_t vl = (size_t)(lf - v);
	if (!(vl == 8 || (vl == 9 && v[8] == '\r')) || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
		return false;
	copy_short(r->method, s, m);
	r->method[m] = '\0';
	r->method_len = (uint8_t)m;
	r->method_id = (uint8_t)http_method_id(s, m);
	copy_short(r->target, t, tl);
	r->target_len = (uint16_t)tl;
	*h->minor = (uint8_t)(v[7] - '0');
	return true;
}

/* A status-line p[i..e): HTTP/1.x SP 3DIGIT, then SP reason, or [CR]. */
static bool fast_status_line(struct hp *h, const char *p, size_t i, size_t e)
{
	const char *s = p + i, *lf = p + e;

	if (lf - s < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
		return false;
	unsigned d0 = (unsigned)(s[9] - '1'), d1 = (unsigned)(s[10] - '0'), d2 = (unsigned)(s[11] - '0');
	if (d0 > 8 || d1 > 9 || d2 > 9)
		return false;
	if (s[12] == '\r' ? lf != s + 13 : s[12] != '\n' && s[12] != ' ')
		return false;
	h->rs->status = (uint16_t)((d0 + 1) * 100 + d1 * 10 + d2);
	*h->minor = (uint8_t)(s[7] - '0');
	return true;
}

/* A kept field's value the general way (any shape, captures, lists): the
 * value functions the byte-by-byte path runs, over the whole value. */
static void field_general(struct hp *h, const char *p, size_t i, uint32_t n, enum hdr_kind k, uint32_t cap, size_t e)
{
	const char *v = p + i + n + 1, *lf = p + e;

	begin_value(h, k, cap);
	if (h->st == H_OWS) {
		while (is_trim(*v))
			v++;
		if (v != lf)
			value_start(h, h->head_len + (uint32_t)(v - p));
		value_bytes(h, v, (size_t)(lf - v));
		value_end(h);
	}
	h->st = H_LINE;
}

/* The value of a field line p[i..e) with a name of n bytes, OWS trimmed:
 * [*vs, *ve). */
static inline void value_range(const char *p, size_t i, uint32_t n, size_t e, const char **vs, const char **ve)
{
	const char *v = p + i + n + 1, *end = p + e;

	while (is_trim(*v))
		v++;
	while (end > v && is_trim(end[-1]))
		end--;
	*vs = v;
	*ve = end;
}

/*
 * A known field of the usual shape stored as the byte-by-byte path would
 * (the first Host and User-Agent, one traceparent, a Content-Length of
 * digits, a single transfer-coding or connection option); false for
 * anything else, which then takes field_general.
 */
static inline bool field_fast(struct hp *h, const char *p, size_t i, uint32_t n, enum hdr_kind k, size_t e)
{
	struct http_request *r = h->rq;
	struct http_framing *f = h->fr;
	const char *v, *ve;
	size_t len;

	switch (k) {
	case K_HOST:
		if (h->flags & F_HOST_SEEN)
			return true;   /* only the first is kept */
		value_range(p, i, n, e, &v, &ve);
		len = (size_t)(ve - v);
		if (!len || len >= HTTP_HOST_MAX)
			return false;
		h->flags |= F_HOST_SEEN;
		copy_short(r->host, v, len);
		r->host[len] = '\0';
		r->host_len = (uint16_t)len;
		return true;
	case K_UA:
		if (h->flags & F_UA_SEEN)
			return true;
		value_range(p, i, n, e, &v, &ve);
		len = (size_t)(ve - v);
		if (!len || len >= HTTP_UA_MAX)
			return false;
		h->flags |= F_UA_SEEN;
		copy_short(r->user_agent, v, len);
		r->user_agent[len] = '\0';
		r->user_agent_len = (uint16_t)len;
		return true;
	case K_TP:
		if (r->traceparent_count)
			return false;   /* counted, not kept: field_general */
		value_range(p, i, n, e, &v, &ve);
		len = (size_t)(ve - v);
		if (!len || len > TRACEPARENT_RAW_MAX)
			return false;
		r->traceparent_count = 1;
		r->traceparent_off = h->head_len + (uint32_t)(v - p);
		memcpy(r->traceparent, v, len);
		r->traceparent_len = (uint8_t)len;
		return true;
	case K_CL: {
		uint64_t val = 0;

		value_range(p, i, n, e, &v, &ve);
		len = (size_t)(ve - v);
		if (!len || len > 19)
			return false;
		for (size_t k = 0; k < len; k++) {
			unsigned d = (unsigned)(v[k] - '0');

			if (d > 9)
				return false;
			val = val * 10 + d;
		}
		if (f->has_content_length && f->content_length != val) {
			f->bad_framing = true;
		} else {
			f->has_content_length = true;
			f->content_length = val;
		}
		return true;
	}
	case K_CONN:
		value_range(p, i, n, e, &v, &ve);
		len = (size_t)(ve - v);
		/* name_is folds only tchars exactly: the '-' is checked as such */
		if (len == 5 && name_is(v, 5, "close"))
			f->conn_close = true;
		else if (len == 10 && v[4] == '-' && name_is(v, 10, "keep-alive"))
			f->conn_keep_alive = true;
		else
			return false;
		return true;
	case K_TE:
		value_range(p, i, n, e, &v, &ve);
		if (ve - v != 7 || !name_is(v, 7, "chunked"))
			return false;
		f->has_transfer_encoding = true;
		f->chunked = true;
		return true;
	default:
		return false;
	}
}

/* The name of the field line at s (LF at s + room): false unless it is
 * all tchars up to a ':' before the LF; else its length in *n. */
static inline bool name_scan(const char *s, size_t room, uint32_t *n)
{
	const char *q = s;

	while (is_tchar(*q))
		q++;
	*n = (uint32_t)(q - s);
	return *q == ':' && (size_t)(q - s) < room;
}

/* The first LF in p[from..avail), or avail: lines are short, so the first
 * 48 bytes are looked at inline, 16 at a time, before a call. */
static inline __attribute__((always_inline)) size_t lf_after(const char *p, size_t from, size_t avail)
{
#ifdef __SSE2__
	for (int k = 0; k < 3 && from + 16 <= avail; k++, from += 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(
			_mm_cmpeq_epi8(_mm_loadu_si128((const void *)(p + from)), _mm_set1_epi8('\n')));

		if (m)
			return from + (unsigned)__builtin_ctz(m);
	}
#endif
	return from < avail ? find_lf(p, from, avail) : avail;
}

/*
 * Whole lines from p[*pi] (a start-line in RQ_START or RS_VERSION, else
 * field lines in H_LINE) up to the end of the head: true there, with *pi
 * past its LF; false to go on byte by byte from *pi (the buffer's end, or a
 * line to look at closely), in the state reached. With SSE2 (every x86-64)
 * the first 16 bytes of each line are compared at once for LF and ':', which
 * finds the end of most lines and of nearly every field name, and a name
 * that is not a known one is checked for letters, digits and '-' 16 bytes
 * at once (byte by byte only if it has other tchars); elsewhere memchr and
 * byte loops do the same.
 */
static bool fast_head(struct hp *h, const char *p, size_t *pi, size_t avail)
{
	const bool req = h->rq != NULL;
	size_t i = *pi, e;
	bool done = false;

	if (h->st != H_LINE) {
		e = lf_after(p, i, avail);
		if (e == avail || !(req ? fast_request_line(h, p, i, e) : fast_status_line(h, p, i, e)))
			goto out;
		h->st = H_LINE;
		i = e + 1;
	}
	while (i < avail) {
		const char *s = p + i;
		char c = *s;

		if (c == '\n' || c == '\r') {
			if (c == '\n') {
				i++;
				done = true;
			} else if (i + 1 < avail && s[1] == '\n') {
				i += 2;
				h->flags |= F_END_CRLF;
				done = true;
			}
			break;
		}
		/* SP/HT (obs-fold), ':' (an empty name) and the like: errors */
		if (!is_tchar(c))
			break;
		uint32_t n;
		enum hdr_kind k;
#ifdef __SSE2__
		if (avail < 16)
			goto scalar;
		/* the 16 bytes at s, or the buffer's last 16 (never read past its end) */
		size_t base = i + 16 <= avail ? i : avail - 16;
		unsigned sh = (unsigned)(i - base);
		__m128i v = _mm_loadu_si128((const void *)(p + base));
		unsigned lfm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))) >> sh;
		unsigned com = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(':'))) >> sh;

		if (lfm) {
			e = i + (unsigned)__builtin_ctz(lfm);
		} else {
			e = lf_after(p, base + 16, avail);
			if (e == avail)
				break;
		}
		if (!com || (n = (unsigned)__builtin_ctz(com)) >= e - i) {
			if (!name_scan(s, e - i, &n))
				break;
		} else if ((k = identify(s, n, req)) == K_NONE || h->capture) {
			/* a known name matched its literal, so it is valid; any other
			 * is checked: letters, digits, '-' (signed compares put bytes
			 * >= 0x80 below every bound), else byte by byte */
			__m128i y = _mm_or_si128(v, _mm_set1_epi8(0x20));
			__m128i ok = _mm_or_si128(
				_mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(y, _mm_set1_epi8('a' - 1)),
							   _mm_cmpgt_epi8(_mm_set1_epi8('z' + 1), y)),
					     _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
							   _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), v))),
				_mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
			unsigned need = (1u << n) - 1, good = (unsigned)_mm_movemask_epi8(ok) >> sh;
			uint32_t m;

			if ((good & need) != need && (!name_scan(s, e - i, &m) || m != n))
				break;
			if (k == K_NONE && !h->capture) {
				i = e + 1;
				continue;
			}
			goto kept;
		} else {
			goto kept;
		}
		goto identified;
	scalar:
#endif
		e = find_lf(p, i, avail);
		if (e == avail || !name_scan(s, e - i, &n))
			break;
#ifdef __SSE2__
	identified:
#endif
		k = n <= NAME_CAP ? identify(s, n, req) : K_NONE;
#ifdef __SSE2__
	kept:
#endif
		if (h->capture) {
			uint32_t cap = n <= NAME_CAP ? capture_slot(h->capture, s, n) : 0;

			if (k != K_NONE || cap)
				field_general(h, p, i, n, k, cap, e);
		} else if (k != K_NONE && !field_fast(h, p, i, n, k, e)) {
			field_general(h, p, i, n, k, 0, e);
		}
		i = e + 1;
	}
out:
	*pi = i;
	return done;
}

static enum http_state head_feed(struct hp *h, const char *p, size_t len, size_t *used)
{
	bool fast = !(h->flags & F_SLOW);
	size_t i = 0, avail;
	char c;

	if (h->st == H_DONE || h->st == H_ERROR) {
		*used = 0;
		return h->st == H_DONE ? HTTP_HEAD_DONE : HTTP_HEAD_ERROR;
	}
	/* Past HEAD_MAX nothing is looked at: the limit falls on the same
	 * stream offset however the head is split. */
	avail = HEAD_MAX - h->head_len;
	if (avail > len)
		avail = len;

	while (i < avail) {
		switch (h->st) {
		case RQ_START:
			c = p[i];
			if (c == '\n') {
				i++;
				break;
			}
			if (c == '\r') {
				i++;
				h->st = RQ_START_CR;
				break;
			}
			if (fast) {
				if (fast_head(h, p, &i, avail))
					goto done;
				if (h->st != RQ_START || i == avail)
					break;
			}
			h->st = RQ_METHOD;
			/* fall through */
		case RQ_METHOD: {
			struct http_request *r = h->rq;

			while (i < avail && is_tchar(p[i])) {
				if (r->method_len == HTTP_METHOD_MAX - 1)
					goto error;
				r->method[r->method_len++] = p[i++];
			}
			if (i == avail)
				break;
			if (p[i] != ' ' || r->method_len == 0)
				goto error;
			r->method[r->method_len] = '\0';
			r->method_id = (uint8_t)http_method_id(r->method, r->method_len);
			i++;
			h->st = RQ_TARGET;
			break;
		}
		case RQ_START_CR:
			if (p[i] != '\n')
				goto error;
			i++;
			h->st = RQ_START;
			break;
		case RQ_TARGET: {
			/* Any visible byte (obs-text included, as servers accept
			 * raw UTF-8) up to the SP; CTLs and a missing version
			 * (HTTP/0.9) are errors. */
			struct http_request *r = h->rq;
			size_t s = i, room = HTTP_TARGET_MAX - r->target_len;

			while (i < avail && (unsigned char)p[i] > ' ' && p[i] != 0x7f)
				i++;
			if (i - s > room) {
				r->target_truncated = true;
				memcpy(r->target + r->target_len, p + s, room);
				r->target_len = HTTP_TARGET_MAX;
			} else {
				memcpy(r->target + r->target_len, p + s, i - s);
				r->target_len = (uint16_t)(r->target_len + (i - s));
			}
			if (i == avail)
				break;
			if (p[i] != ' ' || r->target_len == 0)
				goto error;
			i++;
			h->st = RQ_VERSION;
			h->line_len = 0;
			break;
		}
		case RS_VERSION:
			if (fast && h->line_len == 0) {
				if (fast_head(h, p, &i, avail))
					goto done;
				if (h->st != RS_VERSION || i == avail)
					break;
			}
			/* fall through */
		case RQ_VERSION:
			c = p[i];
			if (h->line_len < 7) {
				if (c != "HTTP/1."[h->line_len])
					goto error;
			} else if (h->line_len == 7) {
				if (c != '0' && c != '1')
					goto error;
				*h->minor = (uint8_t)(c - '0');
			} else if (h->st == RQ_VERSION) {
				if (c == '\r')
					h->st = SL_CR;
				else if (c == '\n')
					h->st = H_LINE;
				else
					goto error;
			} else {
				if (c != ' ')
					goto error;
				h->st = RS_STATUS;
				h->line_len = 0;
				i++;
				break;
			}
			h->line_len++;
			i++;
			break;
		case RS_STATUS:
			c = p[i];
			if (h->line_len < 3) {
				if (c < '0' || c > '9' || (h->line_len == 0 && c == '0'))
					goto error;
				h->rs->status = (uint16_t)(h->rs->status * 10 + (c - '0'));
				h->line_len++;
			} else if (c == ' ') {
				h->st = RS_REASON;  /* reason-phrase, possibly empty */
			} else if (c == '\r') {
				h->st = SL_CR;      /* "HTTP/1.1 200\r\n": no SP, no reason */
			} else if (c == '\n') {
				h->st = H_LINE;
			} else {
				goto error;
			}
			i++;
			break;
		case RS_REASON:
		case H_SKIP: {
			const char *lf = memchr(p + i, '\n', avail - i);

			if (!lf) {
				i = avail;
				break;
			}
			i = (size_t)(lf - p) + 1;
			h->st = H_LINE;
			break;
		}
		case SL_CR:
			if (p[i] != '\n')
				goto error;
			i++;
			h->st = H_LINE;
			break;
		case H_LINE:
			if (fast) {
				if (fast_head(h, p, &i, avail))
					goto done;
				if (i == avail)
					break;
			}
			c = p[i];
			if (c == '\n') {
				i++;
				goto done;
			}
			if (c == '\r') {
				i++;
				h->st = H_END_CR;
				break;
			}
			/* SP/HT here is obs-fold (or whitespace before the first
			 * field), ':' an empty name: all errors. */
			if (!is_tchar(c))
				goto error;
			h->name_len = 0;
			h->st = H_NAME;
			/* fall through */
		case H_NAME: {
			uint32_t n = h->name_len;

			while (i < avail && is_tchar(p[i])) {
				if (n < NAME_CAP)
					h->name[n] = ascii_lower(p[i]);
				n++;
				i++;
			}
			h->name_len = n;
			if (i == avail)
				break;
			/* no whitespace before ':' (RFC 9112 5.1), no line without one */
			if (p[i] != ':')
				goto error;
			i++;
			if (n <= NAME_CAP)
				begin_value(h, identify(h->name, n, h->rq != NULL),
					    h->capture ? capture_slot(h->capture, h->name, n) : 0);
			else
				begin_value(h, K_NONE, 0);
			break;
		}
		case H_END_CR:
			if (p[i] != '\n')
				goto error;
			i++;
			h->flags |= F_END_CRLF;
			goto done;
		case H_OWS:
			while (i < avail && is_trim(p[i]))
				i++;
			if (i == avail)
				break;
			h->st = H_VALUE;
			if (p[i] != '\n')
				value_start(h, h->head_len + (uint32_t)i);
			/* fall through */
		case H_VALUE: {
			const char *lf = memchr(p + i, '\n', avail - i);
			size_t e = lf ? (size_t)(lf - p) : avail;

			value_bytes(h, p + i, e - i);
			if (!lf) {
				i = avail;
				break;
			}
			value_end(h);
			i = e + 1;
			h->st = H_LINE;
			break;
		}
		default:
			goto error;
		}
	}
	h->head_len += (uint32_t)i;
	*used = i;
	if (avail < len) {
		/* more than HEAD_MAX bytes without the end of the head */
		h->st = H_ERROR;
		return HTTP_HEAD_ERROR;
	}
	return HTTP_HEAD_PARTIAL;

done:
	finish_head(h);
	h->head_len += (uint32_t)i;
	h->st = H_DONE;
	*used = i;
	return HTTP_HEAD_DONE;
error:
	h->head_len += (uint32_t)i;
	h->st = H_ERROR;
	*used = i;
	return HTTP_HEAD_ERROR;
}

static void captured_init(struct http_captured *c)
{
	for (unsigned i = 0; i < HTTP_CAPTURE_MAX; i++) {
		c[i].len = 0;
		c[i].present = false;
		c[i].value[0] = '\0';
	}
}

/* Only scalars and string heads are reset: clearing the ~6 KB of buffers
 * for every request on a keep-alive connection would cost more than parsing. */
void http_request_init(struct http_request *r, const struct http_capture_names *capture)
{
	r->st = RQ_START;
	r->line_len = 0;
	r->head_len = 0;
	r->hdr_idx = 0;
	r->name_len = 0;
	r->flags = 0;
	r->method[0] = '\0';
	r->method_len = 0;
	r->method_id = HTTP_METHOD_OTHER;
	r->target_len = 0;
	r->target_truncated = false;
	r->version_minor = 0;
	r->host[0] = '\0';
	r->host_len = 0;
	r->user_agent[0] = '\0';
	r->user_agent_len = 0;
	memset(&r->framing, 0, sizeof r->framing);
	r->expect_continue = false;
	r->traceparent_count = 0;
	r->traceparent_len = 0;
	r->traceparent_off = 0;
	r->tracestate_len = 0;
	r->tracestate_truncated = false;
	r->baggage_len = 0;
	r->capture = capture;
	if (capture)
		captured_init(r->captured);
}

void http_request_slow_only(struct http_request *r)
{
	r->flags |= F_SLOW;
}

void http_response_slow_only(struct http_response *r)
{
	r->flags |= F_SLOW;
}

void http_response_init(struct http_response *r, const struct http_capture_names *capture)
{
	r->st = RS_VERSION;
	r->line_len = 0;
	r->head_len = 0;
	r->hdr_idx = 0;
	r->name_len = 0;
	r->flags = 0;
	r->status = 0;
	r->version_minor = 0;
	memset(&r->framing, 0, sizeof r->framing);
	r->capture = capture;
	if (capture)
		captured_init(r->captured);
}

enum http_state http_request_feed(struct http_request *r, const char *p, size_t len, size_t *used)
{
	struct hp h = {
		.st = r->st, .line_len = r->line_len, .head_len = r->head_len,
		.hdr_idx = r->hdr_idx, .name_len = r->name_len, .flags = r->flags,
		.name = r->name, .fr = &r->framing, .capture = r->capture,
		.captured = r->captured, .rq = r, .minor = &r->version_minor,
	};
	enum http_state s = head_feed(&h, p, len, used);

	r->st = h.st;
	r->line_len = h.line_len;
	r->head_len = h.head_len;
	r->hdr_idx = h.hdr_idx;
	r->name_len = h.name_len;
	r->flags = h.flags;
	return s;
}

enum http_state http_response_feed(struct http_response *r, const char *p, size_t len, size_t *used)
{
	struct hp h = {
		.st = r->st, .line_len = r->line_len, .head_len = r->head_len,
		.hdr_idx = r->hdr_idx, .name_len = r->name_len, .flags = r->flags,
		.name = r->name, .fr = &r->framing, .capture = r->capture,
		.captured = r->captured, .rs = r, .minor = &r->version_minor,
	};
	enum http_state s = head_feed(&h, p, len, used);

	r->st = h.st;
	r->line_len = h.line_len;
	r->head_len = h.head_len;
	r->hdr_idx = h.hdr_idx;
	r->name_len = h.name_len;
	r->flags = h.flags;
	return s;
}

uint32_t http_request_end_of_headers(const struct http_request *r, bool *crlf)
{
	bool c = (r->flags & F_END_CRLF) != 0;

	if (crlf)
		*crlf = c;
	if (r->st != H_DONE)
		return 0;
	return r->head_len - (c ? 2 : 1);
}

/* --- body framing --- */

enum chunk_st {
	CH_SIZE_START = 0,  /* first hex digit of a chunk-size */
	CH_SIZE,
	CH_SIZE_WS,         /* BWS after the size: ';', CR or LF must follow */
	CH_EXT,             /* chunk extensions: skipped to the LF */
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,         /* the CRLF after chunk data */
	CH_DATA_LF,
	CH_TRAILER_START,   /* start of a trailer line or of the final empty line */
	CH_TRAILER,
	CH_END_LF,
};

static void body_init(struct http_body *b, enum http_body_kind kind)
{
	b->kind = (uint8_t)kind;
	b->st = CH_SIZE_START;
	b->done = kind == HTTP_BODY_NONE;
	b->error = false;
	b->remaining = 0;
	b->line_len = 0;
}

static void body_length(struct http_body *b, uint64_t n)
{
	body_init(b, HTTP_BODY_LENGTH);
	b->remaining = n;
	b->done = n == 0;
}

void http_body_for_request(struct http_body *b, const struct http_request *r)
{
	const struct http_framing *f = &r->framing;

	if (f->bad_framing) {
		body_init(b, HTTP_BODY_NONE);
		b->done = false;
		b->error = true;
	} else if (f->chunked) {
		body_init(b, HTTP_BODY_CHUNKED);
	} else if (f->has_content_length) {
		body_length(b, f->content_length);
	} else {
		body_init(b, HTTP_BODY_NONE);
	}
}

void http_body_for_response(struct http_body *b, const struct http_response *r, bool request_was_head)
{
	const struct http_framing *f = &r->framing;

	if (request_was_head || r->status < 200 || r->status == 204 || r->status == 304) {
		body_init(b, HTTP_BODY_NONE);
	} else if (f->bad_framing) {
		body_init(b, HTTP_BODY_NONE);
		b->done = false;
		b->error = true;
	} else if (f->chunked) {
		body_init(b, HTTP_BODY_CHUNKED);
	} else if (f->has_transfer_encoding) {
		body_init(b, HTTP_BODY_UNTIL_CLOSE);
	} else if (f->has_content_length) {
		body_length(b, f->content_length);
	} else {
		body_init(b, HTTP_BODY_UNTIL_CLOSE);
	}
}

static void chunk_size_line_done(struct http_body *b)
{
	b->line_len = 0;
	b->st = b->remaining ? CH_DATA : CH_TRAILER_START;
}

/* Skips to the LF of a line of at most max bytes (line_len so far);
 * returns the new offset, *eol when the LF was consumed. A longer line sets
 * error and returns the offset of its first byte beyond max. */
static size_t skip_line(struct http_body *b, const char *p, size_t i, size_t len, uint32_t max,
			bool *eol)
{
	const char *lf = memchr(p + i, '\n', len - i);
	size_t n = lf ? (size_t)(lf - (p + i)) : len - i;

	*eol = false;
	if (n > max - b->line_len) {
		b->error = true;
		return i + (max - b->line_len);
	}
	b->line_len += (uint32_t)n;
	if (!lf)
		return len;
	*eol = true;
	return i + n + 1;
}

static size_t chunked_feed(struct http_body *b, const char *p, size_t len)
{
	size_t i = 0;
	bool eol;
	int d;

	while (i < len) {
		switch (b->st) {
		case CH_SIZE_START:
			if ((d = ascii_hex(p[i])) < 0)
				goto error;
			b->remaining = (uint64_t)d;
			b->line_len = 1;
			b->st = CH_SIZE;
			i++;
			break;
		case CH_SIZE:
			while (i < len && (d = ascii_hex(p[i])) >= 0) {
				/* leading zeros are fine; 64 bits of size are not */
				if (b->remaining >> 60 || b->line_len >= CHUNK_LINE_MAX)
					goto error;
				b->remaining = b->remaining << 4 | (uint64_t)d;
				b->line_len++;
				i++;
			}
			if (i == len)
				break;
			b->st = CH_SIZE_WS;
			/* fall through */
		case CH_SIZE_WS:
			switch (p[i]) {
			case ' ':
			case '\t':
			case ';':
				if (b->line_len >= CHUNK_LINE_MAX)
					goto error;
				b->line_len++;
				if (p[i] == ';')
					b->st = CH_EXT;
				break;
			case '\r':
				b->st = CH_SIZE_LF;
				break;
			case '\n':
				chunk_size_line_done(b);
				break;
			default:
				goto error;
			}
			i++;
			break;
		case CH_EXT:
			i = skip_line(b, p, i, len, CHUNK_LINE_MAX, &eol);
			if (b->error)
				return i;
			if (eol)
				chunk_size_line_done(b);
			break;
		case CH_SIZE_LF:
			if (p[i] != '\n')
				goto error;
			i++;
			chunk_size_line_done(b);
			break;
		case CH_DATA: {
			size_t k = len - i < b->remaining ? len - i : (size_t)b->remaining;

			i += k;
			b->remaining -= k;
			if (!b->remaining)
				b->st = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (p[i] == '\r')
				b->st = CH_DATA_LF;
			else if (p[i] == '\n')
				b->st = CH_SIZE_START;
			else
				goto error;
			i++;
			break;
		case CH_DATA_LF:
			if (p[i] != '\n')
				goto error;
			i++;
			b->st = CH_SIZE_START;
			break;
		case CH_TRAILER_START:
			if (p[i] == '\n') {
				b->done = true;
				return i + 1;
			}
			if (p[i] == '\r') {
				b->st = CH_END_LF;
				i++;
				break;
			}
			b->st = CH_TRAILER;
			b->line_len = 0;
			/* fall through */
		case CH_TRAILER:
			i = skip_line(b, p, i, len, TRAILER_LINE_MAX, &eol);
			if (b->error)
				return i;
			if (eol)
				b->st = CH_TRAILER_START;
			break;
		case CH_END_LF:
			if (p[i] != '\n')
				goto error;
			b->done = true;
			return i + 1;
		default:
			goto error;
		}
	}
	return i;
error:
	b->error = true;
	return i;
}

size_t http_body_feed(struct http_body *b, const char *p, size_t len)
{
	if (b->done || b->error)
		return 0;
	switch (b->kind) {
	case HTTP_BODY_NONE:
		b->done = true;
		return 0;
	case HTTP_BODY_LENGTH: {
		size_t k = len < b->remaining ? len : (size_t)b->remaining;

		b->remaining -= k;
		b->done = b->remaining == 0;
		return k;
	}
	case HTTP_BODY_CHUNKED:
		return chunked_feed(b, p, len);
	case HTTP_BODY_UNTIL_CLOSE:
		return len;
	}
	b->error = true;
	return 0;
}

/* --- request-target --- */

/* Length of "scheme" when s starts with "scheme://", else 0 (RFC 3986 3.1). */
static size_t scheme_len(const char *s, size_t len)
{
	size_t i = 0;

	if (!len || (unsigned char)(ascii_lower(s[0]) - 'a') >= 26u)
		return 0;
	while (i < len && ((unsigned char)(ascii_lower(s[i]) - 'a') < 26u || (s[i] >= '0' && s[i] <= '9') ||
			   s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
		return 0;
	return i;
}

void http_split_target(const char *target, size_t len, const char **path, size_t *path_len,
		       const char **query, size_t *query_len)
{
	const char *hash = memchr(target, '#', len);
	size_t start = 0;
	bool absolute = false;

	if (hash)
		len = (size_t)(hash - target);
	if (len && target[0] != '/' && target[0] != '*') {
		size_t s = scheme_len(target, len);

		if (s) {
			/* absolute-form: the authority ends at the path or query */
			start = s + 3;
			while (start < len && target[start] != '/' && target[start] != '?')
				start++;
			absolute = true;
		}
	}

	const char *q = memchr(target + start, '?', len - start);
	size_t end = q ? (size_t)(q - target) : len;

	if (absolute && end == start) {
		*path = "/";
		*path_len = 1;
	} else {
		*path = target + start;
		*path_len = end - start;
	}
	if (q) {
		*query = q + 1;
		*query_len = len - end - 1;
	} else {
		*query = NULL;
		*query_len = 0;
	}
}

/* --- route templates --- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Drops one trailing '/' (not the root's): "/a/" and "/a" are the same route. */
static size_t strip_slash(const char *s, size_t n)
{
	return n > 1 && s[n - 1] == '/' ? n - 1 : n;
}

static size_t seg_end(const char *s, size_t i, size_t n)
{
	const char *slash = memchr(s + i, '/', n - i);

	return slash ? (size_t)(slash - s) : n;
}

static bool is_param(const char *s, size_t n)
{
	return n >= 3 && s[0] == '{' && s[n - 1] == '}';
}

static bool valid_template(const char *t, size_t n)
{
	if (n == 0 || t[0] != '/')
		return false;
	n = strip_slash(t, n);
	for (size_t i = 1; i <= n; ) {
		size_t e = seg_end(t, i, n), sl = e - i;
		const char *s = t + i;
		const char *brace = memchr(s, '{', sl);

		if (!brace)
			brace = memchr(s, '}', sl);
		if (brace) {
			/* only a whole "{name}" segment, with nothing else braced */
			if (!is_param(s, sl) || memchr(s + 1, '{', sl - 2) || memchr(s + 1, '}', sl - 2))
				return false;
		}
		if (sl == 1 && s[0] == '*' && e != n)
			return false;
		i = e + 1;
	}
	return true;
}

bool http_routes_parse(struct http_routes *r, const char *spec, size_t len)
{
	size_t used = 0, i = 0;
	bool ok = true;

	r->count = 0;
	if (!spec)
		return true;
	while (i <= len) {
		const char *comma = memchr(spec + i, ',', len - i);
		size_t e = comma ? (size_t)(comma - spec) : len, s = i;

		while (s < e && is_space(spec[s]))
			s++;
		size_t n = e - s;
		while (n && is_space(spec[s + n - 1]))
			n--;
		if (n) {
			if (!valid_template(spec + s, n)) {
				ok = false;
			} else if (r->count == HTTP_ROUTES_MAX || n + 1 > sizeof r->buf - used) {
				ok = false;
			} else {
				memcpy(r->buf + used, spec + s, n);
				r->buf[used + n] = '\0';
				r->tmpl[r->count] = r->buf + used;
				r->len[r->count] = (uint16_t)n;
				r->count++;
				used += n + 1;
			}
		}
		if (!comma)
			break;
		i = e + 1;
	}
	return ok;
}

static bool route_matches(const char *t, size_t tn, const char *p, size_t pn)
{
	size_t ti = 1, pi = 1;

	tn = strip_slash(t, tn);
	for (;;) {
		if (ti > tn)
			return pi > pn;
		/* ti == tn only for the root template "/" */
		if (ti == tn)
			return pi >= pn;
		size_t te = seg_end(t, ti, tn), tl = te - ti;

		if (tl == 1 && t[ti] == '*' && te == tn)
			return true;  /* the rest of the path, even nothing */
		if (pi > pn)
			return false;
		size_t pe = seg_end(p, pi, pn), pl = pe - pi;

		if (is_param(t + ti, tl)) {
			if (pl == 0)
				return false;
		} else if (tl != pl || memcmp(t + ti, p + pi, tl) != 0) {
			return false;
		}
		ti = te + 1;
		pi = pe + 1;
	}
}

const char *http_routes_match(const struct http_routes *r, const char *path, size_t len, size_t *tmpl_len)
{
	if (len == 0) {
		path = "/";
		len = 1;
	}
	if (path[0] != '/')
		return NULL;
	len = strip_slash(path, len);
	for (unsigned i = 0; i < r->count; i++) {
		if (route_matches(r->tmpl[i], r->len[i], path, len)) {
			if (tmpl_len)
				*tmpl_len = r->len[i];
			return r->tmpl[i];
		}
	}
	return NULL;
}

/* --- body payload --- */

uint64_t http_body_payload_ahead(const struct http_body *b)
{
	if (b->done || b->error)
		return 0;
	switch (b->kind) {
	case HTTP_BODY_LENGTH:
		return b->remaining;
	case HTTP_BODY_CHUNKED:
		return b->st == CH_DATA ? b->remaining : 0;
	case HTTP_BODY_UNTIL_CLOSE:
		return UINT64_MAX;
	default:
		return 0;
	}
}

/* --- Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date --- */

static size_t digits(const char *p, size_t n, size_t max, uint64_t *v)
{
	size_t i = 0;
	*v = 0;
	while (i < n && i < max && p[i] >= '0' && p[i] <= '9')
		*v = *v * 10 + (uint64_t)(p[i++] - '0');
	return i;
}

/* 1..12 for "Jan".."Dec" (case-sensitive, as the grammar says), else 0. */
static int month_of(const char *p, size_t n)
{
	static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	if (n < 3)
		return 0;
	for (int m = 0; m < 12; m++)
		if (memcmp(names + 3 * m, p, 3) == 0)
			return m + 1;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "hh:mm:ss" at p; returns the seconds of the day, or -1. */
static int64_t time_of_day(const char *p, size_t n)
{
	uint64_t h, m, s;
	if (n < 8 || digits(p, 2, 2, &h) != 2 || p[2] != ':' || digits(p + 3, 2, 2, &m) != 2 || p[5] != ':' ||
	    digits(p + 6, 2, 2, &s) != 2 || h > 23 || m > 59 || s > 60)
		return -1;
	return (int64_t)(h * 3600 + m * 60 + s);
}

/* Parses the three HTTP-date forms into seconds since the epoch (UTC). */
static bool http_date(const char *p, size_t n, int64_t *out)
{
	uint64_t day, year;
	int mon;
	int64_t tod;
	const char *comma = memchr(p, ',', n < 12 ? n : 12);

	if (comma) {
		size_t i = (size_t)(comma - p) + 1;
		if (i >= n || p[i] != ' ')
			return false;
		i++;
		if (digits(p + i, n - i, 2, &day) != 2)
			return false;
		i += 2;
		if (i < n && p[i] == ' ') {
			/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
			if (n - i != 22 || !(mon = month_of(p + i + 1, 3)) || p[i + 4] != ' ' ||
			    digits(p + i + 5, 4, 4, &year) != 4 || p[i + 9] != ' ' ||
			    (tod = time_of_day(p + i + 10, 8)) < 0 || memcmp(p + i + 18, " GMT", 4) != 0)
				return false;
		} else if (i < n && p[i] == '-') {
			/* rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit
			 * year is taken as within 1970..2069 */
			if (n - i != 20 || !(mon = month_of(p + i + 1, 3)) || p[i + 4] != '-' ||
			    digits(p + i + 5, 2, 2, &year) != 2 || p[i + 7] != ' ' ||
			    (tod = time_of_day(p + i + 8, 8)) < 0 || memcmp(p + i + 16, " GMT", 4) != 0)
				return false;
			year += year < 70 ? 2000 : 1900;
		} else {
			return false;
		}
	} else {
		/* asctime-date: "Sun Nov  6 08:49:37 1994" */
		if (n != 24 || p[3] != ' ' || !(mon = month_of(p + 4, 3)) || p[7] != ' ')
			return false;
		if (p[8] == ' ') {
			if (digits(p + 9, 1, 1, &day) != 1)
				return false;
		} else if (digits(p + 8, 2, 2, &day) != 2) {
			return false;
		}
		if (p[10] != ' ' || (tod = time_of_day(p + 11, 8)) < 0 || p[19] != ' ' ||
		    digits(p + 20, 4, 4, &year) != 4)
			return false;
	}
	if (day < 1 || day > 31)
		return false;
	*out = days_from_civil((int64_t)year, (unsigned)mon, (unsigned)day) * 86400 + tod;
	return true;
}

bool http_retry_after(const char *p, size_t n, int64_t now_unix_s, uint64_t *delay_ms)
{
	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (!n)
		return false;
	uint64_t secs;
	size_t k = digits(p, n, 9, &secs);
	while (k < n && p[k] >= '0' && p[k] <= '9')
		k++;
	if (k == n) {
		/* delay-seconds; beyond 9 digits the caller caps it anyway */
		*delay_ms = k > 9 ? UINT64_MAX / 2 : secs * 1000;
		return true;
	}
	int64_t when;
	if (!http_date(p, n, &when))
		return false;
	*delay_ms = when > now_unix_s ? (uint64_t)(when - now_unix_s) * 1000 : 0;
	return true;
}
