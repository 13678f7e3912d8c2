/* SPDX-License-Identifier: BSD-2-Clause */
/* master.h: the master process: owns the configuration, the sockets and the children. */
#ifndef COUPONSD_MASTER_H
#define COUPONSD_MASTER_H

#include "core/channel.h"
#include "core/config.h"
#include "master/control.h"
#include "master/listen.h"
#include "master/privdrop.h"
#include "core/shm.h"
#include "core/worker.h"

#include <event2/event.h>
#include <sys/types.h>

typedef enum {
	MASTER_STARTING,  /* children launched, not all ready yet */
	MASTER_RUNNING,   /* serving */
	MASTER_RELOADING, /* a new generation is starting next to the old one */
	MASTER_STOPPING,  /* draining everything, then exit */
} master_state_t;

typedef enum { CHILD_STARTING, CHILD_READY, CHILD_DRAINING } child_state_t;

typedef struct master master_t;

/*
 * A slot is one place for a process: "http worker 2 of generation 5",
 * "consumer partition 3", "embedded kafka". It outlives the process in it,
 * so restarts and their back-off belong to the slot; pid is 0 while empty.
 */
typedef struct child {
	master_t *master;
	struct child *next;
	role_t role;
	int index;
	unsigned generation;
	pid_t pid;
	child_state_t state;
	int chan_fd;
	struct event *chan_ev;
	struct event *restart_ev;
	int shm_slot;
	int64_t started_ms;
	int64_t backoff_ms;
	int restarts;
	int64_t kill_at_ms;  /* while draining: SIGKILL if still alive then */
	int retired;         /* remove the slot once its process is gone */
	int respawn_on_exit; /* a consumer handing its partition to a successor */
} child_t;

struct master {
	struct event_base *base;
	config_t *cfg;      /* the running configuration */
	config_t *next_cfg; /* during a reload: the one being tried */
	const char *config_path;
	char *pid_path; /* restart-only keys: captured once at start */
	char *control_path;
	int pidfile_fd;
	listeners_t listeners;
	privdrop_t priv;
	shm_t *shm;
	control_t *control;
	child_t *children;
	unsigned generation;
	char bootstrap[CHANNEL_DATA_MAX];
	master_state_t state;
	int reload_again; /* a SIGHUP arrived during a reload: run one more */
	int ready_notified;
	int stop_forced;
	int64_t stop_deadline_ms;
	struct event *drain_ev; /* daemon.stop_drain: pending while the workers still accept */
	struct event *signal_evs[6];
	struct event *watchdog_ev;
	int64_t reload_started_ms;
	control_client_t *reload_waiters[64];
	int reload_waiter_count;
	control_client_t *next_waiters[64];
	int next_waiter_count;
	config_errors_t reload_notes; /* warnings of the reload in progress */
	/* Test builds: `kafka ...` control clients waiting for the embedded Kafka's answers, in order. */
	control_client_t *kafka_waiters[16];
	int kafka_waiter_count;
};

/* Runs the daemon until it stops; takes ownership of cfg. Returns the exit code. */
int master_main(config_t *cfg, const char *config_path);

/* proc.c */
child_t *proc_add(master_t *m, role_t role, int index, unsigned generation);
int proc_spawn(master_t *m, child_t *c);
void proc_reap(master_t *m);
void proc_stop(child_t *c, int64_t deadline_ms);
void proc_kill_all(master_t *m);
void proc_watchdog(master_t *m);
void proc_release(master_t *m, child_t *c);
int proc_count(const master_t *m, int (*match)(const child_t *c));
const char *proc_name(const child_t *c, char *buf, size_t size);

/* master.c */
void master_on_ready(master_t *m, child_t *c, const char *payload);
void master_on_message(master_t *m, child_t *c, const channel_msg_t *msg);
void master_on_exit(master_t *m, child_t *c);
const config_t *master_config_for(const master_t *m, const child_t *c);
void master_spawn_consumers(master_t *m, const config_t *cfg);
int master_spawn_http(master_t *m, const config_t *cfg, unsigned generation);
void master_notify_ready(master_t *m, const char *what);
void master_begin_stop(master_t *m);

/* reload.c */
void reload_begin(master_t *m, int same_config);
void reload_check(master_t *m);
void reload_timeout_check(master_t *m);
void reload_add_waiter(master_t *m, control_client_t *client);
void reload_abandon(master_t *m);

#endif
