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


def claim_ttl_ms(d, coupon, user):
    """The per-(coupon, user) claim's remaining lifetime in Redis (PTTL: -2 when it is gone)."""
    return int(d.redis.cli("PTTL", f"{d.redis_prefix}{{{coupon}}}:user:{user}"))


def test_lost_settle_never_issues_twice(t):
    """The 202 does not wait for the call that makes its claim last (http_issue.c, keep_claim): a worker killed
    between the two leaves the claim to expire after its first lifetime (kafka.produce_timeout + 5 s), and the user
    can then get a second 202. The fault http_settle_drop=U loses user U's settles, as that death would; user U+1's
    are kept (the control). The second request must be decided REJECTED ALREADY_ISSUED by the consumer's one row per
    (coupon, user): one unit issued, none lost."""
    lost, kept = 7, 8
    with Daemon({"kafka": {"produce_timeout": "1s"}}, faults=f"http_settle_drop={lost}", redis=True,
                postgres=True, admin_token=TOKEN, workers=1, partitions=1) as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(10, name="lost settle")
        first = {}
        for user in (lost, kept):
            st, body, _ = d.issue(c, user)
            t.eq(st, 202, f"user {user}: 202")
            first[user] = (body or {}).get("requestId")
            t.eq((d.wait_final(first[user], 20) or {}).get("status"), "ISSUED", f"user {user}: ISSUED")
        t.ok(claim_ttl_ms(d, c, kept) > 60_000, "the control's claim was made to last (issue.result_ttl: 24 h)",
             claim_ttl_ms(d, c, kept))
        t.ok(0 < claim_ttl_ms(d, c, lost) <= 6_000, "the lost settle's claim keeps its first lifetime (<= 6 s)",
             claim_ttl_ms(d, c, lost))
        st, body, _ = d.issue(c, lost)
        t.eq((st, (body or {}).get("error"), (body or {}).get("requestId")), (409, "ALREADY_REQUESTED", first[lost]),
             "until it expires, the claim still answers the user's retry with their request")
        t.ok(wait_for(lambda: claim_ttl_ms(d, c, lost) == -2, 10, step=0.2), "then the claim expires")
        st, body, _ = d.issue(c, lost)
        t.eq(st, 202, "the user gets a second 202: the window this test is about")
        second = (body or {}).get("requestId")
        final = d.wait_final(second, 20) or {}
        t.eq((final.get("status"), final.get("reason")), ("REJECTED", "ALREADY_ISSUED"),
             "the second request is REJECTED ALREADY_ISSUED")
        rows = d.sql(f"SELECT user_id, count(*) FROM issued_coupons WHERE coupon_id = {c} GROUP BY user_id")
        t.eq(sorted((int(u), int(n)) for u, n in rows), [(lost, 1), (kept, 1)], "one unit per user, none twice")
        t.eq(int(d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}")), 8, "8 of 10 units left")
        st, body, _ = d.issue(c, kept)
        t.eq((st, (body or {}).get("error")), (409, "ALREADY_REQUESTED"), "the control user is still told no")


if __name__ == "__main__":
    Tap().run(test_burst_is_batched, test_lost_settle_never_issues_twice)
