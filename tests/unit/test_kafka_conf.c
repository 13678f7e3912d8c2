/* SPDX-License-Identifier: BSD-2-Clause */
/* test_kafka_conf.c: TAP unit tests of the librdkafka configuration built from couponsd's. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* With the folder, as in src/ (see test_config.c). */
#include "core/config.h"
#include "core/kafka_conf.h"
#include "core/log.h"
#include "tap.h"

#define SECRET "s3cret-Pa55"

static char log_path[] = "/tmp/couponsd-test-kafka-conf-XXXXXX";

/* Sends the log to a scratch file, so that what a refusal writes can be read back. */
static int log_to_file(void)
{
	char yaml[256];
	config_errors_t errs = {0};
	config_t *cfg;
	int fd = mkstemp(log_path), rc;

	if (fd < 0)
		return -1;
	close(fd);
	snprintf(yaml, sizeof(yaml), "log:\n  file: %s\n", log_path);
	cfg = config_load_buffer("t.yaml", yaml, strlen(yaml), &errs);
	rc = cfg != NULL ? log_configure(cfg) : -1;
	config_free(cfg);
	config_errors_clear(&errs);
	return rc;
}

static void read_log(char *buf, size_t size)
{
	FILE *f = fopen(log_path, "r");
	size_t n = f != NULL ? fread(buf, 1, size - 1, f) : 0;

	buf[n] = '\0';
	if (f != NULL)
		fclose(f);
}

/* A refused property is logged by name with librdkafka's reason, never with its value. */
static void test_refusal_hides_value(const char *name, const char *what)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char text[4096];

	if (truncate(log_path, 0) != 0)
		diag("cannot empty %s", log_path);
	ok(kafka_conf_set(conf, name, SECRET) == -1, "%s: refused", what);
	read_log(text, sizeof(text));
	ok(strstr(text, name) != NULL, "%s: the log names the property", what);
	ok(strstr(text, SECRET) == NULL, "%s: the log does not show the value", what);
	if (strstr(text, SECRET) != NULL)
		diag("log: %s", text);
	rd_kafka_conf_destroy(conf);
}

/* linger.ms of a producer built from this YAML, as librdkafka holds it. */
static void producer_linger(const char *yaml, int http, char *value, size_t size)
{
	config_errors_t errs = {0};
	config_t *cfg = config_load_buffer("t.yaml", yaml, strlen(yaml), &errs);
	rd_kafka_conf_t *conf = NULL;

	value[0] = '\0';
	if (cfg != NULL)
		conf = kafka_conf_producer(cfg, "127.0.0.1:9092", "t", "1");
	if (conf == NULL || rd_kafka_conf_get(conf, "linger.ms", value, &size) != RD_KAFKA_CONF_OK)
		diag("no producer configuration for: %s", yaml);
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	config_free(cfg);
	config_errors_clear(&errs);
}

/* Producers linger 1 ms unless kafka.producer says otherwise; the HTTP producer holds events behind
 * librdkafka's idempotence window on real brokers only (produce_gate.h). */
static void test_http_linger(void)
{
	char v[32];
	config_errors_t errs = {0};
	const char *real = "kafka:\n  brokers: 127.0.0.1:9092\n", *embedded = "kafka:\n  brokers: embedded\n";
	config_t *cfg;

	producer_linger(embedded, 1, v, sizeof(v));
	is_str(v, "1", "embedded: the HTTP producer lingers 1 ms");
	producer_linger(real, 1, v, sizeof(v));
	is_str(v, "1",
	       "real brokers: the HTTP producer lingers 1 ms (the gate, not the linger, stops the spin)");
	producer_linger("kafka:\n  brokers: 127.0.0.1:9092\n  producer: {linger.ms: 2}\n", 1, v, sizeof(v));
	is_str(v, "2", "kafka.producer's linger.ms wins on real brokers");
	producer_linger("kafka:\n  brokers: embedded\n  producer: {linger.ms: 0}\n", 1, v, sizeof(v));
	is_str(v, "0", "kafka.producer's linger.ms wins on embedded");
	cfg = config_load_buffer("t.yaml", real, strlen(real), &errs);
	ok(cfg != NULL && kafka_conf_http_gated(cfg),
	   "real brokers: the HTTP producer holds events behind the window");
	config_free(cfg);
	cfg = config_load_buffer("t.yaml", embedded, strlen(embedded), &errs);
	ok(cfg != NULL && !kafka_conf_http_gated(cfg), "embedded: it does not (without the test fault)");
	config_free(cfg);
	config_errors_clear(&errs);
}

static int lanes_of(const char *yaml)
{
	config_errors_t errs = {0};
	config_t *cfg = config_load_buffer("t.yaml", yaml, strlen(yaml), &errs);
	int at = cfg != NULL ? kafka_conf_http_lanes(cfg) : -1;

	config_free(cfg);
	config_errors_clear(&errs);
	return at;
}

/* The HTTP producer's two lanes (produce_gate.h) unless the operator chose a linger. */
static void test_http_lanes(void)
{
	is_int(lanes_of("kafka:\n  brokers: embedded\n"), KAFKA_HTTP_FAST_AT, "embedded: two lanes");
	is_int(lanes_of("kafka:\n  brokers: 127.0.0.1:9092\n  producer: {compression.type: lz4}\n"),
	       KAFKA_HTTP_FAST_AT, "real brokers, other properties: two lanes");
	is_int(lanes_of("kafka:\n  brokers: 127.0.0.1:9092\n  producer: {linger.ms: 2}\n"), 0,
	       "kafka.producer's linger.ms: one producer");
	is_int(lanes_of("kafka:\n  brokers: embedded\n  producer: {queue.buffering.max.ms: 0}\n"), 0,
	       "its alias queue.buffering.max.ms: one producer");
}

int main(void)
{
	if (ok(log_to_file() == 0, "log to a scratch file")) {
		test_refusal_hides_value("sasl.pasword", "a misspelled name");
		test_refusal_hides_value("linger.ms", "an invalid value");
	}
	test_http_linger();
	test_http_lanes();
	log_close();
	unlink(log_path);
	return done_testing();
}
