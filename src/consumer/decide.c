/* SPDX-License-Identifier: BSD-2-Clause */
/* decide.c: the rules that decide a batch, as pure functions: PostgreSQL's rows and the gate's answers in,
 * decisions out. */
#include "consumer/decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An item's place among the batch's requests (the items the store decides now). */
typedef struct {
	int primary;         /* the first item with the same request id */
	int leader;          /* the first item with the same (coupon, user) */
	unsigned char taken; /* as a leader: an item of its (coupon, user) is being issued */
} group_t;

typedef struct {
	const char *request_id;
	int index;
} rid_t;

typedef struct {
	int64_t coupon_id, user_id;
	int index;
} pair_t;

/* The batch being decided: the facts, the decisions and the grouping. */
typedef struct {
	const item_t *items;
	decide_facts_t *facts;
	decision_t *out;
	group_t *group;
} decider_t;

static int cmp_text(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int cmp_holder(const void *a, const void *b)
{
	const decide_holder_t *x = a, *y = b;

	if (x->coupon_id != y->coupon_id)
		return x->coupon_id < y->coupon_id ? -1 : 1;
	return (x->user_id > y->user_id) - (x->user_id < y->user_id);
}

static int cmp_coupon(const void *a, const void *b)
{
	const decide_coupon_t *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

static int cmp_rid(const void *a, const void *b)
{
	const rid_t *x = a, *y = b;
	int c = strcmp(x->request_id, y->request_id);

	return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

static int cmp_pair(const void *a, const void *b)
{
	const pair_t *x = a, *y = b;

	if (x->coupon_id != y->coupon_id)
		return x->coupon_id < y->coupon_id ? -1 : 1;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

void decide_sort_facts(decide_facts_t *f)
{
	qsort(f->coupons, (size_t)f->ncoupons, sizeof(*f->coupons), cmp_coupon);
	qsort(f->issued, (size_t)f->nissued, sizeof(*f->issued), cmp_text);
	qsort(f->holders, (size_t)f->nholders, sizeof(*f->holders), cmp_holder);
	qsort(f->rejected, (size_t)f->nrejected, sizeof(*f->rejected), cmp_text);
}

/*
 * The same event twice in one batch (a producer retry) is one request: the
 * later copy follows the first. Two requests of one user for one coupon are
 * two requests: the later one is ALREADY_ISSUED if the first is issued.
 */
static int group_items(const item_t *items, int n, group_t *group)
{
	rid_t *rids = malloc(sizeof(*rids) * (size_t)(n > 0 ? n : 1));
	pair_t *pairs = malloc(sizeof(*pairs) * (size_t)(n > 0 ? n : 1));
	int m = 0;

	if (rids == NULL || pairs == NULL) {
		free(rids);
		free(pairs);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const issue_event_t *ev = &items[i].status.event;

		if (!item_for_store(&items[i]))
			continue;
		rids[m] = (rid_t){ev->request_id, i};
		pairs[m++] = (pair_t){ev->coupon_id, ev->user_id, i};
	}
	qsort(rids, (size_t)m, sizeof(*rids), cmp_rid);
	qsort(pairs, (size_t)m, sizeof(*pairs), cmp_pair);
	for (int k = 0; k < m; k++) {
		int same_rid = k > 0 && strcmp(rids[k].request_id, rids[k - 1].request_id) == 0;
		int same_pair = k > 0 && pairs[k].coupon_id == pairs[k - 1].coupon_id &&
		                pairs[k].user_id == pairs[k - 1].user_id;

		group[rids[k].index].primary = same_rid ? group[rids[k - 1].index].primary : rids[k].index;
		group[pairs[k].index].leader = same_pair ? group[pairs[k - 1].index].leader : pairs[k].index;
	}
	free(rids);
	free(pairs);
	return 0;
}

static int request_issued(const decide_facts_t *f, const char *request_id)
{
	return bsearch(request_id, f->issued, (size_t)f->nissued, sizeof(*f->issued), cmp_text) != NULL;
}

static const decide_prior_t *prior_rejection(const decide_facts_t *f, const char *request_id)
{
	return bsearch(request_id, f->rejected, (size_t)f->nrejected, sizeof(*f->rejected), cmp_text);
}

static int user_holds(const decide_facts_t *f, const issue_event_t *ev)
{
	decide_holder_t key = {ev->coupon_id, ev->user_id};

	return bsearch(&key, f->holders, (size_t)f->nholders, sizeof(*f->holders), cmp_holder) != NULL;
}

static decide_coupon_t *find_coupon(const decide_facts_t *f, int64_t id)
{
	decide_coupon_t key = {.id = id};

	return bsearch(&key, f->coupons, (size_t)f->ncoupons, sizeof(*f->coupons), cmp_coupon);
}

/* [starts_at, ends_at), either end open when NULL; never once an admin change closed the sale early. */
static int coupon_open(const decide_coupon_t *c, int64_t accepted_ms)
{
	int64_t at = accepted_ms * 1000;

	return !c->closed && (!c->has_start || at >= c->start_us) && (!c->has_end || at < c->end_us);
}

static void set_decision(decision_t *d, request_state_t state, reject_reason_t reason, int release)
{
	d->decided = 1;
	d->state = state;
	d->reason = reason;
	d->release = release;
}

/*
 * A request the locked remaining decides: the earliest ones in log order fit.
 * That holds for a reservation and for a request the gate called sold out
 * alike: an earlier request of this batch may hold a unit PostgreSQL will
 * not issue (ALREADY_ISSUED), and first come, first served says it is the
 * next one's. reserved: a unit to give back when this one is rejected. The
 * batch's convergence step sets the Redis stock to remaining after the
 * releases.
 */
static void decide_by_room(decider_t *d, int i, decide_coupon_t *c, int reserved)
{
	group_t *leader = &d->group[d->group[i].leader];

	if (user_holds(d->facts, &d->items[i].status.event) || leader->taken) {
		set_decision(&d->out[i], STATUS_REJECTED, REASON_ALREADY_ISSUED, reserved);
	} else if (c->room <= 0) {
		/* A reservation here: Redis let more through than PostgreSQL allows (rebuilt or drifted). */
		set_decision(&d->out[i], STATUS_REJECTED, REASON_SOLD_OUT, reserved);
	} else {
		c->room--;
		c->issued++;
		leader->taken = 1;
		d->out[i].insert = 1;
		set_decision(&d->out[i], STATUS_ISSUED, REASON_NONE, 0);
	}
}

static void decide_one(decider_t *d, int i)
{
	const item_t *it = &d->items[i];
	const issue_event_t *ev = &it->status.event;
	decision_t *out = &d->out[i];
	int reserved = it->gate == GATE_RESERVED || it->gate == GATE_RESERVED_EARLIER;
	const decide_prior_t *prior;
	decide_coupon_t *c;

	/*
	 * A replay. If the gate reserved afresh, Redis had forgotten the request
	 * and loaded stock from PostgreSQL, which already counted it: give it back.
	 */
	if (request_issued(d->facts, ev->request_id)) {
		set_decision(out, STATUS_ISSUED, REASON_NONE, it->gate == GATE_RESERVED);
		out->replay = 1;
	} else if ((prior = prior_rejection(d->facts, ev->request_id)) != NULL) {
		/* Rejected before: say so again, and give back any reservation this replay took or left
		 * behind. */
		set_decision(out, STATUS_REJECTED, prior->reason, reserved);
		out->replay = 1;
	} else if ((c = find_coupon(d->facts, ev->coupon_id)) == NULL)
		set_decision(out, STATUS_REJECTED, REASON_COUPON_NOT_FOUND, reserved);
	else if (!coupon_open(c, ev->accepted_ms))
		set_decision(out, STATUS_REJECTED, REASON_NOT_OPEN, reserved);
	else if (c->waiting || it->gate == GATE_NO_STOCK)
		c->waiting = 1; /* undecided: the stock is loaded from PostgreSQL and the gate asked again */
	else if (it->gate == GATE_SOLD_OUT)
		decide_by_room(d, i, c, 0);
	else if (it->gate == GATE_RELEASED_EARLIER)
		set_decision(out, STATUS_REJECTED,
		             user_holds(d->facts, ev) ? REASON_ALREADY_ISSUED : REASON_SOLD_OUT, 0);
	else if (reserved)
		decide_by_room(d, i, c, 1);
}

int decide_batch(const item_t *items, int n, decide_facts_t *facts, decision_t *out)
{
	decider_t d = {items, facts, out, calloc((size_t)(n > 0 ? n : 1), sizeof(group_t))};

	memset(out, 0, sizeof(*out) * (size_t)n);
	if (d.group == NULL || group_items(items, n, d.group) != 0) {
		free(d.group);
		return -1;
	}
	for (int k = 0; k < facts->ncoupons; k++) {
		facts->coupons[k].room = facts->coupons[k].remaining;
		facts->coupons[k].issued = 0;
		facts->coupons[k].waiting = 0;
	}
	for (int i = 0; i < n; i++) {
		if (item_for_store(&items[i]) && d.group[i].primary == i)
			decide_one(&d, i);
	}
	for (int i = 0; i < n; i++) {
		const decision_t *first = &out[d.group[i].primary];

		if (!item_for_store(&items[i]))
			continue;
		if (d.group[i].primary != i && first->decided) {
			/* The copy shares the first one's reservation record: it is never released twice. */
			set_decision(&out[i], first->state, first->reason, 0);
		}
		out[i].record = out[i].decided && out[i].state == STATUS_REJECTED && d.group[i].primary == i;
	}
	free(d.group);
	return 0;
}

static void apply_window(const admin_event_t *ev, admin_coupon_t *after)
{
	if (ev->fields & ADMIN_F_STARTS) {
		after->has_start = !ev->starts_null;
		after->start_ms = ev->starts_null ? 0 : ev->starts_ms;
	}
	if (ev->fields & ADMIN_F_ENDS) {
		after->has_end = !ev->ends_null;
		after->end_ms = ev->ends_null ? 0 : ev->ends_ms;
	}
}

admin_outcome_t decide_admin(const admin_event_t *ev, const admin_coupon_t *before, int64_t now_ms,
                             admin_coupon_t *after, char *msg, size_t size)
{
	int64_t issued = before->total - before->remaining, total = before->total;

	*after = *before;
	if (ev->fields & ADMIN_F_TOTAL)
		total = ev->total;
	else if (ev->fields & ADMIN_F_ADD)
		total = before->total + ev->add;
	if (total < issued || total > ADMIN_QUANTITY_MAX) {
		snprintf(msg, size, "totalQuantity %lld is below the %lld units already issued, or too large",
		         (long long)total, (long long)issued);
		return ADMIN_REFUSED_BELOW_ISSUED;
	}
	apply_window(ev, after);
	if (after->has_start && after->has_end && after->end_ms <= after->start_ms) {
		*after = *before;
		snprintf(msg, size, "endsAt must be after startsAt");
		return ADMIN_REFUSED_WINDOW;
	}
	if (ev->fields & ADMIN_F_NAME)
		snprintf(after->name, sizeof(after->name), "%s", ev->name);
	after->total = total;
	after->remaining = total - issued;
	/* Only a change of the end decides whether the sale is closed early: a rename leaves it as it was. */
	if (ev->fields & ADMIN_F_ENDS)
		after->closed = after->has_end && after->end_ms <= now_ms;
	msg[0] = '\0';
	return ADMIN_APPLIED;
}

const char *decide_admin_error(admin_outcome_t outcome)
{
	switch (outcome) {
	case ADMIN_REFUSED_BELOW_ISSUED:
		return "TOTAL_BELOW_ISSUED";
	case ADMIN_REFUSED_WINDOW:
		return "INVALID_WINDOW";
	default:
		return NULL;
	}
}
