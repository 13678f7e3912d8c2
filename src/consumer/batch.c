/* SPDX-License-Identifier: BSD-2-Clause */
/* batch.c: the consumer's batch pipeline: gate, store, compensation, convergence, results, each resumable. */
#include "consumer/batch.h"

#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Gate/store rounds in one attempt; more means the stock key keeps vanishing: back off instead. */
#define MAX_ROUNDS 4
/* Coupons converged per gate_sync_stock() call. */
#define SYNC_CHUNK 64

int batch_init(batch_t *b, const config_t *cfg, int partition, gate_t *gate, store_t *store,
               results_t *results)
{
	size_t n = (size_t)cfg->issue_batch_size;

	memset(b, 0, sizeof(*b));
	b->cfg = cfg;
	b->partition = partition;
	b->gate = gate;
	b->store = store;
	b->results = results;
	b->items = calloc(n, sizeof(*b->items));
	b->sync = calloc(n, sizeof(*b->sync));
	if (b->items == NULL || b->sync == NULL) {
		log_error("out of memory");
		return -1;
	}
	return 0;
}

void batch_fini(batch_t *b)
{
	if (b->items != NULL)
		batch_clear(b);
	if (b->held != NULL)
		rd_kafka_message_destroy(b->held);
	b->held = NULL;
	free(b->items);
	free(b->sync);
	b->items = NULL;
	b->sync = NULL;
}

int batch_full(const batch_t *b)
{
	return b->count >= b->cfg->issue_batch_size || b->held != NULL ||
	       (b->count > 0 && b->items[0].admin != NULL);
}

/* 1 when m is an admin event (decoded into it->admin, or its error set: a dead letter), 0 when a request. */
static int decode_admin(item_t *it, rd_kafka_message_t *m)
{
	admin_event_t ev;
	int rc = admin_event_decode(m->payload, m->len, &ev, it->error, sizeof(it->error));

	if (rc != 0)
		return rc < 0;
	if ((it->admin = malloc(sizeof(*it->admin))) == NULL) {
		snprintf(it->error, sizeof(it->error), "out of memory");
		return 1;
	}
	*it->admin = ev;
	it->status.event.coupon_id = ev.coupon_id;
	return 1;
}

void batch_add(batch_t *b, rd_kafka_message_t *m)
{
	item_t *it;

	if (b->count > 0 &&
	    admin_event_decode(m->payload, m->len, &(admin_event_t){0}, (char[8]){0}, 8) == 0) {
		b->held = m; /* decided after this batch's requests, in a transaction of its own */
		return;
	}
	it = &b->items[b->count++];
	memset(it, 0, sizeof(*it));
	it->msg = m;
	if (decode_admin(it, m) && it->error[0] == '\0')
		return;
	if (it->error[0] == '\0' &&
	    issue_event_decode(m->payload, m->len, &it->status.event, it->error, sizeof(it->error)) == 0)
		return;
	if (it->error[0] == '\0')
		snprintf(it->error, sizeof(it->error), "invalid event");
	log_warn("%s[%d] offset %lld: %s; sending it to %s", b->cfg->kafka_topic, b->partition,
	         (long long)m->offset, it->error, b->cfg->kafka_dlq_topic);
}

void batch_clear(batch_t *b)
{
	for (int i = 0; i < b->count; i++) {
		rd_kafka_message_destroy(b->items[i].msg);
		free(b->items[i].json);
		b->items[i].json = NULL;
		free(b->items[i].admin);
		b->items[i].admin = NULL;
	}
	b->count = 0;
	b->nsync = 0;
}

int64_t batch_end_offset(const batch_t *b)
{
	return b->items[b->count - 1].msg->offset + 1;
}

void batch_done(batch_t *b)
{
	for (int i = 0; i < b->count; i++) {
		if (!item_valid(&b->items[i]) && b->items[i].delivery != DELIVERY_DROPPED) {
			b->stats.dead_letters++;
			metrics_inc(M_DLQ_MESSAGES);
		}
	}
	b->stats.batches++;
	batch_clear(b);
}

void batch_add_held(batch_t *b)
{
	rd_kafka_message_t *m = b->held;

	if (b->count > 0 || m == NULL)
		return;
	b->held = NULL;
	batch_add(b, m);
}

void batch_drop_held(batch_t *b)
{
	if (b->held != NULL)
		rd_kafka_message_destroy(b->held);
	b->held = NULL;
}

/* Whether a round has anything left to do: a decision, a compensation or a convergence. */
static int unfinished(const batch_t *b)
{
	if (b->nsync > 0)
		return 1;
	for (int i = 0; i < b->count; i++) {
		const item_t *it = &b->items[i];

		if ((item_valid(it) && !it->decided) || it->release)
			return 1;
	}
	return 0;
}

/*
 * Test builds: die between the Redis reservations and the PostgreSQL commit
 * (after the first gate round that reserved stock), once per Redis database.
 */
static void fault_after_gate(batch_t *b, int reserved)
{
	if (b->fault_checked || reserved == 0)
		return;
	b->fault_checked = 1;
	if (fault_value("consumer_kill_after_gate") != b->partition)
		return;
	if (gate_claim_once(b->gate, "consumer_kill_after_gate") == 1) {
		log_error("fault injection: killed after the redis gate, before the postgresql commit");
		_exit(9);
	}
}

/*
 * Test builds: the results producer raises a fatal error once this batch's
 * results are queued (once per Redis database), as librdkafka 2.0.2's
 * idempotent producer can after a broker stall: the next batch then cannot
 * produce, and the process must leave and replay it.
 */
static void fault_results_fatal(batch_t *b)
{
	if (fault_value("consumer_kafka_fatal") != b->partition)
		return;
	if (gate_claim_once(b->gate, "consumer_kafka_fatal") == 1)
		results_test_fatal(b->results);
}

/* Answers read before a failure are real reservations: gate_reserve() keeps them in the items. */
static int gate_round(batch_t *b)
{
	int reserved = gate_reserve(b->gate, b->items, b->count);

	if (reserved < 0)
		return -1;
	fault_after_gate(b, reserved);
	return 0;
}

int batch_pregate(batch_t *b)
{
	if (b->count == 0 || b->items[0].admin != NULL || gate_redis(b->gate) == NULL)
		return 0;
	return gate_round(b);
}

void batch_swap(batch_t *a, batch_t *b)
{
	batch_t t = *a;
	batch_stats_t stats = a->stats;

	*a = *b;
	*b = t;
	b->stats = a->stats; /* the counts stay with their struct: they are the consumer's, not a batch's */
	a->stats = stats;
}

/*
 * The batch's log counts every outcome it reports; the metrics count each
 * decision once: a replay after a crash (the row or the rejection was
 * already written) and a second copy of a request add nothing, or
 * couponsd_issued_total would exceed the coupons issued.
 */
static void count_decision(batch_t *b, const item_t *it, const decision_t *d)
{
	if (it->status.state == STATUS_ISSUED) {
		b->stats.issued++;
		if (d->insert)
			metrics_inc(M_ISSUED);
	} else {
		b->stats.rejected[it->status.reason]++;
		if (d->record && !d->replay)
			metrics_inc((metric_t)(M_REJECTED_SOLD_OUT + it->status.reason - REASON_SOLD_OUT));
	}
}

/* Remembers a coupon's remaining for the convergence step; a later commit's value replaces an earlier one. */
static void note_sync(batch_t *b, const store_coupon_t *coupons, int n)
{
	if (b->nsync == 0) { /* the usual case: one commit per batch */
		memcpy(b->sync, coupons, sizeof(*coupons) * (size_t)n);
		b->nsync = n;
		return;
	}
	for (int k = 0; k < n; k++) {
		int j = 0;

		while (j < b->nsync && b->sync[j].coupon_id != coupons[k].coupon_id)
			j++;
		if (j == b->nsync && b->nsync < b->cfg->issue_batch_size)
			b->nsync++;
		if (j < b->nsync)
			b->sync[j] = coupons[k];
	}
}

/* The committed decisions become the items' (a decision never changes once made). */
static void apply_decisions(batch_t *b, const decision_t *decisions)
{
	int64_t now = clock_real_ms();

	for (int i = 0; i < b->count; i++) {
		item_t *it = &b->items[i];

		if (!item_for_store(it) || !decisions[i].decided)
			continue;
		it->decided = 1;
		it->release = decisions[i].release;
		it->status.state = decisions[i].state;
		it->status.reason = decisions[i].reason;
		it->status.decided_ms = now;
		count_decision(b, it, &decisions[i]);
	}
}

static store_rc_t store_round(batch_t *b)
{
	const decision_t *decisions;
	const store_coupon_t *coupons;
	int ncoupons = 0, any = 0;
	store_rc_t rc;

	for (int i = 0; i < b->count && !any; i++)
		any = item_for_store(&b->items[i]);
	if (!any)
		return STORE_OK;
	rc = store_commit(b->store, b->items, b->count, b->overlap, b->overlap_arg, &decisions, &coupons,
	                  &ncoupons);
	if (rc != STORE_OK)
		return rc;
	apply_decisions(b, decisions);
	note_sync(b, coupons, ncoupons);
	return STORE_OK;
}

/* Compensation: give back what Redis reserved for requests PostgreSQL did not issue. */
static int release_round(batch_t *b)
{
	int released = 0, rc = gate_release(b->gate, b->items, b->count, &released);

	b->stats.compensations += released;
	metrics_add(M_COMPENSATIONS, (uint64_t)released);
	return rc;
}

/*
 * The units x's undecided requests took from a coupon's Redis stock: fresh
 * reservations no commit has counted yet (x is the batch ahead, gated while
 * this one was in PostgreSQL, or this batch's requests that wait behind one
 * without a stock key: decide.h).
 */
static int reserved_undecided(const batch_t *x, int64_t coupon_id)
{
	int units = 0;

	for (int i = 0; x != NULL && i < x->count; i++) {
		const item_t *it = &x->items[i];

		units += item_valid(it) && it->admin == NULL && !it->decided && it->gate == GATE_RESERVED &&
		         it->status.event.coupon_id == coupon_id;
	}
	return units;
}

/*
 * Only after every release: a release after the SET would count its unit
 * twice. Redis should hold PostgreSQL's remaining less what is reserved and
 * not committed yet (reserved_undecided()): converging to the bare remaining
 * would hand those units out a second time.
 */
static int sync_round(batch_t *b)
{
	int64_t ids[SYNC_CHUNK];
	int remaining[SYNC_CHUNK];

	while (b->nsync > 0) {
		int n = b->nsync < SYNC_CHUNK ? b->nsync : SYNC_CHUNK;

		for (int k = 0; k < n; k++) {
			ids[k] = b->sync[b->nsync - n + k].coupon_id;
			remaining[k] = b->sync[b->nsync - n + k].remaining - reserved_undecided(b, ids[k]) -
			               reserved_undecided(b->ahead, ids[k]);
			/* More reserved than PostgreSQL has left (a reservation counted twice after a lost
			 * reply): nothing is left to hand out, and no reader may see negative stock. */
			if (remaining[k] < 0)
				remaining[k] = 0;
		}
		if (gate_sync_stock(b->gate, ids, remaining, n) != 0)
			return -1;
		b->nsync -= n;
	}
	return 0;
}

/* Requests that met a missing stock key ask again, now that the convergence step loaded it. */
static void requeue_no_stock(batch_t *b)
{
	for (int i = 0; i < b->count; i++) {
		if (!b->items[i].decided && b->items[i].gate == GATE_NO_STOCK)
			b->items[i].gate = GATE_PENDING;
	}
}

static batch_rc_t of_store(store_rc_t rc)
{
	return rc == STORE_NOT_OWNER ? BATCH_NOT_OWNER : rc == STORE_OK ? BATCH_DONE : BATCH_RETRY;
}

static batch_rc_t decide_rounds(batch_t *b)
{
	store_rc_t rc;

	for (int round = 0; round < MAX_ROUNDS; round++) {
		if (!unfinished(b))
			return BATCH_DONE;
		/* Ownership first: nothing is written, in Redis either, by a consumer that does not own the
		 * partition. */
		if ((rc = store_ensure(b->store)) != STORE_OK)
			return of_store(rc);
		if (gate_connect(b->gate) != 0 || gate_round(b) != 0)
			return BATCH_RETRY;
		if ((rc = store_round(b)) != STORE_OK)
			return of_store(rc);
		if (release_round(b) != 0 || sync_round(b) != 0)
			return BATCH_RETRY;
		requeue_no_stock(b);
	}
	if (!unfinished(b))
		return BATCH_DONE;
	log_warn("%s[%d]: stock keys vanished %d times in a row; backing off", b->cfg->kafka_topic,
	         b->partition, MAX_ROUNDS);
	return BATCH_RETRY;
}

static int publish_redis(batch_t *b)
{
	int any = 0;

	for (int i = 0; i < b->count && !any; i++)
		any = b->items[i].decided && !b->items[i].written;
	if (!any)
		return 0;
	if (gate_connect(b->gate) != 0)
		return -1;
	return results_write_redis(gate_redis(b->gate), b->cfg, b->items, b->count);
}

/* Queues every dead letter (and, unless dead_only, every written result) not yet delivered. */
static int produce_pending(batch_t *b, int dead_only)
{
	for (int i = 0; i < b->count; i++) {
		item_t *it = &b->items[i];
		int rc = 0;

		if (it->delivery == DELIVERY_FAILED)
			it->delivery = DELIVERY_NONE;
		if (it->delivery != DELIVERY_NONE)
			continue;
		if (!item_valid(it))
			rc = results_dead_letter(b->results, it);
		else if (!dead_only && it->written) /* written: results_write_redis() encoded it */
			rc = results_produce(b->results, it);
		if (rc != 0)
			return -1;
	}
	return 0;
}

batch_rc_t batch_deliveries(batch_t *b)
{
	if (results_in_flight(b->results) > 0)
		return BATCH_DELIVERING;
	results_report_failures(b->results);
	for (int i = 0; i < b->count; i++) {
		if (b->items[i].delivery != DELIVERY_DONE && b->items[i].delivery != DELIVERY_DROPPED)
			return BATCH_RETRY;
	}
	return BATCH_DONE;
}

/*
 * An admin change, alone in its batch: everything before it in the log is
 * decided and committed, nothing after it is, so its transaction sits exactly
 * at its place in the coupon's order. Then Redis stock converges to the new
 * remaining before any later request meets the gate. A retry (Redis down
 * after the commit) finds the change recorded and only converges again.
 */
static batch_rc_t admin_advance(batch_t *b)
{
	item_t *it = &b->items[0];
	store_change_t out;
	store_rc_t rc;
	int remaining;

	if ((rc = store_ensure(b->store)) != STORE_OK ||
	    (rc = store_apply_change(b->store, it->admin, b->partition, it->msg->offset, &out)) != STORE_OK)
		return of_store(rc);
	remaining = (int)out.remaining;
	if (out.exists && (gate_connect(b->gate) != 0 ||
	                   gate_sync_stock(b->gate, &it->admin->coupon_id, &remaining, 1) != 0))
		return BATCH_RETRY;
	if (!out.replay)
		b->stats.admin_changes++;
	it->decided = it->written = 1;
	it->delivery = DELIVERY_DONE; /* the audit row is its outcome: nothing goes to the results topic */
	return BATCH_DONE;
}

batch_rc_t batch_advance(batch_t *b)
{
	batch_rc_t rc;

	if (b->count == 1 && b->items[0].admin != NULL)
		return admin_advance(b);

	/* Dead letters need neither Redis nor PostgreSQL: they are on their way while the rest is decided. */
	if (produce_pending(b, 1) != 0)
		return BATCH_RETRY;
	if ((rc = decide_rounds(b)) != BATCH_DONE)
		return rc;
	if (publish_redis(b) != 0 || produce_pending(b, 0) != 0)
		return BATCH_RETRY;
	fault_results_fatal(b);
	return batch_deliveries(b);
}
