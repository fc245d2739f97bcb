/* Parses TRACEAGENT_FUNCTIONS specs and matches symbol names against their globs; pure, over (const char *, size_t). */
#include "funcspec.h"

#include <string.h>

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Symbol names as C and C++ (mangled or written) have them, plus the glob's two characters. */
static bool pattern_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
	       c == '$' || c == '~' || c == '*' || c == '?';
}

/* A file name or path: no separator of ours, no space or control character. */
static bool object_char(char c)
{
	return (unsigned char)c > ' ' && c != ',' && c != ':' && c != '@' && c != 0x7f;
}

static bool eq(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static bool parse_option(const char *p, size_t n, struct funcspec *out)
{
	if (n > 6 && memcmp(p, "error=", 6) == 0) {
		p += 6, n -= 6;
		if (eq(p, n, "neg"))
			out->error = FUNCSPEC_ERROR_NEG;
		else if (eq(p, n, "zero"))
			out->error = FUNCSPEC_ERROR_ZERO;
		else if (eq(p, n, "nonzero"))
			out->error = FUNCSPEC_ERROR_NONZERO;
		else if (eq(p, n, "null"))
			out->error = FUNCSPEC_ERROR_NULL;
		else
			return false;
		return true;
	}
	if (n == 6 && memcmp(p, "args=", 5) == 0 && p[5] >= '0' && p[5] <= '0' + FUNCSPEC_ARGS_MAX) {
		out->args = (uint8_t)(p[5] - '0');
		return true;
	}
	return false;
}

static bool parse_one(const char *p, size_t n, struct funcspec *out)
{
	memset(out, 0, sizeof *out);
	size_t i = 0;
	/* "::" belongs to a C++ name (ns::Task::apply); a single ':' opens an option. */
	while (i < n && (pattern_char(p[i]) || (p[i] == ':' && i + 1 < n && p[i + 1] == ':' && (i += 1))))
		i++;
	if (i == 0)
		return false;
	out->pattern = p;
	out->pattern_len = i;
	if (i < n && p[i] == '@') {
		size_t o = ++i;
		while (i < n && object_char(p[i]))
			i++;
		if (i == o)
			return false;
		out->object = p + o;
		out->object_len = i - o;
	}
	while (i < n) {
		if (p[i] != ':')
			return false;
		size_t o = ++i;
		while (i < n && p[i] != ':')
			i++;
		if (!parse_option(p + o, i - o, out))
			return false;
	}
	return true;
}

int funcspec_next(const char *s, size_t len, size_t *pos, struct funcspec *out, const char **bad, size_t *bad_len)
{
	for (;;) {
		size_t i = *pos;
		if (i >= len)
			return 0;
		size_t end = i;
		while (end < len && s[end] != ',')
			end++;
		*pos = end < len ? end + 1 : len;
		size_t a = i, b = end;
		while (a < b && is_space(s[a]))
			a++;
		while (b > a && is_space(s[b - 1]))
			b--;
		if (a == b)
			continue;
		if (parse_one(s + a, b - a, out))
			return 1;
		*bad = s + a;
		*bad_len = b - a;
		return -1;
	}
}

/* Iterative, with one backtrack point per '*': linear in practice, never recursive on hostile input. */
bool funcspec_glob(const char *pat, size_t plen, const char *name, size_t nlen)
{
	size_t p = 0, n = 0, star_p = (size_t)-1, star_n = 0;
	while (n < nlen) {
		if (p < plen && (pat[p] == '?' || pat[p] == name[n]) && pat[p] != '*') {
			p++, n++;
		} else if (p < plen && pat[p] == '*') {
			star_p = p++;
			star_n = n;
		} else if (star_p != (size_t)-1) {
			p = star_p + 1;
			n = ++star_n;
		} else {
			return false;
		}
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}

bool funcspec_is_error(enum funcspec_error rule, uint64_t ret)
{
	int32_t i = (int32_t)(uint32_t)ret;
	switch (rule) {
	case FUNCSPEC_ERROR_NEG:
		return i < 0;
	case FUNCSPEC_ERROR_ZERO:
		return i == 0;
	case FUNCSPEC_ERROR_NONZERO:
		return i != 0;
	case FUNCSPEC_ERROR_NULL:
		return ret == 0;
	default:
		return false;
	}
}
