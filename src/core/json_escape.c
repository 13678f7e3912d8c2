/* SPDX-License-Identifier: BSD-2-Clause */
/* json_escape.c: arbitrary text written as the inside of a JSON string, for replies built without jansson. */
#include "core/json_escape.h"

#include <string.h>

/* Bytes that may follow lead byte c in valid UTF-8 (RFC 3629: no overlong forms, no surrogates). */
static int second_byte_ok(unsigned char c, unsigned char next)
{
	if (c == 0xE0)
		return next >= 0xA0 && next <= 0xBF;
	if (c == 0xED)
		return next >= 0x80 && next <= 0x9F;
	if (c == 0xF0)
		return next >= 0x90 && next <= 0xBF;
	if (c == 0xF4)
		return next >= 0x80 && next <= 0x8F;
	return next >= 0x80 && next <= 0xBF;
}

/* Length of the valid UTF-8 sequence of two or more bytes at s, or 0 when s does not start one. */
static size_t utf8_sequence(const unsigned char *s)
{
	size_t n;

	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		n = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		n = 3;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		n = 4;
	else
		return 0;
	if (!second_byte_ok(s[0], s[1]))
		return 0;
	/* A NUL ends the scan here: it is not a continuation byte. */
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	}
	return n;
}

/* What an ASCII byte becomes: a two-character escape, a \u00XX one, or itself. */
static size_t escape_ascii(unsigned char c, char out[7])
{
	static const char hex[] = "0123456789ABCDEF";
	static const char shorts[] = "\"\"\\\\\bb\ff\nn\rr\tt";

	for (size_t i = 0; i < sizeof(shorts) - 1; i += 2) {
		if (c == (unsigned char)shorts[i]) {
			out[0] = '\\';
			out[1] = shorts[i + 1];
			return 2;
		}
	}
	if (c >= 0x20) {
		out[0] = (char)c;
		return 1;
	}
	memcpy(out, "\\u00", 4);
	out[4] = hex[c >> 4];
	out[5] = hex[c & 0xF];
	return 6;
}

int json_escape(const char *text, char *buf, size_t size)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t len = 0, n, used;
	char piece[7];

	while (*s != '\0') {
		const char *from = piece;

		used = 1;
		if (*s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\') {
			from = (const char *)s; /* the common case first: a byte that stands for itself */
			n = 1;
		} else if (*s < 0x80) {
			n = escape_ascii(*s, piece);
		} else if ((n = utf8_sequence(s)) != 0) {
			from = (const char *)s;
			used = n;
		} else {
			from = "\\uFFFD"; /* a stray byte: JSON parsers refuse invalid UTF-8 */
			n = 6;
		}
		if (len + n >= size) {
			if (size > 0)
				buf[0] = '\0';
			return -1;
		}
		memcpy(buf + len, from, n);
		len += n;
		s += used;
	}
	if (size == 0)
		return -1;
	buf[len] = '\0';
	return (int)len;
}
