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

/* librdkafka's side, per partition: handed over, not yet in a request; requests in flight. */
typedef struct {
	msg_t *queue[MSGS];
	int queued;
	int inflight; /* messages in the requests below */
	msg_t **reqs[MAX_REQS];
	int req_len[MAX_REQS];
	int nreqs;
	int next_seq_out; /* the seq the next handed-over message must have */
} rk_part_t;

static rk_part_t rk[PARTS];
static gates_t gs;
static int spin_states, out_of_order, handed;

static void hand_over(msg_t *m)
{
	rk_part_t *r = &rk[m->part];

	if (m->seq != r->next_seq_out)
		out_of_order++;
	r->next_seq_out = m->seq + 1;
	gate_sent(gates_of(&gs, m->part), &m->gm);
	r->queue[r->queued++] = m;
	handed++;
}

/* The broker thread: one request of everything queued, if idempotence's check lets it. */
static void rk_serve(int p)
{
	rk_part_t *r = &rk[p];
	size_t n;

	if (r->queued > 0 && r->inflight >= GATE_WINDOW)
		spin_states++; /* librdkafka 2.0.2 would poll with a zero timeout here */
	if (r->queued <= 0 || r->queued > MSGS || r->inflight >= GATE_WINDOW || r->nreqs == MAX_REQS)
		return;
	n = (size_t)r->queued;
	if ((r->reqs[r->nreqs] = malloc(sizeof(msg_t *) * n)) == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		r->reqs[r->nreqs][i] = r->queue[i];
	r->req_len[r->nreqs++] = r->queued;
	r->inflight += r->queued;
	r->queued = 0;
}

/* The producer's release, as producer.c does it. */
static void release(gate_t *g)
{
	gate_msg_t *m;

	if (!gate_may_release(g))
		return;
	while ((m = gate_pop_held(&gs, g)) != NULL)
		hand_over((msg_t *)m);
}

/* The oldest request's answer: each of its messages' delivery reports, in order. */
static void rk_ack(int p)
{
	rk_part_t *r = &rk[p];
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

	if (gate_must_hold(g))
		gate_hold(&gs, g, &m->gm);
	else
		hand_over(m);
}

static void test_model(void)
{
	static msg_t msgs[MSGS];
	int seqs[PARTS] = {0}, sent = 0, lost = 0;

	srand(7);
	ok(gates_init(&gs, PARTS) == 0, "gates for 3 partitions");
	while (sent < MSGS) {
		int what = rand() % 10, p = rand() % PARTS;

		if (what < 6) { /* a loop turn's claims: mostly one or two, sometimes a burst */
			for (int k = rand() % 4 == 0 ? rand() % 40 : rand() % 2; k >= 0 && sent < MSGS; k--) {
				msg_t *m = &msgs[sent++];

				m->part = rand() % PARTS;
				m->seq = seqs[m->part]++;
				send_one(m);
			}
		} else if (what < 8) {
			rk_serve(p);
		} else {
			rk_ack(p);
		}
	}
	for (int round = 0; round < MSGS; round++) { /* drain */
		for (int p = 0; p < PARTS; p++) {
			rk_serve(p);
			rk_ack(p);
		}
	}
	for (int i = 0; i < MSGS; i++)
		lost += !msgs[i].reported;
	is_int(spin_states, 0, "librdkafka never has a queued message while five are in flight (no spin)");
	is_int(out_of_order, 0, "each partition's messages reach librdkafka in the order they were sent");
	is_int(lost, 0, "every message is reported: none is stranded in the gate");
	is_int(gs.held, 0, "nothing is left held");
	ok(handed == MSGS, "all %d messages were handed over", MSGS);
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
	g = gates_of(&gs, 0);
	for (int i = 0; i < 8; i++) {
		m[i].gm.since_us = 1000 + i * 100; /* sent at 1.0, 1.1, ... ms */
		if (gate_must_hold(g))
			gate_hold(&gs, g, &m[i].gm);
		else
			gate_sent(g, &m[i].gm);
	}
	is_int(gs.held, 3, "the window holds five: three of eight are held");
	ok(gates_of(&gs, 7) == g && gates_of(&gs, -1) == g, "an unknown partition shares gate 0");
	ok(!gate_may_release(g), "five outstanding: the held ones stay");
	(void)gate_reported(g, &m[0].gm);
	ok(gate_may_release(g), "one report opens the window");
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
	plan(19);
	test_model();
	test_deadlines();
	return done_testing();
}
