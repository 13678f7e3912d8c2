/* consumer_worker.h: the consumer worker process, one per owned partition of the issue topic. */
#ifndef COUPONSD_CONSUMER_WORKER_H
#define COUPONSD_CONSUMER_WORKER_H

#include "worker.h"

#endif
