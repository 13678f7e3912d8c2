/* SPDX-License-Identifier: BSD-2-Clause */
/* sdnotify.h: the systemd notification protocol (READY=1, RELOADING=1, STATUS=...). */
#ifndef COUPONSD_SDNOTIFY_H
#define COUPONSD_SDNOTIFY_H

/*
 * Sends one datagram to $NOTIFY_SOCKET; a no-op returning 0 when it is unset.
 * Only the master notifies: systemd's NotifyAccess=main ignores children anyway.
 */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
