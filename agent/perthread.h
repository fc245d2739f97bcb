/* Per-thread state allocated on a thread's first use of it, so the agent's static TLS stays a few pointers. */
#ifndef TRACEAGENT_PERTHREAD_H
#define TRACEAGENT_PERTHREAD_H

#include <stddef.h>

/* The agent's static TLS: initial-exec (no lookup per access), and only
 * ever a few pointers (see below). */
#define AGENT_TLS __attribute__((tls_model("initial-exec")))

/*
 * Every thread of the process pays for the agent's static TLS (PT_TLS) out of
 * its own stack, whether it ever makes a span or not; a thread created with a
 * PTHREAD_STACK_MIN stack cannot even start if that is large. So the agent
 * keeps only pointers in static TLS, and the state behind them comes from a
 * small per-thread mapping made when the thread first needs it (mmap, so a
 * hook reached in a signal handler may call it too), released when the
 * thread exits.
 */

/* The calling thread's zeroed block of size bytes, stored in *slot (the
 * caller's own __thread pointer), made on first use. NULL when memory is
 * short or the thread is exiting: the caller then does nothing of its own
 * (the app's call still passes through). */
void *perthread_get(void **slot, size_t size);

/* At load, before any thread can need a block (the thread-exit key; done on
 * first use otherwise, which a signal handler must not be). */
void perthread_init(void);

#endif
