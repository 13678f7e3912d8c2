/* SPDX-License-Identifier: BSD-2-Clause */
/* http_admin.c: POST /api/admin/coupons: creating a coupon, behind a bearer token. */
#include "http/http_api.h"

#include "core/clock.h"
#include "core/keys.h"
#include "core/log.h"

#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 200
/* Serializes admin creates (see insert()); bigint advisory keys do not meet store.c's (int, int) ones. */
#define ADMIN_CREATE_LOCK_KEY "7165074657936043368"

typedef struct {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	char name[NAME_MAX_LEN * 4 + 1];
	int64_t coupon_id; /* 0: let the sequence choose */
	int total;
	char starts[32], ends[32]; /* "" when absent */
} create_t;

/* Compares the whole token whatever the input, so timing tells an attacker nothing about a prefix. */
static int token_matches(const char *given, const char *expected)
{
	size_t glen = strlen(given), elen = strlen(expected);
	unsigned char diff = (unsigned char)(glen != elen);

	for (size_t i = 0; i < elen; i++)
		diff |= (unsigned char)(expected[i] ^ (i < glen ? given[i] : 0));
	return diff == 0;
}

int http_admin_authorized(http_ctx_t *ctx, struct evhttp_request *req)
{
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

	if (ctx->cfg->admin_token[0] == '\0') {
		http_reply_error(ctx, req, 404, "NOT_FOUND", "the admin API is off (admin.token is empty)");
		return 0;
	}
	if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 ||
	    !token_matches(auth + 7, ctx->cfg->admin_token)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		http_reply_error(ctx, req, 401, "UNAUTHORIZED", "a valid bearer token is required");
		return 0;
	}
	return 1;
}

void http_admin_token_id(const char *token, char *out, size_t size)
{
	uint64_t h = 14695981039346656037u; /* FNV-1a 64, folded to 32 bits: names the token, cannot be it */

	for (const unsigned char *p = (const unsigned char *)token; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211u;
	}
	snprintf(out, size, "%08x", (unsigned)((h >> 32) ^ (h & 0xffffffffu)));
}

static int optional_time(json_t *body, const char *name, char *out, size_t size, int64_t *ms, char *msg)
{
	json_t *v = json_object_get(body, name);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || time_parse_iso(json_string_value(v), ms) != 0) {
		snprintf(msg, 128, "%s must be an ISO-8601 UTC time such as 2026-01-01T00:00:00Z", name);
		return -1;
	}
	snprintf(out, size, "%s", json_string_value(v));
	return 0;
}

static int parse_body(json_t *body, create_t *c, char *msg)
{
	json_t *id = json_object_get(body, "couponId"), *name = json_object_get(body, "name");
	json_t *total = json_object_get(body, "totalQuantity");
	int64_t starts = 0, ends = 0;

	if (!json_is_object(body))
		return snprintf(msg, 128, "the body must be a JSON object"), -1;
	if (id != NULL && !json_is_null(id) && (!json_is_integer(id) || json_integer_value(id) <= 0))
		return snprintf(msg, 128, "couponId must be a positive 64-bit integer"), -1;
	if (!json_is_string(name) || json_string_length(name) == 0 ||
	    json_string_length(name) > NAME_MAX_LEN ||
	    strlen(json_string_value(name)) != json_string_length(name))
		return snprintf(msg, 128, "name must be a non-empty string of at most %d bytes",
		                NAME_MAX_LEN),
		       -1;
	if (!json_is_integer(total) || json_integer_value(total) <= 0 ||
	    json_integer_value(total) > 2147483647)
		return snprintf(msg, 128, "totalQuantity must be an integer from 1 to 2147483647"), -1;
	if (optional_time(body, "startsAt", c->starts, sizeof(c->starts), &starts, msg) != 0 ||
	    optional_time(body, "endsAt", c->ends, sizeof(c->ends), &ends, msg) != 0)
		return -1;
	if (starts != 0 && ends != 0 && ends <= starts)
		return snprintf(msg, 128, "endsAt must be after startsAt"), -1;
	c->coupon_id = json_is_integer(id) ? (int64_t)json_integer_value(id) : 0;
	snprintf(c->name, sizeof(c->name), "%s", json_string_value(name));
	c->total = (int)json_integer_value(total);
	return 0;
}

static void ignore_reply(redisReply *reply, void *arg)
{
}

static void on_inserted(const PGresult *res, const char *error, void *arg)
{
	create_t *c = arg;
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (error != NULL && state != NULL && strcmp(state, "23505") == 0) {
		http_reply_error(c->ctx, c->req, 409, "COUPON_EXISTS", "coupon %lld already exists",
		                 (long long)c->coupon_id);
	} else if (error != NULL) {
		log_warn("creating coupon: %s", error);
		http_set_retry_after(c->req, 1);
		http_reply_error(c->ctx, c->req, 503, "UNAVAILABLE", "the database cannot be reached");
	} else {
		char key[KEYS_MAX], total[16], location[48];
		int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		const char *argv[] = {"SET", key, total};

		/* The gate's stock starts full; if this SET is lost the consumer loads it from PostgreSQL. */
		snprintf(total, sizeof(total), "%d", c->total);
		if (keys_stock(c->ctx->cfg->redis_key_prefix, id, key, sizeof(key)) >= 0)
			redis_async_argv(c->ctx->redis, ignore_reply, NULL, 3, argv, NULL);
		coupon_cache_forget(c->ctx->coupons, id);
		snprintf(location, sizeof(location), "/api/coupons/%lld", (long long)id);
		evhttp_add_header(evhttp_request_get_output_headers(c->req), "Location", location);
		http_reply_json(c->ctx, c->req, 201,
		                json_pack("{s:I, s:s, s:i, s:i, s:s, s:o, s:o}", "couponId", (json_int_t)id,
		                          "name", c->name, "totalQuantity", c->total, "remaining", c->total,
		                          "status", "OPEN", "startsAt",
		                          c->starts[0] ? json_string(c->starts) : json_null(), "endsAt",
		                          c->ends[0] ? json_string(c->ends) : json_null()));
	}
	free(c);
}

/*
 * An explicit couponId moves the sequence past it, or a later create without
 * one would be handed that id by nextval() and fail with 409 COUPON_EXISTS.
 * Sequences ignore transactions, so every admin create takes one transaction
 * advisory lock first (before nextval): a concurrent create cannot draw a value
 * between reading last_value and setval(), which would move the sequence back.
 */
static void insert(create_t *c)
{
	static const char *sql =
	    "WITH serial AS (SELECT pg_advisory_xact_lock(" ADMIN_CREATE_LOCK_KEY ")), "
	    "created AS (INSERT INTO coupons (id, name, total_quantity, remaining, starts_at, ends_at) "
	    "SELECT COALESCE($1::bigint, nextval('coupons_id_seq')), $2, $3::integer, $3::integer, "
	    "$4::timestamptz, $5::timestamptz FROM serial RETURNING id) "
	    "SELECT id, setval('coupons_id_seq', greatest(id, (SELECT last_value FROM coupons_id_seq))) "
	    "FROM created";
	char id[24], total[16];
	const char *params[] = {c->coupon_id > 0 ? id : NULL, c->name, total, c->starts[0] ? c->starts : NULL,
	                        c->ends[0] ? c->ends : NULL};

	snprintf(id, sizeof(id), "%lld", (long long)c->coupon_id);
	snprintf(total, sizeof(total), "%d", c->total);
	if (pg_async_query(c->ctx->pg, sql, 5, params, on_inserted, c) != 0) {
		http_set_retry_after(c->req, 1);
		http_reply_error(c->ctx, c->req, 503, "UNAVAILABLE", "the database cannot be reached");
		free(c);
	}
}

json_t *http_admin_body(struct evhttp_request *req)
{
	size_t len;
	char *text = http_body(req, &len);
	/* REJECT_DUPLICATES: {"totalQuantity":1,"totalQuantity":9} must not mean whichever a parser keeps. */
	json_t *body = text != NULL ? json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL) : NULL;

	free(text);
	return body;
}

void http_handle_admin_create(http_ctx_t *ctx, struct evhttp_request *req)
{
	char msg[128];
	json_t *body;
	create_t *c;

	if (!http_admin_authorized(ctx, req))
		return;
	body = http_admin_body(req);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		json_decref(body);
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	c->ctx = ctx;
	c->req = req;
	if (parse_body(body, c, msg) != 0) {
		http_reply_error(ctx, req, 400, "INVALID_ARGUMENT", "%s", msg);
		free(c);
	} else {
		insert(c);
	}
	json_decref(body);
}
