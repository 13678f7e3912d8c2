/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_batch.h: one script call per coupon (one Redis slot) per event-loop turn, not one per request. */
#ifndef COUPONSD_REDIS_BATCH_H
#define COUPONSD_REDIS_BATCH_H

#include "http/redis_async.h"

#include <event2/event.h>
#include <stdint.h>

typedef struct redis_batch redis_batch_t;

/*
 * Called exactly once per entry: item is this entry's element of the
 * script's array reply, the error reply itself when the call failed with
 * one, NULL when Redis could not be asked (timeout, disconnect, shutdown).
 */
typedef void (*redis_batch_fn)(redisReply *item, void *arg);

/*
 * The script gets KEYS = the group's fixed_keys, then item_keys per entry;
 * ARGV = the group's fixed_args, then item_args per entry; it answers an
 * array with one element per entry, in order. The entries of one group must
 * share a Redis Cluster slot (one hash tag), like any script's keys.
 */
redis_batch_t *redis_batch_new(struct event_base *base, redis_async_t *ra, redis_script_t *script,
                               int fixed_keys, int fixed_args, int item_keys, int item_args);

/*
 * Queues an entry: fixed holds the fixed keys then the fixed arguments (used
 * by the first entry of the group in a turn), item the entry's keys then
 * arguments; both are copied. The call goes out at the end of this turn of
 * the loop, or at once when the group is full. Returns -1 without calling fn
 * when Redis is not connected or memory ran out.
 */
int redis_batch_add(redis_batch_t *b, int64_t group, const char **fixed, const char **item, redis_batch_fn fn,
                    void *arg);

/* Sends what is queued now (the worker's teardown: the loop runs no more turns). */
void redis_batch_flush(redis_batch_t *b);
/* Flushes, then frees; calls already sent still answer through the Redis connection. */
void redis_batch_free(redis_batch_t *b);

#endif
