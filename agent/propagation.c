/* W3C Trace Context Level 2 (traceparent, tracestate) and W3C Baggage: pure parse/format functions over (pointer, length). */
#include "propagation.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/*
 * Everything here reads only s[0..len) (header values are not NUL-terminated),
 * writes only into the caller's structures, and keeps no state between calls:
 * the agent calls these from inside hooks on arbitrary threads.
 */

/* --- shared helpers --- */

/* OWS from RFC 7230 section 3.2.3, used by both specifications: SP / HTAB. */
static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim_ows(const char **s, size_t *len)
{
	const char *p = *s;
	size_t n = *len;

	while (n && is_ows(p[0])) {
		p++;
		n--;
	}
	while (n && is_ows(p[n - 1]))
		n--;
	*s = p;
	*len = n;
}

/* HEXDIGLC: W3C Trace Context accepts lower-case hex only, so "0A" is invalid. */
/* Lower-case hex digits only (W3C forbids upper case): their value plus one;
 * 0 for anything else. */
static const uint8_t lchex1[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Decodes n (even) lower-case hex characters into n / 2 bytes (ids are
 * decoded for every received header and delivery report: a table lookup
 * per character, one check at the end). */
static bool decode_lchex(const char *s, size_t n, uint8_t *out)
{
	bool bad = false;
	size_t i = 0;
#ifdef __SSE2__
	/* Sixteen characters at a time: the ids (32 and 16 characters). Bytes
	 * >= 0x80 are negative to the signed compares, so they fail both ranges. */
	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const void *)(s + i));
		__m128i dig = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
					    _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), v));
		__m128i alp = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('a' - 1)),
					    _mm_cmpgt_epi8(_mm_set1_epi8('f' + 1), v));
		bad |= _mm_movemask_epi8(_mm_or_si128(dig, alp)) != 0xffff;
		/* '0'..'9' & 15 is 0..9, 'a'..'f' & 15 is 1..6: letters get 9 more */
		__m128i val = _mm_add_epi8(_mm_and_si128(v, _mm_set1_epi8(0x0f)), _mm_and_si128(alp, _mm_set1_epi8(9)));
		/* each 16-bit lane holds (first digit, second digit): first << 4 | second */
		__m128i pair = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(val, _mm_set1_epi16(0x00ff)), 4),
					    _mm_srli_epi16(val, 8));
		_mm_storel_epi64((void *)(out + i / 2), _mm_packus_epi16(pair, pair));
	}
#endif
	for (; i < n; i += 2) {
		uint8_t hi = lchex1[(unsigned char)s[i]], lo = lchex1[(unsigned char)s[i + 1]];
		bad |= !hi | !lo;
		out[i / 2] = (uint8_t)((hi - 1) << 4 | ((lo - 1) & 0x0f));
	}
	return !bad;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* --- traceparent --- */

/* Offsets inside a version-00 traceparent: "vv-" trace "-" parent "-" flags. */
#define TP_TRACE_OFF   3
#define TP_TRACE_HEX   32
#define TP_PARENT_OFF  36
#define TP_PARENT_HEX  16
#define TP_FLAGS_OFF   53

bool propagation_parse_traceparent(const char *s, size_t len, struct trace_context *out)
{
	uint8_t version, flags, trace_id[16], span_id[8];

	/* Failure leaves a well-defined "no context" rather than half-parsed
	 * ids; success also starts from zero lengths, as the header promises. */
	context_clear(out);
	if (!s)
		return false;
	trim_ows(&s, &len);

	/* Shorter than 55 is invalid for every version ("should not parse the
	 * header"), so the fixed offsets below stay inside [0, len). */
	if (len < TRACEPARENT_LEN)
		return false;
	if (!decode_lchex(s, 2, &version) || s[2] != '-')
		return false;
	if (version == 0xff)
		return false;
	if (version == 0x00) {
		/* Version 00 is exactly 55 characters: "00-...-01." and
		 * "00-...-01-extra" are both invalid. */
		if (len != TRACEPARENT_LEN)
			return false;
	} else if (len != TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-') {
		/* A higher version is additive: the flags must be at the end
		 * or followed by '-' (so "cc-...-01.x" is invalid). */
		return false;
	}
	if (s[TP_PARENT_OFF - 1] != '-' || s[TP_FLAGS_OFF - 1] != '-')
		return false;
	if (!decode_lchex(s + TP_TRACE_OFF, TP_TRACE_HEX, trace_id) ||
	    !decode_lchex(s + TP_PARENT_OFF, TP_PARENT_HEX, span_id) ||
	    !decode_lchex(s + TP_FLAGS_OFF, 2, &flags))
		return false;
	if (all_zero(trace_id, sizeof trace_id) || all_zero(span_id, sizeof span_id))
		return false;

	/* For a higher version the spec only tells us how to read the sampled
	 * bit ("Parse the sampled bit of flags") and forbids assuming anything
	 * else about it; dropping the random bit is always safe, asserting it
	 * when we cannot know its meaning is not. Version 00 keeps the byte as
	 * sent (sampled 0x01, random 0x02 and anything reserved): the formatter
	 * zeroes the reserved bits on the way out. */
	if (version != 0x00)
		flags &= TRACE_FLAG_SAMPLED;

	memcpy(out->trace_id, trace_id, sizeof trace_id);
	memcpy(out->span_id, span_id, sizeof span_id);
	out->flags = flags;
	out->valid = true;
	out->remote = true;
	return true;
}

bool propagation_traceparent_span_id(const char *s, size_t len, uint8_t span_id[8])
{
	return s && len == TRACEPARENT_LEN && s[2] == '-' && s[TP_PARENT_OFF - 1] == '-' &&
	       s[TP_FLAGS_OFF - 1] == '-' && decode_lchex(s + TP_PARENT_OFF, TP_PARENT_HEX, span_id);
}

/* Two hex digits per byte from one table load: a traceparent is formatted
 * for every produced message and outgoing request. */
#define HEX_ROW(h) h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
static const char hex_pairs[] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3") HEX_ROW("4") HEX_ROW("5")
	HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b") HEX_ROW("c") HEX_ROW("d")
	HEX_ROW("e") HEX_ROW("f");

static char *put_hex(char *p, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memcpy(p, hex_pairs + 2 * b[i], 2);
		p += 2;
	}
	return p;
}

#ifdef __SSE2__
/* Lower-case hex of 8 bytes (the low half of v) into p[0..16): each nibble
 * to '0'-'9' or 'a'-'f' sixteen at a time. */
static inline __m128i hex_digits(__m128i nib)
{
	__m128i letter = _mm_and_si128(_mm_cmpgt_epi8(nib, _mm_set1_epi8(9)), _mm_set1_epi8('a' - '0' - 10));
	return _mm_add_epi8(nib, _mm_add_epi8(_mm_set1_epi8('0'), letter));
}

static char *put_hex_sse(char *p, const uint8_t *b, size_t n)
{
	__m128i v = n == 16 ? _mm_loadu_si128((const void *)b) : _mm_loadl_epi64((const void *)b);
	__m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0f));
	__m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0f));
	_mm_storeu_si128((void *)p, hex_digits(_mm_unpacklo_epi8(hi, lo)));
	if (n == 16)
		_mm_storeu_si128((void *)(p + 16), hex_digits(_mm_unpackhi_epi8(hi, lo)));
	return p + 2 * n;
}
#define PUT_ID_HEX put_hex_sse
#else
#define PUT_ID_HEX put_hex
#endif

size_t propagation_format_traceparent(const struct trace_context *ctx, char *out)
{
	/* We always send the highest version we know (00, the "downgrade"
	 * mutation), and "Vendors MUST set [other flags] to zero": only the
	 * sampled and random bits defined by Level 2 leave the process. */
	uint8_t flags = ctx->flags & (TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM);
	char *p = out;

	*p++ = '0';
	*p++ = '0';
	*p++ = '-';
	p = PUT_ID_HEX(p, ctx->trace_id, sizeof ctx->trace_id);
	*p++ = '-';
	p = PUT_ID_HEX(p, ctx->span_id, sizeof ctx->span_id);
	*p++ = '-';
	p = put_hex(p, &flags, 1);
	*p = '\0';
	return TRACEPARENT_LEN;
}

/* --- tracestate --- */

#define TS_MAX_MEMBERS   32
#define TS_MAX_VALUE     256
#define TS_MAX_KEY       256   /* (lcalpha / DIGIT) 0*255(keychar) */
#define TS_LONG_MEMBER   128   /* "Entries larger than 128 characters long SHOULD be removed first" */

/*
 * The scratch buffer holds the normalised members ("k=v,k=v") before
 * truncation. Its tail keeps a 64-bit hash of the key of every member that
 * had to be evicted because even scratch was full, so a later repeat of an
 * evicted key is still recognised as a repeat (and dropped). At most
 * TS_MAX_MEMBERS members exist, so the table has a fixed size.
 */
#define TS_HASH_BYTES    (TS_MAX_MEMBERS * sizeof(uint64_t))
#define TS_SCRATCH_CAP   (sizeof(((struct tracestate_parser *)0)->scratch) - TS_HASH_BYTES)

static bool is_lcalpha(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Level 2's key grammar, which replaced Level 1's simple-key /
 * tenant-id "@" system-id split (so "foo@", "foo@@bar", "1foo" and a
 * 256-character key with an '@' anywhere after the first character are
 * all keys now):
 *   key     = ( lcalpha / DIGIT ) 0*255( keychar )
 *   keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"
 */
static bool ts_valid_key(const char *k, size_t n)
{
	if (n == 0 || n > TS_MAX_KEY || !(is_lcalpha(k[0]) || is_digit(k[0])))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = k[i];

		if (!(is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/' || c == '@'))
			return false;
	}
	return true;
}

/*
 * value    = 0*255(chr) nblk-chr
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
 * chr      = %x20 / nblk-chr
 * Leading spaces belong to the value; trailing ones were trimmed as OWS.
 */
static bool ts_valid_value(const char *v, size_t n)
{
	if (n == 0 || n > TS_MAX_VALUE)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return false;
	}
	return v[n - 1] != ' ';
}

/* FNV-1a: only used to remember keys of members evicted from scratch. */
static uint64_t ts_key_hash(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Iterates "m1,m2,..." in buf[0..len): the next member starts at *pos. Commas
 * never occur inside a stored member (neither grammar allows them). */
static bool list_next(const char *buf, size_t len, size_t *pos, size_t *start, size_t *mlen)
{
	if (*pos >= len)
		return false;
	const char *comma = memchr(buf + *pos, ',', len - *pos);
	size_t end = comma ? (size_t)(comma - buf) : len;

	*start = *pos;
	*mlen = end - *pos;
	*pos = end + 1;
	return true;
}

static unsigned list_count(const char *buf, size_t len)
{
	unsigned n = 0;
	size_t pos = 0, start, mlen;

	while (list_next(buf, len, &pos, &start, &mlen))
		n++;
	return n;
}

/* Removes the member at [start, start + mlen) and its separating comma. */
static size_t list_remove(char *buf, size_t len, size_t start, size_t mlen)
{
	size_t from = start, to = start + mlen;

	if (to < len)
		to++;           /* "m," : take the following comma */
	else if (from > 0)
		from--;         /* last member: take the preceding comma */
	memmove(buf + from, buf + to, len - to);
	return len - (to - from);
}

/* Removes the rightmost member longer than TS_LONG_MEMBER and, when hash is
 * not NULL, returns the hash of its key; false if there is none. */
static bool ts_remove_rightmost_long(struct tracestate_parser *p, uint64_t *hash)
{
	size_t pos = 0, start, mlen, best_start = 0, best_len = 0;
	bool found = false;

	while (list_next(p->scratch, p->scratch_len, &pos, &start, &mlen)) {
		if (mlen > TS_LONG_MEMBER) {
			found = true;
			best_start = start;
			best_len = mlen;
		}
	}
	if (!found)
		return false;
	if (hash) {
		const char *m = p->scratch + best_start;
		const char *eq = memchr(m, '=', best_len);

		*hash = ts_key_hash(m, (size_t)(eq - m));
	}
	p->scratch_len = list_remove(p->scratch, p->scratch_len, best_start, best_len);
	return true;
}

static void ts_remove_last(struct tracestate_parser *p)
{
	size_t pos = 0, start = 0, mlen = 0, s, n;

	while (list_next(p->scratch, p->scratch_len, &pos, &s, &n)) {
		start = s;
		mlen = n;
	}
	p->scratch_len = list_remove(p->scratch, p->scratch_len, start, mlen);
}

/* Records the key hash of a member that is not (or no longer) in scratch. */
static void ts_remember_evicted(struct tracestate_parser *p, uint64_t hash)
{
	/* every member is evicted at most once and there are at most
	 * TS_MAX_MEMBERS, so the table never fills; the test is defence only */
	if (p->evicted < TS_MAX_MEMBERS)
		memcpy(p->scratch + TS_SCRATCH_CAP + p->evicted++ * sizeof hash, &hash, sizeof hash);
}

/* Whether key k was already seen in this list, kept in scratch or evicted. */
static bool ts_is_repeat(const struct tracestate_parser *p, const char *k, size_t klen)
{
	size_t pos = 0, start, mlen;

	while (list_next(p->scratch, p->scratch_len, &pos, &start, &mlen)) {
		const char *m = p->scratch + start;
		const char *eq = memchr(m, '=', mlen);

		if ((size_t)(eq - m) == klen && memcmp(m, k, klen) == 0)
			return true;
	}
	if (p->evicted) {
		uint64_t h = ts_key_hash(k, klen), e;

		for (unsigned i = 0; i < p->evicted; i++) {
			memcpy(&e, p->scratch + TS_SCRATCH_CAP + i * sizeof e, sizeof e);
			if (e == h)
				return true;
		}
	}
	return false;
}

/*
 * Appends one valid member to scratch. If scratch is full the combined list
 * is already far beyond TRACESTATE_MAX (scratch holds > 3.3 KB), so the final
 * truncation is certain to drop something, and we evict exactly what it would
 * drop first: the rightmost member longer than 128 characters (which may be
 * the new one), else the new member itself (all of scratch is short members,
 * and truncation from the right reaches the newcomer long before anything
 * in scratch). The final result is therefore the same as with an unbounded
 * scratch buffer.
 */
static void ts_append(struct tracestate_parser *p, const char *k, size_t klen, const char *v, size_t vlen)
{
	size_t mlen = klen + 1 + vlen;
	uint64_t hash;

	for (;;) {
		size_t need = mlen + (p->scratch_len ? 1 : 0);

		if (p->scratch_len + need <= TS_SCRATCH_CAP)
			break;
		p->overflow = true;
		if (mlen > TS_LONG_MEMBER || !ts_remove_rightmost_long(p, &hash)) {
			ts_remember_evicted(p, ts_key_hash(k, klen));
			return;
		}
		ts_remember_evicted(p, hash);
	}

	char *d = p->scratch + p->scratch_len;
	if (p->scratch_len)
		*d++ = ',';
	memcpy(d, k, klen);
	d[klen] = '=';
	memcpy(d + klen + 1, v, vlen);
	p->scratch_len = (size_t)(d + mlen - p->scratch);
}

void propagation_tracestate_begin(struct tracestate_parser *p, struct trace_context *ctx)
{
	p->ctx = ctx;
	p->members = 0;
	p->repeats = 0;
	p->evicted = 0;
	p->invalid = false;
	p->overflow = false;
	p->scratch_len = 0;

	/* Lengths out of range mean a corrupted context: start from nothing
	 * rather than trusting them with memmove. */
	if (ctx->tracestate_len > TRACESTATE_MAX || ctx->baggage_len > BAGGAGE_MAX) {
		ctx->tracestate_len = 0;
		ctx->baggage_len = 0;
	}
	/* The header asks for baggage to be extracted after tracestate; if a
	 * caller did it the other way round, keep its baggage rather than let
	 * the new tracestate overwrite it (end moves it back behind). */
	if (ctx->tracestate_len) {
		memmove(ctx->buf, ctx->buf + ctx->tracestate_len, ctx->baggage_len);
		ctx->tracestate_len = 0;
	}
}

void propagation_tracestate_add(struct tracestate_parser *p, const char *s, size_t len)
{
	if (p->invalid || !s)
		return;

	/* Several headers combine as if joined with ',' (RFC 7230 3.2.2), and
	 * no member may contain ',', so each value is split on its own. */
	size_t pos = 0;
	while (pos <= len) {
		const char *comma = memchr(s + pos, ',', len - pos);
		size_t end = comma ? (size_t)(comma - s) : len;
		const char *m = s + pos;
		size_t n = end - pos;

		pos = end + 1;
		trim_ows(&m, &n);
		if (n == 0) {
			/* "Empty and whitespace-only list members are allowed";
			 * they do not count towards the 32. */
			if (!comma)
				break;
			continue;
		}

		const char *eq = memchr(m, '=', n);
		if (!eq) {
			p->invalid = true;
			return;
		}
		size_t klen = (size_t)(eq - m);
		const char *v = eq + 1;
		size_t vlen = n - klen - 1;

		/* The whole header is discarded on any invalid member and on
		 * the 33rd member (the list grammar allows 32, repeats
		 * included), as W3C's test suite expects. */
		if (!ts_valid_key(m, klen) || !ts_valid_value(v, vlen) || p->members == TS_MAX_MEMBERS) {
			p->invalid = true;
			return;
		}
		p->members++;
		/* A repeated key is not a reason to drop the header: Level 2
		 * lets a vendor "discard duplicate keys that were not
		 * generated by them". We keep the first (leftmost) entry,
		 * which the mutation rules make the most recent one, and drop
		 * the repeats, so that a downstream parser that rejects a
		 * list with repeats (as Level 1 allowed) still gets one. */
		if (ts_is_repeat(p, m, klen)) {
			p->repeats++;
		} else {
			ts_append(p, m, klen, v, vlen);
		}
		if (!comma)
			break;
	}
}

bool propagation_tracestate_end(struct tracestate_parser *p)
{
	struct trace_context *ctx = p->ctx;

	if (p->invalid) {
		ctx->tracestate_len = 0;
		return false;
	}

	/* "the vendor MUST truncate whole entries. Entries larger than 128
	 * characters long SHOULD be removed first. Then entries SHOULD be
	 * removed starting from the end." We remove long entries one at a
	 * time from the right and stop as soon as the list fits, so no more
	 * is lost than needed. */
	while (p->scratch_len > TRACESTATE_MAX && ts_remove_rightmost_long(p, NULL))
		p->overflow = true;
	while (p->scratch_len > TRACESTATE_MAX) {
		ts_remove_last(p);
		p->overflow = true;
	}

	memmove(ctx->buf + p->scratch_len, ctx->buf, ctx->baggage_len);
	memcpy(ctx->buf, p->scratch, p->scratch_len);
	ctx->tracestate_len = (uint16_t)p->scratch_len;
	return true;
}

/* --- baggage --- */

#define BG_MAX_MEMBERS 64   /* W3C: propagate at least 64 list-members */

/* token = 1*tchar (RFC 7230 section 3.2.6) */
static bool bg_tchar(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static bool bg_octet(char ch)
{
	unsigned char c = (unsigned char)ch;

	return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
	       (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static bool is_hexdig(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static size_t skip_ows(const char *s, size_t n, size_t i)
{
	while (i < n && is_ows(s[i]))
		i++;
	return i;
}

static size_t scan_token(const char *s, size_t n, size_t i)
{
	while (i < n && bg_tchar(s[i]))
		i++;
	return i;
}

/* value = *baggage-octet, where '%' itself "MUST be percent-encoded", so a
 * '%' has to start a %XX escape. Returns the end index, or (size_t)-1. */
static size_t scan_value(const char *s, size_t n, size_t i)
{
	while (i < n && bg_octet(s[i])) {
		if (s[i] == '%') {
			if (n - i < 3 || !is_hexdig(s[i + 1]) || !is_hexdig(s[i + 2]))
				return (size_t)-1;
			i += 3;
		} else {
			i++;
		}
	}
	return i;
}

static size_t put(char *dst, size_t at, const char *src, size_t n)
{
	if (dst)
		memcpy(dst + at, src, n);
	return at + n;
}

/*
 * Parses one list-member, s[0..n) without the surrounding commas:
 *   list-member = key OWS "=" OWS value *( OWS ";" OWS property )
 *   property    = key OWS "=" OWS value / key OWS
 * and returns the length of its normalised form (OWS removed), writing it to
 * dst when dst is not NULL; 0 when the member does not parse (the shortest
 * valid member, "k=", is 2 long). Measuring first lets the caller drop a
 * member whole instead of storing part of it.
 */
static size_t bg_member(const char *s, size_t n, char *dst)
{
	size_t i = skip_ows(s, n, 0), k0 = i, o = 0;

	i = scan_token(s, n, i);
	if (i == k0)
		return 0;
	o = put(dst, o, s + k0, i - k0);
	i = skip_ows(s, n, i);
	if (i == n || s[i] != '=')
		return 0;
	o = put(dst, o, "=", 1);
	i = skip_ows(s, n, i + 1);
	size_t v0 = i;
	i = scan_value(s, n, i);
	if (i == (size_t)-1)
		return 0;
	o = put(dst, o, s + v0, i - v0);
	i = skip_ows(s, n, i);

	while (i < n) {
		if (s[i] != ';')
			return 0;
		i = skip_ows(s, n, i + 1);
		size_t p0 = i;
		i = scan_token(s, n, i);
		if (i == p0)
			return 0;
		o = put(dst, o, ";", 1);
		o = put(dst, o, s + p0, i - p0);
		i = skip_ows(s, n, i);
		if (i < n && s[i] == '=') {
			i = skip_ows(s, n, i + 1);
			size_t pv = i;
			i = scan_value(s, n, i);
			if (i == (size_t)-1)
				return 0;
			o = put(dst, o, "=", 1);
			o = put(dst, o, s + pv, i - pv);
			i = skip_ows(s, n, i);
		}
	}
	return o;
}

/*
 * W3C Baggage does not say that one bad list-member voids the header; it says
 * a system "MAY remove that entry before propagating". So each member stands
 * on its own: a member that does not parse is dropped and the others are kept
 * (a value that parses nowhere therefore contributes nothing). Members are
 * kept in order, duplicates included ("Uniqueness of keys ... is not
 * guaranteed"). Limits apply to all baggage headers combined: at most 64
 * members, and BAGGAGE_MAX bytes (below W3C's 8192, see context.h). The first
 * member of a value that would break either limit ends that value: whole
 * members are dropped from the end, never a partial member. A later call may
 * still append members that fit, since no state survives between calls.
 */
bool propagation_baggage_add(struct trace_context *ctx, const char *s, size_t len)
{
	if (!s || ctx->tracestate_len > TRACESTATE_MAX || ctx->baggage_len > BAGGAGE_MAX)
		return false;

	char *base = ctx->buf + ctx->tracestate_len;
	size_t used = ctx->baggage_len;
	unsigned count = list_count(base, used);
	bool stored = false;
	size_t pos = 0;

	while (pos <= len) {
		const char *comma = memchr(s + pos, ',', len - pos);
		size_t end = comma ? (size_t)(comma - s) : len;
		const char *m = s + pos;
		size_t n = end - pos;

		pos = end + 1;
		size_t mlen = bg_member(m, n, NULL);
		if (mlen) {
			size_t need = mlen + (used ? 1 : 0);

			if (count == BG_MAX_MEMBERS || used + need > BAGGAGE_MAX)
				break;
			if (used)
				base[used++] = ',';
			bg_member(m, n, base + used);
			used += mlen;
			count++;
			stored = true;
		}
		if (!comma)
			break;
	}
	ctx->baggage_len = (uint16_t)used;
	return stored;
}
