/* shm.h: memory the master shares with every child (heartbeats now, metrics later). */
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

typedef struct {
	shm_slot_t slots[SHM_SLOTS];
} shm_t;

shm_t *shm_create(void);
void shm_destroy(shm_t *shm);

/* Master side: claim a free slot for a child about to start, or -1 when all are taken. */
int shm_slot_claim(shm_t *shm);
void shm_slot_release(shm_t *shm, int slot);

#endif
