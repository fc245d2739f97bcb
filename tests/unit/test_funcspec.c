/* Unit tests for agent/funcspec.c (TRACEAGENT_FUNCTIONS specs, globs, error rules) and agent/elfsym.c (function symbols of an ELF image). */
#include <check.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/elfsym.h"
#include "agent/funcspec.h"

/* A list's specs, one line each ("pattern@object error args", or "!bad" for a refused one). */
static void parse_all(const char *list, char *out, size_t cap)
{
	size_t pos = 0, len = strlen(list), used = 0;
	struct funcspec s;
	const char *bad;
	size_t bad_len;
	int r;
	out[0] = '\0';
	while ((r = funcspec_next(list, len, &pos, &s, &bad, &bad_len)) != 0) {
		if (r < 0)
			used += (size_t)snprintf(out + used, cap - used, "!%.*s;", (int)bad_len, bad);
		else
			used += (size_t)snprintf(out + used, cap - used, "%.*s@%.*s %d %d;", (int)s.pattern_len, s.pattern,
						 (int)s.object_len, s.object ? s.object : "", (int)s.error, s.args);
	}
}

static const struct {
	const char *in, *want;
} spec_cases[] = {
	{ "", "" },
	{ "task_apply", "task_apply@ 0 0;" },
	{ " task_* , metrics_calculate ", "task_*@ 0 0;metrics_calculate@ 0 0;" },
	{ "crawl@libcrawl.so", "crawl@libcrawl.so 0 0;" },
	{ "crawl@/opt/app/lib/libcrawl.so.1:error=null", "crawl@/opt/app/lib/libcrawl.so.1 4 0;" },
	{ "f:error=neg:args=3", "f@ 1 3;" },
	{ "f:args=0:error=zero,g:error=nonzero", "f@ 2 0;g@ 3 0;" },
	{ "_ZN4Task5applyEi,a?c", "_ZN4Task5applyEi@ 0 0;a?c@ 0 0;" },
	{ ",,f,,", "f@ 0 0;" },
	/* refused, one by one; the others still apply */
	{ "f:args=7,g", "!f:args=7;g@ 0 0;" },
	{ "f:error=maybe", "!f:error=maybe;" },
	{ "f:", "!f:;" },
	{ "f@", "!f@;" },
	{ "@lib.so", "!@lib.so;" },
	{ "f g,h", "!f g;h@ 0 0;" },
	{ "f:args=12", "!f:args=12;" },
	{ "f:verbose", "!f:verbose;" },
	{ "ns::Task::apply:args=1,ns::~Task", "ns::Task::apply@ 0 1;ns::~Task@ 0 0;" },
	{ "ns:::f", "!ns:::f;" },
	{ "f@a@b", "!f@a@b;" },
};

START_TEST(funcspec_table)
{
	char out[512];
	parse_all(spec_cases[_i].in, out, sizeof out);
	ck_assert_str_eq(out, spec_cases[_i].want);
}
END_TEST

static const struct {
	const char *pat, *name;
	bool match;
} glob_cases[] = {
	{ "task_*", "task_apply", true },
	{ "task_*", "task_", true },
	{ "task_*", "tas", false },
	{ "*", "anything", true },
	{ "*_calculate", "metrics_calculate", true },
	{ "*_calculate", "metrics_calculated", false },
	{ "a*b*c", "aXbYbZc", true },
	{ "a*b*c", "aXbYbZ", false },
	{ "h?alth", "health", true },
	{ "h?alth", "hlth", false },
	{ "exact", "exact", true },
	{ "exact", "exactly", false },
	{ "**x", "x", true },
	{ "", "", true },
	{ "", "a", false },
};

START_TEST(funcspec_glob_table)
{
	const char *p = glob_cases[_i].pat, *n = glob_cases[_i].name;
	ck_assert_msg(funcspec_glob(p, strlen(p), n, strlen(n)) == glob_cases[_i].match, "%s vs %s", p, n);
}
END_TEST

START_TEST(funcspec_glob_hostile)
{
	/* Many stars against a long non-matching name stay fast (no recursion). */
	char pat[64], name[4096];
	memset(pat, '*', sizeof pat);
	pat[sizeof pat - 1] = 'z';
	memset(name, 'a', sizeof name);
	ck_assert(!funcspec_glob(pat, sizeof pat, name, sizeof name));
}
END_TEST

START_TEST(funcspec_error_rules)
{
	ck_assert(funcspec_is_error(FUNCSPEC_ERROR_NEG, (uint64_t)(uint32_t)-1));
	ck_assert(funcspec_is_error(FUNCSPEC_ERROR_NEG, 0xffffffff00000000ull | (uint32_t)-2));
	ck_assert(!funcspec_is_error(FUNCSPEC_ERROR_NEG, 0xffffffff00000000ull));   /* an int 0 with garbage above */
	ck_assert(funcspec_is_error(FUNCSPEC_ERROR_ZERO, 0x1234567800000000ull));
	ck_assert(!funcspec_is_error(FUNCSPEC_ERROR_ZERO, 1));
	ck_assert(funcspec_is_error(FUNCSPEC_ERROR_NONZERO, 5));
	ck_assert(!funcspec_is_error(FUNCSPEC_ERROR_NONZERO, 0));
	ck_assert(funcspec_is_error(FUNCSPEC_ERROR_NULL, 0));
	ck_assert(!funcspec_is_error(FUNCSPEC_ERROR_NULL, 0x100000000ull));   /* a pointer: all 64 bits */
	ck_assert(!funcspec_is_error(FUNCSPEC_ERROR_NONE, (uint64_t)-1));
}
END_TEST

/* --- elfsym: a hand-made image with both tables --- */

struct image {
	Elf64_Ehdr eh;
	Elf64_Shdr sh[5];   /* null, .symtab, .strtab, .dynsym, .dynstr */
	Elf64_Sym sym[4];
	Elf64_Sym dsym[2];
	char str[64];
	char dstr[16];
};

static void make_image(struct image *im, bool with_symtab)
{
	memset(im, 0, sizeof *im);
	memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
	im->eh.e_ident[EI_CLASS] = ELFCLASS64;
	im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh.e_machine = EM_X86_64;
	im->eh.e_shoff = offsetof(struct image, sh);
	im->eh.e_shentsize = sizeof(Elf64_Shdr);
	im->eh.e_shnum = 5;
	memcpy(im->str, "\0task_apply\0data_x\0undef_f\0", 27);
	im->sym[1] = (Elf64_Sym){ .st_name = 1, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = 1, .st_value = 0x1120, .st_size = 42 };
	im->sym[2] = (Elf64_Sym){ .st_name = 12, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT), .st_shndx = 1, .st_value = 0x4000 };
	im->sym[3] = (Elf64_Sym){ .st_name = 19, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = SHN_UNDEF };
	memcpy(im->dstr, "\0exported\0", 10);
	im->dsym[1] = (Elf64_Sym){ .st_name = 1, .st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC), .st_shndx = 1, .st_value = 0x2000, .st_size = 8 };
	if (with_symtab)
		im->sh[1] = (Elf64_Shdr){ .sh_type = SHT_SYMTAB, .sh_offset = offsetof(struct image, sym), .sh_size = sizeof im->sym,
					  .sh_link = 2, .sh_entsize = sizeof(Elf64_Sym) };
	im->sh[2] = (Elf64_Shdr){ .sh_type = SHT_STRTAB, .sh_offset = offsetof(struct image, str), .sh_size = sizeof im->str };
	im->sh[3] = (Elf64_Shdr){ .sh_type = SHT_DYNSYM, .sh_offset = offsetof(struct image, dsym), .sh_size = sizeof im->dsym,
				  .sh_link = 4, .sh_entsize = sizeof(Elf64_Sym) };
	im->sh[4] = (Elf64_Shdr){ .sh_type = SHT_STRTAB, .sh_offset = offsetof(struct image, dstr), .sh_size = sizeof im->dstr };
}

START_TEST(elfsym_symtab)
{
	struct image im;
	make_image(&im, true);
	struct elfsym_iter it;
	ck_assert(elfsym_open(&it, (const char *)&im, sizeof im));
	ck_assert_int_eq(it.table, ELFSYM_SYMTAB);
	ck_assert_uint_eq(it.machine, EM_X86_64);
	struct elfsym s;
	ck_assert(elfsym_next(&it, &s));   /* only the defined function */
	ck_assert_uint_eq(s.name_len, 10);
	ck_assert(memcmp(s.name, "task_apply", 10) == 0);
	ck_assert_uint_eq(s.value, 0x1120);
	ck_assert_uint_eq(s.size, 42);
	ck_assert(!elfsym_next(&it, &s));
}
END_TEST

START_TEST(elfsym_stripped)
{
	struct image im;
	make_image(&im, false);
	struct elfsym_iter it;
	ck_assert(elfsym_open(&it, (const char *)&im, sizeof im));
	ck_assert_int_eq(it.table, ELFSYM_DYNSYM);
	struct elfsym s;
	ck_assert(elfsym_next(&it, &s));
	ck_assert(s.name_len == 8 && memcmp(s.name, "exported", 8) == 0);
	ck_assert(!elfsym_next(&it, &s));
}
END_TEST

START_TEST(elfsym_refuses_and_truncates)
{
	struct image im;
	make_image(&im, true);
	struct elfsym_iter it;
	ck_assert(!elfsym_open(&it, "\x7f" "ELF", 4));
	ck_assert(!elfsym_open(&it, "not an elf file at all, no, not at all; really not an ELF image!!", 64));
	/* Every prefix of the image: never a read past it (ASan in make fuzz), tables dropped when cut. */
	for (size_t n = 0; n <= sizeof im; n++) {
		char *copy = malloc(n ? n : 1);
		memcpy(copy, &im, n);
		if (elfsym_open(&it, copy, n)) {
			struct elfsym s;
			while (elfsym_next(&it, &s))
				ck_assert(s.name >= copy && s.name + s.name_len < copy + n);
		}
		free(copy);
	}
	/* A name without its NUL inside the string table is skipped. */
	im.sh[2].sh_size = 5;
	ck_assert(elfsym_open(&it, (const char *)&im, sizeof im));
	struct elfsym s;
	ck_assert(!elfsym_next(&it, &s));
}
END_TEST

Suite *funcspec_suite(void)
{
	Suite *s = suite_create("funcspec");
	TCase *tc = tcase_create("funcspec");
	tcase_add_loop_test(tc, funcspec_table, 0, sizeof spec_cases / sizeof spec_cases[0]);
	tcase_add_loop_test(tc, funcspec_glob_table, 0, sizeof glob_cases / sizeof glob_cases[0]);
	tcase_add_test(tc, funcspec_glob_hostile);
	tcase_add_test(tc, funcspec_error_rules);
	tcase_add_test(tc, elfsym_symtab);
	tcase_add_test(tc, elfsym_stripped);
	tcase_add_test(tc, elfsym_refuses_and_truncates);
	suite_add_tcase(s, tc);
	return s;
}
