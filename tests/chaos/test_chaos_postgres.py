# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_postgres.py: chaos in PostgreSQL, the source of truth: a fast-shutdown restart during load, and
separately the server frozen (SIGSTOP) for several seconds; invariants 1-5 hold after each."""

import chaos
from chaos import scenario
from tap import Tap


def test_pg_restart(t):
    def fault(f):
        f.load.wait_until(0.35)
        f.pg_restart()
    scenario(t, "pg-restart", fault)


def test_pg_pause(t):
    """Frozen, not gone: connections stay open and nothing answers, the worst case for a client. The pause is
    shorter than daemon.worker_timeout (10 s), so a consumer blocked in libpq is waited for, not killed."""
    def fault(f):
        f.load.wait_until(0.3)
        f.pg_pause(6.0)
    scenario(t, "pg-pause", fault, duration=12.0)


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_pg_restart, test_pg_pause)
