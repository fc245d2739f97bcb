/* SQL text as pure functions: a PostgreSQL lexer, the query summary with operation/collection names, literal sanitising, a summary cache, and values hidden in error messages. */
#include "sql.h"

#include <stdint.h>
#include <string.h>

/*
 * Both entry points run inside PQexec-style hooks, on every query of a
 * production service, so they are single forward passes over the text with
 * no allocation: one lexer (below) shared by the summariser (a small
 * token-driven state machine, one frame per parenthesis level) and the
 * sanitiser (which skips sixteen bytes at a time to where a literal may
 * start, copies what it skipped verbatim and replaces literal tokens by
 * '?'). The sanitiser runs on every statement; the summariser only when the
 * connection's cache (sql_cache_summary) doesn't have the statement yet.
 * Neither ever reads s[n] or beyond: every look at the next byte is guarded
 * by the length, because the text is a prefix of the real query and not
 * NUL-terminated.
 */

#define SUMMARY_SCAN_MAX (64u * 1024u)  /* what the summary looks at */
#define FRAME_MAX        16             /* parenthesis levels tracked */
#define CTE_MAX          8              /* WITH names remembered to skip */
#define CTE_NAME_MAX     64

/* --- lexer --- */

enum {
	C_SPACE = 1,
	C_IDSTART = 2,   /* starts an unquoted identifier or keyword */
	C_IDCONT = 4,    /* continues one (PostgreSQL allows '$' inside) */
	C_DIGIT = 8,
	C_TAG = 16,      /* continues a dollar-quote tag: like C_IDCONT but no '$' */
	C_NUM = 32,      /* continues the digits of a number: digits and '_' */
};

/* Bytes >= 0x80 are identifier characters in PostgreSQL whatever the
 * encoding, so a UTF-8 (or invalid) sequence never splits a token. */
static const uint8_t cls[256] = {
	[' '] = C_SPACE, ['\t'] = C_SPACE, ['\n'] = C_SPACE, ['\r'] = C_SPACE,
	['\f'] = C_SPACE, ['\v'] = C_SPACE,
	['A' ... 'Z'] = C_IDSTART | C_IDCONT | C_TAG,
	['a' ... 'z'] = C_IDSTART | C_IDCONT | C_TAG,
	['_'] = C_IDSTART | C_IDCONT | C_TAG | C_NUM,
	[0x80 ... 0xff] = C_IDSTART | C_IDCONT | C_TAG,
	['0' ... '9'] = C_IDCONT | C_DIGIT | C_TAG | C_NUM,
	['$'] = C_IDCONT,
};

enum tok_kind {
	T_END,
	T_WORD,     /* keyword or unquoted identifier */
	T_QIDENT,   /* "quoted identifier" or U&"..." */
	T_STRING,   /* '...', E'...', B'...', X'...', N'...', U&'...', $tag$...$tag$ */
	T_NUMBER,
	T_PARAM,    /* $1 */
	T_PUNCT,    /* any other single byte */
	T_BAD,      /* unterminated string, identifier, dollar quote or comment: to the end */
};

struct tok {
	enum tok_kind kind;
	size_t start, end;
};

struct lexer {
	const unsigned char *s;
	size_t n, pos;
};

/* From a comment's first byte (s[i..n) starts with "--" or a block
 * comment's opening): the position after the comment, or n with *ok false
 * when a block comment is never closed. Block comments nest. */
static size_t comment_end(const unsigned char *s, size_t n, size_t i, bool *ok)
{
	*ok = true;
	if (s[i] == '-') {
		const unsigned char *nl = memchr(s + i + 2, '\n', n - i - 2);

		return nl ? (size_t)(nl - s) + 1 : n;
	}
	size_t j = i + 2, depth = 1;

	while (j < n && depth) {
		if (s[j] == '*' && j + 1 < n && s[j + 1] == '/') {
			depth--;
			j += 2;
		} else if (s[j] == '/' && j + 1 < n && s[j + 1] == '*') {
			depth++;
			j += 2;
		} else {
			j++;
		}
	}
	*ok = depth == 0;
	return j;
}

static inline bool comment_at(const unsigned char *s, size_t n, size_t i)
{
	return i + 1 < n && ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*'));
}

/* Skips whitespace and complete comments (-- and nested block comments).
 * Returns false, with pos at the comment, for an unterminated block
 * comment: the caller then treats the rest as one bad token. */
static inline bool skip_trivia(struct lexer *lx)
{
	const unsigned char *s = lx->s;
	size_t n = lx->n, i = lx->pos;
	bool ok;

	for (;;) {
		while (i < n && (cls[s[i]] & C_SPACE))
			i++;
		if (__builtin_expect(!comment_at(s, n, i), 1)) {
			lx->pos = i;
			return true;
		}
		size_t e = comment_end(s, n, i, &ok);

		if (!ok) {
			lx->pos = i;
			return false;
		}
		i = e;
	}
}

/* From just after an opening quote q: the position after the closing one,
 * or n when there is none. Doubled quotes are the quote itself; with
 * backslash (E'...') a backslash escapes the next byte. */
static size_t scan_quoted(const unsigned char *s, size_t n, size_t i, unsigned char q,
			  bool backslash, bool *ok)
{
	if (!backslash) {
		for (;;) {
			const unsigned char *p = memchr(s + i, q, n - i);

			if (!p)
				break;
			i = (size_t)(p - s) + 1;
			if (i < n && s[i] == q) {
				i++;
				continue;
			}
			*ok = true;
			return i;
		}
	} else {
		while (i < n) {
			if (s[i] == '\\') {
				i += 2;
			} else if (s[i] == q) {
				if (i + 1 < n && s[i + 1] == q) {
					i += 2;
					continue;
				}
				*ok = true;
				return i + 1;
			} else {
				i++;
			}
		}
	}
	*ok = false;
	return n;
}

/* Number: digits with '_' separators, a fraction, an exponent, 0x/0o/0b
 * forms. Identifier bytes glued to it ("123abc", PostgreSQL's "trailing
 * junk") are swallowed too, so that nothing of a literal survives. */
static inline __attribute__((always_inline)) size_t scan_number(const unsigned char *s, size_t n, size_t i)
{
	while (i < n && (cls[s[i]] & C_NUM))
		i++;
	if (i < n && s[i] == '.') {
		i++;
		while (i < n && (cls[s[i]] & C_NUM))
			i++;
	}
	if (i < n && (s[i] | 0x20) == 'e') {
		size_t j = i + 1;

		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j < n && (cls[s[j]] & C_DIGIT))
			i = j;
	}
	while (i < n && (cls[s[i]] & (C_IDCONT)) && s[i] != '$')
		i++;
	return i;
}

/* The end of the number at s[i] (a digit, or '.' before one): 0x1F, 0o17
 * and 0b101 forms, or scan_number's. */
static inline __attribute__((always_inline)) size_t number_end(const unsigned char *s, size_t n, size_t i)
{
	if (s[i] == '0' && i + 1 < n && ((s[i + 1] | 0x20) == 'x' || (s[i + 1] | 0x20) == 'o' ||
					 (s[i + 1] | 0x20) == 'b')) {
		i += 2;
		while (i < n && (cls[s[i]] & C_TAG))
			i++;
		return i;
	}
	return scan_number(s, n, i);
}

/* The token that starts at s[i], i < n, after any whitespace and comments:
 * its kind and end. Shared by the summariser's lexer and the sanitiser,
 * which calls it only where a token may need replacing. */
static inline __attribute__((always_inline)) void lex_at(const unsigned char *s, size_t n, size_t i, struct tok *t)
{
	size_t e;
	bool ok = true;
	unsigned char c = s[i];

	t->start = i;
	if (cls[c] & C_IDSTART) {
		e = i + 1;
		while (e < n && (cls[s[e]] & C_IDCONT))
			e++;
		t->kind = T_WORD;
		if (e - i == 1 && e < n) {
			unsigned char l = c | 0x20;

			/* E'..', B'..', X'..', N'..': one-letter prefixes glued to a quote */
			if (s[e] == '\'' && (l == 'e' || l == 'b' || l == 'x' || l == 'n')) {
				e = scan_quoted(s, n, e + 1, '\'', l == 'e', &ok);
				t->kind = T_STRING;
			} else if (l == 'u' && s[e] == '&' && e + 1 < n &&
				   (s[e + 1] == '\'' || s[e + 1] == '"')) {
				t->kind = s[e + 1] == '\'' ? T_STRING : T_QIDENT;
				e = scan_quoted(s, n, e + 2, s[e + 1], false, &ok);
			}
		}
	} else if ((cls[c] & C_DIGIT) || (c == '.' && i + 1 < n && (cls[s[i + 1]] & C_DIGIT))) {
		t->kind = T_NUMBER;
		e = number_end(s, n, i);
	} else if (c == '\'') {
		t->kind = T_STRING;
		e = scan_quoted(s, n, i + 1, '\'', false, &ok);
	} else if (c == '"') {
		t->kind = T_QIDENT;
		e = scan_quoted(s, n, i + 1, '"', false, &ok);
	} else if (c == '$' && i + 1 < n && (cls[s[i + 1]] & C_DIGIT)) {
		t->kind = T_PARAM;
		e = i + 1;
		while (e < n && (cls[s[e]] & C_DIGIT))
			e++;
	} else if (c == '$') {
		/* $$ or $tag$ (tag: identifier characters without '$', not
		 * starting with a digit) opens a dollar-quoted string ending at
		 * the same delimiter; anything else is a lone '$'. */
		size_t j = i + 1;

		if (j < n && (cls[s[j]] & C_IDSTART))
			while (j < n && (cls[s[j]] & C_TAG))
				j++;
		if (j < n && s[j] == '$') {
			size_t dl = j + 1 - i, k = j + 1;

			t->kind = T_STRING;
			ok = false;
			e = n;
			while (k < n) {
				const unsigned char *p = memchr(s + k, '$', n - k);

				if (!p)
					break;
				k = (size_t)(p - s);
				if (n - k >= dl && memcmp(s + k, s + i, dl) == 0) {
					e = k + dl;
					ok = true;
					break;
				}
				k++;
			}
		} else {
			t->kind = T_PUNCT;
			e = i + 1;
		}
	} else {
		t->kind = T_PUNCT;
		e = i + 1;
	}
	if (!ok) {
		t->kind = T_BAD;
		e = n;
	}
	t->end = e;
}

static inline __attribute__((always_inline)) void lex(struct lexer *lx, struct tok *t)
{
	if (!skip_trivia(lx)) {
		t->kind = T_BAD;
		t->start = lx->pos;
		t->end = lx->pos = lx->n;
		return;
	}
	if (lx->pos >= lx->n) {
		t->kind = T_END;
		t->start = t->end = lx->n;
		return;
	}
	lex_at(lx->s, lx->n, lx->pos, t);
	lx->pos = t->end;
}

/* --- keywords --- */

enum kw {
	KW_NONE, KW_ALL, KW_ALTER, KW_ANALYSE, KW_ANALYZE, KW_AND, KW_ANY, KW_ARRAY, KW_AS,
	KW_CALL, KW_CASE, KW_CAST, KW_CLUSTER, KW_CONCURRENTLY, KW_COPY, KW_CREATE, KW_DELETE,
	KW_DISTINCT, KW_DROP, KW_ELSE, KW_END, KW_EVENT, KW_EXCEPT, KW_EXISTS, KW_EXPLAIN,
	KW_FETCH, KW_FOR, KW_FOREIGN, KW_FREEZE, KW_FROM, KW_FULL, KW_GLOBAL, KW_GROUP,
	KW_HAVING, KW_IF, KW_IN, KW_INDEX, KW_INSERT, KW_INTERSECT, KW_INTO, KW_JOIN,
	KW_LATERAL, KW_LIMIT, KW_LOCAL, KW_LOCK, KW_MATERIALIZED, KW_MERGE, KW_NOT, KW_OFFSET,
	KW_ON, KW_ONLY, KW_OR, KW_ORDER, KW_RECURSIVE, KW_REFRESH, KW_REINDEX, KW_REPLACE,
	KW_RETURNING, KW_ROW, KW_SELECT, KW_SET, KW_TABLE, KW_TEMP, KW_TEMPORARY, KW_THEN,
	KW_TRUNCATE, KW_UNION, KW_UNIQUE, KW_UNLOGGED, KW_UPDATE, KW_USING, KW_VACUUM,
	KW_VALUES, KW_VERBOSE, KW_WHEN, KW_WHERE, KW_WINDOW, KW_WITH,
};

struct kw_entry {
	char name[13];
	uint8_t id;
	bool reserved;  /* cannot name a function called in a select list */
};

/* Sorted (strcmp order) for the binary search. Only the words the state
 * machine reacts to; everything else is an identifier to it. */
static const struct kw_entry kw_table[] = {
	{ "ALL", KW_ALL, true }, { "ALTER", KW_ALTER, false },
	{ "ANALYSE", KW_ANALYSE, true }, { "ANALYZE", KW_ANALYZE, true },
	{ "AND", KW_AND, true }, { "ANY", KW_ANY, true }, { "ARRAY", KW_ARRAY, true },
	{ "AS", KW_AS, true }, { "CALL", KW_CALL, false }, { "CASE", KW_CASE, true },
	{ "CAST", KW_CAST, true }, { "CLUSTER", KW_CLUSTER, false },
	{ "CONCURRENTLY", KW_CONCURRENTLY, false }, { "COPY", KW_COPY, false },
	{ "CREATE", KW_CREATE, true }, { "DELETE", KW_DELETE, false },
	{ "DISTINCT", KW_DISTINCT, true }, { "DROP", KW_DROP, false }, { "ELSE", KW_ELSE, true },
	{ "END", KW_END, true }, { "EVENT", KW_EVENT, false }, { "EXCEPT", KW_EXCEPT, true },
	{ "EXISTS", KW_EXISTS, true }, { "EXPLAIN", KW_EXPLAIN, false },
	{ "FETCH", KW_FETCH, true }, { "FOR", KW_FOR, true }, { "FOREIGN", KW_FOREIGN, false },
	{ "FREEZE", KW_FREEZE, false }, { "FROM", KW_FROM, true }, { "FULL", KW_FULL, false },
	{ "GLOBAL", KW_GLOBAL, false }, { "GROUP", KW_GROUP, true },
	{ "HAVING", KW_HAVING, true }, { "IF", KW_IF, false }, { "IN", KW_IN, true },
	{ "INDEX", KW_INDEX, false }, { "INSERT", KW_INSERT, false },
	{ "INTERSECT", KW_INTERSECT, true }, { "INTO", KW_INTO, true }, { "JOIN", KW_JOIN, false },
	{ "LATERAL", KW_LATERAL, true }, { "LIMIT", KW_LIMIT, true }, { "LOCAL", KW_LOCAL, false },
	{ "LOCK", KW_LOCK, false }, { "MATERIALIZED", KW_MATERIALIZED, false },
	{ "MERGE", KW_MERGE, false }, { "NOT", KW_NOT, true }, { "OFFSET", KW_OFFSET, true },
	{ "ON", KW_ON, true }, { "ONLY", KW_ONLY, true }, { "OR", KW_OR, true },
	{ "ORDER", KW_ORDER, true }, { "RECURSIVE", KW_RECURSIVE, false },
	{ "REFRESH", KW_REFRESH, false }, { "REINDEX", KW_REINDEX, false },
	{ "REPLACE", KW_REPLACE, false }, { "RETURNING", KW_RETURNING, true },
	{ "ROW", KW_ROW, true }, { "SELECT", KW_SELECT, true }, { "SET", KW_SET, false },
	{ "TABLE", KW_TABLE, true }, { "TEMP", KW_TEMP, false },
	{ "TEMPORARY", KW_TEMPORARY, false }, { "THEN", KW_THEN, true },
	{ "TRUNCATE", KW_TRUNCATE, false }, { "UNION", KW_UNION, true },
	{ "UNIQUE", KW_UNIQUE, true }, { "UNLOGGED", KW_UNLOGGED, false },
	{ "UPDATE", KW_UPDATE, false }, { "USING", KW_USING, true },
	{ "VACUUM", KW_VACUUM, false }, { "VALUES", KW_VALUES, false },
	{ "VERBOSE", KW_VERBOSE, false }, { "WHEN", KW_WHEN, true }, { "WHERE", KW_WHERE, true },
	{ "WINDOW", KW_WINDOW, true }, { "WITH", KW_WITH, true },
};

static inline unsigned char upper(unsigned char c)
{
	return (unsigned char)(c - 'a') < 26u ? (unsigned char)(c - 32) : c;
}

/* A name of up to 12 bytes as two integers that compare like strcmp:
 * big-endian, zero-padded. */
static inline void kw_key(const char name[13], uint64_t *hi, uint32_t *lo)
{
	uint64_t a;
	uint32_t b;

	memcpy(&a, name, 8);
	memcpy(&b, name + 8, 4);
	*hi = __builtin_bswap64(a);
	*lo = __builtin_bswap32(b);
}

/* The keyword entry for word s[0..n), or NULL: the word upper-cased a word
 * at a time and a binary search on integer keys (this runs for every word). */
static const struct kw_entry *kw_find(const unsigned char *s, size_t n)
{
	unsigned char w[16] = { 0 };
	size_t lo = 0, hi = sizeof(kw_table) / sizeof(kw_table[0]);
	uint64_t a, wh;
	uint32_t b, wl;

	/* first letters of no keyword (B, K, P, Q, X, Y, Z): most identifiers
	 * are rejected here */
	if (n < 2 || n > 12 || ((1u << ((s[0] | 0x20) & 31)) & 0x07030804u))
		return NULL;
	memcpy(w, s, n);
	memcpy(&a, w, 8);
	memcpy(&b, w + 8, 4);
	/* clearing 0x20 upper-cases ASCII letters, and makes no other byte a
	 * letter: a word with anything but letters matches no keyword */
	wh = __builtin_bswap64(a & ~0x2020202020202020ull);
	wl = __builtin_bswap32(b & ~0x20202020u);
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint64_t eh;
		uint32_t el;

		kw_key(kw_table[mid].name, &eh, &el);
		if (wh == eh && wl == el)
			return &kw_table[mid];
		if (wh < eh || (wh == eh && wl < el))
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Case-insensitive comparison of word s[0..n) with the upper-case w. */
static bool word_is(const unsigned char *s, size_t n, const char *w)
{
	size_t i;

	for (i = 0; i < n && w[i]; i++)
		if (upper(s[i]) != (unsigned char)w[i])
			return false;
	return i == n && !w[i];
}

/* --- summary --- */

struct parser {
	struct lexer lx;
	struct tok t;         /* current token: never a comment */
	const struct kw_entry *kw;  /* its keyword, when a T_WORD is one */
};

static void advance(struct parser *p)
{
	lex(&p->lx, &p->t);
	p->kw = p->t.kind == T_WORD ? kw_find(p->lx.s + p->t.start, p->t.end - p->t.start) : NULL;
}

static inline int cur_kw(const struct parser *p)
{
	return p->kw ? p->kw->id : KW_NONE;
}

static inline bool cur_punct(const struct parser *p, char c)
{
	return p->t.kind == T_PUNCT && p->lx.s[p->t.start] == (unsigned char)c;
}

static inline bool cur_name(const struct parser *p)
{
	return p->t.kind == T_WORD || p->t.kind == T_QIDENT;
}

static inline bool cur_done(const struct parser *p)
{
	return p->t.kind == T_END || p->t.kind == T_BAD;
}

/* From a '(' to just after its matching ')' (or the end). */
static void skip_parens(struct parser *p)
{
	size_t depth = 0;

	do {
		if (cur_punct(p, '('))
			depth++;
		else if (cur_punct(p, ')'))
			depth--;
		advance(p);
	} while (depth && !cur_done(p));
}

/*
 * Reads a possibly qualified name (a.b."C") from the current token into
 * buf, quotes removed ("" inside becomes "), unquoted parts as written.
 * Returns its length, or 0 when it does not fit in cap - 1 (the tokens are
 * consumed all the same).
 */
static size_t read_name(struct parser *p, char *buf, size_t cap)
{
	size_t len = 0;
	bool fits = true;

	for (;;) {
		const unsigned char *s = p->lx.s + p->t.start;
		size_t n = p->t.end - p->t.start;

		if (p->t.kind == T_QIDENT) {
			size_t skip = s[0] == '"' ? 1 : 3;  /* " or U&" */

			for (size_t i = skip; i + 1 < n; i++) {
				/* a NUL cannot be in a real name (libpq texts are C
				 * strings) and would cut the summary short for C readers */
				if (len + 1 >= cap || s[i] == '\0') {
					fits = false;
					break;
				}
				buf[len++] = (char)s[i];
				if (s[i] == '"')
					i++;  /* "" stands for one quote */
			}
		} else if (len + n < cap) {
			memcpy(buf + len, s, n);
			len += n;
		} else {
			fits = false;
		}
		advance(p);
		if (!cur_punct(p, '.'))
			break;
		struct lexer peek = p->lx;
		struct tok nt;

		lex(&peek, &nt);
		if (nt.kind != T_WORD && nt.kind != T_QIDENT)
			break;  /* t.* or a trailing dot */
		advance(p);
		if (len + 1 < cap)
			buf[len++] = '.';
		else
			fits = false;
	}
	if (!fits)
		return 0;
	buf[len] = '\0';
	return len;
}

enum clause {
	CL_NONE,     /* nothing the summary cares about */
	CL_LIST,     /* a SELECT list */
	CL_FROM,     /* expecting a table reference */
	CL_AFTER,    /* after one: alias, then JOIN, ',' or the end of FROM */
	CL_ON,       /* a join condition */
	CL_TARGET,   /* after the table of INSERT/UPDATE/DELETE/MERGE */
	CL_SET,      /* UPDATE ... SET: a FROM may follow */
	CL_OTHER,    /* WHERE, GROUP BY...: no more tables at this level */
};

struct frame {
	uint8_t clause;
	uint8_t stmt;         /* KW_SELECT, KW_INSERT... of the statement at this level */
	bool expect_stmt;     /* the next word may start a statement */
	bool in_with;         /* reading a WITH list: a closing CTE body continues it */
	bool from_seen;
	bool has_fn;          /* a function called in the select list, at fn_pos */
	size_t fn_pos;
};

struct summarizer {
	struct sql_summary *out;
	struct parser p;
	struct frame f[FRAME_MAX];
	unsigned depth;       /* current frame */
	size_t over;          /* parentheses open beyond FRAME_MAX */
	bool full;            /* the summary is capped: nothing more is appended */
	bool op_main;         /* operation comes from the outermost level */
	unsigned ntables;
	bool tables_same;
	unsigned ncte;
	char cte[CTE_MAX][CTE_NAME_MAX];
};

/* Appends one whole token to the summary, or stops the summary for good:
 * the semantic conventions want a truncation that keeps whole names, and
 * keeping later, shorter ones would misorder it. */
static void sum_append(struct summarizer *z, const char *s, size_t n, bool up)
{
	struct sql_summary *o = z->out;
	size_t sep = o->summary_len ? 1 : 0;

	if (z->full || !n)
		return;
	if (o->summary_len + sep + n > SQL_SUMMARY_MAX - 1) {
		z->full = true;
		return;
	}
	if (sep)
		o->summary[o->summary_len++] = ' ';
	for (size_t i = 0; i < n; i++)
		o->summary[o->summary_len + i] = up ? (char)upper((unsigned char)s[i]) : s[i];
	o->summary_len += n;
	o->summary[o->summary_len] = '\0';
}

/* An operation: into the summary, and db.operation.name when it is the
 * first one of the outermost level (so WITH ... UPDATE gives UPDATE, and
 * INSERT ... SELECT gives INSERT), or the first one at all. */
static void add_op(struct summarizer *z, const char *s, size_t n)
{
	struct sql_summary *o = z->out;
	bool main = z->depth == 0 && !z->over;

	sum_append(z, s, n, true);
	if (n >= SQL_NAME_MAX || (o->operation_len && (z->op_main || !main)))
		return;
	for (size_t i = 0; i < n; i++)
		o->operation[i] = (char)upper((unsigned char)s[i]);
	o->operation[n] = '\0';
	o->operation_len = n;
	z->op_main = main;
}

/* A target: tables count towards db.collection.name, which is only set
 * when every table named is the same one. */
static void add_target(struct summarizer *z, const char *name, size_t n, bool table)
{
	struct sql_summary *o = z->out;

	if (!n)
		return;
	sum_append(z, name, n, false);
	if (!table)
		return;
	if (z->ntables++ == 0) {
		if (n < SQL_NAME_MAX) {
			memcpy(o->collection, name, n + 1);
			o->collection_len = n;
		} else {
			z->tables_same = false;
		}
	} else if (n != o->collection_len || memcmp(name, o->collection, n) != 0) {
		z->tables_same = false;
	}
}

static bool is_cte(const struct summarizer *z, const char *name, size_t n)
{
	/* unquoted names fold case in PostgreSQL: compare ignoring it */
	for (unsigned i = 0; i < z->ncte && i < CTE_MAX; i++) {
		const char *c = z->cte[i];
		size_t j = 0;

		while (j < n && c[j] && upper((unsigned char)c[j]) == upper((unsigned char)name[j]))
			j++;
		if (j == n && !c[j])
			return true;
	}
	return false;
}

/* Reads the name at the current token and adds it as a target. In a FROM
 * clause (in_from) a name followed by '(' is a function (SELECT * FROM
 * f($1)), never a table; elsewhere that '(' opens a column list. */
static void target_here(struct summarizer *z, bool table_ok, bool in_from)
{
	char name[SQL_SUMMARY_MAX];
	size_t n = read_name(&z->p, name, sizeof(name));
	bool fn = in_from && cur_punct(&z->p, '(');
	bool skip_cte = in_from;

	if (skip_cte && !fn && is_cte(z, name, n))
		return;
	add_target(z, name, n, table_ok && !fn);
}

/* A SELECT without FROM that calls a function (SELECT f(24)) is
 * summarised by that function, read again from where it was seen. */
static void flush_fn(struct summarizer *z, struct frame *f)
{
	if (f->has_fn && !f->from_seen) {
		struct parser q = { .lx = z->p.lx };
		char name[SQL_SUMMARY_MAX];

		q.lx.pos = f->fn_pos;
		advance(&q);
		add_target(z, name, read_name(&q, name, sizeof(name)), false);
	}
	f->has_fn = false;
}

static void push_frame(struct summarizer *z, uint8_t clause)
{
	struct frame *f = &z->f[++z->depth];

	memset(f, 0, sizeof(*f));
	f->clause = clause;
	f->expect_stmt = true;
}

/* At a CTE name in a WITH list: remembers it (FROM name then means the
 * CTE, not a table), skips its column list and AS [NOT] MATERIALIZED, and
 * leaves the '(' of its body for the main loop to open. */
static void cte_head(struct summarizer *z)
{
	struct parser *p = &z->p;
	struct frame *f = &z->f[z->depth];

	f->in_with = false;
	f->expect_stmt = true;
	if (cur_kw(p) == KW_RECURSIVE)
		advance(p);
	if (!cur_name(p))
		return;
	if (z->ncte < CTE_MAX) {
		if (!read_name(p, z->cte[z->ncte], CTE_NAME_MAX))
			z->cte[z->ncte][0] = '\0';
		z->ncte++;
	} else {
		advance(p);
	}
	if (cur_punct(p, '('))
		skip_parens(p);
	if (cur_kw(p) == KW_AS)
		advance(p);
	if (cur_kw(p) == KW_NOT)
		advance(p);
	if (cur_kw(p) == KW_MATERIALIZED)
		advance(p);
	if (cur_punct(p, '(')) {
		f->in_with = true;
		f->expect_stmt = false;
	}
}

/* INSERT INTO t, UPDATE [ONLY] t, DELETE FROM t, MERGE INTO t. */
static void dml_head(struct summarizer *z, int kw)
{
	struct parser *p = &z->p;
	struct frame *f = &z->f[z->depth];

	add_op(z, (const char *)p->lx.s + p->t.start, p->t.end - p->t.start);
	f->stmt = (uint8_t)kw;
	f->clause = CL_TARGET;
	advance(p);
	if (cur_kw(p) == KW_INTO || (kw == KW_DELETE && cur_kw(p) == KW_FROM))
		advance(p);
	if (cur_kw(p) == KW_ONLY)
		advance(p);
	if (cur_name(p))
		target_here(z, true, false);
}

/* The main loop: every token of the first statement, tracking per
 * parenthesis level where in a SELECT/DML statement we are. */
static void run(struct summarizer *z)
{
	struct parser *p = &z->p;

	while (!cur_done(p)) {
		struct frame *f = &z->f[z->depth];
		int kw = cur_kw(p);
		bool expect = f->expect_stmt;

		if (p->t.kind == T_PUNCT) {
			char ch = (char)p->lx.s[p->t.start];

			if (ch == ';') {
				advance(p);
				z->out->multiple_statements = !cur_done(p);
				break;
			}
			if (ch == '(') {
				if (z->over || z->depth + 1 >= FRAME_MAX) {
					z->over++;
				} else {
					bool from = f->clause == CL_FROM;

					if (from)
						f->clause = CL_AFTER;
					f->expect_stmt = false;
					push_frame(z, from ? CL_FROM : CL_NONE);
				}
				advance(p);
				continue;
			}
			if (ch == ')') {
				advance(p);
				if (z->over) {
					z->over--;
				} else if (z->depth > 0) {
					flush_fn(z, f);
					f = &z->f[--z->depth];
					if (f->in_with) {
						if (cur_punct(p, ',')) {
							advance(p);
							cte_head(z);
						} else {
							f->in_with = false;
							f->expect_stmt = true;
						}
					}
				}
				continue;
			}
			if (ch == ',' && (f->clause == CL_AFTER || f->clause == CL_ON))
				f->clause = CL_FROM;
			f->expect_stmt = false;
			advance(p);
			continue;
		}
		if (z->over || !cur_name(p)) {
			f->expect_stmt = false;
			advance(p);
			continue;
		}
		f->expect_stmt = false;
		switch (kw) {
		case KW_SELECT:
			flush_fn(z, f);
			add_op(z, "SELECT", 6);
			f->stmt = KW_SELECT;
			f->clause = CL_LIST;
			f->from_seen = false;
			advance(p);
			continue;
		case KW_WITH:
			if (!expect)
				break;
			advance(p);
			cte_head(z);
			continue;
		case KW_INSERT:
		case KW_UPDATE:
		case KW_DELETE:
		case KW_MERGE:
			if (!expect)
				break;
			dml_head(z, kw);
			continue;
		case KW_VALUES:
			if (expect && z->depth == 0)
				add_op(z, "VALUES", 6);
			break;
		case KW_FROM:
			if (f->clause == CL_LIST || f->clause == CL_SET) {
				f->clause = CL_FROM;
				f->from_seen = true;
			}
			break;
		case KW_JOIN:
			if (f->clause == CL_AFTER || f->clause == CL_ON)
				f->clause = CL_FROM;
			break;
		case KW_ON:
			if (f->clause == CL_AFTER)
				f->clause = CL_ON;
			break;
		case KW_USING:
			if (f->clause == CL_AFTER)
				f->clause = CL_ON;
			else if (f->clause == CL_TARGET && (f->stmt == KW_DELETE || f->stmt == KW_MERGE))
				f->clause = CL_FROM;  /* DELETE ... USING t, MERGE ... USING t */
			break;
		case KW_SET:
			if (f->clause == CL_TARGET && f->stmt == KW_UPDATE)
				f->clause = CL_SET;
			break;
		case KW_UNION:
		case KW_INTERSECT:
		case KW_EXCEPT:
			flush_fn(z, f);
			f->clause = CL_NONE;
			f->expect_stmt = true;
			break;
		case KW_WHEN:
			if (f->stmt == KW_MERGE)
				f->clause = CL_OTHER;
			break;
		case KW_WHERE: case KW_GROUP: case KW_HAVING: case KW_ORDER: case KW_LIMIT:
		case KW_OFFSET: case KW_FETCH: case KW_FOR: case KW_WINDOW: case KW_RETURNING:
			if (f->clause == CL_LIST || f->clause == CL_FROM || f->clause == CL_AFTER ||
			    f->clause == CL_ON || f->clause == CL_SET || f->clause == CL_TARGET)
				f->clause = CL_OTHER;
			break;
		default:
			if (f->clause == CL_FROM) {
				if (kw == KW_LATERAL || kw == KW_ONLY)
					break;
				target_here(z, true, true);
				f->clause = CL_AFTER;
				continue;
			}
			if (f->clause == CL_LIST && !f->has_fn && !(p->kw && p->kw->reserved)) {
				size_t pos = p->t.start;

				/* skip a.b.c without copying it: only a call matters */
				advance(p);
				while (cur_punct(p, '.')) {
					advance(p);
					if (!cur_name(p))
						break;
					advance(p);
				}
				if (cur_punct(p, '(')) {
					f->has_fn = true;
					f->fn_pos = pos;
				}
				continue;
			}
			break;
		}
		advance(p);
	}
	for (;;) {
		flush_fn(z, &z->f[z->depth]);
		if (!z->depth)
			break;
		z->depth--;
	}
}

/* CREATE/DROP/ALTER [OR REPLACE|TEMP|UNIQUE...] kind [IF [NOT] EXISTS]
 * [CONCURRENTLY] name[, name]: the operation is "CREATE TABLE" etc. */
static void ddl_head(struct summarizer *z)
{
	struct parser *p = &z->p;
	const char *verb = (const char *)p->lx.s + p->t.start;
	size_t vn = p->t.end - p->t.start;
	bool drop = cur_kw(p) == KW_DROP;
	char op[SQL_NAME_MAX];
	size_t on = 0;
	const unsigned char *kind = NULL;
	size_t kn = 0;
	int kkw;

	memcpy(op, verb, vn);
	on = vn;
	advance(p);
	for (;;) {
		int k = cur_kw(p);

		if (k == KW_OR || k == KW_REPLACE || k == KW_TEMP || k == KW_TEMPORARY ||
		    k == KW_UNLOGGED || k == KW_UNIQUE || k == KW_GLOBAL || k == KW_LOCAL)
			advance(p);
		else
			break;
	}
	/* one kind word, two after MATERIALIZED/FOREIGN/EVENT */
	for (int words = 0; p->t.kind == T_WORD && words < 2; words++) {
		size_t n = p->t.end - p->t.start;

		kkw = cur_kw(p);
		if (on + 1 + n >= sizeof(op))
			break;
		op[on++] = ' ';
		memcpy(op + on, p->lx.s + p->t.start, n);
		on += n;
		kind = p->lx.s + p->t.start;
		kn = n;
		advance(p);
		if (kkw != KW_MATERIALIZED && kkw != KW_FOREIGN && kkw != KW_EVENT)
			break;
	}
	add_op(z, op, on);
	if (!kind)
		return;
	bool table = word_is(kind, kn, "TABLE") || word_is(kind, kn, "VIEW");
	static const char *const named[] = {
		"SEQUENCE", "SCHEMA", "FUNCTION", "PROCEDURE", "TRIGGER", "TYPE", "EXTENSION",
		"DATABASE", "ROLE", "USER", "DOMAIN", "AGGREGATE", "TABLESPACE", "POLICY", "RULE",
		"PUBLICATION", "SUBSCRIPTION", "SERVER", "COLLATION", "LANGUAGE", "STATISTICS",
		"INDEX",
	};
	bool known = table;

	for (size_t i = 0; !known && i < sizeof(named) / sizeof(named[0]); i++)
		known = word_is(kind, kn, named[i]);
	if (!known)
		return;
	for (;;) {
		int k = cur_kw(p);

		if (k == KW_IF || k == KW_NOT || k == KW_EXISTS || k == KW_CONCURRENTLY || k == KW_ONLY)
			advance(p);
		else
			break;
	}
	if (word_is(kind, kn, "INDEX") && cur_kw(p) == KW_ON) {
		/* CREATE INDEX ON t (...): no index name, the table is the target */
		advance(p);
		if (cur_kw(p) == KW_ONLY)
			advance(p);
		table = true;
	}
	while (cur_name(p) && !(p->kw && p->kw->reserved)) {
		target_here(z, table, false);
		if (drop && cur_punct(p, '('))
			skip_parens(p);  /* DROP FUNCTION f(int) */
		if (!drop || !cur_punct(p, ','))
			break;
		advance(p);
	}
}

/* TRUNCATE, LOCK, VACUUM, ANALYZE, CLUSTER, COPY, CALL, REFRESH, TABLE:
 * the operation word, options skipped, then a list of names. */
static void targets_head(struct summarizer *z, int kw)
{
	struct parser *p = &z->p;
	bool call = kw == KW_CALL;

	if (kw == KW_REFRESH) {
		add_op(z, "REFRESH MATERIALIZED VIEW", 25);
		advance(p);
		while (p->t.kind == T_WORD && (cur_kw(p) == KW_MATERIALIZED ||
					       cur_kw(p) == KW_CONCURRENTLY ||
					       word_is(p->lx.s + p->t.start, p->t.end - p->t.start, "VIEW")))
			advance(p);
	} else {
		add_op(z, (const char *)p->lx.s + p->t.start, p->t.end - p->t.start);
		advance(p);
	}
	for (;;) {
		int k = cur_kw(p);

		if (k == KW_TABLE || k == KW_ONLY || k == KW_FULL || k == KW_FREEZE ||
		    k == KW_VERBOSE || k == KW_ANALYZE || k == KW_ANALYSE)
			advance(p);
		else if ((kw == KW_VACUUM || kw == KW_ANALYZE || kw == KW_ANALYSE) && cur_punct(p, '('))
			skip_parens(p);  /* VACUUM (VERBOSE, ANALYZE) t */
		else
			break;
	}
	while (cur_name(p) && !(p->kw && p->kw->reserved)) {
		if (call) {
			struct sql_summary *o = z->out;
			char name[SQL_SUMMARY_MAX];
			size_t n = read_name(p, name, sizeof(name));

			add_target(z, name, n, false);
			if (n && n < SQL_NAME_MAX) {
				memcpy(o->procedure, name, n + 1);
				o->procedure_len = n;
			}
			return;
		}
		target_here(z, true, false);
		if (cur_punct(p, '*'))
			advance(p);
		if (kw != KW_COPY && cur_punct(p, '('))
			skip_parens(p);  /* ANALYZE t (col) */
		if (!cur_punct(p, ','))
			break;
		advance(p);
	}
}

/* Statements summarised by their first word alone. */
static bool simple_command(const unsigned char *s, size_t n)
{
	static const char *const words[] = {
		"BEGIN", "COMMIT", "END", "ROLLBACK", "ABORT", "START", "SAVEPOINT", "RELEASE",
		"SET", "RESET", "SHOW", "DO", "LISTEN", "NOTIFY", "UNLISTEN", "PREPARE",
		"EXECUTE", "DEALLOCATE", "DISCARD", "GRANT", "REVOKE", "COMMENT", "CHECKPOINT",
		"FETCH", "MOVE", "CLOSE", "DECLARE", "LOAD", "SECURITY", "IMPORT", "REASSIGN",
		"REINDEX",
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (word_is(s, n, words[i]))
			return true;
	return false;
}

void sql_summarize(const char *text, size_t len, struct sql_summary *out)
{
	struct summarizer z;
	struct parser *p = &z.p;

	out->summary[0] = out->operation[0] = out->collection[0] = out->procedure[0] = '\0';
	out->summary_len = out->operation_len = out->collection_len = out->procedure_len = 0;
	out->multiple_statements = false;
	if (!text)
		len = 0;

	z.out = out;
	z.p.lx.s = (const unsigned char *)text;
	z.p.lx.n = len < SUMMARY_SCAN_MAX ? len : SUMMARY_SCAN_MAX;
	z.p.lx.pos = 0;
	z.depth = 0;
	z.over = 0;
	z.full = false;
	z.op_main = false;
	z.ntables = 0;
	z.tables_same = true;
	z.ncte = 0;
	memset(&z.f[0], 0, sizeof(z.f[0]));

	advance(p);
	while (cur_punct(p, ';'))
		advance(p);  /* empty statements before the first one */
	int kw = cur_kw(p);

	switch (kw) {
	case KW_SELECT: case KW_WITH: case KW_INSERT: case KW_UPDATE: case KW_DELETE:
	case KW_MERGE: case KW_VALUES:
		z.f[0].expect_stmt = true;
		break;
	case KW_EXPLAIN:
		add_op(&z, "EXPLAIN", 7);
		advance(p);
		while (cur_kw(p) == KW_ANALYZE || cur_kw(p) == KW_ANALYSE || cur_kw(p) == KW_VERBOSE)
			advance(p);
		if (cur_punct(p, '('))
			skip_parens(p);
		z.f[0].expect_stmt = true;
		break;
	case KW_CREATE: case KW_DROP: case KW_ALTER:
		ddl_head(&z);
		break;
	case KW_TRUNCATE: case KW_LOCK: case KW_VACUUM: case KW_ANALYZE: case KW_ANALYSE:
	case KW_CLUSTER: case KW_COPY: case KW_CALL: case KW_REFRESH: case KW_TABLE:
		targets_head(&z, kw);
		break;
	default:
		if (cur_punct(p, '(')) {
			z.f[0].expect_stmt = true;  /* (SELECT ...) UNION (SELECT ...) */
		} else if (p->t.kind == T_WORD &&
			   simple_command(p->lx.s + p->t.start, p->t.end - p->t.start)) {
			add_op(&z, (const char *)p->lx.s + p->t.start, p->t.end - p->t.start);
			advance(p);
		} else {
			return;  /* not a statement we know: empty, the span is named after the system */
		}
		break;
	}
	run(&z);
	if (!z.ntables || !z.tables_same) {
		out->collection[0] = '\0';
		out->collection_len = 0;
	}
}

/* --- sanitising --- */

struct sink {
	char *out;
	size_t cap, len;
	bool full;
};

/* put's slow path: as much of s[0..n) as fits in cap - 1, cut before a
 * UTF-8 continuation byte so that no character is split (invalid input is
 * copied as is: the span layer replaces invalid UTF-8 later, so at most 3
 * bytes are given back for it), and the sink marked full. */
static __attribute__((noinline)) bool put_cut(struct sink *k, const unsigned char *s)
{
	size_t m = k->cap - 1 - k->len;

	for (int back = 0; m > 0 && back < 3 && (s[m] & 0xC0) == 0x80; back++)
		m--;
	memcpy(k->out + k->len, s, m);
	k->len += m;
	k->full = true;
	return false;
}

/* Appends s[0..n) if it fits in cap - 1; otherwise put_cut. */
static inline bool put(struct sink *k, const unsigned char *s, size_t n)
{
	if (__builtin_expect(n > k->cap - 1 - k->len, 0))
		return put_cut(k, s);
	memcpy(k->out + k->len, s, n);
	k->len += n;
	return true;
}

/* Appends a '?' if it fits. */
static inline bool put_mark(struct sink *k)
{
	if (__builtin_expect(k->len + 1 >= k->cap, 0)) {
		k->full = true;
		return false;
	}
	k->out[k->len++] = '?';
	return true;
}

/* Whether the token at t starts a literal list item: a string, a number,
 * or a signed number; on success *end is after it and lx past it. */
static bool literal_item(struct lexer *lx, const struct tok *t, size_t *end)
{
	if (t->kind == T_STRING || t->kind == T_NUMBER) {
		*end = t->end;
		return true;
	}
	if (t->kind == T_PUNCT && (lx->s[t->start] == '-' || lx->s[t->start] == '+')) {
		struct lexer peek = *lx;
		struct tok nt;

		lex(&peek, &nt);
		if (nt.kind == T_NUMBER) {
			*lx = peek;
			*end = nt.end;
			return true;
		}
	}
	return false;
}

/*
 * The sanitiser runs on every statement a traced connection sends, so it
 * doesn't lex every token: it jumps from one byte that may need a decision
 * to the next, sixteen bytes at a time, and the bytes in between are copied
 * as they are. Those stop bytes are the ones that can begin a literal, a
 * quoted name or a comment (' " $ . digits - /), and '(' (an IN list).
 * Letters, spaces and the other punctuation are never replaced; all they
 * decide is whether a digit or '$' continues a name ("t1", "a$b"), and
 * that is read from the byte before it. At a stop the token is lexed by
 * lex_at, so that the sanitiser and the summariser agree on every token.
 */

/* Stop bytes: '"'..'(' and '-'..'9', two ranges cheap to test sixteen at
 * a time. They hold three bytes that need nothing ('#', '%', '&'): those
 * cost a look and are passed over. */
static inline bool san_stop(unsigned char c)
{
	return (unsigned char)(c - '"') <= '(' - '"' || (unsigned char)(c - '-') <= '9' - '-';
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Bit k set when p[k] is a stop byte, for the 16 bytes at p. */
static inline unsigned san_mask16(const unsigned char *p)
{
	__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
	__m128i a = _mm_sub_epi8(x, _mm_set1_epi8('"'));
	__m128i b = _mm_sub_epi8(x, _mm_set1_epi8('-'));

	a = _mm_cmpeq_epi8(_mm_min_epu8(a, _mm_set1_epi8('(' - '"')), a);
	b = _mm_cmpeq_epi8(_mm_min_epu8(b, _mm_set1_epi8('9' - '-')), b);
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(a, b));
}

/* The first stop byte at or after i, or n. A last partial block is read as
 * the last 16 bytes of the text, the ones already seen masked off: nothing
 * outside s[0..n) is read. */
static inline size_t san_next(const unsigned char *s, size_t n, size_t i)
{
	unsigned m;

	for (; i + 16 <= n; i += 16)
		if ((m = san_mask16(s + i)) != 0)
			return i + (size_t)__builtin_ctz(m);
	if (i >= n)
		return n;
	if (n >= 16) {
		m = san_mask16(s + n - 16) >> (16 - (n - i));
		return m ? i + (size_t)__builtin_ctz(m) : n;
	}
	while (i < n && !san_stop(s[i]))
		i++;
	return i;
}
#else
static inline size_t san_next(const unsigned char *s, size_t n, size_t i)
{
	while (i < n && !san_stop(s[i]))
		i++;
	return i;
}
#endif

/* Where the literal or quoted name whose quote is at s[i] begins: at a
 * one-letter word glued to it (E'', B'', X'', N'', U&'', U&""), which
 * lex_at then reads as its prefix; otherwise at the quote. from: the end of
 * the last token lexed, so s[from..i) holds only letters, spaces and plain
 * punctuation. */
static size_t quote_start(const unsigned char *s, size_t from, size_t i)
{
	size_t j = i;

	if (j > from && s[j - 1] == '&')
		j--;
	if (j > from && (cls[s[j - 1]] & C_IDSTART) && (j - 1 == from || !(cls[s[j - 2]] & C_IDCONT)))
		return j - 1;
	return i;
}

/* Whether the '(' or comment at s[i] follows the word IN (with only
 * whitespace, or comments that follow it, in between). in_tail: the end of
 * the last comment that followed an IN. */
static bool after_in(const unsigned char *s, size_t from, size_t in_tail, size_t i)
{
	size_t j = i;

	while (j > from && (cls[s[j - 1]] & C_SPACE))
		j--;
	if (j == from)
		return from == in_tail;
	return j - from >= 2 && (s[j - 2] | 0x20) == 'i' && (s[j - 1] | 0x20) == 'n' &&
	       (j - 2 == from || !(cls[s[j - 3]] & C_IDCONT));
}

size_t sql_sanitize(const char *text, size_t len, char *out, size_t cap, bool *truncated)
{
	struct sink k = { out, cap, 0, false };
	const unsigned char *s = (const unsigned char *)text;
	size_t n = text ? len : 0;
	size_t prev = 0;            /* input before prev has been written or deliberately dropped */
	size_t last = 0;            /* end of the last token or comment read */
	size_t in_tail = SIZE_MAX;  /* end of the last comment that followed IN */
	size_t i = 0;
	struct tok t;

	if (!out || cap == 0) {
		if (truncated)
			*truncated = len > 0;
		return 0;
	}
	for (;;) {
		i = san_next(s, n, i);
		unsigned char c = i < n ? s[i] : 0;
		/* where what the stop starts starts: a prefixed string at its
		 * prefix letter */
		size_t start = c == '\'' || c == '"' ? quote_start(s, last, i) : i, end;
		bool ok;

		/* the run from prev to there is kept as it is: once it can't
		 * fit, the output is full and reading stops */
		if (start - prev > k.cap - 1 - k.len) {
			put(&k, s + prev, start - prev);
			goto done;
		}
		if (i >= n)
			break;
		switch (c) {
		case '0' ... '9':
		case '$':
			if (i > last && (cls[s[i - 1]] & C_IDCONT)) {
				/* inside a name: t1, a$b */
				while (i < n && (cls[s[i]] & C_IDCONT))
					i++;
				last = i;
				continue;
			}
			if (c != '$') {
				end = number_end(s, n, i);
				goto literal;
			}
			break;  /* $1, $$...$$, $tag$...$tag$ or a lone '$' */
		case '.':
			if (i + 1 < n && (cls[s[i + 1]] & C_DIGIT)) {
				end = number_end(s, n, i);
				goto literal;
			}
			i++;
			continue;
		case '\'':
			if (start == i) {
				end = scan_quoted(s, n, i + 1, '\'', false, &ok);  /* n when unterminated */
				goto literal;
			}
			break;
		case '"':
			break;
		case '-':
		case '/': {
			if (!comment_at(s, n, i)) {
				i++;
				continue;
			}
			bool in = after_in(s, last, in_tail, i);

			end = comment_end(s, n, i, &ok);
			if (!ok)
				goto literal;  /* unterminated: whatever it holds, it must not leak */
			last = i = end;
			if (in)
				in_tail = end;
			continue;
		}
		case '(': {
			if (!after_in(s, last, in_tail, i)) {
				i++;
				continue;
			}
			/* IN (1, 2, 'x') -> IN (?): streamed, so that a long list
			 * is never read ahead: the first item gives '?', each
			 * further ", item" is dropped, and anything else ends the
			 * list, and is read again from its start as usual. */
			struct lexer lx = { s, n, i + 1 };
			enum { S_OPEN, S_ITEM, S_COMMA } st = S_OPEN;

			for (;;) {
				lex(&lx, &t);
				if (st == S_ITEM && t.kind == T_PUNCT && s[t.start] == ',') {
					st = S_COMMA;  /* held back until we know what follows */
					continue;
				}
				if (st != S_ITEM && literal_item(&lx, &t, &end)) {
					if (st == S_OPEN &&
					    (!put(&k, s + prev, t.start - prev) || !put_mark(&k)))
						goto done;
					prev = end;
					st = S_ITEM;
					continue;
				}
				break;
			}
			last = i = t.start;
			continue;
		}
		default:  /* '#', '%', '&' */
			i++;
			continue;
		}
		/* a quoted name, a prefixed string, or what starts with '$' */
		lex_at(s, n, start, &t);
		if (start != i && t.kind == T_WORD) {
			/* that letter was no prefix: the quote is read next time */
			last = i = t.end;
			continue;
		}
		last = i = t.end;
		if (t.kind != T_STRING && t.kind != T_BAD)
			continue;  /* kept: quoted names, $1, '$' */
		end = t.end;
literal:
		if (!put(&k, s + prev, start - prev) || !put_mark(&k))
			goto done;
		prev = last = i = end;
	}
	put(&k, s + prev, n - prev);  /* the pending run */
done:
	out[k.len] = '\0';
	if (truncated)
		*truncated = k.full;
	return k.len;
}

/* --- error messages --- */

static inline bool msg_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static inline bool msg_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A quote that ends a value is followed by the end or by a byte that can't
 * continue a word: a quote inside a value ("a"b", 'O'Brien') is not taken
 * for the end of it. Bytes >= 0x80 count as ends (Japanese messages glue
 * their text to the quote). */
static inline bool msg_ends_value(const unsigned char *s, size_t n, size_t i)
{
	return i >= n || !msg_alnum(s[i]);
}

/* How many bytes c are in s[from..to). */
static size_t msg_count(const unsigned char *s, size_t from, size_t to, unsigned char c)
{
	size_t k = 0;

	if (from >= to)
		return 0;
	for (const unsigned char *p = s + from; (p = memchr(p, c, (size_t)(s + to - p))) != NULL; p++)
		k++;
	return k;
}

/*
 * Quotes of PostgreSQL's translations (checked in the 15.x catalogs): the
 * German »...«, the French and Spanish «...», and the “...” and „...“ of a
 * few messages. They don't occur inside a value in practice, so the first
 * closing mark ends it.
 */
static const struct {
	unsigned char open[3], close[3];
	uint8_t open_len, close_len;
} msg_marks[] = {
	{ { 0xC2, 0xAB }, { 0xC2, 0xBB }, 2, 2 },               /* « » */
	{ { 0xC2, 0xBB }, { 0xC2, 0xAB }, 2, 2 },               /* » « */
	{ { 0xE2, 0x80, 0x9C }, { 0xE2, 0x80, 0x9D }, 3, 3 },   /* “ ” */
	{ { 0xE2, 0x80, 0x9E }, { 0xE2, 0x80, 0x9C }, 3, 3 },   /* „ “ */
};

struct msg_value {
	size_t start, end;   /* the bytes replaced */
	bool paren;          /* by "(?)" (or "(?" when not closed) rather than "?" */
	bool closed;
};

/*
 * Whether a value PostgreSQL quoted into a message starts at s[i]; if so,
 * fills v (a value that is never closed runs to the end of the message).
 * dq: the number of '"' in s[i..n).
 */
static bool msg_value(const unsigned char *s, size_t n, size_t i, size_t dq, struct msg_value *v)
{
	unsigned char c = s[i];
	size_t j;

	v->start = i;
	v->end = n;
	v->paren = false;
	v->closed = false;
	if (c == '"') {
		/* PostgreSQL writes "%s" without escaping, so a value may hold
		 * quotes. The closing quote is the first that ends a word and
		 * leaves an even number of quotes after it: the rest of the
		 * message must still pair up. */
		for (j = i + 1, dq--; j < n; j++) {
			if (s[j] != '"')
				continue;
			dq--;
			if (msg_ends_value(s, n, j + 1) && dq % 2 == 0) {
				v->end = j + 1;
				break;
			}
		}
		return true;
	}
	if (c == '\'') {
		/* 'literal' (quote_literal, %L), E'...', X'...': an apostrophe
		 * inside a word ("table's") is not a quote. A doubled quote is
		 * one quote of the value; in E'...' a backslash escapes. */
		bool prefix = i > 0 && memchr("EeXxBbNn", s[i - 1], 8) && (i == 1 || !msg_alnum(s[i - 2]));
		bool backslash = prefix && (s[i - 1] == 'E' || s[i - 1] == 'e');

		if (i > 0 && msg_alnum(s[i - 1]) && !prefix)
			return false;
		if (prefix)
			v->start = i - 1;
		for (j = i + 1; j < n; j++) {
			if (s[j] == '\\' && backslash) {
				j++;
			} else if (s[j] == '\'') {
				if (j + 1 < n && s[j + 1] == '\'') {
					j++;
				} else if (msg_ends_value(s, n, j + 1)) {
					v->end = j + 1;
					break;
				}
			}
		}
		return true;
	}
	if (c == '(' && i > 0 && s[i - 1] == '=') {
		/* DETAIL's "Key (id)=(42) already exists.": the values after
		 * "=", nested parentheses counted */
		unsigned depth = 1;

		if (i + 1 < n && s[i + 1] == ')')
			return false;   /* "=()" holds nothing */
		v->paren = true;
		for (j = i + 1; j < n; j++) {
			if (s[j] == '(') {
				depth++;
			} else if (s[j] == ')' && --depth == 0) {
				if (msg_ends_value(s, n, j + 1)) {
					v->end = j + 1;
					v->closed = true;
					break;
				}
				depth = 1;   /* "a)b": still inside */
			}
		}
		return i + 1 < n;
	}
	if (c == '0' && i + 2 < n && (s[i + 1] == 'x' || s[i + 1] == 'X') && msg_hex(s[i + 2]) &&
	    (i == 0 || !msg_alnum(s[i - 1]))) {
		/* bytes of a value in encoding errors: 0xc3 0x28 */
		for (j = i + 2; j < n && msg_alnum(s[j]); j++)
			;
		v->end = j;
		return true;
	}
	for (size_t m = 0; m < sizeof msg_marks / sizeof msg_marks[0]; m++) {
		size_t ol = msg_marks[m].open_len, cl = msg_marks[m].close_len;

		if (n - i < ol || memcmp(s + i, msg_marks[m].open, ol) != 0)
			continue;
		for (j = i + ol; j + cl <= n; j++) {
			if (memcmp(s + j, msg_marks[m].close, cl) == 0) {
				v->end = j + cl;
				break;
			}
		}
		return true;
	}
	return false;
}

size_t sql_sanitize_message(const char *msg, size_t len, char *out, size_t cap, bool *truncated)
{
	static const unsigned char qmark[] = "?", pmark[] = "(?)";
	struct sink k = { out, cap, 0, false };
	const unsigned char *s = (const unsigned char *)msg;
	size_t n = msg ? len : 0, prev = 0, i = 0;
	size_t dq = msg_count(s, 0, n, '"');   /* '"' in s[i..n) */
	struct msg_value v;

	if (!out || cap == 0) {
		if (truncated)
			*truncated = n > 0;
		return 0;
	}
	while (i < n) {
		if (!msg_value(s, n, i, dq, &v)) {
			i++;
			continue;
		}
		/* every replacement is no longer than what it replaces, so the
		 * output never outgrows the message */
		if (!put(&k, s + prev, v.start - prev) ||
		    !put(&k, v.paren ? pmark : qmark, v.paren ? (v.closed ? 3 : 2) : 1))
			goto done;
		dq -= msg_count(s, i, v.end, '"');
		prev = i = v.end;
	}
	put(&k, s + prev, n - prev);
done:
	out[k.len] = '\0';
	if (truncated)
		*truncated = k.full;
	return k.len;
}

/*
 * Whether text ends in a clean lexical state: outside any string, quoted
 * identifier, dollar quote or block comment, and on a whole UTF-8
 * character. Only then can a trailing comment (sqlcommenter) be appended
 * without changing what the server parses or how it reports an error.
 */
bool sql_is_complete(const char *text, size_t len)
{
	struct lexer lx = { (const unsigned char *)text, len, 0 };
	struct tok t;

	if (!text)
		return false;
	do {
		lex(&lx, &t);
		if (t.kind == T_BAD)
			return false;
	} while (t.kind != T_END);
	/* A cut multi-byte character at the end would swallow our newline. */
	size_t i = len, back = 0;
	while (i > 0 && back < 4 && ((unsigned char)text[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return back == 0;
	unsigned char lead = (unsigned char)text[i - 1];
	size_t need = lead < 0x80 ? 0 : (lead >> 5) == 6 ? 1 : (lead >> 4) == 14 ? 2 : (lead >> 3) == 30 ? 3 : 99;
	return back == need || (lead < 0x80 && back == 0);
}

/* --- summary cache --- */

/* 64-bit hash of a key, a word at a time (the last word overlapping the
 * one before): it picks the slot and rules out most mismatches before the
 * key is compared. */
static inline uint64_t cache_hash(const unsigned char *p, size_t n)
{
	const uint64_t k = 0x9e3779b97f4a7c15ull;
	uint64_t h = n * k, w;

	if (n >= 8) {
		const unsigned char *last = p + n - 8;

		for (; p < last; p += 8) {
			memcpy(&w, p, 8);
			h = (h ^ w) * k;
			h = (h << 29) | (h >> 35);
		}
		memcpy(&w, last, 8);
	} else {
		w = 0;
		for (size_t i = 0; i < n; i++)
			w = w << 8 | p[i];
	}
	h = (h ^ w) * k;
	return h ^ (h >> 31);
}

void sql_summary_view_of(const struct sql_summary *sum, struct sql_summary_view *out)
{
	out->summary = sum->summary;
	out->summary_len = sum->summary_len;
	out->operation = sum->operation;
	out->operation_len = sum->operation_len;
	out->collection = sum->collection;
	out->collection_len = sum->collection_len;
	out->procedure = sum->procedure;
	out->procedure_len = sum->procedure_len;
}

/* An entry is [key | summary | operation | collection | procedure] in the
 * arena, never wrapping around its end. Writes go on at head, so the
 * entry's bytes are intact as long as head hasn't gone a whole arena past
 * its start. */
static void slot_view(const struct sql_cache *c, const struct sql_cache_slot *sl, struct sql_summary_view *out)
{
	const char *p = c->arena + sl->pos % SQL_CACHE_ARENA + sl->key_len;

	out->summary = p;
	out->summary_len = sl->summary_len;
	p += sl->summary_len;
	out->operation = p;
	out->operation_len = sl->operation_len;
	p += sl->operation_len;
	out->collection = p;
	out->collection_len = sl->collection_len;
	p += sl->collection_len;
	out->procedure = p;
	out->procedure_len = sl->procedure_len;
}

/* Whether slot sl holds key. */
static inline bool slot_holds(const struct sql_cache *c, const struct sql_cache_slot *sl, const char *key,
			      size_t key_len)
{
	return sl->used && sl->key_len == key_len && c->head - sl->pos <= SQL_CACHE_ARENA &&
	       memcmp(c->arena + sl->pos % SQL_CACHE_ARENA, key, key_len) == 0;
}

void sql_cache_summary(struct sql_cache *c, const char *key, size_t key_len, const char *text, size_t len,
		       struct sql_summary *scratch, struct sql_summary_view *out)
{
	/* a connection often sends the same statement again and again */
	struct sql_cache_slot *sl = &c->slot[c->last % SQL_CACHE_SLOTS];

	if (slot_holds(c, sl, key, key_len)) {
		slot_view(c, sl, out);
		return;
	}
	uint64_t h = cache_hash((const unsigned char *)key, key_len);
	unsigned i = (unsigned)(h >> 58) & (SQL_CACHE_SLOTS - 1);

	sl = &c->slot[i];
	c->last = i;
	if (sl->hash == h && slot_holds(c, sl, key, key_len)) {
		slot_view(c, sl, out);
		return;
	}
	sql_summarize(text, len, scratch);
	sql_summary_view_of(scratch, out);
	size_t size = key_len + scratch->summary_len + scratch->operation_len + scratch->collection_len +
		      scratch->procedure_len;

	if (size > SQL_CACHE_ARENA / 4)
		return;  /* would push out too many others: made each time */
	size_t off = c->head % SQL_CACHE_ARENA;

	if (off + size > SQL_CACHE_ARENA)
		c->head += SQL_CACHE_ARENA - off;  /* entries don't wrap: start over at 0 */
	char *p = c->arena + c->head % SQL_CACHE_ARENA;

	sl->used = true;
	sl->hash = h;
	sl->pos = c->head;
	sl->key_len = (uint16_t)key_len;
	sl->summary_len = (uint8_t)scratch->summary_len;
	sl->operation_len = (uint8_t)scratch->operation_len;
	sl->collection_len = (uint8_t)scratch->collection_len;
	sl->procedure_len = (uint8_t)scratch->procedure_len;
	memcpy(p, key, key_len);
	p += key_len;
	memcpy(p, scratch->summary, scratch->summary_len);
	p += scratch->summary_len;
	memcpy(p, scratch->operation, scratch->operation_len);
	p += scratch->operation_len;
	memcpy(p, scratch->collection, scratch->collection_len);
	p += scratch->collection_len;
	memcpy(p, scratch->procedure, scratch->procedure_len);
	c->head += size;
}
