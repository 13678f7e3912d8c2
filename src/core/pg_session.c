/* pg_session.c: a blocking libpq session that a dead server cannot hang, and one way to log its failures. */
#include "core/pg_session.h"

#include "core/log.h"
#include "core/metrics.h"

#include <stdio.h>
#include <string.h>

/* NOTICEs ("relation already exists, skipping") are chatter, not something an operator must act on. */
static void on_notice(void *arg, const char *message)
{
	log_debug("postgresql: %.*s", (int)strcspn(message, "\n"), message);
}

PGconn *pg_session_connect(const char *conninfo, int64_t timeout_ms, const char *application_name, char *err,
                           size_t errsize)
{
	char connect_s[24], user_ms[24], idle_s[24];
	/* Ours first, then conninfo (expand_dbname): whatever the operator wrote wins. */
	const char *keys[] = {"connect_timeout",
	                      "tcp_user_timeout",
	                      "keepalives",
	                      "keepalives_idle",
	                      "keepalives_interval",
	                      "keepalives_count",
	                      "application_name",
	                      "dbname",
	                      NULL};
	const char *values[] = {connect_s, user_ms, "1", idle_s, "1", "3", application_name, conninfo, NULL};
	PGconn *conn;

	snprintf(connect_s, sizeof(connect_s), "%lld", (long long)(timeout_ms + 999) / 1000);
	snprintf(user_ms, sizeof(user_ms), "%lld", (long long)timeout_ms);
	snprintf(idle_s, sizeof(idle_s), "%lld", (long long)(timeout_ms / 1000 > 0 ? timeout_ms / 1000 : 1));
	conn = PQconnectdbParams(keys, values, 1);
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
