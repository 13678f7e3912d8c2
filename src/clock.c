/* clock.c: monotonic and wall-clock time in milliseconds, and ISO-8601 stamps. */
#include "clock.h"

#include <stdio.h>
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

void clock_format_iso(int64_t real_ms, char *buf, size_t size)
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
