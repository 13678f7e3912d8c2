/* SPDX-License-Identifier: BSD-2-Clause */
/* issue_event.h: the issue event on the Kafka topic and the request status, and their JSON. */
#ifndef COUPONSD_ISSUE_EVENT_H
#define COUPONSD_ISSUE_EVENT_H

#include "core/uuid.h"

#include <stddef.h>
#include <stdint.h>

#define EVENT_VERSION 1

/* CouponIssueRequested: {"v":1,"requestId":"<uuid>","couponId":1,"userId":7,"acceptedAt":"...Z"} */
typedef struct {
	char request_id[UUID_TEXT_LEN + 1]; /* lowercase */
	int64_t coupon_id;
	int64_t user_id;
	int64_t accepted_ms; /* wall clock, ms since the epoch */
} issue_event_t;

typedef enum { STATUS_PENDING, STATUS_ISSUED, STATUS_REJECTED } request_state_t;

typedef enum {
	REASON_NONE,
	REASON_SOLD_OUT,
	REASON_ALREADY_ISSUED,
	REASON_COUPON_NOT_FOUND,
	REASON_NOT_OPEN,
} reject_reason_t;

/* What GET /api/requests/{id}, SSE, the results topic and the Redis status hash all say. */
typedef struct {
	issue_event_t event;
	request_state_t state;
	reject_reason_t reason;
	int64_t decided_ms; /* 0 while PENDING */
} request_status_t;

/* Writes the event's JSON into buf; returns its length, or -1 if it does not fit. */
int issue_event_encode(const issue_event_t *ev, char *buf, size_t size);

/*
 * Parses and validates an event exactly as SPEC section 3 writes it: a JSON
 * object with v == 1, a UUID requestId, positive 64-bit couponId and userId
 * and an ISO-8601 UTC acceptedAt. Unknown members are ignored (forward
 * compatible). On failure returns -1 and a short reason in err.
 */
int issue_event_decode(const char *buf, size_t len, issue_event_t *ev, char *err, size_t errsize);

/* Room for any status's JSON (requestId is at most 36 bytes, escaped at most 6 times that). */
#define STATUS_JSON_SIZE 512

/* Writes the status's JSON (the SPEC's request status object) into buf; returns its length, or -1. */
int status_format_json(const request_status_t *st, char *buf, size_t size);
/* The same as a malloc'ed string, or NULL. */
char *status_to_json(const request_status_t *st);

const char *status_state_name(request_state_t state);
const char *status_reason_name(reject_reason_t reason); /* NULL for REASON_NONE */
int status_state_parse(const char *text, request_state_t *out);
int status_reason_parse(const char *text, reject_reason_t *out);

/* "2026-01-01T00:00:00.000Z" <-> ms since the epoch. */
int time_parse_iso(const char *text, int64_t *ms);

#endif
