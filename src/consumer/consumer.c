/* SPDX-License-Identifier: BSD-2-Clause */
/* consumer.c: the consumer process, one per owned partition of the issue topic. */
#include "consumer/consumer.h"

#include "consumer/batch.h"
#include "consumer/gate.h"
#include "consumer/results.h"
#include "consumer/stock_check.h"
#include "consumer/store.h"
#include "core/admission.h"
#include "core/clock.h"
#include "core/kafka_conf.h"
#include "core/kafka_queue.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * What runs in a consumer: one librdkafka consumer statically assigned one
 * partition, and the batch pipeline (batch.c) that decides its events
 * through the Redis gate (gate.c), the PostgreSQL store (store.c, whose
 * rules are decide.c) and the results (results.c). Everything runs on the
 * worker's event loop; nothing blocks on Kafka. Its events and timers:
 *
 *   queue       the partition's messages arrive (kafka_queue.c): fill the batch
 *   poll_ev     every POLL_SAFETY_MS: fill the batch (a missed wake-up),
 *               admission control's resync with the broker's log end every
 *               ADMISSION_RESYNC_MS, and the lag metric while idle
 *   linger_ev   issue.batch_linger after a short batch's first message: run it
 *   next_ev     at once after a finished batch: the next one, once the loop
 *               has breathed
 *   retry_ev    after a failed attempt, issue.retry_initial doubling to
 *               issue.retry_max: the same batch again, resuming where it stopped
 *   deliver_ev  kafka.produce_timeout + DELIVERY_GRACE_MS after the results
 *               were produced: a stalled delivery becomes an ordinary retry
 *   assign_ev   on taking ownership, every ASSIGN_RETRY_MS until it succeeds:
 *               read the committed offset and assign the partition at it
 *   owner_ev    every daemon.takeover_poll (a back-off while PostgreSQL is
 *               down): a standby asks for the ownership lock; an owner checks
 *               that its session still holds it (see "Ownership" below)
 *   prune_ev    every PRUNE_EVERY_MS: delete expired rejected_requests rows
 *   stock check every issue.stock_check_interval, between batches only
 *               (stock_check.c): Redis stock of the partition's coupons
 *   results     the results producer's delivery reports (results.c, with its
 *               own safety net): settle a batch that waited for them
 *
 * And its state: no batch (batch.count 0); a batch filling (filling); a
 * batch running or waiting for its retry; a batch waiting for its
 * deliveries (delivering). A graceful stop waits only for the last.
 *
 * Ownership: the partition is decided by the one session that holds its
 * advisory lock (store.c), on whichever host. A consumer that cannot take it
 * stands by (OWN_STANDBY): it is up and healthy for the master, but assigns
 * nothing in Kafka and touches neither Redis' gate nor any table; it asks
 * for the lock again every daemon.takeover_poll on the session it keeps.
 * Once it has the lock (OWN_OWNER) it starts at the committed offset like a
 * fresh start. An owner whose session is lost takes the lock again before any
 * write (store_ensure()); if another host has it by then, the batch in
 * progress is dropped unwritten, the partition unassigned, and the consumer
 * stands by again.
 */

/* The safety-net poll for when a queue wake-up is missed (librdkafka writes the pipe only on
 * empty->non-empty). */
#define POLL_SAFETY_MS 100
/* How long start-up waits for the committed offset, and how long each later try waits and pauses. */
#define COMMITTED_LOOKUP_MS 2000
#define ASSIGN_RETRY_MS 500
/*
 * A predecessor's PostgreSQL session can outlive its process by a few
 * milliseconds (the server notices the closed socket asynchronously): for
 * this long after start, a taken ownership lock is asked again quietly
 * before the consumer declares itself a standby (a restart is no takeover).
 */
#define OWNERSHIP_GRACE_MS 3000
#define OWNERSHIP_RETRY_MS 200
/* rejected_requests older than issue.result_ttl are deleted this often, 10000 rows a statement. */
#define PRUNE_EVERY_MS 60000
#define PRUNE_MAX_STATEMENTS 10
/* How often admission control's view of the partition is checked against the broker's high watermark. */
#define ADMISSION_RESYNC_MS 1000
/* Beyond message.timeout.ms (kafka.produce_timeout), by which librdkafka reports every message. */
#define DELIVERY_GRACE_MS 1000

typedef enum { OWN_UNKNOWN, OWN_STANDBY, OWN_OWNER } ownership_t;

typedef struct {
	worker_t *w;
	const config_t *cfg;
	int partition;
	rd_kafka_t *rk;
	rd_kafka_topic_t *topic; /* held so that the topic's metadata (its leaders) stays known */
	kafka_queue_t *queue;    /* the partition's messages */
	struct event *poll_ev, *next_ev, *retry_ev, *owner_ev, *prune_ev, *linger_ev, *deliver_ev, *assign_ev;
	gate_t *gate;
	store_t *store;
	results_t *results;
	stock_check_t *stock_check;
	batch_t batch;
	batch_t next;        /* taken and gated while batch was in PostgreSQL (pregate()); runs after it */
	int filling;         /* the batch still takes messages: nothing of it has run yet */
	int delivering;      /* the batch waits for delivery reports (deliver_ev is its deadline) */
	int64_t retry_ms;    /* current back-off; 0 after a success */
	int64_t next_offset; /* the offset the next message should have; -1 while unknown */
	int64_t committed;   /* the group's committed offset here, as read at the assignment and then
	                        reported by each commit of ours; -1 while unknown (store_prune) */
	int assigned;        /* the partition is assigned (see try_assign()) */
	int64_t grace_until_ms;
	ownership_t own;
	int64_t standby_since_ms; /* when it last started standing by */
	int64_t owner_poll_ms; /* the owner check's next interval: takeover_poll, longer while PostgreSQL is
	                          down */
	int64_t resync_at_ms;  /* next admission_resync() */
	int64_t seen_accepted;
} consumer_t;

static void batch_run(consumer_t *c);
static void start_batch(consumer_t *c);
static void consumer_stop_now(consumer_t *c);
static void stand_by(consumer_t *c);

static void add_timer(struct event *ev, int64_t ms)
{
	struct timeval tv = clock_timeval(ms);

	if (event_add(ev, &tv) != 0)
		log_error("cannot arm a timer");
}

/* Messages must arrive offset after offset; a jump means the log lost them before we read them. */
static void check_offset(consumer_t *c, int64_t offset)
{
	batch_stats_t *stats = &c->batch.stats;

	if (c->next_offset >= 0 && offset > c->next_offset) {
		stats->gaps++;
		stats->lost += offset - c->next_offset;
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

/* Forgets the batch, and the linger of one still filling. */
static void batch_drop(consumer_t *c)
{
	batch_clear(&c->batch);
	batch_drop_held(&c->batch);
	batch_clear(&c->next);
	batch_drop_held(&c->next);
	if (c->filling && c->linger_ev != NULL && event_del(c->linger_ev) != 0)
		log_error("cannot cancel the batch linger timer");
	c->filling = 0;
}

/* Every outcome is durable: only now may Kafka forget these messages (auto commit does the rest). */
static void store_offsets(consumer_t *c)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(list, c->cfg->kafka_topic, c->partition)->offset =
	    batch_end_offset(&c->batch);
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
	int64_t end = batch_end_offset(&c->batch);

	store_offsets(c);
	report_lag(c, end);
	admission_decided(c->w->args.shm, c->partition, end);
	log_debug("%s[%d]: batch of %d up to offset %lld done", c->cfg->kafka_topic, c->partition,
	          c->batch.count, (long long)end - 1);
	batch_done(&c->batch);
}

static void schedule_retry(consumer_t *c)
{
	const config_t *cfg = c->cfg;

	c->retry_ms = c->retry_ms == 0 ? cfg->issue_retry_initial : c->retry_ms * 2;
	if (c->retry_ms > cfg->issue_retry_max)
		c->retry_ms = cfg->issue_retry_max;
	log_warn("%s[%d]: batch of %d from offset %lld not finished; retrying in %lld ms", cfg->kafka_topic,
	         c->partition, c->batch.count, (long long)c->batch.items[0].msg->offset,
	         (long long)c->retry_ms);
	add_timer(c->retry_ev, c->retry_ms);
}

/* The end of one attempt at the batch: done, retried later, stood by, or the process leaves. */
static void batch_settle(consumer_t *c, batch_rc_t rc)
{
	if (rc == BATCH_NOT_OWNER && !c->w->stopping) {
		stand_by(c); /* another host took the partition while our session was lost */
	} else if (rc != BATCH_DONE && results_fatal(c->results)) {
		/* Nothing more can be produced: a restarted process gets a new producer and replays the
		 * batch. */
		results_abandon(c->results);
		batch_drop(c);
		worker_finish(c->w, 1);
	} else if (c->w->stopping) {
		/* A graceful stop waited for this batch's deliveries (consumer_on_stop). */
		if (rc == BATCH_DONE)
			batch_finish(c);
		consumer_stop_now(c);
	} else if (rc != BATCH_DONE) {
		schedule_retry(c);
	} else {
		admission_owner(c->w->args.shm, c->partition, 1);
		batch_finish(c);
		c->retry_ms = 0;
		/* More may be queued: the next batch after the loop breathes. */
		event_active(c->next_ev, EV_TIMEOUT, 0);
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
	batch_rc_t rc = batch_advance(&c->batch);

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
	batch_rc_t rc;

	if (!c->delivering || (rc = batch_deliveries(&c->batch)) == BATCH_DELIVERING)
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
	batch_settle(c, BATCH_RETRY);
}

static void handle_error_message(consumer_t *c, const rd_kafka_message_t *m)
{
	if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
		log_warn("consume: %s", rd_kafka_message_errstr(m));
}

/* Adds what librdkafka has queued, without blocking, until the batch b is full. */
static void take_into(consumer_t *c, batch_t *b)
{
	rd_kafka_message_t *m;

	batch_add_held(b);
	while (!batch_full(b) && (m = rd_kafka_consumer_poll(c->rk, 0)) != NULL) {
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			handle_error_message(c, m);
			rd_kafka_message_destroy(m);
			continue;
		}
		check_offset(c, m->offset);
		batch_add(b, m);
	}
}

static void take_messages(consumer_t *c)
{
	take_into(c, &c->batch);
}

/*
 * batch's store_commit() overlap: while PostgreSQL inserts and commits
 * batch, the next messages are taken, decoded and gated in Redis, so that
 * batch's successor needs only its own transaction. Order holds: the next
 * batch's reservations follow batch's on the same Redis connection, its
 * decisions and offsets wait until batch is done (or retried until done),
 * and it is dropped with batch on every path that drops batch. Not after an
 * admin event held by batch: that one comes first, alone.
 */
static int pregate(void *arg)
{
	consumer_t *c = arg;

	if (c->own != OWN_OWNER || c->w->stopping || c->next.count > 0 || c->batch.held != NULL)
		return 0;
	take_into(c, &c->next);
	if (batch_pregate(&c->next) != 0)
		log_warn("%s[%d]: redis failed while gating the next batch ahead; its own attempt asks again",
		         c->cfg->kafka_topic, c->partition);
	return c->next.count > 0;
}

/* A finished batch's successor, gated ahead, becomes the batch, topped up to full: it has waited already. */
static int promote_next(consumer_t *c)
{
	if (c->batch.count > 0 || c->next.count == 0)
		return 0;
	batch_swap(&c->batch, &c->next);
	take_messages(c);
	start_batch(c);
	return 1;
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
	if (c->own != OWN_OWNER || c->w->stopping || (c->batch.count > 0 && !c->filling))
		return; /* a batch waits for its retry: the rest stays queued in librdkafka */
	if (promote_next(c))
		return;
	take_messages(c);
	if (c->batch.count == 0)
		return;
	if (batch_full(&c->batch) || c->cfg->issue_batch_linger <= 0) {
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
	if (c->batch.count == 0 || c->w->stopping)
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

	if (c->own != OWN_OWNER)
		return; /* nothing assigned: no progress of ours to report */
	fill_batch(c);
	admission_tick(c);
	if (c->batch.count == 0)
		report_lag(c, c->next_offset);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	if (c->own == OWN_OWNER && c->batch.count > 0 && !c->w->stopping)
		batch_run(c);
}

/* Only on a session that already owns the partition (the store keeps no other): pruning is a write too. */
static void on_prune(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;
	int deleted = 0, total = 0;
	/* Each statement is bounded (store.c); the run is too, so that it ends well inside the watchdog's
	 * time. */
	int64_t until = clock_mono_ms() + c->cfg->daemon_worker_timeout / 4;

	for (int i = 0; i < PRUNE_MAX_STATEMENTS && clock_mono_ms() < until; i++) {
		if (store_prune(c->store, c->committed, &deleted) != 0)
			break;
		total += deleted;
		if (deleted < 10000)
			break;
	}
	if (total > 0)
		log_info("pruned %d rejected requests older than issue.result_ttl", total);
}

/*
 * Where consumption starts, given to assign() explicitly. librdkafka 2.0.2
 * can lose an assign() at RD_KAFKA_OFFSET_STORED: when its own OffsetFetch
 * meets a group coordinator that just moved (a broker killed a moment
 * before), the partition stays "queried" and is never fetched, while the
 * process looks healthy (librdkafka issue 5586; the mixed chaos scenario on a
 * real cluster stalled a partition this way). rd_kafka_committed() either
 * answers or fails, and a failure is only tried again.
 *
 * Returns 0 with *offset set (RD_KAFKA_OFFSET_BEGINNING when nothing was
 * committed: auto.offset.reset earliest), -1 when Kafka did not answer.
 */
static int committed_offset(consumer_t *c, int timeout_ms, int64_t *offset)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(parts, c->cfg->kafka_topic, c->partition);
	err = rd_kafka_committed(c->rk, parts, timeout_ms);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		err = parts->elems[0].err;
	*offset = parts->elems[0].offset >= 0 ? parts->elems[0].offset : RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("%s[%d]: cannot read the committed offset (%s); trying again in %d ms",
		         c->cfg->kafka_topic, c->partition, rd_kafka_err2str(err), ASSIGN_RETRY_MS);
		return -1;
	}
	return 0;
}

/* Static assignment: the master, not a group rebalance, decides who owns a partition. */
static int assign_at(consumer_t *c, int64_t offset)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	rd_kafka_topic_partition_list_add(parts, c->cfg->kafka_topic, c->partition)->offset = offset;
	err = rd_kafka_assign(c->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot assign %s[%d]: %s", c->cfg->kafka_topic, c->partition,
		          rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/*
 * Asks for the topic's metadata before the assignment, bounded by
 * timeout_ms. librdkafka 2.0.2 resolves a logical start offset (BEGINNING,
 * what a partition with no committed offset starts at) only once it knows
 * the partition's leader, and otherwise tries again on a fixed 500 ms
 * timer: a consumer assigned right after its start, before its first
 * metadata answer, fetched nothing for about a second (the first decision
 * of a sale on a fresh daemon came 1.0 s after its first 202). A failure
 * here only costs that second: the assignment goes on.
 */
static void learn_leader(consumer_t *c, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t err;

	if (c->topic == NULL && (c->topic = rd_kafka_topic_new(c->rk, c->cfg->kafka_topic, NULL)) == NULL) {
		log_warn("kafka topic %s: %s", c->cfg->kafka_topic, rd_kafka_err2str(rd_kafka_last_error()));
		return;
	}
	err = rd_kafka_metadata(c->rk, 0, c->topic, &md, timeout_ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("%s[%d]: no metadata yet (%s); assigning anyway", c->cfg->kafka_topic, c->partition,
		         rd_kafka_err2str(err));
		return;
	}
	rd_kafka_metadata_destroy(md);
}

/*
 * The committed offset is where the first message should be (a later one
 * means a gap), and admission control starts from it. Without a committed
 * offset the previous admission value stands until the first batch (or the
 * once-a-second resync) corrects it: asking for the log start here would
 * block start-up longer while Kafka is down.
 */
static int try_assign(consumer_t *c, int timeout_ms) /* 0: assigned, 1: try again later, -1: failed */
{
	int64_t offset;

	if (committed_offset(c, timeout_ms, &offset) != 0)
		return 1;
	c->committed = offset;
	if (offset >= 0)
		c->next_offset = offset;
	else
		log_info("%s[%d]: no committed offset; starting from the earliest", c->cfg->kafka_topic,
		         c->partition);
	admission_start(c->w->args.shm, c->partition, c->next_offset, -1);
	learn_leader(c, timeout_ms);
	if (assign_at(c, offset) != 0)
		return -1;
	c->assigned = 1;
	/* Only now: pending figures must start from where this owner starts, not from a stale decided. */
	admission_owner(c->w->args.shm, c->partition, 1);
	if (offset >= 0)
		log_info("assigned %s[%d] at offset %lld (group %s)", c->cfg->kafka_topic, c->partition,
		         (long long)offset, c->cfg->kafka_group_id);
	else
		log_info("assigned %s[%d] at the beginning (group %s)", c->cfg->kafka_topic, c->partition,
		         c->cfg->kafka_group_id);
	return 0;
}

static void on_assign_retry(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	int rc;

	if (c->own != OWN_OWNER)
		return;
	if ((rc = try_assign(c, ASSIGN_RETRY_MS)) > 0)
		add_timer(c->assign_ev, ASSIGN_RETRY_MS);
	else if (rc < 0)
		worker_finish(c->w, 1);
}

/* ---- ownership (the overview at the top of this file) ---- */

static void cancel(struct event *ev)
{
	if (ev != NULL && event_del(ev) != 0)
		log_error("cannot cancel a timer");
}

/*
 * Ownership lost: the batch in progress is dropped without another write (its
 * Redis reservations are the new owner's to find, as after a crash), and the
 * partition unassigned, so that nothing more is fetched. Offsets stored
 * before are of batches decided while this session owned the partition: a
 * late commit of them can only make the new owner replay, harmlessly.
 */
static void stop_consuming(consumer_t *c)
{
	rd_kafka_resp_err_t err;

	cancel(c->retry_ev);
	cancel(c->deliver_ev);
	cancel(c->assign_ev);
	if (c->batch.count > 0) {
		log_warn("dropping a batch of %d from offset %lld unwritten: the partition is no longer ours",
		         c->batch.count, (long long)c->batch.items[0].msg->offset);
		results_abandon(c->results);
	}
	batch_drop(c);
	c->delivering = 0;
	c->retry_ms = 0;
	if (c->assigned && (err = rd_kafka_assign(c->rk, NULL)) != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_error("cannot unassign %s[%d]: %s", c->cfg->kafka_topic, c->partition,
		          rd_kafka_err2str(err));
	c->assigned = 0;
	c->next_offset = -1;
	c->committed = -1;
	metrics_set_lag(c->partition, -1);
}

/* Another session holds the lock: wait for it, quietly (one line now, one at the takeover). */
static void stand_by(consumer_t *c)
{
	char node[STORE_NODE], since[40];
	int found;

	if (c->own == OWN_STANDBY)
		return;
	if (c->own == OWN_OWNER)
		stop_consuming(c);
	c->own = OWN_STANDBY;
	c->standby_since_ms = clock_mono_ms();
	admission_owner(c->w->args.shm, c->partition, 0); /* this host cannot see the owner's progress */
	metrics_set_owner(c->partition, 0);
	found = store_owner_of(c->store, node, sizeof(node), since, sizeof(since));
	if (found > 0)
		log_info("standby, owned by node %s since %s", node, since);
	else
		log_info("standby, owned by node (unknown: no partition_owners row) since (unknown)");
}

/* The lock is ours (store_ensure() recorded it in partition_owners): consume from the committed offset. */
static void own_partition(consumer_t *c)
{
	const char *previous = store_previous_owner(c->store);

	if (c->own == OWN_STANDBY) {
		metrics_takeover(c->partition);
		log_info("took over from node %s after %lld ms standing by",
		         previous[0] != '\0' ? previous : "(none)",
		         (long long)(clock_mono_ms() - c->standby_since_ms));
	}
	/*
	 * Losing the partition with a batch in flight detached the results
	 * producer (stop_consuming()): without this, no delivery would ever be
	 * recorded again and the regained partition would retry its first batch
	 * for good, the loop alive and the watchdog content.
	 */
	if (results_reattach(c->results) != 0) {
		log_warn("%s[%d]: results abandoned at the loss of the partition are still unreported; "
		         "exiting so that a new process owns it",
		         c->cfg->kafka_topic, c->partition);
		worker_finish(c->w, 1);
		return;
	}
	c->own = OWN_OWNER;
	metrics_set_owner(c->partition, 1);
	/* A first try now; the event loop takes over (assign_ev) if Kafka does not answer. */
	switch (try_assign(c, COMMITTED_LOOKUP_MS)) {
	case 0:
		break;
	case 1:
		add_timer(c->assign_ev, ASSIGN_RETRY_MS);
		break;
	default:
		worker_finish(c->w, 1);
	}
}

/* STORE_RETRY: PostgreSQL is down; asked again later, less and less often (each failure is logged). */
static void owner_backoff(consumer_t *c)
{
	int64_t cap = c->cfg->issue_retry_max > c->cfg->daemon_takeover_poll ? c->cfg->issue_retry_max
	                                                                     : c->cfg->daemon_takeover_poll;

	c->owner_poll_ms = c->owner_poll_ms * 2 < cap ? c->owner_poll_ms * 2 : cap;
}

/* An owner between batches: if its session is gone, take the lock again now, or stand by. */
static void check_still_owner(consumer_t *c)
{
	store_rc_t rc = STORE_OK;

	store_probe(c->store);
	if (!store_owned(c->store) && (rc = store_ensure(c->store)) == STORE_NOT_OWNER)
		stand_by(c);
	if (rc == STORE_RETRY)
		owner_backoff(c); /* the batch path keeps trying too, before its next write */
	else
		c->owner_poll_ms = c->cfg->daemon_takeover_poll;
}

/* A consumer without the partition: ask for its lock (quietly during the start-up grace). */
static void ask_for_ownership(consumer_t *c)
{
	store_rc_t rc = store_ensure(c->store);

	if (rc == STORE_RETRY) {
		owner_backoff(c);
		return;
	}
	c->owner_poll_ms = c->cfg->daemon_takeover_poll;
	if (rc == STORE_OK)
		own_partition(c);
	else if (c->own == OWN_UNKNOWN && clock_mono_ms() < c->grace_until_ms)
		c->owner_poll_ms = OWNERSHIP_RETRY_MS;
	else
		stand_by(c);
}

static void on_owner_check(evutil_socket_t fd, short what, void *arg)
{
	consumer_t *c = arg;

	if (c->w->stopping)
		return;
	if (c->own == OWN_OWNER)
		check_still_owner(c);
	else
		ask_for_ownership(c);
	add_timer(c->owner_ev, c->owner_poll_ms);
}

/*
 * Auto commit's reports: how far a replay can reach back (it starts at the
 * committed offset), which bounds what on_prune() may delete.
 */
static void on_committed(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
                         void *opaque)
{
	consumer_t *c = opaque;

	(void)rk;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR || offsets == NULL || !c->assigned)
		return;
	for (int i = 0; i < offsets->cnt; i++) {
		const rd_kafka_topic_partition_t *tp = &offsets->elems[i];

		if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->partition == c->partition &&
		    strcmp(tp->topic, c->cfg->kafka_topic) == 0 && tp->offset > c->committed)
			c->committed = tp->offset;
	}
}

static int consumer_create(consumer_t *c)
{
	rd_kafka_conf_t *conf = kafka_conf_consumer(c->cfg, c->w->args.kafka_bootstrap, c->partition);
	char err[512];

	if (conf == NULL)
		return -1;
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_conf_set_offset_commit_cb(conf, on_committed);
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (c->rk == NULL) {
		log_error("cannot create the Kafka consumer: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	/* Nothing is assigned until the partition's ownership lock is ours (own_partition()). */
	return rd_kafka_poll_set_consumer(c->rk) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* The events and timers of the overview at the top of this file. */
static int events_start(consumer_t *c)
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
	c->assign_ev = event_new(base, -1, 0, on_assign_retry, c);
	if (c->queue == NULL || c->poll_ev == NULL || c->next_ev == NULL || c->retry_ev == NULL ||
	    c->owner_ev == NULL || c->prune_ev == NULL || c->linger_ev == NULL || c->deliver_ev == NULL ||
	    c->assign_ev == NULL)
		return -1;
	add_timer(c->poll_ev, POLL_SAFETY_MS);
	add_timer(c->prune_ev, fault_value("consumer_prune_every") > 0 ? fault_value("consumer_prune_every")
	                                                               : PRUNE_EVERY_MS);
	return 0;
}

static void log_stats(const consumer_t *c)
{
	const batch_stats_t *s = &c->batch.stats;

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
		log_debug("dropping a batch of %d that was still filling", c->batch.count);
		batch_drop(c);
	} else if (c->batch.count > 0) {
		log_info("abandoning an undecided batch of %d from offset %lld; it will be delivered again",
		         c->batch.count, (long long)c->batch.items[0].msg->offset);
		results_abandon(c->results);
		batch_drop(c);
	} else if (c->next.count > 0) {
		/* Gated ahead, not decided: the successor finds its reservations, as after a crash. */
		log_info("abandoning a batch of %d gated ahead from offset %lld; it will be delivered again",
		         c->next.count, (long long)c->next.items[0].msg->offset);
		batch_drop(c);
	}
	/* A standby has nothing assigned, and so nothing to commit. */
	err = c->assigned ? rd_kafka_commit(c->rk, NULL, 0) : RD_KAFKA_RESP_ERR_NO_ERROR;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_error("final offset commit failed: %s", rd_kafka_err2str(err));
	metrics_set_owner(c->partition, -1);
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
		log_info("waiting for the kafka deliveries of a batch of %d before stopping", c->batch.count);
		return;
	}
	consumer_stop_now(c);
}

static void events_free(consumer_t *c)
{
	struct event **evs[] = {&c->poll_ev,  &c->next_ev,   &c->retry_ev,   &c->owner_ev,
	                        &c->prune_ev, &c->linger_ev, &c->deliver_ev, &c->assign_ev};

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
	batch_fini(&c->batch);
	batch_fini(&c->next);
	kafka_queue_free(c->queue);
	if (c->topic != NULL)
		rd_kafka_topic_destroy(c->topic);
	if (c->rk != NULL) {
		rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("consumer close: %s", rd_kafka_err2str(err));
		rd_kafka_destroy(c->rk);
	}
	stock_check_free(c->stock_check);
	store_free(c->store);
	gate_free(c->gate);
}

/* The stock check runs only between batches (stock_check.h says why that is safe). */
static int consumer_idle(void *arg)
{
	const consumer_t *c = arg;

	return c->own == OWN_OWNER && c->batch.count == 0 && c->next.count == 0 && !c->w->stopping;
}

static int consumer_start(consumer_t *c)
{
	const worker_args_t *args = &c->w->args;

	if ((c->gate = gate_new(c->cfg)) == NULL || (c->store = store_new(c->cfg, c->partition)) == NULL ||
	    (c->results = results_new(c->cfg, args->kafka_bootstrap, c->partition, c->w->base, on_results,
	                              c)) == NULL ||
	    batch_init(&c->batch, c->cfg, c->partition, c->gate, c->store, c->results) != 0 ||
	    batch_init(&c->next, c->cfg, c->partition, c->gate, c->store, c->results) != 0)
		return -1;
	/* Both: they change places after every batch gated ahead (batch_swap()). */
	c->batch.overlap = c->next.overlap = pregate;
	c->batch.overlap_arg = c->next.overlap_arg = c;
	c->batch.ahead = c->next.ahead = &c->next;
	if (consumer_create(c) != 0 || events_start(c) != 0 ||
	    (c->stock_check = stock_check_new(c->w->base, c->cfg, c->partition, c->store, c->gate,
	                                      consumer_idle, c)) == NULL)
		return -1;
	c->grace_until_ms = clock_mono_ms() + OWNERSHIP_GRACE_MS;
	event_active(c->owner_ev, EV_TIMEOUT, 0);
	return worker_ready(c->w, NULL);
}

int consumer_main(worker_t *w)
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
	c->committed = -1;
	c->seen_accepted = -1;
	c->owner_poll_ms = c->cfg->daemon_takeover_poll;
	w->ctx = c;
	w->on_stop = consumer_on_stop;
	if (consumer_start(c) == 0)
		rc = worker_run(w);
	consumer_destroy(c);
	free(c);
	w->ctx = NULL;
	return rc;
}
