/* The clocks: monotonic for timeouts, deadlines and backoff; wall-clock for span times, read from the monotonic one. */
#ifndef TRACEAGENT_CLOCK_H
#define TRACEAGENT_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns (a vDSO read; async-signal-safe). */
uint64_t clock_mono_ns(void);

/* Wall-clock time in ns, from the monotonic clock anchored to CLOCK_REALTIME:
 * one vDSO read per call, and a span's duration can never go negative across
 * a clock step. */
uint64_t clock_now_ns(void);
/* Re-anchors clock_now_ns to CLOCK_REALTIME (the exporter does it per batch). */
void clock_reanchor(void);

#endif
