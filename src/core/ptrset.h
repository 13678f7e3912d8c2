/* SPDX-License-Identifier: BSD-2-Clause */
/* ptrset.h: a set of pointers (open addressing), for tracking live connections. */
#ifndef COUPONSD_PTRSET_H
#define COUPONSD_PTRSET_H

#include <stddef.h>

typedef struct {
	void **slots;
	size_t capacity; /* a power of two, or 0 before the first insert */
	size_t count;
} ptrset_t;

/* The hash of a pointer, for any open-addressing table keyed by pointers (http_guard.c's map too). */
size_t ptrset_hash(const void *p);
/* Returns 1 if added, 0 if already present, -1 when out of memory. */
int ptrset_add(ptrset_t *set, void *p);
/* Returns 1 if removed, 0 if absent. */
int ptrset_remove(ptrset_t *set, void *p);
void ptrset_free(ptrset_t *set);

#endif
