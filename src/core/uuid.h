/* SPDX-License-Identifier: BSD-2-Clause */
/* uuid.h: request ids: random (version 4) UUIDs in their canonical 36-character form. */
#ifndef COUPONSD_UUID_H
#define COUPONSD_UUID_H

#include <stddef.h>

#define UUID_TEXT_LEN 36

/* Writes a new lowercase UUID and a NUL into out (37 bytes). Returns 0, or -1 if the kernel gave no
 * randomness. */
int uuid_generate(char out[UUID_TEXT_LEN + 1]);

/* Whether text (len bytes) is a canonical UUID: 8-4-4-4-12 hex digits, any case. */
int uuid_valid(const char *text, size_t len);

#endif
