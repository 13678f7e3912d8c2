/* fuzz_event.c: libFuzzer harness for the Kafka event JSON decoder (what the consumer reads off the topic).
 */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	issue_event_t ev;
	char err[160];

	err[0] = '\0';
	if (issue_event_decode((const char *)data, size, &ev, err, sizeof(err)) == 0)
		check_round_trip(&ev);
	else
		require(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
	return 0;
}
