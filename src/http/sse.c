/* SPDX-License-Identifier: BSD-2-Clause */
/* sse.c: Server-Sent Events streams of request statuses, fed by one Redis subscriber per HTTP worker. */
#include "http/sse.h"

#include "core/keys.h"
#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/ptrset.h"
#include "http/redis_async.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096
#define KEEPALIVE_SECONDS 15
/* A worker with no stream for this long unsubscribes (fault sse_idle_ms: a test build's own value). */
#define IDLE_UNSUBSCRIBE_MS 10000

typedef struct stream {
	struct stream *next;
	sse_t *sse;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	char request_id[UUID_TEXT_LEN + 1];
	request_state_t last_state;
} stream_t;

struct sse {
	const config_t *cfg;
	redis_async_t *sub;
	stream_t *buckets[BUCKETS];
	int count;
	ptrset_t conns; /* connections carrying a stream */
	struct event *keepalive_ev;
	struct event *idle_ev; /* armed while no stream is open: then the subscription goes */
	sse_recheck_fn recheck;
	void *recheck_arg;
};

static unsigned bucket_of(const char *request_id)
{
	unsigned h = 2166136261u;

	for (const char *p = request_id; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % BUCKETS;
}

/*
 * Every worker hearing every result cost Redis a write per decision and
 * subscriber, and each worker the reading of it (docs/performance.md, round
 * 2f), for streams that are rare. So a worker subscribes when its first
 * stream opens and unsubscribes once it has had none for a while. A stream
 * opened before the subscription is confirmed misses nothing: the
 * confirmation re-reads every open stream's status (on_subscribed()).
 */
static void streams_changed(sse_t *sse)
{
	long idle_ms = fault_value("sse_idle_ms");
	struct timeval tv;

	if (sse->idle_ev == NULL)
		return; /* sse_new() failed before it: torn down */
	if (sse->count > 0) {
		event_del(sse->idle_ev);
		redis_async_hear(sse->sub, 1);
		return;
	}
	tv = clock_timeval(idle_ms >= 0 ? idle_ms : IDLE_UNSUBSCRIBE_MS);
	if (!evtimer_pending(sse->idle_ev, NULL) && evtimer_add(sse->idle_ev, &tv) != 0)
		log_warn("cannot arm the event streams' idle timer: the results subscription stays");
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
	sse_t *sse = arg;

	if (sse->count == 0)
		redis_async_hear(sse->sub, 0);
}

static void unlink_stream(stream_t *s)
{
	for (stream_t **p = &s->sse->buckets[bucket_of(s->request_id)]; *p != NULL; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			s->sse->count--;
			streams_changed(s->sse);
			return;
		}
	}
}

void sse_connection_closed(sse_t *sse, struct evhttp_connection *conn)
{
	if (!ptrset_remove(&sse->conns, conn))
		return;
	/* Rare (a client leaving mid-stream), so a scan is fine. */
	for (int i = 0; i < BUCKETS; i++) {
		for (stream_t *s = sse->buckets[i]; s != NULL; s = s->next) {
			if (s->conn == conn) {
				/*
				 * A client that left (EOF, timeout) had its request detached
				 * by libevent, which then leaves it to us: ending the reply
				 * frees it. One still attached (evhttp_free at exit) is freed
				 * with its connection.
				 */
				if (evhttp_request_get_connection(s->req) == NULL)
					evhttp_send_reply_end(s->req);
				unlink_stream(s);
				free(s);
				return;
			}
		}
	}
}

static void end_stream(stream_t *s)
{
	unlink_stream(s);
	ptrset_remove(&s->sse->conns, s->conn);
	evhttp_send_reply_end(s->req);
	free(s);
}

static void send_status(stream_t *s, const request_status_t *st)
{
	struct evbuffer *buf = evbuffer_new();
	char *json = status_to_json(st);

	if (buf != NULL && json != NULL && evbuffer_add_printf(buf, "event: status\ndata: %s\n\n", json) > 0)
		evhttp_send_reply_chunk(s->req, buf);
	s->last_state = st->state;
	free(json);
	if (buf != NULL)
		evbuffer_free(buf);
}

void sse_deliver(sse_t *sse, const request_status_t *st)
{
	stream_t *s = sse->buckets[bucket_of(st->event.request_id)], *next;

	for (; s != NULL; s = next) {
		next = s->next;
		if (strcmp(s->request_id, st->event.request_id) != 0 || s->last_state == st->state)
			continue;
		send_status(s, st);
		if (st->state != STATUS_PENDING)
			end_stream(s);
	}
}

int sse_parse_status(const char *text, size_t len, request_status_t *st)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	const char *rid = json_string_value(json_object_get(o, "requestId"));
	const char *state = json_string_value(json_object_get(o, "status"));
	const char *reason = json_string_value(json_object_get(o, "reason"));
	const char *accepted = json_string_value(json_object_get(o, "acceptedAt"));
	const char *decided = json_string_value(json_object_get(o, "decidedAt"));
	int rc = -1;

	memset(st, 0, sizeof(*st));
	if (rid != NULL && uuid_valid(rid, strlen(rid)) && state != NULL &&
	    status_state_parse(state, &st->state) == 0 &&
	    (reason == NULL || status_reason_parse(reason, &st->reason) == 0)) {
		memcpy(st->event.request_id, rid, UUID_TEXT_LEN + 1);
		st->event.coupon_id = (int64_t)json_integer_value(json_object_get(o, "couponId"));
		st->event.user_id = (int64_t)json_integer_value(json_object_get(o, "userId"));
		if (accepted != NULL)
			time_parse_iso(accepted, &st->event.accepted_ms);
		if (decided != NULL)
			time_parse_iso(decided, &st->decided_ms);
		rc = 0;
	}
	json_decref(o);
	return rc;
}

static void on_result(const char *payload, size_t len, void *arg)
{
	sse_t *sse = arg;
	request_status_t st;

	/* Every worker hears every result: with no stream open, do not even parse it (a third of a worker's
	 * CPU). */
	if (sse->count > 0 && sse_parse_status(payload, len, &st) == 0)
		sse_deliver(sse, &st);
}

/*
 * A result published while the subscriber was away (Redis restarted, the
 * connection reset) is never heard, and its stream would stay open on
 * keep-alives for good although the decision is made. So every open
 * stream's request is looked up again: thoroughly after a resubscribe, from
 * Redis alone on each keep-alive tick (cheap enough for many streams). The
 * ids are copied first: a delivery ends streams, and lookups may answer at
 * once.
 */
static void recheck_all(sse_t *sse, int thorough)
{
	char(*ids)[UUID_TEXT_LEN + 1];
	int n = 0;

	if (sse->count == 0 || sse->recheck == NULL)
		return;
	if ((ids = malloc((size_t)sse->count * sizeof(*ids))) == NULL) {
		log_warn("out of memory re-checking %d event streams", sse->count);
		return;
	}
	for (int i = 0; i < BUCKETS; i++) {
		for (stream_t *s = sse->buckets[i]; s != NULL && n < sse->count; s = s->next)
			memcpy(ids[n++], s->request_id, sizeof(ids[0]));
	}
	for (int i = 0; i < n; i++)
		sse->recheck(ids[i], thorough, sse->recheck_arg);
	free(ids);
}

static void on_subscribed(void *arg)
{
	recheck_all(arg, 1);
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
	sse_t *sse = arg;

	recheck_all(sse, 0);
	for (int i = 0; i < BUCKETS; i++) {
		for (stream_t *s = sse->buckets[i]; s != NULL; s = s->next) {
			struct evbuffer *buf = evbuffer_new();

			/* A comment line: proxies and clients see traffic, EventSource ignores it. */
			if (buf != NULL && evbuffer_add(buf, ": keep-alive\n\n", 14) == 0)
				evhttp_send_reply_chunk(s->req, buf);
			if (buf != NULL)
				evbuffer_free(buf);
		}
	}
}

int sse_open(sse_t *sse, struct evhttp_request *req, const request_status_t *st, int draining)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	stream_t *s = calloc(1, sizeof(*s));
	unsigned b;

	if (s == NULL) {
		evhttp_send_error(req, 503, NULL);
		return sse->count;
	}
	evhttp_add_header(h, "Content-Type", "text/event-stream; charset=utf-8");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	if (draining)
		evhttp_add_header(h, "Connection", "close");
	evhttp_send_reply_start(req, 200, "OK");
	s->sse = sse;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	s->last_state = (request_state_t)-1;
	memcpy(s->request_id, st->event.request_id, sizeof(s->request_id));
	b = bucket_of(s->request_id);
	s->next = sse->buckets[b];
	sse->buckets[b] = s;
	sse->count++;
	streams_changed(sse);
	if (ptrset_add(&sse->conns, s->conn) < 0) {
		end_stream(s);
		return sse->count;
	}
	sse_deliver(sse, st);
	return sse->count;
}

void sse_close_all(sse_t *sse)
{
	for (int i = 0; i < BUCKETS; i++) {
		while (sse->buckets[i] != NULL)
			end_stream(sse->buckets[i]);
	}
}

sse_t *sse_new(struct event_base *base, const config_t *cfg, sse_recheck_fn recheck, void *recheck_arg)
{
	sse_t *sse = calloc(1, sizeof(*sse));
	struct timeval tv = clock_timeval(KEEPALIVE_SECONDS * 1000);
	char channel[KEYS_MAX];

	if (sse == NULL)
		return NULL;
	sse->cfg = cfg;
	sse->recheck = recheck;
	sse->recheck_arg = recheck_arg;
	sse->sub = redis_async_new(base, cfg, "subscriber");
	sse->keepalive_ev = event_new(base, -1, EV_PERSIST, on_keepalive, sse);
	sse->idle_ev = evtimer_new(base, on_idle, sse);
	if (sse->sub == NULL || sse->keepalive_ev == NULL || sse->idle_ev == NULL ||
	    event_add(sse->keepalive_ev, &tv) != 0 ||
	    keys_results_channel(cfg->redis_key_prefix, channel, sizeof(channel)) < 0 ||
	    redis_async_listen(sse->sub, channel, on_result, on_subscribed, sse) != 0) {
		sse_free(sse);
		return NULL;
	}
	return sse; /* not subscribed until the first stream opens */
}

void sse_free(sse_t *sse)
{
	if (sse == NULL)
		return;
	sse_close_all(sse);
	if (sse->keepalive_ev != NULL)
		event_free(sse->keepalive_ev);
	if (sse->idle_ev != NULL)
		event_free(sse->idle_ev);
	redis_async_free(sse->sub);
	ptrset_free(&sse->conns);
	free(sse);
}
