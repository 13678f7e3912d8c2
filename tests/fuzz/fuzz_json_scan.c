/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_json_scan.c: libFuzzer harness for the JSON scan that reads librdkafka's statistics. */
#include "core/json_scan.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the scan is a crash, so libFuzzer reports it with the input. */
static void require(int cond)
{
	if (!cond)
		abort();
}

typedef struct {
	const char *start, *end;
} bounds_t;

static int inside(const bounds_t *b, const char *p, size_t n)
{
	return p >= b->start && p <= b->end && (size_t)(b->end - p) >= n;
}

/* Every key and value it reports lies in the input, on a path as deep as it says. */
static void check_member(const json_scan_path_t *path, const char *v, size_t n, void *arg)
{
	const bounds_t *b = arg;

	require(path->depth >= 1 && path->depth <= JSON_SCAN_DEPTH);
	require(inside(b, v, n));
	for (int i = 0; i < path->depth; i++)
		require(inside(b, path->key[i], path->len[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	bounds_t b = {text, text + size};
	int rc = json_scan(text, size, check_member, &b);
	size_t opens = 0;

	require(rc == 0 || rc == -1);
	for (size_t i = 0; i < size; i++)
		opens += data[i] == '[' || data[i] == '{';
	/*
	 * What jansson reads whole, the scan reads too (within the scan's nesting
	 * limit). jansson ends a text at a NUL byte ("true\0" is "true"), so a text
	 * with one is not compared.
	 */
	if (opens <= JSON_SCAN_NESTING && memchr(data, '\0', size) == NULL) {
		json_t *j = json_loadb(text, size, JSON_DECODE_ANY, NULL);

		require(j == NULL || rc == 0);
		json_decref(j);
	}
	return 0;
}
