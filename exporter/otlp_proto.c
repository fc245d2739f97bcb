/* OTLP/protobuf envelope written by hand: the resource and scope around span messages encoded when each span ended. */
#include "otlp_proto.h"

#include <string.h>

#include "agent/pb.h"

/*
 * Fields are written in field number order and proto3 defaults are left
 * out, as protobuf-c and the reference implementations do; field numbers
 * follow exporter/otlp.proto (itself opentelemetry-proto v1). Every length
 * is known before anything is written, so nested messages need no
 * placeholder or move.
 */

enum { AV_STRING = 1, AV_INT = 3 };

/* --- Resource and scope --- */

static size_t resource_kv_body(const struct resource_attr *ra)
{
	size_t kl = strlen(ra->key);
	size_t av = ra->is_int ? 1 + pb_varint_size((uint64_t)ra->i) : pb_len_field(AV_STRING, strlen(ra->str));
	return (kl ? pb_len_field(1, kl) : 0) + pb_len_field(2, av);
}

static size_t resource_body(const struct resource *res)
{
	size_t n = 0;
	for (size_t i = 0; i < res->count; i++)
		n += pb_len_field(1, resource_kv_body(&res->attrs[i]));
	return n;
}

static char *put_resource(char *p, const struct resource *res)
{
	p = pb_put_len(p, 1, resource_body(res));   /* ResourceSpans.resource */
	for (size_t i = 0; i < res->count; i++) {
		const struct resource_attr *ra = &res->attrs[i];
		size_t kl = strlen(ra->key);
		p = pb_put_len(p, 1, resource_kv_body(ra));
		if (kl)
			p = pb_put_bytes(p, 1, ra->key, kl);
		if (ra->is_int) {
			p = pb_put_len(p, 2, 1 + pb_varint_size((uint64_t)ra->i));
			p = pb_put_varint(pb_put_key(p, AV_INT, PB_VARINT), (uint64_t)ra->i);
		} else {
			size_t sl = strlen(ra->str);
			p = pb_put_len(p, 2, pb_len_field(AV_STRING, sl));
			p = pb_put_bytes(p, AV_STRING, ra->str, sl);
		}
	}
	return p;
}

#define SCOPE_BODY (pb_len_field(1, sizeof AGENT_NAME - 1) + pb_len_field(2, sizeof AGENT_VERSION - 1))

bool otlp_proto_encode(struct buf *out, const struct resource *res, const struct span_bytes *spans, size_t n)
{
	size_t scope_spans = pb_len_field(1, SCOPE_BODY);
	for (size_t i = 0; i < n; i++)
		scope_spans += pb_len_field(2, spans[i].len);
	size_t resource_spans = pb_len_field(1, resource_body(res)) + pb_len_field(2, scope_spans);
	size_t total = pb_len_field(1, resource_spans);

	buf_reset(out);
	if (!buf_reserve(out, total))
		return false;
	char *p = out->p;
	p = pb_put_len(p, 1, resource_spans);         /* ExportTraceServiceRequest.resource_spans */
	p = put_resource(p, res);
	p = pb_put_len(p, 2, scope_spans);            /* ResourceSpans.scope_spans */
	p = pb_put_len(p, 1, SCOPE_BODY);             /* ScopeSpans.scope */
	p = pb_put_bytes(p, 1, AGENT_NAME, sizeof AGENT_NAME - 1);
	p = pb_put_bytes(p, 2, AGENT_VERSION, sizeof AGENT_VERSION - 1);
	for (size_t i = 0; i < n; i++)
		p = pb_put_bytes(p, 2, spans[i].p, spans[i].len);   /* ScopeSpans.spans */
	out->len = (size_t)(p - out->p);
	return out->len == total;
}

/* --- ExportTraceServiceResponse --- */

bool otlp_proto_parse_response(const char *data, size_t len, struct otlp_partial_success *out)
{
	const unsigned char *p = (const unsigned char *)data, *end = p + len;
	out->rejected_spans = 0;
	out->error_message = NULL;
	out->error_message_len = 0;
	while (p < end) {
		uint64_t key, n;
		if (!pb_get_varint(&p, end, &key))
			return false;
		if (key != PB_KEY(1, PB_LEN)) {
			if (!pb_skip(&p, end, (unsigned)(key & 7)))
				return false;
			continue;
		}
		/* partial_success (field 1): its fields merge over earlier ones */
		if (!pb_get_varint(&p, end, &n) || n > (uint64_t)(end - p))
			return false;
		const unsigned char *q = p, *qend = p + n;
		p = qend;
		while (q < qend) {
			uint64_t k, v;
			if (!pb_get_varint(&q, qend, &k))
				return false;
			if (k == PB_KEY(1, PB_VARINT)) {
				if (!pb_get_varint(&q, qend, &v))
					return false;
				out->rejected_spans = (int64_t)v;
			} else if (k == PB_KEY(2, PB_LEN)) {
				if (!pb_get_varint(&q, qend, &v) || v > (uint64_t)(qend - q))
					return false;
				out->error_message = (const char *)q;
				out->error_message_len = (size_t)v;
				q += v;
			} else if (!pb_skip(&q, qend, (unsigned)(k & 7))) {
				return false;
			}
		}
	}
	return true;
}
