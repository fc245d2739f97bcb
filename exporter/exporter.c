/* Export thread: batching by size and schedule delay, flush on demand, bounded shutdown, fork handling. */
#include "exporter.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/context.h"
#include "agent/log.h"
#include "agent/queue.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/buf.h"
#include "exporter/otlp_json.h"
#include "exporter/otlp_proto.h"
#include "exporter/transport.h"

/* Defined only in libtraceagent.so (exporter/protobuf_dl.c); binaries that
 * link protobuf-c directly leave it NULL. */
bool protobuf_dl_load(void) __attribute__((weak));

static const struct config *cfg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;          /* CLOCK_MONOTONIC; (re)built by init_sync */
static bool started;               /* a thread was created in this process */
static bool exited;                /* ... and has left its loop */
static bool stopping;
static uint64_t flush_req, flush_done;
static uint64_t stop_deadline_ns;  /* span_now_ns clock; bounds sends during shutdown */
static bool atexit_late_registered;

static struct resource resource;
static struct span **batch;        /* spans popped and not yet freed: the child frees them after fork */
static _Atomic size_t batch_n;
static struct buf body;
static bool transport_ok;

static struct {
	_Atomic uint64_t exported, failed, rejected, batches;
} stats;

static void init_sync(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &a);
	pthread_condattr_destroy(&a);
}

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void wait_until(uint64_t mono_deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(mono_deadline / 1000000000u),
			       .tv_nsec = (long)(mono_deadline % 1000000000u) };
	pthread_cond_timedwait(&cv, &mu, &ts);
}

static void write_stderr(const char *p, size_t n)
{
	while (n) {
		long w = syscall(SYS_write, 2, p, n);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void export_batch(size_t n)
{
	atomic_fetch_add(&stats.batches, 1);
	if (cfg->exporter == EXPORTER_CONSOLE) {
		for (size_t i = 0; i < n; i++) {
			buf_reset(&body);
			otlp_json_console_line(&body, &resource, batch[i]);
			if (!body.oom)
				write_stderr(body.p, body.len);
		}
		atomic_fetch_add(&stats.exported, n);
		return;
	}
	if (cfg->exporter == EXPORTER_NONE || !transport_ok) {
		atomic_fetch_add(&stats.failed, n);
		return;
	}
	bool ok;
	if (cfg->protocol == OTLP_HTTP_JSON) {
		buf_reset(&body);
		otlp_json_encode_request(&body, &resource, AGENT_NAME, AGENT_VERSION, batch, n);
		ok = !body.oom;
	} else {
		ok = otlp_proto_encode(&body, &resource, batch, n);
	}
	if (!ok) {
		log_warn("out of memory encoding %zu spans; batch dropped", n);
		atomic_fetch_add(&stats.failed, n);
		return;
	}
	uint64_t deadline = span_now_ns() + (uint64_t)cfg->bsp_export_timeout_ms * 1000000u;
	pthread_mutex_lock(&mu);
	if (stopping && stop_deadline_ns < deadline)
		deadline = stop_deadline_ns;
	pthread_mutex_unlock(&mu);

	struct transport_outcome o;
	transport_send(body.p, body.len, deadline, &o);
	if (o.result == TRANSPORT_OK) {
		atomic_fetch_add(&stats.exported, n - (size_t)(o.rejected_spans > 0 ? o.rejected_spans : 0));
		atomic_fetch_add(&stats.rejected, (uint64_t)(o.rejected_spans > 0 ? o.rejected_spans : 0));
	} else {
		atomic_fetch_add(&stats.failed, n);
	}
}

static void drain(void)
{
	size_t max = cfg->bsp_max_export_batch_size;
	size_t n;

	if (!batch) {
		/* No memory for a batch: keep the queue from pinning records. */
		struct span *one;
		while (queue_pop(&one, 1) == 1) {
			atomic_fetch_add(&stats.failed, 1);
			span_pool_free(one);
		}
		return;
	}
	while ((n = queue_pop(batch, max)) > 0) {
		atomic_store(&batch_n, n);
		export_batch(n);
		for (size_t i = 0; i < n; i++)
			span_pool_free(batch[i]);
		atomic_store(&batch_n, 0);
	}
}

static void at_exit(void)
{
	exporter_shutdown(cfg ? cfg->exit_timeout_ms : 1000);
}

static void *thread_main(void *arg)
{
	(void)arg;
	context_guard_forever();
	pthread_setname_np(pthread_self(), "traceagent-exp");
	/* Built here rather than at init: app threads and processes that never
	 * export never pay for them. */
	resource_build(&resource, cfg);
	if (!batch)
		batch = calloc(cfg->bsp_max_export_batch_size, sizeof *batch);
	if (cfg->exporter == EXPORTER_OTLP)
		transport_ok = transport_init(cfg) &&
			       (cfg->protocol != OTLP_HTTP_PROTOBUF || !protobuf_dl_load || protobuf_dl_load());
	/* Registered again after libcurl (and OpenSSL through it) registered
	 * theirs, so this copy runs first at exit, while TLS still works. */
	pthread_mutex_lock(&mu);
	if (!atexit_late_registered) {
		atexit_late_registered = true;
		atexit(at_exit);
	}
	pthread_mutex_unlock(&mu);

	uint64_t next = mono_ns() + (uint64_t)cfg->bsp_schedule_delay_ms * 1000000u;
	for (;;) {
		pthread_mutex_lock(&mu);
		while (!stopping && flush_req == flush_done &&
		       queue_length() < cfg->bsp_max_export_batch_size && mono_ns() < next)
			wait_until(next);
		uint64_t target = flush_req;
		bool stop = stopping;
		pthread_mutex_unlock(&mu);

		span_clock_reanchor();
		drain();
		next = mono_ns() + (uint64_t)cfg->bsp_schedule_delay_ms * 1000000u;

		pthread_mutex_lock(&mu);
		flush_done = target;
		if (stop)
			exited = true;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		if (stop)
			return NULL;
	}
}

static void start_thread(void)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	pthread_mutex_lock(&mu);
	if (started || stopping) {
		pthread_mutex_unlock(&mu);
		return;
	}
	/* Our exit flush must run before the exit handlers of libraries the app
	 * initialised since start-up: libpq, for one, sets up OpenSSL, whose
	 * atexit cleanup would otherwise run first and pull OpenSSL away from
	 * under the export thread still starting libcurl. atexit runs the last
	 * registered first, so register again, here, on the app's thread. */
	atexit(at_exit);
	/* Signals must keep going to the app's threads: the new thread inherits
	 * a mask that blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, thread_main, NULL) == 0)
		started = true;
	else
		log_warn("could not start the export thread; spans will be dropped");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_unlock(&mu);
}

static void wake(void)
{
	pthread_mutex_lock(&mu);
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

void exporter_init(const struct config *c)
{
	static const struct queue_consumer consumer = { .start = start_thread, .wake = wake };

	cfg = c;
	init_sync();
	queue_set_consumer(&consumer);
	/* Covers an exit that comes before the thread registered its own copy;
	 * exporter_shutdown is idempotent. */
	atexit(at_exit);
}

bool exporter_flush(uint32_t timeout_ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
	bool done;

	pthread_mutex_lock(&mu);
	if (!started || exited) {
		pthread_mutex_unlock(&mu);
		return queue_length() == 0;
	}
	uint64_t want = ++flush_req;
	pthread_cond_broadcast(&cv);
	while (flush_done < want && mono_ns() < deadline)
		wait_until(deadline);
	done = flush_done >= want;
	pthread_mutex_unlock(&mu);
	return done;
}

void exporter_shutdown(uint32_t timeout_ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;

	pthread_mutex_lock(&mu);
	if (!started || exited || stopping) {
		pthread_mutex_unlock(&mu);
		return;
	}
	stopping = true;
	stop_deadline_ns = span_now_ns() + (uint64_t)timeout_ms * 1000000u;
	pthread_cond_broadcast(&cv);
	while (!exited && mono_ns() < deadline)
		wait_until(deadline);
	bool done = exited;
	pthread_mutex_unlock(&mu);

	if (!done) {
		/* The collector is slow or gone: give up on the send in flight, and
		 * wait only briefly for the thread to leave libcurl. */
		transport_abort();
		uint64_t grace = mono_ns() + 200000000u;
		pthread_mutex_lock(&mu);
		while (!exited && mono_ns() < grace)
			wait_until(grace);
		pthread_mutex_unlock(&mu);
		log_debug("exit flush did not finish within %u ms; remaining spans dropped", timeout_ms);
	}
	if (log_threshold >= LOG_LEVEL_DEBUG) {
		struct span_stats s;
		span_stats_get(&s);
		log_debug("spans started %llu, unsampled %llu, exported %llu, dropped %llu, failed %llu, rejected %llu",
			  (unsigned long long)s.started, (unsigned long long)s.unsampled,
			  (unsigned long long)atomic_load(&stats.exported),
			  (unsigned long long)(s.dropped_full + s.dropped_pool),
			  (unsigned long long)atomic_load(&stats.failed),
			  (unsigned long long)atomic_load(&stats.rejected));
	}
}

void exporter_after_fork_child(void)
{
	/* The batch the parent's thread was sending is the parent's to export:
	 * here its records just go back to the pool. */
	size_t n = batch ? atomic_load(&batch_n) : 0;
	for (size_t i = 0; i < n; i++)
		span_pool_free(batch[i]);
	atomic_store(&batch_n, 0);
	pthread_mutex_init(&mu, NULL);
	init_sync();
	started = exited = stopping = false;
	atexit_late_registered = false;
	flush_req = flush_done = 0;
	transport_ok = false;
	memset(&body, 0, sizeof body);
	transport_reset_after_fork();
}

void exporter_stats_get(struct exporter_stats *out)
{
	out->exported = atomic_load(&stats.exported);
	out->failed = atomic_load(&stats.failed);
	out->rejected = atomic_load(&stats.rejected);
	out->batches = atomic_load(&stats.batches);
}
