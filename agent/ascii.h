/* Locale-free ASCII helpers shared by the parsers: case folding and hex digits. */
#ifndef TRACEAGENT_ASCII_H
#define TRACEAGENT_ASCII_H

/* ASCII only: tolower() follows the locale, and the app may have set an odd one. */
static inline char ascii_lower(char c)
{
	return (unsigned char)(c - 'A') < 26u ? (char)(c + 32) : c;
}

/* The value of a hex digit of either case, or -1. */
static inline int ascii_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = ascii_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

#endif
