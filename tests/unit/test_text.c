/* SPDX-License-Identifier: BSD-2-Clause */
/* test_text.c: the request path's text builder (text.c) writes what snprintf would, and never overruns. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/text.h"
#include "tap.h"

static void test_integers(void)
{
	const int64_t values[] = {0, 1, 9, 10, 42, -1, -10, 1234567890123LL, INT64_MAX, INT64_MIN};
	int same = 0, count = (int)(sizeof(values) / sizeof(values[0]));

	for (int i = 0; i < count; i++) {
		char got[21], want[32];
		int n = text_format_i64(values[i], got);

		snprintf(want, sizeof(want), "%" PRId64, values[i]);
		same += n == (int)strlen(want) && strcmp(got, want) == 0;
		if (strcmp(got, want) != 0)
			diag("%s written as %s", want, got);
	}
	is_int(same, count,
	       "text_format_i64 writes what %%" PRId64 " does, INT64_MIN and INT64_MAX included");
}

static void test_append(void)
{
	char buf[64];
	text_t t;

	text_init(&t, buf, sizeof(buf));
	text_str(&t, "p:{");
	text_i64(&t, 7);
	text_mem(&t, "}:user:xyz", 7);
	text_i64(&t, 42);
	is_str(buf, "p:{7}:user:42", "strings, a length-bounded copy and integers, in order");
	is_int(text_end(&t), 13, "text_end: the length written");
}

/* A builder that ran out of room says so, and what it left is a terminated prefix within the buffer. */
static void test_cut(void)
{
	char buf[8 + 4];
	text_t t;

	memset(buf, '#', sizeof(buf));
	text_init(&t, buf, 8);
	text_str(&t, "abcd");
	text_i64(&t, 123);
	is_int(text_end(&t), 7, "7 bytes and the NUL fill a buffer of 8");
	text_str(&t, "x");
	is_int(text_end(&t), -1, "one byte more: -1");
	ok(strcmp(buf, "abcd123") == 0 && memcmp(buf + 8, "####", 4) == 0,
	   "the buffer holds a terminated prefix and nothing was written past it");
	text_i64(&t, 5);
	is_int(text_end(&t), -1, "a cut text stays cut");
	text_init(&t, buf, 0);
	is_int(text_end(&t), -1, "a buffer of 0 bytes: -1, nothing written");
}

int main(void)
{
	plan(8);
	test_integers();
	test_append();
	test_cut();
	return done_testing();
}
