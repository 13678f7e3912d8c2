/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_guard.c: a whole-request deadline on every HTTP connection, so slow and partial requests end,
 * and strict RFC 9112 framing on its raw input (http_strict.c), installed at accept.
 */
#include "http/http_guard.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/ptrset.h"
#include "http/http_api.h"
#include "http/http_errpage.h"
#include "http/http_strict.h"

#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <stdlib.h>

/* How often connections are checked: a slow client is cut between timeout and timeout + this. */
#define SWEEP_MS 250

typedef void (*complete_fn)(struct evhttp_request *req, void *arg);

typedef struct guard_conn {
	struct http_guard *g;
	struct bufferevent *bev; /* while fresh: accepted, not yet known as a connection */
	struct evhttp_connection *conn;
	int64_t idle_since;                 /* clock_mono_ms() when it last started waiting for a request */
	int busy;                           /* a handler holds its request */
	int active;                         /* it carried a request since the last sweep */
	http_errpage_t page;                /* libevent's own error pages become JSON (http_errpage.c) */
	struct evbuffer_cb_entry *page_cb;  /* on the bufferevent's output, or NULL */
	http_strict_t strict;               /* the framing of what the client sends */
	struct evbuffer_cb_entry *input_cb; /* on the bufferevent's input, or NULL */
	complete_fn chained; /* the request's own on-complete callback (metrics), called first */
	void *chained_arg;
	struct guard_conn *prev, *next;
} guard_conn_t;

struct http_guard {
	int64_t timeout_ms;
	http_guard_close_fn on_close;
	http_guard_count_fn on_count;
	void *arg;
	guard_conn_t *fresh; /* bufferevents made for accepted sockets, set up on the next loop turn */
	int fresh_count;
	guard_conn_t *conns; /* every connection known, doubly linked */
	int count;
	guard_conn_t **map; /* open addressing by connection pointer, for requests to find their entry */
	size_t capacity;    /* a power of two, or 0 */
	guard_conn_t *closing;
	struct event *setup_ev, *sweep_ev;
	struct evbuffer *scratch; /* shared by the connections' http_strict_t, empty between callbacks */
};

/* ---- the map: connection -> entry ---- */

static size_t home_of(const http_guard_t *g, const void *conn)
{
	return ptrset_hash(conn) & (g->capacity - 1);
}

static guard_conn_t *map_find(const http_guard_t *g, const struct evhttp_connection *conn)
{
	if (g->capacity == 0)
		return NULL;
	for (size_t i = home_of(g, conn); g->map[i] != NULL; i = (i + 1) & (g->capacity - 1)) {
		if (g->map[i]->conn == conn)
			return g->map[i];
	}
	return NULL;
}

static void map_put(http_guard_t *g, guard_conn_t *t)
{
	size_t i = home_of(g, t->conn);

	while (g->map[i] != NULL)
		i = (i + 1) & (g->capacity - 1);
	g->map[i] = t;
}

/* Returns -1 when out of memory; the map stays at most half full. */
static int map_add(http_guard_t *g, guard_conn_t *t)
{
	if ((size_t)(g->count + 1) * 2 > g->capacity) {
		size_t old = g->capacity;
		guard_conn_t **slots = g->map;

		g->map = calloc(old ? old * 2 : 64, sizeof(*g->map));
		if (g->map == NULL) {
			g->map = slots;
			return -1;
		}
		g->capacity = old ? old * 2 : 64;
		for (size_t i = 0; i < old; i++) {
			if (slots[i] != NULL)
				map_put(g, slots[i]);
		}
		free(slots);
	}
	map_put(g, t);
	return 0;
}

static void map_remove(http_guard_t *g, const guard_conn_t *t)
{
	size_t mask = g->capacity - 1, i = home_of(g, t->conn), j;

	while (g->map[i] != t)
		i = (i + 1) & mask;
	g->map[i] = NULL;
	/* Backward-shift the rest of the probe run so lookups never stop early at the hole. */
	for (j = (i + 1) & mask; g->map[j] != NULL; j = (j + 1) & mask) {
		size_t home = home_of(g, g->map[j]->conn);

		if (((j - home) & mask) >= ((j - i) & mask)) {
			g->map[i] = g->map[j];
			g->map[j] = NULL;
			i = j;
		}
	}
}

/* ---- entries ---- */

/* Before t is freed: its bufferevent may outlive it. */
static void unwatch_page(guard_conn_t *t, struct bufferevent *bev)
{
	if (t->page_cb != NULL && evbuffer_remove_cb_entry(bufferevent_get_output(bev), t->page_cb) != 0)
		log_warn("cannot stop watching a connection's output");
	t->page_cb = NULL;
	if (t->input_cb != NULL && evbuffer_remove_cb_entry(bufferevent_get_input(bev), t->input_cb) != 0)
		log_warn("cannot stop watching a connection's input");
	t->input_cb = NULL;
	http_strict_fini(&t->strict);
}

/* Accepted and not yet closed, whether or not a request came: what http.max_connections bounds. */
static void count_changed(http_guard_t *g)
{
	if (g->on_count != NULL)
		g->on_count(g->count + g->fresh_count, g->arg);
}

/* The connection is going away (evhttp frees it after this returns). */
static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
	guard_conn_t *t = arg;
	http_guard_t *g = t->g;

	map_remove(g, t);
	unwatch_page(t, evhttp_connection_get_bufferevent(conn));
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		g->conns = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	g->count--;
	if (g->closing == t)
		g->closing = NULL;
	free(t);
	g->on_close(conn, g->arg);
	count_changed(g);
}

/* Returns 0, or -1 (out of memory: the connection goes unguarded, as evhttp alone would keep it). */
static int adopt(http_guard_t *g, guard_conn_t *t, struct evhttp_connection *conn)
{
	t->g = g;
	t->conn = conn;
	t->bev = NULL;
	t->idle_since = clock_mono_ms();
	if (map_add(g, t) != 0)
		return -1;
	t->prev = NULL;
	t->next = g->conns;
	if (g->conns != NULL)
		g->conns->prev = t;
	g->conns = t;
	g->count++;
	evhttp_connection_set_closecb(conn, on_conn_close, t);
	return 0;
}

/*
 * evhttp has no hook for a new connection, only for its bufferevent. By the
 * next turn of the loop it has made the connection around it and set the
 * bufferevent's callback argument to it: that is how the connection is
 * found. The reference taken in make_bev() keeps the bufferevent's memory
 * valid meanwhile, and one that evhttp freed has its callbacks cleared.
 */
static void setup_fresh(evutil_socket_t fd, short what, void *arg)
{
	http_guard_t *g = arg;
	guard_conn_t *t;

	while ((t = g->fresh) != NULL) {
		struct bufferevent *bev = t->bev;
		bufferevent_data_cb readcb = NULL;
		void *cbarg = NULL;

		g->fresh = t->next;
		g->fresh_count--;
		bufferevent_getcb(bev, &readcb, NULL, NULL, &cbarg);
		if (readcb == NULL || cbarg == NULL || evhttp_connection_get_bufferevent(cbarg) != bev ||
		    adopt(g, t, cbarg) != 0) {
			unwatch_page(t, bev);
			free(t);
		}
		bufferevent_decref(bev);
	}
	count_changed(g);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	http_guard_t *g = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	guard_conn_t *t;

	if (bev == NULL)
		return NULL; /* evhttp makes its own: that connection goes unguarded */
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return bev;
	bufferevent_incref(bev);
	t->bev = bev;
	t->page_cb = evbuffer_add_cb(bufferevent_get_output(bev), http_errpage_on_output, &t->page);
	/* Before the first read, so evhttp never sees a byte it did not judge (see http_strict.h). */
	http_strict_init(&t->strict, g->scratch, &t->page, HTTP_HARD_CAP_SLACK);
	t->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), http_strict_on_input, &t->strict);
	if (t->input_cb == NULL)
		log_warn("out of memory: a connection's framing goes unchecked");
	t->next = g->fresh;
	g->fresh = t;
	g->fresh_count++;
	event_active(g->setup_ev, EV_TIMEOUT, 1);
	count_changed(g); /* at accept: the worker may stop accepting before the next one */
	return bev;
}

/* Cuts one connection; if evhttp did not report its end, the entry is dropped here. */
static void cut(http_guard_t *g, guard_conn_t *t)
{
	struct evhttp_connection *conn = t->conn;

	log_debug("closing a connection that sent no whole request within http.read_timeout");
	g->closing = t;
	evhttp_connection_free(conn);
	if (g->closing == t)
		on_conn_close(conn, t);
}

static void sweep(evutil_socket_t fd, short what, void *arg)
{
	http_guard_t *g = arg;
	int64_t now = clock_mono_ms();
	guard_conn_t *t, *next;

	for (t = g->conns; t != NULL; t = next) {
		next = t->next;
		if (t->busy || t->active)
			t->idle_since = now;
		else if (now - t->idle_since >= g->timeout_ms)
			cut(g, t); /* frees t */
	}
	for (t = g->conns; t != NULL; t = t->next)
		t->active = 0;
}

/*
 * While a handler holds a request the client owes nothing, yet evhttp's read
 * timeout keeps running and would cut a long answer: an SSE stream, or a 503
 * after kafka.produce_timeout. It is off while busy; the write timeout stays.
 */
static void set_read_timeout(const http_guard_t *g, guard_conn_t *t, int on)
{
	struct timeval tv = clock_timeval(g->timeout_ms);

	if (bufferevent_set_timeouts(evhttp_connection_get_bufferevent(t->conn), on ? &tv : NULL, &tv) != 0)
		log_warn("cannot set a connection's timeouts");
}

/* The answer is out (the connection is alive: evhttp calls this before it may close it). */
static void on_complete(struct evhttp_request *req, void *arg)
{
	guard_conn_t *t = arg;

	if (t->chained != NULL)
		t->chained(req, t->chained_arg);
	t->chained = NULL;
	t->busy = 0;
	t->active = 1; /* the clock for the next request starts at the next sweep */
	set_read_timeout(t->g, t, 1);
}

void http_guard_request(http_guard_t *g, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	guard_conn_t *t;

	if (conn == NULL)
		return;
	/* A connection missed at accept (out of memory then) is followed from its first request. */
	if ((t = map_find(g, conn)) == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
		if (adopt(g, t, conn) != 0) {
			free(t);
			t = NULL;
		} else {
			count_changed(g);
		}
	}
	if (t == NULL)
		return;
	t->busy = 1;
	t->active = 1;
	set_read_timeout(g, t, 0);
	/*
	 * evhttp keeps one on-complete callback per request, and the handlers
	 * may have set theirs (metrics): it is kept and called first. The field
	 * is public in event2/http_struct.h; there is no getter.
	 */
	t->chained = req->on_complete_cb;
	t->chained_arg = req->on_complete_cb_arg;
	evhttp_request_set_on_complete_cb(req, on_complete, t);
}

http_guard_t *http_guard_new(struct event_base *base, struct evhttp *http, int64_t timeout_ms,
                             http_guard_close_fn on_close, void *arg)
{
	http_guard_t *g = calloc(1, sizeof(*g));
	struct timeval tick = clock_timeval(SWEEP_MS);

	if (g == NULL)
		return NULL;
	g->timeout_ms = timeout_ms;
	g->on_close = on_close;
	g->arg = arg;
	g->setup_ev = event_new(base, -1, 0, setup_fresh, g);
	g->sweep_ev = event_new(base, -1, EV_PERSIST, sweep, g);
	g->scratch = evbuffer_new();
	if (g->setup_ev == NULL || g->sweep_ev == NULL || g->scratch == NULL ||
	    event_add(g->sweep_ev, &tick) != 0) {
		http_guard_free(g);
		return NULL;
	}
	evhttp_set_bevcb(http, make_bev, g);
	return g;
}

void http_guard_on_count(http_guard_t *g, http_guard_count_fn fn)
{
	g->on_count = fn;
}

void http_guard_free(http_guard_t *g)
{
	guard_conn_t *t;

	if (g == NULL)
		return;
	g->on_count = NULL;    /* the worker is being torn down */
	setup_fresh(-1, 0, g); /* drops the references still held */
	while ((t = g->conns) != NULL) {
		g->conns = t->next;
		http_strict_fini(&t->strict);
		free(t);
	}
	if (g->setup_ev != NULL)
		event_free(g->setup_ev);
	if (g->sweep_ev != NULL)
		event_free(g->sweep_ev);
	if (g->scratch != NULL)
		evbuffer_free(g->scratch);
	free(g->map);
	free(g);
}
