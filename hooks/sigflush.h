/* SIGTERM/SIGINT with the default disposition: flush the queue within the exit bound, then die by the signal. */
#ifndef TRACEAGENT_SIGFLUSH_H
#define TRACEAGENT_SIGFLUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/config.h"

/* The exporter's flushes (exporter/exporter.h), each async-signal-safe:
 * handed over by init, the one file that knows both sides. */
struct sigflush_flush {
	uint64_t (*final_deadline)(uint32_t timeout_ms);
	void (*final_deadline_reset)(void);
	bool (*flush_signal)(uint64_t mono_deadline);
	bool (*flush_before_exit)(uint32_t timeout_ms);
};

/* Called once from init, before sigflush_arm can run. */
void sigflush_init(const struct config *c, const struct sigflush_flush *f);
/* When the export thread starts (there is nothing to flush before): our
 * handlers go in for each of SIGTERM and SIGINT whose disposition is then
 * SIG_DFL. TRACEAGENT_EXIT_TIMEOUT=0 installs none. */
void sigflush_arm(void);
/* In a forked child: the child's own spans are flushed at its signal. */
void sigflush_after_fork_child(void);

#endif
