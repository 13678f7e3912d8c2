/* SPDX-License-Identifier: BSD-2-Clause */
/* redis_batch.c: one script call per coupon (one Redis slot) per event-loop turn, not one per request. */
#include "http/redis_batch.h"

#include "core/log.h"

#include <stdlib.h>
#include <string.h>

/* Entries per call at most: bounds one script's run (Redis does nothing else meanwhile) and the reply. */
#define BATCH_MAX_ITEMS 256
/* Groups kept (with their buffers) from one turn to the next; more are freed once flushed. */
#define GROUPS_KEPT 32

typedef struct {
	redis_batch_fn fn;
	void *arg;
} entry_t;

/* Strings end to end in one buffer: a copy costs no allocation once the buffer has grown. */
typedef struct {
	char *buf;
	size_t len, cap;
	size_t *off;
	int n, cap_n;
} strings_t;

typedef struct {
	int64_t id;
	strings_t keys, args;
	entry_t *entries;
	int n;
} group_t;

/* One call in flight: whom to tell, in the order of the reply's elements. */
typedef struct {
	entry_t *entries;
	int n;
} call_t;

struct redis_batch {
	redis_async_t *ra;
	redis_script_t *script;
	int fixed_keys, fixed_args, item_keys, item_args;
	struct event *flush_ev;
	int scheduled;
	group_t *groups;
	int ngroups;
};

static int strings_add(strings_t *s, const char *str)
{
	size_t len = strlen(str) + 1;

	if (s->len + len > s->cap) {
		size_t cap = s->cap * 2 > s->len + len ? s->cap * 2 : s->len + len + 256;
		char *buf = realloc(s->buf, cap);

		if (buf == NULL)
			return -1;
		s->buf = buf;
		s->cap = cap;
	}
	if (s->n == s->cap_n) {
		int cap_n = s->cap_n > 0 ? s->cap_n * 2 : 16;
		size_t *off = realloc(s->off, (size_t)cap_n * sizeof(*off));

		if (off == NULL)
			return -1;
		s->off = off;
		s->cap_n = cap_n;
	}
	memcpy(s->buf + s->len, str, len);
	s->off[s->n++] = s->len;
	s->len += len;
	return 0;
}

static void strings_free(strings_t *s)
{
	free(s->buf);
	free(s->off);
}

static void on_reply(redisReply *reply, void *arg)
{
	call_t *call = arg;
	int array = reply != NULL && reply->type == REDIS_REPLY_ARRAY;

	if (reply != NULL && !array && reply->type != REDIS_REPLY_ERROR)
		log_warn("redis batch: unexpected reply type %d", reply->type);
	for (int i = 0; i < call->n; i++) {
		redisReply *item = NULL;

		if (array && reply != NULL && (size_t)i < reply->elements)
			item = reply->element[i];
		else if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
			item = reply;
		call->entries[i].fn(item, call->entries[i].arg);
	}
	free(call->entries);
	free(call);
}

/* KEYS then ARGV, as the script wants them; the group is empty afterwards either way. */
static void send_group(redis_batch_t *b, group_t *g)
{
	int argc = g->keys.n + g->args.n;
	const char **argv = malloc((size_t)argc * sizeof(*argv));
	call_t *call = malloc(sizeof(*call));

	if (argv != NULL && call != NULL) {
		for (int i = 0; i < g->keys.n; i++)
			argv[i] = g->keys.buf + g->keys.off[i];
		for (int i = 0; i < g->args.n; i++)
			argv[g->keys.n + i] = g->args.buf + g->args.off[i];
		call->entries = g->entries;
		call->n = g->n;
	}
	g->entries = NULL;
	g->n = 0;
	g->keys.n = g->args.n = 0;
	g->keys.len = g->args.len = 0;
	if (argv != NULL && call != NULL &&
	    redis_async_eval(b->ra, b->script, on_reply, call, b->fixed_keys + call->n * b->item_keys, argc,
	                     argv) == 0) {
		free(argv);
		return;
	}
	free(argv);
	if (call != NULL)
		on_reply(NULL, call); /* Redis took nothing: every entry hears so */
}

void redis_batch_flush(redis_batch_t *b)
{
	b->scheduled = 0;
	for (int i = 0; i < b->ngroups; i++) {
		if (b->groups[i].n > 0)
			send_group(b, &b->groups[i]);
	}
	if (b->ngroups > GROUPS_KEPT) {
		for (int i = 0; i < b->ngroups; i++) {
			strings_free(&b->groups[i].keys);
			strings_free(&b->groups[i].args);
		}
		free(b->groups);
		b->groups = NULL;
		b->ngroups = 0;
	}
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	redis_batch_flush(arg);
}

static group_t *group_of(redis_batch_t *b, int64_t id)
{
	group_t *g = NULL;

	for (int i = 0; i < b->ngroups; i++) {
		if (b->groups[i].n > 0 && b->groups[i].id == id)
			return &b->groups[i];
		if (b->groups[i].n == 0 && g == NULL)
			g = &b->groups[i];
	}
	if (g != NULL) {
		g->id = id;
		return g;
	}
	g = realloc(b->groups, (size_t)(b->ngroups + 1) * sizeof(*g));
	if (g == NULL)
		return NULL;
	b->groups = g;
	g = &b->groups[b->ngroups++];
	memset(g, 0, sizeof(*g));
	g->id = id;
	return g;
}

static int add_strings(strings_t *s, const char **v, int n)
{
	for (int i = 0; i < n; i++) {
		if (strings_add(s, v[i]) != 0)
			return -1;
	}
	return 0;
}

/* Keys and arguments of one entry, or none of them: a half-added entry would shift every later one. */
static int add_entry(redis_batch_t *b, group_t *g, const char **fixed, const char **item)
{
	int nk = g->keys.n, na = g->args.n;
	size_t lk = g->keys.len, la = g->args.len;
	entry_t *e = g->n % 16 == 0 ? realloc(g->entries, (size_t)(g->n + 16) * sizeof(*e)) : g->entries;

	if (e == NULL)
		return -1;
	g->entries = e;
	if ((g->n > 0 || (add_strings(&g->keys, fixed, b->fixed_keys) == 0 &&
	                  add_strings(&g->args, fixed + b->fixed_keys, b->fixed_args) == 0)) &&
	    add_strings(&g->keys, item, b->item_keys) == 0 &&
	    add_strings(&g->args, item + b->item_keys, b->item_args) == 0)
		return 0;
	g->keys.n = nk;
	g->args.n = na;
	g->keys.len = lk;
	g->args.len = la;
	return -1;
}

int redis_batch_add(redis_batch_t *b, int64_t group, const char **fixed, const char **item, redis_batch_fn fn,
                    void *arg)
{
	group_t *g;

	if (!redis_async_connected(b->ra) || (g = group_of(b, group)) == NULL ||
	    add_entry(b, g, fixed, item) != 0)
		return -1;
	g->entries[g->n].fn = fn;
	g->entries[g->n].arg = arg;
	if (++g->n >= BATCH_MAX_ITEMS) {
		send_group(b, g);
		return 0;
	}
	if (!b->scheduled) {
		b->scheduled = 1;
		event_active(b->flush_ev, EV_TIMEOUT, 1);
	}
	return 0;
}

redis_batch_t *redis_batch_new(struct event_base *base, redis_async_t *ra, redis_script_t *script,
                               int fixed_keys, int fixed_args, int item_keys, int item_args)
{
	redis_batch_t *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->ra = ra;
	b->script = script;
	b->fixed_keys = fixed_keys;
	b->fixed_args = fixed_args;
	b->item_keys = item_keys;
	b->item_args = item_args;
	/* Activated by hand (event_active): it runs after the callbacks already due in this turn. */
	if ((b->flush_ev = event_new(base, -1, 0, on_flush, b)) == NULL) {
		free(b);
		return NULL;
	}
	return b;
}

void redis_batch_free(redis_batch_t *b)
{
	if (b == NULL)
		return;
	redis_batch_flush(b);
	event_free(b->flush_ev);
	for (int i = 0; i < b->ngroups; i++) {
		strings_free(&b->groups[i].keys);
		strings_free(&b->groups[i].args);
		free(b->groups[i].entries);
	}
	free(b->groups);
	free(b);
}
