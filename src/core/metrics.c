/* SPDX-License-Identifier: BSD-2-Clause */
/* metrics.c: daemon-wide counters in memory the master shares, rendered as Prometheus text. */
#include "core/metrics.h"

#include "core/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define ROUTES METRICS_ROUTES

static const int status_codes[] = {200, 201, 202, 400, 401, 404, 405, 409, 413, 429, 431, 500, 503, 0};
#define STATUSES (sizeof(status_codes) / sizeof(status_codes[0]))

/* Upper bounds in microseconds; the last bucket is +Inf. */
static const int64_t bucket_us[METRICS_BUCKETS - 1] = {100,   250,   500,    1000,   2500,    5000,   10000,
                                                       25000, 50000, 100000, 250000, 1000000, 5000000};

typedef struct {
	_Atomic uint64_t counters[M_COUNTERS];
	_Atomic uint64_t requests[ROUTES][STATUSES];
	_Atomic uint64_t buckets[H_HISTOGRAMS][METRICS_BUCKETS];
	_Atomic uint64_t sum_us[H_HISTOGRAMS];
	_Atomic uint64_t count[H_HISTOGRAMS];
} metrics_slot_t;

typedef struct {
	int slots;
	_Atomic int64_t lag[METRICS_PARTITIONS];   /* -1: no consumer here reports this partition */
	_Atomic int32_t owner[METRICS_PARTITIONS]; /* -1: unknown, 0: standing by, 1: owned here */
	_Atomic uint64_t takeovers[METRICS_PARTITIONS];
	char node[METRICS_NODE]; /* written once, before any fork */
	metrics_slot_t retired;  /* processes that are gone */
	metrics_slot_t slot[];
} metrics_region_t;

/*
 * Process identity, not configuration: where this process counts. Set once
 * after fork; a reload does not change which slot a process owns.
 */
static metrics_region_t *region;
static size_t region_size;
static metrics_slot_t *mine;

int metrics_create(int slots)
{
	region_size = sizeof(metrics_region_t) + (size_t)slots * sizeof(metrics_slot_t);
	region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		log_error("mmap of %zu bytes for metrics failed: %s", region_size, strerror(errno));
		region = NULL;
		return -1;
	}
	region->slots = slots;
	for (int p = 0; p < METRICS_PARTITIONS; p++) {
		atomic_store(&region->lag[p], -1);
		atomic_store(&region->owner[p], -1);
	}
	return 0;
}

void metrics_destroy(void)
{
	if (region != NULL && munmap(region, region_size) != 0)
		log_warn("munmap of the metrics region failed: %s", strerror(errno));
	region = NULL;
	mine = NULL;
}

int metrics_enabled(void)
{
	return region != NULL;
}

void metrics_attach(int slot)
{
	mine = region != NULL && slot >= 0 && slot < region->slots ? &region->slot[slot] : NULL;
}

static void fold(_Atomic uint64_t *into, _Atomic uint64_t *from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_fetch_add_explicit(&into[i],
		                          atomic_exchange_explicit(&from[i], 0, memory_order_relaxed),
		                          memory_order_relaxed);
}

void metrics_retire(int slot)
{
	metrics_slot_t *s;

	if (region == NULL || slot < 0 || slot >= region->slots)
		return;
	s = &region->slot[slot];
	fold(region->retired.counters, s->counters, M_COUNTERS);
	fold(&region->retired.requests[0][0], &s->requests[0][0], (size_t)ROUTES * STATUSES);
	fold(&region->retired.buckets[0][0], &s->buckets[0][0], (size_t)H_HISTOGRAMS * METRICS_BUCKETS);
	fold(region->retired.sum_us, s->sum_us, H_HISTOGRAMS);
	fold(region->retired.count, s->count, H_HISTOGRAMS);
}

void metrics_add(metric_t m, uint64_t n)
{
	if (mine != NULL)
		atomic_fetch_add_explicit(&mine->counters[m], n, memory_order_relaxed);
}

void metrics_inc(metric_t m)
{
	metrics_add(m, 1);
}

void metrics_observe(histogram_t h, int64_t micros)
{
	int b = 0;

	if (mine == NULL)
		return;
	while (b < METRICS_BUCKETS - 1 && micros > bucket_us[b])
		b++;
	atomic_fetch_add_explicit(&mine->buckets[h][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mine->sum_us[h], (uint64_t)(micros > 0 ? micros : 0),
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&mine->count[h], 1, memory_order_relaxed);
}

void metrics_request(int route, int status, int64_t micros)
{
	size_t s = 0;

	if (mine == NULL)
		return;
	while (status_codes[s] != 0 && status_codes[s] != status)
		s++;
	atomic_fetch_add_explicit(&mine->requests[route][s], 1, memory_order_relaxed);
	metrics_observe(H_HTTP_REQUEST, micros);
}

void metrics_set_node(const char *node)
{
	if (region != NULL)
		snprintf(region->node, sizeof(region->node), "%s", node);
}

void metrics_set_owner(int partition, int owned)
{
	if (region != NULL && partition >= 0 && partition < METRICS_PARTITIONS)
		atomic_store_explicit(&region->owner[partition], owned < 0 ? -1 : owned > 0,
		                      memory_order_relaxed);
}

void metrics_takeover(int partition)
{
	if (region != NULL && partition >= 0 && partition < METRICS_PARTITIONS)
		atomic_fetch_add_explicit(&region->takeovers[partition], 1, memory_order_relaxed);
}

void metrics_set_lag(int partition, int64_t lag)
{
	if (region != NULL && partition >= 0 && partition < METRICS_PARTITIONS)
		atomic_store_explicit(&region->lag[partition], lag, memory_order_relaxed);
}

/* ---- rendering: the sum over every slot and the retired totals ---- */

static const char *route_names[ROUTES] = {"none",
                                          "healthz",
                                          "readyz",
                                          "issue",
                                          "coupon",
                                          "request",
                                          "request_events",
                                          "user_coupons",
                                          "admin_coupons",
                                          "metrics",
                                          "admin_coupon",
                                          "admin_coupon_events",
                                          "admin_coupon_history"};

static void sum_into(metrics_slot_t *total, metrics_slot_t *s)
{
	_Atomic uint64_t *dst = (_Atomic uint64_t *)total, *src = (_Atomic uint64_t *)s;

	/* The slot is nothing but counters: add it element by element. */
	for (size_t i = 0; i < sizeof(metrics_slot_t) / sizeof(uint64_t); i++)
		atomic_fetch_add_explicit(&dst[i], atomic_load_explicit(&src[i], memory_order_relaxed),
		                          memory_order_relaxed);
}

static int render_counter(struct evbuffer *out, const char *name, const char *help, const char *label,
                          const char *const *values, const uint64_t *counts, int n)
{
	int rc = evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);

	for (int i = 0; rc >= 0 && i < n; i++) {
		if (label == NULL)
			rc = evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)counts[i]);
		else
			rc = evbuffer_add_printf(out, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
			                         (unsigned long long)counts[i]);
	}
	return rc < 0 ? -1 : 0;
}

static int render_histogram(struct evbuffer *out, const char *name, const char *help, const metrics_slot_t *t,
                            histogram_t h)
{
	uint64_t cumulative = 0;
	int rc = evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

	for (int b = 0; rc >= 0 && b < METRICS_BUCKETS; b++) {
		cumulative += atomic_load(&t->buckets[h][b]);
		if (b < METRICS_BUCKETS - 1)
			rc = evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name,
			                         (double)bucket_us[b] / 1e6, (unsigned long long)cumulative);
		else
			rc = evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name,
			                         (unsigned long long)cumulative);
	}
	if (rc >= 0)
		rc = evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %llu\n", name,
		                         (double)atomic_load(&t->sum_us[h]) / 1e6, name,
		                         (unsigned long long)atomic_load(&t->count[h]));
	return rc < 0 ? -1 : 0;
}

static int render_requests(struct evbuffer *out, const metrics_slot_t *t)
{
	int rc = evbuffer_add_printf(
	    out, "# HELP couponsd_http_requests_total HTTP requests answered, by route and "
	         "status.\n# TYPE couponsd_http_requests_total counter\n");

	for (int r = 1; rc >= 0 && r < ROUTES; r++) {
		for (size_t s = 0; rc >= 0 && s < STATUSES; s++) {
			uint64_t n = atomic_load(&t->requests[r][s]);

			if (n == 0)
				continue;
			if (status_codes[s] != 0)
				rc = evbuffer_add_printf(
				    out, "couponsd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
				    route_names[r], status_codes[s], (unsigned long long)n);
			else
				rc = evbuffer_add_printf(
				    out, "couponsd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
				    route_names[r], (unsigned long long)n);
		}
	}
	/* Unknown paths (404) are counted under route "none". */
	for (size_t s = 0; rc >= 0 && s < STATUSES; s++) {
		uint64_t n = atomic_load(&t->requests[0][s]);

		if (n > 0)
			rc = evbuffer_add_printf(
			    out, "couponsd_http_requests_total{route=\"none\",status=\"%d\"} %llu\n",
			    status_codes[s], (unsigned long long)n);
	}
	return rc < 0 ? -1 : 0;
}

static int render_lag(struct evbuffer *out)
{
	int rc = evbuffer_add_printf(
	    out, "# HELP couponsd_consumer_lag Messages in the partition not yet decided by "
	         "this daemon's consumer.\n# TYPE couponsd_consumer_lag gauge\n");

	for (int p = 0; rc >= 0 && p < METRICS_PARTITIONS; p++) {
		int64_t lag = atomic_load(&region->lag[p]);

		if (lag >= 0)
			rc = evbuffer_add_printf(out, "couponsd_consumer_lag{partition=\"%d\"} %lld\n", p,
			                         (long long)lag);
	}
	return rc < 0 ? -1 : 0;
}

/* Which partitions this host decides (1) or stands by for (0), and how often each was taken over here. */
static int render_owners(struct evbuffer *out)
{
	int rc = evbuffer_add_printf(
	    out, "# HELP couponsd_partition_owner 1 when this host's consumer owns the partition, 0 while it "
	         "stands by.\n# TYPE couponsd_partition_owner gauge\n");

	for (int p = 0; rc >= 0 && p < METRICS_PARTITIONS; p++) {
		int32_t owned = atomic_load(&region->owner[p]);

		if (owned >= 0)
			rc = evbuffer_add_printf(
			    out, "couponsd_partition_owner{partition=\"%d\",node=\"%s\"} %d\n", p,
			    region->node, (int)owned);
	}
	if (rc >= 0)
		rc =
		    evbuffer_add_printf(out, "# HELP couponsd_partition_takeovers_total Partitions this host "
		                             "took over from a standby state.\n# TYPE "
		                             "couponsd_partition_takeovers_total counter\n");
	for (int p = 0; rc >= 0 && p < METRICS_PARTITIONS; p++) {
		if (atomic_load(&region->owner[p]) >= 0)
			rc = evbuffer_add_printf(
			    out, "couponsd_partition_takeovers_total{partition=\"%d\"} %llu\n", p,
			    (unsigned long long)atomic_load(&region->takeovers[p]));
	}
	return rc < 0 ? -1 : 0;
}

static uint64_t total(const metrics_slot_t *t, metric_t m)
{
	return atomic_load(&t->counters[m]);
}

static int render_one(struct evbuffer *out, const char *name, const char *help, uint64_t value)
{
	return render_counter(out, name, help, NULL, NULL, &value, 1);
}

static int render_counters(struct evbuffer *out, const metrics_slot_t *t)
{
	static const char *reasons[] = {"SOLD_OUT", "ALREADY_ISSUED", "COUPON_NOT_FOUND", "NOT_OPEN"};
	static const char *roles[] = {"embedded_kafka", "http", "consumer"};
	static const char *results[] = {"ok", "refused"};
	static const char *lanes[] = {"fast", "slow"};
	uint64_t rejected[4], restarts[3], reloads[2], moves[2];
	int rc = 0;

	for (int i = 0; i < 4; i++)
		rejected[i] = total(t, (metric_t)(M_REJECTED_SOLD_OUT + i));
	for (int i = 0; i < 3; i++)
		restarts[i] = total(t, (metric_t)(M_RESTARTS_KAFKA + i));
	moves[0] = total(t, M_KAFKA_LANE_TO_FAST);
	moves[1] = total(t, M_KAFKA_LANE_TO_SLOW);
	reloads[0] = total(t, M_RELOADS_OK);
	reloads[1] = total(t, M_RELOADS_REFUSED);
	rc |= render_one(out, "couponsd_kafka_produce_errors_total",
	                 "Issue events Kafka did not take (503 or 429).", total(t, M_KAFKA_PRODUCE_ERRORS));
	rc |=
	    render_one(out, "couponsd_kafka_produce_held_total",
	               "Issue events that waited in an HTTP worker for their partition's earlier deliveries.",
	               total(t, M_KAFKA_PRODUCE_HELD));
	rc |= render_one(
	    out, "couponsd_kafka_deliveries_inferred_total",
	    "Kafka delivery reports of success without an offset (librdkafka's inference, no broker's "
	    "acknowledgement), counted as failed.",
	    total(t, M_KAFKA_DELIVERIES_INFERRED));
	rc |= render_counter(out, "couponsd_kafka_produce_lane_moves_total",
	                     "Partitions an HTTP worker moved to its fast or slow producer by their rate.",
	                     "to", lanes, moves, 2);
	rc |= render_one(out, "couponsd_issued_total", "Requests decided ISSUED.", total(t, M_ISSUED));
	rc |= render_counter(out, "couponsd_rejected_total", "Requests decided REJECTED, by reason.",
	                     "reason", reasons, rejected, 4);
	rc |= render_one(out, "couponsd_compensations_total", "Redis reservations given back.",
	                 total(t, M_COMPENSATIONS));
	rc |= render_one(out, "couponsd_dlq_messages_total", "Messages sent to the dead-letter topic.",
	                 total(t, M_DLQ_MESSAGES));
	rc |= render_one(out, "couponsd_dlq_dropped_total",
	                 "Dead letters Kafka can never take (too large, no such topic), skipped.",
	                 total(t, M_DLQ_DROPPED));
	rc |= render_one(out, "couponsd_redis_bad_values_total",
	                 "Reservation records in Redis that were not numbers, treated as missing.",
	                 total(t, M_REDIS_BAD_VALUES));
	rc |= render_one(out, "couponsd_redis_errors_total", "Redis commands that failed or timed out.",
	                 total(t, M_REDIS_ERRORS));
	rc |= render_one(out, "couponsd_postgres_errors_total", "PostgreSQL statements that failed.",
	                 total(t, M_POSTGRES_ERRORS));
	rc |= render_one(out, "couponsd_offset_gaps_total",
	                 "Offset jumps seen by consumers (messages Kafka lost).", total(t, M_OFFSET_GAPS));
	rc |= render_one(out, "couponsd_messages_lost_total", "Messages missing in those offset jumps.",
	                 total(t, M_MESSAGES_LOST));
	rc |= render_one(out, "couponsd_admission_rejects_total",
	                 "Requests answered 429 because a partition was too far behind.",
	                 total(t, M_ADMISSION_REJECTS));
	rc |= render_counter(out, "couponsd_worker_restarts_total",
	                     "Children restarted after an unexpected exit.", "role", roles, restarts, 3);
	rc |= render_counter(out, "couponsd_reloads_total", "Reloads, by outcome.", "result", results,
	                     reloads, 2);
	return rc;
}

int metrics_render(struct evbuffer *out)
{
	metrics_slot_t sum;

	if (region == NULL)
		return -1;
	memset(&sum, 0, sizeof(sum));
	sum_into(&sum, &region->retired);
	for (int i = 0; i < region->slots; i++)
		sum_into(&sum, &region->slot[i]);
	if (render_requests(out, &sum) != 0 ||
	    render_histogram(out, "couponsd_http_request_duration_seconds",
	                     "Time from the request being read to its answer.", &sum, H_HTTP_REQUEST) != 0 ||
	    render_histogram(out, "couponsd_kafka_produce_duration_seconds",
	                     "Time from produce to delivery report of issue events.", &sum,
	                     H_KAFKA_PRODUCE) != 0 ||
	    render_counters(out, &sum) != 0 || render_lag(out) != 0 || render_owners(out) != 0)
		return -1;
	return 0;
}
