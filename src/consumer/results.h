/* SPDX-License-Identifier: BSD-2-Clause */
/* results.h: publishing decisions (Redis status, pub/sub, the results topic) and dead letters. */
#ifndef COUPONSD_RESULTS_H
#define COUPONSD_RESULTS_H

#include "consumer/item.h"
#include "core/config.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>

typedef struct results results_t;

/* Called after delivery reports were served (possibly none): see results_in_flight(). */
typedef void (*results_report_fn)(void *arg);

/*
 * The consumer's producer (kafka_conf_producer) for the results and
 * dead-letter topics; NULL on error. Its delivery reports are served from
 * base's loop as they arrive (librdkafka wakes a pipe), then on_report(arg)
 * runs; nothing here ever blocks waiting for Kafka.
 */
results_t *results_new(const config_t *cfg, const char *bootstrap, int partition, struct event_base *base,
                       results_report_fn on_report, void *arg);

/* Abandons whatever is in flight (see results_abandon) and destroys the producer. */
void results_free(results_t *r);

/*
 * For each decided item whose status is not written yet: encodes its JSON
 * once into it->json (for Redis and Kafka alike), then the hash at
 * keys_status() (status, reason, couponId, userId, acceptedAt, decidedAt)
 * with EXPIRE issue.result_ttl, and PUBLISH of the JSON on
 * keys_results_channel(). Pipelined; sets written in each on success. 0 or
 * -1; after an I/O error rc->err is set and the caller reconnects.
 * Implemented in status_write.c.
 */
int results_write_redis(redisContext *rc, const config_t *cfg, item_t *items, int n);

/*
 * Queues the item's it->json (results_write_redis() encoded it) to
 * kafka.results_topic, key = the coupon id; its delivery report sets
 * it->delivery. 0, or -1 (it->delivery untouched).
 */
int results_produce(results_t *r, item_t *it);

/*
 * Queues an item that could not be decoded to kafka.dlq_topic unchanged
 * (key, value and headers), plus the headers error (it->error),
 * source-topic, source-partition and source-offset. 0 or -1.
 */
int results_dead_letter(results_t *r, item_t *it);

/* Serves the delivery reports that have arrived, without blocking, then calls on_report. */
void results_serve(results_t *r);

/* Messages produced and not yet reported. */
int results_in_flight(const results_t *r);

/* Logs (once) how many deliveries failed since the last call; the caller produces them again. */
void results_report_failures(results_t *r);

/*
 * Whether the idempotent producer hit a fatal error (after logging it): it
 * then accepts nothing more, and only a new process (a new producer) helps.
 */
int results_fatal(results_t *r);

/* Test builds (fault.h, consumer_kafka_fatal): a fabricated fatal error, as librdkafka raises one. */
void results_test_fatal(results_t *r);

/* Purges every queued or in-flight message and stops writing delivery states (before they are freed). */
void results_abandon(results_t *r);

/*
 * Writes delivery states again after results_abandon(), for a consumer that
 * owns its partition once more: 0, or -1 while a purged message is still
 * unreported (its state may be freed memory: only a new process is safe).
 */
int results_reattach(results_t *r);

#endif
