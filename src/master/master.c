/* SPDX-License-Identifier: BSD-2-Clause */
/* master.c: the master process: owns the configuration, the sockets and the children. */
#include "master/master.h"

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/migrate.h"
#include "master/pidfile.h"
#include "core/proctitle.h"
#include "master/sdnotify.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WATCHDOG_TICK_MS 250

const config_t *master_config_for(const master_t *m, const child_t *c)
{
	/* A child of the generation being tried runs the configuration being tried. */
	if (m->next_cfg != NULL && c->role == ROLE_HTTP && c->generation == m->generation)
		return m->next_cfg;
	return m->cfg;
}

static int is_live_worker(const child_t *c)
{
	return c->pid > 0 && c->role != ROLE_KAFKA;
}

static int is_unready(const child_t *c)
{
	return !c->retired && (c->pid == 0 || c->state == CHILD_STARTING);
}

static void spawn_or_retry(master_t *m, child_t *c)
{
	if (proc_spawn(m, c) != 0)
		master_on_exit(m, c);
}

int master_spawn_http(master_t *m, const config_t *cfg, unsigned generation)
{
	for (int i = 0; i < cfg->http_workers; i++) {
		child_t *c = proc_add(m, ROLE_HTTP, i, generation);

		if (c == NULL)
			return -1;
		spawn_or_retry(m, c);
	}
	return 0;
}

/* Starts a consumer for every owned partition that has no slot yet. */
void master_spawn_consumers(master_t *m, const config_t *cfg)
{
	for (int i = 0; i < cfg->kafka_owned_count; i++) {
		child_t *c = m->children;

		while (c != NULL &&
		       !(c->role == ROLE_CONSUMER && c->index == cfg->kafka_owned[i] && !c->retired))
			c = c->next;
		if (c != NULL)
			continue;
		c = proc_add(m, ROLE_CONSUMER, cfg->kafka_owned[i], m->generation);
		if (c != NULL)
			spawn_or_retry(m, c);
	}
}

void master_notify_ready(master_t *m, const char *what)
{
	int http = 0, consumers = 0;

	for (child_t *c = m->children; c != NULL; c = c->next) {
		http += c->role == ROLE_HTTP && !c->retired;
		consumers += c->role == ROLE_CONSUMER && !c->retired;
	}
	sdnotify_send("READY=1\nSTATUS=%s: %d http workers, %d consumers, generation %u", what, http,
	              consumers, m->generation);
	log_info("%s: %d http workers, %d consumers (generation %u)", what, http, consumers, m->generation);
}

static void on_kafka_ready(master_t *m, const char *bootstrap)
{
	int first = m->bootstrap[0] == '\0';

	if (strcmp(m->bootstrap, bootstrap) == 0)
		return;
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s", bootstrap);
	if (first) {
		master_spawn_http(m, m->cfg, m->generation);
		master_spawn_consumers(m, m->cfg);
		return;
	}
	/* An embedded cluster that restarted is a new, empty cluster: every Kafka client must move to it. */
	log_warn("embedded kafka restarted at %s; restarting every worker against it", bootstrap);
	reload_begin(m, 1);
}

void master_on_ready(master_t *m, child_t *c, const char *payload)
{
	char name[96];

	if (c->state != CHILD_STARTING)
		return;
	c->state = CHILD_READY;
	log_debug("%s (pid %d) is ready", proc_name(c, name, sizeof(name)), (int)c->pid);
	if (c->role == ROLE_KAFKA && m->state != MASTER_STOPPING)
		on_kafka_ready(m, payload);
	if (m->state == MASTER_STARTING && m->bootstrap[0] != '\0' && proc_count(m, is_unready) == 0) {
		m->state = MASTER_RUNNING;
		master_notify_ready(m, "ready");
		if (m->reload_again) {
			m->reload_again = 0;
			reload_begin(m, 0);
		}
	}
	if (m->state == MASTER_RELOADING)
		reload_check(m);
}

#ifdef COUPONSD_FAULTS
/*
 * Test builds only: `couponsd -s 'kafka CMD'` is relayed to the embedded
 * Kafka child, which applies it to its mock cluster; its answer comes back
 * on the channel (master_on_message) and goes to the client that asked.
 */
static void kafka_fault_relay(master_t *m, control_client_t *client, const char *args)
{
	const char *why = NULL;
	child_t *k = m->children;

	while (k != NULL && !(k->role == ROLE_KAFKA && k->pid > 0 && k->state == CHILD_READY))
		k = k->next;
	if (k == NULL)
		why = "no embedded kafka is running (kafka.brokers is not \"embedded\", or it is restarting)";
	else if (m->kafka_waiter_count == (int)(sizeof(m->kafka_waiters) / sizeof(m->kafka_waiters[0])))
		why = "too many kafka commands waiting for an answer";
	else if (channel_send(k->chan_fd, CHANNEL_KAFKA_FAULT, args) != 0)
		why = strerror(errno);
	if (why != NULL) {
		control_reply(client, "error: kafka %s: %s", args, why);
		control_end(client, 0);
		return;
	}
	log_info("control socket: kafka %s", args);
	m->kafka_waiters[m->kafka_waiter_count++] = client;
}

/* The embedded Kafka child is gone: nobody will answer what it was asked. */
static void kafka_waiters_fail(master_t *m)
{
	for (int i = 0; i < m->kafka_waiter_count; i++) {
		control_reply(m->kafka_waiters[i], "error: the embedded kafka exited before answering");
		control_end(m->kafka_waiters[i], 0);
	}
	m->kafka_waiter_count = 0;
}
#endif

void master_on_message(master_t *m, child_t *c, const channel_msg_t *msg)
{
#ifdef COUPONSD_FAULTS
	if (msg->type == CHANNEL_KAFKA_FAULT && c->role == ROLE_KAFKA && m->kafka_waiter_count > 0) {
		control_client_t *client = m->kafka_waiters[0];
		int ok = strcmp(msg->data, "ok") == 0;

		m->kafka_waiter_count--;
		memmove(m->kafka_waiters, m->kafka_waiters + 1,
		        (size_t)m->kafka_waiter_count * sizeof(m->kafka_waiters[0]));
		if (!ok)
			control_reply(client, "%s", msg->data);
		control_end(client, ok);
		return;
	}
#endif
	log_warn("ignoring channel message of type %u from pid %d", (unsigned)msg->type, (int)c->pid);
}

static int is_draining(const master_t *m)
{
	return m->drain_ev != NULL && evtimer_pending(m->drain_ev, NULL);
}

/* Graceful stop, step three: once every worker has left, the embedded Kafka goes last. */
static void stop_progress(master_t *m)
{
	int workers = proc_count(m, is_live_worker);

	if (workers > 0) {
		if (!is_draining(m))
			sdnotify_send("STATUS=stopping: %d workers still finishing", workers);
		return;
	}
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->role == ROLE_KAFKA && c->pid > 0) {
			proc_stop(c, m->stop_deadline_ms);
			return;
		}
	}
	if (m->children == NULL)
		event_base_loopbreak(m->base);
}

void master_on_exit(master_t *m, child_t *c)
{
#ifdef COUPONSD_FAULTS
	if (c->role == ROLE_KAFKA && c->pid == 0)
		kafka_waiters_fail(m);
#endif
	if (c->pid == 0 && (c->retired || m->state == MASTER_STOPPING)) {
		proc_release(m, c);
	} else if (c->pid == 0 && c->respawn_on_exit) {
		c->respawn_on_exit = 0;
		c->retired = 0;
		spawn_or_retry(m, c);
	}
	if (m->state == MASTER_STOPPING)
		stop_progress(m);
}

/* Graceful stop, step two: the workers stop accepting and finish what they have. */
static void stop_children(master_t *m)
{
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->pid > 0 && c->role != ROLE_KAFKA)
			proc_stop(c, m->stop_deadline_ms);
	}
	stop_progress(m);
}

static void on_drain_end(evutil_socket_t fd, short what, void *arg)
{
	master_t *m = arg;

	log_info("daemon.stop_drain over: the http workers stop accepting");
	sdnotify_send("STATUS=stopping");
	stop_children(m);
}

/*
 * Graceful stop, step one (daemon.stop_drain > 0): every HTTP worker keeps
 * accepting and serving, says 503 on /readyz and closes each connection
 * after its answer, so that load balancers take the host out of rotation
 * before anything would wait in a backlog that is about to be closed.
 * Returns 0 when there is nothing to drain (no worker that could accept).
 */
static int start_drain(master_t *m)
{
	int64_t drain = m->cfg->daemon_stop_drain;
	struct timeval tv = clock_timeval(drain);
	int told = 0;

	if (drain <= 0)
		return 0;
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->pid > 0 && c->role == ROLE_HTTP && c->state != CHILD_DRAINING &&
		    channel_send(c->chan_fd, CHANNEL_STOPPING, NULL) == 0)
			told++;
	}
	if (told == 0)
		return 0;
	if (m->drain_ev == NULL)
		m->drain_ev = evtimer_new(m->base, on_drain_end, m);
	if (m->drain_ev == NULL || evtimer_add(m->drain_ev, &tv) != 0) {
		log_error("cannot schedule the end of daemon.stop_drain; stopping now");
		return 0;
	}
	log_info("draining for %lld ms (daemon.stop_drain): /readyz says 503, every answer closes its "
	         "connection; then the graceful stop",
	         (long long)drain);
	sdnotify_send("STATUS=stopping: draining for %lld ms (daemon.stop_drain)", (long long)drain);
	return 1;
}

void master_begin_stop(master_t *m)
{
	if (m->state == MASTER_STOPPING) {
		/* SPEC: a second signal during a graceful stop, its drain included, stops now. */
		if (!m->stop_forced) {
			log_warn("second stop request: killing every child now");
			m->stop_forced = 1;
			if (m->drain_ev != NULL)
				evtimer_del(m->drain_ev);
			proc_kill_all(m);
		}
		return;
	}
	log_info("stopping gracefully (deadline %lld ms)", (long long)m->cfg->daemon_shutdown_timeout);
	sdnotify_send("STOPPING=1\nSTATUS=stopping");
	reload_abandon(m);
	m->state = MASTER_STOPPING;
	m->stop_deadline_ms = clock_mono_ms() + m->cfg->daemon_shutdown_timeout;
	/* No slot is started again from now on: an empty one goes now. */
	for (child_t *c = m->children, *next; c != NULL; c = next) {
		next = c->next;
		c->respawn_on_exit = 0;
		if (c->pid == 0)
			proc_release(m, c);
	}
	if (!start_drain(m))
		stop_children(m);
}

static void relay_reopen(master_t *m)
{
	if (log_reopen() != 0)
		log_error("cannot reopen the log file");
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->pid > 0 && channel_send(c->chan_fd, CHANNEL_REOPEN, NULL) != 0)
			log_warn("cannot relay the log reopen to pid %d", (int)c->pid);
	}
	log_info("log files reopened");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	master_t *m = arg;

	switch (sig) {
	case SIGCHLD:
		proc_reap(m);
		break;
	case SIGHUP:
		log_info("SIGHUP: reloading %s", m->config_path);
		reload_begin(m, 0);
		break;
	case SIGUSR1:
		relay_reopen(m);
		break;
	default:
		log_info("%s: stopping", strsignal((int)sig));
		master_begin_stop(m);
	}
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	master_t *m = arg;

	sdnotify_watchdog_tick(clock_mono_us());
	proc_watchdog(m);
	if (m->state == MASTER_RELOADING)
		reload_timeout_check(m);
	if (m->state == MASTER_STOPPING && clock_mono_ms() >= m->stop_deadline_ms + 1000 && !m->stop_forced) {
		log_warn("daemon.shutdown_timeout passed; killing what is left");
		m->stop_forced = 1;
		proc_kill_all(m);
	}
}

static void on_control(void *arg, control_client_t *client, const char *command)
{
	master_t *m = arg;

#ifdef COUPONSD_FAULTS
	if (strncmp(command, "kafka ", 6) == 0) {
		kafka_fault_relay(m, client, command + 6);
		return;
	}
#endif
	if (strcmp(command, "reload") == 0) {
		log_info("control socket: reload");
		reload_add_waiter(m, client);
	} else if (strcmp(command, "stop") == 0) {
		control_end(client, 1);
		log_info("control socket: stop");
		master_begin_stop(m);
	} else if (strcmp(command, "reopen") == 0) {
		relay_reopen(m);
		control_end(client, 1);
	} else {
		control_reply(client, "error: unknown command '%s' (reload, stop, reopen)", command);
		control_end(client, 0);
	}
}

static int events_setup(master_t *m)
{
	int sigs[] = {SIGCHLD, SIGHUP, SIGUSR1, SIGTERM, SIGINT, SIGQUIT};
	struct timeval tick = clock_timeval(WATCHDOG_TICK_MS);

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return -1;
	for (int i = 0; i < 6; i++) {
		m->signal_evs[i] = evsignal_new(m->base, sigs[i], on_signal, m);
		if (m->signal_evs[i] == NULL || event_add(m->signal_evs[i], NULL) != 0)
			return -1;
	}
	m->watchdog_ev = event_new(m->base, -1, EV_PERSIST, on_watchdog, m);
	return m->watchdog_ev == NULL || event_add(m->watchdog_ev, &tick) != 0 ? -1 : 0;
}

/* Everything that needs root happens here, before the privilege drop. */
static int open_resources(master_t *m)
{
	const config_t *cfg = m->cfg;

	if (privdrop_resolve(cfg->daemon_user, cfg->daemon_group, &m->priv) != 0)
		return -1;
	if (cfg->daemon_pid_file[0] != '\0' && (m->pidfile_fd = pidfile_create(cfg->daemon_pid_file)) < 0)
		return -1;
	if (listeners_open(cfg, &m->listeners) != 0)
		return -1;
	if (cfg->daemon_control_socket[0] != '\0') {
		m->control = control_open(m->base, cfg->daemon_control_socket, on_control, m);
		if (m->control == NULL)
			return -1;
	}
	/* The files stay removable by the unprivileged master at exit. */
	if (m->priv.needed) {
		if ((m->pidfile_fd >= 0 && fchown(m->pidfile_fd, m->priv.uid, m->priv.gid) != 0) ||
		    (m->control != NULL && control_chown(m->control, m->priv.uid, m->priv.gid) != 0))
			log_warn("cannot hand the pid file or control socket to %s: %s", cfg->daemon_user,
			         strerror(errno));
	}
	return privdrop_apply(&m->priv, cfg->daemon_user);
}

/*
 * The schema first, before any child exists. libpq's handle is closed again
 * before the first fork. PostgreSQL may be down now: then each consumer
 * applies the migrations once it connects.
 */
static void migrate_at_start(const config_t *cfg)
{
	char err[512];

	if (cfg->postgres_auto_migrate && migrate_conninfo(cfg->postgres_conninfo, err, sizeof(err)) != 0)
		log_warn("migrations not applied at start: %s (each consumer applies them when it connects)",
		         err);
}

static int start_children(master_t *m)
{
	migrate_at_start(m->cfg);
	m->state = MASTER_STARTING;
	m->generation = 1;
	if (strcmp(m->cfg->kafka_brokers, "embedded") == 0) {
		child_t *c = proc_add(m, ROLE_KAFKA, 0, 0);

		if (c == NULL)
			return -1;
		spawn_or_retry(m, c);
		return 0; /* the workers start when it reports its address */
	}
	snprintf(m->bootstrap, sizeof(m->bootstrap), "%s", m->cfg->kafka_brokers);
	if (master_spawn_http(m, m->cfg, m->generation) != 0)
		return -1;
	master_spawn_consumers(m, m->cfg);
	return 0;
}

static void master_cleanup(master_t *m)
{
	for (int i = 0; i < 6; i++) {
		if (m->signal_evs[i] != NULL)
			event_free(m->signal_evs[i]);
	}
	if (m->watchdog_ev != NULL)
		event_free(m->watchdog_ev);
	if (m->drain_ev != NULL)
		event_free(m->drain_ev);
	while (m->children != NULL)
		proc_release(m, m->children);
	if (m->control != NULL)
		control_close(m->control);
	listeners_close(&m->listeners);
	if (m->pid_path != NULL)
		pidfile_remove(m->pid_path, m->pidfile_fd);
	shm_destroy(m->shm);
	metrics_destroy();
	if (m->base != NULL)
		event_base_free(m->base);
	config_errors_clear(&m->reload_notes);
	free(m->pid_path);
	free(m->control_path);
	config_free(m->cfg);
}

int master_main(config_t *cfg, const char *config_path)
{
	master_t m;
	int rc = 1;

	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	m.config_path = config_path;
	m.pidfile_fd = -1;
	m.pid_path = strdup(cfg->daemon_pid_file);
	m.control_path = strdup(cfg->daemon_control_socket);
	proctitle_set(role_info(ROLE_MASTER)->title);
	log_set_role(role_info(ROLE_MASTER)->log_name);
	m.base = event_base_new();
	m.shm = shm_create();
	/* metrics.enabled needs a restart: the region is sized and mapped once, before the first fork. */
	if (cfg->metrics_enabled && metrics_create(SHM_SLOTS + 1) == 0) {
		metrics_attach(SHM_SLOTS);          /* the master's own slot: restarts and reloads */
		metrics_set_node(cfg->daemon_node); /* daemon.node is restart-only, like the region */
	}
	if (m.pid_path != NULL && m.control_path != NULL && m.base != NULL && m.shm != NULL &&
	    events_setup(&m) == 0 && open_resources(&m) == 0 && start_children(&m) == 0) {
		log_info("couponsd %s started as node %s (config %s)", PACKAGE_VERSION, cfg->daemon_node,
		         config_path);
		sdnotify_send("STATUS=starting workers");
		rc = event_base_dispatch(m.base) < 0 ? 1 : 0;
		log_info("stopped");
	}
	/* Only reached with children left when something failed: never leave orphans or zombies. */
	if (m.children != NULL) {
		proc_kill_all(&m);
		while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
			;
	}
	master_cleanup(&m);
	return rc;
}
