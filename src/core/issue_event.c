/* SPDX-License-Identifier: BSD-2-Clause */
/* issue_event.c: the issue event on the Kafka topic and the request status, and their JSON. */
#include "core/issue_event.h"

#include "core/clock.h"
#include "core/text.h"
#include "core/ids.h"
#include "core/json_escape.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *state_names[] = {"PENDING", "ISSUED", "REJECTED"};
static const char *reason_names[] = {NULL, "SOLD_OUT", "ALREADY_ISSUED", "COUPON_NOT_FOUND", "NOT_OPEN"};
/* The same as JSON values, REASON_NONE being null. */
static const char *reason_json[] = {"null", "\"SOLD_OUT\"", "\"ALREADY_ISSUED\"", "\"COUPON_NOT_FOUND\"",
                                    "\"NOT_OPEN\""};

const char *status_state_name(request_state_t state)
{
	return state_names[state];
}

const char *status_reason_name(reject_reason_t reason)
{
	return reason_names[reason];
}

int status_state_parse(const char *text, request_state_t *out)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(text, state_names[i]) == 0) {
			*out = (request_state_t)i;
			return 0;
		}
	}
	return -1;
}

int status_reason_parse(const char *text, reject_reason_t *out)
{
	for (int i = 1; i < 5; i++) {
		if (strcmp(text, reason_names[i]) == 0) {
			*out = (reject_reason_t)i;
			return 0;
		}
	}
	return -1;
}

/* 10000-01-01T00:00:00Z in seconds since the epoch. */
#define YEAR_10000 253402300800LL

/* The value of n ASCII digits at text, or -1 if one is anything else (a NUL included: it stops the scan). */
static int digits(const char *text, int n)
{
	int value = 0;

	for (int i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -1;
		value = value * 10 + (text[i] - '0');
	}
	return value;
}

/* Days since 1970-01-01 of a proleptic Gregorian date; a day past the month's end runs on as timegm's does.
 */
static int64_t days_from_civil(int year, int month, int day)
{
	int64_t y = year - (month <= 2), era = (y >= 0 ? y : y - 399) / 400;
	int64_t year_of_era = y - era * 400;
	int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;

	return era * 146097 + year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS", digits exactly where the pattern has them, into f[0..5]; -1 if not that shape. */
static int parse_fields(const char *t, int f[6])
{
	if ((f[0] = digits(t, 4)) < 0 || t[4] != '-' || (f[1] = digits(t + 5, 2)) < 0 || t[7] != '-' ||
	    (f[2] = digits(t + 8, 2)) < 0 || t[10] != 'T' || (f[3] = digits(t + 11, 2)) < 0 || t[13] != ':' ||
	    (f[4] = digits(t + 14, 2)) < 0 || t[16] != ':' || (f[5] = digits(t + 17, 2)) < 0)
		return -1;
	return 0;
}

/*
 * Parsed by hand, not with sscanf (which would also take signs and spaces, and
 * costs more: the consumer parses one time per event). Optional milliseconds
 * are exactly three digits, and "Z" must end the text.
 *
 * Times before 1970 are refused: no request is accepted then, and such a
 * time (year 0, or a negative one) would not format back into something
 * PostgreSQL takes, so one odd message would hold its partition's batch
 * forever (found by tests/fuzz/fuzz_event). Day 31 of a short month and
 * second 60 run on into the next month or minute, as timegm() did.
 */
int time_parse_iso(const char *text, int64_t *ms)
{
	int f[6], frac = 0;
	int64_t secs;

	if (parse_fields(text, f) != 0)
		return -1;
	text += 19;
	if (text[0] == '.') {
		if ((frac = digits(text + 1, 3)) < 0)
			return -1;
		text += 4;
	}
	if (text[0] != 'Z' || text[1] != '\0' || f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 ||
	    f[3] > 23 || f[4] > 59 || f[5] > 60)
		return -1;
	secs = days_from_civil(f[0], f[1], f[2]) * 86400 + f[3] * 3600 + f[4] * 60 + f[5];
	/* 23:59:60 on 9999-12-31 would be year 10000, which the 4-digit form cannot write back. */
	if (secs < 0 || secs >= YEAR_10000)
		return -1;
	*ms = secs * 1000 + frac;
	return 0;
}

int issue_event_encode(const issue_event_t *ev, char *buf, size_t size)
{
	char at[32];
	text_t t;

	/* Every accepted request encodes one: appended, not snprintf'd (text.h). */
	clock_format_iso(ev->accepted_ms, at, sizeof(at));
	text_init(&t, buf, size);
	text_str(&t, "{\"v\":");
	text_i64(&t, EVENT_VERSION);
	text_str(&t, ",\"requestId\":\"");
	text_str(&t, ev->request_id);
	text_str(&t, "\",\"couponId\":");
	text_i64(&t, ev->coupon_id);
	text_str(&t, ",\"userId\":");
	text_i64(&t, ev->user_id);
	text_str(&t, ",\"acceptedAt\":\"");
	text_str(&t, at);
	text_str(&t, "\"}");
	return text_end(&t);
}

/* A JSON integer member that must be a positive 64-bit id. */
static int decode_id(json_t *root, const char *name, int64_t *out)
{
	json_t *v = json_object_get(root, name);

	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return -1;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int fail(char *err, size_t errsize, const char *msg)
{
	snprintf(err, errsize, "%s", msg);
	return -1;
}

static int decode_fields(json_t *root, issue_event_t *ev, char *err, size_t errsize)
{
	json_t *v = json_object_get(root, "v"), *rid = json_object_get(root, "requestId");
	json_t *at = json_object_get(root, "acceptedAt");

	if (!json_is_integer(v) || json_integer_value(v) != EVENT_VERSION)
		return fail(err, errsize, "unsupported or missing version \"v\"");
	if (!json_is_string(rid) || !uuid_valid(json_string_value(rid), json_string_length(rid)))
		return fail(err, errsize, "requestId is not a UUID");
	if (decode_id(root, "couponId", &ev->coupon_id) != 0)
		return fail(err, errsize, "couponId is not a positive 64-bit integer");
	if (decode_id(root, "userId", &ev->user_id) != 0)
		return fail(err, errsize, "userId is not a positive 64-bit integer");
	if (!json_is_string(at) || time_parse_iso(json_string_value(at), &ev->accepted_ms) != 0)
		return fail(err, errsize, "acceptedAt is not an ISO-8601 UTC time");
	for (size_t i = 0; i <= UUID_TEXT_LEN; i++)
		ev->request_id[i] = (char)tolower((unsigned char)json_string_value(rid)[i]);
	return 0;
}

int issue_event_decode(const char *buf, size_t len, issue_event_t *ev, char *err, size_t errsize)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (buf == NULL || len == 0)
		return fail(err, errsize, "empty message");
	/* REJECT_DUPLICATES: {"userId":1,"userId":2} must not mean whichever a parser keeps. */
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errsize, "invalid JSON: %s", jerr.text);
		return -1;
	}
	rc = json_is_object(root) ? decode_fields(root, ev, err, errsize)
	                          : fail(err, errsize, "not a JSON object");
	json_decref(root);
	return rc;
}

/* A time as a JSON member value: the quoted ISO stamp, or null for 0 ("not yet"). */
static void time_json(int64_t ms, char *buf, size_t size)
{
	if (ms <= 0) {
		snprintf(buf, size, "null");
		return;
	}
	buf[0] = '"';
	clock_format_iso(ms, buf + 1, size - 2);
	strcat(buf, "\"");
}

/*
 * Written by hand, not with jansson: this runs for every status the API, the
 * SSE streams and the results topic send. Every member is a number, an enum
 * name or a time we format, except requestId, which is escaped all the same
 * since a status can be read back from Redis.
 */
int status_format_json(const request_status_t *st, char *buf, size_t size)
{
	char id[JSON_ESCAPE_SIZE(sizeof(st->event.request_id))], accepted[32], decided[32];
	int n;

	if (json_escape(st->event.request_id, id, sizeof(id)) < 0)
		return -1;
	clock_format_iso(st->event.accepted_ms, accepted, sizeof(accepted));
	time_json(st->decided_ms, decided, sizeof(decided));
	n = snprintf(
	    buf, size,
	    "{\"requestId\":\"%s\",\"couponId\":%lld,\"userId\":%lld,\"status\":\"%s\",\"reason\":%s,"
	    "\"acceptedAt\":\"%s\",\"decidedAt\":%s}",
	    id, (long long)st->event.coupon_id, (long long)st->event.user_id, state_names[st->state],
	    reason_json[st->reason], accepted, decided);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

char *status_to_json(const request_status_t *st)
{
	char buf[STATUS_JSON_SIZE];

	return status_format_json(st, buf, sizeof(buf)) < 0 ? NULL : strdup(buf);
}
