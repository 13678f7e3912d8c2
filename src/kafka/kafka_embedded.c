/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_embedded.c: the embedded Kafka child (librdkafka's in-memory mock cluster). */
#include "kafka/kafka_embedded.h"

#include "core/kafka_conf.h"
#include "core/log.h"

#include <errno.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * kafka.brokers: embedded runs librdkafka's mock cluster in this process, so
 * development and tests need no Kafka installation. The cluster lives in the
 * threads of a throw-away producer handle; it is in memory only, so a crash
 * of this child loses its messages (the master then restarts every Kafka
 * client against the new cluster). Production points kafka.brokers at a
 * real cluster and this child is never started.
 */
typedef struct {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *cluster;
} kafka_embedded_t;

static int create_topics(kafka_embedded_t *ke, const config_t *cfg)
{
	const char *topics[] = {cfg->kafka_topic, cfg->kafka_results_topic, cfg->kafka_dlq_topic};

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
		    ke->cluster, topics[i], cfg->kafka_partitions, KAFKA_EMBEDDED_BROKERS);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			log_error("cannot create topic %s: %s", topics[i], rd_kafka_err2str(err));
			return -1;
		}
	}
	return 0;
}

static int cluster_start(kafka_embedded_t *ke, const config_t *cfg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[512];

	kafka_conf_set_logger(conf);
	if (kafka_conf_set(conf, "client.id", "couponsd-embedded-kafka") != 0) {
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	ke->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (ke->rk == NULL) {
		log_error("cannot create the mock cluster's handle: %s", err);
		rd_kafka_conf_destroy(conf);
		return -1;
	}
	ke->cluster = rd_kafka_mock_cluster_new(ke->rk, KAFKA_EMBEDDED_BROKERS);
	if (ke->cluster == NULL) {
		log_error("cannot start the mock cluster");
		return -1;
	}
	return create_topics(ke, cfg);
}

#ifdef COUPONSD_FAULTS
/*
 * Test builds only: `couponsd -s 'kafka CMD'` reaches this child through the
 * master and is applied with the mock cluster's own API, so chaos tests can
 * take brokers down or make Produce requests fail without touching the
 * clients. Production builds compile none of this (see src/fault.h).
 */
#define KAFKA_API_PRODUCE 0 /* the Produce request's ApiKey in the Kafka protocol */
#define FAULT_MAX_ERRORS 100000
#define FAULT_MAX_RTT_MS 60000
#define FAULT_ERR_PREFIX "RD_KAFKA_RESP_ERR_"

/* A non-negative decimal within [min, max]; -1 when it is not one. */
static long parse_number(const char *s, long min, long max)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	return *end == '\0' && v >= min && v <= max ? v : -1;
}

/* A broker id (1..KAFKA_EMBEDDED_BROKERS), or "all" for -1; 0 when it is neither. */
static int32_t parse_broker(const char *s)
{
	long id = parse_number(s, 1, KAFKA_EMBEDDED_BROKERS);

	if (s != NULL && strcmp(s, "all") == 0)
		return -1;
	return id > 0 ? (int32_t)id : 0;
}

/* An error code by name (NOT_LEADER_FOR_PARTITION, with or without RD_KAFKA_RESP_ERR_) or number. */
static int parse_error(const char *s, rd_kafka_resp_err_t *err)
{
	const struct rd_kafka_err_desc *descs;
	size_t n;
	char *end;

	if (s == NULL)
		return -1;
	if (strncmp(s, FAULT_ERR_PREFIX, strlen(FAULT_ERR_PREFIX)) == 0)
		s += strlen(FAULT_ERR_PREFIX);
	rd_kafka_get_err_descs(&descs, &n);
	for (size_t i = 0; i < n; i++) {
		if (descs[i].name != NULL && strcmp(descs[i].name, s) == 0) {
			*err = descs[i].code;
			return 0;
		}
	}
	*err = (rd_kafka_resp_err_t)strtol(s, &end, 10);
	/* A number must name a code librdkafka knows: err2name prints one it does not as "ERR_%d?". */
	return *s != '\0' && *end == '\0' && strchr(rd_kafka_err2name(*err), '?') == NULL ? 0 : -1;
}

static rd_kafka_resp_err_t fault_produce_errors(kafka_embedded_t *ke, char **argv, int argc, char *why,
                                                size_t size)
{
	long count = argc == 3 ? parse_number(argv[1], 1, FAULT_MAX_ERRORS) : -1;
	rd_kafka_resp_err_t err, *errs;

	if (count < 0 || parse_error(argv[2], &err) != 0) {
		snprintf(why, size, "usage: produce-errors COUNT (1-%d) CODE (a Kafka error name or number)",
		         FAULT_MAX_ERRORS);
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	errs = calloc((size_t)count, sizeof(*errs));
	if (errs == NULL) {
		snprintf(why, size, "out of memory");
		return RD_KAFKA_RESP_ERR__FAIL;
	}
	for (long i = 0; i < count; i++)
		errs[i] = err;
	rd_kafka_mock_push_request_errors_array(ke->cluster, KAFKA_API_PRODUCE, (size_t)count, errs);
	free(errs);
	return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t fault_broker(kafka_embedded_t *ke, char **argv, int argc, char *why, size_t size)
{
	int all = strcmp(argv[0], "all-down") == 0 || strcmp(argv[0], "all-up") == 0;
	int32_t id = all ? (argc == 1 ? -1 : 0) : (argc == 2 ? parse_broker(argv[1]) : 0);
	int down = strcmp(argv[0], "broker-down") == 0 || strcmp(argv[0], "all-down") == 0;

	if (id == 0) {
		snprintf(why, size, "usage: broker-down|broker-up N (1-%d), all-down, all-up",
		         KAFKA_EMBEDDED_BROKERS);
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	return down ? rd_kafka_mock_broker_set_down(ke->cluster, id)
	            : rd_kafka_mock_broker_set_up(ke->cluster, id);
}

static rd_kafka_resp_err_t fault_rtt(kafka_embedded_t *ke, char **argv, int argc, char *why, size_t size)
{
	int32_t id = argc == 3 ? parse_broker(argv[1]) : 0;
	long ms = argc == 3 ? parse_number(argv[2], 0, FAULT_MAX_RTT_MS) : -1;

	if (id == 0 || ms < 0) {
		snprintf(why, size, "usage: rtt N|all MS (0-%d)", FAULT_MAX_RTT_MS);
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	return rd_kafka_mock_broker_set_rtt(ke->cluster, id, (int)ms);
}

/* Applies one command; why gets a message when it returns an error. */
static rd_kafka_resp_err_t fault_apply(kafka_embedded_t *ke, char *cmd, char *why, size_t size)
{
	char *argv[4], *save = NULL;
	int argc = 0;

	for (char *tok = strtok_r(cmd, " \t", &save); tok != NULL && argc < 4;
	     tok = strtok_r(NULL, " \t", &save))
		argv[argc++] = tok;
	if (argc == 0 || argc == 4) {
		snprintf(why, size,
		         "usage: kafka broker-down|broker-up N, all-down, all-up, "
		         "produce-errors COUNT CODE, clear-errors, rtt N|all MS");
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	}
	if (strcmp(argv[0], "broker-down") == 0 || strcmp(argv[0], "broker-up") == 0 ||
	    strcmp(argv[0], "all-down") == 0 || strcmp(argv[0], "all-up") == 0)
		return fault_broker(ke, argv, argc, why, size);
	if (strcmp(argv[0], "produce-errors") == 0)
		return fault_produce_errors(ke, argv, argc, why, size);
	if (strcmp(argv[0], "clear-errors") == 0 && argc == 1) {
		rd_kafka_mock_clear_request_errors(ke->cluster, KAFKA_API_PRODUCE);
		return RD_KAFKA_RESP_ERR_NO_ERROR;
	}
	if (strcmp(argv[0], "rtt") == 0)
		return fault_rtt(ke, argv, argc, why, size);
	snprintf(why, size,
	         "unknown kafka command '%s' (broker-down, broker-up, all-down, all-up, "
	         "produce-errors, clear-errors, rtt)",
	         argv[0]);
	return RD_KAFKA_RESP_ERR__INVALID_ARG;
}

static void on_fault_command(worker_t *w, const channel_msg_t *msg)
{
	kafka_embedded_t *ke = w->ctx;
	char cmd[CHANNEL_DATA_MAX], why[256] = "", reply[CHANNEL_DATA_MAX];
	rd_kafka_resp_err_t err;

	if (msg->type != CHANNEL_KAFKA_FAULT) {
		log_warn("ignoring channel message of type %u", (unsigned)msg->type);
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s", msg->data);
	err = fault_apply(ke, cmd, why, sizeof(why));
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("fault injection: kafka %s", msg->data);
		snprintf(reply, sizeof(reply), "ok");
	} else {
		snprintf(reply, sizeof(reply), "error: kafka %.200s: %.256s", msg->data,
		         why[0] != '\0' ? why : rd_kafka_err2str(err));
		log_warn("fault injection refused: %s", reply + 7);
	}
	/* The master waits for exactly one answer per command; without it the -s client waits in vain. */
	if (channel_send(w->args.chan_fd, CHANNEL_KAFKA_FAULT, reply) != 0)
		log_error("cannot answer the master's kafka command: %s", strerror(errno));
}
#endif

static void cluster_stop(kafka_embedded_t *ke)
{
	if (ke->cluster != NULL)
		rd_kafka_mock_cluster_destroy(ke->cluster);
	if (ke->rk != NULL)
		rd_kafka_destroy(ke->rk);
}

int kafka_embedded_main(worker_t *w)
{
	kafka_embedded_t *ke = calloc(1, sizeof(*ke));
	const char *bootstraps;
	int rc = 1;

	if (ke == NULL) {
		log_error("out of memory");
		return 1;
	}
#ifdef COUPONSD_FAULTS
	w->ctx = ke;
	w->on_message = on_fault_command;
#endif
	if (cluster_start(ke, w->args.cfg) == 0) {
		bootstraps = rd_kafka_mock_cluster_bootstraps(ke->cluster);
		log_info("embedded kafka up: %d brokers at %s, %d partitions per topic",
		         KAFKA_EMBEDDED_BROKERS, bootstraps, w->args.cfg->kafka_partitions);
		if (worker_ready(w, bootstraps) == 0)
			rc = worker_run(w);
	}
	cluster_stop(ke);
	w->ctx = NULL;
	free(ke);
	return rc;
}
