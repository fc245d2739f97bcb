/* Unit tests for agent/sql.c: query summaries, operation/collection names and literal sanitising as tables, fed as exactly-sized heap copies. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sql.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Copies s into an exactly-sized heap buffer, so a read past len trips
 * ASan or valgrind; the functions get (pointer, length), never a NUL. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

static void summarize(const char *q, size_t n, struct sql_summary *out)
{
	char *c = exact_copy(q, n);

	memset(out, 0x5a, sizeof(*out));  /* everything must be (re)written */
	sql_summarize(c, n, out);
	free(c);
	ck_assert_uint_lt(out->summary_len, SQL_SUMMARY_MAX);
	ck_assert_uint_eq(strlen(out->summary), out->summary_len);
	ck_assert_uint_eq(strlen(out->operation), out->operation_len);
	ck_assert_uint_eq(strlen(out->collection), out->collection_len);
	ck_assert_uint_eq(strlen(out->procedure), out->procedure_len);
}

/* fn (sql_sanitize or sql_sanitize_message) on an exactly-sized copy of q:
 * trunc always written, the output NUL-terminated within cap. */
static size_t checked(size_t (*fn)(const char *, size_t, char *, size_t, bool *),
		      const char *q, size_t n, char *out, size_t cap, bool *trunc)
{
	char *c = exact_copy(q, n);
	size_t r;

	*trunc = !*trunc;  /* must always be written */
	r = fn(c, n, out, cap, trunc);
	free(c);
	if (cap) {
		ck_assert_uint_lt(r, cap);
		ck_assert_uint_eq(strlen(out), r);
	}
	return r;
}

static size_t sanitize(const char *q, size_t n, char *out, size_t cap, bool *trunc)
{
	return checked(sql_sanitize, q, n, out, cap, trunc);
}

/* san (sanitize or sanitize_message) of in, given room: want, whole, never
 * longer than in. */
static void check_whole(size_t (*san)(const char *, size_t, char *, size_t, bool *),
			const char *in, const char *want)
{
	char out[1024];
	bool trunc = false;
	size_t n = san(in, strlen(in), out, sizeof(out), &trunc);

	ck_assert_msg(strcmp(out, want) == 0, "in [%s]: [%s], want [%s]", in, out, want);
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_uint_le(n, strlen(in));
	ck_assert(!trunc);
}

/* san (sanitize or sanitize_message) of in is full; at every cap from 1 to
 * two past it: a prefix of full, truncated exactly when it did not fit,
 * never a cut inside a UTF-8 character, at most a character given back, and
 * never containing the text never (unless NULL). */
static void check_caps(size_t (*san)(const char *, size_t, char *, size_t, bool *),
		       const char *in, const char *full, const char *never)
{
	size_t fn = strlen(full);
	char out[512];
	bool trunc = false;

	check_whole(san, in, full);
	ck_assert_uint_le(fn + 2, sizeof(out));
	for (size_t cap = 1; cap <= fn + 2; cap++) {
		size_t n = san(in, strlen(in), out, cap, &trunc);

		ck_assert_int_eq(memcmp(out, full, n), 0);
		ck_assert(trunc == (cap <= fn));
		if (n < fn)
			ck_assert_msg(((unsigned char)full[n] & 0xC0) != 0x80, "cap %zu cuts a character", cap);
		if (trunc)
			ck_assert_uint_ge(n + 4, cap - 1);  /* at most a character given back */
		if (never)
			ck_assert(strstr(out, never) == NULL);
	}
}

/* ------------------------------------------------------------------ */
/* Summaries                                                           */
/* ------------------------------------------------------------------ */

struct sum_case {
	const char *query;
	const char *summary;
	const char *operation;
	const char *collection;
};

static const struct sum_case sum_cases[] = {
	/* the examples of the brief and of the semantic conventions */
	{ "SELECT * FROM get_web_crawl_metrics($1)", "SELECT get_web_crawl_metrics", "SELECT", "" },
	{ "SELECT get_web_crawl_metrics(24)", "SELECT get_web_crawl_metrics", "SELECT", "" },
	{ "INSERT INTO web_crawl_tasks (url) VALUES ($1) RETURNING id", "INSERT web_crawl_tasks", "INSERT", "web_crawl_tasks" },
	{ "UPDATE web_crawl_tasks SET status = $1, updated_at = now() WHERE id = $2", "UPDATE web_crawl_tasks", "UPDATE", "web_crawl_tasks" },
	{ "SELECT 1", "SELECT", "SELECT", "" },
	{ "select * from public.\"Tasks\" t where t.id = $1", "SELECT public.Tasks", "SELECT", "public.Tasks" },
	{ "SELECT *\nFROM   wuser_table\nWHERE  username = ?", "SELECT wuser_table", "SELECT", "wuser_table" },
	{ "INSERT INTO shipping_details (order_id, address) SELECT order_id, address FROM orders WHERE order_id = ?",
	  "INSERT shipping_details SELECT orders", "INSERT", "" },
	{ "SELECT * FROM songs, artists WHERE songs.artist_id = artists.id", "SELECT songs artists", "SELECT", "" },
	{ "SELECT order_date FROM (SELECT * FROM orders o JOIN customers c ON o.customer_id = c.customer_id)",
	  "SELECT SELECT orders customers", "SELECT", "" },
	{ "SELECT * FROM (SELECT * FROM t) s", "SELECT SELECT t", "SELECT", "t" },
	/* pgbench (simple and extended protocol) and psql */
	{ "SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "SELECT pgbench_accounts", "SELECT", "pgbench_accounts" },
	{ "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;", "UPDATE pgbench_accounts", "UPDATE", "pgbench_accounts" },
	{ "UPDATE pgbench_tellers SET tbalance = tbalance + 4711 WHERE tid = 3;", "UPDATE pgbench_tellers", "UPDATE", "pgbench_tellers" },
	{ "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;", "UPDATE pgbench_branches", "UPDATE", "pgbench_branches" },
	{ "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
	  "INSERT pgbench_history", "INSERT", "pgbench_history" },
	{ "BEGIN;", "BEGIN", "BEGIN", "" },
	{ "END;", "END", "END", "" },
	{ "COMMIT", "COMMIT", "COMMIT", "" },
	{ "rollback", "ROLLBACK", "ROLLBACK", "" },
	{ "START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "START", "START", "" },
	{ "SAVEPOINT sp1", "SAVEPOINT", "SAVEPOINT", "" },
	{ "vacuum analyze pgbench_branches", "VACUUM pgbench_branches", "VACUUM", "pgbench_branches" },
	{ "truncate pgbench_history", "TRUNCATE pgbench_history", "TRUNCATE", "pgbench_history" },
	{ "select count(*) from pgbench_branches", "SELECT pgbench_branches", "SELECT", "pgbench_branches" },
	{ "SET search_path = public, pg_catalog", "SET", "SET", "" },
	{ "SHOW server_version", "SHOW", "SHOW", "" },
	{ "RESET ALL", "RESET", "RESET", "" },
	/* joins, aliases, subqueries, set operations */
	{ "SELECT o.id, c.name FROM orders o LEFT OUTER JOIN customers AS c ON c.id = o.cid JOIN items i USING (oid) WHERE o.id = $1",
	  "SELECT orders customers items", "SELECT", "" },
	{ "SELECT * FROM a CROSS JOIN LATERAL (SELECT * FROM b WHERE b.x = a.x) s", "SELECT a SELECT b", "SELECT", "" },
	{ "SELECT * FROM t1 WHERE x IN (SELECT y FROM t2) ORDER BY 1 LIMIT 10", "SELECT t1 SELECT t2", "SELECT", "" },
	{ "SELECT a FROM t UNION ALL SELECT b FROM u", "SELECT t SELECT u", "SELECT", "" },
	{ "(SELECT 1) UNION (SELECT 2)", "SELECT SELECT", "SELECT", "" },
	{ "SELECT DISTINCT ON (a) a, b FROM s.t ORDER BY a, b DESC FOR UPDATE", "SELECT s.t", "SELECT", "s.t" },
	{ "SELECT now()", "SELECT now", "SELECT", "" },
	{ "SELECT pg_catalog.set_config('search_path', '', false)", "SELECT pg_catalog.set_config", "SELECT", "" },
	{ "SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END FROM t", "SELECT t", "SELECT", "t" },
	{ "SELECT EXISTS (SELECT 1 FROM t WHERE id = $1)", "SELECT SELECT t", "SELECT", "t" },
	{ "SELECT t.* FROM t", "SELECT t", "SELECT", "t" },
	{ "SELECT * FROM t1 t JOIN t1 u ON t.p = u.id", "SELECT t1 t1", "SELECT", "t1" },
	{ "SELECT * FROM \"My \"\"Table\"\"\"", "SELECT My \"Table\"", "SELECT", "My \"Table\"" },
	{ "SELECT * FROM U&\"d\\0061t\\+000061\"", "SELECT d\\0061t\\+000061", "SELECT", "d\\0061t\\+000061" },
	{ "SELECT * FROM generate_series(1, 10) g", "SELECT generate_series", "SELECT", "" },
	{ "SELECT * FROM ONLY parent", "SELECT parent", "SELECT", "parent" },
	/* WITH */
	{ "WITH r AS (SELECT * FROM orders WHERE d > $1) SELECT * FROM r JOIN customers c ON c.id = r.cid",
	  "SELECT orders SELECT customers", "SELECT", "" },
	{ "WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT sum(n) FROM t",
	  "SELECT SELECT", "SELECT", "" },
	{ "WITH moved AS MATERIALIZED (DELETE FROM queue WHERE id = $1 RETURNING *), x AS (SELECT 1) INSERT INTO done SELECT * FROM moved",
	  "DELETE queue SELECT INSERT done SELECT", "INSERT", "" },
	{ "with u as (update jobs set state = 'x' where id = 1 returning *) select * from u",
	  "UPDATE jobs SELECT", "SELECT", "jobs" },
	/* DML details */
	{ "DELETE FROM sessions WHERE expires < now()", "DELETE sessions", "DELETE", "sessions" },
	{ "delete from only t using u where t.id = u.id", "DELETE t u", "DELETE", "" },
	{ "UPDATE t SET x = u.x FROM u WHERE t.id = u.id", "UPDATE t u", "UPDATE", "" },
	{ "UPDATE t SET x = (SELECT max(y) FROM u)", "UPDATE t SELECT u", "UPDATE", "" },
	{ "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", "INSERT kv", "INSERT", "kv" },
	{ "INSERT INTO app.events AS e DEFAULT VALUES", "INSERT app.events", "INSERT", "app.events" },
	{ "MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET n = s.n + d.n WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.n)",
	  "MERGE stock deliveries", "MERGE", "" },
	{ "VALUES (1, 'a'), (2, 'b')", "VALUES", "VALUES", "" },
	/* DDL and utility statements */
	{ "CREATE TABLE IF NOT EXISTS web_crawl_tasks (id bigserial PRIMARY KEY, url text NOT NULL, created_at timestamptz DEFAULT now())",
	  "CREATE TABLE web_crawl_tasks", "CREATE TABLE", "web_crawl_tasks" },
	{ "create temporary table tmp_x (a int)", "CREATE TABLE tmp_x", "CREATE TABLE", "tmp_x" },
	{ "CREATE TABLE copy_t AS SELECT * FROM t", "CREATE TABLE copy_t SELECT t", "CREATE TABLE", "" },
	{ "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_url ON web_crawl_tasks (url)", "CREATE INDEX idx_url", "CREATE INDEX", "" },
	{ "CREATE INDEX ON t (a)", "CREATE INDEX t", "CREATE INDEX", "t" },
	{ "CREATE OR REPLACE VIEW v_active AS SELECT * FROM users WHERE active", "CREATE VIEW v_active SELECT users", "CREATE VIEW", "" },
	{ "CREATE MATERIALIZED VIEW mv AS SELECT 1", "CREATE MATERIALIZED VIEW mv SELECT", "CREATE MATERIALIZED VIEW", "mv" },
	{ "CREATE OR REPLACE FUNCTION get_web_crawl_metrics(hours int) RETURNS TABLE (n bigint) AS $$ SELECT count(*) FROM web_crawl_tasks $$ LANGUAGE sql",
	  "CREATE FUNCTION get_web_crawl_metrics", "CREATE FUNCTION", "" },
	{ "CREATE EXTENSION IF NOT EXISTS pgcrypto", "CREATE EXTENSION pgcrypto", "CREATE EXTENSION", "" },
	{ "CREATE SCHEMA app", "CREATE SCHEMA app", "CREATE SCHEMA", "" },
	{ "DROP TABLE IF EXISTS a, b CASCADE", "DROP TABLE a b", "DROP TABLE", "" },
	{ "DROP TABLE web_crawl_tasks", "DROP TABLE web_crawl_tasks", "DROP TABLE", "web_crawl_tasks" },
	{ "DROP FUNCTION f(int), g(text)", "DROP FUNCTION f g", "DROP FUNCTION", "" },
	{ "ALTER TABLE ONLY public.t ADD COLUMN c int", "ALTER TABLE public.t", "ALTER TABLE", "public.t" },
	{ "ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM", "ALTER SYSTEM", "" },
	{ "TRUNCATE TABLE ONLY a, b RESTART IDENTITY", "TRUNCATE a b", "TRUNCATE", "" },
	{ "COPY web_crawl_tasks (url) FROM STDIN WITH (FORMAT csv)", "COPY web_crawl_tasks", "COPY", "web_crawl_tasks" },
	{ "COPY (SELECT * FROM t WHERE x > 1) TO STDOUT", "COPY SELECT t", "COPY", "t" },
	{ "CALL refresh_stats($1, 'x')", "CALL refresh_stats", "CALL", "" },
	{ "VACUUM", "VACUUM", "VACUUM", "" },
	{ "VACUUM (VERBOSE, ANALYZE) big_table", "VACUUM big_table", "VACUUM", "big_table" },
	{ "ANALYZE VERBOSE t (a, b), u", "ANALYZE t u", "ANALYZE", "" },
	{ "ANALYZE", "ANALYZE", "ANALYZE", "" },
	{ "EXPLAIN SELECT * FROM t", "EXPLAIN SELECT t", "EXPLAIN", "t" },
	{ "EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", "EXPLAIN UPDATE t", "EXPLAIN", "t" },
	{ "LOCK TABLE accounts IN SHARE MODE", "LOCK accounts", "LOCK", "accounts" },
	{ "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", "REFRESH MATERIALIZED VIEW mv", "REFRESH MATERIALIZED VIEW", "mv" },
	{ "LISTEN jobs", "LISTEN", "LISTEN", "" },
	{ "DO $$BEGIN PERFORM 1; END$$", "DO", "DO", "" },
	/* comments, whitespace, case */
	{ "  \n\t-- leading comment\n/* block /* nested */ */ SeLeCt id FROM Users", "SELECT Users", "SELECT", "Users" },
	{ "/*traceparent='00-x'*/ SELECT 1", "SELECT", "SELECT", "" },
	{ "SELECT a -- FROM fake\nFROM real_t", "SELECT real_t", "SELECT", "real_t" },
	{ "SELECT 'FROM x' FROM y", "SELECT y", "SELECT", "y" },
	{ "SELECT $$ FROM x $$ FROM y", "SELECT y", "SELECT", "y" },
	/* unrecognisable */
	{ "", "", "", "" },
	{ "   -- only a comment", "", "", "" },
	{ "hello world", "", "", "" },
	{ "42", "", "", "" },
	{ "'SELECT 1'", "", "", "" },
	{ "/* unterminated SELECT 1", "", "", "" },
	{ ";;SELECT 1", "SELECT", "SELECT", "" },
};

START_TEST(test_summary_table)
{
	const struct sum_case *c = &sum_cases[_i];
	struct sql_summary s;

	summarize(c->query, strlen(c->query), &s);
	ck_assert_msg(strcmp(s.summary, c->summary) == 0, "query [%s]: summary [%s], want [%s]",
		      c->query, s.summary, c->summary);
	ck_assert_msg(strcmp(s.operation, c->operation) == 0, "query [%s]: operation [%s], want [%s]",
		      c->query, s.operation, c->operation);
	ck_assert_msg(strcmp(s.collection, c->collection) == 0, "query [%s]: collection [%s], want [%s]",
		      c->query, s.collection, c->collection);
}
END_TEST

struct multi_case {
	const char *query;
	bool multiple;
};

static const struct multi_case multi_cases[] = {
	{ "SELECT 1", false },
	{ "SELECT 1;", false },
	{ "SELECT 1;  -- done\n", false },
	{ "BEGIN; UPDATE t SET a = 1; COMMIT;", true },
	{ "SELECT ';' FROM t", false },
	{ "SELECT 1; SELECT 2", true },
	{ "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", false },
	{ "SET x = 1; SELECT 1", true },
};

START_TEST(test_multiple_statements)
{
	const struct multi_case *c = &multi_cases[_i];
	struct sql_summary s;

	summarize(c->query, strlen(c->query), &s);
	ck_assert_msg(s.multiple_statements == c->multiple, "query [%s]", c->query);
}
END_TEST

START_TEST(test_call_procedure)
{
	struct sql_summary s;
	const char *q = "call \"Billing\".close_month($1)";

	summarize(q, strlen(q), &s);
	ck_assert_str_eq(s.summary, "CALL Billing.close_month");
	ck_assert_str_eq(s.procedure, "Billing.close_month");
	q = "SELECT * FROM t";
	summarize(q, strlen(q), &s);
	ck_assert_uint_eq(s.procedure_len, 0);
}
END_TEST

/* The summary is capped at SQL_SUMMARY_MAX - 1 bytes with whole names. */
START_TEST(test_summary_cap)
{
	char q[8192];
	size_t n = 0;
	struct sql_summary s;

	n += (size_t)sprintf(q + n, "SELECT * FROM ");
	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(q + n, "%stable_number_%03d", i ? ", " : "", i);
	summarize(q, n, &s);
	ck_assert_uint_le(s.summary_len, SQL_SUMMARY_MAX - 1);
	ck_assert_uint_gt(s.summary_len, SQL_SUMMARY_MAX - 1 - 17);
	/* ends with a whole name */
	ck_assert_int_eq(strncmp(s.summary + s.summary_len - 16, "table_number_", 13), 0);
	ck_assert(s.summary[s.summary_len - 17] == ' ');
	ck_assert_str_eq(s.operation, "SELECT");
	ck_assert_uint_eq(s.collection_len, 0);

	/* a name too long for db.collection.name is still summarised */
	memset(q, 0, sizeof(q));
	n = (size_t)sprintf(q, "SELECT * FROM ");
	memset(q + n, 'x', 200);
	n += 200;
	summarize(q, n, &s);
	ck_assert_uint_eq(s.summary_len, 7 + 200);
	ck_assert_uint_eq(s.collection_len, 0);
}
END_TEST

/* Only the first 64 KiB are looked at, and a prefix of any length works. */
START_TEST(test_summary_prefixes)
{
	const char *q = "WITH r AS (SELECT * FROM \"a b\" WHERE x = 'it''s') UPDATE t SET y = $$z$$ FROM r; SELECT 1";
	size_t len = strlen(q);
	struct sql_summary s;

	for (size_t n = 0; n <= len; n++)
		summarize(q, n, &s);
	summarize(q, len, &s);
	ck_assert_str_eq(s.summary, "SELECT a b UPDATE t");
	ck_assert_str_eq(s.operation, "UPDATE");
	ck_assert(s.multiple_statements);

	size_t big = 1024 * 1024;
	char *b = malloc(big);

	ck_assert_ptr_nonnull(b);
	memset(b, ' ', big);
	memcpy(b + big - 8, "SELECT 1", 8);
	summarize(b, big, &s);
	ck_assert_str_eq(s.summary, "");  /* beyond 64 KiB */
	memcpy(b, "SELECT * FROM t WHERE a IN (", 28);
	for (size_t i = 28; i + 2 < big; i += 2)
		memcpy(b + i, "1,", 2);
	summarize(b, big, &s);
	ck_assert_str_eq(s.summary, "SELECT t");
	free(b);
}
END_TEST

/* Deep nesting is bounded: beyond the tracked levels the text is skipped. */
START_TEST(test_summary_deep_nesting)
{
	char q[4096];
	size_t n = 0;
	struct sql_summary s;

	n += (size_t)sprintf(q + n, "SELECT * FROM t WHERE a = ");
	for (int i = 0; i < 100; i++)
		q[n++] = '(';
	n += (size_t)sprintf(q + n, "SELECT 1 FROM deep");
	for (int i = 0; i < 100; i++)
		q[n++] = ')';
	n += (size_t)sprintf(q + n, " AND b IN (SELECT c FROM u)");
	summarize(q, n, &s);
	ck_assert_str_eq(s.summary, "SELECT t SELECT u");
}
END_TEST

/* ------------------------------------------------------------------ */
/* Sanitising                                                          */
/* ------------------------------------------------------------------ */

struct san_case {
	const char *in;
	const char *out;
};

static const struct san_case san_cases[] = {
	{ "", "" },
	{ "SELECT 1", "SELECT ?" },
	{ "SELECT * FROM t WHERE name = 'alice' AND id = 42", "SELECT * FROM t WHERE name = ? AND id = ?" },
	{ "SELECT 'it''s', 'a''''b'''", "SELECT ?, ?" },
	{ "SELECT E'a\\'b\\\\', e'x''y'", "SELECT ?, ?" },
	{ "SELECT U&'d\\0061t\\+000061', u&'x'", "SELECT ?, ?" },
	{ "SELECT B'0101', b'1', X'ff', x'00', N'nat'", "SELECT ?, ?, ?, ?, ?" },
	{ "SELECT $$secret$$, $tag$a $$ b$tag$, $a$x$b$y$a$", "SELECT ?, ?, ?" },
	{ "SELECT $1, $2::int, $10", "SELECT $1, $2::int, $10" },
	{ "SELECT 1.5e-3, .5, 1., 1e10, 0x1F, 0o17, 0b101, 1_000_000", "SELECT ?, ?, ?, ?, ?, ?, ?, ?" },
	{ "SELECT -5, +3, x-1", "SELECT -?, +?, x-?" },
	{ "SELECT t1.c2, col_3, a$1 FROM t1", "SELECT t1.c2, col_3, a$1 FROM t1" },
	{ "SELECT \"quoted 'x' 1\" FROM \"T\"\"1\"", "SELECT \"quoted 'x' 1\" FROM \"T\"\"1\"" },
	{ "SELECT 1 -- comment with 'x' 2\n, 3", "SELECT ? -- comment with 'x' 2\n, ?" },
	{ "SELECT /* a /* nested 'x' */ 5 */ 6", "SELECT /* a /* nested 'x' */ 5 */ ?" },
	{ "WHERE a IN (1, 2, 'x')", "WHERE a IN (?)" },
	{ "WHERE a in(1,2,3) AND b NOT IN ( 'a' , 'b' )", "WHERE a in(?) AND b NOT IN ( ? )" },
	{ "WHERE a IN (-1, +2, 3)", "WHERE a IN (?)" },
	{ "WHERE a IN ($1, $2)", "WHERE a IN ($1, $2)" },
	{ "WHERE a IN ($1, 2)", "WHERE a IN ($1, ?)" },
	{ "WHERE a IN (1, 2, b, 3)", "WHERE a IN (?, b, ?)" },
	{ "WHERE a IN (SELECT 1)", "WHERE a IN (SELECT ?)" },
	{ "WHERE a IN (1 + 2)", "WHERE a IN (? + ?)" },
	{ "WHERE a IN (1, /* c */ 2)", "WHERE a IN (?)" },
	{ "WHERE a IN (1, 2", "WHERE a IN (?" },
	{ "WHERE a IN (1,", "WHERE a IN (?," },
	{ "WHERE a IN 1", "WHERE a IN ?" },
	{ "SELECT interval '1 day', DATE '2024-01-01', true, NULL", "SELECT interval ?, DATE ?, true, NULL" },
	{ "INSERT INTO t VALUES (1, 'x'), (2, 'y')", "INSERT INTO t VALUES (?, ?), (?, ?)" },
	{ "SELECT arr[1:2], 'a' || 'b'", "SELECT arr[?:?], ? || ?" },
	{ "SELECT 123abc", "SELECT ?" },
	/* unterminated constructs: the rest becomes '?' */
	{ "SELECT 'unterminated secret", "SELECT ?" },
	{ "SELECT 'a''", "SELECT ?" },
	{ "SELECT E'a\\'", "SELECT ?" },
	{ "SELECT $$open body", "SELECT ?" },
	{ "SELECT $t$open $tt$", "SELECT ?" },
	{ "SELECT \"open ident", "SELECT ?" },
	{ "SELECT 1 /* open /* nested */ comment", "SELECT ? ?" },
	{ "SELECT 1 -- line comment at end", "SELECT ? -- line comment at end" },
	/* lone characters that only look like starts */
	{ "SELECT $ , $x, a$$b", "SELECT $ , $x, a$$b" },
	{ "SELECT 'a'/'b'", "SELECT ?/?" },
	/* UTF-8 and invalid bytes are kept */
	{ "SELECT 'héllo', naïve FROM tåble", "SELECT ?, naïve FROM tåble" },
	{ "SELECT \xff\xfe, '\xc3' FROM \x80x", "SELECT \xff\xfe, ? FROM \x80x" },
	/* the sanitiser jumps 16 bytes at a time to the next byte that may
	 * start something: digits and '$' glued to names (also across those
	 * blocks), prefixes read back from their quote, IN read back from '(' */
	{ "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
	  "SELECT abalance FROM pgbench_accounts WHERE aid = ?;" },
	{ "SELECT col_a1, col_b22, t1234567890.x9 FROM table_with_digits_1234567890 WHERE a = 1",
	  "SELECT col_a1, col_b22, t1234567890.x9 FROM table_with_digits_1234567890 WHERE a = ?" },
	{ "SELECT aaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2, ccccccccccccccc$3 FROM ddddddddddddddd4",
	  "SELECT aaaaaaaaaaaaaaa1, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2, ccccccccccccccc$3 FROM ddddddddddddddd4" },
	{ "SELECT 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz' AS long_string_literal_here",
	  "SELECT ? AS long_string_literal_here" },
	{ "SELECT 1 # 2 % 3 & 4, a#b, 'x'%'y'", "SELECT ? # ? % ? & ?, a#b, ?%?" },
	{ "SELECT $1E'x', $1e'x', 1E'x', aE'x', (E'x'), U&'x' , u&\"y\", a&'b'",
	  "SELECT $1?, $1?, ??, aE?, (?), ? , u&\"y\", a&?" },
	{ "SELECT * FROM t WHERE a IN /* c */ (1, 2) AND b IN -- x\n (3, 4) AND c IN/*a*//*b*/(5,6)",
	  "SELECT * FROM t WHERE a IN /* c */ (?) AND b IN -- x\n (?) AND c IN/*a*//*b*/(?)" },
	{ "SELECT MIN (1, 2), t.in (3, 4), \"IN\" (5, 6), $1IN (7, 8), 1IN (9)",
	  "SELECT MIN (?, ?), t.in (?), \"IN\" (?, ?), $1IN (?), ? (?)" },
	{ "SELECT * FROM t WHERE a IN ((1, 2)) OR b IN (, 1) OR c IN (1 'a')",
	  "SELECT * FROM t WHERE a IN ((?, ?)) OR b IN (, ?) OR c IN (? ?)" },
	{ "SELECT /* 'not a literal' 123 */ col -- 'nor' 456\nFROM t",
	  "SELECT /* 'not a literal' 123 */ col -- 'nor' 456\nFROM t" },
	{ "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), (4, 'five', 6.0), (-7, +8, x'09')",
	  "INSERT INTO t (a, b, c) VALUES ($1, $2, $3), (?, ?, ?), (-?, +?, ?)" },
	{ "SELECT 0x1F, 0xZZ, 0b2, 0o9, 0_1, 1__2 FROM t", "SELECT ?, ?, ?, ?, ?, ? FROM t" },
	{ "SELECT a FROM t WHERE b = 1 /* unterminated 'x' 2", "SELECT a FROM t WHERE b = ? ?" },
	{ "SELECT - 5, -5, --5\n5", "SELECT - ?, -?, --5\n?" },
};

START_TEST(test_sanitize_table)
{
	check_whole(sanitize, san_cases[_i].in, san_cases[_i].out);
}
END_TEST

/* Every cap from 0 up: a prefix of the full output, never more than
 * cap - 1 bytes, truncated exactly when it did not fit, and never a cut
 * inside a UTF-8 character. */
START_TEST(test_sanitize_caps)
{
	const char *in = "SELECT 'x', é€𝄞 FROM \"tåble\" WHERE a IN (1, 2) AND b = $1 -- ñ\n";
	char out[8];
	bool trunc = false;

	check_caps(sanitize, in, "SELECT ?, é€𝄞 FROM \"tåble\" WHERE a IN (?) AND b = $1 -- ñ\n", NULL);
	/* a prefixed literal is cut before its prefix letter, not after */
	check_caps(sanitize, "SELECT U&'x', E'y', n'z' FROM t", "SELECT ?, ?, ? FROM t", NULL);
	ck_assert_uint_eq(sql_sanitize(in, strlen(in), out, 0, &trunc), 0);
	ck_assert(trunc);
	ck_assert_uint_eq(sql_sanitize("", 0, out, 0, &trunc), 0);
	ck_assert(!trunc);
	ck_assert_uint_eq(sql_sanitize(NULL, 0, out, 8, &trunc), 0);
	ck_assert_str_eq(out, "");
}
END_TEST

/* A 1 MB query into small buffers: bounded output, truncated set. */
START_TEST(test_sanitize_huge)
{
	size_t big = 1024 * 1024, n;
	char *b = malloc(big);
	char out[2048];
	bool trunc = false;

	ck_assert_ptr_nonnull(b);
	memcpy(b, "SELECT * FROM t WHERE a IN (", 28);
	for (size_t i = 28; i + 2 <= big; i += 2)
		memcpy(b + i, "7,", 2);
	b[big - 1] = ')';
	n = sanitize(b, big, out, sizeof(out), &trunc);
	ck_assert_str_eq(out, "SELECT * FROM t WHERE a IN (?)");
	ck_assert(!trunc);
	ck_assert_uint_eq(n, 30);

	for (size_t i = 0; i < big; i++)
		b[i] = "ab 1 'x' "[i % 9];
	n = sanitize(b, big, out, 64, &trunc);
	ck_assert(trunc);
	ck_assert_uint_le(n, 63);
	n = sanitize(b, big, out, sizeof(out), &trunc);
	ck_assert(trunc);
	ck_assert_uint_le(n, sizeof(out) - 1);
	ck_assert_ptr_null(strchr(out, 'x'));  /* string contents never leak */

	memset(b, 'q', big);
	b[0] = '\'';
	n = sanitize(b, big, out, 16, &trunc);
	ck_assert_str_eq(out, "?");
	ck_assert(!trunc);
	free(b);
}
END_TEST

/* Every prefix of a query full of constructs: no over-read (exact
 * copies), valid results, and no literal byte ever shows. */
START_TEST(test_sanitize_prefixes)
{
	const char *in = "SELECT E'Z\\'1', 'Z2''Z3', $q$Z4$q$, U&'Z5', B'101', 987, \"id\" /* c */ FROM t WHERE x IN (654, 'Z6') -- e";
	size_t len = strlen(in);
	char out[512];
	bool trunc = false;

	for (size_t n = 0; n <= len; n++) {
		sanitize(in, n, out, sizeof(out), &trunc);
		ck_assert(!trunc);
		ck_assert_ptr_null(strchr(out, 'Z'));
		ck_assert_ptr_null(strpbrk(out, "0123456789"));
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Error messages                                                      */
/* ------------------------------------------------------------------ */

/* Messages as PostgreSQL 15 sends them (collected from a real server; the
 * translated ones are the catalogs' msgstr with the value filled in). */
static const struct {
	const char *in, *out;
} msg_cases[] = {
	/* values */
	{ "invalid input syntax for type integer: \"SECRET\"", "invalid input syntax for type integer: ?" },
	{ "invalid input value for enum mood: \"SECRET\"", "invalid input value for enum mood: ?" },
	{ "value \"99999999999\" is out of range for type integer", "value ? is out of range for type integer" },
	{ "date/time field value out of range: \"2020-13-45\"", "date/time field value out of range: ?" },
	{ "malformed array literal: \"{1,2\"", "malformed array literal: ?" },
	{ "invalid input syntax for type integer: \"it's\"", "invalid input syntax for type integer: ?" },
	{ "invalid input syntax for type integer: \"back\\slash\"", "invalid input syntax for type integer: ?" },
	{ "syntax error at or near \"'x'\"", "syntax error at or near ?" },
	{ "unterminated quoted string at or near \"'abc\"", "unterminated quoted string at or near ?" },
	{ "invalid byte sequence for encoding \"UTF8\": 0xc3 0x28", "invalid byte sequence for encoding ?: ? ?" },
	{ "Token \"SECRET\" is invalid.", "Token ? is invalid." },
	/* names are quoted the same way: replaced too */
	{ "relation \"foo\" does not exist", "relation ? does not exist" },
	{ "duplicate key value violates unique constraint \"t_pkey\"",
	  "duplicate key value violates unique constraint ?" },
	{ "new row for relation \"t\" violates check constraint \"t_c_check\"",
	  "new row for relation ? violates check constraint ?" },
	{ "column \"nosuchcol\" does not exist", "column ? does not exist" },
	/* DETAIL's key values */
	{ "Key (id)=(42) already exists.", "Key (id)=(?) already exists." },
	{ "Key (tid)=(777) is not present in table \"t\".", "Key (tid)=(?) is not present in table ?." },
	{ "Key (a, b)=(1, (2,3)) already exists.", "Key (a, b)=(?) already exists." },
	{ "Key (k)=(a)b) already exists.", "Key (k)=(?) already exists." },
	{ "Key (k)=(open", "Key (k)=(?" },
	{ "x=() y", "x=() y" },
	/* no values: kept as they are */
	{ "division by zero", "division by zero" },
	{ "value too long for type character varying(5)", "value too long for type character varying(5)" },
	{ "integer out of range", "integer out of range" },
	{ "BEFORE trigger's WHEN condition cannot reference NEW values",
	  "BEFORE trigger's WHEN condition cannot reference NEW values" },
	{ "pipeline aborted by an earlier error", "pipeline aborted by an earlier error" },
	{ "", "" },
	/* single quotes: RAISE with quote_literal / %L, E'' and X'' forms */
	{ "card '4111 1111' declined", "card ? declined" },
	{ "user 'O''Brien' not found", "user ? not found" },
	{ "user 'O'Brien' not found", "user ? not found" },
	{ "got E'a\\'b' here", "got ? here" },
	{ "bits X'1F' and B'101'", "bits ? and ?" },
	{ "it's Max's 'x'", "it's Max's ?" },
	{ "'lead", "?" },
	/* quotes inside values: PostgreSQL doesn't escape them */
	{ "invalid input syntax for type integer: \"a\"b\"", "invalid input syntax for type integer: ?" },
	{ "invalid input syntax for type integer: \"a\" b\"", "invalid input syntax for type integer: ?" },
	{ "column \"x\" has \"a\" b\"", "column ?" },
	{ "a \"doubled\"\"name\" b", "a ?? b" },
	{ "unclosed \"SECRET and more", "unclosed ?" },
	{ "\"", "?" },
	/* translations */
	{ "ung\xc3\xbcltige Eingabesyntax f\xc3\xbcr Typ integer: \xc2\xbbSECRET\xc2\xab",
	  "ung\xc3\xbcltige Eingabesyntax f\xc3\xbcr Typ integer: ?" },
	{ "syntaxe en entr\xc3\xa9" "e invalide pour le type integer : \xc2\xab SECRET \xc2\xbb",
	  "syntaxe en entr\xc3\xa9" "e invalide pour le type integer : ?" },
	{ "la sintaxis de entrada no es v\xc3\xa1lida para tipo integer: \xc2\xabSECRET\xc2\xbb",
	  "la sintaxis de entrada no es v\xc3\xa1lida para tipo integer: ?" },
	{ "\"integer\"\xe5\x9e\x8b\xe3\x81\xae\xe5\x85\xa5\xe5\x8a\x9b\xe6\xa7\x8b\xe6\x96\x87\xe3\x81\x8c\xe4\xb8\x8d"
	  "\xe6\xad\xa3\xe3\x81\xa7\xe3\x81\x99: \"SECRET\"",
	  "?\xe5\x9e\x8b\xe3\x81\xae\xe5\x85\xa5\xe5\x8a\x9b\xe6\xa7\x8b\xe6\x96\x87\xe3\x81\x8c\xe4\xb8\x8d"
	  "\xe6\xad\xa3\xe3\x81\xa7\xe3\x81\x99: ?" },
	{ "x \xe2\x80\x9eSECRET\xe2\x80\x9c y \xe2\x80\x9cS2\xe2\x80\x9d z", "x ? y ? z" },
	{ "open \xc2\xabSECRET", "open ?" },
	/* libpq's own messages (first line of PQerrorMessage) */
	{ "connection to server at \"127.0.0.1\", port 1 failed: Connection refused",
	  "connection to server at ?, port 1 failed: Connection refused" },
	{ "FATAL:  password authentication failed for user \"alice\"",
	  "FATAL:  password authentication failed for user ?" },
	/* 0x only as a token of its own */
	{ "a0xff 0x 0xZZ 0x1F.", "a0xff 0x 0xZZ ?." },
};

static size_t sanitize_message(const char *m, size_t n, char *out, size_t cap, bool *trunc)
{
	return checked(sql_sanitize_message, m, n, out, cap, trunc);
}

START_TEST(test_message_table)
{
	check_whole(sanitize_message, msg_cases[_i].in, msg_cases[_i].out);
}
END_TEST

/* Small outputs: a prefix of the whole result, cut on a character. */
START_TEST(test_message_caps)
{
	const char *in = "ung\xc3\xbcltiger Wert \xc2\xbbSECRET\xc2\xab f\xc3\xbcr \"x\" \xe2\x82\xac";
	char out[8];
	bool trunc = false;

	check_caps(sanitize_message, in, "ung\xc3\xbcltiger Wert ? f\xc3\xbcr ? \xe2\x82\xac", "SECRET");
	ck_assert_uint_eq(sql_sanitize_message(in, strlen(in), out, 0, &trunc), 0);
	ck_assert(trunc);
	ck_assert_uint_eq(sql_sanitize_message(NULL, 0, out, 8, &trunc), 0);
	ck_assert_str_eq(out, "");
	ck_assert(!trunc);
}
END_TEST

/* Only len bytes are read: a value whose closing quote lies beyond len
 * runs to the end of what was given. */
START_TEST(test_message_reads_only_len)
{
	static const char msg[] = "value \"SECRET\" here";
	char out[64];
	bool trunc = false;

	ck_assert_uint_eq(sanitize_message(msg, 10, out, sizeof out, &trunc), 7);
	ck_assert_str_eq(out, "value ?");
}
END_TEST

/* sql_is_complete: whether a comment can be appended without changing the statement. */
static const struct {
	const char *text;
	bool complete;
} complete_cases[] = {
	{ "SELECT 1", true },
	{ "SELECT 1;", true },
	{ "SELECT 1 -- trailing line comment", true },
	{ "SELECT 'a''b'", true },
	{ "SELECT $x$ a $x$", true },
	{ "SELECT /* a /* nested */ b */ 1", true },
	{ "SELECT '\xc3\xa9'", true },
	{ "", true },
	{ "SELECT 'abc", false },
	{ "SELECT E'ab\\'", false },
	{ "SELECT $x$ab", false },
	{ "SELECT /* open", false },
	{ "SELECT /* a /* b */ still open", false },
	{ "SELECT \"ab", false },
	{ "SELECT 'x' AS \xe2\x82", false },
	{ "\x82", false },
};

START_TEST(test_is_complete)
{
	const char *t = complete_cases[_i].text;
	size_t n = strlen(t);
	char *copy = malloc(n ? n : 1);   /* exact size: an over-read trips ASan */
	memcpy(copy, t, n);
	ck_assert_msg(sql_is_complete(copy, n) == complete_cases[_i].complete, "case %d: %s", _i, t);
	free(copy);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Summary cache                                                       */
/* ------------------------------------------------------------------ */

/* v holds what sql_summarize makes of text (all but multiple_statements). */
static void check_view(const struct sql_summary_view *v, const char *text, size_t len)
{
	struct sql_summary want;

	summarize(text, len, &want);
	ck_assert_msg(v->summary_len == want.summary_len && memcmp(v->summary, want.summary, want.summary_len) == 0,
		      "[%.*s]: summary [%.*s], want [%s]", (int)len, text, (int)v->summary_len, v->summary,
		      want.summary);
	ck_assert(v->operation_len == want.operation_len &&
		  memcmp(v->operation, want.operation, want.operation_len) == 0);
	ck_assert(v->collection_len == want.collection_len &&
		  memcmp(v->collection, want.collection, want.collection_len) == 0);
	ck_assert(v->procedure_len == want.procedure_len &&
		  memcmp(v->procedure, want.procedure, want.procedure_len) == 0);
}

/* Keyed by the sanitised text: the same statement with other values is a
 * hit, and a hit returns what was cached without summarising again. */
START_TEST(test_cache_hits)
{
	static const char *const texts[] = {
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
		"SELECT abalance FROM pgbench_accounts WHERE aid = 98765;",
		"UPDATE t SET a = 'x' WHERE id IN (1, 2, 3)",
		"UPDATE t SET a = 'yy' WHERE id IN (4)",
		"CALL refresh_stats($1, 'x')",
		"BEGIN",
		"",
	};
	struct sql_cache *c = calloc(1, sizeof *c);
	struct sql_summary scratch;
	struct sql_summary_view v;
	char key[256];
	bool cut;

	ck_assert_ptr_nonnull(c);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < N_ELEMS(texts); i++) {
			size_t len = strlen(texts[i]);
			size_t kl = sql_sanitize(texts[i], len, key, sizeof key, &cut);

			sql_cache_summary(c, key, kl, texts[i], len, &scratch, &v);
			check_view(&v, texts[i], len);
		}
	/* a hit: the text is not looked at again */
	sql_cache_summary(c, "BEGIN", 5, "DELETE FROM u", 13, &scratch, &v);
	ck_assert_int_eq((int)v.summary_len, 5);
	ck_assert_int_eq(memcmp(v.summary, "BEGIN", 5), 0);
	/* a miss: summarised and cached */
	sql_cache_summary(c, "DELETE FROM u", 13, "DELETE FROM u", 13, &scratch, &v);
	check_view(&v, "DELETE FROM u", 13);
	sql_cache_summary(c, "DELETE FROM u", 13, "SELECT 1", 8, &scratch, &v);
	check_view(&v, "DELETE FROM u", 13);
	free(c);
}
END_TEST

/* Many more statements than the cache holds, of every size up to past what
 * it takes, in a scrambled order: every answer is still the statement's own
 * summary (evictions, slots shared, the ring wrapping around). */
START_TEST(test_cache_churn)
{
	struct sql_cache *c = calloc(1, sizeof *c);
	struct sql_summary scratch;
	struct sql_summary_view v;
	char text[4096];
	uint32_t r = 12345;

	ck_assert_ptr_nonnull(c);
	for (int i = 0; i < 20000; i++) {
		r = r * 1103515245u + 12345u;
		unsigned which = (r >> 8) % (i < 10000 ? 60 : 300);
		unsigned pad = which % 7 == 0 ? (which * 131) % 2600 : which % 40;
		int n = snprintf(text, sizeof text, "SELECT c%u FROM table_%u t%u JOIN other_%u o ON o.id = t.id%*s",
				 which, which, which, which % 3, (int)pad, "");

		sql_cache_summary(c, text, (size_t)n, text, (size_t)n, &scratch, &v);
		check_view(&v, text, (size_t)n);
	}
	free(c);
}
END_TEST

Suite *sql_suite(void)
{
	Suite *s = suite_create("sql");
	TCase *tc = tcase_create("summary");

	tcase_add_loop_test(tc, test_summary_table, 0, (int)N_ELEMS(sum_cases));
	tcase_add_loop_test(tc, test_multiple_statements, 0, (int)N_ELEMS(multi_cases));
	tcase_add_test(tc, test_call_procedure);
	tcase_add_loop_test(tc, test_is_complete, 0, (int)N_ELEMS(complete_cases));
	tcase_add_test(tc, test_summary_cap);
	tcase_add_test(tc, test_summary_prefixes);
	tcase_add_test(tc, test_summary_deep_nesting);
	suite_add_tcase(s, tc);

	tc = tcase_create("sanitize");
	tcase_add_loop_test(tc, test_sanitize_table, 0, (int)N_ELEMS(san_cases));
	tcase_add_test(tc, test_sanitize_caps);
	tcase_add_test(tc, test_sanitize_huge);
	tcase_add_test(tc, test_sanitize_prefixes);
	suite_add_tcase(s, tc);

	tc = tcase_create("message");
	tcase_add_loop_test(tc, test_message_table, 0, (int)N_ELEMS(msg_cases));
	tcase_add_test(tc, test_message_caps);
	tcase_add_test(tc, test_message_reads_only_len);
	suite_add_tcase(s, tc);

	tc = tcase_create("cache");
	tcase_add_test(tc, test_cache_hits);
	tcase_add_test(tc, test_cache_churn);
	suite_add_tcase(s, tc);
	return s;
}
