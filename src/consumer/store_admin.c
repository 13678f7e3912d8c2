/* SPDX-License-Identifier: BSD-2-Clause */
/* store_admin.c: an admin change's transaction: lock the coupon, decide the change, update, audit. */
#include "consumer/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/pg_session.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Milliseconds, so the window compares exactly with the ms the API takes. */
static const char coupon_sql[] = "SELECT name, total_quantity, remaining,"
                                 " floor(extract(epoch FROM starts_at) * 1000)::bigint,"
                                 " floor(extract(epoch FROM ends_at) * 1000)::bigint, closed"
                                 " FROM coupons WHERE id = $1::bigint FOR UPDATE";

static const char seen_sql[] = "SELECT outcome FROM coupon_changes WHERE change_id = $1::uuid";

#define MS_TO_TS(n)                                                                                          \
	"(CASE WHEN $" #n "::bigint IS NULL THEN NULL ELSE timestamptz 'epoch' + $" #n                       \
	"::bigint * interval '1 millisecond' END)"

static const char update_sql[] = "UPDATE coupons SET name = $2, total_quantity = $3::integer,"
                                 " remaining = $4::integer, starts_at = " MS_TO_TS(5) ", ends_at = " MS_TO_TS(
                                     6) ", closed = $7::boolean WHERE id = $1::bigint";

static const char record_sql[] =
    "INSERT INTO coupon_changes (change_id, coupon_id, token_id, change, outcome, error, message, before,"
    " after, requested_at, kafka_partition, kafka_offset) VALUES ($1::uuid, $2::bigint, $3, $4::jsonb, $5,"
    " $6, $7, $8::jsonb, $9::jsonb, " MS_TO_TS(10) ", $11::int, $12::bigint)";

static PGresult *exec(store_t *s, const char *what, const char *sql, int n, const char *const *params,
                      ExecStatusType expect)
{
	PGconn *conn = store_session(s);
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

	if (res != NULL && PQresultStatus(res) == expect)
		return res;
	pg_session_log_failure(conn, what, res);
	PQclear(res);
	return NULL;
}

static int exec_command(store_t *s, const char *what, const char *sql, int n, const char *const *params)
{
	PGresult *res = exec(s, what, sql, n, params, PGRES_COMMAND_OK);

	PQclear(res);
	return res != NULL ? 0 : -1;
}

static void read_coupon(const PGresult *res, admin_coupon_t *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", PQgetvalue(res, 0, 0));
	c->total = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	c->remaining = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	c->has_start = !PQgetisnull(res, 0, 3);
	c->start_ms = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	c->has_end = !PQgetisnull(res, 0, 4);
	c->end_ms = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	c->closed = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
}

/* 1 with the coupon locked, 0 when it does not exist, -1 on failure. */
static int lock_coupon(store_t *s, const char *id, admin_coupon_t *c)
{
	const char *params[] = {id};
	PGresult *res = exec(s, "lock coupon", coupon_sql, 1, params, PGRES_TUPLES_OK);
	int found;

	if (res == NULL)
		return -1;
	found = PQntuples(res) == 1;
	if (found)
		read_coupon(res, c);
	PQclear(res);
	return found;
}

/* 1 when the change was decided before (a replay), 0 if not, -1 on failure. */
static int change_seen(store_t *s, const admin_event_t *ev)
{
	const char *params[] = {ev->change_id};
	PGresult *res = exec(s, "find change", seen_sql, 1, params, PGRES_TUPLES_OK);
	int seen;

	if (res == NULL)
		return -1;
	seen = PQntuples(res) > 0;
	PQclear(res);
	return seen;
}

/* The coupon as the audit trail shows it, before and after. */
static char *coupon_json(const admin_coupon_t *c)
{
	json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:o, s:o, s:b}", "name", c->name, "totalQuantity",
	                      (json_int_t)c->total, "remaining", (json_int_t)c->remaining, "issued",
	                      (json_int_t)(c->total - c->remaining), "startsAt",
	                      admin_time_json(!c->has_start, c->start_ms), "endsAt",
	                      admin_time_json(!c->has_end, c->end_ms), "closed", c->closed);
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	return text;
}

static int update_coupon(store_t *s, const char *id, const admin_coupon_t *c)
{
	char total[24], remaining[24], starts[24], ends[24];
	const char *params[] = {id,
	                        c->name,
	                        total,
	                        remaining,
	                        c->has_start ? starts : NULL,
	                        c->has_end ? ends : NULL,
	                        c->closed ? "t" : "f"};

	snprintf(total, sizeof(total), "%lld", (long long)c->total);
	snprintf(remaining, sizeof(remaining), "%lld", (long long)c->remaining);
	snprintf(starts, sizeof(starts), "%lld", (long long)c->start_ms);
	snprintf(ends, sizeof(ends), "%lld", (long long)c->end_ms);
	return exec_command(s, "update coupon", update_sql, 7, params);
}

typedef struct {
	const char *outcome, *error, *message;
	char *before, *after, *change;
} record_t;

static int record_change(store_t *s, const admin_event_t *ev, const char *id, const record_t *r,
                         int partition, int64_t offset)
{
	char at[24], part[16], off[24];
	const char *params[] = {ev->change_id, id,        ev->token_id, r->change, r->outcome, r->error,
	                        r->message,    r->before, r->after,     at,        part,       off};

	snprintf(at, sizeof(at), "%lld", (long long)ev->accepted_ms);
	snprintf(part, sizeof(part), "%d", partition);
	snprintf(off, sizeof(off), "%lld", (long long)offset);
	return exec_command(s, "record change", record_sql, 12, params);
}

/* A change of a coupon that does not exist (a JVM producer, or a coupon id typed wrong) is refused on record.
 */
static int record_missing(store_t *s, const admin_event_t *ev, const char *id, int partition, int64_t offset)
{
	record_t r = {"REJECTED", "COUPON_NOT_FOUND", "no such coupon", NULL, NULL, admin_change_json(ev)};
	int rc = r.change != NULL ? record_change(s, ev, id, &r, partition, offset) : -1;

	free(r.change);
	return rc;
}

/* Decides and writes a fresh change; the transaction is open and the coupon row locked. */
static int decide_and_write(store_t *s, const admin_event_t *ev, const char *id, const admin_coupon_t *before,
                            store_change_t *out, int partition, int64_t offset)
{
	admin_coupon_t after;
	char msg[160];
	record_t r;
	int rc = -1;

	out->outcome = decide_admin(ev, before, clock_real_ms(), &after, msg, sizeof(msg));
	out->remaining = after.remaining;
	r.outcome = out->outcome == ADMIN_APPLIED ? "APPLIED" : "REJECTED";
	r.error = decide_admin_error(out->outcome);
	r.message = out->outcome == ADMIN_APPLIED ? NULL : msg;
	r.before = coupon_json(before);
	r.after = coupon_json(&after);
	r.change = admin_change_json(ev);
	if (r.change != NULL && r.before != NULL && r.after != NULL &&
	    (out->outcome != ADMIN_APPLIED || update_coupon(s, id, &after) == 0))
		rc = record_change(s, ev, id, &r, partition, offset);
	free(r.change);
	free(r.before);
	free(r.after);
	return rc;
}

static int in_transaction(store_t *s, const admin_event_t *ev, int partition, int64_t offset,
                          store_change_t *out)
{
	admin_coupon_t before;
	char id[24];
	int found, seen;

	snprintf(id, sizeof(id), "%lld", (long long)ev->coupon_id);
	/* The row lock first: the batches of another partition owner (during a handover) wait for it. */
	if ((found = lock_coupon(s, id, &before)) < 0 || (seen = change_seen(s, ev)) < 0)
		return -1;
	out->exists = found;
	out->remaining = found ? before.remaining : 0;
	out->outcome = ADMIN_APPLIED;
	out->replay = seen;
	if (seen)
		return 0;
	if (!found)
		return record_missing(s, ev, id, partition, offset);
	return decide_and_write(s, ev, id, &before, out, partition, offset);
}

store_rc_t store_apply_change(store_t *s, const admin_event_t *ev, int partition, int64_t offset,
                              store_change_t *out)
{
	memset(out, 0, sizeof(*out));
	if (exec_command(s, "BEGIN", "BEGIN", 0, NULL) != 0)
		return STORE_RETRY;
	if (in_transaction(s, ev, partition, offset, out) != 0 ||
	    exec_command(s, "COMMIT", "COMMIT", 0, NULL) != 0) {
		PQclear(PQexec(store_session(s), "ROLLBACK"));
		return STORE_RETRY;
	}
	if (!out->replay)
		log_info("coupon %lld: admin change %s by %s: %s", (long long)ev->coupon_id, ev->change_id,
		         ev->token_id,
		         out->outcome == ADMIN_APPLIED ? "applied" : decide_admin_error(out->outcome));
	return STORE_OK;
}
