/* SPDX-License-Identifier: BSD-2-Clause */
/* reload.c: a reload is a generation change: new workers first, then the old ones drain. */
#include "master/master.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "master/sdnotify.h"

#include <signal.h>
#include <string.h>

static void reply_waiters(control_client_t **list, int *count, const config_errors_t *lines,
                          const char *prefix, int ok)
{
	for (int i = 0; i < *count; i++) {
		for (int j = 0; lines != NULL && j < lines->count; j++)
			control_reply(list[i], "%s: %s", prefix, lines->items[j]);
		control_end(list[i], ok);
	}
	*count = 0;
}

static void reload_done(master_t *m)
{
	config_errors_clear(&m->reload_notes);
	if (m->reload_again && m->state == MASTER_RUNNING) {
		m->reload_again = 0;
		log_info("another reload was asked for meanwhile; reloading again");
		reload_begin(m, 0);
	}
}

/* A refused reload leaves the running generation exactly as it was. */
static void reload_fail(master_t *m, const config_errors_t *errs)
{
	for (int i = 0; i < errs->count; i++)
		log_error("reload refused: %s", errs->items[i]);
	metrics_inc(M_RELOADS_REFUSED);
	sdnotify_send("READY=1\nSTATUS=reload refused (%d errors); still running the previous configuration",
	              errs->count);
	m->state = MASTER_RUNNING;
	reply_waiters(m->reload_waiters, &m->reload_waiter_count, errs, "error", 0);
	reload_done(m);
}

static int is_current_http(const master_t *m, const child_t *c)
{
	return c->role == ROLE_HTTP && !c->retired && c->generation == m->generation;
}

static void retire(master_t *m, child_t *c, int64_t deadline_ms)
{
	c->retired = 1;
	c->respawn_on_exit = 0;
	if (c->pid == 0)
		proc_release(m, c);
	else
		proc_stop(c, deadline_ms);
}

/* Each partition's consumer commits and exits before its successor starts: never two owners. */
static void hand_over_consumers(master_t *m, int64_t deadline_ms)
{
	for (child_t *c = m->children, *next; c != NULL; c = next) {
		int owned = 0;

		next = c->next;
		if (c->role != ROLE_CONSUMER || c->retired)
			continue;
		for (int i = 0; i < m->cfg->kafka_owned_count; i++)
			owned |= m->cfg->kafka_owned[i] == c->index;
		if (!owned) {
			retire(m, c, deadline_ms);
		} else if (c->pid > 0) {
			c->respawn_on_exit = 1;
			proc_stop(c, deadline_ms);
		}
	}
	master_spawn_consumers(m, m->cfg);
}

/* Children that survive the generation change (the embedded Kafka) learn the new log settings. */
static void relay_log_settings(master_t *m)
{
	char settings[CHANNEL_DATA_MAX];

	if (log_settings_encode(m->cfg, settings, sizeof(settings)) != 0) {
		log_warn(
		    "log.file is too long to hand to the embedded kafka child; it keeps its log settings");
		return;
	}
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->role == ROLE_KAFKA && c->pid > 0 &&
		    channel_send(c->chan_fd, CHANNEL_LOG, settings) != 0)
			log_warn("cannot hand the new log settings to pid %d", (int)c->pid);
	}
}

static void reload_commit(master_t *m)
{
	int64_t deadline;

	if (m->next_cfg != NULL) {
		config_free(m->cfg);
		m->cfg = m->next_cfg;
		m->next_cfg = NULL;
		if (log_configure(m->cfg) != 0)
			log_error("cannot apply the new log settings; keeping the previous sink");
		relay_log_settings(m);
	}
	deadline = clock_mono_ms() + m->cfg->daemon_shutdown_timeout;
	for (child_t *c = m->children, *next; c != NULL; c = next) {
		next = c->next;
		if (c->role == ROLE_HTTP && !c->retired && c->generation != m->generation)
			retire(m, c, deadline);
	}
	hand_over_consumers(m, deadline);
	m->state = MASTER_RUNNING;
	metrics_inc(M_RELOADS_OK);
	master_notify_ready(m, "reloaded");
	reply_waiters(m->reload_waiters, &m->reload_waiter_count, &m->reload_notes, "warning", 1);
	reload_done(m);
}

void reload_check(master_t *m)
{
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (is_current_http(m, c) && (c->pid == 0 || c->state != CHILD_READY))
			return;
	}
	reload_commit(m);
}

void reload_timeout_check(master_t *m)
{
	int64_t timeout = (m->next_cfg != NULL ? m->next_cfg : m->cfg)->daemon_worker_timeout;
	config_errors_t errs = {0};

	if (clock_mono_ms() - m->reload_started_ms < timeout)
		return;
	for (child_t *c = m->children, *next; c != NULL; c = next) {
		next = c->next;
		if (is_current_http(m, c)) {
			c->retired = 1;
			if (c->pid > 0)
				kill(c->pid, SIGKILL);
			else
				proc_release(m, c);
		}
	}
	config_free(m->next_cfg);
	m->next_cfg = NULL;
	config_errors_add(&errs,
	                  "the new http workers did not become ready within daemon.worker_timeout (%lld ms)",
	                  (long long)timeout);
	reload_fail(m, &errs);
	config_errors_clear(&errs);
}

static int load_next(master_t *m)
{
	config_errors_t errs = {0};

	m->next_cfg = config_load(m->config_path, &errs);
	if (m->next_cfg == NULL ||
	    config_keep_restart_keys(m->cfg, m->next_cfg, &m->reload_notes, &errs) != 0) {
		config_free(m->next_cfg);
		m->next_cfg = NULL;
		reload_fail(m, &errs);
		config_errors_clear(&errs);
		return -1;
	}
	for (int i = 0; i < m->reload_notes.count; i++)
		log_warn("reload: %s", m->reload_notes.items[i]);
	return 0;
}

void reload_begin(master_t *m, int same_config)
{
	if (m->state == MASTER_STOPPING)
		return;
	if (m->state != MASTER_RUNNING) {
		m->reload_again = 1; /* coalesced: one more reload once this one (or the start) is done */
		return;
	}
	sdnotify_send("RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading", (long long)clock_mono_us());
	memcpy(m->reload_waiters, m->next_waiters, sizeof(m->next_waiters));
	m->reload_waiter_count = m->next_waiter_count;
	m->next_waiter_count = 0;
	m->state = MASTER_RELOADING;
	if (!same_config && load_next(m) != 0)
		return;
	m->generation++;
	m->reload_started_ms = clock_mono_ms();
	log_info("reload: starting generation %u", m->generation);
	master_spawn_http(m, m->next_cfg != NULL ? m->next_cfg : m->cfg, m->generation);
	reload_check(m);
}

void reload_add_waiter(master_t *m, control_client_t *client)
{
	if (m->state == MASTER_STOPPING ||
	    m->next_waiter_count >= (int)(sizeof(m->next_waiters) / sizeof(m->next_waiters[0]))) {
		control_reply(client, "error: %s",
		              m->state == MASTER_STOPPING ? "the daemon is stopping"
		                                          : "too many reloads waiting");
		control_end(client, 0);
		return;
	}
	m->next_waiters[m->next_waiter_count++] = client;
	reload_begin(m, 0);
}

void reload_abandon(master_t *m)
{
	config_errors_t errs = {0};

	config_errors_add(&errs, "the daemon is stopping; reload abandoned");
	reply_waiters(m->reload_waiters, &m->reload_waiter_count, &errs, "error", 0);
	reply_waiters(m->next_waiters, &m->next_waiter_count, &errs, "error", 0);
	config_errors_clear(&errs);
	config_free(m->next_cfg);
	m->next_cfg = NULL;
	m->reload_again = 0;
}
