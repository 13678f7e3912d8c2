/* SPDX-License-Identifier: BSD-2-Clause */
/* test_keys.c: TAP unit tests of the Redis key builders (keys.c) and clock_timeval() (clock.c). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/keys.h"
#include "tap.h"

#define UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

/* Every key of one coupon carries the same {c} hash tag: one Redis Cluster slot, one Lua script. */
static void test_shapes(void)
{
	char buf[KEYS_MAX];

	ok(keys_stock("p:", 7, buf, sizeof(buf)) == (int)strlen("p:{7}:stock") &&
	       strcmp(buf, "p:{7}:stock") == 0,
	   "stock key: <prefix>{c}:stock");
	ok(keys_user("p:", 7, 42, buf, sizeof(buf)) > 0 && strcmp(buf, "p:{7}:user:42") == 0,
	   "claim key: <prefix>{c}:user:<u>");
	ok(keys_inflight("p:", 7, buf, sizeof(buf)) > 0 && strcmp(buf, "p:{7}:inflight") == 0,
	   "in-flight key: <prefix>{c}:inflight (the claim script's and the gate's, same slot)");
	ok(keys_reservation("p:", 7, UUID, buf, sizeof(buf)) > 0 && strcmp(buf, "p:{7}:rsv:" UUID) == 0,
	   "reservation key: <prefix>{c}:rsv:<requestId>");
	ok(keys_status("p:", UUID, buf, sizeof(buf)) > 0 && strcmp(buf, "p:req:{" UUID "}") == 0,
	   "status key: tagged by the requestId alone");
	ok(keys_results_channel("p:", buf, sizeof(buf)) > 0 && strcmp(buf, "p:results") == 0,
	   "results channel");
	ok(keys_stock("", 9223372036854775807LL, buf, sizeof(buf)) > 0 &&
	       strcmp(buf, "{9223372036854775807}:stock") == 0,
	   "an empty prefix and the largest coupon id");
}

/* A key that does not fit is an error, never a truncated key that two users would share. */
static void test_truncation(void)
{
	char prefix[KEYS_PREFIX_MAX + 1], small[16], buf[KEYS_MAX];

	memset(prefix, 'x', KEYS_PREFIX_MAX);
	prefix[KEYS_PREFIX_MAX] = '\0';
	ok(keys_reservation(prefix, 9223372036854775807LL, UUID, buf, sizeof(buf)) > 0,
	   "the longest allowed prefix still fits the longest key in KEYS_MAX");
	ok(keys_user("p:", 7, 42, small, 8) == -1, "a buffer too small: -1");
	ok(keys_user("p:", 7, 4242424242LL, small, sizeof(small)) == -1,
	   "-1 rather than the first 15 bytes of a longer key");
}

static void test_timeval(void)
{
	struct timeval tv = clock_timeval(1500);

	ok(tv.tv_sec == 1 && tv.tv_usec == 500000, "clock_timeval(1500): 1 s 500000 us");
	tv = clock_timeval(0);
	ok(tv.tv_sec == 0 && tv.tv_usec == 0, "clock_timeval(0): zero");
	tv = clock_timeval(999);
	ok(tv.tv_sec == 0 && tv.tv_usec == 999000, "clock_timeval(999): under a second");
	tv = clock_timeval(86400000);
	ok(tv.tv_sec == 86400 && tv.tv_usec == 0, "clock_timeval: a day");
}

/* The Date the HTTP workers add themselves: what libevent would have written (RFC 9110 IMF-fixdate). */
static void test_http_date(void)
{
	const int64_t times[] = {784111777000LL, 0, 951782400999LL, 1767225599500LL, 4102444800000LL};
	int same = 0, count = (int)(sizeof(times) / sizeof(times[0]));

	for (int i = 0; i < count; i++) {
		time_t t = (time_t)(times[i] / 1000);
		struct tm tm;
		char want[64];
		const char *got = clock_http_date(times[i]);

		strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&t, &tm));
		same += got != NULL && strcmp(got, want) == 0;
		if (got == NULL || strcmp(got, want) != 0)
			diag("%lld: got %s, want %s", (long long)times[i], got != NULL ? got : "NULL", want);
	}
	is_int(same, count,
	       "clock_http_date writes strftime's \"%%a, %%d %%b %%Y %%H:%%M:%%S GMT\" (C locale)");
	is_str(clock_http_date(784111777000LL), "Sun, 06 Nov 1994 08:49:37 GMT", "RFC 9110's own example");
	is_str(clock_http_date(784111778999LL), "Sun, 06 Nov 1994 08:49:38 GMT",
	       "the next second, from the cache's slot");
	ok(clock_http_date(-1000) == NULL, "before 1970: NULL (libevent then writes its own)");
}

int main(void)
{
	plan(18);
	test_shapes();
	test_truncation();
	test_timeval();
	test_http_date();
	return done_testing();
}
