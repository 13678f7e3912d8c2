/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_topics.h: whether the cluster's topics are the ones the configuration names (SPEC 3). */
#ifndef COUPONSD_KAFKA_TOPICS_H
#define COUPONSD_KAFKA_TOPICS_H

#include "core/config.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#define KAFKA_TOPICS_COUNT 3     /* the issue, results and dead-letter topics */
#define KAFKA_TOPIC_UNKNOWN (-1) /* no metadata yet: Kafka has not answered */
#define KAFKA_TOPIC_MISSING 0

/*
 * What the cluster's metadata says of couponsd's three topics. couponsd never
 * creates topics on a real cluster, so a missing one, or an issue topic whose
 * partition count is not kafka.partitions (events would land in partitions
 * that no consumer reads, after a 202), keeps an HTTP worker from reporting
 * ready and from accepting issue requests until an operator fixes it.
 */
typedef struct {
	int partitions[KAFKA_TOPICS_COUNT]; /* KAFKA_TOPIC_UNKNOWN, KAFKA_TOPIC_MISSING or the count */
} kafka_topics_t;

/* The three topic names of cfg, in kafka_topics_t's order. */
const char *kafka_topics_name(const config_t *cfg, int i);

void kafka_topics_init(kafka_topics_t *kt);

/* What a statistics report saw (kafka_stats_read()): its known topics replace kt's. */
void kafka_topics_merge(kafka_topics_t *kt, const kafka_topics_t *seen);

/* From one topic's metadata answer (rd_kafka_metadata() for that topic). */
void kafka_topics_from_metadata(kafka_topics_t *kt, const config_t *cfg, const struct rd_kafka_metadata *md);

/* NULL when every topic is known to agree with cfg (or Kafka has not answered yet), else why not, in buf. */
const char *kafka_topics_problem(const kafka_topics_t *kt, const config_t *cfg, char *buf, size_t size);

#endif
