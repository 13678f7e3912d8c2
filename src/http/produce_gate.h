/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * produce_gate.h: flow control per partition in front of the HTTP worker's
 * idempotent producer.
 *
 * librdkafka 2.0.2 (through 2.6) makes no new ProduceRequest for a partition
 * while five of its *messages* await acks (idempotence's window of five
 * requests, compared with a message count), yet its broker thread's wake-up,
 * the first queued message + linger.ms, has passed: it polls with a zero
 * timeout until the answer comes. On real brokers that spin took more CPU
 * than the whole request path (docs/performance.md, round 2e).
 *
 * So a message goes to librdkafka only while fewer than GATE_WINDOW of its
 * partition's messages are unreported; later ones are held here, in order,
 * and all go together when a delivery report brings the count under the
 * window. librdkafka could not have sent them sooner, so nothing waits
 * longer; it just never holds a message it cannot send. A held message's
 * wait counts against its kafka.produce_timeout: when that has passed, held
 * or already handed over late, its request is answered as failed (a late
 * delivery report is then only freed), as librdkafka times out its own.
 *
 * Pure bookkeeping, no librdkafka: the producer (producer.c) embeds a
 * gate_msg_t first in each message and does the sending and the answering.
 */
#ifndef COUPONSD_PRODUCE_GATE_H
#define COUPONSD_PRODUCE_GATE_H

#include <stdint.h>

#define GATE_WINDOW 5

typedef enum {
	GATE_SENT,   /* given to librdkafka at once */
	GATE_HELD,   /* waiting here for the window */
	GATE_LATE,   /* given to librdkafka after a wait; its deadline is still watched */
	GATE_ORPHAN, /* answered as failed at its deadline; its delivery report only frees it */
} gate_state_t;

typedef struct gate_msg {
	struct gate_msg *next, *prev; /* in its gate's held or late list */
	int64_t since_us;             /* clock_mono_us() when it was sent: its deadline's start */
	int gate;
	gate_state_t state;
} gate_msg_t;

typedef struct {
	int outstanding;                   /* given to librdkafka, not yet reported on */
	gate_msg_t *held_head, *held_tail; /* oldest first */
	gate_msg_t *late_head, *late_tail; /* oldest first */
} gate_t;

typedef struct {
	int count; /* gates in use: kafka.partitions */
	long held; /* messages held in all of them */
	gate_t *gates;
} gates_t;

/* count gates, all open; -1 without memory. */
int gates_init(gates_t *gs, int count);
void gates_fini(gates_t *gs);

/* The gate of a partition (out-of-range partitions share gate 0: flow control only, never correctness). */
gate_t *gates_of(gates_t *gs, int partition);

/* Whether a new message for g must be held: earlier ones are, or the window is full. */
int gate_must_hold(const gate_t *g);

/* m waits in g (state GATE_HELD, at the tail). */
void gate_hold(gates_t *gs, gate_t *g, gate_msg_t *m);

/* Whether g's held messages may go now: the window has room. Judged once per release, before the first is
 * given: then everything held goes together (see above). */
int gate_may_release(const gate_t *g);

/* The oldest held message of g, taken out of the list, or NULL. */
gate_msg_t *gate_pop_held(gates_t *gs, gate_t *g);

/* m was given to librdkafka (from GATE_HELD: it becomes GATE_LATE and its deadline stays watched). */
void gate_sent(gate_t *g, gate_msg_t *m);

/* m's delivery report: 1 when its request still waits for the answer, 0 when it was answered already. */
int gate_reported(gate_t *g, gate_msg_t *m);

/*
 * Every message, held or late, whose deadline start is at or before
 * cutoff_us, taken out of its list, goes to fn: a held one is the caller's
 * to answer as failed and free; a late one is answered as failed and becomes
 * GATE_ORPHAN (still outstanding: librdkafka has it until its report).
 * Returns how many.
 */
typedef void (*gate_expired_fn)(gate_msg_t *m, void *arg);
long gates_expire(gates_t *gs, int64_t cutoff_us, gate_expired_fn fn, void *arg);

#endif
