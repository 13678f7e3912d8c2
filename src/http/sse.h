/* SPDX-License-Identifier: BSD-2-Clause */
/* sse.h: Server-Sent Events streams of request statuses, fed by one Redis subscriber per HTTP worker. */
#ifndef COUPONSD_SSE_H
#define COUPONSD_SSE_H

#include "core/config.h"
#include "core/issue_event.h"

#include <event2/event.h>
#include <event2/http.h>

typedef struct sse sse_t;

/*
 * Asks for a fresh look at an open stream's request: its status hash in
 * Redis, and with thorough PostgreSQL too; what it finds goes to
 * sse_deliver(). The HTTP worker's status lookup (http_status.c).
 */
typedef void (*sse_recheck_fn)(const char *request_id, int thorough, void *arg);

sse_t *sse_new(struct event_base *base, const config_t *cfg, sse_recheck_fn recheck, void *recheck_arg);
void sse_free(sse_t *sse);

/*
 * Starts a stream for req and sends the status as its first event; a final
 * status ends the stream at once. Otherwise the stream waits for the result
 * published on Redis. Returns the number of open streams afterwards.
 */
int sse_open(sse_t *sse, struct evhttp_request *req, const request_status_t *status, int draining);

/* Delivers a status to the streams of its request (used for the re-check after opening). */
void sse_deliver(sse_t *sse, const request_status_t *status);

/* The HTTP worker's close callback: forget a stream whose client went away. */
void sse_connection_closed(sse_t *sse, struct evhttp_connection *conn);

/* Ends every stream (graceful stop: clients reconnect to a live worker). */
void sse_close_all(sse_t *sse);

/* Parses the status JSON of the results channel. Returns 0 or -1. */
int sse_parse_status(const char *json, size_t len, request_status_t *out);

#endif
