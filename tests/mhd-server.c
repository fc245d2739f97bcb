/* mhd-server: a small libmicrohttpd server for the HTTP hook tests and the wrk benchmark. */
/*
 * usage: mhd-server [--port N] [--mode per-connection|pool] [--pool-size N]
 *        mhd-server --dump-big          writes the /big body to stdout
 *        mhd-server --fnv FILE          prints "LENGTH FNV1A64HEX" of FILE
 *
 * Routes (any method unless noted):
 *   /ok       200 "ok"
 *   /missing  404 "missing"
 *   /fail     500 "fail"
 *   /big      200, 10 MiB generated body (Content-Length known)
 *   POST /upload   200 "LENGTH FNV1A64HEX\n" of the request body (any framing)
 *   anything else  404 "not found"
 *
 * Prints "listening on 127.0.0.1:PORT" (port 0 picks a free one) once it
 * accepts connections. SIGTERM or SIGINT stops the daemon and returns from
 * main, so atexit handlers (the agent's exit flush) run.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define BIG_SIZE ((uint64_t)10 * 1024 * 1024)
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

/* Byte i of /big: a cheap, position-dependent, non-periodic pattern. */
static inline uint8_t big_byte(uint64_t i)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ULL;
	x ^= x >> 29;
	return (uint8_t)(x >> 24);
}

static void big_fill(uint64_t pos, char *buf, size_t n)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = (char)big_byte(pos + k);
}

static uint64_t fnv_update(uint64_t h, const char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		h ^= (uint8_t)p[k];
		h *= FNV_PRIME;
	}
	return h;
}

static ssize_t big_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)cls;
	if (pos >= BIG_SIZE)
		return MHD_CONTENT_READER_END_OF_STREAM;
	uint64_t left = BIG_SIZE - pos;
	size_t n = max < left ? max : (size_t)left;
	big_fill(pos, buf, n);
	return (ssize_t)n;
}

struct upload {
	uint64_t len;
	uint64_t hash;
};

static enum MHD_Result answer_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)version;
	if (strcmp(url, "/upload") == 0 && strcmp(method, "POST") == 0) {
		struct upload *u = *con_cls;
		if (!u) {
			u = calloc(1, sizeof *u);
			if (!u)
				return MHD_NO;
			u->hash = FNV_OFFSET;
			*con_cls = u;
			return MHD_YES;
		}
		if (*upload_size) {
			u->hash = fnv_update(u->hash, upload_data, *upload_size);
			u->len += *upload_size;
			*upload_size = 0;
			return MHD_YES;
		}
		char text[64];
		snprintf(text, sizeof text, "%" PRIu64 " %016" PRIx64 "\n", u->len, u->hash);
		return answer_text(c, MHD_HTTP_OK, text);
	}
	/* Other requests: wait for the whole (ignored) body before answering. */
	if (*con_cls == NULL) {
		*con_cls = (void *)c; /* any non-NULL marker that needs no freeing */
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/ok") == 0)
		return answer_text(c, MHD_HTTP_OK, "ok");
	if (strcmp(url, "/missing") == 0)
		return answer_text(c, MHD_HTTP_NOT_FOUND, "missing");
	if (strcmp(url, "/fail") == 0)
		return answer_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "fail");
	if (strcmp(url, "/big") == 0) {
		struct MHD_Response *r = MHD_create_response_from_callback(BIG_SIZE, 64 * 1024, big_reader, NULL, NULL);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
		enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
		MHD_destroy_response(r);
		return ret;
	}
	return answer_text(c, MHD_HTTP_NOT_FOUND, "not found");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)toe;
	if (*con_cls && *con_cls != (void *)c)
		free(*con_cls);
	*con_cls = NULL;
}

static int dump_big(void)
{
	static char buf[1 << 16];
	for (uint64_t pos = 0; pos < BIG_SIZE; pos += sizeof buf) {
		size_t n = sizeof buf;
		if (BIG_SIZE - pos < n)
			n = (size_t)(BIG_SIZE - pos);
		big_fill(pos, buf, n);
		if (fwrite(buf, 1, n, stdout) != n)
			return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static int fnv_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	static char buf[1 << 16];
	uint64_t h = FNV_OFFSET, len = 0;
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		h = fnv_update(h, buf, n);
		len += n;
	}
	int err = ferror(f);
	fclose(f);
	if (err)
		return 1;
	printf("%" PRIu64 " %016" PRIx64 "\n", len, h);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: mhd-server [--port N] [--mode per-connection|pool] [--pool-size N]\n"
			"       mhd-server --dump-big | --fnv FILE\n");
}

int main(int argc, char **argv)
{
	unsigned port = 0, pool_size = 4;
	int pool = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--dump-big") == 0)
			return dump_big();
		if (strcmp(a, "--fnv") == 0 && i + 1 < argc)
			return fnv_file(argv[i + 1]);
		if (strcmp(a, "--port") == 0 && i + 1 < argc) {
			port = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(a, "--mode") == 0 && i + 1 < argc) {
			const char *m = argv[++i];
			if (strcmp(m, "pool") == 0)
				pool = 1;
			else if (strcmp(m, "per-connection") == 0)
				pool = 0;
			else {
				usage();
				return 2;
			}
		} else if (strcmp(a, "--pool-size") == 0 && i + 1 < argc) {
			pool_size = (unsigned)strtoul(argv[++i], NULL, 10);
			if (pool_size == 0)
				pool_size = 1;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage();
			return 0;
		} else {
			usage();
			return 2;
		}
	}
	if (port > 65535) {
		usage();
		return 2;
	}

	/* Block the stop signals before any thread exists: every MHD thread
	 * inherits the mask, and main collects them with sigwaitinfo. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in sin;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	struct MHD_Daemon *d;
	if (pool) {
		d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port,
				     NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
				     MHD_OPTION_THREAD_POOL_SIZE, pool_size, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
				     NULL, MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
				     MHD_OPTION_END);
	} else {
		d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
					     MHD_USE_ERROR_LOG,
				     (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
				     (struct sockaddr *)&sin, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				     MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
				     MHD_OPTION_END);
	}
	if (!d) {
		fprintf(stderr, "mhd-server: cannot start the daemon on 127.0.0.1:%u\n", port);
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening on 127.0.0.1:%u\n", info ? (unsigned)info->port : port);
	fflush(stdout);

	for (;;) {
		int sig = sigwaitinfo(&sigs, NULL);
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig < 0 && errno != EINTR)
			break;
	}
	MHD_stop_daemon(d);
	return 0;
}
