/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_loop.h: hiredis on the worker's libevent loop, writing once per loop turn. */
#ifndef COUPONSD_REDIS_LOOP_H
#define COUPONSD_REDIS_LOOP_H

#include <event2/event.h>
#include <hiredis/async.h>

/*
 * Replaces hiredis's own libevent adapter, which costs four epoll_ctl calls
 * and an extra loop turn per round trip: its read event is not persistent
 * (removed and added again on every reply) and every command arms a write
 * event that is removed once written. Here the read event stays, and once
 * connected the commands of one turn are written at its end, in one write();
 * a write event is armed only while connecting or when the socket is full.
 */
int redis_loop_attach(redisAsyncContext *ac, struct event_base *base);

#endif
