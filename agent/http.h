/* HTTP/1.x wire parsing as pure, streaming functions: request and response heads, body framing, route templates. */
#ifndef TRACEAGENT_HTTP_H
#define TRACEAGENT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"

/*
 * Everything here is a pure function over (const char *, size_t) plus a
 * caller-owned state struct: no I/O, no allocation, no globals. Heads are
 * parsed as a stream, byte ranges at a time, exactly as read()/send() see
 * them, so a head split over any number of calls parses the same as one
 * buffer, and memory stays bounded whatever the peer sends (a 1 MB header
 * block costs nothing but time). Only the fields the agent needs are kept,
 * truncated to fixed sizes.
 */

/* What the first bytes of a stream look like. */
enum http_detect {
	HTTP_DETECT_NEED_MORE = 0,  /* too few bytes to tell (fewer than 8, all plausible) */
	HTTP_DETECT_REQUEST,        /* "<METHOD> " with a known HTTP/1.x method token */
	HTTP_DETECT_RESPONSE,       /* "HTTP/1." */
	HTTP_DETECT_OTHER,          /* anything else: TLS, PostgreSQL, Kafka, HTTP/2 preface, binary */
};

/* The methods the agent knows (RFC 9110's, PATCH and QUERY): one list for
 * detection and for the span's http.request.method. */
enum http_method {
	HTTP_METHOD_OTHER = 0,
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_POST,
	HTTP_METHOD_PUT,
	HTTP_METHOD_DELETE,
	HTTP_METHOD_CONNECT,
	HTTP_METHOD_OPTIONS,
	HTTP_METHOD_TRACE,
	HTTP_METHOD_PATCH,
	HTTP_METHOD_QUERY,
	HTTP_METHOD_COUNT,
};

/* Which known method m[0..n) is (case-sensitive, as methods are), or OTHER. */
enum http_method http_method_id(const char *m, size_t n);
/* The method's token ("" with *len 0 for OTHER). */
const char *http_method_name(enum http_method m, size_t *len);

/* Looks at the first len bytes a stream carried (len may be 1): a known
 * method followed by a space is a REQUEST. "PRI * HTTP/2.0" is OTHER. */
enum http_detect http_detect(const char *p, size_t len);

enum http_state {
	HTTP_HEAD_PARTIAL = 0,  /* keep feeding */
	HTTP_HEAD_DONE,         /* the empty line ending the head was consumed */
	HTTP_HEAD_ERROR,        /* malformed, or not HTTP/1.0 or 1.1: stop tracing this stream */
};

#define HTTP_METHOD_MAX      16
#define HTTP_TARGET_MAX      1024   /* request-target kept (path and query); longer ones are cut, target_truncated set */
#define HTTP_HOST_MAX        256
#define HTTP_UA_MAX          256
#define HTTP_CAPTURE_MAX     8      /* headers captured by name (OTEL_INSTRUMENTATION_HTTP_*_CAPTURE_*_HEADERS) */
#define HTTP_CAPTURE_VAL_MAX 256
#define TRACEPARENT_RAW_MAX  128    /* a future-version traceparent may be longer than 55; cut beyond */

/* Framing facts common to requests and responses. */
struct http_framing {
	bool has_content_length;
	uint64_t content_length;
	bool chunked;            /* Transfer-Encoding whose last coding is chunked */
	bool conn_close;         /* Connection: close (or HTTP/1.0 without keep-alive) */
	bool conn_keep_alive;    /* Connection: keep-alive seen */
	/* Framing can't be trusted (valid once the head is DONE): conflicting or
	 * invalid Content-Length without Transfer-Encoding, Transfer-Encoding in
	 * HTTP/1.0, or a request whose Transfer-Encoding doesn't end in chunked
	 * (RFC 9112 6.1, 6.3). Transfer-Encoding overrides Content-Length. */
	bool bad_framing;
	bool has_transfer_encoding;  /* Transfer-Encoding present, whatever its codings */
};

/* Header names to capture, set up by the caller once (compared
 * case-insensitively; names longer than 32 characters never match). */
struct http_capture_names {
	unsigned count;
	const char *name[HTTP_CAPTURE_MAX];
	uint8_t len[HTTP_CAPTURE_MAX];
};

/* A captured header: values of repeated headers are joined with ",", empty
 * values skipped; OWS trimmed; cut at HTTP_CAPTURE_VAL_MAX - 1 bytes and always
 * NUL-terminated. present is set even when the value is empty. */
struct http_captured {
	uint16_t len;
	bool present;
	char value[HTTP_CAPTURE_VAL_MAX];
};

/*
 * Results are valid once the head is DONE (fields fill in as bytes arrive).
 * Strings come with lengths; method, host, user_agent and captured values are
 * also NUL-terminated (cut at size - 1); target, traceparent, tracestate and
 * baggage are not (use the lengths). Host and User-Agent keep their first
 * occurrence.
 */
struct http_request {
	/* parser state: private */
	uint32_t st;
	uint32_t line_len;       /* position in the version or status token; baggage rollback point (internal) */
	uint32_t head_len;       /* bytes of head consumed */
	uint32_t hdr_idx;        /* which known header the current line is (internal) */
	uint32_t name_len;
	char name[32];           /* current header name, lower-cased, cut at 32; then the value token being scanned */
	uint32_t flags;          /* internal */
	/* results */
	char method[HTTP_METHOD_MAX];
	uint8_t method_len;
	uint8_t method_id;       /* enum http_method */
	char target[HTTP_TARGET_MAX];
	uint16_t target_len;
	bool target_truncated;
	uint8_t version_minor;   /* 0 or 1 */
	char host[HTTP_HOST_MAX];
	uint16_t host_len;
	char user_agent[HTTP_UA_MAX];
	uint16_t user_agent_len;
	struct http_framing framing;
	bool expect_continue;    /* Expect: 100-continue */
	/* Trace context headers, raw with OWS trimmed (the caller runs the W3C
	 * parsers on them): traceparent_count counts occurrences (more than one
	 * is invalid per W3C) and the first one is kept. Baggage values that don't
	 * fit in BAGGAGE_MAX whole are dropped (later smaller ones may still fit). */
	uint8_t traceparent_count;
	char traceparent[TRACEPARENT_RAW_MAX];
	uint8_t traceparent_len;
	/* Where the first traceparent's value (OWS trimmed) starts, relative to
	 * the start of the head: a proxy forwarding its client's traceparent has
	 * it replaced there, in place (hooks/socket.c). 0 when there is none. */
	uint32_t traceparent_off;
	/* several headers joined with ","; a list longer than this loses the
	 * member at the cut and everything after it (tracestate_truncated) */
	char tracestate[TRACESTATE_MAX + 64];
	uint16_t tracestate_len;
	bool tracestate_truncated;
	char baggage[BAGGAGE_MAX];
	uint16_t baggage_len;
	const struct http_capture_names *capture;  /* may be NULL */
	struct http_captured captured[HTTP_CAPTURE_MAX];
};

struct http_response {
	uint32_t st;
	uint32_t line_len;
	uint32_t head_len;
	uint32_t hdr_idx;
	uint32_t name_len;
	char name[32];
	uint32_t flags;          /* internal */
	uint16_t status;         /* 100..999 */
	uint8_t version_minor;
	struct http_framing framing;
	const struct http_capture_names *capture;
	struct http_captured captured[HTTP_CAPTURE_MAX];
};

/* Resets the state for the next message on the stream (keep-alive). Must be
 * called before the first feed (an all-zero struct is not a valid state).
 * captured[] is reset only with a capture list (without one it is unused). */
void http_request_init(struct http_request *r, const struct http_capture_names *capture);
void http_response_init(struct http_response *r, const struct http_capture_names *capture);

/* For tests and the fuzzer, after init: parse byte by byte only. Whole lines
 * found in a buffer normally take a line-at-a-time path (memchr for the line
 * end, names dispatched by length and first bytes), which must give exactly
 * the byte-by-byte results; this is how that is checked. */
void http_request_slow_only(struct http_request *r);
void http_response_slow_only(struct http_response *r);

/*
 * Feeds bytes. *used is set to how many bytes of p belong to the head
 * (all of them while PARTIAL; up to and including the final empty line when
 * DONE; whatever was consumed before the error on ERROR), so the caller
 * knows where the body starts in this buffer. Accepts CRLF and bare LF line
 * ends, obs-fold is an error, header names are case-insensitive, optional
 * whitespace around values is trimmed. A head longer than 64 KiB is an error.
 * On ERROR *used is the offset of the offending byte, so the sum of *used
 * over all calls is where in the stream the head went wrong. Requests may be
 * preceded by empty lines (RFC 9112 2.2), counted in the head. Once DONE or
 * ERROR, further calls consume nothing and return the same state.
 */
enum http_state http_request_feed(struct http_request *r, const char *p, size_t len, size_t *used);
enum http_state http_response_feed(struct http_response *r, const char *p, size_t len, size_t *used);

/* Offset, within the request head, of the line terminator of its final empty
 * line, and the terminator used ("\r\n" or "\n"): where a client injects
 * extra header lines. Valid once http_request_feed returned DONE; relative
 * to the start of the head (the caller maps it onto its own buffers). */
uint32_t http_request_end_of_headers(const struct http_request *r, bool *crlf);

/* --- body framing --- */

enum http_body_kind {
	HTTP_BODY_NONE = 0,      /* no body: complete at the end of the head */
	HTTP_BODY_LENGTH,        /* Content-Length bytes */
	HTTP_BODY_CHUNKED,       /* chunked, including trailers */
	HTTP_BODY_UNTIL_CLOSE,   /* response without length: ends when the connection closes */
};

struct http_body {
	uint8_t kind;            /* enum http_body_kind */
	uint8_t st;              /* chunked decoder state: private */
	bool done;
	bool error;              /* malformed chunked framing, or bad_framing: stop tracing the stream */
	uint64_t remaining;      /* LENGTH: bytes left; CHUNKED: bytes left in the current chunk */
	uint32_t line_len;       /* chunk-size / trailer line length (bounded) */
};

/* Framing of a request body (RFC 9112 6.3): chunked, else Content-Length, else none.
 * A head with bad_framing gives error=true (http_body_feed then consumes nothing). */
void http_body_for_request(struct http_body *b, const struct http_request *r);
/* Framing of a response body: none (done) for HEAD requests, 1xx, 204 and
 * 304; else error=true if bad_framing; chunked; until close when another
 * Transfer-Encoding is last; Content-Length; else until close. A 1xx is
 * interim (parse the next response on the stream); after 101 or a 2xx to
 * CONNECT the stream is no longer HTTP, which only the caller knows. */
void http_body_for_response(struct http_body *b, const struct http_response *r, bool request_was_head);

/* Consumes body bytes; returns how many belong to this body (the rest, if
 * done, is the next message). Never reads past len. On a chunked framing
 * error, returns the offset of the offending byte and sets error. */
size_t http_body_feed(struct http_body *b, const char *p, size_t len);

/* How many of the next bytes are payload (not chunk framing): all that is
 * left of a Content-Length body, the rest of the current chunk, UINT64_MAX
 * for a body that runs until close, 0 while framing comes next (feed those
 * bytes one call at a time to find where the payload resumes). Lets a client
 * keep the body itself, not only its extent. */
uint64_t http_body_payload_ahead(const struct http_body *b);

/* --- Retry-After --- */

/* A Retry-After value (RFC 9110 10.2.3) as a delay from now: delay-seconds,
 * or an HTTP-date in any of its three forms (IMF-fixdate, rfc850, asctime)
 * taken against now_unix_s; a date in the past is no delay. False when the
 * value is neither. */
bool http_retry_after(const char *p, size_t n, int64_t now_unix_s, uint64_t *delay_ms);

/* --- request-target helpers --- */

/* Splits a request-target into path and query (without '?'). For an
 * absolute-form target ("http://host/path?q") the path starts at the first
 * '/' after the authority (a static "/" when it has none). Pointers are into
 * target; *query is NULL when there is no '?'. A '#fragment' is dropped. */
void http_split_target(const char *target, size_t len, const char **path, size_t *path_len,
		       const char **query, size_t *query_len);

/* --- route templates (TRACEAGENT_HTTP_ROUTES) --- */

#define HTTP_ROUTES_MAX 64

/* Parsed list of templates such as "/api/tasks/{id}", comma separated.
 * A "{name}" segment matches exactly one non-empty path segment; "*" as the
 * last segment matches the rest of the path. Templates point into buf. */
struct http_routes {
	unsigned count;
	const char *tmpl[HTTP_ROUTES_MAX];
	uint16_t len[HTTP_ROUTES_MAX];
	char buf[4096];
};

/* Parses the variable's value; returns false (and keeps what parsed) on an
 * invalid template or when they don't all fit. Whitespace around entries is
 * trimmed, empty entries are ignored; each template must start with '/', a
 * '{' or '}' is only allowed as a whole "{name}" segment, and "*" only as
 * the last segment. Stored templates are NUL-terminated. */
bool http_routes_parse(struct http_routes *r, const char *spec, size_t len);
/* The first template matching path (query excluded), or NULL. Literal
 * segments compare exactly; a trailing '/' on the path is ignored. */
const char *http_routes_match(const struct http_routes *r, const char *path, size_t len, size_t *tmpl_len);

#endif
