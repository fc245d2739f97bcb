/* Agent start-up shared by every hook family: the once-guard and the enabled flag. */
#ifndef TRACEAGENT_INIT_H
#define TRACEAGENT_INIT_H

#include <stdbool.h>

/* True once init ran and tracing is on (not OTEL_SDK_DISABLED, core ready). */
extern bool init_enabled;
/* Set by the constructor from OTEL_SDK_DISABLED: hooks then never init. */
extern bool init_disabled;

/* Runs the full init once, lazily: hooks call it at their first call that
 * may record a span (not on plain file or pipe I/O). Cheap after the first
 * call; safe before the constructor ran (another library's constructor may
 * already do I/O). */
void init_ensure(void);

#endif
