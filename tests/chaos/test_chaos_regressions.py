# SPDX-License-Identifier: BSD-2-Clause
"""test_chaos_regressions.py: minimal reproductions of daemon bugs the chaos suite found, each one deterministic
and kept as an ordinary assertion once the bug is fixed (all of them are, today)."""
import json
import os
import signal
import threading
import time
import uuid

import chaos
from chaos import TOKEN
from harness import Daemon, hold_table_lock, http_request, iso_time, kafka_produce, wait_all_final, wait_for
from tap import Tap

def small_daemon():
    return Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1)


def event(coupon, user):
    return {"v": 1, "requestId": str(uuid.uuid4()), "couponId": coupon, "userId": user, "acceptedAt": iso_time(0)}


def test_released_unit_goes_to_the_next_in_line(t):
    """Invariant 4. Stock 2; one batch holds, in log order: user 1, user 1 again (a second requestId, as after
    Redis lost the user's claim), user 2, user 3. The gate reserves for the first two, so Redis says sold out
    to user 2; PostgreSQL then rejects the second request of user 1 (ALREADY_ISSUED) and its unit is given
    back after the batch. First come, first served says user 2 gets it, in this batch."""
    with small_daemon() as d:
        d.start()
        c = d.create_coupon(2, name="fcfs within a batch")
        bootstrap = d.kafka_bootstrap()
        consumer = d.consumers()["couponsd: consumer partition 0"]
        events = [event(c, 1), event(c, 1), event(c, 2), event(c, 3)]
        os.kill(consumer, signal.SIGSTOP)  # so that the four events make one batch
        try:
            for ev in events:
                kafka_produce(bootstrap, d.topic(), json.dumps(ev), key=c)
        finally:
            os.kill(consumer, signal.SIGCONT)
        finals = wait_all_final(d.port, [ev["requestId"] for ev in events], timeout=30)
        got = [((finals.get(ev["requestId"]) or {}).get("status"), (finals.get(ev["requestId"]) or {}).get("reason"))
               for ev in events]
        want = [("ISSUED", None), ("REJECTED", "ALREADY_ISSUED"), ("ISSUED", None), ("REJECTED", "SOLD_OUT")]
        t.ok(all(s in ("ISSUED", "REJECTED") for s, _ in got), "every event of the batch is decided", got)
        remaining = d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}")
        t.ok(got == want and remaining == "0",
             "user 2 gets the unit user 1's second request gave back; user 3 is SOLD_OUT; remaining 0",
             f"got {got}, remaining {remaining}\nwant {want}, remaining 0")
        t.eq(d.redis_stock(c), 0, "the Redis stock converged to PostgreSQL's remaining after the release")
        t.eq(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}"),
             str(2 - int(remaining)), "remaining + issued rows = total_quantity all the same")


def test_flushed_stock_of_a_sold_out_coupon(t):
    """Invariant 5 after a flush: a sold-out coupon's stock key must come back as 0."""
    with small_daemon() as d:
        d.start()
        c = d.create_coupon(1, name="sold out, then flushed")
        st, body, _ = d.issue(c, 1)
        t.eq((d.wait_final((body or {}).get("requestId"), 20) or {}).get("status"), "ISSUED",
             "the single unit is issued")
        d.redis.cli("DEL", d.stock_key(c))  # what a FLUSHALL or a restart without persistence does to it
        time.sleep(1.5)  # past the HTTP worker's coupon cache TTL (1 s): it has read remaining 0 by now
        st, body, _ = d.issue(c, 2)
        t.ok(st == 409 and (body or {}).get("error") == "SOLD_OUT" or st == 202,
             "the next user is refused (409 SOLD_OUT from PostgreSQL's remaining) or accepted", (st, body))
        back = wait_for(lambda: d.redis_stock(c) == 0, 5)
        t.ok(back, "the stock key is back at 0 (Redis stock = PostgreSQL remaining once traffic stops)",
             f"stock key {d.stock_key(c)} is {d.redis_stock(c)!r}")


def test_postgres_error_after_the_connection_is_gone(t):
    """An HTTP worker's PostgreSQL connection dies with queries queued on it (here: the first one waits for a
    lock, two more queue behind it, and the server terminates that backend). Each queued query must fail
    cleanly with the error, and the worker must live on."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1) as d:
        d.start()
        locker = hold_table_lock(d.pg, d.dbname, "coupons")
        answers = []

        def get(path):
            try:
                answers.append(http_request(d.port, "GET", path, timeout=15)[0])
            except Exception as e:  # noqa: BLE001 - a cut connection is the symptom
                answers.append(type(e).__name__)
        threads = [threading.Thread(target=get, args=(f"/api/coupons/{c}",)) for c in (1, 2, 3)]
        for th in threads:
            th.start()
            time.sleep(0.2)  # cold coupon metadata: one PostgreSQL query each, queued in this order
        waiting = lambda: d.sql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{d.dbname}' "  # noqa: E731
                                "AND wait_event_type = 'Lock'")
        t.ok(wait_for(waiting, 5), "the worker's first query waits for the lock, the others queue behind it")
        d.pg.psql("postgres", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                              f"'{d.dbname}' AND wait_event_type = 'Lock'")
        for th in threads:
            th.join(20)
        locker.communicate("ROLLBACK;\n", timeout=10)
        t.ok(len(answers) == 3, "every request got an answer or a cut connection", answers)
        d.stop()
        t.ok(all(a in (503, 404) for a in answers),
             "each queued request is answered (503, or 404 once the worker reconnects) and the worker lives on",
             f"answers {answers}")


if __name__ == "__main__":
    chaos.skip_under_distcheck()
    Tap().run(test_released_unit_goes_to_the_next_in_line, test_flushed_stock_of_a_sold_out_coupon,
              test_postgres_error_after_the_connection_is_gone)
