/* The protobuf-c reference encoder for tests (otlp_reference.c). */
#ifndef TRACEAGENT_TESTS_OTLP_REFERENCE_H
#define TRACEAGENT_TESTS_OTLP_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/resource.h"
#include "agent/spanview.h"
#include "exporter/buf.h"

/* The whole ExportTraceServiceRequest, as the agent's envelope writes it
 * (one ResourceSpans, one ScopeSpans with the agent's scope), packed by
 * protobuf-c from the views. Replaces out's contents. */
bool otlp_proto_encode_reference(struct buf *out, const struct resource *res,
				 const struct span_view *const *spans, size_t n);

/* One Span message, packed by protobuf-c from the view. Replaces out's
 * contents. Strings are C strings to protobuf-c: a NUL inside one ends it. */
bool otlp_reference_pack_span(struct buf *out, const struct span_view *s);

#endif
