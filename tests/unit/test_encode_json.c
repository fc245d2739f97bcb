/* Tests for the OTLP/JSON encoder: exact output for small spans (span views), escaping, and round trips through python3's json. */
#include <check.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/resource.h"
#include "agent/span.h"
#include "agent/spanview.h"
#include "exporter/buf.h"
#include "exporter/otlp_json.h"
#include "otlp_reference.h"

/* --- building views by hand (span.c's setters are not used here on purpose:
 * the encoder must be tested on exactly the bytes it is given; the request
 * takes Span messages, packed from such views by protobuf-c) --- */

static struct span_str t_str(struct span_view *s, const char *p, size_t len)
{
	ck_assert_uint_le(s->arena_used + len + 1, SPAN_VIEW_ARENA);
	struct span_str r = { .off = s->arena_used, .len = (uint16_t)len };
	memcpy(s->arena + s->arena_used, p, len);
	s->arena[s->arena_used + len] = '\0';
	s->arena_used += (uint16_t)(len + 1);
	return r;
}

static struct span_str t_cstr(struct span_view *s, const char *p)
{
	return t_str(s, p, strlen(p));
}

static struct span_view *t_span(const char *name)
{
	struct span_view *s = calloc(1, sizeof *s);
	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < 16; i++)
		s->trace_id[i] = (uint8_t)(i + 1);
	for (int i = 0; i < 8; i++)
		s->span_id[i] = (uint8_t)(0xa1 + i);
	s->trace_flags = 1;
	s->kind = SPAN_KIND_SERVER;
	s->start_ns = 1;
	s->end_ns = 2;
	s->name = t_cstr(s, name);
	return s;
}

/* Attribute builders write into attrs or sub_attrs, whichever the caller passes. */
static struct span_attr *t_attr(struct span_view *s, struct span_attr *a, const char *key, enum span_attr_type type)
{
	memset(a, 0, sizeof *a);
	a->key = t_cstr(s, key);
	a->type = (uint8_t)type;
	return a;
}

static struct span_attr *t_next(struct span_view *s)
{
	ck_assert_uint_lt(s->n_attrs, SPAN_MAX_ATTRS);
	return &s->attrs[s->n_attrs++];
}

static struct span_attr *t_next_sub(struct span_view *s)
{
	ck_assert_uint_lt(s->n_sub_attrs, SPAN_MAX_SUB_ATTRS);
	return &s->sub_attrs[s->n_sub_attrs++];
}

static void t_set_str(struct span_view *s, struct span_attr *slot, const char *key, const char *v, size_t len)
{
	t_attr(s, slot, key, SPAN_ATTR_STRING)->v.s = t_str(s, v, len);
}

static void t_set_int(struct span_view *s, struct span_attr *slot, const char *key, int64_t v)
{
	t_attr(s, slot, key, SPAN_ATTR_INT)->v.i = v;
}

static void t_set_double(struct span_view *s, struct span_attr *slot, const char *key, double v)
{
	t_attr(s, slot, key, SPAN_ATTR_DOUBLE)->v.d = v;
}

static void t_set_bool(struct span_view *s, struct span_attr *slot, const char *key, bool v)
{
	t_attr(s, slot, key, SPAN_ATTR_BOOL)->v.b = v;
}

/* Packs the elements back to back, each NUL-terminated, as span.h describes. */
static void t_set_arr(struct span_view *s, struct span_attr *slot, const char *key, const char *const *v, size_t n)
{
	struct span_attr *a = t_attr(s, slot, key, SPAN_ATTR_STRING_ARRAY);
	uint16_t off = s->arena_used;
	for (size_t i = 0; i < n; i++)
		t_cstr(s, v[i]);
	a->v.s = (struct span_str){ .off = off, .len = (uint16_t)(s->arena_used - off) };
	a->n = (uint16_t)n;
}

/* Encodes one span and returns a NUL-terminated copy. */
static char *enc_span(const struct span_view *s)
{
	struct buf b = { 0 };
	otlp_json_encode_span(&b, s);
	ck_assert(!b.oom);
	buf_putc(&b, '\0');
	return b.p;
}

/* The request takes each span as its OTLP Span message: n views packed by
 * protobuf-c into bufs[i], described in out[i]. */
static void t_pack(struct span_view *const *v, size_t n, struct buf *bufs, struct span_bytes *out)
{
	for (size_t i = 0; i < n; i++) {
		memset(&bufs[i], 0, sizeof bufs[i]);
		ck_assert(otlp_reference_pack_span(&bufs[i], v[i]));
		out[i].p = bufs[i].p;
		out[i].len = bufs[i].len;
	}
}

static void t_unpack_free(struct buf *bufs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_free(&bufs[i]);
}

/* "{...prefix" + attributes part: the fixed head of t_span's output. */
#define HEAD "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"a1a2a3a4a5a6a7a8\""
#define TAIL_TIMES ",\"kind\":2,\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\""

/* The JSON of a span whose only attribute is a string with these raw bytes. */
static char *enc_str_value(const char *v, size_t len)
{
	struct span_view *s = t_span("x");
	t_set_str(s, t_next(s), "k", v, len);
	char *out = enc_span(s);
	free(s);
	return out;
}

/* Pulls out the encoded "stringValue" of the first attribute (up to the closing "}") */
static void ck_str_value(const char *raw, size_t len, const char *want)
{
	char *out = enc_str_value(raw, len);
	const char *p = strstr(out, "\"stringValue\":");
	ck_assert_ptr_nonnull(p);
	p += strlen("\"stringValue\":");
	const char *end = strstr(p, "}}]");
	ck_assert_ptr_nonnull(end);
	char *got = strndup(p, (size_t)(end - p));
	ck_assert_str_eq(got, want);
	free(got);
	free(out);
}

/* --- python3 round trip --- */

static bool have_python(void)
{
	return system("python3 -c pass >/dev/null 2>&1") == 0;
}

static char *write_tmp(const void *data, size_t len, const char *suffix)
{
	char *path;
	ck_assert_int_gt(asprintf(&path, "/tmp/test_encode_json_XXXXXX%s", suffix), 0);
	int fd = mkstemps(path, (int)strlen(suffix));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

/*
 * Loads json[0..len) with python3 strictly (bytes must be valid UTF-8, no
 * NaN/Infinity literals, no raw control characters) and then runs `checks`,
 * Python code that sees the document as `d` and the extra file's path as
 * `aux` (may be None). Returns true when everything held. Without python3 the
 * check is skipped with a note, and true is returned.
 */
static bool py_check(const char *json, size_t len, const char *checks, const char *aux_data, size_t aux_len)
{
	if (!have_python()) {
		fprintf(stderr, "test_encode_json: python3 not found, JSON round trip skipped\n");
		return true;
	}
	static const char prelude[] =
		"import json, sys\n"
		"raw = open(sys.argv[1], 'rb').read()\n"
		"def _const(x):\n"
		"    raise ValueError('bare constant ' + x)\n"
		"d = json.loads(raw.decode('utf-8', 'strict'), parse_constant=_const)\n"
		"aux = sys.argv[2] if len(sys.argv) > 2 else None\n";
	char *script;
	ck_assert_int_gt(asprintf(&script, "%s%s\n", prelude, checks ? checks : ""), 0);
	char *spath = write_tmp(script, strlen(script), ".py");
	char *jpath = write_tmp(json, len, ".json");
	char *apath = aux_data ? write_tmp(aux_data, aux_len, ".txt") : NULL;
	char *cmd;
	ck_assert_int_gt(asprintf(&cmd, "python3 %s %s %s", spath, jpath, apath ? apath : ""), 0);
	int rc = system(cmd);
	unlink(spath);
	unlink(jpath);
	if (apath)
		unlink(apath);
	free(spath);
	free(jpath);
	free(apath);
	free(script);
	free(cmd);
	return rc == 0;
}

/* --- exact output --- */

START_TEST(test_minimal_span)
{
	struct span_view *s = t_span("GET /");
	char *out = enc_span(s);
	ck_assert_str_eq(out, HEAD ",\"flags\":257,\"name\":\"GET /\"" TAIL_TIMES ",\"status\":{\"code\":0}}");
	free(out);
	free(s);
}
END_TEST

START_TEST(test_parent_and_flags)
{
	struct span_view *s = t_span("n");
	s->has_parent = true;
	s->parent_remote = true;
	s->trace_flags = 3;
	for (int i = 0; i < 8; i++)
		s->parent_span_id[i] = (uint8_t)(0xf0 + i);
	s->trace_state = t_cstr(s, "congo=t61rcWkgMzE");
	char *out = enc_span(s);
	ck_assert_str_eq(out, HEAD ",\"traceState\":\"congo=t61rcWkgMzE\",\"parentSpanId\":\"f0f1f2f3f4f5f6f7\""
			 ",\"flags\":771,\"name\":\"n\"" TAIL_TIMES ",\"status\":{\"code\":0}}");
	free(out);

	/* A local parent: HAS_IS_REMOTE without IS_REMOTE. */
	s->parent_remote = false;
	out = enc_span(s);
	ck_assert_ptr_nonnull(strstr(out, ",\"flags\":259,"));
	free(out);

	/* parent_remote means nothing without a parent; no parentSpanId either. */
	s->has_parent = false;
	s->parent_remote = true;
	out = enc_span(s);
	ck_assert_ptr_nonnull(strstr(out, ",\"flags\":259,"));
	ck_assert_ptr_null(strstr(out, "parentSpanId"));
	free(out);
	free(s);
}
END_TEST

START_TEST(test_times_and_kind)
{
	struct span_view *s = t_span("t");
	s->start_ns = 1700000000123456789ull;
	s->end_ns = UINT64_MAX;
	s->kind = SPAN_KIND_CONSUMER;
	char *out = enc_span(s);
	ck_assert_ptr_nonnull(strstr(out, ",\"kind\":5,\"startTimeUnixNano\":\"1700000000123456789\","
				     "\"endTimeUnixNano\":\"18446744073709551615\","));
	free(out);
	free(s);
}
END_TEST

START_TEST(test_attribute_types)
{
	struct span_view *s = t_span("a");
	t_set_str(s, t_next(s), "http.method", "GET", 3);
	t_set_bool(s, t_next(s), "t", true);
	t_set_bool(s, t_next(s), "f", false);
	t_set_int(s, t_next(s), "i", 42);
	t_set_int(s, t_next(s), "neg", -7);
	t_set_int(s, t_next(s), "min", INT64_MIN);
	t_set_int(s, t_next(s), "max", INT64_MAX);
	t_set_int(s, t_next(s), "zero", 0);
	const char *arr[] = { "a", "", "b c" };
	t_set_arr(s, t_next(s), "arr", arr, 3);
	t_set_arr(s, t_next(s), "empty", arr, 0);
	char *out = enc_span(s);
	ck_assert_str_eq(out, HEAD ",\"flags\":257,\"name\":\"a\"" TAIL_TIMES ",\"attributes\":["
		"{\"key\":\"http.method\",\"value\":{\"stringValue\":\"GET\"}},"
		"{\"key\":\"t\",\"value\":{\"boolValue\":true}},"
		"{\"key\":\"f\",\"value\":{\"boolValue\":false}},"
		"{\"key\":\"i\",\"value\":{\"intValue\":\"42\"}},"
		"{\"key\":\"neg\",\"value\":{\"intValue\":\"-7\"}},"
		"{\"key\":\"min\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
		"{\"key\":\"max\",\"value\":{\"intValue\":\"9223372036854775807\"}},"
		"{\"key\":\"zero\",\"value\":{\"intValue\":\"0\"}},"
		"{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
		"{\"stringValue\":\"\"},{\"stringValue\":\"b c\"}]}}},"
		"{\"key\":\"empty\",\"value\":{\"arrayValue\":{}}}"
		"],\"status\":{\"code\":0}}");
	free(out);
	free(s);
}
END_TEST

/* The array's range may or may not include the last terminator; both decode the same. */
START_TEST(test_string_array_without_last_nul)
{
	struct span_view *s = t_span("a");
	struct span_attr *a = t_attr(s, t_next(s), "arr", SPAN_ATTR_STRING_ARRAY);
	a->v.s = t_str(s, "x\0yz", 4);
	a->n = 2;
	struct span_attr *b = t_attr(s, t_next(s), "arr2", SPAN_ATTR_STRING_ARRAY);
	b->v.s = t_str(s, "x\0", 2);  /* ["x", ""] without the final NUL */
	b->n = 2;
	char *out = enc_span(s);
	ck_assert_ptr_nonnull(strstr(out, "{\"key\":\"arr\",\"value\":{\"arrayValue\":{\"values\":"
				     "[{\"stringValue\":\"x\"},{\"stringValue\":\"yz\"}]}}}"));
	ck_assert_ptr_nonnull(strstr(out, "{\"key\":\"arr2\",\"value\":{\"arrayValue\":{\"values\":"
				     "[{\"stringValue\":\"x\"},{\"stringValue\":\"\"}]}}}"));
	free(out);
	free(s);
}
END_TEST

static char *enc_double(double d)
{
	struct span_view *s = t_span("d");
	t_set_double(s, t_next(s), "d", d);
	char *out = enc_span(s);
	free(s);
	const char *p = strstr(out, "\"doubleValue\":");
	ck_assert_ptr_nonnull(p);
	p += strlen("\"doubleValue\":");
	char *v = strndup(p, strcspn(p, "}"));
	free(out);
	return v;
}

#define CK_DOUBLE(d, want) do { char *v_ = enc_double(d); ck_assert_str_eq(v_, want); free(v_); } while (0)

START_TEST(test_doubles)
{
	CK_DOUBLE(0.1, "0.1");
	CK_DOUBLE(1.5, "1.5");
	CK_DOUBLE(3.0, "3");
	CK_DOUBLE(-2.5e-10, "-2.5e-10");
	CK_DOUBLE(1e300, "1e+300");
	CK_DOUBLE(123456789.125, "123456789.125");
	CK_DOUBLE(1.0 / 3.0, "0.3333333333333333");
	CK_DOUBLE(0.1 + 0.2, "0.30000000000000004");
	CK_DOUBLE(NAN, "\"NaN\"");
	CK_DOUBLE(INFINITY, "\"Infinity\"");
	CK_DOUBLE(-INFINITY, "\"-Infinity\"");
}
END_TEST

/* An application that set a decimal-comma locale must not break the JSON. */
START_TEST(test_doubles_locale)
{
	static const char *const locales[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8", NULL };
	const char *got = NULL;
	for (size_t i = 0; locales[i] && !got; i++)
		got = setlocale(LC_NUMERIC, locales[i]);
	if (!got) {
		fprintf(stderr, "test_encode_json: no decimal-comma locale installed, locale check skipped\n");
		return;
	}
	CK_DOUBLE(1.5, "1.5");
	CK_DOUBLE(-2.5e-10, "-2.5e-10");
	CK_DOUBLE(0.1 + 0.2, "0.30000000000000004");
	setlocale(LC_NUMERIC, "C");
}
END_TEST

START_TEST(test_events_links_status)
{
	struct span_view *s = t_span("e");
	s->status = SPAN_STATUS_ERROR;
	s->status_message = t_cstr(s, "boom");
	s->dropped_attrs = 3;
	s->dropped_events = 4;
	s->dropped_links = 5;

	struct span_event *e = &s->events[s->n_events++];
	e->time_ns = 99;
	e->name = t_cstr(s, "exception");
	e->attr_first = s->n_sub_attrs;
	t_set_str(s, t_next_sub(s), "exception.type", "E", 1);
	t_set_str(s, t_next_sub(s), "exception.message", "m", 1);
	e->attr_count = 2;
	e->dropped_attrs = 1;

	e = &s->events[s->n_events++];
	e->time_ns = 100;
	e->name = t_cstr(s, "bare");

	struct span_link *l = &s->links[s->n_links++];
	memset(l->trace_id, 0xab, sizeof l->trace_id);
	memset(l->span_id, 0xcd, sizeof l->span_id);
	l->flags = 1;
	l->remote = true;
	l->trace_state = t_cstr(s, "a=b");
	l->attr_first = s->n_sub_attrs;
	t_set_int(s, t_next_sub(s), "n", 1);
	l->attr_count = 1;
	l->dropped_attrs = 2;

	l = &s->links[s->n_links++];
	memset(l->trace_id, 0x01, sizeof l->trace_id);
	memset(l->span_id, 0x02, sizeof l->span_id);

	char *out = enc_span(s);
	ck_assert_str_eq(out, HEAD ",\"flags\":257,\"name\":\"e\"" TAIL_TIMES
		",\"droppedAttributesCount\":3"
		",\"events\":["
		"{\"timeUnixNano\":\"99\",\"name\":\"exception\",\"attributes\":["
		"{\"key\":\"exception.type\",\"value\":{\"stringValue\":\"E\"}},"
		"{\"key\":\"exception.message\",\"value\":{\"stringValue\":\"m\"}}],"
		"\"droppedAttributesCount\":1},"
		"{\"timeUnixNano\":\"100\",\"name\":\"bare\"}]"
		",\"droppedEventsCount\":4"
		",\"links\":["
		"{\"traceId\":\"abababababababababababababababab\",\"spanId\":\"cdcdcdcdcdcdcdcd\","
		"\"traceState\":\"a=b\",\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":\"1\"}}],"
		"\"droppedAttributesCount\":2,\"flags\":769},"
		"{\"traceId\":\"01010101010101010101010101010101\",\"spanId\":\"0202020202020202\",\"flags\":256}]"
		",\"droppedLinksCount\":5"
		",\"status\":{\"code\":2,\"message\":\"boom\"}}");
	free(out);
	free(s);
}
END_TEST

/* --- escaping --- */

START_TEST(test_escape_ascii)
{
	static const char raw[] = "a\"b\\c/\n\t\r\b\f\x01\x1f\x7f~";
	ck_str_value(raw, sizeof raw - 1, "\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u001f\x7f~\"");
	ck_str_value("a\0b", 3, "\"a\\u0000b\"");
	ck_str_value("", 0, "\"\"");
}
END_TEST

START_TEST(test_escape_utf8)
{
	/* Well-formed 2-, 3- and 4-byte sequences pass through untouched. */
	ck_str_value("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
		     13, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
#define FFFD "\xef\xbf\xbd"
	ck_str_value("\xff", 1, "\"" FFFD "\"");
	ck_str_value("a\x80z", 3, "\"a" FFFD "z\"");
	ck_str_value("\xc3", 1, "\"" FFFD "\"");                       /* cut at the end */
	ck_str_value("\xe2\x82", 2, "\"" FFFD "\"");                   /* one U+FFFD for a cut sequence */
	ck_str_value("\xe2\x82x", 3, "\"" FFFD "x\"");
	ck_str_value("\xf0\x9f\x98\"", 4, "\"" FFFD "\\\"\"");          /* a quote ends it, and is escaped */
	ck_str_value("\xc0\xaf", 2, "\"" FFFD FFFD "\"");               /* overlong '/' */
	ck_str_value("\xe0\x80\xaf", 3, "\"" FFFD FFFD FFFD "\"");      /* overlong */
	ck_str_value("\xed\xa0\x80", 3, "\"" FFFD FFFD FFFD "\"");      /* surrogate */
	ck_str_value("\xf4\x90\x80\x80", 4, "\"" FFFD FFFD FFFD FFFD "\""); /* above U+10FFFF */
	ck_str_value("\xf8\x88\x80\x80\x80", 5, "\"" FFFD FFFD FFFD FFFD FFFD "\"");
#undef FFFD
}
END_TEST

/* Every string field goes through the escaper: names, keys, tracestate, status message. */
START_TEST(test_escape_every_field)
{
	static const char nasty[] = "q\"\\\x01\xff\n";
	struct span_view *s = t_span("");
	s->name = t_str(s, nasty, sizeof nasty - 1);
	s->trace_state = t_str(s, nasty, sizeof nasty - 1);
	s->status = SPAN_STATUS_ERROR;
	s->status_message = t_str(s, nasty, sizeof nasty - 1);
	struct span_attr *a = t_attr(s, t_next(s), "", SPAN_ATTR_STRING);
	a->key = t_str(s, nasty, sizeof nasty - 1);
	a->v.s = t_str(s, nasty, sizeof nasty - 1);
	struct span_event *e = &s->events[s->n_events++];
	e->name = t_str(s, nasty, sizeof nasty - 1);
	e->attr_first = s->n_sub_attrs;
	t_set_arr(s, t_next_sub(s), nasty, (const char *const[]){ nasty, nasty }, 2);
	e->attr_count = 1;
	struct span_link *l = &s->links[s->n_links++];
	l->trace_state = t_str(s, nasty, sizeof nasty - 1);

	char *out = enc_span(s);
	const char *want = "\"q\\\"\\\\\\u0001\xef\xbf\xbd\\n\"";
	size_t hits = 0;
	for (const char *p = out; (p = strstr(p, want)); p++)
		hits++;
	ck_assert_uint_eq(hits, 10);
	ck_assert(py_check(out, strlen(out),
		"w = 'q\"\\\\\\x01\\ufffd\\n'\n"
		"assert d['name'] == w and d['traceState'] == w\n"
		"assert d['status'] == {'code': 2, 'message': w}\n"
		"assert d['attributes'] == [{'key': w, 'value': {'stringValue': w}}]\n"
		"ev = d['events'][0]\n"
		"assert ev['name'] == w and ev['timeUnixNano'] == '0'\n"
		"assert ev['attributes'][0]['key'] == w\n"
		"assert ev['attributes'][0]['value'] == {'arrayValue': {'values': [{'stringValue': w}] * 2}}\n"
		"assert d['links'][0]['traceState'] == w\n",
		NULL, 0));
	free(out);
	free(s);
}
END_TEST

/* Random bytes everywhere: the document must always parse, and each string
 * must decode to what Python's own UTF-8 decoder makes of the raw bytes with
 * errors='replace' (same maximal-subpart rule for U+FFFD). */
START_TEST(test_random_bytes_round_trip)
{
	struct buf json = { 0 }, expect = { 0 };
	unsigned seed = 12345;
	struct span_view *spans[8];

	for (int k = 0; k < 8; k++) {
		struct span_view *s = t_span("r");
		for (int i = 0; i < 12; i++) {
			char v[96];
			size_t len = (size_t)(rand_r(&seed) % (int)sizeof v);
			for (size_t j = 0; j < len; j++) {
				int r = rand_r(&seed);
				/* Bias toward UTF-8 lead and continuation bytes so sequences form. */
				switch (r % 4) {
				case 0: v[j] = (char)(r >> 8); break;
				case 1: v[j] = (char)(0x80 | ((r >> 8) & 0x3f)); break;
				case 2: v[j] = (char)(0xc0 | ((r >> 8) & 0x3f)); break;
				default: v[j] = (char)((r >> 8) & 0x7f); break;
				}
				/* protobuf-c, which packs the request's Span messages here,
				 * takes strings as C strings: no NUL (test_escape_ascii
				 * has one, through the span encoder). */
				if (!v[j])
					v[j] = 1;
			}
			t_set_str(s, t_next(s), "k", v, len);
			static const char hex[] = "0123456789abcdef";
			for (size_t j = 0; j < len; j++) {
				buf_putc(&expect, hex[(unsigned char)v[j] >> 4]);
				buf_putc(&expect, hex[(unsigned char)v[j] & 0xf]);
			}
			buf_putc(&expect, '\n');
		}
		spans[k] = s;
	}
	struct buf packed[8];
	struct span_bytes bytes[8];
	t_pack(spans, 8, packed, bytes);
	otlp_json_encode_request(&json, NULL, "libtraceagent", "0.1.0", bytes, 8);
	t_unpack_free(packed, 8);
	ck_assert(!json.oom && !expect.oom);
	ck_assert(py_check(json.p, json.len,
		"want = [bytes.fromhex(x).decode('utf-8', 'replace') for x in open(aux).read().split('\\n')[:-1]]\n"
		"got = [a['value']['stringValue'] for s in d['resourceSpans'][0]['scopeSpans'][0]['spans']\n"
		"       for a in s['attributes']]\n"
		"assert len(want) == 96 and got == want\n",
		expect.p, expect.len));
	for (int k = 0; k < 8; k++)
		free(spans[k]);
	buf_free(&json);
	buf_free(&expect);
}
END_TEST

/* A corrupt range in a record costs a garbled string, never a read past the record. */
START_TEST(test_out_of_range_strings)
{
	struct span_view *s = t_span("x");
	s->name = (struct span_str){ .off = SPAN_VIEW_ARENA - 4, .len = 500 };
	s->status_message = (struct span_str){ .off = 65535, .len = 65535 };
	struct span_event *e = &s->events[s->n_events++];
	e->attr_first = SPAN_MAX_SUB_ATTRS - 1;
	e->attr_count = 200;
	s->n_events = 200;
	s->n_links = 200;
	s->n_attrs = 255;
	char *out = enc_span(s);
	ck_assert_ptr_nonnull(strstr(out, ",\"name\":\"\\u0000\\u0000\\u0000\\u0000\","));
	ck_assert(py_check(out, strlen(out),
		"assert len(d['events']) == 4 and len(d['links']) == 4 and len(d['attributes']) == 40\n"
		"assert len(d['events'][0]['attributes']) == 1\n"
		"assert 'message' not in d['status']\n",
		NULL, 0));
	free(out);
	free(s);
}
END_TEST

/* --- request and console line --- */

static void t_resource(struct resource *r)
{
	memset(r, 0, sizeof *r);
	r->attrs[r->count++] = (struct resource_attr){ .key = "deployment.environment", .str = "prod" };
	r->attrs[r->count++] = (struct resource_attr){ .key = "service.name", .str = "svc \"x\"" };
	r->attrs[r->count++] = (struct resource_attr){ .key = "process.pid", .is_int = true, .i = 4242 };
}

START_TEST(test_request)
{
	struct resource res;
	t_resource(&res);
	struct span_view *a = t_span("first"), *b = t_span("second");
	b->has_parent = true;
	b->parent_span_id[7] = 1;
	t_set_double(b, t_next(b), "ratio", 0.25);
	struct span_view *spans[] = { a, b };

	struct buf out = { 0 };
	buf_puts(&out, "prefix:");  /* appends, never resets */
	struct buf packed[2];
	struct span_bytes bytes[2];
	t_pack(spans, 2, packed, bytes);
	otlp_json_encode_request(&out, &res, "libtraceagent", "0.1.0", bytes, 2);
	t_unpack_free(packed, 2);
	ck_assert(!out.oom);
	ck_assert_int_eq(memcmp(out.p, "prefix:", 7), 0);
	const char *json = out.p + 7;
	size_t len = out.len - 7;

	static const char head[] =
		"{\"resourceSpans\":[{\"resource\":{\"attributes\":["
		"{\"key\":\"deployment.environment\",\"value\":{\"stringValue\":\"prod\"}},"
		"{\"key\":\"service.name\",\"value\":{\"stringValue\":\"svc \\\"x\\\"\"}},"
		"{\"key\":\"process.pid\",\"value\":{\"intValue\":\"4242\"}}]},"
		"\"scopeSpans\":[{\"scope\":{\"name\":\"libtraceagent\",\"version\":\"0.1.0\"},\"spans\":[";
	ck_assert_uint_gt(len, sizeof head);
	ck_assert_int_eq(memcmp(json, head, sizeof head - 1), 0);
	ck_assert_int_eq(memcmp(json + len - 5, "}]}]}", 5), 0);

	ck_assert(py_check(json, len,
		"assert list(d) == ['resourceSpans'] and len(d['resourceSpans']) == 1\n"
		"rs = d['resourceSpans'][0]\n"
		"attrs = {a['key']: a['value'] for a in rs['resource']['attributes']}\n"
		"assert attrs['service.name'] == {'stringValue': 'svc \"x\"'}\n"
		"assert attrs['process.pid'] == {'intValue': '4242'}\n"
		"ss = rs['scopeSpans']\n"
		"assert len(ss) == 1 and ss[0]['scope'] == {'name': 'libtraceagent', 'version': '0.1.0'}\n"
		"sp = ss[0]['spans']\n"
		"assert [s['name'] for s in sp] == ['first', 'second']\n"
		"assert 'parentSpanId' not in sp[0]\n"
		"assert sp[1]['parentSpanId'] == '0000000000000001'\n"
		"assert sp[1]['traceId'] == '0102030405060708090a0b0c0d0e0f10'\n"
		"assert sp[1]['attributes'] == [{'key': 'ratio', 'value': {'doubleValue': 0.25}}]\n"
		"assert sp[1]['flags'] == 257 and sp[1]['kind'] == 2\n",
		NULL, 0));
	buf_free(&out);
	free(a);
	free(b);
}
END_TEST

START_TEST(test_request_empty)
{
	struct buf out = { 0 };
	otlp_json_encode_request(&out, NULL, NULL, "", NULL, 0);
	buf_putc(&out, '\0');
	ck_assert_str_eq(out.p, "{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{}}]}]}");
	buf_reset(&out);
	otlp_json_encode_request(&out, NULL, "", "1", NULL, 0);
	buf_putc(&out, '\0');
	ck_assert_str_eq(out.p, "{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{\"version\":\"1\"}}]}]}");
	buf_free(&out);
}
END_TEST

START_TEST(test_console_line)
{
	struct resource res;
	t_resource(&res);
	struct span_view *s = t_span("GET /");
	struct buf out = { 0 };
	otlp_json_console_line(&out, &res, s);
	otlp_json_console_line(&out, NULL, s);
	buf_putc(&out, '\0');
	char *span = enc_span(s);
	char *want;
	ck_assert_int_gt(asprintf(&want, "{\"resource\":{\"service.name\":\"svc \\\"x\\\"\"},\"span\":%s}\n"
				  "{\"resource\":{},\"span\":%s}\n", span, span), 0);
	ck_assert_str_eq(out.p, want);
	/* Exactly one newline per line: nothing inside the JSON may break a line. */
	const char *nl = strchr(out.p, '\n');
	ck_assert_ptr_nonnull(nl);
	ck_assert(py_check(out.p, (size_t)(nl - out.p),
		"assert d['resource'] == {'service.name': 'svc \"x\"'}\n"
		"assert d['span']['name'] == 'GET /'\n",
		NULL, 0));
	free(want);
	free(span);
	free(s);
	buf_free(&out);
}
END_TEST

Suite *encode_json_suite(void)
{
	Suite *su = suite_create("encode_json");
	TCase *tc = tcase_create("span");
	tcase_add_test(tc, test_minimal_span);
	tcase_add_test(tc, test_parent_and_flags);
	tcase_add_test(tc, test_times_and_kind);
	tcase_add_test(tc, test_attribute_types);
	tcase_add_test(tc, test_string_array_without_last_nul);
	tcase_add_test(tc, test_doubles);
	tcase_add_test(tc, test_doubles_locale);
	tcase_add_test(tc, test_events_links_status);
	suite_add_tcase(su, tc);

	tc = tcase_create("escaping");
	tcase_add_test(tc, test_escape_ascii);
	tcase_add_test(tc, test_escape_utf8);
	tcase_add_test(tc, test_escape_every_field);
	tcase_add_test(tc, test_random_bytes_round_trip);
	tcase_add_test(tc, test_out_of_range_strings);
	tcase_set_timeout(tc, 30);  /* python3 start-up on a loaded machine */
	suite_add_tcase(su, tc);

	tc = tcase_create("request");
	tcase_add_test(tc, test_request);
	tcase_add_test(tc, test_request_empty);
	tcase_add_test(tc, test_console_line);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(su, tc);
	return su;
}
