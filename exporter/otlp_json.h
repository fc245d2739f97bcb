/* OTLP/JSON encoding of finished spans: the HTTP/JSON request body and the console exporter's lines. */
#ifndef TRACEAGENT_OTLP_JSON_H
#define TRACEAGENT_OTLP_JSON_H

#include <stddef.h>

#include "agent/resource.h"
#include "agent/span.h"
#include "agent/spanview.h"
#include "exporter/buf.h"

/*
 * All three append to *out and never fail on their own: whatever bytes the
 * application put into names and attributes, the result is valid JSON in
 * valid UTF-8 (bad sequences become U+FFFD). The only failure is running out
 * of memory, reported by out->oom; the buffer contents are then incomplete
 * and must not be sent.
 *
 * Mapping (OTLP specification, "JSON Protobuf Encoding"): lowerCamelCase
 * field names, trace and span ids as lowercase hex, enums as integers, 64-bit
 * integers as decimal strings, default-valued optional fields left out.
 */

/* Appends a full ExportTraceServiceRequest: one resourceSpans with the
 * resource, one scopeSpans with scope {name, version}, and the n spans
 * (their OTLP bytes, read back one at a time). scope_name and scope_version
 * may be NULL or empty (then left out). */
void otlp_json_encode_request(struct buf *out, const struct resource *res,
			      const char *scope_name, const char *scope_version,
			      const struct span_bytes *spans, size_t n);

/* Appends one span object (the "Span" message), no trailing newline. */
void otlp_json_encode_span(struct buf *out, const struct span_view *s);

/* Appends one console line for a span, newline-terminated:
 *   {"resource":{"service.name":"..."},"span":{...}}
 * One span per line so the output stays greppable; res may be NULL. */
void otlp_json_console_line(struct buf *out, const struct resource *res, const struct span_view *s);

#endif
