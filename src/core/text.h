/* SPDX-License-Identifier: BSD-2-Clause */
/* text.h: appending strings and integers to a fixed buffer, without printf's cost on the request path. */
#ifndef COUPONSD_TEXT_H
#define COUPONSD_TEXT_H

#include <stddef.h>
#include <stdint.h>

/*
 * snprintf costs about 1,000 instructions a call (format parsing, a FILE on
 * the stack); an accepted request made some twenty of them for its keys, its
 * event, its Redis arguments and its 202. These append the same text.
 * A text that did not fit is marked cut: text_end() then returns -1 and the
 * buffer holds a NUL-terminated prefix, never an overrun.
 */
typedef struct {
	char *buf;
	size_t size, len;
	int cut;
} text_t;

void text_init(text_t *t, char *buf, size_t size);
void text_str(text_t *t, const char *s);
void text_mem(text_t *t, const char *s, size_t len);
void text_i64(text_t *t, int64_t v);
/* The length written (without the NUL), or -1 if it was cut (or the buffer had no room at all). */
int text_end(const text_t *t);
/* v in decimal into buf (room for 21 bytes with the NUL); returns the length. */
int text_format_i64(int64_t v, char buf[21]);

#endif
