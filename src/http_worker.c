/* http_worker.c: the HTTP worker process (libevent evhttp on the master's listen sockets). */
#include "http_worker.h"

#include "clock.h"
#include "fault.h"
#include "log.h"
#include "ptrset.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A drained worker exits once its connections are gone and nothing arrived for this long. */
#define DRAIN_QUIET_MS 250

typedef struct {
	worker_t *w;
	struct evhttp *http;
	struct evhttp_bound_socket *bound[CONFIG_MAX_LISTEN];
	int bound_count;
	ptrset_t conns;        /* connections that have carried a request and are still open */
	int64_t last_activity; /* clock_mono_ms() of the last accepted request */
	int draining;
	struct event *drain_ev;
	struct event *hang_ev;
} http_worker_t;

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
	http_worker_t *hw = arg;

	ptrset_remove(&hw->conns, conn);
}

static void track_connection(http_worker_t *hw, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);

	hw->last_activity = clock_mono_ms();
	if (conn == NULL)
		return;
	if (ptrset_add(&hw->conns, conn) == 1)
		evhttp_connection_set_closecb(conn, on_conn_close, hw);
}

static void reply_json(http_worker_t *hw, struct evhttp_request *req, int code, const char *reason,
                       const char *body)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	evhttp_add_header(headers, "Content-Type", "application/json; charset=utf-8");
	/* While draining, tell keep-alive clients to reconnect: a new worker is listening. */
	if (hw->draining)
		evhttp_add_header(headers, "Connection", "close");
	if (evbuffer_add(out, body, strlen(body)) != 0) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_send_reply(req, code, reason, NULL);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	http_worker_t *hw = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	track_connection(hw, req);
	if (path != NULL && strcmp(path, "/healthz") == 0) {
		if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
		    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
			reply_json(hw, req, 405, "Method Not Allowed",
			           "{\"error\":\"METHOD_NOT_ALLOWED\",\"message\":\"use GET\"}");
			return;
		}
		reply_json(hw, req, 200, "OK", "{\"status\":\"ok\"}");
		return;
	}
	reply_json(hw, req, 404, "Not Found", "{\"error\":\"NOT_FOUND\",\"message\":\"no such route\"}");
}

static int http_setup(http_worker_t *hw)
{
	const config_t *cfg = hw->w->args.cfg;
	struct timeval tv = {cfg->http_read_timeout / 1000, (cfg->http_read_timeout % 1000) * 1000};

	hw->http = evhttp_new(hw->w->base);
	if (hw->http == NULL)
		return -1;
	evhttp_set_timeout_tv(hw->http, &tv);
	evhttp_set_max_body_size(hw->http, cfg->http_max_body);
	evhttp_set_max_headers_size(hw->http, 8192);
	evhttp_set_allowed_methods(hw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(hw->http, on_request, hw);
	for (int i = 0; i < hw->w->args.listeners->count; i++) {
		hw->bound[i] = evhttp_accept_socket_with_handle(hw->http, hw->w->args.listeners->fds[i]);
		if (hw->bound[i] == NULL) {
			log_error("cannot accept on inherited listen socket %d",
			          hw->w->args.listeners->fds[i]);
			return -1;
		}
		hw->bound_count++;
	}
	return 0;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	http_worker_t *hw = arg;

	if (hw->conns.count == 0 && clock_mono_ms() - hw->last_activity >= DRAIN_QUIET_MS) {
		log_info("drained; exiting");
		worker_finish(hw->w, 0);
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
	struct timeval tick = {0, 50 * 1000};

	for (int i = 0; i < hw->bound_count; i++)
		evhttp_del_accept_socket(hw->http, hw->bound[i]);
	hw->bound_count = 0;
	hw->draining = 1;
	hw->last_activity = clock_mono_ms();
	hw->drain_ev = event_new(w->base, -1, EV_PERSIST, on_drain_tick, hw);
	if (hw->drain_ev == NULL || event_add(hw->drain_ev, &tick) != 0) {
		log_error("cannot schedule the drain; exiting now");
		worker_finish(w, 1);
	}
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
	struct timeval tv = {0, 100 * 1000};

	if (fault_value("http_hang") != hw->w->args.index)
		return;
	hw->hang_ev = evtimer_new(hw->w->base, on_hang, hw);
	if (hw->hang_ev != NULL)
		evtimer_add(hw->hang_ev, &tv);
}

static void http_destroy(http_worker_t *hw)
{
	if (hw->drain_ev != NULL)
		event_free(hw->drain_ev);
	if (hw->hang_ev != NULL)
		event_free(hw->hang_ev);
	if (hw->http != NULL)
		evhttp_free(hw->http);
	ptrset_free(&hw->conns);
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
	if (http_setup(hw) == 0 && worker_ready(w, NULL) == 0) {
		arm_hang_fault(hw);
		rc = worker_run(w);
	}
	http_destroy(hw);
	w->ctx = NULL;
	return rc;
}
