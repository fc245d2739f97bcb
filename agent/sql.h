/* SQL text as pure functions: the query summary and operation/collection names, literal sanitising, and values hidden in error messages. */
#ifndef TRACEAGENT_SQL_H
#define TRACEAGENT_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Pure functions over (const char *, size_t): no I/O, no allocation, no
 * globals, never reading past len (the text may be a prefix of a huge query
 * and need not be NUL-terminated). PostgreSQL's lexical rules: '...' strings
 * with '' escapes, E'...' with backslash escapes, dollar-quoted $$...$$ and
 * $tag$...$tag$, "quoted identifiers", -- and nested block comments, $1
 * parameters, numeric literals (1, 1.5, .5, 1e10, 0x1F), and invalid UTF-8
 * or unterminated constructs, which must never crash or over-read.
 */

#define SQL_SUMMARY_MAX 256
#define SQL_NAME_MAX 128

struct sql_summary {
	/* db.query.summary, per the semantic conventions: the operation followed
	 * by its main target(s), e.g. "SELECT web_crawl_tasks",
	 * "INSERT web_crawl_tasks", "SELECT get_web_crawl_metrics" (a function
	 * called in the select list or the FROM clause), "UPDATE web_crawl_tasks",
	 * "DELETE t", "SELECT orders customers" (a join: the tables in order),
	 * "BEGIN", "CREATE TABLE t", "CALL proc", "SELECT" (no table: SELECT 1). */
	char summary[SQL_SUMMARY_MAX];
	size_t summary_len;
	/* db.operation.name: the first keyword(s), upper-case: SELECT, INSERT,
	 * UPDATE, DELETE, WITH is resolved to the main statement's operation,
	 * CREATE TABLE, BEGIN, COMMIT... Empty when not recognisable. */
	char operation[SQL_NAME_MAX];
	size_t operation_len;
	/* db.collection.name: set only when the statement has exactly one target
	 * table (schema-qualified names kept, quotes removed). */
	char collection[SQL_NAME_MAX];
	size_t collection_len;
	bool multiple_statements;  /* more than one statement separated by ';' */
	/* db.stored_procedure.name: the procedure of a CALL statement (name as
	 * written, schema kept, quotes removed); empty otherwise. */
	char procedure[SQL_NAME_MAX];
	size_t procedure_len;
};

/* Summarises the first statement of text. Never fails: an unrecognisable
 * text gives an empty summary (the caller then names the span after the
 * system, e.g. "postgresql"). Looks at most at the first 64 KiB. */
void sql_summarize(const char *text, size_t len, struct sql_summary *out);

/*
 * Writes text with every literal replaced by '?': strings (all forms),
 * numbers, and dollar-quoted bodies; a list of literals in IN (...) becomes
 * IN (?); $n parameters, identifiers, keywords, comments and whitespace are
 * kept as they are. Writes at most cap-1 bytes plus a NUL, stopping at a
 * character boundary; returns the length written. *truncated is set when
 * the input did not fit (or len exceeded what was read).
 */
size_t sql_sanitize(const char *text, size_t len, char *out, size_t cap, bool *truncated);

/*
 * An error message of PostgreSQL or libpq with the values quoted in it
 * replaced by '?', so that it can go into a span without the data that made
 * a statement fail (invalid input syntax for type integer: "SECRET").
 * Replaced: "..." (the closing quote is the first one that ends a word and
 * leaves the rest of the quotes paired, since PostgreSQL doesn't escape
 * quotes inside values), '...' and E'...' not preceded by a letter (an
 * apostrophe stays), the translations' «...», »...«, “...” and „...“,
 * the value list of DETAIL's Key (k)=(v) (kept as "(?)"), and 0x byte
 * sequences of encoding errors. An unclosed quote hides the rest of the
 * message. PostgreSQL quotes names of relations, columns and constraints the
 * same way as values, and nothing in the message tells them apart, so they
 * are replaced too (relation ? does not exist); the SQLSTATE, the summary
 * and db.query.text still name them. Text the application composed itself
 * (RAISE EXCEPTION 'card % declined') is kept except for quoted parts.
 * Output as for sql_sanitize: at most cap-1 bytes and a NUL, never longer
 * than the message, cut at a character boundary (*truncated then set).
 */
size_t sql_sanitize_message(const char *msg, size_t len, char *out, size_t cap, bool *truncated);

/*
 * Summaries cached by the text they were made for: a connection sends the
 * same few statements again and again, with other values (pgbench -S sends
 * one SELECT with a new number each time), and sanitised they are the same
 * text. The key is that text (the sanitised one, or the text itself where
 * it isn't sanitised); sanitising never changes a summary (the fuzzer checks
 * it), so every entry holds the summary of its key. A fixed ring of bytes
 * holds the entries: the newest overwrite the oldest, nothing is allocated,
 * and a hit costs a hash and a compare of the key. Not thread-safe: one
 * owner at a time (a libpq connection).
 */
#define SQL_CACHE_SLOTS 32       /* a power of two */
#define SQL_CACHE_ARENA 8192

struct sql_cache_slot {
	uint64_t hash;
	uint64_t pos;                /* where the entry starts, counted as head is */
	uint16_t key_len;
	uint8_t summary_len, operation_len, collection_len, procedure_len;
	bool used;
};

struct sql_cache {
	uint64_t head;               /* bytes ever written to arena (it wraps) */
	unsigned last;               /* the slot used last: tried first, without hashing */
	struct sql_cache_slot slot[SQL_CACHE_SLOTS];
	char arena[SQL_CACHE_ARENA];
};

/* A summary as (pointer, length) pairs, into the cache or a sql_summary. */
struct sql_summary_view {
	const char *summary, *operation, *collection, *procedure;
	size_t summary_len, operation_len, collection_len, procedure_len;
};

/* The summary of text[0..len) (not multiple_statements), whose cache key is
 * key[0..key_len): from the cache, or made with sql_summarize into *scratch
 * and cached. *out views the cache or *scratch, until the cache's next use.
 * A zeroed struct sql_cache is an empty one. */
void sql_cache_summary(struct sql_cache *c, const char *key, size_t key_len, const char *text, size_t len,
		       struct sql_summary *scratch, struct sql_summary_view *out);

/* *out viewing *sum. */
void sql_summary_view_of(const struct sql_summary *sum, struct sql_summary_view *out);

/* True when text ends outside any literal, quoted name or comment and on a
 * whole UTF-8 character: appending a comment then can't change its meaning. */
bool sql_is_complete(const char *text, size_t len);

#endif
