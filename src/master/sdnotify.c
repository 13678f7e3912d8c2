/* SPDX-License-Identifier: BSD-2-Clause */
/* sdnotify.c: the systemd notification protocol (READY=1, RELOADING=1, STATUS=..., WATCHDOG=1). */
#include "master/sdnotify.h"

#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_address(struct sockaddr_un *sun, socklen_t *len)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (path == NULL || path[0] == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sun->sun_path)) {
		log_warn("NOTIFY_SOCKET '%s' is not a usable unix socket path", path);
		return -1;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	if (path[0] == '@')
		sun->sun_path[0] = '\0'; /* abstract namespace */
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	return 1;
}

int sdnotify_send(const char *fmt, ...)
{
	struct sockaddr_un sun;
	socklen_t len;
	char msg[1024];
	va_list ap;
	int fd, rc = notify_address(&sun, &len);

	if (rc <= 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("sd_notify: socket: %s", strerror(errno));
		return -1;
	}
	rc = (int)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun, len);
	if (rc < 0)
		log_warn("sd_notify to %s: %s", getenv("NOTIFY_SOCKET"), strerror(errno));
	close(fd);
	return rc < 0 ? -1 : 0;
}

long long sdnotify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	long long v;

	if (usec == NULL || usec[0] == '\0')
		return 0;
	if (pid != NULL && pid[0] != '\0') {
		errno = 0;
		v = strtoll(pid, &end, 10);
		if (errno != 0 || *end != '\0' || v != (long long)getpid())
			return 0;
	}
	errno = 0;
	v = strtoll(usec, &end, 10);
	if (errno != 0 || *end != '\0' || v <= 0) {
		log_warn("WATCHDOG_USEC '%s' is not a positive number of microseconds; not pinging", usec);
		return 0;
	}
	return v;
}

void sdnotify_watchdog_tick(long long now_us)
{
	/* Read once: the variables do not change under a running process. */
	static long long interval_us = -1, last_us;

	if (interval_us < 0)
		interval_us = sdnotify_watchdog_usec();
	if (interval_us == 0 || (last_us != 0 && now_us - last_us < interval_us / 2))
		return;
	last_us = now_us;
	sdnotify_send("WATCHDOG=1");
}
