/* consumer_worker.c: the consumer worker process, one per owned partition of the issue topic. */
#include "consumer_worker.h"

#include "kafka_conf.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The safety-net poll for when a queue wake-up is missed (librdkafka writes the pipe only on
 * empty->non-empty). */
#define POLL_SAFETY_MS 100

typedef struct {
	worker_t *w;
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;
	int wake[2];
	struct event *wake_ev;
	struct event *poll_ev;
	int64_t messages_seen;
} consumer_t;

static void handle_message(consumer_t *c, rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		return;
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("consume: %s", rd_kafka_message_errstr(m));
		return;
	}
	/*
	 * Deciding issue events is the pipeline's job (next stage of the
	 * build); until then the offset is deliberately not stored, so no
	 * event is ever marked done without a decision.
	 */
	c->messages_seen++;
	log_debug("partition %d offset %lld: received, not decided (offset not stored)", (int)m->partition,
	          (long long)m->offset);
}

static void drain_queue(consumer_t *c)
{
	rd_kafka_message_t *m;

	while ((m = rd_kafka_consumer_poll(c->rk, 0)) != NULL) {
		handle_message(c, m);
		rd_kafka_message_destroy(m);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	drain_queue(arg);
}

static void on_poll_tick(evutil_socket_t fd, short what, void *arg)
{
	drain_queue(arg);
}

static int assign_partition(consumer_t *c)
{
	const config_t *cfg = c->w->args.cfg;
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_resp_err_t err;

	/* Static assignment: the master, not a group rebalance, decides who owns a partition. */
	rd_kafka_topic_partition_list_add(parts, cfg->kafka_topic, c->w->args.index)->offset =
	    RD_KAFKA_OFFSET_STORED;
	err = rd_kafka_assign(c->rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("cannot assign %s[%d]: %s", cfg->kafka_topic, c->w->args.index,
		          rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static int consumer_create(consumer_t *c)
{
	const config_t *cfg = c->w->args.cfg;
	rd_kafka_conf_t *conf = kafka_conf_consumer(cfg, c->w->args.kafka_bootstrap, c->w->args.index);
	char err[512];

	if (conf == NULL)
		return -1;
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (c->rk == NULL) {
		log_error("cannot create the Kafka consumer: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	if (rd_kafka_poll_set_consumer(c->rk) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	c->queue = rd_kafka_queue_get_consumer(c->rk);
	return c->queue != NULL ? assign_partition(c) : -1;
}

/* librdkafka writes a byte to our pipe when its queue becomes non-empty: the loop never blocks on Kafka. */
static int wakeups_start(consumer_t *c)
{
	struct timeval tick = {0, POLL_SAFETY_MS * 1000};

	if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		log_error("pipe: %s", strerror(errno));
		c->wake[0] = c->wake[1] = -1;
		return -1;
	}
	rd_kafka_queue_io_event_enable(c->queue, c->wake[1], "1", 1);
	c->wake_ev = event_new(c->w->base, c->wake[0], EV_READ | EV_PERSIST, on_wake, c);
	c->poll_ev = event_new(c->w->base, -1, EV_PERSIST, on_poll_tick, c);
	if (c->wake_ev == NULL || c->poll_ev == NULL || event_add(c->wake_ev, NULL) != 0 ||
	    event_add(c->poll_ev, &tick) != 0)
		return -1;
	return 0;
}

/* Commits what was stored and leaves, so that the partition's successor starts from there. */
static void consumer_on_stop(worker_t *w)
{
	consumer_t *c = w->ctx;
	rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);

	if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_error("final offset commit failed: %s", rd_kafka_err2str(err));
	log_info("stopped; %lld messages seen", (long long)c->messages_seen);
	worker_finish(w, 0);
}

static void consumer_destroy(consumer_t *c)
{
	if (c->wake_ev != NULL)
		event_free(c->wake_ev);
	if (c->poll_ev != NULL)
		event_free(c->poll_ev);
	if (c->queue != NULL) {
		rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
		rd_kafka_queue_destroy(c->queue);
	}
	if (c->rk != NULL) {
		rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("consumer close: %s", rd_kafka_err2str(err));
		rd_kafka_destroy(c->rk);
	}
	for (int i = 0; i < 2; i++) {
		if (c->wake[i] >= 0)
			close(c->wake[i]);
	}
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
	c->wake[0] = c->wake[1] = -1;
	w->ctx = c;
	w->on_stop = consumer_on_stop;
	if (consumer_create(c) == 0 && wakeups_start(c) == 0 && worker_ready(w, NULL) == 0) {
		log_info("assigned %s[%d] (group %s)", w->args.cfg->kafka_topic, w->args.index,
		         w->args.cfg->kafka_group_id);
		rc = worker_run(w);
	}
	consumer_destroy(c);
	free(c);
	w->ctx = NULL;
	return rc;
}
