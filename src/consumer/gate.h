/* gate.h: the consumer's Redis gate: per-coupon stock reservation, compensation and convergence. */
#ifndef COUPONSD_GATE_H
#define COUPONSD_GATE_H

#include "core/config.h"
#include "core/issue_event.h"

#include <hiredis/hiredis.h>

/*
 * What the reserve script said about one request. A request's reservation
 * key records the first outcome, so a replayed event gets the same answer
 * and stock is decremented at most once per request (docs/data.md).
 */
typedef enum {
	GATE_PENDING,          /* not asked yet, or the answer was lost with the connection */
	GATE_RESERVED,         /* 0: reserved by this call (a fresh DECR) */
	GATE_RESERVED_EARLIER, /* 1: reserved by an earlier run for the same request */
	GATE_SOLD_OUT,         /* -1: no stock, now or recorded earlier */
	GATE_NO_STOCK,         /* -2: the stock key is missing: load it from PostgreSQL, then ask again */
	GATE_RELEASED_EARLIER, /* -3: reserved earlier, then given back by compensation */
} gate_outcome_t;

/* One request as the gate sees it; outcome is in and out. */
typedef struct {
	const issue_event_t *event;
	gate_outcome_t outcome;
} gate_request_t;

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
 * Runs the reserve script for every request whose outcome is GATE_PENDING:
 * one call per coupon (chunked), each taking that coupon's requests in array
 * (Kafka log) order, the calls pipelined. Answers already read are kept even
 * when it fails midway. 0, or -1 when Redis failed (outcomes left PENDING).
 */
int gate_reserve(gate_t *g, gate_request_t *reqs, int n);

/*
 * Gives back the reservation of each event (compensation): INCR stock and
 * record "released" only if the reservation is still recorded as reserved,
 * so a release is idempotent. done[i] is set to 1 for each one handled.
 */
int gate_release(gate_t *g, const issue_event_t *const *events, int n, unsigned char *done);

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
