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
 * Lanes: librdkafka fixes linger.ms per producer and puts one partition in
 * each ProduceRequest (librdkafka#1700), so one linger serves a hot coupon's
 * partition (many events per millisecond: a short linger, or its 202s wait)
 * or a sale spread over many partitions (under one event per partition per
 * millisecond: a longer linger, or nearly every event is a request of its
 * own) but not both (docs/performance.md, round 2f). With lanes on, the
 * worker has two producers, LANE_SLOW and LANE_FAST, and each partition is in
 * one of them by its rate: to LANE_FAST once LANE_WINDOW_US sees fast_at of
 * its events, back once a whole window sees fewer than slow_below. A
 * partition moves only when none of its events is outstanding in the old
 * lane: until then its new events are held here, in order, so its log keeps
 * the order in which they were accepted across two producers.
 *
 * Pure bookkeeping, no librdkafka: the producer (producer.c) embeds a
 * gate_msg_t first in each message and does the sending and the answering.
 */
#ifndef COUPONSD_PRODUCE_GATE_H
#define COUPONSD_PRODUCE_GATE_H

#include <stdint.h>

#define GATE_WINDOW 5
#define LANE_WINDOW_US 50000 /* a partition's rate is its events in one such window */

typedef enum { LANE_SLOW, LANE_FAST, LANES } lane_t;

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
	lane_t lane;          /* the producer its events go to */
	lane_t want;          /* != lane: moving there once outstanding is 0 */
	int64_t win_start_us; /* the rate's window: its start, and the events in it */
	int win_count;
	int outstanding;                   /* given to librdkafka, not yet reported on */
	gate_msg_t *held_head, *held_tail; /* oldest first */
	gate_msg_t *late_head, *late_tail; /* oldest first */
} gate_t;

typedef struct {
	int count;               /* gates in use: kafka.partitions */
	int window;              /* outstanding messages per partition past which new ones are held */
	int fast_at, slow_below; /* lanes (fast_at 0: off, every partition in LANE_SLOW) */
	long held;               /* messages held in all of them */
	gate_t *gates;
} gates_t;

/* count gates, all open, no window (see gates_window), no lanes; -1 without memory. */
int gates_init(gates_t *gs, int count);
void gates_fini(gates_t *gs);

/* Hold a partition's new messages while GATE_WINDOW of its messages are outstanding. */
void gates_window(gates_t *gs);

/* Whether a message can ever be held: the window or the lanes are on. */
int gates_may_hold(const gates_t *gs);

/* Lanes on: a partition moves to LANE_FAST at fast_at messages in one LANE_WINDOW_US, back to LANE_SLOW
 * after a window with fewer than slow_below (0 < slow_below <= fast_at). */
void gates_lanes(gates_t *gs, int fast_at, int slow_below);

/* The gate of a partition (out-of-range partitions share gate 0: flow control only, never correctness). */
gate_t *gates_of(gates_t *gs, int partition);

/* Counts a new message for g at now_us (the lanes' rate) and says whether it must be held: earlier ones
 * are, the window is full, or g is moving to the other lane and still has messages outstanding. */
int gate_admit(gates_t *gs, gate_t *g, int64_t now_us);

/* m waits in g (state GATE_HELD, at the tail). */
void gate_hold(gates_t *gs, gate_t *g, gate_msg_t *m);

/* Whether g's held messages may go now, to g->lane: the window has room and no lane move waits. Judged once
 * per release, before the first is given: then everything held goes together (see above). Completes a
 * waiting lane move once nothing is outstanding. */
int gate_may_release(const gates_t *gs, gate_t *g);

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
