/* W3C Trace Context Level 2 (traceparent, tracestate) and W3C Baggage: pure parse/format functions. */
#ifndef TRACEAGENT_PROPAGATION_H
#define TRACEAGENT_PROPAGATION_H

#include <stdbool.h>
#include <stddef.h>

#include "context.h"

/* Length of a formatted version-00 traceparent, without NUL. */
#define TRACEPARENT_LEN 55

/*
 * Parses one traceparent header value (leading/trailing optional whitespace
 * allowed). Follows every W3C rule: version 00 exact length; a future version
 * (01..fe) may be longer, and only its first four fields are used, and the
 * character after flags must be '-'; version ff is invalid; lower-case hex only;
 * all-zero trace-id or parent-id invalid. On success fills out->trace_id,
 * span_id, flags, sets valid=true, remote=true, and leaves tracestate/baggage
 * lengths at 0. On failure returns false and out->valid=false.
 * No I/O, no allocation.
 */
bool propagation_parse_traceparent(const char *s, size_t len, struct trace_context *out);

/* The parent-id of a traceparent laid out as we format one (exactly
 * TRACEPARENT_LEN bytes, version 00 layout), with no other validation: for
 * recognising our own headers coming back (a Kafka delivery report), where
 * only an id we issued counts. False when s is not of that shape. */
bool propagation_traceparent_span_id(const char *s, size_t len, uint8_t span_id[8]);

/* Writes "00-<trace>-<span>-<flags>" and a NUL into out (TRACEPARENT_LEN + 1 bytes). */
size_t propagation_format_traceparent(const struct trace_context *ctx, char *out);

/*
 * Tracestate extraction across one or more header occurrences.
 * Call propagation_tracestate_begin, then _add once per header value in
 * order (several headers combine as if joined with ','), then _end.
 * Validates W3C Trace Context Level 2's key grammar
 * ((lcalpha / DIGIT) 0*255(keychar), keychar including '@'), the value
 * grammar and the 32 list-member limit; an invalid member or a 33rd one
 * discards the whole tracestate (tracestate_len = 0). A repeated key keeps
 * its first entry and drops the repeats (they still count towards the 32).
 * Empty list-members and optional whitespace are accepted and normalised
 * away. If the result exceeds TRACESTATE_MAX, members longer than 128
 * characters are dropped first, then members from the right, as the spec
 * recommends.
 * The result is stored in ctx->buf with ctx->tracestate_len; ctx->baggage_len
 * must be 0 during extraction (extract tracestate before baggage).
 */
struct tracestate_parser {
	struct trace_context *ctx;
	unsigned members;         /* list-members read, repeats included */
	unsigned repeats;         /* of those, dropped as repeated keys */
	unsigned evicted;         /* key hashes kept at the end of scratch */
	bool invalid;
	bool overflow;            /* set when members had to be dropped to fit */
	/* scratch for the pre-truncation list: members beyond TRACESTATE_MAX are
	 * kept here so the truncation rule can pick which to drop */
	size_t scratch_len;
	char scratch[4096];
};

void propagation_tracestate_begin(struct tracestate_parser *p, struct trace_context *ctx);
void propagation_tracestate_add(struct tracestate_parser *p, const char *s, size_t len);
/* Returns true if a (possibly empty) valid tracestate is stored. */
bool propagation_tracestate_end(struct tracestate_parser *p);

/*
 * Baggage: validates one or more `baggage` header values (W3C Baggage:
 * key=value;properties, comma separated, percent-encoded values) and appends
 * the valid list-members to ctx's baggage area after the tracestate. Invalid
 * members are skipped (the spec drops the whole header only when it can't be
 * parsed at all: we drop that header value). Members that would overflow
 * BAGGAGE_MAX are dropped from the end. Returns false if nothing was stored.
 */
bool propagation_baggage_add(struct trace_context *ctx, const char *s, size_t len);

#endif
