/* event.c: the issue event on the Kafka topic and the request status, and their JSON. */
#include "event.h"

#include "clock.h"
#include "ids.h"
#include "json_escape.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* "YYYY-MM-DDTHH:MM:SS" with digits exactly where the pattern has them (sscanf takes signs, spaces). */
static int iso_shape(const char *text)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";

	for (size_t i = 0; i < sizeof(pattern) - 1; i++) {
		if (pattern[i] == 'd' ? !isdigit((unsigned char)text[i]) : text[i] != pattern[i])
			return 0;
	}
	return 1;
}

/*
 * Times before 1970 are refused: no request is accepted then, and such a
 * time (year 0, or a negative one) would not format back into something
 * PostgreSQL takes, so one odd message would hold its partition's batch
 * forever (found by tests/fuzz/fuzz_event).
 */
int time_parse_iso(const char *text, int64_t *ms)
{
	struct tm tm;
	int y, mo, d, h, mi, s, frac = 0, n = 0;
	time_t secs;

	memset(&tm, 0, sizeof(tm));
	if (!iso_shape(text) ||
	    sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 || n != 19)
		return -1;
	text += n;
	if (text[0] == '.') {
		if (!isdigit((unsigned char)text[1]) || !isdigit((unsigned char)text[2]) ||
		    !isdigit((unsigned char)text[3]))
			return -1;
		frac = (text[1] - '0') * 100 + (text[2] - '0') * 10 + (text[3] - '0');
		text += 4;
	}
	if (strcmp(text, "Z") != 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	secs = timegm(&tm);
	/* 23:59:60 on 9999-12-31 would be year 10000, which the 4-digit form cannot write back. */
	if (secs < 0 || secs >= YEAR_10000)
		return -1;
	*ms = (int64_t)secs * 1000 + frac;
	return 0;
}

int event_encode(const issue_event_t *ev, char *buf, size_t size)
{
	char at[32];
	int n;

	clock_format_iso(ev->accepted_ms, at, sizeof(at));
	n = snprintf(
	    buf, size,
	    "{\"v\":%d,\"requestId\":\"%s\",\"couponId\":%lld,\"userId\":%lld,\"acceptedAt\":\"%s\"}",
	    EVENT_VERSION, ev->request_id, (long long)ev->coupon_id, (long long)ev->user_id, at);
	return n < 0 || (size_t)n >= size ? -1 : n;
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

int event_decode(const char *buf, size_t len, issue_event_t *ev, char *err, size_t errsize)
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
