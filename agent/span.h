/* Spans: small records from a lock-free pool, attributes kept as their OTLP bytes; a finished span is encoded once, into the queue. */
#ifndef TRACEAGENT_SPAN_H
#define TRACEAGENT_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "context.h"

/*
 * An open span is a 512-byte record: a fixed header and a stream of the
 * span's variable fields (tracestate, name, attributes, events, links, the
 * status message), each already encoded as the OTLP protobuf field it will
 * be. A span whose fields outgrow the record moves them once to a 4 KB block.
 * span_end writes the whole Span message into the finished-span queue and
 * gives the record back: the queue holds only the bytes that will be sent,
 * and no other code ever frees a record.
 *
 * Built-in capacity; the configured OTEL_*_LIMITs apply on top (the effective
 * limit is the smaller of the two; README documents this).
 */
#define SPAN_MAX_ATTRS      40
#define SPAN_MAX_SUB_ATTRS  16   /* shared by all events and links of a span */
#define SPAN_MAX_EVENTS     4
#define SPAN_MAX_LINKS      4
#define SPAN_RECORD_SIZE    512
#define SPAN_BIG_SIZE       4096 /* the stream of a span that outgrows its record */

/* Same numbering as OTLP Span.SpanKind. */
enum span_kind {
	SPAN_KIND_UNSPECIFIED = 0,
	SPAN_KIND_INTERNAL = 1,
	SPAN_KIND_SERVER = 2,
	SPAN_KIND_CLIENT = 3,
	SPAN_KIND_PRODUCER = 4,
	SPAN_KIND_CONSUMER = 5,
};

/* Same numbering as OTLP Status.StatusCode. */
enum span_status {
	SPAN_STATUS_UNSET = 0,
	SPAN_STATUS_OK = 1,
	SPAN_STATUS_ERROR = 2,
};

enum span_attr_type {
	SPAN_ATTR_STRING = 1,
	SPAN_ATTR_BOOL,
	SPAN_ATTR_INT,
	SPAN_ATTR_DOUBLE,
	SPAN_ATTR_STRING_ARRAY,
};

/* Typed key/value used to pass event and link attributes. */
struct span_kv {
	const char *key;
	enum span_attr_type type;
	union {
		int64_t i;
		double d;
		bool b;
		struct { const char *p; size_t len; } s;
	} v;
};

struct span;

/* A finished span: its OTLP Span message (the queue's entries). */
struct span_bytes {
	const char *p;
	size_t len;
};

/* (Until every caller reads clock.h's names.) */
static inline uint64_t span_now_ns(void)
{
	return clock_now_ns();
}

/*
 * Starts a span. parent: NULL means the thread's current context; a context
 * with valid=false means "start a new trace". The new span's context is
 * always written to *out (also when the sampler says no: children and
 * outgoing headers then carry flags without the sampled bit).
 * Returns the record to fill in, or NULL when the span isn't recorded
 * (unsampled, agent disabled, or pool exhausted). Every setter below accepts
 * NULL, so hooks never branch on sampling.
 */
struct span *span_start(enum span_kind kind, const char *name, size_t name_len,
			const struct trace_context *parent, struct trace_context *out);

void span_set_name(struct span *s, const char *name, size_t len);
void span_set_start_time(struct span *s, uint64_t ns);
/* Attribute setters: a key that exists is overwritten; past the count limit
 * the attribute is dropped and counted; string values are cut to the length
 * limit at a UTF-8 character boundary, and to the room the span has left;
 * bytes that are not valid UTF-8 become '?'. The span_attr_* forms take the
 * key's length; the span_set_* wrappers compute it, at compile time for the
 * literal keys hooks use. */
void span_attr_str(struct span *s, const char *key, size_t klen, const char *val, size_t len);
void span_attr_int(struct span *s, const char *key, size_t klen, int64_t v);
void span_attr_double(struct span *s, const char *key, size_t klen, double v);
void span_attr_bool(struct span *s, const char *key, size_t klen, bool v);

/*
 * The inline setters below write an attribute straight into the record when
 * the usual case holds (a short ASCII value, a key not set before, room
 * left, under the limits), and call span_attr_* otherwise. Their keys must
 * be ASCII string literals: the key's bytes and bloom bit are then folded at
 * compile time, and the attribute costs a few dozen instructions.
 */

/* Inlined at every call site, so that a literal key's length, bytes and bloom bit fold to constants. */
#define SPAN_INLINE static inline __attribute__((always_inline))

/* The head of every record: what the inline setters touch (agent/span.c owns the rest). */
struct span_fast {
	char *stream;        /* the span's fields, as OTLP bytes */
	uint64_t bloom;      /* attribute keys set, for the overwrite check */
	uint16_t len, cap;   /* stream bytes used, and room */
	uint8_t n_attrs;
};

/* The effective attribute limits (span_pool_init sets them). */
extern uint32_t span_limit_attr_count, span_limit_attr_len;

#define SPAN_BLOOM_BIT(key, klen) \
	((klen) ? 1ull << (((klen) * 7u + (unsigned char)(key)[0] * 3u + (unsigned char)(key)[(klen) - 1]) & 63u) : 1ull)

/* Copies n bytes (n < 128) and says whether they were all ASCII: a word at
 * a time, the tail as one overlapping word. */
SPAN_INLINE bool span_copy_ascii_(char *dst, const char *src, size_t n)
{
	uint64_t acc = 0, w;
	if (n >= 8) {
		for (size_t i = 0; i + 8 <= n; i += 8) {
			__builtin_memcpy(&w, src + i, 8);
			__builtin_memcpy(dst + i, &w, 8);
			acc |= w;
		}
		__builtin_memcpy(&w, src + n - 8, 8);
		__builtin_memcpy(dst + n - 8, &w, 8);
		acc |= w;
	} else if (n >= 4) {
		uint32_t a, b;
		__builtin_memcpy(&a, src, 4);
		__builtin_memcpy(&b, src + n - 4, 4);
		__builtin_memcpy(dst, &a, 4);
		__builtin_memcpy(dst + n - 4, &b, 4);
		acc = a | b;
	} else {
		for (size_t i = 0; i < n; i++) {
			dst[i] = src[i];
			acc |= (unsigned char)src[i];
		}
	}
	return !(acc & 0x8080808080808080ull);
}

/* Room for need bytes, and the key new and under the count limit: the fast path. */
SPAN_INLINE char *span_fast_claim_(struct span *s, size_t need, uint64_t bit)
{
	struct span_fast *f = (struct span_fast *)s;
	if (__builtin_expect(!s, 0) || (size_t)f->len + need > f->cap || (f->bloom & bit) ||
	    f->n_attrs >= span_limit_attr_count)
		return NULL;
	return f->stream + f->len;
}

SPAN_INLINE void span_fast_commit_(struct span *s, size_t need, uint64_t bit)
{
	struct span_fast *f = (struct span_fast *)s;
	f->len = (uint16_t)(f->len + need);
	f->n_attrs++;
	f->bloom |= bit;
}

/* "attribute { key, value: " with one-byte lengths: kv and av are the
 * KeyValue's and the AnyValue's lengths. */
SPAN_INLINE char *span_fast_head_(char *p, const char *key, size_t klen, size_t kv, size_t av)
{
	p[0] = 0x4a;   /* Span.attributes */
	p[1] = (char)kv;
	p[2] = 0x0a;   /* KeyValue.key */
	p[3] = (char)klen;
	__builtin_memcpy(p + 4, key, klen);
	p += 4 + klen;
	p[0] = 0x12;   /* KeyValue.value */
	p[1] = (char)av;
	return p + 2;
}

SPAN_INLINE void span_set_str(struct span *s, const char *key, const char *val, size_t len)
{
	if (__builtin_expect(!s, 0))   /* not recorded: no call */
		return;
	const size_t klen = __builtin_strlen(key);
	const uint64_t bit = SPAN_BLOOM_BIT(key, klen);
	size_t need = klen + len + 8;
	char *p;
	if (klen + len < 120 && len <= span_limit_attr_len && (p = span_fast_claim_(s, need, bit))) {
		p = span_fast_head_(p, key, klen, need - 2, len + 2);
		p[0] = 0x0a;   /* AnyValue.string_value */
		p[1] = (char)len;
		if (__builtin_expect(span_copy_ascii_(p + 2, val, len), 1)) {
			span_fast_commit_(s, need, bit);
			return;
		}
	}
	span_attr_str(s, key, klen, val, len);   /* also what a non-ASCII value written above comes to */
}

SPAN_INLINE void span_set_cstr(struct span *s, const char *key, const char *val)
{
	span_set_str(s, key, val, __builtin_strlen(val));
}

SPAN_INLINE void span_set_int(struct span *s, const char *key, int64_t v)
{
	if (__builtin_expect(!s, 0))
		return;
	const size_t klen = __builtin_strlen(key);
	const uint64_t bit = SPAN_BLOOM_BIT(key, klen);
	uint64_t u = (uint64_t)v;
	char *p;
	if (klen < 100 && u < (1ull << 28)) {
		size_t vs = u < 0x80 ? 1 : u < 0x4000 ? 2 : u < 0x200000 ? 3 : 4;
		size_t need = klen + vs + 7;
		if ((p = span_fast_claim_(s, need, bit))) {
			p = span_fast_head_(p, key, klen, need - 2, vs + 1);
			*p++ = 0x18;   /* AnyValue.int_value */
			while (u >= 0x80) {
				*p++ = (char)(u | 0x80);
				u >>= 7;
			}
			*p = (char)u;
			span_fast_commit_(s, need, bit);
			return;
		}
	}
	span_attr_int(s, key, klen, v);
}

SPAN_INLINE void span_set_double(struct span *s, const char *key, double v)
{
	span_attr_double(s, key, __builtin_strlen(key), v);
}

SPAN_INLINE void span_set_bool(struct span *s, const char *key, bool v)
{
	span_attr_bool(s, key, __builtin_strlen(key), v);
}

void span_set_str_array(struct span *s, const char *key, const char *const *vals,
			const size_t *lens, size_t n);

/*
 * A set of attributes prepared once and added to many spans with one copy:
 * what every span of a connection or client shares (server address and
 * port, db.system.name, messaging.system, client id). Built by running the
 * usual setters on a scratch record, so limits and UTF-8 repair apply
 * exactly as they would span by span; kept as the encoded bytes.
 */
#define SPAN_BLOCK_MAX_ATTRS 8
#define SPAN_BLOCK_BYTES     512

struct span_attr_block {
	uint8_t n;                /* 0: empty (or could not be built), adds nothing */
	uint16_t len;
	uint64_t bloom;
	char bytes[SPAN_BLOCK_BYTES];
};

/* A zeroed record outside the pool, for building a block with the setters;
 * NULL when out of memory (the setters accept NULL). Never exported. */
struct span *span_scratch_new(void);
/* Copies the scratch record's attributes into b and frees the record. A
 * record holding more than a block can take leaves b empty. */
void span_attr_block_take(struct span_attr_block *b, struct span *scratch);
/* Adds the block's attributes to s, as the setters would have one by one. */
void span_attr_block_add(struct span *s, const struct span_attr_block *b);

/* Status: OK overrides ERROR, UNSET never overrides; the message is kept only with ERROR. */
void span_set_status(struct span *s, enum span_status st, const char *msg, size_t len);
void span_add_event(struct span *s, const char *name, uint64_t time_ns,
		    const struct span_kv *attrs, size_t n);
/* An "exception" event with exception.type and exception.message. */
void span_add_exception(struct span *s, const char *type, const char *msg, size_t msg_len);
void span_add_link(struct span *s, const struct trace_context *ctx,
		   const struct span_kv *attrs, size_t n);

/* The span's tracestate (inherited from its parent): its bytes and length. */
size_t span_trace_state(const struct span *s, const char **p);
/* The record's index in the pool, below span_pool_capacity(): hooks keep
 * per-span side data in arrays indexed by it. */
uint32_t span_index(const struct span *s);

/* Ends the span (end time now, or end_ns when non-zero), encodes it into the
 * finished-span queue and frees the record. The record must not be touched
 * afterwards. */
void span_end(struct span *s);
void span_end_at(struct span *s, uint64_t end_ns);
/* Frees the record without exporting it. */
void span_discard(struct span *s);
/* The same for a span the agent had to give up (a hook could not follow its
 * exchange: a request pipelined deeper than it keeps): counted as dropped. */
void span_drop(struct span *s);

/* The OTLP Span message of s as if it ended at end_ns (0: its current
 * state, end time unset), into out (at most cap bytes). Returns the length,
 * or 0 when it does not fit. For tests and tools: span_end does this itself. */
size_t span_encode(const struct span *s, uint64_t end_ns, char *out, size_t cap);

/* Counters for the exit summary and tests. */
struct span_stats {
	uint64_t started;        /* recorded spans started */
	uint64_t unsampled;      /* contexts made without a record */
	uint64_t ended;          /* handed to the queue */
	uint64_t dropped_full;   /* queue full at end */
	uint64_t dropped_pool;   /* no free record at start */
	uint64_t dropped_unfollowed;  /* started, then given up by a hook (span_drop) */
	uint64_t big;            /* spans whose fields outgrew their record */
};
void span_stats_get(struct span_stats *out);

/* Pool lifecycle: span_pool_init sizes the pool for open spans (the queue
 * holds finished ones as bytes); memory is reserved but only touched as
 * records are used. */
bool span_pool_init(uint32_t max_queue);
uint32_t span_pool_capacity(void);

#endif
