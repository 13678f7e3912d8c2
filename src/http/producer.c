/* SPDX-License-Identifier: BSD-2-Clause */
/* producer.c: the HTTP worker's Kafka producer, driven by the worker's event loop. */
#include "http/producer.h"
#include "http/produce_gate.h"

#include "core/admission.h"
#include "core/kafka_conf.h"
#include "core/kafka_queue.h"
#include "core/kafka_stats.h"
#include "core/kafka_topics.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/clock.h"
#include "core/kafka_delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_SAFETY_MS 100
/* Held messages per producer past which producer_send() answers PRODUCE_FULL, as librdkafka's own
 * queue.buffering.max.messages does (its default). */
#define HELD_MAX 100000
/* How long a starting worker waits for Kafka's first answer (see await_brokers()). */
#define STARTUP_METADATA_MS 1000

/* One message on its way: whom to tell when its delivery report arrives, and, while it is held, the
 * message itself (topic, key, value) in data[]. */
typedef struct {
	/* First: the gate's bookkeeping (produce_gate.h); gm.since_us starts the produce timer. */
	gate_msg_t gm;
	produce_fn fn;
	void *arg;
	size_t topic_len, key_len, len;
	char data[];
} produce_request_t;

/* One librdkafka producer: the only one, or one of the two lanes (produce_gate.h). */
typedef struct {
	producer_t *p;
	rd_kafka_t *rk;
	kafka_queue_t *mainq; /* delivery reports, statistics and errors arrive here */
	rd_kafka_topic_t *topics[KAFKA_TOPICS_COUNT]; /* held from the start: see producer_new() */
	int brokers_up; /* -1: not known yet (the fast lane until its first statistics) */
} lane_conn_t;

struct producer {
	lane_conn_t lanes[LANES];
	int nlanes;
	const config_t *cfg;
	kafka_topics_t topic_state; /* what the metadata says of the topics */
	int fatal;                  /* librdkafka raised a fatal error: nothing can be produced any more */
	long fault_fatal;           /* test builds: fabricate one after this many more messages
	                               (producer_arm_fatal_fault) */
	producer_fatal_fn on_fatal;
	void *on_fatal_arg;
	gates_t gates; /* one per partition of kafka.partitions */
};

static void release(producer_t *p, gate_t *g);
static void expire(producer_t *p);

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	producer_t *p = ((lane_conn_t *)opaque)->p;
	produce_request_t *d = m->_private;
	gate_t *g;

	if (d == NULL)
		return;
	g = &p->gates.gates[d->gm.gate];
	if (gate_reported(g, &d->gm)) {
		int ok = kafka_delivery_confirmed(m);

		metrics_observe(H_KAFKA_PRODUCE, clock_mono_us() - d->gm.since_us);
		if (!ok)
			metrics_inc(M_KAFKA_PRODUCE_ERRORS);
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("kafka delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
			         rd_kafka_err2str(m->err));
		d->fn(ok ? PRODUCE_OK : PRODUCE_FAILED, (int)m->partition, m->offset, d->arg);
	}
	free(d);
	release(p, g);
}

/*
 * Readiness from the statistics librdkafka emits every second: is any broker
 * connection UP, and do the topics exist with kafka.partitions partitions?
 */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	lane_conn_t *l = opaque;
	kafka_stats_t st;

	if (kafka_stats_read(json, len, l->p->cfg, &st) == 0) {
		l->brokers_up = st.brokers_up;
		if (l == &l->p->lanes[0]) /* both lanes see the same topics */
			kafka_topics_merge(&l->p->topic_state, &st.seen);
	}
	return 0; /* librdkafka frees json */
}

/* Like the consumers' results producer (results_fatal()), an idempotent producer's fatal error is final. */
static void fatal(lane_conn_t *l)
{
	producer_t *p = l->p;
	char reason[512];
	rd_kafka_resp_err_t err = rd_kafka_fatal_error(l->rk, reason, sizeof(reason));

	if (p->fatal)
		return;
	p->fatal = 1;
	log_error("the kafka producer failed fatally: %s: %s", rd_kafka_err2name(err), reason);
	if (p->on_fatal != NULL)
		p->on_fatal(p->on_fatal_arg);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	lane_conn_t *l = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		fatal(l);
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		l->brokers_up = 0;
	log_warn("kafka producer: %s", reason);
}

/*
 * Also after a fatal error: librdkafka then fails what it still queues and
 * reports on what was already sent, and the draining worker answers each of
 * those requests before it leaves (http_worker.c) instead of cutting them.
 */
static void serve(void *arg)
{
	lane_conn_t *l = arg;

	while (rd_kafka_poll(l->rk, 0) > 0)
		;
	expire(l->p);
}

/* The shared producer settings (kafka_conf.c) plus what the HTTP worker needs: callbacks and statistics.
 * With lanes, each has its linger and its client.id (brokers' logs and quotas tell them apart). */
static rd_kafka_conf_t *producer_conf(lane_conn_t *l, lane_t lane, const char *bootstrap)
{
	const config_t *cfg = l->p->cfg;
	int lanes = l->p->nlanes > 1;
	rd_kafka_conf_t *conf = kafka_conf_producer(
	    cfg, bootstrap, lanes && lane == LANE_FAST ? "couponsd-http-fast" : "couponsd-http",
	    !lanes              ? "1"
	    : lane == LANE_FAST ? KAFKA_HTTP_LINGER_FAST
	                        : KAFKA_HTTP_LINGER_SLOW);

	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_opaque(conf, l);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	rd_kafka_conf_set_error_cb(conf, on_error);
	if (kafka_conf_set(conf, "statistics.interval.ms", "1000") != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/*
 * Readiness comes from librdkafka's statistics, once a second: without a
 * first answer now, a new worker says "kafka unreachable" for its first
 * second, and /readyz flaps after every start and reload. The same answers
 * say whether the three topics exist as configured. Bounded: when Kafka is
 * down, the worker starts unready after STARTUP_METADATA_MS in all.
 */
static void await_brokers(producer_t *p)
{
	lane_conn_t *l = &p->lanes[0];
	int64_t deadline = clock_mono_ms() + STARTUP_METADATA_MS;

	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		const struct rd_kafka_metadata *md = NULL;
		int64_t left = deadline - clock_mono_ms();

		if (l->topics[i] == NULL || left <= 0 ||
		    rd_kafka_metadata(l->rk, 0, l->topics[i], &md, (int)left) != RD_KAFKA_RESP_ERR_NO_ERROR)
			return;
		l->brokers_up = md->broker_cnt > 0;
		kafka_topics_from_metadata(&p->topic_state, p->cfg, md);
		rd_kafka_metadata_destroy(md);
	}
}

/*
 * A topic handle makes librdkafka fetch the topic's metadata now. Without it
 * the first message of each worker waited for that lookup (~0.5 s), so the
 * first requests after a start or reload answered slowly. The results and
 * dead-letter topics are only produced to by the consumers; their handles
 * here make the statistics report whether they exist.
 */
static void hold_topics(lane_conn_t *l)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		const char *name = kafka_topics_name(l->p->cfg, i);

		if ((l->topics[i] = rd_kafka_topic_new(l->rk, name, NULL)) == NULL)
			log_warn("kafka topic %s: %s", name, rd_kafka_err2str(rd_kafka_last_error()));
	}
}

/* One lane's librdkafka producer, its topics and its queue in the loop; -1 after logging. */
static int lane_open(producer_t *p, lane_t lane, struct event_base *base, const char *bootstrap)
{
	lane_conn_t *l = &p->lanes[lane];
	rd_kafka_conf_t *conf = producer_conf(l, lane, bootstrap);
	char err[512];

	if (conf == NULL)
		return -1;
	if ((l->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
		log_error("cannot create the Kafka producer: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	hold_topics(l);
	l->mainq = kafka_queue_watch(base, rd_kafka_queue_get_main(l->rk), POLL_SAFETY_MS, serve, l);
	return l->mainq == NULL ? -1 : 0;
}

producer_t *producer_new(struct event_base *base, const config_t *cfg, const char *bootstrap)
{
	producer_t *p = calloc(1, sizeof(*p));
	int fast_at = kafka_conf_http_lanes(cfg);

	if (p == NULL)
		return NULL;
	p->cfg = cfg;
	kafka_topics_init(&p->topic_state);
	p->nlanes = fast_at > 0 ? LANES : 1;
	for (int i = 0; i < LANES; i++) {
		p->lanes[i].p = p;
		p->lanes[i].brokers_up = i == 0 ? 0 : -1;
	}
	if (gates_init(&p->gates, cfg->kafka_partitions) != 0) {
		free(p);
		return NULL;
	}
	if (kafka_conf_http_gated(cfg))
		gates_window(&p->gates);
	if (fast_at > 0)
		gates_lanes(&p->gates, fast_at, fast_at / 2 > 0 ? fast_at / 2 : 1);
	for (int i = 0; i < p->nlanes; i++) {
		if (lane_open(p, (lane_t)i, base, bootstrap) != 0) {
			producer_free(p, 0);
			return NULL;
		}
	}
	await_brokers(p);
	return p;
}

/* Gives one message to librdkafka (it copies it); the error as rd_kafka_producev() returns it. */
static rd_kafka_resp_err_t hand_over(producer_t *p, produce_request_t *d, const char *topic, const char *key,
                                     const char *value)
{
	rd_kafka_resp_err_t err =
	    rd_kafka_producev(p->lanes[p->gates.gates[d->gm.gate].lane].rk, RD_KAFKA_V_TOPIC(topic),
	                      RD_KAFKA_V_KEY(key, d->key_len), RD_KAFKA_V_VALUE((void *)value, d->len),
	                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		gate_sent(&p->gates.gates[d->gm.gate], &d->gm);
	else
		metrics_inc(M_KAFKA_PRODUCE_ERRORS);
	return err;
}

/* A request that was held: its caller hears PRODUCE_FAILED (503). */
static void fail(produce_request_t *d)
{
	d->fn(PRODUCE_FAILED, -1, -1, d->arg);
}

/* A partition's lane move completed (gate_admit() or gate_may_release()). */
static void lane_moved(producer_t *p, const gate_t *g)
{
	metrics_inc(g->lane == LANE_FAST ? M_KAFKA_LANE_TO_FAST : M_KAFKA_LANE_TO_SLOW);
	log_debug("kafka produce: partition %d is in the %s lane now", (int)(g - p->gates.gates),
	          g->lane == LANE_FAST ? "fast" : "slow");
}

static int may_release(producer_t *p, gate_t *g)
{
	lane_t was = g->lane;
	int may = gate_may_release(&p->gates, g);

	if (g->lane != was)
		lane_moved(p, g);
	return may;
}

/* Under the window again: everything held for the partition goes, oldest first, to make one request. */
static void release(producer_t *p, gate_t *g)
{
	produce_request_t *d;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	long failed = 0;

	if (!may_release(p, g))
		return;
	while ((d = (produce_request_t *)gate_pop_held(&p->gates, g)) != NULL) {
		const char *topic = d->data, *key = topic + d->topic_len + 1;
		rd_kafka_resp_err_t e = hand_over(p, d, topic, key, key + d->key_len + 1);

		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			err = e;
			failed++;
			fail(d);
			free(d);
		}
	}
	if (failed > 0)
		log_warn("kafka produce: %ld held messages refused: %s", failed, rd_kafka_err2str(err));
}

static void on_expired(gate_msg_t *m, void *arg)
{
	produce_request_t *d = (produce_request_t *)m;

	(void)arg;
	metrics_inc(M_KAFKA_PRODUCE_ERRORS);
	fail(d);
	if (m->state == GATE_HELD)
		free(d); /* an orphan is freed at its delivery report */
}

/* Run every 100 ms: a held request's wait counts against its kafka.produce_timeout. */
static void expire(producer_t *p)
{
	long n;

	if (!gates_may_hold(&p->gates))
		return; /* nothing is ever held, so nothing is handed over late either */
	n = gates_expire(&p->gates, clock_mono_us() - p->cfg->kafka_produce_timeout * 1000, on_expired, p);
	if (n > 0)
		log_warn("kafka produce: %ld requests waited kafka.produce_timeout behind their partition's "
		         "earlier "
		         "deliveries; answered as failed",
		         n);
}

/* A copy of the message, to hold it (its request is answered long after the caller's buffers are gone). */
static produce_request_t *request_new(const char *topic, const char *key, const char *value, size_t len)
{
	size_t topic_len = strlen(topic), key_len = strlen(key);
	produce_request_t *d = malloc(sizeof(*d) + topic_len + key_len + len + 2);

	if (d == NULL)
		return NULL;
	memset(d, 0, sizeof(*d));
	d->topic_len = topic_len;
	memcpy(d->data, topic, topic_len + 1);
	memcpy(d->data + topic_len + 1, key, key_len + 1);
	memcpy(d->data + topic_len + key_len + 2, value, len);
	return d;
}

produce_result_t producer_send(producer_t *p, const char *topic, const char *key, const char *value,
                               size_t len, produce_fn fn, void *arg)
{
	size_t key_len = strlen(key);
	gate_t *g = gates_of(&p->gates, admission_partition(key, key_len, p->cfg->kafka_partitions));
	lane_t was = g->lane;
	int64_t now = clock_mono_us();
	int wait = gate_admit(&p->gates, g, now);
	produce_request_t *d;
	rd_kafka_resp_err_t err;

	if (g->lane != was)
		lane_moved(p, g);

	if (wait && p->gates.held >= HELD_MAX) {
		metrics_inc(M_KAFKA_PRODUCE_ERRORS);
		return PRODUCE_FULL;
	}
	d = wait ? request_new(topic, key, value, len) : calloc(1, sizeof(*d));
	if (d == NULL)
		return PRODUCE_FAILED;
	d->fn = fn;
	d->arg = arg;
	d->key_len = key_len;
	d->len = len;
	d->gm.since_us = now;
	d->gm.gate = (int)(g - p->gates.gates);
	if (wait) {
		metrics_inc(M_KAFKA_PRODUCE_HELD);
		gate_hold(&p->gates, g, &d->gm);
	} else if ((err = hand_over(p, d, topic, key, value)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(d);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return PRODUCE_FULL;
		log_warn("kafka produce to %s: %s", topic, rd_kafka_err2str(err));
		return PRODUCE_FAILED;
	}
	if (p->fault_fatal > 0 && --p->fault_fatal == 0) {
		if (rd_kafka_test_fatal_error(p->lanes[g->lane].rk,
		                              RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
		                              "fault injection") != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("fault injection: cannot raise a fatal kafka error");
	}
	return PRODUCE_OK;
}

/* The fast lane counts as up until its own statistics say otherwise: it talks to the same brokers, and
 * waiting for them would make a new worker unready for its first second. */
int producer_ready(const producer_t *p)
{
	return p->lanes[0].brokers_up > 0 && (p->nlanes == 1 || p->lanes[1].brokers_up != 0) && !p->fatal;
}

void producer_on_fatal(producer_t *p, producer_fatal_fn fn, void *arg)
{
	p->on_fatal = fn;
	p->on_fatal_arg = arg;
}

void producer_arm_fatal_fault(producer_t *p, long after)
{
	p->fault_fatal = after;
}

const char *producer_topic_problem(const producer_t *p, char *buf, size_t size)
{
	return kafka_topics_problem(&p->topic_state, p->cfg, buf, size);
}

/*
 * Waits for every lane's deliveries. A delivery report can release held
 * events into either lane (the window, or a lane move completing), so no
 * lane is destroyed until all are flushed, and the flushes go round until
 * nothing is queued anywhere or the time is up.
 */
static void flush_lanes(producer_t *p, int timeout_ms)
{
	int64_t deadline = clock_mono_ms() + timeout_ms;
	int left;

	do {
		left = 0;
		for (int i = 0; i < p->nlanes && p->lanes[i].rk != NULL; i++) {
			int64_t ms = deadline - clock_mono_ms();

			(void)rd_kafka_flush(p->lanes[i].rk,
			                     ms > 0 ? (int)ms : 0); /* judged by outq_len below */
			left += rd_kafka_outq_len(p->lanes[i].rk);
		}
	} while (left > 0 && clock_mono_ms() < deadline);
	if (left > 0)
		log_warn("kafka producer: %d messages still undelivered at exit", left);
}

static void lane_close(lane_conn_t *l)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		if (l->topics[i] != NULL)
			rd_kafka_topic_destroy(l->topics[i]);
	}
	if (l->rk != NULL)
		rd_kafka_destroy(l->rk);
}

void producer_free(producer_t *p, int timeout_ms)
{
	if (p == NULL)
		return;
	for (int i = 0; i < LANES; i++)
		kafka_queue_free(p->lanes[i].mainq);
	flush_lanes(p, timeout_ms);
	for (int i = 0; i < LANES; i++)
		lane_close(&p->lanes[i]);
	for (int i = 0; p->gates.gates != NULL && i < p->gates.count; i++) {
		produce_request_t *d;

		while ((d = (produce_request_t *)gate_pop_held(&p->gates, &p->gates.gates[i])) != NULL) {
			fail(d);
			free(d);
		}
	}
	gates_fini(&p->gates);
	free(p);
}
