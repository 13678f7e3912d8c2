/* SPDX-License-Identifier: BSD-2-Clause */
/* metrics.h: daemon-wide counters in memory the master shares, rendered as Prometheus text. */
#ifndef COUPONSD_METRICS_H
#define COUPONSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

typedef enum {
	M_KAFKA_PRODUCE_ERRORS,
	M_KAFKA_PRODUCE_HELD,
	M_KAFKA_LANE_TO_FAST,
	M_KAFKA_LANE_TO_SLOW,
	M_KAFKA_DELIVERIES_INFERRED,
	M_ISSUED,
	M_REJECTED_SOLD_OUT,
	M_REJECTED_ALREADY_ISSUED,
	M_REJECTED_COUPON_NOT_FOUND,
	M_REJECTED_NOT_OPEN,
	M_COMPENSATIONS,
	M_DLQ_MESSAGES,
	M_DLQ_DROPPED,
	M_REDIS_BAD_VALUES,
	M_REDIS_ERRORS,
	M_POSTGRES_ERRORS,
	M_OFFSET_GAPS,
	M_MESSAGES_LOST,
	M_RESTARTS_KAFKA,
	M_RESTARTS_HTTP,
	M_RESTARTS_CONSUMER,
	M_RELOADS_OK,
	M_RELOADS_REFUSED,
	M_ADMISSION_REJECTS,
	M_COUNTERS
} metric_t;

typedef enum { H_HTTP_REQUEST, H_KAFKA_PRODUCE, H_HISTOGRAMS } histogram_t;

#define METRICS_BUCKETS 14
#define METRICS_PARTITIONS 1024
/* Room for daemon.node (CONFIG_NODE_MAX) and its NUL. */
#define METRICS_NODE 64
/* The HTTP routes counted, route_id_t's values (http_api.c checks that they agree). */
#define METRICS_ROUTES 13

/*
 * The master maps the region before any fork. Every process writes only its
 * own slot (the shm slot the master gave it), so no lock exists that a
 * killed worker could leave held; a scrape sums every slot. When a process is
 * reaped the master folds its slot into the "retired" totals, so counters
 * survive worker restarts and reloads.
 */
int metrics_create(int slots);
void metrics_destroy(void);
int metrics_enabled(void);

/* In a child: from now on this process counts into slot. */
void metrics_attach(int slot);
/* In the master, once the process in slot is reaped. */
void metrics_retire(int slot);

void metrics_add(metric_t m, uint64_t n);
void metrics_inc(metric_t m);
void metrics_observe(histogram_t h, int64_t micros);
/* One HTTP answer: route is a route_id_t (metrics stay free of the HTTP headers). */
void metrics_request(int route, int status, int64_t micros);
void metrics_set_lag(int partition, int64_t lag);

/* The master, before any fork: daemon.node, the node label of couponsd_partition_owner. */
void metrics_set_node(const char *node);
/* A consumer: owned 1 (it decides the partition), 0 (it stands by for another host's) or -1 (it stopped). */
void metrics_set_owner(int partition, int owned);
/* A consumer that stood by took the partition over. */
void metrics_takeover(int partition);

/* Appends the Prometheus text exposition of the whole daemon. Returns 0 or -1. */
int metrics_render(struct evbuffer *out);

#endif
