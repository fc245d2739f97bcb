/* A growable byte buffer for the exporter thread (never used on app threads). */
#ifndef TRACEAGENT_BUF_H
#define TRACEAGENT_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char *p;
	size_t len;
	size_t cap;
	bool oom;   /* set once an allocation failed; later appends are no-ops */
};

static inline bool buf_reserve(struct buf *b, size_t extra)
{
	if (b->oom)
		return false;
	if (b->len + extra <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static inline void buf_append(struct buf *b, const void *data, size_t n)
{
	if (buf_reserve(b, n)) {
		memcpy(b->p + b->len, data, n);
		b->len += n;
	}
}

static inline void buf_putc(struct buf *b, char c)
{
	if (buf_reserve(b, 1))
		b->p[b->len++] = c;
}

static inline void buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

static inline void buf_reset(struct buf *b)
{
	b->len = 0;
	b->oom = false;
}

static inline void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

#endif
