/* PostgreSQL through libpq: a CLIENT span per statement, synchronous, asynchronous and pipelined. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/log.h"
#include "agent/perthread.h"
#include "agent/propagation.h"
#include "agent/span.h"
#include "agent/sql.h"
#include "hooks/init.h"
#include "hooks/real.h"

#define HOOK __attribute__((visibility("default")))

/*
 * Statements started with PQsend* end when PQgetResult returns NULL for
 * them, so each connection keeps a FIFO of the spans it has in flight (one
 * per queued statement in pipeline mode), and the text of the statements it
 * prepared, so PQexecPrepared spans can show what they run. libpq allows one
 * thread at a time per connection, so a connection's state needs no lock of
 * its own; the buckets of the table that finds it have one each.
 */

#define PENDING_MAX 64
#define PREPARED_MAX 16
#define PREPARED_TEXT_MAX 1024
#define BUCKETS 256
/* db.query.text kept per span: the record holds 3 KiB of text in all. */
#define QUERY_TEXT_MAX 1536

struct pending {
	struct span *sp;
	bool got_result;
	int64_t rows;
};

struct prepared {
	char name[64];
	uint16_t len;
	char text[PREPARED_TEXT_MAX];
};

struct conn_state {
	struct conn_state *next;
	PGconn *conn;
	unsigned first, count;
	struct pending q[PENDING_MAX];
	unsigned nprep, next_prep;
	struct prepared prep[PREPARED_MAX];
};

static struct {
	pthread_mutex_t mu;
	struct conn_state *head;
} buckets[BUCKETS];
static pthread_once_t buckets_once = PTHREAD_ONCE_INIT;

/* Per-thread scratch: summaries, sanitised text and commented queries are
 * too big for the stack of an app thread calling PQexec. */
struct pq_scratch {
	struct sql_summary sum;
	struct trace_context ctx;
	char text[2048];
	char commented[8192];
};
/* 13 KB: in memory made on the thread's first statement, not in static TLS
 * (agent/perthread.h). */
static __thread struct pq_scratch *scratch_tls AGENT_TLS;

/* NULL when there is no memory for it: the statement is not recorded. */
static inline struct pq_scratch *scratch(void)
{
	return perthread_get((void **)&scratch_tls, sizeof *scratch_tls);
}

static void buckets_init(void)
{
	for (unsigned i = 0; i < BUCKETS; i++)
		pthread_mutex_init(&buckets[i].mu, NULL);
}

static unsigned bucket_of(const PGconn *c)
{
	uintptr_t h = (uintptr_t)c;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % BUCKETS;
}

/* The connection's state, created when create is set. */
static struct conn_state *conn_find(PGconn *c, bool create)
{
	pthread_once(&buckets_once, buckets_init);
	unsigned b = bucket_of(c);
	pthread_mutex_lock(&buckets[b].mu);
	struct conn_state *s = buckets[b].head;
	while (s && s->conn != c)
		s = s->next;
	if (!s && create) {
		s = calloc(1, sizeof *s);
		if (s) {
			s->conn = c;
			s->next = buckets[b].head;
			buckets[b].head = s;
		}
	}
	pthread_mutex_unlock(&buckets[b].mu);
	return s;
}

static void conn_forget(PGconn *c)
{
	pthread_once(&buckets_once, buckets_init);
	unsigned b = bucket_of(c);
	pthread_mutex_lock(&buckets[b].mu);
	struct conn_state **pp = &buckets[b].head;
	while (*pp && (*pp)->conn != c)
		pp = &(*pp)->next;
	struct conn_state *s = *pp;
	if (s)
		*pp = s->next;
	pthread_mutex_unlock(&buckets[b].mu);
	if (!s)
		return;
	/* Statements still in flight end with the connection. */
	for (unsigned i = 0; i < s->count; i++)
		span_end(s->q[(s->first + i) % PENDING_MAX].sp);
	free(s);
}

/* --- spans --- */

static bool enter(void)
{
	if (!context_guard_enter())
		return false;
	init_ensure();
	if (!init_enabled) {
		context_guard_leave();
		return false;
	}
	return true;
}

static void set_conn_attrs(struct span *sp, PGconn *conn)
{
	span_set_cstr(sp, "db.system.name", "postgresql");
	const char *db = REAL_PQ(db) ? REAL_PQ(db)(conn) : NULL;
	if (db && *db)
		span_set_cstr(sp, "db.namespace", db);
	const char *host = REAL_PQ(host) ? REAL_PQ(host)(conn) : NULL;
	if (host && *host)
		span_set_cstr(sp, "server.address", host);
	const char *port = REAL_PQ(port) ? REAL_PQ(port)(conn) : NULL;
	if (port && *port) {
		long p = strtol(port, NULL, 10);
		if (p > 0 && p != 5432)   /* the default port is implied, as the conventions say */
			span_set_int(sp, "server.port", p);
	}
}

/*
 * Starts the span for one statement: named after its summary, child of the
 * thread's current context. parameterized: the text has $n placeholders and
 * no literals to hide. Returns NULL when not recorded; the new context is
 * in the scratch's ctx either way (valid unless TRACEAGENT_DB_REQUIRE_PARENT
 * suppressed it, or there is no scratch).
 */
static struct span *stmt_begin(PGconn *conn, const char *text, bool parameterized, const char *fallback_name,
			       int nparams, const char *const *values, const int *formats)
{
	const struct config *c = &config_global;
	struct pq_scratch *x = scratch();

	if (!x)
		return NULL;
	x->ctx.valid = false;
	if (!conn || (c->db_require_parent && !context_current()->valid))
		return NULL;
	size_t len = text ? strnlen(text, 1u << 16) : 0;
	const char *name = fallback_name;
	size_t nlen = strlen(fallback_name);
	if (text) {
		sql_summarize(text, len, &x->sum);
		if (x->sum.summary_len) {
			name = x->sum.summary;
			nlen = x->sum.summary_len;
		}
	} else {
		x->sum.summary_len = x->sum.operation_len = x->sum.collection_len = 0;
	}
	struct span *sp = span_start(SPAN_KIND_CLIENT, name, nlen, NULL, &x->ctx);
	if (!sp)
		return NULL;
	set_conn_attrs(sp, conn);
	/* Short attributes first, and the text capped: the record's text space
	 * must keep room for the error attributes set after the call. */
	if (x->sum.summary_len)
		span_set_str(sp, "db.query.summary", x->sum.summary, x->sum.summary_len);
	if (x->sum.operation_len)
		span_set_str(sp, "db.operation.name", x->sum.operation, x->sum.operation_len);
	if (x->sum.collection_len)
		span_set_str(sp, "db.collection.name", x->sum.collection, x->sum.collection_len);
	if (text) {
		if (parameterized || !c->db_sanitize) {
			span_set_str(sp, "db.query.text", text, len < QUERY_TEXT_MAX ? len : QUERY_TEXT_MAX);
		} else {
			bool cut;
			size_t n = sql_sanitize(text, len, x->text, QUERY_TEXT_MAX + 1, &cut);
			span_set_str(sp, "db.query.text", x->text, n);
		}
	}
	if (c->db_capture_parameters && values) {
		for (int i = 0; i < nparams && i < 32; i++) {
			if (!values[i] || (formats && formats[i] != 0))
				continue;   /* NULLs and binary parameters are not text to show */
			char key[40];
			snprintf(key, sizeof key, "db.query.parameter.%d", i);
			span_attr_str(sp, key, strlen(key), values[i], strnlen(values[i], 4096));
		}
	}
	return sp;
}

/* Status Error with msg (and an exception event when type is not NULL).
 * Values quoted in the message are replaced by '?' unless the app opted in
 * to parameters being recorded: PostgreSQL quotes the input it rejects. */
static void set_error(struct span *sp, const char *type, const char *msg, size_t len)
{
	if (msg && !config_global.db_capture_parameters) {
		struct pq_scratch *x = scratch();
		bool cut;
		if (x) {
			len = sql_sanitize_message(msg, len, x->text, sizeof x->text, &cut);
			msg = x->text;
		} else {
			msg = NULL;   /* no room to mask it: not recorded at all */
			len = 0;
		}
	}
	span_set_status(sp, SPAN_STATUS_ERROR, msg, len);
	if (type)
		span_add_exception(sp, type, msg ? msg : "", msg ? len : 0);
}

/* Records one result into the span; rows accumulate over results. */
static void stmt_result(struct span *sp, PGconn *conn, const PGresult *res, int64_t *rows)
{
	if (!sp)
		return;
	if (!res) {
		/* No result at all: out of memory, or the connection is gone. */
		const char *msg = REAL_PQ(error_message) ? REAL_PQ(error_message)(conn) : NULL;
		bool bad = REAL_PQ(status) && REAL_PQ(status)(conn) == CONNECTION_BAD;
		size_t ml = msg ? strcspn(msg, "\n") : 0;
		span_set_cstr(sp, "error.type", bad ? "08006" : "_OTHER");
		set_error(sp, bad ? "08006" : "_OTHER", msg, ml);
		return;
	}
	ExecStatusType st = REAL_PQ(result_status)(res);
	switch (st) {
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE:
		*rows += REAL_PQ(ntuples)(res);
		span_set_int(sp, "db.response.returned_rows", *rows);
		break;
	case PGRES_FATAL_ERROR:
	case PGRES_BAD_RESPONSE:
	case PGRES_PIPELINE_ABORTED: {
		const char *code = REAL_PQ(result_error_field)(res, PG_DIAG_SQLSTATE);
		const char *msg = REAL_PQ(result_error_field)(res, PG_DIAG_MESSAGE_PRIMARY);
		if (st == PGRES_PIPELINE_ABORTED && !msg)
			msg = "pipeline aborted by an earlier error";
		if (!code)
			code = REAL_PQ(status)(conn) == CONNECTION_BAD ? "08006" : "_OTHER";
		if (strcmp(code, "_OTHER") != 0)
			span_set_cstr(sp, "db.response.status_code", code);
		span_set_cstr(sp, "error.type", code);
		set_error(sp, code, msg, msg ? strnlen(msg, 1u << 16) : 0);
		break;
	}
	default:
		break;
	}
}

/* The text sent to the server when TRACEAGENT_DB_SQLCOMMENTER is on: the
 * app's text with the span's traceparent as a trailing comment (before a
 * final ';'). Returns the app's own text when off or when it can't be built. */
static const char *commented(const char *text)
{
	struct pq_scratch *x = scratch_tls;
	if (!config_global.db_sqlcommenter || !text || !x || !x->ctx.valid)
		return text;
	size_t len = strlen(text);
	if (!sql_is_complete(text, len))
		return text;   /* an open quote or comment would swallow ours, or change the error */
	size_t end = len;
	while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' ||
			   text[end - 1] == '\r'))
		end--;
	size_t body = end > 0 && text[end - 1] == ';' ? end - 1 : end;
	char tp[TRACEPARENT_LEN + 1];
	propagation_format_traceparent(&x->ctx, tp);
	/* A newline first, so a trailing -- comment can't swallow ours. */
	int n = snprintf(x->commented, sizeof x->commented, "%.*s\n/*traceparent='%s'*/%s", (int)body, text, tp,
			 text + body);
	if (n < 0 || (size_t)n >= sizeof x->commented)
		return text;   /* too long to comment without allocating: send as is */
	return x->commented;
}

static void remember_prepared(PGconn *conn, const char *name, const char *text)
{
	if (!name || !text)
		return;
	struct conn_state *s = conn_find(conn, true);
	if (!s)
		return;
	struct prepared *p = NULL;
	for (unsigned i = 0; i < s->nprep; i++)
		if (strcmp(s->prep[i].name, name) == 0)
			p = &s->prep[i];
	if (!p) {
		if (s->nprep < PREPARED_MAX) {
			p = &s->prep[s->nprep++];
		} else {
			p = &s->prep[s->next_prep];
			s->next_prep = (s->next_prep + 1) % PREPARED_MAX;
		}
	}
	snprintf(p->name, sizeof p->name, "%s", name);
	size_t l = strnlen(text, PREPARED_TEXT_MAX - 1);
	memcpy(p->text, text, l);
	p->text[l] = '\0';
	p->len = (uint16_t)l;
}

static const char *prepared_text(PGconn *conn, const char *name)
{
	if (!name)
		return NULL;
	struct conn_state *s = conn_find(conn, false);
	if (!s)
		return NULL;
	for (unsigned i = 0; i < s->nprep; i++)
		if (strcmp(s->prep[i].name, name) == 0)
			return s->prep[i].text;
	return NULL;
}

/* A PQsend* call that dispatched (ok) queues its span until PQgetResult's NULL.
 * Unrecorded statements queue a NULL span: results are matched by position,
 * so every statement in flight needs its place. */
static void queue_pending(PGconn *conn, struct span *sp, int ok)
{
	if (!ok) {
		stmt_result(sp, conn, NULL, &(int64_t){ 0 });
		span_end(sp);
		return;
	}
	struct conn_state *s = conn_find(conn, true);
	if (!s || s->count == PENDING_MAX) {
		span_end(sp);   /* can't follow it: end now rather than misattribute results */
		return;
	}
	struct pending *p = &s->q[(s->first + s->count++) % PENDING_MAX];
	p->sp = sp;
	p->got_result = false;
	p->rows = 0;
}

/* The common tail of the synchronous hooks: record, end, leave, errno intact. */
static PGresult *sync_done(struct span *sp, PGconn *conn, PGresult *r)
{
	int e = errno;
	int64_t rows = 0;
	stmt_result(sp, conn, r, &rows);
	span_end(sp);
	context_guard_leave();
	errno = e;
	return r;
}

/* The common tail of the PQsend* hooks: queue the span, leave, errno intact. */
static int async_done(struct span *sp, PGconn *conn, int ok)
{
	int e = errno;
	queue_pending(conn, sp, ok);
	context_guard_leave();
	errno = e;
	return ok;
}

/* --- synchronous calls --- */

HOOK PGresult *PQexec(PGconn *conn, const char *query)
{
	if (!enter())
		return REAL_PQ(exec)(conn, query);
	struct span *sp = stmt_begin(conn, query, false, "postgresql", 0, NULL, NULL);
	return sync_done(sp, conn, REAL_PQ(exec)(conn, commented(query)));
}

HOOK PGresult *PQexecParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
			    const int *lengths, const int *formats, int result_format)
{
	if (!enter())
		return REAL_PQ(exec_params)(conn, command, n, types, values, lengths, formats, result_format);
	struct span *sp = stmt_begin(conn, command, n > 0, "postgresql", n, values, formats);
	return sync_done(sp, conn, REAL_PQ(exec_params)(conn, commented(command), n, types, values, lengths,
							  formats, result_format));
}

HOOK PGresult *PQprepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
	if (!enter())
		return REAL_PQ(prepare)(conn, name, query, n, types);
	struct span *sp = stmt_begin(conn, query, true, "PREPARE", 0, NULL, NULL);
	PGresult *r = REAL_PQ(prepare)(conn, name, commented(query), n, types);
	int e = errno;
	if (r && REAL_PQ(result_status)(r) == PGRES_COMMAND_OK)
		remember_prepared(conn, name, query);
	errno = e;
	return sync_done(sp, conn, r);
}

HOOK PGresult *PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
			      const int *formats, int result_format)
{
	if (!enter())
		return REAL_PQ(exec_prepared)(conn, name, n, values, lengths, formats, result_format);
	struct span *sp = stmt_begin(conn, prepared_text(conn, name), true, "EXECUTE", n, values, formats);
	return sync_done(sp, conn, REAL_PQ(exec_prepared)(conn, name, n, values, lengths, formats, result_format));
}

HOOK PGresult *PQdescribePrepared(PGconn *conn, const char *name)
{
	if (!enter())
		return REAL_PQ(describe_prepared)(conn, name);
	struct span *sp = stmt_begin(conn, NULL, true, "DESCRIBE", 0, NULL, NULL);
	return sync_done(sp, conn, REAL_PQ(describe_prepared)(conn, name));
}

HOOK PGresult *PQdescribePortal(PGconn *conn, const char *portal)
{
	if (!enter())
		return REAL_PQ(describe_portal)(conn, portal);
	struct span *sp = stmt_begin(conn, NULL, true, "DESCRIBE", 0, NULL, NULL);
	return sync_done(sp, conn, REAL_PQ(describe_portal)(conn, portal));
}

/* --- asynchronous calls --- */

HOOK int PQsendQuery(PGconn *conn, const char *query)
{
	if (!enter())
		return REAL_PQ(send_query)(conn, query);
	struct span *sp = stmt_begin(conn, query, false, "postgresql", 0, NULL, NULL);
	return async_done(sp, conn, REAL_PQ(send_query)(conn, commented(query)));
}

HOOK int PQsendQueryParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
			   const int *lengths, const int *formats, int result_format)
{
	if (!enter())
		return REAL_PQ(send_query_params)(conn, command, n, types, values, lengths, formats, result_format);
	struct span *sp = stmt_begin(conn, command, n > 0, "postgresql", n, values, formats);
	return async_done(sp, conn, REAL_PQ(send_query_params)(conn, commented(command), n, types, values, lengths, formats,
					    result_format));
}

HOOK int PQsendPrepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
	if (!enter())
		return REAL_PQ(send_prepare)(conn, name, query, n, types);
	struct span *sp = stmt_begin(conn, query, true, "PREPARE", 0, NULL, NULL);
	int ok = REAL_PQ(send_prepare)(conn, name, commented(query), n, types);
	int e = errno;
	if (ok)
		remember_prepared(conn, name, query);
	errno = e;
	return async_done(sp, conn, ok);
}

HOOK int PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
			     const int *formats, int result_format)
{
	if (!enter())
		return REAL_PQ(send_query_prepared)(conn, name, n, values, lengths, formats, result_format);
	struct span *sp = stmt_begin(conn, prepared_text(conn, name), true, "EXECUTE", n, values, formats);
	return async_done(sp, conn, REAL_PQ(send_query_prepared)(conn, name, n, values, lengths, formats,
								 result_format));
}

/*
 * Results of PQsend* statements, in the order they were sent: a result is
 * recorded into the oldest pending span, and the NULL that follows its last
 * result ends it. A NULL before any result (nothing ready, or called with
 * nothing in flight) ends nothing; pipeline sync points belong to no statement.
 */
HOOK PGresult *PQgetResult(PGconn *conn)
{
	if (!enter())
		return REAL_PQ(get_result)(conn);
	struct conn_state *s = conn ? conn_find(conn, false) : NULL;
	PGresult *r = REAL_PQ(get_result)(conn);
	int e = errno;
	if (s && s->count) {
		struct pending *p = &s->q[s->first];
		if (r) {
			if (REAL_PQ(result_status)(r) != PGRES_PIPELINE_SYNC) {
				stmt_result(p->sp, conn, r, &p->rows);
				p->got_result = true;
			}
		} else if (p->got_result) {
			span_end(p->sp);
			p->sp = NULL;
			s->first = (s->first + 1) % PENDING_MAX;
			s->count--;
		}
	}
	context_guard_leave();
	errno = e;
	return r;
}

/* --- connections --- */

static struct span *connect_begin(void)
{
	struct pq_scratch *x = config_global.db_connect_spans ? scratch() : NULL;
	if (!x)
		return NULL;
	struct span *sp = span_start(SPAN_KIND_CLIENT, "connect", 7, NULL, &x->ctx);
	span_set_cstr(sp, "db.system.name", "postgresql");
	span_set_cstr(sp, "db.operation.name", "connect");
	return sp;
}

static void connect_end(struct span *sp, PGconn *c)
{
	if (c) {
		conn_forget(c);   /* an address reused after an untracked free */
		if (sp)
			set_conn_attrs(sp, c);
	}
	if (sp && (!c || REAL_PQ(status)(c) == CONNECTION_BAD)) {
		const char *msg = c ? REAL_PQ(error_message)(c) : "out of memory";
		size_t ml = msg ? strcspn(msg, "\n") : 0;
		span_set_cstr(sp, "error.type", "08006");
		set_error(sp, NULL, msg, ml);
	}
	span_end(sp);
}

HOOK PGconn *PQconnectdb(const char *conninfo)
{
	if (!enter())
		return REAL_PQ(connectdb)(conninfo);
	struct span *sp = connect_begin();
	PGconn *c = REAL_PQ(connectdb)(conninfo);
	int e = errno;
	connect_end(sp, c);
	context_guard_leave();
	errno = e;
	return c;
}

HOOK PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand)
{
	if (!enter())
		return REAL_PQ(connectdb_params)(keywords, values, expand);
	struct span *sp = connect_begin();
	PGconn *c = REAL_PQ(connectdb_params)(keywords, values, expand);
	int e = errno;
	connect_end(sp, c);
	context_guard_leave();
	errno = e;
	return c;
}

HOOK PGconn *PQconnectStart(const char *conninfo)
{
	PGconn *c = REAL_PQ(connect_start)(conninfo);
	if (c && enter()) {
		int e = errno;
		conn_forget(c);
		context_guard_leave();
		errno = e;
	}
	return c;
}

HOOK PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values, int expand)
{
	PGconn *c = REAL_PQ(connect_start_params)(keywords, values, expand);
	if (c && enter()) {
		int e = errno;
		conn_forget(c);
		context_guard_leave();
		errno = e;
	}
	return c;
}

HOOK void PQfinish(PGconn *conn)
{
	if (conn && enter()) {
		int e = errno;
		conn_forget(conn);
		context_guard_leave();
		errno = e;
	}
	REAL_PQ(finish)(conn);
}
