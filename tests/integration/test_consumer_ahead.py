# SPDX-License-Identifier: BSD-2-Clause
"""test_consumer_ahead.py: the consumer gates batch N+1 in Redis while PostgreSQL writes and commits batch N
(src/consumer/consumer.c, pregate(); docs/performance.md "Round 2c"). A backlog of one coupon in batches of 16,
with the transaction of the first batch that has a batch gated ahead failing (fault consumer_fail_commit_ahead):
batch N is retried before N+1 runs, nothing is lost or decided twice, first come first served holds, and no
reservation is made twice or forgotten (Redis stock never drifts from PostgreSQL's remaining)."""
import os
import subprocess

from harness import BIN, Daemon, wait_for
from tap import Tap

TOKEN = "consumer-ahead-token"


def kfeed_bin():
    """bench/kfeed of the build the daemon under test comes from (an EXTRA_PROGRAM: built on demand)."""
    builddir = os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
    path = os.path.join(builddir, "bench", "kfeed")
    if not os.access(path, os.X_OK):
        subprocess.run(["make", "-C", builddir, "bench/kfeed"], capture_output=True, timeout=300)
    return path


def feed(d, coupon, user_base, count):
    """count distinct events of coupon straight into the issue topic, users user_base, user_base + 1, ..."""
    r = subprocess.run([kfeed_bin(), "-b", d.kafka_bootstrap(), "-t", d.topic(), "-C", str(coupon),
                        "-U", str(user_base), "-n", str(count)], capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"kfeed failed: {r.stderr.decode(errors='replace')[-1000:]}")


def test_failure_with_a_batch_ahead(t):
    """Stock 250. 200 new users, then 100 of them again (gated: reserved, then ALREADY_ISSUED in PostgreSQL and
    given back), then 100 new users (50 issued, 50 sold out), in batches of 16."""
    with Daemon(redis=True, postgres=True, admin_token=TOKEN, workers=1, partitions=1,
                faults="consumer_fail_commit_ahead=0",
                overrides={"issue": {"batch_size": 16}}) as d:
        d.start()
        c = d.create_coupon(250, name="gated ahead")
        feed(d, c, 1000, 200)
        feed(d, c, 1100, 100)
        feed(d, c, 2000, 100)

        def decided():
            return int(d.sql_scalar(f"SELECT (SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}) + "
                                    f"(SELECT count(*) FROM rejected_requests WHERE coupon_id = {c})"))
        t.ok(wait_for(lambda: decided() >= 400, 90, step=0.3), f"every event decided ({decided()} of 400)")
        log = d.log()
        t.ok("fault injection: failing a transaction while the next batch is gated ahead" in log,
             "the fault fired: a transaction failed with the next batch gated ahead")
        t.ok("met a concurrent writer; retrying" in log, "the failed batch was retried")
        issued = [int(row[0]) for row in d.sql(f"SELECT user_id FROM issued_coupons WHERE coupon_id = {c} "
                                               "ORDER BY id")]
        want = list(range(1000, 1200)) + list(range(2000, 2050))
        t.eq(issued, want, "first come, first served: users 1000-1199, then 2000-2049, in log order")
        rejected = d.sql(f"SELECT reason, count(*) FROM rejected_requests WHERE coupon_id = {c} "
                         "GROUP BY reason ORDER BY reason")
        t.eq(rejected, [["ALREADY_ISSUED", "100"], ["SOLD_OUT", "50"]], "100 repeats ALREADY_ISSUED, 50 SOLD_OUT")
        t.eq(d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}"), "0", "PostgreSQL remaining 0")
        t.eq(d.redis_stock(c), 0, "Redis stock 0: every reservation made once and every release given back")
        t.ok("drifted" not in log, "Redis stock never drifted from PostgreSQL's remaining",
             [line for line in log.splitlines() if "drifted" in line][:3])
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer reports", text)


if __name__ == "__main__":
    Tap().run(test_failure_with_a_batch_ahead)
