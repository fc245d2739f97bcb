/* OTLP/protobuf encoding of a batch of span records into an ExportTraceServiceRequest. */
#ifndef TRACEAGENT_OTLP_PROTO_H
#define TRACEAGENT_OTLP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/buf.h"

/* Replaces out's contents with the serialized request: one ResourceSpans with
 * the resource, one ScopeSpans with the agent's scope, then the spans.
 * Returns false on allocation failure. Not thread-safe: exporter thread only
 * (scratch space is kept between calls so steady-state encoding never allocates). */
bool otlp_proto_encode(struct buf *out, const struct resource *res,
		       struct span *const *spans, size_t n);

/* ExportTracePartialSuccess from a collector's response. */
struct otlp_partial_success {
	int64_t rejected_spans;
	const char *error_message;   /* points into the response; not NUL-terminated */
	size_t error_message_len;
};

/* Reads an ExportTraceServiceResponse (protobuf). Pure: no allocation, no
 * I/O. False when the bytes are malformed (out then says nothing rejected). */
bool otlp_proto_parse_response(const char *data, size_t len, struct otlp_partial_success *out);

/* OTLP Span.flags: W3C flags in the low byte, plus the has-is-remote and
 * is-remote bits (0x100, 0x200). */
static inline unsigned otlp_proto_span_flags(unsigned trace_flags, bool remote)
{
	return (trace_flags & 0xffu) | 0x100u | (remote ? 0x200u : 0u);
}

#endif
