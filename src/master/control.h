/* SPDX-License-Identifier: BSD-2-Clause */
/* control.h: the control socket (`couponsd -s reload|stop|reopen`), both ends. */
#ifndef COUPONSD_CONTROL_H
#define COUPONSD_CONTROL_H

#include <event2/event.h>
#include <sys/types.h>

typedef struct control control_t;
typedef struct control_client control_client_t;

/* Called with each command line a client sends ("reload", "stop", "reopen"). */
typedef void (*control_handler_t)(void *arg, control_client_t *client, const char *command);

/*
 * Master side. The protocol is lines: the client sends one command, the
 * master answers any number of "error: ..." / "warning: ..." / "info: ..."
 * lines and then "ok" or "failed", and closes.
 */
control_t *control_open(struct event_base *base, const char *path, control_handler_t handler, void *arg);
void control_close(control_t *ctl);
/* Hands the socket file to uid:gid (the unprivileged master removes it at exit), never through a symlink. */
int control_chown(const control_t *ctl, uid_t uid, gid_t gid);
/* In a freshly forked child: close the inherited descriptors, touch nothing else. */
void control_close_fds(control_t *ctl);
void control_reply(control_client_t *client, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends the final line ("ok" or "failed") and closes once it is written. */
void control_end(control_client_t *client, int ok);

/* Client side: sends command, copies the answer to stdout/stderr. Returns the exit code (0 ok, 1 not). */
int control_request(const char *path, const char *command, int timeout_ms);

#endif
