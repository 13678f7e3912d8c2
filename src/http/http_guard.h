/* SPDX-License-Identifier: BSD-2-Clause */
/* http_guard.h: a whole-request deadline on every HTTP connection, so slow and partial requests end. */
#ifndef COUPONSD_HTTP_GUARD_H
#define COUPONSD_HTTP_GUARD_H

#include <event2/event.h>
#include <event2/http.h>
#include <stdint.h>

/*
 * evhttp's read timeout restarts with every byte that arrives, so a client
 * sending a header a byte a second is never cut. The guard gives each
 * connection timeout_ms to deliver a whole request, counted from its accept
 * or from the last answer it was sent; while a handler holds a request
 * (an SSE stream for as long as it lasts) the clock stands still.
 *
 * At accept it also installs, on the connection's bufferevent, the JSON
 * rewrite of libevent's error pages (http_errpage.h) and the strict RFC 9112
 * framing check of the raw input (http_strict.h).
 */
typedef struct http_guard http_guard_t;

/* Told of the end of every connection the guard knows. */
typedef void (*http_guard_close_fn)(struct evhttp_connection *conn, void *arg);

/* Told the number of open connections (accepted, not yet closed) each time it changes. */
typedef void (*http_guard_count_fn)(int count, void *arg);

/* Installs itself as http's bufferevent factory (evhttp_set_bevcb). NULL when out of memory. */
http_guard_t *http_guard_new(struct event_base *base, struct evhttp *http, int64_t timeout_ms,
                             http_guard_close_fn on_close, void *arg);

/* Sets the count callback (with on_close's arg); it runs at each accept and each close. */
void http_guard_on_count(http_guard_t *g, http_guard_count_fn fn);

/*
 * A whole request arrived and a handler took it: the clock stops until the
 * answer is sent. Call it after the handler ran: the guard takes over the
 * request's on-complete callback and calls the one the handler set first.
 */
void http_guard_request(http_guard_t *g, struct evhttp_request *req);

/* After evhttp_free() (which ends every connection and so every entry). */
void http_guard_free(http_guard_t *g);

#endif
