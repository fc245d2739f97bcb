/* Environment variables as context carriers: extract at start, format and merge into a child's envp at exec. */
#include "envcarrier.h"

#include <string.h>

#define TP "TRACEPARENT="
#define TS "TRACESTATE="
#define BG "BAGGAGE="

uint64_t envcarrier_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

void envcarrier_note_inherited(config_getenv_fn get, struct envcarrier_inherited *out)
{
	const char *tp = get("TRACEPARENT"), *bg = get("BAGGAGE");
	out->traceparent_set = tp != NULL;
	out->traceparent_hash = tp ? envcarrier_hash(tp) : 0;
	out->baggage_set = bg != NULL;
	out->baggage_hash = bg ? envcarrier_hash(bg) : 0;
}

int envcarrier_extract(config_getenv_fn get, unsigned propagators, struct trace_context *out,
		       struct tracestate_parser *p)
{
	context_clear(out);
	if (!(propagators & PROPAGATOR_TRACECONTEXT))
		return 0;
	const char *tp = get("TRACEPARENT");
	if (!tp)
		return 0;
	if (!propagation_parse_traceparent(tp, strlen(tp), out)) {
		context_clear(out);
		return -1;
	}
	const char *ts = get("TRACESTATE");
	if (ts && *ts) {
		propagation_tracestate_begin(p, out);
		propagation_tracestate_add(p, ts, strlen(ts));
		propagation_tracestate_end(p);
	}
	const char *bg = get("BAGGAGE");
	if ((propagators & PROPAGATOR_BAGGAGE) && bg && *bg)
		propagation_baggage_add(out, bg, strlen(bg));
	return 1;
}

static size_t put(char *dst, const char *name, size_t name_len, const char *v, size_t n)
{
	memcpy(dst, name, name_len);
	memcpy(dst + name_len, v, n);
	dst[name_len + n] = '\0';
	return name_len + n;
}

bool envcarrier_format(const struct trace_context *ctx, unsigned propagators, struct envcarrier *e)
{
	e->has_traceparent = e->has_tracestate = e->has_baggage = e->owns_baggage = false;
	if (!ctx->valid)
		return false;
	if (propagators & PROPAGATOR_TRACECONTEXT) {
		memcpy(e->traceparent, TP, sizeof TP - 1);
		propagation_format_traceparent(ctx, e->traceparent + sizeof TP - 1);
		e->has_traceparent = true;
		if (ctx->tracestate_len) {
			put(e->tracestate, TS, sizeof TS - 1, context_tracestate(ctx), ctx->tracestate_len);
			e->has_tracestate = true;
		}
	}
	if (propagators & PROPAGATOR_BAGGAGE) {
		e->owns_baggage = true;
		if (ctx->baggage_len) {
			put(e->baggage, BG, sizeof BG - 1, context_baggage(ctx), ctx->baggage_len);
			e->has_baggage = true;
		}
	}
	return e->has_traceparent || e->owns_baggage;
}

size_t envcarrier_count(char *const envp[])
{
	size_t n = 0;
	if (envp)
		while (envp[n])
			n++;
	return n;
}

static inline bool is_var(const char *entry, const char *prefix, size_t len)
{
	return strncmp(entry, prefix, len) == 0;
}

bool envcarrier_app_owns(char *const envp[], const struct envcarrier_inherited *inh)
{
	if (!envp)
		return false;
	for (size_t i = 0; envp[i]; i++) {
		if (!is_var(envp[i], TP, sizeof TP - 1))
			continue;
		/* A copy of what we started with is stale; anything else is the app's. */
		if (!inh->traceparent_set || envcarrier_hash(envp[i] + sizeof TP - 1) != inh->traceparent_hash)
			return true;
	}
	return false;
}

long envcarrier_build(char *const envp[], const struct envcarrier *e, const struct envcarrier_inherited *inh,
		      char **out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; envp && envp[i]; i++) {
		const char *v = envp[i];
		if (e->has_traceparent && (is_var(v, TP, sizeof TP - 1) || is_var(v, TS, sizeof TS - 1)))
			continue;
		if (e->owns_baggage && is_var(v, BG, sizeof BG - 1) &&
		    (e->has_baggage ||
		     (inh->baggage_set && envcarrier_hash(v + sizeof BG - 1) == inh->baggage_hash)))
			continue;
		if (n + 1 >= cap)
			return -1;
		out[n++] = (char *)v;
	}
	if (n + 4 > cap)
		return -1;
	if (e->has_traceparent)
		out[n++] = (char *)e->traceparent;
	if (e->has_tracestate)
		out[n++] = (char *)e->tracestate;
	if (e->has_baggage)
		out[n++] = (char *)e->baggage;
	out[n] = NULL;
	return (long)n;
}
