/* Export thread: batching by size and schedule delay, flush on demand, bounded shutdown, fork handling. */
#include "exporter.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/clock.h"
#include "agent/context.h"
#include "agent/log.h"
#include "agent/queue.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "agent/spanview.h"
#include "exporter/buf.h"
#include "exporter/otlp_json.h"
#include "exporter/otlp_proto.h"
#include "exporter/transport.h"

static const struct config *cfg;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;          /* CLOCK_MONOTONIC; (re)built by init_sync; flush_done/exited waiters */
static bool started;               /* a thread was created in this process */
static bool exited;                /* ... and has left its loop */
static bool stopping;
static uint64_t flush_req, flush_done;
static uint64_t stop_deadline_ns;  /* clock_now_ns clock; bounds sends during shutdown */
static bool atexit_late_registered;
static void (*on_start)(void);     /* exporter_set_on_start */

/*
 * Lock-free wake-ups, so a signal handler can use them (exporter_flush_signal):
 * the thread sleeps on the futex word wake_word, and anyone who has work for it
 * bumps the word and wakes it (kick). A signal flush is sig_req/sig_done
 * (requests made and served); sig_gen is bumped whenever sig_done or alive
 * changes, and signal flushers sleep on it.
 */
static _Atomic uint32_t wake_word;
static _Atomic uint32_t sig_req, sig_done, sig_gen;
static _Atomic int alive;          /* the thread was created and has not left its loop */
static _Atomic long thread_tid;
static _Atomic long thread_pid;    /* the process the thread runs in: a vfork child shares our memory, not it */
static _Atomic uint64_t final_deadline;  /* exporter_final_deadline; 0 until the first final flush */

static struct resource resource;
static struct span_bytes *batch;   /* the spans of the batch being encoded (in the queue) */
static _Atomic size_t batch_n;     /* spans of the batch being encoded or sent */
static struct buf body;
static bool transport_ok;

static struct {
	_Atomic uint64_t exported, failed, rejected, batches, backed_off;
} stats;

static void init_sync(void)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &a);
	pthread_condattr_destroy(&a);
}

static void wait_until(uint64_t mono_deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(mono_deadline / 1000000000u),
			       .tv_nsec = (long)(mono_deadline % 1000000000u) };
	pthread_cond_timedwait(&cv, &mu, &ts);
}

static long futex_wait_until(_Atomic uint32_t *w, uint32_t val, uint64_t mono_deadline)
{
	struct timespec ts = { .tv_sec = (time_t)(mono_deadline / 1000000000u),
			       .tv_nsec = (long)(mono_deadline % 1000000000u) };
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
	return syscall(SYS_futex, w, FUTEX_WAIT_BITSET_PRIVATE, val, &ts, NULL, FUTEX_BITSET_MATCH_ANY);
}

static void futex_wake_all(_Atomic uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Async-signal-safe: an atomic add and a futex wake. */
static void kick(void)
{
	atomic_fetch_add(&wake_word, 1);
	futex_wake_all(&wake_word);
}

static void sig_publish(void)
{
	atomic_fetch_add(&sig_gen, 1);
	futex_wake_all(&sig_gen);
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

/* The n spans of batch, encoded into body (or, for the console exporter,
 * written out). The queue entries they point into are released right after:
 * the sending does not pin queue space. False when nothing is to be sent. */
static bool encode_batch(size_t n)
{
	if (cfg->exporter == EXPORTER_CONSOLE) {
		static struct span_view *view;
		if (!view)
			view = malloc(sizeof *view);
		for (size_t i = 0; view && i < n; i++) {
			if (!span_view_decode(batch[i].p, batch[i].len, view))
				continue;
			buf_reset(&body);
			otlp_json_console_line(&body, &resource, view);
			if (!body.oom)
				write_stderr(body.p, body.len);
		}
		atomic_fetch_add(&stats.exported, n);
		return false;
	}
	if (cfg->exporter == EXPORTER_NONE || !transport_ok) {
		atomic_fetch_add(&stats.failed, n);
		return false;
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
	}
	return ok;
}

/* final: the process is ending (exit, _exit, a signal): one attempt, no backoff wait. */
static void send_batch(size_t n, bool final)
{
	uint64_t deadline = clock_now_ns() + (uint64_t)cfg->bsp_export_timeout_ms * 1000000u;
	pthread_mutex_lock(&mu);
	if (stopping && stop_deadline_ns < deadline)
		deadline = stop_deadline_ns;
	pthread_mutex_unlock(&mu);

	struct transport_outcome o;
	transport_send(body.p, body.len, deadline, final, &o);
	if (o.backed_off) {
		atomic_fetch_add(&stats.backed_off, n);
		log_warn("the collector at %s is failing; while exports back off, batches are dropped unsent "
			 "(OTEL_LOG_LEVEL=debug counts them at exit)", cfg->endpoint_shown);
	}
	if (o.result == TRANSPORT_OK) {
		atomic_fetch_add(&stats.exported, n - (size_t)(o.rejected_spans > 0 ? o.rejected_spans : 0));
		atomic_fetch_add(&stats.rejected, (uint64_t)(o.rejected_spans > 0 ? o.rejected_spans : 0));
	} else {
		atomic_fetch_add(&stats.failed, n);
	}
}

/*
 * Exports what is queued, a batch at a time. final: the process is ending
 * (no backoff wait). everything: a flush, or the end: every queued span goes
 * now. Otherwise (a full batch, or the schedule delay) the first batch goes
 * whatever its size, and then only full ones: what arrives while a batch is
 * sent waits for its batch to fill or for the delay, as the spec's batch
 * processor does, instead of going out in small batches as fast as the
 * collector answers (under load, each one's request and resource cost more
 * per span).
 */
static void drain(bool final, bool everything)
{
	size_t max = cfg->bsp_max_export_batch_size;

	for (;;) {
		struct queue_cursor c;
		size_t n = 0;
		queue_cursor_start(&c);
		if (!batch) {
			/* No memory for a batch: keep the queue from filling up. */
			while (queue_next(&c, &(const char *){ NULL }, &(size_t){ 0 }))
				n++;
			queue_release(&c);
			atomic_fetch_add(&stats.failed, n);
			return;
		}
		while (n < max && queue_next(&c, &batch[n].p, &batch[n].len))
			n++;
		if (!n)
			return;
		atomic_store(&batch_n, n);
		atomic_fetch_add(&stats.batches, 1);
		bool send = encode_batch(n);
		queue_release(&c);
		if (send)
			send_batch(n, final);
		atomic_store(&batch_n, 0);
		if (!everything && queue_length() < max)
			return;
	}
}

static void at_exit(void)
{
	exporter_shutdown(cfg ? cfg->exit_timeout_ms : 1000);
}

/* Marks the exporter as stopping, its sends bounded by the process's final
 * deadline (shared with a flush at SIGTERM/SIGINT: one bound for the
 * process); returns that deadline. With mu held. */
static uint64_t stop_begin(uint32_t timeout_ms)
{
	uint64_t deadline = exporter_final_deadline(timeout_ms), now = clock_mono_ns();
	stopping = true;
	stop_deadline_ns = clock_now_ns() + (deadline > now ? deadline - now : 0);
	return deadline;
}

/*
 * Whether the app's threads are all gone: the main one ended with
 * pthread_exit (it stays a zombie while the process lives) and no other is
 * left but this one. Without the agent the process would have exited then,
 * with status 0; this thread must not keep it alive. 0: the main thread
 * runs; 1: it has exited but other app threads remain; 2: all gone.
 */
static int app_gone(void)
{
	char path[64], st[512];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, st, sizeof st - 1);
	close(fd);
	const char *p = n > 0 ? memrchr(st, ')', (size_t)n) : NULL;
	if (!p || p + 2 >= st + n || p[2] != 'Z')
		return 0;
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return 1;
	unsigned tasks = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		tasks += e->d_name[0] != '.';
	closedir(d);
	return tasks <= 2 ? 2 : 1;   /* the zombie main thread and this one */
}

static void *thread_main(void *arg)
{
	(void)arg;
	atomic_store(&thread_tid, syscall(SYS_gettid));
	context_guard_forever();
	pthread_setname_np(pthread_self(), "traceagent-exp");
	/* Built here rather than at init: app threads and processes that never
	 * export never pay for them. */
	resource_build(&resource, cfg);
	if (!batch)
		batch = calloc(cfg->bsp_max_export_batch_size, sizeof *batch);
	if (cfg->exporter == EXPORTER_OTLP)
		transport_ok = transport_init(cfg);
	/* Registered again after libcurl (and OpenSSL through it) registered
	 * theirs, so this copy runs first at exit, while TLS still works. */
	pthread_mutex_lock(&mu);
	if (!atexit_late_registered) {
		atexit_late_registered = true;
		atexit(at_exit);
	}
	pthread_mutex_unlock(&mu);

	uint64_t delay_ns = (uint64_t)cfg->bsp_schedule_delay_ms * 1000000u;
	uint64_t gone_every = delay_ns < 1000000000u ? delay_ns : 1000000000u;
	uint64_t next = clock_mono_ns() + delay_ns, gone_check = clock_mono_ns() + gone_every;
	for (;;) {
		uint32_t w = atomic_load(&wake_word);
		/* Looked at every second (or schedule delay, if shorter), and
		 * often once the main thread has exited, so the process ends about
		 * when it would have. */
		if (clock_mono_ns() >= gone_check) {
			int g = app_gone();
			if (g == 2) {
				pthread_mutex_lock(&mu);
				stop_begin(cfg->exit_timeout_ms);
				pthread_mutex_unlock(&mu);
				drain(true, true);
				pthread_mutex_lock(&mu);
				exited = true;
				pthread_cond_broadcast(&cv);
				pthread_mutex_unlock(&mu);
				atomic_store(&alive, 0);
				exit(0);   /* what the last thread's pthread_exit does (POSIX) */
			}
			gone_check = clock_mono_ns() + (g ? 20000000u : gone_every);
		}
		uint32_t sreq = atomic_load(&sig_req);
		uint64_t target = 0;
		bool stop = false, other = false;

		/* A signal flush does not take mu: the thread the handler
		 * interrupted may hold it (exporter_flush, start_thread). */
		if (sreq == atomic_load(&sig_done)) {
			pthread_mutex_lock(&mu);
			bool ready = stopping || flush_req != flush_done ||
				     queue_length() >= cfg->bsp_max_export_batch_size || clock_mono_ns() >= next;
			target = flush_req;
			stop = stopping;
			pthread_mutex_unlock(&mu);
			if (!ready) {
				/* Returns at once if someone kicked since w was read. */
				futex_wait_until(&wake_word, w, next < gone_check ? next : gone_check);
				continue;
			}
			other = true;
		}

		clock_reanchor();
		/* Signal flushes come only from the process's end (SIGTERM,
		 * SIGINT, _exit): as at exit, no batch waits out a backoff. */
		drain(stop || !other, stop || !other || target != flush_done);
		next = clock_mono_ns() + (uint64_t)cfg->bsp_schedule_delay_ms * 1000000u;
		/* Everything queued when sreq was read has been sent (or given up). */
		atomic_store(&sig_done, sreq);
		sig_publish();
		if (!other)
			continue;

		pthread_mutex_lock(&mu);
		flush_done = target;
		if (stop)
			exited = true;
		pthread_cond_broadcast(&cv);
		pthread_mutex_unlock(&mu);
		if (stop) {
			atomic_store(&alive, 0);
			sig_publish();
			return NULL;
		}
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
	if (pthread_create(&t, &attr, thread_main, NULL) == 0) {
		started = true;
		atomic_store(&thread_pid, syscall(SYS_getpid));
		atomic_store(&alive, 1);
	} else {
		log_warn("could not start the export thread; spans will be dropped");
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	bool run_hook = started && on_start;
	pthread_mutex_unlock(&mu);
	if (run_hook)
		on_start();
}

/* The queue's wake-up (once per batch): lock-free, see kick. */
static void wake(void)
{
	kick();
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
	uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	bool done;

	pthread_mutex_lock(&mu);
	if (!started || exited) {
		pthread_mutex_unlock(&mu);
		return queue_length() == 0;
	}
	uint64_t want = ++flush_req;
	kick();
	while (flush_done < want && clock_mono_ns() < deadline)
		wait_until(deadline);
	done = flush_done >= want;
	pthread_mutex_unlock(&mu);
	return done;
}

void exporter_set_on_start(void (*fn)(void))
{
	on_start = fn;
}

uint64_t exporter_final_deadline(uint32_t timeout_ms)
{
	uint64_t mine = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u, first = 0;
	if (atomic_compare_exchange_strong(&final_deadline, &first, mine))
		return mine;
	return first;
}

void exporter_final_deadline_reset(void)
{
	atomic_store(&final_deadline, 0);
}

/*
 * Called from a signal handler that may have interrupted any code on any app
 * thread, so it only uses async-signal-safe operations: atomics, the futex
 * and gettid syscalls, and clock_gettime. It takes no lock (the interrupted
 * thread may hold mu), allocates nothing, and never touches the queue: the
 * export thread drains it, and that thread never runs a handler (it blocks
 * every signal, from start_thread).
 */
bool exporter_flush_signal(uint64_t mono_deadline)
{
	if (!atomic_load(&alive) || atomic_load(&thread_tid) == syscall(SYS_gettid))
		return false;
	uint32_t want = atomic_fetch_add(&sig_req, 1) + 1;
	kick();
	for (;;) {
		uint32_t g = atomic_load(&sig_gen);
		if ((int32_t)(atomic_load(&sig_done) - want) >= 0)
			return true;
		if (!atomic_load(&alive) || clock_mono_ns() >= mono_deadline)
			return false;
		futex_wait_until(&sig_gen, g, mono_deadline);
	}
}

bool exporter_flush_before_exit(uint32_t timeout_ms)
{
	if (!timeout_ms || !atomic_load(&alive) || atomic_load(&thread_pid) != syscall(SYS_getpid))
		return false;
	if (queue_length() == 0 && atomic_load(&batch_n) == 0)
		return true;   /* nothing to wait for */
	return exporter_flush_signal(exporter_final_deadline(timeout_ms));
}

void exporter_shutdown(uint32_t timeout_ms)
{
	pthread_mutex_lock(&mu);
	if (!started || exited || stopping) {
		pthread_mutex_unlock(&mu);
		return;
	}
	uint64_t deadline = stop_begin(timeout_ms);
	kick();
	while (!exited && clock_mono_ns() < deadline)
		wait_until(deadline);
	bool done = exited;
	pthread_mutex_unlock(&mu);

	if (!done) {
		/* The collector is slow or gone: give up on the send in flight, and
		 * wait only briefly for the thread to leave libcurl. */
		transport_abort();
		uint64_t grace = clock_mono_ns() + 200000000u;
		pthread_mutex_lock(&mu);
		while (!exited && clock_mono_ns() < grace)
			wait_until(grace);
		pthread_mutex_unlock(&mu);
		log_debug("exit flush did not finish within %u ms; remaining spans dropped", timeout_ms);
	}
	if (log_threshold >= LOG_LEVEL_DEBUG) {
		struct span_stats s;
		span_stats_get(&s);
		log_debug("spans started %llu, unsampled %llu, exported %llu, dropped %llu, failed %llu, rejected %llu, "
			  "failed unsent while backing off %llu",
			  (unsigned long long)s.started, (unsigned long long)s.unsampled,
			  (unsigned long long)atomic_load(&stats.exported),
			  (unsigned long long)(s.dropped_full + s.dropped_pool + s.dropped_unfollowed),
			  (unsigned long long)atomic_load(&stats.failed),
			  (unsigned long long)atomic_load(&stats.rejected),
			  (unsigned long long)atomic_load(&stats.backed_off));
	}
}

void exporter_after_fork_child(void)
{
	/* The batch the parent's thread was sending is the parent's to export. */
	atomic_store(&batch_n, 0);
	pthread_mutex_init(&mu, NULL);
	init_sync();
	started = exited = stopping = false;
	atexit_late_registered = false;
	flush_req = flush_done = 0;
	atomic_store(&alive, 0);
	atomic_store(&thread_tid, 0);
	atomic_store(&thread_pid, 0);
	atomic_store(&sig_req, 0);
	atomic_store(&sig_done, 0);
	atomic_store(&final_deadline, 0);
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
	out->backed_off = atomic_load(&stats.backed_off);
}
