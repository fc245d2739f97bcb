/* emit-spans: makes spans through the core API (no hooks) and exports them, or dumps one encoded OTLP body. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "agent/propagation.h"
#include "agent/queue.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "agent/spanview.h"
#include "exporter/exporter.h"
#include "exporter/otlp_proto.h"

static const char *env(const char *n)
{
	return getenv(n);
}

/* One trace with every feature the encoder handles: a remote parent with
 * tracestate, all attribute types, an exception event, a link, statuses. */
static void rich_trace(struct span **out, uint64_t *end_ns, size_t *n)
{
	static const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	static struct tracestate_parser ps;
	struct trace_context remote, server, child;

	propagation_parse_traceparent(tp, strlen(tp), &remote);
	propagation_tracestate_begin(&ps, &remote);
	propagation_tracestate_add(&ps, "congo=t61rcWkgMzE", 17);
	propagation_tracestate_end(&ps);

	struct span *s = span_start(SPAN_KIND_SERVER, "GET /api/tasks/{id}", 19, &remote, &server);
	span_set_cstr(s, "http.request.method", "GET");
	span_set_cstr(s, "url.path", "/api/tasks/42");
	span_set_int(s, "http.response.status_code", 500);
	span_set_double(s, "test.double", 1.5);
	span_set_bool(s, "test.bool", true);
	const char *vals[] = { "text/html", "application/json" };
	size_t lens[] = { 9, 16 };
	span_set_str_array(s, "http.request.header.accept", vals, lens, 2);
	span_set_status(s, SPAN_STATUS_ERROR, "internal error", 14);

	struct span *c = span_start(SPAN_KIND_CLIENT, "SELECT tasks", 12, &server, &child);
	span_set_cstr(c, "db.system.name", "postgresql");
	span_add_exception(c, "42P01", "relation \"tasks\" does not exist", 31);
	struct span_kv kv = { .key = "link.kind", .type = SPAN_ATTR_STRING, .v.s = { "follows", 7 } };
	span_add_link(c, &remote, &kv, 1);
	span_set_status(c, SPAN_STATUS_ERROR, "relation does not exist", 23);

	struct trace_context p;
	struct span *prod = span_start(SPAN_KIND_PRODUCER, "send web-crawl-tasks", 20, &server, &p);
	struct span *cons = span_start(SPAN_KIND_CONSUMER, "process web-crawl-tasks", 23, &p, &child);
	struct span *internal = span_start(SPAN_KIND_INTERNAL, "work", 4, &child, &p);
	span_set_status(internal, SPAN_STATUS_OK, NULL, 0);

	struct span *all[] = { s, c, prod, cons, internal };
	static struct span_view view;
	*n = 0;
	for (size_t i = 0; i < 5; i++) {
		/* Each lasts a known time after its (real) start. */
		end_ns[*n] = span_view_of(all[i], &view) ? view.start_ns + 1000 * (i + 1) : 0;
		out[(*n)++] = all[i];
	}
}

int main(int argc, char **argv)
{
	const char *dump = NULL;
	bool trace = false;
	long count = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--dump") && i + 1 < argc)
			dump = argv[++i];
		else if (!strcmp(argv[i], "--trace"))
			trace = true;
		else if (!strcmp(argv[i], "--count") && i + 1 < argc)
			count = atol(argv[++i]);
		else {
			fprintf(stderr, "usage: emit-spans --dump FILE | --trace | --count N\n");
			return 2;
		}
	}
	config_load(&config_global, env);
	clock_reanchor();
	if (!span_pool_init(config_global.bsp_max_queue_size) ||
	    !queue_init(config_global.bsp_max_queue_size, config_global.bsp_max_export_batch_size))
		return 1;

	if (dump) {
		/* Ended into the queue (no export thread here) and read back: the
		 * bytes span_end wrote are what the envelope wraps. */
		struct span *spans[8];
		struct span_bytes bytes[8];
		uint64_t end_ns[8];
		size_t n, k = 0;
		struct resource res;
		struct buf b = { 0 };
		struct queue_cursor cur;
		rich_trace(spans, end_ns, &n);
		for (size_t i = 0; i < n; i++)
			span_end_at(spans[i], end_ns[i]);
		queue_cursor_start(&cur);
		while (k < n && queue_next(&cur, &bytes[k].p, &bytes[k].len))
			k++;
		resource_build(&res, &config_global);
		if (k != n || !otlp_proto_encode(&b, &res, bytes, n))
			return 1;
		queue_release(&cur);
		FILE *f = fopen(dump, "wb");
		if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f))
			return 1;
		return 0;
	}

	if (trace) {
		/* The same trace, ended through span_end: the export thread sends it. */
		struct span *spans[8];
		uint64_t end_ns[8];
		size_t n;
		exporter_init(&config_global);
		rich_trace(spans, end_ns, &n);
		for (size_t i = n; i-- > 0;)
			span_end_at(spans[i], end_ns[i]);
		bool done = exporter_flush(10000);
		struct exporter_stats st;
		exporter_stats_get(&st);
		printf("exported %llu failed %llu\n", (unsigned long long)st.exported, (unsigned long long)st.failed);
		return done && st.exported == n ? 0 : 1;
	}

	/* Throughput: make count small spans as fast as the queue takes them, and
	 * report how many the collector accepted per second. */
	exporter_init(&config_global);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct trace_context root = { 0 }, ctx;
	long made = 0;
	while (made < count) {
		if (queue_length() >= config_global.bsp_max_queue_size - 1) {
			struct timespec d = { 0, 50000 };
			nanosleep(&d, NULL);   /* back-pressure: measure delivery, not drops */
			continue;
		}
		struct span *s = span_start(SPAN_KIND_CLIENT, "bench", 5, &root, &ctx);
		span_set_cstr(s, "http.request.method", "GET");
		span_set_cstr(s, "url.full", "http://127.0.0.1:8080/api/health");
		span_set_cstr(s, "server.address", "127.0.0.1");
		span_set_int(s, "server.port", 8080);
		span_set_int(s, "http.response.status_code", 200);
		span_set_cstr(s, "network.protocol.version", "1.1");
		span_end(s);
		made++;
	}
	exporter_flush(60000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct exporter_stats st;
	exporter_stats_get(&st);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("delivered %llu of %ld spans in %.3f s: %.0f spans/s (failed %llu)\n",
	       (unsigned long long)st.exported, count, secs, (double)st.exported / secs,
	       (unsigned long long)st.failed);
	return st.exported == (unsigned long long)count ? 0 : 1;
}
