/* Agent start-up shared by every hook family: the once-guard and the enabled flag. */
#ifndef TRACEAGENT_INIT_H
#define TRACEAGENT_INIT_H

#include <stdbool.h>

/* True once init ran and tracing is on (not OTEL_SDK_DISABLED, core ready). */
extern bool init_enabled;

/* Runs init once; cheap after the first call. Safe to call from any hook,
 * even before the constructor ran (another library's constructor may do I/O). */
void init_ensure(void);

#endif
