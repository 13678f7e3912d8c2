/* SPDX-License-Identifier: BSD-2-Clause */
/* pidfile.h: the locked pid file that keeps two masters from sharing one configuration. */
#ifndef COUPONSD_PIDFILE_H
#define COUPONSD_PIDFILE_H

#include <sys/types.h>

/* Creates and locks path, writes our pid. Returns the open fd (kept for the lock) or -1. */
int pidfile_create(const char *path);
void pidfile_remove(const char *path, int fd);

#endif
