/* SPDX-License-Identifier: BSD-2-Clause */
/* admission.c: lag-aware admission control: which partition a coupon is in and how far behind it is. */
#include "core/admission.h"

#include "core/text.h"

#include <stdatomic.h>
#include <stdio.h>

_Static_assert(CONFIG_MAX_PARTITIONS <= SHM_PARTITIONS, "shared memory must hold every partition");

uint32_t admission_murmur2(const void *key, size_t len)
{
	const uint32_t m = 0x5bd1e995;
	const unsigned char *data = key;
	uint32_t h = 0x9747b28c ^ (uint32_t)len;
	size_t i;

	for (i = 0; i + 4 <= len; i += 4) {
		/* Little-endian words, as the Java client reads them, whatever the host's byte order. */
		uint32_t k = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 |
		             (uint32_t)data[i + 3] << 24;

		k *= m;
		k ^= k >> 24;
		k *= m;
		h = h * m ^ k;
	}
	switch (len - i) {
	case 3:
		h ^= (uint32_t)data[i + 2] << 16;
		/* fall through */
	case 2:
		h ^= (uint32_t)data[i + 1] << 8;
		/* fall through */
	case 1:
		h ^= data[i];
		h *= m;
	}
	h ^= h >> 13;
	h *= m;
	h ^= h >> 15;
	return h;
}

int admission_partition(const void *key, size_t len, int partitions)
{
	if (partitions <= 0)
		return -1;
	return (int)((admission_murmur2(key, len) & 0x7fffffff) % (uint32_t)partitions);
}

int admission_coupon_partition(int64_t coupon_id, int partitions)
{
	char key[21];

	if (coupon_id <= 0)
		return -1;
	return admission_partition(key, (size_t)text_format_i64(coupon_id, key), partitions);
}

static shm_partition_t *part(shm_t *shm, int partition)
{
	return shm != NULL && partition >= 0 && partition < SHM_PARTITIONS ? &shm->partitions[partition]
	                                                                   : NULL;
}

/* Raises *v to at least value; many HTTP workers race here, and a lower value never wins. */
static void raise_to(_Atomic int64_t *v, int64_t value)
{
	int64_t cur = atomic_load(v);

	while (cur < value && !atomic_compare_exchange_weak(v, &cur, value))
		;
}

void admission_delivered(shm_t *shm, int partition, int64_t offset)
{
	shm_partition_t *p = part(shm, partition);

	if (p != NULL && offset >= 0)
		raise_to(&p->accepted, offset + 1);
}

/* kafka_owned is sorted: binary search. */
static int owned_here(const config_t *cfg, int partition)
{
	int lo = 0, hi = cfg->kafka_owned_count - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (cfg->kafka_owned[mid] == partition)
			return 1;
		if (cfg->kafka_owned[mid] < partition)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return 0;
}

int64_t admission_pending(const shm_t *shm, const config_t *cfg, int partition)
{
	const shm_partition_t *p =
	    shm != NULL && partition >= 0 && partition < SHM_PARTITIONS ? &shm->partitions[partition] : NULL;
	int64_t pending;

	/*
	 * Only a consumer of this host reports how far it has decided: for a
	 * partition that another host owns (split kafka.owned_partitions) this
	 * host knows the log end but not the progress, so it does not limit.
	 */
	if (p == NULL || !owned_here(cfg, partition) || atomic_load(&p->state) != SHM_PART_OWNED)
		return -1;
	pending = atomic_load(&p->accepted) - atomic_load(&p->decided);
	return pending > 0 ? pending : 0;
}

void admission_start(shm_t *shm, int partition, int64_t decided, int64_t high)
{
	shm_partition_t *p = part(shm, partition);

	if (p == NULL)
		return;
	if (decided >= 0)
		atomic_store(&p->decided, decided);
	if (high >= 0)
		raise_to(&p->accepted, high);
}

void admission_owner(shm_t *shm, int partition, int owned)
{
	shm_partition_t *p = part(shm, partition);

	if (p != NULL)
		atomic_store(&p->state, owned ? SHM_PART_OWNED : SHM_PART_FOREIGN);
}

void admission_decided(shm_t *shm, int partition, int64_t next_offset)
{
	shm_partition_t *p = part(shm, partition);

	/* One consumer per partition at a time writes this: a plain store is enough. */
	if (p != NULL && next_offset >= 0)
		atomic_store(&p->decided, next_offset);
}

void admission_resync(shm_t *shm, int partition, int64_t high, int64_t *seen)
{
	shm_partition_t *p = part(shm, partition);
	int64_t cur;
	int caught_up;

	if (p == NULL || high < 0)
		return;
	raise_to(&p->accepted, high);
	cur = atomic_load(&p->accepted);
	caught_up = atomic_load(&p->decided) >= high;
	/*
	 * Above the watermark while nothing is left to read: either a delivery
	 * report that the consumer's next fetch will catch up with, or a log end
	 * from a cluster that no longer exists. Only a value that has not moved
	 * for a whole period is stale, and the exchange fails if a worker raised
	 * it meanwhile, so no fresh delivery is ever forgotten.
	 */
	if (caught_up && cur > high && cur == *seen &&
	    atomic_compare_exchange_strong(&p->accepted, &cur, high))
		cur = high;
	*seen = cur;
}
