/* SPDX-License-Identifier: BSD-2-Clause */
/* http_router.c: maps a method and path to a route with validated ids; pure, so it can be fuzzed. */
#include "http/http_router.h"

#include "core/hex.h"
#include "core/ids.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEGMENTS 6

typedef struct {
	const char *start[MAX_SEGMENTS];
	size_t len[MAX_SEGMENTS];
	int count;
} segments_t;

/* Splits "/a/b/c" into segments; returns -1 for an empty segment ("//", trailing "/") or too many. */
static int split_path(const char *path, segments_t *s)
{
	s->count = 0;
	if (path == NULL || path[0] != '/')
		return -1;
	for (const char *p = path + 1;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);

		if (len == 0 || s->count == MAX_SEGMENTS)
			return -1;
		s->start[s->count] = p;
		s->len[s->count++] = len;
		if (slash == NULL)
			return 0;
		p = slash + 1;
	}
}

static int seg_is(const segments_t *s, int i, const char *word)
{
	return i < s->count && s->len[i] == strlen(word) && memcmp(s->start[i], word, s->len[i]) == 0;
}

static void set_error(route_match_t *m, int status, const char *error, const char *fmt, const char *what)
{
	m->status = status;
	m->error = error;
	snprintf(m->message, sizeof(m->message), fmt, what);
}

#define M_GET (1u << METHOD_GET | 1u << METHOD_HEAD)
#define M_POST (1u << METHOD_POST)
#define M_PATCH (1u << METHOD_PATCH)

static unsigned route_methods(route_id_t route)
{
	switch (route) {
	case ROUTE_ISSUE:
		return M_POST;
	case ROUTE_ADMIN_COUPONS:
		return M_GET | M_POST;
	case ROUTE_ADMIN_COUPON:
		return M_PATCH;
	default:
		return M_GET;
	}
}

const char *http_router_allow(route_id_t route)
{
	switch (route_methods(route)) {
	case M_POST:
		return "POST";
	case M_GET | M_POST:
		return "GET, HEAD, POST";
	case M_PATCH:
		return "PATCH";
	default:
		return "GET, HEAD";
	}
}

static void want_method(route_match_t *m, http_method_t method)
{
	if ((route_methods(m->route) & (1u << method)) == 0)
		set_error(m, 405, "METHOD_NOT_ALLOWED", "use %s", http_router_allow(m->route));
}

static void parse_id(route_match_t *m, const segments_t *s, int i, int64_t *out, const char *what)
{
	if (id_parse(s->start[i], s->len[i], out) != 0)
		set_error(m, 400, "INVALID_ARGUMENT", "%s must be a positive 64-bit integer in decimal",
		          what);
}

/* /api/admin/coupons, /api/admin/coupons/{id}, and its /events and /history. */
static void match_admin(const segments_t *s, route_match_t *m)
{
	if (!seg_is(s, 2, "coupons"))
		return;
	if (s->count == 3) {
		m->route = ROUTE_ADMIN_COUPONS;
		return;
	}
	if (s->count == 4)
		m->route = ROUTE_ADMIN_COUPON;
	else if (s->count == 5 && seg_is(s, 4, "events"))
		m->route = ROUTE_ADMIN_EVENTS;
	else if (s->count == 5 && seg_is(s, 4, "history"))
		m->route = ROUTE_ADMIN_HISTORY;
	else
		return;
	parse_id(m, s, 3, &m->coupon_id, "couponId");
}

static void match_api(http_method_t method, const segments_t *s, route_match_t *m)
{
	if (seg_is(s, 1, "coupons") && s->count == 4 && seg_is(s, 3, "issue")) {
		m->route = ROUTE_ISSUE;
		parse_id(m, s, 2, &m->coupon_id, "couponId");
	} else if (seg_is(s, 1, "coupons") && s->count == 3) {
		m->route = ROUTE_COUPON;
		parse_id(m, s, 2, &m->coupon_id, "couponId");
	} else if (seg_is(s, 1, "requests") && (s->count == 3 || (s->count == 4 && seg_is(s, 3, "events")))) {
		m->route = s->count == 3 ? ROUTE_REQUEST : ROUTE_REQUEST_EVENTS;
		if (!uuid_valid(s->start[2], s->len[2]))
			set_error(m, 400, "INVALID_ARGUMENT", "%s must be a UUID", "requestId");
		else
			for (size_t i = 0; i < s->len[2]; i++)
				m->request_id[i] = (char)tolower((unsigned char)s->start[2][i]);
	} else if (seg_is(s, 1, "users") && s->count == 4 && seg_is(s, 3, "coupons")) {
		m->route = ROUTE_USER_COUPONS;
		parse_id(m, s, 2, &m->user_id, "userId");
	} else if (seg_is(s, 1, "admin")) {
		match_admin(s, m);
	}
}

void http_router_match(http_method_t method, const char *path, route_match_t *m)
{
	segments_t s;

	memset(m, 0, sizeof(*m));
	if (split_path(path, &s) == 0) {
		if (s.count == 1 && seg_is(&s, 0, "healthz"))
			m->route = ROUTE_HEALTHZ;
		else if (s.count == 1 && seg_is(&s, 0, "readyz"))
			m->route = ROUTE_READYZ;
		else if (s.count == 1 && seg_is(&s, 0, "metrics"))
			m->route = ROUTE_METRICS;
		else if (seg_is(&s, 0, "api"))
			match_api(method, &s, m);
	}
	if (m->route == ROUTE_NONE) {
		set_error(m, 404, "NOT_FOUND", "no route for %s", "this path");
		return;
	}
	/* A wrong method is reported before a bad id: the path names a route that exists. */
	if (m->status == 0 || m->status == 400) {
		int status = m->status;
		char saved[sizeof(m->message)];
		const char *error = m->error;

		memcpy(saved, m->message, sizeof(saved));
		want_method(m, method);
		if (m->status != 405 && status == 400) {
			m->status = status;
			m->error = error;
			memcpy(m->message, saved, sizeof(saved));
		}
	}
}

static int body_user_id(const char *body, size_t len, int64_t *out, char *msg, size_t size)
{
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *v = json_object_get(root, "userId");
	int rc = -1;

	if (root == NULL || !json_is_object(root))
		snprintf(msg, size, "the body must be a JSON object such as {\"userId\": 7}");
	else if (v == NULL)
		rc = 1; /* absent: the query may carry it */
	else if (!json_is_integer(v) || json_integer_value(v) <= 0)
		snprintf(msg, size, "userId must be a positive 64-bit integer");
	else {
		*out = (int64_t)json_integer_value(v);
		rc = 0;
	}
	json_decref(root);
	return rc;
}

int http_router_user_id(const char *query_value, const char *body, size_t body_len, int64_t *user_id,
                        char *msg, size_t msg_size)
{
	int64_t from_query = 0, from_body = 0;
	int have_body = 0;

	if (query_value != NULL && id_parse(query_value, strlen(query_value), &from_query) != 0) {
		snprintf(msg, msg_size, "userId must be a positive 64-bit integer in decimal");
		return -1;
	}
	if (body != NULL && body_len > 0) {
		int rc = body_user_id(body, body_len, &from_body, msg, msg_size);

		if (rc < 0)
			return -1;
		have_body = rc == 0;
	}
	if (query_value == NULL && !have_body) {
		snprintf(msg, msg_size, "userId is required (?userId=N or {\"userId\": N})");
		return -1;
	}
	if (query_value != NULL && have_body && from_query != from_body) {
		snprintf(msg, msg_size, "userId in the query and in the body differ");
		return -1;
	}
	*user_id = query_value != NULL ? from_query : from_body;
	return 0;
}

/* Percent-decodes len bytes into a new string; -1 for "%4", "%zz", "%00" or no memory. */
static int query_decode(const char *s, size_t len, char **out)
{
	char *o = malloc(len + 1);

	*out = o;
	if (o == NULL)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] != '%') {
			*o++ = s[i] == '+' ? ' ' : s[i];
			continue;
		}
		hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
		lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
		if (lo < 0 || (hi == 0 && lo == 0)) {
			free(*out);
			*out = NULL;
			return -1;
		}
		*o++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*o = '\0';
	return 0;
}

int http_router_query_param(const char *query, const char *name, char **out)
{
	size_t nlen = strlen(name), vlen = 0;
	const char *value = NULL;
	int found = 0;

	*out = NULL;
	for (const char *p = query; p != NULL && *p != '\0';) {
		const char *end = strchr(p, '&');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

		if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			found++;
			value = p + nlen + 1;
			vlen = len - nlen - 1;
		}
		p = end != NULL ? end + 1 : NULL;
	}
	if (found == 0)
		return 0;
	/* Twice is ambiguous: "userId=1&userId=2" must not mean whichever a parser keeps. */
	if (found > 1 || query_decode(value, vlen, out) != 0)
		return -1;
	return 1;
}
