/* SPDX-License-Identifier: BSD-2-Clause */
/* worker.c: what every child process shares: its loop, its channel to the master, its heartbeat. */
#include "core/worker.h"

#include "core/channel.h"
#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/proctitle.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void worker_stop(worker_t *w)
{
	if (w->stopping)
		return;
	w->stopping = 1;
	log_debug("stopping gracefully");
	if (w->on_stop != NULL)
		w->on_stop(w);
	else
		worker_finish(w, 0);
}

static void dispatch(worker_t *w, const channel_msg_t *msg)
{
	switch (msg->type) {
	case CHANNEL_STOP:
		worker_stop(w);
		break;
	case CHANNEL_REOPEN:
		if (log_reopen() != 0)
			log_error("cannot reopen the log file");
		break;
	case CHANNEL_LOG:
		if (log_settings_apply(msg->data) != 0)
			log_error("cannot apply the new log settings '%s'", msg->data);
		break;
	default:
		/* Messages for one role only (the embedded Kafka's fault commands in test builds). */
		if (w->on_message != NULL && msg->type < 32 &&
		    (role_info(w->args.role)->sent & (1u << msg->type)))
			w->on_message(w, msg);
		else
			log_warn("ignoring channel message of type %u", (unsigned)msg->type);
	}
}

static void on_channel(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;
	channel_msg_t msg;
	int rc;

	while ((rc = channel_recv(fd, &msg)) > 0)
		dispatch(w, &msg);
	if (rc == 0) {
		/* EOF: the master is gone. Nobody would restart or supervise us, so go now. */
		log_warn("master went away; exiting");
		worker_finish(w, 1);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		log_error("channel read: %s", strerror(errno));
		worker_finish(w, 1);
	}
}

/* This process's worker (one per child), for worker_beat(). */
static worker_t *current;

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	worker_t *w = arg;

	atomic_store(&w->args.shm->slots[w->args.shm_slot].heartbeat_ms, clock_mono_ms());
}

void worker_beat(void)
{
	if (current != NULL && current->args.shm != NULL)
		on_heartbeat(-1, 0, current);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	worker_stop(arg);
}

static int heartbeat_start(worker_t *w)
{
	int64_t every = w->args.cfg->daemon_worker_timeout / 4;
	struct timeval tv;

	if (every > 1000)
		every = 1000;
	if (every < 50)
		every = 50;
	tv = clock_timeval(every);
	w->beat_ev = event_new(w->base, -1, EV_PERSIST, on_heartbeat, w);
	if (w->beat_ev == NULL || event_add(w->beat_ev, &tv) != 0)
		return -1;
	on_heartbeat(-1, 0, w);
	return 0;
}

/* The master relays HUP, INT, QUIT and USR1 over the channel; a child acts only on its own SIGTERM. */
static int signals_setup(worker_t *w)
{
	int ignored[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE};

	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
		if (signal(ignored[i], SIG_IGN) == SIG_ERR)
			return -1;
	}
	/* The embedded cluster must outlive every Kafka client (role.c says why). */
	if (role_info(w->args.role)->ignores_sigterm)
		return signal(SIGTERM, SIG_IGN) == SIG_ERR ? -1 : 0;
	w->term_ev = evsignal_new(w->base, SIGTERM, on_sigterm, w);
	return w->term_ev == NULL || event_add(w->term_ev, NULL) != 0 ? -1 : 0;
}

int worker_init(worker_t *w, const worker_args_t *args)
{
	memset(w, 0, sizeof(*w));
	w->args = *args;
	current = w;
	w->base = event_base_new();
	if (w->base == NULL) {
		log_error("event_base_new failed");
		return -1;
	}
	atomic_store(&args->shm->slots[args->shm_slot].pid, (int32_t)getpid());
	w->chan_ev = event_new(w->base, args->chan_fd, EV_READ | EV_PERSIST, on_channel, w);
	if (w->chan_ev == NULL || event_add(w->chan_ev, NULL) != 0 || signals_setup(w) != 0 ||
	    heartbeat_start(w) != 0) {
		log_error("cannot set up the worker's event loop");
		return -1;
	}
	return 0;
}

int worker_ready(worker_t *w, const char *payload)
{
	if (channel_send(w->args.chan_fd, CHANNEL_READY, payload) != 0) {
		log_error("cannot tell the master we are ready: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int worker_run(worker_t *w)
{
	if (event_base_dispatch(w->base) < 0) {
		log_error("event loop failed");
		return -1;
	}
	return w->exit_code;
}

void worker_finish(worker_t *w, int code)
{
	w->exit_code = code;
	event_base_loopbreak(w->base);
}

/* Blocks SIGTERM in this thread, so that none is handled between freeing its event and ignoring it. */
static int sigterm_hold(void)
{
	sigset_t set;

	if (sigemptyset(&set) != 0 || sigaddset(&set, SIGTERM) != 0)
		return -1;
	errno = pthread_sigmask(SIG_BLOCK, &set, NULL);
	return errno == 0 ? 0 : -1;
}

void worker_cleanup(worker_t *w)
{
	struct event *evs[] = {w->chan_ev, w->beat_ev, w->term_ev};

	/* Freeing term_ev gives SIGTERM back its default action, and the exit still ahead (the sanitizers'
	 * leak check makes it long) is when a late SIGTERM comes: the master's fallback to a closed channel,
	 * or systemd's to the whole cgroup. It must not turn a clean exit into a kill. */
	if (sigterm_hold() != 0)
		log_warn("cannot block SIGTERM for the exit: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
		if (evs[i] != NULL)
			event_free(evs[i]);
	}
	if (signal(SIGTERM, SIG_IGN) == SIG_ERR)
		log_warn("cannot ignore SIGTERM for the exit: %s", strerror(errno));
	if (w->base != NULL)
		event_base_free(w->base);
	close(w->args.chan_fd);
	w->base = NULL;
	if (current == w)
		current = NULL;
}

static void set_identity(const worker_args_t *args)
{
	const role_info_t *role = role_info(args->role);
	char title[64], name[64];

	proctitle_set(role_format(role->title, args->index, args->generation, title, sizeof(title)));
	log_set_role(role_format(role->log_name, args->index, args->generation, name, sizeof(name)));
}

/* Test builds only: a worker that dies at once, to exercise the master's back-off. */
static int crash_fault_armed(const worker_args_t *args)
{
	const char *fault = role_info(args->role)->crash_fault;

	return fault != NULL && fault_value(fault) == args->index;
}

/* Test builds only: a slow exit, such as the sanitizers' leak check makes, for a late SIGTERM to hit. */
static void exit_delay_fault(void)
{
	long long ms = fault_value("child_exit_delay");
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int worker_main(const worker_args_t *args)
{
	worker_t w;
	int rc = 1;

	set_identity(args);
	metrics_attach(args->shm_slot);
	/* The master's sink is inherited; a child of a new generation may run other log settings. */
	if (log_configure(args->cfg) != 0)
		log_error("cannot apply this generation's log settings; keeping the inherited ones");
	if (crash_fault_armed(args)) {
		log_error("fault injection: crashing on start");
		return 3;
	}
	if (worker_init(&w, args) == 0)
		rc = role_info(args->role)->main(&w);
	worker_cleanup(&w);
	exit_delay_fault();
	log_debug("exiting with status %d", rc);
	return rc;
}
