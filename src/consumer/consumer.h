/* SPDX-License-Identifier: BSD-2-Clause */
/* consumer.h: the consumer process, one per owned partition of the issue topic. */
#ifndef COUPONSD_CONSUMER_H
#define COUPONSD_CONSUMER_H

#include "core/worker.h"

/* The role's main (role.c): runs the consumer of partition w->args.index until it stops; the exit code. */
int consumer_main(worker_t *w);

#endif
