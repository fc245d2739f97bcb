/* libFuzzer harness for agent/url.c: any bytes parse or are refused within bounds, and a masked URL's userinfo is replaced whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/url.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);   /* exactly sized: ASan sees any read past it */
	memcpy(in, data, size);
	struct url u;
	if (url_parse(in, size, &u)) {
		CHECK(u.host && u.host_len > 0 && u.host >= in && u.host + u.host_len <= in + size);
		CHECK(u.port > 0);
		CHECK(u.path >= in && u.path + u.path_len <= in + size);
		CHECK(!u.path_len || u.path[0] == '/');
		CHECK(!u.query || (u.query > in && u.query[-1] == '?' && u.query + u.query_len <= in + size));
		CHECK(!u.userinfo || (u.userinfo + u.userinfo_len < in + size && u.userinfo[u.userinfo_len] == '@'));
	}
	size_t cap = size % 97;
	char out[128];
	size_t n = url_redact(in, size, out, cap);
	CHECK(cap == 0 ? n == 0 : n < cap && out[n] == '\0');
	if (url_parse(in, size, &u) && u.userinfo) {
		/* the userinfo is replaced whole: scheme, then "***@", then the host */
		size_t scheme = u.https ? 8 : 7;
		char want[16];
		memcpy(want, in, scheme);
		memcpy(want + scheme, "***@", 4);
		size_t cmp = scheme + 4 < n ? scheme + 4 : n;
		CHECK(memcmp(out, want, cmp) == 0);
	}
	free(in);
	return 0;
}
