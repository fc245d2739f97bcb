/* A finished span read back from its OTLP bytes into plain fields: for the JSON encoder, the console exporter and tests. */
#ifndef TRACEAGENT_SPANVIEW_H
#define TRACEAGENT_SPANVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

/* Room of a view; a span the agent encoded always fits. */
#define SPAN_VIEW_ARENA 8192

/* A byte range in the view's arena; strings there are NUL-terminated. */
struct span_str {
	uint16_t off;
	uint16_t len;
};

struct span_attr {
	struct span_str key;
	uint8_t type;            /* enum span_attr_type */
	uint16_t n;              /* element count for SPAN_ATTR_STRING_ARRAY */
	union {
		int64_t i;
		double d;
		bool b;
		struct span_str s;   /* string, or the elements back to back, each NUL-terminated */
	} v;
};

struct span_event {
	uint64_t time_ns;
	struct span_str name;
	uint8_t attr_first;      /* index into sub_attrs */
	uint8_t attr_count;
	uint32_t dropped_attrs;
};

struct span_link {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;           /* W3C trace flags */
	bool remote;
	struct span_str trace_state;
	uint8_t attr_first;
	uint8_t attr_count;
	uint32_t dropped_attrs;
};

struct span_view {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	uint8_t trace_flags;
	uint8_t kind;            /* enum span_kind */
	uint8_t status;          /* enum span_status */
	bool has_parent;
	bool parent_remote;
	uint8_t n_attrs, n_sub_attrs, n_events, n_links;
	uint32_t dropped_attrs, dropped_events, dropped_links;
	uint64_t start_ns, end_ns;
	struct span_str name, trace_state, status_message;
	uint16_t arena_used;
	struct span_attr attrs[SPAN_MAX_ATTRS];
	struct span_attr sub_attrs[SPAN_MAX_SUB_ATTRS];
	struct span_event events[SPAN_MAX_EVENTS];
	struct span_link links[SPAN_MAX_LINKS];
	char arena[SPAN_VIEW_ARENA];
};

static inline const char *span_view_str(const struct span_view *v, struct span_str r)
{
	return v->arena + r.off;
}

/* Reads an OTLP Span message into v. Pure. False when the bytes are not one
 * (or hold more than a view takes: the agent never writes such a span). */
bool span_view_decode(const void *bytes, size_t len, struct span_view *v);

/* An open span as it stands (no end time): span_encode, then decode. For
 * tests; false when it could not be read. */
bool span_view_of(const struct span *s, struct span_view *v);

#endif
