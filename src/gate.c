/* gate.c: the consumer's Redis gate: per-request stock reservation, compensation and convergence. */
#include "gate.h"

#include "keys.h"
#include "log.h"
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Reserve one unit for one request. KEYS[1] = stock, KEYS[2] = the
 * request's reservation record, ARGV[1] = its TTL in seconds. The record is
 * checked first, so a replayed event gets the outcome of its first run and
 * never decrements twice; a decrement below zero is undone inside the same
 * script, so nobody ever observes negative stock.
 *   0 reserved now   1 reserved earlier   -1 sold out (now or earlier)
 *  -2 no stock key (load it from PostgreSQL)   -3 released earlier
 */
static const char reserve_lua[] = "local seen = redis.call('GET', KEYS[2])\n"
                                  "if seen then return tonumber(seen) end\n"
                                  "if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end\n"
                                  "if redis.call('DECR', KEYS[1]) < 0 then\n"
                                  "  redis.call('INCR', KEYS[1])\n"
                                  "  redis.call('SET', KEYS[2], '-1', 'EX', ARGV[1])\n"
                                  "  return -1\n"
                                  "end\n"
                                  "redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])\n"
                                  "return 0\n";

/*
 * Give a reservation back (compensation). Only a record that still says
 * "reserved" is released, and it then says "released": running it twice
 * gives back one unit. A missing stock key is not created by the INCR (it
 * would invent stock); the next load from PostgreSQL sets it right.
 */
static const char release_lua[] =
    "if redis.call('GET', KEYS[2]) ~= '1' then return 0 end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[1]) end\n"
    "redis.call('SET', KEYS[2], '-3', 'EX', ARGV[1])\n"
    "return 1\n";

#define SHA_LEN 40

struct gate {
	const config_t *cfg;
	redisContext *rc;
	char reserve_sha[SHA_LEN + 1];
	char release_sha[SHA_LEN + 1];
	long long ttl_s;
};

gate_t *gate_new(const config_t *cfg)
{
	gate_t *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		log_error("out of memory");
		return NULL;
	}
	g->cfg = cfg;
	g->ttl_s = cfg->issue_result_ttl / 1000 > 0 ? cfg->issue_result_ttl / 1000 : 1;
	return g;
}

/* After a pipeline went out of step with its replies, the connection must not be used again. */
static void poison(gate_t *g)
{
	if (g->rc != NULL && g->rc->err == 0) {
		g->rc->err = REDIS_ERR_OTHER;
		snprintf(g->rc->errstr, sizeof(g->rc->errstr), "pipeline abandoned");
	}
}

static void drop_connection(gate_t *g)
{
	if (g->rc != NULL)
		redisFree(g->rc);
	g->rc = NULL;
}

void gate_free(gate_t *g)
{
	if (g == NULL)
		return;
	drop_connection(g);
	free(g);
}

redisContext *gate_redis(gate_t *g)
{
	return g->rc;
}

/* One blocking command whose reply is checked for errors; NULL after logging. */
static redisReply *command(gate_t *g, const char *fmt, ...)
{
	redisReply *reply;
	va_list ap;

	va_start(ap, fmt);
	reply = redisvCommand(g->rc, fmt, ap);
	va_end(ap);
	if (reply == NULL) {
		metrics_inc(M_REDIS_ERRORS);
		log_warn("redis: %s", g->rc->errstr);
		return NULL;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		metrics_inc(M_REDIS_ERRORS);
		log_error("redis: %s", reply->str);
		freeReplyObject(reply);
		return NULL;
	}
	return reply;
}

static int load_script(gate_t *g, const char *lua, char *sha)
{
	redisReply *reply = command(g, "SCRIPT LOAD %s", lua);
	int rc = -1;

	if (reply == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_STRING && reply->len == SHA_LEN) {
		memcpy(sha, reply->str, SHA_LEN + 1);
		rc = 0;
	} else {
		log_error("redis: unexpected SCRIPT LOAD reply");
	}
	freeReplyObject(reply);
	return rc;
}

static int load_scripts(gate_t *g)
{
	return load_script(g, reserve_lua, g->reserve_sha) == 0 &&
	               load_script(g, release_lua, g->release_sha) == 0
	           ? 0
	           : -1;
}

static int simple(gate_t *g, redisReply *reply)
{
	if (reply == NULL)
		return -1;
	freeReplyObject(reply);
	return 0;
}

static int connect_now(gate_t *g)
{
	const config_t *cfg = g->cfg;
	struct timeval tv = {(time_t)(cfg->redis_timeout / 1000),
	                     (suseconds_t)(cfg->redis_timeout % 1000) * 1000};

	/* A host starting with '/' is a unix socket path, as redis-cli -s takes it. */
	if (cfg->redis_host[0] == '/')
		g->rc = redisConnectUnixWithTimeout(cfg->redis_host, tv);
	else
		g->rc = redisConnectWithTimeout(cfg->redis_host, cfg->redis_port, tv);
	if (g->rc == NULL || g->rc->err != 0) {
		log_warn("redis %s:%d: %s", cfg->redis_host, cfg->redis_port,
		         g->rc != NULL ? g->rc->errstr : "out of memory");
		return -1;
	}
	if (redisSetTimeout(g->rc, tv) != REDIS_OK) {
		log_warn("redis: cannot set the command timeout");
		return -1;
	}
	if (cfg->redis_password[0] != '\0' && simple(g, command(g, "AUTH %s", cfg->redis_password)) != 0)
		return -1;
	if (cfg->redis_db != 0 && simple(g, command(g, "SELECT %d", cfg->redis_db)) != 0)
		return -1;
	return load_scripts(g);
}

int gate_connect(gate_t *g)
{
	if (g->rc != NULL && g->rc->err == 0)
		return 0;
	drop_connection(g);
	if (connect_now(g) != 0) {
		drop_connection(g);
		return -1;
	}
	log_info("connected to redis %s:%d (db %d)", g->cfg->redis_host, g->cfg->redis_port,
	         g->cfg->redis_db);
	return 0;
}

/* Queues one EVALSHA for an event's two keys (both carry the coupon's hash tag). */
static int append_script(gate_t *g, const char *sha, const issue_event_t *ev)
{
	const char *prefix = g->cfg->redis_key_prefix;
	char stock[KEYS_MAX], rsv[KEYS_MAX];

	if (keys_stock(prefix, ev->coupon_id, stock, sizeof(stock)) < 0 ||
	    keys_reservation(prefix, ev->coupon_id, ev->request_id, rsv, sizeof(rsv)) < 0) {
		log_error("redis key for coupon %lld does not fit", (long long)ev->coupon_id);
		return -1;
	}
	return redisAppendCommand(g->rc, "EVALSHA %s 2 %s %s %lld", sha, stock, rsv, g->ttl_s) == REDIS_OK
	           ? 0
	           : -1;
}

/* Reads one pipelined reply; after an I/O error or timeout the context is dead. */
static redisReply *read_reply(gate_t *g)
{
	void *reply = NULL;

	if (redisGetReply(g->rc, &reply) != REDIS_OK) {
		log_warn("redis: %s", g->rc->errstr);
		return NULL;
	}
	return reply;
}

/* An integer script reply, or: 1 in *noscript when the script must be loaded again; -1 on other errors. */
static int script_result(const redisReply *reply, long long *value, int *noscript)
{
	if (reply->type == REDIS_REPLY_INTEGER) {
		*value = reply->integer;
		return 0;
	}
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		*noscript = 1; /* Redis restarted or SCRIPT FLUSH: nothing ran */
		return -1;
	}
	log_error("redis script: %s",
	          reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply type");
	return -1;
}

static gate_outcome_t outcome_of(long long value)
{
	switch (value) {
	case 0:
		return GATE_RESERVED;
	case 1:
		return GATE_RESERVED_EARLIER;
	case -1:
		return GATE_SOLD_OUT;
	case -2:
		return GATE_NO_STOCK;
	case -3:
		return GATE_RELEASED_EARLIER;
	}
	log_error("redis reserve script returned %lld", value);
	return GATE_PENDING;
}

/* Sends every pending request, then reads the answers in the same order. */
static int reserve_round(gate_t *g, gate_request_t *reqs, int n, int *noscript)
{
	int sent = 0, rc = 0;

	for (int i = 0; i < n && rc == 0; i++) {
		if (reqs[i].outcome == GATE_PENDING &&
		    (rc = append_script(g, g->reserve_sha, reqs[i].event)) == 0)
			sent++;
	}
	for (int i = 0; i < n && sent > 0; i++) {
		redisReply *reply;
		long long value;

		if (reqs[i].outcome != GATE_PENDING)
			continue;
		sent--;
		if ((reply = read_reply(g)) == NULL)
			return -1;
		if (script_result(reply, &value, noscript) == 0)
			reqs[i].outcome = outcome_of(value);
		else if (!*noscript)
			rc = -1;
		freeReplyObject(reply);
	}
	return rc;
}

int gate_reserve(gate_t *g, gate_request_t *reqs, int n)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int noscript = 0;

		if (reserve_round(g, reqs, n, &noscript) != 0)
			return -1;
		if (!noscript)
			break;
		if (load_scripts(g) != 0)
			return -1;
	}
	for (int i = 0; i < n; i++) {
		if (reqs[i].outcome == GATE_PENDING)
			return -1;
	}
	return 0;
}

static int release_round(gate_t *g, const issue_event_t *const *events, int n, unsigned char *done,
                         int *noscript)
{
	int sent = 0, rc = 0;

	for (int i = 0; i < n && rc == 0; i++) {
		if (!done[i] && (rc = append_script(g, g->release_sha, events[i])) == 0)
			sent++;
	}
	for (int i = 0; i < n && sent > 0; i++) {
		redisReply *reply;
		long long value;

		if (done[i])
			continue;
		sent--;
		if ((reply = read_reply(g)) == NULL)
			return -1;
		if (script_result(reply, &value, noscript) == 0)
			done[i] = 1;
		else if (!*noscript)
			rc = -1;
		freeReplyObject(reply);
	}
	return rc;
}

int gate_release(gate_t *g, const issue_event_t *const *events, int n, unsigned char *done)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int noscript = 0;

		if (release_round(g, events, n, done, &noscript) != 0)
			return -1;
		if (!noscript)
			return 0;
		if (load_scripts(g) != 0)
			return -1;
	}
	return -1;
}

/* What Redis holds for one stock key: 1 and *value, 0 when missing, or 2 when it is not a number. */
static int stock_value(const redisReply *reply, long long *value)
{
	char *end;

	if (reply->type == REDIS_REPLY_NIL)
		return 0;
	if (reply->type != REDIS_REPLY_STRING)
		return 2;
	*value = strtoll(reply->str, &end, 10);
	return end != reply->str && *end == '\0' ? 1 : 2;
}

/* Reads the GET replies and queues a SET for each stock that differs. Returns the number queued, or -1. */
static int queue_fixes(gate_t *g, const int64_t *ids, const int *remaining, int n)
{
	int queued = 0;

	for (int i = 0; i < n; i++) {
		redisReply *reply = read_reply(g);
		char key[KEYS_MAX];
		long long value = 0;
		int state;

		if (reply == NULL)
			return -1;
		state = stock_value(reply, &value);
		freeReplyObject(reply);
		if (state == 1 && value == remaining[i])
			continue;
		if (state == 0)
			log_info("stock of coupon %lld loaded from PostgreSQL: %d", (long long)ids[i],
			         remaining[i]);
		else
			log_warn("stock of coupon %lld drifted: redis %lld, postgresql %d; setting it to %d",
			         (long long)ids[i], value, remaining[i], remaining[i]);
		if (keys_stock(g->cfg->redis_key_prefix, ids[i], key, sizeof(key)) < 0 ||
		    redisAppendCommand(g->rc, state == 0 ? "SET %s %d NX" : "SET %s %d", key, remaining[i]) !=
		        REDIS_OK)
			return -1;
		queued++;
	}
	return queued;
}

int gate_sync_stock(gate_t *g, const int64_t *coupon_ids, const int *remaining, int n)
{
	int queued, rc = 0;

	for (int i = 0; i < n; i++) {
		char key[KEYS_MAX];

		if (keys_stock(g->cfg->redis_key_prefix, coupon_ids[i], key, sizeof(key)) < 0 ||
		    redisAppendCommand(g->rc, "GET %s", key) != REDIS_OK) {
			poison(g); /* replies for the GETs already queued would be read by the next caller */
			return -1;
		}
	}
	if ((queued = queue_fixes(g, coupon_ids, remaining, n)) < 0) {
		poison(g);
		return -1;
	}
	for (int i = 0; i < queued; i++) {
		redisReply *reply = read_reply(g);

		if (reply == NULL)
			return -1;
		if (reply->type == REDIS_REPLY_ERROR) {
			log_error("redis SET stock: %s", reply->str);
			rc = -1;
		}
		freeReplyObject(reply);
	}
	return rc;
}

int gate_claim_once(gate_t *g, const char *name)
{
	redisReply *reply = command(g, "SET %sfault:%s 1 NX", g->cfg->redis_key_prefix, name);
	int rc;

	if (reply == NULL)
		return -1;
	rc = reply->type == REDIS_REPLY_STATUS ? 1 : 0;
	freeReplyObject(reply);
	return rc;
}
