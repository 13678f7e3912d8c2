/* SPDX-License-Identifier: BSD-2-Clause */
/* kproduce.c: a test helper that writes raw messages to a Kafka topic and reads topics back, with headers. */

/*
 * The integration tests are Python with the standard library only, so they
 * have no Kafka client; this is theirs. Two modes:
 *
 *   kproduce -b BROKERS -t TOPIC [-p PARTITION] [-k KEY] [-H NAME=VALUE]... [-n COUNT] (-f FILE | VALUE)
 *       produces the value (the bytes of FILE, "-" for stdin) COUNT times with acks=all and the
 *       murmur2_random partitioner (the daemon's), waits for every delivery report and prints
 *       "PARTITION OFFSET" for each; exits 0 only when all were delivered.
 *
 *   kproduce -C -b BROKERS -t TOPIC [-p PARTITION] [-m MAX] [-w TIMEOUT_MS]
 *       reads the partition (every partition without -p) from the beginning to its end, or MAX
 *       messages, or until TIMEOUT_MS passed, without committing anything, and prints one JSON object
 *       per message: {"partition":P,"offset":O,"key":S|null,"value":S|null,"headers":[[NAME,S|null],...]}.
 *       Strings carry bytes: every byte outside printable ASCII is written \u00XX, so a reader
 *       gets the exact bytes back (Python: s.encode("latin-1")).
 */
#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS 32

typedef struct {
	const char *brokers;
	const char *topic;
	int32_t partition; /* RD_KAFKA_PARTITION_UA when not given */
	const char *key;
	const char *header_names[MAX_HEADERS];
	const char *header_values[MAX_HEADERS];
	int header_count;
	long count;
	long max;
	long timeout_ms;
	int consume;
	char *value;
	size_t value_len;
} options_t;

typedef struct {
	int32_t partition;
	int64_t offset;
	rd_kafka_resp_err_t err;
	int done;
} delivery_t;

static void usage(void)
{
	fprintf(stderr, "usage: kproduce -b BROKERS -t TOPIC [-p PARTITION] [-k KEY] [-H NAME=VALUE]... "
	                "[-n COUNT] (-f FILE | VALUE)\n"
	                "       kproduce -C -b BROKERS -t TOPIC [-p PARTITION] [-m MAX] [-w TIMEOUT_MS]\n");
	exit(2);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the whole of path ("-" for stdin) into a malloc'ed buffer. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 4096, n = 0, got;
	char *buf = malloc(cap);

	if (f == NULL || buf == NULL) {
		fprintf(stderr, "kproduce: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap && (buf = realloc(buf, cap *= 2)) == NULL)
			exit(2);
	}
	if (f != stdin)
		fclose(f);
	*len = n;
	return buf;
}

static void add_header(options_t *o, char *arg)
{
	char *eq = strchr(arg, '=');

	if (eq == NULL || o->header_count == MAX_HEADERS)
		usage();
	*eq = '\0';
	o->header_names[o->header_count] = arg;
	o->header_values[o->header_count++] = eq + 1;
}

static void parse_args(options_t *o, int argc, char **argv)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->partition = RD_KAFKA_PARTITION_UA;
	o->count = 1;
	o->timeout_ms = 15000;
	while ((c = getopt(argc, argv, "Cb:t:p:k:H:n:m:w:f:")) != -1) {
		switch (c) {
		case 'C':
			o->consume = 1;
			break;
		case 'b':
			o->brokers = optarg;
			break;
		case 't':
			o->topic = optarg;
			break;
		case 'p':
			o->partition = (int32_t)atoi(optarg);
			break;
		case 'k':
			o->key = optarg;
			break;
		case 'H':
			add_header(o, optarg);
			break;
		case 'n':
			o->count = atol(optarg);
			break;
		case 'm':
			o->max = atol(optarg);
			break;
		case 'w':
			o->timeout_ms = atol(optarg);
			break;
		case 'f':
			o->value = read_file(optarg, &o->value_len);
			break;
		default:
			usage();
		}
	}
	if (o->brokers == NULL || o->topic == NULL)
		usage();
	if (!o->consume && o->value == NULL) {
		if (optind != argc - 1)
			usage();
		o->value = strdup(argv[optind]);
		o->value_len = strlen(o->value);
	}
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[256];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kproduce: %s=%s: %s\n", name, value, err);
		exit(2);
	}
}

static rd_kafka_t *client_new(const options_t *o, rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char err[512];
	rd_kafka_t *rk;

	set(conf, "bootstrap.servers", o->brokers);
	set(conf, "client.id", "kproduce");
	rk = rd_kafka_new(type, conf, err, sizeof(err));
	if (rk == NULL) {
		fprintf(stderr, "kproduce: %s\n", err);
		exit(2);
	}
	return rk;
}

/* ---- produce ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	delivery_t *d = m->_private;

	d->partition = m->partition;
	d->offset = m->offset;
	d->err = m->err;
	d->done = 1;
}

static rd_kafka_headers_t *make_headers(const options_t *o)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)o->header_count);

	for (int i = 0; i < o->header_count; i++)
		rd_kafka_header_add(h, o->header_names[i], -1, o->header_values[i], -1);
	return h;
}

static int produce_one(rd_kafka_t *rk, const options_t *o, delivery_t *d)
{
	rd_kafka_headers_t *h = make_headers(o);
	rd_kafka_resp_err_t err;

	err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION(o->partition),
	                        RD_KAFKA_V_KEY(o->key, o->key ? strlen(o->key) : 0),
	                        RD_KAFKA_V_VALUE(o->value, o->value_len),
	                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
	                        RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_headers_destroy(h);
		fprintf(stderr, "kproduce: produce: %s\n", rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

static int produce(const options_t *o)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	delivery_t *d = calloc((size_t)o->count, sizeof(*d));
	rd_kafka_t *rk;
	int rc = 0;

	set(conf, "acks", "all");
	set(conf, "enable.idempotence", "true");
	set(conf, "partitioner", "murmur2_random");
	set(conf, "message.timeout.ms", "15000");
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = client_new(o, RD_KAFKA_PRODUCER, conf);
	for (long i = 0; i < o->count && rc == 0; i++)
		rc = produce_one(rk, o, &d[i]);
	rd_kafka_flush(rk, 20000);
	for (long i = 0; i < o->count; i++) {
		if (!d[i].done || d[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "kproduce: message %ld not delivered: %s\n", i,
			        d[i].done ? rd_kafka_err2str(d[i].err) : "no delivery report");
			rc = 1;
		} else {
			printf("%d %lld\n", (int)d[i].partition, (long long)d[i].offset);
		}
	}
	rd_kafka_destroy(rk);
	free(d);
	return rc;
}

/* ---- consume ---- */

static void print_bytes(const void *data, size_t len)
{
	const unsigned char *p = data;

	if (data == NULL) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '"' || p[i] == '\\')
			printf("\\%c", p[i]);
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			printf("\\u%04x", p[i]);
		else
			putchar(p[i]);
	}
	putchar('"');
}

static void print_message(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *h = NULL;
	const char *name;
	const void *value;
	size_t size;

	printf("{\"partition\":%d,\"offset\":%lld,\"key\":", (int)m->partition, (long long)m->offset);
	print_bytes(m->key, m->key_len);
	fputs(",\"value\":", stdout);
	print_bytes(m->payload, m->len);
	fputs(",\"headers\":[", stdout);
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		for (size_t i = 0;
		     rd_kafka_header_get_all(h, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
			fputs(i ? ",[" : "[", stdout);
			print_bytes(name, strlen(name));
			putchar(',');
			print_bytes(value, size);
			putchar(']');
		}
	}
	puts("]}");
	fflush(stdout);
}

static int partition_count(rd_kafka_t *rk, const char *topic)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	int n = -1;

	if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
	    md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
		n = md->topics[0].partition_cnt;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

/* Assigns the partition(s) from the beginning; returns how many were assigned, or -1. */
static int assign_from_beginning(rd_kafka_t *rk, const options_t *o)
{
	int n = o->partition == RD_KAFKA_PARTITION_UA ? partition_count(rk, o->topic) : 1;
	rd_kafka_topic_partition_list_t *parts;
	rd_kafka_resp_err_t err;

	if (n <= 0) {
		fprintf(stderr, "kproduce: no metadata for topic %s\n", o->topic);
		return -1;
	}
	parts = rd_kafka_topic_partition_list_new(n);
	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(parts, o->topic,
		                                  o->partition == RD_KAFKA_PARTITION_UA ? i : o->partition)
		    ->offset = RD_KAFKA_OFFSET_BEGINNING;
	err = rd_kafka_assign(rk, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		fprintf(stderr, "kproduce: assign: %s\n", rd_kafka_err2str(err));
		return -1;
	}
	return n;
}

static int consume(const options_t *o)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char group[64];
	rd_kafka_t *rk;
	int64_t deadline = now_ms() + o->timeout_ms;
	long seen = 0;
	int assigned, at_end = 0;
	char *eof;

	snprintf(group, sizeof(group), "kproduce-%d", (int)getpid());
	set(conf, "group.id", group);
	set(conf, "enable.auto.commit", "false");
	set(conf, "enable.partition.eof", "true");
	set(conf, "isolation.level", "read_uncommitted");
	rk = client_new(o, RD_KAFKA_CONSUMER, conf);
	assigned = assign_from_beginning(rk, o);
	if (assigned < 0) {
		rd_kafka_destroy(rk);
		return 1;
	}
	eof = calloc(1024, 1);
	/* Done when every partition's latest event is its end, MAX messages were read or time is up. */
	while (at_end < assigned && (o->max == 0 || seen < o->max) && now_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
		int p;

		if (m == NULL)
			continue;
		p = m->partition & 1023;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			at_end += !eof[p];
			eof[p] = 1;
		} else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "kproduce: consume: %s\n", rd_kafka_message_errstr(m));
		} else {
			at_end -= eof[p];
			eof[p] = 0;
			print_message(m);
			seen++;
		}
		rd_kafka_message_destroy(m);
	}
	free(eof);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return at_end == assigned || (o->max && seen >= o->max) ? 0 : 1;
}

int main(int argc, char **argv)
{
	options_t o;
	int rc;

	parse_args(&o, argc, argv);
	rc = o.consume ? consume(&o) : produce(&o);
	free(o.value);
	return rc;
}
