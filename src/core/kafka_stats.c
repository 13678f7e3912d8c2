/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_stats.c: what couponsd reads in librdkafka's statistics: brokers up, and its topics' partitions. */
#include "core/kafka_stats.h"

#include "core/json_scan.h"

#include <string.h>

typedef struct {
	const config_t *cfg;
	int up;
	int aged[KAFKA_TOPICS_COUNT];   /* "metadata_age" > 0: librdkafka has had an answer for it */
	int counts[KAFKA_TOPICS_COUNT]; /* partitions listed, the unassigned "-1" left out */
} reading_t;

static int token_is(const char *v, size_t n, const char *word)
{
	return n == strlen(word) && memcmp(v, word, n) == 0;
}

/* Which of couponsd's topics key i of path names, or -1. */
static int topic_at(const reading_t *r, const json_scan_path_t *path, int i)
{
	for (int t = 0; t < KAFKA_TOPICS_COUNT; t++) {
		if (json_scan_key_is(path, i, kafka_topics_name(r->cfg, t)))
			return t;
	}
	return -1;
}

/* A positive integer: digits, not all zeros. */
static int positive(const char *v, size_t n)
{
	int nonzero = 0;

	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return 0;
		nonzero |= v[i] != '0';
	}
	return n > 0 && nonzero;
}

/*
 * brokers.NAME.state is "UP" for a connected broker. librdkafka lists a topic
 * it holds a handle for with topics.NAME.metadata_age 0 until the first
 * metadata answer; after it, topics.NAME.partitions holds the partitions
 * Kafka reported plus the unassigned "-1" queue, which alone means the topic
 * does not exist. Each partition object carries its number in "partition".
 */
static void on_member(const json_scan_path_t *path, const char *v, size_t n, void *arg)
{
	reading_t *r = arg;
	int t;

	if (path->depth == 3 && json_scan_key_is(path, 0, "brokers") && json_scan_key_is(path, 2, "state")) {
		r->up += token_is(v, n, "UP");
	} else if (path->depth == 3 && json_scan_key_is(path, 0, "topics") &&
	           json_scan_key_is(path, 2, "metadata_age")) {
		if ((t = topic_at(r, path, 1)) >= 0)
			r->aged[t] = positive(v, n);
	} else if (path->depth == 5 && json_scan_key_is(path, 0, "topics") &&
	           json_scan_key_is(path, 2, "partitions") && json_scan_key_is(path, 4, "partition")) {
		if ((t = topic_at(r, path, 1)) >= 0 && !token_is(v, n, "-1"))
			r->counts[t]++;
	}
}

int kafka_stats_read(const char *json, size_t len, const config_t *cfg, kafka_stats_t *st)
{
	reading_t r = {.cfg = cfg};
	int rc = json_scan(json, len, on_member, &r);

	kafka_topics_init(&st->seen);
	st->brokers_up = 0;
	if (rc != 0)
		return -1;
	st->brokers_up = r.up;
	for (int t = 0; t < KAFKA_TOPICS_COUNT; t++) {
		if (r.aged[t])
			st->seen.partitions[t] = r.counts[t];
	}
	return 0;
}
