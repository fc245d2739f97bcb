/* Resolves every real_* function once with dlsym(RTLD_NEXT); libpq and librdkafka are looked up elsewhere, lazily. */
#include "real.h"

#include <dlfcn.h>
#include <pthread.h>

struct real_fns real;
struct real_pq_fns real_pq;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;

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
	R(shutdown, "shutdown");
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
static void *pq_sym(const char *name)
{
	static void *lib;
	void *p = dlsym(RTLD_NEXT, name);
	if (p)
		return p;
	if (!lib)
		lib = dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD);
	return lib ? dlsym(lib, name) : NULL;
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
