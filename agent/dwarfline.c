/* Runs DWARF line programs (versions 2 to 5) to find the source file and line at function entry addresses.
 * The bytes may be anything: every read is checked against its section, a unit that does not parse is skipped. */
#include "dwarfline.h"

#include <string.h>

struct reader {
	const uint8_t *p;
	size_t len, pos;
	bool bad;           /* a read went past len: every later read gives 0 */
};

static bool take(struct reader *r, size_t n)
{
	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return false;
	}
	r->pos += n;
	return true;
}

static uint64_t fixed(struct reader *r, size_t n)
{
	uint64_t v = 0;
	if (!take(r, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)r->p[r->pos - n + i] << (8 * i);
	return v;
}

static uint64_t uleb(struct reader *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0;; shift += 7) {
		if (!take(r, 1))
			return 0;
		uint8_t b = r->p[r->pos - 1];
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
}

static int64_t sleb(struct reader *r)
{
	uint64_t v = 0;
	unsigned shift = 0;
	uint8_t b;
	do {
		if (!take(r, 1))
			return 0;
		b = r->p[r->pos - 1];
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	if (shift < 64 && (b & 0x40))
		v |= ~(uint64_t)0 << shift;
	return (int64_t)v;
}

/* A NUL-terminated string at the reader; NULL when it runs off the end. */
static const char *cstr(struct reader *r, size_t *len)
{
	if (r->bad)
		return NULL;
	const uint8_t *s = r->p + r->pos, *nul = memchr(s, 0, r->len - r->pos);
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	*len = (size_t)(nul - s);
	r->pos += *len + 1;
	return (const char *)s;
}

/* A string at off in a string section. */
static const char *strsec(const char *sec, size_t sec_len, uint64_t off, size_t *len)
{
	if (!sec || off >= sec_len)
		return NULL;
	const char *nul = memchr(sec + off, 0, sec_len - off);
	if (!nul)
		return NULL;
	*len = (size_t)(nul - (sec + off));
	return sec + off;
}

/* One unit's header, as positions in .debug_line. */
struct unit {
	unsigned version;
	bool dwarf64;
	uint8_t min_inst, line_range, opcode_base;
	int8_t line_base;
	size_t std_len;               /* standard_opcode_lengths */
	size_t dirs, files;           /* v5: each table's formats, count, entries; v2-4: the tables */
	size_t prog, end;
};

enum { DW_LNCT_path = 1, DW_LNCT_directory_index = 2 };
enum {
	DW_FORM_block = 0x09, DW_FORM_data1 = 0x0b, DW_FORM_data2 = 0x05, DW_FORM_data4 = 0x06, DW_FORM_data8 = 0x07,
	DW_FORM_data16 = 0x1e, DW_FORM_string = 0x08, DW_FORM_strp = 0x0e, DW_FORM_udata = 0x0f,
	DW_FORM_line_strp = 0x1f,
};

/* Reads one attribute value of a v5 entry: a string (*s) or a number (*num). */
static bool form_value(struct reader *r, const struct dwarfline_sections *sec, const struct unit *u, uint64_t form,
		       const char **s, size_t *s_len, uint64_t *num)
{
	size_t off_size = u->dwarf64 ? 8 : 4;
	*s = NULL;
	*num = 0;
	switch (form) {
	case DW_FORM_string: *s = cstr(r, s_len); return *s != NULL;
	case DW_FORM_line_strp: *s = strsec(sec->line_str, sec->line_str_len, fixed(r, off_size), s_len); break;
	case DW_FORM_strp: *s = strsec(sec->str, sec->str_len, fixed(r, off_size), s_len); break;
	case DW_FORM_udata: *num = uleb(r); break;
	case DW_FORM_data1: *num = fixed(r, 1); break;
	case DW_FORM_data2: *num = fixed(r, 2); break;
	case DW_FORM_data4: *num = fixed(r, 4); break;
	case DW_FORM_data8: *num = fixed(r, 8); break;
	case DW_FORM_data16: take(r, 16); break;
	case DW_FORM_block: take(r, uleb(r)); break;
	default: return false;   /* its size is unknown: nothing after it can be read */
	}
	return !r->bad;
}

/* Entry i of a v5 directory or file table (formats at fmt, then the count, then the entries). */
static bool entry_v5(const struct dwarfline_sections *sec, const struct unit *u, size_t fmt, uint64_t i,
		     const char **name, size_t *name_len, uint64_t *dir)
{
	struct reader r = { (const uint8_t *)sec->line, u->prog, fmt, false };
	unsigned nfmt = (unsigned)fixed(&r, 1);
	size_t pairs = r.pos;
	for (unsigned k = 0; k < nfmt; k++)
		uleb(&r), uleb(&r);
	uint64_t count = uleb(&r);
	if (r.bad || i >= count)
		return false;
	*name = NULL;
	*dir = 0;
	for (uint64_t e = 0; e <= i; e++) {
		struct reader pr = { r.p, r.len, pairs, false };
		for (unsigned k = 0; k < nfmt; k++) {
			uint64_t type = uleb(&pr), form = uleb(&pr), num;
			const char *s;
			size_t s_len = 0;
			if (!form_value(&r, sec, u, form, &s, &s_len, &num))
				return false;
			if (e != i)
				continue;
			if (type == DW_LNCT_path) {
				*name = s;
				*name_len = s_len;
			} else if (type == DW_LNCT_directory_index) {
				*dir = num;
			}
		}
	}
	return *name != NULL;
}

/* Entry i (from 1) of a v2-4 table of strings, each followed by `ulebs` numbers (the first: a file's directory). */
static bool entry_v4(const struct dwarfline_sections *sec, const struct unit *u, size_t at, uint64_t i, int ulebs,
		     const char **name, size_t *name_len, uint64_t *dir)
{
	struct reader r = { (const uint8_t *)sec->line, u->prog, at, false };
	for (uint64_t e = 1;; e++) {
		const char *s = cstr(&r, name_len);
		if (!s || *name_len == 0)
			return false;
		for (int k = 0; k < ulebs; k++) {
			uint64_t v = uleb(&r);
			if (k == 0)
				*dir = v;
		}
		if (e == i) {
			*name = s;
			return !r.bad;
		}
	}
}

/* The v2-4 file table follows the include directories. */
static size_t files_v4(const struct dwarfline_sections *sec, const struct unit *u)
{
	struct reader r = { (const uint8_t *)sec->line, u->prog, u->dirs, false };
	size_t len;
	const char *s;
	while ((s = cstr(&r, &len)) != NULL && len > 0)
		;
	return s ? r.pos : u->prog;   /* u->prog: an empty table */
}

/* Appends part (and a "/" before it unless it is the first) to q->path; an
 * absolute part starts the path again. */
static bool append(struct dwarfline *q, const char *part, size_t len)
{
	if (!len)
		return true;
	if (part[0] == '/')
		q->path_len = 0;
	size_t sep = q->path_len ? 1 : 0;
	if (q->path_len + sep + len >= sizeof q->path)
		return false;
	if (sep)
		q->path[q->path_len] = '/';
	memcpy(q->path + q->path_len + sep, part, len);
	q->path_len += sep + len;
	q->path[q->path_len] = '\0';
	return true;
}

/* Writes file `file`'s path into q: the compilation directory (v5: directory
 * 0), then the file's directory, then its name, each relative to the one before. */
static bool set_path(const struct dwarfline_sections *sec, const struct unit *u, uint64_t file, struct dwarfline *q)
{
	const char *name, *dname = NULL, *comp = NULL;
	size_t name_len, dname_len = 0, comp_len = 0;
	uint64_t dir = 0, unused;
	if (u->version >= 5) {
		if (!entry_v5(sec, u, u->files, file, &name, &name_len, &dir))
			return false;
		if (!entry_v5(sec, u, u->dirs, dir, &dname, &dname_len, &unused))
			dname_len = 0;
		if (dir != 0 && !entry_v5(sec, u, u->dirs, 0, &comp, &comp_len, &unused))
			comp_len = 0;
	} else {
		if (!entry_v4(sec, u, u->files, file, 3, &name, &name_len, &dir))
			return false;
		/* directory 0 is the compilation directory, which only .debug_info names */
		if (dir == 0 || !entry_v4(sec, u, u->dirs, dir, 0, &dname, &dname_len, &unused))
			dname_len = 0;
	}
	q->path_len = 0;
	q->path[0] = '\0';
	if (append(q, comp, comp_len) && append(q, dname, dname_len) && append(q, name, name_len))
		return true;
	q->path_len = 0;
	q->path[0] = '\0';
	return false;
}

struct row {
	uint64_t addr, file, line;
};

static void record(const struct dwarfline_sections *sec, const struct unit *u, const struct row *row, bool exact,
		   struct dwarfline *q)
{
	if (row->line == 0 || row->line > UINT32_MAX)
		return;
	if (!set_path(sec, u, row->file, q)) {
		q->line = 0;   /* set_path cleared the path: line and path go together */
		return;
	}
	q->line = (uint32_t)row->line;
	q->exact = exact;
	q->row_addr = row->addr;
}

/* A new row: first rows exactly at an address win; otherwise the row just
 * before it (prev, when cur ends its range) is the best found below it. */
static void on_row(const struct dwarfline_sections *sec, const struct unit *u, const struct row *prev,
		   const struct row *cur, bool end_seq, struct dwarfline *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (q[i].exact)
			continue;
		if (!end_seq && cur->addr == q[i].addr)
			record(sec, u, cur, true, &q[i]);
		else if (prev && prev->addr < q[i].addr && q[i].addr < cur->addr &&
			 (q[i].line == 0 || prev->addr >= q[i].row_addr))
			record(sec, u, prev, false, &q[i]);
	}
}

/* Parses the header at r (after unit_length); false when it is not a line table this reader knows. */
static bool header(struct reader *r, struct unit *u)
{
	u->version = (unsigned)fixed(r, 2);
	if (u->version < 2 || u->version > 5)
		return false;
	if (u->version >= 5)
		take(r, 2);   /* address_size, segment_selector_size: set_address says its own size */
	uint64_t hlen = fixed(r, u->dwarf64 ? 8 : 4);
	if (r->bad || hlen > r->len - r->pos)
		return false;
	u->prog = r->pos + (size_t)hlen;
	u->min_inst = (uint8_t)fixed(r, 1);
	if (u->version >= 4)
		take(r, 1);   /* maximum_operations_per_instruction: VLIW only */
	take(r, 1);           /* default_is_stmt: every row counts here */
	u->line_base = (int8_t)fixed(r, 1);
	u->line_range = (uint8_t)fixed(r, 1);
	u->opcode_base = (uint8_t)fixed(r, 1);
	if (u->line_range == 0 || u->opcode_base == 0)
		return false;
	u->std_len = r->pos;
	take(r, u->opcode_base - 1u);
	/* the tables must lie within the header: a reader bounded by it */
	u->dirs = r->pos;
	return !r->bad && r->pos <= u->prog;
}

/* v5: the file formats follow the directory entries, which have to be read to be skipped. */
static bool files_v5(const struct dwarfline_sections *sec, struct unit *u)
{
	struct reader r = { (const uint8_t *)sec->line, u->prog, u->dirs, false };
	unsigned nfmt = (unsigned)fixed(&r, 1);
	size_t pairs = r.pos;
	for (unsigned k = 0; k < nfmt; k++)
		uleb(&r), uleb(&r);
	uint64_t count = uleb(&r);
	for (uint64_t e = 0; e < count && !r.bad; e++) {
		struct reader pr = { r.p, r.len, pairs, false };
		for (unsigned k = 0; k < nfmt; k++) {
			uint64_t form = (uleb(&pr), uleb(&pr)), num;
			const char *s;
			size_t s_len;
			if (!form_value(&r, sec, u, form, &s, &s_len, &num))
				return false;
		}
	}
	u->files = r.pos;
	return !r.bad;
}

/* Runs one unit's line program. */
static void run(const struct dwarfline_sections *sec, const struct unit *u, struct dwarfline *q, size_t n)
{
	struct reader r = { (const uint8_t *)sec->line, u->end, u->prog, false };
	const struct row start = { 0, 1, 1 };
	struct row cur = start, prev;
	bool have_prev = false;
	int adj_range = u->line_range;
	while (!r.bad && r.pos < r.len) {
		uint8_t op = (uint8_t)fixed(&r, 1);
		bool emit = false, end_seq = false;
		if (op >= u->opcode_base) {
			unsigned adj = op - u->opcode_base;
			cur.addr += (uint64_t)(adj / adj_range) * u->min_inst;
			cur.line += (uint64_t)(int64_t)(u->line_base + (int)(adj % adj_range));
			emit = true;
		} else if (op == 0) {
			uint64_t len = uleb(&r);
			size_t at = r.pos;
			if (r.bad || len == 0 || len > r.len - at)
				return;
			uint8_t ext = (uint8_t)fixed(&r, 1);
			if (ext == 1)
				emit = end_seq = true;
			else if (ext == 2 && (len - 1 == 8 || len - 1 == 4))
				cur.addr = fixed(&r, (size_t)len - 1);
			r.pos = at + (size_t)len;
		} else {
			switch (op) {
			case 1: emit = true; break;                                   /* copy */
			case 2: cur.addr += uleb(&r) * u->min_inst; break;          /* advance_pc */
			case 3: cur.line += (uint64_t)sleb(&r); break;              /* advance_line */
			case 4: cur.file = uleb(&r); break;                         /* set_file */
			case 8: cur.addr += (uint64_t)((255 - u->opcode_base) / adj_range) * u->min_inst; break;
			case 9: cur.addr += fixed(&r, 2); break;                    /* fixed_advance_pc */
			case 6: case 7: case 10: case 11: break;                   /* flags only */
			default: {                                                  /* set_column, set_isa, newer ones */
				uint8_t nargs = u->std_len + op - 1u < u->prog ? (uint8_t)sec->line[u->std_len + op - 1] : 0;
				for (unsigned k = 0; k < nargs; k++)
					uleb(&r);
			}
			}
		}
		if (!emit || r.bad)
			continue;
		on_row(sec, u, have_prev ? &prev : NULL, &cur, end_seq, q, n);
		if (end_seq) {
			cur = start;
			have_prev = false;
		} else {
			prev = cur;
			have_prev = true;
		}
	}
}

size_t dwarfline_find(const struct dwarfline_sections *sec, struct dwarfline *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		q[i].line = 0;
		q[i].path_len = 0;
		q[i].path[0] = '\0';
		q[i].exact = false;
		q[i].row_addr = 0;
	}
	struct reader r = { (const uint8_t *)sec->line, sec->line ? sec->line_len : 0, 0, false };
	while (r.pos < r.len) {
		struct unit u = { 0 };
		uint64_t len = fixed(&r, 4);
		if (len == 0xffffffff) {
			u.dwarf64 = true;
			len = fixed(&r, 8);
		} else if (len >= 0xfffffff0) {
			break;
		}
		if (r.bad || len > r.len - r.pos)
			break;
		u.end = r.pos + (size_t)len;
		struct reader ur = { r.p, u.end, r.pos, false };
		r.pos = u.end;
		if (!header(&ur, &u))
			continue;
		if (u.version >= 5 ? !files_v5(sec, &u) : (u.files = files_v4(sec, &u)) == u.prog)
			continue;
		run(sec, &u, q, n);
	}
	size_t found = 0;
	for (size_t i = 0; i < n; i++)
		found += q[i].line != 0;
	return found;
}

size_t dwarfline_find_elf(const struct elfsym_iter *it, struct dwarfline *q, size_t n)
{
	struct dwarfline_sections sec = { 0 };
	if (!elfsym_section(it, ".debug_line", &sec.line, &sec.line_len))
		sec.line = NULL, sec.line_len = 0;   /* no rows: nothing found */
	if (!elfsym_section(it, ".debug_line_str", &sec.line_str, &sec.line_str_len))
		sec.line_str = NULL, sec.line_str_len = 0;
	if (!elfsym_section(it, ".debug_str", &sec.str, &sec.str_len))
		sec.str = NULL, sec.str_len = 0;
	return dwarfline_find(&sec, q, n);
}
