/* SPDX-License-Identifier: BSD-2-Clause */
/* http_admin_events.c: GET /api/admin/coupons/{id}/events: one sale's figures as Server-Sent Events. */
#include "http/http_admin_ops.h"

#include "core/clock.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Figures are read from PostgreSQL this often, and sent when they changed. */
#define TICK_MS 1000
#define KEEPALIVE_TICKS 15

static const char one_sql[] = ADMIN_FIGURES_SELECT " WHERE c.id = $1::bigint";

struct admin_stream {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	struct evhttp_connection *conn; /* NULL until the stream has started */
	struct event *timer;
	int64_t coupon_id;
	char *last;   /* the figures last sent */
	int quiet;    /* ticks since something was sent */
	int querying; /* a query is in flight: its callback frees a stream whose client left */
	int gone;     /* the client left (or the worker drains) */
	struct admin_stream *next;
};

static void unlink_stream(admin_stream_t *s)
{
	for (admin_stream_t **p = &s->ctx->admin_streams; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			return;
		}
	}
}

static void stream_free(admin_stream_t *s)
{
	unlink_stream(s);
	if (s->timer != NULL)
		event_free(s->timer);
	free(s->last);
	free(s);
}

/* An event, or with name NULL the keep-alive comment. */
static void send_event(admin_stream_t *s, const char *name, const char *json)
{
	struct evbuffer *buf = evbuffer_new();
	int n = buf == NULL    ? -1
	        : name != NULL ? evbuffer_add_printf(buf, "event: %s\ndata: %s\n\n", name, json)
	                       : evbuffer_add_printf(buf, ": keep-alive\n\n");

	if (n > 0)
		evhttp_send_reply_chunk(s->req, buf);
	if (buf != NULL)
		evbuffer_free(buf);
}

static void end_stream(admin_stream_t *s)
{
	evhttp_send_reply_end(s->req);
	stream_free(s);
}

static void start_stream(admin_stream_t *s)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(s->req);

	evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_send_reply_start(s->req, 200, "OK");
	s->conn = evhttp_request_get_connection(s->req);
}

/* The sale is over once SOLD_OUT or CLOSED and nothing moved for a tick (the last rejections are in). */
static int finished(const admin_stream_t *s, json_t *figures, int changed)
{
	const char *status = json_string_value(json_object_get(figures, "status"));
	json_t *pending = json_object_get(figures, "pending");

	if (status == NULL || (strcmp(status, "SOLD_OUT") != 0 && strcmp(status, "CLOSED") != 0))
		return 0;
	return !changed || json_is_null(pending) || json_integer_value(pending) == 0 || s->quiet > 0;
}

/* Sends the figures if they moved; 1 when the stream has ended. */
static int deliver(admin_stream_t *s, json_t *figures)
{
	char *text = json_dumps(figures, JSON_COMPACT);
	int changed = text != NULL && (s->last == NULL || strcmp(text, s->last) != 0);
	int done = text != NULL && finished(s, figures, changed);

	if (changed || done) {
		send_event(s, done ? "final" : "figures", text);
		free(s->last);
		s->last = text;
		s->quiet = 0;
	} else {
		free(text);
		if (++s->quiet % KEEPALIVE_TICKS == 0)
			send_event(s, NULL, NULL);
	}
	if (done)
		end_stream(s);
	return done;
}

static void tick_later(admin_stream_t *s)
{
	struct timeval tv = clock_timeval(TICK_MS);

	if (event_add(s->timer, &tv) != 0) {
		log_error("cannot arm an admin stream's timer");
		end_stream(s);
	}
}

static void on_figures(const PGresult *res, const char *error, void *arg)
{
	admin_stream_t *s = arg;
	json_t *figures =
	    error == NULL && PQntuples(res) == 1 ? http_admin_figures(s->ctx, PQgetvalue(res, 0, 1)) : NULL;

	s->querying = 0;
	if (s->gone) {
		json_decref(figures);
		stream_free(s);
		return;
	}
	if (s->conn == NULL && figures == NULL) { /* not started yet: an ordinary JSON error */
		if (error == NULL)
			http_reply_error(s->ctx, s->req, 404, "COUPON_NOT_FOUND",
			                 "coupon %lld does not exist", (long long)s->coupon_id);
		else {
			http_set_retry_after(s->req, 1);
			http_reply_error(s->ctx, s->req, 503, "UNAVAILABLE",
			                 "the database cannot be reached");
		}
		stream_free(s);
		return;
	}
	if (s->conn == NULL)
		start_stream(s);
	if (figures == NULL || !deliver(s, figures))
		tick_later(s);
	json_decref(figures);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	admin_stream_t *s = arg;
	char id[24];
	const char *params[] = {id};

	(void)fd;
	(void)what;
	snprintf(id, sizeof(id), "%lld", (long long)s->coupon_id);
	if (pg_async_query(s->ctx->pg, one_sql, 1, params, on_figures, s) == 0)
		s->querying = 1;
	else if (s->conn == NULL)
		on_figures(NULL, "the database cannot be reached", s);
	else
		tick_later(s); /* PostgreSQL is away: the stream waits and tries again */
}

void http_handle_admin_events(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m)
{
	admin_stream_t *s;

	if (!http_admin_authorized(ctx, req))
		return;
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->timer = evtimer_new(ctx->base, on_tick, s)) == NULL) {
		free(s);
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	s->ctx = ctx;
	s->req = req;
	s->coupon_id = m->coupon_id;
	s->next = ctx->admin_streams;
	ctx->admin_streams = s;
	on_tick(-1, 0, s);
}

void http_admin_events_closed(http_ctx_t *ctx, struct evhttp_connection *conn)
{
	for (admin_stream_t *s = ctx->admin_streams; s != NULL; s = s->next) {
		if (s->conn != conn || s->gone)
			continue;
		/* As sse.c: a request libevent detached is ours to end, which frees it. */
		if (evhttp_request_get_connection(s->req) == NULL)
			evhttp_send_reply_end(s->req);
		s->gone = 1;
		if (!s->querying)
			stream_free(s);
		return;
	}
}

void http_admin_events_close_all(http_ctx_t *ctx)
{
	admin_stream_t *s = ctx->admin_streams, *next;

	for (; s != NULL; s = next) {
		next = s->next;
		if (s->gone || s->conn == NULL)
			continue;
		evhttp_send_reply_end(s->req);
		s->gone = 1;
		if (!s->querying)
			stream_free(s);
	}
}
