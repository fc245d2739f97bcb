/* bench-core: span start+end with 6 attributes (encoded into the queue at end), and the OTLP request around queued spans (medians, ns). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/config.h"
#include "agent/queue.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/otlp_proto.h"

#define BATCH 512
#define ROUNDS 201

static const char *env(const char *n)
{
	return getenv(n);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void six_attrs(struct span *s)
{
	span_set_cstr(s, "http.request.method", "GET");
	span_set_cstr(s, "url.path", "/api/tasks/42");
	span_set_cstr(s, "server.address", "127.0.0.1");
	span_set_int(s, "server.port", 3000);
	span_set_int(s, "http.response.status_code", 200);
	span_set_cstr(s, "network.protocol.version", "1.1");
}

int main(void)
{
	static struct span_bytes queued[BATCH];
	static double t_span[ROUNDS], t_enc[ROUNDS];
	struct trace_context root = { 0 }, ctx;
	struct resource res;
	struct buf b = { 0 };
	size_t one_span = 0;

	config_load(&config_global, env);
	clock_reanchor();
	span_pool_init(4096);
	queue_init(4096, 4096);
	resource_build(&res, &config_global);

	for (int r = 0; r < ROUNDS; r++) {
		/* span_end encodes the Span message into the queue: the span's
		 * whole OTLP encoding is in this figure. */
		double t0 = now();
		for (int i = 0; i < BATCH; i++) {
			struct span *s = span_start(SPAN_KIND_SERVER, "GET /api/tasks/{id}", 19, &root, &ctx);
			six_attrs(s);
			span_end(s);
		}
		t_span[r] = (now() - t0) / BATCH;
		/* What the export thread does with a batch: the request around
		 * the queued spans' bytes. */
		struct queue_cursor c;
		size_t n = 0;
		queue_cursor_start(&c);
		while (n < BATCH && queue_next(&c, &queued[n].p, &queued[n].len))
			n++;
		if (!n)
			return 1;
		one_span = queued[0].len;
		t0 = now();
		otlp_proto_encode(&b, &res, queued, n);
		t_enc[r] = (now() - t0) / (double)n;
		queue_release(&c);
	}
	qsort(t_span, ROUNDS, sizeof(double), cmp);
	qsort(t_enc, ROUNDS, sizeof(double), cmp);
	printf("span start+end (encoded), 6 attributes: median %.0f ns/span (target <= 100), %zu bytes/span\n",
	       t_span[ROUNDS / 2], one_span);
	printf("OTLP request around queued spans:      median %.0f ns/span (target <= 150), %zu bytes/batch of %d\n",
	       t_enc[ROUNDS / 2], b.len, BATCH);
	return 0;
}
