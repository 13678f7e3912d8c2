/* SPDX-License-Identifier: BSD-2-Clause */
/* gate.c: the consumer's Redis gate: per-coupon stock reservation, compensation and convergence. */
#include "consumer/gate.h"

#include "core/keys.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Reserve one unit for each request of one coupon, in the order given (the
 * Kafka log order). KEYS[1] = the coupon's stock, KEYS[2] = the edge's
 * in-flight set, KEYS[3..] = each request's reservation record, ARGV[1] =
 * their TTL in seconds, ARGV[2..] = the requestIds; one call per coupon
 * per batch (chunked), because the per-call cost of EVALSHA (Lua setup, the
 * command's parsing and formatting) was most of the gate's time when it ran
 * once per request. Each request gets exactly what a call of its own would
 * give it: the record is checked first, so a replayed event gets the outcome
 * of its first run and never decrements twice; a decrement below zero is
 * undone inside the script, so nobody ever observes negative stock. Nothing
 * else runs while the script does, so the stock key's existence and "sold
 * out" are checked once and then remembered instead of asked again.
 * Returns one code per request:
 *   0 reserved now   1 reserved earlier   -1 sold out (now or earlier)
 *  -2 no stock key (load it from PostgreSQL)   -3 released earlier
 * A record that is not a number (written by hand, or by something else
 * sharing the prefix) would be answered the same way on every retry and hold
 * the partition for good; it is deleted and treated as missing, like a
 * flushed one (the store then finds any earlier decision in PostgreSQL), and
 * the answer is offset by BAD_RECORD (-100) so that the consumer says so.
 * Once the stock key is there, every request of the call is out of the
 * edge's in-flight set (http_issue.c counts it against the stock until the
 * gate has seen it): removed in the same step as its DECR, so stock minus
 * in flight, what the edge admits on, does not move for a reserved request
 * and grows by one for a refused one.
 */
static const char reserve_lua[] = "local stock, ttl, out = KEYS[1], ARGV[1], {}\n"
                                  "local have = redis.call('EXISTS', stock) == 1\n"
                                  "local sold_out = false\n"
                                  "for i = 3, #KEYS do\n"
                                  "  local seen, bad = redis.call('GET', KEYS[i]), 0\n"
                                  "  if seen and not tonumber(seen) then\n"
                                  "    redis.call('DEL', KEYS[i])\n"
                                  "    seen, bad = false, -100\n"
                                  "  end\n"
                                  "  if seen then\n"
                                  "    out[i - 2] = tonumber(seen)\n"
                                  "  elseif not have then\n"
                                  "    out[i - 2] = bad - 2\n"
                                  "  elseif sold_out or redis.call('DECR', stock) < 0 then\n"
                                  "    if not sold_out then redis.call('INCR', stock) end\n"
                                  "    sold_out = true\n"
                                  "    redis.call('SET', KEYS[i], '-1', 'EX', ttl)\n"
                                  "    out[i - 2] = bad - 1\n"
                                  "  else\n"
                                  "    redis.call('SET', KEYS[i], '1', 'EX', ttl)\n"
                                  "    out[i - 2] = bad\n"
                                  "  end\n"
                                  "end\n"
                                  "if have then redis.call('ZREM', KEYS[2], unpack(ARGV, 2)) end\n"
                                  "return out\n";

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
/* Added by the reserve script to the answer of a request whose record was not a number. */
#define BAD_RECORD (-100)

/*
 * At most this many requests go into one reserve call: a script blocks all of
 * Redis while it runs (about 9 us per request measured, so ~1 ms for a full
 * chunk), while the per-call overhead is already small at this size.
 */
#define GATE_CHUNK 128

/* An item the reserve round asks about: valid, undecided, and not answered yet. */
static int asks_gate(const item_t *it)
{
	return item_valid(it) && !it->decided && it->gate == GATE_PENDING;
}

/* A pending request's place in the reserve round: sorted by coupon, then by log order. */
typedef struct {
	int64_t coupon_id;
	int index; /* into the caller's items */
} slot_t;

struct gate {
	const config_t *cfg;
	redisContext *rc;
	char reserve_sha[SHA_LEN + 1];
	char release_sha[SHA_LEN + 1];
	long long ttl_s;
	slot_t *slots; /* scratch of the reserve round, slots_cap long */
	int slots_cap;
	/* The arguments of one reserve call: EVALSHA sha numkeys stock inflight rsv... ttl requestId... */
	char keys[GATE_CHUNK + 2][KEYS_MAX];
	const char *argv[2 * GATE_CHUNK + 6];
	size_t argvlen[2 * GATE_CHUNK + 6];
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
	free(g->slots);
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
	struct timeval tv = clock_timeval(cfg->redis_timeout);

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

/* Queues one release call for an event's two keys (both carry the coupon's hash tag). */
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

/* The reserve script's answer for one request; a record that was not a number is said and counted. */
static gate_outcome_t outcome_of(const gate_t *g, const item_t *it, long long value)
{
	char key[KEYS_MAX];

	if (value <= BAD_RECORD && value >= BAD_RECORD - 2) {
		if (keys_reservation(g->cfg->redis_key_prefix, it->status.event.coupon_id,
		                     it->status.event.request_id, key, sizeof(key)) < 0)
			snprintf(key, sizeof(key), "of request %s", it->status.event.request_id);
		log_error("redis reservation record %s was not a number; deleted and treated as missing "
		          "(PostgreSQL decides a replay)",
		          key);
		metrics_inc(M_REDIS_BAD_VALUES);
		value -= BAD_RECORD;
	}
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

static int by_coupon_then_log(const void *pa, const void *pb)
{
	const slot_t *a = pa, *b = pb;

	if (a->coupon_id != b->coupon_id)
		return a->coupon_id < b->coupon_id ? -1 : 1;
	return (a->index > b->index) - (a->index < b->index);
}

/*
 * Lists the pending requests grouped by coupon, each group in Kafka log order
 * (first come, first served holds per coupon; coupons have separate stock
 * keys, so their order among each other does not matter). Returns how many
 * are pending, or -1 when out of memory.
 */
static int group_pending(gate_t *g, const item_t *items, int n)
{
	int m = 0;

	if (n > g->slots_cap) {
		slot_t *slots = realloc(g->slots, (size_t)n * sizeof(*slots));

		if (slots == NULL) {
			log_error("out of memory");
			return -1;
		}
		g->slots = slots;
		g->slots_cap = n;
	}
	for (int i = 0; i < n; i++) {
		if (asks_gate(&items[i]))
			g->slots[m++] = (slot_t){items[i].status.event.coupon_id, i};
	}
	/* The index makes the key unique, so qsort being unstable does not matter. */
	qsort(g->slots, (size_t)m, sizeof(*g->slots), by_coupon_then_log);
	return m;
}

/* Length of the chunk at slots[start]: requests of one coupon, at most GATE_CHUNK of them. */
static int chunk_len(const gate_t *g, int m, int start)
{
	int len = 1;

	while (start + len < m && len < GATE_CHUNK &&
	       g->slots[start + len].coupon_id == g->slots[start].coupon_id)
		len++;
	return len;
}

/* Adds one argument of the reserve call under construction. */
static void push_arg(gate_t *g, int *argc, const char *arg, size_t len)
{
	g->argv[*argc] = arg;
	g->argvlen[*argc] = len;
	(*argc)++;
}

/*
 * Queues one reserve call for slots[start, start + len): the coupon's stock
 * and in-flight keys, then each request's reservation key (all carry the
 * coupon's hash tag, so the call is fit for Redis Cluster), then the TTL and
 * the requestIds. The argv form skips hiredis' format string parsing, which
 * cost more than the call itself.
 */
static int append_chunk(gate_t *g, const item_t *items, int start, int len)
{
	const char *prefix = g->cfg->redis_key_prefix;
	int64_t coupon = g->slots[start].coupon_id;
	char numkeys[16], ttl[32];
	int argc = 0, klen;

	push_arg(g, &argc, "EVALSHA", 7);
	push_arg(g, &argc, g->reserve_sha, SHA_LEN);
	push_arg(g, &argc, numkeys, (size_t)snprintf(numkeys, sizeof(numkeys), "%d", len + 2));
	if ((klen = keys_stock(prefix, coupon, g->keys[0], KEYS_MAX)) < 0)
		goto too_long;
	push_arg(g, &argc, g->keys[0], (size_t)klen);
	if ((klen = keys_inflight(prefix, coupon, g->keys[1], KEYS_MAX)) < 0)
		goto too_long;
	push_arg(g, &argc, g->keys[1], (size_t)klen);
	for (int k = 0; k < len; k++) {
		const issue_event_t *ev = &items[g->slots[start + k].index].status.event;

		if ((klen = keys_reservation(prefix, coupon, ev->request_id, g->keys[k + 2], KEYS_MAX)) < 0)
			goto too_long;
		push_arg(g, &argc, g->keys[k + 2], (size_t)klen);
	}
	push_arg(g, &argc, ttl, (size_t)snprintf(ttl, sizeof(ttl), "%lld", g->ttl_s));
	for (int k = 0; k < len; k++) {
		const char *rid = items[g->slots[start + k].index].status.event.request_id;

		push_arg(g, &argc, rid, strlen(rid));
	}
	/* hiredis copies the arguments into its output buffer here, so the scratch can be reused. */
	return redisAppendCommandArgv(g->rc, argc, g->argv, g->argvlen) == REDIS_OK ? 0 : -1;
too_long:
	log_error("redis key for coupon %lld does not fit", (long long)coupon);
	return -1;
}

/*
 * Takes one reserve call's reply: an array with one code per request of the
 * chunk. 0, or -1 with 1 in *noscript when the script must be loaded again
 * (then nothing of the call ran), or -1 on other errors. A script that failed
 * midway may have recorded its first requests; asked again, they get
 * "reserved earlier" or "sold out", as after a reply lost with the connection.
 */
static int chunk_result(const gate_t *g, const redisReply *reply, item_t *items, const slot_t *slots, int len,
                        int *noscript, int *fresh)
{
	int rc = 0;

	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		*noscript = 1;
		return -1;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)len) {
		log_error("redis reserve script: %s",
		          reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		return -1;
	}
	for (int k = 0; k < len; k++) {
		const redisReply *code = reply->element[k];

		if (code->type == REDIS_REPLY_INTEGER) {
			items[slots[k].index].gate = outcome_of(g, &items[slots[k].index], code->integer);
			*fresh += items[slots[k].index].gate == GATE_RESERVED;
		} else {
			log_error("redis reserve script: unexpected reply element");
			rc = -1;
		}
	}
	return rc;
}

/* Sends one reserve call per coupon (and chunk), then reads the answers in the same order. */
static int reserve_round(gate_t *g, item_t *items, int n, int *noscript, int *fresh)
{
	int m = group_pending(g, items, n), sent = 0, rc = 0, len;

	if (m < 0)
		return -1;
	for (int start = 0; start < m && rc == 0; start += len) {
		len = chunk_len(g, m, start);
		if ((rc = append_chunk(g, items, start, len)) == 0)
			sent++;
	}
	for (int start = 0; sent > 0; start += len, sent--) {
		redisReply *reply;

		len = chunk_len(g, m, start);
		if ((reply = read_reply(g)) == NULL)
			return -1;
		if (chunk_result(g, reply, items, g->slots + start, len, noscript, fresh) != 0 && !*noscript)
			rc = -1;
		freeReplyObject(reply);
	}
	return rc;
}

int gate_reserve(gate_t *g, item_t *items, int n)
{
	int fresh = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		int noscript = 0;

		if (reserve_round(g, items, n, &noscript, &fresh) != 0)
			return -1;
		if (!noscript)
			break;
		if (load_scripts(g) != 0)
			return -1;
	}
	for (int i = 0; i < n; i++) {
		if (asks_gate(&items[i]))
			return -1;
	}
	return fresh;
}

/* Releases are read back in the order they were sent: each item's flag is cleared only after its reply. */
static int release_round(gate_t *g, item_t *items, int n, int *noscript, int *released)
{
	int sent = 0, rc = 0;

	for (int i = 0; i < n && rc == 0; i++) {
		if (items[i].release && (rc = append_script(g, g->release_sha, &items[i].status.event)) == 0)
			sent++;
	}
	for (int i = 0; i < n && sent > 0; i++) {
		redisReply *reply;
		long long value;

		if (!items[i].release)
			continue;
		sent--;
		if ((reply = read_reply(g)) == NULL)
			return -1;
		if (script_result(reply, &value, noscript) == 0) {
			items[i].release = 0;
			(*released)++;
		} else if (!*noscript) {
			rc = -1;
		}
		freeReplyObject(reply);
	}
	return rc;
}

int gate_release(gate_t *g, item_t *items, int n, int *released)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		int noscript = 0;

		if (release_round(g, items, n, &noscript, released) != 0)
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
