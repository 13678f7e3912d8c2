/* SPDX-License-Identifier: BSD-2-Clause */
/* http_status.c: GET /api/requests/{id} and its event stream: Redis first, PostgreSQL for what Redis forgot.
 */
#include "http/http_api.h"

#include "core/clock.h"
#include "core/keys.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

/* A Redis PENDING older than this is checked against PostgreSQL (see on_hash). */
#define STALE_PENDING_MS 2000

typedef struct {
	http_ctx_t *ctx;
	char request_id[UUID_TEXT_LEN + 1];
	status_fn fn;
	void *arg;
	int redis_failed;
	int redis_only;   /* an open stream's keep-alive look: the hash, never PostgreSQL */
	int have_pending; /* Redis said PENDING: the answer when PostgreSQL has no decision */
	request_status_t pending;
} lookup_t;

static void hash_field(const char *name, const char *value, request_status_t *st, int *have_status)
{
	if (strcmp(name, "status") == 0)
		*have_status = status_state_parse(value, &st->state) == 0;
	else if (strcmp(name, "reason") == 0 && value[0] != '\0')
		status_reason_parse(value, &st->reason);
	else if (strcmp(name, "couponId") == 0)
		st->event.coupon_id = strtoll(value, NULL, 10);
	else if (strcmp(name, "userId") == 0)
		st->event.user_id = strtoll(value, NULL, 10);
	else if (strcmp(name, "acceptedAt") == 0)
		time_parse_iso(value, &st->event.accepted_ms);
	else if (strcmp(name, "decidedAt") == 0 && value[0] != '\0')
		time_parse_iso(value, &st->decided_ms);
}

static int parse_hash(const redisReply *reply, request_status_t *st)
{
	int have_status = 0;

	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		if (reply->element[i]->type == REDIS_REPLY_STRING &&
		    reply->element[i + 1]->type == REDIS_REPLY_STRING)
			hash_field(reply->element[i]->str, reply->element[i + 1]->str, st, &have_status);
	}
	return have_status;
}

static void on_decided_row(const PGresult *res, const char *error, void *arg)
{
	lookup_t *lk = arg;
	request_status_t st;

	memset(&st, 0, sizeof(st));
	memcpy(st.event.request_id, lk->request_id, sizeof(st.event.request_id));
	if ((error != NULL || PQntuples(res) == 0) && lk->have_pending) {
		lk->fn(lk->ctx, &lk->pending, 1, lk->arg);
	} else if (error != NULL) {
		log_warn("request %s from PostgreSQL: %s", lk->request_id, error);
		lk->fn(lk->ctx, NULL, -1, lk->arg);
	} else if (PQntuples(res) == 0) {
		/* Not decided, and Redis does not know it: unknown (or Redis is down and it is still
		 * pending). */
		lk->fn(lk->ctx, NULL, lk->redis_failed ? -1 : 0, lk->arg);
	} else {
		st.state = PQgetisnull(res, 0, 4) ? STATUS_ISSUED : STATUS_REJECTED;
		if (st.state == STATUS_REJECTED)
			status_reason_parse(PQgetvalue(res, 0, 4), &st.reason);
		st.event.coupon_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		st.event.user_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		st.decided_ms = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		st.event.accepted_ms = PQgetisnull(res, 0, 3) ? 0 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		lk->fn(lk->ctx, &st, 1, lk->arg);
	}
	free(lk);
}

/* Decisions outlive Redis in PostgreSQL: issued rows, and rejections for issue.result_ttl. */
static void from_postgres(lookup_t *lk)
{
	static const char *sql =
	    "SELECT coupon_id, user_id, (extract(epoch FROM issued_at) * 1000)::bigint, "
	    "(extract(epoch FROM accepted_at) * 1000)::bigint, NULL::text FROM issued_coupons WHERE "
	    "request_id = $1::uuid "
	    "UNION ALL SELECT coupon_id, user_id, (extract(epoch FROM decided_at) * 1000)::bigint, "
	    "(extract(epoch FROM accepted_at) * 1000)::bigint, reason FROM rejected_requests "
	    "WHERE request_id = $1::uuid LIMIT 1";
	const char *params[] = {lk->request_id};

	if (pg_async_query(lk->ctx->pg, sql, 1, params, on_decided_row, lk) != 0) {
		lk->fn(lk->ctx, NULL, -1, lk->arg);
		free(lk);
	}
}

static void on_hash(redisReply *reply, void *arg)
{
	lookup_t *lk = arg;
	request_status_t st;

	memset(&st, 0, sizeof(st));
	memcpy(st.event.request_id, lk->request_id, sizeof(st.event.request_id));
	if (lk->redis_only) {
		if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && parse_hash(reply, &st))
			lk->fn(lk->ctx, &st, 1, lk->arg);
		free(lk);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && parse_hash(reply, &st)) {
		/*
		 * A PENDING that old may be stale: the edge writes it after the delivery
		 * report, and if Redis was flushed after the consumer's decision, that
		 * late write recreates PENDING for good. PostgreSQL's decision wins.
		 */
		if (st.state != STATUS_PENDING || clock_real_ms() - st.event.accepted_ms < STALE_PENDING_MS) {
			lk->fn(lk->ctx, &st, 1, lk->arg);
			free(lk);
			return;
		}
		lk->have_pending = 1;
		lk->pending = st;
	}
	lk->redis_failed = reply == NULL || reply->type != REDIS_REPLY_ARRAY;
	from_postgres(lk);
}

static void lookup_start(http_ctx_t *ctx, const char *request_id, status_fn fn, void *arg, int redis_only)
{
	lookup_t *lk = calloc(1, sizeof(*lk));
	char key[KEYS_MAX];
	const char *argv[] = {"HGETALL", key};

	if (lk == NULL) {
		fn(ctx, NULL, -1, arg);
		return;
	}
	lk->ctx = ctx;
	lk->redis_only = redis_only;
	memcpy(lk->request_id, request_id, sizeof(lk->request_id));
	lk->fn = fn;
	lk->arg = arg;
	if (keys_status(ctx->cfg->redis_key_prefix, request_id, key, sizeof(key)) < 0 ||
	    redis_async_argv(ctx->redis, on_hash, lk, 2, argv, NULL) != 0)
		on_hash(NULL, lk);
}

void http_lookup_status(http_ctx_t *ctx, const char *request_id, status_fn fn, void *arg)
{
	lookup_start(ctx, request_id, fn, arg, 0);
}

/* ---- the two routes ---- */

typedef struct {
	struct evhttp_request *req;
	int stream;
} status_req_t;

static void reply_status(http_ctx_t *ctx, struct evhttp_request *req, const request_status_t *st)
{
	char json[STATUS_JSON_SIZE];
	int len = status_format_json(st, json, sizeof(json));

	http_reply_body(ctx, req, 200, len < 0 ? NULL : json, len < 0 ? 0 : (size_t)len);
}

/* The stream's second look: a result published before the stream was registered is not missed. */
static void on_recheck(http_ctx_t *ctx, const request_status_t *st, int found, void *arg)
{
	if (found == 1)
		sse_deliver(ctx->sse, st);
}

void http_recheck_stream(const char *request_id, int thorough, void *arg)
{
	lookup_start(arg, request_id, on_recheck, NULL, !thorough);
}

static void on_status(http_ctx_t *ctx, const request_status_t *st, int found, void *arg)
{
	status_req_t *sr = arg;

	if (found < 0) {
		http_set_retry_after(sr->req, 1);
		http_reply_error(ctx, sr->req, 503, "UNAVAILABLE", "the request's status cannot be read now");
	} else if (found == 0) {
		http_reply_error(ctx, sr->req, 404, "REQUEST_NOT_FOUND", "no request with this id is known");
	} else if (!sr->stream) {
		reply_status(ctx, sr->req, st);
	} else {
		sse_open(ctx->sse, sr->req, st, ctx->draining);
		if (st->state == STATUS_PENDING)
			http_lookup_status(ctx, st->event.request_id, on_recheck, NULL);
	}
	free(sr);
}

void http_handle_status(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m, int stream)
{
	status_req_t *sr = malloc(sizeof(*sr));

	if (sr == NULL) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	sr->req = req;
	sr->stream = stream;
	http_lookup_status(ctx, m->request_id, on_status, sr);
}
