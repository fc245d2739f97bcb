/* OTLP protobuf encoding decoded back field by field, and the export thread against a real otlp-sink. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/config.h"
#include "agent/ids.h"
#include "agent/propagation.h"
#include "agent/queue.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "agent/spanview.h"
#include "exporter/exporter.h"
#include "exporter/otlp_proto.h"
#include "otlp.pb-c.h"
#include "otlp_reference.h"

/* --- a fake environment for config_load --- */

static const char *env_vars[64][2];
static int env_n;

static const char *fake_getenv(const char *name)
{
	for (int i = 0; i < env_n; i++)
		if (strcmp(env_vars[i][0], name) == 0)
			return env_vars[i][1];
	return NULL;
}

static void env_set(const char *k, const char *v)
{
	for (int i = 0; i < env_n; i++) {
		if (strcmp(env_vars[i][0], k) == 0) {
			env_vars[i][1] = v;
			return;
		}
	}
	env_vars[env_n][0] = k;
	env_vars[env_n][1] = v;
	env_n++;
}

/* The wiring hooks/init.c does for the preloaded agent. */
static void agent_up(void)
{
	config_load(&config_global, fake_getenv);
	clock_reanchor();
	ck_assert(span_pool_init(config_global.bsp_max_queue_size));
	ck_assert(queue_init(config_global.bsp_max_queue_size, config_global.bsp_max_export_batch_size));
	exporter_init(&config_global);
}

static void after_fork_child(void)
{
	ids_after_fork();
	queue_reset_after_fork();
	exporter_after_fork_child();
}

/* A span exercising every field the encoder writes. */
static struct span *rich_span(const struct trace_context *parent, struct trace_context *out, const char *name)
{
	struct span *s = span_start(SPAN_KIND_SERVER, name, strlen(name), parent, out);
	span_set_cstr(s, "http.request.method", "GET");
	span_set_int(s, "http.response.status_code", 503);
	span_set_double(s, "ratio", 0.25);
	span_set_bool(s, "flag", true);
	const char *vals[] = { "a", "bc" };
	size_t lens[] = { 1, 2 };
	span_set_str_array(s, "http.request.header.accept", vals, lens, 2);
	span_set_status(s, SPAN_STATUS_ERROR, "boom", 4);
	span_add_exception(s, "SQLSTATE 42P01", "relation does not exist", 23);
	struct trace_context link;
	memset(&link, 0, sizeof link);
	link.valid = true;
	link.remote = true;
	link.flags = 1;
	memset(link.trace_id, 0xab, 16);
	memset(link.span_id, 0xcd, 8);
	struct span_kv kv = { .key = "messaging.batch.index", .type = SPAN_ATTR_INT, .v.i = 7 };
	span_add_link(s, &link, &kv, 1);
	return s;
}

/* --- encode --- */

/* The core without the export thread: these tests read the queue themselves. */
static void core_up(void)
{
	static const struct queue_consumer none;
	config_load(&config_global, fake_getenv);
	clock_reanchor();
	ck_assert(span_pool_init(config_global.bsp_max_queue_size));
	ck_assert(queue_init(config_global.bsp_max_queue_size, config_global.bsp_max_export_batch_size));
	queue_set_consumer(&none);
}

/* The queued entries from the oldest on, up to max; they stay valid until
 * queue_release(c). */
static size_t queue_take(struct queue_cursor *c, struct span_bytes *out, size_t max)
{
	size_t n = 0;
	queue_cursor_start(c);
	while (n < max && queue_next(c, &out[n].p, &out[n].len))
		n++;
	return n;
}

/* A sampled remote parent with a tracestate, as a server hook would extract it. */
static void remote_parent(struct trace_context *p)
{
	static const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	static struct tracestate_parser ps;
	ck_assert(propagation_parse_traceparent(tp, strlen(tp), p));
	propagation_tracestate_begin(&ps, p);
	propagation_tracestate_add(&ps, "vendor=abc", 10);
	ck_assert(propagation_tracestate_end(&ps));
}

static const Opentelemetry__Proto__KeyValue *find_kv(Opentelemetry__Proto__KeyValue **kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i]->key, key) == 0)
			return kv[i];
	return NULL;
}

#define T_START 1700000000000000000ull

START_TEST(encode_round_trip)
{
	env_n = 0;
	env_set("OTEL_SERVICE_NAME", "enc-test");
	core_up();
	struct trace_context parent, ctx, second, third;
	remote_parent(&parent);
	struct span *s = rich_span(&parent, &ctx, "GET /x");
	ck_assert_ptr_nonnull(s);
	span_set_start_time(s, T_START);
	span_end_at(s, T_START + 1234);
	/* Two more, to see the envelope keep them apart and in order. */
	struct trace_context root = { 0 };
	span_end(span_start(SPAN_KIND_CLIENT, "second", 6, &root, &second));
	span_end(span_start(SPAN_KIND_INTERNAL, "third", 5, &second, &third));

	struct queue_cursor c;
	struct span_bytes sb[4];
	ck_assert_uint_eq(queue_take(&c, sb, 4), 3);
	struct resource res;
	resource_build(&res, &config_global);
	struct buf b = { 0 };
	ck_assert(otlp_proto_encode(&b, &res, sb, 3));
	queue_release(&c);
	ck_assert_uint_eq(queue_length(), 0);

	Opentelemetry__Proto__ExportTraceServiceRequest *r =
		opentelemetry__proto__export_trace_service_request__unpack(NULL, b.len, (uint8_t *)b.p);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->n_resource_spans, 1);
	Opentelemetry__Proto__ResourceSpans *rs = r->resource_spans[0];
	const Opentelemetry__Proto__KeyValue *svc = find_kv(rs->resource->attributes, rs->resource->n_attributes, "service.name");
	ck_assert_ptr_nonnull(svc);
	ck_assert_str_eq(svc->value->string_value, "enc-test");
	const Opentelemetry__Proto__KeyValue *pid = find_kv(rs->resource->attributes, rs->resource->n_attributes, "process.pid");
	ck_assert_ptr_nonnull(pid);
	ck_assert_int_eq(pid->value->int_value, getpid());
	ck_assert_ptr_nonnull(find_kv(rs->resource->attributes, rs->resource->n_attributes, "telemetry.sdk.name"));
	ck_assert_uint_eq(rs->n_scope_spans, 1);
	ck_assert_str_eq(rs->scope_spans[0]->scope->name, AGENT_NAME);
	ck_assert_str_eq(rs->scope_spans[0]->scope->version, AGENT_VERSION);
	ck_assert_uint_eq(rs->scope_spans[0]->n_spans, 3);
	ck_assert_str_eq(rs->scope_spans[0]->spans[1]->name, "second");
	ck_assert_str_eq(rs->scope_spans[0]->spans[2]->name, "third");
	ck_assert_mem_eq(rs->scope_spans[0]->spans[2]->parent_span_id.data, second.span_id, 8);

	Opentelemetry__Proto__Span *p = rs->scope_spans[0]->spans[0];
	ck_assert_uint_eq(p->trace_id.len, 16);
	ck_assert_mem_eq(p->trace_id.data, parent.trace_id, 16);
	ck_assert_mem_eq(p->span_id.data, ctx.span_id, 8);
	ck_assert_mem_eq(p->parent_span_id.data, parent.span_id, 8);
	ck_assert_str_eq(p->trace_state, "vendor=abc");
	ck_assert_uint_eq(p->flags, 0x301);   /* sampled, has-is-remote, is-remote */
	ck_assert_str_eq(p->name, "GET /x");
	ck_assert_int_eq(p->kind, OPENTELEMETRY__PROTO__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
	ck_assert_uint_eq(p->start_time_unix_nano, T_START);
	ck_assert_uint_eq(p->end_time_unix_nano, T_START + 1234);
	ck_assert_uint_eq(p->n_attributes, 5);
	ck_assert_str_eq(find_kv(p->attributes, p->n_attributes, "http.request.method")->value->string_value, "GET");
	ck_assert_int_eq(find_kv(p->attributes, p->n_attributes, "http.response.status_code")->value->int_value, 503);
	ck_assert_double_eq(find_kv(p->attributes, p->n_attributes, "ratio")->value->double_value, 0.25);
	ck_assert(find_kv(p->attributes, p->n_attributes, "flag")->value->bool_value);
	const Opentelemetry__Proto__ArrayValue *av = find_kv(p->attributes, p->n_attributes, "http.request.header.accept")->value->array_value;
	ck_assert_uint_eq(av->n_values, 2);
	ck_assert_str_eq(av->values[1]->string_value, "bc");
	ck_assert_int_eq(p->status->code, OPENTELEMETRY__PROTO__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
	ck_assert_str_eq(p->status->message, "boom");
	ck_assert_uint_eq(p->n_events, 1);
	ck_assert_str_eq(p->events[0]->name, "exception");
	ck_assert_str_eq(find_kv(p->events[0]->attributes, p->events[0]->n_attributes, "exception.message")->value->string_value,
			 "relation does not exist");
	ck_assert_uint_eq(p->n_links, 1);
	ck_assert_uint_eq(p->links[0]->flags, 0x301);
	ck_assert_uint_eq(p->links[0]->trace_id.data[0], 0xab);
	ck_assert_int_eq(p->links[0]->attributes[0]->value->int_value, 7);
	opentelemetry__proto__export_trace_service_request__free_unpacked(r, NULL);

	/* An empty batch is a valid request with no spans. */
	ck_assert(otlp_proto_encode(&b, &res, NULL, 0));
	r = opentelemetry__proto__export_trace_service_request__unpack(NULL, b.len, (uint8_t *)b.p);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->resource_spans[0]->scope_spans[0]->n_spans, 0);
	opentelemetry__proto__export_trace_service_request__free_unpacked(r, NULL);
	buf_free(&b);
}
END_TEST

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* A string of n bytes (ASCII, with some multi-byte UTF-8) in buf. */
static size_t rnd_text(char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + rnd() % 26);
	if (n >= 2 && rnd() % 4 == 0) {
		buf[0] = (char)0xc3;   /* "é" */
		buf[1] = (char)0xa9;
	}
	return n;
}

/* A span with random content of every kind a span can hold, the big ones
 * (past SPAN_BIG_SIZE: values cut, attributes dropped) included. empty:
 * whether names and keys may be empty strings. */
static struct span *random_span(bool empty)
{
	static const size_t lens[] = { 0, 1, 5, 120, 127, 128, 300, 1000 };
	char text[1100], key[64];
	struct trace_context parent, out;
	memset(&parent, 0, sizeof parent);
	if (rnd() % 2) {
		parent.valid = true;
		parent.remote = rnd() % 2;
		parent.flags = (uint8_t)(rnd() % 4);
		for (int i = 0; i < 16; i++)
			parent.trace_id[i] = (uint8_t)rnd();
		for (int i = 0; i < 8; i++)
			parent.span_id[i] = (uint8_t)(rnd() | 1);
		if (rnd() % 3 == 0) {
			memcpy(parent.buf, "k1=v1,k2=v2", 11);
			parent.tracestate_len = 11;
		}
	}
	size_t nl = lens[rnd() % 8];
	if (!empty && !nl)
		nl = 1;
	rnd_text(text, nl);
	struct span *s = span_start((enum span_kind)(rnd() % 6), text, nl, &parent, &out);
	if (!s)
		return NULL;
	unsigned na = (unsigned)(rnd() % 12);
	for (unsigned i = 0; i < na; i++) {
		int kl = snprintf(key, sizeof key, "attr.%u", (unsigned)(rnd() % 50));
		if (rnd() % 20 == 0 && empty)
			kl = 0;   /* an empty key */
		switch (rnd() % 5) {
		case 0: {
			size_t l = lens[rnd() % 8];
			span_attr_str(s, key, (size_t)kl, text, rnd_text(text, l));
			break;
		}
		case 1:
			span_attr_int(s, key, (size_t)kl, (int64_t)rnd() * (rnd() % 2 ? 1 : -1) >> (rnd() % 64));
			break;
		case 2:
			span_attr_double(s, key, (size_t)kl, (double)(int64_t)rnd() / 7.0);
			break;
		case 3:
			span_attr_bool(s, key, (size_t)kl, rnd() % 2);
			break;
		default: {
			const char *vals[4] = { "x", "", "yz", "long-ish element" };
			size_t vl[4] = { 1, 0, 2, 16 };
			key[kl] = '\0';
			span_set_str_array(s, key, vals, vl, 1 + rnd() % 4);
			break;
		}
		}
	}
	if (rnd() % 3 == 0) {
		size_t l = lens[rnd() % 8];
		span_set_status(s, (enum span_status)(rnd() % 3), text, rnd_text(text, l));
	}
	for (unsigned i = 0, ne = (unsigned)(rnd() % 6); i < ne; i++) {
		struct span_kv kv[2] = { { .key = "e.int", .type = SPAN_ATTR_INT, .v.i = (int64_t)rnd() },
					 { .key = "e.str", .type = SPAN_ATTR_STRING, .v.s = { "v", 1 } } };
		span_add_event(s, rnd() % 2 || !empty ? "event" : "", rnd() % 4 ? clock_now_ns() : 0, kv, rnd() % 3);
	}
	for (unsigned i = 0, nk = (unsigned)(rnd() % 6); i < nk; i++) {
		struct span_kv kv = { .key = "l.bool", .type = SPAN_ATTR_BOOL, .v.b = true };
		span_add_link(s, parent.valid ? &parent : &out, &kv, rnd() % 2);
	}
	if (rnd() % 4 == 0)
		span_set_start_time(s, T_START + rnd() % 1000);
	return s;
}

#define RND_BATCH 64

/* A batch of random spans as the exporter would get it: most ended through
 * span_end_at into the queue (read back with a cursor), one in five encoded
 * open (no end time) with span_encode. The views are decoded from the bytes. */
struct rnd_batch {
	size_t n;
	struct span_bytes bytes[RND_BATCH];
	char *own[RND_BATCH];          /* span_encode's buffers; NULL: a queue entry */
	struct span_view *views[RND_BATCH];
	struct queue_cursor c;
};

static void rnd_batch_make(struct rnd_batch *b, bool empty)
{
	size_t want = (size_t)(rnd() % RND_BATCH);
	b->n = 0;
	for (size_t i = 0; i < want; i++) {
		struct span *s = random_span(empty);
		if (!s)
			continue;
		size_t k = b->n++;
		if (rnd() % 5 == 0) {
			b->own[k] = malloc(SPAN_BIG_SIZE + 256);
			ck_assert_ptr_nonnull(b->own[k]);
			b->bytes[k].p = b->own[k];
			b->bytes[k].len = span_encode(s, 0, b->own[k], SPAN_BIG_SIZE + 256);
			ck_assert_uint_gt(b->bytes[k].len, 0);
			/* Too small a buffer: refused whole, never cut. */
			ck_assert_uint_eq(span_encode(s, 0, b->own[k], b->bytes[k].len - 1), 0);
			span_discard(s);
		} else {
			b->own[k] = NULL;
			struct span_view *v = b->views[k];
			ck_assert(span_view_of(s, v));
			span_end_at(s, v->start_ns + rnd() % 1000000);
		}
	}
	/* The queue holds the ended ones in the order they ended. */
	queue_cursor_start(&b->c);
	for (size_t k = 0; k < b->n; k++) {
		if (!b->own[k])
			ck_assert(queue_next(&b->c, &b->bytes[k].p, &b->bytes[k].len));
	}
	const char *p;
	size_t len;
	ck_assert(!queue_next(&b->c, &p, &len));
	for (size_t k = 0; k < b->n; k++)
		ck_assert_msg(span_view_decode(b->bytes[k].p, b->bytes[k].len, b->views[k]), "span %zu does not decode", k);
}

static void rnd_batch_done(struct rnd_batch *b)
{
	queue_release(&b->c);
	for (size_t k = 0; k < b->n; k++)
		free(b->own[k]);
	b->n = 0;
	ck_assert_uint_eq(queue_length(), 0);
}

static void rnd_batch_init(struct rnd_batch *b)
{
	memset(b, 0, sizeof *b);
	for (size_t k = 0; k < RND_BATCH; k++) {
		b->views[k] = malloc(sizeof *b->views[k]);
		ck_assert_ptr_nonnull(b->views[k]);
	}
}

static void rnd_batch_free(struct rnd_batch *b)
{
	for (size_t k = 0; k < RND_BATCH; k++)
		free(b->views[k]);
}

static void hexdump_diff(const char *what, const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i = 0;
	while (i < alen && i < blen && a[i] == b[i])
		i++;
	fprintf(stderr, "%s: %zu vs %zu bytes, first difference at %zu\n  agent:", what, alen, blen, i);
	for (size_t k = i; k < alen && k < i + 24; k++)
		fprintf(stderr, " %02x", (unsigned char)a[k]);
	fprintf(stderr, "\n  ref:  ");
	for (size_t k = i; k < blen && k < i + 24; k++)
		fprintf(stderr, " %02x", (unsigned char)b[k]);
	fprintf(stderr, "\n");
}

/* The agent's bytes, span by span and as a whole request, against
 * protobuf-c's packing of the same content (tests/unit/otlp_reference.c). */
static void ck_matches_protobuf_c(bool empty, int rounds)
{
	env_n = 0;
	env_set("OTEL_SERVICE_NAME", "enc-ref");
	env_set("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,empty=");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "4096");
	core_up();
	struct resource res;
	resource_build(&res, &config_global);
	struct buf mine = { 0 }, ref = { 0 };
	static struct rnd_batch b;
	rnd_batch_init(&b);
	for (int round = 0; round < rounds; round++) {
		rnd_batch_make(&b, empty);
		for (size_t k = 0; k < b.n; k++) {
			ck_assert(otlp_reference_pack_span(&ref, b.views[k]));
			if (ref.len != b.bytes[k].len || memcmp(ref.p, b.bytes[k].p, ref.len) != 0) {
				hexdump_diff("span", b.bytes[k].p, b.bytes[k].len, ref.p, ref.len);
				ck_abort_msg("round %d span %zu (\"%s\"): the agent's %zu bytes differ from protobuf-c's %zu",
					     round, k, span_view_str(b.views[k], b.views[k]->name), b.bytes[k].len, ref.len);
			}
		}
		ck_assert(otlp_proto_encode(&mine, &res, b.bytes, b.n));
		ck_assert(otlp_proto_encode_reference(&ref, &res, (const struct span_view *const *)b.views, b.n));
		ck_assert_uint_eq(mine.len, ref.len);
		ck_assert_mem_eq(mine.p, ref.p, ref.len);
		rnd_batch_done(&b);
	}
	rnd_batch_free(&b);
	buf_free(&mine);
	buf_free(&ref);
}

START_TEST(encode_matches_protobuf_c)
{
	ck_matches_protobuf_c(false, 300);
}
END_TEST

/*
 * proto3 leaves an empty string field out, as protobuf-c (and the agent's
 * envelope) do. Regression: the first span encoder wrote an empty span name
 * (`2a 00`), attribute key (`0a 00`) and event name (`12 00`). Checked case
 * by case, then at random with everything else.
 */
static bool same_as_protobuf_c(struct span *s)
{
	static char bytes[SPAN_BIG_SIZE + 256];
	static struct span_view v;
	struct buf ref = { 0 };
	size_t n = span_encode(s, 0, bytes, sizeof bytes);
	ck_assert_uint_gt(n, 0);
	ck_assert(span_view_decode(bytes, n, &v));
	ck_assert(otlp_reference_pack_span(&ref, &v));
	bool same = ref.len == n && memcmp(ref.p, bytes, n) == 0;
	if (!same)
		hexdump_diff("span", bytes, n, ref.p, ref.len);
	buf_free(&ref);
	span_discard(s);
	return same;
}

START_TEST(encode_empty_strings_match_protobuf_c)
{
	env_n = 0;
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "4096");
	core_up();
	struct trace_context root = { 0 }, out;
	char what[128] = "";

	struct span *s = span_start(SPAN_KIND_INTERNAL, "", 0, &root, &out);
	if (!same_as_protobuf_c(s))
		strcat(what, " Span.name");
	s = span_start(SPAN_KIND_INTERNAL, "n", 1, &root, &out);
	span_attr_int(s, "", 0, 1);
	if (!same_as_protobuf_c(s))
		strcat(what, " KeyValue.key");
	s = span_start(SPAN_KIND_INTERNAL, "n", 1, &root, &out);
	span_add_event(s, "", 1, NULL, 0);
	if (!same_as_protobuf_c(s))
		strcat(what, " Event.name");
	ck_assert_msg(!what[0], "empty string fields written, not left out:%s", what);
	/* And at random, with everything else. */
	ck_matches_protobuf_c(true, 100);
}
END_TEST

/* --- what protobuf-c decodes from the agent's bytes is what the view says --- */

static void ck_kv_eq(const struct span_view *v, const struct span_attr *a, const Opentelemetry__Proto__KeyValue *kv)
{
	ck_assert_str_eq(kv->key, span_view_str(v, a->key));
	ck_assert_ptr_nonnull(kv->value);
	const Opentelemetry__Proto__AnyValue *av = kv->value;
	switch (a->type) {
	case SPAN_ATTR_STRING:
		ck_assert_int_eq(av->value_case, OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE);
		ck_assert_uint_eq(strlen(av->string_value), a->v.s.len);
		ck_assert_str_eq(av->string_value, span_view_str(v, a->v.s));
		break;
	case SPAN_ATTR_BOOL:
		ck_assert_int_eq(av->value_case, OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_BOOL_VALUE);
		ck_assert_int_eq(av->bool_value, a->v.b);
		break;
	case SPAN_ATTR_INT:
		ck_assert_int_eq(av->value_case, OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_INT_VALUE);
		ck_assert(av->int_value == a->v.i);
		break;
	case SPAN_ATTR_DOUBLE:
		ck_assert_int_eq(av->value_case, OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_DOUBLE_VALUE);
		ck_assert(memcmp(&av->double_value, &a->v.d, sizeof(double)) == 0);
		break;
	case SPAN_ATTR_STRING_ARRAY: {
		ck_assert_int_eq(av->value_case, OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_ARRAY_VALUE);
		ck_assert_uint_eq(av->array_value->n_values, a->n);
		const char *e = span_view_str(v, a->v.s);
		for (size_t i = 0; i < a->n; i++) {
			ck_assert_int_eq(av->array_value->values[i]->value_case,
					 OPENTELEMETRY__PROTO__ANY_VALUE__VALUE_STRING_VALUE);
			ck_assert_str_eq(av->array_value->values[i]->string_value, e);
			e += strlen(e) + 1;
		}
		ck_assert_uint_eq((size_t)(e - span_view_str(v, a->v.s)), a->v.s.len);
		break;
	}
	default:
		ck_abort_msg("attribute of type %u", a->type);
	}
}

static void ck_flags_eq(uint32_t flags, uint8_t w3c, bool remote)
{
	ck_assert_uint_eq(flags & 0xff, w3c);
	ck_assert_uint_eq(flags & 0x100, 0x100);   /* the agent always knows whether the parent is remote */
	ck_assert_uint_eq((flags & 0x200) != 0, remote);
	ck_assert_uint_eq(flags & ~0x3ffu, 0);
}

static void ck_view_eq_protobuf_c(const struct span_view *v, const Opentelemetry__Proto__Span *p)
{
	ck_assert_uint_eq(p->trace_id.len, 16);
	ck_assert_mem_eq(p->trace_id.data, v->trace_id, 16);
	ck_assert_uint_eq(p->span_id.len, 8);
	ck_assert_mem_eq(p->span_id.data, v->span_id, 8);
	ck_assert_uint_eq(p->parent_span_id.len, v->has_parent ? 8 : 0);
	if (v->has_parent)
		ck_assert_mem_eq(p->parent_span_id.data, v->parent_span_id, 8);
	ck_assert(v->has_parent || !v->parent_remote);
	ck_assert_str_eq(p->trace_state, span_view_str(v, v->trace_state));
	ck_assert_str_eq(p->name, span_view_str(v, v->name));
	ck_assert_int_eq(p->kind, v->kind);
	ck_assert_uint_eq(p->start_time_unix_nano, v->start_ns);
	ck_assert_uint_eq(p->end_time_unix_nano, v->end_ns);
	ck_flags_eq(p->flags, v->trace_flags, v->parent_remote);
	ck_assert_uint_eq(p->n_attributes, v->n_attrs);
	for (size_t i = 0; i < v->n_attrs; i++)
		ck_kv_eq(v, &v->attrs[i], p->attributes[i]);
	ck_assert_uint_eq(p->dropped_attributes_count, v->dropped_attrs);
	ck_assert_uint_eq(p->n_events, v->n_events);
	for (size_t i = 0; i < v->n_events; i++) {
		const struct span_event *e = &v->events[i];
		const Opentelemetry__Proto__Span__Event *pe = p->events[i];
		ck_assert_uint_eq(pe->time_unix_nano, e->time_ns);
		ck_assert_str_eq(pe->name, span_view_str(v, e->name));
		ck_assert_uint_eq(pe->n_attributes, e->attr_count);
		for (size_t k = 0; k < e->attr_count; k++)
			ck_kv_eq(v, &v->sub_attrs[e->attr_first + k], pe->attributes[k]);
		ck_assert_uint_eq(pe->dropped_attributes_count, e->dropped_attrs);
	}
	ck_assert_uint_eq(p->dropped_events_count, v->dropped_events);
	ck_assert_uint_eq(p->n_links, v->n_links);
	for (size_t i = 0; i < v->n_links; i++) {
		const struct span_link *l = &v->links[i];
		const Opentelemetry__Proto__Span__Link *pl = p->links[i];
		ck_assert_uint_eq(pl->trace_id.len, 16);
		ck_assert_mem_eq(pl->trace_id.data, l->trace_id, 16);
		ck_assert_uint_eq(pl->span_id.len, 8);
		ck_assert_mem_eq(pl->span_id.data, l->span_id, 8);
		ck_assert_str_eq(pl->trace_state, span_view_str(v, l->trace_state));
		ck_assert_uint_eq(pl->n_attributes, l->attr_count);
		for (size_t k = 0; k < l->attr_count; k++)
			ck_kv_eq(v, &v->sub_attrs[l->attr_first + k], pl->attributes[k]);
		ck_assert_uint_eq(pl->dropped_attributes_count, l->dropped_attrs);
		ck_flags_eq(pl->flags, l->flags, l->remote);
	}
	ck_assert_uint_eq(p->dropped_links_count, v->dropped_links);
	if (p->status) {
		ck_assert_int_eq(p->status->code, v->status);
		ck_assert_str_eq(p->status->message, span_view_str(v, v->status_message));
	} else {
		ck_assert_int_eq(v->status, SPAN_STATUS_UNSET);
		ck_assert_uint_eq(v->status_message.len, 0);
	}
	/* The message goes only with ERROR, and an UNSET status is left out. */
	ck_assert(v->status == SPAN_STATUS_ERROR || v->status_message.len == 0);
	ck_assert((p->status != NULL) == (v->status != SPAN_STATUS_UNSET));
}

/* New with the span bytes: protobuf-c reads the agent's Span messages (the
 * queue's entries) as the same span the view decoder reads. */
START_TEST(encode_span_decodes_as_view)
{
	env_n = 0;
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "4096");
	core_up();
	static struct rnd_batch b;
	rnd_batch_init(&b);
	size_t spans = 0;
	for (int round = 0; round < 100; round++) {
		rnd_batch_make(&b, true);
		for (size_t k = 0; k < b.n; k++) {
			Opentelemetry__Proto__Span *p =
				opentelemetry__proto__span__unpack(NULL, b.bytes[k].len, (const uint8_t *)b.bytes[k].p);
			ck_assert_msg(p != NULL, "round %d span %zu: protobuf-c cannot read it", round, k);
			ck_view_eq_protobuf_c(b.views[k], p);
			opentelemetry__proto__span__free_unpacked(p, NULL);
			spans++;
		}
		rnd_batch_done(&b);
	}
	ck_assert_uint_gt(spans, 1000);
	rnd_batch_free(&b);
}
END_TEST

/* The response parser against protobuf-c's packing of the same messages. */
START_TEST(parse_response_matches_protobuf_c)
{
	static const struct { int64_t rejected; const char *msg; bool has_ps; } cases[] = {
		{ 0, NULL, false }, { 0, "", true }, { 3, "", true }, { 7, "too old", true },
		{ -1, "negative", true }, { INT64_MAX, "max", true }, { 0, "only a message", true },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		Opentelemetry__Proto__ExportTracePartialSuccess ps = OPENTELEMETRY__PROTO__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
		Opentelemetry__Proto__ExportTraceServiceResponse r = OPENTELEMETRY__PROTO__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
		ps.rejected_spans = cases[i].rejected;
		ps.error_message = (char *)(cases[i].msg ? cases[i].msg : "");
		if (cases[i].has_ps)
			r.partial_success = &ps;
		uint8_t wire[256];
		size_t n = opentelemetry__proto__export_trace_service_response__pack(&r, wire);
		struct otlp_partial_success out;
		ck_assert(otlp_proto_parse_response((const char *)wire, n, &out));
		ck_assert_int_eq(out.rejected_spans, cases[i].rejected);
		const char *want = cases[i].msg ? cases[i].msg : "";
		ck_assert_uint_eq(out.error_message_len, strlen(want));
		if (out.error_message_len)
			ck_assert_mem_eq(out.error_message, want, strlen(want));
	}
	/* Unknown fields are skipped; malformed input is refused, never overread. */
	static const char unknown[] = "\x10\x05\x19\x01\x02\x03\x04\x05\x06\x07\x08\x0a\x02\x08\x09";
	struct otlp_partial_success out;
	ck_assert(otlp_proto_parse_response(unknown, sizeof unknown - 1, &out));
	ck_assert_int_eq(out.rejected_spans, 9);
	static const char *const bad[] = { "\x0a", "\x0a\x05\x08", "\x0a\x02\x12\x09", "\x0b", "\xff\xff\xff" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert(!otlp_proto_parse_response(bad[i], strlen(bad[i]), &out));
}
END_TEST

/* --- the exporter against otlp-sink --- */

struct sink {
	pid_t pid;
	int port;
	char dir[64];
	char jsonl[128];
	char reqlog[128];
	char url[128];
};

static void sink_start(struct sink *k, const char *const *extra)
{
	const char *bin = getenv("TRACEAGENT_SINK");
	if (!bin)
		bin = "build/otlp-sink";
	snprintf(k->dir, sizeof k->dir, "/tmp/ta-exp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(k->dir));
	snprintf(k->jsonl, sizeof k->jsonl, "%s/spans.jsonl", k->dir);
	snprintf(k->reqlog, sizeof k->reqlog, "%s/requests.jsonl", k->dir);
	int fd[2];
	ck_assert_int_eq(pipe(fd), 0);
	k->pid = fork();
	ck_assert_int_ge(k->pid, 0);
	if (k->pid == 0) {
		const char *argv[32] = { bin, "--port", "0", "--quiet", "--jsonl", k->jsonl, "--requests-log", k->reqlog };
		int n = 8;
		for (int i = 0; extra && extra[i]; i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		dup2(fd[1], 1);
		close(fd[0]);
		execv(bin, (char **)argv);
		_exit(127);
	}
	close(fd[1]);
	FILE *f = fdopen(fd[0], "r");
	char line[256];
	k->port = 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "listening on 127.0.0.1:%d", &k->port) == 1)
			break;
	fclose(f);
	ck_assert_int_gt(k->port, 0);
	snprintf(k->url, sizeof k->url, "http://127.0.0.1:%d/v1/traces", k->port);
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", k->url);
}

static void sink_stop(struct sink *k)
{
	kill(k->pid, SIGTERM);
	waitpid(k->pid, NULL, 0);
	unlink(k->jsonl);
	unlink(k->reqlog);
	rmdir(k->dir);
}

/* Lines in a file containing needle. */
static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) > 0)
		if (!needle || strstr(line, needle))
			n++;
	free(line);
	fclose(f);
	return n;
}

static void make_spans(int n, const char *name)
{
	struct trace_context root = { 0 };
	for (int i = 0; i < n; i++) {
		struct trace_context ctx;
		struct span *s = span_start(SPAN_KIND_CLIENT, name, strlen(name), &root, &ctx);
		span_set_int(s, "i", i);
		span_end(s);
	}
}

static void base_env(void)
{
	env_n = 0;
	env_set("OTEL_SERVICE_NAME", "exp-test");
	env_set("OTEL_BSP_SCHEDULE_DELAY", "60000");   /* only explicit flushes export */
	env_set("OTEL_LOG_LEVEL", "error");
}

START_TEST(export_plain_and_gzip)
{
	struct sink k;
	base_env();
	sink_start(&k, NULL);
	env_set("OTEL_EXPORTER_OTLP_COMPRESSION", _i ? "gzip" : "none");
	env_set("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret,x-tenant=a%20b");
	agent_up();
	make_spans(100, "op");
	ck_assert(exporter_flush(20000));
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"op\""), 100);
	ck_assert_int_eq(count_lines(k.jsonl, "\"service.name\":\"exp-test\""), 100);
	ck_assert_int_eq(count_lines(k.reqlog, NULL), 1);
	ck_assert_int_eq(count_lines(k.reqlog, "\"api-key\":\"s3cret\""), 1);
	ck_assert_int_eq(count_lines(k.reqlog, "\"x-tenant\":\"a b\""), 1);
	ck_assert_int_eq(count_lines(k.reqlog, "OTel-OTLP-Exporter-C/"), 1);
	ck_assert_int_eq(count_lines(k.reqlog, "application/x-protobuf"), 1);
	if (_i)
		ck_assert_int_eq(count_lines(k.reqlog, "\"content_encoding\":\"gzip\""), 1);
	struct exporter_stats st;
	exporter_stats_get(&st);
	ck_assert_uint_eq(st.exported, 100);
	sink_stop(&k);
}
END_TEST

START_TEST(export_batches_by_size)
{
	struct sink k;
	base_env();
	sink_start(&k, NULL);
	env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10");
	agent_up();
	make_spans(35, "b");
	ck_assert(exporter_flush(20000));
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"b\""), 35);
	/* 3 full batches went out at the watermark or the flush, and a last one of 5. */
	ck_assert_int_ge(count_lines(k.reqlog, NULL), 4);
	sink_stop(&k);
}
END_TEST

START_TEST(export_retry_after_503)
{
	static const char *const extra[] = { "--fail-first", "1", "--status", "503", "--retry-after", "1", NULL };
	struct sink k;
	base_env();
	sink_start(&k, extra);
	agent_up();
	make_spans(5, "r");
	ck_assert(exporter_flush(30000));
	ck_assert_int_eq(count_lines(k.reqlog, NULL), 2);
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"r\""), 5);
	struct exporter_stats st;
	exporter_stats_get(&st);
	ck_assert_uint_eq(st.exported, 5);
	ck_assert_uint_eq(st.failed, 0);
	sink_stop(&k);
}
END_TEST

START_TEST(export_400_not_retried)
{
	static const char *const extra[] = { "--status", "400", NULL };
	struct sink k;
	base_env();
	sink_start(&k, extra);
	agent_up();
	make_spans(5, "x");
	ck_assert(exporter_flush(30000));
	ck_assert_int_eq(count_lines(k.reqlog, NULL), 1);
	struct exporter_stats st;
	exporter_stats_get(&st);
	ck_assert_uint_eq(st.failed, 5);
	ck_assert_uint_eq(st.exported, 0);
	sink_stop(&k);
}
END_TEST

START_TEST(export_partial_success)
{
	static const char *const extra[] = { "--partial-success", "2", NULL };
	struct sink k;
	base_env();
	sink_start(&k, extra);
	agent_up();
	make_spans(5, "p");
	ck_assert(exporter_flush(30000));
	struct exporter_stats st;
	exporter_stats_get(&st);
	ck_assert_uint_eq(st.rejected, 2);
	ck_assert_uint_eq(st.exported, 3);
	sink_stop(&k);
}
END_TEST

/* Runs body in a child process and returns its wait status. A watchdog kills
 * a child that hangs, so a hang fails the test instead of stalling the run. */
static int in_child(void (*body)(void))
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		body();
		_exit(99);   /* body() exits itself */
	}
	int status = 0;
	for (int i = 0; i < 600; i++) {   /* 60 s: a hang detector, not a timing check */
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	ck_abort_msg("child hung at exit");
	return status;
}

static void child_exit_after_spans(void)
{
	agent_up();
	make_spans(7, "atexit");
	exit(0);   /* no explicit flush: the exit handler must send them */
}

START_TEST(export_flush_at_exit)
{
	struct sink k;
	base_env();
	sink_start(&k, NULL);
	int st = in_child(child_exit_after_spans);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"atexit\""), 7);
	sink_stop(&k);
}
END_TEST

static void child_exit_black_hole(void)
{
	env_set("TRACEAGENT_EXIT_TIMEOUT", "300");
	agent_up();
	make_spans(3, "lost");
	exit(3);
}

static void child_abort_with_spans(void)
{
	agent_up();
	make_spans(3, "lost");
	signal(SIGABRT, SIG_DFL);
	abort();
}

static void child_underscore_exit(void)
{
	agent_up();
	make_spans(3, "lost");
	_exit(4);
}

START_TEST(export_bounded_exit_black_hole)
{
	static const char *const extra[] = { "--black-hole", NULL };
	struct sink k;
	base_env();
	sink_start(&k, extra);
	int st = in_child(child_exit_black_hole);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 3);   /* the app's own exit status survives */
	st = in_child(child_abort_with_spans);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	st = in_child(child_underscore_exit);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 4);
	sink_stop(&k);
}
END_TEST

START_TEST(export_dead_collector_exit)
{
	base_env();
	/* Port 9 on loopback: nothing listens, every connect is refused. */
	env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces");
	int st = in_child(child_exit_black_hole);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3);
}
END_TEST

/* exporter_flush_signal from a real signal handler, as hooks/sigflush.c
 * calls it; the child's exit status is what it returned. */
static volatile sig_atomic_t sig_flushed = -1;

static void flush_from_handler(int sig)
{
	(void)sig;
	sig_flushed = exporter_flush_signal(exporter_final_deadline(config_global.exit_timeout_ms));
}

static void child_flush_at_signal(void)
{
	agent_up();
	/* The handler interrupts this thread: the export thread does the work. */
	signal(SIGUSR1, flush_from_handler);
	make_spans(6, "at-signal");
	raise(SIGUSR1);
	_exit(sig_flushed == 1 ? 0 : 10 + sig_flushed);   /* no exit flush: only the handler's counts */
}

static void child_flush_at_signal_bounded(void)
{
	env_set("TRACEAGENT_EXIT_TIMEOUT", "300");
	agent_up();
	signal(SIGUSR1, flush_from_handler);
	make_spans(3, "lost");
	raise(SIGUSR1);
	if (sig_flushed != 0)
		_exit(20);
	exit(5);   /* the exit flush shares the bound the handler used up */
}

static void child_flush_at_signal_no_thread(void)
{
	agent_up();
	signal(SIGUSR1, flush_from_handler);
	raise(SIGUSR1);   /* no span yet, so no export thread: returns at once */
	_exit(sig_flushed == 0 ? 0 : 30);
}

START_TEST(export_flush_at_signal)
{
	struct sink k;
	base_env();
	sink_start(&k, NULL);
	int st = in_child(child_flush_at_signal);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"at-signal\""), 6);
	st = in_child(child_flush_at_signal_no_thread);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	sink_stop(&k);

	static const char *const hole[] = { "--black-hole", NULL };
	base_env();
	sink_start(&k, hole);
	st = in_child(child_flush_at_signal_bounded);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 5, "status %#x", st);
	sink_stop(&k);
}
END_TEST

START_TEST(export_fork)
{
	struct sink k;
	base_env();
	sink_start(&k, NULL);
	agent_up();
	pthread_atfork(NULL, NULL, after_fork_child);
	make_spans(10, "before-fork");
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		make_spans(4, "in-child");
		exporter_flush(20000);
		_exit(queue_length() == 0 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert(exporter_flush(20000));
	/* Spans queued before the fork are exported once, by the parent. */
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"before-fork\""), 10);
	ck_assert_int_eq(count_lines(k.jsonl, "\"name\":\"in-child\""), 4);
	sink_stop(&k);
}
END_TEST

START_TEST(export_http_json)
{
	/* otlp-sink decodes protobuf only; in --status mode it answers without
	 * decoding, which is enough to see what the transport sent. The JSON
	 * itself is checked by the encode_json suite. */
	static const char *const extra[] = { "--status", "200", NULL };
	struct sink k;
	base_env();
	sink_start(&k, extra);
	env_set("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
	agent_up();
	make_spans(3, "j");
	ck_assert(exporter_flush(20000));
	ck_assert_int_eq(count_lines(k.reqlog, "application/json"), 1);
	struct exporter_stats st;
	exporter_stats_get(&st);
	ck_assert_uint_eq(st.exported, 3);
	sink_stop(&k);
}
END_TEST

START_TEST(export_console)
{
	base_env();
	env_set("OTEL_TRACES_EXPORTER", "console");
	char path[] = "/tmp/ta-console-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	dup2(fd, 2);
	agent_up();
	make_spans(3, "console-span");
	ck_assert(exporter_flush(10000));
	ck_assert_int_eq(count_lines(path, "\"name\":\"console-span\""), 3);
	unlink(path);
}
END_TEST

Suite *encode_suite(void)
{
	Suite *s = suite_create("encode");
	TCase *tc = tcase_create("protobuf");
	tcase_set_timeout(tc, 60);
	env_n = 0;
	tcase_add_test(tc, encode_round_trip);
	tcase_add_test(tc, encode_matches_protobuf_c);
	tcase_add_test(tc, encode_empty_strings_match_protobuf_c);
	tcase_add_test(tc, encode_span_decodes_as_view);
	tcase_add_test(tc, parse_response_matches_protobuf_c);
	suite_add_tcase(s, tc);
	return s;
}

Suite *exporter_suite(void)
{
	Suite *s = suite_create("exporter");
	TCase *tc = tcase_create("sink");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, export_plain_and_gzip, 0, 2);
	tcase_add_test(tc, export_batches_by_size);
	tcase_add_test(tc, export_retry_after_503);
	tcase_add_test(tc, export_400_not_retried);
	tcase_add_test(tc, export_partial_success);
	tcase_add_test(tc, export_flush_at_exit);
	tcase_add_test(tc, export_bounded_exit_black_hole);
	tcase_add_test(tc, export_dead_collector_exit);
	tcase_add_test(tc, export_flush_at_signal);
	tcase_add_test(tc, export_fork);
	tcase_add_test(tc, export_http_json);
	tcase_add_test(tc, export_console);
	suite_add_tcase(s, tc);
	return s;
}
