/* SPDX-License-Identifier: BSD-2-Clause */
/* clock.c: monotonic and wall-clock time in milliseconds, and ISO-8601 stamps. */
#include "core/clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t read_clock_us(clockid_t id)
{
	struct timespec ts;

	/* clock_gettime on these two clocks cannot fail on Linux; a zero keeps callers sane if it does. */
	if (clock_gettime(id, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_mono_us(void)
{
	return read_clock_us(CLOCK_MONOTONIC);
}

int64_t clock_mono_ms(void)
{
	return read_clock_us(CLOCK_MONOTONIC) / 1000;
}

int64_t clock_real_ms(void)
{
	return read_clock_us(CLOCK_REALTIME) / 1000;
}

struct timeval clock_timeval(int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	return tv;
}

/* The old way, kept for what the cache does not cover: times before 1970, small buffers, gmtime failures. */
static void format_slow(int64_t real_ms, char *buf, size_t size)
{
	time_t secs = (time_t)(real_ms / 1000);
	struct tm tm;

	if (gmtime_r(&secs, &tm) == NULL) {
		snprintf(buf, size, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(real_ms % 1000));
}

/*
 * A worker formats the same few seconds again and again (every status, event
 * and log line), and gmtime_r + snprintf cost far more than the milliseconds,
 * so the "YYYY-MM-DDTHH:MM:SS" of recent seconds is kept. Four slots, chosen
 * by the second's low bits: a consumer writes a request's acceptedAt and its
 * decidedAt, usually a second or two apart, and one slot would thrash between
 * them. Per thread (_Thread_local): log lines are also written from
 * librdkafka's threads, and a shared cache would need a lock or could be read
 * half written.
 */
#define ISO_CACHE_SLOTS 4

typedef struct {
	int64_t secs; /* -1: empty */
	size_t len;
	char text[32];
} iso_second_t;

static _Thread_local iso_second_t iso_cache[ISO_CACHE_SLOTS] = {
    {-1, 0, ""}, {-1, 0, ""}, {-1, 0, ""}, {-1, 0, ""}};

static const iso_second_t *cached_second(int64_t secs)
{
	iso_second_t *slot = &iso_cache[secs % ISO_CACHE_SLOTS];
	time_t t = (time_t)secs;
	struct tm tm;
	int n;

	if (slot->secs == secs)
		return slot;
	slot->secs = -1; /* nothing valid until the text is whole again */
	if (gmtime_r(&t, &tm) == NULL)
		return NULL;
	n = snprintf(slot->text, sizeof(slot->text), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
	             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= sizeof(slot->text))
		return NULL;
	slot->secs = secs;
	slot->len = (size_t)n;
	return slot;
}

void clock_format_iso(int64_t real_ms, char *buf, size_t size)
{
	int ms = (int)(real_ms % 1000);
	const iso_second_t *second = real_ms < 0 ? NULL : cached_second(real_ms / 1000);

	if (second == NULL || size < second->len + 6) {
		format_slow(real_ms, buf, size);
		return;
	}
	memcpy(buf, second->text, second->len);
	buf += second->len;
	buf[0] = '.';
	buf[1] = (char)('0' + ms / 100);
	buf[2] = (char)('0' + ms / 10 % 10);
	buf[3] = (char)('0' + ms % 10);
	buf[4] = 'Z';
	buf[5] = '\0';
}

/*
 * libevent formats the Date of every answer itself (gmtime, then a printf),
 * about 3,500 instructions per answer; it skips that when the answer already
 * has one. Kept per second, per thread like the ISO cache.
 */
static _Thread_local struct {
	int64_t secs;
	char text[32];
} http_date_cache = {-1, ""};

const char *clock_http_date(int64_t real_ms)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	int64_t secs = real_ms / 1000;
	time_t t = (time_t)secs;
	struct tm tm;
	int n;

	if (http_date_cache.secs == secs)
		return http_date_cache.text;
	http_date_cache.secs = -1;
	if (real_ms < 0 || gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
	    tm.tm_mon > 11)
		return NULL;
	/* RFC 9110's IMF-fixdate, as libevent's evutil_date_rfc1123() writes it. */
	n = snprintf(http_date_cache.text, sizeof(http_date_cache.text), "%s, %02d %s %4d %02d:%02d:%02d GMT",
	             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	             tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= sizeof(http_date_cache.text))
		return NULL;
	http_date_cache.secs = secs;
	return http_date_cache.text;
}
