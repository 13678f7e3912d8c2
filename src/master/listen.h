/* SPDX-License-Identifier: BSD-2-Clause */
/* listen.h: the HTTP listen sockets, opened once by the master and inherited by HTTP workers. */
#ifndef COUPONSD_LISTEN_H
#define COUPONSD_LISTEN_H

#include "core/config.h"

typedef struct {
	int fds[CONFIG_MAX_LISTEN];
	int count;
} listeners_t;

/* Opens every http.listen address; on failure closes what it opened and returns -1. */
int listeners_open(const config_t *cfg, listeners_t *out);
void listeners_close(listeners_t *l);

#endif
