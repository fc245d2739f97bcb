/* OTLP Span bytes back to fields: a small protobuf reader over exactly what agent/span.c writes. */
#include "spanview.h"

#include <stdlib.h>
#include <string.h>

#include "pb.h"

typedef const unsigned char *cursor;

/* Copies n bytes into the arena, NUL-terminated. */
static bool arena_put(struct span_view *v, const void *p, size_t n, struct span_str *out)
{
	if (n + 1 > (size_t)(SPAN_VIEW_ARENA - v->arena_used) || n > UINT16_MAX)
		return false;
	memcpy(v->arena + v->arena_used, p, n);
	v->arena[v->arena_used + n] = '\0';
	out->off = v->arena_used;
	out->len = (uint16_t)n;
	v->arena_used = (uint16_t)(v->arena_used + n + 1);
	return true;
}

/* The next field: its number, wire type, and for length-delimited ones the
 * payload [*pl, *pl + *n); for varints the value in *n. */
static bool next(cursor *p, cursor end, unsigned *field, unsigned *wt, cursor *pl, uint64_t *n)
{
	uint64_t key;
	if (!pb_get_varint(p, end, &key))
		return false;
	*field = (unsigned)(key >> 3);
	*wt = (unsigned)(key & 7);
	switch (*wt) {
	case PB_VARINT:
		return pb_get_varint(p, end, n);
	case PB_LEN:
		if (!pb_get_varint(p, end, n) || *n > (uint64_t)(end - *p))
			return false;
		*pl = *p;
		*p += *n;
		return true;
	case PB_I64:
		if (end - *p < 8)
			return false;
		*pl = *p;
		memcpy(n, *p, 8);
		*p += 8;
		return true;
	case PB_I32: {
		if (end - *p < 4)
			return false;
		uint32_t x;
		memcpy(&x, *p, 4);
		*n = x;
		*pl = *p;
		*p += 4;
		return true;
	}
	default:
		return false;
	}
}

/* AnyValue into a, its strings into the arena. */
static bool any_value(struct span_view *v, cursor p, cursor end, struct span_attr *a)
{
	unsigned field, wt;
	cursor pl = NULL;
	uint64_t n;
	a->type = SPAN_ATTR_STRING;
	a->v.s.off = v->arena_used;
	a->v.s.len = 0;
	a->n = 0;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		if (field == 1 && wt == PB_LEN) {
			a->type = SPAN_ATTR_STRING;
			if (!arena_put(v, pl, n, &a->v.s))
				return false;
		} else if (field == 2 && wt == PB_VARINT) {
			a->type = SPAN_ATTR_BOOL;
			a->v.b = n != 0;
		} else if (field == 3 && wt == PB_VARINT) {
			a->type = SPAN_ATTR_INT;
			a->v.i = (int64_t)n;
		} else if (field == 4 && wt == PB_I64) {
			a->type = SPAN_ATTR_DOUBLE;
			memcpy(&a->v.d, &n, 8);
		} else if (field == 5 && wt == PB_LEN) {
			/* ArrayValue of string AnyValues: elements back to back, NUL-terminated */
			a->type = SPAN_ATTR_STRING_ARRAY;
			uint16_t start = v->arena_used;
			cursor q = pl, qend = pl + n;
			while (q < qend) {
				unsigned f2, w2, f3, w3;
				cursor e = NULL, s = NULL;
				uint64_t en, sn;
				if (!next(&q, qend, &f2, &w2, &e, &en) || f2 != 1 || w2 != PB_LEN)
					return false;
				cursor ee = e + en;
				struct span_str tmp = { 0, 0 };
				if (e == ee) {
					if (!arena_put(v, "", 0, &tmp))
						return false;
				}
				while (e < ee) {
					if (!next(&e, ee, &f3, &w3, &s, &sn))
						return false;
					if (f3 == 1 && w3 == PB_LEN && !arena_put(v, s, sn, &tmp))
						return false;
				}
				a->n++;
			}
			a->v.s.off = start;
			a->v.s.len = (uint16_t)(v->arena_used - start);
		}
	}
	return true;
}

static bool key_value(struct span_view *v, cursor p, cursor end, struct span_attr *a)
{
	unsigned field, wt;
	cursor pl = NULL;
	uint64_t n;
	memset(a, 0, sizeof *a);
	a->key.off = v->arena_used;
	bool have_key = false;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		if (field == 1 && wt == PB_LEN) {
			if (!arena_put(v, pl, n, &a->key))
				return false;
			have_key = true;
		} else if (field == 2 && wt == PB_LEN && !any_value(v, pl, pl + n, a)) {
			return false;
		}
	}
	return have_key || arena_put(v, "", 0, &a->key);
}

static bool sub_attr(struct span_view *v, cursor pl, uint64_t n, uint8_t *first, uint8_t *count)
{
	if (v->n_sub_attrs >= SPAN_MAX_SUB_ATTRS)
		return false;
	if (!*count)
		*first = v->n_sub_attrs;
	if (!key_value(v, pl, pl + n, &v->sub_attrs[v->n_sub_attrs]))
		return false;
	v->n_sub_attrs++;
	(*count)++;
	return true;
}

static bool event(struct span_view *v, cursor p, cursor end)
{
	if (v->n_events >= SPAN_MAX_EVENTS)
		return false;
	struct span_event *e = &v->events[v->n_events];
	memset(e, 0, sizeof *e);
	unsigned field, wt;
	cursor pl = NULL;
	uint64_t n;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		if (field == 1 && wt == PB_I64)
			e->time_ns = n;
		else if (field == 2 && wt == PB_LEN && !arena_put(v, pl, n, &e->name))
			return false;
		else if (field == 3 && wt == PB_LEN && !sub_attr(v, pl, n, &e->attr_first, &e->attr_count))
			return false;
		else if (field == 4 && wt == PB_VARINT)
			e->dropped_attrs = (uint32_t)n;
	}
	v->n_events++;
	return true;
}

static bool link(struct span_view *v, cursor p, cursor end)
{
	if (v->n_links >= SPAN_MAX_LINKS)
		return false;
	struct span_link *l = &v->links[v->n_links];
	memset(l, 0, sizeof *l);
	unsigned field, wt;
	cursor pl = NULL;
	uint64_t n;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		if (field == 1 && wt == PB_LEN && n == 16)
			memcpy(l->trace_id, pl, 16);
		else if (field == 2 && wt == PB_LEN && n == 8)
			memcpy(l->span_id, pl, 8);
		else if (field == 3 && wt == PB_LEN && !arena_put(v, pl, n, &l->trace_state))
			return false;
		else if (field == 4 && wt == PB_LEN && !sub_attr(v, pl, n, &l->attr_first, &l->attr_count))
			return false;
		else if (field == 5 && wt == PB_VARINT)
			l->dropped_attrs = (uint32_t)n;
		else if (field == 6 && wt == PB_I32) {
			l->flags = (uint8_t)n;
			l->remote = (n & 0x200) != 0;
		}
	}
	v->n_links++;
	return true;
}

static bool status(struct span_view *v, cursor p, cursor end)
{
	unsigned field, wt;
	cursor pl = NULL;
	uint64_t n;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		if (field == 2 && wt == PB_LEN && !arena_put(v, pl, n, &v->status_message))
			return false;
		else if (field == 3 && wt == PB_VARINT)
			v->status = (uint8_t)n;
	}
	return true;
}

bool span_view_decode(const void *bytes, size_t len, struct span_view *v)
{
	memset(v, 0, offsetof(struct span_view, attrs));
	cursor p = bytes, end = p + len, pl = NULL;
	unsigned field, wt;
	uint64_t n;
	/* Offset 0 holds an empty string: absent strings point at it. */
	v->arena[0] = '\0';
	v->arena_used = 1;
	while (p < end) {
		if (!next(&p, end, &field, &wt, &pl, &n))
			return false;
		switch (field) {
		case 1:
			if (wt != PB_LEN || n != 16)
				return false;
			memcpy(v->trace_id, pl, 16);
			break;
		case 2:
			if (wt != PB_LEN || n != 8)
				return false;
			memcpy(v->span_id, pl, 8);
			break;
		case 3:
			if (!arena_put(v, pl, n, &v->trace_state))
				return false;
			break;
		case 4:
			if (wt != PB_LEN || n != 8)
				return false;
			memcpy(v->parent_span_id, pl, 8);
			v->has_parent = true;
			break;
		case 5:
			if (!arena_put(v, pl, n, &v->name))
				return false;
			break;
		case 6:
			v->kind = (uint8_t)n;
			break;
		case 7:
			v->start_ns = n;
			break;
		case 8:
			v->end_ns = n;
			break;
		case 9:
			if (v->n_attrs >= SPAN_MAX_ATTRS || !key_value(v, pl, pl + n, &v->attrs[v->n_attrs]))
				return false;
			v->n_attrs++;
			break;
		case 10:
			v->dropped_attrs = (uint32_t)n;
			break;
		case 11:
			if (!event(v, pl, pl + n))
				return false;
			break;
		case 12:
			v->dropped_events = (uint32_t)n;
			break;
		case 13:
			if (!link(v, pl, pl + n))
				return false;
			break;
		case 14:
			v->dropped_links = (uint32_t)n;
			break;
		case 15:
			if (!status(v, pl, pl + n))
				return false;
			break;
		case 16:
			v->trace_flags = (uint8_t)n;
			v->parent_remote = (n & 0x200) != 0;
			break;
		default:
			break;
		}
	}
	return true;
}

bool span_view_of(const struct span *s, struct span_view *v)
{
	char *buf = malloc(SPAN_BIG_SIZE + 256);
	size_t n = buf ? span_encode(s, 0, buf, SPAN_BIG_SIZE + 256) : 0;
	bool ok = n && span_view_decode(buf, n, v);
	free(buf);
	return ok;
}
