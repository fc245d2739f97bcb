/* The protobuf-c encoder the agent used before its hand-written one: the byte-for-byte reference in tests, built from span views. */
#include "otlp_reference.h"

#include <stdlib.h>
#include <string.h>

#include "exporter/otlp_proto.h"
#include "otlp.pb-c.h"

/*
 * The spans come in as views decoded from the agent's own bytes
 * (span_view_decode): protobuf-c packs the same content again, so comparing
 * its bytes with the agent's checks the agent's encoding (field order,
 * defaults left out, lengths, flags) against an independent encoder.
 */

typedef Opentelemetry__Proto__Span PSpan;
typedef Opentelemetry__Proto__KeyValue PKeyValue;
typedef Opentelemetry__Proto__AnyValue PAnyValue;
typedef Opentelemetry__Proto__ArrayValue PArrayValue;
typedef Opentelemetry__Proto__Span__Event PEvent;
typedef Opentelemetry__Proto__Span__Link PLink;
typedef Opentelemetry__Proto__Status PStatus;

/* Grow-only scratch arrays, reused across batches; each has its own capacity. */
struct scratch {
	PSpan *spans; PSpan **span_ptrs; PStatus *status;
	PKeyValue *kv; PKeyValue **kv_ptrs; PAnyValue *av;
	PAnyValue *elems; PAnyValue **elem_ptrs; PArrayValue *arrays;
	PEvent *events; PEvent **event_ptrs;
	PLink *links; PLink **link_ptrs;
	size_t cap[13];
};

static struct scratch sc;  /* test-only */

static bool grow(void **p, size_t *have, size_t want, size_t elem)
{
	if (want <= *have)
		return true;
	size_t n = *have ? *have : 64;
	while (n < want)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return false;
	*p = q;
	*have = n;
	return true;
}

#define GROW(i, field, want) grow((void **)&sc.field, &sc.cap[i], (want), sizeof(*sc.field))

static bool reserve(size_t spans, size_t kvs, size_t elems, size_t arrays, size_t events, size_t links)
{
	return GROW(0, spans, spans) && GROW(1, span_ptrs, spans) && GROW(2, status, spans) &&
	       GROW(3, kv, kvs) && GROW(4, kv_ptrs, kvs) && GROW(5, av, kvs) &&
	       GROW(6, elems, elems) && GROW(7, elem_ptrs, elems) && GROW(8, arrays, arrays) &&
	       GROW(9, events, events) && GROW(10, event_ptrs, events) &&
	       GROW(11, links, links) && GROW(12, link_ptrs, links);
}

static char empty[] = "";

static char *str(const struct span_view *s, struct span_str r)
{
	return r.len ? (char *)span_view_str(s, r) : empty;
}

/* OTLP Span.flags and Link.flags, from the specification: W3C flags in the
 * low byte, plus the has-is-remote and is-remote bits (0x100, 0x200). */
static uint32_t ref_flags(unsigned trace_flags, bool remote)
{
	return (trace_flags & 0xffu) | 0x100u | (remote ? 0x200u : 0u);
}

struct cursor {
	size_t kv, elem, array, event, link;
};

static void fill_attr(const struct span_view *s, const struct span_attr *a, struct cursor *cur)
{
	PKeyValue *kv = &sc.kv[cur->kv];
	PAnyValue *av = &sc.av[cur->kv];
	sc.kv_ptrs[cur->kv] = kv;
	cur->kv++;
	opentelemetry__proto__key_value__init(kv);
	opentelemetry__proto__any_value__init(av);
	kv->key = str(s, a->key);
	kv->value = av;
	switch (a->type) {
	case SPAN_ATTR_STRING:
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE;
		av->string_value = str(s, a->v.s);
		break;
	case SPAN_ATTR_BOOL:
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_BOOL_VALUE;
		av->bool_value = a->v.b;
		break;
	case SPAN_ATTR_INT:
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_INT_VALUE;
		av->int_value = a->v.i;
		break;
	case SPAN_ATTR_DOUBLE:
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_DOUBLE_VALUE;
		av->double_value = a->v.d;
		break;
	case SPAN_ATTR_STRING_ARRAY: {
		PArrayValue *arr = &sc.arrays[cur->array++];
		opentelemetry__proto__array_value__init(arr);
		arr->n_values = a->n;
		arr->values = &sc.elem_ptrs[cur->elem];
		const char *p = span_view_str(s, a->v.s);
		for (unsigned i = 0; i < a->n; i++) {
			PAnyValue *e = &sc.elems[cur->elem];
			sc.elem_ptrs[cur->elem++] = e;
			opentelemetry__proto__any_value__init(e);
			e->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE;
			e->string_value = (char *)p;
			p += strlen(p) + 1;
		}
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_ARRAY_VALUE;
		av->array_value = arr;
		break;
	}
	default:
		av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE__NOT_SET;
		break;
	}
}

static void fill_span(PSpan *p, PStatus *st, const struct span_view *s, struct cursor *cur)
{
	opentelemetry__proto__span__init(p);
	p->trace_id.data = (uint8_t *)s->trace_id;
	p->trace_id.len = 16;
	p->span_id.data = (uint8_t *)s->span_id;
	p->span_id.len = 8;
	if (s->has_parent) {
		p->parent_span_id.data = (uint8_t *)s->parent_span_id;
		p->parent_span_id.len = 8;
	}
	p->trace_state = str(s, s->trace_state);
	p->flags = ref_flags(s->trace_flags, s->has_parent && s->parent_remote);
	p->name = str(s, s->name);
	p->kind = (Opentelemetry__Proto__Span__SpanKind)s->kind;
	p->start_time_unix_nano = s->start_ns;
	p->end_time_unix_nano = s->end_ns;

	p->n_attributes = s->n_attrs;
	p->attributes = &sc.kv_ptrs[cur->kv];
	for (unsigned i = 0; i < s->n_attrs; i++)
		fill_attr(s, &s->attrs[i], cur);
	p->dropped_attributes_count = s->dropped_attrs;

	p->n_events = s->n_events;
	p->events = &sc.event_ptrs[cur->event];
	for (unsigned i = 0; i < s->n_events; i++) {
		const struct span_event *e = &s->events[i];
		PEvent *pe = &sc.events[cur->event];
		sc.event_ptrs[cur->event++] = pe;
		opentelemetry__proto__span__event__init(pe);
		pe->time_unix_nano = e->time_ns;
		pe->name = str(s, e->name);
		pe->n_attributes = e->attr_count;
		pe->attributes = &sc.kv_ptrs[cur->kv];
		for (unsigned k = 0; k < e->attr_count; k++)
			fill_attr(s, &s->sub_attrs[e->attr_first + k], cur);
		pe->dropped_attributes_count = e->dropped_attrs;
	}
	p->dropped_events_count = s->dropped_events;

	p->n_links = s->n_links;
	p->links = &sc.link_ptrs[cur->link];
	for (unsigned i = 0; i < s->n_links; i++) {
		const struct span_link *l = &s->links[i];
		PLink *pl = &sc.links[cur->link];
		sc.link_ptrs[cur->link++] = pl;
		opentelemetry__proto__span__link__init(pl);
		pl->trace_id.data = (uint8_t *)l->trace_id;
		pl->trace_id.len = 16;
		pl->span_id.data = (uint8_t *)l->span_id;
		pl->span_id.len = 8;
		pl->trace_state = str(s, l->trace_state);
		pl->flags = ref_flags(l->flags, l->remote);
		pl->n_attributes = l->attr_count;
		pl->attributes = &sc.kv_ptrs[cur->kv];
		for (unsigned k = 0; k < l->attr_count; k++)
			fill_attr(s, &s->sub_attrs[l->attr_first + k], cur);
		pl->dropped_attributes_count = l->dropped_attrs;
	}
	p->dropped_links_count = s->dropped_links;

	opentelemetry__proto__status__init(st);
	st->code = (Opentelemetry__Proto__Status__StatusCode)s->status;
	st->message = s->status == SPAN_STATUS_ERROR ? str(s, s->status_message) : empty;
	p->status = s->status != SPAN_STATUS_UNSET ? st : NULL;
}

/* Room in the scratch arrays for n spans (and the resource). */
static bool reserve_for(const struct span_view *const *spans, size_t n)
{
	size_t kvs = 0, elems = 0, arrays = 0, events = 0, links = 0;

	for (size_t i = 0; i < n; i++) {
		const struct span_view *s = spans[i];
		kvs += s->n_attrs + s->n_sub_attrs;
		events += s->n_events;
		links += s->n_links;
		for (unsigned k = 0; k < s->n_attrs; k++) {
			if (s->attrs[k].type == SPAN_ATTR_STRING_ARRAY) {
				arrays++;
				elems += s->attrs[k].n;
			}
		}
	}
	return reserve(n ? n : 1, kvs + RESOURCE_MAX_ATTRS, elems, arrays, events, links);
}

bool otlp_reference_pack_span(struct buf *out, const struct span_view *s)
{
	if (!reserve_for(&s, 1))
		return false;
	struct cursor cur = { 0 };
	fill_span(&sc.spans[0], &sc.status[0], s, &cur);
	size_t size = opentelemetry__proto__span__get_packed_size(&sc.spans[0]);
	buf_reset(out);
	if (!buf_reserve(out, size))
		return false;
	out->len = opentelemetry__proto__span__pack(&sc.spans[0], (uint8_t *)out->p);
	return true;
}

bool otlp_proto_encode_reference(struct buf *out, const struct resource *res,
				 const struct span_view *const *spans, size_t n)
{
	if (!reserve_for(spans, n))
		return false;

	struct cursor cur = { 0 };
	for (size_t i = 0; i < n; i++) {
		sc.span_ptrs[i] = &sc.spans[i];
		fill_span(&sc.spans[i], &sc.status[i], spans[i], &cur);
	}

	/* Resource attributes go after the span attributes in the same scratch. */
	PKeyValue **res_kv = &sc.kv_ptrs[cur.kv];
	for (size_t i = 0; i < res->count; i++) {
		const struct resource_attr *ra = &res->attrs[i];
		PKeyValue *kv = &sc.kv[cur.kv];
		PAnyValue *av = &sc.av[cur.kv];
		sc.kv_ptrs[cur.kv++] = kv;
		opentelemetry__proto__key_value__init(kv);
		opentelemetry__proto__any_value__init(av);
		kv->key = (char *)ra->key;
		kv->value = av;
		if (ra->is_int) {
			av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_INT_VALUE;
			av->int_value = ra->i;
		} else {
			av->value_case = OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE;
			av->string_value = (char *)ra->str;
		}
	}

	Opentelemetry__Proto__Resource resource = OPENTELEMETRY__PROTO__RESOURCE__INIT;
	resource.n_attributes = res->count;
	resource.attributes = res_kv;
	Opentelemetry__Proto__InstrumentationScope scope = OPENTELEMETRY__PROTO__INSTRUMENTATION_SCOPE__INIT;
	scope.name = (char *)AGENT_NAME;
	scope.version = (char *)AGENT_VERSION;
	Opentelemetry__Proto__ScopeSpans ss = OPENTELEMETRY__PROTO__SCOPE_SPANS__INIT;
	ss.scope = &scope;
	ss.n_spans = n;
	ss.spans = sc.span_ptrs;
	Opentelemetry__Proto__ScopeSpans *ss_ptr = &ss;
	Opentelemetry__Proto__ResourceSpans rs = OPENTELEMETRY__PROTO__RESOURCE_SPANS__INIT;
	rs.resource = &resource;
	rs.n_scope_spans = 1;
	rs.scope_spans = &ss_ptr;
	Opentelemetry__Proto__ResourceSpans *rs_ptr = &rs;
	Opentelemetry__Proto__ExportTraceServiceRequest req = OPENTELEMETRY__PROTO__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	req.n_resource_spans = 1;
	req.resource_spans = &rs_ptr;

	size_t size = opentelemetry__proto__export_trace_service_request__get_packed_size(&req);
	buf_reset(out);
	if (!buf_reserve(out, size))
		return false;
	out->len = opentelemetry__proto__export_trace_service_request__pack(&req, (uint8_t *)out->p);
	return true;
}
