/* SPDX-License-Identifier: BSD-2-Clause */
/* coupon_cache.h: each HTTP worker's cache of coupon metadata and PostgreSQL's remaining. */
#ifndef COUPONSD_COUPON_CACHE_H
#define COUPONSD_COUPON_CACHE_H

#include "core/config.h"
#include "http/pg_async.h"
#include "http/redis_async.h"

#include <stdint.h>

typedef struct {
	int64_t id;
	int exists;
	char name[256];
	int total;
	int remaining;     /* PostgreSQL's, as of the last load */
	int64_t starts_ms; /* 0: no start */
	int64_t ends_ms;   /* 0: no end */
	long long stock;   /* Redis stock as last seen */
	int stock_known;
} coupon_info_t;

/* info is NULL when PostgreSQL could not answer (503). */
typedef void (*coupon_fn)(const coupon_info_t *info, void *arg);
typedef struct coupon_cache coupon_cache_t;

/*
 * Metadata, remaining included, is loaded from PostgreSQL on a miss and kept
 * for a second (a missing coupon is asked again every time), so a burst on
 * one coupon costs one query. "Sold out" is answered locally, without a Kafka
 * message, once PostgreSQL's remaining is 0. For GET /api/coupons/{id} the
 * Redis stock is read too, at most every 100 ms and never used older than
 * that; the issue route reads it in its claim script instead. Concurrent
 * misses and refreshes are shared by every request waiting for them.
 */
coupon_cache_t *coupon_cache_new(const config_t *cfg, pg_async_t *pg, redis_async_t *redis);
void coupon_cache_free(coupon_cache_t *cache);

/* Calls fn, at once when fresh, else when loaded; with the Redis stock or without it (_meta). */
void coupon_cache_get(coupon_cache_t *cache, int64_t id, coupon_fn fn, void *arg);
void coupon_cache_get_meta(coupon_cache_t *cache, int64_t id, coupon_fn fn, void *arg);
/* Whether the coupon is sold out for good: PostgreSQL issued every unit. */
int coupon_cache_sold_out(const coupon_info_t *info);
/* Every unit is held by undecided requests: PostgreSQL's remaining is read again if older than 100 ms. */
void coupon_cache_recheck(coupon_cache_t *cache, int64_t id);
/* Drops what is known of one coupon (after the admin API changed it). */
void coupon_cache_forget(coupon_cache_t *cache, int64_t id);

#endif
