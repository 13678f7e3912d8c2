/* SPDX-License-Identifier: BSD-2-Clause */
/* decide.h: the rules that decide a batch, as pure functions: PostgreSQL's rows and the gate's answers in,
 * decisions out. */
#ifndef COUPONSD_DECIDE_H
#define COUPONSD_DECIDE_H

#include "consumer/item.h"
#include "core/admin_event.h"
#include "core/issue_event.h"

#include <stdint.h>

/* A coupon row as the batch's transaction locked it. */
typedef struct {
	int64_t id;
	int remaining; /* as locked (store.c later sets it to what the UPDATE returned) */
	int room;      /* out: what this batch could still issue after its decisions */
	int issued;    /* out: rows this batch inserts */
	int waiting;   /* out: a request met no stock key: it and the coupon's later requests wait */
	int has_start, has_end;
	int64_t start_us, end_us; /* [starts_at, ends_at) in microseconds since the epoch */
	int closed;               /* closed early by an admin change: every fresh request is NOT_OPEN */
} decide_coupon_t;

/* A (coupon, user) that already holds an issued row. */
typedef struct {
	int64_t coupon_id, user_id;
} decide_holder_t;

/* A request already in rejected_requests, and why. */
typedef struct {
	char request_id[UUID_TEXT_LEN + 1];
	reject_reason_t reason;
} decide_prior_t;

/*
 * What PostgreSQL holds for the batch, read under its coupon row locks.
 * decide_sort_facts() puts each array in the order decide_batch() searches.
 */
typedef struct {
	decide_coupon_t *coupons; /* the batch's coupons that exist */
	int ncoupons;
	char (*issued)[UUID_TEXT_LEN + 1]; /* request ids already in issued_coupons */
	int nissued;
	decide_holder_t *holders; /* (coupon, user) pairs already in issued_coupons */
	int nholders;
	decide_prior_t *rejected; /* request ids already in rejected_requests */
	int nrejected;
} decide_facts_t;

/* One item's decision; applied to the item only once the transaction that writes it has committed. */
typedef struct {
	int decided;            /* 0: undecided this time (GATE_NO_STOCK: asked again once stock is loaded) */
	request_state_t state;  /* ISSUED or REJECTED */
	reject_reason_t reason; /* REASON_NONE when ISSUED */
	int release;            /* the gate's reservation must be given back (compensation) */
	int insert;             /* a new issued_coupons row (its count is checked by INSERT ... RETURNING) */
	int record;             /* a new rejection for rejected_requests (first copy of a request only) */
	int replay;             /* decided before (its row or rejection exists): not a new decision */
} decision_t;

void decide_sort_facts(decide_facts_t *facts);

/*
 * Decides every item for which item_for_store() holds, in array order,
 * which is Kafka log order: first come, first served. out[i] is written for
 * every i < n (undecided for the others). facts->coupons' room and issued
 * are set. 0, or -1 when out of memory (nothing decided).
 *
 * The rules, per request:
 *  - a replay (its request id is issued) is ISSUED again; a fresh
 *    reservation of it is given back (Redis had forgotten the request and
 *    loaded stock that already counted it);
 *  - a request rejected before is rejected again for the same reason;
 *  - no such coupon: COUPON_NOT_FOUND; accepted outside [starts_at, ends_at):
 *    NOT_OPEN;
 *  - the user holds the coupon, or an earlier request of the batch for the
 *    same (coupon, user) is issued: ALREADY_ISSUED;
 *  - otherwise the locked remaining decides: the earliest requests fit,
 *    whether the gate reserved for them or said sold out (an earlier
 *    reservation may have gone to a request PostgreSQL does not issue), and
 *    the rest are SOLD_OUT; a request whose reservation was given back
 *    earlier stays rejected;
 *  - every rejected request's reservation is given back;
 *  - the same request twice in the batch (a producer retry) is decided once:
 *    the later copy follows the first and releases nothing;
 *  - a request the gate found no stock key for (GATE_NO_STOCK) stays
 *    undecided until the stock is loaded and it is asked again, and so do
 *    the coupon's later requests of the batch, whatever the gate told them
 *    (their answers are kept): a later request's answer may come from after
 *    the key was loaded again (a partly answered gate round, or one asked
 *    ahead of the previous batch's convergence), and deciding it now would
 *    give it a unit before an earlier request.
 */
int decide_batch(const item_t *items, int n, decide_facts_t *facts, decision_t *out);

/* A coupon row as an admin change finds it (locked) and leaves it. */
typedef struct {
	char name[ADMIN_NAME_MAX + 1];
	int64_t total, remaining;
	int has_start, has_end;
	int64_t start_ms, end_ms;
	int closed;
} admin_coupon_t;

typedef enum {
	ADMIN_APPLIED,
	ADMIN_REFUSED_BELOW_ISSUED, /* 409 TOTAL_BELOW_ISSUED: a total under what is already issued */
	ADMIN_REFUSED_WINDOW,       /* 409 INVALID_WINDOW: endsAt not after startsAt once merged */
} admin_outcome_t;

/*
 * The rules of an admin change, decided in log order between two batches
 * with the coupon row locked: the total moves (totalQuantity, or the total
 * plus addQuantity) but never below the issued count (total - remaining),
 * and remaining moves by the same amount, so remaining + issued = total
 * still holds; the window is the old one with the given bounds replaced;
 * an end at or before now_ms (the moment of the decision) closes the sale
 * for every later request, and an end after it (or none) reopens it. On a
 * refusal *after is the unchanged coupon and msg says why.
 */
admin_outcome_t decide_admin(const admin_event_t *ev, const admin_coupon_t *before, int64_t now_ms,
                             admin_coupon_t *after, char *msg, size_t size);

/* The 409 error code of a refusal ("TOTAL_BELOW_ISSUED", "INVALID_WINDOW"); NULL for ADMIN_APPLIED. */
const char *decide_admin_error(admin_outcome_t outcome);

#endif
