/* SPDX-License-Identifier: BSD-2-Clause */
/* producer.h: the HTTP worker's Kafka producer, driven by the worker's event loop. */
#ifndef COUPONSD_PRODUCER_H
#define COUPONSD_PRODUCER_H

#include "core/config.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	PRODUCE_OK = 0, /* delivery report received: durably in Kafka (acks=all) */
	PRODUCE_FULL,   /* librdkafka's local queue is full: 429 */
	PRODUCE_FAILED, /* no delivery within kafka.produce_timeout, or a permanent error: 503 */
} produce_result_t;

/* The outcome; with PRODUCE_OK also where Kafka put the message (admission control counts it there). */
typedef void (*produce_fn)(produce_result_t result, int partition, int64_t offset, void *arg);
typedef struct producer producer_t;

/*
 * librdkafka signals its main queue through a pipe the event loop watches
 * (rd_kafka_queue_io_event_enable), and a 100 ms timer polls as a safety
 * net, so delivery reports are served inside the loop and nothing blocks it.
 */
producer_t *producer_new(struct event_base *base, const config_t *cfg, const char *bootstrap);

/* Queues one message; fn runs once with the outcome. On PRODUCE_FULL or PRODUCE_FAILED here, fn is not
 * called. */
produce_result_t producer_send(producer_t *p, const char *topic, const char *key, const char *value,
                               size_t len, produce_fn fn, void *arg);

/* Whether at least one broker connection is up (from librdkafka's statistics). */
int producer_ready(const producer_t *p);

/* NULL while the topics agree with the configuration (or Kafka has not said), else why not, in buf. */
const char *producer_topic_problem(const producer_t *p, char *buf, size_t size);

/*
 * Called (once, from the loop) when librdkafka reports a fatal error: the
 * idempotent producer can produce nothing more, ever, so the HTTP worker
 * exits and the master starts a fresh one with a new producer.
 */
typedef void (*producer_fatal_fn)(void *arg);
void producer_on_fatal(producer_t *p, producer_fatal_fn fn, void *arg);

/* Test builds (fault.h, http_kafka_fatal): the after-th message queued from now on is followed by a
 * fabricated fatal error. */
void producer_arm_fatal_fault(producer_t *p, long after);

/* Waits up to timeout_ms for outstanding deliveries, then destroys the handle. */
void producer_free(producer_t *p, int timeout_ms);

#endif
