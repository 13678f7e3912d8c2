/* SPDX-License-Identifier: BSD-2-Clause */
/* json_escape.h: arbitrary text written as the inside of a JSON string, for replies built without jansson. */
#ifndef COUPONSD_JSON_ESCAPE_H
#define COUPONSD_JSON_ESCAPE_H

#include <stddef.h>

/* Enough room for any n bytes of text, NUL included: one byte becomes at most six (\u00XX, \uFFFD). */
#define JSON_ESCAPE_SIZE(n) ((n)*6 + 1)

/*
 * Writes text into buf escaped as jansson's json_dumps() would (\" \\ \b \f
 * \n \r \t, other control characters as \u00XX), without the quotes, and
 * NUL-terminated. Valid UTF-8 passes through unchanged; each byte that is not
 * part of valid UTF-8 becomes \uFFFD, so the result is always valid JSON.
 * Returns the length written, or -1 (and an empty buf) when it does not fit.
 */
int json_escape(const char *text, char *buf, size_t size);

#endif
