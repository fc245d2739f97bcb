/* libFuzzer harness for agent/sql.c: summaries, sanitising and error-message sanitising of arbitrary bytes at several output caps, checked against their invariants and against the slow reference implementation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sql.h"

/* A broken invariant must stop the fuzzer with a reproducer, in any build. */
#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* The lexer-per-token implementation the fast sanitiser replaced: every
 * result must be the same, byte for byte. */
#include "sql_reference.inc"

static bool same_summary(const struct sql_summary *a, const struct sql_summary *b)
{
	return a->summary_len == b->summary_len && memcmp(a->summary, b->summary, a->summary_len) == 0 &&
	       a->operation_len == b->operation_len && memcmp(a->operation, b->operation, a->operation_len) == 0 &&
	       a->collection_len == b->collection_len &&
	       memcmp(a->collection, b->collection, a->collection_len) == 0 &&
	       a->procedure_len == b->procedure_len && memcmp(a->procedure, b->procedure, a->procedure_len) == 0 &&
	       a->multiple_statements == b->multiple_statements;
}

/* Exactly-sized heap copy, so ASan sees any read past len. */
static char *copy(const uint8_t *p, size_t n)
{
	char *c = malloc(n ? n : 1);

	CHECK(c != NULL);
	if (n)
		memcpy(c, p, n);
	return c;
}

static void fuzz_summary(const char *in, size_t size)
{
	struct sql_summary s, r;

	memset(&s, 0xa5, sizeof(s));
	sql_summarize(in, size, &s);
	ref_sql_summarize(in, size, &r);
	CHECK(same_summary(&s, &r));
	CHECK(sql_is_complete(in, size) == ref_sql_is_complete(in, size));
	CHECK(s.summary_len < SQL_SUMMARY_MAX && s.summary[s.summary_len] == '\0');
	CHECK(s.operation_len < SQL_NAME_MAX && s.operation[s.operation_len] == '\0');
	CHECK(s.collection_len < SQL_NAME_MAX && s.collection[s.collection_len] == '\0');
	CHECK(s.procedure_len < SQL_NAME_MAX && s.procedure[s.procedure_len] == '\0');
	CHECK(strlen(s.summary) == s.summary_len);
	/* no operation, no summary: an unrecognised text gives neither */
	if (!s.operation_len)
		CHECK(s.summary_len == 0);
	/* an operation is upper-case ASCII where it is a letter */
	for (size_t i = 0; i < s.operation_len; i++)
		CHECK(!(s.operation[i] >= 'a' && s.operation[i] <= 'z'));
}

/* The whole output of san (sql_sanitize or sql_sanitize_message) for in,
 * into full_cap bytes (malloc'ed; its length in *len): never longer than the
 * input. Then at each of the ncaps caps: NUL-terminated within the cap,
 * truncated exactly when the whole did not fit, a prefix of the whole. */
static char *sanitized(size_t (*san)(const char *, size_t, char *, size_t, bool *),
		       size_t (*ref)(const char *, size_t, char *, size_t, bool *), const char *in,
		       size_t size, size_t full_cap, const size_t *caps, size_t ncaps, size_t *len)
{
	char *full = malloc(full_cap);
	bool trunc = true, t2;
	size_t fn;

	CHECK(full != NULL);
	fn = san(in, size, full, full_cap, &trunc);
	CHECK(!trunc);
	if (ref) {
		char *r = malloc(full_cap);
		bool t3;

		CHECK(r != NULL);
		CHECK(ref(in, size, r, full_cap, &t3) == fn && !t3 && memcmp(r, full, fn + 1) == 0);
		free(r);
	}
	CHECK(fn <= size && full[fn] == '\0');
	for (size_t i = 0; i < ncaps; i++) {
		size_t cap = caps[i];
		char *out = malloc(cap);
		size_t n;

		CHECK(out != NULL);
		n = san(in, size, out, cap, &t2);
		CHECK(n < cap && out[n] == '\0');
		if (ref) {
			char *r = malloc(cap);
			bool t3;

			CHECK(r != NULL);
			CHECK(ref(in, size, r, cap, &t3) == n && t3 == t2 && memcmp(r, out, n + 1) == 0);
			free(r);
		}
		CHECK(t2 == (fn >= cap));
		/* a truncated output is a prefix of the whole one */
		CHECK(memcmp(out, full, n) == 0);
		free(out);
	}
	*len = fn;
	return full;
}

static void fuzz_sanitize(const char *in, size_t size)
{
	static const size_t caps[] = { 1, 2, 3, 7, 64, 2048 };
	size_t fn;
	char *full = sanitized(sql_sanitize, ref_sql_sanitize, in, size, size + 2, caps,
			       sizeof(caps) / sizeof(caps[0]), &fn);
	char *again = malloc(fn + 1);
	struct sql_summary a, b;
	bool t2;

	/* sanitising a sanitised text never makes it longer */
	CHECK(again != NULL);
	CHECK(sql_sanitize(full, fn, again, fn + 1, &t2) <= fn);
	free(again);
	/* the libpq hooks cache summaries under the sanitised text: every text
	 * that sanitises the same must summarise the same (all but
	 * multiple_statements, which the cache doesn't keep: an unterminated
	 * literal after a ';' ends the text, its '?' does not) */
	sql_summarize(in, size, &a);
	sql_summarize(full, fn, &b);
	b.multiple_statements = a.multiple_statements;
	CHECK(same_summary(&a, &b));
	free(full);
}

/* Error messages: never longer, prefix-stable under small caps, and no
 * opening quote survives (every '"', «, », “ and „ starts a value that is
 * replaced, closed or not). */
static void fuzz_message(const char *in, size_t size)
{
	static const size_t caps[] = { 1, 2, 3, 7, 64 };
	size_t fn;
	char *full = sanitized(sql_sanitize_message, NULL, in, size, size + 1, caps, sizeof(caps) / sizeof(caps[0]),
			       &fn);

	CHECK(memchr(full, '"', fn) == NULL);
	for (size_t i = 0; i + 1 < fn; i++)
		CHECK(!((unsigned char)full[i] == 0xC2 && ((unsigned char)full[i + 1] == 0xAB ||
							 (unsigned char)full[i + 1] == 0xBB)));
	for (size_t i = 0; i + 2 < fn; i++)
		CHECK(!((unsigned char)full[i] == 0xE2 && (unsigned char)full[i + 1] == 0x80 &&
			((unsigned char)full[i + 2] == 0x9C || (unsigned char)full[i + 2] == 0x9E)));
	free(full);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = copy(data, size);

	fuzz_summary(in, size);
	fuzz_sanitize(in, size);
	fuzz_message(in, size);
	/* every prefix must work too for short inputs: prefixes of huge
	 * queries are what the hooks see */
	if (size <= 256)
		for (size_t n = 0; n < size; n += 7) {
			char *p = copy(data, n);

			fuzz_summary(p, n);
			fuzz_sanitize(p, n);
			fuzz_message(p, n);
			free(p);
		}
	free(in);
	return 0;
}
