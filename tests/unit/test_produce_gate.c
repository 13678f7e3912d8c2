/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_produce_gate.c: the HTTP producer's flow control (produce_gate.c)
 * against a model of librdkafka 2.0.2's idempotent partition: a queue of
 * messages handed over, and requests in flight. librdkafka spins while a
 * partition has queued messages and five or more in flight; with the gate in
 * front that state must never occur, every message must go out in the order
 * it was sent, none may be lost, and deadlines must hold.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/produce_gate.h"
#include "tap.h"

#define PARTS 3
#define MSGS 20000
#define MAX_REQS 64

typedef struct {
	gate_msg_t gm;
	int seq; /* order of sending, per partition */
	int part;
	int reported;
	int answered_failed;
} msg_t;

/* librdkafka's side, per lane and partition: handed over, not yet in a request; requests in flight. */
typedef struct {
	msg_t *queue[MSGS];
	int queued;
	int inflight; /* messages in the requests below */
	msg_t **reqs[MAX_REQS];
	int req_len[MAX_REQS];
	int nreqs;
} rk_part_t;

static rk_part_t rk[LANES][PARTS];
static gates_t gs;
static int64_t now_us;
/* What the model saw go wrong, and what it saw happen. */
static int spin_states, out_of_order, overlaps, log_out_of_order, handed, used[LANES];
static int next_seq_out[PARTS],
    next_seq_log[PARTS]; /* the seq the next handed-over / appended one must have */

static void hand_over(msg_t *m)
{
	gate_t *g = gates_of(&gs, m->part);
	rk_part_t *r = &rk[g->lane][m->part], *other = &rk[!g->lane][m->part];

	if (m->seq != next_seq_out[m->part])
		out_of_order++;
	if (other->queued + other->inflight > 0)
		overlaps++; /* two producers with one partition's events at once: the log's order is lost */
	next_seq_out[m->part] = m->seq + 1;
	gate_sent(g, &m->gm);
	r->queue[r->queued++] = m;
	used[g->lane]++;
	handed++;
}

/* A lane's broker thread: one request of everything queued, if idempotence's check lets it. The broker
 * appends the request's messages to the partition's log as it arrives. */
static void rk_serve(int lane, int p)
{
	rk_part_t *r = &rk[lane][p];
	size_t n;

	if (r->queued > 0 && r->inflight >= GATE_WINDOW)
		spin_states++; /* librdkafka 2.0.2 would poll with a zero timeout here */
	if (r->queued <= 0 || r->queued > MSGS || r->inflight >= GATE_WINDOW || r->nreqs == MAX_REQS)
		return;
	n = (size_t)r->queued;
	if ((r->reqs[r->nreqs] = malloc(sizeof(msg_t *) * n)) == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		msg_t *m = r->queue[i];

		r->reqs[r->nreqs][i] = m;
		if (m->seq != next_seq_log[p])
			log_out_of_order++;
		next_seq_log[p] = m->seq + 1;
	}
	r->req_len[r->nreqs++] = r->queued;
	r->inflight += r->queued;
	r->queued = 0;
}

/* The producer's release, as producer.c does it. */
static void release(gate_t *g)
{
	gate_msg_t *m;

	if (!gate_may_release(&gs, g))
		return;
	while ((m = gate_pop_held(&gs, g)) != NULL)
		hand_over((msg_t *)m);
}

/* A lane's oldest request's answer for p: each of its messages' delivery reports, in order. */
static void rk_ack(int lane, int p)
{
	rk_part_t *r = &rk[lane][p];
	gate_t *g = gates_of(&gs, p);

	if (r->nreqs == 0)
		return;
	for (int i = 0; i < r->req_len[0]; i++) {
		msg_t *m = r->reqs[0][i];

		(void)gate_reported(g, &m->gm);
		m->reported = 1;
		r->inflight--;
		release(g);
	}
	free(r->reqs[0]);
	for (int i = 1; i < r->nreqs; i++) {
		r->reqs[i - 1] = r->reqs[i];
		r->req_len[i - 1] = r->req_len[i];
	}
	r->nreqs--;
}

static void send_one(msg_t *m)
{
	gate_t *g = gates_of(&gs, m->part);

	if (gate_admit(&gs, g, now_us))
		gate_hold(&gs, g, &m->gm);
	else
		hand_over(m);
}

static void model_reset(void)
{
	memset(rk, 0, sizeof(rk));
	memset(next_seq_out, 0, sizeof(next_seq_out));
	memset(next_seq_log, 0, sizeof(next_seq_log));
	spin_states = out_of_order = overlaps = log_out_of_order = handed = 0;
	used[LANE_SLOW] = used[LANE_FAST] = 0;
	now_us = 0;
}

/*
 * Random loop turns: claims (mostly one or two, sometimes a burst), broker
 * sends and acks, on either lane. With lanes, the clock alternates between
 * fast stretches (5 us a step: well over fast_at per window) and slow ones
 * (20 ms a step), so partitions move both ways many times.
 */
static void run_model(int window, int lanes)
{
	static msg_t msgs[MSGS];
	int seqs[PARTS] = {0}, sent = 0, lost = 0;

	model_reset();
	memset(msgs, 0, sizeof(msgs));
	srand(7);
	ok(gates_init(&gs, PARTS) == 0, "gates for 3 partitions");
	if (window)
		gates_window(&gs);
	if (lanes)
		gates_lanes(&gs, 40, 20);
	while (sent < MSGS) {
		int what = rand() % 10, p = rand() % PARTS, lane = rand() % LANES;

		now_us += (sent / 1500) % 2 == 0 ? 5 : 20000;
		if (what < 6) {
			for (int k = rand() % 4 == 0 ? rand() % 40 : rand() % 2; k >= 0 && sent < MSGS; k--) {
				msg_t *m = &msgs[sent++];

				m->part = rand() % PARTS;
				m->seq = seqs[m->part]++;
				send_one(m);
			}
		} else if (what < 8) {
			rk_serve(lane, p);
		} else {
			rk_ack(lane, p);
		}
	}
	for (int round = 0; round < MSGS; round++) { /* drain */
		for (int p = 0; p < PARTS; p++) {
			for (int lane = 0; lane < LANES; lane++) {
				rk_serve(lane, p);
				rk_ack(lane, p);
			}
		}
	}
	for (int i = 0; i < MSGS; i++)
		lost += !msgs[i].reported;
	if (window)
		is_int(spin_states, 0,
		       "librdkafka never has a queued message while five are in flight (no spin)");
	is_int(out_of_order, 0, "each partition's messages reach librdkafka in the order they were sent");
	is_int(overlaps, 0, "a partition's messages are never in two lanes at once");
	is_int(log_out_of_order, 0, "each partition's log has its messages in the order they were sent");
	is_int(lost, 0, "every message is reported: none is stranded in the gate");
	is_int(gs.held, 0, "nothing is left held");
	ok(handed == MSGS, "all %d messages were handed over", MSGS);
	if (lanes)
		ok(used[LANE_SLOW] > MSGS / 10 && used[LANE_FAST] > MSGS / 10,
		   "both lanes carried messages (slow %d, fast %d)", used[LANE_SLOW], used[LANE_FAST]);
	else
		is_int(used[LANE_FAST], 0, "without lanes, everything goes to one producer");
	gates_fini(&gs);
}

static void test_model(void)
{
	diag("the window alone (real brokers, lanes off)");
	run_model(1, 0);
	diag("the window and two lanes (real brokers)");
	run_model(1, 1);
	diag("two lanes, no window (the embedded cluster)");
	run_model(0, 1);
}

/* The lane's rules, step by step: up within a window, down after a slow one, a move waits for the old
 * lane's reports while new messages are held, and they go to the new lane in order. */
static void test_lane_moves(void)
{
	msg_t m[50] = {0};
	gate_t *g;
	int held = 0;

	gates_init(&gs, 1);
	gates_lanes(&gs, 10, 5);
	g = gates_of(&gs, 0);
	for (int i = 0; i < 9; i++) {
		ok(!gate_admit(&gs, g, 1000 + i), "message %d of the first window goes at once", i + 1);
		gate_sent(g, &m[i].gm);
	}
	is_int(g->lane, LANE_SLOW, "nine messages in a window: still the slow lane");
	ok(gate_admit(&gs, g, 1010), "the tenth asks for the fast lane: held while nine are outstanding");
	gate_hold(&gs, g, &m[9].gm);
	is_int(g->want, LANE_FAST, "the move waits");
	for (int i = 0; i < 8; i++)
		(void)gate_reported(g, &m[i].gm);
	ok(!gate_may_release(&gs, g) && g->lane == LANE_SLOW, "one report still to come: nothing goes yet");
	ok(gate_admit(&gs, g, 1011), "a message meanwhile is held behind the first");
	gate_hold(&gs, g, &m[10].gm);
	(void)gate_reported(g, &m[8].gm);
	ok(gate_may_release(&gs, g) && g->lane == LANE_FAST, "the last report completes the move");
	for (gate_msg_t *x; (x = gate_pop_held(&gs, g)) != NULL;) {
		ok(x == &m[9 + held].gm, "held message %d comes out in order", held + 1);
		gate_sent(g, x);
		held++;
	}
	is_int(held, 2, "both held messages went, to the fast lane");
	ok(!gate_admit(&gs, g, 1012) && g->lane == LANE_FAST, "the next one goes at once in the fast lane");
	gate_sent(g, &m[11].gm);
	ok(!gate_admit(&gs, g, 1000 + LANE_WINDOW_US + 5) && g->lane == LANE_FAST,
	   "the first window had 12: the partition stays fast");
	gate_sent(g, &m[12].gm);
	ok(gate_admit(&gs, g, 1000 + 2 * LANE_WINDOW_US + 10) && g->want == LANE_SLOW,
	   "after a window of one, it asks for the slow lane and holds while four are outstanding");
	gate_hold(&gs, g, &m[13].gm);
	(void)gate_reported(g, &m[9].gm);
	(void)gate_reported(g, &m[10].gm);
	(void)gate_reported(g, &m[11].gm);
	ok(!gate_may_release(&gs, g), "one report still to come");
	(void)gate_reported(g, &m[12].gm);
	ok(gate_may_release(&gs, g) && g->lane == LANE_SLOW && gate_pop_held(&gs, g) == &m[13].gm,
	   "then it moves back, and the held one goes");
	gate_sent(g, &m[13].gm);
	(void)gate_reported(g, &m[13].gm);
	ok(!gate_admit(&gs, g, 1000 + 10 * LANE_WINDOW_US) && g->lane == LANE_SLOW,
	   "after a quiet spell, a first message goes at once in the slow lane");
	gates_fini(&gs);
	gates_init(&gs, 1);
	g = gates_of(&gs, 0);
	for (int i = 0; i < 1000; i++)
		gate_admit(&gs, g, i);
	is_int(g->lane, LANE_SLOW, "lanes off: any rate stays in the one producer");
	gates_fini(&gs);
}

static msg_t *expired_msgs[8];
static int nexpired;

static void on_expired(gate_msg_t *m, void *arg)
{
	(void)arg;
	((msg_t *)m)->answered_failed = 1;
	expired_msgs[nexpired++] = (msg_t *)m;
}

static void test_deadlines(void)
{
	msg_t m[8] = {0};
	gate_msg_t *first;
	gate_t *g;

	gates_init(&gs, 1);
	gates_window(&gs);
	g = gates_of(&gs, 0);
	for (int i = 0; i < 8; i++) {
		m[i].gm.since_us = 1000 + i * 100; /* sent at 1.0, 1.1, ... ms */
		if (gate_admit(&gs, g, m[i].gm.since_us))
			gate_hold(&gs, g, &m[i].gm);
		else
			gate_sent(g, &m[i].gm);
	}
	is_int(gs.held, 3, "the window holds five: three of eight are held");
	ok(gates_of(&gs, 7) == g && gates_of(&gs, -1) == g, "an unknown partition shares gate 0");
	ok(!gate_may_release(&gs, g), "five outstanding: the held ones stay");
	(void)gate_reported(g, &m[0].gm);
	ok(gate_may_release(&gs, g), "one report opens the window");
	first = gate_pop_held(&gs, g);
	if (!ok(first == &m[5].gm, "held messages come out oldest first"))
		first = &m[5].gm;
	gate_sent(g, first);
	is_int(m[5].gm.state, GATE_LATE, "a held message handed over is late: its deadline is still watched");
	nexpired = 0;
	is_int(gates_expire(&gs, 1599, on_expired, NULL), 1,
	       "a cutoff past the 6th message's start expires it");
	ok(nexpired == 1 && expired_msgs[0] == &m[5] && m[5].gm.state == GATE_ORPHAN,
	   "the late one, now an orphan (librdkafka still has it)");
	is_int(gates_expire(&gs, 1650, on_expired, NULL), 1, "then the first held one, by its own start");
	ok(expired_msgs[1] == &m[6] && m[6].gm.state == GATE_HELD && gs.held == 1,
	   "taken out of the held list, for the caller to answer and free");
	is_int(gate_reported(g, &m[5].gm), 0, "an orphan's report: its request was answered already");
	is_int(gate_reported(g, &m[1].gm), 1, "a message sent at once: its report answers it");
	is_int(g->outstanding, 3, "outstanding counts librdkafka's messages, orphans until their report");
	gates_fini(&gs);
}

int main(void)
{
	plan(64);
	test_model();
	test_lane_moves();
	test_deadlines();
	return done_testing();
}
