/* SPDX-License-Identifier: BSD-2-Clause */
/* role.c: the process roles, one row each: every fact about a role in one place (relayd's procs[]). */
#include "role.h"

#include "consumer/consumer.h"
#include "core/channel.h"
#include "http/http_worker.h"
#include "kafka/kafka_embedded.h"

#include <stdio.h>

/*
 * Why the embedded Kafka ignores SIGTERM: it must outlive every Kafka
 * client so that consumers can commit on the way out, so it leaves only
 * when the master says so (or dies), not on a SIGTERM sent to the whole
 * process group. Why only HTTP workers keep the listen sockets: a consumer
 * holding a copy would keep a port open after the workers are gone.
 */
static const role_info_t roles[] = {
    [ROLE_KAFKA] = {"embedded kafka", "couponsd: embedded kafka", "embedded kafka", "embedded kafka",
                    kafka_embedded_main, 0, 1u << CHANNEL_KAFKA_FAULT, M_RESTARTS_KAFKA, NULL, 1},
    [ROLE_HTTP] = {"http worker", "couponsd: http worker", "http worker %d", "http worker %d (generation %u)",
                   http_worker_main, ROLE_INHERITS_LISTENERS | ROLE_INHERITS_BOOTSTRAP,
                   1u << CHANNEL_STOPPING, M_RESTARTS_HTTP, "http_crash", 0},
    [ROLE_CONSUMER] = {"consumer", "couponsd: consumer partition %d", "consumer partition %d",
                       "consumer partition %d", consumer_main, ROLE_INHERITS_BOOTSTRAP, 0,
                       M_RESTARTS_CONSUMER, "consumer_crash", 0},
    [ROLE_MASTER] = {"master", "couponsd: master", "master", "master", NULL, 0, 0, M_COUNTERS, NULL, 0},
};

const role_info_t *role_info(role_t role)
{
	return &roles[role];
}

const char *role_format(const char *format, int index, unsigned generation, char *buf, size_t size)
{
	/* Each row's formats take (int, unsigned) and may ignore them: extra arguments are harmless. */
	snprintf(buf, size, format, index, generation);
	return buf;
}
