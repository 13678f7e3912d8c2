/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_conf.h: librdkafka configuration built from couponsd's config. */
#ifndef COUPONSD_KAFKA_CONF_H
#define COUPONSD_KAFKA_CONF_H

#include "core/config.h"

#include <librdkafka/rdkafka.h>

/*
 * A consumer configuration for one partition's worker: bootstrap servers,
 * group id, manual offset storage, then kafka.consumer passed verbatim (so
 * an operator can override any of ours). Returns NULL after logging.
 */
rd_kafka_conf_t *kafka_conf_consumer(const config_t *cfg, const char *bootstrap, int partition);

/*
 * A producer configuration: bootstrap servers, client.id, acks=all,
 * enable.idempotence=true, partitioner=murmur2_random, message.timeout.ms =
 * kafka.produce_timeout, linger.ms = linger_ms, then kafka.producer passed
 * verbatim. The caller adds its callbacks. Returns NULL after logging.
 */
rd_kafka_conf_t *kafka_conf_producer(const config_t *cfg, const char *bootstrap, const char *client_id,
                                     const char *linger_ms);

/* Whether the HTTP producer holds events behind librdkafka's idempotence window (produce_gate.h): on real
 * brokers. */
int kafka_conf_http_gated(const config_t *cfg);

/*
 * The HTTP producers' lanes (produce_gate.h): two producers, lingering
 * KAFKA_HTTP_LINGER_SLOW and KAFKA_HTTP_LINGER_FAST ms, each partition in one
 * of them by its rate; at KAFKA_HTTP_FAST_AT events of a partition in 50 ms
 * (2,000/s in one worker) it moves to the fast one, below half of that back.
 * Returns that threshold, or 0 (lanes off) when kafka.producer sets a
 * linger itself: the operator's linger then serves every partition from one
 * producer.
 */
#define KAFKA_HTTP_LINGER_SLOW "5"
#define KAFKA_HTTP_LINGER_FAST "0.25"
#define KAFKA_HTTP_FAST_AT 100
int kafka_conf_http_lanes(const config_t *cfg);

/* Sets one property, logging librdkafka's reason when it refuses. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value);

/* Applies kafka.producer or kafka.consumer verbatim, after couponsd's own settings. */
int kafka_conf_apply(rd_kafka_conf_t *conf, const config_property_t *props, int count);

/* Routes librdkafka's own log lines into couponsd's log. */
void kafka_conf_set_logger(rd_kafka_conf_t *conf);

#endif
