/* Bounded finished-span queue: many app threads push, the exporter thread drains; never blocks or allocates. */
#ifndef TRACEAGENT_QUEUE_H
#define TRACEAGENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct span;

/* What the core calls on the consumer side. start() runs once, lazily, on the
 * first span pushed (so a process that never ends a span starts no thread);
 * wake() runs only when the queue crosses the watermark, never per span. */
struct queue_consumer {
	void (*start)(void);
	void (*wake)(void);
};

/* capacity = OTEL_BSP_MAX_QUEUE_SIZE, watermark = OTEL_BSP_MAX_EXPORT_BATCH_SIZE. */
bool queue_init(uint32_t capacity, uint32_t watermark);
void queue_set_consumer(const struct queue_consumer *c);

/* Returns false (and the caller drops the span) when the queue is full. */
bool queue_push(struct span *s);

/* Consumer side: pops up to max spans in FIFO order. */
size_t queue_pop(struct span **out, size_t max);
size_t queue_length(void);

/* In a forked child: the parent's queued spans belong to the parent, which
 * exports them; the child returns their records to the pool and starts empty,
 * with its own consumer started on demand. */
void queue_reset_after_fork(void);

#endif
