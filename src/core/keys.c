/* SPDX-License-Identifier: BSD-2-Clause */
/* keys.c: every Redis key and channel name couponsd uses, in one place. */
#include "core/keys.h"

#include <stdio.h>

/* "{" + a 20-digit id + "}:rsv:" + a 36-character UUID, and the NUL. */
_Static_assert(KEYS_PREFIX_MAX + 1 + 20 + 6 + 36 + 1 <= KEYS_MAX,
               "KEYS_PREFIX_MAX leaves no room for the longest key");

static int fits(int n, size_t size)
{
	return n < 0 || (size_t)n >= size ? -1 : n;
}

int keys_stock(const char *prefix, int64_t coupon_id, char *buf, size_t size)
{
	return fits(snprintf(buf, size, "%s{%lld}:stock", prefix, (long long)coupon_id), size);
}

int keys_user(const char *prefix, int64_t coupon_id, int64_t user_id, char *buf, size_t size)
{
	return fits(
	    snprintf(buf, size, "%s{%lld}:user:%lld", prefix, (long long)coupon_id, (long long)user_id),
	    size);
}

int keys_inflight(const char *prefix, int64_t coupon_id, char *buf, size_t size)
{
	return fits(snprintf(buf, size, "%s{%lld}:inflight", prefix, (long long)coupon_id), size);
}

int keys_reservation(const char *prefix, int64_t coupon_id, const char *request_id, char *buf, size_t size)
{
	return fits(snprintf(buf, size, "%s{%lld}:rsv:%s", prefix, (long long)coupon_id, request_id), size);
}

int keys_status(const char *prefix, const char *request_id, char *buf, size_t size)
{
	return fits(snprintf(buf, size, "%sreq:{%s}", prefix, request_id), size);
}

int keys_results_channel(const char *prefix, char *buf, size_t size)
{
	return fits(snprintf(buf, size, "%sresults", prefix), size);
}
