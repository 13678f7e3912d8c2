/* SPDX-License-Identifier: BSD-2-Clause */
/* http_router.h: maps a method and path to a route with validated ids; pure, so it can be fuzzed. */
#ifndef COUPONSD_HTTP_ROUTER_H
#define COUPONSD_HTTP_ROUTER_H

#include "core/uuid.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
	ROUTE_NONE,
	ROUTE_HEALTHZ,
	ROUTE_READYZ,
	ROUTE_ISSUE,          /* POST /api/coupons/{couponId}/issue */
	ROUTE_COUPON,         /* GET  /api/coupons/{couponId} */
	ROUTE_REQUEST,        /* GET  /api/requests/{requestId} */
	ROUTE_REQUEST_EVENTS, /* GET  /api/requests/{requestId}/events */
	ROUTE_USER_COUPONS,   /* GET  /api/users/{userId}/coupons */
	ROUTE_ADMIN_COUPONS,  /* GET (list) and POST (create) /api/admin/coupons */
	ROUTE_METRICS,        /* GET  /metrics */
	ROUTE_ADMIN_COUPON,   /* PATCH /api/admin/coupons/{couponId} */
	ROUTE_ADMIN_EVENTS,   /* GET  /api/admin/coupons/{couponId}/events */
	ROUTE_ADMIN_HISTORY,  /* GET  /api/admin/coupons/{couponId}/history */
	ROUTE_COUNT
} route_id_t;

typedef enum { METHOD_GET, METHOD_HEAD, METHOD_POST, METHOD_PATCH, METHOD_OTHER } http_method_t;

typedef struct {
	route_id_t route;
	int status;        /* 0 matched; else 400, 404 or 405 with error and message set */
	const char *error; /* "INVALID_ARGUMENT", "NOT_FOUND", "METHOD_NOT_ALLOWED" */
	char message[128];
	int64_t coupon_id;
	int64_t user_id;
	char request_id[UUID_TEXT_LEN + 1]; /* lowercase */
} route_match_t;

void http_router_match(http_method_t method, const char *path, route_match_t *m);

/* The Allow header of a route: what a 405 lists ("GET, HEAD", "POST", ...). */
const char *http_router_allow(route_id_t route);

/*
 * The issue route's user id: ?userId=N in the query (already split by the
 * caller into value, NULL if absent) or {"userId": N} in the body. Both may be
 * given if they agree. Returns 0, or -1 with a message for a 400.
 */
int http_router_user_id(const char *query_value, const char *body, size_t body_len, int64_t *user_id,
                        char *msg, size_t msg_size);

/*
 * The value of one query parameter ("userId" in "a=1&userId=7"),
 * percent-decoded with '+' as a space. Returns 1 with *out (malloc'ed), 0
 * when absent, -1 when given twice, when an escape is malformed or decodes to
 * a NUL byte ("userId=1%00" must not read as "1"), or when out of memory.
 */
int http_router_query_param(const char *query, const char *name, char **out);

#endif
