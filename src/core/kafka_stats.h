/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_stats.h: what couponsd reads in librdkafka's statistics: brokers up, and its topics' partitions. */
#ifndef COUPONSD_KAFKA_STATS_H
#define COUPONSD_KAFKA_STATS_H

#include "core/config.h"
#include "core/kafka_topics.h"

#include <stddef.h>

typedef struct {
	int brokers_up;      /* broker connections in state UP */
	kafka_topics_t seen; /* KAFKA_TOPIC_UNKNOWN for a topic without metadata yet */
} kafka_stats_t;

/*
 * Reads one statistics report (the JSON librdkafka passes to its stats
 * callback) with json_scan(), building nothing. Returns 0, or -1 when the
 * text is not JSON (then *st says nothing: no broker up, no topic known).
 */
int kafka_stats_read(const char *json, size_t len, const config_t *cfg, kafka_stats_t *st);

#endif
