/* The function symbols of a 64-bit ELF image held in memory (its .symtab, else its .dynsym); pure, bounds-checked. */
#ifndef TRACEAGENT_ELFSYM_H
#define TRACEAGENT_ELFSYM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum elfsym_table {
	ELFSYM_NONE = 0,   /* neither table: a stripped object without exports */
	ELFSYM_SYMTAB,     /* the full table, static functions included */
	ELFSYM_DYNSYM,     /* exports only (the file was stripped) */
};

struct elfsym_iter {
	const char *img;
	size_t len;
	uint16_t machine;          /* e_machine (62: x86-64) */
	enum elfsym_table table;
	const char *syms;          /* the table's entries, within img */
	size_t count, next;
	const char *strtab;        /* its string table, within img */
	size_t strsz;
};

/* A defined function: name (not NUL-terminated here), its address relative
 * to the object's load base, and its size in bytes (0 when unknown). */
struct elfsym {
	const char *name;
	size_t name_len;
	uint64_t value;
	uint64_t size;
};

/* False when img[0..len) is not a little-endian ELF64 file; otherwise picks
 * the table (it->table says which, ELFSYM_NONE when there is none). */
bool elfsym_open(struct elfsym_iter *it, const char *img, size_t len);

/* The contents of the section called name (e.g. ".debug_line") in an image
 * elfsym_open accepted; false when it has none, or it is compressed or
 * lies outside the image. */
bool elfsym_section(const struct elfsym_iter *it, const char *name, const char **data, size_t *len);

/* The next defined function symbol; false after the last. */
bool elfsym_next(struct elfsym_iter *it, struct elfsym *out);

#endif
