/* Per-thread xoshiro256** generators, seeded from getrandom(2), for trace and span ids. */
#include "ids.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "context.h"

struct ids_state {
	uint64_t s[4];
	unsigned generation;   /* matches ids_generation while the seed is valid */
	uint32_t span_ids;     /* span ids made by this thread (wrapping) */
	bool seeded;
};

/* Bumped in a forked child; every thread compares it to its own copy so the
 * check costs one load on the hot path instead of a getpid() syscall. */
static _Atomic unsigned ids_generation;
static __thread struct ids_state ids_tls AGENT_TLS;

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void ids_seed(struct ids_state *st)
{
	uint64_t seed[4] = { 0 };
	/* The system call, not glibc's getrandom(): that one is a cancellation
	 * point, and a thread's first span (a traced call's, even) would act on
	 * a pending cancellation inside the agent, where no unwinder can go. */
	ssize_t got = syscall(SYS_getrandom, seed, sizeof seed, GRND_NONBLOCK);

	if (got != (ssize_t)sizeof seed) {
		/* Early boot or seccomp: mix what differs between threads and processes.
		 * Uniqueness, not secrecy, is what ids need. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
			     ((uint64_t)getpid() << 16) ^ (uint64_t)syscall(SYS_gettid) ^
			     (uint64_t)(uintptr_t)st;
		for (int i = 0; i < 4; i++)
			seed[i] ^= splitmix64(&x);
	}
	if (!(seed[0] | seed[1] | seed[2] | seed[3]))
		seed[0] = 1;  /* xoshiro's one forbidden state */
	memcpy(st->s, seed, sizeof seed);
	st->generation = atomic_load_explicit(&ids_generation, memory_order_relaxed);
	st->seeded = true;
}

static inline uint64_t next(void)
{
	struct ids_state *st = &ids_tls;

	if (__builtin_expect(!st->seeded || st->generation !=
			     atomic_load_explicit(&ids_generation, memory_order_relaxed), 0))
		ids_seed(st);
	uint64_t *s = st->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t ids_random_u64(void)
{
	return next();
}

void ids_new_trace_id(uint8_t out[16])
{
	uint64_t a, b;
	do {
		a = next();
		b = next();
	} while (!(a | b));
	memcpy(out, &a, 8);
	memcpy(out + 8, &b, 8);
}

void ids_new_span_id(uint8_t out[8])
{
	uint64_t a;
	do {
		a = next();
	} while (!a);
	memcpy(out, &a, 8);
	ids_tls.span_ids++;
}

uint32_t ids_thread_span_ids(void)
{
	return ids_tls.span_ids;
}

void ids_after_fork(void)
{
	atomic_fetch_add_explicit(&ids_generation, 1, memory_order_relaxed);
}
