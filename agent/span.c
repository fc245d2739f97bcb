/* Span records: a lock-free pool of fixed-size records, the start/attribute/event/link/end operations and limits. */
#include "span.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "config.h"
#include "ids.h"
#include "log.h"
#include "queue.h"
#include "sampler.h"

/* --- clock --- */

/* Offset from CLOCK_MONOTONIC to the wall clock, so a span costs one vDSO read
 * at each end and its duration can never go negative across a clock step. */
static _Atomic int64_t span_clock_offset;

void span_clock_reanchor(void)
{
	struct timespec r, m;
	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	int64_t off = ((int64_t)r.tv_sec - (int64_t)m.tv_sec) * 1000000000 + (r.tv_nsec - m.tv_nsec);
	atomic_store_explicit(&span_clock_offset, off, memory_order_relaxed);
}

uint64_t span_now_ns(void)
{
	struct timespec m;
	clock_gettime(CLOCK_MONOTONIC, &m);
	return (uint64_t)((int64_t)m.tv_sec * 1000000000 + m.tv_nsec +
			  atomic_load_explicit(&span_clock_offset, memory_order_relaxed));
}

/* --- pool --- */

/* Records live in one anonymous mapping reserved at init; pages are touched
 * only as records are first used. Free records form a Treiber stack whose
 * head carries a tag against ABA: (tag << 32) | (index + 1), 0 = empty. */
static struct span *pool_base;
static _Atomic uint32_t *pool_next;
static uint32_t pool_cap;
static _Atomic uint32_t pool_fresh;     /* records never used yet start here */
static _Atomic uint64_t pool_free_head;

struct span_limits {
	uint32_t attr_count, attr_len, event_count, link_count, event_attr_count, link_attr_count;
};
static struct span_limits limits = {
	SPAN_MAX_ATTRS, CONFIG_UNLIMITED, SPAN_MAX_EVENTS, SPAN_MAX_LINKS, SPAN_MAX_SUB_ATTRS, SPAN_MAX_SUB_ATTRS,
};

static struct {
	_Atomic uint64_t started, unsampled, ended, dropped_full, dropped_pool, dropped_unfollowed;
} stats;

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint64_t pool_want;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

bool span_pool_init(uint32_t max_queue)
{
	const struct config *c = &config_global;

	limits.attr_count = min_u32(c->span_attribute_count_limit, SPAN_MAX_ATTRS);
	limits.attr_len = c->span_attribute_value_length_limit;
	limits.event_count = min_u32(c->span_event_count_limit, SPAN_MAX_EVENTS);
	limits.link_count = min_u32(c->span_link_count_limit, SPAN_MAX_LINKS);
	limits.event_attr_count = min_u32(c->event_attribute_count_limit, SPAN_MAX_SUB_ATTRS);
	limits.link_attr_count = min_u32(c->link_attribute_count_limit, SPAN_MAX_SUB_ATTRS);
	/* Queued spans, one export batch held by the exporter while it sends, and
	 * room for spans still open on app threads. */
	uint64_t cap = (uint64_t)max_queue + c->bsp_max_export_batch_size + 1024;
	pool_want = cap > (1u << 22) ? (1u << 22) : cap;
	return true;
}

uint32_t span_pool_capacity(void)
{
	return (uint32_t)pool_want;
}

/* Mapped with the first recorded span: a process that never records one
 * never pays for the mapping or its page faults. */
static void pool_map(void)
{
	size_t bytes = (size_t)pool_want * sizeof(struct span);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		log_warn("could not reserve %zu bytes for spans; tracing stops", bytes);
		return;
	}
	void *n = mmap(NULL, (size_t)pool_want * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (n == MAP_FAILED) {
		munmap(p, bytes);
		return;
	}
	pool_next = (_Atomic uint32_t *)n;
	pool_cap = (uint32_t)pool_want;
	atomic_store_explicit((_Atomic(struct span *) *)&pool_base, (struct span *)p, memory_order_release);
}

static struct span *pool_alloc(void)
{
	uint64_t head = atomic_load_explicit(&pool_free_head, memory_order_acquire);

	while (head & 0xffffffffu) {
		uint32_t idx = (uint32_t)head - 1;
		uint64_t tag = (head >> 32) + 1;
		uint64_t nh = (tag << 32) | atomic_load_explicit(&pool_next[idx], memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(&pool_free_head, &head, nh,
							  memory_order_acquire, memory_order_acquire)) {
			pool_base[idx].pool_index = idx;
			return &pool_base[idx];
		}
	}
	if (__builtin_expect(!atomic_load_explicit((_Atomic(struct span *) *)&pool_base, memory_order_acquire), 0)) {
		if (!pool_want)
			return NULL;
		pthread_once(&pool_once, pool_map);
		if (!pool_base)
			return NULL;
	}
	uint32_t idx = atomic_load_explicit(&pool_fresh, memory_order_relaxed);
	while (idx < pool_cap) {
		if (atomic_compare_exchange_weak_explicit(&pool_fresh, &idx, idx + 1,
							  memory_order_relaxed, memory_order_relaxed)) {
			pool_base[idx].pool_index = idx;
			return &pool_base[idx];
		}
	}
	return NULL;
}

void span_pool_free(struct span *s)
{
	uint32_t idx = s->pool_index;
	uint64_t head = atomic_load_explicit(&pool_free_head, memory_order_relaxed);
	uint64_t nh;

	do {
		atomic_store_explicit(&pool_next[idx], (uint32_t)head, memory_order_relaxed);
		nh = (((head >> 32) + 1) << 32) | (idx + 1);
	} while (!atomic_compare_exchange_weak_explicit(&pool_free_head, &head, nh,
							memory_order_release, memory_order_relaxed));
}

/* --- strings in the arena --- */

/* Length of the longest prefix of s[0..len) holding at most max_chars UTF-8
 * characters and not ending inside a multi-byte sequence. */
static size_t utf8_prefix(const char *s, size_t len, size_t max_bytes, uint32_t max_chars)
{
	if (len <= max_bytes && len <= max_chars)
		return len;  /* fast path: a byte count under the limit is a char count under it */
	size_t i = 0, chars = 0, end = 0;
	while (i < len && chars < max_chars) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
		if (i + n > len || i + n > max_bytes)
			break;
		i += n;
		chars++;
		end = i;
	}
	return end;
}

/* True when no byte has its high bit set: the common case, checked a word at
 * a time; the tail is one overlapping word rather than a byte loop. */
static inline bool is_ascii(const char *p, size_t len)
{
	uint64_t acc = 0, w;
	if (len >= 8) {
		for (size_t i = 0; i + 8 <= len; i += 8) {
			memcpy(&w, p + i, 8);
			acc |= w;
		}
		memcpy(&w, p + len - 8, 8);
		acc |= w;
	} else if (len >= 4) {
		uint32_t a, b;
		memcpy(&a, p, 4);
		memcpy(&b, p + len - 4, 4);
		acc = a | b;
	} else {
		for (size_t i = 0; i < len; i++)
			acc |= (unsigned char)p[i];
	}
	return !(acc & 0x8080808080808080ull);
}

/* Replaces, in place, every byte that is not part of a valid UTF-8 sequence
 * with '?': OTLP string fields must be valid UTF-8, and a Collector rejects
 * the whole batch otherwise. The length never changes. */
static void fix_utf8(char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		bool ok = n && i + n <= len && c >= 0xc2 && c <= 0xf4;
		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)p[i + k] >> 6) == 2;
		if (ok && n == 3) {
			unsigned char c1 = (unsigned char)p[i + 1];
			ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  /* overlong, surrogates */
		} else if (ok && n == 4) {
			unsigned char c1 = (unsigned char)p[i + 1];
			ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
		}
		if (ok)
			i += n;
		else
			p[i++] = '?';
	}
}

static inline void copy_utf8(char *dst, const char *src, size_t len)
{
	/* Check the source, not the copy: reading back bytes memcpy has just
	 * stored stalls on store forwarding and cost more than the copy. */
	bool ascii = is_ascii(src, len);
	memcpy(dst, src, len);
	if (!ascii)
		fix_utf8(dst, len);
}

/* Stores a string NUL-terminated (the encoder hands arena pointers straight to
 * protobuf-c, which wants C strings). may_cut: truncate to the room left
 * rather than fail. */
static bool arena_put(struct span *s, const char *p, size_t len, struct span_str *out, bool may_cut)
{
	size_t room = SPAN_ARENA_SIZE - s->arena_used;
	if (room == 0)
		return false;
	room--;  /* the NUL */
	if (len > room) {
		if (!may_cut)
			return false;
		len = utf8_prefix(p, len, room, UINT32_MAX);
	}
	char *dst = s->arena + s->arena_used;
	copy_utf8(dst, p, len);
	dst[len] = '\0';
	out->off = s->arena_used;
	out->len = (uint16_t)len;
	s->arena_used += (uint16_t)(len + 1);
	return true;
}

/* --- start / end --- */

struct span *span_start(enum span_kind kind, const char *name, size_t name_len,
			const struct trace_context *parent, struct trace_context *out)
{
	const struct config *c = &config_global;

	if (!parent)
		parent = context_current();
	if (parent->valid) {
		memcpy(out->trace_id, parent->trace_id, 16);
		/* Only the flags we understand travel on (W3C: unknown bits are zeroed). */
		out->flags = parent->flags & TRACE_FLAG_RANDOM;
		out->tracestate_len = parent->tracestate_len;
		out->baggage_len = parent->baggage_len;
		memcpy(out->buf, parent->buf, (size_t)parent->tracestate_len + parent->baggage_len);
	} else {
		ids_new_trace_id(out->trace_id);
		out->flags = TRACE_FLAG_RANDOM;
		out->tracestate_len = 0;
		out->baggage_len = 0;
	}
	ids_new_span_id(out->span_id);
	out->valid = true;
	out->remote = false;

	bool sampled = sampler_should_sample(c->sampler, c->sampler_ratio,
					     parent->valid ? parent : NULL, out->trace_id);
	if (!sampled) {
		atomic_fetch_add_explicit(&stats.unsampled, 1, memory_order_relaxed);
		return NULL;
	}
	out->flags |= TRACE_FLAG_SAMPLED;

	struct span *s = pool_alloc();
	if (!s) {
		atomic_fetch_add_explicit(&stats.dropped_pool, 1, memory_order_relaxed);
		return NULL;
	}
	atomic_fetch_add_explicit(&stats.started, 1, memory_order_relaxed);
	/* Only the fixed header is reset; arrays are valid up to their counts. */
	memset(s, 0, offsetof(struct span, attrs));
	s->pool_index = (uint32_t)(s - pool_base);
	memcpy(s->trace_id, out->trace_id, 16);
	memcpy(s->span_id, out->span_id, 8);
	if (parent->valid) {
		memcpy(s->parent_span_id, parent->span_id, 8);
		s->has_parent = true;
		s->parent_remote = parent->remote;
	}
	s->trace_flags = out->flags;
	s->kind = (uint8_t)kind;
	if (out->tracestate_len)
		arena_put(s, out->buf, out->tracestate_len, &s->trace_state, false);
	arena_put(s, name, name_len, &s->name, true);
	s->start_ns = span_now_ns();
	return s;
}

void span_set_name(struct span *s, const char *name, size_t len)
{
	if (s)
		arena_put(s, name, len, &s->name, true);
}

void span_set_start_time(struct span *s, uint64_t ns)
{
	if (s)
		s->start_ns = ns;
}

/* With the arena full, a string value becomes the empty string at its key's
 * terminating NUL: never a stale offset into someone else's bytes. */
static void empty_value(struct span_attr *a)
{
	a->v.s.off = (uint16_t)(a->key.off + a->key.len);
	a->v.s.len = 0;
}

/* Finds the slot for key, or claims a new one; NULL when over the limit. */
static struct span_attr *attr_slot(struct span *s, const char *key, size_t klen)
{
	/* Keys are stored UTF-8-repaired, so search with the repaired form too,
	 * or the same invalid key set twice would appear twice. */
	char fixed[256];
	if (__builtin_expect(!is_ascii(key, klen), 0)) {
		if (klen > sizeof fixed)
			klen = utf8_prefix(key, klen, sizeof fixed, UINT32_MAX);
		memcpy(fixed, key, klen);
		fix_utf8(fixed, klen);
		key = fixed;
	}
	/* Overwrite semantics need a search for the key; the bloom bit lets the
	 * usual case, a key not set before, skip it. */
	uint64_t bit = klen ? 1ull << ((klen * 7u + (unsigned char)key[0] * 3u +
				       (unsigned char)key[klen - 1]) & 63u) : 1;
	if (!(s->attr_bloom & bit))
		goto append;
	for (unsigned i = 0; i < s->n_attrs; i++) {
		struct span_attr *a = &s->attrs[i];
		if (a->key.len == klen && memcmp(s->arena + a->key.off, key, klen) == 0)
			return a;
	}
append:
	if (s->n_attrs >= limits.attr_count) {
		s->dropped_attrs++;
		return NULL;
	}
	s->attr_bloom |= bit;
	struct span_attr *a = &s->attrs[s->n_attrs];
	if (!arena_put(s, key, klen, &a->key, false)) {
		s->dropped_attrs++;
		return NULL;
	}
	s->n_attrs++;
	return a;
}

void span_attr_str(struct span *s, const char *key, size_t klen, const char *val, size_t len)
{
	if (!s)
		return;
	struct span_attr *a = attr_slot(s, key, klen);
	if (!a)
		return;
	len = utf8_prefix(val, len, SIZE_MAX, limits.attr_len);
	a->type = SPAN_ATTR_STRING;
	a->n = 0;
	if (!arena_put(s, val, len, &a->v.s, true))
		empty_value(a);
}

void span_attr_int(struct span *s, const char *key, size_t klen, int64_t v)
{
	struct span_attr *a = s ? attr_slot(s, key, klen) : NULL;
	if (a) {
		a->type = SPAN_ATTR_INT;
		a->v.i = v;
	}
}

void span_attr_double(struct span *s, const char *key, size_t klen, double v)
{
	struct span_attr *a = s ? attr_slot(s, key, klen) : NULL;
	if (a) {
		a->type = SPAN_ATTR_DOUBLE;
		a->v.d = v;
	}
}

void span_attr_bool(struct span *s, const char *key, size_t klen, bool v)
{
	struct span_attr *a = s ? attr_slot(s, key, klen) : NULL;
	if (a) {
		a->type = SPAN_ATTR_BOOL;
		a->v.b = v;
	}
}

void span_set_str_array(struct span *s, const char *key, const char *const *vals,
			const size_t *lens, size_t n)
{
	if (!s)
		return;
	struct span_attr *a = attr_slot(s, key, strlen(key));
	if (!a)
		return;
	uint16_t start = s->arena_used;
	uint16_t count = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = utf8_prefix(vals[i], lens[i], SIZE_MAX, limits.attr_len);
		if ((size_t)(SPAN_ARENA_SIZE - s->arena_used) < len + 1)
			break;  /* keep the elements that fit whole */
		copy_utf8(s->arena + s->arena_used, vals[i], len);
		s->arena[s->arena_used + len] = '\0';
		s->arena_used += (uint16_t)(len + 1);
		count++;
	}
	a->type = SPAN_ATTR_STRING_ARRAY;
	a->n = count;
	a->v.s.off = start;
	a->v.s.len = (uint16_t)(s->arena_used - start);
}

void span_set_status(struct span *s, enum span_status st, const char *msg, size_t len)
{
	if (!s || st == SPAN_STATUS_UNSET || s->status == SPAN_STATUS_OK)
		return;
	s->status = (uint8_t)st;
	if (st == SPAN_STATUS_ERROR && msg && len) {
		len = utf8_prefix(msg, len, SIZE_MAX, limits.attr_len);
		if (!arena_put(s, msg, len, &s->status_message, true))
			s->status_message.len = 0;
	} else {
		s->status_message.len = 0;
	}
}

/* --- attribute blocks --- */

struct span *span_scratch_new(void)
{
	return calloc(1, sizeof(struct span));
}

void span_attr_block_take(struct span_attr_block *b, struct span *scratch)
{
	b->n = 0;
	if (!scratch)
		return;
	bool fits = scratch->n_attrs <= SPAN_BLOCK_MAX_ATTRS && scratch->arena_used <= SPAN_BLOCK_ARENA &&
		    !scratch->dropped_attrs;
	for (unsigned i = 0; fits && i < scratch->n_attrs; i++)
		fits = scratch->attrs[i].type != SPAN_ATTR_STRING_ARRAY;  /* block_attr_set has no array form */
	if (fits) {
		memcpy(b->attrs, scratch->attrs, scratch->n_attrs * sizeof *b->attrs);
		memcpy(b->arena, scratch->arena, scratch->arena_used);
		b->arena_len = scratch->arena_used;
		b->bloom = scratch->attr_bloom;
		b->n = scratch->n_attrs;
	}
	free(scratch);
}

/* One attribute of a block through the setters: the path for a span that
 * already has one of the block's keys, or too little room for all of it. */
static void block_attr_set(struct span *s, const struct span_attr_block *b, const struct span_attr *a)
{
	const char *key = b->arena + a->key.off;
	switch (a->type) {
	case SPAN_ATTR_STRING:
		span_attr_str(s, key, a->key.len, b->arena + a->v.s.off, a->v.s.len);
		break;
	case SPAN_ATTR_INT:
		span_attr_int(s, key, a->key.len, a->v.i);
		break;
	case SPAN_ATTR_DOUBLE:
		span_attr_double(s, key, a->key.len, a->v.d);
		break;
	case SPAN_ATTR_BOOL:
		span_attr_bool(s, key, a->key.len, a->v.b);
		break;
	default:
		break;  /* span_attr_block_take refuses arrays */
	}
}

void span_attr_block_add(struct span *s, const struct span_attr_block *b)
{
	if (!s || !b->n)
		return;
	/* The bloom filter rules out, for the usual case, a key the span has
	 * already (overwrite semantics need the slow path then). */
	if ((s->attr_bloom & b->bloom) || s->n_attrs + b->n > limits.attr_count ||
	    (size_t)(SPAN_ARENA_SIZE - s->arena_used) < b->arena_len) {
		for (unsigned i = 0; i < b->n; i++)
			block_attr_set(s, b, &b->attrs[i]);
		return;
	}
	uint16_t base = s->arena_used;
	memcpy(s->arena + base, b->arena, b->arena_len);
	struct span_attr *dst = &s->attrs[s->n_attrs];
	for (unsigned i = 0; i < b->n; i++) {
		dst[i] = b->attrs[i];
		dst[i].key.off = (uint16_t)(dst[i].key.off + base);
		if (dst[i].type == SPAN_ATTR_STRING)
			dst[i].v.s.off = (uint16_t)(dst[i].v.s.off + base);
	}
	s->n_attrs = (uint8_t)(s->n_attrs + b->n);
	s->arena_used = (uint16_t)(s->arena_used + b->arena_len);
	s->attr_bloom |= b->bloom;
}

/* Copies kvs into the shared sub-attribute pool; returns how many were dropped. */
static uint16_t put_sub_attrs(struct span *s, const struct span_kv *kv, size_t n, uint32_t limit,
			      uint8_t *first, uint8_t *count)
{
	uint16_t dropped = 0;
	*first = s->n_sub_attrs;
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		if (*count >= limit || s->n_sub_attrs >= SPAN_MAX_SUB_ATTRS) {
			dropped++;
			continue;
		}
		struct span_attr *a = &s->sub_attrs[s->n_sub_attrs];
		if (!arena_put(s, kv[i].key, strlen(kv[i].key), &a->key, false)) {
			dropped++;
			continue;
		}
		a->type = (uint8_t)kv[i].type;
		a->n = 0;
		switch (kv[i].type) {
		case SPAN_ATTR_STRING: {
			size_t len = utf8_prefix(kv[i].v.s.p, kv[i].v.s.len, SIZE_MAX, limits.attr_len);
			if (!arena_put(s, kv[i].v.s.p, len, &a->v.s, true))
				empty_value(a);
			break;
		}
		case SPAN_ATTR_INT:
			a->v.i = kv[i].v.i;
			break;
		case SPAN_ATTR_DOUBLE:
			a->v.d = kv[i].v.d;
			break;
		case SPAN_ATTR_BOOL:
			a->v.b = kv[i].v.b;
			break;
		default:
			dropped++;
			continue;
		}
		s->n_sub_attrs++;
		(*count)++;
	}
	return dropped;
}

void span_add_event(struct span *s, const char *name, uint64_t time_ns,
		    const struct span_kv *attrs, size_t n)
{
	if (!s)
		return;
	if (s->n_events >= limits.event_count) {
		s->dropped_events++;
		return;
	}
	struct span_event *e = &s->events[s->n_events];
	if (!arena_put(s, name, strlen(name), &e->name, false)) {
		s->dropped_events++;
		return;
	}
	e->time_ns = time_ns ? time_ns : span_now_ns();
	e->dropped_attrs = put_sub_attrs(s, attrs, n, limits.event_attr_count, &e->attr_first, &e->attr_count);
	s->n_events++;
}

void span_add_exception(struct span *s, const char *type, const char *msg, size_t msg_len)
{
	if (!s)
		return;
	struct span_kv kv[2] = {
		{ .key = "exception.type", .type = SPAN_ATTR_STRING, .v.s = { type, strlen(type) } },
		{ .key = "exception.message", .type = SPAN_ATTR_STRING, .v.s = { msg, msg_len } },
	};
	span_add_event(s, "exception", 0, kv, msg ? 2 : 1);
}

void span_add_link(struct span *s, const struct trace_context *ctx,
		   const struct span_kv *attrs, size_t n)
{
	if (!s || !ctx || !ctx->valid)
		return;
	if (s->n_links >= limits.link_count) {
		s->dropped_links++;
		return;
	}
	struct span_link *l = &s->links[s->n_links];
	memcpy(l->trace_id, ctx->trace_id, 16);
	memcpy(l->span_id, ctx->span_id, 8);
	l->flags = ctx->flags;
	l->remote = ctx->remote;
	l->trace_state.len = 0;
	if (ctx->tracestate_len)
		arena_put(s, ctx->buf, ctx->tracestate_len, &l->trace_state, false);
	l->dropped_attrs = put_sub_attrs(s, attrs, n, limits.link_attr_count, &l->attr_first, &l->attr_count);
	s->n_links++;
}

void span_end_at(struct span *s, uint64_t end_ns)
{
	if (!s)
		return;
	s->end_ns = end_ns ? end_ns : span_now_ns();
	if (s->end_ns < s->start_ns)
		s->end_ns = s->start_ns;
	if (queue_push(s)) {
		atomic_fetch_add_explicit(&stats.ended, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&stats.dropped_full, 1, memory_order_relaxed);
		span_pool_free(s);
	}
}

void span_end(struct span *s)
{
	span_end_at(s, 0);
}

void span_discard(struct span *s)
{
	if (s)
		span_pool_free(s);
}

void span_drop(struct span *s)
{
	if (!s)
		return;
	atomic_fetch_add_explicit(&stats.dropped_unfollowed, 1, memory_order_relaxed);
	span_pool_free(s);
}

void span_stats_get(struct span_stats *out)
{
	out->started = atomic_load(&stats.started);
	out->unsampled = atomic_load(&stats.unsampled);
	out->ended = atomic_load(&stats.ended);
	out->dropped_full = atomic_load(&stats.dropped_full);
	out->dropped_pool = atomic_load(&stats.dropped_pool);
	out->dropped_unfollowed = atomic_load(&stats.dropped_unfollowed);
}
