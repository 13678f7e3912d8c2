/* SPDX-License-Identifier: BSD-2-Clause */
/* fuzz_event.c: libFuzzer harness for the Kafka event JSON decoder (what the consumer reads off the topic).
 */
#include "core/admin_event.h"
#include "core/issue_event.h"
#include "core/ids.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(int cond)
{
	if (!cond)
		abort();
}

/* A decoded event is valid, and what couponsd would write for it reads back as the same event. */
static void check_round_trip(const issue_event_t *ev)
{
	issue_event_t again;
	request_status_t st;
	char buf[512], err[160];
	char *json;
	int len;

	require(ev->coupon_id > 0 && ev->user_id > 0);
	require(uuid_valid(ev->request_id, strlen(ev->request_id)));
	len = issue_event_encode(ev, buf, sizeof(buf));
	require(len > 0);
	require(issue_event_decode(buf, (size_t)len, &again, err, sizeof(err)) == 0);
	require(strcmp(again.request_id, ev->request_id) == 0 && again.coupon_id == ev->coupon_id &&
	        again.user_id == ev->user_id && again.accepted_ms == ev->accepted_ms);
	memset(&st, 0, sizeof(st));
	st.event = *ev;
	st.state = STATUS_REJECTED;
	st.reason = REASON_SOLD_OUT;
	st.decided_ms = ev->accepted_ms;
	json = status_to_json(&st);
	require(json != NULL);
	free(json);
}

/* A decoded admin change passes its own checks and encodes back to the same change. */
static void check_admin_round_trip(const admin_event_t *ev)
{
	admin_event_t again;
	char err[160];
	char *json = admin_event_encode(ev);

	require(admin_change_check(ev, err, sizeof(err)) == 0);
	require(json != NULL);
	require(admin_event_decode(json, strlen(json), &again, err, sizeof(err)) == 0);
	require(memcmp(ev, &again, sizeof(again)) == 0);
	free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	admin_event_t admin;
	issue_event_t ev;
	char err[160];
	int rc;

	err[0] = '\0';
	/* The consumer's order: an admin event is recognised first, everything else is an issue event. */
	rc = admin_event_decode((const char *)data, size, &admin, err, sizeof(err));
	if (rc == 0)
		check_admin_round_trip(&admin);
	if (rc != 1) {
		require(rc == 0 || (err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL));
		return 0;
	}
	if (issue_event_decode((const char *)data, size, &ev, err, sizeof(err)) == 0)
		check_round_trip(&ev);
	else
		require(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
	return 0;
}
