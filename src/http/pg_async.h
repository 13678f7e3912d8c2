/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_async.h: a non-blocking PostgreSQL connection on the worker's event loop (reads and admin writes). */
#ifndef COUPONSD_PG_ASYNC_H
#define COUPONSD_PG_ASYNC_H

#include "core/config.h"

#include <event2/event.h>
#include <libpq-fe.h>

typedef struct pg_async pg_async_t;

/*
 * Called exactly once per query. error is NULL on success; on failure it says
 * why, and res is the server's error result (for its SQLSTATE) or NULL when the
 * server never answered. res is owned by pg_async.
 */
typedef void (*pg_result_fn)(const PGresult *res, const char *error, void *arg);

/*
 * Queries run one at a time in FIFO order with text parameters; each has a
 * deadline (postgres.timeout). A timeout or a broken connection fails what is
 * queued and reconnects with back-off: the HTTP side answers 503, it never waits.
 */
pg_async_t *pg_async_new(struct event_base *base, const config_t *cfg);
void pg_async_free(pg_async_t *pg);
int pg_async_connected(const pg_async_t *pg);
/* 1 once the first connect attempt has ended: connected, refused or timed out (postgres.timeout). */
int pg_async_settled(const pg_async_t *pg);

/* Returns -1 without calling fn when disconnected or the queue is full. */
int pg_async_query(pg_async_t *pg, const char *sql, int nparams, const char *const *params, pg_result_fn fn,
                   void *arg);

#endif
