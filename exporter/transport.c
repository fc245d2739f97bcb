/* libcurl/zlib through dlopen (never linked: a preloaded libcurl costs every process ~6 ms), POST and retry loop. */
#include "transport.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "agent/ids.h"
#include "agent/log.h"
#include "agent/resource.h"
#include "agent/span.h"
#include "exporter/buf.h"
#include "exporter/otlp_proto.h"

/* The libcurl entry points we use, typed from curl.h's own prototypes. */
static struct {
	__typeof__(curl_global_init) *global_init;
	__typeof__(curl_easy_init) *easy_init;
	__typeof__(curl_easy_setopt) *easy_setopt;
	__typeof__(curl_easy_getinfo) *easy_getinfo;
	__typeof__(curl_easy_strerror) *easy_strerror;
	__typeof__(curl_slist_append) *slist_append;
	__typeof__(curl_multi_init) *multi_init;
	__typeof__(curl_multi_add_handle) *multi_add;
	__typeof__(curl_multi_remove_handle) *multi_remove;
	__typeof__(curl_multi_perform) *multi_perform;
	__typeof__(curl_multi_poll) *multi_poll;
	__typeof__(curl_multi_wakeup) *multi_wakeup;
	__typeof__(curl_multi_info_read) *multi_info_read;
} cu;

static struct {
	__typeof__(deflateInit2_) *init2;
	__typeof__(deflate) *deflate;
	__typeof__(deflateEnd) *end;
	__typeof__(deflateBound) *bound;
	__typeof__(deflateReset) *reset;
} zl;

static const struct config *cfg;
static CURL *easy;
static CURLM *multi;
static struct curl_slist *headers;
static struct buf response, gz;
static _Atomic(CURLM *) wake_target;
static _Atomic int abort_requested;
static bool loaded;

static void *sym(void *h, const char *name, bool *ok)
{
	void *p = dlsym(h, name);
	if (!p)
		*ok = false;
	return p;
}

static bool load_curl(void)
{
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen("libcurl-gnutls.so.4", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_warn("libcurl (libcurl.so.4) could not be loaded, spans will not be exported: %s", dlerror());
		return false;
	}
	bool ok = true;
	cu.global_init = sym(h, "curl_global_init", &ok);
	cu.easy_init = sym(h, "curl_easy_init", &ok);
	cu.easy_setopt = sym(h, "curl_easy_setopt", &ok);
	cu.easy_getinfo = sym(h, "curl_easy_getinfo", &ok);
	cu.easy_strerror = sym(h, "curl_easy_strerror", &ok);
	cu.slist_append = sym(h, "curl_slist_append", &ok);
	cu.multi_init = sym(h, "curl_multi_init", &ok);
	cu.multi_add = sym(h, "curl_multi_add_handle", &ok);
	cu.multi_remove = sym(h, "curl_multi_remove_handle", &ok);
	cu.multi_perform = sym(h, "curl_multi_perform", &ok);
	cu.multi_poll = sym(h, "curl_multi_poll", &ok);
	cu.multi_wakeup = sym(h, "curl_multi_wakeup", &ok);
	cu.multi_info_read = sym(h, "curl_multi_info_read", &ok);
	if (!ok) {
		log_warn("libcurl is too old (curl_multi_poll/wakeup need 7.68), spans will not be exported");
		return false;
	}
	return true;
}

static bool load_zlib(void)
{
	void *h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
	bool ok = h != NULL;
	if (ok) {
		zl.init2 = sym(h, "deflateInit2_", &ok);
		zl.deflate = sym(h, "deflate", &ok);
		zl.end = sym(h, "deflateEnd", &ok);
		zl.bound = sym(h, "deflateBound", &ok);
		zl.reset = sym(h, "deflateReset", &ok);
	}
	if (!ok)
		log_warn("zlib (libz.so.1) could not be loaded; OTEL_EXPORTER_OTLP_COMPRESSION=gzip ignored");
	return ok;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct buf *b = ud;
	/* Responses are small; cap what we keep so a misbehaving server can't grow us. */
	if (b->len + size * n <= (1u << 20))
		buf_append(b, p, size * n);
	return size * n;
}

static bool add_header(const char *line)
{
	struct curl_slist *h = cu.slist_append(headers, line);
	if (!h)
		return false;
	headers = h;
	return true;
}

static bool setup_handles(void)
{
	char line[CONFIG_KV_BUF + 8];

	easy = cu.easy_init();
	multi = cu.multi_init();
	if (!easy || !multi)
		return false;
	headers = NULL;
	add_header(cfg->protocol == OTLP_HTTP_JSON ? "Content-Type: application/json"
						   : "Content-Type: application/x-protobuf");
	if (cfg->compression == COMPRESSION_GZIP && zl.init2)
		add_header("Content-Encoding: gzip");
	add_header("Expect:");   /* no 100-continue round trip on large batches */
	for (size_t i = 0; i < cfg->headers.count; i++) {
		snprintf(line, sizeof line, "%s: %s", cfg->headers.key[i], cfg->headers.value[i]);
		add_header(line);
	}
	cu.easy_setopt(easy, CURLOPT_URL, cfg->endpoint);
	cu.easy_setopt(easy, CURLOPT_POST, 1L);
	cu.easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	cu.easy_setopt(easy, CURLOPT_USERAGENT, "OTel-OTLP-Exporter-C/" AGENT_VERSION " " AGENT_NAME "/" AGENT_VERSION);
	/* Signals belong to the app: curl must never install a SIGALRM/SIGPIPE handler. */
	cu.easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	cu.easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	cu.easy_setopt(easy, CURLOPT_WRITEDATA, &response);
	cu.easy_setopt(easy, CURLOPT_PROXY, "");  /* never route telemetry through the app's http_proxy */
	if (cfg->certificate[0])
		cu.easy_setopt(easy, CURLOPT_CAINFO, cfg->certificate);
	if (cfg->client_certificate[0])
		cu.easy_setopt(easy, CURLOPT_SSLCERT, cfg->client_certificate);
	if (cfg->client_key[0])
		cu.easy_setopt(easy, CURLOPT_SSLKEY, cfg->client_key);
	atomic_store(&wake_target, multi);
	return true;
}

/*
 * OpenSSL 1.1+/3 registers an atexit cleanup when it is first initialised.
 * If that first initialisation is ours (curl_global_init on this thread), the
 * cleanup can run in an exiting app thread while this thread is still inside
 * OpenSSL's init, and crash the process. So initialise it first, without that
 * handler; if the app initialised OpenSSL already, its handler predates ours
 * and our exit flush runs before it (see exporter.c start_thread).
 */
static void openssl_no_atexit(void)
{
	static const char *const names[] = { "libcrypto.so.3", "libcrypto.so.1.1" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
		if (!h)
			continue;
		int (*init)(uint64_t, const void *) = (int (*)(uint64_t, const void *))dlsym(h, "OPENSSL_init_crypto");
		if (init)
			init(0x00080000u /* OPENSSL_INIT_NO_ATEXIT */, NULL);
		return;
	}
}

bool transport_init(const struct config *c)
{
	cfg = c;
	if (loaded)
		return true;
	if (!load_curl())
		return false;
	openssl_no_atexit();
	if (c->compression == COMPRESSION_GZIP)
		load_zlib();
	if (cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_warn("curl_global_init failed, spans will not be exported");
		return false;
	}
	if (!setup_handles()) {
		log_warn("could not create libcurl handles, spans will not be exported");
		return false;
	}
	loaded = true;
	return true;
}

/* One deflate stream for the life of the thread: building a new one per batch
 * means allocating and zeroing ~300 KB each time, which dominated export cost. */
static z_stream zs;
static bool zs_ready;

static bool gzip_body(const void *body, size_t len)
{
	if (!zs_ready) {
		memset(&zs, 0, sizeof zs);
		/* 15 + 16: a gzip wrapper rather than raw zlib, as Content-Encoding: gzip says. */
		if (zl.init2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
			     ZLIB_VERSION, (int)sizeof zs) != Z_OK)
			return false;
		zs_ready = true;
	} else if (zl.reset(&zs) != Z_OK) {
		return false;
	}
	buf_reset(&gz);
	if (!buf_reserve(&gz, zl.bound(&zs, len) + 32))
		return false;
	zs.next_in = (Bytef *)body;
	zs.avail_in = (uInt)len;
	zs.next_out = (Bytef *)gz.p;
	zs.avail_out = (uInt)gz.cap;
	int rc = zl.deflate(&zs, Z_FINISH);
	gz.len = zs.total_out;
	return rc == Z_STREAM_END;
}

static int64_t parse_partial_success(void)
{
	if (!response.len)
		return 0;
	if (cfg->protocol == OTLP_HTTP_JSON) {
		const char *p = memmem(response.p, response.len, "rejectedSpans", 13);
		if (!p)
			return 0;
		p += 13;
		const char *end = response.p + response.len;
		while (p < end && (*p < '0' || *p > '9'))
			p++;
		int64_t v = 0;
		while (p < end && *p >= '0' && *p <= '9')
			v = v * 10 + (*p++ - '0');
		return v;
	}
	struct otlp_partial_success ps;
	if (!otlp_proto_parse_response(response.p, response.len, &ps))
		return 0;
	int64_t rejected = ps.rejected_spans;
	if (rejected || ps.error_message_len)
		log_warn("collector partially rejected a batch: %lld spans rejected: %.*s", (long long)rejected,
			 (int)(ps.error_message_len < 200 ? ps.error_message_len : 200),
			 ps.error_message ? ps.error_message : "");
	return rejected;
}

/* One attempt. Returns the curl code; *status gets the HTTP status. */
static CURLcode attempt(const void *body, size_t len, uint64_t deadline_ns, long *status, long *retry_after_s)
{
	uint64_t now = span_now_ns();
	long timeout_ms = (long)((deadline_ns - now) / 1000000);
	if (timeout_ms > (long)cfg->timeout_ms)
		timeout_ms = (long)cfg->timeout_ms;
	if (timeout_ms < 1)
		timeout_ms = 1;

	buf_reset(&response);
	cu.easy_setopt(easy, CURLOPT_POSTFIELDS, body);
	cu.easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	cu.easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	cu.multi_add(multi, easy);

	CURLcode rc = CURLE_OPERATION_TIMEDOUT;
	int running = 1;
	while (running) {
		if (atomic_load(&abort_requested)) {
			rc = CURLE_ABORTED_BY_CALLBACK;
			break;
		}
		if (cu.multi_perform(multi, &running) != CURLM_OK) {
			rc = CURLE_FAILED_INIT;
			break;
		}
		if (!running)
			break;
		cu.multi_poll(multi, NULL, 0, 100, NULL);
	}
	int left;
	CURLMsg *m;
	while ((m = cu.multi_info_read(multi, &left)))
		if (m->msg == CURLMSG_DONE)
			rc = m->data.result;
	*status = 0;
	*retry_after_s = -1;
	cu.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, status);
	curl_off_t ra = -1;
	if (cu.easy_getinfo(easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra >= 0)
		*retry_after_s = (long)ra;
	cu.multi_remove(multi, easy);
	return rc;
}

static bool retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return true;
	default:
		return false;
	}
}

/* Waits ms or until aborted; a multi with no transfers still honours wakeup. */
static bool backoff_wait(uint64_t ms)
{
	uint64_t until = span_now_ns() + ms * 1000000;
	for (;;) {
		if (atomic_load(&abort_requested))
			return false;
		uint64_t now = span_now_ns();
		if (now >= until)
			return true;
		uint64_t left = (until - now) / 1000000 + 1;
		cu.multi_poll(multi, NULL, 0, (int)(left > 100 ? 100 : left), NULL);
	}
}

void transport_send(const void *body, size_t len, uint64_t deadline_ns, struct transport_outcome *out)
{
	memset(out, 0, sizeof *out);
	out->result = TRANSPORT_FAILED;
	if (!loaded)
		return;
	if (cfg->compression == COMPRESSION_GZIP && zl.init2) {
		if (!gzip_body(body, len)) {
			log_warn("gzip compression failed; batch dropped");
			return;
		}
		body = gz.p;
		len = gz.len;
	}

	uint64_t backoff_ms = 500;
	for (;;) {
		long status, retry_after;
		CURLcode rc = attempt(body, len, deadline_ns, &status, &retry_after);
		out->attempts++;
		out->http_status = status;
		if (rc == CURLE_ABORTED_BY_CALLBACK) {
			out->result = TRANSPORT_ABORTED;
			return;
		}
		bool retry;
		if (rc == CURLE_OK && status >= 200 && status < 300) {
			out->rejected_spans = parse_partial_success();
			out->result = TRANSPORT_OK;
			return;
		} else if (rc == CURLE_OK) {
			retry = status == 429 || status == 502 || status == 503 || status == 504;
			if (!retry) {
				log_warn("collector at %s answered HTTP %ld; batch dropped, not retried", cfg->endpoint, status);
				return;
			}
		} else {
			retry = retryable_curl(rc);
			if (!retry) {
				log_warn("export to %s failed: %s; batch dropped", cfg->endpoint, cu.easy_strerror(rc));
				return;
			}
		}
		/* Full jitter around the exponential step; Retry-After is a floor. */
		uint64_t wait = backoff_ms / 2 + ids_random_u64() % (backoff_ms / 2 + 1);
		if (retry_after >= 0)
			wait = (uint64_t)retry_after * 1000;
		backoff_ms = backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2;
		uint64_t now = span_now_ns();
		if (now + wait * 1000000 >= deadline_ns) {
			if (rc == CURLE_OK)
				log_warn("collector at %s answered HTTP %ld; no time left to retry, batch dropped",
					 cfg->endpoint, status);
			else
				log_warn("export to %s failed: %s; no time left to retry, batch dropped",
					 cfg->endpoint, cu.easy_strerror(rc));
			return;
		}
		log_debug("export attempt %d got %s%ld; retrying in %llu ms", out->attempts,
			  rc == CURLE_OK ? "HTTP " : "curl error ", rc == CURLE_OK ? status : (long)rc,
			  (unsigned long long)wait);
		if (!backoff_wait(wait)) {
			out->result = TRANSPORT_ABORTED;
			return;
		}
	}
}

void transport_abort(void)
{
	atomic_store(&abort_requested, 1);
	CURLM *m = atomic_load(&wake_target);
	if (m && cu.multi_wakeup)
		cu.multi_wakeup(m);
}

void transport_reset_after_fork(void)
{
	/* Leak, don't clean up: the handles' sockets and state are the parent's. */
	easy = NULL;
	multi = NULL;
	headers = NULL;
	atomic_store(&wake_target, NULL);
	atomic_store(&abort_requested, 0);
	loaded = false;
	memset(&response, 0, sizeof response);
	memset(&gz, 0, sizeof gz);
	zs_ready = false;   /* the parent's stream memory is ours to leak, not to reuse mid-use */
}
