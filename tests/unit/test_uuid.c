/* SPDX-License-Identifier: BSD-2-Clause */
/* test_uuid.c: request ids are canonical version 4 UUIDs, never repeated, not even across a fork(). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/uuid.h"
#include "tap.h"

#define MANY 2000 /* more than one pool of drawn randomness */

static int cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_format_and_uniqueness(void)
{
	static char ids[MANY][UUID_TEXT_LEN + 1];
	int valid = 1, dup = 0;

	for (int i = 0; i < MANY; i++) {
		if (uuid_generate(ids[i]) != 0)
			valid = 0;
		valid &= uuid_valid(ids[i], strlen(ids[i])) && ids[i][14] == '4' &&
		         strchr("89ab", ids[i][19]) != NULL &&
		         strspn(ids[i], "0123456789abcdef-") == UUID_TEXT_LEN;
	}
	ok(valid, "%d ids: lowercase 8-4-4-4-12, version 4, RFC 4122 variant (e.g. %s)", MANY, ids[0]);
	qsort(ids, MANY, sizeof(ids[0]), cmp);
	for (int i = 1; i < MANY; i++)
		dup += strcmp(ids[i - 1], ids[i]) == 0;
	is_int(dup, 0, "no id repeats");
}

/* The HTTP workers are fork()ed: a child must not hand out the ids its parent will. */
static void test_fork(void)
{
	char mine[UUID_TEXT_LEN + 1], theirs[UUID_TEXT_LEN + 1] = "";
	int fd[2], status = 0;
	pid_t pid;

	ok(uuid_generate(mine) == 0, "the parent draws before forking");
	if (pipe(fd) != 0 || (pid = fork()) < 0) {
		ok(0, "pipe and fork");
		return;
	}
	if (pid == 0) {
		char id[UUID_TEXT_LEN + 1];

		_exit(uuid_generate(id) != 0 || write(fd[1], id, UUID_TEXT_LEN) != UUID_TEXT_LEN);
	}
	close(fd[1]);
	ok(read(fd[0], theirs, UUID_TEXT_LEN) == UUID_TEXT_LEN && waitpid(pid, &status, 0) == pid &&
	       WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "the child drew an id");
	close(fd[0]);
	ok(uuid_generate(mine) == 0, "the parent draws its next id");
	ok(strcmp(mine, theirs) != 0, "the child's id is not the parent's next one (%s, %s)", theirs, mine);
}

int main(void)
{
	plan(6);
	test_format_and_uniqueness();
	test_fork();
	return done_testing();
}
