/* SPDX-License-Identifier: BSD-2-Clause */
/* worker.h: what every child process shares: its loop, its channel to the master, its heartbeat. */
#ifndef COUPONSD_WORKER_H
#define COUPONSD_WORKER_H

#include "core/channel.h"
#include "core/config.h"
#include "master/listen.h"
#include "core/shm.h"
#include "role.h"

#include <event2/event.h>

/* Everything a child is started with. Owned by the master; valid in the child after fork(). */
typedef struct {
	role_t role;
	int index; /* HTTP worker number, or the consumer's partition */
	unsigned generation;
	const config_t *cfg;
	int chan_fd;
	shm_t *shm;
	int shm_slot;
	const listeners_t *listeners;
	const char *kafka_bootstrap; /* NULL for the embedded Kafka child itself */
} worker_args_t;

typedef struct worker worker_t;

struct worker {
	worker_args_t args;
	struct event_base *base;
	struct event *chan_ev;
	struct event *beat_ev;
	struct event *term_ev;
	int stopping;
	int exit_code;
	void (*on_stop)(worker_t *w); /* graceful stop asked: finish in-flight work, then worker_finish() */
	/* The role's own channel messages (anything but STOP, REOPEN and LOG), if it takes any. */
	void (*on_message)(worker_t *w, const channel_msg_t *msg);
	void *ctx; /* the role's own state */
};

/* Runs the role's main function in a freshly forked child; returns the exit code. */
int worker_main(const worker_args_t *args);

/* Helpers for role implementations. */
int worker_init(worker_t *w, const worker_args_t *args);
int worker_ready(worker_t *w, const char *payload);
int worker_run(worker_t *w);
void worker_finish(worker_t *w, int code);
/* The graceful stop a STOP message starts (w->on_stop), once: also for a worker that decides to leave. */
void worker_stop(worker_t *w);
void worker_cleanup(worker_t *w);
/*
 * A heartbeat now, from inside a callback that made a blocking call: the
 * watchdog bounds each blocking call (half of daemon.worker_timeout), not a
 * run of them within one callback or one loop turn.
 */
void worker_beat(void);

#endif
