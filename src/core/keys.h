/* SPDX-License-Identifier: BSD-2-Clause */
/* keys.h: every Redis key and channel name couponsd uses, in one place. */
#ifndef COUPONSD_KEYS_H
#define COUPONSD_KEYS_H

#include <stddef.h>
#include <stdint.h>

/*
 * A coupon's keys share the hash tag {<couponId>} so that they live in one
 * Redis Cluster slot and one Lua script may touch them together:
 *   <prefix>{<c>}:stock              remaining stock (integer), rebuilt from PostgreSQL when missing
 *   <prefix>{<c>}:user:<userId>      the requestId of this user's request for this coupon (dedupe)
 *   <prefix>{<c>}:rsv:<requestId>    the gate's recorded outcome for this request (replays reuse it)
 *   <prefix>{<c>}:inflight           sorted set: requestIds the edge admitted and the gate has not seen
 *                                    yet, each scored with the Redis time (ms) it stops counting at
 * A request's status is looked up by requestId alone, so it carries its own tag:
 *   <prefix>req:{<requestId>}        hash: status, reason, couponId, userId, acceptedAt, decidedAt
 * and results are published on
 *   <prefix>results                  pub/sub channel; each message is the status JSON
 * Each builder returns the length written, or -1 if it did not fit.
 */
#define KEYS_MAX 256
/*
 * The longest redis.key_prefix the loader accepts: the longest key,
 * <prefix>{<couponId>}:rsv:<requestId>, adds 63 bytes to it, so every key
 * fits in KEYS_MAX. A longer prefix would cut keys, and every user's claim
 * would become the same key.
 */
#define KEYS_PREFIX_MAX 128

int keys_stock(const char *prefix, int64_t coupon_id, char *buf, size_t size);
int keys_user(const char *prefix, int64_t coupon_id, int64_t user_id, char *buf, size_t size);
int keys_inflight(const char *prefix, int64_t coupon_id, char *buf, size_t size);
int keys_reservation(const char *prefix, int64_t coupon_id, const char *request_id, char *buf, size_t size);
int keys_status(const char *prefix, const char *request_id, char *buf, size_t size);
int keys_results_channel(const char *prefix, char *buf, size_t size);

#endif
