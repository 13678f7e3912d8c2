/* SPDX-License-Identifier: BSD-2-Clause */
/* batch.h: the consumer's batch pipeline: gate, store, compensation, convergence, results, each resumable. */
#ifndef COUPONSD_BATCH_H
#define COUPONSD_BATCH_H

#include "consumer/gate.h"
#include "consumer/item.h"
#include "consumer/results.h"
#include "consumer/store.h"
#include "core/config.h"

/* What one attempt at a batch came to. */
typedef enum {
	BATCH_DONE,       /* every outcome is durable: the offsets may be stored */
	BATCH_DELIVERING, /* everything is done but delivery reports, which arrive through the loop */
	BATCH_RETRY, /* Redis, PostgreSQL or Kafka failed: the next attempt resumes where this one stopped */
	BATCH_NOT_OWNER, /* another session holds the partition's ownership lock */
} batch_rc_t;

/* Counted for the consumer's last log line. */
typedef struct {
	int64_t batches, issued, dead_letters, compensations, gaps, lost, admin_changes;
	int64_t rejected[REASON_NOT_OPEN + 1];
} batch_stats_t;

typedef struct batch {
	const config_t *cfg;
	int partition;
	gate_t *gate;
	store_t *store;
	results_t *results;
	item_t *items;        /* the batch, in log order, issue.batch_size long */
	int count;            /* 0: no batch in progress */
	store_coupon_t *sync; /* coupons whose Redis stock must be converged to PostgreSQL */
	int nsync;
	int fault_checked;
	rd_kafka_message_t *held; /* an admin event read after requests: the first of the next batch */
	/*
	 * Run while PostgreSQL writes and commits this batch (store_commit());
	 * the consumer takes and gates the next batch there (batch_pregate()).
	 * ahead is that next batch: its fresh reservations are not in
	 * PostgreSQL's remaining yet, and this batch's convergence of Redis
	 * stock must leave them taken.
	 */
	store_overlap_fn overlap;
	void *overlap_arg;
	const struct batch *ahead;
	batch_stats_t stats;
} batch_t;

/* The stages' modules are the caller's; the batch only uses them. 0, or -1 (logged). */
int batch_init(batch_t *b, const config_t *cfg, int partition, gate_t *gate, store_t *store,
               results_t *results);
void batch_fini(batch_t *b);

int batch_full(const batch_t *b);

/*
 * Adds a message (in offset order); one that does not decode goes to the
 * dead-letter topic. An admin event is a batch of its own: after requests it
 * is held for the next batch (batch_full() is then true), and nothing joins
 * it.
 */
void batch_add(batch_t *b, rd_kafka_message_t *m);

/*
 * One attempt: dead letters out, then up to a few rounds of gate (Redis),
 * store (one PostgreSQL transaction), compensation and convergence until
 * every request is decided, then the statuses to Redis and the results
 * topic. Never blocks on Kafka: BATCH_DELIVERING, then batch_deliveries()
 * once reports arrive.
 */
batch_rc_t batch_advance(batch_t *b);

/*
 * The Redis gate for a batch taken while the one before it is still in
 * PostgreSQL: its requests are reserved now, after every reservation of the
 * batch before (one connection, so Redis runs them in that order), and its
 * own attempt later goes straight to PostgreSQL. Nothing else happens here:
 * dead letters, decisions and offsets wait for its turn. Only on a
 * connection already open (the overlap must not wait for a reconnect): 0,
 * or -1 when Redis failed (the unanswered items stay GATE_PENDING, asked
 * again by the batch's own attempt).
 */
int batch_pregate(batch_t *b);

/* Exchanges two batches (the next one becomes the current one); the statistics stay where they were. */
void batch_swap(batch_t *a, batch_t *b);

/* BATCH_DONE when every delivery is reported done, BATCH_DELIVERING while some are in flight, else
 * BATCH_RETRY. */
batch_rc_t batch_deliveries(batch_t *b);

/* The offset after the batch's last message (the batch must not be empty). */
int64_t batch_end_offset(const batch_t *b);

/* A finished batch: counted, then cleared. */
void batch_done(batch_t *b);

/* An empty batch starts with the admin event held back by the previous one, if any. */
void batch_add_held(batch_t *b);

/* Forgets a held admin event (the batch is abandoned: a successor reads it again). */
void batch_drop_held(batch_t *b);

/* Frees the messages and forgets the batch (finished, or abandoned to be read again by a successor). */
void batch_clear(batch_t *b);

#endif
