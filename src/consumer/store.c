/* store.c: the consumer's PostgreSQL side: partition ownership and the write-through of a batch. */
#include "consumer/store.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/migrate.h"

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
                               " floor(extract(epoch FROM ends_at) * 1000000)::bigint"
                               " FROM coupons WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE";

/* The rows that make a request a replay (same request id) or a duplicate (same coupon and user). */
static const char existing_sql[] =
    "SELECT request_id::text, coupon_id, user_id FROM issued_coupons"
    " WHERE request_id = ANY($1::uuid[])"
    " UNION SELECT i.request_id::text, i.coupon_id, i.user_id FROM issued_coupons i"
    " JOIN unnest($2::bigint[], $3::bigint[]) AS p(c, u)"
    " ON i.coupon_id = p.c AND i.user_id = p.u";

/* ORDER BY n keeps Kafka log order, so row ids follow first-come-first-served too. */
static const char insert_sql[] = "INSERT INTO issued_coupons (request_id, coupon_id, user_id, accepted_at)"
                                 " SELECT r, c, u, a FROM unnest($1::uuid[], $2::bigint[], $3::bigint[],"
                                 " $4::timestamptz[]) WITH ORDINALITY AS t(r, c, u, a, n) ORDER BY n"
                                 " ON CONFLICT DO NOTHING RETURNING request_id::text";

static const char update_sql[] = "UPDATE coupons SET remaining = coupons.remaining - d.k"
                                 " FROM unnest($1::bigint[], $2::int[]) AS d(id, k) WHERE coupons.id = d.id"
                                 " RETURNING coupons.id, coupons.remaining";

/* Every rejection too, so a REJECTED status can be rebuilt when Redis forgot it; the first decision stays. */
static const char reject_sql[] =
    "INSERT INTO rejected_requests (request_id, coupon_id, user_id, reason, accepted_at,"
    " kafka_partition) SELECT r, c, u, w, a, $6::int FROM unnest($1::uuid[],"
    " $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[]) AS t(r, c, u, w, a)"
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

/* Bounded, so one run never outlasts statement_timeout however much piled up. */
static const char prune_sql[] = "DELETE FROM rejected_requests WHERE ctid = ANY (ARRAY(SELECT ctid FROM"
                                " rejected_requests WHERE kafka_partition = $1::int AND decided_at < now() -"
                                " $2::bigint * interval '1 millisecond' LIMIT 10000))";

typedef struct {
	char *data;
	size_t len, cap;
	int failed;
} buf_t;

/* A coupon row locked by the transaction. */
typedef struct {
	int64_t id;
	int remaining; /* as locked, then after the UPDATE */
	int room;      /* what this batch may still issue */
	int issued;    /* rows this batch inserts (as planned; the INSERT's count is checked) */
	int has_start, has_end;
	int64_t start_us, end_us;
} coupon_row_t;

typedef struct {
	int64_t coupon_id, user_id;
	int index; /* item index, or -1 for a row already in issued_coupons */
} pair_t;

typedef struct {
	const char *request_id;
	int index;
} rid_t;

/* A request already in rejected_requests, and why (request_id first: cmp_existing compares it). */
typedef struct {
	char request_id[UUID_TEXT_LEN + 1];
	reject_reason_t reason;
} prior_t;

struct store {
	const config_t *cfg;
	int partition;
	int32_t lock_key;
	PGconn *conn;
	int cap;               /* items the arrays below hold */
	coupon_row_t *coupons; /* locked rows, sorted by id */
	int ncoupons;
	char (*existing)[UUID_TEXT_LEN + 1]; /* request ids already in issued_coupons, sorted */
	int nexisting;
	pair_t *holders; /* (coupon, user) already in issued_coupons, sorted */
	int nholders;
	prior_t *rejected; /* request ids already in rejected_requests, sorted */
	int nrejected;
	int *primary;              /* per item: the first item with the same request id */
	int *pair_leader;          /* per item: the first item with the same (coupon, user) */
	unsigned char *pair_taken; /* per leader: an item of the pair is being inserted */
	unsigned char *planned;    /* per item: chosen for INSERT */
	store_coupon_t *out;
	buf_t arg[5];
};

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

/* NOTICEs ("relation already exists, skipping") are chatter, not something an operator must act on. */
static void on_notice(void *arg, const char *message)
{
	log_debug("postgresql: %.*s", (int)strcspn(message, "\n"), message);
}

PGconn *store_pg_connect(const char *conninfo, int64_t timeout_ms, const char *application_name, char *err,
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

static void disconnect(store_t *s)
{
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
}

void store_free(store_t *s)
{
	if (s == NULL)
		return;
	disconnect(s);
	free(s->coupons);
	free(s->existing);
	free(s->rejected);
	free(s->holders);
	free(s->primary);
	free(s->pair_leader);
	free(s->pair_taken);
	free(s->planned);
	free(s->out);
	for (int i = 0; i < 5; i++)
		free(s->arg[i].data);
	free(s);
}

/* The text of the last failure, without libpq's trailing newline. */
static void log_pg_failure(store_t *s, const char *what, const PGresult *res)
{
	const char *msg = res != NULL ? PQresultErrorMessage(res) : "";

	if (msg[0] == '\0')
		msg = PQerrorMessage(s->conn);
	metrics_inc(M_POSTGRES_ERRORS);
	log_warn("postgresql %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
}

/* Runs one command; NULL after logging unless the result has the expected status. */
static PGresult *run(store_t *s, const char *what, PGresult *res, ExecStatusType expect)
{
	if (res != NULL && PQresultStatus(res) == expect)
		return res;
	log_pg_failure(s, what, res);
	PQclear(res);
	return NULL;
}

static int run_simple(store_t *s, const char *sql, ExecStatusType expect)
{
	PGresult *res = run(s, sql, PQexec(s->conn, sql), expect);

	PQclear(res);
	return res != NULL ? 0 : -1;
}

/*
 * A pipeline: statements sent back to back and answered in order after one
 * Sync, so a batch waits for PostgreSQL once per pipeline rather than once
 * per statement. The server runs them one after the other, as before.
 */
#define PIPE_MAX 4

typedef struct {
	const char *what[PIPE_MAX]; /* for the log, as run() names a statement */
	ExecStatusType expect[PIPE_MAX];
	PGresult *res[PIPE_MAX];
	int n;
	int entered; /* the connection is in pipeline mode */
	int failed;  /* a statement was not sent, failed or was aborted: the transaction is lost */
	int logged;  /* one line per failed pipeline: the statements after an error only say "aborted" */
} pipe_t;

static void pipe_fail(store_t *s, pipe_t *p, const char *what, const PGresult *res)
{
	if (!p->logged)
		log_pg_failure(s, what, res);
	p->failed = p->logged = 1;
}

/* Enters pipeline mode with the first statement, so a pipeline with nothing to send costs nothing. */
static int pipe_enter(store_t *s, pipe_t *p)
{
	if (p->failed || p->n == PIPE_MAX) {
		p->failed = 1;
		return -1;
	}
	if (!p->entered && PQenterPipelineMode(s->conn) != 1) {
		pipe_fail(s, p, "pipeline", NULL);
		return -1;
	}
	p->entered = 1;
	return 0;
}

/* Notes a statement handed to libpq (sent != 1: it was not); its index in p->res, or -1. */
static int pipe_sent(store_t *s, pipe_t *p, int sent, const char *what, ExecStatusType expect)
{
	if (sent != 1) {
		pipe_fail(s, p, what, NULL);
		return -1;
	}
	p->what[p->n] = what;
	p->expect[p->n] = expect;
	p->res[p->n] = NULL;
	return p->n++;
}

/* Queues a prepared statement (libpq copies the parameters: their buffers may be reused at once). */
static int pipe_send(store_t *s, pipe_t *p, const char *what, const char *name, int nparams,
                     const char *const *params, ExecStatusType expect)
{
	if (pipe_enter(s, p) != 0)
		return -1;
	return pipe_sent(s, p, PQsendQueryPrepared(s->conn, name, nparams, params, NULL, NULL, 0), what,
	                 expect);
}

/* Queues a statement without parameters (the extended protocol: a pipeline allows nothing else). */
static int pipe_send_sql(store_t *s, pipe_t *p, const char *sql, ExecStatusType expect)
{
	if (pipe_enter(s, p) != 0)
		return -1;
	return pipe_sent(s, p, PQsendQueryParams(s->conn, sql, 0, NULL, NULL, NULL, NULL, 0), sql, expect);
}

/*
 * The session is in a state this code does not know how to leave: close it.
 * Its transaction dies with it, and so does the ownership lock, which
 * store_ensure() takes again before anything else is written.
 */
static int pipe_lost(store_t *s, pipe_t *p, const char *what)
{
	pipe_fail(s, p, what, NULL);
	disconnect(s);
	return -1;
}

/* Takes statement i's result and the NULL that ends it; -1 when the session broke. */
static int pipe_collect(store_t *s, pipe_t *p, int i)
{
	PGresult *res = PQgetResult(s->conn);
	PGresult *extra;

	if (res == NULL)
		return -1;
	p->res[i] = res;
	if ((extra = PQgetResult(s->conn)) != NULL) {
		PQclear(extra);
		return -1;
	}
	if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
		p->failed = 1; /* skipped after an earlier statement failed, which is logged */
	else if (PQresultStatus(res) != p->expect[i])
		pipe_fail(s, p, p->what[i], res);
	return 0;
}

static int pipe_synced(store_t *s)
{
	PGresult *res = PQgetResult(s->conn);
	int synced = res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC;

	PQclear(res);
	return synced && PQexitPipelineMode(s->conn) == 1 ? 0 : -1;
}

/*
 * Sends the Sync and collects every statement's result. After a failed
 * statement the server skips the rest up to the Sync (PGRES_PIPELINE_ABORTED)
 * and leaves the transaction open but failed, for abandon()'s ROLLBACK: the
 * connection is back in normal mode then, or closed (pipe_lost).
 */
static int pipe_close(store_t *s, pipe_t *p)
{
	if (!p->entered)
		return p->failed ? -1 : 0;
	if (PQpipelineSync(s->conn) != 1)
		return pipe_lost(s, p, "pipeline sync");
	for (int i = 0; i < p->n; i++) {
		if (pipe_collect(s, p, i) != 0)
			return pipe_lost(s, p, p->what[i]);
	}
	if (pipe_synced(s) != 0)
		return pipe_lost(s, p, "pipeline sync");
	p->entered = 0;
	return p->failed ? -1 : 0;
}

static void pipe_clear(pipe_t *p)
{
	for (int i = 0; i < p->n; i++) {
		PQclear(p->res[i]);
		p->res[i] = NULL;
	}
}

static int session_setup(store_t *s)
{
	char sql[64];
	const char *names[] = {"couponsd_lock",     "couponsd_existing",  "couponsd_insert",
	                       "couponsd_update",   "couponsd_reject",    "couponsd_prune",
	                       "couponsd_rejected", "couponsd_stock_page"};
	const char *texts[] = {lock_sql,   existing_sql, insert_sql,   update_sql,
	                       reject_sql, prune_sql,    rejected_sql, stock_page_sql};

	/* A statement stuck on a lock or a sick server must not stall the partition unnoticed. */
	snprintf(sql, sizeof(sql), "SET statement_timeout = %lld", (long long)s->cfg->postgres_timeout);
	if (run_simple(s, sql, PGRES_COMMAND_OK) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		PGresult *res =
		    run(s, names[i], PQprepare(s->conn, names[i], texts[i], 0, NULL), PGRES_COMMAND_OK);

		if (res == NULL)
			return -1;
		PQclear(res);
	}
	return 0;
}

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
	log_info("owning partition %d of %s (advisory lock %d, %d)", s->partition, s->cfg->kafka_topic,
	         (int)s->lock_key, s->partition);
	return STORE_OK;
}

store_rc_t store_ensure(store_t *s)
{
	const config_t *cfg = s->cfg;
	char app[64], err[512];
	store_rc_t rc;

	if (s->conn != NULL && PQstatus(s->conn) == CONNECTION_OK)
		return STORE_OK;
	/* The ownership lock died with the old session: nothing is written before it is taken again. */
	disconnect(s);
	snprintf(app, sizeof(app), "couponsd consumer %d", s->partition);
	s->conn = store_pg_connect(cfg->postgres_conninfo, cfg->postgres_timeout, app, err, sizeof(err));
	if (s->conn == NULL) {
		log_warn("postgresql: %s", err);
		return STORE_RETRY;
	}
	if (cfg->postgres_auto_migrate && migrate_apply(s->conn, err, sizeof(err)) != 0) {
		log_warn("migrations: %s", err);
		disconnect(s);
		return STORE_RETRY;
	}
	if (session_setup(s) != 0) {
		disconnect(s);
		return STORE_RETRY;
	}
	if ((rc = take_lock(s)) != STORE_OK)
		disconnect(s);
	return rc;
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

/* Sizes every per-batch array for n items (coupons and existing rows are at most n, holders 2n). */
static int reserve_arrays(store_t *s, int n)
{
	if (n <= s->cap)
		return 0;
	if (grow(&s->coupons, sizeof(*s->coupons), n) != 0 ||
	    grow(&s->existing, sizeof(*s->existing), 2 * n) != 0 ||
	    grow(&s->holders, sizeof(*s->holders), 2 * n) != 0 ||
	    grow(&s->rejected, sizeof(*s->rejected), n) != 0 || grow(&s->primary, sizeof(int), n) != 0 ||
	    grow(&s->pair_leader, sizeof(int), n) != 0 || grow(&s->pair_taken, 1, n) != 0 ||
	    grow(&s->planned, 1, n) != 0 || grow(&s->out, sizeof(*s->out), n) != 0) {
		log_error("out of memory");
		return -1;
	}
	s->cap = n;
	return 0;
}

static int cmp_rid(const void *a, const void *b)
{
	const rid_t *x = a, *y = b;
	int c = strcmp(x->request_id, y->request_id);

	return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

static int cmp_pair(const void *a, const void *b)
{
	const pair_t *x = a, *y = b;

	if (x->coupon_id != y->coupon_id)
		return x->coupon_id < y->coupon_id ? -1 : 1;
	if (x->user_id != y->user_id)
		return x->user_id < y->user_id ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/*
 * The same event twice in one batch (a producer retry) is one request:
 * the later copy follows the first. Two requests of one user for one coupon
 * are two requests: the later one is ALREADY_ISSUED if the first is issued.
 */
static int group_items(store_t *s, const store_item_t *items, int n)
{
	rid_t *rids = malloc(sizeof(*rids) * (size_t)n);
	pair_t *pairs = malloc(sizeof(*pairs) * (size_t)n);

	if (rids == NULL || pairs == NULL) {
		free(rids);
		free(pairs);
		log_error("out of memory");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		rids[i] = (rid_t){items[i].event->request_id, i};
		pairs[i] = (pair_t){items[i].event->coupon_id, items[i].event->user_id, i};
	}
	qsort(rids, (size_t)n, sizeof(*rids), cmp_rid);
	qsort(pairs, (size_t)n, sizeof(*pairs), cmp_pair);
	for (int i = 0; i < n; i++) {
		int same_rid = i > 0 && strcmp(rids[i].request_id, rids[i - 1].request_id) == 0;
		int same_pair = i > 0 && pairs[i].coupon_id == pairs[i - 1].coupon_id &&
		                pairs[i].user_id == pairs[i - 1].user_id;

		s->primary[rids[i].index] = same_rid ? s->primary[rids[i - 1].index] : rids[i].index;
		s->pair_leader[pairs[i].index] =
		    same_pair ? s->pair_leader[pairs[i - 1].index] : pairs[i].index;
	}
	free(rids);
	free(pairs);
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

static void send_lock(store_t *s, pipe_t *p, const store_item_t *items, int n)
{
	const char *params[1];

	buf_reset(&s->arg[0]);
	for (int i = 0; i < n; i++)
		buf_int(&s->arg[0], (long long)items[i].event->coupon_id);
	buf_printf(&s->arg[0], "}");
	if (s->arg[0].failed) {
		p->failed = 1;
		return;
	}
	params[0] = s->arg[0].data;
	pipe_send(s, p, "lock coupons", "couponsd_lock", 1, params, PGRES_TUPLES_OK);
}

static void read_locked(store_t *s, const PGresult *res)
{
	s->ncoupons = PQntuples(res) < s->cap ? PQntuples(res) : s->cap;
	for (int i = 0; i < s->ncoupons; i++) {
		coupon_row_t *c = &s->coupons[i];

		memset(c, 0, sizeof(*c));
		column_int64(res, i, 0, &c->id);
		c->remaining = c->room = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
		c->has_start = column_int64(res, i, 2, &c->start_us);
		c->has_end = column_int64(res, i, 3, &c->end_us);
	}
}

/* Leaves $1 (the batch's request ids) in s->arg[0] for send_rejected(). */
static void send_existing(store_t *s, pipe_t *p, const store_item_t *items, int n)
{
	const char *params[3];

	for (int a = 0; a < 3; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		buf_element(&s->arg[0], items[i].event->request_id);
		buf_int(&s->arg[1], (long long)items[i].event->coupon_id);
		buf_int(&s->arg[2], (long long)items[i].event->user_id);
	}
	for (int a = 0; a < 3; a++) {
		buf_printf(&s->arg[a], "}");
		if (s->arg[a].failed) {
			p->failed = 1;
			return;
		}
		params[a] = s->arg[a].data;
	}
	pipe_send(s, p, "find issued", "couponsd_existing", 3, params, PGRES_TUPLES_OK);
}

static int cmp_existing(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void read_existing(store_t *s, const PGresult *res)
{
	int rows = PQntuples(res) < 2 * s->cap ? PQntuples(res) : 2 * s->cap;

	for (int i = 0; i < rows; i++) {
		snprintf(s->existing[i], sizeof(s->existing[i]), "%s", PQgetvalue(res, i, 0));
		s->holders[i].coupon_id = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		s->holders[i].user_id = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		s->holders[i].index = -1;
	}
	s->nexisting = s->nholders = rows;
	qsort(s->existing, (size_t)rows, sizeof(*s->existing), cmp_existing);
	qsort(s->holders, (size_t)rows, sizeof(*s->holders), cmp_pair);
}

static void send_rejected(store_t *s, pipe_t *p)
{
	const char *params[] = {s->arg[0].data};

	pipe_send(s, p, "find rejected", "couponsd_rejected", 1, params, PGRES_TUPLES_OK);
}

static void read_rejected(store_t *s, const PGresult *res)
{
	int rows = PQntuples(res) < s->cap ? PQntuples(res) : s->cap;

	for (int i = 0; i < rows; i++) {
		snprintf(s->rejected[i].request_id, sizeof(s->rejected[i].request_id), "%s",
		         PQgetvalue(res, i, 0));
		if (status_reason_parse(PQgetvalue(res, i, 1), &s->rejected[i].reason) != 0)
			s->rejected[i].reason = REASON_SOLD_OUT;
	}
	s->nrejected = rows;
	qsort(s->rejected, (size_t)rows, sizeof(*s->rejected), cmp_existing);
}

/*
 * BEGIN, lock the batch's coupon rows, find its issued and rejected rows: one
 * round trip. The server still runs the lookups after the lock is granted,
 * each with a snapshot of its own, so they see whatever committed before.
 */
static int load_batch(store_t *s, const store_item_t *items, int n)
{
	pipe_t p = {0};
	int rc;

	pipe_send_sql(s, &p, "BEGIN", PGRES_COMMAND_OK);
	send_lock(s, &p, items, n);
	send_existing(s, &p, items, n);
	send_rejected(s, &p);
	rc = pipe_close(s, &p);
	if (rc == 0) {
		read_locked(s, p.res[1]);
		read_existing(s, p.res[2]);
		read_rejected(s, p.res[3]);
	}
	pipe_clear(&p);
	return rc;
}

static const prior_t *prior_rejection(const store_t *s, const char *request_id)
{
	return bsearch(request_id, s->rejected, (size_t)s->nrejected, sizeof(*s->rejected), cmp_existing);
}

static int request_exists(const store_t *s, const char *request_id)
{
	return bsearch(request_id, s->existing, (size_t)s->nexisting, sizeof(*s->existing), cmp_existing) !=
	       NULL;
}

static int user_holds(const store_t *s, const issue_event_t *ev)
{
	pair_t key = {ev->coupon_id, ev->user_id, -1};

	return bsearch(&key, s->holders, (size_t)s->nholders, sizeof(*s->holders), cmp_pair) != NULL;
}

static int cmp_coupon_id(const void *key, const void *row)
{
	int64_t a = *(const int64_t *)key, b = ((const coupon_row_t *)row)->id;

	return (a > b) - (a < b);
}

static coupon_row_t *find_coupon(const store_t *s, int64_t id)
{
	return bsearch(&id, s->coupons, (size_t)s->ncoupons, sizeof(*s->coupons), cmp_coupon_id);
}

/* [starts_at, ends_at), either end open when NULL. */
static int coupon_open(const coupon_row_t *c, int64_t accepted_ms)
{
	int64_t at = accepted_ms * 1000;

	return (!c->has_start || at >= c->start_us) && (!c->has_end || at < c->end_us);
}

static void set_decision(store_item_t *it, request_state_t state, reject_reason_t reason, int release)
{
	it->decided = 1;
	it->state = state;
	it->reason = reason;
	it->release = release;
}

/*
 * A request the locked remaining decides: the earliest ones in log order fit.
 * That holds for a reservation and for a request the gate called sold out
 * alike: an earlier request of this batch may hold a unit PostgreSQL will
 * not issue (ALREADY_ISSUED), and first come, first served says it is the
 * next one's. reserved: a unit to give back when this one is rejected. The
 * batch's convergence step sets the Redis stock to remaining after the
 * releases.
 */
static void decide_by_room(store_t *s, store_item_t *items, int i, coupon_row_t *c, int reserved)
{
	if (user_holds(s, items[i].event) || s->pair_taken[s->pair_leader[i]]) {
		set_decision(&items[i], STATUS_REJECTED, REASON_ALREADY_ISSUED, reserved);
	} else if (c->room <= 0) {
		/* A reservation here: Redis let more through than PostgreSQL allows (rebuilt or drifted). */
		set_decision(&items[i], STATUS_REJECTED, REASON_SOLD_OUT, reserved);
	} else {
		c->room--;
		s->planned[i] = 1;
		s->pair_taken[s->pair_leader[i]] = 1;
		set_decision(&items[i], STATUS_ISSUED, REASON_NONE,
		             0); /* confirmed by INSERT ... RETURNING */
	}
}

static void decide_one(store_t *s, store_item_t *items, int i)
{
	store_item_t *it = &items[i];
	int reserved = it->gate == GATE_RESERVED || it->gate == GATE_RESERVED_EARLIER;
	coupon_row_t *c;
	const prior_t *prior;

	/*
	 * A replay. If the gate reserved afresh, Redis had forgotten the request
	 * and loaded stock from PostgreSQL, which already counted it: give it back.
	 */
	if (request_exists(s, it->event->request_id))
		set_decision(it, STATUS_ISSUED, REASON_NONE, it->gate == GATE_RESERVED);
	else if ((prior = prior_rejection(s, it->event->request_id)) != NULL)
		/* Rejected before: say so again, and give back any reservation this replay took or left
		 * behind. */
		set_decision(it, STATUS_REJECTED, prior->reason, reserved);
	else if ((c = find_coupon(s, it->event->coupon_id)) == NULL)
		set_decision(it, STATUS_REJECTED, REASON_COUPON_NOT_FOUND, reserved);
	else if (!coupon_open(c, it->event->accepted_ms))
		set_decision(it, STATUS_REJECTED, REASON_NOT_OPEN, reserved);
	else if (it->gate == GATE_SOLD_OUT)
		decide_by_room(s, items, i, c, 0);
	else if (it->gate == GATE_RELEASED_EARLIER)
		set_decision(it, STATUS_REJECTED,
		             user_holds(s, it->event) ? REASON_ALREADY_ISSUED : REASON_SOLD_OUT, 0);
	else if (reserved)
		decide_by_room(s, items, i, c, 1);
	/* GATE_NO_STOCK stays undecided: the stock is loaded from PostgreSQL and the gate asked again. */
}

static void decide(store_t *s, store_item_t *items, int n)
{
	memset(s->planned, 0, (size_t)n);
	memset(s->pair_taken, 0, (size_t)n);
	for (int i = 0; i < n; i++) {
		items[i].decided = items[i].release = 0;
		if (s->primary[i] == i && items[i].gate != GATE_PENDING)
			decide_one(s, items, i);
	}
	for (int i = 0; i < n; i++) {
		const store_item_t *p = &items[s->primary[i]];

		if (s->primary[i] != i && p->decided) {
			/* The copy shares the first one's reservation record: it is never released twice. */
			set_decision(&items[i], p->state, p->reason, 0);
		}
	}
}

static int insert_params(store_t *s, const store_item_t *items, int n, int *planned)
{
	char at[32];

	*planned = 0;
	for (int a = 0; a < 4; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		if (!s->planned[i])
			continue;
		clock_format_iso(items[i].event->accepted_ms, at, sizeof(at));
		buf_element(&s->arg[0], items[i].event->request_id);
		buf_int(&s->arg[1], (long long)items[i].event->coupon_id);
		buf_int(&s->arg[2], (long long)items[i].event->user_id);
		buf_element(&s->arg[3], at);
		(*planned)++;
	}
	for (int a = 0; a < 4; a++)
		buf_printf(&s->arg[a], "}");
	return s->arg[0].failed || s->arg[1].failed || s->arg[2].failed || s->arg[3].failed ? -1 : 0;
}

/* Queues the INSERT of the planned rows; its index in the pipeline, or -1 (none planned, or failed). */
static int send_insert(store_t *s, pipe_t *p, const store_item_t *items, int n, int *planned)
{
	const char *params[4];

	if (insert_params(s, items, n, planned) != 0) {
		p->failed = 1;
		return -1;
	}
	if (*planned == 0)
		return -1;
	for (int a = 0; a < 4; a++)
		params[a] = s->arg[a].data;
	return pipe_send(s, p, "insert issued", "couponsd_insert", 4, params, PGRES_TUPLES_OK);
}

/*
 * Under the coupon row locks and the partition's ownership nothing else
 * inserts these rows, so a row that did not come back means another writer
 * exists: the transaction is abandoned and retried, and the retry's lookup
 * sees that writer's rows.
 */
static int check_inserted(const PGresult *res, int planned)
{
	int inserted = PQntuples(res);

	if (inserted == planned)
		return 0;
	log_warn("postgresql: %d of %d issued rows met a concurrent writer; retrying", planned - inserted,
	         planned);
	return -1;
}

/*
 * Queues the decrement of remaining by the rows planned per coupon. It goes
 * out with the INSERT, before its count is known: if fewer rows came back,
 * check_inserted() fails the batch and the ROLLBACK takes the UPDATE back too.
 */
static int send_update(store_t *s, pipe_t *p, const store_item_t *items, int n)
{
	const char *params[2];
	int touched = 0;

	for (int i = 0; i < n; i++) {
		if (s->planned[i])
			find_coupon(s, items[i].event->coupon_id)->issued++;
	}
	buf_reset(&s->arg[0]);
	buf_reset(&s->arg[1]);
	for (int i = 0; i < s->ncoupons; i++) {
		if (s->coupons[i].issued > 0) {
			buf_int(&s->arg[0], (long long)s->coupons[i].id);
			buf_int(&s->arg[1], s->coupons[i].issued);
			touched++;
		}
	}
	buf_printf(&s->arg[0], "}");
	buf_printf(&s->arg[1], "}");
	if (s->arg[0].failed || s->arg[1].failed)
		p->failed = 1;
	if (touched == 0 || p->failed)
		return -1;
	params[0] = s->arg[0].data;
	params[1] = s->arg[1].data;
	return pipe_send(s, p, "update remaining", "couponsd_update", 2, params, PGRES_TUPLES_OK);
}

static void read_remaining(store_t *s, const PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++) {
		coupon_row_t *c = find_coupon(s, strtoll(PQgetvalue(res, i, 0), NULL, 10));

		if (c != NULL)
			c->remaining = (int)strtol(PQgetvalue(res, i, 1), NULL, 10);
	}
}

static int reject_params(store_t *s, const store_item_t *items, int n, int *rejected)
{
	char at[32];

	*rejected = 0;
	for (int a = 0; a < 5; a++)
		buf_reset(&s->arg[a]);
	for (int i = 0; i < n; i++) {
		if (!items[i].decided || items[i].state != STATUS_REJECTED || s->primary[i] != i)
			continue;
		clock_format_iso(items[i].event->accepted_ms, at, sizeof(at));
		buf_element(&s->arg[0], items[i].event->request_id);
		buf_int(&s->arg[1], (long long)items[i].event->coupon_id);
		buf_int(&s->arg[2], (long long)items[i].event->user_id);
		buf_element(&s->arg[3], status_reason_name(items[i].reason));
		buf_element(&s->arg[4], at);
		(*rejected)++;
	}
	for (int a = 0; a < 5; a++)
		buf_printf(&s->arg[a], "}");
	for (int a = 0; a < 5; a++) {
		if (s->arg[a].failed)
			return -1;
	}
	return 0;
}

static void send_rejections(store_t *s, pipe_t *p, const store_item_t *items, int n)
{
	char partition[16];
	const char *params[6];
	int rejected;

	if (reject_params(s, items, n, &rejected) != 0) {
		p->failed = 1;
		return;
	}
	if (rejected == 0)
		return;
	snprintf(partition, sizeof(partition), "%d", s->partition);
	for (int a = 0; a < 5; a++)
		params[a] = s->arg[a].data;
	params[5] = partition;
	pipe_send(s, p, "insert rejected", "couponsd_reject", 6, params, PGRES_COMMAND_OK);
}

/*
 * Inserts the issued rows, decrements remaining and records the rejections:
 * one round trip (none when the round decided nothing). The INSERT's count is
 * checked here, before the COMMIT that store_commit() sends on its own.
 */
static int write_batch(store_t *s, const store_item_t *items, int n)
{
	pipe_t p = {0};
	int planned = 0, insert, update, rc;

	insert = send_insert(s, &p, items, n, &planned);
	update = send_update(s, &p, items, n);
	send_rejections(s, &p, items, n);
	rc = pipe_close(s, &p);
	if (rc == 0 && insert >= 0)
		rc = check_inserted(p.res[insert], planned);
	if (rc == 0 && update >= 0)
		read_remaining(s, p.res[update]);
	pipe_clear(&p);
	return rc;
}

/* After a failed statement: roll back (or forget a dead session, and with it the lock). */
static store_rc_t abandon(store_t *s, store_item_t *items, int n)
{
	for (int i = 0; i < n; i++)
		items[i].decided = items[i].release = 0;
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
static store_rc_t commit_failed(store_t *s, store_item_t *items, int n)
{
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		log_warn("postgresql: the outcome of a COMMIT is unknown; the batch is retried");
		for (int i = 0; i < n; i++) {
			if (items[i].gate == GATE_RESERVED)
				items[i].gate = GATE_RESERVED_EARLIER;
		}
	}
	return abandon(s, items, n);
}

static void collect_coupons(store_t *s, const store_coupon_t **coupons, int *ncoupons)
{
	for (int i = 0; i < s->ncoupons; i++) {
		s->out[i].coupon_id = s->coupons[i].id;
		s->out[i].remaining = s->coupons[i].remaining;
	}
	*coupons = s->out;
	*ncoupons = s->ncoupons;
}

store_rc_t store_commit(store_t *s, store_item_t *items, int n, const store_coupon_t **coupons, int *ncoupons)
{
	*ncoupons = 0;
	if (n == 0)
		return STORE_OK;
	if (s->conn == NULL || reserve_arrays(s, n) != 0 || group_items(s, items, n) != 0)
		return STORE_RETRY;
	if (load_batch(s, items, n) != 0)
		return abandon(s, items, n);
	decide(s, items, n);
	if (write_batch(s, items, n) != 0)
		return abandon(s, items, n);
	/* On its own, so nothing commits before write_batch() has checked the INSERT's count. */
	if (run_simple(s, "COMMIT", PGRES_COMMAND_OK) != 0)
		return commit_failed(s, items, n);
	collect_coupons(s, coupons, ncoupons);
	return STORE_OK;
}

int store_prune(store_t *s, int *deleted)
{
	char partition[16], ttl[24];
	const char *params[] = {partition, ttl};
	PGresult *res;

	*deleted = 0;
	if (s->conn == NULL)
		return -1;
	snprintf(partition, sizeof(partition), "%d", s->partition);
	snprintf(ttl, sizeof(ttl), "%lld", (long long)s->cfg->issue_result_ttl);
	res = run(s, "prune rejected", PQexecPrepared(s->conn, "couponsd_prune", 2, params, NULL, NULL, 0),
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
	if (s->conn == NULL)
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
