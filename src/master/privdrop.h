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

/* Gives up root for good; verifies that it cannot be regained. */
int privdrop_apply(const privdrop_t *p, const char *user);

#endif
