/* Unit tests for agent/envcarrier.c: TRACEPARENT/TRACESTATE/BAGGAGE extracted at start and merged into a child's envp. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "agent/envcarrier.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN  "00f067aa0ba902b7"
#define TPV   "00-" TRACE "-" SPAN "-01"

/* A fake environment for the getenv-like callbacks. */
static const char *const *fake_env;

static const char *fake_get(const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; fake_env && fake_env[i]; i++)
		if (!strncmp(fake_env[i], name, n) && fake_env[i][n] == '=')
			return fake_env[i] + n + 1;
	return NULL;
}

static struct tracestate_parser parser;

START_TEST(test_extract_valid)
{
	static const char *const env[] = { "TRACEPARENT=" TPV, "TRACESTATE=a=1,b=2", "BAGGAGE=k=v", NULL };
	struct trace_context ctx;
	fake_env = env;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE, &ctx, &parser), 1);
	ck_assert(ctx.valid && ctx.remote);
	ck_assert_uint_eq(ctx.flags, 1);
	ck_assert_uint_eq(ctx.tracestate_len, 7);
	ck_assert_mem_eq(context_tracestate(&ctx), "a=1,b=2", 7);
	ck_assert_uint_eq(ctx.baggage_len, 3);
	ck_assert_mem_eq(context_baggage(&ctx), "k=v", 3);
}
END_TEST

START_TEST(test_extract_invalid_and_absent)
{
	static const char *const bad[] = { "TRACEPARENT=00-" TRACE "-0000000000000000-01", "TRACESTATE=a=1", NULL };
	static const char *const upper[] = { "TRACEPARENT=00-4BF92F3577B34DA6A3CE929D0E0E4736-" SPAN "-01", NULL };
	static const char *const none[] = { "TRACESTATE=a=1", "BAGGAGE=k=v", NULL };
	struct trace_context ctx;
	fake_env = bad;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT, &ctx, &parser), -1);
	ck_assert(!ctx.valid);
	fake_env = upper;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT, &ctx, &parser), -1);
	fake_env = none;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE, &ctx, &parser), 0);
	ck_assert(!ctx.valid);
	/* The tracecontext propagator off: TRACEPARENT is not read at all. */
	static const char *const good[] = { "TRACEPARENT=" TPV, NULL };
	fake_env = good;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_BAGGAGE, &ctx, &parser), 0);
}
END_TEST

START_TEST(test_extract_bad_tracestate_dropped_alone)
{
	static const char *const env[] = { "TRACEPARENT=" TPV, "TRACESTATE=not a list", NULL };
	struct trace_context ctx;
	fake_env = env;
	ck_assert_int_eq(envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT, &ctx, &parser), 1);
	ck_assert(ctx.valid);
	ck_assert_uint_eq(ctx.tracestate_len, 0);
}
END_TEST

static struct trace_context ctx_with(const char *ts, const char *bg)
{
	struct trace_context c;
	fake_env = (const char *const[]){ "TRACEPARENT=" TPV, NULL };
	envcarrier_extract(fake_get, PROPAGATOR_TRACECONTEXT, &c, &parser);
	if (ts) {
		memcpy(c.buf, ts, strlen(ts));
		c.tracestate_len = (uint16_t)strlen(ts);
	}
	if (bg) {
		memcpy(c.buf + c.tracestate_len, bg, strlen(bg));
		c.baggage_len = (uint16_t)strlen(bg);
	}
	return c;
}

static long build(char *const *envp, const struct envcarrier *e, const struct envcarrier_inherited *inh, char **out,
		  size_t cap)
{
	return envcarrier_build(envp, e, inh, out, cap);
}

START_TEST(test_build_replaces_and_keeps_order)
{
	struct trace_context c = ctx_with("x=1", "k=v");
	struct envcarrier e;
	struct envcarrier_inherited inh = { 0 };
	ck_assert(envcarrier_format(&c, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE, &e));
	char *envp[] = { "A=1", "TRACESTATE=old=1", "B=2", "BAGGAGE=old=1", "C=3", NULL };
	char *snapshot[6];
	memcpy(snapshot, envp, sizeof envp);
	char *out[16];
	long n = build(envp, &e, &inh, out, 16);
	ck_assert_int_eq(n, 6);
	ck_assert_str_eq(out[0], "A=1");
	ck_assert_str_eq(out[1], "B=2");
	ck_assert_str_eq(out[2], "C=3");
	ck_assert_str_eq(out[3], "TRACEPARENT=" TPV);
	ck_assert_str_eq(out[4], "TRACESTATE=x=1");
	ck_assert_str_eq(out[5], "BAGGAGE=k=v");
	ck_assert_ptr_null(out[6]);
	ck_assert_mem_eq(envp, snapshot, sizeof envp);   /* the app's array is untouched */
}
END_TEST

START_TEST(test_build_stale_inherited_baggage)
{
	struct trace_context c = ctx_with(NULL, NULL);
	struct envcarrier e;
	struct envcarrier_inherited inh;
	fake_env = (const char *const[]){ "TRACEPARENT=00-" TRACE "-1111111111111111-01", "BAGGAGE=inh=1", NULL };
	envcarrier_note_inherited(fake_get, &inh);
	ck_assert(envcarrier_format(&c, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE, &e));
	ck_assert(!e.has_tracestate && !e.has_baggage && e.owns_baggage);
	/* A copy of what the process inherited is stale: dropped. */
	char *copy[] = { "TRACEPARENT=00-" TRACE "-1111111111111111-01", "BAGGAGE=inh=1", "TRACESTATE=s=1", NULL };
	ck_assert(!envcarrier_app_owns(copy, &inh));
	char *out[8];
	ck_assert_int_eq(build(copy, &e, &inh, out, 8), 1);
	ck_assert_str_eq(out[0], "TRACEPARENT=" TPV);
	/* The app's own BAGGAGE is kept when ours is empty. */
	char *own_bg[] = { "BAGGAGE=app=1", NULL };
	ck_assert_int_eq(build(own_bg, &e, &inh, out, 8), 2);
	ck_assert_str_eq(out[0], "BAGGAGE=app=1");
}
END_TEST

START_TEST(test_app_owns)
{
	struct envcarrier_inherited inh;
	fake_env = (const char *const[]){ "TRACEPARENT=" TPV, NULL };
	envcarrier_note_inherited(fake_get, &inh);
	char *same[] = { "X=1", "TRACEPARENT=" TPV, NULL };
	char *other[] = { "TRACEPARENT=00-" TRACE "-2222222222222222-01", NULL };
	char *none[] = { "X=1", NULL };
	ck_assert(!envcarrier_app_owns(same, &inh));
	ck_assert(envcarrier_app_owns(other, &inh));
	ck_assert(!envcarrier_app_owns(none, &inh));
	ck_assert(!envcarrier_app_owns(NULL, &inh));
	fake_env = (const char *const[]){ NULL };
	envcarrier_note_inherited(fake_get, &inh);
	ck_assert(envcarrier_app_owns(same, &inh));   /* nothing inherited: any TRACEPARENT is the app's */
}
END_TEST

START_TEST(test_build_bounds_and_null)
{
	struct trace_context c = ctx_with("x=1", NULL);
	struct envcarrier e;
	struct envcarrier_inherited inh = { 0 };
	ck_assert(envcarrier_format(&c, PROPAGATOR_TRACECONTEXT, &e));
	ck_assert(!e.owns_baggage);
	char *out[8];
	ck_assert_int_eq(build(NULL, &e, &inh, out, 8), 2);   /* NULL envp: empty */
	ck_assert_uint_eq(envcarrier_count(NULL), 0);
	char *envp[] = { "A=1", "B=2", "C=3", NULL };
	ck_assert_uint_eq(envcarrier_count(envp), 3);
	ck_assert_int_eq(build(envp, &e, &inh, out, 6), -1);    /* count + 4 needed */
	ck_assert_int_eq(build(envp, &e, &inh, out, 7), 5);
	/* Baggage alone: not ours to set when the baggage propagator is off. */
	char *bg[] = { "BAGGAGE=k=v", NULL };
	ck_assert_int_eq(build(bg, &e, &inh, out, 8), 3);
	ck_assert_str_eq(out[0], "BAGGAGE=k=v");
}
END_TEST

START_TEST(test_format_nothing)
{
	struct trace_context c;
	struct envcarrier e;
	context_clear(&c);
	ck_assert(!envcarrier_format(&c, PROPAGATOR_TRACECONTEXT | PROPAGATOR_BAGGAGE, &e));
	c = ctx_with(NULL, NULL);
	ck_assert(!envcarrier_format(&c, 0, &e));
}
END_TEST

Suite *envcarrier_suite(void)
{
	Suite *s = suite_create("envcarrier");
	TCase *t = tcase_create("envcarrier");
	tcase_add_test(t, test_extract_valid);
	tcase_add_test(t, test_extract_invalid_and_absent);
	tcase_add_test(t, test_extract_bad_tracestate_dropped_alone);
	tcase_add_test(t, test_build_replaces_and_keeps_order);
	tcase_add_test(t, test_build_stale_inherited_baggage);
	tcase_add_test(t, test_app_owns);
	tcase_add_test(t, test_build_bounds_and_null);
	tcase_add_test(t, test_format_nothing);
	suite_add_tcase(s, t);
	return s;
}
