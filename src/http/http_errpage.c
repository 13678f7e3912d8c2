/* SPDX-License-Identifier: BSD-2-Clause */
/* http_errpage.c: libevent's own HTML error pages, rewritten into the API's JSON error shape. */
#include "http/http_errpage.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How every answer begins, and how evhttp_send_error()'s page (ERR_FORMAT in libevent's http.c) does. */
#define STATUS_MARK "HTTP/1."
#define PAGE_MARK "<HTML><HEAD>\n<TITLE>"
/* "HTTP/1.1 400 Bad Request\r\n": a longer status line is not libevent's. */
#define STATUS_LINE_MAX 64

/*
 * Copies len bytes at pos into out. Returns 0, or -1 when fewer are there.
 * evbuffer_copyout_from() refuses while a socket bufferevent has frozen its
 * output's start (always, but while it writes); evbuffer_peek() does not.
 */
static int peek_copy(struct evbuffer *buf, size_t pos, char *out, size_t len)
{
	struct evbuffer_iovec vec[4];
	struct evbuffer_ptr p;
	size_t got = 0;
	int n;

	if (evbuffer_get_length(buf) < pos + len || evbuffer_ptr_set(buf, &p, pos, EVBUFFER_PTR_SET) != 0)
		return -1;
	n = evbuffer_peek(buf, (ev_ssize_t)len, &p, vec, 4);
	for (int i = 0; i < n && i < 4 && got < len; i++) {
		size_t take = vec[i].iov_len < len - got ? vec[i].iov_len : len - got;

		memcpy(out + got, vec[i].iov_base, take);
		got += take;
	}
	return got == len ? 0 : -1;
}

static int text_at(struct evbuffer *buf, size_t pos, const char *text)
{
	size_t len = strlen(text);
	char got[32];

	return len <= sizeof(got) && peek_copy(buf, pos, got, len) == 0 && memcmp(got, text, len) == 0;
}

/* The error name of docs/api.md for a status evhttp answers by itself. */
static const char *error_name(int code, const char **message)
{
	switch (code) {
	case 400:
		*message = "the request is not valid HTTP";
		return "BAD_REQUEST";
	case 413:
		*message = "the request exceeds the server's size limits";
		return "REQUEST_TOO_LARGE";
	case 501:
		*message = "the method is not supported";
		return "NOT_IMPLEMENTED";
	case 503:
		*message = "the server cannot answer now";
		return "UNAVAILABLE";
	default:
		*message = "the server could not answer the request";
		return "INTERNAL";
	}
}

/* Copies the status line starting at `at` (without its CRLF) into line. Returns 0, or -1. */
static int status_line(struct evbuffer *buf, size_t at, char *line, size_t size)
{
	size_t left = evbuffer_get_length(buf) - at, n = left < size - 1 ? left : size - 1;

	if (peek_copy(buf, at, line, n) != 0)
		return -1;
	line[n] = '\0';
	if (strstr(line, "\r\n") == NULL)
		return -1;
	line[strcspn(line, "\r")] = '\0';
	return 0;
}

/* Appends, after the earlier answers still waiting in buf, the status line kept and a JSON body. */
static int replace_answer(struct evbuffer *buf, size_t at, const char *line, const char *body)
{
	struct evbuffer *earlier = evbuffer_new();
	int rc = -1;

	if (earlier != NULL && evbuffer_remove_buffer(buf, earlier, at) == (int)at &&
	    evbuffer_drain(buf, evbuffer_get_length(buf)) == 0 && evbuffer_add_buffer(buf, earlier) == 0 &&
	    evbuffer_add_printf(
	        buf,
	        "%s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %zu\r\n"
	        "Connection: close\r\n\r\n%s",
	        line, strlen(body), body) > 0)
		rc = 0;
	if (earlier != NULL)
		evbuffer_free(earlier);
	return rc;
}

static void rewrite(struct evbuffer *buf, http_errpage_t *w)
{
	char line[STATUS_LINE_MAX], body[256];
	const char *message, *name;
	int code;

	if (status_line(buf, w->head_at, line, sizeof(line)) != 0 ||
	    sscanf(line, "HTTP/1.%*d %d", &code) != 1)
		return; /* not the head we took it for: left as it is */
	if (w->refusal != NULL) {
		code = 400;
		snprintf(line, sizeof(line), "HTTP/1.1 400 Bad Request");
	}
	name = error_name(code, &message);
	if (w->refusal != NULL)
		snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s: %s\"}", name, message,
		         w->refusal);
	else
		snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", name, message);
	w->refusal = NULL;
	w->rewriting = 1;
	/*
	 * The socket bufferevent keeps its output's start frozen except while it
	 * writes (it unfreezes, writes, freezes again); the same is done here to
	 * take the page back. Out of memory midway leaves a cut answer, and
	 * libevent closes the connection after it anyway.
	 */
	evbuffer_unfreeze(buf, 1);
	if (replace_answer(buf, w->head_at, line, body) != 0)
		log_warn("cannot rewrite libevent's error page as JSON");
	evbuffer_freeze(buf, 1);
	w->rewriting = 0;
	w->have_head = 0;
	log_debug("answered %d %s for a request libevent refused", code, name);
}

void http_errpage_on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	http_errpage_t *w = arg;
	size_t at;

	if (w->rewriting)
		return;
	if (info->n_deleted > 0)
		w->have_head = 0; /* sent or drained: only a head added after this counts */
	if (info->n_added == 0)
		return;
	at = evbuffer_get_length(buf) - info->n_added;
	if (text_at(buf, at, STATUS_MARK)) {
		w->head_at = at;
		w->have_head = 1;
	} else if (w->have_head && text_at(buf, at, PAGE_MARK)) {
		rewrite(buf, w);
	}
}
