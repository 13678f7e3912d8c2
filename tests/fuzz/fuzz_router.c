/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_router.c: libFuzzer harness for request routing, the query's userId and the issue body's userId. */
#include "http/http_router.h"
#include "core/ids.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the router is a crash, so libFuzzer reports it with the input. */
static void require(int cond)
{
	if (!cond)
		abort();
}

/* What http_router_match() promises: a status with an error, or a route with valid ids. */
static void check_match(const route_match_t *m)
{
	require(memchr(m->message, '\0', sizeof(m->message)) != NULL);
	if (m->status != 0) {
		require(m->error != NULL && m->message[0] != '\0');
		require(m->status == 400 || m->status == 404 || m->status == 405);
		return;
	}
	require(m->route != ROUTE_NONE);
	if (m->route == ROUTE_ISSUE || m->route == ROUTE_COUPON)
		require(m->coupon_id > 0);
	if (m->route == ROUTE_USER_COUPONS)
		require(m->user_id > 0);
	if (m->route == ROUTE_REQUEST || m->route == ROUTE_REQUEST_EVENTS) {
		require(uuid_valid(m->request_id, strlen(m->request_id)));
		for (const char *p = m->request_id; *p != '\0'; p++)
			require(*p < 'A' || *p > 'Z'); /* lowercase, as Redis keys want it */
	}
}

/* The issue route's user id from a query and a body, as http_issue.c combines them. */
static void check_user(const char *query, const char *body, size_t body_len)
{
	char *value = NULL, msg[128];
	int64_t user = 0;
	int rc = http_router_query_param(query, "userId", &value);

	require(rc == -1 || rc == 0 || rc == 1);
	require((rc == 1) == (value != NULL));
	if (rc < 0)
		return;
	if (http_router_user_id(value, body, body_len, &user, msg, sizeof(msg)) == 0)
		require(user > 0);
	else
		require(memchr(msg, '\0', sizeof(msg)) != NULL && msg[0] != '\0');
	free(value);
}

/*
 * Input: one byte choosing the method, then path NUL query NUL body (the
 * body may hold anything, NUL bytes included: it is passed with its length).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	route_match_t m;
	char *copy, *query, *body;
	size_t rest;

	if (size < 1 || (copy = malloc(size + 2)) == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = copy[size] = copy[size + 1] = '\0';
	http_router_match((http_method_t)(data[0] % 5), copy, &m);
	check_match(&m);
	query = copy + strlen(copy) + 1;
	body = query < copy + size ? query + strlen(query) + 1 : copy + size;
	rest = body < copy + size - 1 ? (size_t)(copy + size - 1 - body) : 0;
	check_user(query < copy + size ? query : "", body, rest);
	free(copy);
	return 0;
}
