/* SPDX-License-Identifier: BSD-2-Clause */
/* pidfile.c: the locked pid file that keeps two masters from sharing one configuration. */
#include "master/pidfile.h"

#include "core/log.h"
#include "master/privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Root opens the pid file in a directory the daemon's user may own: a symlink
 * (O_NOFOLLOW), a hard link or a FIFO put there must not make root truncate
 * or block on another file.
 */
static int open_regular(const char *path)
{
	const char *base;
	int dir = privdrop_open_dir(path, &base), fd;
	struct stat st;

	if (dir < 0)
		return -1;
	fd = openat(dir, base, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
	close(dir);
	if (fd < 0) {
		log_error("cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		log_error("pid file %s is not a regular file with one link; refusing it", path);
		close(fd);
		return -1;
	}
	return fd;
}

int pidfile_create(const char *path)
{
	char buf[32];
	int fd, n;

	if ((fd = open_regular(path)) < 0)
		return -1;
	/* The lock, not the file's existence, says a master is alive: a stale file from a crash is harmless.
	 */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		log_error("pid file %s is locked: another couponsd is running", path);
		close(fd);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) != 0 || write(fd, buf, (size_t)n) != n) {
		log_error("cannot write pid file %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void pidfile_remove(const char *path, int fd)
{
	if (fd < 0)
		return;
	if (unlink(path) != 0 && errno != ENOENT)
		log_warn("cannot remove pid file %s: %s", path, strerror(errno));
	close(fd);
}
