/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_topics.c: whether the cluster's topics are the ones the configuration names (SPEC 3). */
#include "core/kafka_topics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *kafka_topics_name(const config_t *cfg, int i)
{
	const char *names[KAFKA_TOPICS_COUNT] = {cfg->kafka_topic, cfg->kafka_results_topic,
	                                         cfg->kafka_dlq_topic};

	return names[i];
}

void kafka_topics_init(kafka_topics_t *kt)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++)
		kt->partitions[i] = KAFKA_TOPIC_UNKNOWN;
}

static int topic_index(const config_t *cfg, const char *name)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		if (strcmp(kafka_topics_name(cfg, i), name) == 0)
			return i;
	}
	return -1;
}

void kafka_topics_merge(kafka_topics_t *kt, const kafka_topics_t *seen)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		if (seen->partitions[i] != KAFKA_TOPIC_UNKNOWN)
			kt->partitions[i] = seen->partitions[i];
	}
}

void kafka_topics_from_metadata(kafka_topics_t *kt, const config_t *cfg, const struct rd_kafka_metadata *md)
{
	for (int t = 0; t < md->topic_cnt; t++) {
		int i = topic_index(cfg, md->topics[t].topic);

		if (i < 0)
			continue;
		if (md->topics[t].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			kt->partitions[i] = KAFKA_TOPIC_MISSING;
		else if (md->topics[t].err == RD_KAFKA_RESP_ERR_NO_ERROR)
			kt->partitions[i] = md->topics[t].partition_cnt;
	}
}

const char *kafka_topics_problem(const kafka_topics_t *kt, const config_t *cfg, char *buf, size_t size)
{
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		int n = kt->partitions[i];

		if (n == KAFKA_TOPIC_MISSING) {
			snprintf(buf, size, "kafka topic %s does not exist (couponsd never creates topics)",
			         kafka_topics_name(cfg, i));
			return buf;
		}
		if (i == 0 && n > 0 && n != cfg->kafka_partitions) {
			snprintf(buf, size, "kafka topic %s has %d partitions, kafka.partitions is %d",
			         kafka_topics_name(cfg, i), n, cfg->kafka_partitions);
			return buf;
		}
	}
	return NULL;
}
