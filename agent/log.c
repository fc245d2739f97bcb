/* Diagnostics on stderr: prefix, level filter, raw write(2) so our own hooks never see them. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

enum log_level log_threshold = LOG_LEVEL_INFO;

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

void log_write(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "", "error", "warning", "info", "debug" };
	char buf[1024];
	int saved = errno;
	int n;

	if (level > log_threshold || level == LOG_LEVEL_NONE)
		return;
	n = snprintf(buf, sizeof buf, "traceagent: %s: ", names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	if ((size_t)(n + m) > sizeof buf - 2)
		m = (int)(sizeof buf - 2) - n;
	buf[n + m] = '\n';
	/* A raw syscall: the app's stderr may be hooked by us (log correlation, HTTP
	 * detection), and the agent must never trace or rewrite its own diagnostics. */
	size_t len = (size_t)(n + m + 1), off = 0;
	while (off < len) {
		long w = syscall(SYS_write, 2, buf + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	errno = saved;
}
