/* HTTP/1.x exchanges on one connection, as pure code: detection, request and response streams in either role, spans and their attributes, propagation in and out, pipelining. */
#ifndef TRACEAGENT_EXCHANGE_H
#define TRACEAGENT_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "config.h"
#include "http.h"
#include "propagation.h"
#include "span.h"

/*
 * A connection the agent follows is one struct exchange, fed the bytes the
 * app reads and writes, in order, by the socket hooks (which own the fds and
 * the locking, and do all the I/O). The same machine serves both roles: a
 * server reads requests and writes responses, a client writes requests and
 * reads responses; what differs (where the span's parent comes from, its
 * kind and attributes, the thread's current context, injection) is decided
 * in one place by the role. Requests wait in a FIFO for their responses, so
 * pipelined exchanges each get theirs.
 *
 * Nothing here does I/O: a client's sends go through a function the caller
 * passes, which makes the one system call. Every function leaves errno as
 * it found it.
 */

/* Requests followed while they wait for their responses; deeper pipelines
 * are framed but get no span (counted as dropped). */
#define EXCHANGE_PIPELINE_MAX 64
/* The largest injection: traceparent, tracestate and baggage header lines. */
#define EXCHANGE_INJECT_MAX (TRACEPARENT_LEN + TRACESTATE_MAX + BAGGAGE_MAX + 64)
/* iovec entries the caller may pass to exchange_send: the app's, one split
 * of one of them and the injection fit in EXCHANGE_IOV_MAX. */
#define EXCHANGE_IOV_MAX 64
#define EXCHANGE_APP_IOV_MAX (EXCHANGE_IOV_MAX - 3)

enum exchange_role {
	EXCHANGE_SERVER = 0,  /* accepted: requests in, responses out */
	EXCHANGE_CLIENT,      /* connected: requests out, responses in */
};

/* Where a connection is, as the hooks need to know it. */
enum exchange_phase {
	EXCHANGE_PENDING = 0, /* the first bytes decide */
	EXCHANGE_HTTP,        /* followed */
	EXCHANGE_IGNORED,     /* not HTTP/1.x, or given up: pass through */
};

/* One end of a connection, formatted the first time a span needs it. */
struct exchange_endpoint {
	uint8_t family;       /* AF_INET, AF_INET6; 0: unknown */
	uint8_t text_len;     /* 0 until formatted */
	uint16_t port;
	uint8_t addr[16];
	char text[46];        /* INET6_ADDRSTRLEN */
};

/* A request waiting for its response. */
struct exchange_pending {
	struct span *sp;      /* NULL when unsampled */
	/* enough of its context to make it current later (a server answering
	 * the requests before it in a pipeline) */
	uint8_t trace_id[16], span_id[8];
	uint8_t flags;
	bool head : 1;        /* HEAD: the response has no body */
	bool connect : 1;     /* CONNECT: a 2xx turns the stream into a tunnel */
	bool skip_blind : 1;  /* one of the skip_after requests is a HEAD or CONNECT */
	/* Requests pipelined right after this one while the FIFO was full:
	 * no entry and no span, but their responses (which come before the next
	 * entry's) are framed, so every later response still finds its request. */
	uint32_t skip_after;
};

/* The longest Host header kept with a connection's attribute block. */
#define EXCHANGE_BLOCK_HOST_MAX 96

struct exchange {
	uint8_t role;         /* enum exchange_role */
	uint8_t phase;        /* enum exchange_phase */
	uint8_t detect_len;
	char detect[8];       /* first bytes while PENDING */
	uint32_t gen;         /* bumped by each exchange_open: names this connection to the thread binding */
	bool connecting;      /* client: connect() not finished, a failure still to be seen */
	uint64_t connect_ns;
	struct exchange_endpoint local, peer;
	/* Attributes every span of the connection has (client.address and
	 * client.port and url.scheme for a server, network.peer.* for a client):
	 * built with its first recorded span, then copied as a block. */
	uint8_t block_state;  /* 0: not built; 1: built; 2: could not be built (setters per span) */
	/* The block also holds server.address and server.port as the Host
	 * header below gave them (a connection's requests nearly always name
	 * one host); a request naming another gets them one by one. */
	bool block_host_ok;   /* that Host header was valid (else the socket's address is in the block) */
	uint8_t block_host_len;
	char block_host[EXCHANGE_BLOCK_HOST_MAX];
	struct span_attr_block block;

	/* the request stream */
	bool req_started, req_in_body, req_timed;
	uint64_t req_start_ns;
	uint64_t req_pos;        /* request-stream bytes fed to the parser */
	uint64_t head_start_pos; /* where the current request head began */
	struct http_request req;
	struct http_body req_body;

	/* the response stream */
	bool resp_started, resp_in_body;
	/* untracked requests (pending.skip_after) answered before fifo[first];
	 * blind: their responses can't be framed */
	bool skip_head_blind;
	uint32_t skip_head;
	struct http_response resp;
	struct http_body resp_body;

	struct exchange_pending fifo[EXCHANGE_PIPELINE_MAX];
	unsigned fifo_first, fifo_len;

	/* client: the request stream as sent, and the header lines going in */
	uint64_t sent_pos;       /* the app's bytes the kernel has taken */
	uint64_t inject_pos;     /* stream offset of the injection; UINT64_MAX when none */
	uint16_t inject_len, inject_sent;
	bool inject_replaces;    /* overwrites inject_len of the app's bytes at inject_pos */
	char inject[EXCHANGE_INJECT_MAX];
};

/* Captured header names, routes and propagators, from the configuration
 * (once at init; tests may call it again between cases). False when a route
 * template is invalid (the valid ones are used). */
bool exchange_configure(const struct config *c);

/* A connection begins (accept, connect): everything about the last one on
 * this struct is forgotten but its generation. Addresses may be NULL. */
void exchange_open(struct exchange *x, enum exchange_role role, const struct sockaddr *local, socklen_t llen,
		   const struct sockaddr *peer, socklen_t plen);

/* Bytes the app read from the connection (n > 0). */
void exchange_received(struct exchange *x, const char *p, size_t n);
void exchange_received_iov(struct exchange *x, const struct iovec *iov, int cnt, size_t n);

/* Bytes a server's app wrote, after the kernel took n of them (p NULL: bytes
 * it can't see, sendfile, which only count against a length). */
void exchange_written(struct exchange *x, const char *p, size_t n);
void exchange_written_iov(struct exchange *x, const struct iovec *iov, int cnt, size_t n);

/*
 * A client's app sends iov (cnt <= EXCHANGE_APP_IOV_MAX entries): the
 * request bytes are parsed first, then sent through send, with the
 * propagation headers spliced in where they go. send(arg, v, k, app_only)
 * makes one system call: with app_only, v is the app's own iov, to be sent
 * as the app's call would have; else v is to go out as given (sendmsg).
 * Returns what the app's call returns: its own bytes only (a replaced
 * traceparent stands byte for byte for the app's), or -1 with send's errno.
 * Injected bytes the kernel didn't take go first on the next call (the app
 * resends its unsent tail, which starts exactly at the injection point).
 * A connection still PENDING is decided by these bytes; one that is not a
 * followed client passes through (app_only).
 */
typedef ssize_t (*exchange_send_fn)(void *arg, const struct iovec *v, int k, bool app_only);
ssize_t exchange_send(struct exchange *x, const struct iovec *iov, int cnt, exchange_send_fn send, void *arg);

/* A server stops writing (shutdown): a response delimited by close is complete. */
void exchange_write_closed(struct exchange *x);

/* The connection is over (close, or its fd reused): a response delimited by
 * close is complete, and spans still waiting are ended. */
void exchange_close(struct exchange *x);

/* The outcome of a client's connect (0, or the error once known). A refused
 * or unreachable peer never sees a request: inside a trace, the failure gets
 * a CLIENT span "connect" (error.type err_name, or "_OTHER"). */
void exchange_connect_done(struct exchange *x, int err, const char *err_name);

/* In a forked child, for each exchange: one in the middle of something at
 * the fork (the parent's spans, to end and export) is not followed any
 * more, so the child closing its copy neither ends nor duplicates them; an
 * idle one stays followed (a child handling an accepted connection, a pooled
 * keep-alive client). Returns whether it is still followed. */
bool exchange_after_fork(struct exchange *x);
/* In a forked child: the request context bound to the forking thread stays
 * current, detached from its connection. */
void exchange_after_fork_child(void);

#endif
