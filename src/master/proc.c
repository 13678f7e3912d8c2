/* SPDX-License-Identifier: BSD-2-Clause */
/* proc.c: the master's child slots: fork, reap, restart with back-off, heartbeat watchdog. */
#include "master/master.h"

#include "core/clock.h"
#include "core/fault.h"
#include "core/log.h"
#include "core/metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define BACKOFF_INITIAL_MS 100
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESET_AFTER_MS 60000

static void schedule_restart(master_t *m, child_t *c);

const char *proc_name(const child_t *c, char *buf, size_t size)
{
	return role_format(role_info(c->role)->slot_name, c->index, c->generation, buf, size);
}

child_t *proc_add(master_t *m, role_t role, int index, unsigned generation)
{
	child_t *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		log_error("out of memory for a child slot");
		return NULL;
	}
	c->master = m;
	c->role = role;
	c->index = index;
	c->generation = generation;
	c->chan_fd = -1;
	c->shm_slot = -1;
	c->backoff_ms = BACKOFF_INITIAL_MS;
	c->next = m->children;
	m->children = c;
	return c;
}

/* Unlinks and frees an empty slot. */
void proc_release(master_t *m, child_t *c)
{
	for (child_t **p = &m->children; *p != NULL; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	if (c->restart_ev != NULL)
		event_free(c->restart_ev);
	free(c);
}

int proc_count(const master_t *m, int (*match)(const child_t *c))
{
	int n = 0;

	for (const child_t *c = m->children; c != NULL; c = c->next)
		n += match(c);
	return n;
}

static void on_channel(evutil_socket_t fd, short what, void *arg)
{
	child_t *c = arg;
	channel_msg_t msg;
	int rc;

	while ((rc = channel_recv(fd, &msg)) > 0) {
		if (msg.type == CHANNEL_READY)
			master_on_ready(c->master, c, msg.data);
		else
			master_on_message(c->master, c, &msg);
	}
	/* EOF is ignored here: SIGCHLD and waitpid() are the one source of truth about exits. */
	if (rc == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
		event_del(c->chan_ev);
	}
}

/*
 * In the new child, before anything else: everything the master owns that
 * a child must not keep. The master's event base shares its epoll instance
 * with us, so it is re-initialised (giving us a private one) before being
 * freed; freeing it directly would delete the master's registrations.
 */
static void child_after_fork(master_t *m, child_t *self, int master_end)
{
	int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE};
	sigset_t none;

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* First, while every descriptor it watches is still open. */
	if (event_reinit(m->base) == 0)
		event_base_free(m->base);
	m->base = NULL;
	close(master_end);
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->chan_fd >= 0)
			close(c->chan_fd);
	}
	if (m->control != NULL)
		control_close_fds(m->control);
	if (m->pidfile_fd >= 0)
		close(m->pidfile_fd); /* else our copy would keep the master's lock alive */
	if (!(role_info(self->role)->inherits & ROLE_INHERITS_LISTENERS))
		listeners_close(&m->listeners);
}

static void child_run(master_t *m, child_t *c, int fds[2], pid_t master_pid)
{
	worker_args_t args;

	/* Die with the master; and if it already died between fork() and here, do not linger. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != master_pid)
		_exit(1);
	child_after_fork(m, c, fds[0]);
	memset(&args, 0, sizeof(args));
	args.role = c->role;
	args.index = c->index;
	args.generation = c->generation;
	args.cfg = master_config_for(m, c);
	args.chan_fd = fds[1];
	args.shm = m->shm;
	args.shm_slot = c->shm_slot;
	args.listeners = &m->listeners;
	args.kafka_bootstrap = role_info(c->role)->inherits & ROLE_INHERITS_BOOTSTRAP ? m->bootstrap : NULL;
	exit(worker_main(&args));
}

static int attach_channel(master_t *m, child_t *c, int fd)
{
	c->chan_fd = fd;
	c->chan_ev = event_new(m->base, fd, EV_READ | EV_PERSIST, on_channel, c);
	if (c->chan_ev == NULL || event_add(c->chan_ev, NULL) != 0) {
		log_error("cannot watch a child's channel");
		return -1;
	}
	return 0;
}

/*
 * Test-only: spawn_fail=N makes the next N forks fail with EAGAIN, as a
 * process limit would. Counted in the master, which reads it once.
 */
static pid_t fork_or_fault(void)
{
	static long left = -2;

	if (left == -2)
		left = fault_value("spawn_fail");
	if (left > 0) {
		left--;
		errno = EAGAIN;
		return -1;
	}
	return fork();
}

/*
 * A slot that could not be started is empty with no process to reap, so no
 * SIGCHLD will ever restart it: the failure re-arms the back-off itself.
 * The attempt counts as a start that died at once, so the delay doubles.
 */
static int spawn_failed(master_t *m, child_t *c)
{
	shm_slot_release(m->shm, c->shm_slot);
	c->shm_slot = -1;
	c->started_ms = clock_mono_ms();
	if (!c->retired && m->state != MASTER_STOPPING)
		schedule_restart(m, c);
	return -1;
}

int proc_spawn(master_t *m, child_t *c)
{
	char name[96];
	int fds[2];
	pid_t pid, master_pid = getpid();

	c->shm_slot = shm_slot_claim(m->shm);
	if (c->shm_slot < 0 || channel_open(fds) != 0) {
		log_error("cannot start %s: %s", proc_name(c, name, sizeof(name)),
		          c->shm_slot < 0 ? "no free shared-memory slot" : strerror(errno));
		return spawn_failed(m, c);
	}
	pid = fork_or_fault();
	if (pid < 0) {
		log_error("fork for %s: %s", proc_name(c, name, sizeof(name)), strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return spawn_failed(m, c);
	}
	if (pid == 0)
		child_run(m, c, fds, master_pid);
	close(fds[1]);
	c->pid = pid;
	c->state = CHILD_STARTING;
	c->started_ms = clock_mono_ms();
	c->kill_at_ms = 0;
	log_info("started %s as pid %d", proc_name(c, name, sizeof(name)), (int)pid);
	return attach_channel(m, c, fds[0]);
}

static void on_restart_timer(evutil_socket_t fd, short what, void *arg)
{
	child_t *c = arg;

	if (c->pid == 0 && proc_spawn(c->master, c) != 0)
		master_on_exit(c->master, c); /* proc_spawn() has re-armed this timer */
}

/* Schedules the next start of an empty slot, doubling the delay each time it dies young. */
static void schedule_restart(master_t *m, child_t *c)
{
	char name[96];
	int64_t delay;
	struct timeval tv;

	if (clock_mono_ms() - c->started_ms >= BACKOFF_RESET_AFTER_MS)
		c->backoff_ms = BACKOFF_INITIAL_MS;
	delay = c->backoff_ms;
	c->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	c->restarts++;
	metrics_inc(role_info(c->role)->restarts);
	if (c->restart_ev == NULL)
		c->restart_ev = evtimer_new(m->base, on_restart_timer, c);
	tv = clock_timeval(delay);
	if (c->restart_ev == NULL || evtimer_add(c->restart_ev, &tv) != 0) {
		log_error("cannot schedule a restart of %s", proc_name(c, name, sizeof(name)));
		return;
	}
	if (delay >= 3200)
		log_warn("%s is crash-looping (%d restarts); next start in %lld ms",
		         proc_name(c, name, sizeof(name)), c->restarts, (long long)delay);
	else
		log_info("restarting %s in %lld ms", proc_name(c, name, sizeof(name)), (long long)delay);
}

static void describe_exit(const child_t *c, int status, int expected)
{
	char name[96];
	log_level_t level = expected ? LOG_LEVEL_INFO : LOG_LEVEL_WARN;

	proc_name(c, name, sizeof(name));
	if (WIFEXITED(status))
		log_msg(level, "%s (pid %d) exited with status %d", name, (int)c->pid, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		log_msg(level, "%s (pid %d) was killed by signal %d (%s)%s", name, (int)c->pid,
		        WTERMSIG(status), strsignal(WTERMSIG(status)),
		        WCOREDUMP(status) ? ", core dumped" : "");
}

static void child_gone(master_t *m, child_t *c, int status)
{
	int expected = c->retired || c->respawn_on_exit || m->state == MASTER_STOPPING;

	describe_exit(c, status, expected && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (c->chan_ev != NULL)
		event_free(c->chan_ev);
	c->chan_ev = NULL;
	close(c->chan_fd);
	c->chan_fd = -1;
	metrics_retire(c->shm_slot); /* its counts outlive it; the next process starts its slot at zero */
	shm_slot_release(m->shm, c->shm_slot);
	c->shm_slot = -1;
	c->pid = 0;
	if (!expected)
		schedule_restart(m, c);
	master_on_exit(m, c);
}

/* Reaps every exited child: one SIGCHLD may stand for many exits. */
void proc_reap(master_t *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		child_t *c = m->children;

		while (c != NULL && c->pid != pid)
			c = c->next;
		if (c == NULL) {
			log_warn("reaped unknown child pid %d", (int)pid);
			continue;
		}
		child_gone(m, c, status);
	}
	if (pid < 0 && errno != ECHILD)
		log_error("waitpid: %s", strerror(errno));
}

/* Asks a child to finish and leave; the watchdog kills it if it is still there at deadline_ms. */
void proc_stop(child_t *c, int64_t deadline_ms)
{
	char name[96];

	if (c->restart_ev != NULL)
		event_del(c->restart_ev);
	if (c->pid == 0 || c->state == CHILD_DRAINING)
		return;
	c->state = CHILD_DRAINING;
	c->kill_at_ms = deadline_ms;
	if (channel_send(c->chan_fd, CHANNEL_STOP, NULL) != 0) {
		log_warn("cannot ask %s to stop (%s); sending SIGTERM", proc_name(c, name, sizeof(name)),
		         strerror(errno));
		kill(c->pid, SIGTERM);
	}
}

void proc_kill_all(master_t *m)
{
	for (child_t *c = m->children; c != NULL; c = c->next) {
		if (c->pid > 0)
			kill(c->pid, SIGKILL);
	}
}

/* Kills children that stopped ticking their heartbeat or overran their drain deadline. */
void proc_watchdog(master_t *m)
{
	int64_t now = clock_mono_ms();
	char name[96];

	for (child_t *c = m->children; c != NULL; c = c->next) {
		int64_t beat;

		if (c->pid == 0)
			continue;
		if (c->kill_at_ms > 0 && now >= c->kill_at_ms) {
			log_warn("%s (pid %d) did not finish within the deadline; killing it",
			         proc_name(c, name, sizeof(name)), (int)c->pid);
			kill(c->pid, SIGKILL);
			c->kill_at_ms = 0;
			continue;
		}
		beat = atomic_load(&m->shm->slots[c->shm_slot].heartbeat_ms);
		if (now - beat > m->cfg->daemon_worker_timeout) {
			log_error(
			    "%s (pid %d) has not ticked for %lld ms (daemon.worker_timeout); killing it",
			    proc_name(c, name, sizeof(name)), (int)c->pid, (long long)(now - beat));
			kill(c->pid, SIGKILL);
			atomic_store(&m->shm->slots[c->shm_slot].heartbeat_ms,
			             now); /* one kill per timeout */
		}
	}
}
