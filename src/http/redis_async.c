/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_async.c: a non-blocking Redis connection on the worker's event loop, with timeouts and reconnects. */
#include "http/redis_async.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/text.h"

#include "http/redis_loop.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* A script call's keys and arguments at most: a batch (redis_batch.c) is one call of many of them. */
#define EVAL_MAX_ARGS 4096

/* One SUBSCRIBE or UNSUBSCRIBE in flight at a time: see sub_step(). */
typedef enum { SUB_NONE, SUB_SUBSCRIBING, SUB_SUBSCRIBED, SUB_UNSUBSCRIBING } sub_state_t;

struct redis_async {
	struct event_base *base;
	const config_t *cfg;
	char name[32];
	redisAsyncContext *ac;
	int connected;
	int settled; /* a connect attempt has ended, either way (http_worker.c waits for it) */
	int closing;
	int64_t backoff_ms;
	struct event *reconnect_ev;
	struct event *connect_timeout_ev;
	struct event *deadline_ev; /* the oldest command's deadline: see send_cmd() */
	int deadline_armed;
	struct redis_cmd *oldest, *newest; /* commands awaiting a reply, in the order sent */
	char *channel;                     /* subscriber mode */
	int sub_wanted;                    /* redis_async_hear() */
	sub_state_t sub_state;             /* of this connection's subscription */
	redis_message_fn on_message;
	void (*on_subscribed)(void *arg);
	void *message_arg;
};

/* One command in flight. Freed only from hiredis's callback, which runs exactly once per command. */
typedef struct redis_cmd {
	redis_async_t *ra;
	redis_reply_fn fn;
	void *arg;
	int64_t deadline_ms;               /* monotonic */
	struct redis_cmd *older, *younger; /* in ra's list while awaiting its reply */
	int listed;
	int finished;
	redis_script_t *script; /* EVALSHA: kept to resend as EVAL on NOSCRIPT */
	int argc;
	char numkeys[21];
	const char **argv; /* a script's: in the same allocation, followed by copies of its strings */
	size_t *lens;
} redis_cmd_t;

static void start_connect(redis_async_t *ra);

static void schedule_reconnect(redis_async_t *ra)
{
	struct timeval tv = clock_timeval(ra->backoff_ms);

	ra->settled = 1;
	if (ra->closing)
		return;
	if (evtimer_add(ra->reconnect_ev, &tv) != 0)
		log_error("redis %s: cannot schedule the reconnect", ra->name);
	ra->backoff_ms = ra->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ra->backoff_ms * 2;
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
	start_connect(arg);
}

static void unlist(redis_cmd_t *cmd)
{
	redis_async_t *ra = cmd->ra;

	if (!cmd->listed)
		return;
	cmd->listed = 0;
	if (cmd->older != NULL)
		cmd->older->younger = cmd->younger;
	else
		ra->oldest = cmd->younger;
	if (cmd->younger != NULL)
		cmd->younger->older = cmd->older;
	else
		ra->newest = cmd->older;
	cmd->older = cmd->younger = NULL;
}

static void finish(redis_cmd_t *cmd, redisReply *reply)
{
	if (cmd->finished)
		return;
	cmd->finished = 1;
	unlist(cmd);
	cmd->fn(reply, cmd->arg);
}

static int send_cmd(redis_async_t *ra, redis_cmd_t *cmd, int argc, const char **argv, const size_t *lens);
static void cmd_drop(redis_cmd_t *cmd);

/* NOSCRIPT after a Redis restart or SCRIPT FLUSH: the script is sent whole, which also caches it again. */
static int retry_as_eval(redis_cmd_t *cmd)
{
	cmd->argv[0] = "EVAL";
	cmd->argv[1] = cmd->script->body;
	cmd->lens[0] = 4;
	cmd->lens[1] = strlen(cmd->script->body);
	cmd->script = NULL;
	return send_cmd(cmd->ra, cmd, cmd->argc, cmd->argv, cmd->lens);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	redis_cmd_t *cmd = privdata;
	redisReply *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && cmd->script != NULL && !cmd->finished &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && retry_as_eval(cmd) == 0)
		return; /* cmd lives on in the resent command */
	finish(cmd, reply);
	cmd_drop(cmd);
}

static void arm_deadline(redis_async_t *ra, int64_t in_ms)
{
	struct timeval tv = clock_timeval(in_ms > 0 ? in_ms : 0);

	if (evtimer_add(ra->deadline_ev, &tv) != 0)
		log_error("redis %s: cannot arm a command deadline", ra->name);
	else
		ra->deadline_armed = 1;
}

/*
 * One timer per connection rather than one per command: the list is in the
 * order sent, so its oldest command has the nearest deadline. A command that
 * times out fails, and the connection is reset; the others fail with it, or
 * each at its own deadline while hiredis waits for their replies.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	redis_async_t *ra = arg;
	redis_cmd_t *cmd = ra->oldest;
	int64_t now = clock_mono_ms();

	ra->deadline_armed = 0;
	if (cmd == NULL)
		return;
	if (cmd->deadline_ms > now) {
		arm_deadline(ra, cmd->deadline_ms - now);
		return;
	}
	metrics_inc(M_REDIS_ERRORS);
	log_warn("redis %s: no reply within %lld ms; resetting the connection", ra->name,
	         (long long)ra->cfg->redis_timeout);
	finish(cmd, NULL);
	if (ra->ac != NULL && ra->connected)
		redisAsyncDisconnect(ra->ac);
	if (ra->oldest != NULL && !ra->deadline_armed)
		arm_deadline(ra, ra->oldest->deadline_ms - clock_mono_ms());
}

/* Decimal digits of v into p, which has room; returns the end. */
static char *put_size(char *p, size_t v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/*
 * The command in Redis's protocol, in one allocation. hiredis's own
 * formatting (redisFormatSdsCommandArgv) grows an sds with sdscatfmt per
 * argument: a batch call of hundreds of arguments spent most of its time
 * there.
 */
static char *format_resp(int argc, const char **argv, const size_t *lens, size_t *len)
{
	size_t size = 16;
	char *buf, *p;

	for (int i = 0; i < argc; i++)
		size += lens[i] + 24;
	if ((p = buf = malloc(size)) == NULL)
		return NULL;
	*p++ = '*';
	p = put_size(p, (size_t)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (int i = 0; i < argc; i++) {
		*p++ = '$';
		p = put_size(p, lens[i]);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], lens[i]);
		p += lens[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	*len = (size_t)(p - buf);
	return buf;
}

/* lens is required: every caller knows its lengths (redis_async_argv() measures them). */
static int send_cmd(redis_async_t *ra, redis_cmd_t *cmd, int argc, const char **argv, const size_t *lens)
{
	size_t len;
	char *resp = format_resp(argc, argv, lens, &len);
	int rc = resp != NULL ? redisAsyncFormattedCommand(ra->ac, on_reply, cmd, resp, len) : REDIS_ERR;

	free(resp);
	if (rc != REDIS_OK)
		return -1;
	unlist(cmd); /* a NOSCRIPT retry is sent again: it goes to the end, with a new deadline */
	cmd->deadline_ms = clock_mono_ms() + ra->cfg->redis_timeout;
	cmd->older = ra->newest;
	if (ra->newest != NULL)
		ra->newest->younger = cmd;
	else
		ra->oldest = cmd;
	ra->newest = cmd;
	cmd->listed = 1;
	if (!ra->deadline_armed)
		arm_deadline(ra, ra->cfg->redis_timeout);
	return 0;
}

/* extra: bytes allocated after the command (a script's argv, lengths and strings). */
static redis_cmd_t *cmd_new(redis_async_t *ra, redis_reply_fn fn, void *arg, size_t extra)
{
	redis_cmd_t *cmd = calloc(1, sizeof(*cmd) + extra);

	if (cmd == NULL)
		return NULL;
	cmd->ra = ra;
	cmd->fn = fn;
	cmd->arg = arg;
	return cmd;
}

static void cmd_drop(redis_cmd_t *cmd)
{
	unlist(cmd);
	free(cmd);
}

int redis_async_argv(redis_async_t *ra, redis_reply_fn fn, void *arg, int argc, const char **argv,
                     const size_t *lens)
{
	size_t lengths[8];
	redis_cmd_t *cmd;

	if (lens == NULL) {
		if (argc > (int)(sizeof(lengths) / sizeof(lengths[0])))
			return -1;
		for (int i = 0; i < argc; i++)
			lengths[i] = strlen(argv[i]);
		lens = lengths;
	}
	if (!ra->connected || ra->channel != NULL || (cmd = cmd_new(ra, fn, arg, 0)) == NULL)
		return -1;
	if (send_cmd(ra, cmd, argc, argv, lens) != 0) {
		cmd_drop(cmd);
		return -1;
	}
	return 0;
}

static void on_script_loaded(redisReply *reply, void *arg)
{
	redis_script_t *script = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40)
		memcpy(script->sha, reply->str, 41);
}

/*
 * A script's keys and arguments are copied (a NOSCRIPT retry may need them
 * after the caller moved on), into the command's own allocation: one malloc
 * per call however many there are, since a batch has hundreds.
 */
static redis_cmd_t *eval_cmd_new(redis_async_t *ra, redis_reply_fn fn, void *arg, int argc, const char **argv)
{
	size_t bytes = 0;
	redis_cmd_t *cmd;
	char *p;

	for (int i = 0; i < argc; i++)
		bytes += strlen(argv[i]) + 1;
	cmd = cmd_new(ra, fn, arg, (size_t)(argc + 3) * (sizeof(char *) + sizeof(size_t)) + bytes);
	if (cmd == NULL)
		return NULL;
	cmd->argv = (const char **)(cmd + 1);
	cmd->lens = (size_t *)(cmd->argv + argc + 3);
	p = (char *)(cmd->lens + argc + 3);
	for (int i = 0; i < argc; i++) {
		size_t len = strlen(argv[i]);

		memcpy(p, argv[i], len + 1);
		cmd->argv[3 + i] = p;
		cmd->lens[3 + i] = len;
		p += len + 1;
	}
	cmd->argc = argc + 3;
	return cmd;
}

int redis_async_eval(redis_async_t *ra, redis_script_t *script, redis_reply_fn fn, void *arg, int nkeys,
                     int argc, const char **argv)
{
	redis_cmd_t *cmd;

	if (argc > EVAL_MAX_ARGS || !ra->connected || ra->channel != NULL ||
	    (cmd = eval_cmd_new(ra, fn, arg, argc, argv)) == NULL)
		return -1;
	text_format_i64(nkeys, cmd->numkeys);
	cmd->argv[0] = script->sha[0] != '\0' ? "EVALSHA" : "EVAL";
	cmd->argv[1] = script->sha[0] != '\0' ? script->sha : script->body;
	cmd->argv[2] = cmd->numkeys;
	for (int i = 0; i < 3; i++)
		cmd->lens[i] = strlen(cmd->argv[i]);
	cmd->script = script->sha[0] != '\0' ? script : NULL;
	if (send_cmd(ra, cmd, cmd->argc, cmd->argv, cmd->lens) != 0) {
		cmd_drop(cmd);
		return -1;
	}
	if (script->sha[0] == '\0') {
		const char *load[] = {"SCRIPT", "LOAD", script->body};

		redis_async_argv(ra, on_script_loaded, script, 3, load, NULL);
	}
	return 0;
}

/* ---- connection management ---- */

static void on_sub_message(redisAsyncContext *ac, void *r, void *privdata);

/*
 * Moves the subscription toward what is wanted, one SUBSCRIBE or
 * UNSUBSCRIBE in flight at a time: the next waits for the last one's reply,
 * which says where the connection stands. (hiredis before 0.14.1 deleted a
 * channel's callback at an "unsubscribe" reply even when a SUBSCRIBE had
 * been sent after it; 0.14.1 counts pending subscribes, but this order does
 * not depend on it.) A command that cannot be queued is tried again at the
 * next change or reconnect.
 */
static void sub_step(redis_async_t *ra)
{
	if (!ra->connected || ra->channel == NULL)
		return;
	if (ra->sub_wanted && ra->sub_state == SUB_NONE) {
		if (redisAsyncCommand(ra->ac, on_sub_message, ra, "SUBSCRIBE %s", ra->channel) == REDIS_OK)
			ra->sub_state = SUB_SUBSCRIBING;
		else
			log_warn("redis %s: cannot send SUBSCRIBE", ra->name);
	} else if (!ra->sub_wanted && ra->sub_state == SUB_SUBSCRIBED) {
		/* hiredis gives UNSUBSCRIBE no callback of its own: the reply comes to on_sub_message. */
		if (redisAsyncCommand(ra->ac, NULL, NULL, "UNSUBSCRIBE %s", ra->channel) == REDIS_OK)
			ra->sub_state = SUB_UNSUBSCRIBING;
		else
			log_warn("redis %s: cannot send UNSUBSCRIBE", ra->name);
	}
}

static void on_sub_message(redisAsyncContext *ac, void *r, void *privdata)
{
	redis_async_t *ra = privdata;
	redisReply *reply = r;
	const char *kind;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
		return;
	if (reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	kind = reply->element[0]->str;
	if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING) {
		ra->on_message(reply->element[2]->str, reply->element[2]->len, ra->message_arg);
	} else if (strcmp(kind, "subscribe") == 0) {
		ra->sub_state = SUB_SUBSCRIBED;
		if (ra->on_subscribed != NULL)
			ra->on_subscribed(ra->message_arg);
		sub_step(ra);
	} else if (strcmp(kind, "unsubscribe") == 0) {
		ra->sub_state = SUB_NONE;
		sub_step(ra);
	}
}

static void send_setup(redis_async_t *ra)
{
	const config_t *cfg = ra->cfg;
	char db[16];

	/* Replies to these are not awaited: a wrong password shows up as errors on every later command. */
	if (cfg->redis_password[0] != '\0')
		redisAsyncCommand(ra->ac, NULL, NULL, "AUTH %s", cfg->redis_password);
	if (cfg->redis_db != 0) {
		snprintf(db, sizeof(db), "%d", cfg->redis_db);
		redisAsyncCommand(ra->ac, NULL, NULL, "SELECT %s", db);
	}
	ra->sub_state = SUB_NONE;
	sub_step(ra);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	redis_async_t *ra = ac->data;

	evtimer_del(ra->connect_timeout_ev);
	if (status != REDIS_OK) {
		log_warn("redis %s: cannot connect to %s:%d: %s", ra->name, ra->cfg->redis_host,
		         ra->cfg->redis_port, ac->errstr);
		ra->ac = NULL; /* hiredis frees a context that failed to connect */
		schedule_reconnect(ra);
		return;
	}
	ra->connected = 1;
	ra->settled = 1;
	ra->backoff_ms = BACKOFF_MIN_MS;
	log_info("redis %s: connected to %s:%d", ra->name, ra->cfg->redis_host, ra->cfg->redis_port);
	send_setup(ra);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	redis_async_t *ra = ac->data;

	ra->ac = NULL;
	ra->connected = 0;
	ra->sub_state = SUB_NONE;
	if (!ra->closing) {
		log_warn("redis %s: disconnected%s%s", ra->name, status != REDIS_OK ? ": " : "",
		         status != REDIS_OK ? ac->errstr : "");
		schedule_reconnect(ra);
	}
}

/* hiredis 0.14 has no connect timeout: a SYN into the void would leave us connecting forever. */
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
	redis_async_t *ra = arg;
	redisAsyncContext *ac = ra->ac;

	if (ac == NULL || ra->connected)
		return;
	log_warn("redis %s: connect to %s:%d timed out", ra->name, ra->cfg->redis_host, ra->cfg->redis_port);
	ra->ac = NULL;
	redisAsyncFree(ac);
	schedule_reconnect(ra);
}

static void start_connect(redis_async_t *ra)
{
	struct timeval tv = clock_timeval(ra->cfg->redis_timeout);
	redisAsyncContext *ac = redisAsyncConnect(ra->cfg->redis_host, ra->cfg->redis_port);

	if (ac == NULL || ac->err) {
		log_warn("redis %s: %s", ra->name, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		schedule_reconnect(ra);
		return;
	}
	ac->data = ra;
	if (redis_loop_attach(ac, ra->base) != REDIS_OK ||
	    redisAsyncSetConnectCallback(ac, on_connect) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, on_disconnect) != REDIS_OK) {
		redisAsyncFree(ac);
		schedule_reconnect(ra);
		return;
	}
	ra->ac = ac;
	if (evtimer_add(ra->connect_timeout_ev, &tv) != 0)
		log_error("redis %s: cannot arm the connect timeout", ra->name);
}

redis_async_t *redis_async_new(struct event_base *base, const config_t *cfg, const char *name)
{
	redis_async_t *ra = calloc(1, sizeof(*ra));

	if (ra == NULL)
		return NULL;
	ra->base = base;
	ra->cfg = cfg;
	ra->backoff_ms = BACKOFF_MIN_MS;
	snprintf(ra->name, sizeof(ra->name), "%s", name);
	ra->reconnect_ev = evtimer_new(base, on_reconnect_timer, ra);
	ra->connect_timeout_ev = evtimer_new(base, on_connect_timeout, ra);
	ra->deadline_ev = evtimer_new(base, on_deadline, ra);
	if (ra->reconnect_ev == NULL || ra->connect_timeout_ev == NULL || ra->deadline_ev == NULL) {
		redis_async_free(ra);
		return NULL;
	}
	start_connect(ra);
	return ra;
}

int redis_async_listen(redis_async_t *ra, const char *channel, redis_message_fn fn,
                       void (*subscribed)(void *arg), void *arg)
{
	if ((ra->channel = strdup(channel)) == NULL)
		return -1;
	ra->on_message = fn;
	ra->on_subscribed = subscribed;
	ra->message_arg = arg;
	return 0;
}

void redis_async_hear(redis_async_t *ra, int wanted)
{
	ra->sub_wanted = wanted != 0;
	sub_step(ra);
}

int redis_async_connected(const redis_async_t *ra)
{
	return ra->connected;
}

int redis_async_settled(const redis_async_t *ra)
{
	return ra->settled;
}

void redis_async_free(redis_async_t *ra)
{
	if (ra == NULL)
		return;
	ra->closing = 1;
	if (ra->ac != NULL)
		redisAsyncFree(ra->ac); /* fails every pending command: their callbacks run with NULL */
	if (ra->reconnect_ev != NULL)
		event_free(ra->reconnect_ev);
	if (ra->connect_timeout_ev != NULL)
		event_free(ra->connect_timeout_ev);
	if (ra->deadline_ev != NULL)
		event_free(ra->deadline_ev);
	free(ra->channel);
	free(ra);
}
