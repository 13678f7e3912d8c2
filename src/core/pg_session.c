/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_session.c: a blocking libpq session that a dead server cannot hang, and one way to log its failures. */
#include "core/pg_session.h"

#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NOTICEs ("relation already exists, skipping") are chatter, not something an operator must act on. */
static void on_notice(void *arg, const char *message)
{
	log_debug("postgresql: %.*s", (int)strcspn(message, "\n"), message);
}

/* The operator's options: conninfo's `options`, else PGOPTIONS (which an explicit `options` would hide). */
static char *operator_options(const char *conninfo)
{
	char *errmsg = NULL, *found = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
	const char *env = getenv("PGOPTIONS");

	/* A plain database name is no connection string; a broken one fails at connect, saying why. */
	PQfreemem(errmsg);
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "options") == 0 && o->val != NULL)
			found = strdup(o->val);
	}
	PQconninfoFree(opts);
	if (found == NULL && env != NULL)
		found = strdup(env);
	return found;
}

/* Keepalive timing that notices a silent peer within dead_ms: idle half of it, then 1 s probes. */
static void keepalive_plan(int64_t dead_ms, long long *idle_s, long long *count)
{
	long long dead_s = dead_ms / 1000 > 1 ? dead_ms / 1000 : 1;

	*idle_s = dead_s / 2 > 0 ? dead_s / 2 : 1;
	*count = dead_s - *idle_s > 0 ? dead_s - *idle_s : 1;
}

/*
 * A consumer's partition lock lives in its server session. When its host
 * vanishes (a network cut, a dead machine) the server ends that session
 * only when TCP says the client is gone, and the server's keepalive defaults
 * (the kernel's: 2 h idle) let a zombie hold the lock for hours, keeping the
 * standby host out. So the server is told to probe like the client does:
 * half of dead_ms idle, then every second until dead_ms, and to give up on
 * unacknowledged data after dead_ms (postgres.dead_session_timeout). Later
 * -c options win, so the operator's come last.
 */
char *pg_session_options(const char *conninfo, int64_t dead_ms)
{
	long long idle_s, count;
	char ours[160], *theirs = operator_options(conninfo), *all;
	size_t size;

	keepalive_plan(dead_ms, &idle_s, &count);
	snprintf(ours, sizeof(ours),
	         "-c tcp_keepalives_idle=%lld -c tcp_keepalives_interval=1 -c tcp_keepalives_count=%lld "
	         "-c tcp_user_timeout=%lld",
	         idle_s, count, (long long)dead_ms);
	size = strlen(ours) + (theirs != NULL ? strlen(theirs) + 1 : 0) + 1;
	all = malloc(size);
	if (all != NULL)
		snprintf(all, size, "%s%s%s", ours, theirs != NULL ? " " : "", theirs != NULL ? theirs : "");
	free(theirs);
	return all;
}

PGconn *pg_session_connect(const char *conninfo, int64_t timeout_ms, int64_t dead_ms,
                           const char *application_name, char *err, size_t errsize)
{
	char connect_s[24], user_ms[24], idle_s[24], count_s[24], *options = pg_session_options(conninfo, dead_ms);
	/*
	 * Ours first, then conninfo (expand_dbname): whatever the operator wrote
	 * wins. `options` comes after it, already merged with the operator's.
	 */
	const char *keys[] = {
	    "connect_timeout",  "tcp_user_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
	    "keepalives_count", "application_name", "dbname",     "options",         NULL};
	const char *values[] = {connect_s, user_ms,          "1",      idle_s,  "1",
	                        count_s,   application_name, conninfo, options, NULL};
	long long idle, count;
	PGconn *conn;

	if (options == NULL) {
		snprintf(err, errsize, "out of memory");
		return NULL;
	}
	keepalive_plan(dead_ms, &idle, &count);
	snprintf(connect_s, sizeof(connect_s), "%lld", (long long)(timeout_ms + 999) / 1000);
	snprintf(user_ms, sizeof(user_ms), "%lld", (long long)dead_ms);
	snprintf(idle_s, sizeof(idle_s), "%lld", idle);
	snprintf(count_s, sizeof(count_s), "%lld", count);
	conn = PQconnectdbParams(keys, values, 1);
	free(options);
	if (conn == NULL) {
		snprintf(err, errsize, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *msg = PQerrorMessage(conn);

		snprintf(err, errsize, "%.*s", (int)strcspn(msg, "\n"), msg);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, on_notice, NULL);
	return conn;
}

void pg_session_log_failure(PGconn *conn, const char *what, const PGresult *res)
{
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";

	if (msg[0] == '\0')
		msg = PQerrorMessage(conn);
	metrics_inc(M_POSTGRES_ERRORS);
	log_warn("postgresql %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}
