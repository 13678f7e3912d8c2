# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_real_kafka.py: the faults only a real Kafka cluster has (COUPONSD_KAFKA=real: a 3-node KRaft cluster,
replication factor 3, min.insync.replicas=2, started by scripts/kafka.sh), each during a flash sale:

    kafka-leader-kill      SIGKILL the leader of the hot coupon's partition; it comes back a few seconds later
    kafka-controller-kill  SIGKILL the active controller (the KRaft quorum leader)
    kafka-broker-pause     SIGSTOP the hot partition's leader past broker.session.timeout.ms, then SIGCONT
    kafka-two-down         two of three brokers SIGKILLed past kafka.produce_timeout: no write can reach
                           min.insync.replicas, so issue requests get 503 or 429 and never a 202 the cluster did
                           not take; everything accepted before is decided once they are back
    kafka-cluster-restart  every broker SIGKILLed, down past kafka.produce_timeout, started again: the log is on
                           disk, so everything accepted before is decided after

Each ends with invariants 1-5 and the figure line (lost, oversold, duplicates, drift all 0), plus the proof that
every 202 is in the Kafka log. On the embedded cluster the file skips: its faults are in test_chaos_kafka.py."""
import re
import sys

import chaos
from chaos import CONSUMER_KILLED, STOCKS, chaos_daemon, coupon_ids, partition_of, scenario
from harness import REAL_KAFKA, wait_for
from tap import Tap

HOT = partition_of(coupon_ids(STOCKS))  # the partition of the coupon with the most stock
DOWN_PAST_TIMEOUT = 8.0  # longer than kafka.produce_timeout (5 s): requests waiting on Kafka then get 503


def wait_new_leader(f, partition, old, timeout=20.0):
    """The node that leads partition once it is no longer old (-1 if none did within timeout). A query that
    fails (the admin client may try the stopped broker first) is only asked again."""
    got = wait_for(lambda: (lambda n: n if n not in (old, -1) else None)(f.kafka_leader(partition, quiet=True)),
                   timeout, 0.5)
    return got if got is not None else -1


def leader_fault(t, name, down, up, at, pause_s, why, took_over):
    """The hot partition's leader is taken down (down: kill or pause) at fraction at of the load, a new leader
    must take over, and pause_s later the old one comes back (up: start or resume)."""
    seen = {}

    def fault(f):
        seen["old"] = f.kafka_leader(HOT)  # asked first: a JVM start takes seconds on a loaded machine
        f.load.wait_until(at)
        f.kafka_node(seen["old"], down, f"leader of partition {HOT}{why}")
        seen["new"] = wait_new_leader(f, HOT, seen["old"])
        f.note(f"partition {HOT} is led by node {seen['new']} now")
        f.sleep(pause_s)
        f.kafka_node(seen["old"], up)
        f.kafka_heal()

    def evidence(d, f, v):
        return seen.get("new", -1) not in (-1, seen.get("old")), took_over.format(old=seen.get("old"), new=seen.get("new"), p=HOT)
    scenario(t, name, fault, duration=14.0, evidence=evidence)


def test_leader_kill(t):
    leader_fault(t, "kafka-leader-kill", "kill", "start", 0.3, 3.0, "",
                 "partition {p}'s leader (node {old}) died and node {new} took over")


def test_controller_kill(t):
    seen = {}

    def fault(f):
        seen["old"] = f.kafka_controller()
        f.load.wait_until(0.3)
        f.kafka_node(seen["old"], "kill", "the active controller")

        def new_controller():
            n = f.kafka_controller(quiet=True)
            return n if n not in (seen["old"], -1) else None
        seen["new"] = wait_for(new_controller, 20, 0.5)
        f.note(f"node {seen['new']} is the active controller now")
        f.sleep(2.0)
        f.kafka_node(seen["old"], "start")
        f.kafka_heal()

    def evidence(d, f, v):
        return seen.get("new") not in (None, -1, seen.get("old")), \
            f"the active controller (node {seen.get('old')}) died and node {seen.get('new')} was elected"
    scenario(t, "kafka-controller-kill", fault, duration=14.0, evidence=evidence)


def test_broker_pause(t):
    leader_fault(t, "kafka-broker-pause", "pause", "resume", 0.25, 2.0, "; broker.session.timeout.ms is 2.5 s",
                 "the stopped leader (node {old}) was fenced and node {new} led partition {p}")


def test_two_down(t):
    seen = {}

    def fault(f):
        seen["down"] = [n for n in range(1, 4) if n != f.kafka_controller()][:2]
        f.load.wait_until(0.25)
        for n in seen["down"]:
            f.kafka_node(n, "kill", "two of three: no write reaches min.insync.replicas=2")
        seen["at"] = f.load.elapsed()
        f.sleep(DOWN_PAST_TIMEOUT)
        seen["until"] = f.load.elapsed()
        for n in seen["down"]:
            f.kafka_node(n, "start")
        f.kafka_heal()

    def evidence(d, f, v):
        refused = v.answers.get("503", 0) + v.answers.get("429", 0)
        return refused > 0, f"with two brokers down, issue requests were refused with 503 or 429 ({refused})"
    scenario(t, "kafka-two-down", fault, duration=24.0, evidence=evidence)


def test_cluster_restart(t):
    """Also the real cluster's kafka-stall (test_chaos_kafka.py): consumers holding decided batches wait for their
    delivery reports through the event loop, so with daemon.worker_timeout at 3 s the watchdog kills none."""
    seen = {}

    def fault(f):
        f.load.wait_until(0.3)
        seen["before"] = f.d.consumers()
        for n in range(1, f.cluster.nodes + 1):
            f.kafka_node(n, "kill", "the whole cluster")
        f.sleep(DOWN_PAST_TIMEOUT)
        for n in range(1, f.cluster.nodes + 1):
            f.kafka_node(n, "start")
        f.kafka_heal()

    def evidence(d, f, v):
        after = d.consumers()
        t.ok(len(seen.get("before", {})) == chaos.PARTITIONS and after == seen["before"],
             "kafka-cluster-restart: the consumers are the ones that ran before the outage (none was restarted)",
             f"before {seen.get('before')}, after {after}")
        kills = re.findall(r".*" + CONSUMER_KILLED + r".*", d.log())
        t.ok(not kills, "kafka-cluster-restart: the watchdog killed no consumer (daemon.worker_timeout 3 s)",
             "\n".join(kills[:5]))
        n = v.answers.get("503", 0)
        return n > 0, f"with the whole cluster down, issue requests were refused with 503 ({n})"
    d = chaos_daemon(overrides={"daemon": {"worker_timeout": "3000ms"}})
    scenario(t, "kafka-cluster-restart", fault, d=d, duration=24.0, evidence=evidence)


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    if not REAL_KAFKA:
        print("1..0 # SKIP real-cluster faults need COUPONSD_KAFKA=real (scripts/test.sh's second pass); "
              "the embedded cluster's are in test_chaos_kafka.py")
        sys.exit(0)
    Tap().run(test_leader_kill, test_controller_kill, test_broker_pause, test_two_down, test_cluster_restart)
