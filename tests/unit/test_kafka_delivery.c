/* SPDX-License-Identifier: BSD-2-Clause */
/* test_kafka_delivery.c: TAP unit tests of what a delivery report proves (src/core/kafka_delivery.c). */
#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* With the folder, as in src/ (see test_config.c). */
#include "core/kafka_delivery.h"
#include "tap.h"

/* A report as librdkafka hands it over; rkt names the topic in the warning of an inferred one. */
static rd_kafka_message_t report(rd_kafka_topic_t *rkt, rd_kafka_resp_err_t err, int64_t offset)
{
	rd_kafka_message_t m = {0};

	m.rkt = rkt;
	m.err = err;
	m.offset = offset;
	return m;
}

int main(void)
{
	char err[256];
	/* A producer that never connects (no bootstrap servers): only for a topic handle. */
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), err, sizeof(err));
	rd_kafka_topic_t *rkt = rk != NULL ? rd_kafka_topic_new(rk, "coupon-issue", NULL) : NULL;
	rd_kafka_message_t acked, acked_late, implicit, timed_out, refused;

	if (rkt == NULL) {
		printf("Bail out! no librdkafka topic handle: %s\n", rk == NULL ? err : "rd_kafka_topic_new");
		return 1;
	}
	acked = report(rkt, RD_KAFKA_RESP_ERR_NO_ERROR, 0);
	acked_late = report(rkt, RD_KAFKA_RESP_ERR_NO_ERROR, 123456789);
	implicit = report(rkt, RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_OFFSET_INVALID);
	timed_out = report(rkt, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_OFFSET_INVALID);
	refused = report(rkt, RD_KAFKA_RESP_ERR_INVALID_RECORD, 17);

	plan(8);
	ok(kafka_delivery_confirmed(&acked) && !kafka_delivery_inferred(&acked),
	   "success at offset 0 is a broker's acknowledgement");
	ok(kafka_delivery_confirmed(&acked_late), "success at a large offset too");
	ok(!kafka_delivery_confirmed(&implicit), "success without an offset is no acknowledgement");
	ok(kafka_delivery_inferred(&implicit), "success without an offset is librdkafka's inference");
	ok(!kafka_delivery_confirmed(&timed_out), "a timed-out message is not delivered");
	ok(!kafka_delivery_inferred(&timed_out), "a timed-out message is a failure, not an inference");
	ok(!kafka_delivery_confirmed(&refused), "an error with an offset is still an error");
	ok(!kafka_delivery_inferred(&refused), "an error is never an inferred success");
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return done_testing();
}
