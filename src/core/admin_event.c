/* SPDX-License-Identifier: BSD-2-Clause */
/* admin_event.c: an operator's change to a coupon as an event on the coupon's partition, and its JSON. */
#include "core/admin_event.h"

#include "core/clock.h"
#include "core/issue_event.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errsize, const char *msg)
{
	snprintf(err, errsize, "%s", msg);
	return -1;
}

int admin_change_check(const admin_event_t *ev, char *err, size_t errsize)
{
	if ((ev->fields & (ADMIN_F_NAME | ADMIN_F_STARTS | ADMIN_F_ENDS | ADMIN_F_TOTAL | ADMIN_F_ADD)) == 0)
		return fail(err, errsize,
		            "nothing to change: give name, startsAt, endsAt, totalQuantity or addQuantity");
	if ((ev->fields & ADMIN_F_TOTAL) && (ev->fields & ADMIN_F_ADD))
		return fail(err, errsize, "give totalQuantity or addQuantity, not both");
	if ((ev->fields & ADMIN_F_NAME) && (ev->name[0] == '\0' || strlen(ev->name) > ADMIN_NAME_MAX))
		return fail(err, errsize, "name must be a non-empty string of at most 200 bytes");
	if ((ev->fields & ADMIN_F_TOTAL) && (ev->total <= 0 || ev->total > ADMIN_QUANTITY_MAX))
		return fail(err, errsize, "totalQuantity must be an integer from 1 to 2147483647");
	if ((ev->fields & ADMIN_F_ADD) && (ev->add <= 0 || ev->add > ADMIN_QUANTITY_MAX))
		return fail(err, errsize, "addQuantity must be an integer from 1 to 2147483647");
	if ((ev->fields & ADMIN_F_STARTS) && (ev->fields & ADMIN_F_ENDS) && !ev->starts_null &&
	    !ev->ends_null && ev->ends_ms <= ev->starts_ms)
		return fail(err, errsize, "endsAt must be after startsAt");
	return 0;
}

json_t *admin_time_json(int is_null, int64_t ms)
{
	char text[32];

	if (is_null)
		return json_null();
	clock_format_iso(ms, text, sizeof(text));
	return json_string(text);
}

static json_t *change_object(const admin_event_t *ev)
{
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	if (ev->fields & ADMIN_F_NAME)
		json_object_set_new(o, "name", json_string(ev->name));
	if (ev->fields & ADMIN_F_STARTS)
		json_object_set_new(o, "startsAt", admin_time_json(ev->starts_null, ev->starts_ms));
	if (ev->fields & ADMIN_F_ENDS)
		json_object_set_new(o, "endsAt", admin_time_json(ev->ends_null, ev->ends_ms));
	if (ev->fields & ADMIN_F_TOTAL)
		json_object_set_new(o, "totalQuantity", json_integer((json_int_t)ev->total));
	if (ev->fields & ADMIN_F_ADD)
		json_object_set_new(o, "addQuantity", json_integer((json_int_t)ev->add));
	return o;
}

char *admin_change_json(const admin_event_t *ev)
{
	json_t *o = change_object(ev);
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	json_decref(o);
	return text;
}

char *admin_event_encode(const admin_event_t *ev)
{
	char at[32];
	json_t *o;
	char *text;

	clock_format_iso(ev->accepted_ms, at, sizeof(at));
	o = json_pack("{s:i, s:s, s:I, s:s, s:s, s:o*}", "v", EVENT_VERSION, "changeId", ev->change_id,
	              "couponId", (json_int_t)ev->coupon_id, "tokenId", ev->token_id, "acceptedAt", at,
	              "admin", change_object(ev));
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

/* A time member: absent, null (no bound) or an ISO-8601 UTC string. */
static int decode_time(json_t *v, unsigned flag, unsigned *fields, int *is_null, int64_t *ms)
{
	if (v == NULL)
		return 0;
	*fields |= flag;
	if (json_is_null(v)) {
		*is_null = 1;
		return 0;
	}
	return json_is_string(v) ? time_parse_iso(json_string_value(v), ms) : -1;
}

static int decode_quantity(json_t *v, unsigned flag, unsigned *fields, int64_t *out)
{
	if (v == NULL)
		return 0;
	*fields |= flag;
	if (!json_is_integer(v))
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int decode_name(json_t *v, admin_event_t *ev)
{
	if (v == NULL)
		return 0;
	ev->fields |= ADMIN_F_NAME;
	/* A NUL inside would cut the name short in PostgreSQL's text: refuse it. */
	if (!json_is_string(v) || json_string_length(v) > ADMIN_NAME_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -1;
	memcpy(ev->name, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int decode_change(json_t *admin, admin_event_t *ev, char *err, size_t errsize)
{
	const char *key;
	json_t *v;

	if (!json_is_object(admin))
		return fail(err, errsize, "admin is not a JSON object");
	json_object_foreach(admin, key, v)
	{
		if (strcmp(key, "name") != 0 && strcmp(key, "startsAt") != 0 && strcmp(key, "endsAt") != 0 &&
		    strcmp(key, "totalQuantity") != 0 && strcmp(key, "addQuantity") != 0)
			return fail(err, errsize, "admin has an unknown member");
	}
	if (decode_name(json_object_get(admin, "name"), ev) != 0)
		return fail(err, errsize, "name must be a non-empty string of at most 200 bytes");
	if (decode_time(json_object_get(admin, "startsAt"), ADMIN_F_STARTS, &ev->fields, &ev->starts_null,
	                &ev->starts_ms) != 0 ||
	    decode_time(json_object_get(admin, "endsAt"), ADMIN_F_ENDS, &ev->fields, &ev->ends_null,
	                &ev->ends_ms) != 0)
		return fail(err, errsize, "startsAt and endsAt must be ISO-8601 UTC times or null");
	if (decode_quantity(json_object_get(admin, "totalQuantity"), ADMIN_F_TOTAL, &ev->fields,
	                    &ev->total) != 0 ||
	    decode_quantity(json_object_get(admin, "addQuantity"), ADMIN_F_ADD, &ev->fields, &ev->add) != 0)
		return fail(err, errsize, "totalQuantity and addQuantity must be integers");
	return admin_change_check(ev, err, errsize);
}

static int token_id_valid(json_t *v)
{
	size_t len = json_is_string(v) ? json_string_length(v) : 0;

	if (len == 0 || len > ADMIN_TOKEN_ID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!isxdigit((unsigned char)json_string_value(v)[i]))
			return 0;
	}
	return 1;
}

static int decode_fields(json_t *root, admin_event_t *ev, char *err, size_t errsize)
{
	json_t *v = json_object_get(root, "v"), *cid = json_object_get(root, "changeId");
	json_t *coupon = json_object_get(root, "couponId"), *token = json_object_get(root, "tokenId");
	json_t *at = json_object_get(root, "acceptedAt");

	if (!json_is_integer(v) || json_integer_value(v) != EVENT_VERSION)
		return fail(err, errsize, "unsupported or missing version \"v\"");
	if (!json_is_string(cid) || !uuid_valid(json_string_value(cid), json_string_length(cid)))
		return fail(err, errsize, "changeId is not a UUID");
	if (!json_is_integer(coupon) || json_integer_value(coupon) <= 0)
		return fail(err, errsize, "couponId is not a positive 64-bit integer");
	if (!token_id_valid(token))
		return fail(err, errsize, "tokenId is not 1-16 hex digits");
	if (!json_is_string(at) || time_parse_iso(json_string_value(at), &ev->accepted_ms) != 0)
		return fail(err, errsize, "acceptedAt is not an ISO-8601 UTC time");
	ev->coupon_id = (int64_t)json_integer_value(coupon);
	memcpy(ev->token_id, json_string_value(token), json_string_length(token) + 1);
	for (size_t i = 0; i <= UUID_TEXT_LEN; i++)
		ev->change_id[i] = (char)tolower((unsigned char)json_string_value(cid)[i]);
	return decode_change(json_object_get(root, "admin"), ev, err, errsize);
}

int admin_event_decode(const char *buf, size_t len, admin_event_t *ev, char *err, size_t errsize)
{
	json_t *root;
	int rc = 1;

	memset(ev, 0, sizeof(*ev));
	/* The cheap test first: almost every message is an issue event, decoded once, by its own decoder. */
	if (buf == NULL || len == 0 || memmem(buf, len, "\"admin\"", 7) == NULL)
		return 1;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (json_is_object(root) && json_object_get(root, "admin") != NULL)
		rc = decode_fields(root, ev, err, errsize);
	json_decref(root);
	return rc;
}
