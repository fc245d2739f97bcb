/* libFuzzer harness for agent/funcspec.c and agent/elfsym.c: any bytes parse as specs or are refused within bounds, globs terminate, and any image yields only symbols inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/elfsym.h"
#include "agent/funcspec.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);   /* exactly sized: ASan sees any read past it */
	memcpy(in, data, size);
	size_t pos = 0, last = 0;
	struct funcspec s;
	const char *bad;
	size_t bad_len;
	int r;
	while ((r = funcspec_next(in, size, &pos, &s, &bad, &bad_len)) != 0) {
		CHECK(pos > last && pos <= size);
		last = pos;
		if (r > 0) {
			CHECK(s.pattern >= in && s.pattern_len > 0 && s.pattern + s.pattern_len <= in + size);
			CHECK(!s.object_len || (s.object > s.pattern && s.object + s.object_len <= in + size));
			CHECK(s.args <= FUNCSPEC_ARGS_MAX);
			/* a pattern without wildcards matches itself */
			if (!memchr(s.pattern, '*', s.pattern_len) && !memchr(s.pattern, '?', s.pattern_len))
				CHECK(funcspec_glob(s.pattern, s.pattern_len, s.pattern, s.pattern_len));
		} else {
			CHECK(bad >= in && bad_len > 0 && bad + bad_len <= in + size);
		}
	}
	size_t half = size / 2;
	(void)funcspec_glob(in, half, in + half, size - half);
	struct elfsym_iter it;
	if (elfsym_open(&it, in, size)) {
		struct elfsym e;
		for (unsigned n = 0; n < 100000 && elfsym_next(&it, &e); n++)
			CHECK(e.name >= in && e.name_len > 0 && e.name + e.name_len < in + size && e.name[e.name_len] == '\0');
	}
	free(in);
	return 0;
}
