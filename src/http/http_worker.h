/* http_worker.h: the HTTP worker process (libevent evhttp on the master's listen sockets). */
#ifndef COUPONSD_HTTP_WORKER_H
#define COUPONSD_HTTP_WORKER_H

#include "core/worker.h"

#endif
