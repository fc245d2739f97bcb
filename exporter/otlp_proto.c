/* OTLP/protobuf written by hand: span records straight to wire bytes, sized exactly first, no message tree. */
#include "otlp_proto.h"

#include <string.h>

/*
 * Wire format (protobuf): each field is a varint key (field number << 3 |
 * wire type) then its value: varint (type 0), fixed64 (1), length-delimited
 * (2: varint length + bytes) or fixed32 (5). Fields are written in field
 * number order and proto3 defaults (0, "", empty bytes, absent messages) are
 * left out, as protobuf-c and the reference implementations do, so the bytes
 * match theirs; field numbers follow exporter/otlp.proto (itself
 * opentelemetry-proto v1). Every length is computed before anything is
 * written (pass 1), so nested messages need no placeholder or move.
 */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

#define KEY(field, wt) (((field) << 3) | (wt))

static inline size_t varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Key and length prefix plus the payload of a length-delimited field. */
static inline size_t len_field(size_t field, size_t len)
{
	return varint_size(KEY(field, WT_LEN)) + varint_size(len) + len;
}

static inline char *put_varint(char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (char)v;
	return p;
}

static inline char *put_key(char *p, unsigned field, unsigned wt)
{
	return put_varint(p, KEY(field, wt));
}

static inline char *put_len(char *p, unsigned field, size_t len)
{
	return put_varint(put_key(p, field, WT_LEN), len);
}

static inline char *put_bytes(char *p, unsigned field, const void *data, size_t len)
{
	p = put_len(p, field, len);
	memcpy(p, data, len);
	return p + len;
}

static inline char *put_fixed64(char *p, unsigned field, uint64_t v)
{
	p = put_key(p, field, WT_I64);
	for (int i = 0; i < 8; i++)
		*p++ = (char)(v >> (8 * i));
	return p;
}

static inline char *put_fixed32(char *p, unsigned field, uint32_t v)
{
	p = put_key(p, field, WT_I32);
	for (int i = 0; i < 4; i++)
		*p++ = (char)(v >> (8 * i));
	return p;
}

/* --- AnyValue and KeyValue --- */

/* AnyValue field numbers */
enum { AV_STRING = 1, AV_BOOL = 2, AV_INT = 3, AV_DOUBLE = 4, AV_ARRAY = 5 };

/* Bytes of ArrayValue's body for a packed string array (each element an AnyValue{string}). */
static size_t array_body(const struct span *s, const struct span_attr *a)
{
	const char *p = span_str_ptr(s, a->v.s);
	size_t n = 0;
	for (unsigned i = 0; i < a->n; i++) {
		size_t l = strlen(p);
		n += len_field(1, len_field(AV_STRING, l));
		p += l + 1;
	}
	return n;
}

/* Bytes of an AnyValue's body (the oneof member is always written). */
static size_t anyvalue_body(const struct span *s, const struct span_attr *a)
{
	switch (a->type) {
	case SPAN_ATTR_STRING:
		return len_field(AV_STRING, a->v.s.len);
	case SPAN_ATTR_BOOL:
		return 2;
	case SPAN_ATTR_INT:
		return 1 + varint_size((uint64_t)a->v.i);
	case SPAN_ATTR_DOUBLE:
		return 9;
	case SPAN_ATTR_STRING_ARRAY:
		return len_field(AV_ARRAY, array_body(s, a));
	default:
		return 0;
	}
}

static size_t keyvalue_body(const struct span *s, const struct span_attr *a)
{
	return (a->key.len ? len_field(1, a->key.len) : 0) + len_field(2, anyvalue_body(s, a));
}

static char *put_keyvalue(char *p, unsigned field, const struct span *s, const struct span_attr *a)
{
	size_t av = anyvalue_body(s, a);
	p = put_len(p, field, (a->key.len ? len_field(1, a->key.len) : 0) + len_field(2, av));
	if (a->key.len)
		p = put_bytes(p, 1, span_str_ptr(s, a->key), a->key.len);
	p = put_len(p, 2, av);
	switch (a->type) {
	case SPAN_ATTR_STRING:
		p = put_bytes(p, AV_STRING, span_str_ptr(s, a->v.s), a->v.s.len);
		break;
	case SPAN_ATTR_BOOL:
		p = put_key(p, AV_BOOL, WT_VARINT);
		*p++ = a->v.b ? 1 : 0;
		break;
	case SPAN_ATTR_INT:
		p = put_varint(put_key(p, AV_INT, WT_VARINT), (uint64_t)a->v.i);
		break;
	case SPAN_ATTR_DOUBLE: {
		uint64_t bits;
		memcpy(&bits, &a->v.d, 8);
		p = put_fixed64(p, AV_DOUBLE, bits);
		break;
	}
	case SPAN_ATTR_STRING_ARRAY: {
		p = put_len(p, AV_ARRAY, array_body(s, a));
		const char *e = span_str_ptr(s, a->v.s);
		for (unsigned i = 0; i < a->n; i++) {
			size_t l = strlen(e);
			p = put_len(p, 1, len_field(AV_STRING, l));
			p = put_bytes(p, AV_STRING, e, l);
			e += l + 1;
		}
		break;
	}
	default:
		break;
	}
	return p;
}

static size_t attrs_size(const struct span *s, const struct span_attr *a, unsigned n, unsigned field)
{
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		total += len_field(field, keyvalue_body(s, &a[i]));
	return total;
}

static char *put_attrs(char *p, unsigned field, const struct span *s, const struct span_attr *a, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p = put_keyvalue(p, field, s, &a[i]);
	return p;
}

/* --- Span --- */

static size_t uint_field(unsigned field, uint64_t v)
{
	return v ? varint_size(KEY(field, WT_VARINT)) + varint_size(v) : 0;
}

static size_t str_field(unsigned field, struct span_str r)
{
	return r.len ? len_field(field, r.len) : 0;
}

static size_t event_body(const struct span *s, const struct span_event *e)
{
	return (e->time_ns ? 9 : 0) + str_field(2, e->name) +
	       attrs_size(s, &s->sub_attrs[e->attr_first], e->attr_count, 3) + uint_field(4, e->dropped_attrs);
}

static size_t link_body(const struct span *s, const struct span_link *l)
{
	return len_field(1, 16) + len_field(2, 8) + str_field(3, l->trace_state) +
	       attrs_size(s, &s->sub_attrs[l->attr_first], l->attr_count, 4) + uint_field(5, l->dropped_attrs) +
	       5 /* flags, never 0 */;
}

static size_t status_body(const struct span *s)
{
	size_t n = uint_field(3, s->status);
	if (s->status == SPAN_STATUS_ERROR)
		n += str_field(2, s->status_message);
	return n;
}

static size_t span_body(const struct span *s)
{
	size_t n = len_field(1, 16) + len_field(2, 8) + str_field(3, s->trace_state) +
		   (s->has_parent ? len_field(4, 8) : 0) + str_field(5, s->name) + uint_field(6, s->kind) +
		   (s->start_ns ? 9 : 0) + (s->end_ns ? 9 : 0) + attrs_size(s, s->attrs, s->n_attrs, 9) +
		   uint_field(10, s->dropped_attrs);
	for (unsigned i = 0; i < s->n_events; i++)
		n += len_field(11, event_body(s, &s->events[i]));
	n += uint_field(12, s->dropped_events);
	for (unsigned i = 0; i < s->n_links; i++)
		n += len_field(13, link_body(s, &s->links[i]));
	n += uint_field(14, s->dropped_links);
	if (s->status != SPAN_STATUS_UNSET)
		n += len_field(15, status_body(s));
	return n + 2 + 4;   /* flags: field 16 takes a two-byte key */
}

static char *put_uint(char *p, unsigned field, uint64_t v)
{
	return v ? put_varint(put_key(p, field, WT_VARINT), v) : p;
}

static char *put_str(char *p, unsigned field, const struct span *s, struct span_str r)
{
	return r.len ? put_bytes(p, field, span_str_ptr(s, r), r.len) : p;
}

static char *put_span(char *p, const struct span *s, size_t body)
{
	p = put_len(p, 2, body);   /* ScopeSpans.spans */
	p = put_bytes(p, 1, s->trace_id, 16);
	p = put_bytes(p, 2, s->span_id, 8);
	p = put_str(p, 3, s, s->trace_state);
	if (s->has_parent)
		p = put_bytes(p, 4, s->parent_span_id, 8);
	p = put_str(p, 5, s, s->name);
	p = put_uint(p, 6, s->kind);
	if (s->start_ns)
		p = put_fixed64(p, 7, s->start_ns);
	if (s->end_ns)
		p = put_fixed64(p, 8, s->end_ns);
	p = put_attrs(p, 9, s, s->attrs, s->n_attrs);
	p = put_uint(p, 10, s->dropped_attrs);
	for (unsigned i = 0; i < s->n_events; i++) {
		const struct span_event *e = &s->events[i];
		p = put_len(p, 11, event_body(s, e));
		if (e->time_ns)
			p = put_fixed64(p, 1, e->time_ns);
		p = put_str(p, 2, s, e->name);
		p = put_attrs(p, 3, s, &s->sub_attrs[e->attr_first], e->attr_count);
		p = put_uint(p, 4, e->dropped_attrs);
	}
	p = put_uint(p, 12, s->dropped_events);
	for (unsigned i = 0; i < s->n_links; i++) {
		const struct span_link *l = &s->links[i];
		p = put_len(p, 13, link_body(s, l));
		p = put_bytes(p, 1, l->trace_id, 16);
		p = put_bytes(p, 2, l->span_id, 8);
		p = put_str(p, 3, s, l->trace_state);
		p = put_attrs(p, 4, s, &s->sub_attrs[l->attr_first], l->attr_count);
		p = put_uint(p, 5, l->dropped_attrs);
		p = put_fixed32(p, 6, otlp_proto_span_flags(l->flags, l->remote));
	}
	p = put_uint(p, 14, s->dropped_links);
	if (s->status != SPAN_STATUS_UNSET) {
		p = put_len(p, 15, status_body(s));
		if (s->status == SPAN_STATUS_ERROR)
			p = put_str(p, 2, s, s->status_message);
		p = put_uint(p, 3, s->status);
	}
	return put_fixed32(p, 16, otlp_proto_span_flags(s->trace_flags, s->has_parent && s->parent_remote));
}

/* --- Resource and scope --- */

static size_t resource_kv_body(const struct resource_attr *ra)
{
	size_t kl = strlen(ra->key);
	size_t av = ra->is_int ? 1 + varint_size((uint64_t)ra->i) : len_field(AV_STRING, strlen(ra->str));
	return (kl ? len_field(1, kl) : 0) + len_field(2, av);
}

static size_t resource_body(const struct resource *res)
{
	size_t n = 0;
	for (size_t i = 0; i < res->count; i++)
		n += len_field(1, resource_kv_body(&res->attrs[i]));
	return n;
}

static char *put_resource(char *p, const struct resource *res)
{
	p = put_len(p, 1, resource_body(res));   /* ResourceSpans.resource */
	for (size_t i = 0; i < res->count; i++) {
		const struct resource_attr *ra = &res->attrs[i];
		size_t kl = strlen(ra->key);
		p = put_len(p, 1, resource_kv_body(ra));
		if (kl)
			p = put_bytes(p, 1, ra->key, kl);
		if (ra->is_int) {
			p = put_len(p, 2, 1 + varint_size((uint64_t)ra->i));
			p = put_varint(put_key(p, AV_INT, WT_VARINT), (uint64_t)ra->i);
		} else {
			size_t sl = strlen(ra->str);
			p = put_len(p, 2, len_field(AV_STRING, sl));
			p = put_bytes(p, AV_STRING, ra->str, sl);
		}
	}
	return p;
}

#define SCOPE_BODY (len_field(1, sizeof AGENT_NAME - 1) + len_field(2, sizeof AGENT_VERSION - 1))

/* Span sizes of the batch being encoded, kept between calls (exporter thread only). */
static size_t *sizes;
static size_t sizes_cap;

bool otlp_proto_encode(struct buf *out, const struct resource *res,
		       struct span *const *spans, size_t n)
{
	if (n > sizes_cap) {
		size_t cap = sizes_cap ? sizes_cap : 256;
		while (cap < n)
			cap *= 2;
		size_t *p = realloc(sizes, cap * sizeof *p);
		if (!p)
			return false;
		sizes = p;
		sizes_cap = cap;
	}
	/* Pass 1: every length. */
	size_t scope_spans = len_field(1, SCOPE_BODY);
	for (size_t i = 0; i < n; i++) {
		sizes[i] = span_body(spans[i]);
		scope_spans += len_field(2, sizes[i]);
	}
	size_t resource_spans = len_field(1, resource_body(res)) + len_field(2, scope_spans);
	size_t total = len_field(1, resource_spans);

	/* Pass 2: the bytes, into room reserved once. */
	buf_reset(out);
	if (!buf_reserve(out, total))
		return false;
	char *p = out->p;
	p = put_len(p, 1, resource_spans);         /* ExportTraceServiceRequest.resource_spans */
	p = put_resource(p, res);
	p = put_len(p, 2, scope_spans);            /* ResourceSpans.scope_spans */
	p = put_len(p, 1, SCOPE_BODY);             /* ScopeSpans.scope */
	p = put_bytes(p, 1, AGENT_NAME, sizeof AGENT_NAME - 1);
	p = put_bytes(p, 2, AGENT_VERSION, sizeof AGENT_VERSION - 1);
	for (size_t i = 0; i < n; i++)
		p = put_span(p, spans[i], sizes[i]);
	out->len = (size_t)(p - out->p);
	return out->len == total;
}

/* --- ExportTraceServiceResponse --- */

static bool get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		unsigned char b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* Skips one field's value of wire type wt; false when malformed. */
static bool skip_value(const unsigned char **p, const unsigned char *end, unsigned wt)
{
	uint64_t v;
	switch (wt) {
	case WT_VARINT:
		return get_varint(p, end, &v);
	case WT_I64:
		if ((size_t)(end - *p) < 8)
			return false;
		*p += 8;
		return true;
	case WT_LEN:
		if (!get_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return false;
		*p += v;
		return true;
	case WT_I32:
		if ((size_t)(end - *p) < 4)
			return false;
		*p += 4;
		return true;
	default:
		return false;   /* groups: not in OTLP */
	}
}

bool otlp_proto_parse_response(const char *data, size_t len, struct otlp_partial_success *out)
{
	const unsigned char *p = (const unsigned char *)data, *end = p + len;
	out->rejected_spans = 0;
	out->error_message = NULL;
	out->error_message_len = 0;
	while (p < end) {
		uint64_t key, n;
		if (!get_varint(&p, end, &key))
			return false;
		if (key != KEY(1, WT_LEN)) {
			if (!skip_value(&p, end, (unsigned)(key & 7)))
				return false;
			continue;
		}
		/* partial_success (field 1): its fields merge over earlier ones */
		if (!get_varint(&p, end, &n) || n > (uint64_t)(end - p))
			return false;
		const unsigned char *q = p, *qend = p + n;
		p = qend;
		while (q < qend) {
			uint64_t k, v;
			if (!get_varint(&q, qend, &k))
				return false;
			if (k == KEY(1, WT_VARINT)) {
				if (!get_varint(&q, qend, &v))
					return false;
				out->rejected_spans = (int64_t)v;
			} else if (k == KEY(2, WT_LEN)) {
				if (!get_varint(&q, qend, &v) || v > (uint64_t)(qend - q))
					return false;
				out->error_message = (const char *)q;
				out->error_message_len = (size_t)v;
				q += v;
			} else if (!skip_value(&q, qend, (unsigned)(k & 7))) {
				return false;
			}
		}
	}
	return true;
}
