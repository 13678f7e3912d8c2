/* SPDX-License-Identifier: BSD-2-Clause */
/* test_admission.c: TAP unit tests of admission control's partition choice and lag bookkeeping. */
#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/admission.h"
#include "core/config.h"
#include "http/http_router.h"
#include "tap.h"

static const int partition_counts[] = {1, 2, 3, 8, 12, 64, 1000, 1024};

/* The partitioner the producer really uses, asked directly: no topic handle is needed with a key. */
static void test_against_librdkafka(void)
{
	int mismatches = 0, checked = 0;
	char key[32];

	for (long long id = 1; id <= 20000; id++) {
		int len =
		    snprintf(key, sizeof(key), "%lld", id * 7919 % 1000003 + (id > 10000 ? 4294967296LL : 0));

		for (size_t i = 0; i < sizeof(partition_counts) / sizeof(partition_counts[0]); i++) {
			int n = partition_counts[i];
			int32_t want =
			    rd_kafka_msg_partitioner_murmur2_random(NULL, key, (size_t)len, n, NULL, NULL);

			checked++;
			if (admission_partition(key, (size_t)len, n) != want && mismatches++ < 5)
				diag("key %s, %d partitions: ours %d, librdkafka %d", key, n,
				     admission_partition(key, (size_t)len, n), want);
		}
	}
	ok(mismatches == 0,
	   "the coupon id partition agrees with librdkafka's murmur2_random (%d keys x counts)", checked);
}

/* Keys of every length and byte value (the tail of murmur2 differs by length mod 4). */
static void test_binary_keys(void)
{
	unsigned char key[64];
	unsigned seed = 12345;
	int mismatches = 0;

	for (int round = 0; round < 4000; round++) {
		size_t len = 1 + (size_t)round % sizeof(key);

		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			key[i] = (unsigned char)(seed >> 16);
		}
		if (admission_partition(key, len, 1024) !=
		    rd_kafka_msg_partitioner_murmur2_random(NULL, key, len, 1024, NULL, NULL))
			mismatches++;
	}
	is_int(mismatches, 0, "binary keys of 1..64 bytes agree with librdkafka");
}

/* The Java client's vectors (and tests/lib/harness.py's port, which gives the same). */
static void test_vectors(void)
{
	is_int(admission_murmur2("kafka", 5), 0xd067cf64,
	       "murmur2(\"kafka\") is the Java client's 0xd067cf64");
	is_int(admission_murmur2("", 0), 0x106e08d9, "murmur2 of the empty key");
	is_int(admission_murmur2("42", 2), 0x18e59c6c, "murmur2(\"42\")");
	is_int(admission_coupon_partition(987654321, 12), 11, "coupon 987654321 of 12 partitions is in 11");
	is_int(admission_coupon_partition(1, 8), 7, "coupon 1 of 8 partitions is in 7");
	is_int(admission_coupon_partition(0, 8), -1, "no partition for coupon id 0");
	is_int(admission_coupon_partition(INT64_MAX, 2), 1, "coupon INT64_MAX of 2 partitions is in 1");
}

static config_t *config_with(const char *yaml)
{
	config_errors_t errs = {0};
	config_t *cfg = config_load_buffer("t.yaml", yaml, strlen(yaml), &errs);

	for (int i = 0; i < errs.count; i++)
		diag("config error: %s", errs.items[i]);
	config_errors_clear(&errs);
	return cfg;
}

static void test_pending(shm_t *shm)
{
	config_t *cfg = config_with("kafka: {partitions: 4}\n");

	if (!ok(cfg != NULL, "a configuration with 4 partitions loads"))
		return;
	is_int(admission_pending(shm, cfg, 1), -1, "no consumer has reported: unknown, not limited");
	admission_start(shm, 1, 100, 100);
	admission_owner(shm, 1, 1);
	is_int(admission_pending(shm, cfg, 1), 0, "started at the log end: nothing pending");
	admission_delivered(shm, 1, 104);
	admission_delivered(shm, 1, 102); /* reports arrive out of order across workers */
	is_int(admission_pending(shm, cfg, 1), 5, "offsets 100..104 delivered: 5 pending");
	admission_decided(shm, 1, 103);
	is_int(admission_pending(shm, cfg, 1), 2, "decided up to 103: 2 pending");
	admission_start(shm, 1, 100, -1); /* a restarted consumer replays from the committed offset */
	is_int(admission_pending(shm, cfg, 1), 5,
	       "a replay from the committed offset counts the replayed again");
	admission_decided(shm, 1, 105);
	is_int(admission_pending(shm, cfg, 1), 0, "the replay done: nothing pending, no drift");
	admission_owner(shm, 1, 0);
	is_int(admission_pending(shm, cfg, 1), -1, "owned by another host: not limited");
	is_int(admission_pending(shm, cfg, 4), -1, "a partition beyond kafka.partitions: not limited");
	is_int(admission_pending(shm, cfg, -1), -1, "partition -1: not limited");
	config_free(cfg);
	cfg = config_with("kafka: {partitions: 4, owned_partitions: \"2-3\"}\n");
	admission_owner(shm, 1, 1);
	is_int(cfg != NULL ? admission_pending(shm, cfg, 1) : 0, -1,
	       "a partition kafka.owned_partitions leaves to other hosts: not limited");
	config_free(cfg);
}

static void test_resync(shm_t *shm)
{
	config_t *cfg = config_with("kafka: {partitions: 4}\n");
	int64_t seen = -1;

	if (cfg == NULL)
		return;
	admission_start(shm, 2, 0, 0);
	admission_owner(shm, 2, 1);
	admission_resync(shm, 2, 50, &seen);
	is_int(admission_pending(shm, cfg, 2), 50,
	       "other producers' events count once the watermark shows them");
	admission_decided(shm, 2, 50);
	admission_delivered(shm, 2, 9999); /* a log end from a cluster that was replaced */
	admission_resync(shm, 2, 50, &seen);
	is_int(admission_pending(shm, cfg, 2), 9950, "a log end above the watermark is kept one period");
	admission_delivered(shm, 2, 10000);
	admission_resync(shm, 2, 50, &seen);
	is_int(admission_pending(shm, cfg, 2), 9951,
	       "one that moved meanwhile is kept again (a fresh delivery)");
	admission_resync(shm, 2, 50, &seen);
	is_int(admission_pending(shm, cfg, 2), 0,
	       "one that stood still for a period while caught up is lowered");
	admission_delivered(shm, 2, 9998);
	admission_resync(shm, 2, 70, &seen);
	admission_resync(shm, 2, 70, &seen);
	is_int(admission_pending(shm, cfg, 2), 9949,
	       "while messages below the watermark are undecided: never lowered");
	config_free(cfg);
}

static void check_param(const char *query, int want_rc, const char *want)
{
	char *out = NULL;
	int rc = http_router_query_param(query, "userId", &out);

	ok(rc == want_rc &&
	       ((want == NULL && out == NULL) || (want != NULL && out != NULL && strcmp(out, want) == 0)),
	   "query \"%s\": %d %s", query != NULL ? query : "(null)", want_rc, want != NULL ? want : "(none)");
	free(out);
}

static void test_query_param(void)
{
	check_param("userId=7", 1, "7");
	check_param("a=1&userId=7&b=2", 1, "7");
	check_param(NULL, 0, NULL);
	check_param("", 0, NULL);
	check_param("xuserId=7", 0, NULL);
	check_param("userId", 0, NULL);
	check_param("userId=", 1, "");
	check_param("userId=%31", 1, "1");
	check_param("userId=a+b%2B", 1, "a b+");
	check_param("userId=1&userId=1", -1, NULL);
	check_param("userId=1%00", -1, NULL);
	check_param("userId=%zz", -1, NULL);
	check_param("userId=%4", -1, NULL);
	check_param("userId=1%", -1, NULL);
	check_param("userId=%C0%B1", 1, "\xc0\xb1");
}

int main(void)
{
	shm_t *shm = calloc(1, sizeof(*shm));

	test_against_librdkafka();
	test_binary_keys();
	test_vectors();
	if (ok(shm != NULL, "room for a shared-memory image")) {
		test_pending(shm);
		test_resync(shm);
	}
	test_query_param();
	free(shm);
	return done_testing();
}
