/* kafka_embedded.h: the embedded Kafka child (librdkafka's in-memory mock cluster). */
#ifndef COUPONSD_KAFKA_EMBEDDED_H
#define COUPONSD_KAFKA_EMBEDDED_H

#include "core/worker.h"

#define KAFKA_EMBEDDED_BROKERS 3

#endif
