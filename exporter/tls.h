/* TLS for the OTLP transport: OpenSSL opened with dlopen only for https endpoints, driven through memory BIOs. */
#ifndef TRACEAGENT_TLS_H
#define TRACEAGENT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "agent/config.h"

/*
 * OpenSSL never touches a socket here: records go in and out through memory
 * buffers, and the transport moves them over the descriptor it owns
 * (agent/ownfd.h), so every syscall on that descriptor stays one of ours.
 */
struct tls;

/* Loads libssl (once) and builds the client context from the configuration:
 * CA file or the system's store, client certificate and key, TLS 1.2 or
 * later. False with a reason in err when https cannot work. */
bool tls_setup(const struct config *c, char *err, size_t errlen);

/* A client session for host (NUL-terminated; checked against the server's
 * certificate as an IP address when ip, else as a DNS name, sent as SNI). */
struct tls *tls_open(const char *host, bool ip, char *err, size_t errlen);
void tls_free(struct tls *t);

enum tls_step {
	TLS_DONE = 0,      /* handshake finished */
	TLS_WANT_READ,     /* send what tls_take_out gives, then feed what the peer sends */
	TLS_FAILED,        /* err says why; verify_failed tells a certificate problem from the rest */
};

enum tls_step tls_handshake(struct tls *t, bool *verify_failed, char *err, size_t errlen);

/* Encrypted bytes waiting to be sent: copies up to cap of them into buf. */
size_t tls_take_out(struct tls *t, char *buf, size_t cap);
/* Bytes received from the peer. */
bool tls_put_in(struct tls *t, const char *p, size_t n);
/* Encrypts n bytes of plaintext (then send what tls_take_out gives). */
bool tls_write(struct tls *t, const void *p, size_t n);
/* Decrypted bytes: > 0 bytes, 0 when more input is needed, -1 when the peer
 * closed the session or it failed (err says why). */
ssize_t tls_read(struct tls *t, char *buf, size_t cap, char *err, size_t errlen);

#endif
