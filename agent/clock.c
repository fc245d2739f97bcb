/* CLOCK_MONOTONIC as one 64-bit count of nanoseconds, and the wall clock derived from it. */
#include "clock.h"

#include <stdatomic.h>
#include <time.h>

/* Offset from CLOCK_MONOTONIC to the wall clock. */
static _Atomic int64_t offset;

uint64_t clock_mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void clock_reanchor(void)
{
	struct timespec r, m;
	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	int64_t off = ((int64_t)r.tv_sec - (int64_t)m.tv_sec) * 1000000000 + (r.tv_nsec - m.tv_nsec);
	atomic_store_explicit(&offset, off, memory_order_relaxed);
}

uint64_t clock_now_ns(void)
{
	return (uint64_t)((int64_t)clock_mono_ns() + atomic_load_explicit(&offset, memory_order_relaxed));
}
