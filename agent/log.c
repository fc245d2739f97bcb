/* Diagnostics on stderr: prefix, level filter, per-site rate limit, raw write(2) so our own hooks never see them. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"

enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const level_names[] = { "", "error", "warning", "info", "debug" };

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

/* A raw syscall: the app's stderr may be hooked by us (log correlation, HTTP
 * detection), and the agent must never trace or rewrite its own diagnostics. */
static void emit(const char *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		long w = syscall(SYS_write, 2, buf + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/* "traceagent: LEVEL: " + message into buf (cut to fit); returns the length without the newline. */
static size_t format(char *buf, size_t size, enum log_level level, const char *fmt, va_list ap)
{
	int n = snprintf(buf, size, "traceagent: %s: ", level_names[level]);
	int m = vsnprintf(buf + n, size - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	if ((size_t)(n + m) > size - 2)
		m = (int)(size - 2) - n;
	return (size_t)(n + m);
}

static uint64_t hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
	return h | 1;   /* never 0, the "no message yet" value */
}

/* Whether the site may write this line now; *held gets how many it held back. */
static bool limit_pass(struct log_limit *lim, const char *line, size_t len, uint32_t *held)
{
	uint64_t h = hash(line, len);
	uint64_t now = clock_mono_ns();

	*held = 0;
	if (atomic_flag_test_and_set_explicit(&lim->busy, memory_order_acquire))
		return false;   /* another thread is writing this very warning */
	if (!lim->window_start || now - lim->window_start >= LOG_LIMIT_WINDOW_NS) {
		lim->window_start = now;
		lim->written = 0;
		lim->last_hash = 0;
	}
	bool pass = h != lim->last_hash && lim->written < LOG_LIMIT_DISTINCT;
	lim->last_hash = h;
	if (pass) {
		lim->written++;
		*held = lim->held;
		lim->held = 0;
	} else {
		lim->held++;
	}
	atomic_flag_clear_explicit(&lim->busy, memory_order_release);
	return pass;
}

/* One line; lim NULL: not limited. */
static void vwrite(struct log_limit *lim, enum log_level level, const char *fmt, va_list ap)
{
	char buf[1024];
	uint32_t held = 0;

	if (level > log_threshold || level == LOG_LEVEL_NONE)
		return;
	/* Room kept for the held-back count. */
	size_t len = format(buf, sizeof buf - 80, level, fmt, ap);
	if (lim && !limit_pass(lim, buf, len, &held))
		return;
	if (held)
		len += (size_t)snprintf(buf + len, sizeof buf - len, " (%u more like this held back since the last one)",
					held);
	buf[len] = '\n';
	emit(buf, len + 1);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vwrite(NULL, level, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_write_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vwrite(lim, level, fmt, ap);
	va_end(ap);
	errno = saved;
}
