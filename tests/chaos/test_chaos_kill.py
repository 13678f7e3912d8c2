# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_kill.py: chaos with SIGKILL: random HTTP workers, random consumers, and a consumer killed exactly
between its Redis gate and its PostgreSQL commit; after each, invariants 1-5 hold and nothing accepted is lost."""

import chaos
from chaos import STOCKS, chaos_daemon, coupon_ids, log_count, partition_of, scenario
from tap import Tap


def test_http_kill(t):
    def fault(f):
        for at in (0.2, 0.35, 0.5, 0.65, 0.8):
            f.load.wait_until(at)
            f.kill_http_worker()

    def evidence(d, f, v):
        n = log_count(d, r"http worker \d+ \(generation \d+\) \(pid \d+\) was killed by signal 9")
        return n >= 5, f"the master saw 5 http workers killed by SIGKILL ({n})"
    scenario(t, "http-kill", fault, allow_errors=True, evidence=evidence)


def test_consumer_kill(t):
    def fault(f):
        moments = sorted(f.rng.uniform(0.1, 0.85) for _ in range(6))
        for at in moments:
            f.load.wait_until(at)
            f.kill_consumer()

    def evidence(d, f, v):
        n = log_count(d, r"consumer partition \d+ \(pid \d+\) was killed by signal 9")
        return n >= 6, f"the master saw 6 consumers killed by SIGKILL ({n})"
    scenario(t, "consumer-kill", fault, evidence=evidence)


def test_consumer_kill_after_gate(t):
    """consumer_kill_after_gate=P fires once per marker key: at the first batch that reserves stock, and again
    each time the marker is deleted and the consumer replaced (the next process dies on its first batch)."""
    p = partition_of(coupon_ids(STOCKS))  # the partition of the coupon with the most stock

    def fault(f):
        marker = f"{f.d.redis_prefix}fault:consumer_kill_after_gate"
        for at in (0.3, 0.55):
            f.load.wait_until(at)
            f.redis.cli("DEL", marker)
            f.note(f"deleted {marker}")
            f.kill_consumer(p)

    def evidence(d, f, v):
        n = log_count(d, r"fault injection: killed after the redis gate")
        return n >= 2, f"consumers of partition {p} died between the Redis gate and the PostgreSQL commit ({n} times)"
    scenario(t, "consumer-kill-after-gate", fault, d=chaos_daemon(faults=f"consumer_kill_after_gate={p}"),
             evidence=evidence)


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_http_kill, test_consumer_kill, test_consumer_kill_after_gate)
