/* SPDX-License-Identifier: BSD-2-Clause */
/* stock_check.h: the consumer's periodic check that its coupons' Redis stock exists and is right. */
#ifndef COUPONSD_STOCK_CHECK_H
#define COUPONSD_STOCK_CHECK_H

#include "core/config.h"
#include "consumer/gate.h"
#include "consumer/store.h"

#include <event2/event.h>

/*
 * Why it exists: a consumer loads a missing stock key only when an event of
 * the coupon reaches it (GATE_NO_STOCK). After a flush, a sold-out coupon
 * gets no event (the HTTP edge refuses it from PostgreSQL's remaining), so
 * without this check its key would stay missing and Redis stock would never
 * equal remaining again (SPEC invariant 5).
 */
typedef struct stock_check stock_check_t;

/*
 * Says whether the consumer is between batches; the check runs only then.
 * A batch is finished (batch_finish() in consumer.c) only after
 * decide_rounds() in batch.c saw every request decided in a committed
 * transaction, every unissued reservation given back (release_round()) and
 * the batch's coupons converged (sync_round()). A batch that waits for its retry keeps
 * its items (count > 0), and one that is abandoned (refusal, a fatal
 * producer, a stop) ends the event loop at once. The consumer runs on one
 * thread: between batches none of its reservations is outstanding and
 * nothing else of it writes these stock keys.
 */
typedef int (*stock_check_idle_fn)(void *arg);

/*
 * Arms a timer of issue.stock_check_interval on base. Each tick, when idle()
 * says so, reads one bounded page of coupons from PostgreSQL through store
 * (after store_ensure: only the partition's owner writes Redis) and, for
 * the open coupons of this partition, makes the Redis stock equal to
 * remaining through gate_sync_stock(). NULL on failure (logged).
 */
stock_check_t *stock_check_new(struct event_base *base, const config_t *cfg, int partition, store_t *store,
                               gate_t *gate, stock_check_idle_fn idle, void *arg);
void stock_check_free(stock_check_t *sc);

/* One step now (the timer's work): STORE_OK, STORE_RETRY or STORE_NOT_OWNER. */
store_rc_t stock_check_run(stock_check_t *sc);

#endif
