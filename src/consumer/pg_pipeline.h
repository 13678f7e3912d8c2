/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_pipeline.h: libpq pipeline mode for the store: statements sent back to back, answered after one Sync. */
#ifndef COUPONSD_PG_PIPELINE_H
#define COUPONSD_PG_PIPELINE_H

#include <libpq-fe.h>

#define PG_PIPELINE_MAX 4

/*
 * A batch waits for PostgreSQL once per pipeline rather than once per
 * statement; the server still runs the statements one after the other.
 * Zero it, set conn, queue statements, then pg_pipeline_close() and read
 * res[] (indexes as the send functions returned them), then
 * pg_pipeline_clear().
 */
typedef struct {
	PGconn *conn;
	const char *what[PG_PIPELINE_MAX]; /* for the log, one name per statement */
	ExecStatusType expect[PG_PIPELINE_MAX];
	PGresult *res[PG_PIPELINE_MAX];
	int n;
	int entered; /* the connection is in pipeline mode */
	int synced;  /* the Sync is sent (pg_pipeline_sync()) */
	int failed;  /* a statement was not sent, failed or was aborted: the transaction is lost */
	int logged;  /* one line per failed pipeline: the statements after an error only say "aborted" */
	int lost;    /* the session is in a state nobody can leave: the caller must close it */
} pg_pipeline_t;

/*
 * Queues a prepared statement (libpq copies the parameters: their buffers
 * may be reused at once). Its index in res, or -1 (then the pipeline has
 * failed).
 */
int pg_pipeline_send(pg_pipeline_t *p, const char *what, const char *name, int nparams,
                     const char *const *params, ExecStatusType expect);

/* Queues a statement without parameters (the extended protocol: a pipeline allows nothing else). */
int pg_pipeline_send_sql(pg_pipeline_t *p, const char *sql, ExecStatusType expect);

/*
 * Sends the Sync and collects every statement's result. 0 when each had its
 * expected status. After a failed statement the server skips the rest up to
 * the Sync (PGRES_PIPELINE_ABORTED) and leaves the transaction open but
 * failed, for the caller's ROLLBACK: the connection is back in normal mode
 * then, or p->lost is set and the caller closes it. -1 also when the
 * pipeline had failed before (pg_pipeline_fail()).
 */
int pg_pipeline_close(pg_pipeline_t *p);

/*
 * Sends the Sync now (libpq flushes it with every statement before it), so
 * the server runs the pipeline while the caller does something else before
 * pg_pipeline_close() reads the answers. 0, or -1 (p->lost: the session is
 * unusable).
 */
int pg_pipeline_sync(pg_pipeline_t *p);

/* Marks the pipeline failed (the caller could not build a statement's parameters). */
void pg_pipeline_fail(pg_pipeline_t *p);

void pg_pipeline_clear(pg_pipeline_t *p);

#endif
