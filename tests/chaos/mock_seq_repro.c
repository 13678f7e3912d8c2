/* SPDX-License-Identifier: BSD-2-Clause */
/* mock_seq_repro.c: a false delivery report from librdkafka 2.0.2's mock cluster, without couponsd. */

/*
 * librdkafka 2.0.2's mock cluster does not check an idempotent producer's
 * sequence numbers. When a Produce request fails with a retriable error while
 * a later request of the same producer (max.in.flight > 1) succeeds, the
 * client concludes that the failed batch was persisted and reports it
 * delivered: a "delivered" message that is not in the log. A real broker does
 * the same for a producer it holds no state for yet on the partition (it
 * accepts any first sequence), see src/core/kafka_delivery.c.
 *
 * Such a report carries no offset, and that is what couponsd goes by: this
 * program counts the reports with and without one, and which of them are
 * missing from the log.
 *
 *   cc -o /tmp/mock_seq_repro tests/chaos/mock_seq_repro.c -lrdkafka
 *   /tmp/mock_seq_repro REQUEST_TIMED_OUT 5    # "N inferred" not in the log, N > 0 on most runs
 *   /tmp/mock_seq_repro REQUEST_TIMED_OUT 1    # none
 *
 * It produces 6000 numbered messages (acks=all, idempotence, murmur2_random:
 * couponsd's producer settings), pushes 30 errors of the given code onto the
 * mock's Produce error stack every 1000 messages, then reads the topic back
 * and compares it with the delivery reports. Exit status 1 when a message
 * reported delivered with an offset is missing. Not built by make: it is
 * evidence, not a test.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 6000
#define ERRORS 30

static int delivered[N], inferred[N], failed[N], seen[N];

/* A success without an offset was inferred by the client, not acknowledged by a broker (kafka_delivery.c). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	int i = (int)(intptr_t)m->_private;

	(void)rk;
	(void)opaque;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset >= 0)
		delivered[i] = 1;
	else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		inferred[i] = 1;
	else
		failed[i] = 1;
}

static rd_kafka_resp_err_t error_named(const char *name)
{
	const struct rd_kafka_err_desc *descs;
	size_t n;

	rd_kafka_get_err_descs(&descs, &n);
	for (size_t i = 0; i < n; i++) {
		if (descs[i].name != NULL && strcmp(descs[i].name, name) == 0)
			return descs[i].code;
	}
	fprintf(stderr, "unknown error name %s\n", name);
	exit(2);
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "%s: %s\n", name, err);
		exit(2);
	}
}

static rd_kafka_t *producer(const char *bootstrap, const char *in_flight)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];
	rd_kafka_t *rk;

	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "acks", "all");
	set(conf, "enable.idempotence", "true");
	set(conf, "partitioner", "murmur2_random");
	set(conf, "message.timeout.ms", "5000");
	set(conf, "max.in.flight.requests.per.connection", in_flight);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "producer: %s\n", err);
		exit(2);
	}
	return rk;
}

static void produce_all(rd_kafka_t *rk, rd_kafka_mock_cluster_t *mcluster, rd_kafka_resp_err_t code)
{
	rd_kafka_resp_err_t errors[ERRORS];
	char value[16], key[16];

	for (int i = 0; i < ERRORS; i++)
		errors[i] = code;
	for (int i = 0; i < N; i++) {
		snprintf(value, sizeof(value), "m%d", i);
		snprintf(key, sizeof(key), "%d", 101 + i % 6);
		if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_KEY(key, strlen(key)),
		                      RD_KAFKA_V_VALUE(value, strlen(value)),
		                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                      RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END) != 0)
			failed[i] = 1;
		if (i % 1000 == 500)
			rd_kafka_mock_push_request_errors_array(mcluster, 0 /* Produce */, ERRORS, errors);
		rd_kafka_poll(rk, 0);
		usleep(2000);
	}
	rd_kafka_flush(rk, 30000);
}

/* Reads every partition from the beginning to its end; returns how many messages came twice. */
static int read_back(const char *bootstrap)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
	char err[256];
	rd_kafka_t *rk;
	int eofs = 0, twice = 0;

	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "group.id", "mock_seq_repro");
	set(conf, "enable.partition.eof", "true");
	if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "consumer: %s\n", err);
		exit(2);
	}
	for (int p = 0; p < 4; p++)
		rd_kafka_topic_partition_list_add(parts, "t", p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		exit(2);
	while (eofs < 4) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 5000);
		int i;

		if (m == NULL)
			break;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			eofs++;
		} else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && (i = atoi((char *)m->payload + 1)) >= 0 &&
		           i < N) {
			twice += seen[i];
			seen[i] = 1;
		}
		rd_kafka_message_destroy(m);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return twice;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "REQUEST_TIMED_OUT", *in_flight = argc > 2 ? argv[2] : "5";
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];
	rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)), *rk;
	rd_kafka_mock_cluster_t *mcluster;
	int ok = 0, guessed = 0, bad = 0, lost = 0, lost_guessed = 0, twice;

	if (owner == NULL || (mcluster = rd_kafka_mock_cluster_new(owner, 3)) == NULL ||
	    rd_kafka_mock_topic_create(mcluster, "t", 4, 3) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 2;
	rk = producer(rd_kafka_mock_cluster_bootstraps(mcluster), in_flight);
	produce_all(rk, mcluster, error_named(name));
	twice = read_back(rd_kafka_mock_cluster_bootstraps(mcluster));
	for (int i = 0; i < N; i++) {
		ok += delivered[i];
		guessed += inferred[i];
		bad += failed[i];
		if (delivered[i] && !seen[i] && ++lost <= 10)
			fprintf(stderr, "m%d: delivery report ok with an offset, not in the log\n", i);
		lost_guessed += inferred[i] && !seen[i];
	}
	printf("%s, %s in flight: delivered %d (with an offset), %d (without: inferred), failed %d; "
	       "not in the log: %d with an offset, %d inferred; twice %d\n",
	       name, in_flight, ok, guessed, bad, lost, lost_guessed, twice);
	rd_kafka_destroy(rk);
	rd_kafka_mock_cluster_destroy(mcluster);
	rd_kafka_destroy(owner);
	return lost != 0;
}
