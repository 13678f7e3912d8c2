/* SPDX-License-Identifier: BSD-2-Clause */
/* text.c: appending strings and integers to a fixed buffer, without printf's cost on the request path. */
#include "core/text.h"

#include <string.h>

void text_init(text_t *t, char *buf, size_t size)
{
	t->buf = buf;
	t->size = size;
	t->len = 0;
	t->cut = size == 0;
	if (size > 0)
		buf[0] = '\0';
}

void text_mem(text_t *t, const char *s, size_t len)
{
	size_t room;

	if (t->cut)
		return;
	room = t->size - 1 - t->len;
	if (len > room) {
		len = room;
		t->cut = 1;
	}
	memcpy(t->buf + t->len, s, len);
	t->len += len;
	t->buf[t->len] = '\0';
}

void text_str(text_t *t, const char *s)
{
	text_mem(t, s, strlen(s));
}

int text_format_i64(int64_t v, char buf[21])
{
	/* Through the unsigned magnitude: -INT64_MIN does not exist as an int64_t. */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	char tmp[20];
	int n = 0, len = 0;

	do
		tmp[n++] = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		buf[len++] = '-';
	while (n > 0)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

void text_i64(text_t *t, int64_t v)
{
	char digits[21];

	text_mem(t, digits, (size_t)text_format_i64(v, digits));
}

int text_end(const text_t *t)
{
	return t->cut ? -1 : (int)t->len;
}
