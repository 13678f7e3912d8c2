/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_async.c: a non-blocking PostgreSQL connection on the worker's event loop (reads and admin writes). */
#include "http/pg_async.h"

#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define QUEUE_MAX 1024
#define PARAMS_MAX 8

typedef struct pg_query {
	struct pg_query *next;
	char *sql;
	int nparams;
	char *params[PARAMS_MAX];
	pg_result_fn fn;
	void *arg;
} pg_query_t;

struct pg_async {
	struct event_base *base;
	const config_t *cfg;
	PGconn *conn;
	int connected;
	int settled; /* a connect attempt has ended, either way (http_worker.c waits for it) */
	struct event *io_ev;
	struct event *deadline_ev;
	struct event *reconnect_ev;
	int64_t backoff_ms;
	pg_query_t *head, *tail; /* head is in flight once sent */
	int queued;
	int in_flight;
	PGresult *result;
};

static void start_connect(pg_async_t *pg);
static void pump(pg_async_t *pg);

static void query_free(pg_query_t *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->sql);
	free(q);
}

static pg_query_t *pop(pg_async_t *pg)
{
	pg_query_t *q = pg->head;

	pg->head = q->next;
	if (pg->head == NULL)
		pg->tail = NULL;
	pg->queued--;
	return q;
}

static void fail_all(pg_async_t *pg, const char *why)
{
	while (pg->head != NULL) {
		pg_query_t *q = pop(pg);

		q->fn(NULL, why, q->arg);
		query_free(q);
	}
	pg->in_flight = 0;
}

/* One one-shot watch on the connection's socket, re-armed for whatever libpq waits for next. */
static void on_io(evutil_socket_t fd, short what, void *arg);

static void watch(pg_async_t *pg, short what)
{
	if (pg->io_ev != NULL)
		event_free(pg->io_ev);
	pg->io_ev = event_new(pg->base, PQsocket(pg->conn), what, on_io, pg);
	if (pg->io_ev == NULL || event_add(pg->io_ev, NULL) != 0)
		log_error("postgres: cannot watch the connection");
}

static void set_deadline(pg_async_t *pg)
{
	struct timeval tv = clock_timeval(pg->cfg->postgres_timeout);

	if (evtimer_add(pg->deadline_ev, &tv) != 0)
		log_error("postgres: cannot arm the query deadline");
}

/* Drops the connection, fails everything queued, and tries again later. */
static void reset(pg_async_t *pg, const char *reason)
{
	struct timeval tv = clock_timeval(pg->backoff_ms);
	char why[512];

	/* reason is often PQerrorMessage() of the connection freed below: keep a copy for the callbacks. */
	snprintf(why, sizeof(why), "%s", reason);

	metrics_inc(M_POSTGRES_ERRORS);
	log_warn("postgres: %s; reconnecting in %lld ms", why, (long long)pg->backoff_ms);
	if (pg->io_ev != NULL)
		event_free(pg->io_ev);
	pg->io_ev = NULL;
	evtimer_del(pg->deadline_ev);
	if (pg->result != NULL)
		PQclear(pg->result);
	pg->result = NULL;
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	pg->conn = NULL;
	pg->connected = 0;
	pg->settled = 1;
	fail_all(pg, why);
	if (evtimer_add(pg->reconnect_ev, &tv) != 0)
		log_error("postgres: cannot schedule the reconnect");
	pg->backoff_ms = pg->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pg->backoff_ms * 2;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	pg_async_t *pg = arg;

	reset(pg,
	      pg->connected ? "query timed out (postgres.timeout)" : "connect timed out (postgres.timeout)");
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
	start_connect(arg);
}

static void continue_connect(pg_async_t *pg)
{
	switch (PQconnectPoll(pg->conn)) {
	case PGRES_POLLING_READING:
		watch(pg, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		watch(pg, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		evtimer_del(pg->deadline_ev);
		if (PQsetnonblocking(pg->conn, 1) != 0) {
			reset(pg, "cannot make the connection non-blocking");
			return;
		}
		pg->connected = 1;
		pg->settled = 1;
		pg->backoff_ms = BACKOFF_MIN_MS;
		log_info("postgres: connected");
		pump(pg);
		return;
	default:
		reset(pg, PQerrorMessage(pg->conn));
	}
}

/* Reads what arrived; when the query's last result is in, hands it over and sends the next one. */
static void read_results(pg_async_t *pg)
{
	PGresult *res;

	if (PQconsumeInput(pg->conn) == 0) {
		reset(pg, PQerrorMessage(pg->conn));
		return;
	}
	while (!PQisBusy(pg->conn)) {
		res = PQgetResult(pg->conn);
		if (res == NULL) {
			pg_query_t *q = pop(pg);
			const char *err = pg->result == NULL ? "no result" : NULL;

			if (pg->result != NULL && PQresultStatus(pg->result) != PGRES_COMMAND_OK &&
			    PQresultStatus(pg->result) != PGRES_TUPLES_OK)
				err = PQresultErrorMessage(pg->result);
			evtimer_del(pg->deadline_ev);
			pg->in_flight = 0;
			q->fn(pg->result, err, q->arg);
			query_free(q);
			if (pg->result != NULL)
				PQclear(pg->result);
			pg->result = NULL;
			pump(pg);
			return;
		}
		if (pg->result != NULL)
			PQclear(pg->result);
		pg->result = res; /* one statement per query: keep the last result */
	}
	watch(pg, EV_READ);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	pg_async_t *pg = arg;
	int flushed;

	if (!pg->connected) {
		continue_connect(pg);
		return;
	}
	if (!pg->in_flight) {
		/* Idle: readable means the server closed or sent a notice; consume to notice a dead link. */
		if (PQconsumeInput(pg->conn) == 0 || PQstatus(pg->conn) == CONNECTION_BAD)
			reset(pg, "connection lost");
		else
			watch(pg, EV_READ);
		return;
	}
	flushed = PQflush(pg->conn);
	if (flushed < 0)
		reset(pg, PQerrorMessage(pg->conn));
	else if (flushed > 0)
		watch(pg, EV_READ | EV_WRITE);
	else
		read_results(pg);
}

static void pump(pg_async_t *pg)
{
	pg_query_t *q = pg->head;

	if (!pg->connected || pg->in_flight || q == NULL) {
		if (pg->connected && !pg->in_flight)
			watch(pg, EV_READ);
		return;
	}
	if (PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, (const char *const *)q->params, NULL, NULL,
	                      0) == 0) {
		reset(pg, PQerrorMessage(pg->conn));
		return;
	}
	pg->in_flight = 1;
	set_deadline(pg);
	watch(pg, EV_READ | EV_WRITE);
}

static void start_connect(pg_async_t *pg)
{
	pg->conn = PQconnectStart(pg->cfg->postgres_conninfo);
	if (pg->conn == NULL || PQstatus(pg->conn) == CONNECTION_BAD) {
		reset(pg, pg->conn != NULL ? PQerrorMessage(pg->conn) : "out of memory");
		return;
	}
	set_deadline(pg);
	watch(pg, EV_WRITE);
}

/*
 * Test builds only: http_pg_connect_delay=MS starts the first connect MS
 * later, as a slow PostgreSQL would, without failing it: the window in which
 * a worker that served before its session was up answered 503.
 */
static void first_connect(pg_async_t *pg)
{
	long delay = fault_value("http_pg_connect_delay");
	struct timeval tv;

	if (delay <= 0) {
		start_connect(pg);
		return;
	}
	tv = clock_timeval(delay);
	log_warn("fault injection: connecting to postgres in %ld ms", delay);
	if (evtimer_add(pg->reconnect_ev, &tv) != 0)
		start_connect(pg);
}

pg_async_t *pg_async_new(struct event_base *base, const config_t *cfg)
{
	pg_async_t *pg = calloc(1, sizeof(*pg));

	if (pg == NULL)
		return NULL;
	pg->base = base;
	pg->cfg = cfg;
	pg->backoff_ms = BACKOFF_MIN_MS;
	pg->deadline_ev = evtimer_new(base, on_deadline, pg);
	pg->reconnect_ev = evtimer_new(base, on_reconnect, pg);
	if (pg->deadline_ev == NULL || pg->reconnect_ev == NULL) {
		pg_async_free(pg);
		return NULL;
	}
	first_connect(pg);
	return pg;
}

int pg_async_connected(const pg_async_t *pg)
{
	return pg->connected;
}

int pg_async_settled(const pg_async_t *pg)
{
	return pg->settled;
}

static pg_query_t *query_new(const char *sql, int nparams, const char *const *params)
{
	pg_query_t *q = calloc(1, sizeof(*q));
	int ok = q != NULL && (q->sql = strdup(sql)) != NULL;

	for (int i = 0; ok && i < nparams; i++) {
		q->params[i] = params[i] != NULL ? strdup(params[i]) : NULL;
		ok = params[i] == NULL || q->params[i] != NULL;
		q->nparams = i + 1;
	}
	if (!ok && q != NULL) {
		query_free(q);
		return NULL;
	}
	return q;
}

int pg_async_query(pg_async_t *pg, const char *sql, int nparams, const char *const *params, pg_result_fn fn,
                   void *arg)
{
	pg_query_t *q;

	if (!pg->connected || pg->queued >= QUEUE_MAX || nparams > PARAMS_MAX ||
	    (q = query_new(sql, nparams, params)) == NULL)
		return -1;
	q->fn = fn;
	q->arg = arg;
	if (pg->tail != NULL)
		pg->tail->next = q;
	else
		pg->head = q;
	pg->tail = q;
	pg->queued++;
	pump(pg);
	return 0;
}

void pg_async_free(pg_async_t *pg)
{
	if (pg == NULL)
		return;
	fail_all(pg, "shutting down");
	if (pg->io_ev != NULL)
		event_free(pg->io_ev);
	if (pg->deadline_ev != NULL)
		event_free(pg->deadline_ev);
	if (pg->reconnect_ev != NULL)
		event_free(pg->reconnect_ev);
	if (pg->result != NULL)
		PQclear(pg->result);
	if (pg->conn != NULL)
		PQfinish(pg->conn);
	free(pg);
}
