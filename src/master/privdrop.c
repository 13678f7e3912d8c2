/* SPDX-License-Identifier: BSD-2-Clause */
/* privdrop.c: dropping from root to daemon.user / daemon.group after binding. */
#include "master/privdrop.h"

#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privdrop_resolve(const char *user, const char *group, privdrop_t *out)
{
	struct passwd *pw;
	struct group *gr;

	memset(out, 0, sizeof(*out));
	if (user[0] == '\0' || geteuid() != 0)
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		log_error("daemon.user: no such user '%s' (create it, or set daemon.user: \"\" to stay root)",
		          user);
		return -1;
	}
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	if (group[0] != '\0') {
		gr = getgrnam(group);
		if (gr == NULL) {
			log_error("daemon.group: no such group '%s'", group);
			return -1;
		}
		out->gid = gr->gr_gid;
	}
	out->needed = 1;
	return 0;
}

int privdrop_apply(const privdrop_t *p, const char *user)
{
	if (!p->needed)
		return 0;
	if (initgroups(user, p->gid) != 0 || setgid(p->gid) != 0 || setuid(p->uid) != 0) {
		log_error("cannot drop privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_error("privilege drop to %s did not stick: setuid(0) still works", user);
		return -1;
	}
	log_info("running as user %s (uid %d, gid %d)", user, (int)p->uid, (int)p->gid);
	return 0;
}

int privdrop_open_dir(const char *path, const char **base)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	int fd;

	*base = slash != NULL ? slash + 1 : path;
	if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if ((size_t)(slash - path) >= sizeof(dir) || **base == '\0') {
		log_error("%s: not a usable file path", path);
		return -1;
	} else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		log_error("cannot open directory %s: %s", dir, strerror(errno));
	return fd;
}
