/* SPDX-License-Identifier: BSD-2-Clause */
/* shm.c: memory the master shares with every child: heartbeats, partition progress (metrics later). */
#include "core/shm.h"

#include "core/clock.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

shm_t *shm_create(void)
{
	/* Anonymous and shared: inherited by every fork, gone with the last process; zero-filled, so
	 * every partition starts SHM_PART_UNKNOWN. */
	void *p = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		log_error("mmap of %zu bytes of shared memory failed: %s", sizeof(shm_t), strerror(errno));
		return NULL;
	}
	return p;
}

void shm_destroy(shm_t *shm)
{
	if (shm != NULL && munmap(shm, sizeof(shm_t)) != 0)
		log_warn("munmap of shared memory failed: %s", strerror(errno));
}

int shm_slot_claim(shm_t *shm)
{
	for (int i = 0; i < SHM_SLOTS; i++) {
		if (atomic_load(&shm->slots[i].in_use) == 0) {
			atomic_store(&shm->slots[i].in_use, 1);
			atomic_store(&shm->slots[i].pid, 0);
			atomic_store(&shm->slots[i].heartbeat_ms, clock_mono_ms());
			return i;
		}
	}
	return -1;
}

void shm_slot_release(shm_t *shm, int slot)
{
	if (slot < 0 || slot >= SHM_SLOTS)
		return;
	atomic_store(&shm->slots[slot].pid, 0);
	atomic_store(&shm->slots[slot].in_use, 0);
}
