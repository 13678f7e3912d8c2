# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_redis.py: chaos in Redis, the fast gate: restarted without persistence (every key gone) and
flushed during load, separately crashed (SIGKILL) and restarted from its AOF, and separately answering
scripts whose replies never come back (the connection cut after Redis ran them); invariants 1-5 hold after
each."""

import threading
import time

import chaos
import servers
from chaos import chaos_daemon, scenario
from tap import Tap
from tcpproxy import TcpProxy


class CuttingProxy(TcpProxy):
    """A proxy to a Redis server. cut(marker) arms it: the next client chunk containing marker goes to Redis,
    and 20 ms later that connection is closed both ways, so Redis has run the command and its reply is lost,
    as when a network drops a connection at that moment."""

    def __init__(self, port):
        self.armed = []  # markers, each for one cut
        self.cuts = {}   # marker -> cuts made
        self.marks = threading.Lock()
        super().__init__("127.0.0.1", port, from_client=self._take)

    def cut(self, marker):
        with self.marks:
            self.armed.append(marker)

    def _take(self, data):
        with self.marks:
            marker = next((m for m in self.armed if m in data), None)
            if marker is None:
                return False
            self.armed.remove(marker)
            self.cuts[marker] = self.cuts.get(marker, 0) + 1
        time.sleep(0.02)  # Redis runs it; its reply dies with the connection
        return True


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


def test_redis_replies_lost(t):
    """A script's reply lost after Redis ran it: the consumer's gate (its reservations made, the consumer not
    knowing) and the edge's claim (the user's claim taken, the worker not knowing). The consumer must retry
    the batch without reserving twice (the reservation records say what was done), and stock must converge."""
    proxy = None

    def fault(f):
        f.load.wait_until(0.25)
        for i in range(24):
            marker = b":rsv:" if i % 2 == 0 else b":user:"
            f.hit("redis", "a script's reply lost")
            proxy.cut(marker)
            time.sleep(0.15)
        f.note(f"connections cut after the script ran: {proxy.cuts}")

    def evidence(d, f, v):
        gate, claim = proxy.cuts.get(b":rsv:", 0), proxy.cuts.get(b":user:", 0)
        return gate >= 3 and claim >= 3, f"replies lost: {gate} of the consumers' gate, {claim} of the edge's claims"

    with servers.Redis() as redis:
        proxy = CuttingProxy(redis.port)
        try:
            scenario(t, "redis-replies-lost", fault, evidence=evidence,
                     d=chaos_daemon(redis=redis, overrides={"redis": {"port": proxy.port}}))
        finally:
            proxy.close()


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_redis_flush, test_redis_aof, test_redis_replies_lost)
