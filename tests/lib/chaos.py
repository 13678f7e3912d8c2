# SPDX-License-Identifier: BSD-2-Clause
"""chaos.py: the chaos suite's load generator, fault injectors and invariant checker (SPEC section 4, issue 4).

A scenario starts a daemon on real Redis and PostgreSQL with the embedded Kafka, creates several coupons whose
stock is smaller than the demand, and sends thousands of distinct users at them from a thread pool, paced over
a few seconds, while one fault function breaks something. Then it waits for quiescence (every 202 decided, every
event in the Kafka log decided in PostgreSQL, Redis converged) and checks invariants 1-5. Its verdict is one line:

    chaos redis-flush: accepted=4980 decided=4980 lost=0 oversold=0 duplicates=0 drift=0

accepted   requests answered 202 (distinct requestIds)
decided    of those, how many GET /api/requests/{id} shows ISSUED or REJECTED after quiescence
lost       accepted - decided: a 202 that never reached a final status (invariant 3)
oversold   units beyond total_quantity, plus |remaining + issued rows - total_quantity|, over all coupons (1)
duplicates extra issued rows for one (coupon, user), plus (coupon, user) pairs with two ISSUED requests (2)
drift      coupons whose Redis stock differs from PostgreSQL remaining (or is missing) after quiescence (5)

First come, first served (4) and the agreement of the API with PostgreSQL are separate assertions.
503 and 429 are allowed while a fault lasts; connection errors only where the scenario kills HTTP workers.
The mixed scenario also blames each 503 on a fault of the dependency it names (chaos_blame.py, issue 11 item 16).
COUPONSD_SOAK_SECONDS=N makes the mixed scenario run its load (and faults) for N seconds.
"""
import collections
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import servers
from harness import REAL_KAFKA, Budget, Daemon, free_port, http_request, kafka_consume, kafka_partition, parse_json, wait_all_final, wait_for

TOKEN = "chaos-token"
PARTITIONS = 4
FINAL = ("ISSUED", "REJECTED")
SOAK_SECONDS = int(os.environ.get("COUPONSD_SOAK_SECONDS", "0") or 0)
SEED = int(os.environ.get("COUPONSD_CHAOS_SEED", "0") or 0) or random.randrange(1, 1 << 30)


def skip_under_distcheck():
    """make distcheck runs make check again: the chaos suite has run once already, so it skips itself there."""
    if os.environ.get("COUPONSD_DISTCHECK") == "1":
        print("1..0 # SKIP the chaos suite does not run again under make distcheck (COUPONSD_DISTCHECK=1)")
        sys.exit(0)


# ---- the daemon --------------------------------------------------------------------------------------------

def start_servers():
    """This file's Redis and PostgreSQL, started before any daemon picks its HTTP port (so that they cannot
    pick the same one), with one more try: on a loaded machine a server may miss its start deadline."""
    for attempt in (1, 2):
        try:
            return servers.shared()
        except RuntimeError:
            if attempt == 2:
                raise


def chaos_daemon(redis=True, postgres=True, faults=None, workers=2, producer=None, overrides=None):
    """A daemon tuned so that recovery fits the suite's time budget: retries back off to 1 s at most (the
    default 30 s would only make the wait longer, not the outcome different). producer: extra librdkafka
    settings for every couponsd producer (kafka.producer). overrides: {section: {key: value}}, applied over
    these settings key by key (e.g. {"daemon": {"worker_timeout": "1500ms"}} keeps shutdown_timeout)."""
    tree = {"issue": {"retry_initial": "50ms", "retry_max": "1s"},
            "daemon": {"worker_timeout": "10s", "shutdown_timeout": "15s"}}
    if producer:
        tree["kafka"] = {"producer": producer}
    for section, keys in (overrides or {}).items():
        tree.setdefault(section, {}).update(keys)
    overrides = tree
    start_servers()
    return Daemon(redis=redis, postgres=postgres, admin_token=TOKEN, workers=workers, partitions=PARTITIONS,
                  faults=faults, overrides=overrides)


def start_daemon(d):
    """d.start(), once more on a new port if another process took the one free_port() gave it."""
    try:
        d.start()
    except RuntimeError as e:
        if "Address already in use" not in str(e):
            raise
        d.stop()
        d.port = free_port()
        d.set("http", "listen", [f"127.0.0.1:{d.port}"])
        d.start()


FIRST_COUPON = 101
STOCKS = (100, 250, 350, 450, 550, 650)  # 2350 in all, for about 5400 requests from 3500 users


def coupon_ids(stocks):
    """{coupon id: total_quantity} as create_coupons() makes them: fixed ids, so partitions are known early."""
    return {FIRST_COUPON + i: stock for i, stock in enumerate(stocks)}


def create_coupons(d, stocks):
    coupons = coupon_ids(stocks)
    for c, stock in coupons.items():
        d.create_coupon(stock, name=f"chaos {c}", coupon_id=c)
    return coupons


# ---- load --------------------------------------------------------------------------------------------------

class Load:
    """users distinct users, each asking for one or two of the coupons, spread evenly over duration seconds and
    sent from threads threads (a new connection each, like independent clients). A share of the pairs is sent
    a second time a moment later (a double click); half of the users retry once after a 503 or 429. Every
    answer is kept: (coupon, user, status or "error: ...", json body, time sent)."""

    def __init__(self, port, coupons, users, duration, threads=32, rng=None, first_user=1_000_000):
        self.port, self.duration, self.threads = port, duration, threads
        rng = rng or random.Random(SEED)
        ids = list(coupons)
        user_ids = rng.sample(range(first_user, first_user + users * 50), users)
        pairs = []
        for u in user_ids:
            for c in rng.sample(ids, 2 if rng.random() < 0.5 else 1):
                pairs.append((c, u))
        rng.shuffle(pairs)
        plan = [(duration * i / len(pairs), c, u) for i, (c, u) in enumerate(pairs)]
        again = [(min(duration, t + rng.uniform(0.3, 2.0)), c, u) for t, c, u in plan if rng.random() < 0.04]
        self.plan = sorted(plan + again)
        self.answers = []
        self.refused = []  # (sent, answered, coupon, status, body) of each 503 and 429: chaos_blame.check_503s()
        self.lock = threading.Lock()
        self.next = 0
        self.done = 0
        self.started = None
        self.pool = []

    def start(self):
        self.started = time.monotonic()
        self.wall_start = time.time()
        self.pool = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for th in self.pool:
            th.start()
        return self

    def elapsed(self):
        return time.monotonic() - self.started

    def _take(self):
        with self.lock:
            if self.next >= len(self.plan):
                return None
            item = self.plan[self.next]
            self.next += 1
            return item

    def _run(self):
        while True:
            item = self._take()
            if item is None:
                return
            at, c, u = item
            wait = self.started + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            status = self._send(c, u)
            if status in (503, 429) and u % 2 == 0:
                time.sleep(1.0)  # what Retry-After says
                self._send(c, u)
            with self.lock:
                self.done += 1

    def _send(self, c, u):
        sent = time.monotonic() - self.started
        try:
            status, text, _ = http_request(self.port, "POST", f"/api/coupons/{c}/issue?userId={u}", timeout=30)
            body = parse_json(text)
        except Exception as e:  # noqa: BLE001 - a refused or cut connection is an answer to count
            status, body = f"error: {type(e).__name__}", None
        answered = time.monotonic() - self.started
        with self.lock:
            self.answers.append((c, u, status, body, sent))
            if status in (503, 429):
                self.refused.append((sent, answered, c, status, body))
        return status

    def progress(self):
        return self.done / len(self.plan)

    def wait_until(self, fraction, timeout=120):
        """Waits until the schedule reaches fraction of its duration (and the senders have kept up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.elapsed() < fraction * self.duration or
                                               self.progress() < fraction * 0.8):
            time.sleep(0.05)

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for th in self.pool:
            th.join(max(0.1, deadline - time.monotonic()))
        return not any(th.is_alive() for th in self.pool)


# ---- faults ------------------------------------------------------------------------------------------------

class Faults:
    """What a fault function may touch: the daemon, its Redis and PostgreSQL, the load, a seeded random, and a
    log of what was done (printed as TAP diagnostics)."""

    def __init__(self, d, load, rng):
        self.d, self.load, self.rng = d, load, rng
        self.redis, self.pg = d.redis, d.pg
        self.done = []
        self.errors = []
        self.monitors = []
        self.windows = []  # [dependency, what, start, end or None while it lasts]: chaos_blame.check_503s()
        self.lasting = {}
        self.monitor()

    def monitor(self):
        """COUPONSD_CHAOS_MONITOR=FILE: appends `redis-cli monitor` to FILE (for post-mortems), again after
        every Redis restart."""
        path = os.environ.get("COUPONSD_CHAOS_MONITOR")
        if path and self.redis is not None and self.redis.alive():
            out = open(path, "ab")
            self.monitors.append(subprocess.Popen([servers.REDIS_CLI, "-p", str(self.redis.port), "monitor"],
                                                  stdout=out, stderr=subprocess.DEVNULL))
            out.close()

    def close(self):
        for m in self.monitors:
            m.kill()
            m.wait()

    def note(self, text):
        self.done.append(f"{self.load.elapsed():5.1f}s {text}")

    def hit(self, dependency, what, key=None):
        """Records a fault on dependency (postgres, redis, kafka, http, consumer; reload is none). With a key it
        lasts until healed(key), else it is a moment."""
        now = self.load.elapsed()
        window = [dependency, what, now, None if key else now]
        self.windows.append(window)
        if key:
            self.lasting[key] = window

    def healed(self, key):
        window = self.lasting.pop(key, None)
        if window is not None:
            window[3] = self.load.elapsed()

    def fail(self, text):
        self.errors.append(text)
        self.note(f"FAILED: {text}")

    def kill(self, pids, what):
        if not pids:  # all of them are being restarted after an earlier fault: nothing to kill now
            self.note(f"no {what} to kill right now")
            return None
        pid = self.rng.choice(sorted(pids))
        try:
            os.kill(pid, signal.SIGKILL)
            self.note(f"SIGKILL {what} pid {pid}")
        except ProcessLookupError:
            self.note(f"{what} pid {pid} was already gone")
        return pid

    def kill_http_worker(self):
        self.hit("http", "SIGKILL http worker")
        return self.kill(self.d.http_workers(), "http worker")

    def kill_consumer(self, partition=None):
        """SIGKILL a random consumer, or the one of partition."""
        cons = self.d.consumers()
        self.hit("consumer", f"SIGKILL consumer {'' if partition is None else partition}".strip())
        if partition is None:
            return self.kill(list(cons.values()), "consumer")
        pid = cons.get(f"couponsd: consumer partition {partition}")
        return self.kill([pid] if pid else [], f"consumer partition {partition}")

    def kafka(self, command):
        words = command.split() + [""]
        key = {"broker-down": f"broker {words[1]}", "all-down": "all brokers"}.get(words[0])
        if key or words[0] == "produce-errors":
            self.hit("kafka", command, key=key)
        rc, out, err = self.d.ctl(f"kafka {command}")
        self.healed({"broker-up": f"broker {words[1]}", "all-up": "all brokers"}.get(words[0]))
        if rc != 0:
            self.fail(f"-s 'kafka {command}' exited {rc}: {(out + err).strip()}")
        else:
            self.note(f"kafka {command}")
        return rc == 0

    # ---- a real Kafka cluster (COUPONSD_KAFKA=real): nodes by their pids, through scripts/kafka.sh ----
    @property
    def cluster(self):
        return self.d.kafka_cluster

    def kafka_node(self, node, action, why=""):
        """start | term | kill | pause | resume on node (1..N) of the real cluster."""
        if action in ("term", "kill", "pause"):
            self.hit("kafka", f"kafka node {node} {action}", key=f"node {node}")
        try:
            self.cluster.node(node, action)
            if action in ("start", "resume"):
                self.healed(f"node {node}")
            self.note(f"kafka node {node}: {action}{' (' + why + ')' if why else ''}")
            return True
        except RuntimeError as e:
            self.fail(f"kafka node {node} {action}: {e}")
            return False

    def kafka_leader(self, partition, quiet=False):
        """The node that leads partition of the daemon's issue topic (-1: none, or quiet and the query failed)."""
        try:
            return self.cluster.leader(self.d.topic(), partition)
        except RuntimeError as e:
            if not quiet:
                self.fail(f"kafka leader of partition {partition}: {e}")
            return -1

    def kafka_controller(self, quiet=False):
        try:
            return self.cluster.controller()
        except RuntimeError as e:
            if not quiet:
                self.fail(f"kafka active controller: {e}")
            return -1

    def kafka_heal(self):
        """Every node running again and every partition of the daemon's topics in sync."""
        self.cluster.heal([self.d.topic(w) for w in ("topic", "results_topic", "dlq_topic")])
        for key in [k for k in self.lasting if k.startswith("node ")]:
            self.healed(key)
        self.note("kafka cluster whole again (every replica in sync)")

    def sighup(self):
        self.hit("reload", "SIGHUP")
        self.d.signal(signal.SIGHUP)
        self.note("SIGHUP")

    def admin_patch(self, coupon, body):
        """PATCH /api/admin/coupons/{coupon}: whatever the answer (a 503 while Kafka is down may still have put
        the change in the log), the FCFS replay reads the changes from the log."""
        try:
            status, answer, _ = self.d.json("PATCH", f"/api/admin/coupons/{coupon}", body,
                                            {"Authorization": f"Bearer {TOKEN}"}, timeout=15)
        except OSError as e:
            status, answer = None, str(e)
        self.note(f"PATCH coupon {coupon} {body}: {status} {(answer or {}).get('error', '') if isinstance(answer, dict) else answer}")
        if status not in (200, 202, 409, 503, 429, None):
            self.fail(f"PATCH coupon {coupon} {body}: unexpected {status} {answer}")

    def redis_restart_empty(self, down=1.0):
        self.hit("redis", "redis restart (empty)", key="redis")
        self.redis.stop()
        self.note("redis stopped (no persistence)")
        time.sleep(down)
        self.redis.restart(flush=True)
        self.healed("redis")
        self.note("redis started empty")
        self.monitor()

    def redis_flushall(self):
        self.hit("redis", "redis FLUSHALL")
        self.redis.flushall()
        self.note("redis FLUSHALL")

    def redis_crash_aof(self, down=1.0):
        self.hit("redis", "redis SIGKILL", key="redis")
        self.redis.kill()
        self.note("redis SIGKILL (appendonly, appendfsync always)")
        time.sleep(down)
        self.redis.start()
        self.healed("redis")
        self.note("redis started from its AOF")
        self.monitor()

    def pg_restart(self):
        self.hit("postgres", "postgres restart", key="postgres")
        self.pg.stop("fast")
        self.note("postgres stopped (fast)")
        self.pg.start()
        self.healed("postgres")
        self.note("postgres started")

    def pg_pause(self, seconds):
        self.hit("postgres", f"postgres SIGSTOP {seconds:.1f}s", key="postgres")
        self.pg.pause()
        self.note(f"postgres SIGSTOP for {seconds:.1f}s")
        time.sleep(seconds)
        self.pg.resume()
        self.healed("postgres")
        self.note("postgres SIGCONT")

    def sleep(self, seconds):
        time.sleep(seconds)


# ---- quiescence and the checks -----------------------------------------------------------------------------

def kafka_events(d, t=None):
    """[(coupon, partition, offset, requestId, user)] of every decodable event in the issue topic, in log order,
    and {partition: first offset still in the log} (above 0 where retention dropped the log's head). A read that
    did not reach every partition's end in time is made again (three tries), so that a slow read is not taken
    for a log that lost events."""
    bootstrap = d.kafka_bootstrap()
    out, starts = [], {}
    for attempt in range(3):
        whole = {}
        msgs = kafka_consume(bootstrap, d.topic(), timeout_ms=20000, whole=whole)
        if whole["complete"]:
            break
        if t is not None:
            t.diag(f"the issue topic's read {attempt + 1} did not reach every partition's end "
                   f"({len(msgs)} messages): {whole['stderr'].strip()[-200:]}")
    for m in msgs:
        starts[m["partition"]] = min(starts.get(m["partition"], m["offset"]), m["offset"])
        ev = parse_json(m["value"])
        if isinstance(ev, dict) and isinstance(ev.get("couponId"), int) and isinstance(ev.get("admin"), dict):
            # An admin change (PATCH /api/admin/coupons/{id}): no requestId; the event itself stands for the user.
            out.append((ev["couponId"], m["partition"], m["offset"], None, ev))
        elif isinstance(ev, dict) and isinstance(ev.get("couponId"), int):
            out.append((ev["couponId"], m["partition"], m["offset"], ev.get("requestId"), ev.get("userId")))
    out.sort()
    return out, starts


def pg_decisions(d):
    issued = {r: (int(c), int(u)) for r, c, u in d.sql("SELECT request_id, coupon_id, user_id FROM issued_coupons")}
    rejected = {r: reason for r, reason in d.sql("SELECT request_id, reason FROM rejected_requests")}
    return issued, rejected


def admin_replay(change, left, total):
    """An admin change as the consumer decides it (decide_admin()): the total moves, never below what is issued,
    and what is left moves with it. Returns (left, total). Window changes are not replayed (the chaos load
    does not close its sales)."""
    issued = total - left
    new_total = change.get("totalQuantity", total + change.get("addQuantity", 0))
    if new_total < issued:
        return left, total
    return new_total - issued, new_total


def fcfs_expected(events, coupons):
    """Invariant 4 replayed from the Kafka log: walking each coupon's events in log order, a request is issued
    when its user holds none of the coupon yet and stock is left. Returns {coupon: set of requestIds}."""
    expected = {c: set() for c in coupons}
    left, holders, seen = dict(coupons), collections.defaultdict(set), set()
    total = dict(coupons)
    for c, _, _, rid, user in events:
        if c in coupons and rid is None and user["changeId"] not in seen:
            seen.add(user["changeId"])
            left[c], total[c] = admin_replay(user["admin"], left[c], total[c])
            continue
        if c not in coupons or rid is None or rid in seen:
            continue
        seen.add(rid)
        if user in holders[c] or left[c] <= 0:
            continue
        holders[c].add(user)
        left[c] -= 1
        expected[c].add(rid)
    return expected


class Verdict:
    def __init__(self, name):
        self.name = name
        self.figures = {}
        self.answers = collections.Counter()
        self.refusals = collections.Counter()  # 503 and 429 by message

    def line(self):
        f = self.figures
        return (f"chaos {self.name}: accepted={f['accepted']} decided={f['decided']} lost={f['lost']} "
                f"oversold={f['oversold']} duplicates={f['duplicates']} drift={f['drift']}")


def answer_kind(status, body):
    if isinstance(status, int) and status == 409:
        return f"409 {(body or {}).get('error')}"
    return str(status)


def quiesce(t, d, accepted, coupons, budget):
    """Waits for every 202 to be decided and every Kafka event to have a PostgreSQL decision; returns
    (finals, events, issued, rejected)."""
    finals = wait_all_final(d.endpoints(), accepted, timeout=budget.left(90))
    events, starts = kafka_events(d, t)
    log_rids = {rid for c, _, _, rid, _ in events if c in coupons and rid is not None}

    def all_in_pg():
        issued, rejected = pg_decisions(d)
        return (issued, rejected) if log_rids <= set(issued) | set(rejected) else None
    got = wait_for(all_in_pg, budget.left(30), step=0.5) or pg_decisions(d)
    issued, rejected = got
    missing = log_rids - set(issued) - set(rejected)
    t.ok(not missing, f"every event in the Kafka log ({len(log_rids)}) has a decision in PostgreSQL",
         f"{len(missing)} undecided, e.g. {sorted(missing)[:5]}")
    return finals, events, starts, issued, rejected


def check(t, v, d, coupons, answers, budget):
    """Quiescence, then invariants 1-5 and the verdict line."""
    accepted = {}
    for c, u, status, body, _ in answers:
        v.answers[answer_kind(status, body)] += 1
        if status in (503, 429):
            v.refusals[f"{status} {(body or {}).get('message')}"] += 1
        if status == 202 and isinstance(body, dict) and body.get("requestId"):
            accepted[body["requestId"]] = (c, u)
    finals, events, starts, issued, rejected = quiesce(t, d, list(accepted), coupons, budget)
    decided = {r for r, f in finals.items() if isinstance(f, dict) and f.get("status") in FINAL}
    in_log = {rid for _, _, _, rid, _ in events}
    complete = check_log_complete(t, v, accepted, in_log, starts)
    if not complete:
        missing_diag(t, d, set(accepted) - in_log, events)
    sent = {(body or {}).get("requestId"): at for _, _, status, body, at in answers if status == 202}
    for rid in sorted(set(accepted) - decided)[:10]:
        t.diag(f"lost: {rid} (coupon, user) {accepted[rid]} answered 202 for a request sent at {sent.get(rid, 0):.2f}s; "
               f"{'in' if rid in in_log else 'NOT in'} the Kafka log; status now {finals.get(rid)}")
    stuck_partitions_diag(t, d, {accepted[r][0] for r in set(accepted) - decided})
    f = v.figures
    f["accepted"], f["decided"] = len(accepted), len(decided)
    f["lost"] = len(accepted) - len(decided)
    f["oversold"] = oversold(d, coupons)
    f["duplicates"] = duplicates(d, accepted, finals)
    v.drifted = drift(t, d, coupons, budget)
    f["drift"] = len(v.drifted)
    check_agreement(t, v, accepted, finals, issued, rejected)
    if complete:
        check_fcfs(t, v, d, events, coupons, issued, rejected)
    return accepted


def check_log_complete(t, v, accepted, in_log, starts):
    """FCFS is replayed from the Kafka log, so the log must still hold every accepted event. A 202 whose event
    is not in a log that starts at offset 0 was never durably written: a failure. Where retention dropped the
    log's head (the embedded mock keeps a few MiB per partition) the replay is impossible, and the check says
    so as a skip instead of reporting a false FCFS failure. Returns whether the log is complete."""
    missing = set(accepted) - in_log
    truncated = {p: o for p, o in sorted(starts.items()) if o > 0}
    if missing and truncated:
        t.skip(f"{v.name}: each coupon's issued requests are the earliest in Kafka log order (FCFS)",
               f"the Kafka log no longer holds every event: {len(missing)} of {len(accepted)} accepted events "
               f"are gone (partitions start at offsets {truncated}); no FCFS replay without them")
        return False
    t.ok(not missing, f"{v.name}: every request answered 202 is in the Kafka log",
         f"{len(missing)} missing, e.g. {sorted(missing)[:5]}")
    return not missing


def missing_diag(t, d, missing, events):
    """For a post-mortem of a 202 whose event the log read did not hold: where its consumer read it (the
    decision's kafka_partition and kafka_offset), the offsets the read saw in that partition, and what the log
    holds at that offset now. Another request there means the log was rewritten; nothing there, a read or a
    log that ends early."""
    by_place = {(p, o): rid for _, p, o, rid, _ in events}
    ranges = collections.defaultdict(list)
    for _, p, o, _, _ in events:
        ranges[p].append(o)
    for rid in sorted(missing)[:5]:
        rows = d.sql(f"SELECT kafka_partition, kafka_offset, 'issued' FROM issued_coupons WHERE request_id = '{rid}' "
                     f"UNION ALL SELECT kafka_partition, kafka_offset, 'rejected' FROM rejected_requests "
                     f"WHERE request_id = '{rid}'")
        for p, o, kind in rows or [(None, None, "undecided")]:
            seen = ranges.get(int(p), []) if p not in (None, "") else []
            now = by_place.get((int(p), int(o))) if p not in (None, "") and o not in (None, "") else None
            t.diag(f"not in the log read: {rid}, {kind} from partition {p} offset {o}; the read saw that "
                   f"partition's offsets {min(seen) if seen else '-'}..{max(seen) if seen else '-'} ({len(seen)} "
                   f"events); at offset {o} now: {now or 'nothing'}")


def stuck_partitions_diag(t, d, coupons):
    """For a post-mortem of undecided requests: the last lines the consumers of their partitions logged (the
    daemon's directory is gone once the test ends; COUPONSD_CHAOS_KEEP keeps the whole log)."""
    for p in sorted({kafka_partition(c, PARTITIONS) for c in coupons}):
        lines = [ln for ln in d.log().splitlines() if f"consumer partition {p}" in ln]
        t.diag(f"consumer partition {p}: its last {min(40, len(lines))} of {len(lines)} log lines:")
        for ln in lines[-40:]:
            t.diag(f"  {ln[:300]}")


def oversold(d, coupons):
    n = 0
    for c in coupons:
        # total_quantity from PostgreSQL: admin changes move it while the sale runs.
        issued = int(d.sql_scalar(f"SELECT count(*) FROM issued_coupons WHERE coupon_id = {c}"))
        remaining = int(d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}"))
        total = int(d.sql_scalar(f"SELECT total_quantity FROM coupons WHERE id = {c}"))
        n += max(0, issued - total) + abs(remaining + issued - total)
    return n


def duplicates(d, accepted, finals):
    rows = d.sql("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM issued_coupons "
                 "GROUP BY coupon_id, user_id HAVING count(*) > 1) AS dup")
    n = int(rows[0][0]) if rows else 0
    per_pair = collections.Counter(accepted[r] for r, f in finals.items()
                                   if isinstance(f, dict) and f.get("status") == "ISSUED")
    return n + sum(k - 1 for k in per_pair.values() if k > 1)


def drift(t, d, coupons, budget):
    def mismatched():
        out = {}
        for c in coupons:
            remaining = int(d.sql_scalar(f"SELECT remaining FROM coupons WHERE id = {c}"))
            stock = d.redis_stock(c)
            if stock != remaining:
                out[c] = (stock, remaining)
        return out
    wait_for(lambda: not mismatched(), budget.left(15), step=0.25)
    bad = mismatched()
    if bad:
        t.diag(f"drift: coupon -> (Redis stock, PostgreSQL remaining): {bad}")
    return bad


def check_agreement(t, v, accepted, finals, issued, rejected):
    """The status the API gives is PostgreSQL's decision, and no request is both issued and rejected."""
    both = set(issued) & set(rejected)
    t.ok(not both, f"{v.name}: no request is both in issued_coupons and rejected_requests",
         f"{len(both)}: {sorted(both)[:5]}")
    wrong = []
    for rid, f in finals.items():
        status = (f or {}).get("status")
        if status == "ISSUED" and rid not in issued or status == "REJECTED" and rid not in rejected:
            wrong.append((rid, status, "issued" if rid in issued else "rejected" if rid in rejected else "none"))
    t.ok(not wrong, f"{v.name}: every final status the API gives is PostgreSQL's decision", wrong[:5])


def decision_times(d, rids):
    """{requestId: (issued_at or decided_at, gate record in Redis)} for the diagnostics of a failed check."""
    if not rids:
        return {}
    ids = ",".join(f"'{r}'" for r in rids)
    rows = d.sql(f"SELECT request_id, issued_at::text FROM issued_coupons WHERE request_id IN ({ids}) UNION ALL "
                 f"SELECT request_id, decided_at::text FROM rejected_requests WHERE request_id IN ({ids})")
    return {r: at for r, at in rows}


def check_fcfs(t, v, d, events, coupons, issued, rejected):
    expected = fcfs_expected(events, coupons)
    bad, detail = {}, []
    where = {rid: (p, off, user) for _, p, off, rid, user in events if rid is not None}
    for c in coupons:
        got = {r for r, (cc, _) in issued.items() if cc == c}
        if got != expected[c]:
            bad[c] = (len(expected[c] - got), len(got - expected[c]))
            odd = sorted(expected[c] ^ got, key=lambda r: where.get(r, (0, 0, 0))[1])
            odd = odd[:10] + odd[-10:] if len(odd) > 20 else odd  # the first passed over and the last served
            times = decision_times(d, odd)
            for rid in odd:
                p, off, user = where.get(rid, (None, None, None))
                rsv = d.redis.get(f"{d.redis_prefix}{{{c}}}:rsv:{rid}") if len(detail) < 40 else "?"
                detail.append(f"coupon {c} partition {p} offset {off} user {user} {rid}: "
                              f"{'issued' if rid in issued else 'rejected ' + str(rejected.get(rid))} "
                              f"at {times.get(rid)}, gate record {rsv}, "
                              f"FCFS says {'issued' if rid in expected[c] else 'rejected'}")
    description = f"{v.name}: each coupon's issued requests are the earliest in Kafka log order (FCFS)"
    diag = f"coupon -> (expected but not issued, issued but not expected): {bad}\n" + "\n".join(detail[:40])
    t.ok(not bad, description, diag)


# ---- a scenario, start to end -----------------------------------------------------------------------------

def scenario(t, name, fault, d=None, stocks=STOCKS, users=3500, duration=10.0,
             allow_errors=False, min_accepted=500, evidence=None, seed=None):
    """Runs one scenario on daemon d (started here; a chaos_daemon() by default), with fault(faults) run in
    this thread while the load runs in others. evidence(d, faults, verdict) returns (ok, description) proving the
    fault really happened. Returns the Verdict."""
    seed = seed if seed is not None else SEED
    v = Verdict(name)
    d = d or chaos_daemon()
    # A soak's backlog (a consumer that spent its minutes in crash-loop back-off) takes longer to drain.
    budget = Budget(duration * (1.5 if SOAK_SECONDS else 1) + 150)
    started = time.monotonic()
    with d:
        start_daemon(d)
        coupons = create_coupons(d, stocks)
        load = Load(d.port, coupons, users, duration, rng=random.Random(f"{seed}:{name}"))
        faults = run_faults(d, load, fault, random.Random(f"{seed}:{name}:faults"))
        t.ok(load.join(budget.left(duration + 60)), f"{name}: the load finished", f"{load.progress():.0%} sent")
        check(t, v, d, coupons, load.answers, budget)
        describe(t, v, seed, load, coupons, faults)
        t.ok(not faults.errors, f"{name}: every fault was injected", "\n".join(faults.errors))
        if evidence is not None:
            ok, what = evidence(d, faults, v)
            t.ok(ok, f"{name}: {what}", d.log()[-3000:])
        t.ok(v.figures["accepted"] >= min_accepted,
             f"{name}: enough requests were accepted to mean something (>= {min_accepted})",
             v.figures["accepted"])
        check_alive(t, name, d)
        gaps = re.findall(r".*were never delivered.*", d.log())
        t.ok(not gaps, f"{name}: no consumer saw a gap in the Kafka log", "\n".join(gaps[:5]))
        keep_log(d, name)
        d.stop()  # now, so that the reports written at exit (LeakSanitizer) are in stderr too
        check_answers(t, v, allow_errors)
        v.load, v.faults, v.daemon = load, faults, d  # for checks of the caller's own (chaos_blame.check_503s())
        v.seconds = time.monotonic() - started
        verdict(t, v)
    return v


def run_faults(d, load, fault, rng):
    faults = Faults(d, load, rng)
    load.start()
    try:
        fault(faults)
    finally:
        faults.close()
        for server in (d.redis, d.pg):
            if server is not None:
                server.resume()  # a fault that raised mid-pause must not leave a server stopped
        if d.kafka_cluster is not None and not d.kafka_cluster.alive():
            faults.kafka_heal()  # nor a broker down: the checks read the log, the next test needs the cluster
    return faults


def describe(t, v, seed, load, coupons, faults):
    t.diag(f"chaos {v.name}: load started at {time.strftime('%H:%M:%S', time.gmtime(load.wall_start))} UTC, "
           f"seed {seed}, {len(load.plan)} requests over {load.duration:.0f}s, "
           f"{len(coupons)} coupons with {sum(coupons.values())} in stock")
    for line in faults.done:
        t.diag(f"  {line}")
    t.diag(f"chaos {v.name}: answers {dict(sorted(v.answers.items()))}")
    if v.refusals:
        t.diag(f"chaos {v.name}: refusals {dict(sorted(v.refusals.items()))}")


def keep_log(d, name):
    keep = os.environ.get("COUPONSD_CHAOS_KEEP")
    if keep:  # a directory: the daemon's log of each scenario is copied there, for post-mortems
        os.makedirs(keep, exist_ok=True)
        with open(os.path.join(keep, f"{name}.log"), "w") as out:
            out.write(d.log())


def verdict(t, v):
    """The figure line, as a diagnostic and as the assertion."""
    line, f = v.line(), v.figures
    t.diag(line)
    t.ok(f["lost"] == 0 and f["oversold"] == 0 and f["duplicates"] == 0 and f["drift"] == 0, line)
    t.diag(f"chaos {v.name}: took {v.seconds:.1f}s; 503={v.answers.get('503', 0)} 429={v.answers.get('429', 0)} "
           f"connection errors={sum(n for k, n in v.answers.items() if k.startswith('error'))}")


def check_answers(t, v, allow_errors):
    """Every answer is 202, 409 SOLD_OUT / ALREADY_REQUESTED, 503 or 429; a cut connection only where the
    scenario kills the process holding it."""
    allowed = {"202", "409 SOLD_OUT", "409 ALREADY_REQUESTED", "503", "429"}
    odd = {k: n for k, n in v.answers.items() if k not in allowed and not (allow_errors and k.startswith("error"))}
    t.ok(not odd, f"{v.name}: every answer is 202, 409, 503 or 429"
         + (" (or a connection cut by a kill)" if allow_errors else ""), odd)


def check_alive(t, name, d):
    """The master survived and has its full set of children again."""
    kafka_children = 0 if d.kafka_cluster is not None else 1

    def full():
        return d.proc.poll() is None and len(d.http_workers()) >= 2 and len(d.consumers()) == PARTITIONS \
            and len(d.kafka()) == kafka_children
    t.ok(wait_for(full, 15), f"{name}: the master is up with every http worker, consumer"
         + ("" if kafka_children == 0 else " and the embedded kafka"), (d.proc.poll(), d.children()))


# The master's line when the watchdog kills a consumer whose loop stopped ticking.
CONSUMER_KILLED = r"consumer partition \d+ \(pid \d+\) has not ticked for \d+ ms \(daemon\.worker_timeout\)"


def log_count(d, pattern):
    return len(re.findall(pattern, d.log()))


def partition_of(coupons, index=None):
    """The partition of the coupon with the most stock (or of coupons[index])."""
    ids = sorted(coupons, key=lambda c: coupons[c])
    return kafka_partition(ids[-1] if index is None else ids[index], PARTITIONS)
