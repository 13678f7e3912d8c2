# SPDX-License-Identifier: BSD-2-Clause
"""test_prune.py: what the consumers' pruning of old rejections may delete (issue 11, item 15a). A rejection is
kept past issue.result_ttl while a replay can still bring its event back (its offset is at or above the group's
committed offset), so a replay finds the first decision instead of deciding again; below the committed offset it
is pruned once older than issue.result_ttl."""
import json
import os
import signal
import time
import uuid

from harness import Budget, Daemon, iso_time, kafka_consume, kafka_produce, wait_for
from tap import Tap

TOKEN = "prune-token"
BUDGET = Budget(240)
PRUNE_MS = 300


def rejected_row(d, rid):
    rows = d.sql(f"SELECT kafka_offset, kafka_partition FROM rejected_requests WHERE request_id = '{rid}'")
    return rows[0] if rows else None


def offset_in_log(d, rid):
    for m in kafka_consume(d.kafka_bootstrap(), d.topic(), partition=0):
        try:
            if json.loads(m["value"]).get("requestId") == rid:
                return str(m["offset"])
        except ValueError:
            pass
    return None


def sold_out_rejection(t, d, user):
    """A coupon of 1 issued to user, then a request of user + 1 decided REJECTED SOLD_OUT: (coupon, event)."""
    bootstrap = d.kafka_bootstrap()
    c = d.create_coupon(1, name=f"prune {user}")
    first = {"v": 1, "requestId": str(uuid.uuid4()), "couponId": c, "userId": user, "acceptedAt": iso_time(0)}
    late = dict(first, requestId=str(uuid.uuid4()), userId=user + 1)
    kafka_produce(bootstrap, d.topic(), json.dumps(first), key=c)
    kafka_produce(bootstrap, d.topic(), json.dumps(late), key=c)
    got = d.wait_final(late["requestId"], BUDGET.left(20)) or {}
    t.eq((got.get("status"), got.get("reason")), ("REJECTED", "SOLD_OUT"), "stock 1: the second user is SOLD_OUT")
    return c, late


def test_replayable_rejection_is_kept(t):
    """Auto commit every 10 minutes: the rejection's offset stays above the committed offset. Past
    issue.result_ttl (1 s) the pruning (every 0.3 s here) must keep its row. Then Redis forgets the request, a
    unit comes free, and the consumer is SIGKILLed: its successor replays the log from the committed offset, and
    the request must keep its first decision. Pruned by age alone, as before, the replay decided it again: ISSUED."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1,
                faults=f"consumer_prune_every={PRUNE_MS}",
                overrides={"issue": {"result_ttl": "1s"},
                           "kafka": {"consumer": {"auto.commit.interval.ms": "600000"}}}) as d:
        d.start()
        c, late = sold_out_rejection(t, d, 900)
        row = rejected_row(d, late["requestId"])
        t.eq(row, [offset_in_log(d, late["requestId"]), "0"], "the rejection's row has its event's offset")
        time.sleep(1.0 + 4 * PRUNE_MS / 1000)
        t.ok(rejected_row(d, late["requestId"]) is not None,
             "past issue.result_ttl, a rejection above the committed offset is kept")
        # Redis forgets the request and the stock; a unit becomes free (as a compensation would free one).
        d.redis.cli("DEL", d.stock_key(c), d.stock_key(c).replace(":stock", f":rsv:{late['requestId']}"),
                    f"{d.redis_prefix}req:{{{late['requestId']}}}")
        d.sql(f"UPDATE coupons SET total_quantity = 2, remaining = 1 WHERE id = {c}")
        victim = d.consumers()["couponsd: consumer partition 0"]
        os.kill(victim, signal.SIGKILL)  # no final commit: the successor replays from the committed offset
        t.ok(wait_for(lambda: d.consumers().get("couponsd: consumer partition 0") not in (None, victim),
                      BUDGET.left(30)), "the master started a new consumer")
        nxt = {"v": 1, "requestId": str(uuid.uuid4()), "couponId": c, "userId": 950, "acceptedAt": iso_time(0)}
        kafka_produce(d.kafka_bootstrap(), d.topic(), json.dumps(nxt), key=c)  # behind the replayed ones
        got = d.wait_final(nxt["requestId"], BUDGET.left(30)) or {}
        t.eq(got.get("status"), "ISSUED", "the free unit goes to the next request in the log")
        got = d.request_status(late["requestId"])[1] or {}
        t.eq((got.get("status"), got.get("reason")), ("REJECTED", "SOLD_OUT"),
             "the replayed request keeps its first decision, REJECTED SOLD_OUT")
        t.eq(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE request_id = '{late['requestId']}'"), "0",
             "no issued row for the replayed rejection")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report", text)


def test_committed_rejection_is_pruned(t):
    """With auto commit at its default (5 s), the rejection's offset falls below the committed offset: once it
    is older than issue.result_ttl, the pruning deletes it, and a row written without an offset (before
    migration 0005) goes by age alone."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1,
                faults=f"consumer_prune_every={PRUNE_MS}", overrides={"issue": {"result_ttl": "1s"}}) as d:
        d.start()
        _, late = sold_out_rejection(t, d, 990)
        old = str(uuid.uuid4())
        d.sql(f"INSERT INTO rejected_requests (request_id, coupon_id, user_id, reason, kafka_partition) "
              f"VALUES ('{old}', 1, 1, 'SOLD_OUT', 0)")
        t.ok(wait_for(lambda: rejected_row(d, old) is None, 10, step=0.2),
             "a rejection without an offset is pruned once older than issue.result_ttl")
        t.ok(wait_for(lambda: rejected_row(d, late["requestId"]) is None, 30, step=0.3),
             "a rejection below the committed offset is pruned once older than issue.result_ttl")
        t.ok("pruned " in d.log(), "the consumer logged what it pruned")


if __name__ == "__main__":
    Tap().run(test_replayable_rejection_is_kept, test_committed_rejection_is_pruned)
