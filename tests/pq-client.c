// pq-client: a libpq program that makes every call the agent hooks, one statement each, in a fixed order, and prints what happened.
//
//   pq-client [--case NAME] [CONNINFO]      (CONNINFO defaults to $DATABASE_URL)
//   pq-client --list                        (the case names)
//
// Without --case (or --case all) it runs the script below and exits 0 when
// every step gave the status it should (1 otherwise, 2 when it cannot connect).
// The other cases are bad input, and one (threads) hands connections from
// thread to thread: they print the PQresultStatus and PQerrorMessage of each
// call and exit 0 (2 when the first connection fails); their output must be
// byte-identical with and without the agent.
//
// The output has nothing that changes from run to run (no pids, no timings,
// no counts of rows left by earlier runs), so two runs can be diffed.
// Notices are dropped (CREATE TABLE IF NOT EXISTS says one on later runs).
//
// The script, on connection 1 (PQconnectdb) unless said otherwise; the SQL
// texts are what tests/integration/test-libpq.sh expects in db.query.text:
//   S1  PQexec              CREATE TABLE IF NOT EXISTS pq_tasks (...)
//   S2  PQexec              DELETE FROM pq_tasks
//   S3  PQexec              INSERT ... VALUES ('write tests', 3)       literals
//   S4  PQexec              SELECT ... WHERE hours > 2                 1 row
//   S5  PQexecParams        INSERT ... VALUES ($1, $2)                 'review code', '5'
//   S6  PQprepare           by_hours: SELECT title ... hours >= $1
//   S7  PQexecPrepared      by_hours ('1')                             2 rows
//   S8  PQdescribePrepared  by_hours
//   S9  PQexec              BEGIN
//   S10 PQexec              DECLARE pq_cur CURSOR FOR SELECT ...
//   S11 PQdescribePortal    pq_cur
//   S12 PQexec              COMMIT
//   S13 PQsendQuery         SELECT count(*) FROM pq_tasks              1 row (2)
//   S14 PQsendQueryParams   SELECT title ... WHERE title = $1          1 row
//   S15 PQsendPrepare       by_title: SELECT hours ... title = $1
//   S16 PQsendQueryPrepared by_title ('review code')                   1 row (5)
//   P1..P3 pipeline mode    PQenterPipelineMode, 3 PQsendQueryParams (INSERT,
//                           UPDATE, SELECT: 3 rows), PQpipelineSync,
//                           PQgetResult until PGRES_PIPELINE_SYNC, PQexitPipelineMode
//   S17 PQexec              SELECT * FROM missing_table                42P01
//   S18 PQexec              CREATE OR REPLACE FUNCTION get_metrics(h int) ...
//   S19 PQexec              SELECT * FROM get_metrics(24)              24 rows
//   S20 PQexec on connection 2 (PQconnectdbParams): SELECT title FROM pq_tasks ORDER BY id DESC   3 rows
//   PQfinish both.
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

static const char *conninfo;
static int unexpected;

// ---------------------------------------------------------------- printing

// Prints s (n bytes; n < 0: NUL-terminated) on one line: \n, \t, \\ and bytes
// outside printable ASCII escaped; at most max bytes, then "...(N bytes)".
static void put_escaped(const char *s, long n, long max)
{
	if (!s) {
		fputs("(null)", stdout);
		return;
	}
	if (n < 0)
		n = (long)strlen(s);
	long lim = n < max ? n : max;
	for (long i = 0; i < lim; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\\')
			fputs("\\\\", stdout);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	if (lim < n)
		printf("...(%ld bytes)", n);
}

static const char *conn_status_name(ConnStatusType s)
{
	switch (s) {
	case CONNECTION_OK: return "CONNECTION_OK";
	case CONNECTION_BAD: return "CONNECTION_BAD";
	default: return "CONNECTION_OTHER";
	}
}

// Prints " STATUS [rows=N [first row]] [cmd=...] [sqlstate=... message=...]"
// for r (or " NULL error=..." when r is NULL), then a newline.
static void print_result(PGconn *c, PGresult *r, bool show_cmd)
{
	if (!r) {
		fputs(" NULL error=", stdout);
		put_escaped(PQerrorMessage(c), -1, 400);
		putchar('\n');
		return;
	}
	ExecStatusType st = PQresultStatus(r);
	printf(" %s", PQresStatus(st));
	if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE) {
		printf(" rows=%d", PQntuples(r));
		if (PQntuples(r) > 0) {
			fputs(" [", stdout);
			for (int f = 0; f < PQnfields(r); f++) {
				if (f)
					putchar('|');
				if (PQgetisnull(r, 0, f))
					fputs("NULL", stdout);
				else
					put_escaped(PQgetvalue(r, 0, f), PQgetlength(r, 0, f), 60);
			}
			putchar(']');
		}
	}
	if (show_cmd && st == PGRES_COMMAND_OK && PQcmdStatus(r)[0])
		printf(" cmd=%s", PQcmdStatus(r));
	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		printf(" sqlstate=%s message=", state ? state : "(none)");
		put_escaped(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), -1, 200);
	}
	putchar('\n');
}

// One step: prints "STEP CALL:" and the result; counts a status that is not
// the expected one. Clears r.
static void step(const char *name, const char *call, PGconn *c, PGresult *r, ExecStatusType want, bool show_cmd)
{
	printf("%s %s:", name, call);
	print_result(c, r, show_cmd);
	if (!r || PQresultStatus(r) != want) {
		printf("%s UNEXPECTED (wanted %s)\n", name, PQresStatus(want));
		unexpected++;
	}
	PQclear(r);
}

// After a PQsend*: prints every PQgetResult until NULL ("STEP CALL result N:").
// Counts an unexpected status (the first result should be want).
static void drain(const char *name, const char *call, PGconn *c, ExecStatusType want)
{
	PGresult *r;
	int n = 0;
	while ((r = PQgetResult(c)) != NULL) {
		printf("%s %s result %d:", name, call, ++n);
		print_result(c, r, true);
		if (n == 1 && PQresultStatus(r) != want) {
			printf("%s UNEXPECTED (wanted %s)\n", name, PQresStatus(want));
			unexpected++;
		}
		PQclear(r);
		if (n > 100)
			break;
	}
	if (n == 0) {
		printf("%s %s: no result UNEXPECTED\n", name, call);
		unexpected++;
	}
}

static void sent(const char *name, const char *call, PGconn *c, int ok)
{
	if (!ok) {
		printf("%s %s: send failed error=", name, call);
		put_escaped(PQerrorMessage(c), -1, 400);
		printf("\n%s UNEXPECTED\n", name);
		unexpected++;
	}
}

static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *connect1(void)
{
	PGconn *c = PQconnectdb(conninfo);
	printf("connect PQconnectdb: %s\n", conn_status_name(PQstatus(c)));
	if (PQstatus(c) != CONNECTION_OK) {
		fputs("connect error=", stdout);
		put_escaped(PQerrorMessage(c), -1, 400);
		putchar('\n');
		fflush(stdout);
		PQfinish(c);
		exit(2);
	}
	PQsetNoticeProcessor(c, ignore_notice, NULL);
	return c;
}

static PGconn *connect2(void)
{
	// The connection string (a URL or key=value) expanded from dbname.
	const char *const keys[] = { "dbname", "application_name", NULL };
	const char *const vals[] = { conninfo, "pq-client-2", NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);
	printf("connect PQconnectdbParams: %s\n", conn_status_name(PQstatus(c)));
	if (PQstatus(c) != CONNECTION_OK) {
		fputs("connect error=", stdout);
		put_escaped(PQerrorMessage(c), -1, 400);
		putchar('\n');
		fflush(stdout);
		PQfinish(c);
		exit(2);
	}
	PQsetNoticeProcessor(c, ignore_notice, NULL);
	return c;
}

// ---------------------------------------------------------------- the script

static int run_all(void)
{
	PGconn *c = connect1();
	PGresult *r;

	step("S1", "PQexec CREATE TABLE", c,
	     PQexec(c, "CREATE TABLE IF NOT EXISTS pq_tasks (id serial PRIMARY KEY, title text NOT NULL, hours int NOT NULL)"),
	     PGRES_COMMAND_OK, true);
	// The row count left by an earlier run varies: no cmd= here.
	step("S2", "PQexec DELETE", c, PQexec(c, "DELETE FROM pq_tasks"), PGRES_COMMAND_OK, false);
	step("S3", "PQexec INSERT", c, PQexec(c, "INSERT INTO pq_tasks (title, hours) VALUES ('write tests', 3)"),
	     PGRES_COMMAND_OK, true);
	step("S4", "PQexec SELECT", c, PQexec(c, "SELECT title, hours FROM pq_tasks WHERE hours > 2"),
	     PGRES_TUPLES_OK, true);
	{
		const char *p[] = { "review code", "5" };
		step("S5", "PQexecParams INSERT", c,
		     PQexecParams(c, "INSERT INTO pq_tasks (title, hours) VALUES ($1, $2)", 2, NULL, p, NULL, NULL, 0),
		     PGRES_COMMAND_OK, true);
	}
	step("S6", "PQprepare by_hours", c,
	     PQprepare(c, "by_hours", "SELECT title FROM pq_tasks WHERE hours >= $1 ORDER BY id", 1, NULL),
	     PGRES_COMMAND_OK, true);
	{
		const char *p[] = { "1" };
		step("S7", "PQexecPrepared by_hours", c, PQexecPrepared(c, "by_hours", 1, p, NULL, NULL, 0),
		     PGRES_TUPLES_OK, true);
	}
	r = PQdescribePrepared(c, "by_hours");
	if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
		printf("S8 PQdescribePrepared by_hours: nparams=%d nfields=%d\n", PQnparams(r), PQnfields(r));
	step("S8", "PQdescribePrepared by_hours", c, r, PGRES_COMMAND_OK, true);
	step("S9", "PQexec BEGIN", c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, true);
	step("S10", "PQexec DECLARE", c, PQexec(c, "DECLARE pq_cur CURSOR FOR SELECT id, title FROM pq_tasks ORDER BY id"),
	     PGRES_COMMAND_OK, true);
	r = PQdescribePortal(c, "pq_cur");
	if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
		printf("S11 PQdescribePortal pq_cur: nfields=%d [%s|%s]\n", PQnfields(r), PQfname(r, 0),
		       PQnfields(r) > 1 ? PQfname(r, 1) : "");
	step("S11", "PQdescribePortal pq_cur", c, r, PGRES_COMMAND_OK, true);
	step("S12", "PQexec COMMIT", c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, true);

	sent("S13", "PQsendQuery", c, PQsendQuery(c, "SELECT count(*) FROM pq_tasks"));
	drain("S13", "PQsendQuery", c, PGRES_TUPLES_OK);
	{
		const char *p[] = { "write tests" };
		sent("S14", "PQsendQueryParams", c,
		     PQsendQueryParams(c, "SELECT title FROM pq_tasks WHERE title = $1", 1, NULL, p, NULL, NULL, 0));
		drain("S14", "PQsendQueryParams", c, PGRES_TUPLES_OK);
	}
	sent("S15", "PQsendPrepare by_title", c,
	     PQsendPrepare(c, "by_title", "SELECT hours FROM pq_tasks WHERE title = $1", 1, NULL));
	drain("S15", "PQsendPrepare by_title", c, PGRES_COMMAND_OK);
	{
		const char *p[] = { "review code" };
		sent("S16", "PQsendQueryPrepared by_title", c, PQsendQueryPrepared(c, "by_title", 1, p, NULL, NULL, 0));
		drain("S16", "PQsendQueryPrepared by_title", c, PGRES_TUPLES_OK);
	}

	// Pipeline mode: three statements, one sync.
	printf("pipeline PQenterPipelineMode: %d\n", PQenterPipelineMode(c));
	{
		const char *p1[] = { "8", "pipeline one" };
		const char *p2[] = { "1", "write tests" };
		const char *p3[] = { "0" };
		sent("P1", "PQsendQueryParams", c,
		     PQsendQueryParams(c, "INSERT INTO pq_tasks (hours, title) VALUES ($1, $2)", 2, NULL, p1, NULL, NULL, 0));
		sent("P2", "PQsendQueryParams", c,
		     PQsendQueryParams(c, "UPDATE pq_tasks SET hours = hours + $1 WHERE title = $2", 2, NULL, p2, NULL, NULL, 0));
		sent("P3", "PQsendQueryParams", c,
		     PQsendQueryParams(c, "SELECT title, hours FROM pq_tasks WHERE hours > $1 ORDER BY id", 1, NULL, p3, NULL, NULL, 0));
	}
	printf("pipeline PQpipelineSync: %d\n", PQpipelineSync(c));
	{
		static const ExecStatusType want[] = { PGRES_COMMAND_OK, PGRES_COMMAND_OK, PGRES_TUPLES_OK };
		int q = 0, nulls = 0, synced = 0;
		for (int i = 0; i < 50 && !synced; i++) {
			r = PQgetResult(c);
			if (!r) {
				printf("pipeline PQgetResult: NULL\n");
				if (++nulls > 5)
					break;
				continue;
			}
			nulls = 0;
			ExecStatusType st = PQresultStatus(r);
			if (st == PGRES_PIPELINE_SYNC) {
				printf("pipeline PQgetResult: %s\n", PQresStatus(st));
				synced = 1;
				PQclear(r);
				break;
			}
			char name[16];
			snprintf(name, sizeof(name), "P%d", q + 1);
			printf("%s PQgetResult:", name);
			print_result(c, r, true);
			if (q >= 3 || st != want[q]) {
				printf("%s UNEXPECTED\n", name);
				unexpected++;
			}
			q++;
			PQclear(r);
		}
		if (!synced || q != 3) {
			printf("pipeline UNEXPECTED (synced=%d results=%d)\n", synced, q);
			unexpected++;
		}
	}
	printf("pipeline PQexitPipelineMode: %d\n", PQexitPipelineMode(c));

	step("S17", "PQexec missing_table", c, PQexec(c, "SELECT * FROM missing_table"), PGRES_FATAL_ERROR, true);
	step("S18", "PQexec CREATE FUNCTION", c,
	     PQexec(c, "CREATE OR REPLACE FUNCTION get_metrics(h int) "
		       "RETURNS TABLE(bucket int, tasks bigint, total_hours bigint) LANGUAGE sql AS $$ "
		       "SELECT g, count(t.id), coalesce(sum(t.hours), 0) FROM generate_series(1, h) g "
		       "LEFT JOIN pq_tasks t ON t.hours = g GROUP BY g ORDER BY g $$"),
	     PGRES_COMMAND_OK, true);
	step("S19", "PQexec SELECT get_metrics", c, PQexec(c, "SELECT * FROM get_metrics(24)"), PGRES_TUPLES_OK, true);

	PGconn *c2 = connect2();
	step("S20", "PQexec SELECT (connection 2)", c2, PQexec(c2, "SELECT title FROM pq_tasks ORDER BY id DESC"),
	     PGRES_TUPLES_OK, true);
	PQfinish(c2);
	printf("finish PQfinish: connection 2\n");
	PQfinish(c);
	printf("finish PQfinish: connection 1\n");
	printf("done: %d unexpected\n", unexpected);
	return unexpected ? 1 : 0;
}

// ---------------------------------------------------------------- bad input

// show: "LABEL: STATUS ... error=PQerrorMessage" for a PGresult-returning call.
static void show(const char *label, PGconn *c, PGresult *r)
{
	printf("%s:", label);
	print_result(c, r, true);
	if (r) {
		fputs("  conn error=", stdout);
		put_escaped(PQerrorMessage(c), -1, 400);
		putchar('\n');
	}
	PQclear(r);
}

static void show_int(const char *label, PGconn *c, int v)
{
	printf("%s: %d error=", label, v);
	put_escaped(PQerrorMessage(c), -1, 400);
	putchar('\n');
}

// Every PQgetResult until NULL (bounded).
static void show_results(const char *label, PGconn *c)
{
	PGresult *r;
	int n = 0;
	while (n < 20 && (r = PQgetResult(c)) != NULL) {
		char l[128];
		snprintf(l, sizeof(l), "%s result %d", label, ++n);
		show(l, c, r);
	}
	printf("%s: %d result(s)\n", label, n);
}

static char *big_literal_query(size_t n)
{
	// SELECT '<n bytes>' AS big
	char *q = malloc(n + 32);
	if (!q) {
		perror("malloc");
		exit(3);
	}
	char *p = q;
	p += sprintf(p, "SELECT '");
	for (size_t i = 0; i < n; i++)
		*p++ = (char)('a' + i % 26);
	strcpy(p, "' AS big");
	return q;
}

static int case_empty(PGconn *c)
{
	show("PQexec \"\"", c, PQexec(c, ""));
	show("PQexec \" \"", c, PQexec(c, "  "));
	show("PQexec \";\"", c, PQexec(c, ";"));
	show("PQexec comment only", c, PQexec(c, "-- nothing\n"));
	show("PQexecParams \"\"", c, PQexecParams(c, "", 0, NULL, NULL, NULL, NULL, 0));
	show("PQprepare \"\"", c, PQprepare(c, "empty", "", 0, NULL));
	show("PQexecPrepared empty", c, PQexecPrepared(c, "empty", 0, NULL, NULL, NULL, 0));
	show_int("PQsendQuery \"\"", c, PQsendQuery(c, ""));
	show_results("PQsendQuery \"\"", c);
	return 0;
}

static int case_null_query(PGconn *c)
{
	show("PQexec NULL", c, PQexec(c, NULL));
	show("PQexecParams NULL", c, PQexecParams(c, NULL, 0, NULL, NULL, NULL, NULL, 0));
	show("PQprepare NULL", c, PQprepare(c, "n", NULL, 0, NULL));
	show("PQprepare NULL name", c, PQprepare(c, NULL, "SELECT 1", 0, NULL));
	show("PQexecPrepared NULL name", c, PQexecPrepared(c, NULL, 0, NULL, NULL, NULL, 0));
	show("PQexecPrepared unknown", c, PQexecPrepared(c, "no_such_statement", 0, NULL, NULL, NULL, 0));
	show("PQdescribePrepared unknown", c, PQdescribePrepared(c, "no_such_statement"));
	show("PQdescribePortal unknown", c, PQdescribePortal(c, "no_such_portal"));
	show_int("PQsendQuery NULL", c, PQsendQuery(c, NULL));
	show_results("PQsendQuery NULL", c);
	show_int("PQsendQueryParams NULL", c, PQsendQueryParams(c, NULL, 0, NULL, NULL, NULL, NULL, 0));
	show_results("PQsendQueryParams NULL", c);
	show_int("PQsendPrepare NULL", c, PQsendPrepare(c, "n2", NULL, 0, NULL));
	show_results("PQsendPrepare NULL", c);
	show("PQexec after", c, PQexec(c, "SELECT 1"));
	return 0;
}

static int case_null_conn(PGconn *c)
{
	(void)c;
	const char *p[] = { "1" };
	show("PQexec(NULL)", NULL, PQexec(NULL, "SELECT 1"));
	show("PQexecParams(NULL)", NULL, PQexecParams(NULL, "SELECT $1", 1, NULL, p, NULL, NULL, 0));
	show("PQprepare(NULL)", NULL, PQprepare(NULL, "s", "SELECT 1", 0, NULL));
	show("PQexecPrepared(NULL)", NULL, PQexecPrepared(NULL, "s", 0, NULL, NULL, NULL, 0));
	show("PQdescribePrepared(NULL)", NULL, PQdescribePrepared(NULL, "s"));
	show("PQdescribePortal(NULL)", NULL, PQdescribePortal(NULL, "p"));
	show_int("PQsendQuery(NULL)", NULL, PQsendQuery(NULL, "SELECT 1"));
	show_int("PQsendQueryParams(NULL)", NULL, PQsendQueryParams(NULL, "SELECT $1", 1, NULL, p, NULL, NULL, 0));
	show_int("PQsendPrepare(NULL)", NULL, PQsendPrepare(NULL, "s", "SELECT 1", 0, NULL));
	show_int("PQsendQueryPrepared(NULL)", NULL, PQsendQueryPrepared(NULL, "s", 0, NULL, NULL, NULL, 0));
	show("PQgetResult(NULL)", NULL, PQgetResult(NULL));
	show_int("PQenterPipelineMode(NULL)", NULL, PQenterPipelineMode(NULL));
	show_int("PQpipelineSync(NULL)", NULL, PQpipelineSync(NULL));
	show_int("PQexitPipelineMode(NULL)", NULL, PQexitPipelineMode(NULL));
	PQfinish(NULL);
	printf("PQfinish(NULL): returned\n");
	return 0;
}

static int case_big(PGconn *c)
{
	char *q = big_literal_query(1 << 20);
	PGresult *r = PQexec(c, q);
	printf("PQexec 1 MB literal: %s", PQresStatus(PQresultStatus(r)));
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		printf(" rows=%d length=%d first=%.10s\n", PQntuples(r), PQgetlength(r, 0, 0), PQgetvalue(r, 0, 0));
	else
		printf(" error=%s\n", PQerrorMessage(c));
	PQclear(r);
	// The same text as a parameter, and a 1 MB text with $1 in it.
	const char *p[] = { q + 8 };
	q[8 + (1 << 20)] = '\0';
	r = PQexecParams(c, "SELECT length($1), md5($1)", 1, NULL, p, NULL, NULL, 0);
	printf("PQexecParams 1 MB parameter:");
	print_result(c, r, true);
	PQclear(r);
	free(q);
	// A 1 MB statement text that is mostly a comment, with a parameter.
	size_t n = 1 << 20;
	char *q2 = malloc(n + 64);
	char *w = q2 + sprintf(q2, "SELECT $1::int + 1 /* ");
	memset(w, 'c', n);
	strcpy(w + n, " */");
	const char *p2[] = { "41" };
	r = PQexecParams(c, q2, 1, NULL, p2, NULL, NULL, 0);
	printf("PQexecParams 1 MB comment:");
	print_result(c, r, true);
	PQclear(r);
	show_int("PQsendQuery 1 MB comment", c, PQsendQuery(c, q2));
	show_results("PQsendQuery 1 MB comment (no params: error)", c);
	free(q2);
	return 0;
}

static int case_invalid_utf8(PGconn *c)
{
	show("PQexec invalid UTF-8 literal", c, PQexec(c, "SELECT 'a\xff\xfe" "b' AS bad"));
	show("PQexec invalid UTF-8 identifier", c, PQexec(c, "SELECT 1 AS \"\xc3\x28\""));
	show("PQexec truncated UTF-8 at end", c, PQexec(c, "SELECT 'x' AS \xe2\x82"));
	const char *p[] = { "\xff\xfe\xfd" };
	show("PQexecParams invalid UTF-8 parameter", c, PQexecParams(c, "SELECT $1::text", 1, NULL, p, NULL, NULL, 0));
	show("PQexec after", c, PQexec(c, "SELECT 'ok' AS after"));
	return 0;
}

static int case_unterminated(PGconn *c)
{
	show("PQexec unterminated quote", c, PQexec(c, "SELECT 'abc"));
	show("PQexec unterminated E quote", c, PQexec(c, "SELECT E'abc\\'"));
	show("PQexec unterminated dollar quote", c, PQexec(c, "SELECT $tag$abc"));
	show("PQexec unterminated comment", c, PQexec(c, "SELECT 1 /* abc /* nested */"));
	show("PQexec unterminated identifier", c, PQexec(c, "SELECT \"abc"));
	show("PQexec lone dollar", c, PQexec(c, "SELECT $"));
	show("PQexec after", c, PQexec(c, "SELECT 'ok' AS after"));
	return 0;
}

static int case_multi(PGconn *c)
{
	show("PQexec two statements", c, PQexec(c, "SELECT 1 AS one; SELECT 2 AS two"));
	show("PQexec statement then error", c, PQexec(c, "SELECT 1; SELECT * FROM missing_table; SELECT 3"));
	show_int("PQsendQuery two statements", c, PQsendQuery(c, "SELECT 1 AS one; SELECT 2 AS two"));
	show_results("PQsendQuery two statements", c);
	return 0;
}

static int case_copy(PGconn *c)
{
	PGresult *r = PQexec(c, "COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT");
	printf("PQexec COPY TO STDOUT: %s\n", PQresStatus(PQresultStatus(r)));
	PQclear(r);
	char *buf;
	int n;
	while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
		printf("  copy data: ");
		put_escaped(buf, n, 100);
		putchar('\n');
		PQfreemem(buf);
	}
	printf("  PQgetCopyData end: %d\n", n);
	show_results("COPY TO STDOUT", c);
	show("PQexec CREATE TEMP TABLE", c, PQexec(c, "CREATE TEMP TABLE pq_copy (a int, b text)"));
	r = PQexec(c, "COPY pq_copy FROM STDIN");
	printf("PQexec COPY FROM STDIN: %s\n", PQresStatus(PQresultStatus(r)));
	PQclear(r);
	printf("  PQputCopyData: %d\n", PQputCopyData(c, "1\tone\n2\ttwo\n", 12));
	printf("  PQputCopyEnd: %d\n", PQputCopyEnd(c, NULL));
	show_results("COPY FROM STDIN", c);
	show("PQexec SELECT pq_copy", c, PQexec(c, "SELECT count(*), string_agg(b, ',' ORDER BY a) FROM pq_copy"));
	return 0;
}

static int case_terminated(PGconn *c)
{
	PGconn *killer = PQconnectdb(conninfo);
	if (PQstatus(killer) != CONNECTION_OK) {
		printf("second connection: %s\n", conn_status_name(PQstatus(killer)));
		PQfinish(killer);
		return 2;
	}
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", PQbackendPID(c));
	const char *p[] = { pid };
	PGresult *r = PQexecParams(killer, "SELECT pg_terminate_backend($1::int)", 1, NULL, p, NULL, NULL, 0);
	printf("pg_terminate_backend from a second connection:");
	print_result(killer, r, true);
	PQclear(r);
	// Wait (bounded, 10 s) until the backend is gone, so what the first
	// connection sees next does not depend on timing.
	int gone = 0;
	for (int i = 0; i < 200 && !gone; i++) {
		r = PQexecParams(killer, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1, NULL, p, NULL, NULL, 0);
		gone = r && PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
		PQclear(r);
		if (!gone)
			usleep(50000);
	}
	printf("backend gone: %s\n", gone ? "yes" : "no");
	PQfinish(killer);
	show("PQexec on the terminated connection", c, PQexec(c, "SELECT 1"));
	printf("PQstatus: %s\n", conn_status_name(PQstatus(c)));
	show("PQexec again", c, PQexec(c, "SELECT 2"));
	const char *p2[] = { "3" };
	show("PQexecParams again", c, PQexecParams(c, "SELECT $1::int", 1, NULL, p2, NULL, NULL, 0));
	show_int("PQsendQuery again", c, PQsendQuery(c, "SELECT 4"));
	show_results("PQsendQuery again", c);
	return 0;
}

// ---------------------------------------------------------------- threads

// libpq lets a connection move between threads as long as one uses it at a
// time: the agent keeps a connection's state across threads, and a thread
// remembers the states it used last, which must never outlive their
// connection (one finished on another thread, then one made at the same
// address) nor be taken for another's.

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, arg) != 0) {
		perror("pthread_create");
		exit(3);
	}
	pthread_join(t, NULL);
}

static void *thread_send(void *arg)
{
	show_int("thread PQsendQuery", arg, PQsendQuery(arg, "SELECT 11 AS handed_over"));
	return NULL;
}

static void *thread_results(void *arg)
{
	show_results("thread PQgetResult", arg);
	return NULL;
}

static void *thread_exec(void *arg)
{
	show("thread PQexec", arg, PQexec(arg, "SELECT 12 AS other_thread"));
	return NULL;
}

static void *thread_finish(void *arg)
{
	PQfinish(arg);
	printf("thread PQfinish: returned\n");
	return NULL;
}

// A connection to database db (NULL: the one of conninfo).
static PGconn *connect_db(const char *db)
{
	const char *const keys[] = { "dbname", "dbname", NULL };
	const char *const vals[] = { conninfo, db, NULL };
	PGconn *c = db ? PQconnectdbParams(keys, vals, 1) : PQconnectdb(conninfo);
	printf("connect %s: %s\n", db ? db : "default", conn_status_name(PQstatus(c)));
	if (PQstatus(c) != CONNECTION_OK) {
		PQfinish(c);
		exit(2);
	}
	PQsetNoticeProcessor(c, ignore_notice, NULL);
	return c;
}

static int case_threads(PGconn *c)
{
	// one connection, used by three threads in turn, then by this one
	run_thread(thread_send, c);
	run_thread(thread_results, c);
	run_thread(thread_exec, c);
	show("main PQexec", c, PQexec(c, "SELECT 13 AS back_on_main"));
	// used here, finished on another thread, made again here (malloc gives
	// the same address back more often than not), in another database
	for (int i = 0; i < 4; i++) {
		PGconn *d = connect_db(i % 2 ? "postgres" : NULL);
		show("reconnected PQexec", d, PQexec(d, i % 2 ? "SELECT 21 AS in_postgres" : "SELECT 22 AS in_default"));
		run_thread(thread_finish, d);
	}
	// more connections on one thread than it remembers, in turn
	PGconn *m[6];
	for (int i = 0; i < 6; i++)
		m[i] = connect_db(i % 2 ? "postgres" : NULL);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 6; i++) {
			char q[64];
			snprintf(q, sizeof q, "SELECT %d AS conn_%d", i, i);
			show(q, m[i], PQexec(m[i], q));
		}
	for (int i = 0; i < 6; i++)
		PQfinish(m[i]);
	return 0;
}

struct bad_case {
	const char *name;
	int (*fn)(PGconn *);
};

static const struct bad_case cases[] = {
	{ "empty", case_empty },
	{ "null-query", case_null_query },
	{ "null-conn", case_null_conn },
	{ "big", case_big },
	{ "invalid-utf8", case_invalid_utf8 },
	{ "unterminated", case_unterminated },
	{ "multi", case_multi },
	{ "copy", case_copy },
	{ "terminated", case_terminated },
	{ "threads", case_threads },
};

int main(int argc, char **argv)
{
	const char *which = "all";
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
			which = argv[++i];
		} else if (strcmp(argv[i], "--list") == 0) {
			puts("all");
			for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
				puts(cases[k].name);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "usage: pq-client [--case NAME | --list] [CONNINFO]\n");
			return 64;
		} else {
			break;
		}
	}
	conninfo = i < argc ? argv[i] : getenv("DATABASE_URL");
	if (!conninfo || !*conninfo) {
		fprintf(stderr, "pq-client: no connection string (argument or $DATABASE_URL)\n");
		return 64;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(which, "all") == 0)
		return run_all();
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		if (strcmp(which, cases[k].name) == 0) {
			printf("case %s\n", which);
			PGconn *c = connect1();
			int rc = cases[k].fn(c);
			PQfinish(c);
			printf("case %s: done\n", which);
			return rc;
		}
	}
	fprintf(stderr, "pq-client: unknown case '%s' (--list)\n", which);
	return 64;
}
