/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_loop.c: hiredis on the worker's libevent loop, writing once per loop turn. */
#include "http/redis_loop.h"

#include <stdlib.h>

typedef struct {
	redisAsyncContext *ac;
	struct event *rev;      /* persistent */
	struct event *wev;      /* one-shot: connecting, or the socket buffer was full */
	struct event *flush_ev; /* activated by hand: the end of this turn */
	int reading, waiting_write, flush_due;
	int in_write; /* inside redisAsyncHandleWrite: a write left unfinished must wait for the socket */
	int dead;     /* hiredis freed the context meanwhile: e is freed once that call returns */
} loop_t;

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	loop_t *e = arg;

	redisAsyncHandleRead(e->ac);
}

/* hiredis may free the context (a write error disconnects): cleanup() then leaves e to us. */
static void handle_write(loop_t *e)
{
	e->in_write = 1;
	redisAsyncHandleWrite(e->ac);
	if (e->dead) {
		free(e);
		return;
	}
	e->in_write = 0;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	loop_t *e = arg;

	e->waiting_write = 0;
	handle_write(e);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	loop_t *e = arg;

	e->flush_due = 0;
	if (!e->waiting_write) /* else the socket is full: its write event comes first */
		handle_write(e);
}

static void add_read(void *privdata)
{
	loop_t *e = privdata;

	if (!e->reading && event_add(e->rev, NULL) == 0)
		e->reading = 1;
}

static void del_read(void *privdata)
{
	loop_t *e = privdata;

	if (e->reading)
		event_del(e->rev);
	e->reading = 0;
}

static void add_write(void *privdata)
{
	loop_t *e = privdata;

	if (e->in_write || !(e->ac->c.flags & REDIS_CONNECTED)) {
		if (!e->waiting_write && event_add(e->wev, NULL) == 0)
			e->waiting_write = 1;
		return;
	}
	if (!e->flush_due && !e->waiting_write) {
		e->flush_due = 1;
		event_active(e->flush_ev, EV_WRITE, 1);
	}
}

static void del_write(void *privdata)
{
	loop_t *e = privdata;

	if (e->waiting_write)
		event_del(e->wev);
	e->waiting_write = 0;
}

static void cleanup(void *privdata)
{
	loop_t *e = privdata;

	event_free(e->rev);
	event_free(e->wev);
	event_free(e->flush_ev);
	if (e->in_write)
		e->dead = 1;
	else
		free(e);
}

int redis_loop_attach(redisAsyncContext *ac, struct event_base *base)
{
	loop_t *e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof(*e))) == NULL)
		return REDIS_ERR;
	e->ac = ac;
	e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, on_read, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, on_write, e);
	e->flush_ev = event_new(base, -1, 0, on_flush, e);
	if (e->rev == NULL || e->wev == NULL || e->flush_ev == NULL) {
		if (e->rev != NULL)
			event_free(e->rev);
		if (e->wev != NULL)
			event_free(e->wev);
		if (e->flush_ev != NULL)
			event_free(e->flush_ev);
		free(e);
		return REDIS_ERR;
	}
	ac->ev.addRead = add_read;
	ac->ev.delRead = del_read;
	ac->ev.addWrite = add_write;
	ac->ev.delWrite = del_write;
	ac->ev.cleanup = cleanup;
	ac->ev.data = e;
	add_read(e);
	add_write(e); /* the connect completes when the socket turns writable */
	return REDIS_OK;
}
