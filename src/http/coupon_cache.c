/* SPDX-License-Identifier: BSD-2-Clause */
/* coupon_cache.c: each HTTP worker's cache of coupon metadata and PostgreSQL's remaining. */
#include "http/coupon_cache.h"

#include "core/clock.h"
#include "core/keys.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TTL_MS 1000
/* A missing coupon is not cached: one created a moment ago on another worker must be found at once. */
#define MISSING_TTL_MS 0
#define STOCK_REFRESH_MS 100
/* How old PostgreSQL's remaining may be once the edge saw every unit held: the final answer is near. */
#define RECHECK_MS 100
#define MAX_ENTRIES 65536

typedef struct waiter {
	struct waiter *next;
	coupon_fn fn;
	void *arg;
} waiter_t;

typedef struct {
	coupon_info_t info;
	coupon_cache_t *cache;
	int64_t loaded_ms; /* 0: never loaded */
	int64_t ttl_ms;    /* of this load: TTL_MS, or RECHECK_MS once coupon_cache_recheck() asked */
	int loading;
	int64_t stock_asked_ms;
	int stock_pending;
	waiter_t *waiters;
} entry_t;

struct coupon_cache {
	const config_t *cfg;
	pg_async_t *pg;
	redis_async_t *redis;
	entry_t **slots; /* open addressing by id */
	size_t capacity;
	size_t count;
};

static size_t slot_of(const coupon_cache_t *c, int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ULL;

	return (size_t)(h >> 32) & (c->capacity - 1);
}

static entry_t *find(const coupon_cache_t *c, int64_t id)
{
	for (size_t i = slot_of(c, id); c->slots[i] != NULL; i = (i + 1) & (c->capacity - 1)) {
		if (c->slots[i]->info.id == id)
			return c->slots[i];
	}
	return NULL;
}

static int insert(coupon_cache_t *c, entry_t *e)
{
	size_t i;

	if ((c->count + 1) * 2 > c->capacity) {
		coupon_cache_t bigger = *c;

		bigger.capacity = c->capacity * 2;
		bigger.count = 0;
		bigger.slots = calloc(bigger.capacity, sizeof(entry_t *));
		if (bigger.slots == NULL)
			return -1;
		for (size_t j = 0; j < c->capacity; j++) {
			if (c->slots[j] != NULL)
				insert(&bigger, c->slots[j]);
		}
		free(c->slots);
		*c = bigger;
	}
	for (i = slot_of(c, e->info.id); c->slots[i] != NULL; i = (i + 1) & (c->capacity - 1))
		;
	c->slots[i] = e;
	c->count++;
	return 0;
}

static void notify(entry_t *e, const coupon_info_t *info)
{
	waiter_t *w = e->waiters;

	e->waiters = NULL;
	while (w != NULL) {
		waiter_t *next = w->next;

		w->fn(info, w->arg);
		free(w);
		w = next;
	}
}

static long long ms_field(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? 0 : strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

static void on_loaded(const PGresult *res, const char *error, void *arg)
{
	entry_t *e = arg;

	e->loading = 0;
	if (error != NULL) {
		log_warn("loading coupon %lld: %s", (long long)e->info.id, error);
		notify(e, e->loaded_ms > 0 ? &e->info : NULL);
		return;
	}
	e->info.exists = PQntuples(res) == 1;
	if (e->info.exists) {
		snprintf(e->info.name, sizeof(e->info.name), "%s", PQgetvalue(res, 0, 0));
		e->info.total = atoi(PQgetvalue(res, 0, 1));
		e->info.remaining = atoi(PQgetvalue(res, 0, 2));
		e->info.starts_ms = ms_field(res, 3);
		e->info.ends_ms = ms_field(res, 4);
	}
	e->loaded_ms = clock_mono_ms();
	e->ttl_ms = TTL_MS;
	if (!e->stock_pending)
		notify(e, &e->info);
}

static void on_stock(redisReply *reply, void *arg)
{
	entry_t *e = arg;

	e->stock_pending = 0;
	if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
		e->info.stock = strtoll(reply->str, NULL, 10);
		e->info.stock_known = 1;
	} else if (reply != NULL && reply->type == REDIS_REPLY_NIL) {
		e->info.stock_known = 0; /* flushed: the consumer rebuilds it from PostgreSQL */
	}
	if (!e->loading)
		notify(e, e->loaded_ms > 0 ? &e->info : NULL);
}

static int stock_stale(const entry_t *e)
{
	return e->info.exists && clock_mono_ms() - e->stock_asked_ms >= STOCK_REFRESH_MS;
}

/* Asks Redis for the stock; returns 1 when a reply is on its way. */
static int refresh_stock(coupon_cache_t *c, entry_t *e)
{
	char key[KEYS_MAX];
	const char *argv[] = {"GET", key};

	if (e->stock_pending)
		return 1;
	if (!stock_stale(e) || keys_stock(c->cfg->redis_key_prefix, e->info.id, key, sizeof(key)) < 0)
		return 0;
	e->stock_asked_ms = clock_mono_ms();
	if (redis_async_argv(c->redis, on_stock, e, 2, argv, NULL) != 0)
		return 0; /* Redis down: decide without it (the consumer decides for real) */
	e->stock_pending = 1;
	return 1;
}

static void evict_idle(coupon_cache_t *c);

static entry_t *entry_for(coupon_cache_t *c, int64_t id)
{
	entry_t *e = find(c, id);

	if (e != NULL)
		return e;
	if (c->count >= MAX_ENTRIES)
		evict_idle(c);
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->info.id = id;
	e->cache = c;
	if (insert(c, e) != 0) {
		free(e);
		return NULL;
	}
	return e;
}

static int fresh(const entry_t *e)
{
	int64_t ttl = e->info.exists ? e->ttl_ms : MISSING_TTL_MS;

	return e->loaded_ms > 0 && clock_mono_ms() - e->loaded_ms < ttl;
}

static int add_waiter(entry_t *e, coupon_fn fn, void *arg)
{
	waiter_t *w = malloc(sizeof(*w));

	if (w == NULL)
		return -1;
	w->fn = fn;
	w->arg = arg;
	w->next = e->waiters;
	e->waiters = w;
	return 0;
}

static int start_load(coupon_cache_t *c, entry_t *e)
{
	static const char *sql = "SELECT name, total_quantity, remaining, "
	                         "(extract(epoch FROM starts_at) * 1000)::bigint, "
	                         "(extract(epoch FROM ends_at) * 1000)::bigint FROM coupons WHERE id = $1";
	char id[24];
	const char *params[] = {id};

	snprintf(id, sizeof(id), "%lld", (long long)e->info.id);
	if (pg_async_query(c->pg, sql, 1, params, on_loaded, e) != 0)
		return -1;
	e->loading = 1;
	return 0;
}

/*
 * With with_stock, a request never sees a stock reading older than
 * STOCK_REFRESH_MS: a stale one is refreshed first, and every request
 * arriving meanwhile waits for the same reply, so a burst costs one GET per
 * coupon per 100 ms.
 */
static void get(coupon_cache_t *c, int64_t id, int with_stock, coupon_fn fn, void *arg)
{
	entry_t *e = entry_for(c, id);
	int waiting;

	if (e == NULL) {
		fn(NULL, arg);
		return;
	}
	waiting = with_stock && refresh_stock(c, e);
	if (fresh(e) && !waiting) {
		fn(&e->info, arg);
		return;
	}
	if (add_waiter(e, fn, arg) != 0) {
		fn(e->loaded_ms > 0 ? &e->info : NULL, arg);
		return;
	}
	if (!fresh(e) && !e->loading && start_load(c, e) != 0 && !e->stock_pending)
		/* PostgreSQL unreachable: a stale entry still answers (coupons change rarely); none at all is
		 * a 503. */
		notify(e, e->loaded_ms > 0 ? &e->info : NULL);
}

void coupon_cache_get(coupon_cache_t *c, int64_t id, coupon_fn fn, void *arg)
{
	get(c, id, 1, fn, arg);
}

void coupon_cache_get_meta(coupon_cache_t *c, int64_t id, coupon_fn fn, void *arg)
{
	get(c, id, 0, fn, arg);
}

/*
 * PostgreSQL's remaining is what the consumers decided, so 0 there means
 * every unit is issued and none can come back. The Redis stock is not
 * asked: its 0 may be units reserved for requests PostgreSQL will still
 * reject, and those units are given back.
 */
int coupon_cache_sold_out(const coupon_info_t *info)
{
	return info->remaining <= 0;
}

void coupon_cache_recheck(coupon_cache_t *c, int64_t id)
{
	entry_t *e = find(c, id);

	if (e != NULL && e->ttl_ms > RECHECK_MS)
		e->ttl_ms = RECHECK_MS;
}

void coupon_cache_forget(coupon_cache_t *c, int64_t id)
{
	entry_t *e = find(c, id);

	if (e != NULL)
		e->loaded_ms = 0;
}

/* A flood of unknown ids must not grow the cache without bound: drop every entry no callback points to. */
static void evict_idle(coupon_cache_t *c)
{
	entry_t **old = c->slots;
	size_t capacity = c->capacity;

	c->slots = calloc(capacity, sizeof(entry_t *));
	if (c->slots == NULL) {
		c->slots = old;
		return;
	}
	c->count = 0;
	for (size_t i = 0; i < capacity; i++) {
		entry_t *e = old[i];

		if (e == NULL)
			continue;
		if (e->loading || e->stock_pending || e->waiters != NULL)
			insert(c, e);
		else
			free(e);
	}
	free(old);
}

coupon_cache_t *coupon_cache_new(const config_t *cfg, pg_async_t *pg, redis_async_t *redis)
{
	coupon_cache_t *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cfg = cfg;
	c->pg = pg;
	c->redis = redis;
	c->capacity = 64;
	c->slots = calloc(c->capacity, sizeof(entry_t *));
	if (c->slots == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void coupon_cache_free(coupon_cache_t *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->capacity; i++) {
		if (c->slots[i] != NULL) {
			notify(c->slots[i], NULL);
			free(c->slots[i]);
		}
	}
	free(c->slots);
	free(c);
}
