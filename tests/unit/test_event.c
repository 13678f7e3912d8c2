/* SPDX-License-Identifier: BSD-2-Clause */
/* test_event.c: TAP unit tests of the hand-written JSON (status, event, escaper) and the ISO-8601 times. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/admin_event.h"
#include "core/clock.h"
#include "core/issue_event.h"
#include "core/json_escape.h"
#include "tap.h"

#define RANDOM_ROUNDS 4000

/* ---- helpers ---- */

/* A reproducible 64-bit random number (xorshift64*): the same failures on every run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static int64_t rnd_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static void random_uuid(char out[UUID_TEXT_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < UUID_TEXT_LEN; i++)
		out[i] = (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : hex[rnd() % 16];
	out[14] = '4';
	out[19] = hex[8 + rnd() % 4];
	out[UUID_TEXT_LEN] = '\0';
}

/* The milliseconds between 1970 and 9999-12-31, biased to today's times. */
static int64_t random_ms(void)
{
	if (rnd() % 2)
		return rnd_range(1700000000000LL, 1900000000000LL);
	return rnd_range(0, 253402300799999LL);
}

static void random_status(request_status_t *st)
{
	memset(st, 0, sizeof(*st));
	random_uuid(st->event.request_id);
	st->event.coupon_id = rnd() % 3 ? rnd_range(1, 100000) : (int64_t)(rnd() >> 1) + 1;
	st->event.user_id = rnd() % 3 ? rnd_range(1, 1000000) : INT64_MAX;
	st->event.accepted_ms = random_ms();
	st->state = (request_state_t)(rnd() % 3);
	st->reason = st->state == STATUS_REJECTED ? (reject_reason_t)rnd_range(1, 4) : REASON_NONE;
	st->decided_ms = st->state == STATUS_PENDING ? 0 : st->event.accepted_ms + rnd_range(0, 5000);
}

/* ---- the reference implementations this code replaced, kept as oracles ---- */

static void old_format_iso(int64_t real_ms, char *buf, size_t size)
{
	time_t secs = (time_t)(real_ms / 1000);
	char whole[96];
	struct tm tm;
	size_t n;

	if (size == 0)
		return;
	if (gmtime_r(&secs, &tm) == NULL) {
		snprintf(buf, size, "1970-01-01T00:00:00.000Z");
		return;
	}
	/* Whole first, then truncated as the old snprintf did, so that gcc -O2 sees no truncation. */
	snprintf(whole, sizeof(whole), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(real_ms % 1000));
	n = strlen(whole) < size ? strlen(whole) : size - 1;
	memcpy(buf, whole, n);
	buf[n] = '\0';
}

static char *old_status_to_json(const request_status_t *st)
{
	static const char *states[] = {"PENDING", "ISSUED", "REJECTED"};
	static const char *reasons[] = {NULL, "SOLD_OUT", "ALREADY_ISSUED", "COUPON_NOT_FOUND", "NOT_OPEN"};
	char accepted[32], decided[32];
	json_t *o;
	char *text;

	old_format_iso(st->event.accepted_ms, accepted, sizeof(accepted));
	old_format_iso(st->decided_ms, decided, sizeof(decided));
	o = json_pack("{s:s, s:I, s:I, s:s, s:o, s:s, s:o}", "requestId", st->event.request_id, "couponId",
	              (json_int_t)st->event.coupon_id, "userId", (json_int_t)st->event.user_id, "status",
	              states[st->state], "reason",
	              st->reason == REASON_NONE ? json_null() : json_string(reasons[st->reason]),
	              "acceptedAt", accepted, "decidedAt",
	              st->decided_ms > 0 ? json_string(decided) : json_null());
	if (o == NULL)
		return NULL;
	text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

#define YEAR_10000 253402300800LL

static int old_iso_shape(const char *text)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd";

	for (size_t i = 0; i < sizeof(pattern) - 1; i++) {
		if (pattern[i] == 'd' ? !isdigit((unsigned char)text[i]) : text[i] != pattern[i])
			return 0;
	}
	return 1;
}

static int old_time_parse_iso(const char *text, int64_t *ms)
{
	struct tm tm;
	int y, mo, d, h, mi, s, frac = 0, n = 0;
	time_t secs;

	memset(&tm, 0, sizeof(tm));
	if (!old_iso_shape(text) ||
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
	if (secs < 0 || secs >= YEAR_10000)
		return -1;
	*ms = (int64_t)secs * 1000 + frac;
	return 0;
}

/* ---- status_to_json and issue_event_encode ---- */

static void test_status_examples(void)
{
	request_status_t st;
	char *json;

	memset(&st, 0, sizeof(st));
	snprintf(st.event.request_id, sizeof(st.event.request_id), "%s",
	         "0b4f3c1e-8d2a-4c55-9a1e-2f3d4c5b6a79");
	st.event.coupon_id = 1;
	st.event.user_id = 7;
	st.event.accepted_ms = 1767225600000LL; /* 2026-01-01T00:00:00.000Z */
	json = status_to_json(&st);
	is_str(json,
	       "{\"requestId\":\"0b4f3c1e-8d2a-4c55-9a1e-2f3d4c5b6a79\",\"couponId\":1,\"userId\":7,"
	       "\"status\":\"PENDING\",\"reason\":null,\"acceptedAt\":\"2026-01-01T00:00:00.000Z\","
	       "\"decidedAt\":null}",
	       "status_to_json: PENDING");
	free(json);
	st.state = STATUS_REJECTED;
	st.reason = REASON_SOLD_OUT;
	st.decided_ms = 1767225600123LL;
	json = status_to_json(&st);
	is_str(json,
	       "{\"requestId\":\"0b4f3c1e-8d2a-4c55-9a1e-2f3d4c5b6a79\",\"couponId\":1,\"userId\":7,"
	       "\"status\":\"REJECTED\",\"reason\":\"SOLD_OUT\",\"acceptedAt\":\"2026-01-01T00:00:00.000Z\","
	       "\"decidedAt\":\"2026-01-01T00:00:00.123Z\"}",
	       "status_to_json: REJECTED SOLD_OUT");
	free(json);
	/* A request id read back from Redis is escaped, whatever it holds. */
	snprintf(st.event.request_id, sizeof(st.event.request_id), "%s", "a\"b\\c\n");
	json = status_to_json(&st);
	ok(json != NULL && strstr(json, "\"requestId\":\"a\\\"b\\\\c\\n\"") != NULL,
	   "status_to_json escapes %s", json != NULL ? json : "(null)");
	free(json);
	ok(status_format_json(&st, (char[16]){0}, 16) == -1,
	   "status_format_json: -1 when the buffer is short");
}

/* The new writer says byte for byte what jansson said, and the result parses. */
static void test_status_vs_jansson(void)
{
	int same = 0, parsed = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		request_status_t st;
		char *got, *want;
		json_t *root;

		random_status(&st);
		got = status_to_json(&st);
		want = old_status_to_json(&st);
		if (got != NULL && want != NULL && strcmp(got, want) == 0)
			same++;
		else if (same == i)
			diag("first difference:\n#   got  %s\n#   want %s", got, want);
		root = got != NULL ? json_loads(got, JSON_REJECT_DUPLICATES, NULL) : NULL;
		if (json_is_object(root) && json_object_size(root) == 7)
			parsed++;
		json_decref(root);
		free(got);
		free(want);
	}
	is_int(same, RANDOM_ROUNDS, "status_to_json equals jansson's output for %d random statuses",
	       RANDOM_ROUNDS);
	is_int(parsed, RANDOM_ROUNDS, "status_to_json output parses as a 7-member object");
}

static void test_event_round_trip(void)
{
	int good = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		issue_event_t ev, back;
		char buf[256], err[128];
		int len;

		memset(&ev, 0, sizeof(ev));
		random_uuid(ev.request_id);
		ev.coupon_id = rnd() % 2 ? rnd_range(1, 1000) : INT64_MAX;
		ev.user_id = rnd_range(1, INT64_MAX - 1);
		ev.accepted_ms = random_ms();
		len = issue_event_encode(&ev, buf, sizeof(buf));
		if (len > 0 && issue_event_decode(buf, (size_t)len, &back, err, sizeof(err)) == 0 &&
		    strcmp(back.request_id, ev.request_id) == 0 && back.coupon_id == ev.coupon_id &&
		    back.user_id == ev.user_id && back.accepted_ms == ev.accepted_ms)
			good++;
		else if (good == i)
			diag("first failure: %s (%s)", buf, err);
	}
	is_int(good, RANDOM_ROUNDS, "issue_event_encode output decodes to the same event (%d random events)",
	       RANDOM_ROUNDS);
}

/* ---- json_escape ---- */

static void expect_escape(const char *text, const char *want, const char *what)
{
	char buf[256];
	int n = json_escape(text, buf, sizeof(buf));

	if (is_str(n >= 0 ? buf : NULL, want, "json_escape: %s", what))
		is_int(n, (long long)strlen(want), "json_escape: %s: length", what);
	else
		ok(0, "json_escape: %s: length", what);
}

static void test_escape_examples(void)
{
	char small[4];

	expect_escape("", "", "empty");
	expect_escape("plain text", "plain text", "plain text");
	expect_escape("say \"hi\"", "say \\\"hi\\\"", "quotes");
	expect_escape("C:\\dir\\", "C:\\\\dir\\\\", "backslashes");
	expect_escape("a/b", "a/b", "slash stays");
	expect_escape("\b\f\n\r\t", "\\b\\f\\n\\r\\t", "short escapes");
	expect_escape("\x01\x1f\x7f", "\\u0001\\u001F\x7f", "other control characters; DEL stays");
	expect_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x9f",
	              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x9f", "UTF-8 passes through");
	expect_escape("a\xff"
	              "b",
	              "a\\uFFFDb", "a stray byte becomes U+FFFD");
	expect_escape("\xc3", "\\uFFFD", "a cut sequence at the end");
	expect_escape("\xc0\xaf", "\\uFFFD\\uFFFD", "an overlong form");
	expect_escape("\xed\xa0\x80", "\\uFFFD\\uFFFD\\uFFFD", "a surrogate");
	expect_escape("\xf4\x90\x80\x80", "\\uFFFD\\uFFFD\\uFFFD\\uFFFD", "above U+10FFFF");
	is_int(json_escape("abc", small, sizeof(small)), 3, "json_escape: fits exactly");
	is_int(json_escape("abcd", small, sizeof(small)), -1, "json_escape: -1 when it does not fit");
	is_str(small, "", "json_escape: an empty buffer after -1");
	is_int(json_escape("a\"", small, sizeof(small)), 3, "json_escape: an escape counts its two bytes");
	is_int(json_escape("\x01", small, sizeof(small)), -1, "json_escape: \\u0001 does not fit in 4");
}

/* One random code point as UTF-8 (any plane, control characters included, no surrogates). */
static size_t random_utf8(unsigned char *out)
{
	uint32_t cp;

	switch (rnd() % 4) {
	case 0:
		cp = (uint32_t)rnd_range(1, 0x7f);
		break;
	case 1:
		cp = (uint32_t)rnd_range(0x80, 0x7ff);
		break;
	case 2:
		do
			cp = (uint32_t)rnd_range(0x800, 0xffff);
		while (cp >= 0xd800 && cp <= 0xdfff);
		break;
	default:
		cp = (uint32_t)rnd_range(0x10000, 0x10ffff);
		break;
	}
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Valid UTF-8 comes out exactly as jansson writes it. */
static void test_escape_vs_jansson(void)
{
	int same = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		unsigned char text[200];
		char got[JSON_ESCAPE_SIZE(sizeof(text))], *want;
		size_t len = 0, count = (size_t)rnd_range(0, 40);
		json_t *s;

		for (size_t k = 0; k < count; k++)
			len += random_utf8(text + len);
		text[len] = '\0';
		s = json_string((const char *)text);
		want = s != NULL ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
		json_decref(s);
		if (want != NULL &&
		    json_escape((const char *)text, got, sizeof(got)) == (int)strlen(want) - 2 &&
		    strncmp(got, want + 1, strlen(want) - 2) == 0)
			same++;
		else if (same == i)
			diag("first difference: got %s, want %s", got, want != NULL ? want : "(null)");
		free(want);
	}
	is_int(same, RANDOM_ROUNDS, "json_escape equals jansson on %d random UTF-8 strings", RANDOM_ROUNDS);
}

/* Any bytes at all, escaped and quoted, are a JSON string jansson accepts. */
static void test_escape_any_bytes(void)
{
	int valid = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		char text[64], quoted[JSON_ESCAPE_SIZE(sizeof(text)) + 2];
		size_t len = (size_t)rnd_range(0, sizeof(text) - 1);
		json_t *root;

		for (size_t k = 0; k < len; k++)
			text[k] = (char)rnd_range(1, 255);
		text[len] = '\0';
		quoted[0] = '"';
		if (json_escape(text, quoted + 1, sizeof(quoted) - 2) < 0)
			continue;
		strcat(quoted, "\"");
		root = json_loads(quoted, JSON_DECODE_ANY, NULL);
		if (json_is_string(root))
			valid++;
		json_decref(root);
	}
	is_int(valid, RANDOM_ROUNDS, "json_escape of %d random byte strings is always valid JSON",
	       RANDOM_ROUNDS);
}

/* ---- clock_format_iso ---- */

static int format_matches(int64_t ms)
{
	char got[32], want[32];

	memset(got, 'x', sizeof(got));
	clock_format_iso(ms, got, sizeof(got));
	old_format_iso(ms, want, sizeof(want));
	if (strcmp(got, want) == 0)
		return 1;
	diag("clock_format_iso(%lld): got %s, want %s", (long long)ms, got, want);
	return 0;
}

static void test_format_cache(void)
{
	int64_t base = 1767225599000LL; /* 2025-12-31T23:59:59.000Z */
	char buf[32];
	int good = 1;

	clock_format_iso(base + 5, buf, sizeof(buf));
	is_str(buf, "2025-12-31T23:59:59.005Z", "clock_format_iso: a first time");
	clock_format_iso(base + 999, buf, sizeof(buf));
	is_str(buf, "2025-12-31T23:59:59.999Z", "clock_format_iso: the same second, other ms");
	clock_format_iso(base + 1000, buf, sizeof(buf));
	is_str(buf, "2026-01-01T00:00:00.000Z", "clock_format_iso: the next second (and year)");
	clock_format_iso(base + 42, buf, sizeof(buf));
	is_str(buf, "2025-12-31T23:59:59.042Z", "clock_format_iso: back to the second before");
	clock_format_iso(0, buf, sizeof(buf));
	is_str(buf, "1970-01-01T00:00:00.000Z", "clock_format_iso: the epoch");
	clock_format_iso(253402300799999LL, buf, sizeof(buf));
	is_str(buf, "9999-12-31T23:59:59.999Z", "clock_format_iso: the last 4-digit-year ms");
	/* Every ms of two seconds in order, then one ms each side of many boundaries. */
	for (int64_t ms = base - 1000; ms < base + 1000; ms++)
		good &= format_matches(ms);
	/* Seconds that share a cache slot and seconds that do not, interleaved like acceptedAt/decidedAt. */
	for (int i = 0; i < 64; i++)
		good &= format_matches(base + (i % 6) * 1000 + i) & format_matches(base + (i % 9) * 4000 + i);
	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		int64_t edge = random_ms() / 1000 * 1000;

		good &= format_matches(edge - 1) & format_matches(edge) & format_matches(edge + 1);
	}
	ok(good, "clock_format_iso equals gmtime formatting across second boundaries");
}

static void test_format_vs_gmtime(void)
{
	int same = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++)
		same += format_matches(random_ms());
	for (int i = 0; i < 100; i++)
		same += format_matches(-(int64_t)rnd_range(1, 100000000000LL)) +
		        format_matches(rnd_range(253402300800000LL, 4000000000000000LL));
	is_int(same, RANDOM_ROUNDS + 200, "clock_format_iso equals gmtime formatting at random times");
}

/* A buffer too small for the whole stamp gets what snprintf would have left. */
static void test_format_small_buffers(void)
{
	int same = 0;

	for (size_t size = 1; size <= 25; size++) {
		char got[32], want[32];

		memset(got, 'x', sizeof(got));
		memset(want, 'x', sizeof(want));
		clock_format_iso(1767225600123LL, got, size);
		old_format_iso(1767225600123LL, want, size);
		same += memcmp(got, want, sizeof(got)) == 0;
	}
	is_int(same, 25, "clock_format_iso truncates as before in buffers of 1 to 25 bytes");
}

/* ---- time_parse_iso ---- */

static void expect_parse(const char *text, int accepted, int64_t want_ms)
{
	int64_t ms = -1;
	int rc = time_parse_iso(text, &ms);

	if (accepted)
		ok(rc == 0 && ms == want_ms, "time_parse_iso accepts \"%s\" as %lld (got rc %d, %lld)", text,
		   (long long)want_ms, rc, (long long)ms);
	else
		ok(rc == -1, "time_parse_iso refuses \"%s\"", text);
}

static void test_parse_examples(void)
{
	static const char *refused[] = {
	    "",
	    "2026-01-01T00:00:00",
	    "2026-01-01T00:00:00.000",
	    "2026-01-01T00:00:00.000Zx",
	    "2026-01-01T00:00:00ZZ",
	    "2026-01-01 00:00:00Z",
	    "2026-01-01t00:00:00Z",
	    "2026-01-01T00:00:00z",
	    "2026-1-01T00:00:00Z",
	    "+026-01-01T00:00:00Z",
	    " 2026-01-01T00:00:00Z",
	    "2026-01-01T00:00:00.00Z",
	    "2026-01-01T00:00:00.0000Z",
	    "2026-01-01T00:00:00.Z",
	    "2026-01-01T00:00:00,000Z",
	    "2026-00-01T00:00:00Z",
	    "2026-13-01T00:00:00Z",
	    "2026-01-00T00:00:00Z",
	    "2026-01-32T00:00:00Z",
	    "2026-01-01T24:00:00Z",
	    "2026-01-01T00:60:00Z",
	    "2026-01-01T00:00:61Z",
	    "1969-12-31T23:59:59.999Z",
	    "0000-01-01T00:00:00Z",
	    "9999-12-31T23:59:60Z",
	    "2026-01-01T00:00:00+00:00",
	    "2026-01-01T00:00:0",
	};

	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		expect_parse(refused[i], 0, 0);
	expect_parse("1970-01-01T00:00:00Z", 1, 0);
	expect_parse("2026-01-01T00:00:00.000Z", 1, 1767225600000LL);
	expect_parse("2026-01-01T00:00:00.123Z", 1, 1767225600123LL);
	expect_parse("2024-02-29T12:00:00Z", 1, 1709208000000LL);
	expect_parse("2025-02-29T00:00:00Z", 1, 1740787200000LL); /* runs on to 2025-03-01 */
	expect_parse("2025-04-31T00:00:00Z", 1, 1746057600000LL); /* runs on to 2025-05-01 */
	expect_parse("2026-01-01T23:59:60Z", 1, 1767312000000LL); /* runs on to 01-02T00:00:00 */
	expect_parse("9999-12-31T23:59:59.999Z", 1, 253402300799999LL);
	expect_parse("2000-02-29T00:00:00Z", 1, 951782400000LL);
	expect_parse("2100-02-29T00:00:00Z", 1, 4107542400000LL); /* not a leap year: 2100-03-01 */
}

/* A string like an ISO time with a few random changes: the place where a strict parser slips. */
static void mutated_time(char *out, size_t size)
{
	static const char alphabet[] = "0123456789-:T.Z +z\x01\xc3";
	char base[32];
	size_t len;

	snprintf(base, sizeof(base), "%04d-%02d-%02dT%02d:%02d:%02d", (int)rnd_range(0, 9999),
	         (int)rnd_range(0, 13), (int)rnd_range(0, 32), (int)rnd_range(0, 25), (int)rnd_range(0, 61),
	         (int)rnd_range(0, 61));
	if (rnd() % 2)
		snprintf(base + 19, sizeof(base) - 19, ".%03dZ", (int)rnd_range(0, 999));
	else
		snprintf(base + 19, sizeof(base) - 19, "Z");
	len = strlen(base);
	for (int k = (int)rnd_range(0, 2); k > 0; k--) {
		switch (rnd() % 3) {
		case 0:
			if (len > 0)
				base[rnd() % len] = alphabet[rnd() % (sizeof(alphabet) - 1)];
			break;
		case 1:
			len = (size_t)rnd_range(0, (int64_t)len);
			base[len] = '\0';
			break;
		default:
			if (len + 1 < sizeof(base)) {
				base[len++] = alphabet[rnd() % (sizeof(alphabet) - 1)];
				base[len] = '\0';
			}
			break;
		}
	}
	snprintf(out, size, "%s", base);
}

static void test_parse_vs_sscanf(void)
{
	int same = 0, accepted = 0, rounds = RANDOM_ROUNDS * 5;

	for (int i = 0; i < rounds; i++) {
		char text[40];
		int64_t got = -1, want = -1;
		int rc_got, rc_want;

		mutated_time(text, sizeof(text));
		rc_got = time_parse_iso(text, &got);
		rc_want = old_time_parse_iso(text, &want);
		if (rc_got == rc_want && (rc_got != 0 || got == want))
			same++;
		else
			diag("time_parse_iso(\"%s\"): got %d %lld, the old parser %d %lld", text, rc_got,
			     (long long)got, rc_want, (long long)want);
		accepted += rc_want == 0;
	}
	is_int(same, rounds, "time_parse_iso agrees with the old sscanf parser on %d mutated times", rounds);
	ok(accepted > rounds / 10 && accepted < rounds - rounds / 10,
	   "both outcomes were exercised (%d accepted)", accepted);
}

/* Whatever clock_format_iso writes reads back as the same ms. */
static void test_format_parse_round_trip(void)
{
	int same = 0;

	for (int i = 0; i < RANDOM_ROUNDS; i++) {
		int64_t ms = random_ms(), back = -1;
		char text[32];

		clock_format_iso(ms, text, sizeof(text));
		same += time_parse_iso(text, &back) == 0 && back == ms;
	}
	is_int(same, RANDOM_ROUNDS, "clock_format_iso output parses back to the same ms");
}

/* ---- admin events ---- */

#define ADMIN_HEAD                                                                                           \
	"{\"v\":1,\"changeId\":\"1B4E28BA-2FA1-11D2-883F-0016D3CCA427\",\"couponId\":3,"                     \
	"\"tokenId\":\"9f86d081\",\"acceptedAt\":\"2026-01-01T00:00:00.000Z\","

static int admin_decodes(const char *json, admin_event_t *ev)
{
	char err[160] = "";

	return admin_event_decode(json, strlen(json), ev, err, sizeof(err));
}

static void test_admin_event(void)
{
	admin_event_t ev, again;
	char *text;

	is_int(admin_decodes("{\"v\":1,\"requestId\":\"x\"}", &ev), 1, "no admin member: an issue event");
	is_int(admin_decodes("{\"note\":\"admin\"}", &ev), 1, "\"admin\" as a value only: an issue event");
	is_int(admin_decodes(ADMIN_HEAD "\"admin\":{\"addQuantity\":5,\"endsAt\":null}}", &ev), 0,
	       "a valid change");
	ok(ev.coupon_id == 3 && ev.add == 5 && ev.fields == (ADMIN_F_ADD | ADMIN_F_ENDS) && ev.ends_null &&
	       strcmp(ev.change_id, "1b4e28ba-2fa1-11d2-883f-0016d3cca427") == 0,
	   "its members, the change id in lowercase");
	text = admin_event_encode(&ev);
	is_int(text != NULL ? admin_decodes(text, &again) : -9, 0, "what it encodes decodes again");
	ok(text != NULL && memcmp(&ev, &again, sizeof(ev)) == 0, "to the same event");
	free(text);
	is_int(admin_decodes(ADMIN_HEAD "\"admin\":{}}", &ev), -1, "an empty change: a dead letter");
	is_int(admin_decodes(ADMIN_HEAD "\"admin\":{\"totalQuantity\":0}}", &ev), -1,
	       "total 0: a dead letter");
	is_int(admin_decodes(ADMIN_HEAD "\"admin\":{\"totalQuantity\":2,\"addQuantity\":1}}", &ev), -1,
	       "total and add: a dead letter");
	is_int(admin_decodes(ADMIN_HEAD "\"admin\":{\"colour\":1}}", &ev), -1,
	       "an unknown member: a dead letter");
	/* jansson refuses \u0000 outright: the issue decoder then sends it to the dead-letter topic. */
	ok(admin_decodes(ADMIN_HEAD "\"admin\":{\"name\":\"a\\u0000b\"}}", &ev) != 0,
	   "a NUL in the name: not a change");
	is_int(admin_decodes("{\"v\":1,\"changeId\":\"nope\",\"admin\":{\"name\":\"x\"}}", &ev), -1,
	       "a bad change id: a dead letter");
}

int main(void)
{
	test_admin_event();
	test_status_examples();
	test_status_vs_jansson();
	test_event_round_trip();
	test_escape_examples();
	test_escape_vs_jansson();
	test_escape_any_bytes();
	test_format_cache();
	test_format_vs_gmtime();
	test_format_small_buffers();
	test_parse_examples();
	test_parse_vs_sscanf();
	test_format_parse_round_trip();
	return done_testing();
}
