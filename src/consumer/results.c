/* SPDX-License-Identifier: BSD-2-Clause */
/* results.c: publishing decisions (Redis status, pub/sub, the results topic) and dead letters. */
#include "consumer/results.h"

#include "core/clock.h"
#include "core/kafka_conf.h"
#include "core/kafka_delivery.h"
#include "core/kafka_queue.h"
#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long results_abandon() waits for purged messages to be reported. */
#define ABANDON_WAIT_MS 2000
/* The safety-net serve for a missed wake-up (see kafka_queue.h). */
#define POLL_SAFETY_MS 100

struct results {
	const config_t *cfg;
	rd_kafka_t *rk;
	kafka_queue_t *mainq;        /* delivery reports arrive here */
	rd_kafka_topic_t *topics[2]; /* results and dead letters, held from the start: see hold_topics() */
	results_report_fn on_report;
	void *report_arg;
	int in_flight;
	int detached; /* abandoned: delivery states may be freed memory, never write them */
	int failed;   /* delivery failures since the last results_report_failures() */
	rd_kafka_resp_err_t last_error;
};

/*
 * Errors that sending again can never cure: the message is larger than the
 * producer or the broker accepts, or the topic does not exist. A dead letter
 * that meets one would be retried forever and hold its whole partition.
 */
static int never_deliverable(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
	       err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
}

/*
 * The partition must never block on its dead-letter topic: a dead letter
 * Kafka can never take is logged with the offset of the message it stood
 * for, counted, and skipped (its offset is stored with the batch's).
 */
static void drop_dead_letter(results_t *r, int partition, int64_t offset, rd_kafka_resp_err_t err)
{
	log_error("%s[%d] offset %lld: the dead letter cannot be produced to %s (%s); skipping the message",
	          r->cfg->kafka_topic, partition, (long long)offset, r->cfg->kafka_dlq_topic,
	          rd_kafka_err2str(err));
	metrics_inc(M_DLQ_DROPPED);
}

/* The source offset a dead letter carries in its header, or -1. */
static int64_t dead_letter_source(const rd_kafka_message_t *m, const char *header)
{
	rd_kafka_headers_t *h = NULL;
	const void *value = NULL;
	size_t size = 0;
	char text[24];

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(h, header, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    value == NULL || size >= sizeof(text))
		return -1;
	memcpy(text, value, size);
	text[size] = '\0';
	return strtoll(text, NULL, 10);
}

/* Whether a failed delivery was a dead letter that can never be delivered (then it is dropped). */
static int dropped(results_t *r, const rd_kafka_message_t *m)
{
	if (!never_deliverable(m->err) || strcmp(rd_kafka_topic_name(m->rkt), r->cfg->kafka_dlq_topic) != 0)
		return 0;
	drop_dead_letter(r, (int)dead_letter_source(m, "source-partition"),
	                 dead_letter_source(m, "source-offset"), m->err);
	return 1;
}

/* Runs inside rd_kafka_poll(), i.e. on the consumer's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	results_t *r = opaque;
	item_delivery_t *delivery = m->_private;
	int ok;

	r->in_flight--;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && dropped(r, m)) {
		if (delivery != NULL && !r->detached)
			*delivery = DELIVERY_DROPPED;
		return;
	}
	ok = kafka_delivery_confirmed(m); /* a success without an offset is sent again (kafka_delivery.c) */
	if (!ok) {
		r->failed++;
		r->last_error =
		    m->err != RD_KAFKA_RESP_ERR_NO_ERROR ? m->err : RD_KAFKA_RESP_ERR__INCONSISTENT;
	}
	if (delivery != NULL && !r->detached)
		*delivery = ok ? DELIVERY_DONE : DELIVERY_FAILED;
}

void results_serve(results_t *r)
{
	while (rd_kafka_poll(r->rk, 0) > 0)
		;
	if (r->on_report != NULL)
		r->on_report(r->report_arg);
}

static void serve(void *arg)
{
	results_serve(arg);
}

/*
 * Nothing flushes this producer any more: a batch's results leave after
 * linger.ms: 1 ms here, set before kafka.producer's overrides (an operator's
 * larger value delays each batch's end, and so the next batch, but never a
 * client's answer: the Redis status is written first).
 */
static rd_kafka_t *producer_create(results_t *r, const char *bootstrap, int partition)
{
	char client_id[64], err[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;

	snprintf(client_id, sizeof(client_id), "couponsd-consumer-%d-results", partition);
	if ((conf = kafka_conf_producer(r->cfg, bootstrap, client_id, "1")) == NULL)
		return NULL;
	rd_kafka_conf_set_opaque(conf, r);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL) {
		log_error("cannot create the results producer: %s", err);
		rd_kafka_conf_destroy(conf);
	}
	return rk;
}

/*
 * Topic handles make librdkafka fetch the topics' metadata now. Without
 * them the first batch waited ~0.5 s for that lookup before its delivery
 * report, and every batch behind it with it, after each start or reload.
 */
static void hold_topics(results_t *r)
{
	const char *names[] = {r->cfg->kafka_results_topic, r->cfg->kafka_dlq_topic};

	for (int i = 0; i < 2; i++) {
		if ((r->topics[i] = rd_kafka_topic_new(r->rk, names[i], NULL)) == NULL)
			log_warn("kafka topic %s: %s", names[i], rd_kafka_err2str(rd_kafka_last_error()));
	}
}

results_t *results_new(const config_t *cfg, const char *bootstrap, int partition, struct event_base *base,
                       results_report_fn on_report, void *arg)
{
	results_t *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		log_error("out of memory");
		return NULL;
	}
	r->cfg = cfg;
	r->on_report = on_report;
	r->report_arg = arg;
	/* Delivery reports come through the loop: nobody ever blocks in a flush. */
	if ((r->rk = producer_create(r, bootstrap, partition)) == NULL ||
	    (r->mainq = kafka_queue_watch(base, rd_kafka_queue_get_main(r->rk), POLL_SAFETY_MS, serve, r)) ==
	        NULL) {
		results_free(r);
		return NULL;
	}
	hold_topics(r);
	return r;
}

void results_abandon(results_t *r)
{
	int64_t deadline = clock_mono_ms() + ABANDON_WAIT_MS;
	rd_kafka_resp_err_t err = rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("kafka purge: %s", rd_kafka_err2str(err));
	/* Purged messages are reported (with an error) on the next polls. */
	while (r->in_flight > 0 && clock_mono_ms() < deadline)
		rd_kafka_poll(r->rk, 50);
	r->detached = 1;
}

int results_reattach(results_t *r)
{
	if (r->detached && r->in_flight > 0)
		return -1;
	r->detached = 0;
	return 0;
}

void results_free(results_t *r)
{
	if (r == NULL)
		return;
	kafka_queue_free(r->mainq);
	for (int i = 0; i < 2; i++) {
		if (r->topics[i] != NULL)
			rd_kafka_topic_destroy(r->topics[i]);
	}
	if (r->rk != NULL) {
		if (r->in_flight > 0)
			results_abandon(r);
		r->detached = 1;
		rd_kafka_destroy(r->rk);
	}
	free(r);
}

/*
 * Queues one message. A full local queue is not waited for here (that would
 * stop the loop): the caller retries the batch later, and the messages
 * already queued stay in flight.
 */
static rd_kafka_resp_err_t produce(results_t *r, const char *topic, const void *key, size_t key_len,
                                   const void *value, size_t value_len, rd_kafka_headers_t *headers,
                                   item_delivery_t *delivery)
{
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    r->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
	    RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(delivery), RD_KAFKA_V_END);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("kafka produce to %s: %s", topic, rd_kafka_err2str(err));
		return err;
	}
	/* On success the headers belong to the message. */
	r->in_flight++;
	*delivery = DELIVERY_IN_FLIGHT;
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int results_produce(results_t *r, item_t *it)
{
	char key[24];

	snprintf(key, sizeof(key), "%lld", (long long)it->status.event.coupon_id);
	return produce(r, r->cfg->kafka_results_topic, key, strlen(key), it->json, strlen(it->json), NULL,
	               &it->delivery) == RD_KAFKA_RESP_ERR_NO_ERROR
	           ? 0
	           : -1;
}

static rd_kafka_headers_t *dead_letter_headers(rd_kafka_message_t *m, const char *reason)
{
	rd_kafka_headers_t *original = NULL, *h;
	char partition[16], offset[24];
	const char *topic = rd_kafka_topic_name(m->rkt);

	snprintf(partition, sizeof(partition), "%d", (int)m->partition);
	snprintf(offset, sizeof(offset), "%lld", (long long)m->offset);
	h = rd_kafka_message_headers(m, &original) == RD_KAFKA_RESP_ERR_NO_ERROR
	        ? rd_kafka_headers_copy(original)
	        : rd_kafka_headers_new(4);
	if (h == NULL)
		return NULL;
	if (rd_kafka_header_add(h, "error", -1, reason, -1) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_add(h, "source-topic", -1, topic, -1) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_add(h, "source-partition", -1, partition, -1) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_add(h, "source-offset", -1, offset, -1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		return NULL;
	}
	return h;
}

int results_dead_letter(results_t *r, item_t *it)
{
	rd_kafka_message_t *m = it->msg;
	rd_kafka_headers_t *headers = dead_letter_headers(m, it->error);
	rd_kafka_resp_err_t err;

	if (headers == NULL) {
		log_error("cannot build the dead-letter headers");
		return -1;
	}
	err = produce(r, r->cfg->kafka_dlq_topic, m->key, m->key_len, m->payload, m->len, headers,
	              &it->delivery);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	rd_kafka_headers_destroy(headers);
	if (!never_deliverable(err))
		return -1;
	drop_dead_letter(r, (int)m->partition, m->offset, err);
	it->delivery = DELIVERY_DROPPED;
	return 0;
}

int results_in_flight(const results_t *r)
{
	return r->in_flight;
}

void results_report_failures(results_t *r)
{
	if (r->failed == 0)
		return;
	log_warn("%d kafka deliveries failed (last: %s); they are sent again", r->failed,
	         rd_kafka_err2str(r->last_error));
	r->failed = 0;
}

void results_test_fatal(results_t *r)
{
	log_error("fault injection: the results producer fails fatally");
	if (rd_kafka_test_fatal_error(r->rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
	                              "fault injection") != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("fault injection: cannot raise a fatal kafka error");
}

int results_fatal(results_t *r)
{
	char reason[512];
	rd_kafka_resp_err_t err = rd_kafka_fatal_error(r->rk, reason, sizeof(reason));

	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	log_error("the results producer failed fatally: %s: %s", rd_kafka_err2name(err), reason);
	return 1;
}
