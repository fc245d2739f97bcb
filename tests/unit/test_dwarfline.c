/* Unit tests for agent/dwarfline.c: hand-made DWARF 4 and 5 line tables, the row chosen for an address, paths, and every truncation. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dwarfline.h"

/* DWARF 4: include_directories {"src"}, file_names {"a.c" dir 1, "/abs/b.h" dir 0}.
 * Rows: 0x1000 line 10 (a.c), special to 0x1004 line 12, set_file 2 copy at
 * 0x1004 line 12 (b.h), advance_pc 8 -> 0x100c, advance_line -2, copy line 10,
 * end_sequence at 0x1010. */
static const unsigned char v4[] = {
	0, 0, 0, 0,                    /* unit_length, filled in below */
	4, 0,                          /* version */
	0, 0, 0, 0,                    /* header_length, filled in below */
	1, 1, 1, (unsigned char)-5, 14, 13,   /* min_inst, max_ops, default_is_stmt, line_base, line_range, opcode_base */
	0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1,   /* standard_opcode_lengths */
	's', 'r', 'c', 0, 0,           /* include_directories */
	'a', '.', 'c', 0, 1, 0, 0,
	'/', 'a', 'b', 's', '/', 'b', '.', 'h', 0, 0, 0, 0,
	0,                             /* end of file_names */
	/* program */
	0, 9, 2, 0x00, 0x10, 0, 0, 0, 0, 0, 0,   /* set_address 0x1000 */
	3, 9,                          /* advance_line +9: 10 */
	1,                             /* copy: 0x1000 line 10 */
	13 + 4 * 14 + (2 + 5),         /* special: addr +4, line +2: 0x1004 line 12 */
	4, 2,                          /* set_file 2 */
	1,                             /* copy: 0x1004 line 12 in b.h (the second row there) */
	2, 8,                          /* advance_pc 8: 0x100c */
	3, 0x7e,                       /* advance_line -2 */
	1,                             /* copy: 0x100c line 10 */
	2, 4, 0, 1, 1,                 /* advance_pc 4, end_sequence at 0x1010 */
};

/* DWARF 5: directories {"/work" (line_strp), "sub" (string)}, files with
 * path, directory_index (udata) and MD5 (data16): {"m.c" dir 1, "m.c" dir 1,
 * "inc.h" dir 0} (indexed from 0). Rows: 0x2000 line 5 (file 1), 0x2010
 * line 7 (file 2), 0x2010 line 8 (file 0), end at 0x2021. */
static const unsigned char v5[] = {
	0, 0, 0, 0,
	5, 0,
	8, 0,                          /* address_size, segment_selector_size */
	0, 0, 0, 0,
	1, 1, 1, (unsigned char)-5, 14, 13,
	0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1,
	1, 1, 0x1f,                    /* directory formats: path line_strp */
	2, 0, 0, 0, 0,  6, 0, 0, 0,    /* "/work" at 0, "sub" at 6 of .debug_line_str */
	3, 1, 0x08, 2, 0x0f, 5, 0x1e,  /* file formats: path string, directory_index udata, MD5 data16 */
	3,
	'm', '.', 'c', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	'm', '.', 'c', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	'i', 'n', 'c', '.', 'h', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* program */
	0, 9, 2, 0x00, 0x20, 0, 0, 0, 0, 0, 0,
	3, 4, 1,                       /* line 5, copy: 0x2000 (file 1) */
	4, 2, 9, 0x10, 0, 3, 2, 1,     /* file 2, fixed_advance_pc 16, line 7, copy: 0x2010 */
	4, 0, 5, 9, 12, 0, 3, 1, 1,    /* file 0, set_column 9, set_isa 0, line 8, copy: 0x2010 again */
	8,                             /* const_add_pc: +17 */
	0, 1, 1,                       /* end_sequence at 0x2021 */
};
static const char v5_line_str[] = "/work\0sub";

/* A copy of t with its length fields set; hdr_at: where header_length is. */
static unsigned char *unit(const unsigned char *t, size_t len, size_t hdr_at, size_t prog_at)
{
	unsigned char *u = malloc(len);
	memcpy(u, t, len);
	uint32_t ul = (uint32_t)(len - 4), hl = (uint32_t)(prog_at - (hdr_at + 4));
	memcpy(u, &ul, 4);
	memcpy(u + hdr_at, &hl, 4);
	return u;
}

static size_t v4_prog(void) { return 16 + 12 + 5 + 7 + 12 + 1; }
static size_t v5_prog(void) { return 18 + 12 + 3 + 9 + 7 + 1 + 21 + 21 + 23; }

static size_t find(const unsigned char *sec, size_t len, const char *line_str, size_t ls_len, struct dwarfline *q, size_t n)
{
	struct dwarfline_sections s = { (const char *)sec, len, line_str, ls_len, NULL, 0 };
	return dwarfline_find(&s, q, n);
}

static const struct {
	int v;
	uint64_t addr;
	const char *path;
	uint32_t line;
} cases[] = {
	{ 4, 0x1000, "src/a.c", 10 },
	{ 4, 0x1002, "src/a.c", 10 },      /* below: the row at 0x1000 */
	{ 4, 0x1004, "src/a.c", 12 },      /* the first of two rows at 0x1004 */
	{ 4, 0x100c, "/abs/b.h", 10 },     /* absolute: no directory */
	{ 4, 0x100f, "/abs/b.h", 10 },
	{ 4, 0x1010, "", 0 },              /* the end of the sequence is no row */
	{ 4, 0x0fff, "", 0 },
	{ 5, 0x2000, "/work/sub/m.c", 5 }, /* directory 1 relative to directory 0 */
	{ 5, 0x2010, "/work/inc.h", 7 },   /* directory 0 is the compilation directory itself */
	{ 5, 0x2015, "/work/sub/m.c", 8 }, /* the last row at 0x2010 covers what follows */
	{ 5, 0x2021, "", 0 },
};

START_TEST(dwarfline_table)
{
	int v = cases[_i].v;
	size_t len = v == 4 ? sizeof v4 : sizeof v5;
	unsigned char *u = v == 4 ? unit(v4, len, 6, v4_prog()) : unit(v5, len, 8, v5_prog());
	struct dwarfline q = { .addr = cases[_i].addr };
	size_t found = find(u, len, v5_line_str, sizeof v5_line_str, &q, 1);
	ck_assert_uint_eq(found, cases[_i].line ? 1 : 0);
	ck_assert_uint_eq(q.line, cases[_i].line);
	ck_assert_str_eq(q.path, cases[_i].path);
	ck_assert_uint_eq(q.path_len, strlen(cases[_i].path));
	free(u);
}
END_TEST

START_TEST(dwarfline_two_units_many_addresses)
{
	size_t l4 = sizeof v4, l5 = sizeof v5;
	unsigned char *a = unit(v4, l4, 6, v4_prog()), *b = unit(v5, l5, 8, v5_prog()), *both = malloc(l4 + l5);
	memcpy(both, a, l4);
	memcpy(both + l4, b, l5);
	struct dwarfline q[3] = { { .addr = 0x2010 }, { .addr = 0x1004 }, { .addr = 0x3000 } };
	ck_assert_uint_eq(find(both, l4 + l5, v5_line_str, sizeof v5_line_str, q, 3), 2);
	ck_assert_uint_eq(q[0].line, 7);
	ck_assert_uint_eq(q[1].line, 12);
	ck_assert_uint_eq(q[2].line, 0);
	free(a);
	free(b);
	free(both);
}
END_TEST

/* Every prefix of each table, with exactly that many bytes allocated: no read past them (ASan and valgrind see it), and
 * no answer that was not in the whole table. */
START_TEST(dwarfline_truncated)
{
	for (int v = 4; v <= 5; v++) {
		size_t len = v == 4 ? sizeof v4 : sizeof v5;
		unsigned char *u = v == 4 ? unit(v4, len, 6, v4_prog()) : unit(v5, len, 8, v5_prog());
		for (size_t n = 0; n < len; n++) {
			unsigned char *cut = malloc(n ? n : 1);
			memcpy(cut, u, n);
			struct dwarfline q[2] = { { .addr = v == 4 ? 0x1000 : 0x2000 }, { .addr = v == 4 ? 0x100c : 0x2010 } };
			ck_assert_uint_eq(find(cut, n, v5_line_str, sizeof v5_line_str, q, 2), 0);   /* unit_length says more */
			free(cut);
		}
		/* a string section too short for the directories: the file's name alone */
		struct dwarfline q = { .addr = 0x2000 };
		if (v == 5) {
			ck_assert_uint_eq(find(u, len, v5_line_str, 3, &q, 1), 1);
			ck_assert_str_eq(q.path, "m.c");
		}
		free(u);
	}
}
END_TEST

START_TEST(dwarfline_not_a_table)
{
	struct dwarfline q = { .addr = 0x1000 };
	struct dwarfline_sections none = { 0 };
	ck_assert_uint_eq(dwarfline_find(&none, &q, 1), 0);
	/* a version this reader does not know, then line_range 0 */
	unsigned char *u = unit(v4, sizeof v4, 6, v4_prog());
	u[4] = 6;
	ck_assert_uint_eq(find(u, sizeof v4, NULL, 0, &q, 1), 0);
	u[4] = 4;
	u[14] = 0;
	ck_assert_uint_eq(find(u, sizeof v4, NULL, 0, &q, 1), 0);
	free(u);
	/* an ELF image without .debug_line */
	struct elfsym_iter it;
	static const char junk[64] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };
	ck_assert(elfsym_open(&it, junk, sizeof junk));
	ck_assert_uint_eq(dwarfline_find_elf(&it, &q, 1), 0);
	ck_assert_uint_eq(q.line, 0);
}
END_TEST

Suite *dwarfline_suite(void)
{
	Suite *s = suite_create("dwarfline");
	TCase *tc = tcase_create("dwarfline");
	tcase_add_loop_test(tc, dwarfline_table, 0, sizeof cases / sizeof cases[0]);
	tcase_add_test(tc, dwarfline_two_units_many_addresses);
	tcase_add_test(tc, dwarfline_truncated);
	tcase_add_test(tc, dwarfline_not_a_table);
	suite_add_tcase(s, tc);
	return s;
}
