/* SPDX-License-Identifier: BSD-2-Clause */
/* migrate.c: versioned PostgreSQL schema migrations, embedded at build time, applied under a lock. */
#include "core/migrate.h"

#include "core/log.h"
#include "core/pg_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long `--migrate` and the master's start-up wait for PostgreSQL to answer a connection. */
#define MIGRATE_CONNECT_TIMEOUT_MS 10000

static const char create_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 " version integer PRIMARY KEY,"
                                 " name text NOT NULL,"
                                 " applied_at timestamptz NOT NULL DEFAULT now())";

/* Runs sql; on an unexpected status copies the server's first error line into err. */
static int exec_expect(PGconn *conn, const char *sql, ExecStatusType expect, char *err, size_t errsize)
{
	PGresult *res = PQexec(conn, sql);
	const char *msg;

	if (res != NULL && PQresultStatus(res) == expect) {
		PQclear(res);
		return 0;
	}
	msg = res != NULL && PQresultErrorMessage(res)[0] != '\0' ? PQresultErrorMessage(res)
	                                                          : PQerrorMessage(conn);
	snprintf(err, errsize, "%.*s", (int)strcspn(msg, "\n"), msg);
	PQclear(res);
	return -1;
}

static int version_applied(const PGresult *versions, int version)
{
	for (int i = 0; i < PQntuples(versions); i++) {
		if (atoi(PQgetvalue(versions, i, 0)) == version)
			return 1;
	}
	return 0;
}

/* A newer build may have migrated this database further: worth knowing, not fatal. */
static void note_unknown_versions(const PGresult *versions)
{
	for (int i = 0; i < PQntuples(versions); i++) {
		int v = atoi(PQgetvalue(versions, i, 0)), known = 0;

		for (int m = 0; m < migrate_embedded_count; m++)
			known |= migrate_embedded[m].version == v;
		if (!known)
			log_warn("the database has migration %04d, which this build does not know (a newer "
			         "couponsd?)",
			         v);
	}
}

/* The migration's statements (which must not BEGIN or COMMIT themselves), then its schema_migrations row. */
static int run_body(PGconn *conn, const migration_t *m, char *err, size_t errsize)
{
	char version[16];
	const char *params[] = {version, m->name};
	PGresult *res = PQexec(conn, m->sql);
	int ok = res != NULL &&
	         (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);

	if (!ok) {
		const char *msg = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn);

		snprintf(err, errsize, "migration %04d_%s: %.*s", m->version, m->name,
		         (int)strcspn(msg, "\n"), msg);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	snprintf(version, sizeof(version), "%d", m->version);
	res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2,
	                   NULL, params, NULL, NULL, 0);
	ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		snprintf(err, errsize, "recording migration %04d: %s", m->version, PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -1;
}

/* The migration and its schema_migrations row commit together, or neither does. */
static int apply_one(PGconn *conn, const migration_t *m, char *err, size_t errsize)
{
	char ignored[256];

	if (exec_expect(conn, "BEGIN", PGRES_COMMAND_OK, err, errsize) != 0)
		return -1;
	if (run_body(conn, m, err, errsize) != 0) {
		(void)exec_expect(conn, "ROLLBACK", PGRES_COMMAND_OK, ignored, sizeof(ignored));
		return -1;
	}
	if (exec_expect(conn, "COMMIT", PGRES_COMMAND_OK, err, errsize) != 0)
		return -1;
	log_info("applied migration %04d_%s", m->version, m->name);
	return 0;
}

static int apply_pending(PGconn *conn, char *err, size_t errsize)
{
	PGresult *versions;
	int rc = 0;

	if (exec_expect(conn, create_sql, PGRES_COMMAND_OK, err, errsize) != 0)
		return -1;
	versions = PQexec(conn, "SELECT version FROM schema_migrations");
	if (versions == NULL || PQresultStatus(versions) != PGRES_TUPLES_OK) {
		snprintf(err, errsize, "reading schema_migrations: %s", PQerrorMessage(conn));
		PQclear(versions);
		return -1;
	}
	note_unknown_versions(versions);
	for (int i = 0; i < migrate_embedded_count && rc == 0; i++) {
		const migration_t *m = &migrate_embedded[i];

		if (i > 0 && m->version <= migrate_embedded[i - 1].version) {
			snprintf(err, errsize, "embedded migrations out of order at %04d", m->version);
			rc = -1;
		} else if (!version_applied(versions, m->version)) {
			rc = apply_one(conn, m, err, errsize);
		}
	}
	PQclear(versions);
	return rc;
}

int migrate_apply(PGconn *conn, char *err, size_t errsize)
{
	char unlock_err[256];
	int rc;

	/* Several hosts may start together: they take turns, and each finds the work of those before it. */
	if (exec_expect(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK, err,
	                errsize) != 0)
		return -1;
	rc = apply_pending(conn, err, errsize);
	/* If the session died the lock went with it; otherwise it must not outlive the migration. */
	if (exec_expect(conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", PGRES_TUPLES_OK, unlock_err,
	                sizeof(unlock_err)) != 0 &&
	    rc == 0) {
		snprintf(err, errsize, "%s", unlock_err);
		rc = -1;
	}
	return rc;
}

int migrate_conninfo(const char *conninfo, char *err, size_t errsize)
{
	PGconn *conn =
	    pg_session_connect(conninfo, MIGRATE_CONNECT_TIMEOUT_MS, MIGRATE_CONNECT_TIMEOUT_MS, "couponsd migrate",
	                       err, errsize);
	int rc;

	if (conn == NULL)
		return -1;
	rc = migrate_apply(conn, err, errsize);
	PQfinish(conn);
	return rc;
}
