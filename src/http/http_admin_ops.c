/* SPDX-License-Identifier: BSD-2-Clause */
/* http_admin_ops.c: the operator's routes: list the sales, change one (through its partition), its history.
 */
#include "http/http_admin_ops.h"

#include "core/admin_event.h"
#include "core/admission.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT 100
#define LIST_MAX 500
/* How long a PATCH waits for the consumer's decision before answering 202, and how often it looks. */
#define PATCH_WAIT_MS 10000
#define PATCH_POLL_MS 50

static const char list_sql[] = ADMIN_FIGURES_SELECT " WHERE c.id > $1::bigint AND ($2::text IS NULL OR "
                                                    "st.status = $2) ORDER BY c.id LIMIT $3::int";

static const char history_sql[] =
    "SELECT EXISTS (SELECT 1 FROM coupons WHERE id = $1::bigint), coalesce((SELECT "
    "json_agg(json_build_object("
    "'changeId', change_id, 'tokenId', token_id, 'change', change, 'outcome', outcome, 'error', error,"
    " 'message', message, 'before', before, 'after', after, 'requestedAt', " ADMIN_ISO(
        "requested_at") ", 'decidedAt', " ADMIN_ISO("decided_at") ", 'partition', kafka_partition, 'offset', "
                                                                  "kafka_offset)"
                                                                  " ORDER BY id) FROM coupon_changes WHERE "
                                                                  "coupon_id = $1::bigint),"
                                                                  " '[]')::text";

static const char decision_sql[] = "SELECT outcome, coalesce(error, ''), coalesce(message, ''), before::text,"
                                   " after::text FROM coupon_changes WHERE change_id = $1::uuid";

static void reply_unavailable(http_ctx_t *ctx, struct evhttp_request *req)
{
	http_set_retry_after(req, 1);
	http_reply_error(ctx, req, 503, "UNAVAILABLE", "the database cannot be reached");
}

typedef struct {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	int64_t coupon_id;
	int limit;
} admin_query_t;

static admin_query_t *query_new(http_ctx_t *ctx, struct evhttp_request *req, int64_t coupon_id)
{
	admin_query_t *q = calloc(1, sizeof(*q));

	if (q == NULL) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return NULL;
	}
	q->ctx = ctx;
	q->req = req;
	q->coupon_id = coupon_id;
	return q;
}

json_t *http_admin_figures(http_ctx_t *ctx, const char *row_json)
{
	json_t *o = json_loads(row_json, 0, NULL);
	json_t *id = json_object_get(o, "couponId");
	int64_t pending;

	if (!json_is_integer(id))
		return json_decref(o), NULL;
	/* The partition's backlog: every event of it accepted and not yet decided (docs/api.md). */
	pending = admission_pending(
	    ctx->shm, ctx->cfg,
	    admission_coupon_partition((int64_t)json_integer_value(id), ctx->cfg->kafka_partitions));
	json_object_set_new(o, "pending", pending >= 0 ? json_integer((json_int_t)pending) : json_null());
	return o;
}

static void on_list(const PGresult *res, const char *error, void *arg)
{
	admin_query_t *q = arg;
	json_t *coupons = json_array(), *body;
	int n = res != NULL && error == NULL ? PQntuples(res) : 0;

	if (error != NULL || coupons == NULL) {
		log_warn("listing coupons: %s", error != NULL ? error : "out of memory");
		json_decref(coupons);
		reply_unavailable(q->ctx, q->req);
		free(q);
		return;
	}
	for (int i = 0; i < n; i++)
		json_array_append_new(coupons, http_admin_figures(q->ctx, PQgetvalue(res, i, 1)));
	body = json_pack("{s:o, s:o}", "coupons", coupons, "nextCursor",
	                 n == q->limit ? json_integer(strtoll(PQgetvalue(res, n - 1, 0), NULL, 10))
	                               : json_null());
	http_reply_json(q->ctx, q->req, 200, body);
	free(q);
}

/* One query parameter as a number in [lo, hi], or def when absent. 0, or -1 after a 400. */
static int number_param(http_ctx_t *ctx, struct evhttp_request *req, const char *query, const char *name,
                        int64_t lo, int64_t hi, int64_t *out)
{
	char *text = NULL;
	int rc = http_router_query_param(query, name, &text);
	int64_t v = 0;

	if (rc == 0) {
		return 0;
	}
	if (rc < 0 || (id_parse(text, strlen(text), &v) != 0 && strcmp(text, "0") != 0) || v < lo || v > hi) {
		http_reply_error(ctx, req, 400, "INVALID_ARGUMENT", "%s must be an integer from %lld to %lld",
		                 name, (long long)lo, (long long)hi);
		free(text);
		return -1;
	}
	*out = v;
	free(text);
	return 0;
}

/* ?status= one of the four; *out NULL when absent. 0, or -1 after a 400. */
static int status_param(http_ctx_t *ctx, struct evhttp_request *req, const char *query, char **out)
{
	int rc = http_router_query_param(query, "status", out);

	if (rc == 0 || (rc > 0 && (strcmp(*out, "SCHEDULED") == 0 || strcmp(*out, "OPEN") == 0 ||
	                           strcmp(*out, "SOLD_OUT") == 0 || strcmp(*out, "CLOSED") == 0)))
		return 0;
	free(*out);
	*out = NULL;
	http_reply_error(ctx, req, 400, "INVALID_ARGUMENT",
	                 "status must be SCHEDULED, OPEN, SOLD_OUT or CLOSED");
	return -1;
}

void http_handle_admin_list(http_ctx_t *ctx, struct evhttp_request *req)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	int64_t cursor = 0, limit = LIST_DEFAULT;
	char *status = NULL, cur[24], lim[16];
	const char *params[3] = {cur, NULL, lim};
	admin_query_t *q;

	if (!http_admin_authorized(ctx, req) ||
	    number_param(ctx, req, query, "cursor", 0, INT64_MAX, &cursor) != 0 ||
	    number_param(ctx, req, query, "limit", 1, LIST_MAX, &limit) != 0 ||
	    status_param(ctx, req, query, &status) != 0 || (q = query_new(ctx, req, 0)) == NULL) {
		free(status);
		return;
	}
	q->limit = (int)limit;
	snprintf(cur, sizeof(cur), "%lld", (long long)cursor);
	snprintf(lim, sizeof(lim), "%d", q->limit);
	params[1] = status;
	if (pg_async_query(ctx->pg, list_sql, 3, params, on_list, q) != 0) {
		reply_unavailable(ctx, req);
		free(q);
	}
	free(status);
}

static void on_history(const PGresult *res, const char *error, void *arg)
{
	admin_query_t *q = arg;
	json_t *changes;

	if (error != NULL || PQntuples(res) != 1) {
		log_warn("reading the history of coupon %lld: %s", (long long)q->coupon_id,
		         error != NULL ? error : "no row");
		reply_unavailable(q->ctx, q->req);
	} else if ((changes = json_loads(PQgetvalue(res, 0, 1), 0, NULL)) == NULL) {
		http_reply_error(q->ctx, q->req, 503, "UNAVAILABLE", "out of memory");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		json_decref(changes);
		http_reply_error(q->ctx, q->req, 404, "COUPON_NOT_FOUND", "coupon %lld does not exist",
		                 (long long)q->coupon_id);
	} else {
		http_reply_json(
		    q->ctx, q->req, 200,
		    json_pack("{s:I, s:o}", "couponId", (json_int_t)q->coupon_id, "changes", changes));
	}
	free(q);
}

void http_handle_admin_history(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m)
{
	char id[24];
	const char *params[] = {id};
	admin_query_t *q;

	if (!http_admin_authorized(ctx, req) || (q = query_new(ctx, req, m->coupon_id)) == NULL)
		return;
	snprintf(id, sizeof(id), "%lld", (long long)m->coupon_id);
	if (pg_async_query(ctx->pg, history_sql, 1, params, on_history, q) != 0) {
		reply_unavailable(ctx, req);
		free(q);
	}
}

/* ---- PATCH: an admin event on the coupon's partition, then its decision from coupon_changes ---- */

typedef struct {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	admin_event_t ev;
	struct event *timer;
	int64_t deadline_ms;
} patch_t;

static void patch_free(patch_t *p)
{
	if (p->timer != NULL)
		event_free(p->timer);
	free(p);
}

static void reply_decision(patch_t *p, const PGresult *res)
{
	const char *outcome = PQgetvalue(res, 0, 0), *error = PQgetvalue(res, 0, 1);
	json_t *before = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
	json_t *after = json_loads(PQgetvalue(res, 0, 4), 0, NULL);

	if (strcmp(outcome, "APPLIED") == 0) {
		coupon_cache_forget(p->ctx->coupons,
		                    p->ev.coupon_id); /* this worker at once; the others within 1 s */
		http_reply_json(p->ctx, p->req, 200,
		                json_pack("{s:s, s:I, s:s, s:o*, s:o*}", "changeId", p->ev.change_id,
		                          "couponId", (json_int_t)p->ev.coupon_id, "outcome", outcome,
		                          "before", before, "after", after));
		return;
	}
	json_decref(before);
	json_decref(after);
	if (strcmp(error, "COUPON_NOT_FOUND") == 0)
		http_reply_error(p->ctx, p->req, 404, error, "coupon %lld does not exist",
		                 (long long)p->ev.coupon_id);
	else
		http_reply_error(p->ctx, p->req, 409, error, "%s (change %s)", PQgetvalue(res, 0, 2),
		                 p->ev.change_id);
}

static void reply_accepted(patch_t *p)
{
	char url[64];

	snprintf(url, sizeof(url), "/api/admin/coupons/%lld/history", (long long)p->ev.coupon_id);
	evhttp_add_header(evhttp_request_get_output_headers(p->req), "Location", url);
	http_reply_json(p->ctx, p->req, 202,
	                json_pack("{s:s, s:I, s:s, s:s}", "changeId", p->ev.change_id, "couponId",
	                          (json_int_t)p->ev.coupon_id, "status", "PENDING", "historyUrl", url));
}

static void poll_later(patch_t *p)
{
	struct timeval tv = clock_timeval(PATCH_POLL_MS);

	if (clock_mono_ms() >= p->deadline_ms || event_add(p->timer, &tv) != 0) {
		reply_accepted(p); /* the change is in the log and will be decided: its history says how */
		patch_free(p);
	}
}

static void on_decision(const PGresult *res, const char *error, void *arg)
{
	patch_t *p = arg;

	if (error == NULL && PQntuples(res) == 1) {
		reply_decision(p, res);
		patch_free(p);
		return;
	}
	poll_later(p);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	patch_t *p = arg;
	const char *params[] = {p->ev.change_id};

	(void)fd;
	(void)what;
	if (pg_async_query(p->ctx->pg, decision_sql, 1, params, on_decision, p) != 0)
		poll_later(p);
}

static void on_produced(produce_result_t result, int partition, int64_t offset, void *arg)
{
	patch_t *p = arg;

	if (result != PRODUCE_OK) {
		http_set_retry_after(p->req, 1);
		http_reply_error(p->ctx, p->req, 503, "UNAVAILABLE",
		                 "the change could not be queued in Kafka");
		patch_free(p);
		return;
	}
	admission_delivered(p->ctx->shm, partition, offset);
	p->deadline_ms = clock_mono_ms() + PATCH_WAIT_MS;
	poll_later(p);
}

static void produce_change(patch_t *p)
{
	char key[24], *value = admin_event_encode(&p->ev);
	produce_result_t rc = PRODUCE_FAILED;

	snprintf(key, sizeof(key), "%lld", (long long)p->ev.coupon_id);
	if (value != NULL)
		rc = producer_send(p->ctx->producer, p->ctx->cfg->kafka_topic, key, value, strlen(value),
		                   on_produced, p);
	free(value);
	if (rc == PRODUCE_OK)
		return;
	http_set_retry_after(p->req, 1);
	if (rc == PRODUCE_FULL)
		http_reply_error(p->ctx, p->req, 429, "OVERLOADED", "the Kafka queue is full");
	else
		http_reply_error(p->ctx, p->req, 503, "UNAVAILABLE",
		                 "the change could not be queued in Kafka");
	patch_free(p);
}

/* "now" for startsAt or endsAt is this moment, so closing a sale needs no clock on the client. */
static void expand_now(json_t *body, const char *name)
{
	json_t *v = json_object_get(body, name);
	char text[32];

	if (json_is_string(v) && strcmp(json_string_value(v), "now") == 0) {
		clock_format_iso(clock_real_ms(), text, sizeof(text));
		json_object_set_new(body, name, json_string(text));
	}
}

/* The body becomes the event's "admin" member and is checked by the consumer's own decoder. */
static int build_event(http_ctx_t *ctx, json_t *body, int64_t coupon_id, admin_event_t *ev, char *err,
                       size_t errsize)
{
	char change_id[UUID_TEXT_LEN + 1], token_id[ADMIN_TOKEN_ID_MAX + 1], at[32], *text;
	json_t *o;
	int rc;

	if (!json_is_object(body))
		return snprintf(err, errsize, "the body must be a JSON object"), -1;
	if (uuid_generate(change_id) != 0)
		return snprintf(err, errsize, "no random bytes for a change id"), -1;
	expand_now(body, "startsAt");
	expand_now(body, "endsAt");
	http_admin_token_id(ctx->cfg->admin_token, token_id, sizeof(token_id));
	clock_format_iso(clock_real_ms(), at, sizeof(at));
	o = json_pack("{s:i, s:s, s:I, s:s, s:s, s:O}", "v", 1, "changeId", change_id, "couponId",
	              (json_int_t)coupon_id, "tokenId", token_id, "acceptedAt", at, "admin", body);
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	rc = text != NULL ? admin_event_decode(text, strlen(text), ev, err, errsize) : -1;
	if (text == NULL)
		snprintf(err, errsize, "out of memory");
	free(text);
	return rc == 0 ? 0 : -1;
}

void http_handle_admin_patch(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m)
{
	char err[160];
	json_t *body;
	patch_t *p;

	if (!http_admin_authorized(ctx, req))
		return;
	body = http_admin_body(req);
	if ((p = calloc(1, sizeof(*p))) == NULL || (p->timer = evtimer_new(ctx->base, on_poll, p)) == NULL) {
		json_decref(body);
		free(p);
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	p->ctx = ctx;
	p->req = req;
	if (build_event(ctx, body, m->coupon_id, &p->ev, err, sizeof(err)) != 0) {
		http_reply_error(ctx, req, 400, "INVALID_ARGUMENT", "%s", err);
		patch_free(p);
	} else {
		produce_change(p);
	}
	json_decref(body);
}
