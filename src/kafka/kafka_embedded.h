/* SPDX-License-Identifier: BSD-2-Clause */
/* kafka_embedded.h: the embedded Kafka child (librdkafka's in-memory mock cluster). */
#ifndef COUPONSD_KAFKA_EMBEDDED_H
#define COUPONSD_KAFKA_EMBEDDED_H

#include "core/worker.h"

#define KAFKA_EMBEDDED_BROKERS 3

/* The role's main (role.c): runs the mock cluster until the master stops it; the exit code. */
int kafka_embedded_main(worker_t *w);

#endif
