/* SPDX-License-Identifier: BSD-2-Clause */
/* test_kafka_delivery.c: TAP unit tests of what a delivery report proves (src/core/kafka_delivery.c). */
#include <librdkafka/rdkafka.h>

/* With the folder, as in src/ (see test_config.c). */
#include "core/kafka_delivery.h"
#include "tap.h"

static rd_kafka_message_t report(rd_kafka_resp_err_t err, int64_t offset)
{
	rd_kafka_message_t m = {0};

	m.err = err;
	m.offset = offset;
	return m;
}

int main(void)
{
	rd_kafka_message_t acked = report(RD_KAFKA_RESP_ERR_NO_ERROR, 0),
	                   acked_late = report(RD_KAFKA_RESP_ERR_NO_ERROR, 123456789),
	                   implicit = report(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_OFFSET_INVALID),
	                   timed_out = report(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_OFFSET_INVALID),
	                   refused = report(RD_KAFKA_RESP_ERR_INVALID_RECORD, 17);

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
	return done_testing();
}
