/* pidfile.c: the locked pid file that keeps two masters from sharing one configuration. */
#include "master/pidfile.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int pidfile_create(const char *path)
{
	char buf[32];
	int fd, n;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_error("cannot open pid file %s: %s", path, strerror(errno));
		return -1;
	}
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
