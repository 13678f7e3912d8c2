/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_framing.c: libFuzzer harness for the strict framing reader (src/http/http_framing.c). */
#include "http/http_framing.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UNIT_MAX 512

static void require(int cond)
{
	if (!cond)
		abort();
}

/* Feeds data in pieces whose sizes come from seed; returns the index of the refused byte, or size. */
static size_t feed_split(http_framing_t *f, const uint8_t *data, size_t size, uint8_t seed)
{
	size_t at = 0;

	http_framing_init(f, UNIT_MAX);
	while (at < size) {
		size_t n = 1 + (size_t)(seed = (uint8_t)(seed * 37 + 11)) % 9;
		size_t took;

		n = n < size - at ? n : size - at;
		took = http_framing_feed(f, data + at, n);
		require(took <= n);
		at += took;
		if (took < n)
			break;
	}
	return at;
}

/*
 * What http_strict.c relies on: the verdict and the place of the refused
 * unit do not depend on how TCP cut the stream, pending bytes never reach
 * before the stream's start, and a held unit stays under its bound.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	http_framing_t whole, split, bytes;
	size_t at, at_split, at_bytes = 0;

	http_framing_init(&whole, UNIT_MAX);
	at = http_framing_feed(&whole, data, size);
	at_split = feed_split(&split, data, size, size > 0 ? data[0] : 0);
	http_framing_init(&bytes, UNIT_MAX);
	while (at_bytes < size && http_framing_feed(&bytes, data + at_bytes, 1) == 1)
		at_bytes++;
	require(at == at_split && at == at_bytes);
	require(whole.error == split.error && whole.error == bytes.error);
	require(whole.unit_len == split.unit_len && whole.unit_len == bytes.unit_len);
	require((whole.error == NULL) == (at == size));
	require(whole.unit_len <= at && whole.unit_len <= UNIT_MAX);
	if (whole.error != NULL)
		require(http_framing_feed(&whole, (const uint8_t *)"GET", 3) == 0);
	return 0;
}
