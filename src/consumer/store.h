/* SPDX-License-Identifier: BSD-2-Clause */
/* store.h: the consumer's PostgreSQL side: partition ownership, and the SQL of a batch's one transaction. */
#ifndef COUPONSD_STORE_H
#define COUPONSD_STORE_H

#include "consumer/decide.h"
#include "consumer/item.h"
#include "core/config.h"

#include <libpq-fe.h>
#include <stdint.h>

typedef enum {
	STORE_OK = 0,
	STORE_RETRY = -1,     /* PostgreSQL is unreachable or failed: try again later */
	STORE_NOT_OWNER = -2, /* another session holds this partition's ownership lock */
} store_rc_t;

/* A coupon the batch touched and its remaining stock after the commit (to converge Redis to it). */
typedef struct {
	int64_t coupon_id;
	int remaining;
} store_coupon_t;

typedef struct store store_t;

/* Room for a daemon.node (CONFIG_NODE_MAX) and its NUL. */
#define STORE_NODE 64

/* The ownership lock key k1 of a topic (k2 is the partition): FNV-1a of the topic name, as int4. */
int32_t store_lock_key(const char *topic);

store_t *store_new(const config_t *cfg, int partition);
void store_free(store_t *s);

/*
 * Makes sure the session is connected and owns the partition: connects,
 * applies migrations (postgres.auto_migrate), prepares statements and takes
 * pg_try_advisory_lock(k1, partition), then upserts partition_owners (this
 * node, since now) in the same session. Called before every write, so a
 * session lost to a PostgreSQL restart is replaced and re-locked first.
 * STORE_NOT_OWNER keeps the session: the next call (a standby's poll) only
 * asks for the lock again.
 */
store_rc_t store_ensure(store_t *s);

/* Between batches: drops a session the server ended or the network lost (and with it the ownership). */
void store_probe(store_t *s);

/* 1 while the session holds the partition's ownership lock. */
int store_owned(const store_t *s);

/* partition_owners' node before the last acquisition: "" when none (or this node's own row). */
const char *store_previous_owner(const store_t *s);

/* The owner's node and since (ISO 8601, UTC) from partition_owners: 1, 0 when no row, -1 on failure. */
int store_owner_of(store_t *s, char *node, size_t nodesize, char *since, size_t sincesize);

/* Work done while PostgreSQL writes and commits a batch (store_commit()); 1: it gated a batch ahead. */
typedef int (*store_overlap_fn)(void *arg);

/*
 * One transaction for the items that item_for_store() names (in Kafka log
 * order): locks their coupon rows, reads their issued and rejected rows,
 * decides them (decide_batch()), inserts the issued rows, decrements
 * remaining, records the rejections and commits. Two round trips: the
 * writes and the COMMIT go out together, and overlap(arg) (may be NULL)
 * runs while the server executes and flushes them; it must not use this
 * session. On STORE_OK, *decisions (n long, indexed like items) holds what
 * was decided and is now committed, and *coupons every existing coupon of
 * the items with its remaining after the commit; both valid until the next
 * call. After a COMMIT of unknown outcome a fresh reservation becomes
 * GATE_RESERVED_EARLIER in its item.
 */
store_rc_t store_commit(store_t *s, item_t *items, int n, store_overlap_fn overlap, void *arg,
                        const decision_t **decisions, const store_coupon_t **coupons, int *ncoupons);

/*
 * Deletes up to 10000 of this partition's rejected_requests rows older than
 * issue.result_ttl whose events are below committed, the consumer group's
 * committed offset (a replay starts there; 0 or less when unknown: only rows
 * without an offset go). Call after store_ensure. 0 with *deleted, or -1.
 */
int store_prune(store_t *s, int64_t committed, int *deleted);

/*
 * The stock check (stock_check.c): one page of at most limit coupons with
 * id > *cursor, in id order. out (limit long) gets (id, remaining) of those
 * still open (ends_at unset or in the future), *n of them; *cursor moves to
 * the last id scanned, or back to 0 after the last page. Call after
 * store_ensure, so only the partition's owner acts on it. STORE_OK or
 * STORE_RETRY.
 */
store_rc_t store_stock_page(store_t *s, int64_t *cursor, int limit, store_coupon_t *out, int *n);

/* The session (after store_ensure): store_admin.c runs its own transaction on it. */
PGconn *store_session(store_t *s);

/* What an admin change came to (store_admin.c). */
typedef struct {
	int exists; /* the coupon exists */
	admin_outcome_t outcome;
	int64_t remaining; /* the coupon's remaining after the change (to converge Redis to it) */
	int replay;        /* the change had been decided before: nothing was written */
} store_change_t;

/*
 * Decides one admin change in a transaction of its own (call after
 * store_ensure, between two batches, so it is ordered in the partition's log
 * like a request): locks the coupon row, returns the recorded outcome if
 * coupon_changes already has the changeId (a replay), else decides it
 * (decide_admin()), updates the coupon and records the change with the
 * coupon before and after. STORE_OK with *out, or STORE_RETRY.
 */
store_rc_t store_apply_change(store_t *s, const admin_event_t *ev, int partition, int64_t offset,
                              store_change_t *out);

#endif
