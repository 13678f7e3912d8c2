/* consumer.c: the consumer worker process, one per owned partition of the issue topic. */
#include "consumer/consumer.h"

#include "core/admission.h"
#include "core/clock.h"
#include "core/fault.h"
#include "consumer/gate.h"
#include "core/kafka_conf.h"
#include "core/kafka_queue.h"
#include "core/log.h"
#include "core/metrics.h"
#include "consumer/results.h"
#include "consumer/stock_check.h"
#include "consumer/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The safety-net poll for when a queue wake-up is missed (librdkafka writes the pipe only on
 * empty->non-empty). */
#define POLL_SAFETY_MS 100
/* Gate/store rounds in one attempt; more means the stock key keeps vanishing: back off instead. */
#define MAX_ROUNDS 4
/* How long start-up waits for the committed offset, to notice messages lost while nobody consumed. */
#define COMMITTED_LOOKUP_MS 2000
/*
 * A predecessor's PostgreSQL session can outlive its process by a few
 * milliseconds (the server notices the closed socket asynchronously): for
 * this long after start, a taken ownership lock is asked again instead of
 * being refused at once.
 */
#define OWNERSHIP_GRACE_MS 3000
#define OWNERSHIP_RETRY_MS 200
/* rejected_requests older than issue.result_ttl are deleted this often, 10000 rows a statement. */
#define PRUNE_EVERY_MS 60000
#define PRUNE_MAX_STATEMENTS 10
/* How often admission control's view of the partition is checked against the broker's high watermark. */
#define ADMISSION_RESYNC_MS 1000
/* batch_advance(): everything is done but delivery reports, which arrive through the loop. */
#define BATCH_DELIVERING 1
/* Beyond message.timeout.ms (kafka.produce_timeout), by which librdkafka reports every message. */
#define DELIVERY_GRACE_MS 1000

/* One message of the batch and everything learned about it so far; each stage resumes where it stopped. */
typedef struct {
	rd_kafka_message_t *msg;
	request_status_t status; /* the event and, once decided, the decision */
	char error[160];         /* non-empty: undecodable, it goes to the dead-letter topic */
	gate_outcome_t gate;
	int decided;
	int release; /* a reservation still to be given back */
	int written; /* the status is in Redis */
	char *json;  /* once decided: status_to_json(), for both Redis and Kafka; freed by batch_clear() */
	results_delivery_t delivery;
} item_t;

typedef struct {
	int64_t batches, issued, dead_letters, compensations, gaps, lost;
	int64_t rejected[REASON_NOT_OPEN + 1];
} consumer_stats_t;

typedef struct {
	worker_t *w;
	const config_t *cfg;
	int partition;
	rd_kafka_t *rk;
	kafka_queue_t *queue; /* the partition's messages */
	struct event *poll_ev, *next_ev, *retry_ev, *owner_ev, *prune_ev, *linger_ev, *deliver_ev;
	gate_t *gate;
	store_t *store;
	results_t *results;
	stock_check_t *stock_check;
	item_t *items;        /* the batch, in log order */
	int count;            /* 0: no batch in progress */
	int filling;          /* the batch still takes messages: nothing of it has run yet */
	int delivering;       /* the batch waits for delivery reports (deliver_ev is its deadline) */
	store_coupon_t *sync; /* coupons whose Redis stock must be converged to PostgreSQL */
	int nsync;
	int64_t retry_ms;    /* current back-off; 0 after a success */
	int64_t next_offset; /* the offset the next message should have; -1 while unknown */
	int64_t grace_until_ms;
	int64_t resync_at_ms; /* next admission_resync() */
	int64_t seen_accepted;
	int fault_checked;
	consumer_stats_t stats;
	/* scratch for the module calls, batch_size long */
	gate_request_t *gate_reqs;
	store_item_t *store_items;
	const issue_event_t **events;
	const request_status_t **statuses;
	const char **jsons;
	int *map;
	unsigned char *done;
} consumer_t;

static void batch_run(consumer_t *c);

static int item_valid(const item_t *it)
{
	return it->error[0] == '\0';
}

/* Messages must arrive offset after offset; a jump means the log lost them before we read them. */
static void check_offset(consumer_t *c, int64_t offset)
{
	if (c->next_offset >= 0 && offset > c->next_offset) {
		c->stats.gaps++;
		c->stats.lost += offset - c->next_offset;
		metrics_inc(M_OFFSET_GAPS);
		metrics_add(M_MESSAGES_LOST, (uint64_t)(offset - c->next_offset));
		log_error(
		    "%s[%d]: offsets %lld..%lld were never delivered: %lld messages lost (retention or a "
		    "truncated log); their requests will never be decided",
		    c->cfg->kafka_topic, c->partition, (long long)c->next_offset, (long long)offset - 1,
		    (long long)(offset - c->next_offset));
	}
	c->next_offset = offset + 1;
}

static void batch_add(consumer_t *c, rd_kafka_message_t *m)
{
	item_t *it = &c->items[c->count++];

	memset(it, 0, sizeof(*it));
	it->msg = m;
	check_offset(c, m->offset);
	if (event_decode(m->payload, m->len, &it->status.event, it->error, sizeof(it->error)) == 0)
		return;
	if (it->error[0] == '\0')
		snprintf(it->error, sizeof(it->error), "invalid event");
	log_warn("%s[%d] offset %lld: %s; sending it to %s", c->cfg->kafka_topic, c->partition,
	         (long long)m->offset, it->error, c->cfg->kafka_dlq_topic);
}

static void batch_clear(consumer_t *c)
{
	for (int i = 0; i < c->count; i++) {
		rd_kafka_message_destroy(c->items[i].msg);
		free(c->items[i].json);
		c->items[i].json = NULL;
	}
	c->count = 0;
	c->nsync = 0;
	if (c->filling && c->linger_ev != NULL && event_del(c->linger_ev) != 0)
		log_error("cannot cancel the batch linger timer");
	c->filling = 0;
}

static int has_undecided(const consumer_t *c)
{
	for (int i = 0; i < c->count; i++) {
		if (item_valid(&c->items[i]) && !c->items[i].decided)
			return 1;
	}
	return 0;
}

static int has_release(const consumer_t *c)
{
	for (int i = 0; i < c->count; i++) {
		if (c->items[i].release)
			return 1;
	}
	return 0;
}

/*
 * Test builds: die between the Redis reservations and the PostgreSQL commit
 * (after the first gate round that reserved stock), once per Redis database.
 */
static void fault_after_gate(consumer_t *c, int reserved)
{
	if (c->fault_checked || !reserved)
		return;
	c->fault_checked = 1;
	if (fault_value("consumer_kill_after_gate") != c->partition)
		return;
	if (gate_claim_once(c->gate, "consumer_kill_after_gate") == 1) {
		log_error("fault injection: killed after the redis gate, before the postgresql commit");
		_exit(9);
	}
}

static int gate_round(consumer_t *c)
{
	int n = 0, rc, reserved = 0;

	for (int i = 0; i < c->count; i++) {
		item_t *it = &c->items[i];

		if (item_valid(it) && !it->decided && it->gate == GATE_PENDING) {
			c->gate_reqs[n] = (gate_request_t){&it->status.event, GATE_PENDING};
			c->map[n++] = i;
		}
	}
	if (n == 0)
		return 0;
	rc = gate_reserve(c->gate, c->gate_reqs, n);
	/* Answers read before a failure are real reservations: keep them. */
	for (int k = 0; k < n; k++) {
		c->items[c->map[k]].gate = c->gate_reqs[k].outcome;
		reserved |= c->gate_reqs[k].outcome == GATE_RESERVED;
	}
	if (rc == 0)
		fault_after_gate(c, reserved);
	return rc;
}

static void count_decision(consumer_t *c, const item_t *it)
{
	if (it->status.state == STATUS_ISSUED) {
		c->stats.issued++;
		metrics_inc(M_ISSUED);
	} else {
		c->stats.rejected[it->status.reason]++;
		metrics_inc((metric_t)(M_REJECTED_SOLD_OUT + it->status.reason - REASON_SOLD_OUT));
	}
}

/* Remembers a coupon's remaining for the convergence step; a later commit's value replaces an earlier one. */
static void note_sync(consumer_t *c, const store_coupon_t *coupons, int n)
{
	if (c->nsync == 0) { /* the usual case: one commit per batch */
		memcpy(c->sync, coupons, sizeof(*coupons) * (size_t)n);
		c->nsync = n;
		return;
	}
	for (int k = 0; k < n; k++) {
		int j = 0;

		while (j < c->nsync && c->sync[j].coupon_id != coupons[k].coupon_id)
			j++;
		if (j == c->nsync && c->nsync < c->cfg->issue_batch_size)
			c->nsync++;
		if (j < c->nsync)
			c->sync[j] = coupons[k];
	}
}

static void store_copy_back(consumer_t *c, int n, int committed)
{
	int64_t now = clock_real_ms();

	for (int k = 0; k < n; k++) {
		item_t *it = &c->items[c->map[k]];
		const store_item_t *si = &c->store_items[k];

		/* A fresh reservation may have become "earlier" after a COMMIT of unknown outcome. */
		it->gate = si->gate;
		if (!committed || !si->decided)
			continue;
		it->decided = 1;
		it->release = si->release;
		it->status.state = si->state;
		it->status.reason = si->reason;
		it->status.decided_ms = now;
		count_decision(c, it);
	}
}

static store_rc_t store_round(consumer_t *c)
{
	const store_coupon_t *coupons;
	int n = 0, ncoupons = 0;
	store_rc_t rc;

	for (int i = 0; i < c->count; i++) {
		item_t *it = &c->items[i];

		if (item_valid(it) && !it->decided && it->gate != GATE_PENDING) {
			c->store_items[n] = (store_item_t){.event = &it->status.event, .gate = it->gate};
			c->map[n++] = i;
		}
	}
	if (n == 0)
		return STORE_OK;
	rc = store_commit(c->store, c->store_items, n, &coupons, &ncoupons);
	store_copy_back(c, n, rc == STORE_OK);
	if (rc == STORE_OK)
		note_sync(c, coupons, ncoupons);
	return rc;
}

/* Compensation: give back what Redis reserved for requests PostgreSQL did not issue. */
static int release_round(consumer_t *c)
{
	int n = 0, rc;

	for (int i = 0; i < c->count; i++) {
		if (c->items[i].release) {
			c->events[n] = &c->items[i].status.event;
			c->done[n] = 0;
			c->map[n++] = i;
		}
	}
	if (n == 0)
		return 0;
	rc = gate_release(c->gate, c->events, n, c->done);
	for (int k = 0; k < n; k++) {
		if (c->done[k]) {
			c->items[c->map[k]].release = 0;
			c->stats.compensations++;
			metrics_inc(M_COMPENSATIONS);
		}
	}
	return rc;
}

/* Only after every release: a release after the SET would count its unit twice. */
static int sync_round(consumer_t *c)
{
	int64_t ids[64];
	int remaining[64];

	while (c->nsync > 0) {
		int n = c->nsync < 64 ? c->nsync : 64;

		for (int k = 0; k < n; k++) {
			ids[k] = c->sync[c->nsync - n + k].coupon_id;
			remaining[k] = c->sync[c->nsync - n + k].remaining;
		}
		if (gate_sync_stock(c->gate, ids, remaining, n) != 0)
			return -1;
		c->nsync -= n;
	}
	return 0;
}

/* Requests that met a missing stock key ask again, now that the convergence step loaded it. */
static void requeue_no_stock(consumer_t *c)
{
	for (int i = 0; i < c->count; i++) {
		if (!c->items[i].decided && c->items[i].gate == GATE_NO_STOCK)
			c->items[i].gate = GATE_PENDING;
	}
}

static int decide_batch(consumer_t *c)
{
	store_rc_t rc;

	for (int round = 0; round < MAX_ROUNDS; round++) {
		if (!has_undecided(c) && !has_release(c) && c->nsync == 0)
			return 0;
		/* Ownership first: nothing is written, in Redis either, by a consumer that does not own the
		 * partition. */
		if ((rc = store_ensure(c->store)) != STORE_OK)
			return rc;
		if (gate_connect(c->gate) != 0 || gate_round(c) != 0)
			return -1;
		if ((rc = store_round(c)) != STORE_OK)
			return rc;
		if (release_round(c) != 0 || sync_round(c) != 0)
			return -1;
		requeue_no_stock(c);
	}
	if (!has_undecided(c) && !has_release(c) && c->nsync == 0)
		return 0;
	log_warn("%s[%d]: stock keys vanished %d times in a row; backing off", c->cfg->kafka_topic,
	         c->partition, MAX_ROUNDS);
	return -1;
}

/*
 * A decision never changes once made, so its JSON is encoded once and kept
 * with the item (a retried batch reuses it) for the PUBLISH and the results
 * topic alike.
 */
static int encode_status(item_t *it)
{
	if (it->json == NULL && (it->json = status_to_json(&it->status)) == NULL) {
		log_error("out of memory");
		return -1;
	}
	return 0;
}

static int publish_redis(consumer_t *c)
{
	int n = 0;

	for (int i = 0; i < c->count; i++) {
		item_t *it = &c->items[i];

		if (it->decided && !it->written) {
			if (encode_status(it) != 0)
				return -1;
			c->statuses[n] = &it->status;
			c->jsons[n] = it->json;
			c->map[n++] = i;
		}
	}
	if (n == 0)
		return 0;
	if (gate_connect(c->gate) != 0 ||
	    results_write_redis(gate_redis(c->gate), c->cfg, c->statuses, c->jsons, n) != 0)
		return -1;
	for (int k = 0; k < n; k++)
		c->items[c->map[k]].written = 1;
	return 0;
}

/* Queues every dead letter (and, unless dead_only, every written result) not yet delivered. */
static int produce_pending(consumer_t *c, int dead_only)
{
	for (int i = 0; i < c->count; i++) {
		item_t *it = &c->items[i];
		int rc = 0;

		if (it->delivery == DELIVERY_FAILED)
			it->delivery = DELIVERY_NONE;
		if (it->delivery != DELIVERY_NONE)
			continue;
		if (!item_valid(it))
			rc = results_dead_letter(c->results, it->msg, it->error, &it->delivery);
		else if (!dead_only && it->written) /* written: publish_redis() encoded it */
			rc = results_produce(c->results, &it->status, it->json, &it->delivery);
		if (rc != 0)
			return -1;
	}
	return 0;
}

/* 0: every delivery is reported done; BATCH_DELIVERING: some are in flight; -1: some failed. */
static int deliveries_state(consumer_t *c)
{
	if (results_in_flight(c->results) > 0)
		return BATCH_DELIVERING;
	results_report_failures(c->results);
	for (int i = 0; i < c->count; i++) {
		if (c->items[i].delivery != DELIVERY_DONE)
			return -1;
	}
	return 0;
}

static int batch_advance(consumer_t *c)
{
	int rc;

	/* Dead letters need neither Redis nor PostgreSQL: they are on their way while the rest is decided. */
	if (produce_pending(c, 1) != 0)
		return -1;
	if ((rc = decide_batch(c)) != 0)
		return rc;
	if (publish_redis(c) != 0 || produce_pending(c, 0) != 0)
		return -1;
	return deliveries_state(c);
}

/* Every outcome is durable: only now may Kafka forget these messages (auto commit does the rest). */
static void store_offsets(consumer_t *c)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(list, c->cfg->kafka_topic, c->partition)->offset =
	    c->items[c->count - 1].msg->offset + 1;
	err = rd_kafka_offsets_store(c->rk, list);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = list->elems[0].err;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_error("%s[%d]: cannot store offset %lld: %s (the batch will be replayed, harmlessly)",
		          c->cfg->kafka_topic, c->partition, (long long)list->elems[0].offset,
		          rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Consumer lag for /metrics: librdkafka's cached high watermark (no broker
 * round trip) minus our position (next < 0: nothing read yet, so the low one).
 */
static void report_lag(consumer_t *c, int64_t next)
{
	int64_t low, high;

	if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_topic, c->partition, &low, &high) !=
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	if (next < 0)
		next = low > 0 ? low : 0;
	metrics_set_lag(c->partition, high > next ? high - next : 0);
}

static void batch_finish(consumer_t *c)
{
	for (int i = 0; i < c->count; i++) {
		c->stats.dead_letters += !item_valid(&c->items[i]);
		if (!item_valid(&c->items[i]))
			metrics_inc(M_DLQ_MESSAGES);
	}
	store_offsets(c);
	report_lag(c, c->items[c->count - 1].msg->offset + 1);
	admission_decided(c->w->args.shm, c->partition, c->items[c->count - 1].msg->offset + 1);
	c->stats.batches++;
	log_debug("%s[%d]: batch of %d up to offset %lld done", c->cfg->kafka_topic, c->partition, c->count,
	          (long long)c->items[c->count - 1].msg->offset);
	batch_clear(c);
}

static void add_timer(struct event *ev, int64_t ms)
{
	struct timeval tv = clock_timeval(ms);

	if (event_add(ev, &tv) != 0)
		log_error("cannot arm a timer");
}

static void schedule_retry(consumer_t *c)
{
	const config_t *cfg = c->cfg;

	c->retry_ms = c->retry_ms == 0 ? cfg->issue_retry_initial : c->retry_ms * 2;
	if (c->retry_ms > cfg->issue_retry_max)
		c->retry_ms = cfg->issue_retry_max;
	log_warn("%s[%d]: batch of %d from offset %lld not finished; retrying in %lld ms", cfg->kafka_topic,
	         c->partition, c->count, (long long)c->items[0].msg->offset, (long long)c->retry_ms);
	add_timer(c->retry_ev, c->retry_ms);
}

/* Another session owns the partition: leave, and let the master's back-off be the failover. */
static void refuse(consumer_t *c)
{
	log_error("partition %d of %s is owned by another consumer (another host or process); refusing",
	          c->partition, c->cfg->kafka_topic);
	admission_owner(c->w->args.shm, c->partition, 0); /* this host cannot see its progress */
	if (c->count > 0) {
		results_abandon(c->results);
		batch_clear(c);
	}
	worker_finish(c->w, 1);
}

static void consumer_stop_now(consumer_t *c);

/* The end of one attempt at the batch: done, retried later, or the process leaves. */
static void batch_settle(consumer_t *c, int rc)
{
	if (rc == STORE_NOT_OWNER && clock_mono_ms() >= c->grace_until_ms) {
		refuse(c);
	} else if (rc != 0 && results_fatal(c->results)) {
		/* Nothing more can be produced: a restarted process gets a new producer and replays the
		 * batch. */
		results_abandon(c->results);
		batch_clear(c);
		worker_finish(c->w, 1);
	} else if (c->w->stopping) {
		/* A graceful stop waited for this batch's deliveries (consumer_on_stop). */
		if (rc == 0)
			batch_finish(c);
		consumer_stop_now(c);
	} else if (rc != 0) {
		schedule_retry(c);
	} else {
		admission_owner(c->w->args.shm, c->partition, 1);
		batch_finish(c);
		c->retry_ms = 0;
		event_active(c->next_ev, EV_TIMEOUT,
		             0); /* more may be queued: next batch after the loop breathes */
	}
}

/*
 * Delivery reports come back through the loop (results_serve() calls
 * on_results()), so heartbeats, timers and STOP keep being served while
 * Kafka is slow; a deadline turns a stall into the ordinary retry, which
 * produces failed messages again and waits again for those still in flight.
 */
static void batch_run(consumer_t *c)
{
	int rc = batch_advance(c);

	if (rc != BATCH_DELIVERING) {
		batch_settle(c, rc);
		return;
	}
	c->delivering = 1;
	add_timer(c->deliver_ev, c->cfg->kafka_produce_timeout + DELIVERY_GRACE_MS);
}

static void on_results(void *arg)
{
	consumer_t *c = arg;
	int rc;

	if (!c->delivering || (rc = deliveries_state(c)) == BATCH_DELIVERING)
		return;
	c->delivering = 0;
	if (event_del(c->deliver_ev) != 0)
		log_error("cannot cancel the delivery deadline");
	batch_settle(c, rc);
}

static void on_deliver_deadline(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	if (!c->delivering)
		return;
	c->delivering = 0;
	results_report_failures(c->results);
	log_warn("%s[%d]: %d kafka deliveries still pending after %lld ms", c->cfg->kafka_topic, c->partition,
	         results_in_flight(c->results),
	         (long long)(c->cfg->kafka_produce_timeout + DELIVERY_GRACE_MS));
	batch_settle(c, -1);
}

static void handle_error_message(consumer_t *c, const rd_kafka_message_t *m)
{
	if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
		log_warn("consume: %s", rd_kafka_message_errstr(m));
}

/* Adds what librdkafka has queued, without blocking, until the batch is full. */
static void take_messages(consumer_t *c)
{
	rd_kafka_message_t *m;

	while (c->count < c->cfg->issue_batch_size && (m = rd_kafka_consumer_poll(c->rk, 0)) != NULL) {
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			handle_error_message(c, m);
			rd_kafka_message_destroy(m);
			continue;
		}
		batch_add(c, m);
	}
}

static void start_batch(consumer_t *c)
{
	if (c->filling && event_del(c->linger_ev) != 0)
		log_error("cannot cancel the batch linger timer");
	c->filling = 0;
	batch_run(c);
}

/*
 * Takes up to issue.batch_size messages, then decides them. A short batch
 * first lingers up to issue.batch_linger for more (a timer; the loop keeps
 * running): a batch pays one transaction, one gate round and one wait for
 * deliveries however many events it holds, so at moderate rates a batch of
 * one or two costs ten times more per decision than a full one.
 */
static void fill_batch(consumer_t *c)
{
	if (c->w->stopping || (c->count > 0 && !c->filling))
		return; /* a batch waits for its retry: the rest stays queued in librdkafka */
	take_messages(c);
	if (c->count == 0)
		return;
	if (c->count >= c->cfg->issue_batch_size || c->cfg->issue_batch_linger <= 0) {
		start_batch(c);
	} else if (!c->filling) {
		c->filling = 1;
		add_timer(c->linger_ev, c->cfg->issue_batch_linger);
	}
}

static void on_linger(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	c->filling = 0;
	if (c->count == 0 || c->w->stopping)
		return;
	take_messages(c); /* a wake-up may be pending behind this timer */
	batch_run(c);
}

static void on_messages(void *arg)
{
	fill_batch(arg);
}

/* Admission control: the broker's log end (as the last fetch saw it) keeps the shared view honest. */
static void admission_tick(consumer_t *c)
{
	int64_t low, high, now = clock_mono_ms();

	if (now < c->resync_at_ms)
		return;
	c->resync_at_ms = now + ADMISSION_RESYNC_MS;
	if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_topic, c->partition, &low, &high) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR)
		admission_resync(c->w->args.shm, c->partition, high, &c->seen_accepted);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	fill_batch(c);
	admission_tick(c);
	if (c->count == 0)
		report_lag(c, c->next_offset);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	if (c->count > 0 && !c->w->stopping)
		batch_run(c);
}

/* Start-up: refuse early when another session owns the partition, after a short grace. */
static void on_owner_check(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;
	store_rc_t rc = store_ensure(c->store);

	if (rc == STORE_NOT_OWNER && clock_mono_ms() < c->grace_until_ms)
		add_timer(c->owner_ev, OWNERSHIP_RETRY_MS);
	else if (rc == STORE_NOT_OWNER)
		refuse(c);
	else if (rc == STORE_OK)
		admission_owner(c->w->args.shm, c->partition, 1);
	/* STORE_RETRY: PostgreSQL is down; the first batch connects and takes the lock before any write. */
}

/* Only on a session that already owns the partition (the store keeps no other): pruning is a write too. */
static void on_prune(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;
	int deleted = 0, total = 0;

	for (int i = 0; i < PRUNE_MAX_STATEMENTS; i++) {
		if (store_prune(c->store, &deleted) != 0)
			break;
		total += deleted;
		if (deleted < 10000)
			break;
	}
	if (total > 0)
		log_info("pruned %d rejected requests older than issue.result_ttl", total);
}

static int assign_partition(consumer_t *c)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	/* Static assignment: the master, not a group rebalance, decides who owns a partition. */
	rd_kafka_topic_partition_list_add(parts, c->cfg->kafka_topic, c->partition)->offset =
	    RD_KAFKA_OFFSET_STORED;
	err = rd_kafka_assign(c->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot assign %s[%d]: %s", c->cfg->kafka_topic, c->partition,
		          rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* The committed offset is where the first message should be: a later one means a gap. Best effort. */
static void lookup_committed(consumer_t *c)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);

	rd_kafka_topic_partition_list_add(parts, c->cfg->kafka_topic, c->partition);
	if (rd_kafka_committed(c->rk, parts, COMMITTED_LOOKUP_MS) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    parts->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && parts->elems[0].offset >= 0)
		c->next_offset = parts->elems[0].offset;
	else
		log_info("%s[%d]: no committed offset known; starting from the earliest", c->cfg->kafka_topic,
		         c->partition);
	rd_kafka_topic_partition_list_destroy(parts);
	/*
	 * Admission control starts from where consumption starts. Without a
	 * committed offset the previous value stands until the first batch
	 * (or the once-a-second resync) corrects it: asking the broker for the
	 * log start here would block start-up longer while Kafka is down.
	 */
	admission_start(c->w->args.shm, c->partition, c->next_offset, -1);
}

static int consumer_create(consumer_t *c)
{
	rd_kafka_conf_t *conf = kafka_conf_consumer(c->cfg, c->w->args.kafka_bootstrap, c->partition);
	char err[512];

	if (conf == NULL)
		return -1;
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (c->rk == NULL) {
		log_error("cannot create the Kafka consumer: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	if (rd_kafka_poll_set_consumer(c->rk) != RD_KAFKA_RESP_ERR_NO_ERROR || assign_partition(c) != 0)
		return -1;
	lookup_committed(c);
	return 0;
}

/* librdkafka writes a byte to our pipe when its queue becomes non-empty: the loop never blocks on Kafka. */
static int wakeups_start(consumer_t *c)
{
	struct event_base *base = c->w->base;

	/* No safety net of its own: on_tick takes what a missed wake-up left queued. */
	c->queue = kafka_queue_watch(base, rd_kafka_queue_get_consumer(c->rk), 0, on_messages, c);
	c->poll_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
	c->next_ev = event_new(base, -1, 0, on_tick, c);
	c->retry_ev = event_new(base, -1, 0, on_retry, c);
	c->owner_ev = event_new(base, -1, 0, on_owner_check, c);
	c->prune_ev = event_new(base, -1, EV_PERSIST, on_prune, c);
	c->linger_ev = event_new(base, -1, 0, on_linger, c);
	c->deliver_ev = event_new(base, -1, 0, on_deliver_deadline, c);
	if (c->queue == NULL || c->poll_ev == NULL || c->next_ev == NULL || c->retry_ev == NULL ||
	    c->owner_ev == NULL || c->prune_ev == NULL || c->linger_ev == NULL || c->deliver_ev == NULL)
		return -1;
	add_timer(c->poll_ev, POLL_SAFETY_MS);
	add_timer(c->prune_ev, PRUNE_EVERY_MS);
	return 0;
}

static void log_stats(const consumer_t *c)
{
	const consumer_stats_t *s = &c->stats;

	log_info("stopped; %lld batches, %lld issued, rejected: %lld sold out, %lld already issued, "
	         "%lld not found, %lld not open; %lld dead letters, %lld compensations, "
	         "%lld offset gaps (%lld messages lost)",
	         (long long)s->batches, (long long)s->issued, (long long)s->rejected[REASON_SOLD_OUT],
	         (long long)s->rejected[REASON_ALREADY_ISSUED],
	         (long long)s->rejected[REASON_COUPON_NOT_FOUND], (long long)s->rejected[REASON_NOT_OPEN],
	         (long long)s->dead_letters, (long long)s->compensations, (long long)s->gaps,
	         (long long)s->lost);
	if (s->gaps > 0)
		log_error("%lld offset gaps: %lld messages of %s[%d] were lost before they were consumed",
		          (long long)s->gaps, (long long)s->lost, c->cfg->kafka_topic, c->partition);
}

/*
 * Graceful stop, second half: a batch still waiting for Redis or PostgreSQL
 * (or for a retry) is abandoned with its offsets unstored (its successor
 * decides it again, harmlessly); what was stored is committed so the
 * successor starts right there.
 */
static void consumer_stop_now(consumer_t *c)
{
	rd_kafka_resp_err_t err;

	if (c->filling) {
		/* Nothing of it ran: like the messages still queued in librdkafka, the successor reads it. */
		log_debug("dropping a batch of %d that was still filling", c->count);
		batch_clear(c);
	} else if (c->count > 0) {
		log_info("abandoning an undecided batch of %d from offset %lld; it will be delivered again",
		         c->count, (long long)c->items[0].msg->offset);
		results_abandon(c->results);
		batch_clear(c);
	}
	err = rd_kafka_commit(c->rk, NULL, 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_error("final offset commit failed: %s", rd_kafka_err2str(err));
	log_stats(c);
	worker_finish(c->w, 0);
}

/*
 * Graceful stop: a decided batch whose results are on their way is given
 * until its delivery deadline (kafka.produce_timeout + 1 s), so that its
 * offset is stored rather than its work replayed; batch_settle() then stops.
 */
static void consumer_on_stop(worker_t *w)
{
	consumer_t *c = w->ctx;

	if (c->delivering) {
		log_info("waiting for the kafka deliveries of a batch of %d before stopping", c->count);
		return;
	}
	consumer_stop_now(c);
}

static int scratch_alloc(consumer_t *c)
{
	size_t n = (size_t)c->cfg->issue_batch_size;

	c->items = calloc(n, sizeof(*c->items));
	c->sync = calloc(n, sizeof(*c->sync));
	c->gate_reqs = calloc(n, sizeof(*c->gate_reqs));
	c->store_items = calloc(n, sizeof(*c->store_items));
	c->events = calloc(n, sizeof(*c->events));
	c->statuses = calloc(n, sizeof(*c->statuses));
	c->jsons = calloc(n, sizeof(*c->jsons));
	c->map = calloc(n, sizeof(*c->map));
	c->done = calloc(n, 1);
	if (c->items == NULL || c->sync == NULL || c->gate_reqs == NULL || c->store_items == NULL ||
	    c->events == NULL || c->statuses == NULL || c->jsons == NULL || c->map == NULL ||
	    c->done == NULL) {
		log_error("out of memory");
		return -1;
	}
	return 0;
}

static void scratch_free(consumer_t *c)
{
	free(c->items);
	free(c->sync);
	free(c->gate_reqs);
	free(c->store_items);
	free(c->events);
	free(c->statuses);
	free(c->jsons);
	free(c->map);
	free(c->done);
}

static void events_free(consumer_t *c)
{
	struct event **evs[] = {&c->poll_ev,  &c->next_ev,   &c->retry_ev,  &c->owner_ev,
	                        &c->prune_ev, &c->linger_ev, &c->deliver_ev};

	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		if (*evs[i] != NULL)
			event_free(*evs[i]);
		*evs[i] = NULL;
	}
}

static void consumer_destroy(consumer_t *c)
{
	events_free(c);
	/* Before the batch is freed: delivery reports write into its items. */
	results_free(c->results);
	if (c->items != NULL)
		batch_clear(c);
	kafka_queue_free(c->queue);
	if (c->rk != NULL) {
		rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("consumer close: %s", rd_kafka_err2str(err));
		rd_kafka_destroy(c->rk);
	}
	stock_check_free(c->stock_check);
	store_free(c->store);
	gate_free(c->gate);
	scratch_free(c);
}

/* The stock check runs only between batches (stock_check.h says why that is safe). */
static int consumer_idle(void *arg)
{
	const consumer_t *c = arg;

	return c->count == 0 && !c->w->stopping;
}

static int consumer_start(consumer_t *c)
{
	const worker_args_t *args = &c->w->args;

	if (scratch_alloc(c) != 0 || (c->gate = gate_new(c->cfg)) == NULL ||
	    (c->store = store_new(c->cfg, c->partition)) == NULL ||
	    (c->results =
	         results_new(c->cfg, args->kafka_bootstrap, c->partition, c->w->base, on_results, c)) == NULL)
		return -1;
	if (consumer_create(c) != 0 || wakeups_start(c) != 0 ||
	    (c->stock_check = stock_check_new(c->w->base, c->cfg, c->partition, c->store, c->gate,
	                                      consumer_idle, c)) == NULL)
		return -1;
	c->grace_until_ms = clock_mono_ms() + OWNERSHIP_GRACE_MS;
	event_active(c->owner_ev, EV_TIMEOUT, 0);
	return worker_ready(c->w, NULL);
}

int consumer_worker_main(worker_t *w)
{
	consumer_t *c = calloc(1, sizeof(*c));
	int rc = 1;

	if (c == NULL) {
		log_error("out of memory");
		return 1;
	}
	c->w = w;
	c->cfg = w->args.cfg;
	c->partition = w->args.index;
	c->next_offset = -1;
	c->seen_accepted = -1;
	w->ctx = c;
	w->on_stop = consumer_on_stop;
	if (consumer_start(c) == 0) {
		log_info("assigned %s[%d] (group %s)", c->cfg->kafka_topic, c->partition,
		         c->cfg->kafka_group_id);
		rc = worker_run(w);
	}
	consumer_destroy(c);
	free(c);
	w->ctx = NULL;
	return rc;
}
