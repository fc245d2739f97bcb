/* The monotonic clock every timeout, deadline and backoff is measured on. */
#ifndef TRACEAGENT_CLOCK_H
#define TRACEAGENT_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns (a vDSO read; async-signal-safe). */
uint64_t clock_mono_ns(void);

#endif
