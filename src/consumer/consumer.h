/* consumer.h: the consumer worker process, one per owned partition of the issue topic. */
#ifndef COUPONSD_CONSUMER_H
#define COUPONSD_CONSUMER_H

#include "core/worker.h"

#endif
