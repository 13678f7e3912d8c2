/* SPDX-License-Identifier: BSD-2-Clause */
/* test_results.c: TAP unit tests of the consumer's results producer: delivery states after an abandon. */
#include <event2/event.h>
#include <string.h>

/* With the folder, as in src/ (see test_config.c). */
#include "consumer/item.h"
#include "consumer/results.h"
#include "core/config.h"
#include "tap.h"

/* Nothing listens there: every message stays queued until it is purged. */
#define NOWHERE "127.0.0.1:1"

static void item_for(item_t *it, char *json)
{
	memset(it, 0, sizeof(*it));
	it->status.event.coupon_id = 7;
	it->json = json;
}

/*
 * A consumer that lost its partition with a batch in flight abandons its
 * results (nothing may be written into a dropped batch), and one that wins
 * the partition back must see its deliveries again: otherwise its first batch
 * waits for a report that is never recorded, and the partition is wedged.
 */
static void test_reattach_after_abandon(const config_t *cfg, struct event_base *base)
{
	char json[] = "{}";
	item_t before, after;
	results_t *r = results_new(cfg, NOWHERE, 0, base, NULL, NULL);

	if (!ok(r != NULL, "a results producer"))
		return;
	item_for(&before, json);
	ok(results_produce(r, &before) == 0 && before.delivery == DELIVERY_IN_FLIGHT, "a result is queued");
	results_abandon(r);
	ok(before.delivery == DELIVERY_FAILED && results_in_flight(r) == 0,
	   "abandoned: the purge is reported, as failed, before the states are let go");
	ok(results_reattach(r) == 0, "nothing unreported: it can be reattached");
	item_for(&after, json);
	ok(results_produce(r, &after) == 0 && after.delivery == DELIVERY_IN_FLIGHT,
	   "a result of the regained "
	   "partition is queued");
	results_abandon(r);
	ok(after.delivery == DELIVERY_FAILED,
	   "its report is recorded again (it stayed in flight for good before)");
	results_free(r);
}

int main(void)
{
	config_errors_t errs = {0};
	config_t *cfg = config_load_buffer("t.yaml", "", 0, &errs);
	struct event_base *base = event_base_new();

	if (ok(cfg != NULL && base != NULL, "a default configuration and an event base"))
		test_reattach_after_abandon(cfg, base);
	if (base != NULL)
		event_base_free(base);
	config_free(cfg);
	config_errors_clear(&errs);
	return done_testing();
}
