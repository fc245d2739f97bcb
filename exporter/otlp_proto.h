/* OTLP/protobuf encoding of a batch of span records into an ExportTraceServiceRequest. */
#ifndef TRACEAGENT_OTLP_PROTO_H
#define TRACEAGENT_OTLP_PROTO_H

#include <stddef.h>

#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/buf.h"

/* Replaces out's contents with the serialized request: one ResourceSpans with
 * the resource, one ScopeSpans with the agent's scope, then the spans.
 * Returns false on allocation failure. Not thread-safe: exporter thread only
 * (scratch space is kept between calls so steady-state encoding never allocates). */
bool otlp_proto_encode(struct buf *out, const struct resource *res,
		       struct span *const *spans, size_t n);

/* OTLP Span.flags: W3C flags in the low byte, plus the has-is-remote and
 * is-remote bits (0x100, 0x200). */
static inline unsigned otlp_proto_span_flags(unsigned trace_flags, bool remote)
{
	return (trace_flags & 0xffu) | 0x100u | (remote ? 0x200u : 0u);
}

#endif
