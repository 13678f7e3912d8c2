/* SPDX-License-Identifier: BSD-2-Clause */
/* stock_check.c: the consumer's periodic check that its coupons' Redis stock exists and is right. */
#include "consumer/stock_check.h"

#include "core/admission.h"
#include "core/clock.h"
#include "core/log.h"

#include <stdlib.h>

/*
 * Coupons read from PostgreSQL per tick (expired ones count too, see
 * store.c's stock_page_sql): the cost of a tick is bounded, and a pass over
 * N coupons takes N / STOCK_CHECK_PAGE ticks.
 */
#define STOCK_CHECK_PAGE 2000

struct stock_check {
	const config_t *cfg;
	int partition;
	store_t *store;
	gate_t *gate;
	stock_check_idle_fn idle;
	void *arg;
	struct event *timer;
	int64_t cursor;       /* the last coupon id of the previous page; 0 starts a pass */
	int64_t backoff_ms;   /* after a failure, ticks are skipped for this long; 0 after a success */
	int64_t resume_ms;    /* monotonic time before which ticks are skipped */
	store_coupon_t *page; /* the open coupons of the page, STOCK_CHECK_PAGE long */
	int64_t *ids;         /* those of this partition, for gate_sync_stock() */
	int *remaining;
};

/*
 * Keeps this partition's coupons: the producer keys an event by the coupon
 * id, so the partition it lands in, and the consumer that owns the coupon's
 * stock key, is admission_coupon_partition()'s.
 */
static int own_coupons(const stock_check_t *sc, int n)
{
	int mine = 0;

	for (int i = 0; i < n; i++) {
		if (admission_coupon_partition(sc->page[i].coupon_id, sc->cfg->kafka_partitions) !=
		    sc->partition)
			continue;
		sc->ids[mine] = sc->page[i].coupon_id;
		sc->remaining[mine++] = sc->page[i].remaining;
	}
	return mine;
}

/*
 * gate_sync_stock() is the batch's convergence step: a missing key is
 * loaded with SET NX and a present one that differs is set to remaining
 * (and logged as drift). Both are wanted here, not only the missing keys:
 * sync_round() fixes a coupon only when an event of it arrives, and a
 * present key can be wrong with none coming: Redis restarted from an older
 * snapshot keeps a sold-out coupon's stale stock for good; a reservation
 * whose message Kafka lost holds stock down, and at 0 the edge refuses the
 * coupon although PostgreSQL has units left. Overwriting between batches
 * never runs Redis behind the truth: none of this process's reservations is
 * outstanding (stock_check.h), nothing else of it writes the key, and
 * remaining only decreases, so even a stale read can only set it too high,
 * which PostgreSQL's locked remaining corrects in the next batch. A dead
 * predecessor's uncommitted reservations are the one thing it gives back
 * early; their replay is answered "reserved earlier" and decided by
 * PostgreSQL, and that batch's convergence step sets the key right again.
 */
static store_rc_t sync_page(stock_check_t *sc, int n)
{
	int mine = own_coupons(sc, n);

	if (mine == 0)
		return STORE_OK;
	if (gate_connect(sc->gate) != 0 || gate_sync_stock(sc->gate, sc->ids, sc->remaining, mine) != 0)
		return STORE_RETRY;
	return STORE_OK;
}

store_rc_t stock_check_run(stock_check_t *sc)
{
	int64_t cursor = sc->cursor;
	store_rc_t rc;
	int n = 0;

	/* Ownership first, as for a batch: a consumer that does not own the partition writes nothing. */
	if ((rc = store_ensure(sc->store)) != STORE_OK)
		return rc;
	if ((rc = store_stock_page(sc->store, &cursor, STOCK_CHECK_PAGE, sc->page, &n)) != STORE_OK)
		return rc;
	/* The cursor moves only once the page is in Redis: a failed page is read again. */
	if ((rc = sync_page(sc, n)) == STORE_OK)
		sc->cursor = cursor;
	return rc;
}

/* A dependency that is down is not asked every tick: the back-off doubles up to issue.retry_max. */
static void note_result(stock_check_t *sc, store_rc_t rc)
{
	int64_t interval = sc->cfg->issue_stock_check_interval;
	int64_t cap = sc->cfg->issue_retry_max > interval ? sc->cfg->issue_retry_max : interval;

	if (rc == STORE_OK) {
		sc->backoff_ms = 0;
		return;
	}
	sc->backoff_ms = sc->backoff_ms == 0 ? interval : sc->backoff_ms * 2;
	if (sc->backoff_ms > cap)
		sc->backoff_ms = cap;
	sc->resume_ms = clock_mono_ms() + sc->backoff_ms;
	if (rc == STORE_RETRY)
		log_debug("stock check of partition %d failed; next try in %lld ms", sc->partition,
		          (long long)sc->backoff_ms);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	stock_check_t *sc = arg;

	/* A batch in flight (or waiting for its retry) may hold reservations: never now. */
	if (!sc->idle(sc->arg) || clock_mono_ms() < sc->resume_ms)
		return;
	/* STORE_NOT_OWNER is left to the batch path and the owner check, which make the consumer stand by. */
	note_result(sc, stock_check_run(sc));
}

static int arm(stock_check_t *sc, struct event_base *base)
{
	struct timeval tv = clock_timeval(sc->cfg->issue_stock_check_interval);

	sc->timer = event_new(base, -1, EV_PERSIST, on_tick, sc);
	if (sc->timer == NULL || event_add(sc->timer, &tv) != 0) {
		log_error("cannot arm the stock check timer");
		return -1;
	}
	return 0;
}

stock_check_t *stock_check_new(struct event_base *base, const config_t *cfg, int partition, store_t *store,
                               gate_t *gate, stock_check_idle_fn idle, void *arg)
{
	stock_check_t *sc = calloc(1, sizeof(*sc));

	if (sc == NULL || (sc->page = calloc(STOCK_CHECK_PAGE, sizeof(*sc->page))) == NULL ||
	    (sc->ids = calloc(STOCK_CHECK_PAGE, sizeof(*sc->ids))) == NULL ||
	    (sc->remaining = calloc(STOCK_CHECK_PAGE, sizeof(*sc->remaining))) == NULL) {
		log_error("out of memory");
		stock_check_free(sc);
		return NULL;
	}
	sc->cfg = cfg;
	sc->partition = partition;
	sc->store = store;
	sc->gate = gate;
	sc->idle = idle;
	sc->arg = arg;
	if (arm(sc, base) != 0) {
		stock_check_free(sc);
		return NULL;
	}
	return sc;
}

void stock_check_free(stock_check_t *sc)
{
	if (sc == NULL)
		return;
	if (sc->timer != NULL)
		event_free(sc->timer);
	free(sc->page);
	free(sc->ids);
	free(sc->remaining);
	free(sc);
}
