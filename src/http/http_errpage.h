/* SPDX-License-Identifier: BSD-2-Clause */
/* http_errpage.h: libevent's own HTML error pages, rewritten into the API's JSON error shape. */
#ifndef COUPONSD_HTTP_ERRPAGE_H
#define COUPONSD_HTTP_ERRPAGE_H

#include <event2/buffer.h>
#include <stddef.h>

/*
 * evhttp answers what it cannot parse (bytes that are not HTTP, a head past
 * its hard caps) itself, with evhttp_send_error()'s HTML page, before any
 * handler of ours runs; libevent 2.1 has no hook for it (evhttp_set_errorcb
 * is 2.2). Both the head and the page are written into the connection's
 * output buffer in one synchronous evhttp_send(), before the loop writes
 * anything, so a callback on that buffer sees the status line arrive, then
 * the page, and replaces both with the same status, a JSON body
 * ({"error":"…","message":"…"}) and Connection: close.
 */
typedef struct {
	size_t head_at; /* where the last status line added begins */
	int have_head;  /* head_at belongs to the answer being written */
	int rewriting;  /* our own changes to the buffer are not looked at */
	/*
	 * Set by http_strict.c when it refused a request's framing: the next
	 * page is the answer to its poison, whatever status libevent gave it
	 * (413 for a chunk-size line), and becomes 400 BAD_REQUEST with this
	 * reason in the message.
	 */
	const char *refusal;
} http_errpage_t;

/* An evbuffer_cb_func for the output buffer of a connection's bufferevent; arg is its http_errpage_t. */
void http_errpage_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

#endif
