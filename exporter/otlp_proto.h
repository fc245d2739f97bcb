/* OTLP/protobuf request envelope around finished spans (already encoded by agent/span.c), and the collector's response. */
#ifndef TRACEAGENT_OTLP_PROTO_H
#define TRACEAGENT_OTLP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/buf.h"

/* Replaces out's contents with the serialized ExportTraceServiceRequest: one
 * ResourceSpans with the resource, one ScopeSpans with the agent's scope,
 * then the n spans' bytes as they are. Returns false on allocation failure. */
bool otlp_proto_encode(struct buf *out, const struct resource *res, const struct span_bytes *spans, size_t n);

/* ExportTracePartialSuccess from a collector's response. */
struct otlp_partial_success {
	int64_t rejected_spans;
	const char *error_message;   /* points into the response; not NUL-terminated */
	size_t error_message_len;
};

/* Reads an ExportTraceServiceResponse (protobuf). Pure: no allocation, no
 * I/O. False when the bytes are malformed (out then says nothing rejected). */
bool otlp_proto_parse_response(const char *data, size_t len, struct otlp_partial_success *out);

#endif
