/* SPDX-License-Identifier: BSD-2-Clause */
/* pg_session.h: a blocking libpq session that a dead server cannot hang, and one way to log its failures. */
#ifndef COUPONSD_PG_SESSION_H
#define COUPONSD_PG_SESSION_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Connects within timeout_ms (connect_timeout), with keepalives and
 * tcp_user_timeout that notice a dead server within dead_ms (each
 * overridable in conninfo), and asks the server to notice a dead client as
 * soon (pg_session_options()). Returns NULL with the reason in err.
 */
PGconn *pg_session_connect(const char *conninfo, int64_t timeout_ms, int64_t dead_ms,
                           const char *application_name, char *err, size_t errsize);

/*
 * The libpq `options` of a session: the server-side keepalive settings
 * derived from dead_ms (half of it idle, then a probe a second until dead_ms;
 * tcp_user_timeout dead_ms), then the operator's own options (conninfo's
 * `options`, else PGOPTIONS), which win where they set the same thing.
 * Returns a malloc()ed string, or NULL when out of memory.
 */
char *pg_session_options(const char *conninfo, int64_t dead_ms);

/* Counts and logs a failed statement: the result's message, else the connection's, without libpq's newline.
 */
void pg_session_log_failure(PGconn *conn, const char *what, const PGresult *res);

#endif
