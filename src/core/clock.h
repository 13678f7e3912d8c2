/* SPDX-License-Identifier: BSD-2-Clause */
/* clock.h: monotonic and wall-clock time in milliseconds, and ISO-8601 stamps. */
#ifndef COUPONSD_CLOCK_H
#define COUPONSD_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);
int64_t clock_real_ms(void);

/* A duration in ms as the struct timeval that libevent and hiredis take. */
struct timeval clock_timeval(int64_t ms);

/* Writes "2026-01-01T00:00:00.000Z" for a wall-clock time in ms; buf needs 25 bytes. */
void clock_format_iso(int64_t real_ms, char *buf, size_t size);
/* The HTTP Date of that second ("Sun, 06 Nov 1994 08:49:37 GMT"), cached per second; NULL if it cannot be
 * written. Valid until the next call from the same thread. */
const char *clock_http_date(int64_t real_ms);

#endif
