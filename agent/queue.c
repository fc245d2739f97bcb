/* Finished-span queue: a bounded lock-free ring (Vyukov MPMC cells, one consumer), with a watermark wake-up. */
#include "queue.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "span.h"

/* A cell's Vyukov sequence number is stored minus the cell's index, so the
 * zero-filled pages of a fresh mapping already read as an empty ring: no
 * start-up pass touches them, and pages are faulted in only as spans flow. */
struct cell {
	_Atomic size_t seq;
	struct span *span;
};

static inline size_t seq_load(struct cell *c, size_t idx)
{
	return atomic_load_explicit(&c->seq, memory_order_acquire) + idx;
}

static inline void seq_store(struct cell *c, size_t idx, size_t v)
{
	atomic_store_explicit(&c->seq, v - idx, memory_order_release);
}

static struct cell *cells;
static size_t mask;
static uint32_t limit;        /* OTEL_BSP_MAX_QUEUE_SIZE; the ring itself is rounded up to 2^k */
static uint32_t watermark;
/* Producers and the consumer sit on separate cache lines. */
static _Alignas(64) _Atomic size_t enq_pos;
static _Alignas(64) _Atomic size_t deq_pos;
static _Alignas(64) _Atomic int consumer_started;
static _Atomic int wake_pending;
static struct queue_consumer consumer;
static size_t ring_size;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

bool queue_init(uint32_t capacity, uint32_t mark)
{
	if (cells)
		return true;   /* sized once: the mapping can't change under live spans */
	size_t n = 2;
	while (n < capacity)
		n <<= 1;
	ring_size = n;
	limit = capacity;
	watermark = mark ? mark : 1;
	return true;
}

/* The ring is mapped with the first span ever pushed, not at start-up. */
static void ring_map(void)
{
	void *p = mmap(NULL, ring_size * sizeof(struct cell), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return;
	mask = ring_size - 1;
	atomic_store_explicit((_Atomic(struct cell *) *)&cells, (struct cell *)p, memory_order_release);
}

void queue_set_consumer(const struct queue_consumer *c)
{
	consumer = *c;
}

bool queue_push(struct span *s)
{
	if (__builtin_expect(!atomic_load_explicit((_Atomic(struct cell *) *)&cells, memory_order_acquire), 0)) {
		if (!ring_size)
			return false;
		pthread_once(&ring_once, ring_map);
		if (!cells)
			return false;
	}
	size_t pos = atomic_load_explicit(&enq_pos, memory_order_relaxed);
	struct cell *cell;

	for (;;) {
		/* Signed: a producer delayed between the two loads can see the
		 * consumer already past pos, and that is not "full". */
		if ((intptr_t)(pos - atomic_load_explicit(&deq_pos, memory_order_acquire)) >= (intptr_t)limit)
			return false;
		cell = &cells[pos & mask];
		size_t seq = seq_load(cell, pos & mask);
		intptr_t dif = (intptr_t)seq - (intptr_t)pos;
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&enq_pos, &pos, pos + 1,
								  memory_order_relaxed, memory_order_relaxed))
				break;
		} else if (dif < 0) {
			return false;  /* the consumer hasn't released this cell yet: full */
		} else {
			pos = atomic_load_explicit(&enq_pos, memory_order_relaxed);
		}
	}
	cell->span = s;
	seq_store(cell, pos & mask, pos + 1);

	/* The exporter thread starts on the first span ever pushed, never before. */
	if (__builtin_expect(!atomic_load_explicit(&consumer_started, memory_order_relaxed), 0) &&
	    !atomic_exchange(&consumer_started, 1) && consumer.start)
		consumer.start();
	/* One wake-up per batch: only the push that fills a batch signals, and
	 * wake_pending stays set until the consumer has drained. */
	intptr_t len = (intptr_t)(pos + 1 - atomic_load_explicit(&deq_pos, memory_order_relaxed));
	if (len >= (intptr_t)watermark && !atomic_load_explicit(&wake_pending, memory_order_relaxed) &&
	    !atomic_exchange(&wake_pending, 1) && consumer.wake)
		consumer.wake();
	return true;
}

size_t queue_pop(struct span **out, size_t max)
{
	size_t n = 0;
	if (!atomic_load_explicit((_Atomic(struct cell *) *)&cells, memory_order_acquire))
		return 0;
	size_t pos = atomic_load_explicit(&deq_pos, memory_order_relaxed);
	while (n < max) {
		struct cell *cell = &cells[pos & mask];
		size_t seq = seq_load(cell, pos & mask);
		if ((intptr_t)seq - (intptr_t)(pos + 1) < 0)
			break;  /* empty, or the next producer hasn't published yet */
		out[n++] = cell->span;
		seq_store(cell, pos & mask, pos + mask + 1);
		pos++;
	}
	atomic_store_explicit(&deq_pos, pos, memory_order_release);
	/* Re-arm the wake-up once less than a batch is left. */
	if (atomic_load_explicit(&enq_pos, memory_order_relaxed) - pos < watermark)
		atomic_store_explicit(&wake_pending, 0, memory_order_relaxed);
	return n;
}

size_t queue_length(void)
{
	return atomic_load(&enq_pos) - atomic_load(&deq_pos);
}

void queue_reset_after_fork(void)
{
	struct span *batch[64];
	size_t n;

	while ((n = queue_pop(batch, 64)) > 0)
		for (size_t i = 0; i < n; i++)
			span_pool_free(batch[i]);
	/* A producer caught mid-push at fork time leaves a claimed but unpublished
	 * cell; restart the ring so the child never waits on it. */
	if (cells) {
		/* Zero pages are an empty ring again (see struct cell). */
		madvise(cells, ring_size * sizeof(struct cell), MADV_DONTNEED);
		atomic_store(&enq_pos, 0);
		atomic_store(&deq_pos, 0);
	}
	atomic_store(&consumer_started, 0);
	atomic_store(&wake_pending, 0);
}
