/* SPDX-License-Identifier: BSD-2-Clause */
/* item.h: one message of a consumer batch and all that is learned about it; every stage reads it in place. */
#ifndef COUPONSD_ITEM_H
#define COUPONSD_ITEM_H

#include "core/admin_event.h"
#include "core/issue_event.h"

#include <librdkafka/rdkafka.h>

/*
 * What the gate's reserve script said about one request. A request's
 * reservation key records the first outcome, so a replayed event gets the
 * same answer and stock is decremented at most once per request
 * (docs/data.md).
 */
typedef enum {
	GATE_PENDING,          /* not asked yet, or the answer was lost with the connection */
	GATE_RESERVED,         /* 0: reserved by this call (a fresh DECR) */
	GATE_RESERVED_EARLIER, /* 1: reserved by an earlier run for the same request */
	GATE_SOLD_OUT,         /* -1: no stock, now or recorded earlier */
	GATE_NO_STOCK,         /* -2: the stock key is missing: load it from PostgreSQL, then ask again */
	GATE_RELEASED_EARLIER, /* -3: reserved earlier, then given back by compensation */
} gate_outcome_t;

/*
 * Where the message's result (or dead letter) stands on its way to Kafka.
 * The results producer's delivery report writes it, from the consumer's own
 * thread (inside results_serve), so it needs no lock. DROPPED: a dead letter
 * Kafka can never take (results.c), skipped so the partition goes on.
 */
typedef enum {
	DELIVERY_NONE,
	DELIVERY_IN_FLIGHT,
	DELIVERY_DONE,
	DELIVERY_FAILED,
	DELIVERY_DROPPED
} item_delivery_t;

/*
 * The gate (gate.c), the store (store.c, decide.c) and the results
 * (results.c) each read and write the fields of their stage here, so a
 * retried batch resumes each item where it stopped.
 */
typedef struct {
	rd_kafka_message_t *msg;
	request_status_t status; /* the event and, once decided, the decision */
	char error[160];         /* non-empty: undecodable, it goes to the dead-letter topic */
	gate_outcome_t gate;     /* the gate's answer (the store may turn RESERVED into RESERVED_EARLIER) */
	int decided;             /* status.state and status.reason are final and committed */
	int release;             /* a reservation still to be given back (compensation) */
	int written;             /* the status is in Redis */
	char *json;              /* once decided: status_to_json(), for both Redis and Kafka */
	item_delivery_t delivery;
	admin_event_t *admin; /* an admin change (malloc'ed), always alone in its batch; NULL for a request */
} item_t;

/* A decodable event: the others only go to the dead-letter topic. */
static inline int item_valid(const item_t *it)
{
	return it->error[0] == '\0';
}

/* An item the store decides next: the gate has answered and nothing is decided yet. */
static inline int item_for_store(const item_t *it)
{
	return item_valid(it) && it->admin == NULL && !it->decided && it->gate != GATE_PENDING;
}

#endif
