/* SPDX-License-Identifier: BSD-2-Clause */
/* ids.c: the one way couponsd reads coupon and user ids: positive 64-bit decimals, nothing else. */
#include "core/ids.h"

int id_parse(const char *text, size_t len, int64_t *out)
{
	uint64_t value = 0;

	/* A leading zero would give one id two spellings (and two dedupe keys). */
	if (text == NULL || len == 0 || len > 19 || text[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (uint64_t)(text[i] - '0');
	}
	if (value > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)value;
	return 0;
}
