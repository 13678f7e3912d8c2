/* SPDX-License-Identifier: BSD-2-Clause */
/* privdrop.h: dropping from root to daemon.user / daemon.group after binding. */
#ifndef COUPONSD_PRIVDROP_H
#define COUPONSD_PRIVDROP_H

#include <sys/types.h>

typedef struct {
	uid_t uid;
	gid_t gid;
	int needed; /* 0: not root or no user configured */
} privdrop_t;

/* Resolves the user and group names (before anything is opened, so errors come early). */
int privdrop_resolve(const char *user, const char *group, privdrop_t *out);

/*
 * Opens the directory that holds path (for the *at() calls) and points *base
 * at path's last component. The files root creates there before the drop (pid
 * file, control socket) are then opened and chowned relative to it without
 * following a symlink, which whoever owns that directory could plant to make
 * root truncate or chown another file. Returns the fd (O_CLOEXEC) or -1.
 */
int privdrop_open_dir(const char *path, const char **base);

/* Gives up root for good; verifies that it cannot be regained. */
int privdrop_apply(const privdrop_t *p, const char *user);

#endif
