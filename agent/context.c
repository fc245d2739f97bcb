/* The thread's current trace context (allocated on first use), the process-wide inherited parent, and the guard's storage. */
#include "context.h"

#include "perthread.h"

__thread int context_guard_depth AGENT_TLS;

/* 2.6 KB with tracestate and baggage: kept out of static TLS (agent/perthread.h). */
static __thread struct trace_context *context_tls AGENT_TLS;
/* What a thread without a context of its own reads. */
static const struct trace_context context_none;
/* Written once at start (from TRACEPARENT) before any app thread reads it. */
static struct trace_context context_process_parent;

static struct trace_context *mine(void)
{
	return perthread_get((void **)&context_tls, sizeof *context_tls);
}

const struct trace_context *context_current(void)
{
	const struct trace_context *c = context_tls;
	if ((c && c->valid) || !context_process_parent.valid)
		return c ? c : &context_none;
	return &context_process_parent;
}

const struct trace_context *context_thread(void)
{
	return context_tls ? context_tls : &context_none;
}

void context_attach(const struct trace_context *ctx, struct context_token *tok)
{
	struct trace_context *c = mine();
	if (!c) {
		/* No memory for this thread's context: nothing changes, and
		 * context_detach restores the same nothing. */
		context_clear(&tok->prev);
		return;
	}
	context_copy(&tok->prev, c);
	if (ctx)
		context_copy(c, ctx);
	else
		context_clear(c);
}

void context_detach(const struct context_token *tok)
{
	struct trace_context *c = context_tls;
	if (c)
		context_copy(c, &tok->prev);
}

bool context_enter_child(const struct trace_context *child, struct context_head *saved)
{
	struct trace_context *c = mine();
	if (!c)
		return false;
	memcpy(saved->bytes, c, sizeof saved->bytes);
	if (c->valid && c->tracestate_len == child->tracestate_len && c->baggage_len == child->baggage_len) {
		memcpy(c, child, sizeof saved->bytes);   /* the tail is the parent's, already here */
		return true;
	}
	if (c->valid || c->tracestate_len || c->baggage_len)
		return false;
	context_copy(c, child);
	return true;
}

void context_leave_child(const uint8_t span_id[8], const struct context_head *saved)
{
	struct trace_context *c = context_tls;
	if (c && c->valid && memcmp(c->span_id, span_id, 8) == 0)
		memcpy(c, saved->bytes, sizeof saved->bytes);
}

void context_set_process_parent(const struct trace_context *ctx)
{
	if (ctx && ctx->valid)
		context_copy(&context_process_parent, ctx);
	else
		context_clear(&context_process_parent);
}
