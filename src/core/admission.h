/* SPDX-License-Identifier: BSD-2-Clause */
/* admission.h: lag-aware admission control: which partition a coupon is in and how far behind it is. */
#ifndef COUPONSD_ADMISSION_H
#define COUPONSD_ADMISSION_H

#include "core/config.h"
#include "core/shm.h"

#include <stddef.h>
#include <stdint.h>

/* The Java client's murmur2 (seed 0x9747b28c), which librdkafka's murmur2 partitioners use. */
uint32_t admission_murmur2(const void *key, size_t len);

/*
 * The partition librdkafka's murmur2_random partitioner picks for a
 * non-empty key among partitions: (murmur2(key) & 0x7fffffff) % partitions.
 * A unit test holds it to rd_kafka_msg_partitioner_murmur2_random().
 */
int admission_partition(const void *key, size_t len, int partitions);

/* The partition of a coupon's events (key = the coupon id in decimal), or -1 for an id <= 0. */
int admission_coupon_partition(int64_t coupon_id, int partitions);

/* ---- HTTP workers ---- */

/* Kafka confirmed an event of partition at offset: the log end this host knows moves up to offset + 1. */
void admission_delivered(shm_t *shm, int partition, int64_t offset);

/*
 * Events of partition accepted but not yet decided, as far as this host
 * knows: -1 when it cannot tell (the partition is not owned here, or its
 * consumer has not reported yet), which admission treats as no limit.
 */
int64_t admission_pending(const shm_t *shm, const config_t *cfg, int partition);

/* ---- the consumer of a partition ---- */

/* Start-up: decided is where consumption starts (the committed offset; -1 when unknown keeps the old). */
void admission_start(shm_t *shm, int partition, int64_t decided, int64_t high);

/* Ownership learned: owned 1 (this process decides the partition) or 0 (another host does). */
void admission_owner(shm_t *shm, int partition, int owned);

/* Every message below next_offset is decided and its offset stored. */
void admission_decided(shm_t *shm, int partition, int64_t next_offset);

/*
 * About once a second, with the broker's high watermark (-1: unknown).
 * Raises accepted to it (events from other hosts' producers count too) and,
 * once everything below it is decided, lowers an accepted that stayed above
 * it since the previous call (a stale log end, such as a replaced embedded
 * cluster's). *seen carries the value observed last time (start it at -1).
 */
void admission_resync(shm_t *shm, int partition, int64_t high, int64_t *seen);

#endif
