/* Diagnostics on stderr with a "traceagent:" prefix, filtered by OTEL_LOG_LEVEL. */
#ifndef TRACEAGENT_LOG_H
#define TRACEAGENT_LOG_H

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
 * and never allocates. Lines longer than 1 KiB are cut. */
void log_write(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) do { if (log_threshold >= LOG_LEVEL_ERROR) log_write(LOG_LEVEL_ERROR, __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_threshold >= LOG_LEVEL_WARN)  log_write(LOG_LEVEL_WARN,  __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_threshold >= LOG_LEVEL_INFO)  log_write(LOG_LEVEL_INFO,  __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_threshold >= LOG_LEVEL_DEBUG) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

#endif
