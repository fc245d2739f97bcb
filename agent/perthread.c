/* Per-thread blocks carved from one mapping per thread, returned to the system by a thread-exit key destructor. */
#include "perthread.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#include "context.h"

/* Reserved per thread; only pages the thread's state touches are backed. */
#define ARENA_SIZE (64u * 1024u)
#define SLOTS_MAX 8

struct arena {
	size_t used;                /* bytes of the mapping taken, header included */
	unsigned nslots;
	void **slots[SLOTS_MAX];    /* the __thread pointers to clear at exit */
};

static __thread struct arena *arena AGENT_TLS;
static __thread bool exiting AGENT_TLS;
static pthread_key_t key;
static bool key_ok;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void release(void *unused)
{
	(void)unused;
	struct arena *a = arena;
	if (!a)
		return;
	/* Later hooks on this thread (other destructors) find nothing and pass through. */
	exiting = true;
	for (unsigned i = 0; i < a->nslots; i++)
		*a->slots[i] = NULL;
	arena = NULL;
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
	if (*slot)
		return *slot;
	if (exiting)
		return NULL;
	if (!key_ok)
		perthread_init();   /* the agent's constructor did it; a program linking the core may not */
	if (!key_ok)
		return NULL;
	struct arena *a = arena;
	if (!a) {
		void *p = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		a = p;
		a->used = (sizeof *a + 63) & ~(size_t)63;
		/* Any non-NULL value makes the destructor run at thread exit. */
		if (pthread_setspecific(key, a) != 0) {
			munmap(p, ARENA_SIZE);
			return NULL;
		}
		arena = a;
	}
	size = (size + 63) & ~(size_t)63;
	if (a->nslots == SLOTS_MAX || size > ARENA_SIZE - a->used)
		return NULL;
	void *b = (char *)a + a->used;
	a->used += size;
	a->slots[a->nslots++] = slot;
	*slot = b;
	return b;
}
