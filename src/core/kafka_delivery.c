/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * kafka_delivery.c: a success delivery report is a promise only when a
 * broker gave the message its offset.
 *
 * The idempotent producer of librdkafka 2.0.2 (Debian 12) may report success
 * for a message no broker acknowledged: when a later batch of the same
 * partition succeeds while an earlier one is still to be retried, it assumes
 * the broker kept the earlier one, because a broker refuses a sequence gap
 * (rd_kafka_dr_implicit_ack, "implicitly acked by subsequent batch
 * success"). But a broker that holds no state yet for the producer on that
 * partition accepts any first sequence. Seen on a real 3-node cluster under
 * chaos: a new HTTP worker's first event for a partition was refused
 * NOT_ENOUGH_REPLICAS (not persisted), its second was written first as the
 * producer's first batch there, and the first event's report said success.
 * The event was in no replica, and its client had a 202.
 *
 * Such a report carries no offset (RD_KAFKA_OFFSET_INVALID): the offset
 * comes only from the broker's answer for the message's own batch. The same
 * holds for DUPLICATE_SEQUENCE_NUMBER, which old brokers answered for a
 * retry of something written before: that one is true, but cannot be told
 * apart here. So a success without an offset counts as a failure that may
 * have been written after all, as a delivery that timed out does: the HTTP
 * worker answers 503 (its consumer then decides the event if it is in the
 * log; the client's retry is judged against it) and the consumer sends its
 * results and dead letters again.
 */
#include "core/kafka_delivery.h"

#include "core/log.h"
#include "core/metrics.h"

int kafka_delivery_confirmed(const rd_kafka_message_t *m)
{
	if (kafka_delivery_inferred(m)) {
		metrics_inc(M_KAFKA_DELIVERIES_INFERRED);
		log_warn(
		    "kafka delivery to %s [%d]: success reported without an offset (inferred by librdkafka, "
		    "not acknowledged by a broker); counted as failed",
		    rd_kafka_topic_name(m->rkt), (int)m->partition);
		return 0;
	}
	return m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

int kafka_delivery_inferred(const rd_kafka_message_t *m)
{
	return m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset < 0;
}
