/* store.h: the consumer's PostgreSQL side: partition ownership and the write-through of a batch. */
#ifndef COUPONSD_STORE_H
#define COUPONSD_STORE_H

#include "core/config.h"
#include "core/issue_event.h"
#include "consumer/gate.h"

#include <libpq-fe.h>
#include <stdint.h>

typedef enum {
	STORE_OK = 0,
	STORE_RETRY = -1,     /* PostgreSQL is unreachable or failed: try again later */
	STORE_NOT_OWNER = -2, /* another session holds this partition's ownership lock */
} store_rc_t;

/*
 * One request handed to store_commit(). The store decides it from what the
 * gate said and what PostgreSQL holds; the decision is written only when the
 * transaction committed.
 */
typedef struct {
	const issue_event_t *event;
	gate_outcome_t gate;    /* in (RESERVED becomes RESERVED_EARLIER after a COMMIT of unknown outcome) */
	int decided;            /* out: 1 when decided by this commit */
	request_state_t state;  /* out: ISSUED or REJECTED */
	reject_reason_t reason; /* out */
	int release;            /* out: the gate's reservation must be given back (compensation) */
} store_item_t;

/* A coupon the batch touched and its remaining stock after the commit (to converge Redis to it). */
typedef struct {
	int64_t coupon_id;
	int remaining;
} store_coupon_t;

typedef struct store store_t;

/*
 * Connects with timeouts that keep a dead server from hanging the caller
 * (connect_timeout, tcp_user_timeout, keepalives; each overridable in
 * conninfo). Returns NULL with the reason in err.
 */
PGconn *store_pg_connect(const char *conninfo, int64_t timeout_ms, const char *application_name, char *err,
                         size_t errsize);

/* The ownership lock key k1 of a topic (k2 is the partition): FNV-1a of the topic name, as int4. */
int32_t store_lock_key(const char *topic);

store_t *store_new(const config_t *cfg, int partition);
void store_free(store_t *s);

/*
 * Makes sure the session is connected and owns the partition: connects,
 * applies migrations (postgres.auto_migrate), prepares statements and takes
 * pg_try_advisory_lock(k1, partition). Called before every write, so a
 * session lost to a PostgreSQL restart is replaced and re-locked first.
 */
store_rc_t store_ensure(store_t *s);

/*
 * One transaction for the items (in Kafka log order; gate outcome known):
 * locks their coupon rows, decides each, inserts the issued rows,
 * decrements remaining and records the rejections. On STORE_OK, *coupons lists every existing coupon of
 * the items with its remaining after the commit (valid until the next call).
 */
store_rc_t store_commit(store_t *s, store_item_t *items, int n, const store_coupon_t **coupons,
                        int *ncoupons);

/*
 * Deletes up to 10000 of this partition's rejected_requests rows older than
 * issue.result_ttl (call after store_ensure). 0 with *deleted, or -1.
 */
int store_prune(store_t *s, int *deleted);

/*
 * The stock check (stock_check.c): one page of at most limit coupons with
 * id > *cursor, in id order. out (limit long) gets (id, remaining) of those
 * still open (ends_at unset or in the future), *n of them; *cursor moves to
 * the last id scanned, or back to 0 after the last page. Call after
 * store_ensure, so only the partition's owner acts on it. STORE_OK or
 * STORE_RETRY.
 */
store_rc_t store_stock_page(store_t *s, int64_t *cursor, int limit, store_coupon_t *out, int *n);

#endif
