/* OTLP/JSON encoder: spans (read back from their OTLP bytes), events, links, attributes and the resource as protobuf-JSON with OTLP's hex ids. */
#include "otlp_json.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Span.flags / Link.flags bits above the W3C trace flags (trace.proto). */
#define OTLP_FLAGS_HAS_IS_REMOTE 0x100u
#define OTLP_FLAGS_IS_REMOTE     0x200u

static const char hex_digits[] = "0123456789abcdef";

#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* --- strings --- */

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when it is ill-formed; in that
 * case *bad is set to the length of its maximal ill-formed prefix (at least
 * 1), which is what one U+FFFD replaces, as Unicode recommends.
 */
static size_t utf8_seq(const unsigned char *p, size_t avail, size_t *bad)
{
	unsigned char c = p[0];
	size_t need;
	unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */

	if (c >= 0xC2 && c <= 0xDF) {
		need = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;      /* overlong below U+0800 */
		else if (c == 0xED)
			hi = 0x9F;      /* UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;      /* overlong below U+10000 */
		else if (c == 0xF4)
			hi = 0x8F;      /* above U+10FFFF */
	} else {
		*bad = 1;           /* stray continuation byte, C0, C1, F5..FF */
		return 0;
	}

	size_t i = 1;
	for (; i < need && i < avail; i++) {
		unsigned char lo_i = i == 1 ? lo : 0x80;
		unsigned char hi_i = i == 1 ? hi : 0xBF;
		if (p[i] < lo_i || p[i] > hi_i)
			break;
	}
	if (i == need)
		return need;
	*bad = i;
	return 0;
}

/* Appends s[0..len) as a JSON string literal. Runs of bytes that need no
 * escaping (printable ASCII and well-formed UTF-8) are copied in one append. */
static void put_str(struct buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0, i = 0;

	/* One growth for the common case of nothing to escape. */
	if (!buf_reserve(b, len + 2))
		return;
	buf_putc(b, '"');
	while (i < len) {
		unsigned char c = p[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t bad;
			size_t n = utf8_seq(p + i, len - i, &bad);
			if (n) {
				i += n;
				continue;
			}
			buf_append(b, p + run, i - run);
			LIT(b, "\xEF\xBF\xBD");
			i += bad;
			run = i;
			continue;
		}
		buf_append(b, p + run, i - run);
		switch (c) {
		case '"':  LIT(b, "\\\""); break;
		case '\\': LIT(b, "\\\\"); break;
		case '\n': LIT(b, "\\n"); break;
		case '\t': LIT(b, "\\t"); break;
		case '\r': LIT(b, "\\r"); break;
		case '\b': LIT(b, "\\b"); break;
		case '\f': LIT(b, "\\f"); break;
		default: {
			char esc[6] = { '\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xF] };
			buf_append(b, esc, sizeof esc);
		}
		}
		i++;
		run = i;
	}
	buf_append(b, p + run, i - run);
	buf_putc(b, '"');
}

static void put_cstr(struct buf *b, const char *s)
{
	put_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* Clamp the range anyway, so a bad offset can only cost a garbled string,
 * never a read past the view. */
static void span_str_get(const struct span_view *s, struct span_str r, const char **p, size_t *len)
{
	size_t off = r.off < SPAN_VIEW_ARENA ? r.off : SPAN_VIEW_ARENA;
	size_t n = r.len;
	if (n > SPAN_VIEW_ARENA - off)
		n = SPAN_VIEW_ARENA - off;
	*p = s->arena + off;
	*len = n;
}

/* Whether the (clamped) string has any bytes: empty optional strings are left out. */
static bool span_str_empty(const struct span_view *s, struct span_str r)
{
	const char *p;
	size_t len;
	span_str_get(s, r, &p, &len);
	return len == 0;
}

static void put_span_str(struct buf *b, const struct span_view *s, struct span_str r)
{
	const char *p;
	size_t len;
	span_str_get(s, r, &p, &len);
	put_str(b, p, len);
}

/* --- numbers --- */

static void put_hex(struct buf *b, const uint8_t *id, size_t n)
{
	char tmp[2 + 2 * 16];
	size_t k = 0;
	tmp[k++] = '"';
	for (size_t i = 0; i < n; i++) {
		tmp[k++] = hex_digits[id[i] >> 4];
		tmp[k++] = hex_digits[id[i] & 0xF];
	}
	tmp[k++] = '"';
	buf_append(b, tmp, k);
}

static void put_u64(struct buf *b, uint64_t v)
{
	char tmp[20];
	size_t k = sizeof tmp;
	do {
		tmp[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_append(b, tmp + k, sizeof tmp - k);
}

/* proto3 JSON writes 64-bit integers as strings: JavaScript numbers lose precision past 2^53. */
static void put_u64_str(struct buf *b, uint64_t v)
{
	buf_putc(b, '"');
	put_u64(b, v);
	buf_putc(b, '"');
}

static void put_i64_str(struct buf *b, int64_t v)
{
	buf_putc(b, '"');
	if (v < 0) {
		buf_putc(b, '-');
		put_u64(b, -(uint64_t)v);  /* unsigned negation: INT64_MIN has no positive int64 */
	} else {
		put_u64(b, (uint64_t)v);
	}
	buf_putc(b, '"');
}

/*
 * A finite double as a JSON number, in the fewest digits that read back to
 * the same value. printf follows LC_NUMERIC, which the application may have
 * set to a locale with a decimal comma: whatever sits between the digits
 * other than sign and exponent is the radix and is rewritten as '.'.
 */
static void put_double(struct buf *b, double d)
{
	if (isnan(d)) {
		LIT(b, "\"NaN\"");
		return;
	}
	if (isinf(d)) {
		if (d > 0)
			LIT(b, "\"Infinity\"");
		else
			LIT(b, "\"-Infinity\"");
		return;
	}

	char tmp[64];
	int n = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (prec == 17 || strtod(tmp, NULL) == d)
			break;
	}
	if (n <= 0 || (size_t)n >= sizeof tmp) {
		LIT(b, "0");  /* cannot happen for %.17g; stay valid regardless */
		return;
	}

	char out[64];
	size_t k = 0;
	bool in_radix = false;
	for (int i = 0; i < n; i++) {
		char c = tmp[i];
		if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E') {
			out[k++] = c;
			in_radix = false;
		} else if (!in_radix) {
			out[k++] = '.';
			in_radix = true;
		}
	}
	buf_append(b, out, k);
}

/* --- attributes --- */

/* The packed array: n elements back to back, each NUL-terminated. Exactly n
 * values come out; elements missing from a short range come out empty. */
static void put_str_array(struct buf *b, const struct span_view *s, const struct span_attr *a)
{
	const char *p;
	size_t len;
	span_str_get(s, a->v.s, &p, &len);

	LIT(b, "{\"arrayValue\":{");
	if (a->n) {
		LIT(b, "\"values\":[");
		size_t pos = 0;
		for (size_t i = 0; i < a->n; i++) {
			const char *e = p + pos;
			const char *nul = memchr(e, '\0', len - pos);
			size_t elen = nul ? (size_t)(nul - e) : len - pos;
			if (i)
				buf_putc(b, ',');
			LIT(b, "{\"stringValue\":");
			put_str(b, e, elen);
			buf_putc(b, '}');
			pos += elen;
			if (pos < len)
				pos++;  /* the terminator */
		}
		buf_putc(b, ']');
	}
	LIT(b, "}}");
}

static void put_attr(struct buf *b, const struct span_view *s, const struct span_attr *a)
{
	LIT(b, "{\"key\":");
	put_span_str(b, s, a->key);
	LIT(b, ",\"value\":");
	switch (a->type) {
	case SPAN_ATTR_STRING:
		LIT(b, "{\"stringValue\":");
		put_span_str(b, s, a->v.s);
		buf_putc(b, '}');
		break;
	case SPAN_ATTR_BOOL:
		if (a->v.b)
			LIT(b, "{\"boolValue\":true}");
		else
			LIT(b, "{\"boolValue\":false}");
		break;
	case SPAN_ATTR_INT:
		LIT(b, "{\"intValue\":");
		put_i64_str(b, a->v.i);
		buf_putc(b, '}');
		break;
	case SPAN_ATTR_DOUBLE:
		LIT(b, "{\"doubleValue\":");
		put_double(b, a->v.d);
		buf_putc(b, '}');
		break;
	case SPAN_ATTR_STRING_ARRAY:
		put_str_array(b, s, a);
		break;
	default:
		LIT(b, "{}");  /* an empty AnyValue: unknown type, keep the key */
		break;
	}
	buf_putc(b, '}');
}

/* ,"attributes":[...] — left out when there are none. */
static void put_attrs(struct buf *b, const struct span_view *s, const struct span_attr *attrs, size_t n)
{
	if (!n)
		return;
	LIT(b, ",\"attributes\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(b, ',');
		put_attr(b, s, &attrs[i]);
	}
	buf_putc(b, ']');
}

static void put_sub_attrs(struct buf *b, const struct span_view *s, unsigned first, unsigned count)
{
	if (first >= SPAN_MAX_SUB_ATTRS)
		return;
	if (count > SPAN_MAX_SUB_ATTRS - first)
		count = SPAN_MAX_SUB_ATTRS - first;
	put_attrs(b, s, &s->sub_attrs[first], count);
}

/* ,"name":N — left out when zero, as proto3 JSON does for default values. */
static void put_count(struct buf *b, const char *field, size_t field_len, uint32_t v)
{
	if (!v)
		return;
	buf_append(b, field, field_len);
	put_u64(b, v);
}

#define PUT_COUNT(b, lit, v) put_count((b), (lit), sizeof(lit) - 1, (v))

/* --- span --- */

static void put_event(struct buf *b, const struct span_view *s, const struct span_event *e)
{
	LIT(b, "{\"timeUnixNano\":");
	put_u64_str(b, e->time_ns);
	LIT(b, ",\"name\":");
	put_span_str(b, s, e->name);
	put_sub_attrs(b, s, e->attr_first, e->attr_count);
	PUT_COUNT(b, ",\"droppedAttributesCount\":", e->dropped_attrs);
	buf_putc(b, '}');
}

static void put_link(struct buf *b, const struct span_view *s, const struct span_link *l)
{
	LIT(b, "{\"traceId\":");
	put_hex(b, l->trace_id, sizeof l->trace_id);
	LIT(b, ",\"spanId\":");
	put_hex(b, l->span_id, sizeof l->span_id);
	if (!span_str_empty(s, l->trace_state)) {
		LIT(b, ",\"traceState\":");
		put_span_str(b, s, l->trace_state);
	}
	put_sub_attrs(b, s, l->attr_first, l->attr_count);
	PUT_COUNT(b, ",\"droppedAttributesCount\":", l->dropped_attrs);
	LIT(b, ",\"flags\":");
	put_u64(b, l->flags | OTLP_FLAGS_HAS_IS_REMOTE | (l->remote ? OTLP_FLAGS_IS_REMOTE : 0));
	buf_putc(b, '}');
}

/*
 * Fields in trace.proto order. traceId, spanId, flags, name, kind, the two
 * timestamps and status are always written (readers and greps rely on them);
 * the rest follow proto3 JSON and are left out when empty or zero.
 */
void otlp_json_encode_span(struct buf *out, const struct span_view *s)
{
	LIT(out, "{\"traceId\":");
	put_hex(out, s->trace_id, sizeof s->trace_id);
	LIT(out, ",\"spanId\":");
	put_hex(out, s->span_id, sizeof s->span_id);
	if (!span_str_empty(s, s->trace_state)) {
		LIT(out, ",\"traceState\":");
		put_span_str(out, s, s->trace_state);
	}
	if (s->has_parent) {
		LIT(out, ",\"parentSpanId\":");
		put_hex(out, s->parent_span_id, sizeof s->parent_span_id);
	}
	/* HAS_IS_REMOTE always: we know whether the parent was remote (no parent counts as local). */
	uint32_t flags = s->trace_flags | OTLP_FLAGS_HAS_IS_REMOTE;
	if (s->has_parent && s->parent_remote)
		flags |= OTLP_FLAGS_IS_REMOTE;
	LIT(out, ",\"flags\":");
	put_u64(out, flags);
	LIT(out, ",\"name\":");
	put_span_str(out, s, s->name);
	LIT(out, ",\"kind\":");
	put_u64(out, s->kind);
	LIT(out, ",\"startTimeUnixNano\":");
	put_u64_str(out, s->start_ns);
	LIT(out, ",\"endTimeUnixNano\":");
	put_u64_str(out, s->end_ns);

	put_attrs(out, s, s->attrs, s->n_attrs < SPAN_MAX_ATTRS ? s->n_attrs : SPAN_MAX_ATTRS);
	PUT_COUNT(out, ",\"droppedAttributesCount\":", s->dropped_attrs);

	size_t n_events = s->n_events < SPAN_MAX_EVENTS ? s->n_events : SPAN_MAX_EVENTS;
	if (n_events) {
		LIT(out, ",\"events\":[");
		for (size_t i = 0; i < n_events; i++) {
			if (i)
				buf_putc(out, ',');
			put_event(out, s, &s->events[i]);
		}
		buf_putc(out, ']');
	}
	PUT_COUNT(out, ",\"droppedEventsCount\":", s->dropped_events);

	size_t n_links = s->n_links < SPAN_MAX_LINKS ? s->n_links : SPAN_MAX_LINKS;
	if (n_links) {
		LIT(out, ",\"links\":[");
		for (size_t i = 0; i < n_links; i++) {
			if (i)
				buf_putc(out, ',');
			put_link(out, s, &s->links[i]);
		}
		buf_putc(out, ']');
	}
	PUT_COUNT(out, ",\"droppedLinksCount\":", s->dropped_links);

	LIT(out, ",\"status\":{\"code\":");
	put_u64(out, s->status);
	if (!span_str_empty(s, s->status_message)) {
		LIT(out, ",\"message\":");
		put_span_str(out, s, s->status_message);
	}
	LIT(out, "}}");
}

/* --- request and console line --- */

static void put_resource_attr(struct buf *b, const struct resource_attr *a)
{
	LIT(b, "{\"key\":");
	put_cstr(b, a->key);
	if (a->is_int) {
		LIT(b, ",\"value\":{\"intValue\":");
		put_i64_str(b, a->i);
	} else {
		LIT(b, ",\"value\":{\"stringValue\":");
		put_cstr(b, a->str);
	}
	LIT(b, "}}");
}

void otlp_json_encode_request(struct buf *out, const struct resource *res,
			      const char *scope_name, const char *scope_version,
			      const struct span_bytes *spans, size_t n)
{
	LIT(out, "{\"resourceSpans\":[{\"resource\":{");
	size_t n_res = res ? res->count : 0;
	if (n_res > RESOURCE_MAX_ATTRS)
		n_res = RESOURCE_MAX_ATTRS;
	if (n_res) {
		LIT(out, "\"attributes\":[");
		for (size_t i = 0; i < n_res; i++) {
			if (i)
				buf_putc(out, ',');
			put_resource_attr(out, &res->attrs[i]);
		}
		buf_putc(out, ']');
	}
	LIT(out, "},\"scopeSpans\":[{\"scope\":{");
	bool sep = false;
	if (scope_name && *scope_name) {
		LIT(out, "\"name\":");
		put_cstr(out, scope_name);
		sep = true;
	}
	if (scope_version && *scope_version) {
		if (sep)
			buf_putc(out, ',');
		LIT(out, "\"version\":");
		put_cstr(out, scope_version);
	}
	buf_putc(out, '}');
	if (n) {
		/* One view, reused span after span (exporter thread only). */
		static struct span_view *view;
		if (!view && !(view = malloc(sizeof *view))) {
			out->oom = true;
			return;
		}
		LIT(out, ",\"spans\":[");
		bool first = true;
		for (size_t i = 0; i < n; i++) {
			if (!span_view_decode(spans[i].p, spans[i].len, view))
				continue;   /* not a span of ours: cannot happen */
			if (!first)
				buf_putc(out, ',');
			first = false;
			otlp_json_encode_span(out, view);
		}
		buf_putc(out, ']');
	}
	LIT(out, "}]}]}");
}

void otlp_json_console_line(struct buf *out, const struct resource *res, const struct span_view *s)
{
	LIT(out, "{\"resource\":{");
	size_t n_res = res ? res->count : 0;
	if (n_res > RESOURCE_MAX_ATTRS)
		n_res = RESOURCE_MAX_ATTRS;
	for (size_t i = 0; i < n_res; i++) {
		const struct resource_attr *a = &res->attrs[i];
		if (!a->is_int && a->key && strcmp(a->key, "service.name") == 0) {
			LIT(out, "\"service.name\":");
			put_cstr(out, a->str);
			break;
		}
	}
	LIT(out, "},\"span\":");
	otlp_json_encode_span(out, s);
	LIT(out, "}\n");
}
