/* SPDX-License-Identifier: BSD-2-Clause */
/* status_write.c: a batch's request statuses into Redis, one pipeline per batch. */
#include "consumer/results.h"

#include "core/clock.h"
#include "core/keys.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

/* HSET key + 6 fields and their values: the longest command of a status. */
#define STATUS_ARGV 14

/*
 * The commands of one status, built as argument vectors. hiredis' format
 * strings (redisAppendCommand) parsed a format and copied every argument
 * for each of the three commands: that, not Redis, was most of the 14-25 ms
 * a batch of 1024 spent here. One Lua call per 128 statuses was no faster
 * than this, and its keys (one hash tag per request) would span Redis
 * Cluster slots; these commands each touch one key.
 */
typedef struct {
	char key[KEYS_MAX], channel[KEYS_MAX], ttl[24];
	char coupon[24], user[24], accepted[32], decided[32];
	const char *argv[STATUS_ARGV];
	size_t argvlen[STATUS_ARGV];
	int argc;
} status_cmd_t;

static void push(status_cmd_t *c, const char *arg, size_t len)
{
	c->argv[c->argc] = arg;
	c->argvlen[c->argc] = len;
	c->argc++;
}

static void push_str(status_cmd_t *c, const char *arg)
{
	push(c, arg, strlen(arg));
}

static int send_cmd(redisContext *rc, status_cmd_t *c)
{
	int ok = redisAppendCommandArgv(rc, c->argc, c->argv, c->argvlen) == REDIS_OK;

	c->argc = 0;
	return ok ? 0 : -1;
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

/* Queues HSET, EXPIRE and PUBLISH for one status; 0, or -1 (part of them may be queued). */
static int append_status(redisContext *rc, const config_t *cfg, status_cmd_t *c, const item_t *it)
{
	const request_status_t *st = &it->status;
	const char *reason = status_reason_name(st->reason);
	int klen = keys_status(cfg->redis_key_prefix, st->event.request_id, c->key, sizeof(c->key));

	if (klen < 0)
		return -1;
	clock_format_iso(st->event.accepted_ms, c->accepted, sizeof(c->accepted));
	clock_format_iso(st->decided_ms, c->decided, sizeof(c->decided));
	push(c, "HSET", 4);
	push(c, c->key, (size_t)klen);
	push(c, "status", 6);
	push_str(c, status_state_name(st->state));
	push(c, "reason", 6);
	push_str(c, reason != NULL ? reason : "");
	push(c, "couponId", 8);
	push(c, c->coupon,
	     (size_t)snprintf(c->coupon, sizeof(c->coupon), "%lld", (long long)st->event.coupon_id));
	push(c, "userId", 6);
	push(c, c->user, (size_t)snprintf(c->user, sizeof(c->user), "%lld", (long long)st->event.user_id));
	push(c, "acceptedAt", 10);
	push_str(c, c->accepted);
	push(c, "decidedAt", 9);
	push_str(c, c->decided);
	if (send_cmd(rc, c) != 0)
		return -1;
	push(c, "EXPIRE", 6);
	push(c, c->key, (size_t)klen);
	push_str(c, c->ttl);
	if (send_cmd(rc, c) != 0)
		return -1;
	push(c, "PUBLISH", 7);
	push_str(c, c->channel);
	push_str(c, it->json);
	return send_cmd(rc, c);
}

/* Reads `queued` replies; 0, -1 after an error reply, -2 after an I/O error. */
static int read_replies(redisContext *rc, int queued)
{
	int rc_all = 0;

	for (int i = 0; i < queued; i++) {
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
	status_cmd_t c = {.argc = 0};
	int queued = 0, rc_all;

	snprintf(c.ttl, sizeof(c.ttl), "%lld", ttl_s);
	if (keys_results_channel(cfg->redis_key_prefix, c.channel, sizeof(c.channel)) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (unwritten(&items[i]) && encode_status(&items[i]) != 0)
			return -1;
	}
	for (int i = 0; i < n; i++) {
		if (!unwritten(&items[i]))
			continue;
		if (append_status(rc, cfg, &c, &items[i]) != 0) {
			/* With part of a status queued, the pipeline can no longer be read in step. */
			log_error("cannot queue a status write");
			rc->err = REDIS_ERR_OTHER;
			snprintf(rc->errstr, sizeof(rc->errstr), "pipeline abandoned");
			return -1;
		}
		queued += 3;
	}
	rc_all = read_replies(rc, queued);
	for (int i = 0; i < n && rc_all == 0; i++)
		items[i].written |= items[i].decided;
	return rc_all == 0 ? 0 : -1;
}
