/* Protobuf wire-format primitives shared by the span encoder, its decoder and the request envelope. */
#ifndef TRACEAGENT_PB_H
#define TRACEAGENT_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Each field is a varint key (field number << 3 | wire type) and its value:
 * a varint (type 0), 8 bytes little-endian (1), a varint length and that many
 * bytes (2), or 4 bytes little-endian (5).
 */
enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

#define PB_KEY(field, wt) (((field) << 3) | (wt))

static inline size_t pb_varint_size(uint64_t v)
{
	/* ceil(significant bits / 7), without a loop */
	unsigned bits = 64u - (unsigned)__builtin_clzll(v | 1);
	return (bits + 6) / 7;
}

static inline char *pb_put_varint(char *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (char)(v | 0x80);
		v >>= 7;
	}
	*p++ = (char)v;
	return p;
}

static inline char *pb_put_key(char *p, unsigned field, unsigned wt)
{
	return pb_put_varint(p, PB_KEY(field, wt));
}

/* Key and length of a length-delimited field; the payload follows. */
static inline char *pb_put_len(char *p, unsigned field, size_t len)
{
	return pb_put_varint(pb_put_key(p, field, PB_LEN), len);
}

static inline char *pb_put_bytes(char *p, unsigned field, const void *data, size_t len)
{
	p = pb_put_len(p, field, len);
	memcpy(p, data, len);
	return p + len;
}

static inline char *pb_put_fixed64(char *p, unsigned field, uint64_t v)
{
	p = pb_put_key(p, field, PB_I64);
	memcpy(p, &v, 8);   /* x86-64 and aarch64 are little-endian, as the wire is */
	return p + 8;
}

static inline char *pb_put_fixed32(char *p, unsigned field, uint32_t v)
{
	p = pb_put_key(p, field, PB_I32);
	memcpy(p, &v, 4);
	return p + 4;
}

/* Bytes of a whole length-delimited field: key, length, payload. */
static inline size_t pb_len_field(unsigned field, size_t len)
{
	return pb_varint_size(PB_KEY(field, PB_LEN)) + pb_varint_size(len) + len;
}

/* --- reading --- */

static inline bool pb_get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		unsigned char b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* Skips one field's value of wire type wt; false when malformed. */
static inline bool pb_skip(const unsigned char **p, const unsigned char *end, unsigned wt)
{
	uint64_t v;
	switch (wt) {
	case PB_VARINT:
		return pb_get_varint(p, end, &v);
	case PB_I64:
		if ((size_t)(end - *p) < 8)
			return false;
		*p += 8;
		return true;
	case PB_LEN:
		if (!pb_get_varint(p, end, &v) || v > (uint64_t)(end - *p))
			return false;
		*p += v;
		return true;
	case PB_I32:
		if ((size_t)(end - *p) < 4)
			return false;
		*p += 4;
		return true;
	default:
		return false;   /* groups: never in OTLP */
	}
}

#endif
