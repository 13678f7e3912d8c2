/* SPDX-License-Identifier: BSD-2-Clause */
/* tap.h: a tiny Test Anything Protocol helper for the C unit tests (one "ok N" line per assertion). */
#ifndef COUPONSD_TAP_H
#define COUPONSD_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* State of the one test program that includes this header. */
static int tap_planned = -1;
static int tap_run;
static int tap_failed;

static inline void plan(int n)
{
	tap_planned = n;
	printf("1..%d\n", n);
}

static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static inline int tap_result(int pass, const char *fmt, va_list ap)
{
	tap_run++;
	if (!pass)
		tap_failed++;
	printf("%sok %d - ", pass ? "" : "not ", tap_run);
	vprintf(fmt, ap);
	printf("\n");
	return pass;
}

static inline int ok(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int ok(int pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_result(pass, fmt, ap);
	va_end(ap);
	return pass;
}

static inline int is_int(long long got, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int is_int(long long got, long long want, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tap_result(got == want, fmt, ap);
	va_end(ap);
	if (got != want)
		diag("     got: %lld\n#     expected: %lld", got, want);
	return got == want;
}

/* NULL equals only NULL. */
static inline int is_str(const char *got, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int is_str(const char *got, const char *want, const char *fmt, ...)
{
	int pass = (got == NULL && want == NULL) || (got != NULL && want != NULL && strcmp(got, want) == 0);
	va_list ap;

	va_start(ap, fmt);
	tap_result(pass, fmt, ap);
	va_end(ap);
	if (!pass)
		diag("     got: '%s'\n#     expected: '%s'", got != NULL ? got : "(null)",
		     want != NULL ? want : "(null)");
	return pass;
}

/* Prints the plan when none was given up front; returns the exit status (1 when anything failed). */
static inline int done_testing(void)
{
	if (tap_planned < 0)
		printf("1..%d\n", tap_run);
	else if (tap_planned != tap_run)
		diag("planned %d tests but ran %d", tap_planned, tap_run);
	if (tap_failed > 0)
		diag("failed %d of %d tests", tap_failed, tap_run);
	fflush(stdout);
	return tap_failed > 0 || (tap_planned >= 0 && tap_planned != tap_run);
}

#endif
