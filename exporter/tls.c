/* OpenSSL through dlopen (only https endpoints load it), a client context built once, sessions over memory BIOs. */
#include "tls.h"

#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* The entry points we use, typed from OpenSSL's own prototypes. */
static struct {
	__typeof__(OPENSSL_init_crypto) *init_crypto;
	__typeof__(OPENSSL_init_ssl) *init_ssl;
	__typeof__(TLS_client_method) *client_method;
	__typeof__(SSL_CTX_new) *ctx_new;
	__typeof__(SSL_CTX_set_verify) *ctx_set_verify;
	__typeof__(SSL_CTX_set_default_verify_paths) *ctx_default_paths;
	__typeof__(SSL_CTX_load_verify_locations) *ctx_load_verify;
	__typeof__(SSL_CTX_use_certificate_chain_file) *ctx_use_chain;
	__typeof__(SSL_CTX_use_PrivateKey_file) *ctx_use_key;
	__typeof__(SSL_CTX_ctrl) *ctx_ctrl;
	__typeof__(SSL_new) *ssl_new;
	__typeof__(SSL_free) *ssl_free;
	__typeof__(SSL_set_bio) *set_bio;
	__typeof__(SSL_set_connect_state) *set_connect_state;
	__typeof__(SSL_do_handshake) *do_handshake;
	__typeof__(SSL_read) *read;
	__typeof__(SSL_write) *write;
	__typeof__(SSL_get_error) *get_error;
	__typeof__(SSL_ctrl) *ssl_ctrl;
	__typeof__(SSL_set1_host) *set1_host;
	__typeof__(SSL_get0_param) *get0_param;
	__typeof__(SSL_get_verify_result) *get_verify_result;
	__typeof__(X509_VERIFY_PARAM_set1_ip_asc) *param_set1_ip_asc;
	__typeof__(X509_verify_cert_error_string) *verify_error_string;
	__typeof__(BIO_new) *bio_new;
	__typeof__(BIO_s_mem) *bio_s_mem;
	__typeof__(BIO_read) *bio_read;
	__typeof__(BIO_write) *bio_write;
	__typeof__(BIO_ctrl_pending) *bio_pending;
	__typeof__(ERR_get_error) *err_get;
	__typeof__(ERR_error_string_n) *err_string;
	__typeof__(ERR_clear_error) *err_clear;
} ossl;

struct tls {
	SSL *ssl;
	BIO *in, *out;   /* owned by ssl */
};

static SSL_CTX *ctx;
static bool tried, ready;

static bool load(char *err, size_t errlen)
{
	static const char *const pairs[][2] = { { "libcrypto.so.3", "libssl.so.3" },
						 { "libcrypto.so.1.1", "libssl.so.1.1" } };
	void *crypto = NULL, *ssl = NULL;

	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0] && !ssl; i++) {
		crypto = dlopen(pairs[i][0], RTLD_NOW | RTLD_LOCAL);
		if (!crypto)
			continue;
		/*
		 * OpenSSL registers an atexit cleanup when first initialised. If
		 * that first initialisation were ours, the cleanup could run in an
		 * exiting app thread while this thread still uses OpenSSL, and crash
		 * the process: initialise it without that handler. (If the app
		 * initialised OpenSSL already, this changes nothing.)
		 */
		__typeof__(OPENSSL_init_crypto) *init = (__typeof__(OPENSSL_init_crypto) *)dlsym(crypto, "OPENSSL_init_crypto");
		if (init)
			init(OPENSSL_INIT_NO_ATEXIT, NULL);
		ssl = dlopen(pairs[i][1], RTLD_NOW | RTLD_LOCAL);
	}
	if (!ssl) {
		snprintf(err, errlen, "OpenSSL (libssl.so.3) could not be loaded");
		return false;
	}
	bool ok = true;
#define SYM(field, name)                                          \
	do {                                                      \
		ossl.field = (__typeof__(ossl.field))dlsym(ssl, name); \
		if (!ossl.field)                                  \
			ok = false;                               \
	} while (0)
	SYM(init_crypto, "OPENSSL_init_crypto");
	SYM(init_ssl, "OPENSSL_init_ssl");
	SYM(client_method, "TLS_client_method");
	SYM(ctx_new, "SSL_CTX_new");
	SYM(ctx_set_verify, "SSL_CTX_set_verify");
	SYM(ctx_default_paths, "SSL_CTX_set_default_verify_paths");
	SYM(ctx_load_verify, "SSL_CTX_load_verify_locations");
	SYM(ctx_use_chain, "SSL_CTX_use_certificate_chain_file");
	SYM(ctx_use_key, "SSL_CTX_use_PrivateKey_file");
	SYM(ctx_ctrl, "SSL_CTX_ctrl");
	SYM(ssl_new, "SSL_new");
	SYM(ssl_free, "SSL_free");
	SYM(set_bio, "SSL_set_bio");
	SYM(set_connect_state, "SSL_set_connect_state");
	SYM(do_handshake, "SSL_do_handshake");
	SYM(read, "SSL_read");
	SYM(write, "SSL_write");
	SYM(get_error, "SSL_get_error");
	SYM(ssl_ctrl, "SSL_ctrl");
	SYM(set1_host, "SSL_set1_host");
	SYM(get0_param, "SSL_get0_param");
	SYM(get_verify_result, "SSL_get_verify_result");
	SYM(param_set1_ip_asc, "X509_VERIFY_PARAM_set1_ip_asc");
	SYM(verify_error_string, "X509_verify_cert_error_string");
	SYM(bio_new, "BIO_new");
	SYM(bio_s_mem, "BIO_s_mem");
	SYM(bio_read, "BIO_read");
	SYM(bio_write, "BIO_write");
	SYM(bio_pending, "BIO_ctrl_pending");
	SYM(err_get, "ERR_get_error");
	SYM(err_string, "ERR_error_string_n");
	SYM(err_clear, "ERR_clear_error");
#undef SYM
	if (!ok) {
		snprintf(err, errlen, "OpenSSL is too old (1.1.1 or later is needed)");
		return false;
	}
	ossl.init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
	return true;
}

/* OpenSSL's first queued error as text (the queue is cleared). */
static void last_error(const char *what, char *err, size_t errlen)
{
	unsigned long e = ossl.err_get();
	char text[256] = "";
	if (e)
		ossl.err_string(e, text, sizeof text);
	ossl.err_clear();
	snprintf(err, errlen, "%s%s%s", what, text[0] ? ": " : "", text);
}

bool tls_setup(const struct config *c, char *err, size_t errlen)
{
	if (tried) {
		if (!ready)
			snprintf(err, errlen, "TLS could not be set up (see the first warning)");
		return ready;
	}
	tried = true;
	if (!load(err, errlen))
		return false;
	ctx = ossl.ctx_new(ossl.client_method());
	if (!ctx) {
		last_error("SSL_CTX_new failed", err, errlen);
		return false;
	}
	ossl.ctx_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ossl.ctx_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
	/* OTEL_EXPORTER_OTLP_CERTIFICATE replaces the system's trust store, as
	 * curl's CAINFO did before. */
	int ok = c->certificate[0] ? ossl.ctx_load_verify(ctx, c->certificate, NULL) : ossl.ctx_default_paths(ctx);
	if (ok != 1) {
		last_error(c->certificate[0] ? "the CA file (OTEL_EXPORTER_OTLP_CERTIFICATE) could not be read"
					     : "the system's CA store could not be read", err, errlen);
		return false;
	}
	if (c->client_certificate[0] &&
	    ossl.ctx_use_chain(ctx, c->client_certificate) != 1) {
		last_error("the client certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE) could not be read", err, errlen);
		return false;
	}
	if (c->client_key[0] && ossl.ctx_use_key(ctx, c->client_key, SSL_FILETYPE_PEM) != 1) {
		last_error("the client key (OTEL_EXPORTER_OTLP_CLIENT_KEY) could not be read", err, errlen);
		return false;
	}
	ready = true;
	return true;
}

struct tls *tls_open(const char *host, bool ip, char *err, size_t errlen)
{
	struct tls *t = calloc(1, sizeof *t);
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->ssl = ossl.ssl_new(ctx);
	t->in = ossl.bio_new(ossl.bio_s_mem());
	t->out = ossl.bio_new(ossl.bio_s_mem());
	if (!t->ssl || !t->in || !t->out) {
		last_error("a TLS session could not be created", err, errlen);
		if (t->ssl)
			ossl.ssl_free(t->ssl);
		free(t);   /* BIOs not yet given to ssl are leaked: out of memory anyway */
		return NULL;
	}
	ossl.set_bio(t->ssl, t->in, t->out);
	ossl.set_connect_state(t->ssl);
	bool named;
	if (ip) {
		named = ossl.param_set1_ip_asc(ossl.get0_param(t->ssl), host) == 1;
	} else {
		/* SNI (SSL_set_tlsext_host_name is a macro over SSL_ctrl) and the
		 * name the certificate must carry. */
		named = ossl.ssl_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)host) == 1 &&
			ossl.set1_host(t->ssl, host) == 1;
	}
	if (!named) {
		last_error("the endpoint's host could not be set for certificate checks", err, errlen);
		tls_free(t);
		return NULL;
	}
	return t;
}

void tls_free(struct tls *t)
{
	if (!t)
		return;
	ossl.ssl_free(t->ssl);
	free(t);
}

enum tls_step tls_handshake(struct tls *t, bool *verify_failed, char *err, size_t errlen)
{
	*verify_failed = false;
	int r = ossl.do_handshake(t->ssl);
	if (r == 1)
		return TLS_DONE;
	int e = ossl.get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return TLS_WANT_READ;
	long v = ossl.get_verify_result(t->ssl);
	if (v != X509_V_OK) {
		*verify_failed = true;
		ossl.err_clear();
		snprintf(err, errlen, "TLS certificate check failed: %s", ossl.verify_error_string(v));
	} else {
		last_error("TLS handshake failed", err, errlen);
	}
	return TLS_FAILED;
}

size_t tls_take_out(struct tls *t, char *buf, size_t cap)
{
	size_t pending = ossl.bio_pending(t->out);
	if (!pending)
		return 0;
	int n = ossl.bio_read(t->out, buf, (int)(cap < pending ? cap : pending));
	return n > 0 ? (size_t)n : 0;
}

bool tls_put_in(struct tls *t, const char *p, size_t n)
{
	return ossl.bio_write(t->in, p, (int)n) == (int)n;
}

bool tls_write(struct tls *t, const void *p, size_t n)
{
	/* A memory BIO takes everything: one call writes it all. */
	while (n) {
		int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
		int w = ossl.write(t->ssl, p, chunk);
		if (w <= 0) {
			ossl.err_clear();
			return false;
		}
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return true;
}

ssize_t tls_read(struct tls *t, char *buf, size_t cap, char *err, size_t errlen)
{
	int r = ossl.read(t->ssl, buf, (int)(cap > (1u << 30) ? 1u << 30 : cap));
	if (r > 0)
		return r;
	int e = ossl.get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0;
	if (e == SSL_ERROR_ZERO_RETURN)
		snprintf(err, errlen, "the collector closed the TLS session");
	else
		last_error("TLS read failed", err, errlen);
	return -1;
}
