/* SPDX-License-Identifier: BSD-2-Clause */
/* http_worker.c: the HTTP worker process (libevent evhttp on the master's listen sockets). */
#include "http/http_worker.h"

#include "core/clock.h"
#include "core/fault.h"
#include "http/http_api.h"
#include "http/http_guard.h"
#include "core/log.h"
#include "core/ptrset.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A drained worker exits once its connections are gone and nothing arrived for this long. */
#define DRAIN_QUIET_MS 250
/* After a fatal Kafka error: the last delivery reports' slack beyond kafka.produce_timeout. */
#define FATAL_DRAIN_SLACK_MS 1000
/* How often a worker whose Kafka topics disagree with the configuration looks again. */
#define TOPICS_RECHECK_MS 500
/* After a failed accept (EMFILE, ENFILE, ENOBUFS) the listeners rest this long instead of spinning. */
#define ACCEPT_BACKOFF_MS 500
/* A failing accept is logged at most this often. */
#define ACCEPT_LOG_EVERY_MS 10000
/* How often a starting worker looks whether its PostgreSQL and Redis clients are up. */
#define WARMUP_TICK_MS 10

typedef struct {
	worker_t *w;
	struct evhttp *http;
	http_guard_t *guard; /* the whole-request deadline (http.read_timeout) */
	struct evhttp_bound_socket *bound[CONFIG_MAX_LISTEN];
	int bound_count;
	ptrset_t conns;        /* connections that have carried a request and are still open */
	int64_t last_activity; /* clock_mono_ms() of the last accepted request */
	int draining;
	int drain_code;         /* the exit status once drained: 1 when it leaves on a fatal Kafka error */
	int64_t drain_deadline; /* clock_mono_ms() past which it leaves anyway; 0: the master bounds it */
	struct event *drain_ev;
	struct event *hang_ev;
	struct event *topics_ev; /* while the topics disagree: READY is withheld */
	http_ctx_t api;
	int api_ready;
	int warming;             /* starting: not accepting until the clients are up (bounded) */
	int64_t warmup_deadline; /* clock_mono_ms() after which it accepts whatever is up */
	struct event *warmup_ev;
	int accepting;      /* the listeners are enabled */
	int accept_paused;  /* at http.max_connections: new clients wait in the kernel's backlog */
	int accept_resting; /* after a failed accept (ACCEPT_BACKOFF_MS) */
	struct event *accept_rest_ev;
	int accept_errors;     /* failed accepts not logged yet */
	int64_t accept_logged; /* clock_mono_ms() of the last log of a failed accept */
} http_worker_t;

/* The listener's error callback gets evhttp's argument, not ours; a process has one HTTP worker. */
static http_worker_t *accept_owner;

/* Enables or disables the listeners as the reasons to stop accepting say. */
static void apply_accepting(http_worker_t *hw)
{
	int on = !hw->warming && !hw->draining && !hw->accept_paused && !hw->accept_resting;

	if (on == hw->accepting)
		return;
	for (int i = 0; i < hw->bound_count; i++) {
		struct evconnlistener *l = evhttp_bound_socket_get_listener(hw->bound[i]);

		if (on ? evconnlistener_enable(l) : evconnlistener_disable(l))
			log_warn("cannot %s accepting", on ? "resume" : "pause");
	}
	hw->accepting = on;
}

/*
 * http.max_connections: at the limit the worker stops accepting (connections
 * wait in the listen backlog or go to another worker) and resumes below it.
 * Counted from the accept (the guard's count), so connections that never
 * send a request count too: each holds a descriptor until http.read_timeout.
 */
static void on_conn_count(int count, void *arg)
{
	http_worker_t *hw = arg;
	int full = count >= hw->w->args.cfg->http_max_connections;

	if (full && !hw->accept_paused)
		log_warn("http.max_connections (%d) reached; not accepting until a connection closes",
		         hw->w->args.cfg->http_max_connections);
	hw->accept_paused = full;
	apply_accepting(hw);
}

static void on_accept_rest_end(evutil_socket_t fd, short what, void *arg)
{
	http_worker_t *hw = arg;

	hw->accept_resting = 0;
	apply_accepting(hw);
}

/*
 * A failed accept (EMFILE, ENFILE, ENOBUFS) leaves the connection in the
 * backlog, so the listener is readable again at once: left enabled it would
 * spin and log without end. It rests for ACCEPT_BACKOFF_MS instead.
 */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	http_worker_t *hw = accept_owner;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = clock_timeval(ACCEPT_BACKOFF_MS);

	if (hw == NULL)
		return;
	hw->accept_errors++;
	if (clock_mono_ms() - hw->accept_logged >= ACCEPT_LOG_EVERY_MS) {
		log_warn("accept: %s; not accepting for %d ms (%d failed accepts since the last report)",
		         evutil_socket_error_to_string(err), ACCEPT_BACKOFF_MS, hw->accept_errors);
		hw->accept_logged = clock_mono_ms();
		hw->accept_errors = 0;
	}
	hw->accept_resting = 1;
	apply_accepting(hw);
	if (evtimer_add(hw->accept_rest_ev, &tv) != 0) {
		log_error("cannot schedule accepting again");
		on_accept_rest_end(-1, 0, hw);
	}
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
	http_worker_t *hw = arg;

	ptrset_remove(&hw->conns, conn);
	if (hw->api_ready) {
		sse_connection_closed(hw->api.sse, conn);
		http_admin_events_closed(&hw->api, conn);
	}
}

static void track_connection(http_worker_t *hw, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);

	hw->last_activity = clock_mono_ms();
	if (conn != NULL && ptrset_add(&hw->conns, conn) < 0)
		log_warn("out of memory tracking a connection");
}

static void on_request(struct evhttp_request *req, void *arg)
{
	http_worker_t *hw = arg;

	track_connection(hw, req);
	http_api_dispatch(&hw->api, req);
	/* After the handler: it may have set the request's on-complete callback, which the guard chains. */
	http_guard_request(hw->guard, req);
}

static int http_setup(http_worker_t *hw)
{
	const config_t *cfg = hw->w->args.cfg;
	struct timeval tv = clock_timeval(cfg->http_read_timeout);

	hw->api_ready = 1; /* set first: a half-built API is torn down by http_api_fini() too */
	if (http_api_init(&hw->api, hw->w->base, cfg, hw->w->args.kafka_bootstrap) != 0) {
		log_error("cannot set up the HTTP API's clients");
		return -1;
	}
	hw->api.shm = hw->w->args.shm;
	hw->http = evhttp_new(hw->w->base);
	if (hw->http == NULL)
		return -1;
	/* The timeout restarts with every byte read; the guard bounds a whole request. */
	evhttp_set_timeout_tv(hw->http, &tv);
	hw->guard = http_guard_new(hw->w->base, hw->http, cfg->http_read_timeout, on_conn_close, hw);
	hw->accept_rest_ev = evtimer_new(hw->w->base, on_accept_rest_end, hw);
	if (hw->guard == NULL || hw->accept_rest_ev == NULL)
		return -1;
	http_guard_on_count(hw->guard, on_conn_count);
	/*
	 * libevent answers what exceeds its own limits with an HTML page, so its
	 * limits are hard caps above ours: http.max_body and the header limit are
	 * enforced in http_api_dispatch(), with SPEC's JSON errors (413, 431).
	 */
	evhttp_set_max_body_size(hw->http, cfg->http_max_body + HTTP_HARD_CAP_SLACK);
	evhttp_set_max_headers_size(hw->http, HTTP_HARD_CAP_SLACK);
	/* Every method reaches the router, which answers 405 in JSON (libevent would say 501 in HTML). */
	evhttp_set_allowed_methods(hw->http, 0xffff);
	evhttp_set_gencb(hw->http, on_request, hw);
	for (int i = 0; i < hw->w->args.listeners->count; i++) {
		hw->bound[i] = evhttp_accept_socket_with_handle(hw->http, hw->w->args.listeners->fds[i]);
		if (hw->bound[i] == NULL) {
			log_error("cannot accept on inherited listen socket %d",
			          hw->w->args.listeners->fds[i]);
			return -1;
		}
		evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(hw->bound[i]), on_accept_error);
		hw->bound_count++;
	}
	accept_owner = hw;
	/* Bound means enabled: paused before the loop ever runs, they accept nothing yet (warmup_end()). */
	hw->accepting = 1;
	hw->warming = 1;
	apply_accepting(hw);
	return 0;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	http_worker_t *hw = arg;
	int64_t now = clock_mono_ms();

	if (hw->conns.count == 0 && now - hw->last_activity >= DRAIN_QUIET_MS) {
		log_info("drained; exiting");
		worker_finish(hw->w, hw->drain_code);
	} else if (hw->drain_deadline != 0 && now >= hw->drain_deadline) {
		log_warn("%zu connections still open at the end of the drain; exiting", hw->conns.count);
		worker_finish(hw->w, hw->drain_code);
	}
}

/*
 * Graceful stop: stop accepting (the listen sockets stay open in the master
 * and the next generation, so queued connections are not lost), answer what
 * is in flight with Connection: close, and leave when the last connection
 * has gone. Idle keep-alive connections end at http.read_timeout; the master
 * enforces daemon.shutdown_timeout on top.
 */
static void http_on_stop(worker_t *w)
{
	http_worker_t *hw = w->ctx;
	struct timeval tick = clock_timeval(50);

	for (int i = 0; i < hw->bound_count; i++)
		evhttp_del_accept_socket(hw->http, hw->bound[i]);
	hw->bound_count = 0;
	hw->draining = 1;
	hw->api.draining = 1;
	if (hw->warmup_ev != NULL)
		event_del(hw->warmup_ev); /* stopped before it ever got ready: it never reports READY now */
	sse_close_all(hw->api.sse);
	http_admin_events_close_all(&hw->api);
	hw->last_activity = clock_mono_ms();
	hw->drain_ev = event_new(w->base, -1, EV_PERSIST, on_drain_tick, hw);
	if (hw->drain_ev == NULL || event_add(hw->drain_ev, &tick) != 0) {
		log_error("cannot schedule the drain; exiting now");
		worker_finish(w, 1);
	}
}

/*
 * daemon.stop_drain: the stop is coming. Accepting goes on (connections
 * queued in the backlog would be reset when the listeners close) while
 * /readyz says 503 and every answer says Connection: close, until the
 * master sends STOP.
 */
static void http_on_message(worker_t *w, const channel_msg_t *msg)
{
	http_worker_t *hw = w->ctx;

	if (msg->type != CHANNEL_STOPPING || hw->api.stopping)
		return;
	log_info("stopping soon: /readyz says 503, every answer closes its connection");
	hw->api.stopping = 1;
}

/* Test builds only: block the loop so the heartbeat stops, as a real hang would. */
static void on_hang(evutil_socket_t fd, short what, void *arg)
{
	log_error("fault injection: hanging the event loop");
	for (;;)
		pause();
}

static void arm_hang_fault(http_worker_t *hw)
{
	struct timeval tv = clock_timeval(100);
	long after = fault_value("http_kafka_fatal_after");

	if (fault_value("http_kafka_fatal") == hw->w->args.index)
		producer_arm_fatal_fault(hw->api.producer, after > 0 ? after : 1);
	if (fault_value("http_hang") != hw->w->args.index)
		return;
	hw->hang_ev = evtimer_new(hw->w->base, on_hang, hw);
	if (hw->hang_ev == NULL || evtimer_add(hw->hang_ev, &tv) != 0)
		log_error("fault injection: cannot arm http_hang");
}

/*
 * SPEC 3: couponsd does not become ready while a topic is missing or the
 * issue topic's partition count is not kafka.partitions. The worker serves
 * (issue requests get 503 with the reason) but withholds READY, so a start
 * never reports READY=1 and a reload fails and keeps the old generation.
 */
static void on_topics_tick(evutil_socket_t fd, short what, void *arg)
{
	http_worker_t *hw = arg;
	char why[256];

	if (producer_topic_problem(hw->api.producer, why, sizeof(why)) != NULL)
		return;
	log_info("kafka topics agree with the configuration now; ready");
	if (event_del(hw->topics_ev) != 0)
		log_error("cannot stop the kafka topics check");
	if (worker_ready(hw->w, NULL) != 0)
		worker_finish(hw->w, 1);
}

static int report_ready(http_worker_t *hw)
{
	struct timeval tv = clock_timeval(TOPICS_RECHECK_MS);
	char why[256];

	if (producer_topic_problem(hw->api.producer, why, sizeof(why)) == NULL)
		return worker_ready(hw->w, NULL);
	log_error("not ready: %s; checking again every %d ms", why, TOPICS_RECHECK_MS);
	hw->topics_ev = event_new(hw->w->base, -1, EV_PERSIST, on_topics_tick, hw);
	return hw->topics_ev != NULL && event_add(hw->topics_ev, &tv) == 0 ? 0 : -1;
}

/*
 * The longest a starting worker waits for its clients: each one's first
 * connect attempt ends by its own timeout anyway, this is the safety net.
 * At most half of daemon.worker_timeout, so that a reload whose PostgreSQL
 * or Redis is down still completes instead of being refused by the master.
 */
static int64_t warmup_bound(const config_t *cfg)
{
	int64_t bound =
	    cfg->postgres_timeout > cfg->redis_timeout ? cfg->postgres_timeout : cfg->redis_timeout;

	return bound < cfg->daemon_worker_timeout / 2 ? bound : cfg->daemon_worker_timeout / 2;
}

static int clients_settled(const http_worker_t *hw)
{
	return pg_async_settled(hw->api.pg) && redis_async_settled(hw->api.redis);
}

/* Starts accepting and reports READY; a client that is not up is said, here and by /readyz. */
static void warmup_end(http_worker_t *hw)
{
	int pg = pg_async_connected(hw->api.pg), redis = redis_async_connected(hw->api.redis);

	if (event_del(hw->warmup_ev) != 0)
		log_error("cannot stop the start-up check");
	if (!pg || !redis)
		log_warn(
		    "accepting without %s%s%s: not connected at start (GET /readyz says 503 until it is)",
		    pg ? "" : "postgres", !pg && !redis ? " and " : "", redis ? "" : "redis");
	hw->warming = 0;
	apply_accepting(hw);
	if (report_ready(hw) != 0)
		worker_finish(hw->w, 1);
	arm_hang_fault(hw);
}

static void on_warmup_tick(evutil_socket_t fd, short what, void *arg)
{
	http_worker_t *hw = arg;

	if (hw->draining)
		return;
	if (clients_settled(hw) || clock_mono_ms() >= hw->warmup_deadline)
		warmup_end(hw);
}

/*
 * A worker that accepted before its PostgreSQL session was up answered 503
 * to every coupon it had not cached yet (issue 11 item 16), during a reload
 * while the old generation could have served them. So it accepts, and tells
 * the master it is ready (which retires the old generation, or sends
 * READY=1), only once its clients have connected; a client whose first
 * attempt failed does not hold it back: what is down stays down.
 */
static int warmup_begin(http_worker_t *hw)
{
	struct timeval tick = clock_timeval(WARMUP_TICK_MS);

	hw->warmup_deadline = clock_mono_ms() + warmup_bound(hw->w->args.cfg);
	hw->warmup_ev = event_new(hw->w->base, -1, EV_PERSIST, on_warmup_tick, hw);
	return hw->warmup_ev != NULL && event_add(hw->warmup_ev, &tick) == 0 ? 0 : -1;
}

/*
 * Requests would get 503 forever while /readyz said 200 (issue 11): a fresh
 * process gets a new producer. It drains first, as on a stop: the requests in
 * flight get their answer (202 for what Kafka had taken, 503 for what
 * librdkafka failed) rather than a cut connection, whose outcome a client
 * cannot know. A fatal error under a broker stall (librdkafka 2.0.2, a
 * request timed out in flight) left tens of requests cut this way. Every
 * delivery report comes within kafka.produce_timeout, so that bounds the wait
 * for idle keep-alive connections too.
 */
static void on_producer_fatal(void *arg)
{
	http_worker_t *hw = arg;

	log_error("the kafka producer cannot produce any more: answering the requests in flight, then "
	          "exiting; the master starts a new worker");
	hw->drain_code = 1;
	hw->drain_deadline = clock_mono_ms() + hw->w->args.cfg->kafka_produce_timeout + FATAL_DRAIN_SLACK_MS;
	worker_stop(hw->w);
}

static void http_destroy(http_worker_t *hw)
{
	if (hw->topics_ev != NULL)
		event_free(hw->topics_ev);
	if (hw->warmup_ev != NULL)
		event_free(hw->warmup_ev);
	if (hw->drain_ev != NULL)
		event_free(hw->drain_ev);
	if (hw->hang_ev != NULL)
		event_free(hw->hang_ev);
	if (hw->accept_rest_ev != NULL)
		event_free(hw->accept_rest_ev);
	/* The API first: its pending callbacks answer requests that evhttp still owns. */
	if (hw->api_ready)
		http_api_fini(&hw->api);
	hw->api_ready = 0;
	/* evhttp_free() frees the listeners, then closes each connection: on_conn_count() must not resume
	 * them. */
	hw->bound_count = 0;
	if (hw->http != NULL)
		evhttp_free(hw->http);
	http_guard_free(hw->guard); /* after evhttp_free(): every connection has ended by then */
	ptrset_free(&hw->conns);
	accept_owner = NULL;
	free(hw);
}

int http_worker_main(worker_t *w)
{
	http_worker_t *hw = calloc(1, sizeof(*hw));
	int rc = 1;

	if (hw == NULL) {
		log_error("out of memory");
		return 1;
	}
	hw->w = w;
	w->ctx = hw;
	w->on_stop = http_on_stop;
	w->on_message = http_on_message;
	if (http_setup(hw) == 0 && warmup_begin(hw) == 0) {
		producer_on_fatal(hw->api.producer, on_producer_fatal, hw);
		rc = worker_run(w);
	}
	http_destroy(hw);
	w->ctx = NULL;
	return rc;
}
