/* Trace context (W3C ids, flags, tracestate, baggage), the thread's current context, and the re-entrancy guard. */
#ifndef TRACEAGENT_CONTEXT_H
#define TRACEAGENT_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "perthread.h"

#define TRACE_FLAG_SAMPLED 0x01u
#define TRACE_FLAG_RANDOM  0x02u  /* W3C Trace Context Level 2: rightmost 7 bytes of trace-id are random */

/* W3C asks vendors to propagate at least 512 characters of tracestate. */
#define TRACESTATE_MAX 512
/* W3C Baggage allows 8192 bytes; we carry up to this many and drop whole
 * members from the end beyond it, to keep contexts cheap to copy. */
#define BAGGAGE_MAX 2048

struct trace_context {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;            /* W3C trace-flags as received or decided */
	bool valid;               /* false: no context (start a new trace) */
	bool remote;              /* extracted from a carrier rather than made here */
	uint16_t tracestate_len;  /* bytes of buf[0..] holding tracestate */
	uint16_t baggage_len;     /* bytes of buf[tracestate_len..] holding baggage */
	/* Variable-length tail: copies move only the used part (see context_copy). */
	char buf[TRACESTATE_MAX + BAGGAGE_MAX];
};

static inline const char *context_tracestate(const struct trace_context *c)
{
	return c->buf;
}

static inline const char *context_baggage(const struct trace_context *c)
{
	return c->buf + c->tracestate_len;
}

/* Copies only the header and the used bytes of the tail. */
static inline void context_copy(struct trace_context *dst, const struct trace_context *src)
{
	memcpy(dst, src, offsetof(struct trace_context, buf) + src->tracestate_len + src->baggage_len);
}

static inline void context_clear(struct trace_context *c)
{
	memset(c, 0, offsetof(struct trace_context, buf));
}

/* --- the thread's current context --- */

struct context_token {
	struct trace_context prev;
};

/* The current context of this thread; ->valid is false when there is none.
 * Falls back to the process's inherited parent (TRACEPARENT at start) when set. */
const struct trace_context *context_current(void);

/* This thread's own current context (a span of ours is current when ->valid),
 * without the fallback to the process's inherited parent. */
const struct trace_context *context_thread(void);

/* Makes *ctx current, saving the previous one in *tok. Pairs with context_detach. */
void context_attach(const struct trace_context *ctx, struct context_token *tok);
void context_detach(const struct context_token *tok);

/* The fixed part of a context: ids, flags and the tail's lengths. */
struct context_head {
	unsigned char bytes[offsetof(struct trace_context, buf)];
};

/*
 * Makes child (a span just started under the thread's current context) current,
 * saving only the head it replaces in *saved: a child shares its parent's
 * tracestate and baggage, so the head is all that changes, and a frame kept
 * per traced call (hooks/funcs.c) stays a few dozen bytes instead of a
 * context_token's 2.6 KB. False, with nothing changed, when the head alone
 * could not undo it (the thread's own context is not the parent and holds a
 * tail) or the thread has no memory for a context.
 */
bool context_enter_child(const struct trace_context *child, struct context_head *saved);
/* Undoes context_enter_child, if the span span_id is still the current one
 * (a span started inside and not ended keeps its place). */
void context_leave_child(const uint8_t span_id[8], const struct context_head *saved);

/* Context used as parent when the thread has none (for example inherited from a
 * parent process); NULL or invalid clears it. */
void context_set_process_parent(const struct trace_context *ctx);

/* --- re-entrancy guard --- */

/* Non-zero while the agent itself is running on this thread (inside a hook,
 * or always on the exporter thread): hooks then pass straight through. */
extern __thread int context_guard_depth AGENT_TLS;

static inline bool context_guard_enter(void)
{
	if (context_guard_depth)
		return false;
	context_guard_depth = 1;
	return true;
}

static inline void context_guard_leave(void)
{
	context_guard_depth = 0;
}

/* Marks the calling thread as the agent's own for good (the exporter thread). */
static inline void context_guard_forever(void)
{
	context_guard_depth = 1 << 20;
}

#endif
