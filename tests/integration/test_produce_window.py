# SPDX-License-Identifier: BSD-2-Clause
"""test_produce_window.py: the HTTP producer's flow control per partition (src/http/producer.c, gate_t). While
five of a partition's events await their delivery reports, the next ones wait in the worker, in order, and go to
librdkafka together when a report comes (librdkafka 2.0.2 would otherwise spin on them, docs/performance.md
round 2e). Held events must keep their order, all reach Kafka, and fail with 503 like librdkafka's own when
they wait kafka.produce_timeout. The gate is on for real brokers; on the embedded mock only with the test-build
fault http_produce_gate (its acks come at once, and holding would cost a loop turn per batch), which these
tests set."""
import re
import threading
import time

import harness
from harness import Daemon, issue_burst, issue_pipelined, kafka_consume, parse_json, wait_for
from tap import Tap

TOKEN = "produce-window-token"
GATE = "http_produce_gate=1"


def metric(d, name):
    m = re.search(r"^" + re.escape(name) + r" ([0-9.e+]+)$", d.get("/metrics")[1], re.M)
    return float(m.group(1)) if m else 0


def log_of(d, c, partition):
    """The issue events of coupon c in the partition's log, in log order."""
    events = [parse_json(m["value"]) for m in kafka_consume(d.kafka_bootstrap(), d.topic(), partition=partition)]
    return [e for e in events if isinstance(e, dict) and e.get("couponId") == c]


def issued_in_order(t, d, c, accepted, why):
    """Every accepted request of coupon c (one partition, one worker) is issued, and partition 0's log holds
    each once, in the order the worker accepted them (acceptedAt never goes back)."""
    t.ok(wait_for(lambda: int(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}")) ==
                  len(accepted), 90, step=0.3), "every 202 is issued")
    mine = log_of(d, c, 0)
    t.eq(sorted(e["requestId"] for e in mine), sorted(accepted), "the log holds each accepted event once")
    at = [e["acceptedAt"] for e in mine]
    back = [(i, at[i - 1], at[i]) for i in range(1, len(at)) if at[i] < at[i - 1]]
    t.ok(not back, f"in the log, acceptedAt never goes back: {why}", back[:5])
    t.eq(metric(d, "couponsd_kafka_produce_errors_total"), 0, "no produce failed")
    clean, text = d.sanitizer_clean()
    t.ok(clean, "no sanitizer report", text)


def test_held_events_keep_their_order(t):
    """3,000 users pipelined 16 deep on 16 connections to one worker, one coupon, one partition: a loop turn's
    claims produce dozens of events at once, so most are held. All are issued, and the partition's log has them
    in the order the worker accepted them (acceptedAt never goes back)."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1, faults=GATE,
                overrides={"issue": {"max_pending": 100000}}) as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(1_000_000, name="held in order")
        users = list(range(1, 3001))
        results = issue_pipelined(d.port, c, users, conns=16, depth=16)
        accepted = [body["requestId"] for _, st, _, body in results if st == 202]
        t.eq(len(accepted), len(users), "every user is accepted")
        held = metric(d, "couponsd_kafka_produce_held_total")
        t.diag(f"{held:.0f} of {len(accepted)} events were held for their partition's window")
        t.ok(held > 0, "some events waited for the window (the path under test ran)", held)
        issued_in_order(t, d, c, accepted, "held events kept their order")


def test_held_events_time_out(t):
    """The embedded brokers answer 8 s late and kafka.produce_timeout is 3 s: the first five events of the
    partition time out in librdkafka, the ones held behind them in the worker. Every request gets 503 within the
    timeout, the 1 s between librdkafka's timeout scans and a margin: a held event's wait counts against its timeout, it does not start a second one in
    librdkafka when the first five fail and the window opens (that took twice the timeout). None is left
    hanging, and each user's claim is dropped: asked again once Kafka
    answers, each is accepted and ends with exactly one coupon."""
    if harness.REAL_KAFKA:
        t.skip("held events time out", "needs the embedded Kafka's rtt fault to hold the first ones")
        return
    with Daemon({"kafka": {"produce_timeout": "3s"}}, workers=1, partitions=1, redis=True, postgres=True,
                admin_token=TOKEN, faults=GATE) as d:
        d.start()
        c = d.create_coupon(1000)
        users = list(range(500, 540))
        t.eq(d.ctl("kafka rtt all 8000")[0], 0, "every embedded broker answers 8 s late")
        held0 = metric(d, "couponsd_kafka_produce_held_total")
        start = time.monotonic()
        results = issue_burst([d.port], c, users, threads=len(users), timeout=30)
        took = time.monotonic() - start
        codes = sorted({str(st) for _, st, _ in results})
        t.eq((len(results), codes), (len(users), ["503"]), "every request is answered 503")
        # librdkafka's own timeouts come at its next scan (once a second) past the 3 s: up to 4 s. Before a held
        # event's wait counted, the held ones started a second timeout when the first five failed: 6 s or more.
        t.ok(took < 3.0 + 1.0 + 1.5, f"all answered within kafka.produce_timeout, 1 s and 1.5 s ({took:.2f} s)")
        held = metric(d, "couponsd_kafka_produce_held_total") - held0
        t.ok(held >= len(users) - 5 * 2, "the events behind the first five were held", held)
        t.diag(f"{held:.0f} of {len(users)} events were held; all answered in {took:.2f} s")
        d.ctl("kafka rtt all 0")
        again = {}

        def ask(user):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    st, body, _ = d.issue(c, user, timeout=10)
                except OSError:
                    st, body = None, None
                if st == 202:
                    again[user] = body["requestId"]
                    return
                time.sleep(0.2)
        threads = [threading.Thread(target=ask, args=(u,)) for u in users]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t.eq(sorted(again), users, "each user asks again and is accepted: every claim was dropped")
        t.ok(wait_for(lambda: d.sql_scalar(f"SELECT count(DISTINCT user_id) FROM issued_coupons "
                                           f"WHERE coupon_id = {c}") == str(len(users)), 30, step=0.3),
             "every user ends with a coupon")
        t.eq(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}"), str(len(users)),
             "and only one each")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report", text)


def lane_moves(d):
    body = d.get("/metrics")[1]
    return {to: float(m.group(1)) if (m := re.search(r'^couponsd_kafka_produce_lane_moves_total\{to="' + to +
                                                       r'"\} ([0-9.e+]+)$', body, re.M)) else None
            for to in ("fast", "slow")}


def test_lanes_keep_order(t):
    """Two lanes (produce_gate.h): a partition moves to the fast producer at fast_at events per 50 ms (the fault
    http_lane_fast_at lowers it to 20, 400/s) and back after a slower window, each move waiting for the old
    lane's reports while the new events are held. One worker, one partition: bursts of 1,500 pipelined users
    (fast) alternate with users one at a time, 100 ms apart (slow), three times. Both moves happen in each
    direction, every user is issued, and the log has each accepted event once in the order the worker accepted
    them: held events kept their order across the two producers."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1,
                faults="http_lane_fast_at=20", overrides={"issue": {"max_pending": 100000}}) as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(1_000_000, name="two lanes")
        accepted, user = [], 1
        for _ in range(3):
            results = issue_pipelined(d.port, c, list(range(user, user + 1500)), conns=16, depth=16)
            accepted += [body["requestId"] for _, st, _, body in results if st == 202]
            user += 1500
            for _ in range(4):
                time.sleep(0.1)
                st, body, _ = d.issue(c, user)
                accepted += [body["requestId"]] if st == 202 else []
                user += 1
        t.eq(len(accepted), user - 1, "every user is accepted")
        moves = lane_moves(d)
        t.diag(f"lane moves: {moves}; held: {metric(d, 'couponsd_kafka_produce_held_total'):.0f}")
        t.ok(moves["fast"] is not None and moves["fast"] >= 3, "each burst moved the partition to the fast lane",
             moves)
        t.ok(moves["slow"] is not None and moves["slow"] >= 3, "each slow spell moved it back", moves)
        issued_in_order(t, d, c, accepted, "the moves kept the order")


def test_operator_linger_one_lane(t):
    """kafka.producer sets linger.ms: the operator's linger serves every partition from one producer, and the
    same burst moves nothing."""
    with Daemon({"kafka": {"producer": {"linger.ms": "2"}}, "issue": {"max_pending": 100000}}, redis=True,
                postgres=True, admin_token=TOKEN, workers=1, partitions=1, faults="http_lane_fast_at=20") as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(1_000_000, name="one lane")
        results = issue_pipelined(d.port, c, list(range(1, 1501)), conns=16, depth=16)
        t.eq(sum(1 for _, st, _, _ in results if st == 202), 1500, "every user is accepted")
        t.eq(lane_moves(d), {"fast": 0, "slow": 0}, "no partition changed lanes")


def test_embedded_default_holds_nothing(t):
    """Without the fault, the embedded cluster's HTTP producer gives every event to librdkafka at once (one
    lane here: a lane move holds a partition's events too, test_lanes_keep_order)."""
    if harness.REAL_KAFKA:
        t.skip("the embedded default", "on real brokers the gate is always on (test_held_events_keep_their_order)")
        return
    with Daemon({"kafka": {"producer": {"linger.ms": "1"}}, "issue": {"max_pending": 100000}}, redis=True,
                postgres=True, admin_token=TOKEN, workers=1, partitions=1) as d:
        d.start()
        wait_for(lambda: d.get("/readyz")[0] == 200, 20)
        c = d.create_coupon(1_000_000, name="not held")
        results = issue_pipelined(d.port, c, list(range(1, 1001)), conns=16, depth=16)
        t.eq(sum(1 for _, st, _, _ in results if st == 202), 1000, "every user is accepted")
        t.eq(metric(d, "couponsd_kafka_produce_held_total"), 0, "no event was held")


if __name__ == "__main__":
    Tap().run(test_held_events_keep_their_order, test_held_events_time_out, test_lanes_keep_order,
              test_operator_linger_one_lane, test_embedded_default_holds_nothing)
