/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_pipeline.c: libpq pipeline mode for the store: statements sent back to back, answered after one Sync. */
#include "consumer/pg_pipeline.h"

#include "core/pg_session.h"

static void fail(pg_pipeline_t *p, const char *what, const PGresult *res)
{
	if (!p->logged)
		pg_session_log_failure(p->conn, what, res);
	p->failed = p->logged = 1;
}

void pg_pipeline_fail(pg_pipeline_t *p)
{
	p->failed = 1;
}

/* Enters pipeline mode with the first statement, so a pipeline with nothing to send costs nothing. */
static int enter(pg_pipeline_t *p)
{
	if (p->failed || p->n == PG_PIPELINE_MAX) {
		p->failed = 1;
		return -1;
	}
	if (!p->entered && PQenterPipelineMode(p->conn) != 1) {
		fail(p, "pipeline", NULL);
		return -1;
	}
	p->entered = 1;
	return 0;
}

/* Notes a statement handed to libpq (sent != 1: it was not); its index in p->res, or -1. */
static int sent(pg_pipeline_t *p, int ok, const char *what, ExecStatusType expect)
{
	if (ok != 1) {
		fail(p, what, NULL);
		return -1;
	}
	p->what[p->n] = what;
	p->expect[p->n] = expect;
	p->res[p->n] = NULL;
	return p->n++;
}

int pg_pipeline_send(pg_pipeline_t *p, const char *what, const char *name, int nparams,
                     const char *const *params, ExecStatusType expect)
{
	if (enter(p) != 0)
		return -1;
	return sent(p, PQsendQueryPrepared(p->conn, name, nparams, params, NULL, NULL, 0), what, expect);
}

int pg_pipeline_send_sql(pg_pipeline_t *p, const char *sql, ExecStatusType expect)
{
	if (enter(p) != 0)
		return -1;
	return sent(p, PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0), sql, expect);
}

/* The session is in a state this code does not know how to leave: its owner closes it. */
static int lost(pg_pipeline_t *p, const char *what)
{
	fail(p, what, NULL);
	p->lost = 1;
	return -1;
}

/* Takes statement i's result and the NULL that ends it; -1 when the session broke. */
static int collect(pg_pipeline_t *p, int i)
{
	PGresult *res = PQgetResult(p->conn);
	PGresult *extra;

	if (res == NULL)
		return -1;
	p->res[i] = res;
	if ((extra = PQgetResult(p->conn)) != NULL) {
		PQclear(extra);
		return -1;
	}
	if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
		p->failed = 1; /* skipped after an earlier statement failed, which is logged */
	else if (PQresultStatus(res) != p->expect[i])
		fail(p, p->what[i], res);
	return 0;
}

static int synced(pg_pipeline_t *p)
{
	PGresult *res = PQgetResult(p->conn);
	int ok = res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC;

	PQclear(res);
	return ok && PQexitPipelineMode(p->conn) == 1 ? 0 : -1;
}

int pg_pipeline_sync(pg_pipeline_t *p)
{
	if (!p->entered || p->synced)
		return 0;
	if (PQpipelineSync(p->conn) != 1)
		return lost(p, "pipeline sync");
	p->synced = 1;
	return 0;
}

int pg_pipeline_close(pg_pipeline_t *p)
{
	if (!p->entered)
		return p->failed ? -1 : 0;
	if (pg_pipeline_sync(p) != 0)
		return -1;
	for (int i = 0; i < p->n; i++) {
		if (collect(p, i) != 0)
			return lost(p, p->what[i]);
	}
	if (synced(p) != 0)
		return lost(p, "pipeline sync");
	p->entered = p->synced = 0;
	return p->failed ? -1 : 0;
}

void pg_pipeline_clear(pg_pipeline_t *p)
{
	for (int i = 0; i < p->n; i++) {
		PQclear(p->res[i]);
		p->res[i] = NULL;
	}
}
