/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_queue.h: a librdkafka queue served from a libevent loop, so no process ever blocks on Kafka. */
#ifndef COUPONSD_KAFKA_QUEUE_H
#define COUPONSD_KAFKA_QUEUE_H

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>

typedef struct kafka_queue kafka_queue_t;

/* Serves what the queue holds, without blocking (rd_kafka_poll(), rd_kafka_consumer_poll(), ...). */
typedef void (*kafka_queue_fn)(void *arg);

/*
 * librdkafka writes a byte to a pipe when the queue goes from empty to
 * non-empty (rd_kafka_queue_io_event_enable); the loop watches the pipe and
 * calls serve(arg). Because it writes only on that edge, a wake-up missed
 * while the queue was being drained would leave messages waiting: every
 * safety_ms (0: never) serve runs anyway. Takes ownership of queue, also
 * when it fails (NULL, logged).
 */
kafka_queue_t *kafka_queue_watch(struct event_base *base, rd_kafka_queue_t *queue, int64_t safety_ms,
                                 kafka_queue_fn serve, void *arg);

/* Stops the wake-ups and destroys the queue (before its rd_kafka_t is destroyed). */
void kafka_queue_free(kafka_queue_t *kq);

#endif
