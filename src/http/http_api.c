/* SPDX-License-Identifier: BSD-2-Clause */
/* http_api.c: the HTTP API of SPEC section 2: dispatch, replies, health, coupons and a user's coupons. */
#include "http/http_api.h"

#include "core/clock.h"
#include "core/json_escape.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/text.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(ROUTE_COUNT == METRICS_ROUTES, "metrics.h counts every route of http_router.h");

static const char *phrase(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

void http_reply_body(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *json, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	const char *date = clock_http_date(clock_real_ms());

	evhttp_add_header(h, "Content-Type", "application/json; charset=utf-8");
	/* libevent writes a Date only where none is set, and costs more to write it (clock.c). */
	if (date != NULL)
		evhttp_add_header(h, "Date", date);
	/*
	 * While draining, keep-alive clients are told to reconnect: a new
	 * generation is listening. While stopping, so that they reconnect
	 * through the balancer to another host before this one stops accepting.
	 */
	if (ctx->draining || ctx->stopping)
		evhttp_add_header(h, "Connection", "close");
	if (json == NULL || evbuffer_add(out, json, len) != 0) {
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	/* HEAD: GET's headers, Content-Length included, and no body (libevent 2.1 would send it, and a
	 * keep-alive client would read it as the start of the next answer). */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char length[24];

		snprintf(length, sizeof(length), "%zu", evbuffer_get_length(out));
		evhttp_add_header(h, "Content-Length", length);
		if (evbuffer_drain(out, evbuffer_get_length(out)) != 0)
			log_warn("cannot drop the body of a HEAD answer");
	}
	evhttp_send_reply(req, code, phrase(code), NULL);
}

void http_reply_json(http_ctx_t *ctx, struct evhttp_request *req, int code, json_t *body)
{
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(body);
	http_reply_body(ctx, req, code, text, text != NULL ? strlen(text) : 0);
	free(text);
}

/*
 * Written by hand, not with jansson: every refusal (429s under load first of all)
 * comes this way. error is always one of our constant codes; only the message
 * (at most HTTP_MESSAGE_MAX bytes with its NUL) needs escaping.
 */
static void reply_error(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *error,
                        const char *message)
{
	char escaped[JSON_ESCAPE_SIZE(HTTP_MESSAGE_MAX)], body[sizeof(escaped) + 64];
	text_t t;
	int n;

	/* The message may carry a client's bytes: escaped, it is valid JSON whatever they are. */
	if (json_escape(message, escaped, sizeof(escaped)) < 0) {
		http_reply_body(ctx, req, code, NULL, 0);
		return;
	}
	text_init(&t, body, sizeof(body));
	text_str(&t, "{\"error\":\"");
	text_str(&t, error);
	text_str(&t, "\",\"message\":\"");
	text_str(&t, escaped);
	text_str(&t, "\"}");
	n = text_end(&t);
	http_reply_body(ctx, req, code, n < 0 ? NULL : body, n < 0 ? 0 : (size_t)n);
}

void http_reply_error(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *error,
                      const char *fmt, ...)
{
	char message[HTTP_MESSAGE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	reply_error(ctx, req, code, error, message);
}

void http_reply_error_message(http_ctx_t *ctx, struct evhttp_request *req, int code, const char *error,
                              const char *message)
{
	char cut[HTTP_MESSAGE_MAX];
	text_t t;

	text_init(&t, cut, sizeof(cut));
	text_str(&t, message); /* a longer one is cut, as vsnprintf cuts http_reply_error's */
	reply_error(ctx, req, code, error, cut);
}

void http_set_retry_after(struct evhttp_request *req, int seconds)
{
	char value[21];

	text_format_i64(seconds, value);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", value);
}

char *http_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	char *body;

	*len = evbuffer_get_length(in);
	if (*len == 0 || (body = malloc(*len + 1)) == NULL)
		return NULL;
	if (evbuffer_copyout(in, body, *len) != (ev_ssize_t)*len) {
		free(body);
		return NULL;
	}
	body[*len] = '\0';
	return body;
}

static void handle_ready(http_ctx_t *ctx, struct evhttp_request *req)
{
	char failing[64] = "", why[256];
	const char *topics = producer_topic_problem(ctx->producer, why, sizeof(why));

	/*
	 * First: a balancer must take this host out of rotation before it stops
	 * accepting. Not while draining for a reload: the next generation serves.
	 */
	if (ctx->stopping) {
		http_reply_literal(ctx, req, 503,
		                   "{\"error\":\"UNAVAILABLE\",\"message\":\"stopping: this host is about to "
		                   "stop accepting\"}");
		return;
	}
	if (!redis_async_connected(ctx->redis))
		strcat(failing, failing[0] ? ", redis" : "redis");
	if (!pg_async_connected(ctx->pg))
		strcat(failing, failing[0] ? ", postgres" : "postgres");
	if (!producer_ready(ctx->producer))
		strcat(failing, failing[0] ? ", kafka" : "kafka");
	if (failing[0] != '\0') {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "not ready: %s unreachable", failing);
		return;
	}
	if (topics != NULL) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "not ready: %s", topics);
		return;
	}
	http_reply_literal(ctx, req, 200, "{\"status\":\"ready\"}");
}

/* ---- GET /api/coupons/{id} ---- */

typedef struct {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	int64_t id;
} pending_t;

static json_t *iso_or_null(int64_t ms)
{
	char text[32];

	if (ms == 0)
		return json_null();
	clock_format_iso(ms, text, sizeof(text));
	return json_string(text);
}

static const char *coupon_state(const coupon_info_t *c, long long remaining)
{
	int64_t now = clock_real_ms();

	if (c->starts_ms != 0 && now < c->starts_ms)
		return "SCHEDULED";
	if (c->ends_ms != 0 && now >= c->ends_ms)
		return "CLOSED";
	return remaining <= 0 ? "SOLD_OUT" : "OPEN";
}

static void on_coupon(const coupon_info_t *c, void *arg)
{
	pending_t *p = arg;
	long long remaining;

	if (c == NULL)
		http_reply_error(p->ctx, p->req, 503, "UNAVAILABLE", "the database cannot be reached");
	else if (!c->exists)
		http_reply_error(p->ctx, p->req, 404, "COUPON_NOT_FOUND", "no coupon %lld", (long long)c->id);
	else {
		/* Redis moves first (the gate), PostgreSQL follows each batch: the smaller one is the truth
		 * to show. */
		remaining = c->stock_known && c->stock < c->remaining ? c->stock : c->remaining;
		if (remaining < 0)
			remaining = 0;
		http_reply_json(p->ctx, p->req, 200,
		                json_pack("{s:I, s:s, s:i, s:I, s:s, s:o, s:o}", "couponId",
		                          (json_int_t)c->id, "name", c->name, "totalQuantity", c->total,
		                          "remaining", (json_int_t)remaining, "status",
		                          coupon_state(c, remaining), "startsAt", iso_or_null(c->starts_ms),
		                          "endsAt", iso_or_null(c->ends_ms)));
	}
	free(p);
}

static pending_t *pending_new(http_ctx_t *ctx, struct evhttp_request *req)
{
	pending_t *p = malloc(sizeof(*p));

	if (p == NULL) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return NULL;
	}
	p->ctx = ctx;
	p->req = req;
	p->id = 0;
	return p;
}

/* ---- GET /api/users/{id}/coupons ---- */

static json_t *user_coupons_json(const PGresult *res, int64_t user_id)
{
	json_t *list = json_array();

	for (int i = 0; list != NULL && i < PQntuples(res); i++) {
		json_array_append_new(list,
		                      json_pack("{s:I, s:s, s:s, s:s}", "couponId",
		                                (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "name",
		                                PQgetvalue(res, i, 1), "requestId", PQgetvalue(res, i, 2),
		                                "issuedAt", PQgetvalue(res, i, 3)));
	}
	return json_pack("{s:I, s:o}", "userId", (json_int_t)user_id, "coupons", list);
}

static void on_user_coupons(const PGresult *res, const char *error, void *arg)
{
	pending_t *p = arg;

	if (error != NULL) {
		log_warn("coupons of user %lld: %s", (long long)p->id, error);
		http_reply_error(p->ctx, p->req, 503, "UNAVAILABLE", "the database cannot be reached");
	} else {
		http_reply_json(p->ctx, p->req, 200, user_coupons_json(res, p->id));
	}
	free(p);
}

static void handle_user_coupons(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m)
{
	static const char *sql =
	    "SELECT ic.coupon_id, c.name, ic.request_id, "
	    "to_char(ic.issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
	    "FROM issued_coupons ic JOIN coupons c ON c.id = ic.coupon_id WHERE ic.user_id = $1 ORDER BY "
	    "ic.id";
	char id[24];
	const char *params[] = {id};
	pending_t *p = pending_new(ctx, req);

	if (p == NULL)
		return;
	p->id = m->user_id;
	snprintf(id, sizeof(id), "%lld", (long long)m->user_id);
	if (pg_async_query(ctx->pg, sql, 1, params, on_user_coupons, p) != 0) {
		free(p);
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "the database cannot be reached");
	}
}

static http_method_t method_of(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return METHOD_GET;
	case EVHTTP_REQ_HEAD:
		return METHOD_HEAD;
	case EVHTTP_REQ_POST:
		return METHOD_POST;
	case EVHTTP_REQ_PATCH:
		return METHOD_PATCH;
	default:
		return METHOD_OTHER;
	}
}

static size_t header_bytes(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	size_t n = strlen(evhttp_request_get_uri(req));

	for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next)
		n += strlen(kv->key) + strlen(kv->value) + 4;
	return n;
}

/* The limits libevent is not asked to enforce (see http_worker.c), answered in SPEC's JSON. */
static int within_limits(http_ctx_t *ctx, struct evhttp_request *req)
{
	size_t body = evbuffer_get_length(evhttp_request_get_input_buffer(req));

	if (header_bytes(req) > HTTP_MAX_HEADERS) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		http_reply_error(ctx, req, 431, "HEADERS_TOO_LARGE", "request headers exceed %d bytes",
		                 HTTP_MAX_HEADERS);
		return 0;
	}
	if ((int64_t)body > ctx->cfg->http_max_body) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		http_reply_error(ctx, req, 413, "BODY_TOO_LARGE",
		                 "request body exceeds http.max_body (%lld bytes)",
		                 (long long)ctx->cfg->http_max_body);
		return 0;
	}
	return 1;
}

/*
 * Counts the answer once libevent has sent it. The route and the start time
 * travel in the callback's pointer-sized argument, (monotonic µs << 8) | route,
 * so nothing is allocated that a vanished client could leak.
 */
static void on_complete(struct evhttp_request *req, void *arg)
{
	uintptr_t packed = (uintptr_t)arg;

	metrics_request((int)(packed & 0xff), evhttp_request_get_response_code(req),
	                clock_mono_us() - (int64_t)(packed >> 8));
}

static void count_request(struct evhttp_request *req, route_id_t route)
{
	uintptr_t packed = ((uintptr_t)clock_mono_us() << 8) | (uintptr_t)route;

	if (metrics_enabled())
		evhttp_request_set_on_complete_cb(req, on_complete, (void *)packed);
}

static void handle_metrics(http_ctx_t *ctx, struct evhttp_request *req)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	if (!metrics_enabled()) {
		http_reply_error(ctx, req, 404, "NOT_FOUND", "metrics are off (metrics.enabled: false)");
		return;
	}
	if (metrics_render(out) != 0) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "cannot render the metrics");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	/* libevent sends whatever is in the buffer, HEAD or not: a HEAD answer carries only its length. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char length[24];

		snprintf(length, sizeof(length), "%zu", evbuffer_get_length(out));
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", length);
		evbuffer_drain(out, evbuffer_get_length(out));
	}
	evhttp_send_reply(req, 200, "OK", NULL);
}

void http_api_dispatch(http_ctx_t *ctx, struct evhttp_request *req)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	route_match_t m;
	pending_t *p;

	http_router_match(method_of(req), path, &m);
	count_request(req, m.route);
	if (!within_limits(ctx, req))
		return;
	if (m.status != 0) {
		if (m.status == 405)
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
			                  http_router_allow(m.route));
		http_reply_error(ctx, req, m.status, m.error, "%s", m.message);
		return;
	}
	switch (m.route) {
	case ROUTE_HEALTHZ:
		http_reply_literal(ctx, req, 200, "{\"status\":\"ok\"}");
		break;
	case ROUTE_READYZ:
		handle_ready(ctx, req);
		break;
	case ROUTE_ISSUE:
		http_handle_issue(ctx, req, &m);
		break;
	case ROUTE_COUPON:
		if ((p = pending_new(ctx, req)) != NULL)
			coupon_cache_get(ctx->coupons, m.coupon_id, on_coupon, p);
		break;
	case ROUTE_REQUEST:
	case ROUTE_REQUEST_EVENTS:
		http_handle_status(ctx, req, &m, m.route == ROUTE_REQUEST_EVENTS);
		break;
	case ROUTE_USER_COUPONS:
		handle_user_coupons(ctx, req, &m);
		break;
	case ROUTE_ADMIN_COUPONS:
		if (evhttp_request_get_command(req) == EVHTTP_REQ_POST)
			http_handle_admin_create(ctx, req);
		else
			http_handle_admin_list(ctx, req);
		break;
	case ROUTE_ADMIN_COUPON:
		http_handle_admin_patch(ctx, req, &m);
		break;
	case ROUTE_ADMIN_EVENTS:
		http_handle_admin_events(ctx, req, &m);
		break;
	case ROUTE_ADMIN_HISTORY:
		http_handle_admin_history(ctx, req, &m);
		break;
	case ROUTE_METRICS:
		handle_metrics(ctx, req);
		break;
	case ROUTE_NONE:
	case ROUTE_COUNT:
		break;
	}
}

int http_api_init(http_ctx_t *ctx, struct event_base *base, const config_t *cfg, const char *bootstrap)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = cfg;
	ctx->base = base;
	ctx->redis = redis_async_new(base, cfg, "gate");
	ctx->pg = pg_async_new(base, cfg);
	ctx->producer = producer_new(base, cfg, bootstrap);
	if (ctx->redis == NULL || ctx->pg == NULL || ctx->producer == NULL || http_issue_init(ctx) != 0)
		return -1;
	ctx->coupons = coupon_cache_new(cfg, ctx->pg, ctx->redis);
	ctx->sse = sse_new(base, cfg, http_recheck_stream, ctx);
	return ctx->coupons == NULL || ctx->sse == NULL ? -1 : 0;
}

void http_api_fini(http_ctx_t *ctx)
{
	/*
	 * The producer first: its flush runs the last delivery reports, which
	 * settle claims and write statuses through the Redis client. Then the
	 * connections: their pending callbacks still point into the cache and the
	 * SSE registry.
	 */
	producer_free(ctx->producer, (int)ctx->cfg->kafka_produce_timeout);
	ctx->producer = NULL;
	http_issue_fini(ctx); /* sends what the last delivery reports queued */
	redis_async_free(ctx->redis);
	pg_async_free(ctx->pg);
	coupon_cache_free(ctx->coupons);
	sse_free(ctx->sse);
}
