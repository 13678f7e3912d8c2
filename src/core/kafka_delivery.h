/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_delivery.h: what a delivery report proves. */
#ifndef COUPONSD_KAFKA_DELIVERY_H
#define COUPONSD_KAFKA_DELIVERY_H

#include <librdkafka/rdkafka.h>

/*
 * Whether the report is a broker's acknowledgement of this very message (see
 * kafka_delivery.c). A success without an offset is logged and counted
 * (couponsd_kafka_deliveries_inferred_total) here: call it once per report.
 */
int kafka_delivery_confirmed(const rd_kafka_message_t *m);

/* Whether the report says success without a broker having given the message an offset. */
int kafka_delivery_inferred(const rd_kafka_message_t *m);

#endif
