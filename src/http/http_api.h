/* SPDX-License-Identifier: BSD-2-Clause */
/* http_api.h: the HTTP API of SPEC section 2: the handlers and what they share. */
#ifndef COUPONSD_HTTP_API_H
#define COUPONSD_HTTP_API_H

#include "core/config.h"
#include "http/coupon_cache.h"
#include "core/issue_event.h"
#include "http/http_router.h"
#include "http/pg_async.h"
#include "http/producer.h"
#include "http/redis_async.h"
#include "http/redis_batch.h"
#include "core/shm.h"
#include "http/sse.h"

#include <event2/http.h>
#include <jansson.h>

/* Request headers above this total get 431; libevent's own hard caps sit this much above ours. */
#define HTTP_MAX_HEADERS 8192
#define HTTP_HARD_CAP_SLACK 65536

typedef struct admin_stream admin_stream_t;

/* Everything a handler reaches: one per HTTP worker process. */
/* The issue path's script arguments that only the configuration sets, formatted once (http_issue.c). */
typedef struct {
	char claim_ms[24], keep_ms[24], count_from[24], result_ttl_ms[24], after_ms[24], status_ttl_s[24];
	long settle_drop_user; /* fault http_settle_drop (core/fault.h): this user's are lost, else -1 */
} issue_args_t;

typedef struct http_ctx {
	const config_t *cfg;
	struct event_base *base;
	redis_async_t *redis;
	redis_batch_t *claims;  /* one claim call per coupon per loop turn (http_issue.c) */
	redis_batch_t *settles; /* the same for making claims last after Kafka's delivery report */
	issue_args_t issue_args;
	pg_async_t *pg;
	producer_t *producer;
	coupon_cache_t *coupons;
	sse_t *sse;
	shm_t *shm;   /* the master's shared memory: partition progress for admission control */
	int draining; /* stopped accepting: finishing what is in flight */
	int stopping; /* daemon.stop_drain: still serving, but /readyz says 503 */
	admin_stream_t *admin_streams; /* GET /api/admin/coupons/{id}/events (http_admin_events.c) */
} http_ctx_t;

int http_api_init(http_ctx_t *ctx, struct event_base *base, const config_t *cfg, const char *bootstrap);
void http_api_fini(http_ctx_t *ctx);
void http_api_dispatch(http_ctx_t *ctx, struct evhttp_request *req);

/* Replies. Every error body is {"error":"CODE","message":"..."} plus, where SPEC says so, more members. */
void http_reply_json(http_ctx_t *ctx, struct evhttp_request *req, int code, json_t *body);
/* json is already JSON text (NULL answers 500): the hot paths write theirs by hand. */
void http_reply_body(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *json, size_t len);
#define http_reply_literal(ctx, req, code, json) http_reply_body(ctx, req, code, json, sizeof(json) - 1)
/* Longer error messages are cut (at a character boundary or not: the escaper mends a split one). */
#define HTTP_MESSAGE_MAX 512
void http_reply_error(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *error,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with the message already written (cut at HTTP_MESSAGE_MAX too): the 429s and 409s under load. */
void http_reply_error_message(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *error,
                              const char *message);
void http_set_retry_after(struct evhttp_request *req, int seconds);

/* Handlers (http_issue.c, http_status.c, http_admin.c). */
/* The issue path's per-turn Redis batches: after the Redis client, freed before it. */
int http_issue_init(http_ctx_t *ctx);
void http_issue_fini(http_ctx_t *ctx);
void http_handle_issue(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m);
void http_handle_status(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m, int stream);
void http_handle_admin_create(http_ctx_t *ctx, struct evhttp_request *req);
/* The operator's routes (http_admin_ops.c, http_admin_events.c). */
void http_handle_admin_list(http_ctx_t *ctx, struct evhttp_request *req);
void http_handle_admin_patch(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m);
void http_handle_admin_events(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m);
void http_handle_admin_history(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m);
/* The worker's close callback and drain: forget, or end, the admin streams of a connection / of all. */
void http_admin_events_closed(http_ctx_t *ctx, struct evhttp_connection *conn);
void http_admin_events_close_all(http_ctx_t *ctx);
/* 1 when the request carries the admin token; else answers 404 (admin API off) or 401 and returns 0. */
int http_admin_authorized(http_ctx_t *ctx, struct evhttp_request *req);
/* An admin request's body as JSON (duplicate members refused); NULL when empty or not JSON. */
json_t *http_admin_body(struct evhttp_request *req);
/* Who made an admin change, for the audit trail: a fingerprint of the token, never the token. */
void http_admin_token_id(const char *token, char *out, size_t size);

/* The status of a request from Redis, or PostgreSQL once Redis forgot it. found 0: unknown; -1: unavailable.
 */
typedef void (*status_fn)(http_ctx_t *ctx, const request_status_t *st, int found, void *arg);
void http_lookup_status(http_ctx_t *ctx, const char *request_id, status_fn fn, void *arg);
/* sse_recheck_fn (arg: the http_ctx_t): what it finds goes to the request's streams. */
void http_recheck_stream(const char *request_id, int thorough, void *arg);

/* The request's body as a NUL-terminated string (NULL when empty); len gets its length. */
char *http_body(struct evhttp_request *req, size_t *len);

#endif
