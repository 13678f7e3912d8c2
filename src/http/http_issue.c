/* SPDX-License-Identifier: BSD-2-Clause */
/* http_issue.c: POST /api/coupons/{id}/issue: gates at the edge, then a 202 only once Kafka has the event. */
#include "http/http_api.h"

#include "core/admission.h"
#include "core/clock.h"
#include "core/fault.h"
#include "core/json_escape.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/text.h"
#include "http/redis_batch.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * How long an accepted request counts as in flight once Kafka has it: the
 * gate normally takes it out within a batch. Past this (a consumer stuck
 * that long) it stops counting and the edge errs towards accepting, as it
 * would without the count; issue.max_pending still bounds the backlog.
 */
#define INFLIGHT_AFTER_DELIVERY_MS 30000

/*
 * The per-(coupon, user) claims and the stock check of one event-loop turn's
 * requests for one coupon, in one script call (redis_batch.c): the keys of a
 * coupon share a hash tag, so one Redis Cluster slot.
 * KEYS: the coupon's Redis stock, its in-flight set, then one claim per
 * request. ARGV: the claim's first lifetime (ms), PostgreSQL's remaining as
 * cached (for a stock key the gate has not loaded yet), the in-flight set's
 * lifetime (ms), the stock from which on requests are counted, then one
 * requestId per claim.
 * The stock counts what the gate reserved; the in-flight set holds the
 * requests accepted here that the gate has not seen yet (it removes them as
 * it reserves, gate.c). Only while the stock exceeds them can one more
 * accepted request get a unit, so a burst gets about as many 202s as there
 * is stock. An entry stops counting at its score (Redis time, ms): a worker
 * that died before its produce leaves nothing behind for long.
 * Counting costs Redis about four times the bare claim, so a coupon is
 * counted only once its stock is down to ARGV[4], twice issue.max_pending:
 * the requests accepted before, at most that limit in flight, are gated by
 * the time the stock comes near them.
 * The claims are taken in the order the requests arrived, each as if alone:
 * a request counted raises the in-flight count the next one sees.
 * The claim is taken for a short time first and only made to last
 * (issue.result_ttl) once Kafka confirmed the event: a worker that dies
 * between the claim and the produce must not lock the user out.
 * Answers, per request: 0 when it took the claim, -1 when it took it and is
 * counted, the requestId holding the claim, or 1 when no unit is left for it.
 */
static redis_script_t claim_script = {"local out = {}\n"
                                      "local stock = tonumber(redis.call('GET', KEYS[1]) or ARGV[2])\n"
                                      "local counting = stock and stock <= tonumber(ARGV[4])\n"
                                      "local now, held, added\n"
                                      "if counting then\n"
                                      "  local t = redis.call('TIME')\n"
                                      "  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
                                      "  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n"
                                      "  held = redis.call('ZCARD', KEYS[2])\n"
                                      "end\n"
                                      "for i = 3, #KEYS do\n"
                                      "  local id = ARGV[i + 2]\n"
                                      "  local prev = redis.call('GET', KEYS[i])\n"
                                      "  if prev then\n"
                                      "    out[i - 2] = prev\n"
                                      "  elseif not counting then\n"
                                      "    redis.call('SET', KEYS[i], id, 'PX', ARGV[1])\n"
                                      "    out[i - 2] = 0\n"
                                      "  elseif stock <= held then\n"
                                      "    out[i - 2] = 1\n"
                                      "  else\n"
                                      "    redis.call('SET', KEYS[i], id, 'PX', ARGV[1])\n"
                                      "    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), id)\n"
                                      "    held = held + 1\n"
                                      "    added = true\n"
                                      "    out[i - 2] = -1\n"
                                      "  end\n"
                                      "end\n"
                                      "if added then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end\n"
                                      "return out\n",
                                      ""};

/*
 * Makes the claims of one turn's delivered requests of one coupon last
 * (ARGV[1] ms), each only if it is still that request's. KEYS: the
 * in-flight set, then one claim per request. ARGV: the claim's lifetime, how
 * long a delivered request stays in the in-flight set (if the gate has not
 * taken it out already), the set's lifetime, then per request its requestId
 * and "1" when the claim script counted it, else "0". Answers per request
 * what PEXPIRE did, 0 when the claim is no longer the request's.
 */
static redis_script_t settle_batch_script = {
    "local out, until_ms, touched = {}\n"
    "for i = 2, #KEYS do\n"
    "  local id = ARGV[2 * i]\n"
    "  if ARGV[2 * i + 1] == '1' then\n"
    "    if not until_ms then\n"
    "      local t = redis.call('TIME')\n"
    "      until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])\n"
    "    end\n"
    "    if redis.call('ZADD', KEYS[1], 'XX', 'CH', until_ms, id) == 1 then touched = true end\n"
    "  end\n"
    "  if redis.call('GET', KEYS[i]) ~= id then\n"
    "    out[i - 1] = 0\n"
    "  else\n"
    "    out[i - 1] = redis.call('PEXPIRE', KEYS[i], ARGV[1])\n"
    "  end\n"
    "end\n"
    "if touched then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end\n"
    "return out\n",
    ""};

/*
 * Drops the claim (ARGV[2] == "0"), only if it is still this request's: a
 * request that got no 202 (rare; one call each). It can also make it last. KEYS: the claim, the in-flight
 * set. A dropped request leaves the set; a delivered one stays in it (if the gate has not taken it out
 * already) for ARGV[3] ms more, and the set lives ARGV[4] ms. ARGV[5] is "1" for a request the claim script
 * counted, else "0".
 */
static redis_script_t settle_script = {
    "if ARGV[5] == '1' and ARGV[2] == '0' then\n"
    "  redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "elseif ARGV[5] == '1' then\n"
    "  local t = redis.call('TIME')\n"
    "  local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])\n"
    "  if redis.call('ZADD', KEYS[2], 'XX', 'CH', until_ms, ARGV[1]) == 1 then\n"
    "    redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
    "  end\n"
    "end\n"
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end\n"
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n",
    ""};

/* PENDING unless a consumer already wrote the outcome (it can be that fast). */
static redis_script_t pending_script = {
    "if redis.call('HSETNX', KEYS[1], 'status', 'PENDING') == 1 then\n"
    "  redis.call('HSET', KEYS[1], 'couponId', ARGV[1], 'userId', ARGV[2], 'acceptedAt', ARGV[3],\n"
    "             'reason', '', 'decidedAt', '')\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "end\n"
    "return 1\n",
    ""};

typedef struct {
	http_ctx_t *ctx;
	struct evhttp_request *req;
	issue_event_t ev;
	char user_key[KEYS_MAX];
	char inflight_key[KEYS_MAX];
	int remaining;     /* PostgreSQL's, as the coupon cache has it */
	int partition;     /* where the producer's partitioner will put the event (admission.c) */
	int claimed;       /* this request holds the per-user claim in Redis */
	int counted;       /* and is in the coupon's in-flight set */
	int confirmations; /* what the 202 still waits for: the delivery report, the PENDING write */
	int answered;      /* the request already has its answer (a failed produce): only free it */
} issue_t;

static void issue_free(issue_t *is)
{
	free(is);
}

static void reply_accepted(issue_t *is)
{
	char url[64], body[256];
	text_t t;
	int n;

	text_init(&t, url, sizeof(url));
	text_str(&t, "/api/requests/");
	text_str(&t, is->ev.request_id);
	evhttp_add_header(evhttp_request_get_output_headers(is->req), "Location", url);
	/* Every member is ours: a UUID we generated, two ids, a constant and the URL built from them. */
	text_init(&t, body, sizeof(body));
	text_str(&t, "{\"requestId\":\"");
	text_str(&t, is->ev.request_id);
	text_str(&t, "\",\"status\":\"PENDING\",\"couponId\":");
	text_i64(&t, is->ev.coupon_id);
	text_str(&t, ",\"userId\":");
	text_i64(&t, is->ev.user_id);
	text_str(&t, ",\"statusUrl\":\"");
	text_str(&t, url);
	text_str(&t, "\"}");
	n = text_end(&t);
	http_reply_body(is->ctx, is->req, 202, n < 0 ? NULL : body, n < 0 ? 0 : (size_t)n);
	issue_free(is);
}

static void on_confirmed(redisReply *reply, void *arg)
{
	issue_t *is = arg;

	if (--is->confirmations > 0)
		return;
	if (is->answered)
		issue_free(is);
	else
		reply_accepted(is);
}

static void ignore_reply(redisReply *reply, void *arg)
{
}

/* The first lifetime of a claim and of its in-flight entry: until the produce has surely ended. */
static long long claim_ms(const config_t *cfg)
{
	return (long long)cfg->kafka_produce_timeout + 5000;
}

/* The in-flight set outlives each of its entries. */
static long long inflight_keep_ms(const config_t *cfg)
{
	return claim_ms(cfg) > INFLIGHT_AFTER_DELIVERY_MS ? claim_ms(cfg) : INFLIGHT_AFTER_DELIVERY_MS;
}

/* Drops the claim and the in-flight entry: the request got no 202, the user may try again. */
static void drop_claim(issue_t *is)
{
	const char *argv[] = {is->user_key,
	                      is->inflight_key,
	                      is->ev.request_id,
	                      "0",
	                      "0",
	                      is->ctx->issue_args.keep_ms,
	                      is->counted ? "1" : "0"};

	if (!is->claimed)
		return;
	redis_async_eval(is->ctx->redis, &settle_script, ignore_reply, NULL, 2, 7, argv);
}

/*
 * Makes the claim last (issue.result_ttl), in this turn's call for the
 * coupon. The 202 does not wait for it: until it lands, the claim still holds
 * for its first lifetime (claim_ms), so a retry meets it either way, and
 * anything later on this connection is ordered behind it. Only a worker that
 * dies in the instant between the two would leave the claim to expire early;
 * the user could then ask again, and the consumer's one-per-user constraint
 * in PostgreSQL rejects the second request (ALREADY_ISSUED).
 */
static void keep_claim(issue_t *is)
{
	const issue_args_t *a = &is->ctx->issue_args;
	const char *fixed[] = {is->inflight_key, a->result_ttl_ms, a->after_ms, a->keep_ms};
	const char *item[] = {is->user_key, is->ev.request_id, is->counted ? "1" : "0"};

	if (a->settle_drop_user >= 0 && a->settle_drop_user == is->ev.user_id)
		return; /* a test's worker that died in that instant (fault http_settle_drop) */
	if (redis_batch_add(is->ctx->settles, is->ev.coupon_id, fixed, item, ignore_reply, NULL) != 0)
		log_warn("redis: cannot make the claim of user %lld last; it expires after %lld ms",
		         (long long)is->ev.user_id, claim_ms(is->ctx->cfg));
}

static int write_pending(issue_t *is)
{
	char key[KEYS_MAX], coupon[21], user[21], at[32];
	const char *argv[] = {key, coupon, user, at, is->ctx->issue_args.status_ttl_s};
	const config_t *cfg = is->ctx->cfg;

	if (keys_status(cfg->redis_key_prefix, is->ev.request_id, key, sizeof(key)) < 0)
		return -1; /* like a Redis that took nothing: the consumer still writes the outcome */
	text_format_i64(is->ev.coupon_id, coupon);
	text_format_i64(is->ev.user_id, user);
	clock_format_iso(is->ev.accepted_ms, at, sizeof(at));
	return redis_async_eval(is->ctx->redis, &pending_script, on_confirmed, is, 1, 5, argv);
}

/* Admission control predicted one partition, Kafka chose another: its limit is checked in the wrong place. */
static void check_prediction(issue_t *is, int partition)
{
	static int warned;

	if (partition == is->partition || warned)
		return;
	warned = 1;
	log_warn(
	    "coupon %lld: admission control expected partition %d, Kafka used %d; is kafka.partitions the "
	    "topic's partition count, and is the partitioner murmur2_random?",
	    (long long)is->ev.coupon_id, is->partition, partition);
}

/*
 * The event is durably in Kafka: make the claim last (not awaited, see
 * keep_claim) and answer 202 once the PENDING write, sent beside the produce,
 * has landed too. These stay two scripts on purpose: the status hash is
 * tagged by requestId (req:{<uuid>}) and the claim by coupon
 * ({<c>}:user:<u>), so they sit in different Redis Cluster slots (SPEC 3
 * keeps the keys cluster-ready) and one script touching both would fail with
 * CROSSSLOT there. The claims of one turn's delivery reports (librdkafka
 * hands them over together) go out as one call per coupon at the end of the
 * turn.
 */
static void on_delivered(produce_result_t result, int partition, int64_t offset, void *arg)
{
	issue_t *is = arg;

	if (result != PRODUCE_OK) {
		drop_claim(is); /* let the user try again */
		http_set_retry_after(is->req, 1);
		http_reply_error(is->ctx, is->req, 503, "UNAVAILABLE",
		                 "the request could not be queued durably in time; try again");
		is->answered = 1;
		on_confirmed(NULL, is); /* frees it once the PENDING write has answered too */
		return;
	}
	admission_delivered(is->ctx->shm, partition, offset);
	check_prediction(is, partition);
	if (is->claimed)
		keep_claim(is);
	on_confirmed(NULL, is); /* the delivery report's part; answers now if PENDING has landed */
}

static void produce(issue_t *is)
{
	char value[256], key[21], why[256];
	int len = issue_event_encode(&is->ev, value, sizeof(value));
	produce_result_t r;

	/* A 202 for an event that lands in a partition no consumer reads would be a promise never kept. */
	if (producer_topic_problem(is->ctx->producer, why, sizeof(why)) != NULL) {
		drop_claim(is);
		http_set_retry_after(is->req, 1);
		http_reply_error(is->ctx, is->req, 503, "UNAVAILABLE", "%s", why);
		issue_free(is);
		return;
	}

	text_format_i64(is->ev.coupon_id, key);
	r = len < 0 ? PRODUCE_FAILED
	            : producer_send(is->ctx->producer, is->ctx->cfg->kafka_topic, key, value, (size_t)len,
	                            on_delivered, is);
	if (r == PRODUCE_OK) {
		/*
		 * PENDING goes to Redis while Kafka takes the event, rather than after
		 * its delivery report: the 202 then waits for the slower of the two,
		 * not for both in turn. Nobody knows this requestId before the 202, so
		 * a PENDING whose produce fails is never read; it expires
		 * (issue.result_ttl) unless the event did reach Kafka after all (a
		 * timeout can hide a success), and then the consumer's outcome
		 * replaces it. If Redis takes nothing, the 202 still goes.
		 */
		is->confirmations = 1;
		if (write_pending(is) == 0)
			is->confirmations++;
		return;
	}
	drop_claim(is);
	http_set_retry_after(is->req, 1);
	if (r == PRODUCE_FULL)
		http_reply_error(is->ctx, is->req, 429, "OVERLOADED",
		                 "too many requests are waiting for Kafka");
	else
		http_reply_error(is->ctx, is->req, 503, "UNAVAILABLE", "the request could not be queued");
	issue_free(is);
}

/* Both members come from Redis and are escaped: whatever is stored there must not break the body. */
static int existing_status_json(const char *request_id, const char *status, char *body, size_t size)
{
	char id[JSON_ESCAPE_SIZE(UUID_TEXT_LEN + 1)];
	size_t room = JSON_ESCAPE_SIZE(strlen(status));
	char *state = malloc(room);
	int n = -1;

	if (state != NULL && json_escape(request_id, id, sizeof(id)) >= 0 &&
	    json_escape(status, state, room) >= 0)
		n = snprintf(
		    body, size,
		    "{\"error\":\"ALREADY_REQUESTED\",\"message\":\"this user already has a request for "
		    "this coupon\",\"requestId\":\"%s\",\"status\":\"%s\"}",
		    id, state);
	free(state);
	return n < 0 || (size_t)n >= size ? -1 : n;
}

static void on_existing_status(redisReply *reply, void *arg)
{
	issue_t *is = arg;
	const char *status = reply != NULL && reply->type == REDIS_REPLY_STRING ? reply->str : "PENDING";
	size_t size = JSON_ESCAPE_SIZE(strlen(status)) + 512;
	char *body = malloc(size);
	int n = body != NULL ? existing_status_json(is->ev.request_id, status, body, size) : -1;

	http_reply_body(is->ctx, is->req, 409, n < 0 ? NULL : body, n < 0 ? 0 : (size_t)n);
	free(body);
	issue_free(is);
}

static void already_requested(issue_t *is, const char *request_id)
{
	char key[KEYS_MAX];
	const char *argv[] = {"HGET", key, "status"};

	snprintf(is->ev.request_id, sizeof(is->ev.request_id), "%s", request_id);
	if (keys_status(is->ctx->cfg->redis_key_prefix, request_id, key, sizeof(key)) < 0 ||
	    redis_async_argv(is->ctx->redis, on_existing_status, is, 3, argv, NULL) != 0)
		on_existing_status(NULL, is);
}

/* The answer once a sale is over: the one every later request gets, so written without printf. */
static void sold_out(issue_t *is, int64_t coupon_id)
{
	char message[64];
	text_t t;

	text_init(&t, message, sizeof(message));
	text_str(&t, "coupon ");
	text_i64(&t, coupon_id);
	text_str(&t, " is sold out");
	http_reply_error_message(is->ctx, is->req, 409, "SOLD_OUT", message);
}

/* PostgreSQL's remaining, at most 100 ms old: 0 makes it final. */
static void on_rechecked(const coupon_info_t *c, void *arg)
{
	issue_t *is = arg;

	if (c != NULL && c->exists && coupon_cache_sold_out(c)) {
		sold_out(is, is->ev.coupon_id);
	} else {
		http_set_retry_after(is->req, 1);
		http_reply_error(
		    is->ctx, is->req, 429, "STOCK_HELD",
		    "every unit of coupon %lld left is held by a request not decided yet; a unit "
		    "comes back if such a request is rejected; try again",
		    (long long)is->ev.coupon_id);
	}
	issue_free(is);
}

/*
 * Every unit is held. Not final while PostgreSQL has any left: a held unit
 * comes back when its request is rejected (that user already had one, the
 * sale closed) or was never produced. PostgreSQL's remaining is read again
 * if older than 100 ms (one query per coupon per worker per 100 ms at most,
 * shared by the requests meanwhile), so that the answer is the final 409
 * SOLD_OUT as soon as the last unit is decided.
 */
static void stock_held(issue_t *is)
{
	coupon_cache_recheck(is->ctx->coupons, is->ev.coupon_id);
	coupon_cache_get_meta(is->ctx->coupons, is->ev.coupon_id, on_rechecked, is);
}

static void on_claim(redisReply *reply, void *arg)
{
	issue_t *is = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
		already_requested(is, reply->str);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
		stock_held(is);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
		is->claimed = 1;
		is->counted = reply->integer < 0;
	} else
		log_warn(
		    "redis claim for user %lld: %s; accepting without the edge dedupe (the consumer still "
		    "enforces one per user)",
		    (long long)is->ev.user_id, reply != NULL ? reply->str : "no reply");
	produce(is);
}

/*
 * Redis is a fast gate, not the truth: when it cannot be asked, the request
 * still goes to Kafka, and the consumer's PostgreSQL constraint keeps one
 * coupon per user. Availability wins over the nicer 409 in that case.
 */
static void claim(issue_t *is)
{
	const issue_args_t *a = &is->ctx->issue_args;
	const char *prefix = is->ctx->cfg->redis_key_prefix;
	char stock_key[KEYS_MAX], remaining[21];
	const char *fixed[] = {stock_key, is->inflight_key, a->claim_ms,
	                       remaining, a->keep_ms,       a->count_from};
	const char *item[] = {is->user_key, is->ev.request_id};

	text_format_i64(is->remaining, remaining);
	/* A cut key would be one claim shared by every user: go without the claim instead. */
	if (keys_user(prefix, is->ev.coupon_id, is->ev.user_id, is->user_key, sizeof(is->user_key)) < 0 ||
	    keys_stock(prefix, is->ev.coupon_id, stock_key, sizeof(stock_key)) < 0 ||
	    keys_inflight(prefix, is->ev.coupon_id, is->inflight_key, sizeof(is->inflight_key)) < 0 ||
	    redis_batch_add(is->ctx->claims, is->ev.coupon_id, fixed, item, on_claim, is) != 0)
		on_claim(NULL, is);
}

static int reject_by_coupon(issue_t *is, const coupon_info_t *c)
{
	int64_t now = clock_real_ms();

	if (c == NULL) {
		http_set_retry_after(is->req, 1);
		http_reply_error(is->ctx, is->req, 503, "UNAVAILABLE", "the database cannot be reached");
	} else if (!c->exists) {
		http_reply_error(is->ctx, is->req, 404, "COUPON_NOT_FOUND", "no coupon %lld",
		                 (long long)c->id);
	} else if ((c->starts_ms != 0 && now < c->starts_ms) || (c->ends_ms != 0 && now >= c->ends_ms)) {
		http_reply_error(is->ctx, is->req, 409, "NOT_OPEN", "coupon %lld is not open now",
		                 (long long)c->id);
	} else if (coupon_cache_sold_out(c)) {
		sold_out(is, c->id);
	} else {
		return 0;
	}
	return -1;
}

/*
 * Lag-aware admission: a partition whose consumer is issue.max_pending or
 * more events behind takes no more until it catches up. That bounds how
 * long a 202 waits for its decision and keeps the backlog within what Kafka
 * retains. Checked after the coupon's own answers (404, NOT_OPEN, SOLD_OUT
 * are final, a 429 says "later") and before the claim, so a 429 leaves
 * nothing behind in Redis.
 */
static int overloaded(issue_t *is)
{
	const config_t *cfg = is->ctx->cfg;
	int64_t pending = admission_pending(is->ctx->shm, cfg, is->partition);
	char message[160];
	text_t t;

	if (pending < cfg->issue_max_pending)
		return 0;
	metrics_inc(M_ADMISSION_REJECTS);
	http_set_retry_after(is->req, 1);
	/* A hot coupon's consumer behind: as many of these as 202s, so written without printf. */
	text_init(&t, message, sizeof(message));
	text_i64(&t, pending);
	text_str(&t, " requests of partition ");
	text_i64(&t, is->partition);
	text_str(&t, " wait for a decision (issue.max_pending ");
	text_i64(&t, cfg->issue_max_pending);
	text_str(&t, "); try again");
	http_reply_error_message(is->ctx, is->req, 429, "OVERLOADED", message);
	return 1;
}

static void on_coupon(const coupon_info_t *c, void *arg)
{
	issue_t *is = arg;

	if (reject_by_coupon(is, c) != 0 || overloaded(is)) {
		issue_free(is);
		return;
	}
	if (uuid_generate(is->ev.request_id) != 0) {
		http_reply_error(is->ctx, is->req, 503, "UNAVAILABLE", "no randomness for a request id");
		issue_free(is);
		return;
	}
	is->ev.accepted_ms = clock_real_ms();
	is->remaining = c->remaining;
	claim(is);
}

void http_handle_issue(http_ctx_t *ctx, struct evhttp_request *req, const route_match_t *m)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	char msg[128], *body, *user = NULL;
	size_t len = 0;
	int64_t user_id;
	issue_t *is;
	int rc = http_router_query_param(q, "userId", &user);

	if (rc < 0) {
		http_reply_error(ctx, req, 400, "INVALID_ARGUMENT",
		                 "userId must be given once, as a decimal integer");
		return;
	}
	body = http_body(req, &len);
	rc = http_router_user_id(user, body, len, &user_id, msg, sizeof(msg));
	free(user);
	free(body);
	if (rc != 0) {
		http_reply_error(ctx, req, 400, "INVALID_ARGUMENT", "%s", msg);
		return;
	}
	if ((is = calloc(1, sizeof(*is))) == NULL) {
		http_reply_error(ctx, req, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	is->ctx = ctx;
	is->req = req;
	is->ev.coupon_id = m->coupon_id;
	is->ev.user_id = user_id;
	is->partition = admission_coupon_partition(m->coupon_id, ctx->cfg->kafka_partitions);
	coupon_cache_get_meta(ctx->coupons, m->coupon_id, on_coupon, is);
}

int http_issue_init(http_ctx_t *ctx)
{
	const config_t *cfg = ctx->cfg;
	issue_args_t *a = &ctx->issue_args;

	snprintf(a->claim_ms, sizeof(a->claim_ms), "%lld", claim_ms(cfg));
	snprintf(a->keep_ms, sizeof(a->keep_ms), "%lld", inflight_keep_ms(cfg));
	snprintf(a->count_from, sizeof(a->count_from), "%lld", 2LL * cfg->issue_max_pending);
	snprintf(a->result_ttl_ms, sizeof(a->result_ttl_ms), "%lld", (long long)cfg->issue_result_ttl);
	snprintf(a->after_ms, sizeof(a->after_ms), "%d", INFLIGHT_AFTER_DELIVERY_MS);
	snprintf(a->status_ttl_s, sizeof(a->status_ttl_s), "%lld", (long long)(cfg->issue_result_ttl / 1000));
	a->settle_drop_user = fault_value("http_settle_drop");
	ctx->claims = redis_batch_new(ctx->base, ctx->redis, &claim_script, 2, 4, 1, 1);
	ctx->settles = redis_batch_new(ctx->base, ctx->redis, &settle_batch_script, 1, 3, 1, 2);
	return ctx->claims == NULL || ctx->settles == NULL ? -1 : 0;
}

void http_issue_fini(http_ctx_t *ctx)
{
	redis_batch_free(ctx->claims);
	redis_batch_free(ctx->settles);
	ctx->claims = ctx->settles = NULL;
}
