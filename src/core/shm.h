/* SPDX-License-Identifier: BSD-2-Clause */
/* shm.h: memory the master shares with every child: heartbeats, partition progress (metrics later). */
#ifndef COUPONSD_SHM_H
#define COUPONSD_SHM_H

#include <stdatomic.h>
#include <stdint.h>

/* Enough for two generations of the largest worker set plus every partition. */
#define SHM_SLOTS 2560

/*
 * One slot per live child. Only the child writes its heartbeat; only the
 * master assigns and clears slots. Plain atomics, no lock: a child killed
 * mid-write cannot leave anything held.
 */
typedef struct {
	_Atomic int64_t heartbeat_ms; /* clock_mono_ms() of the child's last loop tick */
	_Atomic int32_t pid;
	_Atomic int32_t in_use;
} shm_slot_t;

/* As many as kafka.partitions may name (CONFIG_MAX_PARTITIONS; admission.c asserts they agree). */
#define SHM_PARTITIONS 1024

/* What the HTTP workers may assume about a partition's consumer on this host. */
enum {
	SHM_PART_UNKNOWN = 0, /* no consumer here has reported: admission does not limit it */
	SHM_PART_OWNED = 1,   /* a consumer here owns it (or did, and its successor is on the way) */
	SHM_PART_FOREIGN = 2, /* the consumer here stands by: another host decides it */
};

/*
 * One partition of the issue topic, in Kafka offsets, not counts: offsets
 * are positions in the log, so a replay after a consumer crash, another
 * host's producers or a lost delivery report cannot make the two drift
 * apart for good. pending = accepted - decided (admission.c).
 * The master only creates this (zeroed) and keeps it across restarts and
 * reloads; the children write it, each field with plain atomics.
 */
typedef struct {
	_Atomic int64_t accepted; /* the log end: highest delivered offset + 1 (HTTP workers, raised only),
	                             or the consumer's high watermark (raised, or lowered when stale) */
	_Atomic int64_t decided;  /* the consumer's stored offset: everything below it is decided */
	_Atomic int32_t state;    /* SHM_PART_* */
} shm_partition_t;

typedef struct {
	shm_slot_t slots[SHM_SLOTS];
	shm_partition_t partitions[SHM_PARTITIONS];
} shm_t;

shm_t *shm_create(void);
void shm_destroy(shm_t *shm);

/* Master side: claim a free slot for a child about to start, or -1 when all are taken. */
int shm_slot_claim(shm_t *shm);
void shm_slot_release(shm_t *shm, int slot);

#endif
