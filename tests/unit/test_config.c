/* SPDX-License-Identifier: BSD-2-Clause */
/* test_config.c: TAP unit tests of the configuration loader, its value parsers and its key table. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* With the folder, as in src/: a plain "config.h" could name a generated one at the top of the build tree. */
#include "core/config.h"
#include "core/config_keys.h"
#include "core/config_value.h"
#include "core/keys.h"
#include "tap.h"

/* ---- helpers ---- */

static config_t *load(const char *yaml, config_errors_t *errs)
{
	return config_load_buffer("t.yaml", yaml, strlen(yaml), errs);
}

static void show_errors(const config_errors_t *errs)
{
	for (int i = 0; i < errs->count; i++)
		diag("  error: %s", errs->items[i]);
}

static int has_error(const config_errors_t *errs, const char *want)
{
	for (int i = 0; i < errs->count; i++) {
		if (strcmp(errs->items[i], want) == 0)
			return 1;
	}
	return 0;
}

/* yaml must be refused with exactly one error, equal to want (file:line:column included). */
static void expect_error(const char *yaml, const char *want)
{
	config_errors_t errs = {0};
	config_t *cfg = load(yaml, &errs);

	if (!ok(cfg == NULL && errs.count == 1 && has_error(&errs, want), "refused: %s", want))
		show_errors(&errs);
	config_free(cfg);
	config_errors_clear(&errs);
}

/* yaml must be refused with an error containing want, wherever it is. */
static void expect_error_containing(const char *yaml, const char *want)
{
	config_errors_t errs = {0};
	config_t *cfg = load(yaml, &errs);
	int found = 0;

	for (int i = 0; i < errs.count; i++)
		found |= strstr(errs.items[i], want) != NULL;
	if (!ok(cfg == NULL && found, "refused with '%s'", want))
		show_errors(&errs);
	config_free(cfg);
	config_errors_clear(&errs);
}

/* yaml must load without a single error. */
static config_t *expect_load(const char *yaml, const char *what)
{
	config_errors_t errs = {0};
	config_t *cfg = load(yaml, &errs);

	if (!ok(cfg != NULL && errs.count == 0, "loads: %s", what))
		show_errors(&errs);
	config_errors_clear(&errs);
	return cfg;
}

static char *source_path(const char *relative)
{
	const char *dir = getenv("COUPONSD_SRCDIR");
	size_t len;
	char *path;

	if (dir == NULL || dir[0] == '\0')
		dir = ".";
	len = strlen(dir) + strlen(relative) + 2;
	if ((path = malloc(len)) != NULL)
		snprintf(path, len, "%s/%s", dir, relative);
	return path;
}

/* The whole file under COUPONSD_SRCDIR, NUL-terminated, or NULL. */
static char *read_source(const char *relative)
{
	char *path = source_path(relative), *text = NULL;
	FILE *f = path != NULL ? fopen(path, "rb") : NULL;
	long size;

	if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (text = malloc((size_t)size + 1)) != NULL) {
		if (fread(text, 1, (size_t)size, f) != (size_t)size) {
			free(text);
			text = NULL;
		} else {
			text[size] = '\0';
		}
	}
	if (f != NULL)
		fclose(f);
	free(path);
	return text;
}

/* What a printer writes, as a string (free it). */
static char *capture(void (*print)(FILE *out, int flag), int flag)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (out == NULL)
		return NULL;
	print(out, flag);
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

static void print_example(FILE *out, int flag)
{
	(void)flag;
	config_print_example(out);
}

/* Writes text to a new temporary file and returns its path (free it), or NULL. */
static char *temp_file(const char *text)
{
	const char *dir = getenv("TMPDIR");
	char *path = malloc(4096);
	int fd;

	if (path == NULL)
		return NULL;
	snprintf(path, 4096, "%s/test_config.XXXXXX", dir != NULL && dir[0] != '\0' ? dir : "/tmp");
	if ((fd = mkstemp(path)) < 0) {
		free(path);
		return NULL;
	}
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0) {
		unlink(path);
		free(path);
		return NULL;
	}
	return path;
}

/* ---- the key table ---- */

/* SPEC section 5, verbatim: these names are a contract and may never be renamed. */
static const char *const spec_keys[] = {
    "daemon.user",
    "daemon.group",
    "daemon.pid_file",
    "daemon.control_socket",
    "daemon.shutdown_timeout",
    "daemon.worker_timeout",
    "log.level",
    "log.format",
    "log.file",
    "http.listen",
    "http.workers",
    "http.max_body",
    "http.read_timeout",
    "http.max_connections",
    "admin.token",
    "kafka.brokers",
    "kafka.topic",
    "kafka.results_topic",
    "kafka.dlq_topic",
    "kafka.group_id",
    "kafka.partitions",
    "kafka.owned_partitions",
    "kafka.produce_timeout",
    "kafka.producer",
    "kafka.consumer",
    "redis.host",
    "redis.port",
    "redis.password",
    "redis.db",
    "redis.key_prefix",
    "redis.timeout",
    "postgres.conninfo",
    "postgres.auto_migrate",
    "issue.batch_size",
    "issue.result_ttl",
    "issue.retry_initial",
    "issue.retry_max",
    "issue.max_pending",
    "metrics.enabled",
    NULL,
};

/* Keys couponsd adds to SPEC section 5 (which allows additions); a key in neither list is a mistake. */
static const char *const added_keys[] = {
    "postgres.timeout",
    "issue.stock_check_interval",
    "issue.batch_linger",
    "daemon.node",
    "daemon.takeover_poll",
    "daemon.stop_drain", /* issue 13: a rolling restart behind a load balancer resets nothing */
    "postgres.dead_session_timeout",
    NULL,
};

static const char *const restart_only[] = {
    "daemon.user",      "daemon.group",     "daemon.pid_file",     "daemon.control_socket", "http.listen",
    "kafka.brokers",    "kafka.topic",      "kafka.results_topic", "kafka.dlq_topic",       "kafka.group_id",
    "kafka.partitions", "redis.key_prefix", "metrics.enabled",     "daemon.node",           NULL,
};

static int in_list(const char *const *list, const char *name)
{
	for (int i = 0; list[i] != NULL; i++) {
		if (strcmp(list[i], name) == 0)
			return 1;
	}
	return 0;
}

static void test_key_table(void)
{
	int spec_count = 0, missing = 0, odd = 0, wrong_reload = 0, duplicates = 0;

	for (; spec_keys[spec_count] != NULL; spec_count++)
		missing += config_key_index(spec_keys[spec_count]) < 0;
	is_int(missing, 0, "every key of SPEC section 5 is in the table");
	for (int i = 0; added_keys[i] != NULL; i++) {
		missing += config_key_index(added_keys[i]) < 0;
		spec_count++;
	}
	is_int(config_key_count(), spec_count, "the table has no key beyond SPEC's and the listed additions");
	ok(config_key_count() <= CONFIG_MAX_KEYS, "key_set[] has room for every key");
	for (int i = 0; i < config_key_count(); i++) {
		const char *name = config_key_name(i);
		const char *dot = strchr(name, '.');

		odd += dot == NULL || dot == name || strchr(dot + 1, '.') != NULL || dot[1] == '\0';
		duplicates += config_key_index(name) != i;
		wrong_reload += config_keys[i].reloadable == in_list(restart_only, name);
		if (config_keys[i].help == NULL || config_keys[i].help[0] == '\0')
			odd++;
	}
	is_int(odd, 0, "every name is section.key and every key has help");
	is_int(duplicates, 0, "names are unique");
	is_int(wrong_reload, 0, "exactly the SPEC's restart-only keys are not reloadable");
	ok(config_key_name(-1) == NULL && config_key_name(config_key_count()) == NULL,
	   "config_key_name bounds");
	ok(config_section_known("daemon") && !config_section_known("daemo") &&
	       !config_section_known("daemon.user"),
	   "config_section_known");
}

/* ---- value parsers ---- */

static void test_durations(void)
{
	static const struct {
		const char *text;
		int64_t ms;
	} good[] = {
	    {"250ms", 250}, {"5s", 5000}, {"1m", 60000}, {"24h", 86400000}, {"0ms", 0}, {"007s", 7000},
	};
	static const char *const bad[] = {
	    "",
	    "0",
	    "5",
	    "-5s",
	    "+5s",
	    " 5s",
	    "5s ",
	    "5x",
	    "5 s",
	    "s",
	    "ms",
	    "1.5s",
	    "5S",
	    "5sec",
	    "1m30s",
	    "99999999999999999999ms",
	    "9223372036854775807h",
	};
	int64_t ms;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = -1;
		ok(config_parse_duration(good[i].text, &ms) == 0 && ms == good[i].ms,
		   "duration '%s' = %lld ms", good[i].text, (long long)good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 42;
		ok(config_parse_duration(bad[i], &ms) == -1 && ms == 42, "duration '%s' refused", bad[i]);
	}
	ok(config_parse_duration(NULL, &ms) == -1, "duration NULL refused");
}

static void test_sizes(void)
{
	static const struct {
		const char *text;
		int64_t bytes;
	} good[] = {
	    {"512", 512}, {"4k", 4096}, {"4K", 4096}, {"1m", 1048576}, {"1g", 1073741824}, {"0", 0},
	};
	static const char *const bad[] = {
	    "", "-1", "4kb", "k", "1t", "4 k", "1.5k", "99999999999999999999", "9999999999999g"};
	int64_t bytes;
	char text[32];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		bytes = -1;
		ok(config_parse_size(good[i].text, &bytes) == 0 && bytes == good[i].bytes, "size '%s' = %lld",
		   good[i].text, (long long)good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bytes = 42;
		ok(config_parse_size(bad[i], &bytes) == -1 && bytes == 42, "size '%s' refused", bad[i]);
	}
	config_format_size(64 * 1048576, text, sizeof(text));
	is_str(text, "64m", "size formatting picks the largest exact unit");
	config_format_duration(90000, text, sizeof(text));
	is_str(text, "90s", "duration formatting picks the largest exact unit");
	config_format_duration(0, text, sizeof(text));
	is_str(text, "0ms", "a zero duration is written 0ms");
}

static void test_scalars(void)
{
	static const char *const names[] = {"debug", "info", NULL};
	int64_t n = 0;
	int b = -1, e = -1;

	ok(config_parse_int("65535", 1, 65535, &n) == 0 && n == 65535, "int at the top of its range");
	ok(config_parse_int("-3", -5, 5, &n) == 0 && n == -3, "negative int");
	ok(config_parse_int("0", 1, 10, &n) == -1 && config_parse_int("11", 1, 10, &n) == -1,
	   "int out of range");
	ok(config_parse_int("1e3", 0, 9999, &n) == -1 && config_parse_int("0x10", 0, 99, &n) == -1 &&
	       config_parse_int("", 0, 9, &n) == -1 && config_parse_int("-", -9, 9, &n) == -1 &&
	       config_parse_int("99999999999999999999", 0, INT64_MAX, &n) == -1,
	   "int garbage and overflow refused");
	ok(config_parse_bool("yes", &b) == 0 && b == 1 && config_parse_bool("Off", &b) == 0 && b == 0 &&
	       config_parse_bool("TRUE", &b) == 0 && b == 1,
	   "booleans in every spelling");
	ok(config_parse_bool("1", &b) == -1 && config_parse_bool("maybe", &b) == -1, "bad booleans refused");
	ok(config_parse_enum("INFO", names, &e) == 0 && e == 1 && config_parse_enum("warn", names, &e) == -1,
	   "enums");
}

static void test_listen_parser(void)
{
	static const char *const good[] = {"0.0.0.0:8080", "127.0.0.1:1",  "[::1]:65535",
	                                   "[::]:80",      "localhost:80", "*:9000"};
	static const char *const bad[] = {"",
	                                  "8080",
	                                  ":8080",
	                                  "1.2.3:80",
	                                  "1.2.3.4:0",
	                                  "1.2.3.4:65536",
	                                  "::1:80",
	                                  "[::1]",
	                                  "[1.2.3.4]:80",
	                                  "example.com:80",
	                                  "*:",
	                                  "*:http",
	                                  "256.0.0.1:80",
	                                  "[::1:80",
	                                  "localhost:80 "};
	char host[64];
	int port = 0;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ok(config_parse_listen(good[i], NULL, 0, NULL) == 0, "listen address '%s'", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(config_parse_listen(bad[i], NULL, 0, NULL) == -1, "listen address '%s' refused", bad[i]);
	ok(config_parse_listen("[::1]:443", host, sizeof(host), &port) == 0 && strcmp(host, "::1") == 0 &&
	       port == 443,
	   "listen parser returns the host without brackets and the port");
}

static void test_partition_parser(void)
{
	config_partition_set_t set;
	int count = 0;

	memset(&set, 0, sizeof(set));
	ok(config_parse_partition_set("0-3, 6 ,9", &set) == 0 && !set.all, "partition set 0-3, 6 ,9");
	for (int p = 0; p < CONFIG_MAX_PARTITIONS; p++)
		count += set.member[p];
	ok(count == 6 && set.member[3] && set.member[6] && set.member[9] && !set.member[4],
	   "members of 0-3,6,9");
	memset(&set, 0, sizeof(set));
	ok(config_parse_partition_set("all", &set) == 0 && set.all, "all");
	ok(config_parse_partition_set("0-1,x", &set) == -1 && !set.member[0],
	   "a bad item leaves the set untouched");
	ok(config_parse_partition_set("", &set) == -1 && config_parse_partition_set("1,", &set) == -1 &&
	       config_parse_partition_set("3-1", &set) == -1 &&
	       config_parse_partition_set("1024", &set) == -1 &&
	       config_parse_partition_set("-1", &set) == -1 && config_parse_partition_set("0-", &set) == -1 &&
	       config_parse_partition_set("ALL", &set) == -1 &&
	       config_parse_partition_item("all", &set) == -1,
	   "bad partition sets refused");
	ok(config_parse_partition_item("1023", &set) == 0 && set.member[1023],
	   "the largest partition number");
}

/* ---- loading: defaults and good values ---- */

/* The second half of test_defaults(): kafka, redis, postgres, issue, metrics. */
static void test_defaults_kafka_and_below(const config_t *cfg)
{
	ok(strcmp(cfg->kafka_brokers, "embedded") == 0 && strcmp(cfg->kafka_topic, "coupon-issue") == 0 &&
	       strcmp(cfg->kafka_results_topic, "coupon-issue-results") == 0 &&
	       strcmp(cfg->kafka_dlq_topic, "coupon-issue-dlq") == 0 &&
	       strcmp(cfg->kafka_group_id, "couponsd") == 0,
	   "kafka names");
	ok(cfg->kafka_partitions == 8 && cfg->kafka_owned_count == 8 && cfg->kafka_owned[0] == 0 &&
	       cfg->kafka_owned[7] == 7,
	   "owned_partitions all = 0..7");
	ok(cfg->kafka_produce_timeout == 5000 && cfg->kafka_producer_count == 0 &&
	       cfg->kafka_consumer_count == 0,
	   "kafka produce timeout and empty passthrough maps");
	ok(strcmp(cfg->redis_host, "127.0.0.1") == 0 && cfg->redis_port == 6379 &&
	       strcmp(cfg->redis_password, "") == 0 && cfg->redis_db == 0 &&
	       strcmp(cfg->redis_key_prefix, "couponsd:") == 0 && cfg->redis_timeout == 1000,
	   "redis defaults");
	ok(strcmp(cfg->postgres_conninfo, "host=127.0.0.1 port=5432 dbname=couponsd user=couponsd") == 0 &&
	       cfg->postgres_auto_migrate == 1,
	   "postgres defaults");
	ok(cfg->issue_batch_size == 1024 && cfg->issue_result_ttl == 86400000 &&
	       cfg->issue_retry_initial == 100 && cfg->issue_retry_max == 30000 &&
	       cfg->issue_max_pending == 20000 && cfg->metrics_enabled == 1,
	   "issue and metrics defaults");
}

static void test_defaults(void)
{
	config_t *cfg = expect_load("", "an empty file");
	int set = 0;

	if (cfg == NULL)
		return;
	for (int i = 0; i < config_key_count(); i++)
		set += config_key_was_set(cfg, i);
	is_int(set, 0, "an empty file sets no key");
	ok(strcmp(cfg->daemon_user, "couponsd") == 0 &&
	       strcmp(cfg->daemon_pid_file, "/run/couponsd/couponsd.pid") == 0 &&
	       strcmp(cfg->daemon_control_socket, "/run/couponsd/control.sock") == 0,
	   "daemon strings");
	ok(cfg->daemon_shutdown_timeout == 30000 && cfg->daemon_worker_timeout == 30000, "daemon durations");
	is_int((int)cfg->daemon_stop_drain, 0, "daemon.stop_drain is 0 (a stop stops accepting at once)");
	ok(cfg->log_level == LOG_LEVEL_INFO && cfg->log_format == LOG_FORMAT_TEXT &&
	       strcmp(cfg->log_file, "stderr") == 0,
	   "log defaults");
	ok(cfg->http_listen_count == 1 && strcmp(cfg->http_listen[0], "0.0.0.0:8080") == 0,
	   "http.listen default");
	ok(cfg->http_workers >= 1 && cfg->http_workers <= 256, "http.workers auto resolves to 1..256");
	ok(cfg->http_max_body == 4096 && cfg->http_read_timeout == 5000 && cfg->http_max_connections == 10000,
	   "http defaults");
	is_str(cfg->admin_token, "", "admin.token is empty");
	test_defaults_kafka_and_below(cfg);
	is_str(cfg->path, "t.yaml", "path is the name it was loaded as");
	config_free(cfg);
}

static void test_empty_forms(void)
{
	config_free(expect_load("# only a comment\n\n   # another\n", "comments only"));
	config_free(expect_load("---\n...\n", "an empty document"));
	config_free(expect_load("~\n", "a null document"));
	config_free(
	    expect_load("metrics:\nlog:\n  # level: debug\n", "sections whose keys are commented out"));
	config_free(config_load_buffer("t.yaml", NULL, 0, NULL));
	ok(1, "a NULL buffer and NULL error list do not crash");
}

static void test_good_values(void)
{
	config_t *cfg = expect_load(
	    "daemon:\n  user: \"\"\n  shutdown_timeout: 250ms\n"
	    "log: {level: DEBUG, format: json, file: /var/log/couponsd.log}\n"
	    "http:\n  listen: [\"127.0.0.1:1\", \"[::1]:2\", \"localhost:3\", \"*:4\"]\n"
	    "  workers: 3\n  max_body: 1m\nadmin:\n  token:\n"
	    "kafka:\n  brokers: k1:9092,k2:9092\n  partitions: 16\n  owned_partitions: [0, \"2-3\", 15]\n"
	    "postgres:\n  auto_migrate: off\nmetrics:\n  enabled: no\n",
	    "explicit values of every kind");

	if (cfg == NULL)
		return;
	ok(strcmp(cfg->daemon_user, "") == 0 && cfg->daemon_shutdown_timeout == 250, "daemon values");
	ok(cfg->log_level == LOG_LEVEL_DEBUG && cfg->log_format == LOG_FORMAT_JSON &&
	       strcmp(cfg->log_file, "/var/log/couponsd.log") == 0,
	   "flow-style section");
	ok(cfg->http_listen_count == 4 && strcmp(cfg->http_listen[1], "[::1]:2") == 0 &&
	       cfg->http_workers == 3 && cfg->http_max_body == 1048576,
	   "http values");
	is_str(cfg->admin_token, "", "a key with no value is an empty string");
	ok(cfg->kafka_partitions == 16 && cfg->kafka_owned_count == 4 && cfg->kafka_owned[1] == 2 &&
	       cfg->kafka_owned[3] == 15,
	   "owned partitions from a list");
	ok(cfg->postgres_auto_migrate == 0 && cfg->metrics_enabled == 0, "off and no are false");
	ok(config_key_was_set(cfg, config_key_index("http.workers")) &&
	       !config_key_was_set(cfg, config_key_index("redis.port")) && !config_key_was_set(cfg, -1),
	   "config_key_was_set");
	config_free(cfg);

	cfg = expect_load("kafka:\n  owned_partitions: \"0-3,6\"\nhttp:\n  listen: 127.0.0.1:9000\n",
	                  "a partition string and a bare listen address");
	ok(cfg != NULL && cfg->kafka_owned_count == 5 && cfg->kafka_owned[4] == 6 &&
	       cfg->http_listen_count == 1,
	   "0-3,6 and one address");
	config_free(cfg);
	cfg = expect_load("kafka:\n  partitions: 2\n", "fewer partitions");
	ok(cfg != NULL && cfg->kafka_owned_count == 2, "all follows kafka.partitions");
	config_free(cfg);
}

static void test_passthrough(void)
{
	config_t *cfg = expect_load("kafka:\n  producer:\n    linger.ms: 5\n    compression.type: lz4\n"
	                            "  consumer:\n    fetch.wait.max.ms: \"100\"\n    check.crcs: true\n",
	                            "passthrough maps");

	if (cfg != NULL) {
		ok(cfg->kafka_producer_count == 2 && strcmp(cfg->kafka_producer[0].name, "linger.ms") == 0 &&
		       strcmp(cfg->kafka_producer[0].value, "5") == 0 &&
		       strcmp(cfg->kafka_producer[1].name, "compression.type") == 0 &&
		       strcmp(cfg->kafka_producer[1].value, "lz4") == 0,
		   "producer properties kept in file order, values verbatim");
		ok(cfg->kafka_consumer_count == 2 && strcmp(cfg->kafka_consumer[1].value, "true") == 0,
		   "consumer properties");
	}
	config_free(cfg);
	cfg = expect_load("kafka:\n  producer:\n", "a null passthrough map");
	ok(cfg != NULL && cfg->kafka_producer_count == 0, "null is an empty map");
	config_free(cfg);
	expect_error("kafka:\n  producer:\n    linger.ms: {a: 1}\n",
	             "t.yaml:3:16: kafka.producer.linger.ms: expected a single value, not a mapping");
	expect_error("kafka:\n  producer:\n    linger.ms:\n",
	             "t.yaml:3:15: kafka.producer.linger.ms: missing value");
	expect_error("kafka:\n  producer:\n    acks: 1\n",
	             "t.yaml:3:5: kafka.producer.acks: set by couponsd itself, it cannot be overridden");
	expect_error("kafka:\n  consumer:\n    group.id: x\n",
	             "t.yaml:3:5: kafka.consumer.group.id: set by couponsd itself, it cannot be overridden");
	expect_error("kafka:\n  producer:\n    request.required.acks: 1\n",
	             "t.yaml:3:5: kafka.producer.request.required.acks: set by couponsd itself, it cannot be "
	             "overridden");
	expect_error("kafka:\n  consumer:\n    auto.offset.reset: latest\n",
	             "t.yaml:3:5: kafka.consumer.auto.offset.reset: set by couponsd itself, it cannot be "
	             "overridden");
	expect_error("kafka:\n  consumer:\n    enable.auto.commit: false\n",
	             "t.yaml:3:5: kafka.consumer.enable.auto.commit: set by couponsd itself, it cannot be "
	             "overridden");
	expect_error("kafka:\n  consumer:\n    auto.commit.enable: false\n",
	             "t.yaml:3:5: kafka.consumer.auto.commit.enable: set by couponsd itself, it cannot be "
	             "overridden");
	expect_error("kafka:\n  consumer:\n    a: 1\n    a: 2\n",
	             "t.yaml:4:5: duplicate key 'kafka.consumer.a'");
	expect_error("kafka:\n  producer: fast\n",
	             "t.yaml:2:13: kafka.producer: expected a mapping of librdkafka properties");
	expect_error("kafka:\n  producer: [a]\n",
	             "t.yaml:2:13: kafka.producer: expected a mapping of librdkafka properties");
}

/* ---- loading: one error class at a time ---- */

static void test_structure_errors(void)
{
	expect_error("daemon:\n  usr: x\n", "t.yaml:2:3: unknown key 'daemon.usr'");
	expect_error("deamon:\n  user: x\n", "t.yaml:1:1: unknown section 'deamon'");
	expect_error("log: 5\n", "t.yaml:1:6: log: expected a mapping");
	expect_error("log: [a, b]\n", "t.yaml:1:6: log: expected a mapping");
	expect_error("log:\n  level: [debug]\n",
	             "t.yaml:2:10: log.level: expected a single value, not a list");
	expect_error("redis:\n  host: {a: b}\n",
	             "t.yaml:2:9: redis.host: expected a single value, not a mapping");
	expect_error("- daemon\n",
	             "t.yaml:1:1: expected a mapping of sections (daemon:, log:, ...), not a list");
	expect_error("just text\n",
	             "t.yaml:1:1: expected a mapping of sections (daemon:, log:, ...), not a single value");
	expect_error("log:\n  level: info\n  level: warn\n", "t.yaml:3:3: duplicate key 'log.level'");
	expect_error("log:\n  level: info\nlog:\n  format: json\n", "t.yaml:3:1: duplicate section 'log'");
	expect_error("log:\n  level: info\n---\nlog:\n  level: warn\n",
	             "t.yaml:4:1: only one YAML document is allowed");
	expect_error("redis:\n  port:\n", "t.yaml:2:8: redis.port: missing value");
	expect_error("log:\n  level: \"\\0\"\n", "t.yaml:2:10: log.level: contains a NUL character");
	expect_error("log:\n  ? [a]\n  : b\n", "t.yaml:2:5: log: expected a key name, not a list");
	expect_error("daemon:\n  \"us\\ner\": x\n", "t.yaml:2:3: unknown key 'daemon.us?er'");
}

/* The drain is spent inside daemon.shutdown_timeout (SPEC's bound on a stop), so it must be shorter. */
static void test_stop_drain_values(void)
{
	config_t *cfg = expect_load("daemon:\n  stop_drain: 1500ms\n  shutdown_timeout: 10s\n",
	                            "a stop_drain within shutdown_timeout");

	if (cfg != NULL)
		is_int((int)cfg->daemon_stop_drain, 1500, "daemon.stop_drain is read in milliseconds");
	config_free(cfg);
	expect_error("daemon:\n  stop_drain: 30s\n",
	             "t.yaml:2:15: daemon.stop_drain: must be less than daemon.shutdown_timeout (30s), which "
	             "bounds the whole stop");
	expect_error("daemon:\n  shutdown_timeout: 5s\n  stop_drain: 1m\n",
	             "t.yaml:3:15: daemon.stop_drain: must be less than daemon.shutdown_timeout (5s), which "
	             "bounds the whole stop");
	expect_error("daemon:\n  stop_drain: 5\n",
	             "t.yaml:2:15: daemon.stop_drain: invalid duration '5' (use e.g. 250ms, 5s, 1m)");
}

static void test_value_errors(void)
{
	expect_error("redis:\n  port: 70000\n", "t.yaml:2:9: redis.port: must be an integer from 1 to 65535");
	expect_error("redis:\n  port: 63.5\n", "t.yaml:2:9: redis.port: must be an integer from 1 to 65535");
	expect_error("kafka:\n  partitions: 0\n",
	             "t.yaml:2:15: kafka.partitions: must be an integer from 1 to 1024");
	expect_error("kafka:\n  partitions: 1025\n",
	             "t.yaml:2:15: kafka.partitions: must be an integer from 1 to 1024");
	expect_error("http:\n  workers: 0\n",
	             "t.yaml:2:12: http.workers: must be 'auto' or an integer from 1 to 256");
	expect_error("http:\n  workers: many\n",
	             "t.yaml:2:12: http.workers: must be 'auto' or an integer from 1 to 256");
	expect_error("daemon:\n  shutdown_timeout: 5x\n",
	             "t.yaml:2:21: daemon.shutdown_timeout: invalid duration '5x' (use e.g. 250ms, 5s, 1m)");
	expect_error("daemon:\n  shutdown_timeout: 30\n",
	             "t.yaml:2:21: daemon.shutdown_timeout: invalid duration '30' (use e.g. 250ms, 5s, 1m)");
	expect_error("daemon:\n  shutdown_timeout: 2h\n",
	             "t.yaml:2:21: daemon.shutdown_timeout: must be from 1ms to 1h");
	expect_error("issue:\n  result_ttl: 0ms\n",
	             "t.yaml:2:15: issue.result_ttl: must be from 1s to 8760h");
	expect_error("http:\n  max_body: 4x\n",
	             "t.yaml:2:13: http.max_body: invalid size '4x' (use e.g. 512, 4k, 1m)");
	expect_error("http:\n  max_body: 1g\n", "t.yaml:2:13: http.max_body: must be from 1 to 64m");
	expect_error("log:\n  level: verbose\n",
	             "t.yaml:2:10: log.level: invalid value 'verbose' (use one of debug, info, warn, error)");
	expect_error("postgres:\n  auto_migrate: maybe\n",
	             "t.yaml:2:17: postgres.auto_migrate: invalid boolean 'maybe' (use true or false)");
	expect_error("kafka:\n  topic: \"\"\n", "t.yaml:2:10: kafka.topic: must not be empty");
	expect_error("log:\n  level: \"a\\nb\"\n",
	             "t.yaml:2:10: log.level: invalid value 'a?b' (use one of debug, info, warn, error)");
	expect_error_containing(
	    "log:\n  level: "
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
	    "invalid value 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'");
}

static void test_listen_errors(void)
{
	static const char *const listen_help = "(use IPv4:port, [IPv6]:port, localhost:port or *:port)";
	char want[256];

	snprintf(want, sizeof(want), "t.yaml:2:12: http.listen: invalid listen address '1.2.3:80' %s",
	         listen_help);
	expect_error("http:\n  listen: [\"1.2.3:80\"]\n", want);
	snprintf(want, sizeof(want), "t.yaml:3:7: http.listen: invalid listen address '*:0' %s", listen_help);
	expect_error("http:\n  listen:\n    - \"*:0\"\n", want);
	expect_error("http:\n  listen: []\n", "t.yaml:2:11: http.listen: needs at least one address");
	expect_error("http:\n  listen: [\"*:1\", \"*:1\"]\n",
	             "t.yaml:2:19: http.listen: duplicate address '*:1'");
	expect_error("http:\n  listen: [[\"*:1\"]]\n",
	             "t.yaml:2:12: http.listen: expected a host:port address, not a list");
	expect_error("http:\n  listen: {a: b}\n",
	             "t.yaml:2:11: http.listen: expected a list of host:port addresses");
	expect_error(
	    "http:\n  listen: [localhost:1, localhost:2, localhost:3, localhost:4, localhost:5, localhost:6, "
	    "localhost:7, localhost:8, localhost:9, localhost:10, localhost:11, localhost:12, localhost:13, "
	    "localhost:14, localhost:15, localhost:16, localhost:17]\n",
	    "t.yaml:2:11: http.listen: at most 16 addresses");
}

static void test_partition_errors(void)
{
	expect_error(
	    "kafka:\n  owned_partitions: 3-1\n",
	    "t.yaml:2:21: kafka.owned_partitions: invalid partition set '3-1' (use all, 3, 0-3 or 0-3,6)");
	expect_error("kafka:\n  owned_partitions: [0, all]\n",
	             "t.yaml:2:25: kafka.owned_partitions: invalid partition 'all' (use a number or a range "
	             "such as 0-3)");
	expect_error("kafka:\n  owned_partitions: []\n",
	             "t.yaml:2:21: kafka.owned_partitions: needs at least one partition");
	expect_error("kafka:\n  partitions: 4\n  owned_partitions: 0-5\n",
	             "t.yaml:3:21: kafka.owned_partitions: partition 5 does not exist (kafka.partitions is "
	             "4, so 0 to 3)");
	expect_error("kafka:\n  owned_partitions: [8]\n",
	             "t.yaml:2:21: kafka.owned_partitions: partition 8 does not exist (kafka.partitions is "
	             "8, so 0 to 7)");
	/* A refused kafka.partitions must not add a second, misleading error about the owned ones. */
	expect_error("kafka:\n  partitions: 0\n  owned_partitions: 0-5\n",
	             "t.yaml:2:15: kafka.partitions: must be an integer from 1 to 1024");
}

static void test_cross_key_errors(void)
{
	expect_error("issue:\n  retry_initial: 1m\n",
	             "t.yaml:2:18: issue.retry_initial: must not exceed issue.retry_max (30s)");
	expect_error("issue:\n  retry_max: 50ms\n",
	             "t.yaml:2:14: issue.retry_max: must not be less than issue.retry_initial (100ms)");
	expect_error("kafka:\n  dlq_topic: coupon-issue\n",
	             "t.yaml:2:14: kafka.dlq_topic: must differ from kafka.topic");
	expect_error("kafka:\n  topic: coupon-issue-dlq\n",
	             "t.yaml:2:10: kafka.topic: must differ from kafka.dlq_topic");
	expect_error(
	    "redis:\n  key_prefix: \"{c}:\"\n",
	    "t.yaml:2:15: redis.key_prefix: must not contain '{' or '}' (couponsd adds its own hash tag)");
	config_free(expect_load("issue:\n  retry_initial: 1s\n  retry_max: 1s\n",
	                        "retry_initial equal to retry_max"));
	expect_error(
	    "daemon:\n  worker_timeout: 5s\npostgres:\n  dead_session_timeout: 5s\n",
	    "t.yaml:4:25: postgres.dead_session_timeout: must be less than daemon.worker_timeout (5s)");
	config_free(expect_load("daemon:\n  worker_timeout: 2s\n",
	                        "a short worker_timeout with the default dead_session_timeout"));
	test_stop_drain_values();
	expect_error("daemon:\n  node: \"h 1\"\n",
	             "t.yaml:2:9: daemon.node: printable ASCII without spaces, quotes or backslashes");
}

/* daemon.node: the host name unless set, as written when set. */
static void test_node(void)
{
	char host[CONFIG_NODE_MAX + 1] = "";
	config_t *cfg = expect_load("", "no daemon.node");

	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[CONFIG_NODE_MAX] = '\0';
	is_str(cfg != NULL ? cfg->daemon_node : NULL, host[0] != '\0' ? host : "localhost",
	       "daemon.node defaults to the host name");
	config_free(cfg);
	cfg = expect_load("daemon:\n  node: h1\n", "daemon.node: h1");
	is_str(cfg != NULL ? cfg->daemon_node : NULL, "h1", "daemon.node as written");
	config_free(cfg);
}

/* The longest prefix the loader accepts still fits the longest key; a longer one is refused. */
static void test_key_prefix_length(void)
{
	char yaml[512], want[128], prefix[KEYS_PREFIX_MAX + 2], key[KEYS_MAX];
	config_t *cfg;

	memset(prefix, 'p', sizeof(prefix) - 1);
	prefix[KEYS_PREFIX_MAX + 1] = '\0';
	snprintf(yaml, sizeof(yaml), "redis:\n  key_prefix: %s\n", prefix);
	snprintf(want, sizeof(want),
	         "t.yaml:2:15: redis.key_prefix: at most %d bytes (it starts every Redis key)",
	         KEYS_PREFIX_MAX);
	expect_error(yaml, want);
	prefix[KEYS_PREFIX_MAX] = '\0';
	snprintf(yaml, sizeof(yaml), "redis:\n  key_prefix: %s\n", prefix);
	cfg = expect_load(yaml, "a key_prefix of KEYS_PREFIX_MAX bytes");
	ok(cfg != NULL && keys_reservation(cfg->redis_key_prefix, INT64_MAX,
	                                   "00000000-0000-4000-8000-000000000000", key, sizeof(key)) > 0,
	   "its longest key fits");
	config_free(cfg);
	memset(yaml, 'p', KEYS_MAX);
	yaml[KEYS_MAX] = '\0';
	ok(keys_user(yaml, 1, 2, key, sizeof(key)) == -1 && keys_status(yaml, "x", key, sizeof(key)) == -1,
	   "a key that does not fit is reported, not cut");
}

static void test_syntax_errors(void)
{
	expect_error("daemon:\n  user: a: b\n",
	             "t.yaml:2:10: syntax error: mapping values are not allowed in this context");
	expect_error("log:\n\tlevel: info\n",
	             "t.yaml:2:1: syntax error: found character that cannot start any token "
	             "(while scanning for the next token at line 2, column 1)");
	expect_error("log:\n  level: [debug\n", "t.yaml:3:1: syntax error: did not find expected ',' or ']' "
	                                        "(while parsing a flow sequence at line 2, column 10)");
	expect_error("log:\n  level: \xff\n", "t.yaml:2:10: syntax error: invalid leading UTF-8 octet");
	expect_error("a: *x\n", "t.yaml:1:4: syntax error: found undefined alias");
	/* Unknown keys before a syntax error are not reported: the document never loads. */
	expect_error("daemon:\n  usr: x\nlog: [\n",
	             "t.yaml:4:1: syntax error: did not find expected node content "
	             "(while parsing a flow node at line 4, column 1)");
}

/* Several errors in one file: all of them, in file order, each with its own line:column. */
static void test_many_errors(void)
{
	static const char *const want[] = {
	    "t.yaml:2:3: unknown key 'daemon.usr'",
	    "t.yaml:3:21: daemon.shutdown_timeout: invalid duration '5x' (use e.g. 250ms, 5s, 1m)",
	    "t.yaml:5:10: log.level: invalid value 'loud' (use one of debug, info, warn, error)",
	    "t.yaml:7:12: http.workers: must be 'auto' or an integer from 1 to 256",
	    "t.yaml:8:1: unknown section 'bogus'",
	    ("t.yaml:11:21: kafka.owned_partitions: partition 9 does not exist "
	     "(kafka.partitions is 8, so 0 to 7)"),
	};
	const char *yaml =
	    "daemon:\n  usr: x\n  shutdown_timeout: 5x\nlog:\n  level: loud\nhttp:\n  workers: many\n"
	    "bogus:\n  a: 1\nkafka:\n  owned_partitions: 9\n";
	config_errors_t errs = {0};
	config_t *cfg = load(yaml, &errs);
	size_t n = sizeof(want) / sizeof(want[0]);

	ok(cfg == NULL, "a file with several errors is refused");
	if (!is_int(errs.count, (long long)n, "every error is reported"))
		show_errors(&errs);
	for (size_t i = 0; i < n && i < (size_t)errs.count; i++)
		is_str(errs.items[i], want[i], "error %zu", i + 1);
	config_free(cfg);
	config_errors_clear(&errs);
}

static void test_errors_list(void)
{
	config_errors_t errs = {0};

	for (int i = 0; i < 20; i++)
		config_errors_add(&errs, "error %d of %s", i, "many");
	ok(errs.count == 20 && strcmp(errs.items[19], "error 19 of many") == 0,
	   "config_errors_add grows the list");
	config_errors_clear(&errs);
	ok(errs.count == 0 && errs.items == NULL && errs.capacity == 0, "config_errors_clear empties it");
	/* Errors already in the list belong to the caller: a load reports its own failure, not theirs. */
	config_errors_add(&errs, "earlier");
	config_t *cfg = load("", &errs);
	ok(cfg != NULL && errs.count == 1, "an earlier error does not fail a good load");
	config_free(cfg);
	config_errors_clear(&errs);
}

/* ---- files ---- */

static void test_load_file(void)
{
	config_errors_t errs = {0};
	char *path = temp_file("log:\n  level: warn\n  lvl: x\n");
	char want[4200];
	config_t *cfg;

	if (!ok(path != NULL, "temporary file"))
		return;
	cfg = config_load(path, &errs);
	snprintf(want, sizeof(want), "%s:3:3: unknown key 'log.lvl'", path);
	ok(cfg == NULL && errs.count == 1 && strcmp(errs.items[0], want) == 0, "file errors name the file");
	config_errors_clear(&errs);
	unlink(path);
	cfg = config_load(path, &errs);
	snprintf(want, sizeof(want), "%s: cannot open: ", path);
	ok(cfg == NULL && errs.count == 1 && strncmp(errs.items[0], want, strlen(want)) == 0,
	   "a missing file");
	config_errors_clear(&errs);
	cfg = config_load("/", &errs);
	ok(cfg == NULL && errs.count == 1 && strstr(errs.items[0], "cannot read") != NULL, "a directory");
	config_errors_clear(&errs);
	free(path);
}

static void test_example_file(void)
{
	config_errors_t errs = {0};
	char *path = source_path("etc/couponsd.yaml");
	config_t *cfg = path != NULL ? config_load(path, &errs) : NULL;
	char *text = read_source("etc/couponsd.yaml"), *generated = capture(print_example, 0);
	int unset = 0;

	if (!ok(cfg != NULL && errs.count == 0, "etc/couponsd.yaml loads with no error"))
		show_errors(&errs);
	for (int i = 0; cfg != NULL && i < config_key_count(); i++) {
		if (!config_key_was_set(cfg, i)) {
			diag("  not set in etc/couponsd.yaml: %s", config_key_name(i));
			unset++;
		}
	}
	ok(cfg != NULL && unset == 0, "etc/couponsd.yaml sets every key explicitly");
	if (!ok(text != NULL && generated != NULL && strcmp(text, generated) == 0,
	        "etc/couponsd.yaml is what config_print_example() prints"))
		diag("  regenerate it: tests/unit/test_config --print-example > etc/couponsd.yaml");
	free(text);
	free(generated);
	config_free(cfg);
	config_errors_clear(&errs);
	free(path);
}

static void test_docs(void)
{
	static const char begin[] =
	    "<!-- BEGIN KEY TABLE: generated by `couponsd --list-keys --markdown` -->\n";
	static const char end[] = "<!-- END KEY TABLE -->";
	char *docs = read_source("docs/configuration.md"), *table = capture(config_print_keys, 1);
	char *start, *stop, mention[96];
	int missing = 0;

	if (!ok(docs != NULL && table != NULL, "docs/configuration.md is readable"))
		goto out;
	for (int i = 0; i < config_key_count(); i++) {
		snprintf(mention, sizeof(mention), "`%s`", config_key_name(i));
		if (strstr(docs, mention) == NULL) {
			diag("  docs/configuration.md does not mention %s", mention);
			missing++;
		}
	}
	is_int(missing, 0, "docs/configuration.md mentions every key as `section.key`");
	start = strstr(docs, begin);
	stop = start != NULL ? strstr(start, end) : NULL;
	if (start != NULL)
		start += strlen(begin);
	if (!ok(stop != NULL && (size_t)(stop - start) == strlen(table) &&
	            strncmp(start, table, strlen(table)) == 0,
	        "the key table in docs/configuration.md is the one the code prints"))
		diag("  paste the output of `couponsd --list-keys --markdown` between the KEY TABLE markers");
out:
	free(docs);
	free(table);
}

static void test_print_keys(void)
{
	char *plain = capture(config_print_keys, 0), *markdown = capture(config_print_keys, 1);
	int missing = 0;

	for (int i = 0; plain != NULL && i < config_key_count(); i++)
		missing += strstr(plain, config_key_name(i)) == NULL;
	ok(plain != NULL && strncmp(plain, "KEY ", 4) == 0 && missing == 0,
	   "plain key table lists every key");
	ok(markdown != NULL && strncmp(markdown, "| Key |", 7) == 0 &&
	       strstr(markdown, "reload\\|stop") != NULL,
	   "markdown key table escapes | inside cells");
	free(plain);
	free(markdown);
}

static void test_restart_keys(void)
{
	config_errors_t notes = {0};
	config_t *old = load("", NULL);
	config_t *same = load("log:\n  level: debug\nkafka:\n  producer: {linger.ms: 1}\n", NULL);
	config_t *changed =
	    load("daemon:\n  user: nobody\nhttp:\n  listen: [\"127.0.0.1:9\"]\n"
	         "kafka:\n  partitions: 4\nmetrics:\n  enabled: false\nlog:\n  level: debug\n",
	         NULL);

	if (!ok(old != NULL && same != NULL && changed != NULL, "three generations load"))
		goto out;
	config_restart_keys(old, same, &notes);
	is_int(notes.count, 0, "reloadable changes need no restart");
	config_restart_keys(old, changed, &notes);
	if (!is_int(notes.count, 4, "four restart-only keys changed"))
		show_errors(&notes);
	ok(has_error(&notes, "daemon.user: changing it needs a restart; keeping the running value") &&
	       has_error(&notes, "http.listen: changing it needs a restart; keeping the running value") &&
	       has_error(&notes,
	                 "kafka.partitions: changing it needs a restart; keeping the running value") &&
	       has_error(&notes, "metrics.enabled: changing it needs a restart; keeping the running value"),
	   "each restart-only change is named");
	config_errors_clear(&notes);
	config_restart_keys(changed, changed, &notes);
	config_restart_keys(NULL, changed, &notes);
	is_int(notes.count, 0, "a config compared with itself (or nothing) needs no restart");
out:
	config_errors_clear(&notes);
	config_free(old);
	config_free(same);
	config_free(changed);
}

/* A reload runs the new generation with the running value of every restart-only key. */
static void test_keep_restart_keys(void)
{
	config_errors_t notes = {0}, errs = {0};
	config_t *old = load("kafka:\n  partitions: 2\n", NULL);
	config_t *next =
	    load("kafka:\n  topic: renamed\n  group_id: other\n  partitions: 4\n"
	         "  owned_partitions: 0-1\nhttp:\n  listen: [\"127.0.0.1:9\", \"127.0.0.1:10\"]\n"
	         "redis:\n  key_prefix: \"x:\"\nlog:\n  level: debug\n",
	         NULL);
	config_t *wider = load("kafka:\n  partitions: 4\n  owned_partitions: 2-3\n", NULL);
	config_t *all = load("kafka:\n  partitions: 4\n", NULL);

	if (!ok(old != NULL && next != NULL && wider != NULL && all != NULL, "four configurations load"))
		goto out;
	ok(config_keep_restart_keys(old, next, &notes, &errs) == 0 && errs.count == 0, "kept");
	is_int(notes.count, 5, "five restart-only keys reported");
	ok(strcmp(next->kafka_topic, "coupon-issue") == 0 && strcmp(next->kafka_group_id, "couponsd") == 0 &&
	       strcmp(next->redis_key_prefix, "couponsd:") == 0 && next->kafka_partitions == 2,
	   "the new configuration has the running topic, group, prefix and partition count");
	ok(next->http_listen_count == 1 && strcmp(next->http_listen[0], old->http_listen[0]) == 0,
	   "and the running listen list");
	ok(next->log_level == LOG_LEVEL_DEBUG && next->kafka_owned_count == 2,
	   "reloadable keys take their new value");
	config_errors_clear(&notes);
	ok(config_keep_restart_keys(old, all, &notes, &errs) == 0 && all->kafka_owned_count == 2 &&
	       all->kafka_owned[1] == 1,
	   "owned partitions 'all' follow the running partition count");
	config_errors_clear(&notes);
	ok(config_keep_restart_keys(old, wider, &notes, &errs) == -1 &&
	       has_error(&errs, "kafka.owned_partitions: partition 2 does not exist in the running "
	                        "kafka.partitions (2); restart to change kafka.partitions"),
	   "owned partitions beyond the running partition count refuse the reload");
out:
	config_errors_clear(&notes);
	config_errors_clear(&errs);
	config_free(old);
	config_free(next);
	config_free(wider);
	config_free(all);
}

static void test_peek_one(const char *yaml, const char *key, const char *want, const char *what)
{
	char *path = temp_file(yaml), *got;

	if (path == NULL) {
		ok(0, "temporary file for %s", what);
		return;
	}
	got = config_peek_string(path, key);
	is_str(got, want, "peek: %s", what);
	free(got);
	unlink(path);
	free(path);
}

static void test_peek(void)
{
	char *got;

	test_peek_one("daemon:\n  control_socket: /tmp/c.sock\nlog:\n  level: [\n", "daemon.control_socket",
	              "/tmp/c.sock", "a key above a syntax error");
	test_peek_one("daemon:\n  usr: x\n  control_socket: \"/tmp/q.sock\"\nhttp: 5\n",
	              "daemon.control_socket", "/tmp/q.sock", "a quoted key in a file with other errors");
	test_peek_one("log:\n  control_socket: /x\ndaemon:\n  user: x\n", "daemon.control_socket",
	              "/run/couponsd/control.sock",
	              "the default when unset (same key name in another section)");
	test_peek_one("daemon:\n  nested: {control_socket: /x}\n  control_socket:\n", "daemon.control_socket",
	              "", "a null value is empty; nested keys do not count");
	test_peek_one("daemon: {pid_file: /p, control_socket: /f}\n", "daemon.control_socket", "/f",
	              "flow style");
	test_peek_one("[1, 2\n", "daemon.control_socket", "/run/couponsd/control.sock",
	              "a broken file: the default");
	test_peek_one("log:\n  file: /l\n", "daemon.shutdown_timeout", NULL, "a key that is not a string");
	test_peek_one("log:\n  file: /l\n", "daemon.nope", NULL, "an unknown key");
	got = config_peek_string("/nonexistent/couponsd.yaml", "daemon.control_socket");
	ok(got == NULL, "peek: an unreadable file gives NULL");
	free(got);
}

/*
 * With --print-example, prints the example file instead of testing, so that
 * etc/couponsd.yaml can be regenerated after the key table changed.
 */
int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--print-example") == 0) {
		config_print_example(stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	test_key_table();
	test_durations();
	test_sizes();
	test_scalars();
	test_listen_parser();
	test_partition_parser();
	test_defaults();
	test_empty_forms();
	test_good_values();
	test_passthrough();
	test_structure_errors();
	test_value_errors();
	test_listen_errors();
	test_partition_errors();
	test_cross_key_errors();
	test_syntax_errors();
	test_many_errors();
	test_errors_list();
	test_load_file();
	test_example_file();
	test_docs();
	test_print_keys();
	test_restart_keys();
	test_keep_restart_keys();
	test_node();
	test_key_prefix_length();
	test_peek();
	return done_testing();
}
