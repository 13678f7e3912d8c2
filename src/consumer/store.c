/* SPDX-License-Identifier: BSD-2-Clause */
/* store.c: the consumer's PostgreSQL side: partition ownership, and the SQL of a batch's one transaction. */
#include "consumer/store.h"

#include "consumer/pg_pipeline.h"
#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/migrate.h"
#include "core/pg_session.h"
#include "core/worker.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Row locks are taken in id order so two transactions that share coupons
 * (which only happens while partitions are being changed) cannot deadlock.
 * Times come as microseconds since the epoch so acceptedAt (milliseconds)
 * is compared exactly against [starts_at, ends_at).
 */
static const char lock_sql[] = "SELECT id, remaining, floor(extract(epoch FROM starts_at) * 1000000)::bigint,"
                               " floor(extract(epoch FROM ends_at) * 1000000)::bigint, closed"
                               " FROM coupons WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE";

/*
 * The rows that make a request a replay (same request id) or a duplicate
 * (same coupon and user): one probe of the (coupon_id, user_id) index per
 * request. A replay's row is found by it too, because an event carries its
 * request id, coupon and user together. LATERAL ... LIMIT 1 keeps the probe
 * an index lookup whatever the statistics say: as a plain join, the generic
 * plan made while issued_coupons was still empty (a fresh database, or a
 * table not yet analysed) hashed the batch and scanned the whole table for
 * every batch, so one hot coupon's decisions slowed down as it sold.
 */
static const char existing_sql[] =
    "SELECT i.request_id::text, i.coupon_id, i.user_id FROM unnest($1::bigint[], $2::bigint[]) AS p(c, u)"
    " CROSS JOIN LATERAL (SELECT request_id, coupon_id, user_id FROM issued_coupons"
    " WHERE coupon_id = p.c AND user_id = p.u LIMIT 1) AS i";

/*
 * The retry's lookup after an INSERT that did not insert every planned row:
 * by request id too, in case a request id came back with another (coupon,
 * user) than its issued row's (a hand-made event): its row makes it a replay.
 */
static const char existing_full_sql[] =
    "SELECT request_id::text, coupon_id, user_id FROM issued_coupons"
    " WHERE request_id = ANY($1::uuid[])"
    " UNION SELECT i.request_id::text, i.coupon_id, i.user_id FROM unnest($2::bigint[], $3::bigint[])"
    " AS p(c, u) CROSS JOIN LATERAL (SELECT request_id, coupon_id, user_id FROM issued_coupons"
    " WHERE coupon_id = p.c AND user_id = p.u LIMIT 1) AS i";

/*
 * ORDER BY n keeps Kafka log order, so row ids follow first-come-first-served
 * too. The count of rows inserted is checked by the server, in the
 * statement: fewer than $5 (a row that met another writer's under ON
 * CONFLICT DO NOTHING) fails the cast to int, which aborts the transaction
 * and the COMMIT queued behind it in the same pipeline (write_batch()), so
 * the COMMIT needs no round trip of its own after a client-side check.
 */
static const char insert_sql[] = "WITH ins AS (INSERT INTO issued_coupons (request_id, coupon_id, user_id,"
                                 " accepted_at) SELECT r, c, u, a FROM unnest($1::uuid[], $2::bigint[],"
                                 " $3::bigint[], $4::timestamptz[]) WITH ORDINALITY AS t(r, c, u, a, n)"
                                 " ORDER BY n ON CONFLICT DO NOTHING RETURNING 1)"
                                 " SELECT CASE WHEN count(*) = $5::int THEN count(*) ELSE"
                                 " ('issued rows short of the plan: ' || count(*) || ' of ' || $5::int)::int"
                                 " END FROM ins";

static const char update_sql[] = "UPDATE coupons SET remaining = coupons.remaining - d.k"
                                 " FROM unnest($1::bigint[], $2::int[]) AS d(id, k) WHERE coupons.id = d.id"
                                 " RETURNING coupons.id, coupons.remaining";

/*
 * Every rejection too, so a REJECTED status can be rebuilt when Redis forgot
 * it; the first decision stays. Its offset says when a replay can no longer
 * bring it back (prune_sql).
 */
static const char reject_sql[] =
    "INSERT INTO rejected_requests (request_id, coupon_id, user_id, reason, accepted_at,"
    " kafka_offset, kafka_partition) SELECT r, c, u, w, a, o, $7::int FROM unnest($1::uuid[],"
    " $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[], $6::bigint[]) AS t(r, c, u, w, a, o)"
    " ON CONFLICT (request_id) DO NOTHING";

/* A request decided REJECTED before keeps that decision when it is replayed (the first decision is final). */
static const char rejected_sql[] = "SELECT request_id::text, reason FROM rejected_requests"
                                   " WHERE request_id = ANY($1::uuid[])";

/*
 * The stock check's page: the next rows after $1 by primary key, expired ones
 * included, so one page costs at most $2 index entries however many old
 * coupons have piled up; the third column says whether it is still open for
 * requests (an expired coupon's stock key serves no request: it is skipped).
 */
static const char stock_page_sql[] = "SELECT id, remaining, ends_at IS NULL OR ends_at > now() FROM coupons"
                                     " WHERE id > $1::bigint ORDER BY id LIMIT $2::int";

/*
 * Rejections older than issue.result_ttl whose events are below the
 * committed offset ($3): a replay starts there, so one at or above it may
 * still come back, and must find its first decision. Rows from before
 * migration 0005 have no offset: by age alone. Bounded, so one run never
 * outlasts statement_timeout however much piled up.
 */
static const char prune_sql[] = "DELETE FROM rejected_requests WHERE ctid = ANY (ARRAY(SELECT ctid FROM"
                                " rejected_requests WHERE kafka_partition = $1::int AND decided_at < now() -"
                                " $2::bigint * interval '1 millisecond' AND (kafka_offset IS NULL OR"
                                " kafka_offset < $3::bigint) LIMIT 10000))";

/*
 * Right after the lock is taken, in the same session: who owns the partition
 * now, from when, and who did before (the CTE reads the row as it was).
 */
static const char owner_sql[] = "WITH prev AS (SELECT node FROM partition_owners WHERE topic = $1 AND"
                                " partition = $2::int) INSERT INTO partition_owners (topic, partition, node,"
                                " since) VALUES ($1, $2::int, $3, clock_timestamp()) ON CONFLICT (topic,"
                                " partition) DO UPDATE SET node = EXCLUDED.node, since = EXCLUDED.since"
                                " RETURNING (SELECT node FROM prev)";

/* For a standby's one log line: whom it waits behind. */
static const char owner_of_sql[] = "SELECT node, to_char(since AT TIME ZONE 'UTC',"
                                   " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM partition_owners"
                                   " WHERE topic = $1 AND partition = $2::int";

typedef struct {
	char *data;
	size_t len, cap;
	int failed;
} buf_t;

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->data != NULL ? b->data + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0 || b->failed) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n + 64;
		char *data = realloc(b->data, cap);

		if (data == NULL) {
			b->failed = 1;
			return;
		}
		b->data = data;
		b->cap = cap;
	}
}

static void buf_reset(buf_t *b)
{
	b->len = 0;
	b->failed = 0;
	buf_printf(b, "{");
}

/* Appends one array element; text elements are quoted (uuids and ISO times need no escaping). */
static void buf_element(buf_t *b, const char *text)
{
	buf_printf(b, "%s\"%s\"", b->len > 1 ? "," : "", text);
}

static void buf_int(buf_t *b, long long v)
{
	buf_printf(b, "%s%lld", b->len > 1 ? "," : "", v);
}

/* Array parameters a statement is built from (the rejections' insert takes the most). */
#define STORE_ARGS 6

struct store {
	const config_t *cfg;
	int partition;
	int32_t lock_key;
	PGconn *conn;
	int owned;       /* conn holds the partition's ownership lock */
	int full_lookup; /* the next batch looks its rows up by request id too (existing_full_sql) */
	int fault_short; /* test builds: the next INSERT expects one row more than it plans */
	int fault_fired;
	char previous[STORE_NODE]; /* partition_owners' node before the last acquisition ("" if none) */
	int cap;                   /* items the arrays below hold */
	decide_facts_t facts;      /* what the batch's lookups found */
	decision_t *decisions;     /* per item */
	store_coupon_t *out;       /* the batch's coupons and their remaining after the commit */
	buf_t arg[STORE_ARGS];
};

int32_t store_lock_key(const char *topic)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)topic; *p != '\0'; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	/* Two's complement without implementation-defined conversion: pg_locks shows the same bits. */
	return h <= INT32_MAX ? (int32_t)h : (int32_t)(h - 2147483648u) - INT32_MAX - 1;
}

store_t *store_new(const config_t *cfg, int partition)
{
	store_t *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		log_error("out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->partition = partition;
	s->lock_key = store_lock_key(cfg->kafka_topic);
	return s;
}

/* The session, and with it the ownership lock. */
static void disconnect(store_t *s)
{
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	s->owned = 0;
}

void store_free(store_t *s)
{
	if (s == NULL)
		return;
	disconnect(s);
	free(s->facts.coupons);
	free(s->facts.issued);
	free(s->facts.holders);
	free(s->facts.rejected);
	free(s->decisions);
	free(s->out);
	for (int i = 0; i < STORE_ARGS; i++)
		free(s->arg[i].data);
	free(s);
}

/* Runs one command; NULL after logging unless the result has the expected status. */
static PGresult *run(store_t *s, const char *what, PGresult *res, ExecStatusType expect)
{
	if (res != NULL && PQresultStatus(res) == expect)
		return res;
	pg_session_log_failure(s->conn, what, res);
	PQclear(res);
	return NULL;
}

static int run_simple(store_t *s, const char *sql, ExecStatusType expect)
{
	PGresult *res = run(s, sql, PQexec(s->conn, sql), expect);

	PQclear(res);
	return res != NULL ? 0 : -1;
}

/* Ends a pipeline; a session it left in an unknown state is closed, and with it the ownership lock. */
static int pipeline_close(store_t *s, pg_pipeline_t *p)
{
	int rc = pg_pipeline_close(p);

	if (p->lost)
		disconnect(s);
	return rc;
}

/*
 * Every statement of the consumer's session, the wait for the migration
 * lock included, blocks its event loop: bounded by postgres.timeout, and by
 * half of daemon.worker_timeout, so that the watchdog never kills a
 * consumer for waiting on PostgreSQL (and its successor again, in a loop).
 * Set first thing, before migrate_apply() queues on another host's lock.
 */
static int set_statement_timeout(store_t *s)
{
	int64_t half = s->cfg->daemon_worker_timeout / 2;
	char sql[64];

	snprintf(sql, sizeof(sql), "SET statement_timeout = %lld",
	         (long long)(s->cfg->postgres_timeout < half ? s->cfg->postgres_timeout : half));
	return run_simple(s, sql, PGRES_COMMAND_OK);
}

static int session_setup(store_t *s)
{
	const char *names[] = {"couponsd_lock",   "couponsd_existing", "couponsd_existing_full",
	                       "couponsd_insert", "couponsd_update",   "couponsd_reject",
	                       "couponsd_prune",  "couponsd_rejected", "couponsd_stock_page",
	                       "couponsd_owner",  "couponsd_owner_of"};
	const char *texts[] = {lock_sql,       existing_sql, existing_full_sql, insert_sql,
	                       update_sql,     reject_sql,   prune_sql,         rejected_sql,
	                       stock_page_sql, owner_sql,    owner_of_sql};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		PGresult *res =
		    run(s, names[i], PQprepare(s->conn, names[i], texts[i], 0, NULL), PGRES_COMMAND_OK);

		if (res == NULL)
			return -1;
		PQclear(res);
	}
	return 0;
}

/* Upserts this node's partition_owners row; 0, or -1 (the caller drops the session, and the lock). */
static int record_owner(store_t *s)
{
	char partition[16];
	const char *params[] = {s->cfg->kafka_topic, partition, s->cfg->daemon_node};
	PGresult *res;

	snprintf(partition, sizeof(partition), "%d", s->partition);
	res = run(s, "partition_owners", PQexecPrepared(s->conn, "couponsd_owner", 3, params, NULL, NULL, 0),
	          PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	snprintf(s->previous, sizeof(s->previous), "%s",
	         PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "");
	PQclear(res);
	return 0;
}

/* Asked again every daemon.takeover_poll by a standby, on the session it keeps: nothing is logged then. */
static store_rc_t take_lock(store_t *s)
{
	char k1[16], k2[16];
	const char *params[] = {k1, k2};
	PGresult *res;
	int owned;

	snprintf(k1, sizeof(k1), "%d", (int)s->lock_key);
	snprintf(k2, sizeof(k2), "%d", s->partition);
	res = run(s, "pg_try_advisory_lock",
	          PQexecParams(s->conn, "SELECT pg_try_advisory_lock($1::int4, $2::int4)", 2, NULL, params,
	                       NULL, NULL, 0),
	          PGRES_TUPLES_OK);
	if (res == NULL)
		return STORE_RETRY;
	owned = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!owned)
		return STORE_NOT_OWNER;
	if (record_owner(s) != 0)
		return STORE_RETRY;
	s->owned = 1;
	log_info("owning partition %d of %s (advisory lock %d, %d) as node %s", s->partition,
	         s->cfg->kafka_topic, (int)s->lock_key, s->partition, s->cfg->daemon_node);
	return STORE_OK;
}

/* A new session, migrated and prepared; 0, or -1 (logged). */
static int session_open(store_t *s)
{
	const config_t *cfg = s->cfg;
	char app[96], err[512];

	snprintf(app, sizeof(app), "couponsd: consumer partition %d, node %s", s->partition,
	         cfg->daemon_node);
	s->conn = pg_session_connect(cfg->postgres_conninfo, cfg->postgres_timeout,
	                             cfg->postgres_dead_session_timeout, app, err, sizeof(err));
	worker_beat(); /* each blocking step is bounded on its own, not their sum: say we are alive between */
	if (s->conn == NULL) {
		log_warn("postgresql: %s", err);
		return -1;
	}
	if (set_statement_timeout(s) != 0)
		return -1;
	if (cfg->postgres_auto_migrate && migrate_apply(s->conn, err, sizeof(err)) != 0) {
		worker_beat();
		log_warn("migrations: %s", err);
		return -1;
	}
	worker_beat();
	return session_setup(s);
}

store_rc_t store_ensure(store_t *s)
{
	store_rc_t rc;

	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK && s->owned)
		return STORE_OK;
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK) {
		/* A standby keeps its session and only asks again. */
		if ((rc = take_lock(s)) == STORE_RETRY)
			disconnect(s);
		return rc;
	}
	/* The ownership lock died with the old session: nothing is written before it is taken again. */
	disconnect(s);
	if (session_open(s) != 0) {
		disconnect(s);
		return STORE_RETRY;
	}
	if ((rc = take_lock(s)) == STORE_RETRY)
		disconnect(s);
	return rc;
}

/*
 * Reads what the server sent an idle session (libpq's socket never blocks):
 * a terminated backend's farewell, or the error of a connection that
 * keepalives or tcp_user_timeout gave up on, is noticed now instead of at
 * the next batch, so the owner's view (and /metrics) follows the lock.
 */
void store_probe(store_t *s)
{
	if (s->conn == NULL)
		return;
	if (PQconsumeInput(s->conn) == 0 || PQstatus(s->conn) != CONNECTION_OK) {
		if (s->owned)
			log_warn("postgresql: the session that owned partition %d is gone: %.*s",
			         s->partition, (int)strcspn(PQerrorMessage(s->conn), "\n"),
			         PQerrorMessage(s->conn));
		disconnect(s);
	}
}

int store_owned(const store_t *s)
{
	return s->owned;
}

const char *store_previous_owner(const store_t *s)
{
	return s->previous;
}

int store_owner_of(store_t *s, char *node, size_t nodesize, char *since, size_t sincesize)
{
	char partition[16];
	const char *params[] = {s->cfg->kafka_topic, partition};
	PGresult *res;
	int found;

	if (s->conn == NULL)
		return -1;
	snprintf(partition, sizeof(partition), "%d", s->partition);
	res = run(s, "partition_owners",
	          PQexecPrepared(s->conn, "couponsd_owner_of", 2, params, NULL, NULL, 0), PGRES_TUPLES_OK);
	if (res == NULL)
		return -1;
	found = PQntuples(res) == 1;
	snprintf(node, nodesize, "%s", found ? PQgetvalue(res, 0, 0) : "");
	snprintf(since, sincesize, "%s", found ? PQgetvalue(res, 0, 1) : "");
	PQclear(res);
	return found;
}

PGconn *store_session(store_t *s)
{
	return s->owned ? s->conn : NULL;
}

static int grow(void *pp, size_t size, int n)
{
	void **p = pp;
	void *q = realloc(*p, size * (size_t)(n > 0 ? n : 1));

	if (q == NULL)
		return -1;
	*p = q;
	return 0;
}

/* Sizes every per-batch array for n items (coupons and rejected rows are at most n, issued rows 2n). */
static int reserve_arrays(store_t *s, int n)
{
	decide_facts_t *f = &s->facts;

	if (n <= s->cap)
		return 0;
	if (grow(&f->coupons, sizeof(*f->coupons), n) != 0 ||
	    grow(&f->issued, sizeof(*f->issued), 2 * n) != 0 ||
	    grow(&f->holders, sizeof(*f->holders), 2 * n) != 0 ||
	    grow(&f->rejected, sizeof(*f->rejected), n) != 0 ||
	    grow(&s->decisions, sizeof(*s->decisions), n) != 0 || grow(&s->out, sizeof(*s->out), n) != 0) {
		log_error("out of memory");
		return -1;
	}
	s->cap = n;
	return 0;
}

/* Parses a bigint column that may be NULL. */
static int column_int64(const PGresult *res, int row, int col, int64_t *out)
{
	if (PQgetisnull(res, row, col))
		return 0;
	*out = strtoll(PQgetvalue(res, row, col), NULL, 10);
	return 1;
}

/* Appends a request's id, coupon and user to the arrays $1, $2 and $3 under construction. */
static void add_request(store_t *s, const issue_event_t *ev)
{
	buf_element(&s->arg[0], ev->request_id);
	buf_int(&s->arg[1], (long long)ev->coupon_id);
	buf_int(&s->arg[2], (long long)ev->user_id);
}

/* Closes the arrays under construction; -1 when one could not be built. */
static int close_args(store_t *s, int count, const char **params)
{
	for (int a = 0; a < count; a++) {
		buf_printf(&s->arg[a], "}");
		if (s->arg[a].failed)
			return -1;
		params[a] = s->arg[a].data;
	}
	return 0;
}

static void send_lock(store_t *s, pg_pipeline_t *p, const item_t *items, int n)
{
	const char *params[1];

	buf_reset(&s->arg[0]);
	for (int i = 0; i < n; i++) {
		if (item_for_store(&items[i]))
			buf_int(&s->arg[0], (long long)items[i].status.event.coupon_id);
	}
	if (close_args(s, 1, params) != 0) {
		pg_pipeline_fail(p);
		return;
	}
	pg_pipeline_send(p, "lock coupons", "couponsd_lock", 1, params, PGRES_TUPLES_OK);
}

static void read_locked(store_t *s, const PGresult *res)
{
	decide_facts_t *f = &s->facts;

	f->ncoupons = PQntuples(res) < s->cap ? PQntuples(res) : s->cap;
	for (int i = 0; i < f->ncoupons; i++) {
		decide_coupon_t *c = &f->coupons[i];

		memset(c, 0, sizeof(*c));
		column_int64(res, i, 0, &c->id);
		c->remaining = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
		c->has_start = column_int64(res, i, 2, &c->start_us);
		c->has_end = column_int64(res, i, 3, &c->end_us);
		c->closed = strcmp(PQgetvalue(res, i, 4), "t") == 0;
	}
}

/* Leaves $1 (the batch's request ids) in s->arg[0] for send_rejected(). */
static void send_existing(store_t *s, pg_pipeline_t *p, const item_t *items, int n)
{
	const char *params[3];

	for (int a = 0; a < 3; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		const issue_event_t *ev = &items[i].status.event;

		if (!item_for_store(&items[i]))
			continue;
		add_request(s, ev);
	}
	if (close_args(s, 3, params) != 0) {
		pg_pipeline_fail(p);
		return;
	}
	if (s->full_lookup)
		pg_pipeline_send(p, "find issued", "couponsd_existing_full", 3, params, PGRES_TUPLES_OK);
	else
		pg_pipeline_send(p, "find issued", "couponsd_existing", 2, params + 1, PGRES_TUPLES_OK);
}

static void read_existing(store_t *s, const PGresult *res)
{
	decide_facts_t *f = &s->facts;
	int rows = PQntuples(res) < 2 * s->cap ? PQntuples(res) : 2 * s->cap;

	for (int i = 0; i < rows; i++) {
		snprintf(f->issued[i], sizeof(f->issued[i]), "%s", PQgetvalue(res, i, 0));
		f->holders[i].coupon_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		f->holders[i].user_id = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	}
	f->nissued = f->nholders = rows;
}

static void send_rejected(store_t *s, pg_pipeline_t *p)
{
	const char *params[] = {s->arg[0].data};

	pg_pipeline_send(p, "find rejected", "couponsd_rejected", 1, params, PGRES_TUPLES_OK);
}

static void read_rejected(store_t *s, const PGresult *res)
{
	decide_facts_t *f = &s->facts;
	int rows = PQntuples(res) < s->cap ? PQntuples(res) : s->cap;

	for (int i = 0; i < rows; i++) {
		snprintf(f->rejected[i].request_id, sizeof(f->rejected[i].request_id), "%s",
		         PQgetvalue(res, i, 0));
		if (status_reason_parse(PQgetvalue(res, i, 1), &f->rejected[i].reason) != 0)
			f->rejected[i].reason = REASON_SOLD_OUT;
	}
	f->nrejected = rows;
}

/*
 * BEGIN, lock the batch's coupon rows, find its issued and rejected rows: one
 * round trip. The server still runs the lookups after the lock is granted,
 * each with a snapshot of its own, so they see whatever committed before.
 */
static int load_batch(store_t *s, const item_t *items, int n)
{
	pg_pipeline_t p = {.conn = s->conn};
	int rc;

	pg_pipeline_send_sql(&p, "BEGIN", PGRES_COMMAND_OK);
	send_lock(s, &p, items, n);
	send_existing(s, &p, items, n);
	send_rejected(s, &p);
	rc = pipeline_close(s, &p);
	if (rc == 0) {
		read_locked(s, p.res[1]);
		read_existing(s, p.res[2]);
		read_rejected(s, p.res[3]);
		decide_sort_facts(&s->facts);
	}
	pg_pipeline_clear(&p);
	return rc;
}

/* Queues the INSERT of the rows decide_batch() planned; its index in the pipeline, or -1 (none, or failed).
 */
static int send_insert(store_t *s, pg_pipeline_t *p, const item_t *items, int n)
{
	const char *params[5];
	char at[32], planned_text[16];
	int planned = 0;

	for (int a = 0; a < 4; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		const issue_event_t *ev = &items[i].status.event;

		if (!s->decisions[i].insert)
			continue;
		clock_format_iso(ev->accepted_ms, at, sizeof(at));
		add_request(s, ev);
		buf_element(&s->arg[3], at);
		planned++;
	}
	if (close_args(s, 4, params) != 0) {
		pg_pipeline_fail(p);
		return -1;
	}
	if (planned == 0)
		return -1;
	snprintf(planned_text, sizeof(planned_text), "%d", planned + s->fault_short);
	s->fault_short = 0;
	params[4] = planned_text;
	return pg_pipeline_send(p, "insert issued", "couponsd_insert", 5, params, PGRES_TUPLES_OK);
}

/*
 * Under the coupon row locks and the partition's ownership nothing else
 * inserts these rows, so a row not inserted (the INSERT failed its count
 * check) means another writer exists: the transaction is abandoned and
 * retried, and the retry's lookup, by request id too, sees that writer's
 * rows.
 */
static void check_inserted(store_t *s, const pg_pipeline_t *p, int insert)
{
	const char *state;

	if (insert < 0 || p->res[insert] == NULL || PQresultStatus(p->res[insert]) != PGRES_FATAL_ERROR)
		return;
	/* 22P02, invalid_text_representation: the count check's cast (insert_sql), not another failure. */
	state = PQresultErrorField(p->res[insert], PG_DIAG_SQLSTATE);
	if (state == NULL || strcmp(state, "22P02") != 0)
		return;
	s->full_lookup = 1;
	log_warn("postgresql: issued rows met a concurrent writer; retrying");
}

/*
 * Queues the decrement of remaining by the rows planned per coupon. It goes
 * out with the INSERT, before its count is known: if fewer rows came back,
 * check_inserted() fails the batch and the ROLLBACK takes the UPDATE back too.
 */
static int send_update(store_t *s, pg_pipeline_t *p)
{
	const decide_facts_t *f = &s->facts;
	const char *params[2];
	int touched = 0;

	buf_reset(&s->arg[0]);
	buf_reset(&s->arg[1]);
	for (int i = 0; i < f->ncoupons; i++) {
		if (f->coupons[i].issued > 0) {
			buf_int(&s->arg[0], (long long)f->coupons[i].id);
			buf_int(&s->arg[1], f->coupons[i].issued);
			touched++;
		}
	}
	if (close_args(s, 2, params) != 0) {
		pg_pipeline_fail(p);
		return -1;
	}
	if (touched == 0)
		return -1;
	return pg_pipeline_send(p, "update remaining", "couponsd_update", 2, params, PGRES_TUPLES_OK);
}

static void read_remaining(store_t *s, const PGresult *res)
{
	decide_facts_t *f = &s->facts;

	for (int i = 0; i < PQntuples(res); i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);

		for (int k = 0; k < f->ncoupons; k++) {
			if (f->coupons[k].id == id)
				f->coupons[k].remaining = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
		}
	}
}

static void send_rejections(store_t *s, pg_pipeline_t *p, const item_t *items, int n)
{
	char partition[16], at[32];
	const char *params[7];
	int rejected = 0;

	for (int a = 0; a < 6; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		const issue_event_t *ev = &items[i].status.event;

		if (!s->decisions[i].record)
			continue;
		clock_format_iso(ev->accepted_ms, at, sizeof(at));
		add_request(s, ev);
		buf_element(&s->arg[3], status_reason_name(s->decisions[i].reason));
		buf_element(&s->arg[4], at);
		if (items[i].msg != NULL)
			buf_int(&s->arg[5], (long long)items[i].msg->offset);
		else
			buf_printf(&s->arg[5], "%sNULL", s->arg[5].len > 1 ? "," : "");
		rejected++;
	}
	if (close_args(s, 6, params) != 0) {
		pg_pipeline_fail(p);
		return;
	}
	if (rejected == 0)
		return;
	snprintf(partition, sizeof(partition), "%d", s->partition);
	params[6] = partition;
	pg_pipeline_send(p, "insert rejected", "couponsd_reject", 7, params, PGRES_COMMAND_OK);
}

/*
 * Inserts the issued rows, decrements remaining, records the rejections and
 * commits: one round trip, sent before overlap runs (the caller's work for
 * the next batch) and read after it, so PostgreSQL writes and flushes this
 * batch meanwhile. 0, 1 when the COMMIT's outcome is unknown (the session
 * died after it was sent), or -1 (nothing committed).
 */
static int write_batch(store_t *s, const item_t *items, int n, store_overlap_fn overlap, void *arg)
{
	pg_pipeline_t p = {.conn = s->conn};
	int insert, update, commit, rc;

	insert = send_insert(s, &p, items, n);
	update = send_update(s, &p);
	send_rejections(s, &p, items, n);
	commit = pg_pipeline_send_sql(&p, "COMMIT", PGRES_COMMAND_OK);
	if (pg_pipeline_sync(&p) == 0 && !p.failed && overlap != NULL)
		overlap(arg);
	rc = pipeline_close(s, &p);
	check_inserted(s, &p, insert);
	if (rc == 0 && update >= 0)
		read_remaining(s, p.res[update]);
	if (rc != 0 && commit >= 0 && (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK))
		rc = 1;
	pg_pipeline_clear(&p);
	return rc;
}

/* After a failed statement: roll back (or forget a dead session, and with it the lock). */
static store_rc_t abandon(store_t *s)
{
	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK &&
	    run_simple(s, "ROLLBACK", PGRES_COMMAND_OK) == 0)
		return STORE_RETRY;
	disconnect(s);
	return STORE_RETRY;
}

/*
 * COMMIT failed. If the session died, the transaction may have committed:
 * a fresh reservation of this batch is then no longer "fresh" for the retry,
 * whose lookup may find its own row and must not give that reservation back.
 */
static store_rc_t commit_failed(store_t *s, item_t *items, int n)
{
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		log_warn("postgresql: the outcome of a COMMIT is unknown; the batch is retried");
		for (int i = 0; i < n; i++) {
			if (item_for_store(&items[i]) && items[i].gate == GATE_RESERVED)
				items[i].gate = GATE_RESERVED_EARLIER;
		}
	}
	return abandon(s);
}

static void collect_coupons(store_t *s, const store_coupon_t **coupons, int *ncoupons)
{
	for (int i = 0; i < s->facts.ncoupons; i++) {
		s->out[i].coupon_id = s->facts.coupons[i].id;
		s->out[i].remaining = s->facts.coupons[i].remaining;
	}
	*coupons = s->out;
	*ncoupons = s->facts.ncoupons;
}

/*
 * Test builds (consumer_fail_commit_ahead=P): the first transaction of
 * partition P whose overlap gated a batch ahead fails its INSERT's count
 * check, as when a row meets another writer: aborted, nothing committed,
 * with the next batch's reservations already in Redis. The overlap runs
 * before the writes are sent then, which changes nothing it does.
 */
static void fault_fail_ahead(store_t *s, store_overlap_fn overlap, void *arg)
{
	if (overlap == NULL || s->fault_fired || fault_value("consumer_fail_commit_ahead") != s->partition ||
	    overlap(arg) == 0)
		return;
	s->fault_fired = s->fault_short = 1;
	log_error("fault injection: failing a transaction while the next batch is gated ahead");
}

store_rc_t store_commit(store_t *s, item_t *items, int n, store_overlap_fn overlap, void *arg,
                        const decision_t **decisions, const store_coupon_t **coupons, int *ncoupons)
{
	*ncoupons = 0;
	*decisions = NULL;
	if (s->conn == NULL || !s->owned || reserve_arrays(s, n) != 0)
		return STORE_RETRY;
	if (load_batch(s, items, n) != 0)
		return abandon(s);
	if (decide_batch(items, n, &s->facts, s->decisions) != 0) {
		log_error("out of memory");
		return abandon(s);
	}
	fault_fail_ahead(s, overlap, arg);
	switch (write_batch(s, items, n, overlap, arg)) {
	case 0:
		break;
	case 1:
		return commit_failed(s, items, n);
	default:
		return abandon(s);
	}
	s->full_lookup = 0;
	collect_coupons(s, coupons, ncoupons);
	*decisions = s->decisions;
	return STORE_OK;
}

int store_prune(store_t *s, int64_t committed, int *deleted)
{
	char partition[16], ttl[24], below[24];
	const char *params[] = {partition, ttl, below};
	PGresult *res;

	*deleted = 0;
	if (s->conn == NULL || !s->owned)
		return -1;
	snprintf(partition, sizeof(partition), "%d", s->partition);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)s->cfg->issue_result_ttl);
	snprintf(below, sizeof(below), "%lld", (long long)(committed > 0 ? committed : 0));
	res = run(s, "prune rejected", PQexecPrepared(s->conn, "couponsd_prune", 3, params, NULL, NULL, 0),
	          PGRES_COMMAND_OK);
	if (res == NULL) {
		if (PQstatus(s->conn) != CONNECTION_OK)
			disconnect(s);
		return -1;
	}
	*deleted = atoi(PQcmdTuples(res));
	PQclear(res);
	return 0;
}

/* Reads one page's rows into out: the open coupons only; *last_id is the last id scanned. */
static int read_stock_page(const PGresult *res, store_coupon_t *out, int *n, int64_t *last_id)
{
	int rows = PQntuples(res);

	*n = 0;
	for (int i = 0; i < rows; i++) {
		int64_t id = 0;

		column_int64(res, i, 0, &id);
		*last_id = id;
		if (strcmp(PQgetvalue(res, i, 2), "t") != 0)
			continue;
		out[*n].coupon_id = id;
		out[*n].remaining = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
		(*n)++;
	}
	return rows;
}

store_rc_t store_stock_page(store_t *s, int64_t *cursor, int limit, store_coupon_t *out, int *n)
{
	char after[24], count[16];
	const char *params[] = {after, count};
	int64_t last_id = 0;
	PGresult *res;

	*n = 0;
	if (s->conn == NULL || !s->owned)
		return STORE_RETRY;
	snprintf(after, sizeof(after), "%lld", (long long)*cursor);
	snprintf(count, sizeof(count), "%d", limit);
	res = run(s, "stock check", PQexecPrepared(s->conn, "couponsd_stock_page", 2, params, NULL, NULL, 0),
	          PGRES_TUPLES_OK);
	if (res == NULL) {
		if (PQstatus(s->conn) != CONNECTION_OK)
			disconnect(s);
		return STORE_RETRY;
	}
	/* A short page was the last one: the next pass starts from the first coupon again. */
	*cursor = read_stock_page(res, out, n, &last_id) < limit ? 0 : last_id;
	PQclear(res);
	return STORE_OK;
}
