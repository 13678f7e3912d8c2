/* SPDX-License-Identifier: BSD-2-Clause */
/* config.h: the immutable configuration object and its loader. */
#ifndef COUPONSD_CONFIG_H
#define COUPONSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_PARTITIONS 1024
#define CONFIG_MAX_PASSTHROUGH 64
#define CONFIG_NODE_MAX 63 /* bytes of daemon.node */
#define CONFIG_MAX_KEYS 64 /* room in key_set[]; config_keys.c asserts the table fits */

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR } log_level_t;
typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_JSON } log_format_t;

/* One "name: value" pair handed verbatim to librdkafka. */
typedef struct {
	char *name;
	char *value;
} config_property_t;

/*
 * A whole configuration. Built by config_load() and never modified after:
 * a reload builds a new one and the master swaps it in only when it is whole.
 * Durations are in milliseconds, sizes in bytes.
 */
typedef struct config {
	char *path; /* the file it was read from */

	char *daemon_user; /* "" = do not drop privileges */
	char *daemon_group;
	char *daemon_pid_file;       /* "" = no pid file */
	char *daemon_control_socket; /* "" = no control socket */
	int64_t daemon_shutdown_timeout;
	int64_t daemon_stop_drain; /* 0 = stop accepting at once */
	int64_t daemon_worker_timeout;
	char *daemon_node; /* "" in the file is resolved to the host name */
	int64_t daemon_takeover_poll;

	log_level_t log_level;
	log_format_t log_format;
	char *log_file; /* "stderr", "syslog" or a path */

	char *http_listen[CONFIG_MAX_LISTEN]; /* "host:port" */
	int http_listen_count;
	int http_workers; /* "auto" resolved to the number of CPUs */
	int64_t http_max_body;
	int64_t http_read_timeout;
	int http_max_connections;

	char *admin_token;

	char *kafka_brokers; /* "embedded" or a bootstrap list */
	char *kafka_topic;
	char *kafka_results_topic;
	char *kafka_dlq_topic;
	char *kafka_group_id;
	int kafka_partitions;
	int kafka_owned[CONFIG_MAX_PARTITIONS]; /* sorted, distinct partition numbers */
	int kafka_owned_count;
	int kafka_owned_all; /* written as "all" (or defaulted): follows kafka.partitions */
	int64_t kafka_produce_timeout;
	config_property_t kafka_producer[CONFIG_MAX_PASSTHROUGH];
	int kafka_producer_count;
	config_property_t kafka_consumer[CONFIG_MAX_PASSTHROUGH];
	int kafka_consumer_count;

	char *redis_host;
	int redis_port;
	char *redis_password;
	int redis_db;
	char *redis_key_prefix;
	int64_t redis_timeout;

	char *postgres_conninfo;
	int postgres_auto_migrate;
	int64_t postgres_timeout;
	int64_t postgres_dead_session_timeout;

	int issue_batch_size;
	int64_t issue_batch_linger;
	int64_t issue_result_ttl;
	int64_t issue_retry_initial;
	int64_t issue_retry_max;
	int issue_max_pending;
	int64_t issue_stock_check_interval;

	int metrics_enabled;

	/* key_set[i] != 0 when key i was written in the file (see config_key_was_set). */
	unsigned char key_set[CONFIG_MAX_KEYS];
} config_t;

/* Errors found while loading, each already formatted as "file:line:column: text". */
typedef struct {
	char **items;
	int count;
	int capacity;
	int lost; /* errors that could not be recorded for lack of memory; they still fail a load */
} config_errors_t;

/*
 * Reads and validates a YAML file. Returns a new config, or NULL with every
 * error found appended to errs (loading does not stop at the first error).
 */
config_t *config_load(const char *path, config_errors_t *errs);

/* Parses YAML held in memory; name is used in error messages. */
config_t *config_load_buffer(const char *name, const char *text, size_t len, config_errors_t *errs);

/*
 * A best-effort read of one string key (such as "daemon.control_socket") from
 * a file that may be invalid elsewhere, so that `-s reload` can find the
 * running master even when the new file is broken. Returns a malloc'ed string,
 * the key's default when the file does not set it, or NULL when unreadable.
 */
char *config_peek_string(const char *path, const char *key);

void config_free(config_t *cfg);

/*
 * Appends one line per key that differs between old and new but cannot be
 * changed without a restart ("daemon.user: changing it needs a restart").
 */
void config_restart_keys(const config_t *old, const config_t *new_cfg, config_errors_t *out);

/*
 * What a reload does with them: config_restart_keys()' lines go to notes, and
 * new_cfg (not yet in use) gets old's value of each such key, so that the new
 * generation runs with the running value the note promises. Returns -1 with
 * errs filled when that cannot be done (out of memory; owned partitions that
 * need the new kafka.partitions): the reload is then refused.
 */
int config_keep_restart_keys(const config_t *old, config_t *new_cfg, config_errors_t *notes,
                             config_errors_t *errs);

/* Prints the key table (name, type, default, reloadable, help). */
void config_print_keys(FILE *out, int markdown);

/*
 * Prints a complete, commented example file built from the key table (every
 * key at its default, its help text as the comment). etc/couponsd.yaml is
 * this output; the unit tests fail when the two drift apart.
 */
void config_print_example(FILE *out);

/* Number of keys in the table and the name of key i, for tests. */
int config_key_count(void);
const char *config_key_name(int i);

/* Whether key i was written in the file that produced cfg (not defaulted). */
int config_key_was_set(const config_t *cfg, int i);

void config_errors_add(config_errors_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void config_errors_clear(config_errors_t *errs);

/* Duration and size syntax shared with the tests: "250ms", "5s", "1m", "24h"; "4k", "1m", "1g". */
int config_parse_duration(const char *text, int64_t *ms);
int config_parse_size(const char *text, int64_t *bytes);

#endif
