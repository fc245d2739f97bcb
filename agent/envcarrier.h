/* Environment variables as context carriers (OpenTelemetry env-carriers): TRACEPARENT, TRACESTATE, BAGGAGE; pure functions. */
#ifndef TRACEAGENT_ENVCARRIER_H
#define TRACEAGENT_ENVCARRIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "context.h"
#include "propagation.h"

/*
 * The names follow the OpenTelemetry specification "Environment Variables as
 * Context Propagation Carriers": the W3C header names, upper-cased.
 * Everything here is async-signal-safe and allocation-free: the exec hooks use
 * it in a vfork() child, which shares the parent's memory and may touch
 * nothing but its own stack.
 */

/* "NAME=value" strings ready to be put in an envp array. */
struct envcarrier {
	bool has_traceparent;   /* tracecontext propagator on: TRACEPARENT (and TRACESTATE) are ours to set */
	bool has_tracestate;    /* the context has a tracestate */
	bool has_baggage;       /* baggage propagator on and the context has baggage */
	bool owns_baggage;      /* baggage propagator on: BAGGAGE is ours to set or remove */
	char traceparent[sizeof "TRACEPARENT=" + TRACEPARENT_LEN];
	char tracestate[sizeof "TRACESTATE=" + TRACESTATE_MAX];
	char baggage[sizeof "BAGGAGE=" + BAGGAGE_MAX];
};

/* What this process found in its own environment at start: a fingerprint of
 * each value, so an app's envp entry can be recognised as a plain copy of it
 * (stale: ours replaces it) or as the app's own choice (kept). */
struct envcarrier_inherited {
	bool traceparent_set, baggage_set;
	uint64_t traceparent_hash, baggage_hash;
};

/* FNV-1a of a NUL-terminated string. */
uint64_t envcarrier_hash(const char *s);

/* Records the fingerprints of TRACEPARENT and BAGGAGE as get() sees them. */
void envcarrier_note_inherited(config_getenv_fn get, struct envcarrier_inherited *out);

/*
 * Extracts the context a parent process passed: TRACEPARENT (tracecontext
 * propagator), TRACESTATE with it, and BAGGAGE (baggage propagator) on top of a
 * valid traceparent. Returns 1 with *out valid and remote, 0 when there is no
 * TRACEPARENT (or the propagator is off), -1 when it is invalid (*out cleared).
 * An invalid TRACESTATE is dropped alone, as over HTTP. p is scratch space.
 */
int envcarrier_extract(config_getenv_fn get, unsigned propagators, struct trace_context *out,
		       struct tracestate_parser *p);

/* Formats ctx as the variables the propagators carry. Returns false when
 * there is nothing to pass (invalid ctx, or no propagator). */
bool envcarrier_format(const struct trace_context *ctx, unsigned propagators, struct envcarrier *e);

/* Entries of envp before its NULL (NULL counts as empty, as for execve). */
size_t envcarrier_count(char *const envp[]);

/*
 * True when envp holds a TRACEPARENT that is not the one this process
 * inherited: the app chose its child's context itself, and envp is passed
 * untouched (as an app-supplied traceparent header is kept over HTTP).
 */
bool envcarrier_app_owns(char *const envp[], const struct envcarrier_inherited *inh);

/*
 * Writes into out[0..cap) the app's entries, minus those ours replace, then
 * ours, then NULL. Replaced: TRACEPARENT and TRACESTATE whenever we set
 * TRACEPARENT; BAGGAGE when ours is set, or when the app's is only the
 * inherited copy. envp itself is never written. Returns the number of
 * entries before the NULL, or -1 when cap is too small
 * (envcarrier_count(envp) + 4 always suffices).
 */
long envcarrier_build(char *const envp[], const struct envcarrier *e, const struct envcarrier_inherited *inh,
		      char **out, size_t cap);

#endif
