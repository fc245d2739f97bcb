/* OTLP/HTTP transport: POST over the agent's own connection, retries with one shared backoff and Retry-After. */
#ifndef TRACEAGENT_TRANSPORT_H
#define TRACEAGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"

enum transport_result {
	TRANSPORT_OK = 0,        /* accepted (2xx) */
	TRANSPORT_FAILED,        /* not retryable, retries ran out of time, or backing off: batch dropped */
	TRANSPORT_ABORTED,       /* transport_abort() was called (exit bound reached) */
};

struct transport_outcome {
	enum transport_result result;
	long http_status;        /* last HTTP status, 0 if none */
	int attempts;
	bool backed_off;         /* dropped unsent: the exporter is backing off past the batch's deadline */
	int64_t rejected_spans;  /* from partial_success */
};

/* Parses the endpoint, loads zlib when gzip is configured, and prepares the
 * request head (OpenSSL is loaded at the first https connection). Returns
 * false, after one warning, when export cannot work: the caller then drops
 * spans instead. Exporter thread only. */
bool transport_init(const struct config *c);

/*
 * POSTs body, retrying 429/502/503/504 and connection failures after an
 * exponential backoff with jitter (1 s doubling to 30 s) or the server's
 * Retry-After (seconds or an HTTP-date), while time remains before
 * deadline_ns (clock_now_ns clock). The backoff belongs to the exporter, not
 * to the batch: while it runs, no batch makes an attempt, and one whose
 * deadline comes first is dropped unsent (backed_off). A success ends it.
 * final (the process is ending): one attempt at most, none while backing
 * off, so a collector that is down costs an exiting process one refused
 * connection, not the exit bound.
 */
void transport_send(const void *body, size_t len, uint64_t deadline_ns, bool final, struct transport_outcome *out);

/* From any thread: abandon the transfer or back-off in progress within ~50 ms. */
void transport_abort(void);

/* In a forked child: forget the parent's connection without touching it
 * (ownfd_after_fork_child closes the child's copy) and start over. */
void transport_reset_after_fork(void);

#endif
