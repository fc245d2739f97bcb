/* PostgreSQL through libpq: a CLIENT span per statement, synchronous, asynchronous and pipelined. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/context.h"
#include "agent/log.h"
#include "agent/perthread.h"
#include "agent/propagation.h"
#include "agent/span.h"
#include "agent/sql.h"
#include "hooks/kernel.h"

/*
 * Statements started with PQsend* end when PQgetResult returns NULL for
 * them, so each connection keeps a FIFO of the spans it has in flight (one
 * per queued statement in pipeline mode), the text of the statements it
 * prepared, so PQexecPrepared spans can show what they run, the attributes
 * all its spans share, and its cache of query summaries.
 *
 * libpq allows one thread at a time per connection, so a connection's state
 * needs no lock of its own. The table that finds it has a lock per bucket,
 * taken only when a thread uses a connection it hasn't used lately: each
 * thread remembers the last few states it found. A remembered state can be
 * gone only if its connection was finished (or its address reused after an
 * untracked free), and every such end bumps conn_gen, which makes every
 * thread forget what it remembered; a connection being used on one thread
 * can't end on another, that would be a use-after-free in libpq itself.
 */

#define PENDING_MAX 64
#define PREPARED_MAX 16
#define PREPARED_NAME_MAX 64
#define PREPARED_TEXT_MAX 1024
#define BUCKETS 256
#define RECENT 4
/* db.query.text kept per span: the record holds 3 KiB of text in all. */
#define QUERY_TEXT_MAX 1536

struct pending {
	struct span *sp;
	bool got_result;
	int64_t rows;
};

struct prepared {
	uint8_t name_len;
	uint16_t len;
	char name[PREPARED_NAME_MAX];
	char text[PREPARED_TEXT_MAX];
};

struct conn_state {
	struct conn_state *next;
	PGconn *conn;
	unsigned first, count;
	struct pending q[PENDING_MAX];
	unsigned nprep, next_prep;
	struct prepared prep[PREPARED_MAX];
	/* db.system.name, db.namespace, server.address, server.port, built on
	 * the first recorded statement (PQhost's string kept, to notice a
	 * PQreset that lands on another host). */
	bool attrs_built;
	const char *attrs_host;
	struct span_attr_block attrs;
	struct sql_cache cache;
};

#define BUCKET_INIT { PTHREAD_MUTEX_INITIALIZER, NULL }
static struct {
	pthread_mutex_t mu;
	struct conn_state *head;
} buckets[BUCKETS] = { [0 ... BUCKETS - 1] = BUCKET_INIT };

/* Bumped whenever a connection's state is freed (see above). */
static _Atomic uint64_t conn_gen;

/* Per-thread scratch: summaries, sanitised text and commented queries are
 * too big for the stack of an app thread calling PQexec. */
struct pq_scratch {
	struct sql_summary sum;
	struct trace_context ctx;
	uint64_t recent_gen;           /* conn_gen when recent[] was filled */
	struct {
		PGconn *conn;
		struct conn_state *state;
	} recent[RECENT];              /* most recently used first */
	char text[2048];
	char commented[8192];
};
/* 13 KB: in memory made on the thread's first statement, not in static TLS
 * (agent/perthread.h). */
static __thread struct pq_scratch *scratch_tls AGENT_TLS;

/* NULL when there is no memory for it: the statement is not recorded. */
static inline struct pq_scratch *scratch(void)
{
	struct pq_scratch *x = scratch_tls;
	return x ? x : perthread_get((void **)&scratch_tls, sizeof *scratch_tls);
}

static unsigned bucket_of(const PGconn *c)
{
	uintptr_t h = (uintptr_t)c;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 56) % BUCKETS;
}

/* The connection's state from the table, created when create is set. */
static struct conn_state *conn_find(PGconn *c, bool create)
{
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

/* conn_state's slow path: the other remembered states, then the table.
 * The one found goes first in recent[]. */
static struct conn_state *conn_state_slow(struct pq_scratch *x, PGconn *c, bool create)
{
	struct conn_state *s = NULL;
	unsigned i = RECENT - 1;
	if (x) {
		uint64_t g = atomic_load_explicit(&conn_gen, memory_order_acquire);
		if (x->recent_gen != g) {
			memset(x->recent, 0, sizeof x->recent);
			x->recent_gen = g;
		}
		for (unsigned j = 1; j < RECENT; j++)
			if (x->recent[j].conn == c) {
				s = x->recent[j].state;
				i = j;
				break;
			}
	}
	if (!s)
		s = conn_find(c, create);
	if (s && x) {
		memmove(&x->recent[1], &x->recent[0], i * sizeof x->recent[0]);
		x->recent[0].conn = c;
		x->recent[0].state = s;
	}
	return s;
}

/* The connection's state (c not NULL): remembered by this thread (x, when
 * not NULL), else from the table. */
static inline struct conn_state *conn_state(struct pq_scratch *x, PGconn *c, bool create)
{
	if (x && x->recent[0].conn == c && x->recent_gen == atomic_load_explicit(&conn_gen, memory_order_acquire))
		return x->recent[0].state;
	return conn_state_slow(x, c, create);
}

static void conn_forget(PGconn *c)
{
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
	atomic_fetch_add_explicit(&conn_gen, 1, memory_order_acq_rel);
	/* Statements still in flight end with the connection. */
	for (unsigned i = 0; i < s->count; i++)
		span_end(s->q[(s->first + i) % PENDING_MAX].sp);
	free(s);
}

/* --- spans --- */

/* A literal span name and its length. */
#define NAME(s) s, sizeof s - 1

struct conn_strings {
	const char *db, *host, *port;
};

static void conn_strings(PGconn *conn, struct conn_strings *cs)
{
	cs->db = REAL(PQdb) ? REAL(PQdb)(conn) : NULL;
	cs->host = REAL(PQhost) ? REAL(PQhost)(conn) : NULL;
	cs->port = REAL(PQport) ? REAL(PQport)(conn) : NULL;
}

static void set_conn_attrs(struct span *sp, const struct conn_strings *cs)
{
	span_set_cstr(sp, "db.system.name", "postgresql");
	if (cs->db && *cs->db)
		span_set_cstr(sp, "db.namespace", cs->db);
	if (cs->host && *cs->host)
		span_set_cstr(sp, "server.address", cs->host);
	if (cs->port && *cs->port) {
		long p = strtol(cs->port, NULL, 10);
		if (p > 0 && p != 5432)   /* the default port is implied, as the conventions say */
			span_set_int(sp, "server.port", p);
	}
}

/* The connection's attributes on sp: a copy of the block made once per
 * connection. PQreset may land on another of the connection's hosts, so the
 * block is made again when PQhost answers another string: it is that of
 * the host entry in use (each entry has its own, with its port). */
static void add_conn_attrs(struct span *sp, struct conn_state *s, PGconn *conn)
{
	const char *host = REAL(PQhost) ? REAL(PQhost)(conn) : NULL;
	if (s && s->attrs_built && host == s->attrs_host && s->attrs.n) {
		span_attr_block_add(sp, &s->attrs);
		return;
	}
	struct conn_strings cs;
	conn_strings(conn, &cs);
	if (s && (!s->attrs_built || host != s->attrs_host)) {
		struct span *tmp = span_scratch_new();
		set_conn_attrs(tmp, &cs);
		span_attr_block_take(&s->attrs, tmp);
		s->attrs_built = true;
		s->attrs_host = host;
	}
	if (s && s->attrs.n)
		span_attr_block_add(sp, &s->attrs);
	else
		set_conn_attrs(sp, &cs);   /* no block (no state, no memory, or the limits cut it): one by one */
}

/* "db.query.parameter.<i>" for 0 <= i < 100, into key; returns its length. */
static size_t parameter_key(char *key, int i)
{
	static const char prefix[] = "db.query.parameter.";
	size_t n = sizeof prefix - 1;
	memcpy(key, prefix, n);
	if (i >= 10)
		key[n++] = (char)('0' + i / 10);
	key[n++] = (char)('0' + i % 10);
	return n;
}

static struct prepared *prepared_find(struct conn_state *s, const char *name, size_t nlen)
{
	for (unsigned i = 0; i < s->nprep; i++)
		if (s->prep[i].name_len == nlen && memcmp(s->prep[i].name, name, nlen) == 0)
			return &s->prep[i];
	return NULL;
}

/* Names longer than PREPARED_NAME_MAX - 1 are not kept: their spans are
 * named EXECUTE, without the text. */
static void remember_prepared(struct conn_state *s, const char *name, const char *text)
{
	if (!s || !name || !text)
		return;
	size_t nlen = strnlen(name, PREPARED_NAME_MAX);
	if (nlen == PREPARED_NAME_MAX)
		return;
	struct prepared *p = prepared_find(s, name, nlen);
	if (!p) {
		if (s->nprep < PREPARED_MAX) {
			p = &s->prep[s->nprep++];
		} else {
			p = &s->prep[s->next_prep];
			s->next_prep = (s->next_prep + 1) % PREPARED_MAX;
		}
	}
	memcpy(p->name, name, nlen);
	p->name_len = (uint8_t)nlen;
	size_t l = strnlen(text, PREPARED_TEXT_MAX - 1);
	memcpy(p->text, text, l);
	p->len = (uint16_t)l;
}

/* The text a prepared statement runs (len in *len), or NULL when unknown. */
static const char *prepared_text(struct conn_state *s, const char *name, size_t *len)
{
	if (!s || !name)
		return NULL;
	struct prepared *p = prepared_find(s, name, strnlen(name, PREPARED_NAME_MAX));
	if (!p)
		return NULL;
	*len = p->len;
	return p->text;
}

/*
 * Starts the span for one statement: named after its summary, child of the
 * thread's current context. text: len bytes, or a C string when len is
 * SIZE_MAX; or, with text NULL, that of the statement prepared under the
 * name prepared (when not NULL). parameterized: the text has $n
 * placeholders and no literals to hide. Returns NULL when not recorded; the
 * new context is in the scratch's ctx either way (valid unless
 * TRACEAGENT_DB_REQUIRE_PARENT suppressed it, or there is no scratch).
 * *state: the connection's state when it was looked up (NULL otherwise).
 */
static void stmt_describe(struct span *sp, struct pq_scratch *x, PGconn *conn, struct conn_state **state,
			  const char *text, size_t len, const char *prepared, bool parameterized, int nparams,
			  const char *const *values, const int *formats);

static inline struct span *stmt_begin(PGconn *conn, struct conn_state **state, const char *text, size_t len,
				      const char *prepared, bool parameterized, const char *fallback_name,
				      size_t fallback_len, int nparams, const char *const *values, const int *formats)
{
	struct pq_scratch *x = scratch();

	*state = NULL;
	if (!x)
		return NULL;
	x->ctx.valid = false;
	if (!conn || (config_global.db_require_parent && !context_current()->valid))
		return NULL;
	/* Sampled out, nothing else is needed: the summary only names the span. */
	struct span *sp = span_start(SPAN_KIND_CLIENT, fallback_name, fallback_len, NULL, &x->ctx);
	if (sp)
		stmt_describe(sp, x, conn, state, text, len, prepared, parameterized, nparams, values, formats);
	return sp;
}

/* The recorded statement's attributes and name (stmt_begin). */
static void stmt_describe(struct span *sp, struct pq_scratch *x, PGconn *conn, struct conn_state **state,
			  const char *text, size_t len, const char *prepared, bool parameterized, int nparams,
			  const char *const *values, const int *formats)
{
	const struct config *c = &config_global;
	struct conn_state *s = *state = conn_state(x, conn, true);
	add_conn_attrs(sp, s, conn);
	if (!text && prepared)
		text = prepared_text(s, prepared, &len);
	if (text) {
		if (len == SIZE_MAX)
			len = strnlen(text, 1u << 16);
		/* the text shown (db.query.text), also the cache's key when whole */
		const char *q = text;
		size_t qlen = len < QUERY_TEXT_MAX ? len : QUERY_TEXT_MAX;
		bool whole = qlen == len;
		if (!parameterized && c->db_sanitize) {
			bool cut;
			qlen = sql_sanitize(text, len, x->text, QUERY_TEXT_MAX + 1, &cut);
			q = x->text;
			whole = !cut;
		}
		struct sql_summary_view v;
		if (s && whole) {
			sql_cache_summary(&s->cache, q, qlen, text, len, &x->sum, &v);
		} else {
			sql_summarize(text, len, &x->sum);
			sql_summary_view_of(&x->sum, &v);
		}
		/* Short attributes first, and the text capped: the record's text
		 * space must keep room for the error attributes set after the call. */
		if (v.summary_len) {
			span_set_name(sp, v.summary, v.summary_len);
			span_set_str(sp, "db.query.summary", v.summary, v.summary_len);
		}
		if (v.operation_len)
			span_set_str(sp, "db.operation.name", v.operation, v.operation_len);
		if (v.collection_len)
			span_set_str(sp, "db.collection.name", v.collection, v.collection_len);
		span_set_str(sp, "db.query.text", q, qlen);
	}
	if (c->db_capture_parameters && values) {
		for (int i = 0; i < nparams && i < 32; i++) {
			if (!values[i] || (formats && formats[i] != 0))
				continue;   /* NULLs and binary parameters are not text to show */
			char key[24];
			span_attr_str(sp, key, parameter_key(key, i), values[i], strnlen(values[i], 4096));
		}
	}
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

static void result_record(struct span *sp, PGconn *conn, const PGresult *res, ExecStatusType st, int64_t *rows);

/* Records one result into the span; rows accumulate over results. */
static void stmt_result(struct span *sp, PGconn *conn, const PGresult *res, int64_t *rows)
{
	if (sp)
		result_record(sp, conn, res, res ? REAL(PQresultStatus)(res) : PGRES_FATAL_ERROR, rows);
}

/* stmt_result for a recorded span, res's status st already read. */
static void result_record(struct span *sp, PGconn *conn, const PGresult *res, ExecStatusType st, int64_t *rows)
{
	if (!res) {
		/* No result at all: out of memory, or the connection is gone. */
		const char *msg = REAL(PQerrorMessage) ? REAL(PQerrorMessage)(conn) : NULL;
		bool bad = REAL(PQstatus) && REAL(PQstatus)(conn) == CONNECTION_BAD;
		size_t ml = msg ? strcspn(msg, "\n") : 0;
		span_set_cstr(sp, "error.type", bad ? "08006" : "_OTHER");
		set_error(sp, bad ? "08006" : "_OTHER", msg, ml);
		return;
	}
	switch (st) {
	case PGRES_TUPLES_OK:
	case PGRES_SINGLE_TUPLE:
		*rows += REAL(PQntuples)(res);
		span_set_int(sp, "db.response.returned_rows", *rows);
		break;
	case PGRES_FATAL_ERROR:
	case PGRES_BAD_RESPONSE:
	case PGRES_PIPELINE_ABORTED: {
		const char *code = REAL(PQresultErrorField)(res, PG_DIAG_SQLSTATE);
		const char *msg = REAL(PQresultErrorField)(res, PG_DIAG_MESSAGE_PRIMARY);
		if (st == PGRES_PIPELINE_ABORTED && !msg)
			msg = "pipeline aborted by an earlier error";
		if (!code)
			code = REAL(PQstatus)(conn) == CONNECTION_BAD ? "08006" : "_OTHER";
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
static const char *commented_text(const char *text)
{
	static const char open[] = "\n/*traceparent='", close[] = "'*/";
	struct pq_scratch *x = scratch_tls;
	if (!text || !x || !x->ctx.valid)
		return text;
	size_t len = strlen(text);
	if (!sql_is_complete(text, len))
		return text;   /* an open quote or comment would swallow ours, or change the error */
	size_t end = len;
	while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' ||
			   text[end - 1] == '\r'))
		end--;
	size_t body = end > 0 && text[end - 1] == ';' ? end - 1 : end;
	/* A newline first, so a trailing -- comment can't swallow ours. */
	size_t total = len + sizeof open - 1 + TRACEPARENT_LEN + sizeof close - 1;
	if (total >= sizeof x->commented)
		return text;   /* too long to comment without allocating: send as is */
	char *p = x->commented;
	memcpy(p, text, body);
	p += body;
	memcpy(p, open, sizeof open - 1);
	p += sizeof open - 1;
	p += propagation_format_traceparent(&x->ctx, p);
	memcpy(p, close, sizeof close - 1);
	p += sizeof close - 1;
	memcpy(p, text + body, len - body + 1);   /* with the NUL */
	return x->commented;
}

static inline const char *commented(const char *text)
{
	return __builtin_expect(config_global.db_sqlcommenter, 0) ? commented_text(text) : text;
}

/* A PQsend* call that dispatched (ok) queues its span until PQgetResult's NULL.
 * Unrecorded statements queue a NULL span: results are matched by position,
 * so every statement in flight needs its place. */
static inline void queue_pending(PGconn *conn, struct conn_state *s, struct span *sp, int ok)
{
	if (!ok) {
		stmt_result(sp, conn, NULL, &(int64_t){ 0 });
		span_end(sp);
		return;
	}
	if (!s)
		s = conn_state(scratch_tls, conn, true);
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
	int64_t rows = 0;
	KERNEL_LEAVE(stmt_result(sp, conn, r, &rows); span_end(sp));
	return r;
}

/* The common tail of the PQsend* hooks: queue the span, leave, errno intact. */
static inline int async_done(struct span *sp, PGconn *conn, struct conn_state *s, int ok)
{
	KERNEL_LEAVE(queue_pending(conn, s, sp, ok));
	return ok;
}

/* --- synchronous calls --- */

HOOK PGresult *PQexec(PGconn *conn, const char *query)
{
	if (!kernel_enter())
		return REAL(PQexec)(conn, query);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, query, SIZE_MAX, NULL, false, NAME("postgresql"), 0, NULL, NULL);
	return sync_done(sp, conn, REAL(PQexec)(conn, commented(query)));
}

HOOK PGresult *PQexecParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
			    const int *lengths, const int *formats, int result_format)
{
	if (!kernel_enter())
		return REAL(PQexecParams)(conn, command, n, types, values, lengths, formats, result_format);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, command, SIZE_MAX, NULL, n > 0, NAME("postgresql"), n, values, formats);
	return sync_done(sp, conn, REAL(PQexecParams)(conn, commented(command), n, types, values, lengths,
							  formats, result_format));
}

HOOK PGresult *PQprepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
	if (!kernel_enter())
		return REAL(PQprepare)(conn, name, query, n, types);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, query, SIZE_MAX, NULL, true, NAME("PREPARE"), 0, NULL, NULL);
	PGresult *r = REAL(PQprepare)(conn, name, commented(query), n, types);
	if (r && REAL(PQresultStatus)(r) == PGRES_COMMAND_OK)
		KERNEL_QUIET(remember_prepared(s ? s : conn_state(scratch_tls, conn, true), name, query));
	return sync_done(sp, conn, r);
}

HOOK PGresult *PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
			      const int *formats, int result_format)
{
	if (!kernel_enter())
		return REAL(PQexecPrepared)(conn, name, n, values, lengths, formats, result_format);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, NULL, 0, name, true, NAME("EXECUTE"), n, values, formats);
	return sync_done(sp, conn, REAL(PQexecPrepared)(conn, name, n, values, lengths, formats, result_format));
}

HOOK PGresult *PQdescribePrepared(PGconn *conn, const char *name)
{
	if (!kernel_enter())
		return REAL(PQdescribePrepared)(conn, name);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, NULL, 0, NULL, true, NAME("DESCRIBE"), 0, NULL, NULL);
	return sync_done(sp, conn, REAL(PQdescribePrepared)(conn, name));
}

HOOK PGresult *PQdescribePortal(PGconn *conn, const char *portal)
{
	if (!kernel_enter())
		return REAL(PQdescribePortal)(conn, portal);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, NULL, 0, NULL, true, NAME("DESCRIBE"), 0, NULL, NULL);
	return sync_done(sp, conn, REAL(PQdescribePortal)(conn, portal));
}

/* --- asynchronous calls --- */

HOOK int PQsendQuery(PGconn *conn, const char *query)
{
	if (!kernel_enter())
		return REAL(PQsendQuery)(conn, query);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, query, SIZE_MAX, NULL, false, NAME("postgresql"), 0, NULL, NULL);
	return async_done(sp, conn, s, REAL(PQsendQuery)(conn, commented(query)));
}

HOOK int PQsendQueryParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
			   const int *lengths, const int *formats, int result_format)
{
	if (!kernel_enter())
		return REAL(PQsendQueryParams)(conn, command, n, types, values, lengths, formats, result_format);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, command, SIZE_MAX, NULL, n > 0, NAME("postgresql"), n, values, formats);
	return async_done(sp, conn, s, REAL(PQsendQueryParams)(conn, commented(command), n, types, values, lengths,
								  formats, result_format));
}

HOOK int PQsendPrepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
	if (!kernel_enter())
		return REAL(PQsendPrepare)(conn, name, query, n, types);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, query, SIZE_MAX, NULL, true, NAME("PREPARE"), 0, NULL, NULL);
	int ok = REAL(PQsendPrepare)(conn, name, commented(query), n, types);
	if (ok)
		KERNEL_QUIET(if (!s) s = conn_state(scratch_tls, conn, true); remember_prepared(s, name, query));
	return async_done(sp, conn, s, ok);
}

HOOK int PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
			     const int *formats, int result_format)
{
	if (!kernel_enter())
		return REAL(PQsendQueryPrepared)(conn, name, n, values, lengths, formats, result_format);
	struct conn_state *s;
	struct span *sp = stmt_begin(conn, &s, NULL, 0, name, true, NAME("EXECUTE"), n, values, formats);
	return async_done(sp, conn, s, REAL(PQsendQueryPrepared)(conn, name, n, values, lengths, formats,
								     result_format));
}

/* PQgetResult's result r for the oldest statement of s still pending. */
static void result_arrived(struct conn_state *s, PGconn *conn, PGresult *r)
{
	struct pending *p = &s->q[s->first];
	if (r) {
		ExecStatusType st = REAL(PQresultStatus)(r);
		if (st != PGRES_PIPELINE_SYNC) {
			if (p->sp)
				result_record(p->sp, conn, r, st, &p->rows);
			p->got_result = true;
		}
	} else if (p->got_result) {
		span_end(p->sp);
		p->sp = NULL;
		s->first = (s->first + 1) % PENDING_MAX;
		s->count--;
	}
}

/*
 * Results of PQsend* statements, in the order they were sent: a result is
 * recorded into the oldest pending span, and the NULL that follows its last
 * result ends it. A NULL before any result (nothing ready, or called with
 * nothing in flight) ends nothing; pipeline sync points belong to no statement.
 */
HOOK PGresult *PQgetResult(PGconn *conn)
{
	if (!kernel_enter())
		return REAL(PQgetResult)(conn);
	struct pq_scratch *x = scratch();
	struct conn_state *s = conn ? conn_state(x, conn, false) : NULL;
	PGresult *r = REAL(PQgetResult)(conn);
	KERNEL_LEAVE(if (s && s->count) result_arrived(s, conn, r));
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
		if (sp) {
			struct conn_strings cs;
			conn_strings(c, &cs);
			set_conn_attrs(sp, &cs);
		}
	}
	if (sp && (!c || REAL(PQstatus)(c) == CONNECTION_BAD)) {
		const char *msg = c ? REAL(PQerrorMessage)(c) : "out of memory";
		size_t ml = msg ? strcspn(msg, "\n") : 0;
		span_set_cstr(sp, "error.type", "08006");
		set_error(sp, NULL, msg, ml);
	}
	span_end(sp);
}

HOOK PGconn *PQconnectdb(const char *conninfo)
{
	if (!kernel_enter())
		return REAL(PQconnectdb)(conninfo);
	struct span *sp = connect_begin();
	PGconn *c = REAL(PQconnectdb)(conninfo);
	KERNEL_LEAVE(connect_end(sp, c));
	return c;
}

HOOK PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand)
{
	if (!kernel_enter())
		return REAL(PQconnectdbParams)(keywords, values, expand);
	struct span *sp = connect_begin();
	PGconn *c = REAL(PQconnectdbParams)(keywords, values, expand);
	KERNEL_LEAVE(connect_end(sp, c));
	return c;
}

HOOK PGconn *PQconnectStart(const char *conninfo)
{
	PGconn *c = REAL(PQconnectStart)(conninfo);
	if (c && kernel_enter())
		KERNEL_LEAVE(conn_forget(c));
	return c;
}

HOOK PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values, int expand)
{
	PGconn *c = REAL(PQconnectStartParams)(keywords, values, expand);
	if (c && kernel_enter())
		KERNEL_LEAVE(conn_forget(c));
	return c;
}

HOOK void PQfinish(PGconn *conn)
{
	if (conn && kernel_enter())
		KERNEL_LEAVE(conn_forget(conn));
	REAL(PQfinish)(conn);
}
