/* Finished-span queue: a lock-free byte ring of variable-length entries (many producers, one consumer), with a watermark wake-up. */
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

/*
 * Entries are a 16-byte header and the payload, rounded up to 16 bytes, at
 * increasing byte positions (head: reserved up to; tail: released up to). A
 * producer claims its bytes by moving head with a CAS, writes them, then
 * publishes the header's tag, a hash of the entry's position: the consumer
 * takes an entry only when the tag at tail is the one for tail, so neither
 * a fresh zero page nor the bytes of an older lap can pass for a committed
 * entry. An entry never wraps: one that would is preceded by a padding entry
 * to the end of the ring.
 */
#define ALIGN 16u

struct hdr {
	_Atomic uint64_t tag;
	uint32_t len;     /* payload bytes */
	uint32_t pad;     /* 1: padding to the ring's end, len 0 */
};

static char *ring;
static uint64_t ring_size, ring_mask;
static uint32_t max_spans, watermark;
/* Producers and the consumer sit on separate cache lines. */
static _Alignas(64) _Atomic uint64_t head;
static _Alignas(64) _Atomic uint64_t tail;
static _Alignas(64) _Atomic size_t count;
static _Atomic int consumer_started, wake_pending;
static struct queue_consumer consumer;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

static inline uint64_t tag_of(uint64_t pos)
{
	return (pos + 1) * 0x9e3779b97f4a7c15ull ^ 0x5bd1e9955bd1e995ull;
}

static inline uint64_t entry_size(size_t len)
{
	return sizeof(struct hdr) + ((len + ALIGN - 1) & ~(uint64_t)(ALIGN - 1));
}

bool queue_init(uint32_t spans, uint32_t mark)
{
	if (ring_size)
		return true;   /* sized once: the mapping can't change under live spans */
	/* About 1 KB a span (a span takes a few hundred bytes; a big one up
	 * to ~4 KB): the span count is what normally fills first. */
	uint64_t n = 1u << 16;
	while (n < (uint64_t)spans * 1024u)
		n <<= 1;
	ring_size = n;
	max_spans = spans ? spans : 1;
	watermark = mark ? mark : 1;
	return true;
}

/* Mapped with the first span ever queued, not at start-up. */
static void ring_map(void)
{
	void *p = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return;
	ring_mask = ring_size - 1;
	atomic_store_explicit((_Atomic(char *) *)&ring, (char *)p, memory_order_release);
}

void queue_set_consumer(const struct queue_consumer *c)
{
	consumer = *c;
}

static inline struct hdr *hdr_at(uint64_t pos)
{
	return (struct hdr *)(ring + (pos & ring_mask));
}

bool queue_reserve(size_t len, struct queue_slot *slot)
{
	if (__builtin_expect(!atomic_load_explicit((_Atomic(char *) *)&ring, memory_order_acquire), 0)) {
		if (!ring_size)
			return false;
		pthread_once(&ring_once, ring_map);
		if (!ring)
			return false;
	}
	uint64_t need = entry_size(len);
	if (need > ring_size / 4)
		return false;
	/* The span count first: a full queue drops, it never blocks. */
	if (atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) >= max_spans) {
		atomic_fetch_sub_explicit(&count, 1, memory_order_relaxed);
		return false;
	}
	uint64_t h = atomic_load_explicit(&head, memory_order_relaxed), pad, at;
	for (;;) {
		uint64_t off = h & ring_mask;
		pad = off + need > ring_size ? ring_size - off : 0;
		at = h + pad;
		/* Signed: with a stale h (others reserved, and the consumer released,
		 * past it), tail is ahead of at; that is not "full", and the CAS
		 * below fails and retries with the current head. */
		if ((int64_t)(at + need - atomic_load_explicit(&tail, memory_order_acquire)) > (int64_t)ring_size) {
			atomic_fetch_sub_explicit(&count, 1, memory_order_relaxed);
			return false;
		}
		if (atomic_compare_exchange_weak_explicit(&head, &h, at + need, memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	if (pad) {
		struct hdr *ph = hdr_at(h);
		ph->len = 0;
		ph->pad = 1;
		atomic_store_explicit(&ph->tag, tag_of(h), memory_order_release);
	}
	struct hdr *eh = hdr_at(at);
	eh->len = (uint32_t)len;
	eh->pad = 0;
	slot->hdr = eh;
	slot->tag = tag_of(at);
	slot->p = (char *)(eh + 1);
	return true;
}

void queue_commit(struct queue_slot *slot)
{
	struct hdr *eh = slot->hdr;
	atomic_store_explicit(&eh->tag, slot->tag, memory_order_release);

	/* The exporter thread starts on the first span ever queued, never before. */
	if (__builtin_expect(!atomic_load_explicit(&consumer_started, memory_order_relaxed), 0) &&
	    !atomic_exchange(&consumer_started, 1) && consumer.start)
		consumer.start();
	/* One wake-up per batch: only the commit that fills a batch signals, and
	 * wake_pending stays set until the consumer has drained. */
	if (atomic_load_explicit(&count, memory_order_relaxed) >= watermark &&
	    !atomic_load_explicit(&wake_pending, memory_order_relaxed) && !atomic_exchange(&wake_pending, 1) &&
	    consumer.wake)
		consumer.wake();
}

void queue_cursor_start(struct queue_cursor *c)
{
	c->pos = atomic_load_explicit(&tail, memory_order_relaxed);
	c->taken = 0;
}

bool queue_next(struct queue_cursor *c, const char **p, size_t *len)
{
	if (!atomic_load_explicit((_Atomic(char *) *)&ring, memory_order_acquire))
		return false;
	for (;;) {
		if (c->pos == atomic_load_explicit(&head, memory_order_acquire))
			return false;
		struct hdr *h = hdr_at(c->pos);
		if (atomic_load_explicit(&h->tag, memory_order_acquire) != tag_of(c->pos))
			return false;   /* reserved, still being written */
		if (h->pad) {
			c->pos += ring_size - (c->pos & ring_mask);
			continue;
		}
		*p = (const char *)(h + 1);
		*len = h->len;
		c->pos += entry_size(h->len);
		c->taken++;
		return true;
	}
}

void queue_release(const struct queue_cursor *c)
{
	atomic_store_explicit(&tail, c->pos, memory_order_release);
	atomic_fetch_sub_explicit(&count, c->taken, memory_order_relaxed);
	/* Re-arm the wake-up once less than a batch is left. */
	if (atomic_load_explicit(&count, memory_order_relaxed) < watermark)
		atomic_store_explicit(&wake_pending, 0, memory_order_relaxed);
}

size_t queue_length(void)
{
	return atomic_load(&count);
}

size_t queue_bytes(void)
{
	return (size_t)(atomic_load(&head) - atomic_load(&tail));
}

void queue_reset_after_fork(void)
{
	/* Only the forking thread survives: no entry is half-written by a thread
	 * of ours; whatever the parent had queued is the parent's to send. */
	atomic_store(&tail, atomic_load(&head));
	atomic_store(&count, 0);
	atomic_store(&consumer_started, 0);
	atomic_store(&wake_pending, 0);
}
