# SPDX-License-Identifier: BSD-2-Clause
"""test_supervise.py: the master starts the right processes, restarts dead or stuck ones, and dies cleanly."""
import http.client
import os
import pwd
import re
import signal
import subprocess
import threading
import time

import harness
from harness import Daemon, RequestLoop, pid_alive, wait_for
from tap import Tap


def test_process_model(t):
    with Daemon(workers=3, partitions=4) as d:
        d.start()
        titles = sorted(title for _, title, _ in d.children())
        t.eq(len(d.http_workers()), 3, "http.workers: 3 gives three http workers")
        t.eq(sorted(d.consumers()), [f"couponsd: consumer partition {p}" for p in range(4)],
             "one consumer per partition, titled with its partition")
        embedded = 0 if harness.REAL_KAFKA else 1
        t.eq(len(d.kafka()), embedded, f"{embedded} embedded kafka child ({harness.KAFKA_MODE} Kafka)")
        t.eq(len(titles), 7 + embedded, "nothing else is forked")
        with open(f"/proc/{d.pid}/cmdline", "rb") as f:
            t.eq(f.read().split(b"\0")[0].decode(), "couponsd: master", "the master's title")
        status, body, headers = d.get("/healthz")
        t.ok(status == 200 and body == '{"status":"ok"}', "/healthz answers 200", body)
        t.eq(headers.get("Content-Type"), "application/json; charset=utf-8", "JSON content type")
        status, body, _ = d.get("/no/such/route")
        t.ok(status == 404 and '"error":"NOT_FOUND"' in body, "unknown route: 404 with an error body", body)


def test_owned_partitions(t):
    with Daemon(overrides={"kafka": {"partitions": 8, "owned_partitions": "2-3,6"}}) as d:
        d.start()
        t.eq(sorted(d.consumers()), [f"couponsd: consumer partition {p}" for p in (2, 3, 6)],
             "owned_partitions 2-3,6 starts exactly those consumers")


def replaced(d, before_pids, title, count):
    """Waits until `count` processes titled `title` are up and none of them is in before_pids."""
    def check():
        now = d.titled(title)
        return now if len(now) == count and not set(now) & set(before_pids) else None
    return wait_for(check, 2.0)


def test_sigkill_each_kind(t):
    with Daemon() as d:
        d.start()
        victim = d.http_workers()[0]
        os.kill(victim, signal.SIGKILL)
        after = wait_for(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(d.http_workers()), 2.0)
        t.ok(after and victim not in after, "SIGKILLed http worker replaced within 2 s", d.log()[-2000:])
        cons = d.consumers()
        victim = cons["couponsd: consumer partition 1"]
        os.kill(victim, signal.SIGKILL)
        t.ok(wait_for(lambda: d.consumers().get("couponsd: consumer partition 1") not in (None, victim), 2.0),
             "SIGKILLed consumer of partition 1 replaced within 2 s")
        t.eq(d.consumers().get("couponsd: consumer partition 0"), cons["couponsd: consumer partition 0"],
             "the other partition's consumer is untouched")
        t.ok(re.search(r"consumer partition 1 \(pid %d\) was killed by signal 9" % victim, d.log()),
             "the master logs the signal that killed it")
        if harness.REAL_KAFKA:
            t.skip("SIGKILLed embedded kafka replaced within 2 s", "no embedded kafka child on a real cluster "
                   "(its brokers' deaths are test_chaos_real_kafka.py's)")
        else:
            kafka = d.kafka()[0]
            os.kill(kafka, signal.SIGKILL)
            t.ok(replaced(d, [kafka], "couponsd: embedded kafka", 1), "SIGKILLed embedded kafka replaced within 2 s")
            t.ok(d.wait_note("STATUS=reloaded", 10), "workers move to the new embedded cluster", d.log()[-2000:])
        t.eq(d.get("/healthz")[0], 200, "still serving afterwards")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report", text)


def restart_delays(log, name):
    return [int(ms) for ms in re.findall(r"(?:restarting %s in|%s is crash-looping \(\d+ restarts\); next start in) (\d+) ms" % (re.escape(name), re.escape(name)), log)]


def test_crash_loop_backs_off(t):
    with Daemon(faults="http_crash=0") as d:
        d.start(wait=False)
        time.sleep(4.0)
        delays = restart_delays(d.log(), "http worker 0 (generation 1)")
        t.ok(len(delays) >= 4, f"a crashing worker is restarted ({len(delays)} times in 4 s)", d.log()[-2000:])
        t.ok(len(delays) <= 7, "but not in a busy loop", delays)
        t.eq(delays[:4], [100, 200, 400, 800], "the delay doubles from 100 ms")
        t.ok(d.proc.poll() is None, "the master survives its child's crash loop")
        t.ok(wait_for(lambda: len(d.http_workers()) == 1, 2), "the healthy worker keeps running")
        t.eq(d.get("/healthz")[0], 200, "and keeps serving")


def test_failed_spawn_is_retried(t):
    """A slot whose fork failed (EAGAIN, EMFILE for its channel, no shared-memory slot) used to stay empty for
    good: only a child's exit scheduled a restart. spawn_fail=3 fails the first three forks; the slot must be
    started again with the ordinary back-off, and the daemon must come up whole."""
    with Daemon(faults="spawn_fail=3") as d:
        d.start(timeout=20)
        log = d.log()
        failed = re.findall(r"fork for (.+?): Resource temporarily unavailable", log)
        t.eq(len(failed), 3, "three forks failed")
        # Which slots the three failures hit depends on the start order (the embedded kafka child first, or,
        # on a real cluster, the workers): each slot that failed n times is retried 100, 200, ... ms later.
        want = {n: [100 * 2 ** k for k in range(failed.count(n))] for n in set(failed)}
        got = {n: restart_delays(log, n)[:len(want[n])] for n in want}
        t.eq(got, want, "each slot whose fork failed is retried with the doubling back-off")
        t.ok(all(re.search(r"started %s as pid" % re.escape(n), log) for n in want), "and then started",
             log[-2000:])
        t.eq(len(d.http_workers()), 2, "every http worker is up")
        t.eq(len(d.consumers()), 2, "every consumer is up")
        t.eq(d.get("/healthz")[0], 200, "the daemon serves")


def test_hung_worker_is_killed(t):
    with Daemon(overrides={"daemon": {"worker_timeout": "1s"}}, faults="http_hang=1") as d:
        d.start()
        first = set(d.http_workers())
        t.ok(wait_for(lambda: "has not ticked" in d.log(), 5), "a worker whose loop hangs is noticed", d.log()[-2000:])
        t.ok(wait_for(lambda: (lambda now: len(set(now) - first) >= 1 and len(now) == 2)(d.http_workers()), 3),
             "and replaced by a new process")


def test_master_sigkill_takes_workers(t):
    with Daemon() as d:
        d.start()
        kids = [pid for pid, _, _ in d.children()]
        d.proc.kill()
        d.proc.wait()
        gone = wait_for(lambda: not any(pid_alive(p) for p in kids), 2.0)
        t.ok(gone, "every worker is gone within 2 s of the master's SIGKILL",
             [p for p in kids if pid_alive(p)])


def issue_quietly(d, coupon_id, user_id):
    """An issue request whose worker may exit under it: the status, or the error's name."""
    try:
        return d.issue(coupon_id, user_id, timeout=10)[0]
    except OSError as e:
        return type(e).__name__


def test_kafka_fatal_error_restarts_worker(t):
    """After a fatal producer error (idempotence) nothing can be produced again: the worker used to answer 503
    forever while /readyz said 200. It must exit so that the master starts one with a new producer. Redis is
    left unreachable here: the claim is skipped, so the request reaches Kafka with PostgreSQL alone."""
    with Daemon(workers=1, postgres=True, admin_token="t0ken", faults="http_kafka_fatal=0",
                overrides={"redis": {"port": harness.free_port(), "timeout": "200ms"}}) as d:
        d.start()
        coupon = d.create_coupon(5)
        before = d.http_workers()
        status = issue_quietly(d, coupon, 1)
        t.ok(status in (202, 503), "the request caught by the fatal error is answered: 202 if Kafka had it, "
             "else 503 (the worker drains before it exits)", status)
        t.ok(wait_for(lambda: d.has_processes(http=1, without=before), 15),
             "the worker exits and the master starts a new one", (before, d.http_workers()))
        log = d.log()
        t.ok("the kafka producer failed fatally: OUT_OF_ORDER_SEQUENCE_NUMBER" in log,
             "the log names the fatal error", log[-2000:])
        t.ok(re.search(r"\(pid %d\) exited with status 1" % before[0], log) is not None,
             "the old worker exited with status 1", log[-2000:])
        t.eq(d.get("/healthz")[0], 200, "serving again")


def test_exit_with_request_in_flight(t):
    """A worker that exits (here on a fatal producer error) with a request in flight and its accepting paused
    (http.max_connections reached) tears down cleanly: the producer's last delivery reports still reach the
    Redis client, and closing the connection does not resume listeners that evhttp already freed."""
    with Daemon(workers=1, redis=True, postgres=True, admin_token="t0ken", faults="http_kafka_fatal=0",
                overrides={"http": {"max_connections": 2}}) as d:
        d.start()
        coupon = d.create_coupon(5)
        before = d.http_workers()
        idle = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)  # kept open through the exit
        idle.request("GET", "/healthz")
        idle.getresponse().read()
        status = issue_quietly(d, coupon, 1)  # the second connection: accepting pauses
        t.ok(status in (202, 503), "the request caught by the fatal error is answered: 202 if Kafka had it, "
             "else 503 (the worker drains before it exits)", status)
        t.ok(wait_for(lambda: d.has_processes(http=1, without=before), 15),
             "the worker exits and the master starts a new one", (before, d.http_workers()))
        idle.close()
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report from the worker's teardown", text)


def test_fatal_error_answers_requests_in_flight(t):
    """A fatal producer error with many requests in flight (as a broker stall gives librdkafka 2.0.2's
    idempotent producer): each of them gets an HTTP answer, 202 for what Kafka took and 503 for what
    librdkafka failed, before the worker exits with status 1. It used to exit at once, and every client
    waiting on it saw its connection cut without knowing whether its request was accepted."""
    fatal_in_flight(t, "")


def test_fast_lane_fatal_error_answers_requests_in_flight(t):
    """The same, the events in the worker's second producer, the fast lane (produce_gate.h: the fault
    http_lane_fast_at=1 moves the partition there at its first event), whose fatal error is raised."""
    metrics = fatal_in_flight(t, ",http_lane_fast_at=1")
    if metrics is not None:
        moved = re.search(r'^couponsd_kafka_produce_lane_moves_total\{to="fast"\} (\d+)$', metrics, re.M)
        t.ok(moved is not None and int(moved.group(1)) >= 1, "the events went to the fast lane",
             moved.group(0) if moved else None)


def fatal_in_flight(t, faults):
    """Returns the /metrics text once the new worker accepts (None when skipped)."""
    if harness.REAL_KAFKA:
        t.skip("a fatal error with requests in flight", "needs the embedded Kafka's rtt fault to hold them")
        return None
    n = 12
    with Daemon(workers=1, redis=True, postgres=True, admin_token="t0ken",
                faults=f"http_kafka_fatal=0,http_kafka_fatal_after={n}{faults}") as d:
        d.start()
        coupon = d.create_coupon(100)
        before = d.http_workers()
        t.eq(d.ctl("kafka rtt all 1500")[0], 0, "every embedded broker answers 1.5 s late")
        answers = [None] * n

        def one(i):
            answers[i] = issue_quietly(d, coupon, 1000 + i)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        t.ok(all(a in (202, 503) for a in answers),
             f"each of the {n} requests in flight at the fatal error got 202 or 503, none a cut connection",
             answers)
        t.ok(wait_for(lambda: d.has_processes(http=1, without=before), 15),
             "then the worker exits and the master starts a new one", (before, d.http_workers()))
        log = d.log()
        t.ok(re.search(r"\(pid %d\) exited with status 1" % before[0], log) is not None,
             "the old worker exited with status 1", log[-2000:])
        d.ctl("kafka rtt all 0")
        t.eq(issue_quietly(d, coupon, 5000), 202, "the new worker accepts")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report from the worker's drain and exit", text)
        return d.get("/metrics")[1]


def test_timed_out_produce_lets_the_user_ask_again(t):
    """A produce that times out in flight gets 503, and what the edge wrote for it does not count: the user's
    claim is dropped, so the same user's next request is accepted and issued once. Its PENDING status hash,
    written beside the produce (http_issue.c) for a requestId the client never saw, carries a TTL: it
    expires unless a consumer's outcome replaces it."""
    if harness.REAL_KAFKA:
        t.skip("a produce timed out in flight", "needs the embedded Kafka's rtt fault to hold it")
        return
    with Daemon({"kafka": {"produce_timeout": "1s"}}, workers=1, partitions=1, redis=True, postgres=True,
                admin_token="t0ken") as d:
        d.start()
        coupon = d.create_coupon(5)
        t.eq(d.ctl("kafka rtt all 2500")[0], 0, "every embedded broker answers 2.5 s late")
        t.eq(issue_quietly(d, coupon, 77), 503, "the request whose produce timed out gets 503")
        d.ctl("kafka rtt all 0")
        status, body = None, {}
        deadline = time.monotonic() + 20
        while status != 202 and time.monotonic() < deadline:
            try:
                status, body, _ = d.issue(coupon, 77, timeout=10)
            except OSError:
                status = None
            if status != 202:
                time.sleep(0.2)
        t.ok(status == 202, "the same user asks again and is accepted: the claim was dropped", (status, body))
        rid = body.get("requestId") if isinstance(body, dict) else None
        final = (d.wait_final(rid) or {}) if rid else {}
        keys = d.redis.cli("--scan", "--pattern", f"{d.redis_prefix}req:*").split()
        first = [k for k in keys if rid not in k]
        t.ok(len(first) == 1 and int(d.redis.cli("TTL", first[0])) > 0,
             "the timed-out request left one status hash, and it expires", first)
        was = d.redis.cli("HGET", first[0], "status") if first else None
        # Kafka may have appended the timed-out event before its late answer: then it is decided first.
        t.ok((was, final.get("status"), final.get("reason")) in
             (("PENDING", "ISSUED", None), ("ISSUED", "REJECTED", "ALREADY_ISSUED")),
             "either the timed-out event never reached Kafka (its PENDING stays, the retry is issued) or it "
             "did (the consumer's outcome replaced its PENDING, the retry is ALREADY_ISSUED)", (was, final))
        t.eq(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {coupon} AND user_id = 77"), "1",
             "one coupon for the user in PostgreSQL")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report", text)


def test_consumer_fatal_error_replays(t):
    """The consumers' results producer is idempotent too, and librdkafka 2.0.2 can fail it fatally after a broker
    stall. The consumer of that partition cannot produce any more: it exits with status 1, the master starts a
    new one, and the new one replays the batch the old one could not finish. Each request is decided once, and
    the exit (purging what was in flight) leaves no sanitizer report."""
    with Daemon(workers=1, partitions=1, redis=True, postgres=True, admin_token="t0ken",
                faults="consumer_kafka_fatal=0") as d:
        d.start()
        coupon = d.create_coupon(5)
        before = d.consumers()
        first = d.issue(coupon, 1)[1]["requestId"]
        t.eq((d.wait_final(first) or {}).get("status"), "ISSUED",
             "the batch whose results were queued when the fatal error came is decided")
        second = d.issue(coupon, 2)[1]["requestId"]
        t.ok(wait_for(lambda: d.has_processes(consumers=1, without=before.values()), 20),
             "the next batch cannot produce: the consumer exits and the master starts a new one",
             (before, d.consumers()))
        t.eq((d.wait_final(second, timeout=30) or {}).get("status"), "ISSUED",
             "the new consumer replays that batch and decides it")
        log = d.log()
        t.ok("the results producer failed fatally: OUT_OF_ORDER_SEQUENCE_NUMBER" in log,
             "the log names the fatal error", log[-2000:])
        old = list(before.values())[0]
        t.ok(re.search(r"\(pid %d\) exited with status 1" % old, log) is not None,
             "the old consumer exited with status 1", log[-2000:])
        t.eq(d.sql_scalar(f"SELECT count(*) || '/' || min(remaining) FROM issued_coupons i JOIN coupons c "
                          f"ON c.id = i.coupon_id WHERE c.id = {coupon}"), "2/3",
             "two units issued, once each, and remaining says 3")
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report from the consumer's exit", text)


def _tcp_sockets():
    """(local port, remote port, timer kind, seconds left, inode) of each IPv4 TCP socket (/proc/net/tcp)."""
    rows = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            timer, left = fields[5].split(":")
            rows.append((int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16), int(timer, 16),
                         int(left, 16) / 100.0, fields[9]))
    return rows


def server_keepalive_left(d, pid):
    """Seconds until the server side of pid's PostgreSQL connection probes it (its keepalive timer), or None."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:["):-1])
        except OSError:
            pass
    rows = _tcp_sockets()
    ours = [lport for lport, rport, _, _, inode in rows if inode in inodes and rport == d.pg.port]
    theirs = [left for lport, rport, kind, left, _ in rows if lport == d.pg.port and rport in ours and kind == 2]
    return theirs[0] if len(ours) == 1 and len(theirs) == 1 else None


def test_consumer_session_keepalives(t):
    """A consumer's partition lock lives in its server session, which PostgreSQL ended only when its own
    keepalive noticed a vanished client: the kernel's defaults, 2 hours, during which a successor was refused
    the lock. The server must now probe within postgres.dead_session_timeout (2 s here); the operator's own
    options in conninfo still apply (and win where they set the same parameter)."""
    for operator, low, high, what in ((None, 0, 2.5, "postgres.dead_session_timeout: 2s"),
                                      ("-c tcp_keepalives_idle=30", 2.5, 30.5, "the operator's idle of 30 s")):
        d = Daemon(workers=1, partitions=1, postgres=True)
        with d:
            conninfo = d.tree["postgres"]["conninfo"] + (f" options='{operator}'" if operator else "")
            d.tree["postgres"].update(conninfo=conninfo, dead_session_timeout="2s")
            d.write_config()
            d.start()
            pid = d.consumers()["couponsd: consumer partition 0"]
            left = wait_for(lambda: server_keepalive_left(d, pid), 5)
            t.ok(left is not None and low < left <= high,
                 f"{what}: the server probes the consumer within {high} s", f"keepalive timer: {left} s")


def test_migration_lock_wait_is_bounded(t):
    """A consumer that connects applies migrations under an advisory lock, and it used to wait for that lock
    before its statement_timeout was set: while another host migrated (or any session held the lock) its loop
    stopped, and the watchdog killed it and each successor. The session's statement_timeout (at most half of
    daemon.worker_timeout) is now set first, so the wait ends in an error and an ordinary retry."""
    import servers
    with Daemon(workers=1, partitions=1, postgres=True, overrides={"daemon": {"worker_timeout": "2s"}}) as d:
        d.start()
        holder = subprocess.Popen(
            [os.path.join(servers.PG_BIN, "psql"), "-X", "-q", "-h", d.pg.host, "-p", str(d.pg.port), "-U",
             "postgres", "-d", d.dbname, "-c", "SELECT pg_advisory_lock(7165074657936043367), pg_sleep(30)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            held = wait_for(lambda: d.sql_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                                                 "granted AND classid = 1668248944 AND objid = 1869507943") == "1", 10)
            t.ok(held, "another session holds the migration lock")
            victim = d.consumers()["couponsd: consumer partition 0"]
            os.kill(victim, signal.SIGKILL)
            time.sleep(5)
            log = d.log()
            t.ok("has not ticked" not in log, "the restarted consumer waits for it without being killed",
                 log[-1500:])
            t.ok(re.search(r"consumer partition 0\[\d+\]: migrations: .*statement timeout", log),
                 "its wait ends with a statement timeout, and it retries", log[-1500:])
        finally:
            # The server notices a vanished client only when it next writes to it: end the backend itself.
            d.sql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND "
                  "classid = 1668248944 AND objid = 1869507943")
            holder.kill()
            holder.wait()
        t.ok(wait_for(lambda: d.log().count("owning partition 0 ") >= 2, 15),
             "once the lock is free it owns its partition again", d.log()[-1000:])


def test_privilege_drop(t):
    if os.geteuid() != 0:
        t.ok(True, "# SKIP privilege drop needs root")
        return
    nobody = pwd.getpwnam("nobody")
    with Daemon(overrides={"daemon": {"user": "nobody", "group": "nogroup"}}) as d:
        os.chmod(d.config_path, 0o644)
        d.start()
        uids = set()
        for pid, _, _ in d.children() + [(d.pid, "", "")]:
            with open(f"/proc/{pid}/status") as f:
                uids.add(next(line.split()[1] for line in f if line.startswith("Uid:")))
        t.eq(uids, {str(nobody.pw_uid)}, "master and workers run as daemon.user after binding")
        t.eq(d.get("/healthz")[0], 200, "and serve on the socket bound as root")
        for key in ("pid_file", "control_socket"):
            st = os.lstat(d.tree["daemon"][key])
            t.eq((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid), f"daemon.{key} is handed to daemon.user")


def test_pid_file_symlink_refused(t):
    """Whoever owns the pid file's directory (the daemon's user, /run/couponsd) could point the pid file at
    another file; root starting couponsd must not truncate and write it."""
    with Daemon() as d:
        victim = os.path.join(d.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        os.symlink(victim, d.tree["daemon"]["pid_file"])
        d.start(wait=False)
        rc = d.wait_exit(15)
        t.eq(rc, 1, "the start fails")
        t.ok("cannot open pid file" in d.log() + d.stderr_text(), "and says why", d.log()[-500:])
        with open(victim) as f:
            t.eq(f.read(), "precious\n", "the symlink's target is untouched")


def test_restarted_worker_waits_for_its_clients(t):
    """A crashed HTTP worker's successor accepts only once its PostgreSQL session is up (a second late here, by
    a test-only fault): until then the other worker takes every connection, and no request for a coupon the
    successor has not cached gets 503."""
    with Daemon(redis=True, postgres=True, faults="http_pg_connect_delay=1000", admin_token="tok") as d:
        d.start()
        coupon = d.create_coupon(10)
        load = RequestLoop(d.port, f"/api/coupons/{coupon}", seconds=60)
        t.ok(wait_for(lambda: load.count(200) >= 20, 10), "the loop reads the coupon", load.statuses)
        victim = d.http_workers()[0]
        os.kill(victim, signal.SIGKILL)
        t.ok(wait_for(lambda: d.has_processes(http=2, without=[victim]), 5),
             "the SIGKILLed worker is replaced", d.http_workers())
        time.sleep(2.0)  # its successor's session comes up 1 s after it starts; then both serve
        answers = load.stop()
        t.eq(answers.get(503, 0), 0, f"no request got 503 while the successor started ({answers})")
        t.ok(answers.get(200, 0) > 50, "the loop kept being served")


if __name__ == "__main__":
    Tap().run(test_process_model, test_owned_partitions, test_sigkill_each_kind, test_restarted_worker_waits_for_its_clients,
              test_crash_loop_backs_off,
              test_failed_spawn_is_retried,
              test_hung_worker_is_killed, test_master_sigkill_takes_workers, test_kafka_fatal_error_restarts_worker,
              test_exit_with_request_in_flight, test_fatal_error_answers_requests_in_flight,
              test_fast_lane_fatal_error_answers_requests_in_flight,
              test_timed_out_produce_lets_the_user_ask_again, test_consumer_fatal_error_replays,
              test_consumer_session_keepalives,
              test_migration_lock_wait_is_bounded,
              test_privilege_drop, test_pid_file_symlink_refused)
