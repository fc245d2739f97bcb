/* Span records: a lock-free pool of small records whose fields are kept as OTLP bytes; start, attributes, events, links, limits, and the encoding at end. */
#include "span.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "config.h"
#include "ids.h"
#include "log.h"
#include "pb.h"
#include "queue.h"
#include "sampler.h"

/* Span field numbers (opentelemetry-proto trace.proto). */
enum {
	F_TRACE_ID = 1, F_SPAN_ID = 2, F_TRACE_STATE = 3, F_PARENT = 4, F_NAME = 5, F_KIND = 6, F_START = 7,
	F_END = 8, F_ATTR = 9, F_DROPPED_ATTRS = 10, F_EVENT = 11, F_DROPPED_EVENTS = 12, F_LINK = 13,
	F_DROPPED_LINKS = 14, F_STATUS = 15, F_FLAGS = 16,
};
/* AnyValue field numbers */
enum { AV_STRING = 1, AV_BOOL = 2, AV_INT = 3, AV_DOUBLE = 4, AV_ARRAY = 5 };

/*
 * The record. Its stream holds the span's variable fields as complete
 * protobuf fields, in this order: the tracestate (if any), the name, then
 * attributes; events, links and the status message (a field-15 item holding
 * only Status.message) come after, possibly between later attributes
 * (`mixed`). span_encode puts them in field-number order.
 */
struct span {
	struct span_fast f;      /* first: the inline setters of span.h use it */
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	uint64_t start_ns;
	uint32_t index;          /* in the pool */
	uint32_t big;            /* big block index + 1; 0: none */
	uint16_t name_at, name_len;
	uint32_t dropped_attrs, dropped_events, dropped_links;   /* uint32 in OTLP */
	uint8_t trace_flags, kind, status;
	uint8_t n_events, n_links, n_sub;
	bool has_parent, parent_remote, mixed, scratch;
	char data[];
};

#define DATA_SIZE (SPAN_RECORD_SIZE - sizeof(struct span))
_Static_assert(sizeof(struct span) <= 128, "the record header grew");

struct span_limits {
	uint32_t attr_count, attr_len, event_count, link_count, event_attr_count, link_attr_count;
};
static struct span_limits limits = {
	SPAN_MAX_ATTRS, CONFIG_UNLIMITED, SPAN_MAX_EVENTS, SPAN_MAX_LINKS, SPAN_MAX_SUB_ATTRS, SPAN_MAX_SUB_ATTRS,
};
/* The attribute limits, for the inline setters (span.h). */
uint32_t span_limit_attr_count = SPAN_MAX_ATTRS, span_limit_attr_len = CONFIG_UNLIMITED;

static struct {
	_Atomic uint64_t started, unsampled, ended, dropped_full, dropped_pool, dropped_unfollowed, big;
} stats;

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* --- pools --- */

/* Fixed-size blocks in one anonymous mapping, reserved at init and mapped
 * at first use; free blocks form a Treiber stack whose head carries a tag
 * against ABA: (tag << 32) | (index + 1), 0 = empty. */
struct slab {
	char *base;
	_Atomic uint32_t *next;
	uint32_t cap, size;
	_Atomic uint32_t fresh;       /* blocks never used yet start here */
	_Atomic uint64_t free_head;
	pthread_once_t once;
	uint32_t want;
};

static struct slab records = { .once = PTHREAD_ONCE_INIT, .size = SPAN_RECORD_SIZE };
static struct slab bigs = { .once = PTHREAD_ONCE_INIT, .size = SPAN_BIG_SIZE };

static void slab_map(struct slab *sl)
{
	size_t bytes = (size_t)sl->want * sl->size;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		log_warn("could not reserve %zu bytes for spans; tracing stops", bytes);
		return;
	}
	void *n = mmap(NULL, (size_t)sl->want * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (n == MAP_FAILED) {
		munmap(p, bytes);
		return;
	}
	sl->next = (_Atomic uint32_t *)n;
	sl->cap = sl->want;
	atomic_store_explicit((_Atomic(char *) *)&sl->base, (char *)p, memory_order_release);
}

static void map_records(void)
{
	slab_map(&records);
}

static void map_bigs(void)
{
	slab_map(&bigs);
}

/* A block's index, or -1 when none is free. */
static int64_t slab_alloc(struct slab *sl, void (*map)(void))
{
	uint64_t head = atomic_load_explicit(&sl->free_head, memory_order_acquire);

	while (head & 0xffffffffu) {
		uint32_t idx = (uint32_t)head - 1;
		uint64_t nh = (((head >> 32) + 1) << 32) | atomic_load_explicit(&sl->next[idx], memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(&sl->free_head, &head, nh, memory_order_acquire,
							  memory_order_acquire))
			return idx;
	}
	if (__builtin_expect(!atomic_load_explicit((_Atomic(char *) *)&sl->base, memory_order_acquire), 0)) {
		if (!sl->want)
			return -1;
		pthread_once(&sl->once, map);
		if (!sl->base)
			return -1;
	}
	uint32_t idx = atomic_load_explicit(&sl->fresh, memory_order_relaxed);
	while (idx < sl->cap) {
		if (atomic_compare_exchange_weak_explicit(&sl->fresh, &idx, idx + 1, memory_order_relaxed,
							  memory_order_relaxed))
			return idx;
	}
	return -1;
}

static void slab_free(struct slab *sl, uint32_t idx)
{
	uint64_t head = atomic_load_explicit(&sl->free_head, memory_order_relaxed);
	uint64_t nh;

	do {
		atomic_store_explicit(&sl->next[idx], (uint32_t)head, memory_order_relaxed);
		nh = (((head >> 32) + 1) << 32) | (idx + 1);
	} while (!atomic_compare_exchange_weak_explicit(&sl->free_head, &head, nh, memory_order_release,
							memory_order_relaxed));
}

bool span_pool_init(uint32_t max_queue)
{
	const struct config *c = &config_global;

	limits.attr_count = min_u32(c->span_attribute_count_limit, SPAN_MAX_ATTRS);
	limits.attr_len = c->span_attribute_value_length_limit;
	span_limit_attr_count = limits.attr_count;
	span_limit_attr_len = limits.attr_len;
	limits.event_count = min_u32(c->span_event_count_limit, SPAN_MAX_EVENTS);
	limits.link_count = min_u32(c->span_link_count_limit, SPAN_MAX_LINKS);
	limits.event_attr_count = min_u32(c->event_attribute_count_limit, SPAN_MAX_SUB_ATTRS);
	limits.link_attr_count = min_u32(c->link_attribute_count_limit, SPAN_MAX_SUB_ATTRS);
	/* Records are for open spans only (finished ones are bytes in the
	 * queue); as many as the queue holds, plus room for a burst, covers
	 * even producers waiting for many delivery reports. */
	uint64_t cap = (uint64_t)max_queue + 1024;
	records.want = (uint32_t)(cap > (1u << 22) ? (1u << 22) : cap);
	bigs.want = records.want / 8 + 16;
	return true;
}

uint32_t span_pool_capacity(void)
{
	return records.want;
}

static void record_free(struct span *s)
{
	if (s->scratch) {
		free(s);
		return;
	}
	if (s->big)
		slab_free(&bigs, s->big - 1);
	slab_free(&records, s->index);
}

/* --- UTF-8 --- */

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

/* Copies src to dst, repairing UTF-8 in the copy. Checks the source, not the
 * copy: reading back bytes memcpy has just stored stalls on store forwarding. */
static inline char *put_utf8(char *dst, const char *src, size_t len)
{
	bool ascii = is_ascii(src, len);
	memcpy(dst, src, len);
	if (!ascii)
		fix_utf8(dst, len);
	return dst + len;
}

/* --- the stream --- */

/* Room for need more bytes: a record whose stream outgrows it moves the
 * stream, once, to a big block. */
static bool room(struct span *s, size_t need)
{
	if ((size_t)s->f.len + need <= s->f.cap)
		return true;
	if (s->big || s->scratch || need > SPAN_BIG_SIZE - (size_t)s->f.len)
		return false;
	int64_t b = slab_alloc(&bigs, map_bigs);
	if (b < 0)
		return false;
	char *p = bigs.base + (size_t)b * SPAN_BIG_SIZE;
	memcpy(p, s->f.stream, s->f.len);
	s->f.stream = p;
	s->f.cap = SPAN_BIG_SIZE;
	s->big = (uint32_t)b + 1;
	atomic_fetch_add_explicit(&stats.big, 1, memory_order_relaxed);
	return true;
}

/* The most a string of a field can keep when the field's other bytes take
 * overhead: what is left in the largest stream a span can have. */
static size_t room_left(const struct span *s, size_t overhead)
{
	size_t cap = s->big || s->scratch ? s->f.cap : SPAN_BIG_SIZE;
	size_t used = (size_t)s->f.len + overhead;
	return used < cap ? cap - used : 0;
}

/* Reads an item's header at off: its field number and where its payload lies. */
static bool item_at(const struct span *s, size_t off, unsigned *field, size_t *payload, size_t *end)
{
	const unsigned char *p = (const unsigned char *)s->f.stream + off, *lim = (const unsigned char *)s->f.stream + s->f.len;
	uint64_t key, n;
	if (!pb_get_varint(&p, lim, &key) || (key & 7) != PB_LEN || !pb_get_varint(&p, lim, &n) ||
	    n > (uint64_t)(lim - p))
		return false;
	*field = (unsigned)(key >> 3);
	*payload = (size_t)(p - (const unsigned char *)s->f.stream);
	*end = *payload + (size_t)n;
	return true;
}

static void item_remove(struct span *s, size_t off, size_t end)
{
	memmove(s->f.stream + off, s->f.stream + end, s->f.len - end);
	s->f.len = (uint16_t)(s->f.len - (end - off));
	if (s->name_at > off)
		s->name_at = (uint16_t)(s->name_at - (end - off));
}

/* --- start / end --- */

static char *put_name_item(char *p, const char *name, size_t len)
{
	return put_utf8(pb_put_len(p, F_NAME, len), name, len);
}

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

	int64_t idx = slab_alloc(&records, map_records);
	if (idx < 0) {
		atomic_fetch_add_explicit(&stats.dropped_pool, 1, memory_order_relaxed);
		return NULL;
	}
	atomic_fetch_add_explicit(&stats.started, 1, memory_order_relaxed);
	struct span *s = (struct span *)(records.base + (size_t)idx * SPAN_RECORD_SIZE);
	memset(s, 0, sizeof *s);
	s->index = (uint32_t)idx;
	s->f.stream = s->data;
	s->f.cap = (uint16_t)DATA_SIZE;
	memcpy(s->trace_id, out->trace_id, 16);
	memcpy(s->span_id, out->span_id, 8);
	if (parent->valid) {
		memcpy(s->parent_span_id, parent->span_id, 8);
		s->has_parent = true;
		s->parent_remote = parent->remote;
	}
	s->trace_flags = out->flags;
	s->kind = (uint8_t)kind;
	if (out->tracestate_len && room(s, pb_len_field(F_TRACE_STATE, out->tracestate_len))) {
		char *p = pb_put_len(s->f.stream, F_TRACE_STATE, out->tracestate_len);
		memcpy(p, out->buf, out->tracestate_len);
		s->f.len = (uint16_t)(p + out->tracestate_len - s->f.stream);
	}
	s->name_at = s->f.len;
	name_len = utf8_prefix(name, name_len, room_left(s, 4), UINT32_MAX);
	if (name_len && room(s, pb_len_field(F_NAME, name_len))) {   /* proto3: an empty name is left out */
		s->f.len = (uint16_t)(put_name_item(s->f.stream + s->f.len, name, name_len) - s->f.stream);
		s->name_len = (uint16_t)(s->f.len - s->name_at);
	}
	s->start_ns = clock_now_ns();
	return s;
}

void span_set_name(struct span *s, const char *name, size_t len)
{
	if (!s)
		return;
	/* The old item out, the new one in its place (tracestate, then name,
	 * then the rest: the order span_encode relies on). */
	size_t at = s->name_at;
	item_remove(s, at, at + s->name_len);
	s->name_len = 0;
	len = utf8_prefix(name, len, room_left(s, 4), UINT32_MAX);
	size_t need = pb_len_field(F_NAME, len);
	if (!len || !room(s, need))
		return;
	memmove(s->f.stream + at + need, s->f.stream + at, s->f.len - at);
	put_name_item(s->f.stream + at, name, len);
	s->f.len = (uint16_t)(s->f.len + need);
	s->name_len = (uint16_t)need;
}

void span_set_start_time(struct span *s, uint64_t ns)
{
	if (s)
		s->start_ns = ns;
}

/* --- attributes --- */

static inline uint64_t bloom_bit(const char *key, size_t klen)
{
	return klen ? 1ull << ((klen * 7u + (unsigned char)key[0] * 3u + (unsigned char)key[klen - 1]) & 63u) : 1;
}

/* The key of the KeyValue whose payload starts at off, if it starts with one. */
static bool kv_key(const struct span *s, size_t payload, size_t end, const char **key, size_t *klen)
{
	const unsigned char *p = (const unsigned char *)s->f.stream + payload, *lim = (const unsigned char *)s->f.stream + end;
	uint64_t n;
	if (p < lim && *p == PB_KEY(2, PB_LEN)) {
		*key = "";   /* the empty key, left out */
		*klen = 0;
		return true;
	}
	if (p >= lim || *p != PB_KEY(1, PB_LEN))
		return false;
	p++;
	if (!pb_get_varint(&p, lim, &n) || n > (uint64_t)(lim - p))
		return false;
	*key = (const char *)p;
	*klen = (size_t)n;
	return true;
}

/* Takes a key for a new value: drops the attribute already holding it (its
 * value is replaced: the new one goes at the end), and checks the count
 * limit. False when the attribute is dropped (and counted). */
static bool attr_claim(struct span *s, const char *key, size_t klen, uint64_t bit)
{
	if (s->f.bloom & bit) {
		for (size_t off = s->name_at + s->name_len; off < s->f.len;) {
			unsigned field;
			size_t payload, end;
			const char *k;
			size_t kl;
			if (!item_at(s, off, &field, &payload, &end))
				break;
			if (field == F_ATTR && kv_key(s, payload, end, &k, &kl) && kl == klen && memcmp(k, key, klen) == 0) {
				item_remove(s, off, end);
				s->f.n_attrs--;
				break;
			}
			off = end;
		}
	}
	if (s->f.n_attrs >= limits.attr_count) {
		s->dropped_attrs++;
		return false;
	}
	return true;
}

/* Keys are stored UTF-8-repaired, so they are compared in that form too, or
 * the same invalid key set twice would appear twice. */
static const char *clean_key(const char *key, size_t *klen, char fixed[256])
{
	if (__builtin_expect(is_ascii(key, *klen), 1))
		return key;
	if (*klen > 256)
		*klen = utf8_prefix(key, *klen, 256, UINT32_MAX);
	memcpy(fixed, key, *klen);
	fix_utf8(fixed, *klen);
	return fixed;
}

/* Writes the item "attribute: key = AnyValue of av bytes" up to the value;
 * returns where the AnyValue's bytes go. */
/* Bytes of a KeyValue's body; an empty key is left out, as proto3 does. */
static size_t kv_body(size_t klen, size_t av)
{
	return (klen ? pb_len_field(1, klen) : 0) + pb_len_field(2, av);
}

/* "field { key, value: " of a KeyValue; the AnyValue's av bytes follow. The
 * key is written as it is: callers give it UTF-8-repaired. */
static char *put_kv_head(char *p, unsigned field, const char *key, size_t klen, size_t av)
{
	p = pb_put_len(p, field, kv_body(klen, av));
	if (klen)
		p = pb_put_bytes(p, 1, key, klen);
	return pb_put_len(p, 2, av);
}

static char *put_attr_head(char *p, const char *key, size_t klen, size_t av)
{
	return put_kv_head(p, F_ATTR, key, klen, av);
}

static size_t attr_size(size_t klen, size_t av)
{
	return pb_len_field(F_ATTR, kv_body(klen, av));
}

/* A scalar AnyValue (int, double, bool) of av bytes written by put. */
static void attr_scalar(struct span *s, const char *key, size_t klen, size_t av,
			char *(*put)(char *, const void *), const void *v)
{
	if (!s)
		return;
	char fixed[256];
	key = clean_key(key, &klen, fixed);
	uint64_t bit = bloom_bit(key, klen);
	if (!attr_claim(s, key, klen, bit))
		return;
	size_t need = attr_size(klen, av);
	if (!room(s, need)) {
		s->dropped_attrs++;
		return;
	}
	char *p = put_attr_head(s->f.stream + s->f.len, key, klen, av);
	put(p, v);
	s->f.len = (uint16_t)(s->f.len + need);
	s->f.n_attrs++;
	s->f.bloom |= bit;
}

static char *put_int(char *p, const void *v)
{
	return pb_put_varint(pb_put_key(p, AV_INT, PB_VARINT), (uint64_t) * (const int64_t *)v);
}

static char *put_double(char *p, const void *v)
{
	uint64_t bits;
	memcpy(&bits, v, 8);
	return pb_put_fixed64(p, AV_DOUBLE, bits);
}

static char *put_bool(char *p, const void *v)
{
	p = pb_put_key(p, AV_BOOL, PB_VARINT);
	*p++ = *(const bool *)v ? 1 : 0;
	return p;
}

void span_attr_int(struct span *s, const char *key, size_t klen, int64_t v)
{
	attr_scalar(s, key, klen, 1 + pb_varint_size((uint64_t)v), put_int, &v);
}

void span_attr_double(struct span *s, const char *key, size_t klen, double v)
{
	attr_scalar(s, key, klen, 9, put_double, &v);
}

void span_attr_bool(struct span *s, const char *key, size_t klen, bool v)
{
	attr_scalar(s, key, klen, 2, put_bool, &v);
}

void span_attr_str(struct span *s, const char *key, size_t klen, const char *val, size_t len)
{
	if (!s)
		return;
	char fixed[256];
	key = clean_key(key, &klen, fixed);
	uint64_t bit = bloom_bit(key, klen);
	if (!attr_claim(s, key, klen, bit))
		return;
	/* Cut to the length limit, then to the room the span has left (about
	 * 12 bytes of tags and lengths go around key and value). */
	len = utf8_prefix(val, len, room_left(s, klen + 12), limits.attr_len);
	size_t av = pb_len_field(AV_STRING, len);
	size_t need = attr_size(klen, av);
	if (!room(s, need)) {
		s->dropped_attrs++;
		return;
	}
	char *p = put_attr_head(s->f.stream + s->f.len, key, klen, av);
	put_utf8(pb_put_len(p, AV_STRING, len), val, len);
	s->f.len = (uint16_t)(s->f.len + need);
	s->f.n_attrs++;
	s->f.bloom |= bit;
}

static void attr_str_array(struct span *s, const char *key, size_t klen, const char *const *vals,
			   const size_t *lens, size_t n)
{
	if (!s)
		return;
	char fixed[256];
	key = clean_key(key, &klen, fixed);
	uint64_t bit = bloom_bit(key, klen);
	if (!attr_claim(s, key, klen, bit))
		return;
	/* The elements that fit whole are kept (their lengths are worked out
	 * twice rather than kept: arrays are rare, their count unbounded). */
	size_t arr = 0, keep = 0, budget = room_left(s, klen + 16);
	for (; keep < n; keep++) {
		size_t l = utf8_prefix(vals[keep], lens[keep], SIZE_MAX, limits.attr_len);
		size_t e = pb_len_field(1, pb_len_field(AV_STRING, l));
		if (arr + e > budget)
			break;
		arr += e;
	}
	size_t av = pb_len_field(AV_ARRAY, arr);
	size_t need = attr_size(klen, av);
	if (!room(s, need)) {
		s->dropped_attrs++;
		return;
	}
	char *p = put_attr_head(s->f.stream + s->f.len, key, klen, av);
	p = pb_put_len(p, AV_ARRAY, arr);
	for (size_t i = 0; i < keep; i++) {
		size_t l = utf8_prefix(vals[i], lens[i], SIZE_MAX, limits.attr_len);
		p = pb_put_len(p, 1, pb_len_field(AV_STRING, l));
		p = put_utf8(pb_put_len(p, AV_STRING, l), vals[i], l);
	}
	s->f.len = (uint16_t)(s->f.len + need);
	s->f.n_attrs++;
	s->f.bloom |= bit;
}

void span_set_str_array(struct span *s, const char *key, const char *const *vals,
			const size_t *lens, size_t n)
{
	attr_str_array(s, key, strlen(key), vals, lens, n);
}

/* --- status, events, links --- */

void span_set_status(struct span *s, enum span_status st, const char *msg, size_t len)
{
	if (!s || st == SPAN_STATUS_UNSET || s->status == SPAN_STATUS_OK)
		return;
	s->status = (uint8_t)st;
	/* At most one message item, replaced. */
	for (size_t off = s->name_at + s->name_len; s->mixed && off < s->f.len;) {
		unsigned field;
		size_t payload, end;
		if (!item_at(s, off, &field, &payload, &end))
			break;
		if (field == F_STATUS) {
			item_remove(s, off, end);
			break;
		}
		off = end;
	}
	if (st != SPAN_STATUS_ERROR || !msg || !len)
		return;
	len = utf8_prefix(msg, len, room_left(s, 8), limits.attr_len);
	size_t body = pb_len_field(2, len), need = pb_len_field(F_STATUS, body);
	if (!room(s, need))
		return;
	char *p = pb_put_len(s->f.stream + s->f.len, F_STATUS, body);
	put_utf8(pb_put_len(p, 2, len), msg, len);
	s->f.len = (uint16_t)(s->f.len + need);
	s->mixed = true;
}

/* At most this many attributes of one event or link are looked at; the
 * rest are dropped (and counted), as are those past the limits. */
#define SUB_MAX (SPAN_MAX_SUB_ATTRS * 2)

static bool sub_type_ok(enum span_attr_type t)
{
	return t == SPAN_ATTR_STRING || t == SPAN_ATTR_INT || t == SPAN_ATTR_DOUBLE || t == SPAN_ATTR_BOOL;
}

/* Bytes of an AnyValue for kv (a string cut to lens). */
static size_t sub_av_size(const struct span_kv *kv, size_t len)
{
	switch (kv->type) {
	case SPAN_ATTR_STRING:
		return pb_len_field(AV_STRING, len);
	case SPAN_ATTR_INT:
		return 1 + pb_varint_size((uint64_t)kv->v.i);
	case SPAN_ATTR_DOUBLE:
		return 9;
	default:
		return 2;
	}
}

/* Bytes of the KeyValues of kv[0..n) that fit the limits: *kept of them
 * (the rest are counted in *dropped); string lengths cut into lens, so that
 * the whole event or link (overhead: its other bytes) still fits the span. */
static size_t sub_attrs_size(struct span *s, const struct span_kv *kv, size_t n, uint32_t limit, size_t overhead,
			     size_t *kept, uint32_t *dropped, size_t lens[SUB_MAX])
{
	size_t total = 0;
	*kept = 0;
	*dropped = n > SUB_MAX ? (uint32_t)(n - SUB_MAX) : 0;
	for (size_t i = 0; i < n && i < SUB_MAX; i++) {
		if (*kept >= limit || s->n_sub + *kept >= SPAN_MAX_SUB_ATTRS || !sub_type_ok(kv[i].type)) {
			(*dropped)++;
			continue;
		}
		size_t klen = strlen(kv[i].key);
		lens[i] = kv[i].type == SPAN_ATTR_STRING
				  ? utf8_prefix(kv[i].v.s.p, kv[i].v.s.len, room_left(s, overhead + total + klen + 24),
						limits.attr_len)
				  : 0;
		/* Event.attributes (3) and Link.attributes (4): one-byte keys. */
		total += pb_len_field(3, kv_body(klen, sub_av_size(&kv[i], lens[i])));
		(*kept)++;
	}
	return total;
}

static char *put_sub_attrs(char *p, unsigned field, const struct span_kv *kv, size_t n, size_t kept,
			   const size_t lens[SUB_MAX])
{
	for (size_t i = 0, done = 0; i < n && i < SUB_MAX && done < kept; i++) {
		if (!sub_type_ok(kv[i].type))
			continue;
		size_t klen = strlen(kv[i].key), av = sub_av_size(&kv[i], lens[i]);
		p = pb_put_len(p, field, kv_body(klen, av));
		if (klen)
			p = put_utf8(pb_put_len(p, 1, klen), kv[i].key, klen);   /* repaired, as attribute keys are */
		p = pb_put_len(p, 2, av);
		switch (kv[i].type) {
		case SPAN_ATTR_STRING:
			p = put_utf8(pb_put_len(p, AV_STRING, lens[i]), kv[i].v.s.p, lens[i]);
			break;
		case SPAN_ATTR_INT:
			p = put_int(p, &kv[i].v.i);
			break;
		case SPAN_ATTR_DOUBLE:
			p = put_double(p, &kv[i].v.d);
			break;
		default:
			p = put_bool(p, &kv[i].v.b);
			break;
		}
		done++;
	}
	return p;
}

static size_t uint_field(unsigned field, uint64_t v)
{
	return v ? pb_varint_size(PB_KEY(field, PB_VARINT)) + pb_varint_size(v) : 0;
}

static char *put_uint(char *p, unsigned field, uint64_t v)
{
	return v ? pb_put_varint(pb_put_key(p, field, PB_VARINT), v) : p;
}

/*
 * An event or a link: a stream item (field) whose message has head bytes of
 * its own fields, then the attributes kept under the limit (attr_field) and
 * their dropped count, then tail bytes. sub_item_open sizes it and returns
 * where its own fields go, or NULL when the record has no room (the caller
 * counts it dropped); sub_item_attrs writes the attributes, sub_item_close
 * commits the item.
 */
struct sub_item {
	size_t kept, need, lens[SUB_MAX];
	uint32_t dropped;
	unsigned attr_field;
};

static char *sub_item_open(struct span *s, struct sub_item *it, unsigned field, size_t head, size_t tail,
			   unsigned attr_field, const struct span_kv *attrs, size_t n, uint32_t limit)
{
	size_t body = head + tail;
	body += sub_attrs_size(s, attrs, n, limit, body + 16, &it->kept, &it->dropped, it->lens);
	body += uint_field(attr_field + 1, it->dropped);
	it->need = pb_len_field(field, body);
	it->attr_field = attr_field;
	if (!room(s, it->need))
		return NULL;
	return pb_put_len(s->f.stream + s->f.len, field, body);
}

static char *sub_item_attrs(char *p, const struct sub_item *it, const struct span_kv *attrs, size_t n)
{
	p = put_sub_attrs(p, it->attr_field, attrs, n, it->kept, it->lens);
	return put_uint(p, it->attr_field + 1, it->dropped);
}

static void sub_item_close(struct span *s, const struct sub_item *it)
{
	s->f.len = (uint16_t)(s->f.len + it->need);
	s->n_sub = (uint8_t)(s->n_sub + it->kept);
	s->mixed = true;
}

void span_add_event(struct span *s, const char *name, uint64_t time_ns,
		    const struct span_kv *attrs, size_t n)
{
	if (!s)
		return;
	size_t nlen = strlen(name);
	struct sub_item it;
	char *p = s->n_events < limits.event_count ?
		sub_item_open(s, &it, F_EVENT, 9 + (nlen ? pb_len_field(2, nlen) : 0), 0, 3, attrs, n,
			      limits.event_attr_count) : NULL;
	if (!p) {
		s->dropped_events++;
		return;
	}
	p = pb_put_fixed64(p, 1, time_ns ? time_ns : clock_now_ns());
	if (nlen)
		p = put_utf8(pb_put_len(p, 2, nlen), name, nlen);
	sub_item_attrs(p, &it, attrs, n);
	sub_item_close(s, &it);
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

/* OTLP Span.flags: W3C flags in the low byte, plus the has-is-remote and
 * is-remote bits (0x100, 0x200). */
static uint32_t span_flags(unsigned trace_flags, bool remote)
{
	return (trace_flags & 0xffu) | 0x100u | (remote ? 0x200u : 0u);
}

void span_add_link(struct span *s, const struct trace_context *ctx,
		   const struct span_kv *attrs, size_t n)
{
	if (!s || !ctx || !ctx->valid)
		return;
	struct sub_item it;
	char *p = s->n_links < limits.link_count ?
		sub_item_open(s, &it, F_LINK, 18 + 10 + (ctx->tracestate_len ? pb_len_field(3, ctx->tracestate_len) : 0),
			      5, 4, attrs, n, limits.link_attr_count) : NULL;
	if (!p) {
		s->dropped_links++;
		return;
	}
	p = pb_put_bytes(p, 1, ctx->trace_id, 16);
	p = pb_put_bytes(p, 2, ctx->span_id, 8);
	if (ctx->tracestate_len)
		p = pb_put_bytes(p, 3, ctx->buf, ctx->tracestate_len);
	p = sub_item_attrs(p, &it, attrs, n);
	pb_put_fixed32(p, 6, span_flags(ctx->flags, ctx->remote));
	sub_item_close(s, &it);
	s->n_links++;
}

/* --- attribute blocks --- */

struct span *span_scratch_new(void)
{
	/* A scratch record's stream is as large as a big block, in the record. */
	struct span *s = calloc(1, sizeof *s + SPAN_BIG_SIZE);
	if (!s)
		return NULL;
	s->f.stream = s->data;
	s->f.cap = SPAN_BIG_SIZE;
	s->scratch = true;
	return s;
}

void span_attr_block_take(struct span_attr_block *b, struct span *scratch)
{
	b->n = 0;
	if (!scratch)
		return;
	size_t at = (size_t)scratch->name_at + scratch->name_len;
	size_t len = scratch->f.len - at;
	if (scratch->f.n_attrs <= SPAN_BLOCK_MAX_ATTRS && len <= SPAN_BLOCK_BYTES && !scratch->dropped_attrs &&
	    !scratch->mixed) {
		memcpy(b->bytes, scratch->f.stream + at, len);
		b->len = (uint16_t)len;
		b->bloom = scratch->f.bloom;
		b->n = scratch->f.n_attrs;
	}
	free(scratch);
}

/* The block's attributes one at a time, through the setters: for a span that
 * has one of the block's keys already, or not enough room for all of it. */
static void block_add_each(struct span *s, const struct span_attr_block *b)
{
	const unsigned char *p = (const unsigned char *)b->bytes, *end = p + b->len;
	while (p < end) {
		uint64_t key, n, kl, avl, v;
		if (!pb_get_varint(&p, end, &key) || !pb_get_varint(&p, end, &n) || n > (uint64_t)(end - p))
			return;
		const unsigned char *kv = p, *kvend = p + n;
		p = kvend;
		if (kv >= kvend || *kv++ != PB_KEY(1, PB_LEN) || !pb_get_varint(&kv, kvend, &kl) ||
		    kl > (uint64_t)(kvend - kv))
			continue;
		const char *k = (const char *)kv;
		kv += kl;
		if (kv >= kvend || *kv++ != PB_KEY(2, PB_LEN) || !pb_get_varint(&kv, kvend, &avl) || kv >= kvend)
			continue;
		unsigned char t = *kv++;
		if (t == PB_KEY(AV_STRING, PB_LEN) && pb_get_varint(&kv, kvend, &v) && v <= (uint64_t)(kvend - kv)) {
			span_attr_str(s, k, kl, (const char *)kv, v);
		} else if (t == PB_KEY(AV_INT, PB_VARINT) && pb_get_varint(&kv, kvend, &v)) {
			span_attr_int(s, k, kl, (int64_t)v);
		} else if (t == PB_KEY(AV_BOOL, PB_VARINT) && pb_get_varint(&kv, kvend, &v)) {
			span_attr_bool(s, k, kl, v != 0);
		} else if (t == PB_KEY(AV_DOUBLE, PB_I64) && kvend - kv >= 8) {
			double d;
			memcpy(&d, kv, 8);
			span_attr_double(s, k, kl, d);
		} else if (t == PB_KEY(AV_ARRAY, PB_LEN) && pb_get_varint(&kv, kvend, &v) && v <= (uint64_t)(kvend - kv)) {
			/* ArrayValue { values: AnyValue { string_value } ... } */
			const char *vals[SPAN_BLOCK_BYTES / 4];
			size_t lens[SPAN_BLOCK_BYTES / 4], m = 0;
			const unsigned char *e = kv, *eend = kv + v;
			while (e < eend && m < sizeof vals / sizeof vals[0]) {
				uint64_t el, sl;
				if (*e++ != PB_KEY(1, PB_LEN) || !pb_get_varint(&e, eend, &el) || el > (uint64_t)(eend - e))
					break;
				const unsigned char *q = e;
				e += el;
				if (q < e && *q++ == PB_KEY(AV_STRING, PB_LEN) && pb_get_varint(&q, e, &sl) &&
				    sl <= (uint64_t)(e - q)) {
					vals[m] = (const char *)q;
					lens[m++] = sl;
				} else if (q == e) {
					vals[m] = "";
					lens[m++] = 0;
				}
			}
			attr_str_array(s, k, kl, vals, lens, m);
		}
	}
}

void span_attr_block_add(struct span *s, const struct span_attr_block *b)
{
	if (!s || !b->n)
		return;
	/* The bloom filter rules out, for the usual case, a key the span has
	 * already (overwrite semantics need the slow path then). */
	if ((s->f.bloom & b->bloom) || s->f.n_attrs + b->n > limits.attr_count || !room(s, b->len)) {
		block_add_each(s, b);
		return;
	}
	memcpy(s->f.stream + s->f.len, b->bytes, b->len);
	s->f.len = (uint16_t)(s->f.len + b->len);
	s->f.n_attrs = (uint8_t)(s->f.n_attrs + b->n);
	s->f.bloom |= b->bloom;
}

/* --- accessors --- */

size_t span_trace_state(const struct span *s, const char **p)
{
	unsigned field;
	size_t payload, end;
	if (!s || !s->name_at || !item_at(s, 0, &field, &payload, &end) || field != F_TRACE_STATE)
		return 0;
	*p = s->f.stream + payload;
	return end - payload;
}

uint32_t span_index(const struct span *s)
{
	return s->index;
}

/* --- encoding and end --- */

/* Copies the items of one field number from the stream after the name. */
static char *copy_items(char *p, const struct span *s, unsigned want)
{
	for (size_t off = s->name_at + s->name_len; off < s->f.len;) {
		unsigned field;
		size_t payload, end;
		if (!item_at(s, off, &field, &payload, &end))
			break;
		if (field == want) {
			memcpy(p, s->f.stream + off, end - off);
			p += end - off;
		}
		off = end;
	}
	return p;
}

/* The status message item, if any: its payload (Status.message, field 2). */
static size_t status_item(const struct span *s, size_t *payload)
{
	for (size_t off = s->name_at + s->name_len; s->mixed && off < s->f.len;) {
		unsigned field;
		size_t end;
		if (!item_at(s, off, &field, payload, &end))
			break;
		if (field == F_STATUS)
			return end - *payload;
		off = end;
	}
	return 0;
}

static size_t encoded_size(const struct span *s, uint64_t end_ns, size_t *status_msg, size_t *status_body)
{
	size_t msg_at = 0;
	*status_msg = s->status == SPAN_STATUS_ERROR ? status_item(s, &msg_at) : 0;
	*status_body = *status_msg + uint_field(3, s->status);
	return 18 + 10 + (s->has_parent ? 10 : 0) + s->f.len + uint_field(F_KIND, s->kind) + (s->start_ns ? 9 : 0) +
	       (end_ns ? 9 : 0) + uint_field(F_DROPPED_ATTRS, s->dropped_attrs) +
	       uint_field(F_DROPPED_EVENTS, s->dropped_events) + uint_field(F_DROPPED_LINKS, s->dropped_links) +
	       (s->status != SPAN_STATUS_UNSET ? pb_len_field(F_STATUS, *status_body) : 0) + 6 -
	       (*status_msg ? pb_len_field(F_STATUS, *status_msg) : 0);
}

/* Writes the Span message, fields in number order (as protobuf encoders do). */
static char *encode(char *p, const struct span *s, uint64_t end_ns, size_t status_msg, size_t status_body)
{
	p = pb_put_bytes(p, F_TRACE_ID, s->trace_id, 16);
	p = pb_put_bytes(p, F_SPAN_ID, s->span_id, 8);
	memcpy(p, s->f.stream, s->name_at);   /* the tracestate item, if any */
	p += s->name_at;
	if (s->has_parent)
		p = pb_put_bytes(p, F_PARENT, s->parent_span_id, 8);
	memcpy(p, s->f.stream + s->name_at, s->name_len);
	p += s->name_len;
	p = put_uint(p, F_KIND, s->kind);
	if (s->start_ns)
		p = pb_put_fixed64(p, F_START, s->start_ns);
	if (end_ns)
		p = pb_put_fixed64(p, F_END, end_ns);
	size_t rest = (size_t)s->name_at + s->name_len;
	if (!s->mixed) {
		memcpy(p, s->f.stream + rest, s->f.len - rest);   /* only attributes: the usual case */
		p += s->f.len - rest;
	} else {
		p = copy_items(p, s, F_ATTR);
	}
	p = put_uint(p, F_DROPPED_ATTRS, s->dropped_attrs);
	if (s->mixed)
		p = copy_items(p, s, F_EVENT);
	p = put_uint(p, F_DROPPED_EVENTS, s->dropped_events);
	if (s->mixed)
		p = copy_items(p, s, F_LINK);
	p = put_uint(p, F_DROPPED_LINKS, s->dropped_links);
	if (s->status != SPAN_STATUS_UNSET) {
		p = pb_put_len(p, F_STATUS, status_body);
		if (status_msg) {
			size_t at = 0;
			status_item(s, &at);
			memcpy(p, s->f.stream + at, status_msg);
			p += status_msg;
		}
		p = put_uint(p, 3, s->status);
	}
	return pb_put_fixed32(p, F_FLAGS, span_flags(s->trace_flags, s->has_parent && s->parent_remote));
}

size_t span_encode(const struct span *s, uint64_t end_ns, char *out, size_t cap)
{
	size_t msg, body;
	size_t n = encoded_size(s, end_ns, &msg, &body);
	if (n > cap)
		return 0;
	char *e = encode(out, s, end_ns, msg, body);
	return (size_t)(e - out) == n ? n : 0;
}

void span_end_at(struct span *s, uint64_t end_ns)
{
	if (!s)
		return;
	end_ns = end_ns ? end_ns : clock_now_ns();
	if (end_ns < s->start_ns)
		end_ns = s->start_ns;
	size_t msg, body;
	size_t n = encoded_size(s, end_ns, &msg, &body);
	struct queue_slot slot;
	if (queue_reserve(n, &slot)) {
		encode(slot.p, s, end_ns, msg, body);
		queue_commit(&slot);
		atomic_fetch_add_explicit(&stats.ended, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&stats.dropped_full, 1, memory_order_relaxed);
	}
	record_free(s);
}

void span_end(struct span *s)
{
	span_end_at(s, 0);
}

void span_discard(struct span *s)
{
	if (s)
		record_free(s);
}

void span_drop(struct span *s)
{
	if (!s)
		return;
	atomic_fetch_add_explicit(&stats.dropped_unfollowed, 1, memory_order_relaxed);
	record_free(s);
}

void span_stats_get(struct span_stats *out)
{
	out->started = atomic_load(&stats.started);
	out->unsampled = atomic_load(&stats.unsampled);
	out->ended = atomic_load(&stats.ended);
	out->dropped_full = atomic_load(&stats.dropped_full);
	out->dropped_pool = atomic_load(&stats.dropped_pool);
	out->dropped_unfollowed = atomic_load(&stats.dropped_unfollowed);
	out->big = atomic_load(&stats.big);
}
