/* SPDX-License-Identifier: BSD-2-Clause */
/* uuid.c: request ids: random (version 4) UUIDs in their canonical 36-character form. */
#include "core/uuid.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

int uuid_generate(char out[UUID_TEXT_LEN + 1])
{
	uint8_t b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, UUID_TEXT_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
	         b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

int uuid_valid(const char *text, size_t len)
{
	if (text == NULL || len != UUID_TEXT_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		int dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? c != '-'
		         : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return 0;
	}
	return 1;
}
