/* Source file and line of function entry addresses, from an ELF object's DWARF line table (.debug_line,
 * versions 2 to 5); pure, bounds-checked, no allocation. */
#ifndef TRACEAGENT_DWARFLINE_H
#define TRACEAGENT_DWARFLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elfsym.h"

#define DWARFLINE_PATH_MAX 512

/* The sections a line table refers to; a missing one is NULL with length 0. */
struct dwarfline_sections {
	const char *line;       /* .debug_line */
	size_t line_len;
	const char *line_str;   /* .debug_line_str (DW_FORM_line_strp, DWARF 5) */
	size_t line_str_len;
	const char *str;        /* .debug_str (DW_FORM_strp) */
	size_t str_len;
};

/* One address asked about. addr is set by the caller; the rest is the answer:
 * line 0 means none found (path is then empty). */
struct dwarfline {
	uint64_t addr;
	uint32_t line;
	size_t path_len;
	char path[DWARFLINE_PATH_MAX];   /* NUL-terminated */
	/* the row chosen so far: an exact row wins over one below the address */
	bool exact;
	uint64_t row_addr;
};

/* Answers q[0..n) from the line tables in sec (one pass over them): the
 * first row at each address, else the last row below it in its sequence.
 * Returns how many were found. */
size_t dwarfline_find(const struct dwarfline_sections *sec, struct dwarfline *q, size_t n);

/* The same for an ELF image opened with elfsym_open; 0 when it has no .debug_line. */
size_t dwarfline_find_elf(const struct elfsym_iter *it, struct dwarfline *q, size_t n);

#endif
