/* SPDX-License-Identifier: BSD-2-Clause */
/* http_worker.h: the HTTP worker process (libevent evhttp on the master's listen sockets). */
#ifndef COUPONSD_HTTP_WORKER_H
#define COUPONSD_HTTP_WORKER_H

#include "core/worker.h"

/* The role's main (role.c): runs HTTP worker w->args.index until it stops; the exit code. */
int http_worker_main(worker_t *w);

#endif
