/* SPDX-License-Identifier: BSD-2-Clause */
/* test_pg_session.c: TAP unit tests of the libpq `options` a PostgreSQL session is opened with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* With the folder, as in src/ (see test_config.c). */
#include "core/pg_session.h"
#include "tap.h"

#define OURS_5S                                                                                              \
	"-c tcp_keepalives_idle=2 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 "                   \
	"-c tcp_user_timeout=5000"

static void check(const char *conninfo, long long timeout_ms, const char *want, const char *what)
{
	char *got = pg_session_options(conninfo, timeout_ms);

	is_str(got, want, "%s", what);
	free(got);
}

/* The server learns to drop a vanished client within postgres.dead_session_timeout. */
static void test_derived_from_timeout(void)
{
	check("host=db dbname=coupons", 5000, OURS_5S,
	      "5s: idle 2 s, then 3 probes 1 s apart, 5000 ms user timeout");
	check("host=db", 3000,
	      "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2 "
	      "-c tcp_user_timeout=3000",
	      "3s (the default): idle 1 s, then 2 probes: silence noticed within 3 s");
	check("host=db", 300,
	      "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=1 "
	      "-c tcp_user_timeout=300",
	      "under a second: idle at least 1 s, at least 1 probe");
	check("coupons", 5000, OURS_5S, "a plain database name is no connection string");
}

/* The operator's options are kept, after ours, so that theirs win where both set a parameter. */
static void test_operator_options_merged(void)
{
	check("host=db options='-c search_path=shop -c tcp_keepalives_idle=60'", 5000,
	      OURS_5S " -c search_path=shop -c tcp_keepalives_idle=60", "conninfo's options follow ours");
	check("postgresql://db/coupons?options=-c%20work_mem%3D8MB", 5000, OURS_5S " -c work_mem=8MB",
	      "a URI's options too");
	if (setenv("PGOPTIONS", "-c geqo=off", 1) != 0)
		diag("cannot set PGOPTIONS");
	check("host=db", 5000, OURS_5S " -c geqo=off",
	      "PGOPTIONS, which an explicit options would hide, too");
	check("host=db options=-cjit=off", 5000, OURS_5S " -cjit=off",
	      "but conninfo's options before PGOPTIONS");
	unsetenv("PGOPTIONS");
}

int main(void)
{
	test_derived_from_timeout();
	test_operator_options_merged();
	return done_testing();
}
