/* SPDX-License-Identifier: BSD-2-Clause */
/* uuid.c: request ids: random (version 4) UUIDs in their canonical 36-character form. */
#include "core/uuid.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#define POOL_IDS 256 /* one getrandom() per 256 ids, not one per accepted request */

/*
 * Randomness drawn ahead, in a page the kernel zeroes in a fork()ed child
 * (MADV_WIPEONFORK): the HTTP workers are forked, and two processes handing
 * out the same bytes would hand out the same request ids. left lives in the
 * page too, so a child starts with an empty pool and draws its own.
 */
struct pool {
	size_t left;
	uint8_t bytes[POOL_IDS][16];
};

static struct pool *pool;
static int pool_failed; /* no wipe-on-fork here: draw per id, as before */

static struct pool *pool_get(void)
{
	void *p;

	if (pool != NULL || pool_failed)
		return pool;
	p = mmap(NULL, sizeof(struct pool), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		pool_failed = 1;
	else if (madvise(p, sizeof(struct pool), MADV_WIPEONFORK) != 0) {
		munmap(p, sizeof(struct pool));
		pool_failed = 1;
	} else
		pool = p;
	return pool;
}

/* Above 256 bytes getrandom() may return short when a signal arrives: keep drawing. */
static int fill(struct pool *p)
{
	uint8_t *at = &p->bytes[0][0];
	size_t need = sizeof(p->bytes);

	while (need > 0) {
		ssize_t n = getrandom(at, need, 0);

		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0) {
			at += n;
			need -= (size_t)n;
		}
	}
	p->left = POOL_IDS;
	return 0;
}

static int random16(uint8_t b[16])
{
	struct pool *p = pool_get();

	if (p == NULL)
		return getrandom(b, 16, 0) == 16 ? 0 : -1;
	if (p->left == 0 && fill(p) != 0)
		return -1;
	p->left--;
	memcpy(b, p->bytes[p->left], 16);
	memset(p->bytes[p->left], 0, 16); /* a handed-out id does not stay readable in memory */
	return 0;
}

int uuid_generate(char out[UUID_TEXT_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t b[16];
	char *o = out;

	if (random16(b) != 0)
		return -1;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	/* By hand: snprintf's 16 conversions were most of an id's cost, once per accepted request. */
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*o++ = '-';
		*o++ = digits[b[i] >> 4];
		*o++ = digits[b[i] & 0x0f];
	}
	*o = '\0';
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
