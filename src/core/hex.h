/* SPDX-License-Identifier: BSD-2-Clause */
/* hex.h: one hexadecimal digit's value, for the URL decoder and the chunked-body framing. */
#ifndef COUPONSD_HEX_H
#define COUPONSD_HEX_H

/* 0-15, or -1 when c is not a hexadecimal digit (either case). */
static inline int hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
