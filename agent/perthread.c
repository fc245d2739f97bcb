/* Per-thread blocks carved from one mapping per thread, returned to the system by a thread-exit key destructor. */
#include "perthread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>


/* Reserved per thread; only pages the thread's state touches are backed. */
#define ARENA_SIZE (64u * 1024u)
#define SLOTS_MAX 8

struct arena {
	_Atomic size_t used;          /* bytes of the mapping taken, header included */
	_Atomic unsigned nslots;
	void **slots[SLOTS_MAX];      /* the __thread pointers to clear at exit */
};

/*
 * A signal handler may run a hook, and so come here, while the thread it
 * interrupted is in here too: every step is an atomic claim (a second mapping
 * made meanwhile is given back, a block is claimed by fetch-and-add, the
 * slot pointer is set by compare-and-swap), so the two never share memory.
 */
static __thread struct arena *_Atomic arena AGENT_TLS;
static __thread bool exiting AGENT_TLS;
static pthread_key_t key;
static bool key_ok;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void release(void *unused)
{
	(void)unused;
	struct arena *a = atomic_load(&arena);
	if (!a)
		return;
	/* Later hooks on this thread (other destructors) find nothing and pass through. */
	exiting = true;
	unsigned n = atomic_load(&a->nslots);
	for (unsigned i = 0; i < n && i < SLOTS_MAX; i++)
		if (a->slots[i])
			*a->slots[i] = NULL;
	atomic_store(&arena, NULL);
	munmap(a, ARENA_SIZE);
}

static void make_key(void)
{
	key_ok = pthread_key_create(&key, release) == 0;
}

void perthread_init(void)
{
	pthread_once(&key_once, make_key);
}

void *perthread_get(void **slot, size_t size)
{
	void *have = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (have)
		return have;
	if (exiting)
		return NULL;
	if (!key_ok)
		perthread_init();   /* the agent's constructor did it; a program linking the core may not */
	if (!key_ok)
		return NULL;
	struct arena *a = atomic_load(&arena);
	if (!a) {
		void *p = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		struct arena *fresh = p;
		atomic_store(&fresh->used, (sizeof *fresh + 63) & ~(size_t)63);
		struct arena *none = NULL;
		if (atomic_compare_exchange_strong(&arena, &none, fresh)) {
			a = fresh;
			/* Any non-NULL value makes the destructor run at thread exit. */
			pthread_setspecific(key, a);
		} else {
			munmap(p, ARENA_SIZE);   /* a signal handler on this thread made one meanwhile */
			a = none;
		}
	}
	size = (size + 63) & ~(size_t)63;
	size_t off = atomic_fetch_add(&a->used, size);
	unsigned k = atomic_fetch_add(&a->nslots, 1);
	if (off + size > ARENA_SIZE || k >= SLOTS_MAX)
		return NULL;   /* more than the agent ever asks for: not expected */
	void *b = (char *)a + off;
	a->slots[k] = slot;
	void *none = NULL;
	if (!__atomic_compare_exchange_n(slot, &none, b, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		a->slots[k] = NULL;   /* a handler on this thread set it first: use that one */
		return none;
	}
	return b;
}
