/* SPDX-License-Identifier: BSD-2-Clause */
/* http_strict.h: holds each connection's raw input to RFC 9112 framing before evhttp parses it. */
#ifndef COUPONSD_HTTP_STRICT_H
#define COUPONSD_HTTP_STRICT_H

#include "http/http_errpage.h"
#include "http/http_framing.h"

#include <event2/buffer.h>

/*
 * libevent 2.1.12 has no hook to make its parser strict, so the raw bytes
 * are judged before it reads them: a callback on the input buffer of each
 * connection's bufferevent runs inside the socket read, after the bytes are
 * added and before evhttp's read callback looks at them. http_framing.c
 * reads them; a unit not yet whole (a head split across TCP segments, a
 * chunk-size line) is taken out of the input into `hold` and put back once
 * it is whole and valid, so evhttp only ever sees judged heads, and stands
 * at the start of a request or of a chunk-size line when one is refused.
 *
 * A refused unit and everything after it are dropped, and "\x01\r\n" put in
 * their place: a line evhttp refuses in either position, after answering
 * the requests before it (it reads a connection's requests one at a time).
 * Its error page becomes our 400 BAD_REQUEST with the reason
 * (http_errpage.c), with Connection: close, and evhttp closes.
 */
typedef struct {
	http_framing_t f;
	struct evbuffer *hold;    /* the unit not yet whole; made on first need */
	struct evbuffer *scratch; /* the guard's, for moving bytes about (empty between calls) */
	http_errpage_t *page;     /* the same connection's error-page rewriter */
	int busy;                 /* our own changes to the input are not looked at */
	int refused;              /* the poison is in: whatever comes next is dropped */
} http_strict_t;

/* The largest head (request line and fields) let through; libevent's own cap is HTTP_HARD_CAP_SLACK. */
void http_strict_init(http_strict_t *s, struct evbuffer *scratch, http_errpage_t *page, size_t head_max);

/* An evbuffer_cb_func for the input buffer of a connection's bufferevent; arg is its http_strict_t. */
void http_strict_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* Frees what the connection held back. */
void http_strict_fini(http_strict_t *s);

#endif
