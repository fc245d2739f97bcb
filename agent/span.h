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

static inline void span_set_str(struct span *s, const char *key, const char *val, size_t len)
{
	span_attr_str(s, key, __builtin_strlen(key), val, len);
}

static inline void span_set_cstr(struct span *s, const char *key, const char *val)
{
	span_attr_str(s, key, __builtin_strlen(key), val, __builtin_strlen(val));
}

static inline void span_set_int(struct span *s, const char *key, int64_t v)
{
	span_attr_int(s, key, __builtin_strlen(key), v);
}

static inline void span_set_double(struct span *s, const char *key, double v)
{
	span_attr_double(s, key, __builtin_strlen(key), v);
}

static inline void span_set_bool(struct span *s, const char *key, bool v)
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
