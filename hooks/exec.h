/* exec/posix_spawn hooks: the current context passed to child programs as TRACEPARENT/TRACESTATE/BAGGAGE; the inherited one read at start. */
#ifndef TRACEAGENT_EXEC_H
#define TRACEAGENT_EXEC_H

#include "agent/config.h"

/* At init: resolves the real exec functions, notes what the process inherited,
 * and makes a valid TRACEPARENT (with TRACESTATE, BAGGAGE) the parent of the
 * process's root spans; an invalid one is ignored (debug log). */
void exec_init(const struct config *c);

#endif
