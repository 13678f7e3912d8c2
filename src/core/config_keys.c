/* SPDX-License-Identifier: BSD-2-Clause */
/* config_keys.c: every configuration key as one row of data, and the printers that show the table. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "core/config_keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/config_value.h"

#define AT(field) offsetof(config_t, field)
#define SECOND INT64_C(1000)
#define MINUTE (60 * SECOND)
#define HOUR (60 * MINUTE)
#define KIB INT64_C(1024)
#define MIB (1024 * KIB)

/* Indexed by log_level_t and log_format_t: the order is the enums' order. */
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

/*
 * librdkafka properties that other keys or the no-loss guarantees decide
 * (SPEC section 3: acks=all, idempotence, the Java partitioner; offsets stored
 * only after the outcome is durable). Passing them through would let a
 * typo-free file silently break those promises, so they are refused, and so
 * are librdkafka's aliases of them: request.required.acks is acks under
 * another name. A consumer starting without a committed offset must begin at
 * the earliest event (auto.offset.reset=latest would skip undecided ones),
 * and with auto commit off the stored offsets would be committed only at a
 * graceful stop, so a crash would replay everything decided since the start.
 */
static const char *const producer_reserved[] = {
    "acks",        "request.required.acks", "enable.idempotence",
    "partitioner", "bootstrap.servers",     "metadata.broker.list",
    NULL,
};
static const char *const consumer_reserved[] = {
    "group.id",          "bootstrap.servers",  "metadata.broker.list", "enable.auto.offset.store",
    "auto.offset.reset", "enable.auto.commit", "auto.commit.enable",   NULL,
};

const config_key_t config_keys[] = {
    {.name = "daemon.user",
     .type = CONFIG_TYPE_STRING,
     .default_text = "couponsd",
     .reloadable = 0,
     .help = "drop to this user after binding (when started as root); \"\" keeps the current user",
     .offset = AT(daemon_user)},
    {.name = "daemon.group",
     .type = CONFIG_TYPE_STRING,
     .default_text = "couponsd",
     .reloadable = 0,
     .help = "drop to this group after binding; \"\" uses the user's primary group",
     .offset = AT(daemon_group)},
    {.name = "daemon.pid_file",
     .type = CONFIG_TYPE_STRING,
     .default_text = "/run/couponsd/couponsd.pid",
     .reloadable = 0,
     .help = "the master writes its pid here; \"\" writes no pid file",
     .offset = AT(daemon_pid_file)},
    {.name = "daemon.control_socket",
     .type = CONFIG_TYPE_STRING,
     .default_text = "/run/couponsd/control.sock",
     .reloadable = 0,
     .help = "Unix socket that `couponsd -s reload|stop|reopen` talks to; \"\" disables it",
     .offset = AT(daemon_control_socket)},
    {.name = "daemon.shutdown_timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "30s",
     .reloadable = 1,
     .help = "a graceful stop or a retiring generation gets this long, then stragglers get SIGKILL",
     .offset = AT(daemon_shutdown_timeout),
     .min = 1,
     .max = HOUR},
    {.name = "daemon.stop_drain",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "0s",
     .reloadable = 1,
     .help = "a stop first serves this long with /readyz 503 and Connection: close (behind a load "
             "balancer: at least its check interval x unhealthy threshold); within shutdown_timeout",
     .offset = AT(daemon_stop_drain),
     .min = 0,
     .max = HOUR},
    {.name = "daemon.worker_timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "30s",
     .reloadable = 1,
     .help = "a worker whose heartbeat stops this long is killed and restarted",
     .offset = AT(daemon_worker_timeout),
     .min = 100,
     .max = HOUR},
    {.name = "daemon.node",
     .type = CONFIG_TYPE_STRING,
     .default_text = "\"\"",
     .reloadable = 0,
     .help = "this host's name in the log, /metrics and partition_owners; \"\" is the host name",
     .offset = AT(daemon_node)},
    {.name = "daemon.takeover_poll",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "250ms",
     .reloadable = 1,
     .help = "a standby consumer asks for its partition's ownership lock this often",
     .offset = AT(daemon_takeover_poll),
     .min = 10,
     .max = MINUTE},

    {.name = "log.level",
     .type = CONFIG_TYPE_ENUM,
     .default_text = "info",
     .reloadable = 1,
     .help = "least severe message written: debug, info, warn or error",
     .offset = AT(log_level),
     .choices = log_levels},
    {.name = "log.format",
     .type = CONFIG_TYPE_ENUM,
     .default_text = "text",
     .reloadable = 1,
     .help = "text for people, or json (one object per line) for log collectors",
     .offset = AT(log_format),
     .choices = log_formats},
    {.name = "log.file",
     .type = CONFIG_TYPE_STRING,
     .default_text = "stderr",
     .reloadable = 1,
     .help = "stderr, syslog, or a file path (reopened on SIGUSR1 and `couponsd -s reopen`)",
     .offset = AT(log_file),
     .nonempty = 1},

    {.name = "http.listen",
     .type = CONFIG_TYPE_LISTEN_LIST,
     .default_text = "[\"0.0.0.0:8080\"]",
     .reloadable = 0,
     .help = "addresses to accept on: IPv4:port, [IPv6]:port, localhost:port or *:port",
     .offset = AT(http_listen),
     .count_offset = AT(http_listen_count)},
    {.name = "http.workers",
     .type = CONFIG_TYPE_WORKERS,
     .default_text = "auto",
     .reloadable = 1,
     .help = "number of HTTP worker processes; auto = number of CPUs",
     .offset = AT(http_workers),
     .min = 1,
     .max = 256},
    {.name = "http.max_body",
     .type = CONFIG_TYPE_SIZE,
     .default_text = "4k",
     .reloadable = 1,
     .help = "request bodies larger than this get 413",
     .offset = AT(http_max_body),
     .min = 1,
     .max = 64 * MIB},
    {.name = "http.read_timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "5s",
     .reloadable = 1,
     .help = "slow or idle clients are disconnected after this long",
     .offset = AT(http_read_timeout),
     .min = 1,
     .max = HOUR},
    {.name = "http.max_connections",
     .type = CONFIG_TYPE_INT,
     .default_text = "10000",
     .reloadable = 1,
     .help = "open client connections one HTTP worker accepts; more wait in the listen backlog",
     .offset = AT(http_max_connections),
     .min = 1,
     .max = 1000000},

    {.name = "admin.token",
     .type = CONFIG_TYPE_STRING,
     .default_text = "\"\"",
     .reloadable = 1,
     .help = "bearer token for POST /api/admin/coupons; \"\" turns the admin API off (404)",
     .offset = AT(admin_token)},

    {.name = "kafka.brokers",
     .type = CONFIG_TYPE_STRING,
     .default_text = "embedded",
     .reloadable = 0,
     .help = "\"embedded\" (an in-memory mock cluster for development and tests) or host:port,host:port",
     .offset = AT(kafka_brokers),
     .nonempty = 1},
    /*
     * The topics, the group and the Redis prefix name where a generation's
     * data lives. Changed under a running generation, the draining one would
     * leave its undecided tail, its results and its committed offsets under the
     * old names while the new one starts from nothing under the new ones (and
     * the partition lock is keyed by the topic): a restart only.
     */
    {.name = "kafka.topic",
     .type = CONFIG_TYPE_STRING,
     .default_text = "coupon-issue",
     .reloadable = 0,
     .help = "topic of issue requests, keyed by coupon id",
     .offset = AT(kafka_topic),
     .nonempty = 1},
    {.name = "kafka.results_topic",
     .type = CONFIG_TYPE_STRING,
     .default_text = "coupon-issue-results",
     .reloadable = 0,
     .help = "topic the consumers publish final request statuses to",
     .offset = AT(kafka_results_topic),
     .nonempty = 1},
    {.name = "kafka.dlq_topic",
     .type = CONFIG_TYPE_STRING,
     .default_text = "coupon-issue-dlq",
     .reloadable = 0,
     .help = "dead-letter topic for messages that cannot be parsed or validated",
     .offset = AT(kafka_dlq_topic),
     .nonempty = 1},
    {.name = "kafka.group_id",
     .type = CONFIG_TYPE_STRING,
     .default_text = "couponsd",
     .reloadable = 0,
     .help = "consumer group id, under which offsets are committed",
     .offset = AT(kafka_group_id),
     .nonempty = 1},
    {.name = "kafka.partitions",
     .type = CONFIG_TYPE_INT,
     .default_text = "8",
     .reloadable = 0,
     .help = "partitions of the issue topic, 0 to N-1; embedded mode creates them",
     .offset = AT(kafka_partitions),
     .min = 1,
     .max = CONFIG_MAX_PARTITIONS},
    {.name = "kafka.owned_partitions",
     .type = CONFIG_TYPE_PARTITIONS,
     .default_text = "all",
     .reloadable = 1,
     .help = "partitions this host consumes: all, or e.g. 0-3, \"0-3,6\" or [0, 4-5] to scale out",
     .offset = AT(kafka_owned),
     .count_offset = AT(kafka_owned_count)},
    {.name = "kafka.produce_timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "5s",
     .reloadable = 1,
     .help = "no delivery report within this time: the request gets 503",
     .offset = AT(kafka_produce_timeout),
     .min = 1,
     .max = HOUR},
    {.name = "kafka.producer",
     .type = CONFIG_TYPE_PASSTHROUGH,
     .default_text = "{}",
     .reloadable = 1,
     .help = "extra librdkafka producer properties, passed verbatim",
     .offset = AT(kafka_producer),
     .count_offset = AT(kafka_producer_count),
     .reserved = producer_reserved},
    {.name = "kafka.consumer",
     .type = CONFIG_TYPE_PASSTHROUGH,
     .default_text = "{}",
     .reloadable = 1,
     .help = "extra librdkafka consumer properties, passed verbatim",
     .offset = AT(kafka_consumer),
     .count_offset = AT(kafka_consumer_count),
     .reserved = consumer_reserved},

    {.name = "redis.host",
     .type = CONFIG_TYPE_STRING,
     .default_text = "127.0.0.1",
     .reloadable = 1,
     .help = "Redis server host name or address",
     .offset = AT(redis_host),
     .nonempty = 1},
    {.name = "redis.port",
     .type = CONFIG_TYPE_INT,
     .default_text = "6379",
     .reloadable = 1,
     .help = "Redis server TCP port",
     .offset = AT(redis_port),
     .min = 1,
     .max = 65535},
    {.name = "redis.password",
     .type = CONFIG_TYPE_STRING,
     .default_text = "\"\"",
     .reloadable = 1,
     .help = "sent with AUTH; \"\" sends no AUTH",
     .offset = AT(redis_password)},
    {.name = "redis.db",
     .type = CONFIG_TYPE_INT,
     .default_text = "0",
     .reloadable = 1,
     .help = "database number (SELECT)",
     .offset = AT(redis_db),
     .min = 0,
     .max = 65535},
    {.name = "redis.key_prefix",
     .type = CONFIG_TYPE_STRING,
     .default_text = "\"couponsd:\"",
     .reloadable = 0,
     .help = "prefix of every Redis key couponsd uses; at most 128 bytes, no { or }: couponsd adds its own "
             "hash tag",
     .offset = AT(redis_key_prefix)},
    {.name = "redis.timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "1s",
     .reloadable = 1,
     .help = "connect and command timeout",
     .offset = AT(redis_timeout),
     .min = 1,
     .max = HOUR},

    {.name = "postgres.conninfo",
     .type = CONFIG_TYPE_STRING,
     .default_text = "\"host=127.0.0.1 port=5432 dbname=couponsd user=couponsd\"",
     .reloadable = 1,
     .help = "libpq connection string (keywords or a postgresql:// URI)",
     .offset = AT(postgres_conninfo)},
    {.name = "postgres.auto_migrate",
     .type = CONFIG_TYPE_BOOL,
     .default_text = "true",
     .reloadable = 1,
     .help = "apply pending schema migrations at start, under an advisory lock",
     .offset = AT(postgres_auto_migrate)},
    {.name = "postgres.timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "5s",
     .reloadable = 1,
     .help = "connect and statement timeout of every PostgreSQL connection (HTTP workers and consumers)",
     .offset = AT(postgres_timeout),
     .min = 1,
     .max = 10 * MINUTE},
    {.name = "postgres.dead_session_timeout",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "3s",
     .reloadable = 1,
     .help = "PostgreSQL ends a vanished consumer's session (and frees its partitions) within this time",
     .offset = AT(postgres_dead_session_timeout),
     .min = 2 * SECOND,
     .max = 10 * MINUTE},

    {.name = "issue.batch_size",
     .type = CONFIG_TYPE_INT,
     .default_text = "1024",
     .reloadable = 1,
     .help = "consumer write-through batch: events per PostgreSQL transaction",
     .offset = AT(issue_batch_size),
     .min = 1,
     .max = 100000},
    {.name = "issue.batch_linger",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "2ms",
     .reloadable = 1,
     .help = "how long a consumer waits for more events to fill a short batch (0ms: decide at once)",
     .offset = AT(issue_batch_linger),
     .min = 0,
     .max = SECOND},
    {.name = "issue.result_ttl",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "24h",
     .reloadable = 1,
     .help = "how long request statuses stay in Redis",
     .offset = AT(issue_result_ttl),
     .min = SECOND,
     .max = 8760 * HOUR},
    {.name = "issue.retry_initial",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "100ms",
     .reloadable = 1,
     .help = "first back-off after a failed Redis or PostgreSQL call; it doubles up to issue.retry_max",
     .offset = AT(issue_retry_initial),
     .min = 1,
     .max = HOUR},
    {.name = "issue.retry_max",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "30s",
     .reloadable = 1,
     .help = "longest back-off between retries",
     .offset = AT(issue_retry_max),
     .min = 1,
     .max = HOUR},
    {.name = "issue.max_pending",
     .type = CONFIG_TYPE_INT,
     .default_text = "20000",
     .reloadable = 1,
     .help = "accepted-but-undecided events per partition before new requests get 429",
     .offset = AT(issue_max_pending),
     .min = 1,
     .max = 10000000},
    {.name = "issue.stock_check_interval",
     .type = CONFIG_TYPE_DURATION,
     .default_text = "2s",
     .reloadable = 1,
     .help = "how often each consumer restores missing or drifted Redis stock of its coupons from PostgreSQL",
     .offset = AT(issue_stock_check_interval),
     .min = 100,
     .max = HOUR},

    {.name = "metrics.enabled",
     .type = CONFIG_TYPE_BOOL,
     .default_text = "true",
     .reloadable = 0,
     .help = "serve GET /metrics and keep the counters in memory shared by all processes",
     .offset = AT(metrics_enabled)},
};

const int config_keys_total = (int)(sizeof(config_keys) / sizeof(config_keys[0]));

_Static_assert(sizeof(config_keys) / sizeof(config_keys[0]) <= CONFIG_MAX_KEYS,
               "config_t.key_set[] is too small for the key table: raise CONFIG_MAX_KEYS");

/* One line per section for the example file, in table order. */
static const struct {
	const char *name;
	const char *help;
} sections[] = {
    {"daemon", "the master process: privileges, files, deadlines"},
    {"log", "where and how much couponsd logs"},
    {"http", "the public HTTP API served by the HTTP workers"},
    {"admin", "the admin API"},
    {"kafka", "the event log between HTTP workers and consumers"},
    {"redis", "the fast gate: stock counters and request statuses (rebuilt from PostgreSQL)"},
    {"postgres", "the source of truth"},
    {"issue", "how consumers decide requests"},
    {"metrics", "Prometheus metrics"},
};

int config_key_count(void)
{
	return config_keys_total;
}

const char *config_key_name(int i)
{
	if (i < 0 || i >= config_keys_total)
		return NULL;
	return config_keys[i].name;
}

int config_key_index(const char *name)
{
	for (int i = 0; i < config_keys_total; i++) {
		if (strcmp(config_keys[i].name, name) == 0)
			return i;
	}
	return -1;
}

/* Length of the section part of a key name ("daemon" in "daemon.user"). */
static size_t section_length(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot != NULL ? (size_t)(dot - name) : strlen(name);
}

int config_section_known(const char *section)
{
	size_t len = strlen(section);

	for (int i = 0; i < config_keys_total; i++) {
		const char *name = config_keys[i].name;

		if (section_length(name) == len && strncmp(name, section, len) == 0)
			return 1;
	}
	return 0;
}

/* Writes "debug, info, warn, error". */
static void choices_text(const char *const *choices, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; choices[i] != NULL && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "", choices[i]);

		if (n < 0)
			return;
		used += (size_t)n;
	}
}

void config_key_type_text(const config_key_t *key, char *buf, size_t len)
{
	char low[32], high[32], names[128];

	switch (key->type) {
	case CONFIG_TYPE_STRING:
		snprintf(buf, len, "%s", key->nonempty ? "string, not empty" : "string");
		break;
	case CONFIG_TYPE_BOOL:
		snprintf(buf, len, "boolean");
		break;
	case CONFIG_TYPE_INT:
		snprintf(buf, len, "integer %" PRId64 "..%" PRId64, key->min, key->max);
		break;
	case CONFIG_TYPE_DURATION:
		config_format_duration(key->min, low, sizeof(low));
		config_format_duration(key->max, high, sizeof(high));
		snprintf(buf, len, "duration %s..%s", low, high);
		break;
	case CONFIG_TYPE_SIZE:
		config_format_size(key->min, low, sizeof(low));
		config_format_size(key->max, high, sizeof(high));
		snprintf(buf, len, "size %s..%s", low, high);
		break;
	case CONFIG_TYPE_ENUM:
		choices_text(key->choices, names, sizeof(names));
		snprintf(buf, len, "one of %s", names);
		break;
	case CONFIG_TYPE_LISTEN_LIST:
		snprintf(buf, len, "list of host:port (at most %d)", CONFIG_MAX_LISTEN);
		break;
	case CONFIG_TYPE_WORKERS:
		snprintf(buf, len, "auto or %" PRId64 "..%" PRId64, key->min, key->max);
		break;
	case CONFIG_TYPE_PARTITIONS:
		snprintf(buf, len, "partition set");
		break;
	case CONFIG_TYPE_PASSTHROUGH:
		snprintf(buf, len, "map of librdkafka properties");
		break;
	}
}

/* Writes text with '|' escaped, so that it stays inside one markdown table cell. */
static void print_cell(FILE *out, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '|')
			fputc('\\', out);
		fputc(*p, out);
	}
}

static void print_markdown(FILE *out)
{
	char type[160];

	fprintf(out, "| Key | Type | Default | Reload | Description |\n");
	fprintf(out, "| --- | --- | --- | --- | --- |\n");
	for (int i = 0; i < config_keys_total; i++) {
		const config_key_t *key = &config_keys[i];

		config_key_type_text(key, type, sizeof(type));
		fprintf(out, "| `%s` | %s | `", key->name, type);
		print_cell(out, key->default_text);
		fprintf(out, "` | %s | ", key->reloadable ? "yes" : "restart");
		print_cell(out, key->help);
		fprintf(out, " |\n");
	}
}

/* One aligned line per key, so that `couponsd --list-keys | grep` shows a whole row. */
static void print_plain(FILE *out)
{
	int name_width = 3, type_width = 4, default_width = 7;
	char type[160];

	for (int i = 0; i < config_keys_total; i++) {
		config_key_type_text(&config_keys[i], type, sizeof(type));
		if ((int)strlen(config_keys[i].name) > name_width)
			name_width = (int)strlen(config_keys[i].name);
		if ((int)strlen(type) > type_width)
			type_width = (int)strlen(type);
		if ((int)strlen(config_keys[i].default_text) > default_width)
			default_width = (int)strlen(config_keys[i].default_text);
	}
	fprintf(out, "%-*s  %-*s  %-*s  %-7s  %s\n", name_width, "KEY", type_width, "TYPE", default_width,
	        "DEFAULT", "RELOAD", "DESCRIPTION");
	for (int i = 0; i < config_keys_total; i++) {
		const config_key_t *key = &config_keys[i];

		config_key_type_text(key, type, sizeof(type));
		fprintf(out, "%-*s  %-*s  %-*s  %-7s  %s\n", name_width, key->name, type_width, type,
		        default_width, key->default_text, key->reloadable ? "yes" : "restart", key->help);
	}
}

void config_print_keys(FILE *out, int markdown)
{
	if (markdown)
		print_markdown(out);
	else
		print_plain(out);
}

static const char *section_help(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if (strlen(sections[i].name) == len && strncmp(sections[i].name, name, len) == 0)
			return sections[i].help;
	}
	return "";
}

void config_print_example(FILE *out)
{
	size_t previous_len = 0;
	const char *previous = "";

	fprintf(out,
	        "# couponsd.yaml: the complete configuration of couponsd, every key at its default.\n"
	        "# Generated from the key table (src/core/config_keys.c); docs/configuration.md explains "
	        "each key.\n"
	        "#\n"
	        "# Unknown keys are errors. Durations: 250ms, 5s, 1m, 24h. Sizes: 512 (bytes), 4k, 1m, 1g.\n"
	        "# Keys marked \"needs a restart\" keep their running value on reload (SIGHUP).\n"
	        "# Check a file with: couponsd -t -c FILE\n");
	for (int i = 0; i < config_keys_total; i++) {
		const config_key_t *key = &config_keys[i];
		size_t len = section_length(key->name);

		if (len != previous_len || strncmp(key->name, previous, len) != 0) {
			fprintf(out, "\n# %s\n%.*s:\n", section_help(key->name, len), (int)len, key->name);
			previous = key->name;
			previous_len = len;
		}
		fprintf(out, "  # %s%s\n", key->help, key->reloadable ? "" : " (needs a restart)");
		fprintf(out, "  %s: %s\n", key->name + len + 1, key->default_text);
	}
}
