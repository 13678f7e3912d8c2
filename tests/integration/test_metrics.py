# SPDX-License-Identifier: BSD-2-Clause
"""test_metrics.py: GET /metrics sums the whole daemon through shared memory, and counters survive restarts."""
import json
import os
import re
import signal
import uuid

import harness
from harness import Daemon, wait_for
from tap import Tap


def scrape(d):
    status, body, headers = d.get("/metrics")
    return status, body, headers


def value(body, name, labels=""):
    """The sample `name{labels}` (labels as written, "" for none), or None."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" ([0-9.e+]+)$"
    m = re.search(pattern, body, re.M)
    return float(m.group(1)) if m else None


def issued_total(d):
    return value(scrape(d)[1], "couponsd_issued_total") or 0


def test_exposition(t):
    with Daemon(redis=True, postgres=True, admin_token="secret", workers=2) as d:
        d.start()
        status, body, headers = scrape(d)
        t.eq(status, 200, "GET /metrics answers 200")
        t.ok(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
             "Prometheus text exposition content type", headers)
        for name in ("couponsd_http_requests_total", "couponsd_http_request_duration_seconds",
                     "couponsd_kafka_produce_duration_seconds", "couponsd_kafka_produce_errors_total",
                     "couponsd_kafka_produce_held_total", "couponsd_kafka_deliveries_inferred_total",
                     "couponsd_issued_total", "couponsd_rejected_total",
                     "couponsd_compensations_total",
                     "couponsd_dlq_messages_total", "couponsd_redis_errors_total",
                     "couponsd_postgres_errors_total", "couponsd_worker_restarts_total",
                     "couponsd_reloads_total", "couponsd_consumer_lag"):
            t.ok(f"# TYPE {name} " in body, f"{name} is exposed")
        lag = wait_for(lambda: len(re.findall(r'^couponsd_consumer_lag\{partition="[01]"\} \d+$', scrape(d)[1],
                                              re.M)) == 2, 10)
        t.ok(lag, "consumer lag for both partitions (reported once each consumer has fetched)", scrape(d)[1][-800:])
        for line in body.splitlines():
            if not line.startswith("#") and not re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$', line):
                t.ok(False, f"malformed sample line {line!r}")
                break
        else:
            t.ok(True, "every sample line is well formed")


def test_counters_move_and_survive(t):
    with Daemon(redis=True, postgres=True, admin_token="secret", workers=2) as d:
        d.start()
        c = d.create_coupon(3)
        before = scrape(d)[1]
        base = value(before, "couponsd_http_requests_total", 'route="issue",status="202"') or 0
        rids = []
        for user in range(1, 6):
            st, body, _ = d.issue(c, user)
            if st == 202:
                rids.append(body["requestId"])
        for rid in rids:
            d.wait_final(rid, 20)
        body = scrape(d)[1]
        t.eq((value(body, "couponsd_http_requests_total", 'route="issue",status="202"') or 0) - base, len(rids),
             f"issue 202s counted across both workers ({len(rids)})")
        t.ok(wait_for(lambda: issued_total(d) == 3, 10), "issued_total is 3 (stock 3)", body[-2000:])
        rejected = value(scrape(d)[1], "couponsd_rejected_total", 'reason="SOLD_OUT"') or 0
        t.eq(rejected, len(rids) - 3, "rejected_total{reason=SOLD_OUT} counts the other decisions")
        # Every event once more, as a consumer restarted before its offsets were committed reads them: replays
        # are not new decisions. One more request behind them (same coupon, same partition) marks their end.
        events = harness.kafka_consume(d.kafka_bootstrap(), d.topic())
        for m in events:
            harness.kafka_produce(d.kafka_bootstrap(), d.topic(), m["value"].encode("latin-1"), key=m["key"],
                                  partition=m["partition"], headers=m["headers"])
        fresh = json.loads(events[-1]["value"])
        fresh.update(requestId=str(uuid.uuid4()), userId=99)
        harness.kafka_produce(d.kafka_bootstrap(), d.topic(), json.dumps(fresh), key=events[-1]["key"],
                              partition=events[-1]["partition"])
        t.eq((d.wait_final(fresh["requestId"], 20) or {}).get("status"), "REJECTED",
             f"the {len(events)} events replayed, then a new request behind them, rejected (sold out)")
        after_replay = scrape(d)[1]
        t.eq((value(after_replay, "couponsd_issued_total"), value(after_replay, "couponsd_rejected_total",
                                                                   'reason="SOLD_OUT"')),
             (3.0, float(len(rids) - 3 + 1)),
             "replayed events count no decision twice: issued_total stays 3, SOLD_OUT only gains the new one")
        t.ok((value(body, "couponsd_kafka_produce_duration_seconds_count") or 0) >= len(rids),
             "produce latency observed for every event")
        # SIGKILL everything that counted: the counts live in the master's memory, not the workers'.
        for pid in d.http_workers() + list(d.consumers().values()):
            os.kill(pid, signal.SIGKILL)
        t.ok(wait_for(lambda: d.has_processes(http=2, consumers=2), 10), "workers restarted")
        after = wait_for(lambda: scrape(d)[1], 5)
        t.ok((value(after, "couponsd_http_requests_total", 'route="issue",status="202"') or 0) - base >= len(rids),
             "request counts survive the SIGKILL of every worker")
        t.eq(value(after, "couponsd_issued_total"), 3.0, "issued_total survives consumer SIGKILLs")
        t.ok((value(after, "couponsd_worker_restarts_total", 'role="http"') or 0) >= 2,
             "worker restarts counted by role")
        d.signal(signal.SIGHUP)
        t.ok(wait_for(lambda: (value(scrape(d)[1], "couponsd_reloads_total", 'result="ok"') or 0) >= 1, 15),
             "a reload is counted")


def test_disabled(t):
    with Daemon(redis=True, postgres=True, overrides={"metrics": {"enabled": False}}) as d:
        d.start()
        status, body, _ = scrape(d)
        t.eq(status, 404, "metrics.enabled: false turns /metrics off (404)")


if __name__ == "__main__":
    Tap().run(test_exposition, test_counters_move_and_survive, test_disabled)
