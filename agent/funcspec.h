/* TRACEAGENT_FUNCTIONS: the spec list parser (PATTERN[@OBJECT][:OPTION...], comma separated), the glob over symbol names and the error rules. */
#ifndef TRACEAGENT_FUNCSPEC_H
#define TRACEAGENT_FUNCSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* error=: when a returned value makes the span Error (a business failure). */
enum funcspec_error {
	FUNCSPEC_ERROR_NONE = 0,
	FUNCSPEC_ERROR_NEG,       /* the int returned is < 0 */
	FUNCSPEC_ERROR_ZERO,      /* the int returned is 0 */
	FUNCSPEC_ERROR_NONZERO,   /* the int returned is not 0 */
	FUNCSPEC_ERROR_NULL,      /* the pointer returned is NULL */
};

#define FUNCSPEC_ARGS_MAX 6   /* the integer argument registers of the x86-64 SysV ABI */

/* One spec; pattern and object point into the parsed text (object_len 0: the main executable). */
struct funcspec {
	const char *pattern;
	size_t pattern_len;
	const char *object;
	size_t object_len;
	enum funcspec_error error;
	uint8_t args;
};

/*
 * The spec after *pos in s[0..len): 1 with *out filled, 0 at the end of the
 * list, -1 for an invalid spec, its text (trimmed) in *bad / *bad_len, so the
 * caller warns about it and goes on with the next. *pos moves past the spec
 * either way. Empty items (",,") are skipped.
 */
int funcspec_next(const char *s, size_t len, size_t *pos, struct funcspec *out, const char **bad, size_t *bad_len);

/* The glob: '*' any run of characters, '?' one; everything else literal. */
bool funcspec_glob(const char *pat, size_t plen, const char *name, size_t nlen);

/* Whether ret (rax as the function left it) is an error under rule: the
 * int rules read its low 32 bits, as a caller of an int function does. */
bool funcspec_is_error(enum funcspec_error rule, uint64_t ret);

#endif
