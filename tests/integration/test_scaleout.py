# SPDX-License-Identifier: BSD-2-Clause
"""test_scaleout.py: two daemons share one Kafka, Redis and PostgreSQL and split the partitions; a third that
claims an owned partition stands by (SPEC section 1: exactly one live consumer per partition, across hosts)."""
import re
import time

import servers
from harness import Budget, Daemon, issue_burst, parse_json, kafka_consume, kafka_partition, wait_all_final, wait_for
from tap import Tap

TOKEN = "scaleout-token"
PARTITIONS = 8
STOCK, USERS = 25, 300
BUDGET = Budget(75)  # the whole file stays under 90 s even when the pipeline never decides


def pick_coupons(first=1000):
    """Coupon ids whose key lands two on A's partitions (0-3), two on B's (4-7), and one on partition 5."""
    a, b, five = [], [], None
    cid = first
    while len(a) < 2 or len(b) < 2 or five is None:
        p = kafka_partition(cid, PARTITIONS)
        if p == 5 and five is None:
            five = cid
        elif p < 4 and len(a) < 2:
            a.append(cid)
        elif p >= 4 and len(b) < 2:
            b.append(cid)
        cid += 1
    return a + b, five


def same_kafka(a, bootstrap, owned):
    """kafka settings for a daemon that joins A's cluster: A's brokers (its embedded cluster's address, or the
    real cluster) and, on a real cluster, A's topics and consumer group too."""
    keys = {k: v for k, v in a.tree["kafka"].items() if k in ("topic", "results_topic", "dlq_topic", "group_id")}
    return {"kafka": dict(keys, brokers=bootstrap or "127.0.0.1:1", owned_partitions=owned)}


def consumer_partitions(d):
    return sorted(int(title.rsplit(" ", 1)[1]) for title in d.consumers())


def sale(t, daemons, coupons, first_user):
    """A flash sale on each coupon in turn, every burst spread over all the daemons' HTTP ports; then the
    invariants per coupon."""
    ports = [d.port for d in daemons]
    d = daemons[0]
    for i, c in enumerate(coupons):
        users = range(first_user + i * 10000, first_user + i * 10000 + USERS)
        answers = issue_burst(ports, c, list(users), threads=48, timeout=BUDGET.left(30))
        codes = {}
        for _, st, _ in answers:
            codes[st] = codes.get(st, 0) + 1
        part = kafka_partition(c, PARTITIONS)
        what = f"coupon {c} (partition {part})"
        t.diag(f"{what}: {codes}")
        t.eq(sum(n for st, n in codes.items() if st in (202, 409)), USERS, f"{what}: every request answered 202 or 409")
        accepted = [b.get("requestId") for _, st, b in answers if st == 202 and b]
        finals = wait_all_final(ports, accepted, timeout=BUDGET.left(20, 1))
        undecided = [r for r, f in finals.items() if (f or {}).get("status") not in ("ISSUED", "REJECTED")]
        t.eq(undecided[:5], [], f"{what}: every 202 ({len(accepted)}) reached a final status")
        issued = {r for r, f in finals.items() if (f or {}).get("status") == "ISSUED"}
        t.eq(len(issued), STOCK, f"{what}: issued = stock ({STOCK})")
        rows = int(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}"))
        users_n = int(d.sql_scalar(f"SELECT count(DISTINCT user_id) FROM issued_coupons WHERE coupon_id = {c}"))
        remaining = int(d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}"))
        t.eq((rows, users_n, remaining), (STOCK, STOCK, 0), f"{what}: PostgreSQL: {STOCK} rows, distinct users, "
                                                            "remaining 0")
        t.ok(wait_for(lambda: d.redis_stock(c) == 0, BUDGET.left(5)), f"{what}: Redis stock 0 = PostgreSQL remaining",
             d.redis_stock(c))
        events = sorted((m["offset"], ev.get("requestId"))
                        for m in kafka_consume(daemons[0].kafka_bootstrap(), daemons[0].topic(), partition=part)
                        for ev in [parse_json(m["value"])] if isinstance(ev, dict) and ev.get("couponId") == c)
        first = {r for _, r in events[:STOCK]}
        t.ok(first == issued, f"{what}: the issued are the first {STOCK} in log order",
             f"{len(first - issued)} of the first {STOCK} not issued, {len(issued - first)} issued later")


def test_scaleout(t):
    redis, pg = servers.shared()
    conninfo = pg.create_db(servers.unique_name("couponsd_so"))
    prefix = servers.unique_name("so") + ":"
    shared = dict(redis=redis, postgres=pg, postgres_conninfo=conninfo, redis_prefix=prefix, admin_token=TOKEN,
                  workers=2, partitions=PARTITIONS)
    coupons, five = pick_coupons()
    with Daemon(overrides={"kafka": {"owned_partitions": "0-3"}}, **shared) as a:
        a.start(timeout=45)
        bootstrap = a.kafka_bootstrap()
        t.ok(bootstrap, "daemon A has a Kafka bootstrap address (its embedded cluster's, or the real one)")
        t.eq(consumer_partitions(a), [0, 1, 2, 3], "daemon A consumes partitions 0-3")
        with Daemon(overrides=same_kafka(a, bootstrap, "4-7"), **shared) as b:
            b.start(timeout=45)
            t.eq(consumer_partitions(b), [4, 5, 6, 7], "daemon B (kafka.brokers = A's cluster) consumes partitions 4-7")
            t.ok(not b.kafka(), "daemon B runs no embedded Kafka of its own")
            for c in coupons + [five]:
                a.create_coupon(STOCK, name=f"scale-out {c}", coupon_id=c)
            st, cp, _ = b.get_json(f"/api/coupons/{coupons[0]}")
            t.eq((st, (cp or {}).get("totalQuantity")), (200, STOCK), "a coupon created through A is visible through B")
            started = time.monotonic()
            sale(t, [a, b], coupons, 1_000_000)
            t.diag(f"the sale over {len(coupons)} coupons took {time.monotonic() - started:.1f}s")
            third(t, a, b, shared, bootstrap, five)


def third(t, a, b, shared, bootstrap, five):
    """A third daemon that claims partition 5 (owned by B): its consumer stands by and decides nothing."""
    with Daemon(overrides=same_kafka(a, bootstrap, "5"), **shared) as c3:
        c3.start(wait=False)
        refused = wait_for(lambda: re.search(r"consumer partition 5\[\d+\]: standby, owned by node \S+ since",
                                             c3.log()), BUDGET.left(15, 3))
        t.ok(refused, "a third daemon claiming partition 5: its consumer stands by, naming the owner's node",
             "\n".join(c3.log().splitlines()[-15:]))
        t.ok(wait_for(lambda: c3.get("/healthz")[0] == 200, BUDGET.left(10)), "the third daemon still serves HTTP")
        users = list(range(5_000_000, 5_000_000 + 60))
        answers = issue_burst([c3.port], five, users, threads=16, timeout=BUDGET.left(20))
        accepted = [bd.get("requestId") for _, st, bd in answers if st == 202 and bd]
        finals = wait_all_final([c3.port, b.port], accepted, timeout=BUDGET.left(15, 1))
        issued = [r for r, f in finals.items() if (f or {}).get("status") == "ISSUED"]
        t.eq(len(issued), STOCK, f"requests for partition 5 sent through the third daemon are decided (by B): "
                                 f"{STOCK} issued")
        rows = a.sql(f"SELECT count(*), count(DISTINCT user_id), min(c.remaining) FROM issued_coupons i "
                     f"JOIN coupons c ON c.id = i.coupon_id WHERE coupon_id = {five}")
        t.eq(rows, [[str(STOCK), str(STOCK), "0"]], "partition 5's coupon: no oversell, no duplicate")
        t.ok(not any(r in c3.log() for r in issued), "the third daemon's log mentions none of the decided requests")
        metrics = c3.get("/metrics")
        if metrics[0] == 200:
            issued_n = sum(float(v) for v in re.findall(r"(?m)^couponsd_\w*issued\w*(?:\{[^}]*\})? (\S+)$", metrics[1]))
            t.eq(issued_n, 0.0, "the third daemon's metrics count no issued coupon")
        c3.stop()  # its consumers log what they decided as they stop
        stats = re.findall(r"consumer partition 5\[\d+\]: stopped; \d+ batches, (\d+) issued, rejected: (\d+) sold out, "
                           r"(\d+) already issued, (\d+) not found, (\d+) not open; (\d+) dead letters", c3.log())
        t.ok(all(set(row) == {"0"} for row in stats),
             f"the third daemon's consumer decided nothing ({len(stats)} exit summaries, all zero)", stats)


if __name__ == "__main__":
    Tap().run(test_scaleout)
