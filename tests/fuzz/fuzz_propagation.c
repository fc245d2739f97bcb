/* libFuzzer harness for agent/propagation.c: traceparent, tracestate (one header per input line) and baggage, checked against their invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/propagation.h"

/* A broken invariant must stop the fuzzer with a reproducer, in any build. */
#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

#define MAX_LINES 64

struct line {
	char *p;      /* exactly-sized heap copy, so ASan sees any read past len */
	size_t len;
};

static bool is_lchex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static unsigned count_members(const char *s, size_t n)
{
	unsigned c = n ? 1 : 0;

	for (size_t i = 0; i < n; i++)
		c += s[i] == ',';
	return c;
}

/* A stored list is "m,m,m": no empty member, no OWS at member edges. */
static void check_normalised_list(const char *s, size_t n)
{
	if (n == 0)
		return;
	CHECK(s[0] != ',' && s[n - 1] != ',');
	CHECK(s[0] != ' ' && s[0] != '\t' && s[n - 1] != ' ' && s[n - 1] != '\t');
	for (size_t i = 0; i + 1 < n; i++) {
		CHECK(!(s[i] == ',' && s[i + 1] == ','));
		if (s[i] == ',')
			CHECK(s[i + 1] != ' ' && s[i + 1] != '\t');
		if (s[i + 1] == ',')
			CHECK(s[i] != ' ' && s[i] != '\t');
	}
}

static void fuzz_traceparent(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);
	struct trace_context ctx, back, again;
	char out[TRACEPARENT_LEN + 1], out2[TRACEPARENT_LEN + 1];

	memcpy(in, data, size);
	bool ok = propagation_parse_traceparent(in, size, &ctx);
	CHECK(ok == ctx.valid);
	CHECK(ctx.tracestate_len == 0 && ctx.baggage_len == 0);
	if (!ok) {
		free(in);
		return;
	}
	CHECK(ctx.remote);
	CHECK(size >= TRACEPARENT_LEN);
	CHECK(!all_zero(ctx.trace_id, 16) && !all_zero(ctx.span_id, 8));

	/* formats to a valid version-00 traceparent ... */
	CHECK(propagation_format_traceparent(&ctx, out) == TRACEPARENT_LEN);
	CHECK(out[TRACEPARENT_LEN] == '\0');
	CHECK(out[0] == '0' && out[1] == '0');
	for (size_t i = 0; i < TRACEPARENT_LEN; i++) {
		if (i == 2 || i == 35 || i == 52)
			CHECK(out[i] == '-');
		else
			CHECK(is_lchex(out[i]));
	}
	/* ... which re-parses to the same ids, with only the defined flags */
	CHECK(propagation_parse_traceparent(out, TRACEPARENT_LEN, &back));
	CHECK(memcmp(back.trace_id, ctx.trace_id, 16) == 0);
	CHECK(memcmp(back.span_id, ctx.span_id, 8) == 0);
	CHECK(back.flags == (ctx.flags & (TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM)));
	/* and formatting is a fixed point from there */
	CHECK(propagation_format_traceparent(&back, out2) == TRACEPARENT_LEN);
	CHECK(memcmp(out, out2, sizeof out) == 0);
	CHECK(propagation_parse_traceparent(out2, TRACEPARENT_LEN, &again));
	CHECK(again.flags == back.flags);
	free(in);
}

static size_t split_lines(const uint8_t *data, size_t size, struct line *lines)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= size && n < MAX_LINES; i++) {
		if (i == size || data[i] == '\n') {
			size_t len = i - start;

			lines[n].p = malloc(len ? len : 1);
			memcpy(lines[n].p, data + start, len);
			lines[n].len = len;
			n++;
			start = i + 1;
		}
	}
	return n;
}

/* A stored list has each key once (repeats are dropped, first kept). */
static void check_unique_keys(const char *s, size_t n)
{
	for (size_t a = 0; a < n;) {
		const char *ea = memchr(s + a, '=', n - a);
		CHECK(ea != NULL);
		size_t ka = (size_t)(ea - (s + a));
		const char *ca = memchr(s + a, ',', n - a);
		size_t next = ca ? (size_t)(ca - s) + 1 : n;

		for (size_t b = next; b < n;) {
			const char *cb = memchr(s + b, ',', n - b);
			size_t end = cb ? (size_t)(cb - s) : n;

			CHECK(!(end - b > ka && s[b + ka] == '=' && memcmp(s + a, s + b, ka) == 0));
			b = end + 1;
		}
		a = next;
	}
}

/* Re-parsing a stored tracestate gives it back unchanged. */
static void check_tracestate_idempotent(const struct trace_context *ctx, struct tracestate_parser *p)
{
	static struct trace_context again;
	char *copy = malloc(ctx->tracestate_len ? ctx->tracestate_len : 1);

	memcpy(copy, context_tracestate(ctx), ctx->tracestate_len);
	memset(&again, 0, sizeof again);
	propagation_tracestate_begin(p, &again);
	propagation_tracestate_add(p, copy, ctx->tracestate_len);
	CHECK(propagation_tracestate_end(p));
	CHECK(!p->overflow);
	CHECK(again.tracestate_len == ctx->tracestate_len);
	CHECK(memcmp(again.buf, ctx->buf, ctx->tracestate_len) == 0);
	free(copy);
}

static void check_baggage_idempotent(const struct trace_context *ctx)
{
	static struct trace_context again;
	char *copy = malloc(ctx->baggage_len ? ctx->baggage_len : 1);

	memcpy(copy, context_baggage(ctx), ctx->baggage_len);
	memset(&again, 0, sizeof again);
	bool ok = propagation_baggage_add(&again, copy, ctx->baggage_len);
	CHECK(ok == (ctx->baggage_len != 0));
	CHECK(again.baggage_len == ctx->baggage_len);
	CHECK(memcmp(context_baggage(&again), context_baggage(ctx), ctx->baggage_len) == 0);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tracestate_parser p;
	static struct trace_context ctx, joined;
	static char saved_ts[TRACESTATE_MAX];
	struct line lines[MAX_LINES];

	fuzz_traceparent(data, size);

	/* tracestate: each line is one header value, combined in order */
	size_t n = split_lines(data, size, lines);
	memset(&ctx, 0, sizeof ctx);
	propagation_tracestate_begin(&p, &ctx);
	for (size_t i = 0; i < n; i++)
		propagation_tracestate_add(&p, lines[i].p, lines[i].len);
	bool ok = propagation_tracestate_end(&p);
	CHECK(ctx.tracestate_len <= TRACESTATE_MAX);
	CHECK(ctx.baggage_len == 0);
	CHECK(p.members <= 32);
	CHECK(p.repeats <= p.members && p.evicted <= p.members);
	if (!ok)
		CHECK(ctx.tracestate_len == 0);
	check_normalised_list(context_tracestate(&ctx), ctx.tracestate_len);
	CHECK(count_members(context_tracestate(&ctx), ctx.tracestate_len) <= p.members - p.repeats);
	check_unique_keys(context_tracestate(&ctx), ctx.tracestate_len);
	if (ok)
		check_tracestate_idempotent(&ctx, &p);

	/* several headers mean the same as one header joined with ',' (only
	 * checked when split_lines kept every line) */
	size_t newlines = 0;
	for (size_t i = 0; i < size; i++)
		newlines += data[i] == '\n';
	if (n == newlines + 1) {
		char *j = malloc(size ? size : 1);

		for (size_t i = 0; i < size; i++)
			j[i] = data[i] == '\n' ? ',' : (char)data[i];
		memset(&joined, 0, sizeof joined);
		propagation_tracestate_begin(&p, &joined);
		propagation_tracestate_add(&p, j, size);
		CHECK(propagation_tracestate_end(&p) == ok);
		CHECK(joined.tracestate_len == ctx.tracestate_len);
		CHECK(memcmp(joined.buf, ctx.buf, ctx.tracestate_len) == 0);
		free(j);
	}

	/* baggage goes after the tracestate and never disturbs it */
	memcpy(saved_ts, ctx.buf, ctx.tracestate_len);
	for (size_t i = 0; i < n; i++) {
		uint16_t before = ctx.baggage_len;
		bool stored = propagation_baggage_add(&ctx, lines[i].p, lines[i].len);

		CHECK(stored == (ctx.baggage_len > before));
		CHECK(ctx.baggage_len >= before);
	}
	CHECK(ctx.baggage_len <= BAGGAGE_MAX);
	CHECK(memcmp(saved_ts, ctx.buf, ctx.tracestate_len) == 0);
	CHECK(count_members(context_baggage(&ctx), ctx.baggage_len) <= 64);
	check_normalised_list(context_baggage(&ctx), ctx.baggage_len);
	check_baggage_idempotent(&ctx);

	for (size_t i = 0; i < n; i++)
		free(lines[i].p);
	return 0;
}
