/* Endpoint URLs: a strict http(s) splitter, and the masked form every diagnostic prints. */
#include "url.h"

#include <string.h>

#include "ascii.h"

static bool prefix_nocase(const char *s, size_t n, const char *lit, size_t litn)
{
	if (n < litn)
		return false;
	for (size_t i = 0; i < litn; i++)
		if (ascii_lower(s[i]) != lit[i])
			return false;
	return true;
}

/* Bytes a URL can never hold as such: blanks and controls (RFC 3986 2). */
static bool bad_byte(unsigned char ch)
{
	return ch <= 0x20 || ch == 0x7f;
}

/* ":port" (from the ':') or nothing at all. */
static int32_t port_of(const char *p, size_t n)
{
	uint32_t v = 0;

	if (n == 0 || (n == 1 && p[0] == ':'))
		return URL_PORT_NONE;
	if (p[0] != ':' || n > 6)
		return URL_PORT_BAD;
	for (size_t i = 1; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return URL_PORT_BAD;
		v = v * 10 + (uint32_t)(p[i] - '0');
	}
	return v > 65535 ? URL_PORT_BAD : (int32_t)v;
}

bool url_host_port(const char *s, size_t n, const char **host, size_t *host_len, int32_t *port, bool *ipv6)
{
	size_t end;

	*ipv6 = n && s[0] == '[';
	if (*ipv6) {
		const char *close = memchr(s, ']', n);
		if (!close)
			return false;
		*host = s + 1;
		*host_len = (size_t)(close - s) - 1;
		end = (size_t)(close - s) + 1;
	} else {
		/* short (a Host header per request): a loop beats a call */
		size_t k = 0;
		while (k < n && s[k] != ':')
			k++;
		*host = s;
		*host_len = k;
		end = k;
	}
	*port = port_of(s + end, n - end);
	return *host_len != 0;
}

bool url_parse(const char *s, size_t n, struct url *u)
{
	size_t i;

	memset(u, 0, sizeof *u);
	for (i = 0; i < n; i++)
		if (bad_byte((unsigned char)s[i]))
			return false;
	if (prefix_nocase(s, n, "https://", 8)) {
		u->https = true;
		i = 8;
	} else if (prefix_nocase(s, n, "http://", 7)) {
		i = 7;
	} else {
		return false;
	}
	size_t a = i;
	while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	size_t aend = i;
	u->authority_end = s + aend;

	/* userinfo: up to the last '@' of the authority */
	size_t h = a;
	for (size_t k = a; k < aend; k++)
		if (s[k] == '@')
			h = k + 1;
	if (h > a) {
		u->userinfo = s + a;
		u->userinfo_len = h - 1 - a;
	}
	int32_t port;
	if (!url_host_port(s + h, aend - h, &u->host, &u->host_len, &port, &u->ipv6))
		return false;
	if (!u->ipv6 && (memchr(u->host, '[', u->host_len) || memchr(u->host, ']', u->host_len)))
		return false;
	if (port == URL_PORT_BAD || port == 0)
		return false;
	u->port = port > 0 ? (uint16_t)port : u->https ? 443 : 80;

	size_t end = n;
	const char *hash = memchr(s + aend, '#', n - aend);
	if (hash)
		end = (size_t)(hash - s);
	const char *q = memchr(s + aend, '?', end - aend);
	size_t pend = q ? (size_t)(q - s) : end;
	u->path = s + aend;
	u->path_len = pend - aend;
	if (q) {
		u->query = q + 1;
		u->query_len = end - pend - 1;
	}
	return true;
}

struct out {
	char *p;
	size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && o->len + 1 < o->cap; i++)
		o->p[o->len++] = bad_byte((unsigned char)s[i]) ? '?' : s[i];
}

static void put_query_masked(struct out *o, const char *q, size_t n)
{
	size_t i = 0;
	while (i <= n) {
		size_t start = i;
		while (i < n && q[i] != '&')
			i++;
		const char *eq = memchr(q + start, '=', i - start);
		if (eq) {
			put(o, q + start, (size_t)(eq - q) - start + 1);
			put(o, "***", 3);
		} else if (i > start) {
			put(o, "***", 3);
		}
		if (i < n)
			put(o, "&", 1);
		i++;
	}
}

size_t url_redact(const char *s, size_t n, char *out, size_t cap)
{
	struct out o = { out, cap, 0 };

	if (!cap)
		return 0;
	/* No parse needed (a URL that fails to parse is printed in warnings too):
	 * the authority ends at the first '/', '?' or '#' after "://", and its
	 * userinfo at the last '@' inside it. */
	const char *sep = n >= 3 ? memmem(s, n, "://", 3) : NULL;
	size_t a = sep ? (size_t)(sep - s) + 3 : 0, i = a;
	while (i < n && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	size_t at = a;
	for (size_t k = a; k < i; k++)
		if (s[k] == '@')
			at = k + 1;
	put(&o, s, a);
	if (at > a)
		put(&o, "***@", 4);
	put(&o, s + at, i - at);
	size_t end = i;
	while (end < n && s[end] != '#')
		end++;
	const char *q = memchr(s + i, '?', end - i);
	size_t pend = q ? (size_t)(q - s) : end;
	put(&o, s + i, pend - i);
	if (q) {
		put(&o, "?", 1);
		put_query_masked(&o, q + 1, end - pend - 1);
	}
	out[o.len] = '\0';
	return o.len;
}
