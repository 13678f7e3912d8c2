/* SPDX-License-Identifier: BSD-2-Clause */
/* http_strict.c: holds each connection's raw input to RFC 9112 framing before evhttp parses it. */
#include "http/http_strict.h"

#include "core/log.h"

#include <limits.h>

/* A line evhttp refuses both as a request line and as a chunk-size line. */
#define POISON "\x01\r\n"

void http_strict_init(http_strict_t *s, struct evbuffer *scratch, http_errpage_t *page, size_t head_max)
{
	http_framing_init(&s->f, head_max);
	s->hold = NULL;
	s->scratch = scratch;
	s->page = page;
	s->busy = 0;
	s->refused = 0;
}

void http_strict_fini(http_strict_t *s)
{
	if (s->hold != NULL)
		evbuffer_free(s->hold);
	s->hold = NULL;
}

/* Moves buf's bytes from `keep` on to the end of tail, or drops them when tail is NULL. Returns 0 or -1. */
static int cut_tail(http_strict_t *s, struct evbuffer *buf, size_t keep, struct evbuffer *tail)
{
	size_t len = evbuffer_get_length(buf);

	if (keep >= len)
		return 0;
	if (keep > INT_MAX || evbuffer_remove_buffer(buf, s->scratch, keep) != (int)keep)
		return -1;
	if ((tail != NULL ? evbuffer_add_buffer(tail, buf) : evbuffer_drain(buf, len - keep)) != 0)
		return -1;
	return evbuffer_add_buffer(buf, s->scratch);
}

/* Feeds buf[from..] to the reader; *took is how far it read (all of it, or up to a refused byte). */
static int feed_from(http_strict_t *s, struct evbuffer *buf, size_t from, size_t *took)
{
	size_t len = evbuffer_get_length(buf);

	*took = from;
	while (*took < len) {
		struct evbuffer_iovec vec[8];
		struct evbuffer_ptr ptr;
		int n;

		if (evbuffer_ptr_set(buf, &ptr, *took, EVBUFFER_PTR_SET) != 0)
			return -1;
		n = evbuffer_peek(buf, (ev_ssize_t)(len - *took), &ptr, vec, 8);
		if (n <= 0)
			return -1;
		for (int i = 0; i < n && i < 8 && *took < len; i++) {
			size_t want = vec[i].iov_len < len - *took ? vec[i].iov_len : len - *took;
			size_t got = http_framing_feed(&s->f, vec[i].iov_base, want);

			*took += got;
			if (got < want)
				return 0;
		}
	}
	return 0;
}

/* Drops buf from `at` (where the refused unit began) and puts the poison there. Returns 0 or -1. */
static int poison(http_strict_t *s, struct evbuffer *buf, size_t at)
{
	log_debug("refusing a request: %s", s->f.error);
	s->refused = 1;
	s->page->refusal = s->f.error;
	if (s->hold != NULL && evbuffer_drain(s->hold, evbuffer_get_length(s->hold)) != 0)
		return -1;
	if (cut_tail(s, buf, at, NULL) != 0)
		return -1;
	return evbuffer_add(buf, POISON, sizeof(POISON) - 1);
}

static int make_hold(http_strict_t *s)
{
	if (s->hold == NULL)
		s->hold = evbuffer_new();
	return s->hold != NULL ? 0 : -1;
}

/* Nothing was held: the new bytes are read where they are; the common case moves nothing. */
static int scan_in_place(http_strict_t *s, struct evbuffer *buf, size_t at)
{
	size_t took, pending;

	if (feed_from(s, buf, at, &took) != 0)
		return -1;
	if (s->f.error != NULL)
		return poison(s, buf, took - s->f.unit_len);
	pending = http_framing_pending(&s->f);
	if (pending == 0)
		return 0;
	if (make_hold(s) != 0)
		return -1;
	return cut_tail(s, buf, evbuffer_get_length(buf) - pending, s->hold);
}

/* Part of a unit was held: the new bytes join it, and what is whole and valid goes back to evhttp. */
static int scan_held(http_strict_t *s, struct evbuffer *buf, size_t at)
{
	size_t held = evbuffer_get_length(s->hold), took, release;

	if (cut_tail(s, buf, at, s->hold) != 0 || feed_from(s, s->hold, held, &took) != 0)
		return -1;
	if (s->f.error != NULL) {
		release = took - s->f.unit_len;
	} else {
		release = evbuffer_get_length(s->hold) - http_framing_pending(&s->f);
	}
	if (release > INT_MAX || evbuffer_remove_buffer(s->hold, buf, release) != (int)release)
		return -1;
	return s->f.error != NULL ? poison(s, buf, evbuffer_get_length(buf)) : 0;
}

void http_strict_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	http_strict_t *s = arg;
	size_t at;
	int rc;

	if (s->busy || info->n_added == 0)
		return;
	s->busy = 1;
	at = evbuffer_get_length(buf) - info->n_added; /* a socket read appends */
	if (s->refused)
		rc = cut_tail(s, buf, at, NULL);
	else if (s->hold != NULL && evbuffer_get_length(s->hold) > 0)
		rc = scan_held(s, buf, at);
	else
		rc = scan_in_place(s, buf, at);
	if (rc != 0) {
		/* Out of memory: nothing more reaches evhttp, and the guard's deadline ends the connection.
		 */
		log_warn("cannot check a request's framing; dropping the connection's input");
		s->refused = 1;
		if (evbuffer_drain(buf, evbuffer_get_length(buf)) != 0)
			log_warn("cannot drop a connection's input");
	}
	s->busy = 0;
}
