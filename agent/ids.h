/* Trace and span ids from a per-thread PRNG seeded by getrandom, reseeded after fork. */
#ifndef TRACEAGENT_IDS_H
#define TRACEAGENT_IDS_H

#include <stdbool.h>
#include <stdint.h>

/* 16 random bytes, never all zero. All bytes are random, so the W3C random
 * flag may be set for traces started here. */
void ids_new_trace_id(uint8_t out[16]);
/* 8 random bytes, never all zero. */
void ids_new_span_id(uint8_t out[8]);
/* How many span ids this thread has made (wrapping). Every span starts
 * with one, so two reads that differ mean a span was started on the thread
 * in between (hooks/rdkafka.c tells a handled message from one not yet
 * handled by it). */
uint32_t ids_thread_span_ids(void);
/* 64 random bits from the same generator (jitter, tests). */
uint64_t ids_random_u64(void);

/* Called in a forked child: every thread's generator is reseeded before its
 * next id, so parent and child never produce the same ids. */
void ids_after_fork(void);

static inline bool ids_is_zero(const uint8_t *p, int n)
{
	uint8_t acc = 0;
	for (int i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

#endif
