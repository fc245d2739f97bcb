/* Kafka through librdkafka: PRODUCER spans whose context travels in message headers, CONSUMER spans parented by it. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/ids.h"
#include "agent/log.h"
#include "agent/propagation.h"
#include "agent/span.h"
#include "agent/url.h"
#include "hooks/kernel.h"
#include "hooks/rdkafka.h"

typedef void dr_msg_cb_fn(rd_kafka_t *, const rd_kafka_message_t *, void *);
typedef void consume_cb_fn(rd_kafka_message_t *, void *);

static bool inject_tracecontext, inject_baggage;

/* ------------------------------------------------------------------ */
/* Client handles: what rd_kafka_new's configuration tells us.         */
/* ------------------------------------------------------------------ */

#define HANDLES_MAX 64

struct handle {
	_Atomic(rd_kafka_t *) rk;     /* published once the fields below are set */
	bool busy;                    /* reserved or live; under handles_mu */
	bool consumer;
	dr_msg_cb_fn *app_dr;         /* the app's dr_msg_cb; dr_trampoline chains to it */
	bool wrapped;                 /* dr_trampoline installed: msg_opaque may be a dr_slot */
	_Atomic uint32_t inflight;    /* spans waiting for a delivery report */
	uint32_t gen;                 /* which client this entry is for, over reuse */
	char client_id[128];
	char group[256];
	char server[256];
	int port;
	struct span_attr_block attrs; /* set_client's attributes for this client's spans */
};

static struct handle handles[HANDLES_MAX];
static _Atomic unsigned handles_high;   /* entries ever used: lookups scan only these */
static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;

static struct handle *handle_find(const rd_kafka_t *rk)
{
	if (!rk)
		return NULL;
	unsigned n = atomic_load_explicit(&handles_high, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (atomic_load_explicit(&handles[i].rk, memory_order_acquire) == rk)
			return &handles[i];
	return NULL;
}

/* The only live consumer handle, when there is exactly one: the queue-based
 * consume calls don't say which client a message came through. */
static struct handle *handle_sole_consumer(void)
{
	struct handle *found = NULL;
	unsigned n = atomic_load_explicit(&handles_high, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		if (!atomic_load_explicit(&handles[i].rk, memory_order_acquire) || !handles[i].consumer)
			continue;
		if (found)
			return NULL;
		found = &handles[i];
	}
	return found;
}

static struct handle *handle_reserve(void)
{
	struct handle *h = NULL;
	pthread_mutex_lock(&handles_mu);
	for (unsigned i = 0; i < HANDLES_MAX; i++) {
		if (!handles[i].busy) {
			h = &handles[i];
			h->busy = true;
			h->gen++;
			if (i + 1 > atomic_load_explicit(&handles_high, memory_order_relaxed))
				atomic_store_explicit(&handles_high, i + 1, memory_order_release);
			break;
		}
	}
	pthread_mutex_unlock(&handles_mu);
	return h;
}

static void handle_release(struct handle *h)
{
	atomic_store_explicit(&h->rk, NULL, memory_order_release);
	pthread_mutex_lock(&handles_mu);
	h->busy = false;
	pthread_mutex_unlock(&handles_mu);
}

/* A configuration property as text; "" when unset or unknown. */
static void conf_str(const rd_kafka_conf_t *conf, const char *name, char *out, size_t size)
{
	size_t n = size;
	out[0] = '\0';
	if (!conf || !REAL(rd_kafka_conf_get) || REAL(rd_kafka_conf_get)(conf, name, out, &n) != RD_KAFKA_CONF_OK)
		out[0] = '\0';
}

/* server.address and server.port from the first bootstrap broker:
 * "host:port", "PROTO://host:port" or "[v6]:port". */
static void parse_server(const char *list, struct handle *h)
{
	const char *p = strstr(list, "://");
	p = p ? p + 3 : list;
	size_t len = strcspn(p, ", ");
	const char *host = p;
	size_t hlen = 0;
	int32_t port = URL_PORT_NONE;
	bool v6;
	if (!url_host_port(p, len, &host, &hlen, &port, &v6))
		hlen = 0;
	if (hlen >= sizeof h->server)
		hlen = sizeof h->server - 1;
	memcpy(h->server, host, hlen);
	h->server[hlen] = '\0';
	h->port = port > 0 ? port : 0;
}

/* ------------------------------------------------------------------ */
/* Topic handles: rd_kafka_produce and friends name only the topic, and */
/* librdkafka has no call that maps it back to its client.              */
/* ------------------------------------------------------------------ */

#define TOPICS_MAX 1024   /* a power of two */
#define TOPIC_TOMB ((rd_kafka_topic_t *)(uintptr_t)1)

struct topic_ref {
	_Atomic(rd_kafka_topic_t *) rkt;
	_Atomic(rd_kafka_t *) rk;
	unsigned refs;        /* rd_kafka_topic_new hands out one handle per name, counted */
};

static struct topic_ref topics[TOPICS_MAX];
static pthread_mutex_t topics_mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned topic_hash(const rd_kafka_topic_t *rkt)
{
	uint64_t h = (uintptr_t)rkt;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	return (unsigned)(h >> 40) & (TOPICS_MAX - 1);
}

static rd_kafka_t *topic_client(const rd_kafka_topic_t *rkt)
{
	if (!rkt)
		return NULL;
	unsigned i = topic_hash(rkt);
	for (unsigned n = 0; n < TOPICS_MAX; n++, i = (i + 1) & (TOPICS_MAX - 1)) {
		rd_kafka_topic_t *k = atomic_load_explicit(&topics[i].rkt, memory_order_acquire);
		if (k == rkt)
			return atomic_load_explicit(&topics[i].rk, memory_order_relaxed);
		if (!k)
			return NULL;
	}
	return NULL;
}

static void topic_remember(rd_kafka_topic_t *rkt, rd_kafka_t *rk)
{
	pthread_mutex_lock(&topics_mu);
	unsigned i = topic_hash(rkt), free_at = TOPICS_MAX;
	for (unsigned n = 0; n < TOPICS_MAX; n++, i = (i + 1) & (TOPICS_MAX - 1)) {
		rd_kafka_topic_t *k = atomic_load_explicit(&topics[i].rkt, memory_order_relaxed);
		if (k == rkt) {
			topics[i].refs++;
			atomic_store_explicit(&topics[i].rk, rk, memory_order_relaxed);
			goto out;
		}
		if (k == TOPIC_TOMB && free_at == TOPICS_MAX)
			free_at = i;
		if (!k) {
			if (free_at == TOPICS_MAX)
				free_at = i;
			break;
		}
	}
	if (free_at < TOPICS_MAX) {
		topics[free_at].refs = 1;
		atomic_store_explicit(&topics[free_at].rk, rk, memory_order_relaxed);
		atomic_store_explicit(&topics[free_at].rkt, rkt, memory_order_release);
	}
	/* else: table full; this topic's produce calls pass through untraced */
out:
	pthread_mutex_unlock(&topics_mu);
}

static void topic_forget(rd_kafka_topic_t *rkt)
{
	pthread_mutex_lock(&topics_mu);
	unsigned i = topic_hash(rkt);
	for (unsigned n = 0; n < TOPICS_MAX; n++, i = (i + 1) & (TOPICS_MAX - 1)) {
		rd_kafka_topic_t *k = atomic_load_explicit(&topics[i].rkt, memory_order_relaxed);
		if (!k)
			break;
		if (k == rkt) {
			if (--topics[i].refs == 0)
				atomic_store_explicit(&topics[i].rkt, TOPIC_TOMB, memory_order_release);
			break;
		}
	}
	pthread_mutex_unlock(&topics_mu);
}

/* ------------------------------------------------------------------ */
/* Delivery: a span waiting for its delivery report is found again by   */
/* the span id in the message's own traceparent header, which the       */
/* report's message still carries. The app's msg_opaque is never        */
/* touched: its partitioner_cb and interceptors see exactly its value.  */
/* ------------------------------------------------------------------ */

struct dr_slot {
	_Atomic(struct handle *) h;  /* the client; non-NULL while the message is in flight */
	uint32_t gen;                /* the handle entry's generation then */
	uint32_t bucket;             /* its entry in dr_keys */
	uint64_t id;                 /* the span id, as the key */
	struct span *sp;
};

/* Spans waiting for reports, all clients: at most half the pool, so a busy
 * producer cannot take every record from the process's HTTP and SQL spans
 * (past it, a message's span ends when it is accepted). */
static _Atomic uint32_t slots_waiting;

/* Slots are indexed like the span's pool record. */
static struct dr_slot *slots;
static uint32_t slots_cap;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

/* span id -> slot: open addressing over twice the slots, an id in one of
 * KEY_PROBES buckets from its hash (ids are random), looked at in all of
 * them (a bucket emptied by a report never cuts a probe short). */
#define KEY_PROBES 16
#define KEY_EMPTY 0
#define KEY_BUSY 1   /* claimed, its idx being written */

struct dr_key {
	_Atomic uint64_t id;
	uint32_t idx;
};

static struct dr_key *dr_keys;
static uint32_t dr_keys_mask;

static void slots_map(void)
{
	uint32_t cap = span_pool_capacity();
	if (!cap)
		return;
	uint32_t nkeys = 64;
	while (nkeys < 2 * cap)
		nkeys *= 2;
	void *k = mmap(NULL, (size_t)nkeys * sizeof(struct dr_key), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (k == MAP_FAILED)
		return;
	void *p = mmap(NULL, (size_t)cap * sizeof(struct dr_slot), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		munmap(k, (size_t)nkeys * sizeof(struct dr_key));
		return;
	}
	dr_keys = k;
	dr_keys_mask = nkeys - 1;
	slots_cap = cap;
	atomic_store_explicit((_Atomic(struct dr_slot *) *)&slots, (struct dr_slot *)p, memory_order_release);
}

static uint32_t key_hash(uint64_t id)
{
	return (uint32_t)(id ^ (id >> 32)) & dr_keys_mask;
}

/* Files id -> idx; returns the bucket, or UINT32_MAX when every bucket of
 * its probe is taken (the span then ends at acceptance). */
static uint32_t key_insert(uint64_t id, uint32_t idx)
{
	if (id <= KEY_BUSY)
		return UINT32_MAX;
	uint32_t b = key_hash(id);
	for (unsigned i = 0; i < KEY_PROBES; i++) {
		struct dr_key *k = &dr_keys[(b + i) & dr_keys_mask];
		uint64_t empty = KEY_EMPTY;
		if (atomic_compare_exchange_strong_explicit(&k->id, &empty, KEY_BUSY, memory_order_acquire,
							    memory_order_relaxed)) {
			k->idx = idx;
			atomic_store_explicit(&k->id, id, memory_order_release);
			return (b + i) & dr_keys_mask;
		}
	}
	return UINT32_MAX;
}

/* The slot filed under id, taken out of the table (one caller wins); NULL
 * when none: not a message of ours, or not one waiting for its report. */
static struct dr_slot *key_take(uint64_t id)
{
	if (id <= KEY_BUSY)
		return NULL;
	uint32_t b = key_hash(id);
	for (unsigned i = 0; i < KEY_PROBES; i++) {
		struct dr_key *k = &dr_keys[(b + i) & dr_keys_mask];
		if (atomic_load_explicit(&k->id, memory_order_acquire) != id)
			continue;
		uint32_t idx = k->idx;
		uint64_t expect = id;
		if (idx < slots_cap && atomic_compare_exchange_strong_explicit(&k->id, &expect, KEY_EMPTY,
									     memory_order_acq_rel, memory_order_relaxed))
			return &slots[idx];
	}
	return NULL;
}

static void slot_release(struct dr_slot *sl)
{
	/* Out of the table unless a report took it out already (and the
	 * bucket may hold another id since: only ours is removed). */
	uint64_t expect = sl->id;
	atomic_compare_exchange_strong_explicit(&dr_keys[sl->bucket].id, &expect, KEY_EMPTY, memory_order_acq_rel,
						memory_order_relaxed);
	struct handle *h = atomic_exchange_explicit(&sl->h, NULL, memory_order_acq_rel);
	if (h)
		atomic_fetch_sub_explicit(&h->inflight, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&slots_waiting, 1, memory_order_relaxed);
}

static struct dr_slot *slot_for(struct span *sp)
{
	pthread_once(&slots_once, slots_map);
	if (!slots || span_index(sp) >= slots_cap)
		return NULL;
	return &slots[span_index(sp)];
}

/* ------------------------------------------------------------------ */
/* Attributes shared by both sides.                                     */
/* ------------------------------------------------------------------ */

static bool printable(const void *p, size_t len)
{
	const unsigned char *b = p;
	if (!p || !len || len > 256)
		return false;
	for (size_t i = 0; i < len; i++)
		if (b[i] < 0x20 || b[i] > 0x7e)
			return false;
	return true;
}

static void set_partition(struct span *sp, int32_t partition)
{
	if (partition < 0)
		return;
	char buf[12], *p = buf + sizeof buf;
	uint32_t v = (uint32_t)partition;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	span_set_str(sp, "messaging.destination.partition.id", p, (size_t)(buf + sizeof buf - p));
}

/* "<operation> <topic>", the span name the conventions ask for; snprintf
 * would cost more than the rest of the name's handling together. */
static size_t span_name(char *out, size_t size, const char *op, size_t oplen, const char *topic)
{
	size_t tl = topic ? strnlen(topic, size - oplen - 2) : 0;
	memcpy(out, op, oplen);
	if (!tl)
		return oplen;
	out[oplen] = ' ';
	memcpy(out + oplen + 1, topic, tl);
	return oplen + 1 + tl;
}

/* What every span of one client and operation carries. */
static void set_client(struct span *sp, const struct handle *h, const char *op, size_t oplen)
{
	span_set_cstr(sp, "messaging.system", "kafka");
	span_set_str(sp, "messaging.operation.type", op, oplen);
	span_set_str(sp, "messaging.operation.name", op, oplen);
	if (!h)
		return;
	if (h->client_id[0])
		span_set_cstr(sp, "messaging.client.id", h->client_id);
	if (h->consumer && h->group[0] && oplen == 7)
		span_set_cstr(sp, "messaging.consumer.group.name", h->group);
	if (h->server[0])
		span_set_cstr(sp, "server.address", h->server);
	if (h->port > 0)
		span_set_int(sp, "server.port", h->port);
}

/* Built once per client at rd_kafka_new: its spans then take set_client's
 * attributes with one copy (they were a third of a produce call's cost). */
static void build_client_attrs(struct handle *h)
{
	struct span *scratch = span_scratch_new();
	if (h->consumer)
		set_client(scratch, h, "process", 7);
	else
		set_client(scratch, h, "send", 4);
	span_attr_block_take(&h->attrs, scratch);
}

static void set_common(struct span *sp, const struct handle *h, const char *op, size_t oplen, const char *topic,
		       const void *key, size_t klen, size_t body)
{
	if (!sp)
		return;
	if (h && h->attrs.n && h->consumer == (oplen == 7))
		span_attr_block_add(sp, &h->attrs);
	else
		set_client(sp, h, op, oplen);
	if (topic)
		span_set_cstr(sp, "messaging.destination.name", topic);
	if (printable(key, klen))
		span_set_str(sp, "messaging.kafka.message.key", key, klen);
	span_set_int(sp, "messaging.message.body.size", (int64_t)body);
}

static void set_error(struct span *sp, rd_kafka_resp_err_t err)
{
	if (!sp || !err)
		return;
	const char *name = REAL(rd_kafka_err2name) ? REAL(rd_kafka_err2name)(err) : NULL;
	const char *desc = REAL(rd_kafka_err2str) ? REAL(rd_kafka_err2str)(err) : NULL;
	span_set_cstr(sp, "error.type", name && *name ? name : "_OTHER");
	span_set_status(sp, SPAN_STATUS_ERROR, desc, desc ? strlen(desc) : 0);
}

/* Set once librdkafka's functions were looked up (by the first hook called). */
static bool rk_ready;

static __attribute__((noinline)) void rk_resolve(const void *caller)
{
	if (!REAL(rd_kafka_new) || !REAL(rd_kafka_produceva) || !REAL(rd_kafka_message_destroy))
		kernel_resolve_from(KERNEL_LIBPQ_END + 1, KERNEL_RDKAFKA_END, caller);
	rk_ready = true;
}

/*
 * First thing in every hook: the real functions, looked up through the
 * hook's caller when RTLD_NEXT can't see them, and a missing one (nothing
 * to pass the call to) answered like a failure of that call, never a jump
 * through NULL.
 */
#define RK_ENTRY(fn, fail)                                                \
	do {                                                              \
		if (__builtin_expect(!rk_ready, 0))                       \
			rk_resolve(__builtin_return_address(0));          \
		if (__builtin_expect(!REAL(fn), 0)) {                     \
			fail;                                             \
		}                                                         \
	} while (0)

/* Hook entry: guarded and initialised; false means pass straight through. */
static bool enter(void)
{
	if (!kernel_enter())
		return false;
	if (__builtin_expect(config_global.kafka_enabled, 1))
		return true;
	context_guard_leave();
	return false;
}

/* ------------------------------------------------------------------ */
/* Producer                                                             */
/* ------------------------------------------------------------------ */

/* One message as the app asked for it, normalised from any produce call. */
struct msg_args {
	rd_kafka_t *rk;
	const struct handle *h;
	const char *topic;
	int32_t partition;
	const void *key;
	size_t klen;
	size_t len;
	bool has_value;            /* no value: a tombstone */
	void *opaque;
	bool has_opaque;
	bool app_traceparent;      /* the app propagates itself: add nothing */
	rd_kafka_headers_t *app_list;   /* RD_KAFKA_VTYPE_HEADERS */
	unsigned n_header;              /* RD_KAFKA_VTYPE_HEADER entries */
};

/* The span of one message and what it added to the call. */
struct produce_op {
	struct span *sp;
	struct dr_slot *slot;      /* set when the span waits for its delivery report */
	struct trace_context ctx;
	char tp[TRACEPARENT_LEN + 1];
	bool inject;
	bool added_tracestate, added_baggage;
};

static void produce_begin(const struct msg_args *a, struct produce_op *op)
{
	op->slot = NULL;
	op->inject = false;
	op->added_tracestate = op->added_baggage = false;
	char name[256];
	size_t n = span_name(name, sizeof name, "send", 4, a->topic);
	op->sp = span_start(SPAN_KIND_PRODUCER, name, n, NULL, &op->ctx);
	if (op->ctx.valid && config_global.kafka_propagation && !a->app_traceparent &&
	    (inject_tracecontext || inject_baggage)) {
		op->inject = true;
		propagation_format_traceparent(&op->ctx, op->tp);
	}
	struct span *sp = op->sp;
	if (!sp)
		return;
	set_common(sp, a->h, "send", 4, a->topic, a->key, a->klen, a->len);
	set_partition(sp, a->partition);
	if (!a->has_value)
		span_set_bool(sp, "messaging.kafka.message.tombstone", true);
	/* The span ends at the delivery report when the app has a callback to
	 * get it through and the message carries our traceparent (the report
	 * finds the span by it); otherwise when the message is accepted. */
	struct dr_slot *sl;
	if (op->inject && inject_tracecontext && a->h && a->h->wrapped &&
	    atomic_load_explicit(&slots_waiting, memory_order_relaxed) < span_pool_capacity() / 2 &&
	    (sl = slot_for(sp)) != NULL) {
		struct handle *h = (struct handle *)a->h;
		uint64_t id;
		memcpy(&id, op->ctx.span_id, sizeof id);
		sl->bucket = key_insert(id, span_index(sp));
		if (sl->bucket != UINT32_MAX) {
			atomic_fetch_add_explicit(&slots_waiting, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&h->inflight, 1, memory_order_relaxed);
			sl->id = id;
			sl->sp = sp;
			sl->gen = h->gen;
			atomic_store_explicit(&sl->h, h, memory_order_release);
			op->slot = sl;
		}
	}
}

/* The message goes out without our traceparent after all: its report could
 * not find the span, which ends when the message is accepted instead. */
static void produce_unslot(struct produce_op *op)
{
	if (op->slot) {
		slot_release(op->slot);
		op->slot = NULL;
	}
}

/* Adds our headers to a list; records which names we added. */
static void add_headers(struct produce_op *op, rd_kafka_headers_t *l, bool app_has_ts, bool app_has_bg)
{
	if (inject_tracecontext) {
		REAL(rd_kafka_header_add)(l, "traceparent", 11, op->tp, TRACEPARENT_LEN);
		if (op->ctx.tracestate_len && !app_has_ts) {
			REAL(rd_kafka_header_add)(l, "tracestate", 10, context_tracestate(&op->ctx), op->ctx.tracestate_len);
			op->added_tracestate = true;
		}
	}
	if (inject_baggage && op->ctx.baggage_len && !app_has_bg) {
		REAL(rd_kafka_header_add)(l, "baggage", 7, context_baggage(&op->ctx), op->ctx.baggage_len);
		op->added_baggage = true;
	}
}

static void remove_headers(const struct produce_op *op, rd_kafka_headers_t *l)
{
	if (inject_tracecontext)
		REAL(rd_kafka_header_remove)(l, "traceparent");
	if (op->added_tracestate)
		REAL(rd_kafka_header_remove)(l, "tracestate");
	if (op->added_baggage)
		REAL(rd_kafka_header_remove)(l, "baggage");
}

static bool list_has(const rd_kafka_headers_t *l, const char *name)
{
	const void *v;
	size_t sz;
	return l && REAL(rd_kafka_header_get_last)(l, name, &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* After the produce call: a refused message ends its span with the error;
 * an accepted one ends now unless its delivery report will end it. */
static void produce_done(struct produce_op *op, rd_kafka_resp_err_t err)
{
	if (!op->sp)
		return;
	if (err) {
		if (op->slot)
			slot_release(op->slot);
		set_error(op->sp, err);
		span_end(op->sp);
	} else if (!op->slot) {
		span_end(op->sp);
	}
	/* else: the record belongs to the delivery report now; not touched again */
	op->sp = NULL;
}

#define VU_STACK 32

/*
 * Issues one message through the real rd_kafka_produceva: the app's
 * entries, our opaque, and one header list holding the app's headers and
 * (with inject) ours. RD_KAFKA_VTYPE_HEADER entries become a list we own
 * (librdkafka 2.0's produceva frees its own list twice when the partition
 * is unknown; a list passed in is freed only by the message). An app list
 * (VTYPE_HEADERS) gets our headers appended and removed again on failure,
 * so it is exactly the app's whenever the app still owns it.
 */
static rd_kafka_error_t *issue(const struct msg_args *a, struct produce_op *op, const rd_kafka_vu_t *in, size_t cnt,
			       bool inject)
{
	rd_kafka_vu_t stack_vus[VU_STACK], *vus = stack_vus;
	if (cnt + 2 > VU_STACK) {
		vus = malloc((cnt + 2) * sizeof *vus);
		if (!vus)
			return REAL(rd_kafka_produceva)(a->rk, in, cnt);
	}
	bool app_has_ts = false, app_has_bg = false;
	rd_kafka_headers_t *own = NULL;
	if (a->n_header || (inject && !a->app_list))
		own = REAL(rd_kafka_headers_new)(a->n_header + (inject ? 1 + (op->ctx.tracestate_len != 0) +
							     (op->ctx.baggage_len != 0) : 0));
	size_t n = 0;
	for (size_t i = 0; i < cnt; i++) {
		switch (in[i].vtype) {
		case RD_KAFKA_VTYPE_HEADER:
			if (own)
				REAL(rd_kafka_header_add)(own, in[i].u.header.name, -1, in[i].u.header.val, in[i].u.header.size);
			if (in[i].u.header.name && strcmp(in[i].u.header.name, "tracestate") == 0)
				app_has_ts = true;
			if (in[i].u.header.name && strcmp(in[i].u.header.name, "baggage") == 0)
				app_has_bg = true;
			break;
		case RD_KAFKA_VTYPE_HEADERS:
			break;   /* the one list goes last: HEADERS(NULL), as kcat passes, is no list */
		default:
			vus[n++] = in[i];
			break;
		}
	}
	rd_kafka_headers_t *target = a->app_list ? a->app_list : own;
	if (inject && target) {
		if (a->app_list) {
			app_has_ts = list_has(a->app_list, "tracestate");
			app_has_bg = list_has(a->app_list, "baggage");
		}
		add_headers(op, target, app_has_ts, app_has_bg);
	}
	if (target) {
		vus[n].vtype = RD_KAFKA_VTYPE_HEADERS;
		vus[n++].u.headers = target;
	}
	rd_kafka_error_t *error = REAL(rd_kafka_produceva)(a->rk, vus, n);
	if (error) {
		/* Refused: nothing passed to librdkafka, the app's list is the app's again. */
		if (own)
			REAL(rd_kafka_headers_destroy)(own);
		if (inject && a->app_list)
			remove_headers(op, a->app_list);
	}
	if (vus != stack_vus)
		free(vus);
	return error;
}

static rd_kafka_resp_err_t error_code(const rd_kafka_error_t *e)
{
	return e ? REAL(rd_kafka_error_code)(e) : RD_KAFKA_RESP_ERR_NO_ERROR;
}

/*
 * The traced produce of one message given as produceva entries: with our
 * headers first; when that is refused as too large (our ~70 bytes can be
 * what tips it over message.max.bytes), once more exactly as the app asked.
 */
static rd_kafka_error_t *produce_traced(struct msg_args *a, const rd_kafka_vu_t *vus, size_t cnt)
{
	struct produce_op op;
	produce_begin(a, &op);
	rd_kafka_error_t *error = issue(a, &op, vus, cnt, op.inject);
	if (error && op.inject && error_code(error) == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
		REAL(rd_kafka_error_destroy)(error);
		produce_unslot(&op);
		error = issue(a, &op, vus, cnt, false);
		if (!error)
			log_debug("kafka: a message to %s was too large with trace headers; sent without them",
				  a->topic ? a->topic : "?");
	}
	produce_done(&op, error_code(error));
	return error;
}

/* Fills msg_args from produceva entries. False when they can't be traced
 * (HEADER and HEADERS mixed: librdkafka refuses that itself). */
static bool scan_vus(struct msg_args *a, const rd_kafka_vu_t *vus, size_t cnt)
{
	a->partition = RD_KAFKA_PARTITION_UA;
	for (size_t i = 0; i < cnt; i++) {
		const rd_kafka_vu_t *v = &vus[i];
		switch (v->vtype) {
		case RD_KAFKA_VTYPE_TOPIC:
			a->topic = v->u.cstr;
			break;
		case RD_KAFKA_VTYPE_RKT:
			a->topic = v->u.rkt ? REAL(rd_kafka_topic_name)(v->u.rkt) : NULL;
			break;
		case RD_KAFKA_VTYPE_PARTITION:
			a->partition = v->u.i32;
			break;
		case RD_KAFKA_VTYPE_VALUE:
			a->len = v->u.mem.size;
			a->has_value = v->u.mem.ptr != NULL;
			break;
		case RD_KAFKA_VTYPE_KEY:
			a->key = v->u.mem.ptr;
			a->klen = v->u.mem.size;
			break;
		case RD_KAFKA_VTYPE_OPAQUE:
			a->opaque = v->u.ptr;
			a->has_opaque = true;
			break;
		case RD_KAFKA_VTYPE_HEADER:
			a->n_header++;
			if (v->u.header.name && strcmp(v->u.header.name, "traceparent") == 0)
				a->app_traceparent = true;
			break;
		case RD_KAFKA_VTYPE_HEADERS:
			if (a->app_list)
				return false;
			a->app_list = v->u.headers;
			if (a->app_list && list_has(a->app_list, "traceparent"))
				a->app_traceparent = true;
			break;
		default:
			break;
		}
	}
	return !(a->app_list && a->n_header);
}

HOOK rd_kafka_error_t *rd_kafka_produceva(rd_kafka_t *rk, const rd_kafka_vu_t *vus, size_t cnt)
{
	RK_ENTRY(rd_kafka_produceva, return NULL);
	if (!REAL(rd_kafka_produceva) || !enter())
		return REAL(rd_kafka_produceva)(rk, vus, cnt);
	rd_kafka_error_t *error;
	KERNEL_LEAVE(struct msg_args a = {.rk = rk, .h = handle_find(rk)};
		     error = scan_vus(&a, vus, cnt) ? produce_traced(&a, vus, cnt) : REAL(rd_kafka_produceva)(rk, vus, cnt));
	return error;
}

/*
 * rd_kafka_producev: the arguments are read off the va_list into produceva
 * entries (there is no va_list form to forward to), with the same types
 * librdkafka reads them as.
 */
HOOK rd_kafka_resp_err_t rd_kafka_producev(rd_kafka_t *rk, ...)
{
	RK_ENTRY(rd_kafka_produceva, return RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED);
	rd_kafka_vu_t stack_vus[VU_STACK], *vus = stack_vus;
	size_t n = 0, cap = VU_STACK;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	va_list ap;
	va_start(ap, rk);
	for (;;) {
		rd_kafka_vtype_t t = va_arg(ap, rd_kafka_vtype_t);
		if (t == RD_KAFKA_VTYPE_END)
			break;
		if (n == cap) {
			rd_kafka_vu_t *bigger = malloc(cap * 2 * sizeof *bigger);
			if (!bigger) {
				err = RD_KAFKA_RESP_ERR__FAIL;
				break;
			}
			memcpy(bigger, vus, n * sizeof *vus);
			if (vus != stack_vus)
				free(vus);
			vus = bigger;
			cap *= 2;
		}
		rd_kafka_vu_t *v = &vus[n++];
		memset(v, 0, sizeof *v);
		v->vtype = t;
		switch (t) {
		case RD_KAFKA_VTYPE_TOPIC:
			v->u.cstr = va_arg(ap, const char *);
			break;
		case RD_KAFKA_VTYPE_RKT:
			v->u.rkt = va_arg(ap, rd_kafka_topic_t *);
			break;
		case RD_KAFKA_VTYPE_PARTITION:
			v->u.i32 = va_arg(ap, int32_t);
			break;
		case RD_KAFKA_VTYPE_VALUE:
		case RD_KAFKA_VTYPE_KEY:
			v->u.mem.ptr = va_arg(ap, void *);
			v->u.mem.size = va_arg(ap, size_t);
			break;
		case RD_KAFKA_VTYPE_OPAQUE:
			v->u.ptr = va_arg(ap, void *);
			break;
		case RD_KAFKA_VTYPE_MSGFLAGS:
			v->u.i = va_arg(ap, int);
			break;
		case RD_KAFKA_VTYPE_TIMESTAMP:
			v->u.i64 = va_arg(ap, int64_t);
			break;
		case RD_KAFKA_VTYPE_HEADER:
			v->u.header.name = va_arg(ap, const char *);
			v->u.header.val = va_arg(ap, const void *);
			v->u.header.size = va_arg(ap, ssize_t);
			break;
		case RD_KAFKA_VTYPE_HEADERS:
			v->u.headers = va_arg(ap, rd_kafka_headers_t *);
			break;
		default:
			/* Unknown type: its arguments can't be read; librdkafka says the same. */
			err = RD_KAFKA_RESP_ERR__INVALID_ARG;
			break;
		}
		if (err)
			break;
	}
	va_end(ap);
	if (!err && !REAL(rd_kafka_produceva))
		err = RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED;
	if (!err) {
		rd_kafka_error_t *error;
		if (enter()) {
			KERNEL_LEAVE(struct msg_args a = {.rk = rk, .h = handle_find(rk)};
				     error = scan_vus(&a, vus, n) ? produce_traced(&a, vus, n)
								  : REAL(rd_kafka_produceva)(rk, vus, n));
		} else {
			/* Untraced, through the same call: V_HEADER entries still
			 * become one list, as producev builds one itself. */
			KERNEL_QUIET(struct msg_args a = {.rk = rk}; struct produce_op op = {.sp = NULL};
				     error = scan_vus(&a, vus, n) ? issue(&a, &op, vus, n, false)
								  : REAL(rd_kafka_produceva)(rk, vus, n));
		}
		err = error_code(error);
		if (error)
			REAL(rd_kafka_error_destroy)(error);
	}
	if (vus != stack_vus)
		free(vus);
	return err;
}

/* rd_kafka_produce, traced, for a topic of client rk. *app_errno: the
 * errno the app sees, librdkafka's when the app's own call was made. */
static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, int msgflags, void *payload,
		       size_t len, const void *key, size_t keylen, void *msg_opaque, int *app_errno)
{
	struct msg_args a = {
		.rk = rk, .h = handle_find(rk), .topic = REAL(rd_kafka_topic_name)(rkt), .partition = partition,
		.key = key, .klen = keylen, .len = len, .has_value = payload != NULL, .opaque = msg_opaque,
		.has_opaque = true,
	};
	/* librdkafka's rd_kafka_produce clears rd_kafka_last_error() when it
	 * succeeds; produceva leaves it as it was. After a failed call, this
	 * one is made as the app made it (no headers; the span ends when the
	 * message is accepted), so rd_kafka_last_error() reads the same. */
	if (!REAL(rd_kafka_last_error) || REAL(rd_kafka_last_error)() != RD_KAFKA_RESP_ERR_NO_ERROR) {
		struct produce_op op;
		a.app_traceparent = true;   /* add nothing */
		produce_begin(&a, &op);
		int ret = REAL(rd_kafka_produce)(rkt, partition, msgflags, payload, len, key, keylen, msg_opaque);
		*app_errno = errno;
		produce_done(&op, ret == 0 ? RD_KAFKA_RESP_ERR_NO_ERROR
					   : REAL(rd_kafka_last_error) ? REAL(rd_kafka_last_error)() : RD_KAFKA_RESP_ERR__FAIL);
		return ret;
	}
	rd_kafka_vu_t vus[6] = {
		{.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = rkt},
		{.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = partition},
		{.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = msgflags},
		{.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {payload, len}},
		{.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {(void *)key, keylen}},
		{.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = msg_opaque},
	};
	struct produce_op op;
	produce_begin(&a, &op);
	rd_kafka_error_t *error = issue(&a, &op, vus, 6, op.inject);
	int ret = 0;
	if (error) {
		rd_kafka_resp_err_t code = error_code(error);
		REAL(rd_kafka_error_destroy)(error);
		produce_unslot(&op);
		ret = REAL(rd_kafka_produce)(rkt, partition, msgflags, payload, len, key, keylen, msg_opaque);
		*app_errno = errno;
		produce_done(&op, ret == 0 ? RD_KAFKA_RESP_ERR_NO_ERROR : code);
	} else {
		produce_done(&op, RD_KAFKA_RESP_ERR_NO_ERROR);
	}
	return ret;
}

/*
 * rd_kafka_produce has no room for headers: the message goes through
 * produceva with them. When that is refused, the app's own call is made as
 * it was, so the return value, errno and rd_kafka_last_error() are exactly
 * librdkafka's (and a message refused only for our headers still goes out).
 */
HOOK int rd_kafka_produce(rd_kafka_topic_t *rkt, int32_t partition, int msgflags, void *payload, size_t len,
			  const void *key, size_t keylen, void *msg_opaque)
{
	RK_ENTRY(rd_kafka_produce, errno = ENOSYS; return -1);
	rd_kafka_t *rk;
	if (!REAL(rd_kafka_produceva) || !enter())
		return REAL(rd_kafka_produce)(rkt, partition, msgflags, payload, len, key, keylen, msg_opaque);
	if (!(rk = topic_client(rkt))) {
		context_guard_leave();
		return REAL(rd_kafka_produce)(rkt, partition, msgflags, payload, len, key, keylen, msg_opaque);
	}
	int ret;
	KERNEL_LEAVE(ret = produce_one(rk, rkt, partition, msgflags, payload, len, key, keylen, msg_opaque, &app_errno));
	return ret;
}

/* rd_kafka_produce_batch, traced, for a topic of client rk: the count accepted. */
static int produce_each(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int32_t partition, int msgflags,
			rd_kafka_message_t *rkmessages, int message_cnt)
{
	const struct handle *h = handle_find(rk);
	const char *topic = REAL(rd_kafka_topic_name)(rkt);
	int flags = msgflags & ~RD_KAFKA_MSG_F_PARTITION;
	int good = 0;
	bool full = false;
	for (int i = 0; i < message_cnt; i++) {
		rd_kafka_message_t *m = &rkmessages[i];
		if (full) {
			/* librdkafka's batch stops at the first full queue: no gaps */
			m->err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
			continue;
		}
		int32_t p = (msgflags & RD_KAFKA_MSG_F_PARTITION) ? m->partition : partition;
		struct msg_args a = {
			.rk = rk, .h = h, .topic = topic, .partition = p, .key = m->key, .klen = m->key_len,
			.len = m->len, .has_value = m->payload != NULL, .opaque = m->_private, .has_opaque = true,
		};
		rd_kafka_vu_t vus[6] = {
			{.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = rkt},
			{.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = p},
			{.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = flags},
			{.vtype = RD_KAFKA_VTYPE_VALUE, .u.mem = {m->payload, m->len}},
			{.vtype = RD_KAFKA_VTYPE_KEY, .u.mem = {m->key, m->key_len}},
			{.vtype = RD_KAFKA_VTYPE_OPAQUE, .u.ptr = m->_private},
		};
		rd_kafka_error_t *error = produce_traced(&a, vus, 6);
		m->err = error_code(error);
		full = m->err == RD_KAFKA_RESP_ERR__QUEUE_FULL;
		if (error)
			REAL(rd_kafka_error_destroy)(error);
		else
			good++;
	}
	return good;
}

/*
 * rd_kafka_produce_batch takes no headers either: each message goes
 * through produceva in order, and the batch's results are filled in as
 * librdkafka fills them (err per message, the count accepted).
 */
HOOK int rd_kafka_produce_batch(rd_kafka_topic_t *rkt, int32_t partition, int msgflags,
				rd_kafka_message_t *rkmessages, int message_cnt)
{
	RK_ENTRY(rd_kafka_produce_batch, return 0);
	rd_kafka_t *rk;
	if (!REAL(rd_kafka_produceva) || !enter())
		return REAL(rd_kafka_produce_batch)(rkt, partition, msgflags, rkmessages, message_cnt);
	if (!(rk = topic_client(rkt)) || message_cnt <= 0 || !rkmessages) {
		context_guard_leave();
		return REAL(rd_kafka_produce_batch)(rkt, partition, msgflags, rkmessages, message_cnt);
	}
	int good;
	KERNEL_LEAVE(good = produce_each(rk, rkt, partition, msgflags, rkmessages, message_cnt));
	return good;
}

static void finish_delivery(struct span *sp, const rd_kafka_message_t *m)
{
	if (!sp)
		return;
	set_partition(sp, m->partition);
	if (m->offset >= 0)
		span_set_int(sp, "messaging.kafka.offset", m->offset);
	set_error(sp, m->err);
	span_end(sp);
}

/* The slot of a reported message: by the span id in its traceparent. */
static struct dr_slot *slot_of_report(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hl;
	const void *v;
	size_t sz;
	uint8_t span_id[8];
	if (!atomic_load_explicit((_Atomic(struct dr_slot *) *)&slots, memory_order_acquire) ||
	    !REAL(rd_kafka_message_headers) || !REAL(rd_kafka_header_get_last) ||
	    REAL(rd_kafka_message_headers)(m, &hl) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    REAL(rd_kafka_header_get_last)(hl, "traceparent", &v, &sz) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    !propagation_traceparent_span_id(v, sz, span_id))
		return NULL;
	uint64_t id;
	memcpy(&id, span_id, sizeof id);
	return key_take(id);
}

/* The delivery report of m: its span ends. */
static void delivered(const rd_kafka_message_t *m)
{
	struct dr_slot *sl = slot_of_report(m);
	if (sl) {
		struct span *sp = sl->sp;
		slot_release(sl);
		finish_delivery(sp, m);
	}
}

/* Installed as the dr_msg_cb of every producer whose app set one: ends the
 * message's span, then calls the app's callback with exactly what
 * librdkafka passed. */
static void dr_trampoline(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	KERNEL_ALWAYS(delivered(m));
	const struct handle *h = handle_find(rk);
	if (h && h->app_dr)
		h->app_dr(rk, m, opaque);
}

/* Spans still waiting for reports from a client that is gone (entry h,
 * generation gen: a new client at the same address is another generation). */
static void slots_orphaned(struct handle *h, uint32_t gen)
{
	struct dr_slot *base = atomic_load_explicit((_Atomic(struct dr_slot *) *)&slots, memory_order_acquire);
	if (!base)
		return;
	for (uint32_t i = 0; i < slots_cap; i++) {
		if (atomic_load_explicit(&base[i].h, memory_order_acquire) != h || base[i].gen != gen)
			continue;
		struct span *sp = base[i].sp;
		slot_release(&base[i]);
		set_error(sp, RD_KAFKA_RESP_ERR__DESTROY);
		span_end(sp);
	}
}

/* ------------------------------------------------------------------ */
/* Client lifecycle                                                     */
/* ------------------------------------------------------------------ */

/* Before the real rd_kafka_new: an entry for the client, our delivery
 * report callback in the app's place. NULL when no entry is free. */
static struct handle *client_prepare(rd_kafka_type_t type, rd_kafka_conf_t *conf, dr_msg_cb_fn **app_dr_out)
{
	struct handle *h = handle_reserve();
	dr_msg_cb_fn *app_dr = NULL;
	if (h) {
		char buf[512];
		h->consumer = type == RD_KAFKA_CONSUMER;
		h->wrapped = false;
		atomic_store_explicit(&h->inflight, 0, memory_order_relaxed);
		conf_str(conf, "client.id", h->client_id, sizeof h->client_id);
		if (!conf)
			snprintf(h->client_id, sizeof h->client_id, "rdkafka");
		conf_str(conf, "group.id", h->group, sizeof h->group);
		conf_str(conf, "bootstrap.servers", buf, sizeof buf);
		if (!buf[0])
			conf_str(conf, "metadata.broker.list", buf, sizeof buf);
		parse_server(buf, h);
		build_client_attrs(h);
		/* The app's dr_msg_cb, read back from the configuration (which
		 * rd_kafka_conf_dup copies too), replaced by ours for this client.
		 * Not when delivery reports go to the event API instead. */
		conf_str(conf, "dr_msg_cb", buf, sizeof buf);
		app_dr = (dr_msg_cb_fn *)(uintptr_t)strtoull(buf, NULL, 16);
		conf_str(conf, "enabled_events", buf, sizeof buf);
		bool dr_events = (strtol(buf, NULL, 10) & RD_KAFKA_EVENT_DR) != 0;
		h->app_dr = app_dr;
		if (type == RD_KAFKA_PRODUCER && app_dr && !dr_events && REAL(rd_kafka_conf_set_dr_msg_cb)) {
			REAL(rd_kafka_conf_set_dr_msg_cb)(conf, dr_trampoline);
			h->wrapped = true;
		}
	}
	*app_dr_out = app_dr;
	return h;
}

/* After it: the entry answers for rk, or is given back (and the app's
 * callback put back) when there is no client. */
static void client_made(struct handle *h, rd_kafka_t *rk, rd_kafka_conf_t *conf, dr_msg_cb_fn *app_dr)
{
	if (rk) {
		/* An entry still naming this address is stale (its client was
		 * freed by a call we don't see): it must not answer for ours. */
		unsigned n = atomic_load_explicit(&handles_high, memory_order_acquire);
		for (unsigned i = 0; i < n; i++)
			if (&handles[i] != h && atomic_load_explicit(&handles[i].rk, memory_order_acquire) == rk)
				atomic_store_explicit(&handles[i].rk, NULL, memory_order_release);
		atomic_store_explicit(&h->rk, rk, memory_order_release);
	} else {
		if (h->wrapped)
			REAL(rd_kafka_conf_set_dr_msg_cb)(conf, app_dr);   /* the conf is still the app's */
		handle_release(h);
	}
}

HOOK rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
	RK_ENTRY(rd_kafka_new, if (errstr && errstr_size) snprintf(errstr, errstr_size, "librdkafka not found"); return NULL);
	if (!REAL(rd_kafka_new) || !enter())
		return REAL(rd_kafka_new)(type, conf, errstr, errstr_size);
	struct handle *h;
	dr_msg_cb_fn *app_dr = NULL;
	KERNEL_LEAVE(h = client_prepare(type, conf, &app_dr));
	rd_kafka_t *rk = REAL(rd_kafka_new)(type, conf, errstr, errstr_size);
	if (h)
		KERNEL_QUIET(client_made(h, rk, conf, app_dr));
	return rk;
}

static void consume_finish_thread(void);

/* Before the real destroy: the entry stops answering for the address (which
 * a new client may get as soon as it is freed). Returns it, or NULL. */
static struct handle *client_going(rd_kafka_t *rk, uint32_t *gen)
{
	consume_finish_thread();
	struct handle *h = handle_find(rk);
	if (h) {
		*gen = h->gen;
		atomic_store_explicit(&h->rk, NULL, memory_order_release);
	}
	return h;
}

/* After it: librdkafka drops undelivered reports at destroy, so their spans
 * end here, and the entry is free again. */
static void client_gone(struct handle *h, uint32_t gen)
{
	if (h)
		KERNEL_QUIET(if (atomic_load_explicit(&h->inflight, memory_order_relaxed)) slots_orphaned(h, gen);
			     handle_release(h));
}

HOOK void rd_kafka_destroy(rd_kafka_t *rk)
{
	RK_ENTRY(rd_kafka_destroy, return);
	uint32_t gen = 0;
	struct handle *h = client_going(rk, &gen);
	REAL(rd_kafka_destroy)(rk);
	client_gone(h, gen);
}

HOOK void rd_kafka_destroy_flags(rd_kafka_t *rk, int flags)
{
	RK_ENTRY(rd_kafka_destroy_flags, return);
	uint32_t gen = 0;
	struct handle *h = client_going(rk, &gen);
	REAL(rd_kafka_destroy_flags)(rk, flags);
	client_gone(h, gen);
}

HOOK rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic, rd_kafka_topic_conf_t *conf)
{
	RK_ENTRY(rd_kafka_topic_new, return NULL);
	rd_kafka_topic_t *rkt = REAL(rd_kafka_topic_new)(rk, topic, conf);
	if (rkt)
		KERNEL_QUIET(topic_remember(rkt, rk));
	return rkt;
}

HOOK void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt)
{
	RK_ENTRY(rd_kafka_topic_destroy, return);
	if (rkt)
		KERNEL_QUIET(topic_forget(rkt));
	REAL(rd_kafka_topic_destroy)(rkt);
}

/* ------------------------------------------------------------------ */
/* Consumer                                                             */
/* ------------------------------------------------------------------ */

/*
 * Each polling thread keeps the process spans of the messages the last
 * consume call returned: the one being handled is current (so the app's
 * SQL and HTTP calls nest under it); it ends when the app destroys the
 * message, commits, polls again or closes, and the next message of a batch
 * then becomes current. Messages are read only when they are returned:
 * afterwards their pointers serve as names, never dereferenced.
 *
 * A binding copies each message and destroys it before the app sees it
 * (confluent-kafka-python does so inside poll()): the app handles it only
 * after the destroy. So a single message destroyed before any span started
 * on the thread while it was current (nothing of its handling seen yet)
 * keeps its span current, no longer tied to the message, until the next
 * consume call, commit, close or client destroy on the thread (or its
 * exit). A C program that destroys the message after the SQL or HTTP calls
 * of its handling ends the span there, as before.
 */
#define PENDING_MAX 256

struct pending_msg {
	const rd_kafka_message_t *m;   /* identity only */
	struct span *sp;
	uint8_t trace_id[16], span_id[8], flags;
	bool valid;
};

struct consume_state {
	unsigned n, next;              /* pending[next..n) not yet current */
	bool attached;
	const rd_kafka_message_t *current;   /* NULL once a held span outlives its message */
	struct span *current_sp;
	uint32_t span_ids;             /* ids_thread_span_ids() when the call returned */
	struct context_token tok;
	struct trace_context ctx;      /* the current message's context */
	struct trace_context parent;   /* extraction scratch */
	struct tracestate_parser tsp;
	struct pending_msg pending[PENDING_MAX];
};

static __thread struct consume_state *cstate AGENT_TLS;
static pthread_key_t cstate_key;
static pthread_once_t cstate_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t consume_errors;

static void cstate_exit(void *p);

static void cstate_key_init(void)
{
	pthread_key_create(&cstate_key, cstate_exit);
}

static struct consume_state *cstate_get(void)
{
	if (cstate)
		return cstate;
	pthread_once(&cstate_once, cstate_key_init);
	struct consume_state *st = calloc(1, sizeof *st);
	if (!st)
		return NULL;
	pthread_setspecific(cstate_key, st);
	cstate = st;
	return st;
}

/* Extracts the context a message carries; invalid when it carries none. */
static void extract(struct consume_state *st, const rd_kafka_message_t *m)
{
	struct trace_context *p = &st->parent;
	context_clear(p);
	rd_kafka_headers_t *hdrs = NULL;
	if (!REAL(rd_kafka_message_headers) || REAL(rd_kafka_message_headers)(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs)
		return;
	const void *v;
	size_t sz;
	if (inject_tracecontext &&
	    REAL(rd_kafka_header_get_last)(hdrs, "traceparent", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR && v &&
	    propagation_parse_traceparent(v, sz, p)) {
		/* Several tracestate headers combine, as several HTTP header lines do. */
		if (REAL(rd_kafka_header_get) && REAL(rd_kafka_header_get)(hdrs, 0, "tracestate", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			propagation_tracestate_begin(&st->tsp, p);
			for (size_t i = 0; i < 32 && REAL(rd_kafka_header_get)(hdrs, i, "tracestate", &v, &sz) ==
							  RD_KAFKA_RESP_ERR_NO_ERROR; i++)
				if (v)
					propagation_tracestate_add(&st->tsp, v, sz);
			propagation_tracestate_end(&st->tsp);
		}
	}
	if (inject_baggage && REAL(rd_kafka_header_get_last)(hdrs, "baggage", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
		if (!p->valid)
			p->tracestate_len = 0;
		propagation_baggage_add(p, v, sz);
	}
}

/* Starts the process span of one message (returned just now). */
static void process_start(struct consume_state *st, struct pending_msg *pm, const rd_kafka_message_t *m,
			  const struct handle *h)
{
	extract(st, m);
	const char *topic = m->rkt && REAL(rd_kafka_topic_name) ? REAL(rd_kafka_topic_name)(m->rkt) : NULL;
	char name[256];
	size_t n = span_name(name, sizeof name, "process", 7, topic);
	/* An invalid parent starts a new trace, whatever is current. */
	if (!st->parent.valid)
		st->parent.baggage_len = st->parent.tracestate_len = 0;
	struct span *sp = span_start(SPAN_KIND_CONSUMER, name, n, &st->parent, &st->ctx);
	pm->m = m;
	pm->sp = sp;
	pm->valid = st->ctx.valid;
	memcpy(pm->trace_id, st->ctx.trace_id, 16);
	memcpy(pm->span_id, st->ctx.span_id, 8);
	pm->flags = st->ctx.flags;
	if (!sp)
		return;
	if (st->parent.valid)
		span_add_link(sp, &st->parent, NULL, 0);
	set_common(sp, h, "process", 7, topic, m->key, m->key_len, m->len);
	set_partition(sp, m->partition);
	if (m->offset >= 0)
		span_set_int(sp, "messaging.kafka.offset", m->offset);
	if (!m->payload)
		span_set_bool(sp, "messaging.kafka.message.tombstone", true);
}

/* Makes a started message current. The context is rebuilt from the ids and
 * the span's tracestate (baggage of later batch messages is not kept). */
static void process_attach(struct consume_state *st, struct pending_msg *pm, bool restart)
{
	st->current = pm->m;
	st->current_sp = pm->sp;
	if (pm->sp && restart)
		span_set_start_time(pm->sp, clock_now_ns());
	if (!pm->valid)
		return;
	if (!st->ctx.valid || memcmp(st->ctx.span_id, pm->span_id, 8) != 0) {
		context_clear(&st->ctx);
		memcpy(st->ctx.trace_id, pm->trace_id, 16);
		memcpy(st->ctx.span_id, pm->span_id, 8);
		st->ctx.flags = pm->flags;
		st->ctx.valid = true;
		const char *ts;
		size_t l = span_trace_state(pm->sp, &ts);
		if (l) {
			l = l < TRACESTATE_MAX ? l : TRACESTATE_MAX;
			memcpy(st->ctx.buf, ts, l);
			st->ctx.tracestate_len = (uint16_t)l;
		}
	}
	context_attach(&st->ctx, &st->tok);
	st->attached = true;
}

static void process_end_current(struct consume_state *st)
{
	if (st->attached) {
		/* Only if ours is still current: a span started and not yet ended
		 * since (a server request on this thread) keeps its context. */
		const struct trace_context *cur = context_current();
		if (cur->valid && memcmp(cur->span_id, st->ctx.span_id, 8) == 0)
			context_detach(&st->tok);
		st->attached = false;
	}
	if (st->current_sp)
		span_end(st->current_sp);
	st->current = NULL;
	st->current_sp = NULL;
}

/* Ends every span of the last consume call (the next poll, a commit, close). */
static void process_end_all(struct consume_state *st)
{
	process_end_current(st);
	for (unsigned i = st->next; i < st->n; i++)
		if (st->pending[i].m && st->pending[i].sp)
			span_end(st->pending[i].sp);
	st->n = st->next = 0;
}

static void cstate_exit(void *p)
{
	struct consume_state *st = p;
	/* The thread is going: its spans end, its context with it. */
	st->attached = false;
	process_end_all(st);
	cstate = NULL;
	free(st);
}

static void consume_error(const rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	uint64_t n = atomic_fetch_add_explicit(&consume_errors, 1, memory_order_relaxed) + 1;
	log_debug("kafka: consume error %llu: %s: %s", (unsigned long long)n,
		  REAL(rd_kafka_err2name) ? REAL(rd_kafka_err2name)(m->err) : "?",
		  REAL(rd_kafka_err2str) ? REAL(rd_kafka_err2str)(m->err) : "");
}

static const struct handle *handle_of_message(const rd_kafka_message_t *m, const struct handle *h)
{
	if (h)
		return h;
	h = handle_find(topic_client(m->rkt));
	return h ? h : handle_sole_consumer();
}

/* Before a consume call (and at commit, close, destroy): the spans of the
 * previous messages of this thread end. */
static void consume_finish_thread(void)
{
	struct consume_state *st = cstate;
	if (!st || (!st->current && !st->current_sp && !st->attached && st->next >= st->n))
		return;
	KERNEL_ALWAYS(process_end_all(st));
}

/* Spans for the real messages of a consume call, the first made current. */
static void consume_record(rd_kafka_message_t **msgs, size_t n, const struct handle *h)
{
	struct consume_state *st = cstate_get();
	if (st) {
		st->n = st->next = 0;
		for (size_t i = 0; i < n; i++) {
			const rd_kafka_message_t *m = msgs[i];
			if (!m)
				continue;
			if (m->err) {
				consume_error(m);
				continue;
			}
			struct pending_msg one, *pm = st->n < PENDING_MAX ? &st->pending[st->n++] : &one;
			process_start(st, pm, m, handle_of_message(m, h));
			if (pm == &one && one.sp)
				span_end(one.sp);   /* beyond what we track: a span all the same */
		}
		if (st->n) {
			process_attach(st, &st->pending[0], false);
			st->next = 1;
		}
		st->span_ids = ids_thread_span_ids();
	}
}

/* After a consume call returned messages. */
static void consume_returned(rd_kafka_message_t **msgs, size_t n, const struct handle *h)
{
	KERNEL_QUIET(if (enter()) { consume_record(msgs, n, h); context_guard_leave(); });
}

static rd_kafka_message_t *consume_one(rd_kafka_message_t *m, const struct handle *h)
{
	if (m)
		consume_returned(&m, 1, h);
	return m;
}

HOOK rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *rk, int timeout_ms)
{
	RK_ENTRY(rd_kafka_consumer_poll, return NULL);
	consume_finish_thread();
	rd_kafka_message_t *m = REAL(rd_kafka_consumer_poll)(rk, timeout_ms);
	return consume_one(m, m ? handle_find(rk) : NULL);
}

HOOK rd_kafka_message_t *rd_kafka_consume(rd_kafka_topic_t *rkt, int32_t partition, int timeout_ms)
{
	RK_ENTRY(rd_kafka_consume, errno = ENOSYS; return NULL);
	consume_finish_thread();
	return consume_one(REAL(rd_kafka_consume)(rkt, partition, timeout_ms), NULL);
}

HOOK rd_kafka_message_t *rd_kafka_consume_queue(rd_kafka_queue_t *rkqu, int timeout_ms)
{
	RK_ENTRY(rd_kafka_consume_queue, return NULL);
	consume_finish_thread();
	return consume_one(REAL(rd_kafka_consume_queue)(rkqu, timeout_ms), NULL);
}

HOOK ssize_t rd_kafka_consume_batch(rd_kafka_topic_t *rkt, int32_t partition, int timeout_ms,
				    rd_kafka_message_t **rkmessages, size_t rkmessages_size)
{
	RK_ENTRY(rd_kafka_consume_batch, errno = ENOSYS; return -1);
	consume_finish_thread();
	ssize_t n = REAL(rd_kafka_consume_batch)(rkt, partition, timeout_ms, rkmessages, rkmessages_size);
	if (n > 0)
		consume_returned(rkmessages, (size_t)n, NULL);
	return n;
}

HOOK ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *rkqu, int timeout_ms, rd_kafka_message_t **rkmessages,
					  size_t rkmessages_size)
{
	RK_ENTRY(rd_kafka_consume_batch_queue, errno = ENOSYS; return -1);
	consume_finish_thread();
	ssize_t n = REAL(rd_kafka_consume_batch_queue)(rkqu, timeout_ms, rkmessages, rkmessages_size);
	if (n > 0)
		consume_returned(rkmessages, (size_t)n, NULL);
	return n;
}

/* The app's callback and opaque, for the callback consume calls. */
struct consume_wrap {
	consume_cb_fn *cb;
	void *opaque;
};

/* Runs the app's callback for one message with its process span current;
 * librdkafka destroys the message after the callback, so the span ends
 * with it. */
static void consume_trampoline(rd_kafka_message_t *m, void *opaque)
{
	struct consume_wrap *w = opaque;
	consume_finish_thread();
	if (m && !m->err)
		consume_returned(&m, 1, NULL);
	else if (m && m->err && enter()) {
		consume_error(m);
		context_guard_leave();
	}
	w->cb(m, w->opaque);
	consume_finish_thread();
}

HOOK int rd_kafka_consume_callback(rd_kafka_topic_t *rkt, int32_t partition, int timeout_ms,
				   void (*consume_cb)(rd_kafka_message_t *rkmessage, void *commit_opaque),
				   void *commit_opaque)
{
	RK_ENTRY(rd_kafka_consume_callback, errno = ENOSYS; return -1);
	consume_finish_thread();
	if (!consume_cb)
		return REAL(rd_kafka_consume_callback)(rkt, partition, timeout_ms, consume_cb, commit_opaque);
	struct consume_wrap w = {consume_cb, commit_opaque};
	return REAL(rd_kafka_consume_callback)(rkt, partition, timeout_ms, consume_trampoline, &w);
}

HOOK int rd_kafka_consume_callback_queue(rd_kafka_queue_t *rkqu, int timeout_ms,
					 void (*consume_cb)(rd_kafka_message_t *rkmessage, void *commit_opaque),
					 void *commit_opaque)
{
	RK_ENTRY(rd_kafka_consume_callback_queue, errno = ENOSYS; return -1);
	consume_finish_thread();
	if (!consume_cb)
		return REAL(rd_kafka_consume_callback_queue)(rkqu, timeout_ms, consume_cb, commit_opaque);
	struct consume_wrap w = {consume_cb, commit_opaque};
	return REAL(rd_kafka_consume_callback_queue)(rkqu, timeout_ms, consume_trampoline, &w);
}

/* The app is done with rkmessage: its span ends, and the next message of
 * the same batch becomes current. */
static void message_done(struct consume_state *st, rd_kafka_message_t *rkmessage)
{
	if (st->current == rkmessage && st->n == 1 && ids_thread_span_ids() == st->span_ids) {
		/* Destroyed before its handling started: a binding's copy.
		 * Its span stays current for the handling to come. */
		st->current = NULL;
	} else if (st->current == rkmessage) {
		process_end_current(st);
		while (st->next < st->n) {
			struct pending_msg *pm = &st->pending[st->next++];
			if (pm->m) {
				process_attach(st, pm, true);
				break;
			}
		}
	} else {
		for (unsigned i = st->next; i < st->n; i++) {
			struct pending_msg *pm = &st->pending[i];
			if (pm->m == rkmessage) {
				/* destroyed before it became current */
				if (pm->sp)
					span_end(pm->sp);
				pm->m = NULL;
				break;
			}
		}
	}
}

HOOK void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage)
{
	RK_ENTRY(rd_kafka_message_destroy, return);
	struct consume_state *st = cstate;
	if (st && rkmessage && (st->current == rkmessage || st->next < st->n))
		KERNEL_ALWAYS(message_done(st, rkmessage));
	REAL(rd_kafka_message_destroy)(rkmessage);
}

HOOK rd_kafka_resp_err_t rd_kafka_commit(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets,
					 int async)
{
	RK_ENTRY(rd_kafka_commit, return RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED);
	consume_finish_thread();
	return REAL(rd_kafka_commit)(rk, offsets, async);
}

HOOK rd_kafka_resp_err_t rd_kafka_commit_message(rd_kafka_t *rk, const rd_kafka_message_t *rkmessage, int async)
{
	RK_ENTRY(rd_kafka_commit_message, return RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED);
	consume_finish_thread();
	return REAL(rd_kafka_commit_message)(rk, rkmessage, async);
}

/* confluent-kafka-python's commit(), synchronous or not. */
HOOK rd_kafka_resp_err_t rd_kafka_commit_queue(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets,
					       rd_kafka_queue_t *rkqu,
					       void (*cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
							  rd_kafka_topic_partition_list_t *offsets, void *commit_opaque),
					       void *commit_opaque)
{
	RK_ENTRY(rd_kafka_commit_queue, return RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED);
	consume_finish_thread();
	return REAL(rd_kafka_commit_queue)(rk, offsets, rkqu, cb, commit_opaque);
}

HOOK rd_kafka_resp_err_t rd_kafka_consumer_close(rd_kafka_t *rk)
{
	RK_ENTRY(rd_kafka_consumer_close, return RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED);
	consume_finish_thread();
	return REAL(rd_kafka_consumer_close)(rk);
}

void rdkafka_after_fork_child(void)
{
	/* A lock another thread held at the fork would never be released here. */
	pthread_mutex_init(&handles_mu, NULL);
	pthread_mutex_init(&topics_mu, NULL);
}

void rdkafka_init(const struct config *c)
{
	inject_tracecontext = (c->propagators & PROPAGATOR_TRACECONTEXT) != 0;
	inject_baggage = (c->propagators & PROPAGATOR_BAGGAGE) != 0;
}
