/* The export thread: drains the finished-span queue in batches and sends them (OTLP or console). */
#ifndef TRACEAGENT_EXPORTER_H
#define TRACEAGENT_EXPORTER_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/config.h"

struct exporter_stats {
	uint64_t exported;   /* spans accepted by the collector (or written to the console) */
	uint64_t failed;     /* spans in batches that were dropped after errors */
	uint64_t rejected;   /* spans the collector reported in partial_success */
	uint64_t batches;
	uint64_t backed_off; /* of failed: spans of batches dropped unsent while the exporter backed off */
};

/* Registers the exporter as the queue's consumer. The thread itself starts
 * lazily with the first finished span. */
void exporter_init(const struct config *c);

/* Exports everything queued so far and waits at most timeout_ms for it.
 * Returns true when the flush completed in time. */
bool exporter_flush(uint32_t timeout_ms);

/* Final flush at exit, bounded by timeout_ms; then the thread is stopped or
 * abandoned. Idempotent; a no-op when the thread never started. */
void exporter_shutdown(uint32_t timeout_ms);

/* The deadline (CLOCK_MONOTONIC ns) of the process's final flushes: the first
 * call fixes it at now + timeout_ms, later calls return the same one, so a
 * flush at SIGTERM/SIGINT and the exit flush share one bound. Async-signal-safe. */
uint64_t exporter_final_deadline(uint32_t timeout_ms);
/* The process outlived its final flush (a PID 1 survives SIGTERM): the next
 * final flush gets a bound of its own. Async-signal-safe. */
void exporter_final_deadline_reset(void);

/* For a SIGTERM/SIGINT handler: has the export thread send everything queued
 * so far, and waits for it until mono_deadline. Async-signal-safe (atomics,
 * futex, clock_gettime; no lock, no allocation). Returns true when flushed;
 * false at once when no export thread runs or when called on it. */
bool exporter_flush_signal(uint64_t mono_deadline);

/* For _exit and _Exit, which skip atexit: sends what is queued within
 * timeout_ms (the process's final bound, shared with a signal's flush), when
 * this process has an export thread and something to send; at once
 * otherwise, and in a vfork child. Async-signal-safe, as _exit is. */
bool exporter_flush_before_exit(uint32_t timeout_ms);

/* fn runs once the export thread has been created, on the app thread that
 * ended the first span (hooks/sigflush.c installs its handlers then). */
void exporter_set_on_start(void (*fn)(void));

/* In a forked child (pthread_atfork): no exporter thread exists; forget the
 * parent's and start a fresh one on demand. */
void exporter_after_fork_child(void);

void exporter_stats_get(struct exporter_stats *out);

#endif
