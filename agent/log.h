/* Diagnostics on stderr with a "traceagent:" prefix, filtered by OTEL_LOG_LEVEL and rate-limited per call site. */
#ifndef TRACEAGENT_LOG_H
#define TRACEAGENT_LOG_H

#include <stdatomic.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_NONE = 0,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Current threshold; messages above it are skipped before formatting. */
extern enum log_level log_threshold;

void log_set_level(enum log_level level);
/* Writes one line with raw syscalls so it never re-enters our own write() hook
 * and never allocates. Lines longer than 1 KiB are cut. Not rate-limited. */
void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A call site's rate limit: a collector answering errors, or a hook failing on
 * every call, must never flood the app's stderr. Per call site and per window
 * of LOG_LIMIT_WINDOW_NS, a message identical to the site's previous one is
 * written once, and at most LOG_LIMIT_DISTINCT different ones; what is held
 * back is counted, and the site's next written line says how many. Lock-free
 * (a site busy on another thread or in an interrupted one counts as held back),
 * so it is usable from any thread.
 */
#define LOG_LIMIT_WINDOW_NS (60ull * 1000000000ull)
#define LOG_LIMIT_DISTINCT 5

struct log_limit {
	atomic_flag busy;
	uint64_t window_start;   /* CLOCK_MONOTONIC ns; 0 before the first line */
	uint64_t last_hash;      /* of the site's last message, written or not */
	uint32_t written;        /* lines written in this window */
	uint32_t held;           /* lines held back since the last one written */
};

void log_write_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define LOG_LIMITED_(level, ...) do {                                                      \
		if (log_threshold >= (level)) {                                            \
			static struct log_limit log_site_ = { .busy = ATOMIC_FLAG_INIT };  \
			log_write_limited(&log_site_, (level), __VA_ARGS__);               \
		}                                                                          \
	} while (0)

#define log_error(...) LOG_LIMITED_(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_LIMITED_(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  LOG_LIMITED_(LOG_LEVEL_INFO, __VA_ARGS__)
/* Debug output is asked for explicitly (OTEL_LOG_LEVEL=debug): every line. */
#define log_debug(...) do { if (log_threshold >= LOG_LEVEL_DEBUG) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)
/* Configuration warnings: written while the configuration is loaded, once per
 * process and per variable, so never repeated; not limited (a site such as
 * "invalid value of %s" serves many variables). */
#define log_warn_config(...) do { if (log_threshold >= LOG_LEVEL_WARN) log_write(LOG_LEVEL_WARN, __VA_ARGS__); } while (0)

#endif
