/* SPDX-License-Identifier: BSD-2-Clause */
/* produce_gate.c: flow control per partition in front of the HTTP worker's producer (see produce_gate.h). */
#include "http/produce_gate.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

int gates_init(gates_t *gs, int count)
{
	gs->count = count > 0 ? count : 1;
	gs->window = INT_MAX;
	gs->fast_at = gs->slow_below = 0;
	gs->held = 0;
	gs->gates = calloc((size_t)gs->count, sizeof(gate_t));
	return gs->gates == NULL ? -1 : 0;
}

void gates_window(gates_t *gs)
{
	gs->window = GATE_WINDOW;
}

int gates_may_hold(const gates_t *gs)
{
	return gs->window != INT_MAX || gs->fast_at > 0;
}

void gates_lanes(gates_t *gs, int fast_at, int slow_below)
{
	gs->fast_at = fast_at;
	gs->slow_below = slow_below;
}

void gates_fini(gates_t *gs)
{
	free(gs->gates);
	gs->gates = NULL;
	gs->count = 0;
}

gate_t *gates_of(gates_t *gs, int partition)
{
	return &gs->gates[partition >= 0 && partition < gs->count ? partition : 0];
}

static void append(gate_msg_t **head, gate_msg_t **tail, gate_msg_t *m)
{
	m->next = NULL;
	m->prev = *tail;
	if (*tail != NULL)
		(*tail)->next = m;
	else
		*head = m;
	*tail = m;
}

static void unlink_msg(gate_msg_t **head, gate_msg_t **tail, gate_msg_t *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		*head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		*tail = m->prev;
	m->next = m->prev = NULL;
}

/*
 * The lane g's rate asks for. Up at once when the current window reaches
 * fast_at (a flash sale's first 50 ms should not all wait for the slow
 * lane's linger); down only when a whole window was slow. A window that
 * ended more than one window ago counts as empty: the partition was quiet.
 */
static void pick_lane(const gates_t *gs, gate_t *g, int64_t now_us)
{
	int64_t age = now_us - g->win_start_us;

	if (age >= LANE_WINDOW_US) {
		int last = age < 2 * LANE_WINDOW_US ? g->win_count : 0;

		if (g->lane == LANE_FAST && g->want == LANE_FAST && last < gs->slow_below)
			g->want = LANE_SLOW;
		g->win_start_us = now_us;
		g->win_count = 0;
	}
	if (++g->win_count >= gs->fast_at && g->lane == LANE_SLOW && g->want == LANE_SLOW)
		g->want = LANE_FAST;
}

/* A move to the other lane completes when the old one has nothing of g's left to report on. */
static void settle_lane(gate_t *g)
{
	if (g->want != g->lane && g->outstanding == 0)
		g->lane = g->want;
}

int gate_admit(gates_t *gs, gate_t *g, int64_t now_us)
{
	if (gs->fast_at > 0) {
		pick_lane(gs, g, now_us);
		if (g->held_head == NULL)
			settle_lane(g);
	}
	return g->held_head != NULL || g->outstanding >= gs->window || g->want != g->lane;
}

void gate_hold(gates_t *gs, gate_t *g, gate_msg_t *m)
{
	m->gate = (int)(g - gs->gates);
	m->state = GATE_HELD;
	append(&g->held_head, &g->held_tail, m);
	gs->held++;
}

int gate_may_release(const gates_t *gs, gate_t *g)
{
	settle_lane(g);
	return g->held_head != NULL && g->outstanding < gs->window && g->want == g->lane;
}

gate_msg_t *gate_pop_held(gates_t *gs, gate_t *g)
{
	gate_msg_t *m = g->held_head;

	if (m != NULL) {
		unlink_msg(&g->held_head, &g->held_tail, m);
		gs->held--;
	}
	return m;
}

void gate_sent(gate_t *g, gate_msg_t *m)
{
	g->outstanding++;
	if (m->state == GATE_HELD) {
		m->state = GATE_LATE;
		append(&g->late_head, &g->late_tail, m);
	} else {
		m->state = GATE_SENT;
	}
}

int gate_reported(gate_t *g, gate_msg_t *m)
{
	g->outstanding--;
	if (m->state == GATE_LATE)
		unlink_msg(&g->late_head, &g->late_tail, m);
	return m->state != GATE_ORPHAN;
}

/* Both lists are in deadline order (held ones are released in order), so each scan stops at the first
 * message still in time. */
long gates_expire(gates_t *gs, int64_t cutoff_us, gate_expired_fn fn, void *arg)
{
	long n = 0;

	for (int i = 0; i < gs->count; i++) {
		gate_t *g = &gs->gates[i];

		while (g->late_head != NULL && g->late_head->since_us <= cutoff_us) {
			gate_msg_t *m = g->late_head;

			unlink_msg(&g->late_head, &g->late_tail, m);
			m->state = GATE_ORPHAN;
			fn(m, arg);
			n++;
		}
		while (g->held_head != NULL && g->held_head->since_us <= cutoff_us) {
			fn(gate_pop_held(gs, g), arg);
			n++;
		}
	}
	return n;
}
