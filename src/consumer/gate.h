/* SPDX-License-Identifier: BSD-2-Clause */
/* gate.h: the consumer's Redis gate: per-coupon stock reservation, compensation and convergence. */
#ifndef COUPONSD_GATE_H
#define COUPONSD_GATE_H

#include "consumer/item.h"
#include "core/config.h"

#include <hiredis/hiredis.h>

typedef struct gate gate_t;

gate_t *gate_new(const config_t *cfg);
void gate_free(gate_t *g);

/*
 * Makes sure there is a usable connection: connects with redis.timeout,
 * AUTH, SELECT and SCRIPT LOAD unless the current one is healthy. A context
 * that saw an I/O error (here or in results.c) is replaced. 0 or -1.
 */
int gate_connect(gate_t *g);

/* The live connection (after gate_connect), shared with results.c. */
redisContext *gate_redis(gate_t *g);

/*
 * Runs the reserve script for every valid, undecided item whose gate is
 * GATE_PENDING, and writes its answer into the item: one call per coupon
 * (chunked), each taking that coupon's requests in array (Kafka log) order,
 * the calls pipelined. Answers already read are kept even when it fails
 * midway. The number of fresh reservations (GATE_RESERVED), or -1 when Redis
 * failed (the unanswered items stay PENDING).
 */
int gate_reserve(gate_t *g, item_t *items, int n);

/*
 * Gives back the reservation of each item whose release is set
 * (compensation): INCR stock and record "released" only if the reservation
 * is still recorded as reserved, so a release is idempotent. Clears release
 * in each item handled and adds them to *released. 0, or -1 when Redis failed.
 */
int gate_release(gate_t *g, item_t *items, int n, int *released);

/*
 * Makes each coupon's stock equal to PostgreSQL's remaining: a missing key
 * is loaded (SET NX), a different value is logged as drift and overwritten.
 * Safe only because one consumer (the partition's owner) writes a coupon's
 * stock. 0 or -1.
 */
int gate_sync_stock(gate_t *g, const int64_t *coupon_ids, const int *remaining, int n);

/* Test builds: SET NX of a marker key; 1 the first time for this Redis, 0 after, -1 on error. */
int gate_claim_once(gate_t *g, const char *name);

#endif
