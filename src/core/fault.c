/* SPDX-License-Identifier: BSD-2-Clause */
/* fault.c: test-only fault switches, compiled in by ./configure --enable-fault-injection. */
#include "core/fault.h"

#include <stdlib.h>
#include <string.h>

#ifdef COUPONSD_FAULTS
long fault_value(const char *name)
{
	const char *spec = getenv("COUPONSD_FAULTS");
	size_t len = strlen(name);

	for (const char *p = spec; p != NULL && *p != '\0'; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (strncmp(p, name, len) == 0 && p[len] == '=')
			return strtol(p + len + 1, NULL, 10);
	}
	return -1;
}
#else
long fault_value(const char *name)
{
	(void)name;
	return -1;
}
#endif
