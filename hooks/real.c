/* Resolves every real_* function once with dlsym(RTLD_NEXT): libc at first use, libpq and librdkafka at their first hook. */
#include "real.h"

#include <dlfcn.h>
#include <pthread.h>

struct real_fns real;
struct real_pq_fns real_pq;
struct real_rk_fns real_rk;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static pthread_once_t rk_once = PTHREAD_ONCE_INIT;

static void resolve(void)
{
	/* Plain stores, one per pointer: a racing reader sees NULL or the final value. */
#define R(field, name) real.field = dlsym(RTLD_NEXT, name)
	R(accept, "accept");
	R(accept4, "accept4");
	R(connect, "connect");
	R(recv, "recv");
	R(recvfrom, "recvfrom");
	R(recvmsg, "recvmsg");
	R(read, "read");
	R(readv, "readv");
	R(read_chk, "__read_chk");
	R(recv_chk, "__recv_chk");
	R(recvfrom_chk, "__recvfrom_chk");
	R(send, "send");
	R(sendto, "sendto");
	R(sendmsg, "sendmsg");
	R(write, "write");
	R(writev, "writev");
	R(sendfile, "sendfile");
	R(sendfile64, "sendfile64");
	R(close, "close");
	R(dup2, "dup2");
	R(dup3, "dup3");
	R(close_range, "close_range");
	R(closefrom, "closefrom");
	R(shutdown, "shutdown");
	R(getsockopt, "getsockopt");
	R(sigaction, "sigaction");
	R(sigaction_, "__sigaction");
	R(signal, "signal");
	R(bsd_signal, "bsd_signal");
	R(ssignal, "ssignal");
	R(sysv_signal, "sysv_signal");
	R(sysv_signal_, "__sysv_signal");
	R(sigset, "sigset");
	R(exit_, "_exit");
	R(Exit, "_Exit");
#undef R
}

void real_resolve(void)
{
	pthread_once(&once, resolve);
}

/*
 * RTLD_NEXT searches only the global scope after us. A libpq loaded as the
 * dependency of a dlopen()ed module (a Python extension such as psycopg2)
 * lives in that module's local scope: our hook still interposes (the global
 * scope is searched first), but RTLD_NEXT can't see the real function. The
 * already-loaded copy is reachable by name with RTLD_NOLOAD.
 */
static void *lib_sym(void **lib, const char *soname, const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p)
		return p;
	if (!*lib)
		*lib = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
	return *lib ? dlsym(*lib, name) : NULL;
}

static void *pq_sym(const char *name)
{
	static void *lib;
	return lib_sym(&lib, "libpq.so.5", name);
}

static void resolve_pq(void)
{
#define R(field, name) real_pq.field = pq_sym(name)
	R(exec, "PQexec");
	R(exec_params, "PQexecParams");
	R(prepare, "PQprepare");
	R(exec_prepared, "PQexecPrepared");
	R(describe_prepared, "PQdescribePrepared");
	R(describe_portal, "PQdescribePortal");
	R(send_query, "PQsendQuery");
	R(send_query_params, "PQsendQueryParams");
	R(send_prepare, "PQsendPrepare");
	R(send_query_prepared, "PQsendQueryPrepared");
	R(get_result, "PQgetResult");
	R(enter_pipeline_mode, "PQenterPipelineMode");
	R(pipeline_sync, "PQpipelineSync");
	R(connectdb, "PQconnectdb");
	R(connectdb_params, "PQconnectdbParams");
	R(connect_start, "PQconnectStart");
	R(connect_start_params, "PQconnectStartParams");
	R(finish, "PQfinish");
	R(db, "PQdb");
	R(host, "PQhost");
	R(port, "PQport");
	R(status, "PQstatus");
	R(error_message, "PQerrorMessage");
	R(result_status, "PQresultStatus");
	R(ntuples, "PQntuples");
	R(result_error_field, "PQresultErrorField");
	R(pipeline_status, "PQpipelineStatus");
#undef R
}

void real_pq_resolve(void)
{
	pthread_once(&pq_once, resolve_pq);
}

static void *rk_sym(const char *name)
{
	static void *lib;
	return lib_sym(&lib, "librdkafka.so.1", name);
}

/* With lib set, looks only there (see real_rk_resolve_from); else RTLD_NEXT. */
static void *rk_lib;

static void *rk_lookup(const char *name)
{
	if (!rk_lib)
		return rk_sym(name);
	void *p = dlsym(rk_lib, name);
	/* A handle whose search reaches the global scope finds our own hook
	 * first: never take that for the real function. */
	Dl_info mine, found;
	if (p && dladdr((void *)rk_lookup, &mine) && dladdr(p, &found) && found.dli_fbase == mine.dli_fbase)
		return NULL;
	return p;
}

static void resolve_rk(void)
{
#define R(field, name) if (!real_rk.field) real_rk.field = rk_lookup(name)
	R(new_, "rd_kafka_new");
	R(destroy, "rd_kafka_destroy");
	R(destroy_flags, "rd_kafka_destroy_flags");
	R(topic_new, "rd_kafka_topic_new");
	R(topic_destroy, "rd_kafka_topic_destroy");
	R(produce, "rd_kafka_produce");
	R(produceva, "rd_kafka_produceva");
	R(produce_batch, "rd_kafka_produce_batch");
	R(consumer_poll, "rd_kafka_consumer_poll");
	R(consume, "rd_kafka_consume");
	R(consume_queue, "rd_kafka_consume_queue");
	R(consume_batch, "rd_kafka_consume_batch");
	R(consume_batch_queue, "rd_kafka_consume_batch_queue");
	R(consume_callback, "rd_kafka_consume_callback");
	R(consume_callback_queue, "rd_kafka_consume_callback_queue");
	R(message_destroy, "rd_kafka_message_destroy");
	R(commit, "rd_kafka_commit");
	R(commit_message, "rd_kafka_commit_message");
	R(commit_queue, "rd_kafka_commit_queue");
	R(consumer_close, "rd_kafka_consumer_close");
	R(conf_get, "rd_kafka_conf_get");
	R(conf_set_dr_msg_cb, "rd_kafka_conf_set_dr_msg_cb");
	R(topic_name, "rd_kafka_topic_name");
	R(err2name, "rd_kafka_err2name");
	R(err2str, "rd_kafka_err2str");
	R(error_code, "rd_kafka_error_code");
	R(error_destroy, "rd_kafka_error_destroy");
	R(headers_new, "rd_kafka_headers_new");
	R(headers_destroy, "rd_kafka_headers_destroy");
	R(header_add, "rd_kafka_header_add");
	R(header_remove, "rd_kafka_header_remove");
	R(header_get_last, "rd_kafka_header_get_last");
	R(header_get, "rd_kafka_header_get");
	R(message_headers, "rd_kafka_message_headers");
	R(last_error, "rd_kafka_last_error");
#undef R
}

void real_rk_resolve(void)
{
	pthread_once(&rk_once, resolve_rk);
}

/*
 * A program can load a renamed copy of librdkafka (Python wheels ship
 * "librdkafka-<hash>.so.1") that RTLD_NEXT does not see from us and that no
 * soname we know finds. The caller of a hook is then the module that links
 * it: a lookup through that module's own handle searches its dependencies,
 * which hold the real functions.
 */
void real_rk_resolve_from(const void *caller)
{
	static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	real_rk_resolve();
	if (real_rk.new_ && real_rk.produceva && real_rk.message_destroy)
		return;
	Dl_info info;
	if (!caller || !dladdr(caller, &info) || !info.dli_fname)
		return;
	pthread_mutex_lock(&mu);
	void *lib = info.dli_fname[0] ? dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD) : NULL;
	if (lib) {
		rk_lib = lib;
		resolve_rk();
		rk_lib = NULL;
	}
	pthread_mutex_unlock(&mu);
}

struct real_stdio_fns real_stdio;

void *real_stdio_sym(void **slot, const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	*slot = p;
	return p;
}
