/* SPDX-License-Identifier: BSD-2-Clause */
/* sdnotify.h: the systemd notification protocol (READY=1, RELOADING=1, STATUS=..., WATCHDOG=1). */
#ifndef COUPONSD_SDNOTIFY_H
#define COUPONSD_SDNOTIFY_H

/*
 * Sends one datagram to $NOTIFY_SOCKET; a no-op returning 0 when it is unset.
 * Only the master notifies: systemd's NotifyAccess=main ignores children anyway.
 */
int sdnotify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * systemd's watchdog (WatchdogSec=): the interval in microseconds from
 * $WATCHDOG_USEC, 0 when it is not armed for this process ($WATCHDOG_PID
 * names another one, as it does in every child, which inherits the variables).
 */
long long sdnotify_watchdog_usec(void);

/*
 * Sends WATCHDOG=1 when half the interval has passed since the last one.
 * Called from the master's event loop only: a loop that stops turning stops
 * the pings, and systemd then kills and restarts the service.
 */
void sdnotify_watchdog_tick(long long now_us);

#endif
