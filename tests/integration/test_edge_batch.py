# SPDX-License-Identifier: BSD-2-Clause
"""test_edge_batch.py: the HTTP edge sends one event-loop turn's claims of a coupon, and the claims it makes last
after Kafka's delivery reports, as one script call per coupon (src/http/redis_batch.c, docs/performance.md
"Round 2: the HTTP edge"), and each request still gets what a call of its own would give it: one 202 per user,
ALREADY_REQUESTED for the same user's other requests, even inside one batch."""
import collections
import json
import re

from harness import Daemon, issue_pipelined, wait_for
from tap import Tap

TOKEN = "edge-batch-token"


def script_calls(d):
    """EVAL + EVALSHA calls Redis has served so far (INFO commandstats)."""
    info = d.redis.cli("INFO", "commandstats")
    return sum(int(m.group(1)) for m in re.finditer(r"^cmdstat_eval(?:sha)?:calls=(\d+)", info, re.M))


def test_burst_is_batched(t):
    """2,000 users, each twice, pipelined 16 deep on 16 connections to one worker: requests of one turn share a
    call. Before batching, every 202 cost three script calls at the edge (claim, settle, PENDING)."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1,
                overrides={"issue": {"max_pending": 100000}}) as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(1_000_000, name="batched claims")
        users = list(range(1, 2001))
        before = script_calls(d)
        results = issue_pipelined(d.port, c, users + users, conns=16, depth=16)
        calls = script_calls(d) - before
        t.eq(len(results), 2 * len(users), "every request answered")
        by_user = collections.defaultdict(list)
        for user, st, _, body in results:
            by_user[user].append((st, (body or {}).get("error") if isinstance(body, dict) else None))
        twice = [u for u, a in by_user.items() if sorted(a) != [(202, None), (409, "ALREADY_REQUESTED")]]
        t.ok(not twice, "each user: one 202 and one 409 ALREADY_REQUESTED", [(u, by_user[u]) for u in twice[:3]])
        accepted = [body["requestId"] for _, st, _, body in results if st == 202]
        t.eq(len(accepted), len(users), "one 202 per user")
        # the consumer's gate and result writes add a few calls per batch of its own
        t.diag(f"{calls} script calls for {len(results)} requests, {len(accepted)} accepted")
        t.ok(calls < 2 * len(accepted), f"fewer than two script calls per 202 ({calls} for {len(accepted)})")
        t.ok(wait_for(lambda: int(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}")) ==
                      len(users), 60, step=0.3), "every 202 is issued")
        st, body = d.get(f"/api/requests/{accepted[-1]}")[:2]
        t.eq((st, json.loads(body).get("status") if st == 200 else body), (200, "ISSUED"), "its status says ISSUED")


if __name__ == "__main__":
    Tap().run(test_burst_is_batched)
