/* The thread's current trace context, the process-wide inherited parent, and the guard's storage. */
#include "context.h"

__thread int context_guard_depth AGENT_TLS;

static __thread struct trace_context context_tls AGENT_TLS;
/* Written once at start (from TRACEPARENT) before any app thread reads it. */
static struct trace_context context_process_parent;

const struct trace_context *context_current(void)
{
	if (context_tls.valid || !context_process_parent.valid)
		return &context_tls;
	return &context_process_parent;
}

const struct trace_context *context_thread(void)
{
	return &context_tls;
}

void context_attach(const struct trace_context *ctx, struct context_token *tok)
{
	context_copy(&tok->prev, &context_tls);
	if (ctx)
		context_copy(&context_tls, ctx);
	else
		context_clear(&context_tls);
}

void context_detach(const struct context_token *tok)
{
	context_copy(&context_tls, &tok->prev);
}

void context_set_process_parent(const struct trace_context *ctx)
{
	if (ctx && ctx->valid)
		context_copy(&context_process_parent, ctx);
	else
		context_clear(&context_process_parent);
}
