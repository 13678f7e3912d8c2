/* SPDX-License-Identifier: BSD-2-Clause */
/* status_write.c: a batch's request statuses into Redis, a few script calls per batch. */
#include "consumer/results.h"

#include "core/clock.h"
#include "core/keys.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Statuses per script call. One call per status (or HSET + EXPIRE + PUBLISH
 * each) cost Redis a command parse and a reply per write and the consumer a
 * reply read per write: 15-25 us per decision. A call blocks Redis while it
 * runs (~1 ms for 128), like the gate's chunks.
 */
#define STATUS_CHUNK 128
/* Per status: its hash key, then status, reason, couponId, userId, acceptedAt, decidedAt and the JSON. */
#define STATUS_ARGS 7

/*
 * KEYS: the status hashes. ARGV: the TTL, the results channel, then
 * STATUS_ARGS values per key. Sent with EVAL: Redis caches the compiled
 * script by its digest, so there is no script to load or NOSCRIPT to handle
 * after a Redis restart. A failing redis.call() ends the call with an
 * error: the batch is written again, as after any failed write.
 */
static const char script[] =
    "local ttl, ch = ARGV[1], ARGV[2]\n"
    "for i = 1, #KEYS do\n"
    "  local a = 2 + (i - 1) * 7\n"
    "  redis.call('HSET', KEYS[i], 'status', ARGV[a + 1], 'reason', ARGV[a + 2], 'couponId', ARGV[a + 3],\n"
    "             'userId', ARGV[a + 4], 'acceptedAt', ARGV[a + 5], 'decidedAt', ARGV[a + 6])\n"
    "  redis.call('EXPIRE', KEYS[i], ttl)\n"
    "  redis.call('PUBLISH', ch, ARGV[a + 7])\n"
    "end\n"
    "return #KEYS\n";

/* The text of one status's arguments, kept until the call is queued. */
typedef struct {
	char key[KEYS_MAX];
	char coupon[24], user[24], accepted[32], decided[32];
} status_text_t;

/* One call under construction. */
typedef struct {
	char channel[KEYS_MAX], numkeys[16], ttl[24];
	status_text_t text[STATUS_CHUNK];
	const char *argv[5 + STATUS_CHUNK * (STATUS_ARGS + 1)];
	size_t argvlen[5 + STATUS_CHUNK * (STATUS_ARGS + 1)];
	int argc;
} call_t;

static void push(call_t *c, const char *arg, size_t len)
{
	c->argv[c->argc] = arg;
	c->argvlen[c->argc] = len;
	c->argc++;
}

static void push_str(call_t *c, const char *arg)
{
	push(c, arg, strlen(arg));
}

/*
 * A decision never changes once made, so its JSON is encoded once and kept
 * with the item (a retried batch reuses it) for the PUBLISH and the results
 * topic alike.
 */
static int encode_status(item_t *it)
{
	if (it->json == NULL && (it->json = status_to_json(&it->status)) == NULL) {
		log_error("out of memory");
		return -1;
	}
	return 0;
}

static int unwritten(const item_t *it)
{
	return it->decided && !it->written;
}

/* Fills the text of items[idx[0..len)) and queues their call; 0, or -1 (nothing queued). */
static int append_call(redisContext *rc, const config_t *cfg, call_t *c, item_t *items, const int *idx,
                       int len)
{
	c->argc = 0;
	push(c, "EVAL", 4);
	push(c, script, sizeof(script) - 1);
	push(c, c->numkeys, (size_t)snprintf(c->numkeys, sizeof(c->numkeys), "%d", len));
	for (int k = 0; k < len; k++) {
		int klen = keys_status(cfg->redis_key_prefix, items[idx[k]].status.event.request_id,
		                       c->text[k].key, sizeof(c->text[k].key));

		if (klen < 0)
			return -1;
		push(c, c->text[k].key, (size_t)klen);
	}
	push_str(c, c->ttl);
	push_str(c, c->channel);
	for (int k = 0; k < len; k++) {
		const request_status_t *st = &items[idx[k]].status;
		const char *reason = status_reason_name(st->reason);
		status_text_t *t = &c->text[k];

		clock_format_iso(st->event.accepted_ms, t->accepted, sizeof(t->accepted));
		clock_format_iso(st->decided_ms, t->decided, sizeof(t->decided));
		push_str(c, status_state_name(st->state));
		push_str(c, reason != NULL ? reason : "");
		push(c, t->coupon,
		     (size_t)snprintf(t->coupon, sizeof(t->coupon), "%lld", (long long)st->event.coupon_id));
		push(c, t->user,
		     (size_t)snprintf(t->user, sizeof(t->user), "%lld", (long long)st->event.user_id));
		push_str(c, t->accepted);
		push_str(c, t->decided);
		push_str(c, items[idx[k]].json);
	}
	return redisAppendCommandArgv(rc, c->argc, c->argv, c->argvlen) == REDIS_OK ? 0 : -1;
}

/* Queues one call per STATUS_CHUNK unwritten statuses; the number queued, or -1 (see below). */
static int append_calls(redisContext *rc, const config_t *cfg, call_t *c, item_t *items, int n)
{
	int idx[STATUS_CHUNK], len = 0, calls = 0;

	for (int i = 0; i <= n; i++) {
		if (i < n && !unwritten(&items[i]))
			continue;
		if (i < n)
			idx[len++] = i;
		if (len == 0 || (len < STATUS_CHUNK && i < n))
			continue;
		if (append_call(rc, cfg, c, items, idx, len) != 0)
			return -1;
		calls++;
		len = 0;
	}
	return calls;
}

/* Reads the replies of `calls` queued calls; 0, -1 after a script error, -2 after an I/O error. */
static int read_replies(redisContext *rc, int calls)
{
	int rc_all = 0;

	for (int i = 0; i < calls; i++) {
		void *reply = NULL;

		if (redisGetReply(rc, &reply) != REDIS_OK) {
			log_warn("redis: %s", rc->errstr);
			return -2;
		}
		if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
			log_error("redis status write: %s", ((redisReply *)reply)->str);
			rc_all = -1;
		}
		freeReplyObject(reply);
	}
	return rc_all;
}

int results_write_redis(redisContext *rc, const config_t *cfg, item_t *items, int n)
{
	long long ttl_s = cfg->issue_result_ttl / 1000 > 0 ? cfg->issue_result_ttl / 1000 : 1;
	call_t *c;
	int calls, rc_all;

	for (int i = 0; i < n; i++) {
		if (unwritten(&items[i]) && encode_status(&items[i]) != 0)
			return -1;
	}
	if ((c = malloc(sizeof(*c))) == NULL) {
		log_error("out of memory");
		return -1;
	}
	snprintf(c->ttl, sizeof(c->ttl), "%lld", ttl_s);
	if (keys_results_channel(cfg->redis_key_prefix, c->channel, sizeof(c->channel)) < 0 ||
	    (calls = append_calls(rc, cfg, c, items, n)) < 0) {
		free(c);
		/* Calls already queued would leave the pipeline out of step with its replies. */
		log_error("cannot queue a status write");
		rc->err = REDIS_ERR_OTHER;
		snprintf(rc->errstr, sizeof(rc->errstr), "pipeline abandoned");
		return -1;
	}
	free(c);
	rc_all = read_replies(rc, calls);
	for (int i = 0; i < n && rc_all == 0; i++)
		items[i].written |= items[i].decided;
	return rc_all == 0 ? 0 : -1;
}
