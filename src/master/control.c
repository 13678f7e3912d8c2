/* SPDX-License-Identifier: BSD-2-Clause */
/* control.c: the control socket (`couponsd -s reload|stop|reopen`), both ends. */
#include "master/control.h"

#include "core/log.h"
#include "master/privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONTROL_MAX_LINE 256

struct control_client {
	control_t *ctl;
	struct bufferevent *bev;
	control_client_t *next;
	int dispatched; /* the master owns it until control_end() */
	int ended;
	int peer_gone;
};

struct control {
	struct evconnlistener *listener;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	control_handler_t handler;
	void *arg;
	control_client_t *clients;
};

static void client_free(control_client_t *cl)
{
	for (control_client_t **p = &cl->ctl->clients; *p != NULL; p = &(*p)->next) {
		if (*p == cl) {
			*p = cl->next;
			break;
		}
	}
	bufferevent_free(cl->bev);
	free(cl);
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
	control_client_t *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (cl->dispatched)
		return;
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_LINE)
			client_free(cl);
		return;
	}
	cl->dispatched = 1;
	cl->ctl->handler(cl->ctl->arg, cl, line);
	free(line);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
	control_client_t *cl = arg;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	/* A client that hung up mid-reload stays allocated until the master answers it. */
	if (cl->dispatched && !cl->ended)
		cl->peer_gone = 1;
	else
		client_free(cl);
}

static void on_client_written(struct bufferevent *bev, void *arg)
{
	control_client_t *cl = arg;

	if (cl->ended)
		client_free(cl);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	control_t *ctl = arg;
	control_client_t *cl = calloc(1, sizeof(*cl));

	if (cl == NULL) {
		close(fd);
		return;
	}
	cl->ctl = ctl;
	cl->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	if (cl->bev == NULL) {
		close(fd);
		free(cl);
		return;
	}
	bufferevent_setcb(cl->bev, on_client_read, on_client_written, on_client_event, cl);
	if (bufferevent_enable(cl->bev, EV_READ | EV_WRITE) != 0) {
		bufferevent_free(cl->bev);
		free(cl);
		return;
	}
	cl->next = ctl->clients;
	ctl->clients = cl;
}

/* Refuses to take over the socket of a live master; removes a stale one left by a crash. */
static int clear_stale_socket(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int alive;

	if (fd < 0)
		return -1;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	if (alive) {
		log_error("control socket %s answers: another couponsd is running", sun->sun_path);
		return -1;
	}
	if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
		log_error("cannot remove stale control socket %s: %s", sun->sun_path, strerror(errno));
		return -1;
	}
	return 0;
}

control_t *control_open(struct event_base *base, const char *path, control_handler_t handler, void *arg)
{
	control_t *ctl = calloc(1, sizeof(*ctl));
	struct sockaddr_un sun;
	mode_t old_mask;

	if (ctl == NULL || strlen(path) >= sizeof(sun.sun_path)) {
		log_error("control socket path %s is too long", path);
		free(ctl);
		return NULL;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (clear_stale_socket(&sun) != 0) {
		free(ctl);
		return NULL;
	}
	/* Owner-only: whoever can reload or stop the daemon is whoever runs it. */
	old_mask = umask(0177);
	ctl->listener =
	    evconnlistener_new_bind(base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	                            (struct sockaddr *)&sun, sizeof(sun));
	umask(old_mask);
	if (ctl->listener == NULL) {
		log_error("cannot listen on control socket %s: %s", path, strerror(errno));
		free(ctl);
		return NULL;
	}
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	ctl->handler = handler;
	ctl->arg = arg;
	return ctl;
}

/*
 * chown(path) would follow a symlink swapped in after bind() by whoever owns
 * the directory; relative to the directory and without following, the worst
 * such a swap achieves is a chowned symlink.
 */
int control_chown(const control_t *ctl, uid_t uid, gid_t gid)
{
	const char *base;
	int dir = privdrop_open_dir(ctl->path, &base), rc;

	if (dir < 0)
		return -1;
	rc = fchownat(dir, base, uid, gid, AT_SYMLINK_NOFOLLOW);
	close(dir);
	return rc;
}

void control_close(control_t *ctl)
{
	while (ctl->clients != NULL)
		client_free(ctl->clients);
	evconnlistener_free(ctl->listener);
	if (unlink(ctl->path) != 0 && errno != ENOENT)
		log_warn("cannot remove control socket %s: %s", ctl->path, strerror(errno));
	free(ctl);
}

void control_close_fds(control_t *ctl)
{
	close(evconnlistener_get_fd(ctl->listener));
	for (control_client_t *cl = ctl->clients; cl != NULL; cl = cl->next)
		close(bufferevent_getfd(cl->bev));
}

void control_reply(control_client_t *cl, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(cl->bev);
	va_list ap;

	if (cl->peer_gone)
		return;
	va_start(ap, fmt);
	if (evbuffer_add_vprintf(out, fmt, ap) < 0 || evbuffer_add(out, "\n", 1) != 0)
		log_warn("cannot queue a control reply");
	va_end(ap);
}

void control_end(control_client_t *cl, int ok)
{
	cl->ended = 1;
	if (cl->peer_gone) {
		client_free(cl);
		return;
	}
	control_reply(cl, "%s", ok ? "ok" : "failed");
}

/* ---- client side: used by `couponsd -s`, which has no event loop ---- */

static int client_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "couponsd: control socket path too long: %s\n", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "couponsd: cannot reach the running master at %s: %s\n", path,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Prints each answer line; remembers whether the last one said "ok". */
static int print_answer(const char *buf, size_t len, int *ok)
{
	const char *p = buf, *end = buf + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

		*ok = n == 2 && memcmp(p, "ok", 2) == 0;
		if (!(n == 2 && memcmp(p, "ok", 2) == 0) && !(n == 6 && memcmp(p, "failed", 6) == 0))
			fprintf(n >= 6 && memcmp(p, "error:", 6) == 0 ? stderr : stdout, "%.*s\n", (int)n, p);
		p += n + 1;
	}
	return 0;
}

int control_request(const char *path, const char *command, int timeout_ms)
{
	char buf[65536];
	size_t used = 0;
	int fd = client_connect(path), ok = 0;
	struct pollfd pfd;

	if (fd < 0)
		return 1;
	if (dprintf(fd, "%s\n", command) < 0) {
		fprintf(stderr, "couponsd: cannot send to %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (used < sizeof(buf) && poll(&pfd, 1, timeout_ms) > 0) {
		ssize_t n = read(fd, buf + used, sizeof(buf) - used);

		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	print_answer(buf, used, &ok);
	if (!ok && used == 0)
		fprintf(stderr, "couponsd: no answer from the master within %d ms\n", timeout_ms);
	return ok ? 0 : 1;
}
