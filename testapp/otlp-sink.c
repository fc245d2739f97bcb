// otlp-sink: a local OTLP/HTTP trace receiver that prints span trees and logs spans and requests as JSON lines.
//
// It is a test and demo tool, not a collector: every request is handled on its own
// libmicrohttpd thread, decoded (protobuf with protobuf-c, or OTLP/JSON), printed and
// logged, and forgotten (unless --tree-at-exit keeps the spans so that traces crossing
// processes print as one tree). Everything a client sends is untrusted: body sizes,
// inflated sizes, nesting depth and decoded memory are all bounded.

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <zlib.h>

#include "otlp.pb-c.h"

#define TRACES_PATH		"/v1/traces"
// The OTLP spec leaves the limit to the server; 64 MiB is far above any real batch.
#define MAX_BODY		(64u << 20)
#define MAX_INFLATED		(64u << 20)
// protobuf-c can expand a message a lot (a 2-byte empty Span becomes a ~200-byte
// struct), so decoded memory gets its own cap per request...
#define MAX_DECODED		((size_t)512 << 20)
// ...and everything held by all requests together (bodies, inflated bodies, decoded
// messages) a global one, so many concurrent large requests cannot exhaust memory.
#define MAX_INFLIGHT		((size_t)3 << 30)
// protobuf-c unpacks nested messages recursively; OTLP needs about 8 levels plus
// two per level of nested AnyValue arrays/maps, so 64 is generous and stack-safe.
#define MAX_NESTING		64
// --tree-at-exit keeps a copy of each span until exit; past this many, spans are
// counted but not kept.
#define MAX_STORED_SPANS	500000
#define MAX_CONNECTIONS		256
// Display limits for the tree: names and attribute values are truncated there
// (never in --jsonl).
#define MAX_DISPLAY		160
#define MAX_TREE_INDENT		40

#define NONE			SIZE_MAX

struct options {
	const char *bind;
	int port;
	const char *jsonl_path;
	const char *requests_log_path;
	bool tree_at_exit;
	bool quiet;
	int status;		// 0: not set
	long retry_after;	// -1: not set
	long fail_first;
	long delay_ms;
	bool black_hole;
	long partial_success;	// -1: not set
};

static struct options opt = {
	.bind = "127.0.0.1",
	.port = 4318,
	.retry_after = -1,
	.partial_success = -1,
};

static FILE *jsonl_file;
static FILE *requests_file;
// One lock for stdout, --jsonl and --requests-log, so that the lines of concurrent
// requests never interleave.
static pthread_mutex_t output_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_size_t inflight_bytes;
static atomic_long post_count;
static atomic_bool stopping;

/* ---------------------------------------------------------------- buffers */

// A growable string buffer. On allocation failure it stops growing and remembers
// that it failed, so callers check once at the end rather than after every append.
struct sbuf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
};

static bool sb_reserve(struct sbuf *b, size_t extra)
{
	if (b->failed)
		return false;
	if (extra > SIZE_MAX / 2 - b->len) {
		b->failed = true;
		return false;
	}
	if (b->len + extra + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

static void sb_put(struct sbuf *b, const void *p, size_t n)
{
	if (!sb_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sb_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void sb_free(struct sbuf *b)
{
	free(b->data);
	*b = (struct sbuf){ 0 };
}

/* ---------------------------------------------------------------- text */

// Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	size_t need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (n < need)
		return 0;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

static void json_strn(struct sbuf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	sb_putc(b, '"');
	size_t i = 0;
	while (i < n) {
		// Copy the longest run that needs no escaping in one go.
		size_t run = i;
		while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
			run++;
		if (run > i) {
			sb_put(b, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			sb_putc(b, '\\');
			sb_putc(b, (char)c);
			i++;
		} else if (c < 0x20) {
			sb_printf(b, "\\u%04x", c);
			i++;
		} else {
			size_t l = utf8_len(s + i, n - i);
			if (l) {
				sb_put(b, s + i, l);
				i += l;
			} else {
				sb_puts(b, "\xef\xbf\xbd");
				i++;
			}
		}
	}
	sb_putc(b, '"');
}

static void json_str(struct sbuf *b, const char *s)
{
	if (!s)
		s = "";
	json_strn(b, s, strlen(s));
}

static void put_hex(struct sbuf *b, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	if (!sb_reserve(b, n * 2))
		return;
	for (size_t i = 0; i < n; i++) {
		b->data[b->len++] = digits[p[i] >> 4];
		b->data[b->len++] = digits[p[i] & 15];
	}
	b->data[b->len] = '\0';
}

static void json_hex(struct sbuf *b, ProtobufCBinaryData d)
{
	sb_putc(b, '"');
	if (d.data)
		put_hex(b, d.data, d.len);
	sb_putc(b, '"');
}

// Shortest representation that reads back as the same double; JSON has no
// NaN or infinities, so those become strings as in the proto3 JSON mapping.
static void json_double(struct sbuf *b, double v)
{
	if (isnan(v)) {
		sb_puts(b, "\"NaN\"");
		return;
	}
	if (isinf(v)) {
		sb_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
		return;
	}
	char tmp[40];
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	sb_puts(b, tmp);
}

// Text for the tree: valid UTF-8 kept, control characters shown as '?', bad bytes as
// U+FFFD, and at most max bytes of the original (then an ellipsis).
static void display_strn(struct sbuf *b, const char *str, size_t n, size_t max)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		if (i >= max) {
			sb_puts(b, "\xe2\x80\xa6");
			return;
		}
		size_t l = utf8_len(s + i, n - i);
		if (!l) {
			sb_puts(b, "\xef\xbf\xbd");
			i++;
		} else if (l == 1 && (s[i] < 0x20 || s[i] == 0x7f)) {
			sb_putc(b, '?');
			i++;
		} else {
			sb_put(b, s + i, l);
			i += l;
		}
	}
}

static char *display_dup(const char *s, size_t max)
{
	struct sbuf b = { 0 };
	if (!s)
		s = "";
	display_strn(&b, s, strlen(s), max);
	sb_putc(&b, '\0');
	if (b.failed) {
		sb_free(&b);
		return NULL;
	}
	return b.data;
}

// Terminal columns, near enough: one per code point.
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static bool has_prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* ---------------------------------------------------------------- memory budget */

static bool budget_take(size_t n)
{
	size_t old = atomic_fetch_add(&inflight_bytes, n);
	if (old + n > MAX_INFLIGHT || old + n < old) {
		atomic_fetch_sub(&inflight_bytes, n);
		return false;
	}
	return true;
}

static void budget_give(size_t n)
{
	atomic_fetch_sub(&inflight_bytes, n);
}

/* ---------------------------------------------------------------- requests */

enum decode_error {
	DECODE_OK,
	DECODE_BAD,		// 400
	DECODE_TOO_LARGE,	// 413
	DECODE_BUSY,		// 503: the global in-flight budget is exhausted
	DECODE_UNSUPPORTED,	// 415
};

struct request {
	char *method;
	char *path;
	char *content_type;
	char *content_encoding;
	char *user_agent;
	struct sbuf headers_json;
	// A status decided from the headers alone (404, 405): the body is read and
	// dropped so the connection stays usable for keep-alive.
	int early_status;
	bool too_large;
	bool busy;
	bool answered;		// a response is queued; anything more is dropped
	uint8_t *body;
	size_t body_len;
	size_t body_cap;
	uint64_t body_total;	// bytes received, including dropped ones
	size_t decoded_used;	// bytes held through pb_alloc
	enum decode_error alloc_error;
	struct arena_chunk *arena;	// protobuf decoding: bump-allocated, freed whole
};

// protobuf-c allocator charging the request's and the global budget, so that a
// small body cannot make us allocate without bound. Each block starts with its
// size so frees can give the budget back.
#define ALLOC_HDR	16

static void *pb_alloc(void *data, size_t size)
{
	struct request *r = data;
	if (size > MAX_DECODED)
		goto too_large;
	size_t total = size + ALLOC_HDR;
	if (r->decoded_used + total > MAX_DECODED)
		goto too_large;
	if (!budget_take(total)) {
		r->alloc_error = DECODE_BUSY;
		return NULL;
	}
	char *p = malloc(total);
	if (!p) {
		budget_give(total);
		r->alloc_error = DECODE_BUSY;
		return NULL;
	}
	memcpy(p, &total, sizeof(total));
	r->decoded_used += total;
	return p + ALLOC_HDR;
too_large:
	r->alloc_error = DECODE_TOO_LARGE;
	return NULL;
}

// Protobuf decoding allocates one block per message and frees them all at
// once: a bump arena per request, whose chunks each connection thread keeps
// for its next request, replaces tens of thousands of malloc/free pairs per
// batch (malloc was most of the sink's time under load).
#define ARENA_CHUNK	(1u << 20)
#define ARENA_KEEP	8	// chunks a thread keeps between requests

struct arena_chunk {
	struct arena_chunk *next;
	size_t size, used;
	_Alignas(16) char data[];
};

static __thread struct arena_chunk *arena_cache;
static __thread unsigned arena_cached;

static void *arena_alloc(void *data, size_t size)
{
	struct request *r = data;
	size = (size + 15) & ~(size_t)15;
	struct arena_chunk *c = r->arena;
	if (!c || c->size - c->used < size) {
		size_t want = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		if (r->decoded_used + want > MAX_DECODED) {
			r->alloc_error = DECODE_TOO_LARGE;
			return NULL;
		}
		if (want == ARENA_CHUNK && arena_cache) {
			c = arena_cache;
			arena_cache = c->next;
			arena_cached--;
		} else {
			if (!budget_take(want)) {
				r->alloc_error = DECODE_BUSY;
				return NULL;
			}
			c = malloc(sizeof(*c) + want);
			if (!c) {
				budget_give(want);
				r->alloc_error = DECODE_BUSY;
				return NULL;
			}
			c->size = want;
		}
		c->used = 0;
		c->next = r->arena;
		r->arena = c;
		r->decoded_used += want;
	}
	void *p = c->data + c->used;
	c->used += size;
	return p;
}

static void arena_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;	// released with the whole arena
}

static void arena_release(struct request *r)
{
	while (r->arena) {
		struct arena_chunk *c = r->arena;
		r->arena = c->next;
		r->decoded_used -= c->size;
		if (c->size == ARENA_CHUNK && arena_cached < ARENA_KEEP) {
			c->next = arena_cache;
			arena_cache = c;
			arena_cached++;	// stays charged to the budget while cached
		} else {
			budget_give(c->size);
			free(c);
		}
	}
}

static void pb_free(void *data, void *ptr)
{
	struct request *r = data;
	if (!ptr)
		return;
	char *p = (char *)ptr - ALLOC_HDR;
	size_t total;
	memcpy(&total, p, sizeof(total));
	r->decoded_used -= total;
	budget_give(total);
	free(p);
}

// Grows *buf (charged to the global budget) to hold at least want bytes, never
// beyond limit.
static enum decode_error grow_buffer(uint8_t **buf, size_t *cap, size_t want, size_t limit)
{
	if (want > limit)
		return DECODE_TOO_LARGE;
	if (want <= *cap)
		return DECODE_OK;
	size_t ncap = *cap ? *cap : 64 * 1024;
	while (ncap < want)
		ncap *= 2;
	if (ncap > limit)
		ncap = limit;
	if (!budget_take(ncap - *cap))
		return DECODE_BUSY;
	uint8_t *p = realloc(*buf, ncap);
	if (!p) {
		budget_give(ncap - *cap);
		return DECODE_BUSY;
	}
	*buf = p;
	*cap = ncap;
	return DECODE_OK;
}

static void release_buffer(uint8_t **buf, size_t *cap)
{
	free(*buf);
	budget_give(*cap);
	*buf = NULL;
	*cap = 0;
}

/* ---------------------------------------------------------------- decoding */

static bool read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 70; shift += 7) {
		if (*i >= n)
			return false;
		uint8_t c = p[(*i)++];
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

// Walks the wire format with the message descriptors, before protobuf-c sees it,
// to refuse nesting deep enough to exhaust the stack in protobuf-c's recursive
// unpacker (and in our own recursive printers). Each byte is looked at once.
static bool wire_check(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *desc, int depth)
{
	if (depth > MAX_NESTING)
		return false;
	size_t i = 0;
	while (i < n) {
		uint64_t tag, len;
		if (!read_varint(p, n, &i, &tag))
			return false;
		uint64_t number = tag >> 3;
		if (number == 0 || number > 0x1fffffff)
			return false;
		switch (tag & 7) {
		case 0:
			if (!read_varint(p, n, &i, &len))
				return false;
			break;
		case 1:
			if (n - i < 8)
				return false;
			i += 8;
			break;
		case 5:
			if (n - i < 4)
				return false;
			i += 4;
			break;
		case 2: {
			if (!read_varint(p, n, &i, &len) || len > n - i)
				return false;
			const ProtobufCFieldDescriptor *f =
				protobuf_c_message_descriptor_get_field(desc, (unsigned)number);
			if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    !wire_check(p + i, (size_t)len, f->descriptor, depth + 1))
				return false;
			i += (size_t)len;
			break;
		}
		default:
			// Groups (3, 4) are not used by OTLP; 6 and 7 do not exist.
			return false;
		}
	}
	return true;
}

// Inflates a gzip or zlib body (several concatenated gzip members are allowed).
static enum decode_error inflate_body(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len,
				      size_t *out_cap)
{
	z_stream zs = { 0 };
	// 15 + 32: accept both gzip and zlib headers.
	if (inflateInit2(&zs, 15 + 32) != Z_OK)
		return DECODE_BUSY;
	enum decode_error err = DECODE_OK;
	size_t len = 0;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)n;	// bodies are at most MAX_BODY, well within uInt
	for (;;) {
		if (len == *out_cap) {
			err = grow_buffer(out, out_cap, len + 1, MAX_INFLATED);
			if (err)
				break;
		}
		zs.next_out = *out + len;
		zs.avail_out = (uInt)(*out_cap - len);
		int rc = inflate(&zs, Z_NO_FLUSH);
		len = *out_cap - zs.avail_out;
		if (rc == Z_STREAM_END) {
			if (zs.avail_in == 0)
				break;
			// Another gzip member may follow; anything else is garbage.
			if (zs.avail_in < 2 || zs.next_in[0] != 0x1f || zs.next_in[1] != 0x8b) {
				err = DECODE_BAD;
				break;
			}
			inflateReset(&zs);
			continue;
		}
		if (rc == Z_OK || (rc == Z_BUF_ERROR && zs.avail_out == 0))
			continue;
		// Z_BUF_ERROR with output room left means the input ended early.
		err = rc == Z_MEM_ERROR ? DECODE_BUSY : DECODE_BAD;
		break;
	}
	inflateEnd(&zs);
	*out_len = len;
	return err;
}

/* ---------------------------------------------------------------- OTLP accessors */

static const char *kind_name(int kind)
{
	switch (kind) {
	case OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL: return "INTERNAL";
	case OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_SERVER: return "SERVER";
	case OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_CLIENT: return "CLIENT";
	case OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_PRODUCER: return "PRODUCER";
	case OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER: return "CONSUMER";
	default: return "UNSPECIFIED";
	}
}

static int status_code_of(const Opentelemetry__Proto__Span *s)
{
	return s->status ? (int)s->status->code : 0;
}

static const char *status_name(int code)
{
	switch (code) {
	case OPENTELEMETRY__PROTO__STATUS__STATUS_CODE__STATUS_CODE_OK: return "OK";
	case OPENTELEMETRY__PROTO__STATUS__STATUS_CODE__STATUS_CODE_ERROR: return "ERROR";
	default: return "UNSET";
	}
}

static const Opentelemetry__Proto__AnyValue *find_attr(Opentelemetry__Proto__KeyValue **kv, size_t n,
							const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (kv[i]->key && strcmp(kv[i]->key, key) == 0)
			return kv[i]->value;
	return NULL;
}

static const char *service_of(const Opentelemetry__Proto__Resource *res)
{
	if (!res)
		return NULL;
	const Opentelemetry__Proto__AnyValue *v = find_attr(res->attributes, res->n_attributes, "service.name");
	if (v && v->value_case == OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE)
		return v->string_value;
	return NULL;
}

/* ---------------------------------------------------------------- JSON lines */

static void json_attrs(struct sbuf *b, Opentelemetry__Proto__KeyValue **kv, size_t n);

static void json_any(struct sbuf *b, const Opentelemetry__Proto__AnyValue *v)
{
	if (!v) {
		sb_puts(b, "null");
		return;
	}
	switch (v->value_case) {
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE:
		json_str(b, v->string_value);
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_BOOL_VALUE:
		sb_puts(b, v->bool_value ? "true" : "false");
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_INT_VALUE:
		sb_printf(b, "%" PRId64, v->int_value);
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_DOUBLE_VALUE:
		json_double(b, v->double_value);
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_ARRAY_VALUE:
		sb_putc(b, '[');
		if (v->array_value)
			for (size_t i = 0; i < v->array_value->n_values; i++) {
				if (i)
					sb_putc(b, ',');
				json_any(b, v->array_value->values[i]);
			}
		sb_putc(b, ']');
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_KVLIST_VALUE:
		if (v->kvlist_value)
			json_attrs(b, v->kvlist_value->values, v->kvlist_value->n_values);
		else
			sb_puts(b, "{}");
		break;
	case OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_BYTES_VALUE:
		json_hex(b, v->bytes_value);
		break;
	default:
		sb_puts(b, "null");
		break;
	}
}

static void json_attrs(struct sbuf *b, Opentelemetry__Proto__KeyValue **kv, size_t n)
{
	sb_putc(b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_putc(b, ',');
		json_str(b, kv[i]->key);
		sb_putc(b, ':');
		json_any(b, kv[i]->value);
	}
	sb_putc(b, '}');
}

static void json_span(struct sbuf *b, const Opentelemetry__Proto__Span *s, const char *service,
		      const char *scope, const char *resource_json)
{
	sb_puts(b, "{\"trace_id\":");
	json_hex(b, s->trace_id);
	sb_puts(b, ",\"span_id\":");
	json_hex(b, s->span_id);
	sb_puts(b, ",\"parent_span_id\":");
	json_hex(b, s->parent_span_id);
	sb_puts(b, ",\"name\":");
	json_str(b, s->name);
	sb_printf(b, ",\"kind\":\"%s\",\"status\":\"%s\",\"status_message\":", kind_name(s->kind),
		  status_name(status_code_of(s)));
	json_str(b, s->status ? s->status->message : "");
	sb_printf(b, ",\"start_ns\":%" PRIu64 ",\"end_ns\":%" PRIu64 ",\"service.name\":",
		  s->start_time_unix_nano, s->end_time_unix_nano);
	json_str(b, service);
	sb_puts(b, ",\"scope\":");
	json_str(b, scope);
	sb_puts(b, ",\"trace_state\":");
	json_str(b, s->trace_state);
	sb_printf(b, ",\"flags\":%" PRIu32 ",\"attributes\":", s->flags);
	json_attrs(b, s->attributes, s->n_attributes);
	sb_puts(b, ",\"resource\":");
	sb_puts(b, resource_json);
	sb_puts(b, ",\"events\":[");
	for (size_t i = 0; i < s->n_events; i++) {
		const Opentelemetry__Proto__Span__Event *e = s->events[i];
		sb_puts(b, i ? ",{\"name\":" : "{\"name\":");
		json_str(b, e->name);
		sb_printf(b, ",\"time_ns\":%" PRIu64 ",\"attributes\":", e->time_unix_nano);
		json_attrs(b, e->attributes, e->n_attributes);
		sb_putc(b, '}');
	}
	sb_puts(b, "],\"links\":[");
	for (size_t i = 0; i < s->n_links; i++) {
		const Opentelemetry__Proto__Span__Link *l = s->links[i];
		sb_puts(b, i ? ",{\"trace_id\":" : "{\"trace_id\":");
		json_hex(b, l->trace_id);
		sb_puts(b, ",\"span_id\":");
		json_hex(b, l->span_id);
		sb_puts(b, ",\"trace_state\":");
		json_str(b, l->trace_state);
		sb_printf(b, ",\"flags\":%" PRIu32 ",\"attributes\":", l->flags);
		json_attrs(b, l->attributes, l->n_attributes);
		sb_putc(b, '}');
	}
	sb_printf(b, "],\"dropped_attributes_count\":%" PRIu32 ",\"dropped_events_count\":%" PRIu32
		  ",\"dropped_links_count\":%" PRIu32 "}\n",
		  s->dropped_attributes_count, s->dropped_events_count, s->dropped_links_count);
}

/* ---------------------------------------------------------------- span trees */

// What the tree printer needs of a span, copied out of the decoded message so it
// can outlive the request under --tree-at-exit.
struct span_rec {
	char trace_id[65];	// hex; ids longer than 32 bytes are cut (grouping only)
	char span_id[33];
	char parent_id[33];
	char *service;		// display-safe text from here on
	char *name;
	char *extra;		// status and key attributes, preformatted
	int kind;
	uint64_t start_ns;
	uint64_t end_ns;
	// Filled in by render_traces().
	size_t parent;
	size_t first_child;
	size_t next_sibling;
	bool visited;
};

struct rec_list {
	struct span_rec *v;
	size_t n;
	size_t cap;
};

static void rec_free_fields(struct span_rec *r)
{
	free(r->service);
	free(r->name);
	free(r->extra);
}

static void rec_list_free(struct rec_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		rec_free_fields(&l->v[i]);
	free(l->v);
	*l = (struct rec_list){ 0 };
}

static void hex_id(char *out, size_t out_size, ProtobufCBinaryData d)
{
	static const char digits[] = "0123456789abcdef";
	size_t n = d.data ? d.len : 0;
	if (n > (out_size - 1) / 2)
		n = (out_size - 1) / 2;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d.data[i] >> 4];
		out[2 * i + 1] = digits[d.data[i] & 15];
	}
	out[2 * n] = '\0';
}

// Attributes worth seeing at a glance in the tree, in the order shown.
static const char *const key_attributes[] = {
	"http.response.status_code", "http.status_code", "db.system.name", "db.system",
	"db.query.summary", "db.operation.name", "messaging.system", "messaging.destination.name",
	"rpc.method", "error.type",
};

static void display_any(struct sbuf *b, const Opentelemetry__Proto__AnyValue *v)
{
	if (v && v->value_case == OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE) {
		display_strn(b, v->string_value, strlen(v->string_value), MAX_DISPLAY);
		return;
	}
	struct sbuf tmp = { 0 };
	json_any(&tmp, v);
	if (!tmp.failed)
		display_strn(b, tmp.data, tmp.len, MAX_DISPLAY);
	sb_free(&tmp);
}

static char *span_extra(const Opentelemetry__Proto__Span *s)
{
	struct sbuf b = { 0 };
	sb_puts(&b, "");	// "" rather than NULL when there is nothing to show
	if (status_code_of(s) == OPENTELEMETRY__PROTO__STATUS__STATUS_CODE__STATUS_CODE_ERROR) {
		sb_puts(&b, "  ERROR");
		const char *msg = s->status->message;
		if (msg && *msg) {
			sb_puts(&b, " \"");
			display_strn(&b, msg, strlen(msg), MAX_DISPLAY);
			sb_putc(&b, '"');
		}
	}
	for (size_t k = 0; k < sizeof(key_attributes) / sizeof(key_attributes[0]); k++) {
		const Opentelemetry__Proto__AnyValue *v = find_attr(s->attributes, s->n_attributes, key_attributes[k]);
		if (!v)
			continue;
		sb_printf(&b, "  %s=", key_attributes[k]);
		display_any(&b, v);
	}
	for (size_t i = 0; i < s->n_events; i++) {
		const Opentelemetry__Proto__Span__Event *e = s->events[i];
		if (!e->name || strcmp(e->name, "exception") != 0)
			continue;
		const Opentelemetry__Proto__AnyValue *v = find_attr(e->attributes, e->n_attributes, "exception.type");
		if (v) {
			sb_puts(&b, "  exception=");
			display_any(&b, v);
		}
	}
	if (b.failed) {
		sb_free(&b);
		return NULL;
	}
	return b.data;
}

static bool rec_from_span(struct span_rec *r, const Opentelemetry__Proto__Span *s, const char *service)
{
	*r = (struct span_rec){ 0 };
	hex_id(r->trace_id, sizeof(r->trace_id), s->trace_id);
	hex_id(r->span_id, sizeof(r->span_id), s->span_id);
	hex_id(r->parent_id, sizeof(r->parent_id), s->parent_span_id);
	r->service = display_dup(service ? service : "?", MAX_DISPLAY);
	r->name = display_dup(s->name, MAX_DISPLAY);
	r->extra = span_extra(s);
	r->kind = s->kind;
	r->start_ns = s->start_time_unix_nano;
	r->end_ns = s->end_time_unix_nano;
	if (!r->service || !r->name || !r->extra) {
		rec_free_fields(r);
		return false;
	}
	return true;
}

static int cmp_by_trace(const void *a, const void *b, void *arg)
{
	const struct span_rec *v = arg;
	const struct span_rec *x = &v[*(const size_t *)a], *y = &v[*(const size_t *)b];
	int c = strcmp(x->trace_id, y->trace_id);
	if (c)
		return c;
	if (x->start_ns != y->start_ns)
		return x->start_ns < y->start_ns ? -1 : 1;
	c = strcmp(x->span_id, y->span_id);
	if (c)
		return c;
	return *(const size_t *)a < *(const size_t *)b ? -1 : *(const size_t *)a > *(const size_t *)b;
}

static int cmp_by_span_id(const void *a, const void *b, void *arg)
{
	const struct span_rec *v = arg;
	return strcmp(v[*(const size_t *)a].span_id, v[*(const size_t *)b].span_id);
}

struct trace_group {
	size_t first;	// into the order array
	size_t count;
	uint64_t start_ns;
};

static int cmp_groups(const void *a, const void *b)
{
	const struct trace_group *x = a, *y = b;
	if (x->start_ns != y->start_ns)
		return x->start_ns < y->start_ns ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static void put_duration(struct sbuf *b, const struct span_rec *r)
{
	if (r->end_ns < r->start_ns || r->start_ns == 0) {
		sb_puts(b, "?ms");
		return;
	}
	double ms = (double)(r->end_ns - r->start_ns) / 1e6;
	sb_printf(b, ms < 0.1 ? "%.3fms" : "%.1fms", ms);
}

static void put_line(struct sbuf *b, const struct span_rec *r, size_t svc_width, size_t depth,
		     const bool *last_at)
{
	sb_puts(b, "  ");
	sb_puts(b, r->service);
	for (size_t w = display_width(r->service); w < svc_width; w++)
		sb_putc(b, ' ');
	sb_puts(b, "  ");
	if (depth > 0) {
		size_t shown = depth - 1 < MAX_TREE_INDENT ? depth - 1 : MAX_TREE_INDENT;
		for (size_t d = 1; d <= shown; d++)
			sb_puts(b, last_at[d] ? "   " : "\xe2\x94\x82  ");
		if (shown < depth - 1)
			sb_puts(b, "\xe2\x80\xa6 ");
		sb_puts(b, last_at[depth] ? "\xe2\x94\x94\xe2\x94\x80 " : "\xe2\x94\x9c\xe2\x94\x80 ");
	}
	sb_printf(b, "%-8s %s  ", kind_name(r->kind), r->name);
	put_duration(b, r);
	sb_puts(b, r->extra);
	sb_putc(b, '\n');
}

struct stack_item {
	size_t rec;
	size_t depth;
	bool last;
};

// Prints one trace: spans whose parent is absent are roots; children are ordered
// by start time. Iterative, so a long parent chain cannot overflow the stack, and
// spans caught in a parent cycle are printed as extra roots rather than lost.
static void render_group(struct sbuf *b, struct span_rec *v, const size_t *members, size_t n,
			 size_t *byid, struct stack_item *stack, bool *last_at)
{
	size_t svc_width = 0;
	for (size_t i = 0; i < n; i++) {
		struct span_rec *r = &v[members[i]];
		r->parent = r->first_child = r->next_sibling = NONE;
		r->visited = false;
		size_t w = display_width(r->service);
		if (w > svc_width)
			svc_width = w;
		byid[i] = members[i];
	}
	qsort_r(byid, n, sizeof(*byid), cmp_by_span_id, v);
	for (size_t i = 0; i < n; i++) {
		struct span_rec *r = &v[members[i]];
		if (!r->parent_id[0])
			continue;
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (strcmp(v[byid[mid]].span_id, r->parent_id) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && strcmp(v[byid[lo]].span_id, r->parent_id) == 0 && byid[lo] != members[i])
			r->parent = byid[lo];
	}
	// Prepending in reverse start order leaves each child list in start order.
	for (size_t i = n; i-- > 0;) {
		struct span_rec *r = &v[members[i]];
		if (r->parent != NONE) {
			r->next_sibling = v[r->parent].first_child;
			v[r->parent].first_child = members[i];
		}
	}
	sb_printf(b, "trace %s  (%zu span%s)\n", v[members[0]].trace_id, n, n == 1 ? "" : "s");
	for (size_t pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			struct span_rec *root = &v[members[i]];
			// First pass: real roots; second: whatever a parent cycle hid.
			if (root->visited || (pass == 0 && root->parent != NONE))
				continue;
			size_t top = 0;
			stack[top++] = (struct stack_item){ members[i], 0, true };
			while (top > 0) {
				struct stack_item it = stack[--top];
				struct span_rec *r = &v[it.rec];
				if (r->visited)
					continue;
				r->visited = true;
				last_at[it.depth] = it.last;
				put_line(b, r, svc_width, it.depth, last_at);
				size_t count = 0;
				for (size_t c = r->first_child; c != NONE; c = v[c].next_sibling)
					if (!v[c].visited)
						count++;
				// Each span is pushed at most once (by its one parent), so
				// the stack never needs more than n entries.
				size_t k = 0;
				for (size_t c = r->first_child; c != NONE && top + count <= n; c = v[c].next_sibling) {
					if (v[c].visited)
						continue;
					stack[top + count - 1 - k] = (struct stack_item){ c, it.depth + 1, k == count - 1 };
					k++;
				}
				if (top + count <= n)
					top += count;
			}
		}
	}
}

static void render_traces(struct sbuf *b, struct span_rec *v, size_t n)
{
	if (n == 0)
		return;
	size_t *order = malloc(n * sizeof(*order));
	size_t *byid = malloc(n * sizeof(*byid));
	struct stack_item *stack = malloc(n * sizeof(*stack));
	bool *last_at = malloc((n + 1) * sizeof(*last_at));
	struct trace_group *groups = malloc(n * sizeof(*groups));
	if (!order || !byid || !stack || !last_at || !groups) {
		sb_puts(b, "otlp-sink: out of memory printing traces\n");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), cmp_by_trace, v);
	size_t ng = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && strcmp(v[order[j]].trace_id, v[order[i]].trace_id) == 0)
			j++;
		groups[ng++] = (struct trace_group){ i, j - i, v[order[i]].start_ns };
		i = j;
	}
	qsort(groups, ng, sizeof(*groups), cmp_groups);
	for (size_t g = 0; g < ng; g++)
		render_group(b, v, order + groups[g].first, groups[g].count, byid, stack, last_at);
out:
	free(order);
	free(byid);
	free(stack);
	free(last_at);
	free(groups);
}

// --tree-at-exit keeps every span here until exit.
static struct rec_list stored;
static size_t stored_dropped;
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_stored(void)
{
	struct sbuf b = { 0 };
	pthread_mutex_lock(&store_lock);
	render_traces(&b, stored.v, stored.n);
	if (stored_dropped)
		sb_printf(&b, "otlp-sink: %zu spans were not kept (limit %d)\n", stored_dropped, MAX_STORED_SPANS);
	pthread_mutex_unlock(&store_lock);
	pthread_mutex_lock(&output_lock);
	if (b.failed)
		fputs("otlp-sink: out of memory printing traces\n", stdout);
	else if (b.len)
		fwrite(b.data, 1, b.len, stdout);
	fflush(stdout);
	pthread_mutex_unlock(&output_lock);
	sb_free(&b);
}

/* ---------------------------------------------------------------- OTLP/JSON */

// OTLP/JSON is the proto3 JSON mapping of the same messages, so one parser driven
// by the protobuf-c descriptors fills the same structs protobuf-c would, with the
// same allocator; protobuf_c_message_free_unpacked() then frees either kind.
// OTLP's own rules on top of the mapping: trace and span ids are hex, not base64;
// enums are integers (names are accepted too); 64-bit integers may be strings.
// Field names may be lowerCamelCase or the original snake_case.
struct jparser {
	const char *p;
	const char *end;
	ProtobufCAllocator *alloc;
	int depth;
	struct sbuf tmp;	// the last string read
	const char *error;
};

static bool jp_fail(struct jparser *j, const char *why)
{
	if (!j->error)
		j->error = why;
	return false;
}

static void jp_ws(struct jparser *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool jp_peek(struct jparser *j, char c)
{
	jp_ws(j);
	return j->p < j->end && *j->p == c;
}

static bool jp_eat(struct jparser *j, char c)
{
	if (!jp_peek(j, c))
		return false;
	j->p++;
	return true;
}

static bool jp_literal(struct jparser *j, const char *lit)
{
	size_t n = strlen(lit);
	jp_ws(j);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
		return false;
	j->p += n;
	return true;
}

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool jp_hex4(struct jparser *j, unsigned *out)
{
	if (j->end - j->p < 4)
		return false;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int d = hex_digit((unsigned char)j->p[i]);
		if (d < 0)
			return false;
		v = v << 4 | (unsigned)d;
	}
	j->p += 4;
	*out = v;
	return true;
}

static void put_utf8(struct sbuf *b, unsigned cp)
{
	char u[4];
	size_t n;
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	sb_put(b, u, n);
}

// Reads a JSON string into j->tmp (NUL-terminated; embedded NULs cut it short
// for the C side, as with protobuf strings).
static bool jp_string(struct jparser *j)
{
	if (!jp_eat(j, '"'))
		return jp_fail(j, "expected a string");
	j->tmp.len = 0;
	if (sb_reserve(&j->tmp, 16))
		j->tmp.data[0] = '\0';
	for (;;) {
		const char *run = j->p;
		while (j->p < j->end && *j->p != '"' && *j->p != '\\' && (unsigned char)*j->p >= 0x20)
			j->p++;
		sb_put(&j->tmp, run, (size_t)(j->p - run));
		if (j->p >= j->end)
			return jp_fail(j, "unterminated string");
		char c = *j->p++;
		if (c == '"')
			break;
		if (c != '\\')
			return jp_fail(j, "control character in a string");
		if (j->p >= j->end)
			return jp_fail(j, "unterminated string");
		c = *j->p++;
		switch (c) {
		case '"': case '\\': case '/': sb_putc(&j->tmp, c); break;
		case 'b': sb_putc(&j->tmp, '\b'); break;
		case 'f': sb_putc(&j->tmp, '\f'); break;
		case 'n': sb_putc(&j->tmp, '\n'); break;
		case 'r': sb_putc(&j->tmp, '\r'); break;
		case 't': sb_putc(&j->tmp, '\t'); break;
		case 'u': {
			unsigned cp, lo;
			if (!jp_hex4(j, &cp))
				return jp_fail(j, "bad \\u escape");
			if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
				const char *save = j->p;
				j->p += 2;
				if (jp_hex4(j, &lo) && lo >= 0xdc00 && lo < 0xe000)
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				else
					j->p = save;
			}
			// A lone surrogate is not a character.
			put_utf8(&j->tmp, cp >= 0xd800 && cp < 0xe000 ? 0xfffd : cp);
			break;
		}
		default:
			return jp_fail(j, "bad escape in a string");
		}
	}
	if (j->tmp.failed)
		return jp_fail(j, "out of memory");
	return true;
}

// Copies a number token (or the text of a string, for quoted 64-bit integers and
// "NaN") into buf.
static bool jp_scalar_text(struct jparser *j, char *buf, size_t size, bool *quoted)
{
	jp_ws(j);
	*quoted = false;
	if (jp_peek(j, '"')) {
		if (!jp_string(j))
			return false;
		if (j->tmp.len >= size)
			return jp_fail(j, "number too long");
		memcpy(buf, j->tmp.data, j->tmp.len + 1);
		*quoted = true;
		return true;
	}
	size_t n = 0;
	while (j->p < j->end && *j->p && (isdigit((unsigned char)*j->p) || strchr("+-.eE", *j->p))) {
		if (n + 1 >= size)
			return jp_fail(j, "number too long");
		buf[n++] = *j->p++;
	}
	buf[n] = '\0';
	return n > 0 ? true : jp_fail(j, "expected a number");
}

static bool parse_integer(const char *s, bool is_signed, int64_t *sv, uint64_t *uv)
{
	char *end;
	errno = 0;
	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	if (is_signed) {
		*sv = strtoll(s, &end, 10);
		if (!errno && *end == '\0')
			return true;
	} else if (*s != '-') {
		*uv = strtoull(s, &end, 10);
		if (!errno && *end == '\0')
			return true;
	}
	// The JSON mapping also allows exponent forms such as 1e3 for integers.
	errno = 0;
	double d = strtod(s, &end);
	if (errno || *end != '\0' || d != floor(d))
		return false;
	if (is_signed) {
		if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
			return false;
		*sv = (int64_t)d;
	} else {
		if (d < 0 || d >= 18446744073709551616.0)
			return false;
		*uv = (uint64_t)d;
	}
	return true;
}

static bool jp_skip_value(struct jparser *j)
{
	if (++j->depth > MAX_NESTING)
		return jp_fail(j, "nested too deeply");
	bool ok = true;
	if (jp_eat(j, '{')) {
		if (!jp_eat(j, '}')) {
			do {
				ok = jp_string(j) && (jp_eat(j, ':') || jp_fail(j, "expected ':'")) && jp_skip_value(j);
			} while (ok && jp_eat(j, ','));
			ok = ok && (jp_eat(j, '}') || jp_fail(j, "expected '}'"));
		}
	} else if (jp_eat(j, '[')) {
		if (!jp_eat(j, ']')) {
			do {
				ok = jp_skip_value(j);
			} while (ok && jp_eat(j, ','));
			ok = ok && (jp_eat(j, ']') || jp_fail(j, "expected ']'"));
		}
	} else if (jp_peek(j, '"')) {
		ok = jp_string(j);
	} else if (jp_literal(j, "true") || jp_literal(j, "false") || jp_literal(j, "null")) {
		ok = true;
	} else {
		char num[64];
		bool quoted;
		ok = jp_scalar_text(j, num, sizeof(num), &quoted);
	}
	j->depth--;
	return ok;
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
		return sizeof(int32_t);
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
		return sizeof(uint32_t);
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
		return sizeof(int64_t);
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
	case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static bool is_hex_id_field(const ProtobufCFieldDescriptor *f)
{
	return strcmp(f->name, "trace_id") == 0 || strcmp(f->name, "span_id") == 0 ||
	       strcmp(f->name, "parent_span_id") == 0;
}

static int base64_digit(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

// Decodes j->tmp as hex (ids, as OTLP/JSON requires) or base64 (other bytes,
// standard or URL alphabet, padding optional).
static bool jp_bytes(struct jparser *j, const ProtobufCFieldDescriptor *f, ProtobufCBinaryData *out)
{
	const char *s = j->tmp.data;
	size_t n = j->tmp.len;
	uint8_t *data = j->alloc->alloc(j->alloc->allocator_data, n + 1);
	if (!data)
		return jp_fail(j, "out of memory");
	size_t len = 0;
	if (is_hex_id_field(f)) {
		bool hex = n % 2 == 0;
		for (size_t i = 0; hex && i < n; i++)
			hex = hex_digit((unsigned char)s[i]) >= 0;
		if (!hex) {
			j->alloc->free(j->alloc->allocator_data, data);
			return jp_fail(j, "trace and span ids must be hex");
		}
		for (size_t i = 0; i < n; i += 2)
			data[len++] = (uint8_t)(hex_digit((unsigned char)s[i]) << 4 | hex_digit((unsigned char)s[i + 1]));
	} else {
		uint32_t acc = 0;
		int bits = 0;
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '=')
				break;
			int v = base64_digit((unsigned char)s[i]);
			if (v < 0) {
				j->alloc->free(j->alloc->allocator_data, data);
				return jp_fail(j, "bad base64");
			}
			acc = acc << 6 | (uint32_t)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				data[len++] = (uint8_t)(acc >> bits);
			}
		}
	}
	out->data = data;
	out->len = len;
	return true;
}

static bool jp_message(struct jparser *j, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *msg);

static ProtobufCMessage *jp_new_message(struct jparser *j, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = j->alloc->alloc(j->alloc->allocator_data, desc->sizeof_message);
	if (!m) {
		jp_fail(j, "out of memory");
		return NULL;
	}
	protobuf_c_message_init(desc, m);
	return m;
}

// Reads one value of field f into slot (a struct member or an array element).
// Whatever is stored there is owned by the message from then on, so a later
// failure frees it with the rest.
static bool jp_value(struct jparser *j, const ProtobufCFieldDescriptor *f, void *slot)
{
	char num[64];
	bool quoted;
	int64_t sv = 0;
	uint64_t uv = 0;
	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE: {
		if (!jp_peek(j, '{'))
			return jp_fail(j, "expected an object");
		ProtobufCMessage *m = jp_new_message(j, f->descriptor);
		if (!m)
			return false;
		*(ProtobufCMessage **)slot = m;
		return jp_message(j, f->descriptor, m);
	}
	case PROTOBUF_C_TYPE_STRING: {
		if (!jp_string(j))
			return false;
		char *s = j->alloc->alloc(j->alloc->allocator_data, j->tmp.len + 1);
		if (!s)
			return jp_fail(j, "out of memory");
		memcpy(s, j->tmp.data, j->tmp.len + 1);
		*(char **)slot = s;
		return true;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return jp_string(j) && jp_bytes(j, f, slot);
	case PROTOBUF_C_TYPE_BOOL:
		if (jp_literal(j, "true"))
			*(protobuf_c_boolean *)slot = 1;
		else if (jp_literal(j, "false"))
			*(protobuf_c_boolean *)slot = 0;
		else
			return jp_fail(j, "expected true or false");
		return true;
	case PROTOBUF_C_TYPE_ENUM:
		if (jp_peek(j, '"')) {
			if (!jp_string(j))
				return false;
			const ProtobufCEnumValue *ev =
				protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, j->tmp.data);
			if (!ev)
				return jp_fail(j, "unknown enum name");
			*(int *)slot = ev->value;
			return true;
		}
		if (!jp_scalar_text(j, num, sizeof(num), &quoted) || !parse_integer(num, true, &sv, &uv) ||
		    sv < INT_MIN || sv > INT_MAX)
			return jp_fail(j, "bad enum value");
		*(int *)slot = (int)sv;
		return true;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		if (!jp_scalar_text(j, num, sizeof(num), &quoted))
			return false;
		double d;
		if (quoted && strcmp(num, "NaN") == 0) {
			d = NAN;
		} else if (quoted && strcmp(num, "Infinity") == 0) {
			d = INFINITY;
		} else if (quoted && strcmp(num, "-Infinity") == 0) {
			d = -INFINITY;
		} else {
			char *end;
			d = strtod(num, &end);
			if (*end || !*num || isspace((unsigned char)*num) || isinf(d) || isnan(d))
				return jp_fail(j, "bad number");
		}
		if (f->type == PROTOBUF_C_TYPE_FLOAT)
			*(float *)slot = (float)d;
		else
			*(double *)slot = d;
		return true;
	}
	default:
		break;
	}
	// The integer types.
	bool is_signed = f->type == PROTOBUF_C_TYPE_INT32 || f->type == PROTOBUF_C_TYPE_SINT32 ||
			 f->type == PROTOBUF_C_TYPE_SFIXED32 || f->type == PROTOBUF_C_TYPE_INT64 ||
			 f->type == PROTOBUF_C_TYPE_SINT64 || f->type == PROTOBUF_C_TYPE_SFIXED64;
	if (!jp_scalar_text(j, num, sizeof(num), &quoted) || !parse_integer(num, is_signed, &sv, &uv))
		return jp_fail(j, "bad integer");
	switch (field_size(f)) {
	case sizeof(int32_t):
		if (is_signed ? (sv < INT32_MIN || sv > INT32_MAX) : uv > UINT32_MAX)
			return jp_fail(j, "integer out of range");
		if (is_signed)
			*(int32_t *)slot = (int32_t)sv;
		else
			*(uint32_t *)slot = (uint32_t)uv;
		return true;
	default:
		if (is_signed)
			*(int64_t *)slot = sv;
		else
			*(uint64_t *)slot = uv;
		return true;
	}
}

static bool jp_repeated(struct jparser *j, const ProtobufCFieldDescriptor *f, ProtobufCMessage *msg)
{
	size_t *count = (size_t *)((char *)msg + f->quantifier_offset);
	void **array = (void **)((char *)msg + f->offset);
	size_t size = field_size(f), cap = 0;
	if (!jp_eat(j, '['))
		return jp_fail(j, "expected an array");
	if (jp_eat(j, ']'))
		return true;
	do {
		if (*count == cap) {
			// Grown by hand: the allocator has no realloc.
			size_t ncap = cap ? cap * 2 : 4;
			if (ncap > MAX_DECODED / size)
				return jp_fail(j, "array too long");
			void *bigger = j->alloc->alloc(j->alloc->allocator_data, ncap * size);
			if (!bigger)
				return jp_fail(j, "out of memory");
			memset(bigger, 0, ncap * size);
			if (*array) {
				memcpy(bigger, *array, *count * size);
				j->alloc->free(j->alloc->allocator_data, *array);
			}
			*array = bigger;
			cap = ncap;
		}
		void *slot = (char *)*array + *count * size;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			// Counted before it is filled, so a failure inside frees it.
			if (!jp_peek(j, '{'))
				return jp_fail(j, "expected an object");
			ProtobufCMessage *m = jp_new_message(j, f->descriptor);
			if (!m)
				return false;
			*(ProtobufCMessage **)slot = m;
			(*count)++;
			if (!jp_message(j, f->descriptor, m))
				return false;
		} else {
			if (!jp_value(j, f, slot))
				return false;
			(*count)++;
		}
	} while (jp_eat(j, ','));
	return jp_eat(j, ']') || jp_fail(j, "expected ']'");
}

static bool jp_message(struct jparser *j, const ProtobufCMessageDescriptor *desc, ProtobufCMessage *msg)
{
	if (++j->depth > MAX_NESTING)
		return jp_fail(j, "nested too deeply");
	if (!jp_eat(j, '{'))
		return jp_fail(j, "expected an object");
	uint64_t seen = 0;	// by field index; OTLP messages have fewer than 64 fields
	if (!jp_eat(j, '}')) {
		do {
			if (!jp_string(j))
				return false;
			// lowerCamelCase to the proto name: traceId -> trace_id.
			char name[64];
			size_t n = 0;
			bool fits = true;
			for (size_t i = 0; i < j->tmp.len && fits; i++) {
				char c = j->tmp.data[i];
				if (isupper((unsigned char)c)) {
					fits = n + 2 < sizeof(name);
					if (fits) {
						name[n++] = '_';
						name[n++] = (char)tolower((unsigned char)c);
					}
				} else {
					fits = n + 1 < sizeof(name) && c != '\0';
					if (fits)
						name[n++] = c;
				}
			}
			name[n] = '\0';
			if (!jp_eat(j, ':'))
				return jp_fail(j, "expected ':'");
			const ProtobufCFieldDescriptor *f =
				fits ? protobuf_c_message_descriptor_get_field_by_name(desc, name) : NULL;
			if (!f) {
				// Unknown fields are ignored, as the OTLP spec asks.
				if (!jp_skip_value(j))
					return false;
				continue;
			}
			size_t index = (size_t)(f - desc->fields);
			if (index >= 64 || (seen & (1ull << index)))
				return jp_fail(j, "duplicate field");
			seen |= 1ull << index;
			if (jp_literal(j, "null"))
				continue;	// null means the default
			if (f->label == PROTOBUF_C_LABEL_REPEATED) {
				if (!jp_repeated(j, f, msg))
					return false;
				continue;
			}
			if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
				uint32_t *which = (uint32_t *)((char *)msg + f->quantifier_offset);
				if (*which != 0)
					return jp_fail(j, "more than one value in a oneof");
				// Set first, so that whatever the member gets is freed
				// on failure.
				*which = f->id;
			}
			if (!jp_value(j, f, (char *)msg + f->offset))
				return false;
		} while (jp_eat(j, ','));
		if (!jp_eat(j, '}'))
			return jp_fail(j, "expected '}'");
	}
	j->depth--;
	return true;
}

static Opentelemetry__Proto__ExportTraceServiceRequest *json_decode(const uint8_t *data, size_t len,
								    ProtobufCAllocator *alloc, char *error,
								    size_t error_size)
{
	struct jparser j = { .p = (const char *)data, .end = (const char *)data + len, .alloc = alloc };
	const ProtobufCMessageDescriptor *desc = &opentelemetry__proto__export_trace_service_request__descriptor;
	ProtobufCMessage *m = jp_new_message(&j, desc);
	bool ok = m && jp_message(&j, desc, m);
	if (ok) {
		jp_ws(&j);
		if (j.p != j.end)
			ok = jp_fail(&j, "trailing data after the object");
	}
	sb_free(&j.tmp);
	if (!ok) {
		protobuf_c_message_free_unpacked(m, alloc);
		snprintf(error, error_size, "%s at byte %zu", j.error ? j.error : "bad JSON",
			 (size_t)(j.p - (const char *)data));
		return NULL;
	}
	return (Opentelemetry__Proto__ExportTraceServiceRequest *)m;
}

/* ---------------------------------------------------------------- handling a request */

static size_t count_spans(const Opentelemetry__Proto__ExportTraceServiceRequest *req)
{
	size_t n = 0;
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__ResourceSpans *rs = req->resource_spans[i];
		for (size_t j = 0; j < rs->n_scope_spans; j++)
			n += rs->scope_spans[j]->n_spans;
	}
	return n;
}

// Writes the spans of a decoded request to --jsonl and to the tree (printed now,
// or kept for later under --tree-at-exit).
static void output_spans(const Opentelemetry__Proto__ExportTraceServiceRequest *req, size_t nspans)
{
	struct sbuf jl = { 0 };
	struct rec_list recs = { 0 };
	if (!opt.quiet && nspans) {
		recs.v = calloc(nspans, sizeof(*recs.v));
		recs.cap = recs.v ? nspans : 0;
	}
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__ResourceSpans *rs = req->resource_spans[i];
		const char *service = service_of(rs->resource);
		struct sbuf res = { 0 };
		if (jsonl_file) {
			if (rs->resource)
				json_attrs(&res, rs->resource->attributes, rs->resource->n_attributes);
			else
				sb_puts(&res, "{}");
		}
		for (size_t j = 0; j < rs->n_scope_spans; j++) {
			const Opentelemetry__Proto__ScopeSpans *ss = rs->scope_spans[j];
			const char *scope = ss->scope ? ss->scope->name : "";
			for (size_t k = 0; k < ss->n_spans; k++) {
				const Opentelemetry__Proto__Span *s = ss->spans[k];
				if (jsonl_file && !res.failed)
					json_span(&jl, s, service ? service : "", scope, res.data);
				if (recs.n < recs.cap && rec_from_span(&recs.v[recs.n], s, service))
					recs.n++;
			}
		}
		sb_free(&res);
	}

	struct sbuf tree = { 0 };
	if (opt.tree_at_exit) {
		pthread_mutex_lock(&store_lock);
		for (size_t i = 0; i < recs.n; i++) {
			if (stored.n == stored.cap && stored.n < MAX_STORED_SPANS) {
				size_t cap = stored.cap ? stored.cap * 2 : 1024;
				struct span_rec *p = realloc(stored.v, cap * sizeof(*p));
				if (p) {
					stored.v = p;
					stored.cap = cap;
				}
			}
			if (stored.n < stored.cap && stored.n < MAX_STORED_SPANS) {
				stored.v[stored.n++] = recs.v[i];
			} else {
				rec_free_fields(&recs.v[i]);
				stored_dropped++;
			}
		}
		pthread_mutex_unlock(&store_lock);
		recs.n = 0;	// ownership moved to the store
	} else if (!opt.quiet) {
		render_traces(&tree, recs.v, recs.n);
	}
	rec_list_free(&recs);

	if (jl.failed) {
		// Keep the complete lines only.
		while (jl.len > 0 && jl.data[jl.len - 1] != '\n')
			jl.len--;
	}
	pthread_mutex_lock(&output_lock);
	if (jsonl_file && jl.len) {
		fwrite(jl.data, 1, jl.len, jsonl_file);
		fflush(jsonl_file);
	}
	if (jl.failed || tree.failed)
		fputs("otlp-sink: out of memory formatting spans\n", stderr);
	if (tree.len) {
		fwrite(tree.data, 1, tree.len, stdout);
		fflush(stdout);
	}
	pthread_mutex_unlock(&output_lock);
	sb_free(&jl);
	sb_free(&tree);
}

struct header_list {
	char **names;	// lowercased
	size_t n;
	size_t cap;
	bool failed;
};

// Request headers as a JSON object with lowercased names; a header sent more
// than once is joined with ", " (RFC 9110 5.3), so JSON keys stay unique.
static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				      const char *value, size_t value_size)
{
	(void)kind;
	struct header_list *h = cls;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		char **p = realloc(h->names, cap * sizeof(*p));
		if (!p) {
			h->failed = true;
			return MHD_NO;
		}
		h->names = p;
		h->cap = cap;
	}
	char *name = strndup(key, key_size);
	if (!name) {
		h->failed = true;
		return MHD_NO;
	}
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	h->names[h->n++] = name;
	(void)value;
	(void)value_size;
	return MHD_YES;
}

struct header_join {
	const char *name;
	struct sbuf value;
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	(void)kind;
	struct header_join *j = cls;
	if (key_size == strlen(j->name) && strncasecmp(key, j->name, key_size) == 0) {
		if (j->value.len)
			sb_puts(&j->value, ", ");
		sb_put(&j->value, value ? value : "", value ? value_size : 0);
	}
	return MHD_YES;
}

static void headers_to_json(struct MHD_Connection *c, struct sbuf *out)
{
	struct header_list h = { 0 };
	MHD_get_connection_values_n(c, MHD_HEADER_KIND, collect_header, &h);
	sb_putc(out, '{');
	bool first = true;
	for (size_t i = 0; i < h.n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(h.names[k], h.names[i]) == 0;
		if (seen)
			continue;
		struct header_join j = { .name = h.names[i] };
		MHD_get_connection_values_n(c, MHD_HEADER_KIND, join_header, &j);
		if (!first)
			sb_putc(out, ',');
		first = false;
		json_str(out, h.names[i]);
		sb_putc(out, ':');
		json_strn(out, j.value.data ? j.value.data : "", j.value.len);
		sb_free(&j.value);
	}
	sb_putc(out, '}');
	if (h.failed)
		out->failed = true;
	for (size_t i = 0; i < h.n; i++)
		free(h.names[i]);
	free(h.names);
}

static char *header_dup(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	return v ? strdup(v) : NULL;
}

static void log_request(const struct request *r, int status, size_t nspans, const char *note)
{
	if (requests_file) {
		struct sbuf b = { 0 };
		sb_puts(&b, "{\"path\":");
		json_str(&b, r->path);
		sb_puts(&b, ",\"method\":");
		json_str(&b, r->method);
		sb_printf(&b, ",\"status\":%d,\"content_type\":", status);
		json_str(&b, r->content_type);
		sb_puts(&b, ",\"content_encoding\":");
		json_str(&b, r->content_encoding);
		sb_puts(&b, ",\"user_agent\":");
		json_str(&b, r->user_agent);
		sb_printf(&b, ",\"spans\":%zu,\"bytes\":%" PRIu64 ",\"headers\":", nspans, r->body_total);
		sb_puts(&b, !r->headers_json.failed && r->headers_json.data ? r->headers_json.data : "{}");
		sb_puts(&b, "}\n");
		pthread_mutex_lock(&output_lock);
		if (!b.failed)
			fwrite(b.data, 1, b.len, requests_file);
		fflush(requests_file);
		pthread_mutex_unlock(&output_lock);
		sb_free(&b);
	}
	if (!opt.quiet) {
		// The path is the client's: keep control characters off the terminal.
		char *method = display_dup(r->method, 32), *path = display_dup(r->path, MAX_DISPLAY);
		pthread_mutex_lock(&output_lock);
		fprintf(stderr, "otlp-sink: %s %s %d spans=%zu bytes=%" PRIu64 "%s%s\n", method ? method : "?",
			path ? path : "?", status, nspans, r->body_total, note ? " " : "", note ? note : "");
		fflush(stderr);
		pthread_mutex_unlock(&output_lock);
		free(method);
		free(path);
	}
}

static enum MHD_Result respond(struct MHD_Connection *c, struct request *r, int status, const void *body,
			       size_t len, const char *content_type, bool retry_after, size_t nspans,
			       const char *note)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
	if (retry_after && opt.retry_after >= 0) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%ld", opt.retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, tmp);
	}
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES) {
		r->answered = true;
		log_request(r, status, nspans, note);
	}
	return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, struct request *r, int status, const char *text)
{
	return respond(c, r, status, text, strlen(text), "text/plain; charset=utf-8", false, 0, NULL);
}

static void sleep_ms(long ms)
{
	// In slices, so that a stopping sink is not held up by --delay-ms.
	while (ms > 0 && !atomic_load(&stopping)) {
		long step = ms < 50 ? ms : 50;
		struct timespec ts = { step / 1000, (step % 1000) * 1000000L };
		nanosleep(&ts, NULL);
		ms -= step;
	}
}

static enum MHD_Result respond_decode_error(struct MHD_Connection *c, struct request *r, enum decode_error e,
					    const char *what)
{
	char text[256];
	switch (e) {
	case DECODE_TOO_LARGE:
		snprintf(text, sizeof(text), "otlp-sink: %s is too large\n", what);
		return respond_text(c, r, MHD_HTTP_CONTENT_TOO_LARGE, text);
	case DECODE_BUSY:
		snprintf(text, sizeof(text), "otlp-sink: out of memory for requests in flight, retry later\n");
		return respond(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, text, strlen(text), "text/plain; charset=utf-8",
			       false, 0, NULL);
	case DECODE_UNSUPPORTED:
		snprintf(text, sizeof(text), "otlp-sink: unsupported %s\n", what);
		return respond_text(c, r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, text);
	default:
		snprintf(text, sizeof(text), "otlp-sink: cannot decode %s\n", what);
		return respond_text(c, r, MHD_HTTP_BAD_REQUEST, text);
	}
}

// The body is complete: apply fault modes, then decode, record and answer.
static enum MHD_Result handle_post(struct MHD_Connection *c, struct request *r)
{
	if (opt.delay_ms > 0)
		sleep_ms(opt.delay_ms);
	if (r->too_large)
		return respond_decode_error(c, r, DECODE_TOO_LARGE, "request body");
	if (r->busy)
		return respond_decode_error(c, r, DECODE_BUSY, "request body");

	long nth = atomic_fetch_add(&post_count, 1);
	int injected = 0;
	if (opt.fail_first > 0) {
		if (nth < opt.fail_first)
			injected = opt.status ? opt.status : MHD_HTTP_SERVICE_UNAVAILABLE;
	} else if (opt.status) {
		injected = opt.status;
	}
	if (injected) {
		char text[80];
		if (injected >= 200 && injected < 300)
			return respond(c, r, injected, "", 0, "application/x-protobuf", true, 0, "(injected)");
		snprintf(text, sizeof(text), "otlp-sink: injected status %d\n", injected);
		return respond(c, r, injected, text, strlen(text), "text/plain; charset=utf-8", true, 0, "(injected)");
	}

	// Media type: protobuf (also when none is given, as some clients omit it) or
	// OTLP/JSON; anything else gets 415.
	bool is_json = false;
	if (r->content_type) {
		char mt[128];
		size_t n = strcspn(r->content_type, ";");
		if (n >= sizeof(mt))
			n = sizeof(mt) - 1;
		memcpy(mt, r->content_type, n);
		while (n > 0 && isspace((unsigned char)mt[n - 1]))
			n--;
		mt[n] = '\0';
		const char *m = mt;
		while (isspace((unsigned char)*m))
			m++;
		is_json = strcasecmp(m, "application/json") == 0;
		if (!is_json && strcasecmp(m, "application/x-protobuf") != 0 && strcasecmp(m, "application/protobuf") != 0)
			return respond_decode_error(c, r, DECODE_UNSUPPORTED,
						    "content type (send application/x-protobuf or application/json)");
	}

	const uint8_t *data = r->body;
	size_t len = r->body_len;
	uint8_t *inflated = NULL;
	size_t inflated_len = 0, inflated_cap = 0;
	const char *enc = r->content_encoding ? r->content_encoding : "";
	bool compressed = has_prefix_ci(enc, "gzip") || has_prefix_ci(enc, "x-gzip") || has_prefix_ci(enc, "deflate");
	if (!compressed && *enc && strcasecmp(enc, "identity") != 0)
		return respond_decode_error(c, r, DECODE_UNSUPPORTED, "content encoding (use gzip)");
	// Some clients compress without saying so; neither a protobuf request nor
	// JSON can start with 0x1f, so the gzip magic is unambiguous.
	if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b)
		compressed = true;
	if (compressed) {
		enum decode_error e = inflate_body(data, len, &inflated, &inflated_len, &inflated_cap);
		if (e != DECODE_OK) {
			release_buffer(&inflated, &inflated_cap);
			return respond_decode_error(c, r, e, e == DECODE_BAD ? "gzip body" : "inflated body");
		}
		data = inflated;
		len = inflated_len;
	}

	ProtobufCAllocator alloc = { pb_alloc, pb_free, r };
	if (!is_json)
		alloc = (ProtobufCAllocator){ arena_alloc, arena_free, r };
	r->alloc_error = DECODE_OK;
	Opentelemetry__Proto__ExportTraceServiceRequest *req = NULL;
	char json_error[96] = "";
	if (is_json) {
		req = json_decode(data, len, &alloc, json_error, sizeof(json_error));
	} else if (wire_check(data, len, &opentelemetry__proto__export_trace_service_request__descriptor, 1)) {
		req = opentelemetry__proto__export_trace_service_request__unpack(&alloc, len, data);
	}
	release_buffer(&inflated, &inflated_cap);
	// The raw body is no longer needed: give its budget back before printing.
	release_buffer(&r->body, &r->body_cap);
	if (!req) {
		char what[160];
		snprintf(what, sizeof(what), "%s%s%s", is_json ? "OTLP/JSON request" : "ExportTraceServiceRequest",
			 *json_error ? ": " : "", json_error);
		arena_release(r);
		return respond_decode_error(c, r, r->alloc_error ? r->alloc_error : DECODE_BAD, what);
	}

	size_t nspans = count_spans(req);
	output_spans(req, nspans);
	opentelemetry__proto__export_trace_service_request__free_unpacked(req, &alloc);
	arena_release(r);

	Opentelemetry__Proto__ExportTraceServiceResponse out = OPENTELEMETRY__PROTO__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__ExportTracePartialSuccess partial = OPENTELEMETRY__PROTO__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	char message[96];
	if (opt.partial_success >= 0) {
		snprintf(message, sizeof(message), "otlp-sink: rejected %ld spans (--partial-success)",
			 opt.partial_success);
		partial.rejected_spans = opt.partial_success;
		partial.error_message = message;
		out.partial_success = &partial;
	}
	if (is_json) {
		// The proto3 JSON mapping writes int64 as a string.
		struct sbuf b = { 0 };
		if (opt.partial_success >= 0) {
			sb_printf(&b, "{\"partialSuccess\":{\"rejectedSpans\":\"%ld\",\"errorMessage\":", opt.partial_success);
			json_str(&b, message);
			sb_puts(&b, "}}");
		} else {
			sb_puts(&b, "{}");
		}
		enum MHD_Result ret = respond(c, r, MHD_HTTP_OK, b.failed ? "{}" : b.data, b.failed ? 2 : b.len,
					      "application/json", false, nspans, compressed ? "json gzip" : "json");
		sb_free(&b);
		return ret;
	}
	uint8_t packed[256];
	size_t packed_len = opentelemetry__proto__export_trace_service_response__pack(&out, packed);
	return respond(c, r, MHD_HTTP_OK, packed, packed_len, "application/x-protobuf", false, nspans,
		       compressed ? "gzip" : NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	(void)cls;
	(void)version;
	struct request *r = *con_cls;
	if (!r) {
		// First call: only the headers are known.
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		r->method = strdup(method);
		r->path = strdup(url);
		r->content_type = header_dup(c, MHD_HTTP_HEADER_CONTENT_TYPE);
		r->content_encoding = header_dup(c, MHD_HTTP_HEADER_CONTENT_ENCODING);
		r->user_agent = header_dup(c, MHD_HTTP_HEADER_USER_AGENT);
		headers_to_json(c, &r->headers_json);
		if (!r->method || !r->path)
			return MHD_NO;
		if (strcmp(url, TRACES_PATH) != 0) {
			r->early_status = MHD_HTTP_NOT_FOUND;
		} else if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
			r->early_status = MHD_HTTP_METHOD_NOT_ALLOWED;
		} else {
			// Refuse an announced oversized body before it is sent (the
			// client's Expect: 100-continue is answered with this). The
			// buffer itself grows only as data arrives, so a client that
			// announces much and sends little holds little.
			const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								     MHD_HTTP_HEADER_CONTENT_LENGTH);
			if (cl) {
				errno = 0;
				unsigned long long want = strtoull(cl, NULL, 10);
				if (errno == ERANGE || want > MAX_BODY) {
					r->too_large = true;
					return respond_decode_error(c, r, DECODE_TOO_LARGE, "request body");
				}
			}
		}
		return MHD_YES;
	}

	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		r->body_total += n;
		if (r->early_status || r->busy || r->too_large || r->answered)
			return MHD_YES;	// dropping the body
		if (r->body_len + n > MAX_BODY) {
			r->too_large = true;
			release_buffer(&r->body, &r->body_cap);
			r->body_len = 0;
			// Answering now ends the upload early; should MHD refuse a
			// response at this point, the rest is dropped and 413 sent at the end.
			respond_decode_error(c, r, DECODE_TOO_LARGE, "request body");
			return MHD_YES;
		}
		enum decode_error e = grow_buffer(&r->body, &r->body_cap, r->body_len + n, MAX_BODY);
		if (e != DECODE_OK) {
			r->busy = true;
			release_buffer(&r->body, &r->body_cap);
			r->body_len = 0;
			return MHD_YES;
		}
		memcpy(r->body + r->body_len, upload_data, n);
		r->body_len += n;
		return MHD_YES;
	}

	// Last call: the whole request has arrived.
	if (r->answered)
		return MHD_YES;
	if (r->early_status == MHD_HTTP_NOT_FOUND)
		return respond_text(c, r, MHD_HTTP_NOT_FOUND, "otlp-sink: not found (traces go to POST /v1/traces)\n");
	if (r->early_status == MHD_HTTP_METHOD_NOT_ALLOWED)
		return respond_text(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "otlp-sink: only POST is allowed here\n");
	return handle_post(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct request *r = *con_cls;
	if (!r)
		return;
	release_buffer(&r->body, &r->body_cap);
	free(r->method);
	free(r->path);
	free(r->content_type);
	free(r->content_encoding);
	free(r->user_agent);
	sb_free(&r->headers_json);
	free(r);
	*con_cls = NULL;
}

/* ---------------------------------------------------------------- sockets and main */

static void usage(FILE *f)
{
	fputs("usage: otlp-sink [options]\n"
	      "Receives OTLP/HTTP traces (POST /v1/traces, protobuf or JSON, optionally gzip) and prints them.\n"
	      "  --port N             listen port (default 4318; 0 picks a free one)\n"
	      "  --bind ADDR          listen address (default 127.0.0.1)\n"
	      "  --jsonl FILE         append one JSON object per span\n"
	      "  --requests-log FILE  append one JSON object per HTTP request\n"
	      "  --tree-at-exit       print trees only at exit and on SIGUSR1, grouping across requests\n"
	      "  --quiet              print no trees and no per-request summary on stderr\n"
	      "fault injection:\n"
	      "  --status CODE        answer every POST with CODE, without decoding\n"
	      "  --retry-after S      add Retry-After: S to injected answers\n"
	      "  --fail-first N       answer the first N POSTs with 503 (or --status CODE)\n"
	      "  --delay-ms N         wait N ms before answering each POST\n"
	      "  --partial-success N  answer 200 with partial_success.rejected_spans = N\n"
	      "  --black-hole         accept connections and never answer\n"
	      "The first line on stdout is always 'listening on ADDR:PORT'.\n",
	      f);
}

static long parse_num(const char *s, const char *what, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "otlp-sink: bad %s '%s' (want %ld..%ld)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	enum { O_PORT = 256, O_BIND, O_JSONL, O_REQLOG, O_TREE, O_QUIET, O_STATUS, O_RETRY, O_FAIL,
	       O_DELAY, O_HOLE, O_PARTIAL, O_HELP };
	static const struct option longopts[] = {
		{ "port", required_argument, NULL, O_PORT },
		{ "bind", required_argument, NULL, O_BIND },
		{ "jsonl", required_argument, NULL, O_JSONL },
		{ "requests-log", required_argument, NULL, O_REQLOG },
		{ "tree-at-exit", no_argument, NULL, O_TREE },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "status", required_argument, NULL, O_STATUS },
		{ "retry-after", required_argument, NULL, O_RETRY },
		{ "fail-first", required_argument, NULL, O_FAIL },
		{ "delay-ms", required_argument, NULL, O_DELAY },
		{ "black-hole", no_argument, NULL, O_HOLE },
		{ "partial-success", required_argument, NULL, O_PARTIAL },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case O_PORT: opt.port = (int)parse_num(optarg, "port", 0, 65535); break;
		case O_BIND: opt.bind = optarg; break;
		case O_JSONL: opt.jsonl_path = optarg; break;
		case O_REQLOG: opt.requests_log_path = optarg; break;
		case O_TREE: opt.tree_at_exit = true; break;
		case O_QUIET: opt.quiet = true; break;
		case O_STATUS: opt.status = (int)parse_num(optarg, "status", 100, 599); break;
		case O_RETRY: opt.retry_after = parse_num(optarg, "retry-after", 0, 86400 * 365); break;
		case O_FAIL: opt.fail_first = parse_num(optarg, "fail-first", 0, LONG_MAX); break;
		case O_DELAY: opt.delay_ms = parse_num(optarg, "delay-ms", 0, 3600 * 1000L); break;
		case O_HOLE: opt.black_hole = true; break;
		case O_PARTIAL: opt.partial_success = parse_num(optarg, "partial-success", 0, LONG_MAX); break;
		case 'h':
		case O_HELP: usage(stdout); exit(0);
		default: usage(stderr); exit(2);
		}
	}
	// Quiet means no trees at all, not even at exit.
	if (opt.quiet)
		opt.tree_at_exit = false;
	if (optind < argc) {
		fprintf(stderr, "otlp-sink: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
}

static bool resolve_bind(struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(opt.bind, NULL, &hints, &ai);
	if (rc || !ai) {
		fprintf(stderr, "otlp-sink: cannot resolve bind address '%s': %s\n", opt.bind, gai_strerror(rc));
		return false;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)opt.port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)opt.port);
	return true;
}

static void announce(const struct sockaddr_storage *ss, unsigned port)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
	pthread_mutex_lock(&output_lock);
	if (ss->ss_family == AF_INET6)
		printf("listening on [%s]:%u\n", host, port);
	else
		printf("listening on %s:%u\n", host, port);
	fflush(stdout);
	pthread_mutex_unlock(&output_lock);
}

// --black-hole: a bare TCP listener that takes connections, reads and discards
// whatever arrives, and never answers, to test exporter timeouts. Returns at
// SIGTERM/SIGINT.
static int run_black_hole(const struct sockaddr_storage *ss, socklen_t sslen, int sigfd)
{
	enum { MAX_HELD = 1024 };
	int lfd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (const struct sockaddr *)ss, sslen) < 0 || listen(lfd, 128) < 0) {
		fprintf(stderr, "otlp-sink: cannot listen on %s:%d: %s\n", opt.bind, opt.port, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return 1;
	}
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	getsockname(lfd, (struct sockaddr *)&bound, &blen);
	announce(ss, ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
						       : ((struct sockaddr_in6 *)&bound)->sin6_port));

	static struct pollfd fds[2 + MAX_HELD];
	size_t nheld = 0;
	fds[0] = (struct pollfd){ .fd = sigfd, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	for (;;) {
		// At the cap, stop accepting: further clients wait in the backlog,
		// which to them looks the same.
		fds[1].fd = nheld < MAX_HELD ? lfd : -1;
		if (poll(fds, 2 + nheld, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sigfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGUSR1)
				break;
		}
		if (fds[1].fd >= 0 && (fds[1].revents & POLLIN)) {
			int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (cfd >= 0) {
				fds[2 + nheld++] = (struct pollfd){ .fd = cfd, .events = POLLIN };
				if (!opt.quiet) {
					fprintf(stderr, "otlp-sink: black hole holds a connection (%zu open)\n", nheld);
					fflush(stderr);
				}
			}
		}
		for (size_t i = 0; i < nheld;) {
			struct pollfd *p = &fds[2 + i];
			if (p->revents) {
				char junk[16384];
				ssize_t n = read(p->fd, junk, sizeof(junk));
				if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
					close(p->fd);
					*p = fds[2 + --nheld];
					continue;
				}
			}
			i++;
		}
	}
	for (size_t i = 0; i < nheld; i++)
		close(fds[2 + i].fd);
	close(lfd);
	return 0;
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);

	// Signals are taken synchronously by the main thread; blocking them before
	// any thread starts keeps them away from MHD's threads.
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (opt.jsonl_path && !(jsonl_file = fopen(opt.jsonl_path, "a"))) {
		fprintf(stderr, "otlp-sink: cannot open %s: %s\n", opt.jsonl_path, strerror(errno));
		return 1;
	}
	if (opt.requests_log_path && !(requests_file = fopen(opt.requests_log_path, "a"))) {
		fprintf(stderr, "otlp-sink: cannot open %s: %s\n", opt.requests_log_path, strerror(errno));
		return 1;
	}
	struct sockaddr_storage ss = { 0 };
	socklen_t sslen = 0;
	if (!resolve_bind(&ss, &sslen))
		return 1;

	if (opt.black_hole) {
		int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
		if (sigfd < 0) {
			perror("otlp-sink: signalfd");
			return 1;
		}
		int rc = run_black_hole(&ss, sslen, sigfd);
		close(sigfd);
		return rc;
	}

	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (!opt.quiet)
		flags |= MHD_USE_ERROR_LOG;
	struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)opt.port, NULL, NULL, on_request, NULL,
						MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
						MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
						MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
						MHD_OPTION_CONNECTION_TIMEOUT, 120u,
						// Room for large custom OTLP headers.
						MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)256 * 1024,
						MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "otlp-sink: cannot listen on %s:%d: %s\n", opt.bind, opt.port, strerror(errno));
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	announce(&ss, info && info->port ? info->port : (unsigned)opt.port);

	for (;;) {
		int sig = sigwaitinfo(&sigs, NULL);
		if (sig < 0)
			continue;	// EINTR
		if (sig == SIGUSR1) {
			if (opt.tree_at_exit)
				print_stored();
			continue;
		}
		break;
	}
	atomic_store(&stopping, true);
	MHD_stop_daemon(d);
	if (opt.tree_at_exit)
		print_stored();
	pthread_mutex_lock(&store_lock);
	rec_list_free(&stored);
	pthread_mutex_unlock(&store_lock);
	if (jsonl_file)
		fclose(jsonl_file);
	if (requests_file)
		fclose(requests_file);
	fflush(stdout);
	fflush(stderr);
	return 0;
}
