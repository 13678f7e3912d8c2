# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_reload.py: a storm of SIGHUPs during load: every reload is a generation change (HTTP workers
replaced, each consumer hands its partition to a successor), and no connection, request or unit of stock is
lost or counted twice."""

import chaos
from chaos import log_count, scenario
from tap import Tap


def test_sighup_storm(t):
    def fault(f):
        f.load.wait_until(0.1)
        while f.load.elapsed() < 0.85 * f.load.duration:
            f.sighup()
            f.sleep(f.rng.uniform(0.2, 0.6))

    def evidence(d, f, v):
        n = log_count(d, r"master\[\d+\]: reloaded: ")
        return n >= 3, f"the storm made several generation changes ({n} reloads completed)"
    # No connection errors allowed: the listen sockets are shared, so a reload drops nothing (SPEC 1).
    v = scenario(t, "sighup-storm", fault, evidence=evidence)
    # Nor any 503: nothing but reloads happens here, and a new worker accepts only once its PostgreSQL and Redis
    # clients are up, so every request reaches a worker that can answer it (issue 11 item 16).
    t.ok(v.answers.get("503", 0) == 0, "sighup-storm: no 503 (no fault here but reloads)", dict(v.refusals))


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_sighup_storm)
