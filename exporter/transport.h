/* OTLP/HTTP transport: libcurl and zlib opened with dlopen, POST with retry, backoff and Retry-After. */
#ifndef TRACEAGENT_TRANSPORT_H
#define TRACEAGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"

enum transport_result {
	TRANSPORT_OK = 0,        /* accepted (2xx) */
	TRANSPORT_FAILED,        /* not retryable, or retries ran out of time: batch dropped */
	TRANSPORT_ABORTED,       /* transport_abort() was called (exit bound reached) */
};

struct transport_outcome {
	enum transport_result result;
	long http_status;        /* last HTTP status, 0 if none */
	int attempts;
	int64_t rejected_spans;  /* from partial_success */
};

/* Loads libcurl (and zlib when gzip is configured) and prepares the request
 * headers. Returns false, after one warning, when libcurl can't be loaded:
 * the caller then drops spans instead of exporting. Exporter thread only. */
bool transport_init(const struct config *c);

/* POSTs body, retrying 429/502/503/504 and connection failures with
 * exponential backoff and jitter (or the server's Retry-After) while time
 * remains before deadline_ns (span_now_ns clock). */
void transport_send(const void *body, size_t len, uint64_t deadline_ns, struct transport_outcome *out);

/* From any thread: abandon the transfer or back-off in progress promptly. */
void transport_abort(void);

/* In a forked child: the parent's handles share its sockets; forget them
 * without cleanup and start over on the next send. */
void transport_reset_after_fork(void);

#endif
