/* SPDX-License-Identifier: BSD-2-Clause */
/* admin_event.h: an operator's change to a coupon as an event on the coupon's partition, and its JSON. */
#ifndef COUPONSD_ADMIN_EVENT_H
#define COUPONSD_ADMIN_EVENT_H

#include "core/uuid.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_NAME_MAX 200 /* bytes, as at creation */
#define ADMIN_TOKEN_ID_MAX 16
#define ADMIN_QUANTITY_MAX 2147483647LL

/* Which members the change sets; the others keep the coupon's value. */
enum {
	ADMIN_F_NAME = 1u << 0,
	ADMIN_F_STARTS = 1u << 1,
	ADMIN_F_ENDS = 1u << 2,
	ADMIN_F_TOTAL = 1u << 3, /* totalQuantity: the new total */
	ADMIN_F_ADD = 1u << 4,   /* addQuantity: units added to the total (two clients' adds both count) */
};

/*
 * {"v":1,"changeId":"<uuid>","couponId":1,"tokenId":"9f86d081","acceptedAt":"...Z",
 *  "admin":{"name":"...","startsAt":"...Z"|null,"endsAt":"...Z"|null,"totalQuantity":N,"addQuantity":N}}
 * on the issue topic with the coupon id as key, so it is ordered among the
 * coupon's requests (docs/data.md, "Admin changes").
 */
typedef struct {
	char change_id[UUID_TEXT_LEN + 1]; /* lowercase */
	int64_t coupon_id;
	char token_id[ADMIN_TOKEN_ID_MAX + 1];
	int64_t accepted_ms;
	unsigned fields;
	char name[ADMIN_NAME_MAX + 1];
	int starts_null, ends_null; /* the member is null: no bound */
	int64_t starts_ms, ends_ms;
	int64_t total, add;
} admin_event_t;

/*
 * Checks the members of a change: at least one, totalQuantity and addQuantity
 * not both, each in range, endsAt after startsAt when both are set. 0, or -1
 * with why in err. Used by the HTTP handler before producing and by the
 * decoder.
 */
int admin_change_check(const admin_event_t *ev, char *err, size_t errsize);

/* A time as JSON: null when is_null (no bound), else "2026-01-01T00:00:00.000Z"; a new reference. */
json_t *admin_time_json(int is_null, int64_t ms);

/* The change's members as a JSON object ("admin" above): malloc'ed, or NULL. */
char *admin_change_json(const admin_event_t *ev);

/* The whole event's JSON: malloc'ed, or NULL. */
char *admin_event_encode(const admin_event_t *ev);

/*
 * 1 when the message is not an admin event (it has no "admin" member: an
 * issue event, to be decoded as one); 0 when it is a valid admin event; -1
 * when it has an "admin" member but is not valid (a dead letter), with why
 * in err.
 */
int admin_event_decode(const char *buf, size_t len, admin_event_t *ev, char *err, size_t errsize);

#endif
