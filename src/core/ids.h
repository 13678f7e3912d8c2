/* SPDX-License-Identifier: BSD-2-Clause */
/* ids.h: the one way couponsd reads coupon and user ids: positive 64-bit decimals, nothing else. */
#ifndef COUPONSD_IDS_H
#define COUPONSD_IDS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Accepts 1..9223372036854775807 written as plain ASCII digits with no sign,
 * no leading zero, no space. Returns 0 and sets *out, or -1.
 */
int id_parse(const char *text, size_t len, int64_t *out);

#endif
