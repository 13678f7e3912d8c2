/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_async.h: a non-blocking Redis connection on the worker's event loop, with timeouts and reconnects. */
#ifndef COUPONSD_REDIS_ASYNC_H
#define COUPONSD_REDIS_ASYNC_H

#include "core/config.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stddef.h>

typedef struct redis_async redis_async_t;

/* Called exactly once per command: reply is NULL on timeout, disconnect or shutdown. */
typedef void (*redis_reply_fn)(redisReply *reply, void *arg);
/* Called for each message published on the subscribed channel. */
typedef void (*redis_message_fn)(const char *payload, size_t len, void *arg);

/* A Lua script: sent with EVALSHA once its SHA1 is known, EVAL otherwise (and after NOSCRIPT). */
typedef struct {
	const char *body;
	char sha[41];
} redis_script_t;

/*
 * Connects in the background and keeps reconnecting with back-off (100 ms
 * doubling to 5 s). hiredis 0.14 has no timeouts of its own in async mode, so
 * every command carries a timer (redis.timeout); a command that times out
 * fails, and the connection is reset, since a silent server is as good as gone.
 */
redis_async_t *redis_async_new(struct event_base *base, const config_t *cfg, const char *name);
void redis_async_free(redis_async_t *ra);
int redis_async_connected(const redis_async_t *ra);
/* 1 once the first connect attempt has ended: connected, refused or timed out (redis.timeout). */
int redis_async_settled(const redis_async_t *ra);

/* Returns -1 without calling fn when not connected or out of memory. */
int redis_async_argv(redis_async_t *ra, redis_reply_fn fn, void *arg, int argc, const char **argv,
                     const size_t *lens);
int redis_async_eval(redis_async_t *ra, redis_script_t *script, redis_reply_fn fn, void *arg, int nkeys,
                     int argc, const char **argv);

/*
 * Makes this connection a subscriber of channel, subscribed only while
 * redis_async_hear(ra, 1) says so (and again after every reconnect). fn gets
 * each message; subscribed (may be NULL) runs each time Redis confirms the
 * subscription, i.e. after a gap in which messages were missed. -1: out of
 * memory.
 */
int redis_async_listen(redis_async_t *ra, const char *channel, redis_message_fn fn,
                       void (*subscribed)(void *arg), void *arg);
/* Subscribe (1) or unsubscribe (0) now, or as soon as the connection and the previous change allow. */
void redis_async_hear(redis_async_t *ra, int wanted);

#endif
