/* SPDX-License-Identifier: BSD-2-Clause */
/* kfeed.c: the benchmark's backlog: distinct issue events written straight into the issue topic. */

/*
 *   kfeed -b BROKERS -t TOPIC -C COUPONS -U USER_BASE -n COUNT
 *
 * Produces COUNT events {"v":1,"requestId":<random uuid>,"couponId":C,"userId":U,"acceptedAt":now}
 * as couponsd's HTTP worker would (key = the coupon id in decimal, murmur2_random, acks=all,
 * idempotent), event k for coupon COUPONS[k % count] and user USER_BASE + k, as fast as librdkafka
 * takes them, waits for every delivery report and prints one JSON line:
 * {"produced":N,"failed":F,"seconds":S}. The consumers then face a backlog, so the rate at which they
 * decide it is their capacity, not the HTTP edge's arrival rate.
 */
#include <librdkafka/rdkafka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
		failed++;
	else
		delivered++;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char err[512];

	if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "kfeed: %s=%s: %s\n", name, value, err);
		exit(2);
	}
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iso_now(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void uuid(char out[37])
{
	uint8_t b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		perror("kfeed: getrandom");
		exit(2);
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
	         b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int main(int argc, char **argv)
{
	const char *brokers = NULL, *topic = NULL, *coupon_list = "1";
	long long coupons[256], user_base = 1;
	long count = 0;
	int ncoupons = 0, ch;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	char err[512];
	double t0;

	while ((ch = getopt(argc, argv, "b:t:C:U:n:")) != -1) {
		switch (ch) {
		case 'b':
			brokers = optarg;
			break;
		case 't':
			topic = optarg;
			break;
		case 'C':
			coupon_list = optarg;
			break;
		case 'U':
			user_base = atoll(optarg);
			break;
		case 'n':
			count = atol(optarg);
			break;
		default:
			fprintf(stderr,
			        "usage: kfeed -b BROKERS -t TOPIC -C COUPONS -U USER_BASE -n COUNT\n");
			return 2;
		}
	}
	for (const char *p = coupon_list; *p != '\0' && ncoupons < 256;) {
		char *end;

		coupons[ncoupons++] = strtoll(p, &end, 10);
		p = *end == ',' ? end + 1 : end;
		if (end == p && *end != '\0')
			break;
	}
	if (brokers == NULL || topic == NULL || count <= 0 || ncoupons == 0) {
		fprintf(stderr, "usage: kfeed -b BROKERS -t TOPIC -C COUPONS -U USER_BASE -n COUNT\n");
		return 2;
	}
	set(conf, "bootstrap.servers", brokers);
	set(conf, "acks", "all");
	set(conf, "enable.idempotence", "true");
	set(conf, "partitioner", "murmur2_random");
	set(conf, "queue.buffering.max.messages", "1000000");
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL) {
		fprintf(stderr, "kfeed: %s\n", err);
		return 2;
	}
	t0 = now_s();
	for (long k = 0; k < count; k++) {
		char value[256], key[24], id[37], at[64];
		long long coupon = coupons[k % ncoupons];
		int len;
		rd_kafka_resp_err_t e;

		uuid(id);
		iso_now(at, sizeof(at));
		len = snprintf(
		    value, sizeof(value),
		    "{\"v\":1,\"requestId\":\"%s\",\"couponId\":%lld,\"userId\":%lld,\"acceptedAt\":\"%s\"}",
		    id, coupon, user_base + k, at);
		snprintf(key, sizeof(key), "%lld", coupon);
		while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
		                              RD_KAFKA_V_VALUE(value, (size_t)len),
		                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
		       RD_KAFKA_RESP_ERR__QUEUE_FULL)
			rd_kafka_poll(rk, 10);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "kfeed: produce: %s\n", rd_kafka_err2str(e));
			failed++;
		}
		rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 60000);
	printf("{\"produced\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n", delivered,
	       failed + rd_kafka_outq_len(rk), now_s() - t0);
	rd_kafka_destroy(rk);
	return failed == 0 && delivered == count ? 0 : 1;
}
