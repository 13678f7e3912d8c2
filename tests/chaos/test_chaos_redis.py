# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_redis.py: chaos in Redis, the fast gate: restarted without persistence (every key gone) and
flushed during load, and separately crashed (SIGKILL) and restarted from its AOF; invariants 1-5 hold after each."""

import chaos
import servers
from chaos import chaos_daemon, scenario
from tap import Tap


def test_redis_flush(t):
    def fault(f):
        f.load.wait_until(0.3)
        f.redis_restart_empty(down=1.5)
        f.load.wait_until(0.65)
        f.redis_flushall()
    with servers.Redis() as redis:
        scenario(t, "redis-flush", fault, d=chaos_daemon(redis=redis))


def test_redis_aof(t):
    def fault(f):
        for at in (0.3, 0.65):
            f.load.wait_until(at)
            f.redis_crash_aof(down=1.0)
            kept = f.redis.keys(f"{f.d.redis_prefix}*")
            f.note(f"{len(kept)} keys came back from the AOF")
            if len(kept) < 100:
                f.fail(f"only {len(kept)} keys came back from the AOF")
    with servers.Redis(appendonly=True) as redis:
        scenario(t, "redis-aof", fault, d=chaos_daemon(redis=redis))


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_redis_flush, test_redis_aof)
