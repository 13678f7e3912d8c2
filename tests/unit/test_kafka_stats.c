/* SPDX-License-Identifier: BSD-2-Clause */
/* test_kafka_stats.c: TAP unit tests of the JSON scan and of what couponsd reads in librdkafka's statistics.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>

/* With the folder, as in src/ (see test_config.c). */
#include "core/config.h"
#include "core/json_scan.h"
#include "core/kafka_stats.h"
#include "tap.h"

/* ---- json_scan: every reported member as "a.b=value;" ---- */

static void collect(const json_scan_path_t *path, const char *v, size_t n, void *arg)
{
	char *out = arg;
	size_t at = strlen(out);

	for (int i = 0; i < path->depth; i++)
		at += (size_t)snprintf(out + at, 512 - at, "%s%.*s", i ? "." : "", (int)path->len[i],
		                       path->key[i]);
	snprintf(out + at, 512 - at, "=%.*s;", (int)n, v);
}

static int scan_is(const char *json, const char *want)
{
	char got[512] = "";
	int rc = json_scan(json, strlen(json), collect, got);

	if (rc != 0 || strcmp(got, want) != 0)
		diag("%s: rc %d, got \"%s\", want \"%s\"", json, rc, got, want);
	return rc == 0 && strcmp(got, want) == 0;
}

static int refused(const char *json)
{
	char got[512] = "";

	return json_scan(json, strlen(json), collect, got) == -1;
}

static void test_scan(void)
{
	char deep[2 * JSON_SCAN_NESTING + 8] = "";

	ok(scan_is("{\"a\":1,\"b\":{\"c\":\"x\",\"d\":[1,{\"e\":2}],\"f\":true},\"g\":null}",
	           "a=1;b.c=x;b.f=true;g=null;"),
	   "members through objects are reported with their path; values inside arrays are not");
	ok(scan_is(" { \"k\\\"q\" : \"v\\\\\\\"w\" , \"n\" : -1.5e+3 } \n", "k\\\"q=v\\\\\\\"w;n=-1.5e+3;"),
	   "whitespace is skipped; escapes are kept raw in keys and strings");
	ok(scan_is("{}", "") && scan_is("[]", "") && scan_is("{\"a\":{},\"b\":[]}", "") && scan_is("7", ""),
	   "empty containers and a bare scalar report nothing");
	ok(scan_is("{\"1\":{\"2\":{\"3\":{\"4\":{\"5\":{\"6\":{\"7\":{\"8\":{\"9\":1},\"x\":2}}}}}}}}",
	           "1.2.3.4.5.6.7.x=2;"),
	   "members deeper than JSON_SCAN_DEPTH are read but not reported");
	ok(refused("") && refused("{") && refused("{\"a\":1") && refused("{\"a\" 1}") &&
	       refused("{\"a\":1,}") && refused("{a:1}") && refused("[1 2]") && refused("\"abc") &&
	       refused("\"a\\") && refused("{} {}") && refused("{\"a\":}") && refused("{\"a\":\"x\ny\"}"),
	   "truncated, malformed and trailing texts are refused");
	for (int i = 0; i <= JSON_SCAN_NESTING; i++)
		strcat(deep, "[");
	for (int i = 0; i <= JSON_SCAN_NESTING; i++)
		strcat(deep, "]");
	ok(refused(deep), "nesting past JSON_SCAN_NESTING is refused (the stack stays bounded)");
	deep[strlen(deep) - 1] = '\0';
	memmove(deep, deep + 1, strlen(deep));
	ok(json_scan(deep, strlen(deep), collect, (char[512]){""}) == 0,
	   "nesting up to JSON_SCAN_NESTING is read");
}

/* ---- kafka_stats_read on written reports ---- */

static config_t *load_config(void)
{
	static const char yaml[] = "kafka:\n  brokers: embedded\n";
	config_errors_t errs = {0};
	config_t *cfg = config_load_buffer("t.yaml", yaml, strlen(yaml), &errs);

	config_errors_clear(&errs);
	return cfg;
}

static void test_written(const config_t *cfg)
{
	kafka_stats_t st;
	char json[1024];

	snprintf(json, sizeof(json),
	         "{\"brokers\":{\"a:1/1\":{\"state\":\"UP\",\"toppars\":{\"x-0\":{\"state\":\"UP\"}}},"
	         "\"b:2/bootstrap\":{\"state\":\"DOWN\"},\"c:3/"
	         "3\":{\"state\":\"UP\",\"int_latency\":{\"min\":0}}},"
	         "\"topics\":{\"%s\":{\"metadata_age\":12,\"partitions\":{\"0\":{\"partition\":0},"
	         "\"1\":{\"partition\":1},\"-1\":{\"partition\":-1}}},"
	         "\"%s\":{\"metadata_age\":7,\"partitions\":{\"-1\":{\"partition\":-1}}},"
	         "\"%s\":{\"metadata_age\":0,\"partitions\":{\"-1\":{\"partition\":-1}}},"
	         "\"other\":{\"metadata_age\":9,\"partitions\":{\"0\":{\"partition\":0}}}},"
	         "\"eos\":{\"idemp_state\":\"UP\"}}",
	         cfg->kafka_topic, cfg->kafka_results_topic, cfg->kafka_dlq_topic);
	ok(kafka_stats_read(json, strlen(json), cfg, &st) == 0, "a written report is read");
	ok(st.brokers_up == 2, "brokers in state UP are counted, not toppars nor other states (%d)",
	   st.brokers_up);
	ok(st.seen.partitions[0] == 2, "the issue topic: its partitions, the unassigned -1 left out (%d)",
	   st.seen.partitions[0]);
	ok(st.seen.partitions[1] == KAFKA_TOPIC_MISSING,
	   "a topic with only -1 after metadata does not exist");
	ok(st.seen.partitions[2] == KAFKA_TOPIC_UNKNOWN, "a topic without metadata yet is unknown");
	ok(kafka_stats_read(json, strlen(json) - 1, cfg, &st) == -1 && st.brokers_up == 0 &&
	       st.seen.partitions[0] == KAFKA_TOPIC_UNKNOWN,
	   "a cut report is refused and says nothing");
}

/* ---- a real report, against the whole parse that on_stats() used to make ---- */

static char *report;
static size_t report_len;

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	if (report == NULL && (report = malloc(len)) != NULL) {
		memcpy(report, json, len);
		report_len = len;
	}
	return 0; /* librdkafka frees json */
}

/* The old reading: jansson's tree of the whole report. */
static void oracle(const config_t *cfg, const char *json, size_t len, kafka_stats_t *want)
{
	json_t *root = json_loadb(json, len, 0, NULL), *b, *topic;
	const char *name;

	want->brokers_up = 0;
	kafka_topics_init(&want->seen);
	json_object_foreach(json_object_get(root, "brokers"), name, b)
	{
		const char *state = json_string_value(json_object_get(b, "state"));

		want->brokers_up += state != NULL && strcmp(state, "UP") == 0;
	}
	json_object_foreach(json_object_get(root, "topics"), name, topic)
	{
		json_t *parts = json_object_get(topic, "partitions");
		size_t n = json_object_size(parts);

		for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
			if (strcmp(name, kafka_topics_name(cfg, i)) == 0 &&
			    json_integer_value(json_object_get(topic, "metadata_age")) > 0)
				want->seen.partitions[i] =
				    (int)(json_object_get(parts, "-1") != NULL && n > 0 ? n - 1 : n);
		}
	}
	json_decref(root);
}

/* A producer on librdkafka's own mock cluster, with couponsd's issue and results topics of 8 partitions. */
static int real_report(const config_t *cfg)
{
	char err[256];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_topic_t *topics[KAFKA_TOPICS_COUNT] = {0};

	if (rd_kafka_conf_set(conf, "test.mock.num.brokers", "3", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "statistics.interval.ms", "200", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)) != RD_KAFKA_CONF_OK)
		return -1;
	rd_kafka_conf_set_stats_cb(conf, on_stats);
	if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
		return -1;
	for (int i = 0; i < 2; i++)
		rd_kafka_mock_topic_create(rd_kafka_handle_mock_cluster(rk), kafka_topics_name(cfg, i), 8, 3);
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++)
		topics[i] = rd_kafka_topic_new(rk, kafka_topics_name(cfg, i), NULL);
	/* Until a report that has the metadata: the first may come before the answer. */
	for (int i = 0; i < 100; i++) {
		kafka_stats_t st;

		rd_kafka_poll(rk, 50);
		if (report != NULL && kafka_stats_read(report, report_len, cfg, &st) == 0 &&
		    st.seen.partitions[0] != KAFKA_TOPIC_UNKNOWN)
			break;
		free(report);
		report = NULL;
	}
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++) {
		if (topics[i] != NULL)
			rd_kafka_topic_destroy(topics[i]);
	}
	rd_kafka_destroy(rk);
	return report != NULL ? 0 : -1;
}

static void test_real(const config_t *cfg)
{
	kafka_stats_t st, want;

	if (real_report(cfg) != 0) {
		ok(0, "a statistics report from librdkafka's mock cluster, with metadata");
		return;
	}
	diag("a report of %zu bytes", report_len);
	oracle(cfg, report, report_len, &want);
	ok(kafka_stats_read(report, report_len, cfg, &st) == 0, "librdkafka's report is read");
	ok(st.brokers_up == want.brokers_up && st.brokers_up > 0, "brokers UP: %d, the whole parse says %d",
	   st.brokers_up, want.brokers_up);
	for (int i = 0; i < KAFKA_TOPICS_COUNT; i++)
		ok(st.seen.partitions[i] == want.seen.partitions[i],
		   "topic %s: %d partitions, the whole parse says %d", kafka_topics_name(cfg, i),
		   st.seen.partitions[i], want.seen.partitions[i]);
	ok(st.seen.partitions[0] == 8 && st.seen.partitions[1] == 8,
	   "the mock's topics have their 8 partitions");
	free(report);
}

int main(void)
{
	config_t *cfg = load_config();

	if (cfg == NULL) {
		printf("Bail out! the default configuration does not load\n");
		return 1;
	}
	plan(19);
	test_scan();
	test_written(cfg);
	test_real(cfg);
	config_free(cfg);
	return done_testing();
}
