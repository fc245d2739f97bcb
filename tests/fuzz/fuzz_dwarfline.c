/* libFuzzer harness for agent/dwarfline.c: any bytes as .debug_line (with the same bytes as its string sections) give answers within bounds: a NUL-terminated path of the length said, a line only with it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dwarfline.h"

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size ? size : 1);   /* exactly sized: ASan sees any read past it */
	memcpy(in, data, size);
	/* the addresses asked about come from the input too, so rows can hit them */
	static struct dwarfline q[4];
	for (size_t i = 0; i < 4; i++) {
		uint64_t a = 0;
		if (size >= 8 * (i + 1))
			memcpy(&a, in + size - 8 * (i + 1), 8);
		q[i].addr = i == 3 ? 0 : a;
	}
	size_t half = size / 2;
	struct dwarfline_sections sec = { in, size, in + half, size - half, in, half };
	size_t found = dwarfline_find(&sec, q, 4), n = 0;
	for (size_t i = 0; i < 4; i++) {
		CHECK(q[i].path_len < sizeof q[i].path && q[i].path[q[i].path_len] == '\0');
		CHECK(strlen(q[i].path) <= q[i].path_len);
		CHECK(q[i].line == 0 ? q[i].path_len == 0 : 1);
		n += q[i].line != 0;
	}
	CHECK(found == n);
	struct elfsym_iter it;
	if (elfsym_open(&it, in, size))
		(void)dwarfline_find_elf(&it, q, 4);
	free(in);
	return 0;
}
