/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_conf.c: librdkafka configuration built from couponsd's config. */
#include "core/kafka_conf.h"

#include "core/fault.h"

#include "core/log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>

/*
 * Copies librdkafka's error text with every occurrence of the value replaced:
 * the value may be a password (sasl.password, or a secret under a misspelled
 * name), and librdkafka quotes it in "Invalid value ..." messages.
 */
static void hide_value(const char *text, const char *value, char *out, size_t size)
{
	size_t used = 0, vlen = strlen(value);

	for (const char *p = text; *p != '\0' && used + 1 < size;) {
		if (vlen > 0 && strncmp(p, value, vlen) == 0) {
			int n = snprintf(out + used, size - used, "(hidden)");

			used = n < 0 || (size_t)n >= size - used ? size - 1 : used + (size_t)n;
			p += vlen;
		} else {
			out[used++] = *p++;
		}
	}
	out[used] = '\0';
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[512], shown[512];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		hide_value(err, value, shown, sizeof(shown));
		log_error("kafka property %s: %s", name, shown);
		return -1;
	}
	return 0;
}

/* Called from librdkafka's threads; log_msg() writes one whole line with one write(). */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	log_level_t ours = level <= LOG_ERR       ? LOG_LEVEL_ERROR
	                   : level <= LOG_WARNING ? LOG_LEVEL_WARN
	                   : level <= LOG_INFO    ? LOG_LEVEL_INFO
	                                          : LOG_LEVEL_DEBUG;

	log_msg(ours, "librdkafka %s: %s", fac, buf);
}

void kafka_conf_set_logger(rd_kafka_conf_t *conf)
{
	rd_kafka_conf_set_log_cb(conf, on_kafka_log);
}

int kafka_conf_apply(rd_kafka_conf_t *conf, const config_property_t *props, int count)
{
	for (int i = 0; i < count; i++) {
		if (kafka_conf_set(conf, props[i].name, props[i].value) != 0)
			return -1;
	}
	return 0;
}

rd_kafka_conf_t *kafka_conf_consumer(const config_t *cfg, const char *bootstrap, int partition)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char client_id[64];

	snprintf(client_id, sizeof(client_id), "couponsd-consumer-%d", partition);
	kafka_conf_set_logger(conf);
	/*
	 * Offsets are stored by hand only once a message's outcome is durable
	 * (at-least-once); auto commit then commits only what was stored.
	 * queued.min.messages is raised because librdkafka 2.0.2 otherwise
	 * stalls about a second per fetch round with one consumer and a deep
	 * backlog. The embedded mock broker answers an empty fetch only after
	 * fetch.wait.max.ms (a real broker answers as soon as data arrives), so
	 * in embedded mode the wait is cut from 500 ms to 10 ms.
	 */
	if (kafka_conf_set(conf, "bootstrap.servers", bootstrap) != 0 ||
	    kafka_conf_set(conf, "group.id", cfg->kafka_group_id) != 0 ||
	    kafka_conf_set(conf, "client.id", client_id) != 0 ||
	    kafka_conf_set(conf, "enable.auto.offset.store", "false") != 0 ||
	    kafka_conf_set(conf, "auto.offset.reset", "earliest") != 0 ||
	    kafka_conf_set(conf, "queued.min.messages", "1000000") != 0 ||
	    (strcmp(cfg->kafka_brokers, "embedded") == 0 &&
	     kafka_conf_set(conf, "fetch.wait.max.ms", "10") != 0) ||
	    kafka_conf_apply(conf, cfg->kafka_consumer, cfg->kafka_consumer_count) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

rd_kafka_conf_t *kafka_conf_producer(const config_t *cfg, const char *bootstrap, const char *client_id,
                                     const char *linger_ms)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char timeout[32];

	snprintf(timeout, sizeof(timeout), "%lld", (long long)cfg->kafka_produce_timeout);
	kafka_conf_set_logger(conf);
	/*
	 * acks=all and idempotence: a delivery report means every in-sync
	 * replica has the message, exactly once and in order per partition.
	 * murmur2_random is the Java client's partitioner, so JVM producers and
	 * couponsd put one coupon's events in the same partition. linger.ms is
	 * the caller's (a 202, and a batch's end, wait for it: see
	 * kafka_conf_http_lanes()), set before kafka.producer so that an
	 * operator's value wins.
	 */
	if (kafka_conf_set(conf, "bootstrap.servers", bootstrap) != 0 ||
	    kafka_conf_set(conf, "client.id", client_id) != 0 || kafka_conf_set(conf, "acks", "all") != 0 ||
	    kafka_conf_set(conf, "enable.idempotence", "true") != 0 ||
	    kafka_conf_set(conf, "partitioner", "murmur2_random") != 0 ||
	    kafka_conf_set(conf, "message.timeout.ms", timeout) != 0 ||
	    kafka_conf_set(conf, "linger.ms", linger_ms) != 0 ||
	    kafka_conf_apply(conf, cfg->kafka_producer, cfg->kafka_producer_count) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	return conf;
}

/*
 * librdkafka 2.0.2 (through 2.6) makes no ProduceRequest for a partition
 * while five of its messages await acks, yet its broker thread spins until
 * the answer (produce_gate.h). On real brokers, where an ack takes a
 * replication round trip, that spin took more CPU than the whole request
 * path, so the HTTP producer holds a partition's next events itself while
 * five are unreported. On the embedded mock the acks come at once, the
 * spin is rare, and holding costs a trip through the worker's loop per
 * batch (a hot partition's 202s: 20-30 % fewer): not there, unless a test
 * build asks (fault http_produce_gate). docs/performance.md, round 2e.
 */
int kafka_conf_http_gated(const config_t *cfg)
{
	return strcmp(cfg->kafka_brokers, "embedded") != 0 || fault_value("http_produce_gate") > 0;
}

/*
 * Test builds lower the rate at which a partition moves to the fast lane
 * (fault http_lane_fast_at), so that one test client can move one.
 * linger.ms has an alias in librdkafka, queue.buffering.max.ms.
 */
int kafka_conf_http_lanes(const config_t *cfg)
{
	long at = fault_value("http_lane_fast_at");

	for (int i = 0; i < cfg->kafka_producer_count; i++) {
		if (strcmp(cfg->kafka_producer[i].name, "linger.ms") == 0 ||
		    strcmp(cfg->kafka_producer[i].name, "queue.buffering.max.ms") == 0)
			return 0;
	}
	return at > 0 ? (int)at : KAFKA_HTTP_FAST_AT;
}
