# SPDX-License-Identifier: BSD-2-Clause
"""test_reload.py: a reload is a generation change that never drops a request and never splits a partition."""
import re
import signal
import time

import harness
from harness import Daemon, RequestLoop, wait_for
from tap import Tap


def test_broken_file_keeps_running(t):
    with Daemon() as d:
        d.start()
        before = sorted(d.http_workers())
        good = open(d.config_path).read()
        d.write_config(good + "http:\n  workers: lots\n")
        n = len(d.notes)
        d.signal(signal.SIGHUP)
        t.ok(d.wait_note("refused", 10, n), "SIGHUP with a broken file: the reload is refused")
        t.ok(re.search(r"reload refused: .*couponsd\.yaml:\d+:\d+: ", d.log()), "every error is logged with file:line:column",
             d.log()[-1500:])
        t.eq(sorted(d.http_workers()), before, "the running workers are untouched")
        t.eq(d.get("/healthz")[0], 200, "and still serving")
        rc, out, err = d.ctl("reload")
        t.eq(rc, 1, "-s reload with the broken file exits 1")
        t.ok(re.search(r"couponsd\.yaml:\d+:\d+: ", err), "and prints the error with file:line:column", err)
        d.write_config(good.replace("workers: 2", "workers: 3"))
        rc, out, err = d.ctl("reload")
        t.eq(rc, 0, "a good file after a bad one reloads (-s reload exits 0)")
        now = d.http_workers()
        t.ok(wait_for(lambda: d.has_processes(http=3, without=before), 10),
             "a new generation of 3 workers replaced the old 2", (before, now))


def test_workers_change_under_load(t):
    with Daemon() as d:
        d.start()
        load = RequestLoop(d.port)
        time.sleep(0.5)
        d.set("http", "workers", 3)
        n = len(d.notes)
        d.signal(signal.SIGHUP)
        reloaded = d.wait_note("STATUS=reloaded", 15, n)
        t.ok(reloaded, "SIGHUP with http.workers: 3 reloads")
        time.sleep(1.5)  # let the old generation drain while requests keep coming
        answers = load.stop()
        t.ok(wait_for(lambda: len(d.http_workers()) == 3, 10), "three http workers afterwards")
        t.ok(answers.get(200, 0) > 50, f"the load loop ran ({answers.get(200, 0)} requests)")
        t.eq({k: n for k, n in answers.items() if k != 200}, {}, "zero failed requests across the reload")


def test_restart_only_key_is_reported(t):
    with Daemon() as d:
        d.start()
        old_port = d.port
        d.set("http", "listen", [f"127.0.0.1:{old_port + 1 if old_port < 65535 else old_port - 1}"])
        rc, out, err = d.ctl("reload")
        t.eq(rc, 0, "a reload changing http.listen is accepted")
        t.ok("http.listen" in out and "restart" in out, "and says http.listen needs a restart", out + err)
        t.ok("http.listen" in d.log(), "the log says so too")
        t.eq(d.get("/healthz")[0], 200, "still serving on the original address")


def test_data_names_are_restart_only(t):
    """A renamed topic, group or Redis prefix would strand the draining generation's data under the old names;
    a new partition count would send events where no consumer reads. The new generation keeps the running
    values (with embedded Kafka the renamed topic does not even exist, so new workers on it never get ready)."""
    with Daemon(overrides={"daemon": {"worker_timeout": "3s"}}) as d:
        d.start()
        changed = {"topic": "renamed-issue", "results_topic": "renamed-results", "dlq_topic": "renamed-dlq",
                   "group_id": "renamed-group", "partitions": 3}
        for key, value in changed.items():
            d.tree["kafka"][key] = value
        d.tree.setdefault("redis", {})["key_prefix"] = "renamed:"
        d.write_config()
        rc, out, err = d.ctl("reload")
        t.ok(rc == 0, "a reload renaming the topics, the group and the prefix is accepted", out + err)
        names = [f"kafka.{k}" for k in changed] + ["redis.key_prefix"]
        missing = [n for n in names if f"{n}: changing it needs a restart" not in out]
        t.ok(not missing, "the answer names each as needing a restart", [missing, out])
        missing = [n for n in names if f"reload: {n}: changing it needs a restart" not in d.log()]
        t.eq(missing, [], "and so does the log")
        t.ok(wait_for(lambda: d.has_processes(http=2, consumers=2), 10),
             "the new generation runs with the running values: two workers, the two partitions' consumers",
             d.children())
        t.ok("renamed" not in d.log().split("reload: starting generation")[-1], "no process uses a new name")
        t.eq(d.get("/healthz")[0], 200, "still serving")


def test_sighup_storm_coalesces(t):
    with Daemon() as d:
        d.start()
        for _ in range(8):
            d.signal(signal.SIGHUP)  # back to back: all but the first land while a reload runs
        settled = wait_for(lambda: "reloaded" in d.notes[-1] and len(d.http_workers()) == 2
                           and len(d.consumers()) == 2 and len(d.children()) == 4 + harness.KAFKA_CHILDREN, 20)
        t.ok(settled, "after a storm of 8 SIGHUPs the daemon settles on one full generation",
             [d.children(), d.notes[-3:]])
        generations = len(re.findall("reload: starting generation", d.log()))
        t.ok(1 <= generations <= 2, f"SIGHUPs during a reload coalesce ({generations} generations for 8 signals)")
        t.eq(d.get("/healthz")[0], 200, "serving after the storm")
        t.ok(not [c for c in d.children() if c[2] == "Z"], "no zombie left behind")


def test_partition_handover(t):
    with Daemon(overrides={"kafka": {"partitions": 3}}) as d:
        d.start()
        before = d.consumers()
        samples, overlap = 0, []
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = [title for _, title, state in d.children() if title.startswith("couponsd: consumer") and state != "Z"]
            samples += 1
            dup = {x for x in kids if kids.count(x) > 1}
            if dup:
                overlap.append(dup)
            now = d.consumers()
            if len(now) == 3 and not set(now.values()) & set(before.values()):
                break
        t.ok(len(d.consumers()) == 3 and not set(d.consumers().values()) & set(before.values()),
             "every partition got a new consumer", (before, d.consumers()))
        t.eq(overlap, [], f"never two consumers for one partition ({samples} samples during the reload)")
        log = d.log()
        for title, pid in before.items():
            part = title.rsplit(" ", 1)[1]
            exited = log.find(f"consumer partition {part} (pid {pid}) exited with status 0")
            started = log.find(f"started consumer partition {part} as pid", exited if exited >= 0 else 0)
            t.ok(0 <= exited < started, f"partition {part}: the old consumer exited cleanly before its successor started")


def test_owned_partitions_change(t):
    with Daemon(overrides={"kafka": {"partitions": 4, "owned_partitions": "0-1"}}) as d:
        d.start()
        d.set("kafka", "owned_partitions", "1-3")
        rc, out, err = d.ctl("reload")
        t.eq(rc, 0, "reload with owned_partitions 0-1 -> 1-3")
        t.ok(wait_for(lambda: sorted(d.consumers()) == [f"couponsd: consumer partition {p}" for p in (1, 2, 3)], 10),
             "consumers follow: partition 0 stopped, 2 and 3 started", d.consumers())


def test_new_generation_never_ready(t):
    with Daemon(overrides={"daemon": {"worker_timeout": "2s"}}, faults="http_crash=2") as d:
        d.start()
        before = sorted(d.http_workers())
        d.set("http", "workers", 3)
        started = time.monotonic()
        rc, out, err = d.ctl("reload")
        t.eq(rc, 1, "a reload whose new workers never get ready fails")
        t.ok("did not become ready" in err, "and says why", out + err)
        t.ok(time.monotonic() - started < 6, "within about daemon.worker_timeout")
        t.ok(wait_for(lambda: sorted(d.http_workers()) == before, 5), "the old generation keeps serving, untouched",
             (before, d.http_workers()))
        t.eq(d.get("/healthz")[0], 200, "still serving")
        d.set("http", "workers", 2)
        rc, out, err = d.ctl("reload")
        t.ok(rc == 0, "a later good reload still works", err)


# Test builds: each HTTP worker's PostgreSQL session comes up a second after the worker starts, as against a slow
# server: the window in which a new worker used to accept and answer 503 for every coupon it had not cached.
SLOW_PG = "http_pg_connect_delay=1000"


def others(answers, expected):
    return {k: n for k, n in answers.items() if k != expected}


def test_reload_serves_cold_coupons(t):
    """Issue 11 item 16: a reload under a loop of requests for a coupon that the new workers have never cached.
    The old generation serves until the new workers' PostgreSQL sessions are up; no request gets 503."""
    with Daemon(redis=True, postgres=True, faults=SLOW_PG, admin_token="tok") as d:
        d.start()
        coupon = d.create_coupon(10)
        load = RequestLoop(d.port, f"/api/coupons/{coupon}", seconds=60)
        t.ok(wait_for(lambda: load.count(200) >= 20, 10), "the loop reads the coupon", load.statuses)
        before = set(d.http_workers())
        started = time.monotonic()
        rc, out, err = d.ctl("reload")
        took = time.monotonic() - started
        t.ok(rc == 0, "the reload completes", out + err)
        t.ok(took >= 0.9, f"only once the new workers' PostgreSQL sessions are up ({took:.2f}s, 1 s late here)")
        served = load.count(200)
        t.ok(wait_for(lambda: load.count(200) >= served + 50, 10), "the new generation serves the loop")
        answers = load.stop()
        t.ok(wait_for(lambda: not set(d.http_workers()) & before, 10), "the old generation is gone",
             (before, d.http_workers()))
        t.eq(others(answers, 200), {}, f"every request across the reload got 200 ({answers.get(200, 0)}): no 503")


def test_ready_means_connected(t):
    """READY=1 at a plain start comes once every worker's PostgreSQL session is up: the first requests after it
    reach PostgreSQL (404 for a coupon that does not exist, not 503), and creating a coupon needs no retry."""
    with Daemon(redis=True, postgres=True, faults=SLOW_PG, admin_token="tok") as d:
        started = time.monotonic()
        d.start()
        t.ok(time.monotonic() - started >= 0.9, "READY=1 waits for the workers' PostgreSQL sessions (1 s late here)")
        load = RequestLoop(d.port, "/api/coupons/424242", seconds=10)
        wait_for(lambda: load.count(404) >= 20, 10)
        answers = load.stop()
        t.eq(others(answers, 404), {}, f"the first requests after READY=1 all got 404 from PostgreSQL ({answers})")
        status, body, _ = d.admin_create("first", 5)
        t.ok(status == 201, "a coupon created right after start: 201 at the first try", (status, body))


def test_reload_bounded_when_postgres_never_comes(t):
    """A dependency that does not come up must not hold the old generation forever: after the bound (the larger
    of postgres.timeout and redis.timeout, 1.5 s here) the new workers accept anyway and /readyz says why."""
    with Daemon(redis=True, postgres=True, faults="http_pg_connect_delay=600000",
                overrides={"postgres": {"timeout": "1500ms"}}) as d:
        d.start()
        before = set(d.http_workers())
        started = time.monotonic()
        rc, out, err = d.ctl("reload")
        took = time.monotonic() - started
        t.ok(rc == 0, "the reload completes", out + err)
        t.ok(1.3 <= took < 6, f"after waiting for the bound, not longer ({took:.2f}s)")
        t.ok(wait_for(lambda: not set(d.http_workers()) & before, 10), "the new generation took over",
             (before, d.http_workers()))
        t.eq(d.get("/healthz")[0], 200, "and serves")
        status, body, _ = d.get("/readyz")
        t.ok(status == 503 and "postgres" in body, "/readyz says not ready: postgres", (status, body))
        t.ok("accepting without postgres" in d.log(), "the log says each worker started without postgres")


def test_reload_with_postgres_stopped(t):
    """PostgreSQL really down (connections refused): the new workers do not wait for it at all, the reload
    completes, the daemon serves what it can and /readyz says why; once PostgreSQL is back, it is ready."""
    with Daemon(redis=True, postgres=True) as d:
        d.start()
        before = set(d.http_workers())
        d.pg.stop("fast")
        try:
            started = time.monotonic()
            rc, out, err = d.ctl("reload")
            took = time.monotonic() - started
            t.ok(rc == 0, "the reload with PostgreSQL stopped completes", out + err)
            t.ok(took < 5, f"without waiting for what is down ({took:.2f}s)")
            t.ok(wait_for(lambda: not set(d.http_workers()) & before, 10), "the new generation took over",
                 (before, d.http_workers()))
            t.eq(d.get("/healthz")[0], 200, "and serves")
            status, body, _ = d.get("/readyz")
            t.ok(status == 503 and "postgres" in body, "/readyz says not ready: postgres", (status, body))
        finally:
            d.pg.start()
        t.ok(wait_for(lambda: d.get("/readyz")[0] == 200, 20), "ready once PostgreSQL is back", d.get("/readyz"))


if __name__ == "__main__":
    Tap().run(test_broken_file_keeps_running, test_workers_change_under_load, test_restart_only_key_is_reported,
              test_data_names_are_restart_only,
              test_sighup_storm_coalesces, test_partition_handover, test_owned_partitions_change,
              test_new_generation_never_ready, test_reload_serves_cold_coupons, test_ready_means_connected,
              test_reload_bounded_when_postgres_never_comes, test_reload_with_postgres_stopped)
