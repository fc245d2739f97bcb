/* Unit tests for agent/url.c: splitting endpoint URLs, and masking what may be secret before printing. */
#include <check.h>
#include <string.h>

#include "agent/url.h"

struct parse_case {
	const char *in;
	bool ok, https;
	const char *userinfo, *host;
	unsigned port;
	const char *path, *query;
};

static const struct parse_case parse_cases[] = {
	{ "http://localhost:4318/v1/traces", true, false, NULL, "localhost", 4318, "/v1/traces", NULL },
	{ "HTTPS://Collector.example.com/otlp?x=1", true, true, NULL, "Collector.example.com", 443, "/otlp", "x=1" },
	{ "http://u:p@h", true, false, "u:p", "h", 80, "", NULL },
	{ "http://a@b@h:1/", true, false, "a@b", "h", 1, "/", NULL },
	{ "http://[::1]:4318/p", true, false, NULL, "::1", 4318, "/p", NULL },
	{ "https://[fe80::1]", true, true, NULL, "fe80::1", 443, "", NULL },
	{ "http://h:/p", true, false, NULL, "h", 80, "/p", NULL },
	{ "http://h?q#f", true, false, NULL, "h", 80, "", "q" },
	{ "http://h/p#f?notquery", true, false, NULL, "h", 80, "/p", NULL },
	{ "http://h:65535", true, false, NULL, "h", 65535, "", NULL },
	/* refused */
	{ "http://h:65536", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://h:0", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://h:8a", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://:80/", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://u@/x", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://[::1/x", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://[::1]x/", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://h]/", false, false, NULL, NULL, 0, NULL, NULL },
	{ "ftp://h", false, false, NULL, NULL, 0, NULL, NULL },
	{ "localhost:4318", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://a b", false, false, NULL, NULL, 0, NULL, NULL },
	{ "http://h/\tp", false, false, NULL, NULL, 0, NULL, NULL },
	{ "", false, false, NULL, NULL, 0, NULL, NULL },
};

static void check_part(const char *what, const char *in, const char *got, size_t len, const char *want)
{
	if (!want) {
		ck_assert_msg(got == NULL, "%s: %s should be absent", in, what);
		return;
	}
	ck_assert_msg(got != NULL, "%s: %s missing", in, what);
	ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0, "%s: %s is '%.*s', expected '%s'", in,
		      what, (int)len, got, want);
}

START_TEST(url_parse_table)
{
	for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
		const struct parse_case *c = &parse_cases[i];
		struct url u;
		bool ok = url_parse(c->in, strlen(c->in), &u);
		ck_assert_msg(ok == c->ok, "%s: parse gave %d", c->in, ok);
		if (!ok)
			continue;
		ck_assert_msg(u.https == c->https, "%s: https", c->in);
		check_part("userinfo", c->in, u.userinfo, u.userinfo_len, c->userinfo);
		check_part("host", c->in, u.host, u.host_len, c->host);
		ck_assert_msg(u.port == c->port, "%s: port %u", c->in, u.port);
		check_part("path", c->in, u.path, u.path_len, c->path);
		check_part("query", c->in, u.query, u.query_len, c->query);
	}
}
END_TEST

START_TEST(url_redact_table)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "http://localhost:4318/v1/traces", "http://localhost:4318/v1/traces" },
		{ "http://user:secret@host:4318/v1/traces?api_key=k", "http://***@host:4318/v1/traces?api_key=***" },
		{ "https://tok@h/p?a=1&b&c=", "https://***@h/p?a=***&***&c=***" },
		{ "http://h/p?", "http://h/p?" },
		{ "http://h/p#frag?x=1", "http://h/p" },
		{ "http://a@b@h/", "http://***@h/" },
		{ "http://h/a@b", "http://h/a@b" },   /* an '@' in the path is no userinfo */
		/* not URLs we would use, masked all the same */
		{ "user:hunter2@collector:4318", "***@collector:4318" },
		{ "http://u:p@h:99999/?k=v", "http://***@h:99999/?k=***" },
		{ "x\ny", "x?y" },
		{ "", "" },
	};
	char out[128];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = url_redact(cases[i].in, strlen(cases[i].in), out, sizeof out);
		ck_assert_msg(strcmp(out, cases[i].want) == 0, "%s -> '%s', expected '%s'", cases[i].in, out,
			      cases[i].want);
		ck_assert_uint_eq(n, strlen(out));
	}
}
END_TEST

/* The one host:port splitter (URLs, Host headers, broker addresses). */
START_TEST(url_host_port_table)
{
	static const struct {
		const char *in;
		bool ok;
		const char *host;
		int32_t port;
		bool ipv6;
	} cases[] = {
		{ "example.com", true, "example.com", URL_PORT_NONE, false },
		{ "127.0.0.1:8080", true, "127.0.0.1", 8080, false },
		{ "h:", true, "h", URL_PORT_NONE, false },
		{ "h:0", true, "h", 0, false },
		{ "h:65535", true, "h", 65535, false },
		{ "h:00080", true, "h", 80, false },
		{ "h:65536", true, "h", URL_PORT_BAD, false },
		{ "h:99999", true, "h", URL_PORT_BAD, false },
		{ "h:000080", true, "h", URL_PORT_BAD, false },
		{ "h:8a", true, "h", URL_PORT_BAD, false },
		{ "h:-1", true, "h", URL_PORT_BAD, false },
		{ "a:b:80", true, "a", URL_PORT_BAD, false },
		{ "[::1]", true, "::1", URL_PORT_NONE, true },
		{ "[::1]:9092", true, "::1", 9092, true },
		{ "[fe80::1%eth0]:1", true, "fe80::1%eth0", 1, true },
		{ "[::1]:", true, "::1", URL_PORT_NONE, true },
		{ "[::1]x", true, "::1", URL_PORT_BAD, true },
		{ "[::1]:x", true, "::1", URL_PORT_BAD, true },
		/* no host */
		{ "", false, NULL, 0, false },
		{ ":80", false, NULL, 0, false },
		{ "[]:80", false, NULL, 0, true },
		{ "[::1", false, NULL, 0, true },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *host = NULL;
		size_t hl = 0;
		int32_t port = 12345;
		bool v6 = !cases[i].ipv6;
		bool ok = url_host_port(cases[i].in, strlen(cases[i].in), &host, &hl, &port, &v6);
		ck_assert_msg(ok == cases[i].ok, "%s: gave %d", cases[i].in, ok);
		ck_assert_msg(v6 == cases[i].ipv6, "%s: ipv6 %d", cases[i].in, v6);
		if (!ok)
			continue;
		check_part("host", cases[i].in, host, hl, cases[i].host);
		ck_assert_msg(port == cases[i].port, "%s: port %d, want %d", cases[i].in, port, cases[i].port);
	}
}
END_TEST

/* The output is always terminated and never overflows, whatever its size. */
START_TEST(url_redact_small_buffers)
{
	const char *in = "http://user:secret@host:4318/v1/traces?api_key=k&other=zzz";
	char out[64];
	for (size_t cap = 0; cap < sizeof out; cap++) {
		memset(out, 'X', sizeof out);
		size_t n = url_redact(in, strlen(in), out, cap);
		if (!cap) {
			ck_assert_uint_eq(n, 0);
			ck_assert_int_eq(out[0], 'X');
			continue;
		}
		ck_assert_uint_lt(n, cap);
		ck_assert_int_eq(out[n], '\0');
		ck_assert_int_eq(out[cap], 'X');
		ck_assert_ptr_null(strstr(out, "secret"));
	}
}
END_TEST

Suite *url_suite(void)
{
	Suite *s = suite_create("url");
	TCase *tc = tcase_create("url");
	tcase_add_test(tc, url_parse_table);
	tcase_add_test(tc, url_host_port_table);
	tcase_add_test(tc, url_redact_table);
	tcase_add_test(tc, url_redact_small_buffers);
	suite_add_tcase(s, tc);
	return s;
}
