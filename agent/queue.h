/* Finished spans, already encoded: a bounded lock-free byte ring that app threads write and the exporter thread reads; never blocks or allocates. */
#ifndef TRACEAGENT_QUEUE_H
#define TRACEAGENT_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A finished span is its OTLP Span message, written once by the thread that
 * ends it (agent/span.c) straight into the ring: the queue holds exactly the
 * bytes the exporter sends, a few hundred per span, and the exporter copies
 * them into a request without looking inside.
 */

/* What the core calls on the consumer side. start() runs once, lazily, on the
 * first span committed (so a process that never ends a span starts no
 * thread); wake() runs only when the queue crosses the watermark, never per span. */
struct queue_consumer {
	void (*start)(void);
	void (*wake)(void);
};

/* max_spans = OTEL_BSP_MAX_QUEUE_SIZE, watermark = OTEL_BSP_MAX_EXPORT_BATCH_SIZE.
 * The ring's bytes are reserved (not touched) here and mapped at the first span. */
bool queue_init(uint32_t max_spans, uint32_t watermark);
void queue_set_consumer(const struct queue_consumer *c);

/* Producer side: room for len bytes, written at slot->p, then committed. False
 * when the queue is full (max_spans queued, or no room for the bytes): the
 * caller drops the span. */
struct queue_slot {
	char *p;
	void *hdr;     /* private */
	uint64_t tag;  /* private */
};
bool queue_reserve(size_t len, struct queue_slot *slot);
void queue_commit(struct queue_slot *slot);

/* Consumer side (one thread): entries in FIFO order, read in place. A cursor
 * starts at the oldest entry; queue_next gives the next committed one (false
 * at the end, or at an entry still being written); queue_release gives back
 * everything before the cursor. Entries stay valid until released. */
struct queue_cursor {
	uint64_t pos;
	size_t taken;
};
void queue_cursor_start(struct queue_cursor *c);
bool queue_next(struct queue_cursor *c, const char **p, size_t *len);
void queue_release(const struct queue_cursor *c);

size_t queue_length(void);   /* spans queued (reserved included) */
size_t queue_bytes(void);    /* ring bytes they take, headers included */

/* In a forked child: the queued spans are the parent's, which exports them;
 * the child starts empty, with its own consumer started on demand. */
void queue_reset_after_fork(void);

#endif
