/* http:// and https:// URLs as pure functions: split into parts, and a form safe to print (no credentials). */
#ifndef TRACEAGENT_URL_H
#define TRACEAGENT_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Views into the parsed string; lengths are exact, nothing is NUL-terminated. */
struct url {
	bool https;
	const char *userinfo;    /* before the '@' of the authority; NULL when absent */
	size_t userinfo_len;
	const char *host;        /* an IPv6 literal without its brackets */
	size_t host_len;
	bool ipv6;
	uint16_t port;           /* as given, else 80 or 443 */
	const char *path;        /* from its '/' up to '?' or '#'; empty when absent */
	size_t path_len;
	const char *query;       /* after the '?' up to '#'; NULL when absent */
	size_t query_len;
	const char *authority_end;  /* where the path (or query, or end) starts */
};

/* Parses an absolute http(s) URL (RFC 3986): scheme (any case), authority with
 * optional userinfo, host (reg-name, IPv4 or [IPv6]), optional port (1..65535;
 * empty means the default), path, query; a fragment is ignored. Returns false
 * for another scheme, an empty host, a bad port or bracket, or a blank or
 * control byte anywhere. */
bool url_parse(const char *s, size_t n, struct url *u);

/* What url_host_port says about the port besides its number. */
#define URL_PORT_NONE (-1)   /* no ":port", or nothing after the ':' */
#define URL_PORT_BAD  (-2)   /* not 1 to 5 digits up to 65535, or bytes after ']' that are not ":port" */

/*
 * The one host:port splitter: an authority without userinfo ("host",
 * "host:port", "[v6]" or "[v6]:port"), as in a URL, a Host header or a
 * broker address. *host excludes the brackets of an IPv6 literal; otherwise
 * it ends at the first ':'. *port is 0..65535, URL_PORT_NONE or
 * URL_PORT_BAD. False when there is no host (empty, or '[' without ']').
 */
bool url_host_port(const char *s, size_t n, const char **host, size_t *host_len, int32_t *port, bool *ipv6);

/*
 * Writes s into out (at most cap bytes, NUL-terminated when cap > 0) with what
 * may be secret masked: the userinfo becomes "***", and so does each query
 * parameter's value (a parameter without '=' is masked whole). Scheme, host,
 * port and path stay, so the line still says where we send. Works on any
 * string, parsed or not (control bytes become '?'; a fragment is left out).
 * Returns the length written.
 */
size_t url_redact(const char *s, size_t n, char *out, size_t cap);

#endif
