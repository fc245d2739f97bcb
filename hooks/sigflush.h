/* SIGTERM/SIGINT with the default disposition: flush the queue within the exit bound, then die by the signal. */
#ifndef TRACEAGENT_SIGFLUSH_H
#define TRACEAGENT_SIGFLUSH_H

#include "agent/config.h"

/* Called once from init: our handlers are installed when the export thread
 * starts (there is nothing to flush before), for each of SIGTERM and SIGINT
 * whose disposition is then SIG_DFL. TRACEAGENT_EXIT_TIMEOUT=0 installs none. */
void sigflush_init(const struct config *c);
/* In a forked child: the child's own spans are flushed at its signal. */
void sigflush_after_fork_child(void);

#endif
