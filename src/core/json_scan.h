/* SPDX-License-Identifier: BSD-2-Clause */
/* json_scan.h: walks a JSON text without building it, calling back for the scalar members it holds. */
#ifndef COUPONSD_JSON_SCAN_H
#define COUPONSD_JSON_SCAN_H

#include <stddef.h>
#include <string.h>

/*
 * librdkafka's statistics are 25-30 KB of JSON per producer and second, of
 * which couponsd reads a handful of members. Building them with jansson cost
 * each HTTP worker 5.7 million instructions per report, a quarter of its
 * main thread's work at 1,000 202s/s (docs/performance.md, round 2i). This
 * reads each byte once and allocates nothing.
 */

#define JSON_SCAN_DEPTH 8    /* members deeper than this are checked but not reported */
#define JSON_SCAN_NESTING 64 /* deeper nesting is refused, so a hostile text cannot exhaust the stack */

/* The keys from the root to a member: key[0] is a member of the root object. Keys are raw (escapes kept). */
typedef struct {
	const char *key[JSON_SCAN_DEPTH];
	size_t len[JSON_SCAN_DEPTH];
	int depth;
} json_scan_path_t;

/*
 * Called for each scalar member of an object at a depth of at most
 * JSON_SCAN_DEPTH, reached through objects only (values inside arrays are
 * not reported). value is the raw token: a string without its quotes and
 * with its escapes kept, a number, true, false or null.
 */
typedef void (*json_scan_fn)(const json_scan_path_t *path, const char *value, size_t len, void *arg);

/* Returns 0, or -1 when text is not exactly one JSON value (fn may have been called for its first part). */
int json_scan(const char *text, size_t len, json_scan_fn fn, void *arg);

/* Whether key i of path is word (a convenience for callbacks; inline, so a literal's length is known). */
static inline int json_scan_key_is(const json_scan_path_t *path, int i, const char *word)
{
	size_t n = strlen(word);

	return i < path->depth && i < JSON_SCAN_DEPTH && path->len[i] == n &&
	       memcmp(path->key[i], word, n) == 0;
}

#endif
