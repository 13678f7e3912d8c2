/* SPDX-License-Identifier: BSD-2-Clause */
/* migrate.h: versioned PostgreSQL schema migrations, embedded at build time, applied under a lock. */
#ifndef COUPONSD_MIGRATE_H
#define COUPONSD_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

/*
 * The bigint key of pg_advisory_lock() held while migrating: the ASCII
 * bytes of "couponmg". Every host that starts at the same time queues on it,
 * so each migration is applied exactly once.
 */
#define MIGRATE_LOCK_KEY "7165074657936043367"

/* One file of sql/migrations, NNNN_name.sql. */
typedef struct {
	int version;
	const char *name;
	const char *sql;
} migration_t;

/* Generated at build time from sql/migrations (see Makefile.am), in version order. */
extern const migration_t migrate_embedded[];
extern const int migrate_embedded_count;

/*
 * Applies every embedded migration the database lacks, each in its own
 * transaction and in version order, recording it in schema_migrations, all
 * under pg_advisory_lock(MIGRATE_LOCK_KEY). Returns 0, or -1 with the reason
 * in err.
 */
int migrate_apply(PGconn *conn, char *err, size_t errsize);

/* Connects to conninfo, applies, disconnects: for the master at start and `couponsd --migrate`. */
int migrate_conninfo(const char *conninfo, char *err, size_t errsize);

#endif
