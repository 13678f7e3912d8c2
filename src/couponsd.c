/* SPDX-License-Identifier: BSD-2-Clause */
/* couponsd.c: the command line: run the master, test a configuration, or talk to a running master. */
#include "core/config.h"
#include "master/control.h"
#include "core/log.h"
#include "master/master.h"
#include "core/migrate.h"
#include "core/proctitle.h"

#include <event2/event.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/couponsd.yaml"
/* How long `-s reload` waits: new workers must be ready within daemon.worker_timeout anyway. */
#define CONTROL_TIMEOUT_MS (10 * 60 * 1000)

typedef struct {
	const char *config_path;
	const char *signal_name;
	int test_only;
	int migrate;
	int list_keys;
	int markdown;
} options_t;

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: couponsd [-c FILE]               run in the foreground\n"
	        "       couponsd -t [-c FILE]            test the configuration and exit\n"
	        "       couponsd --migrate [-c FILE]     apply pending PostgreSQL migrations and exit\n"
	        "       couponsd -s reload|stop|reopen [-c FILE]\n"
	        "                                        ask the running master (over its control socket)\n"
	        "       couponsd -V                      print versions and exit\n"
	        "       couponsd --list-keys [--markdown] print the configuration keys and exit\n"
	        "default FILE: %s\n",
	        DEFAULT_CONFIG);
}

static void print_versions(void)
{
	int pq = PQlibVersion();

	printf("couponsd %s\n", PACKAGE_VERSION);
	printf("librdkafka %s\n", rd_kafka_version_str());
	printf("libevent %s\n", event_get_version());
	printf("jansson %s\n", jansson_version_str());
	printf("hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
	printf("libpq %d.%d\n", pq / 10000, pq % 10000);
	printf("libyaml %s\n", yaml_get_version_string());
}

static void on_libevent_log(int severity, const char *msg)
{
	log_msg(severity >= EVENT_LOG_ERR    ? LOG_LEVEL_ERROR
	        : severity == EVENT_LOG_WARN ? LOG_LEVEL_WARN
	        : severity == EVENT_LOG_MSG  ? LOG_LEVEL_INFO
	                                     : LOG_LEVEL_DEBUG,
	        "libevent: %s", msg);
}

/* Returns -1 to go on running, or an exit code. */
static int parse_options(int argc, char **argv, options_t *o)
{
	static const struct option longs[] = {{"list-keys", no_argument, NULL, 'L'},
	                                      {"markdown", no_argument, NULL, 'M'},
	                                      {"migrate", no_argument, NULL, 'm'},
	                                      {"help", no_argument, NULL, 'h'},
	                                      {NULL, 0, NULL, 0}};
	int ch;

	memset(o, 0, sizeof(*o));
	o->config_path = DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:ts:Vh", longs, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config_path = optarg;
			break;
		case 't':
			o->test_only = 1;
			break;
		case 's':
			o->signal_name = optarg;
			break;
		case 'V':
			print_versions();
			return 0;
		case 'L':
			o->list_keys = 1;
			break;
		case 'M':
			o->markdown = 1;
			break;
		case 'm':
			o->migrate = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "couponsd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

static int is_control_command(const char *name)
{
#ifdef COUPONSD_FAULTS
	/* Test builds only: Kafka faults for the embedded cluster (src/fault.h). */
	if (strncmp(name, "kafka ", 6) == 0 && name[6] != '\0')
		return 1;
#endif
	return strcmp(name, "reload") == 0 || strcmp(name, "stop") == 0 || strcmp(name, "reopen") == 0;
}

static int send_command(const options_t *o)
{
	char *path;
	int rc;

	if (!is_control_command(o->signal_name)) {
		fprintf(stderr, "couponsd: -s takes reload, stop or reopen, not '%s'\n", o->signal_name);
		return 2;
	}
	/* The new file may be broken: read just the socket path from it, leniently. */
	path = config_peek_string(o->config_path, "daemon.control_socket");
	if (path == NULL || path[0] == '\0') {
		fprintf(stderr, "couponsd: %s names no daemon.control_socket\n", o->config_path);
		free(path);
		return 1;
	}
	rc = control_request(path, o->signal_name, CONTROL_TIMEOUT_MS);
	free(path);
	return rc;
}

/* --migrate: the same migrations the daemon applies at start, for operators who turned that off. */
static int run_migrations(const config_t *cfg)
{
	char err[512];

	if (migrate_conninfo(cfg->postgres_conninfo, err, sizeof(err)) != 0) {
		fprintf(stderr, "couponsd: migration failed: %s\n", err);
		return 1;
	}
	printf("ok\n");
	return 0;
}

static config_t *load_or_report(const char *path)
{
	config_errors_t errs = {0};
	config_t *cfg = config_load(path, &errs);

	for (int i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.items[i]);
	config_errors_clear(&errs);
	return cfg;
}

int main(int argc, char **argv)
{
	options_t o;
	config_t *cfg;
	char *config_path;
	int rc = parse_options(argc, argv, &o);

	if (rc >= 0)
		return rc;
	if (o.list_keys) {
		config_print_keys(stdout, o.markdown);
		return 0;
	}
	if (o.signal_name != NULL)
		return send_command(&o);
	event_set_log_callback(on_libevent_log);
	/* The title overwrites argv, which optarg points into. */
	o.config_path = config_path = strdup(o.config_path);
	if (config_path == NULL)
		return 1;
	if (proctitle_init(argc, argv) != 0)
		fprintf(stderr, "couponsd: cannot set up process titles; ps will show the command line\n");
	cfg = load_or_report(o.config_path);
	if (cfg != NULL && o.migrate) {
		rc = run_migrations(cfg);
		config_free(cfg);
	} else if (cfg == NULL || o.test_only) {
		if (cfg != NULL)
			printf("ok\n");
		rc = cfg != NULL ? 0 : 1;
		config_free(cfg);
	} else if (log_configure(cfg) != 0) {
		config_free(cfg);
		rc = 1;
	} else {
		rc = master_main(cfg, o.config_path);
		log_close();
	}
	free(config_path);
	return rc;
}
