# SPDX-License-Identifier: BSD-2-Clause
"""test_kafka_topics.py: on a real Kafka cluster couponsd never creates topics, and it does not become ready while
a topic is missing or the issue topic's partition count is not kafka.partitions (SPEC 3): no READY=1 at start,
/readyz 503 with the reason, issue requests 503 (never a 202 for an event no consumer would read), and ready as
soon as an operator fixes the topics. And a consumer started while the cluster does not answer is assigned its
partition once it does (at the committed offset it reads itself: librdkafka 2.0.2 can lose an assignment "at
the stored offset", see docs/data.md). On the embedded cluster the daemon makes its own topics: the file skips."""
import os
import re
import signal
import sys
import time

import servers
from harness import REAL_KAFKA, Daemon, wait_for
from tap import Tap


def topics_of(d):
    return [d.topic(w) for w in ("topic", "results_topic", "dlq_topic")]


def ready_message(d):
    try:
        status, body, _ = d.get_json("/readyz")
        return status, (body or {}).get("message", "")
    except OSError as e:
        return None, str(e)


def test_missing_topic(t):
    kafka = servers.shared_kafka()
    name = servers.unique_name("missing")
    overrides = {"kafka": {"brokers": kafka.bootstrap, "topic": f"{name}-issue", "results_topic": f"{name}-results",
                           "dlq_topic": f"{name}-dlq", "group_id": f"{name}-group", "partitions": 2}}
    with Daemon(overrides=overrides, redis=True, postgres=True, admin_token="tok", workers=1) as d:
        d.start(wait=False)
        t.ok(not d.wait_note("READY=1", 6), "no READY=1 while the issue topic does not exist", d.notes)
        t.ok(wait_for(lambda: "does not exist" in d.log(), 5), "the log says which topic is missing",
             d.log()[-1500:])
        status, msg = ready_message(d)
        t.ok(status == 503 and f"kafka topic {name}-issue does not exist" in msg,
             "/readyz: 503 naming the missing topic", (status, msg))
        c = d.create_coupon(5)
        status, body, _ = d.issue(c, 7)
        t.ok(status == 503 and "does not exist" in (body or {}).get("message", ""),
             "an issue request gets 503 with the reason, not a 202", (status, body))
        kafka.create_topics(f"{name}-issue:2", f"{name}-results:2")
        t.ok(not d.wait_note("READY=1", 3), "still no READY=1 while the dead-letter topic is missing", d.notes)
        status, msg = ready_message(d)
        t.ok(status == 503 and f"{name}-dlq does not exist" in msg, "/readyz names the dead-letter topic now",
             (status, msg))
        kafka.create_topics(f"{name}-dlq:2")
        t.ok(d.wait_note("READY=1", 15), "READY=1 once every topic exists", d.log()[-1500:])
        t.ok(wait_for(lambda: ready_message(d)[0] == 200, 10), "/readyz: 200", ready_message(d))
        status, body, _ = d.issue(c, 7)
        t.eq(status, 202, "and an issue request is accepted")
        final = d.wait_final((body or {}).get("requestId"), timeout=20)
        t.eq((final or {}).get("status"), "ISSUED", "and decided")


def test_partition_mismatch(t):
    kafka = servers.shared_kafka()
    name = servers.unique_name("mismatch")
    kafka.create_topics(f"{name}-issue:3", f"{name}-results:2", f"{name}-dlq:2")
    overrides = {"kafka": {"brokers": kafka.bootstrap, "topic": f"{name}-issue", "results_topic": f"{name}-results",
                           "dlq_topic": f"{name}-dlq", "group_id": f"{name}-group", "partitions": 2}}
    with Daemon(overrides=overrides, redis=True, postgres=True, admin_token="tok", workers=1) as d:
        d.start(wait=False)
        t.ok(not d.wait_note("READY=1", 6), "no READY=1 while the issue topic has 3 partitions, not 2", d.notes)
        status, msg = ready_message(d)
        t.ok(status == 503 and "has 3 partitions, kafka.partitions is 2" in msg,
             "/readyz: 503 with both counts", (status, msg))
        d.set("kafka", "partitions", 3)
        rc, out, err = d.ctl("stop")
        t.ok(d.wait_exit(20) is not None, "the daemon stops while not ready", (rc, out, err))
    with Daemon(overrides=dict(overrides, kafka=dict(overrides["kafka"], partitions=3)), redis=True, postgres=True,
                admin_token="tok", workers=1) as d:
        t.ok(d.start(timeout=30) is d, "with kafka.partitions 3 it starts and reports READY=1")
        d.set("kafka", "partitions", 2)
        rc, out, err = d.ctl("reload")
        t.ok(rc == 0 and "kafka.partitions" in out and "restart" in out,
             "a reload to kafka.partitions 2 keeps the running 3 (restart-only) and says so", (rc, out, err))
        t.ok(wait_for(lambda: ready_message(d)[0] == 200, 10), "and the new generation is ready on the 3 partitions",
             ready_message(d))


def test_consumer_starts_while_kafka_hangs(t):
    kafka = servers.shared_kafka()
    with Daemon(redis=True, postgres=True, admin_token="tok", workers=1, partitions=2) as d:
        d.start()
        t.ok(wait_for(lambda: ready_message(d)[0] == 200, 15), "ready", ready_message(d))
        c = d.create_coupon(10)
        status, body, _ = d.issue(c, 1)
        t.eq((d.wait_final((body or {}).get("requestId"), timeout=20) or {}).get("status"), "ISSUED",
             "a first request is decided (its partition has a committed offset)")
        time.sleep(6)  # auto.commit.interval.ms: the first decision's offset is committed
        for n in range(1, kafka.nodes + 1):
            kafka.node(n, "pause")
        try:
            victims = list(d.consumers().values())
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            retried = wait_for(lambda: "cannot read the committed offset" in d.log(), 20)
            t.ok(retried, "a consumer started while every broker hangs cannot read its committed offset, and "
                 "says it tries again", d.log()[-2000:])
        finally:
            for n in range(1, kafka.nodes + 1):
                kafka.node(n, "resume")
        assigned = wait_for(lambda: len(re.findall(r"assigned \S+ at offset [1-9]\d*", d.log())) >= 1, 40)
        t.ok(assigned, "once the brokers answer it is assigned at the committed offset", d.log()[-2000:])
        status, body, _ = d.issue(c, 2)
        t.eq(status, 202, "a new request is accepted")
        t.eq((d.wait_final((body or {}).get("requestId"), timeout=40) or {}).get("status"), "ISSUED",
             "and decided by the consumer that started while Kafka hung")
    kafka.heal([], 60)


if __name__ == "__main__":
    if not REAL_KAFKA:
        print("1..0 # SKIP the embedded cluster creates its own topics; this runs with COUPONSD_KAFKA=real")
        sys.exit(0)
    Tap().run(test_missing_topic, test_partition_mismatch, test_consumer_starts_while_kafka_hangs)
