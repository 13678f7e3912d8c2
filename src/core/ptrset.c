/* SPDX-License-Identifier: BSD-2-Clause */
/* ptrset.c: a set of pointers (open addressing), for tracking live connections. */
#include "core/ptrset.h"

#include <stdint.h>
#include <stdlib.h>

size_t ptrset_hash(const void *p)
{
	uint64_t h = (uint64_t)(uintptr_t)p;

	/* Allocations are aligned, so mix the high bits down before masking. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h;
}

static size_t slot_of(const ptrset_t *set, const void *p)
{
	return ptrset_hash(p) & (set->capacity - 1);
}

static int grow(ptrset_t *set)
{
	ptrset_t bigger = {NULL, set->capacity ? set->capacity * 2 : 64, 0};

	bigger.slots = calloc(bigger.capacity, sizeof(void *));
	if (bigger.slots == NULL)
		return -1;
	for (size_t i = 0; i < set->capacity; i++) {
		if (set->slots[i] != NULL)
			ptrset_add(&bigger, set->slots[i]);
	}
	free(set->slots);
	*set = bigger;
	return 0;
}

int ptrset_add(ptrset_t *set, void *p)
{
	size_t i;

	if ((set->count + 1) * 2 > set->capacity && grow(set) != 0)
		return -1;
	for (i = slot_of(set, p); set->slots[i] != NULL; i = (i + 1) & (set->capacity - 1)) {
		if (set->slots[i] == p)
			return 0;
	}
	set->slots[i] = p;
	set->count++;
	return 1;
}

int ptrset_remove(ptrset_t *set, void *p)
{
	size_t mask = set->capacity - 1, i, j;

	if (set->capacity == 0)
		return 0;
	for (i = slot_of(set, p); set->slots[i] != p; i = (i + 1) & mask) {
		if (set->slots[i] == NULL)
			return 0;
	}
	set->slots[i] = NULL;
	set->count--;
	/* Backward-shift the rest of the probe run so lookups never stop early at the hole. */
	for (j = (i + 1) & mask; set->slots[j] != NULL; j = (j + 1) & mask) {
		size_t home = slot_of(set, set->slots[j]);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			set->slots[i] = set->slots[j];
			set->slots[j] = NULL;
			i = j;
		}
	}
	return 1;
}

void ptrset_free(ptrset_t *set)
{
	free(set->slots);
	set->slots = NULL;
	set->capacity = set->count = 0;
}
