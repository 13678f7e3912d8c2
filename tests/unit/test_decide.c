/* SPDX-License-Identifier: BSD-2-Clause */
/* test_decide.c: TAP unit tests of the decision rules (decide.c): FCFS, sold out, one per user, replays,
 * releases. */
#include <stdio.h>
#include <string.h>

#include "consumer/decide.h"
#include "tap.h"

#define MAX_ITEMS 16

/* A batch under test and what PostgreSQL holds for it. */
typedef struct {
	item_t items[MAX_ITEMS];
	int n;
	decide_coupon_t coupons[4];
	char issued[4][UUID_TEXT_LEN + 1];
	decide_holder_t holders[4];
	decide_prior_t rejected[4];
	decide_facts_t facts;
	decision_t out[MAX_ITEMS];
} fixture_t;

static void fixture_init(fixture_t *f)
{
	memset(f, 0, sizeof(*f));
	f->facts.coupons = f->coupons;
	f->facts.issued = f->issued;
	f->facts.holders = f->holders;
	f->facts.rejected = f->rejected;
}

/* A coupon row: open at any time unless a window is given later. */
static decide_coupon_t *coupon(fixture_t *f, int64_t id, int remaining)
{
	decide_coupon_t *c = &f->coupons[f->facts.ncoupons++];

	c->id = id;
	c->remaining = remaining;
	return c;
}

/* Request number rid (its UUID is derived from it) of user for coupon, accepted at ms 1000. */
static item_t *request(fixture_t *f, int rid, int64_t coupon_id, int64_t user_id, gate_outcome_t gate)
{
	item_t *it = &f->items[f->n++];

	snprintf(it->status.event.request_id, sizeof(it->status.event.request_id),
	         "00000000-0000-4000-8000-%012d", rid);
	it->status.event.coupon_id = coupon_id;
	it->status.event.user_id = user_id;
	it->status.event.accepted_ms = 1000;
	it->gate = gate;
	return it;
}

static void already_issued(fixture_t *f, int rid, int64_t coupon_id, int64_t user_id)
{
	snprintf(f->issued[f->facts.nissued++], UUID_TEXT_LEN + 1, "00000000-0000-4000-8000-%012d", rid);
	f->holders[f->facts.nholders++] = (decide_holder_t){coupon_id, user_id};
}

static void rejected_before(fixture_t *f, int rid, reject_reason_t reason)
{
	decide_prior_t *p = &f->rejected[f->facts.nrejected++];

	snprintf(p->request_id, sizeof(p->request_id), "00000000-0000-4000-8000-%012d", rid);
	p->reason = reason;
}

static int run(fixture_t *f)
{
	decide_sort_facts(&f->facts);
	return decide_batch(f->items, f->n, &f->facts, f->out);
}

/* One decision against what it should be: state (0: undecided), reason and release. */
static void expect(const fixture_t *f, int i, request_state_t state, reject_reason_t reason, int release,
                   const char *what)
{
	const decision_t *d = &f->out[i];

	if (state == STATUS_PENDING) {
		ok(!d->decided, "%s: undecided", what);
		return;
	}
	ok(d->decided && d->state == state && d->reason == reason && d->release == release,
	   "%s: %s %s, release %d (got %s %s, release %d%s)", what, status_state_name(state),
	   reason != REASON_NONE ? status_reason_name(reason) : "", release, status_state_name(d->state),
	   d->reason != REASON_NONE ? status_reason_name(d->reason) : "", d->release,
	   d->decided ? "" : ", undecided");
}

static void test_fcfs(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 2);
	for (int i = 0; i < 4; i++)
		request(&f, i + 1, 1, 100 + i, GATE_RESERVED);
	is_int(run(&f), 0, "fcfs: decided");
	expect(&f, 0, STATUS_ISSUED, REASON_NONE, 0, "fcfs: first in the log");
	expect(&f, 1, STATUS_ISSUED, REASON_NONE, 0, "fcfs: second in the log");
	expect(&f, 2, STATUS_REJECTED, REASON_SOLD_OUT, 1,
	       "fcfs: third, beyond remaining, gives its unit back");
	expect(&f, 3, STATUS_REJECTED, REASON_SOLD_OUT, 1, "fcfs: fourth, the same");
	ok(f.out[0].insert && f.out[1].insert && !f.out[2].insert && !f.out[3].insert,
	   "fcfs: only the two earliest are inserted");
	is_int(f.coupons[0].issued, 2, "fcfs: the coupon's remaining goes down by two");
	is_int(f.coupons[0].room, 0, "fcfs: no room left");
	ok(f.out[2].record && f.out[3].record && !f.out[0].record, "fcfs: the rejections are recorded");
}

/*
 * The gate said sold out for an earlier request but reserved for a later one
 * (the earlier reservation went to someone PostgreSQL does not issue):
 * first come, first served gives the unit to the earlier one.
 */
static void test_sold_out(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 1);
	request(&f, 1, 1, 100, GATE_SOLD_OUT);
	request(&f, 2, 1, 101, GATE_RESERVED);
	request(&f, 3, 1, 102, GATE_SOLD_OUT);
	run(&f);
	expect(&f, 0, STATUS_ISSUED, REASON_NONE, 0,
	       "sold out: the earliest fits although the gate said sold out");
	expect(&f, 1, STATUS_REJECTED, REASON_SOLD_OUT, 1, "sold out: the later reservation is given back");
	expect(&f, 2, STATUS_REJECTED, REASON_SOLD_OUT, 0,
	       "sold out: no room, nothing reserved to give back");

	fixture_init(&f);
	coupon(&f, 1, 0);
	request(&f, 1, 1, 100, GATE_RESERVED);
	run(&f);
	expect(&f, 0, STATUS_REJECTED, REASON_SOLD_OUT, 1,
	       "sold out: a reservation beyond PostgreSQL's remaining (Redis drifted) is given back");
	is_int(f.coupons[0].issued, 0, "sold out: nothing issued");
}

static void test_already_issued(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 5);
	already_issued(&f, 9, 1, 100);
	request(&f, 1, 1, 100, GATE_RESERVED);
	request(&f, 2, 1, 101, GATE_RESERVED);
	request(&f, 3, 1, 101, GATE_RESERVED);
	request(&f, 4, 1, 100, GATE_RELEASED_EARLIER);
	run(&f);
	expect(&f, 0, STATUS_REJECTED, REASON_ALREADY_ISSUED, 1, "one per user: the holder's new request");
	expect(&f, 1, STATUS_ISSUED, REASON_NONE, 0, "one per user: a new user's first request");
	expect(&f, 2, STATUS_REJECTED, REASON_ALREADY_ISSUED, 1,
	       "one per user: the same user's second request in the batch");
	expect(&f, 3, STATUS_REJECTED, REASON_ALREADY_ISSUED, 0,
	       "one per user: released earlier, and the user holds it");
	is_int(f.coupons[0].issued, 1, "one per user: one row inserted");
}

static void test_replays(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 0);
	already_issued(&f, 1, 1, 100);
	already_issued(&f, 2, 1, 101);
	rejected_before(&f, 3, REASON_NOT_OPEN);
	rejected_before(&f, 4, REASON_SOLD_OUT);
	request(&f, 1, 1, 100, GATE_RESERVED_EARLIER);
	request(&f, 2, 1, 101, GATE_RESERVED);
	request(&f, 3, 1, 102, GATE_SOLD_OUT);
	request(&f, 4, 1, 103, GATE_RESERVED_EARLIER);
	run(&f);
	expect(&f, 0, STATUS_ISSUED, REASON_NONE, 0, "replay: issued before, its own reservation stays");
	expect(&f, 1, STATUS_ISSUED, REASON_NONE, 1,
	       "replay: issued before, a fresh reservation (Redis forgot) is given back");
	expect(&f, 2, STATUS_REJECTED, REASON_NOT_OPEN, 0, "replay: rejected before keeps its first reason");
	expect(&f, 3, STATUS_REJECTED, REASON_SOLD_OUT, 1,
	       "replay: rejected before gives back what it holds");
	ok(!f.out[0].insert && !f.out[1].insert, "replay: no row inserted twice");

	fixture_init(&f);
	coupon(&f, 1, 1);
	request(&f, 1, 1, 100, GATE_RESERVED);
	request(&f, 1, 1, 100, GATE_RESERVED);
	request(&f, 2, 1, 101, GATE_RESERVED);
	request(&f, 2, 1, 101, GATE_RESERVED);
	run(&f);
	expect(&f, 0, STATUS_ISSUED, REASON_NONE, 0, "duplicate in the batch: the first copy decides");
	expect(&f, 1, STATUS_ISSUED, REASON_NONE, 0, "duplicate in the batch: the copy follows it");
	expect(&f, 2, STATUS_REJECTED, REASON_SOLD_OUT, 1,
	       "duplicate in the batch: a rejected first copy releases");
	expect(&f, 3, STATUS_REJECTED, REASON_SOLD_OUT, 0,
	       "duplicate in the batch: its copy never releases twice");
	ok(f.out[0].insert && !f.out[1].insert, "duplicate in the batch: inserted once");
	ok(f.out[2].record && !f.out[3].record, "duplicate in the batch: rejection recorded once");
}

static void test_reservations_given_back(void)
{
	fixture_t f;
	decide_coupon_t *c;

	fixture_init(&f);
	coupon(&f, 1, 5);
	c = coupon(&f, 2, 5);
	c->has_start = 1;
	c->start_us = 2000 * 1000; /* opens after the requests were accepted */
	c = coupon(&f, 3, 5);
	c->has_end = 1;
	c->end_us = 1000 * 1000; /* [starts_at, ends_at): accepted at the end is too late */
	request(&f, 1, 7, 100, GATE_RESERVED);
	request(&f, 2, 2, 100, GATE_RESERVED_EARLIER);
	request(&f, 3, 3, 100, GATE_RESERVED);
	request(&f, 4, 1, 100, GATE_RELEASED_EARLIER);
	request(&f, 5, 1, 101, GATE_NO_STOCK);
	run(&f);
	expect(&f, 0, STATUS_REJECTED, REASON_COUPON_NOT_FOUND, 1, "release: no such coupon");
	expect(&f, 1, STATUS_REJECTED, REASON_NOT_OPEN, 1, "release: before starts_at");
	expect(&f, 2, STATUS_REJECTED, REASON_NOT_OPEN, 1, "release: at ends_at");
	expect(&f, 3, STATUS_REJECTED, REASON_SOLD_OUT, 0,
	       "release: released earlier stays rejected, nothing to give");
	expect(&f, 4, STATUS_PENDING, REASON_NONE, 0, "no stock key: asked again after the stock is loaded");
	is_int(f.coupons[0].issued, 0, "release: nothing issued");
}

/*
 * A request without a stock key holds back the coupon's later requests: their
 * answers may come from after the key was loaded again (a gate round answered
 * in part before a failure, or the batch gated ahead of the previous one's
 * convergence), and deciding them first would break first come, first served.
 */
static void test_no_stock_holds_later_requests(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 1);
	coupon(&f, 2, 5);
	request(&f, 1, 1, 100, GATE_RESERVED);
	request(&f, 2, 2, 200, GATE_NO_STOCK);
	request(&f, 3, 2, 201, GATE_RESERVED);
	request(&f, 4, 2, 202, GATE_SOLD_OUT);
	request(&f, 5, 1, 101, GATE_SOLD_OUT);
	run(&f);
	expect(&f, 0, STATUS_ISSUED, REASON_NONE, 0, "another coupon goes on");
	expect(&f, 1, STATUS_PENDING, REASON_NONE, 0, "no stock key: waits for the stock");
	expect(&f, 2, STATUS_PENDING, REASON_NONE, 0, "a later reservation of that coupon waits too");
	expect(&f, 3, STATUS_PENDING, REASON_NONE, 0, "so does a later sold out");
	expect(&f, 4, STATUS_REJECTED, REASON_SOLD_OUT, 0, "the other coupon: sold out after the first");
	is_int(f.coupons[1].issued, 0, "nothing of the waiting coupon issued");
	is_int(f.coupons[1].waiting, 1, "the coupon waits");
}

/* Items the store does not decide now: not asked yet, decided already, or undecodable. */
static void test_not_for_the_store(void)
{
	fixture_t f;
	item_t *done;

	fixture_init(&f);
	coupon(&f, 1, 1);
	request(&f, 1, 1, 100, GATE_PENDING);
	done = request(&f, 2, 1, 101, GATE_RESERVED);
	done->decided = 1;
	snprintf(request(&f, 3, 1, 102, GATE_RESERVED)->error, sizeof(done->error), "bad");
	request(&f, 4, 1, 103, GATE_RESERVED);
	run(&f);
	expect(&f, 0, STATUS_PENDING, REASON_NONE, 0, "not asked yet: left alone");
	expect(&f, 1, STATUS_PENDING, REASON_NONE, 0, "decided earlier: left alone");
	expect(&f, 2, STATUS_PENDING, REASON_NONE, 0, "undecodable: left alone");
	expect(&f, 3, STATUS_ISSUED, REASON_NONE, 0, "the one for the store gets the unit");
}

/* A request accepted inside the window is still NOT_OPEN once an admin change closed the sale early. */
static void test_closed_early(void)
{
	fixture_t f;

	fixture_init(&f);
	coupon(&f, 1, 5);
	f.coupons[0].closed = 1;
	request(&f, 1, 1, 100, GATE_RESERVED);
	run(&f);
	expect(&f, 0, STATUS_REJECTED, REASON_NOT_OPEN, 1,
	       "closed early: NOT_OPEN, the reservation given back");
}

static admin_coupon_t admin_coupon(int64_t total, int64_t remaining)
{
	admin_coupon_t c;

	memset(&c, 0, sizeof(c));
	snprintf(c.name, sizeof(c.name), "sale");
	c.total = total;
	c.remaining = remaining;
	return c;
}

static void test_admin_quantity(void)
{
	admin_coupon_t before = admin_coupon(10, 0), after;
	admin_event_t ev;
	char msg[160];

	memset(&ev, 0, sizeof(ev));
	ev.fields = ADMIN_F_ADD;
	ev.add = 5;
	is_int(decide_admin(&ev, &before, 0, &after, msg, sizeof(msg)), ADMIN_APPLIED,
	       "add to a sold-out coupon");
	is_int(after.total * 1000 + after.remaining, 15005, "total 15, remaining 5: the new units only");
	ev.fields = ADMIN_F_TOTAL;
	ev.total = 9;
	is_int(decide_admin(&ev, &before, 0, &after, msg, sizeof(msg)), ADMIN_REFUSED_BELOW_ISSUED,
	       "a total below the 10 issued is refused");
	is_int(after.total * 1000 + after.remaining, 10000, "a refusal leaves the coupon as it was");
	is_str(decide_admin_error(ADMIN_REFUSED_BELOW_ISSUED), "TOTAL_BELOW_ISSUED", "its 409 code");
	before = admin_coupon(10, 4);
	ev.total = 6;
	is_int(decide_admin(&ev, &before, 0, &after, msg, sizeof(msg)), ADMIN_APPLIED,
	       "down to exactly the issued");
	is_int(after.remaining, 0, "remaining 0 then");
}

static void test_admin_window(void)
{
	admin_coupon_t before = admin_coupon(10, 10), after;
	admin_event_t ev;
	char msg[160];

	memset(&ev, 0, sizeof(ev));
	before.has_start = 1;
	before.start_ms = 5000;
	ev.fields = ADMIN_F_ENDS;
	ev.ends_ms = 4000;
	is_int(decide_admin(&ev, &before, 9000, &after, msg, sizeof(msg)), ADMIN_REFUSED_WINDOW,
	       "an end before the kept start is refused");
	ev.ends_ms = 8000;
	is_int(decide_admin(&ev, &before, 9000, &after, msg, sizeof(msg)), ADMIN_APPLIED,
	       "an end in the past");
	ok(after.closed && after.has_end && after.end_ms == 8000,
	   "an end at or before the decision closes the sale");
	before = after;
	ev.fields = ADMIN_F_NAME;
	snprintf(ev.name, sizeof(ev.name), "renamed");
	decide_admin(&ev, &before, 9000, &after, msg, sizeof(msg));
	ok(after.closed && strcmp(after.name, "renamed") == 0, "a rename keeps it closed");
	before = after;
	ev.fields = ADMIN_F_ENDS;
	ev.ends_null = 1;
	decide_admin(&ev, &before, 9000, &after, msg, sizeof(msg));
	ok(!after.closed && !after.has_end, "endsAt null reopens it, unbounded");
}

int main(void)
{
	test_closed_early();
	test_admin_quantity();
	test_admin_window();
	test_fcfs();
	test_sold_out();
	test_already_issued();
	test_replays();
	test_reservations_given_back();
	test_not_for_the_store();
	test_no_stock_holds_later_requests();
	return done_testing();
}
