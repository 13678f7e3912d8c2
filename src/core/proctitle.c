/* SPDX-License-Identifier: BSD-2-Clause */
/* proctitle.c: process titles as ps shows them ("couponsd: http worker"). */
#include "core/proctitle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

/*
 * Linux has no setproctitle(): ps reads /proc/PID/cmdline, which is the
 * memory holding argv and, right after it, the environment strings. Like
 * nginx and PostgreSQL, copy the environment elsewhere and reuse that whole
 * contiguous area for the title.
 */
static char *title_area;
static size_t title_size;

static int copy_environ(void)
{
	size_t n = 0;
	char **copy;

	while (environ[n] != NULL)
		n++;
	copy = calloc(n + 1, sizeof(char *));
	if (copy == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		copy[i] = strdup(environ[i]);
		if (copy[i] == NULL)
			return -1;
	}
	environ = copy;
	return 0;
}

int proctitle_init(int argc, char **argv)
{
	char *end;

	if (argc < 1 || argv[0] == NULL)
		return -1;
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc && argv[i] == end; i++)
		end = argv[i] + strlen(argv[i]) + 1;
	for (int i = 0; environ[i] != NULL && environ[i] == end; i++)
		end = environ[i] + strlen(environ[i]) + 1;
	if (copy_environ() < 0)
		return -1;
	title_area = argv[0];
	title_size = (size_t)(end - argv[0]);
	return 0;
}

void proctitle_set(const char *title)
{
	if (title_area == NULL || title_size < 2)
		return;
	memset(title_area, 0, title_size);
	snprintf(title_area, title_size, "%s", title);
	/* comm (15 bytes) is what top and pgrep show by default. */
	(void)prctl(PR_SET_NAME, title, 0, 0, 0);
}
