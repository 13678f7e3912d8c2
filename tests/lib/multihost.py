# SPDX-License-Identifier: BSD-2-Clause
"""multihost.py: couponsd on several hosts with addresses of their own (issue 13), and what a test observes.

    Site     the machine room: network namespaces (netns.Topology), and on the bridge's address PostgreSQL,
             Redis and a real 3-node Kafka cluster (scripts/kafka.sh with KAFKA_HOST). One per test file.
    Fleet    one couponsd per host, all on the same topics, consumer group, database and Redis prefix, each
             with kafka.owned_partitions "all" (hot standbys), daemon.node = hN and http.listen = ADDR:8080 in
             its namespace. It also stands in for a Daemon where tests/lib/chaos.py checks the invariants.
    Balancer the load balancer: round robin over the hosts whose GET /readyz said 200; a host whose connection
             fails or is refused is skipped (the request goes to the next host) and taken out until its next
             good check.
    Owners   who owns which partition, polled from PostgreSQL every 100 ms: the advisory locks (pg_locks) with
             the address of the session holding each (pg_stat_activity.client_addr: each host has its own),
             and partition_owners (node, since) where the product has that table.
    Writers  a test-only trigger on issued_coupons and rejected_requests that notes the client address of the
             session that wrote each decision, so that a cut-off host writing after it lost a partition is seen.
"""
import collections
import http.client
import os
import random
import signal
import subprocess
import threading
import time

import chaos
import netns
import servers
from harness import Budget, Daemon, http_request, kafka_partition, parse_json, wait_for

PARTITIONS = chaos.PARTITIONS
HTTP_PORT = 8080  # every host has a port space of its own
STOCKS = (50, 125, 175, 225, 275, 325)  # 1175 in all, for about 3000 requests from 2000 users
TAKEOVER_BOUND = 5.0  # issue 13: a dead or cut-off host's partitions are taken over within 5 s
CONNECT_TIMEOUT = 1.0  # the balancer gives up on a host that does not accept within this
PROBE_INTERVAL = 0.25  # the balancer's GET /readyz, every this often
PROBE_TIMEOUT = 0.5  # a probe not answered within this takes the host out
UNHEALTHY_AFTER = 1  # failed probes before the balancer takes a host out
# daemon.stop_drain, as docs/operations.md says to size it: the balancer must have seen /readyz 503 before the
# host stops accepting. Its last good probe may have just ended, its next one may take the whole timeout; twice
# that as the margin for a machine shared with other tests (issue 13: a rolling restart resets nothing).
STOP_DRAIN = 2 * (PROBE_INTERVAL * UNHEALTHY_AFTER + PROBE_TIMEOUT)
ANSWER_TIMEOUT = 15.0


# ---- the machine room --------------------------------------------------------------------------------------

class Site:
    """The namespaces and the shared servers, built by up() and removed by down() (also after a partial up())."""

    def __init__(self, hosts=3):
        self.topology = netns.Topology(hosts)
        self.redis = self.pg = self.kafka = None

    @property
    def hosts(self):
        return self.topology.hosts

    @property
    def addr(self):
        return self.topology.server_addr

    def up(self):
        self.topology.up()
        self.redis = servers.Redis(host=self.addr)
        self.pg = servers.Postgres(host=self.addr, clients=str(self.topology.subnet))
        self.kafka = servers.Kafka(nodes=3, partitions=PARTITIONS, host=self.addr)
        return self

    def down(self):
        """Everything this site started, each by its own pid or name; returns what could not be removed."""
        errors = []
        for server in (self.kafka, self.pg, self.redis):
            if server is not None:
                try:
                    server.close()
                except Exception as e:  # noqa: BLE001 - the rest must still go
                    errors.append(f"{server.name}: {e}")
        return errors + self.topology.down()


# ---- the hosts ---------------------------------------------------------------------------------------------

class HostDaemon(Daemon):
    """A Daemon in a host's namespace: its command line goes through `ip netns exec`, its API is ADDR:8080."""

    def __init__(self, host, **kw):
        super().__init__(**kw)
        self.node = host.name
        self.netns_host = host
        self.host, self.port = host.addr, HTTP_PORT
        # PR_SET_PDEATHSIG follows the thread that forks: a killed test run takes its daemons with it.
        self.launcher = host.launcher()
        if threading.current_thread() is threading.main_thread():
            self.launcher = ["setpriv", "--pdeathsig", "KILL", "--"] + self.launcher
        self.set("http", "listen", [f"{host.addr}:{HTTP_PORT}"])

    def wait_ready(self, timeout, start=0):
        """READY=1 (from notification index start on): True, else False once timeout passed."""
        return bool(self.wait_note("READY=1", timeout, start))

    def readyz(self):
        try:
            return self.get("/readyz", timeout=1)[0]
        except OSError:
            return None

    def metric_lines(self, name):
        try:
            status, text, _ = self.get("/metrics", timeout=3)
        except OSError:
            return None
        return [ln for ln in text.splitlines() if ln.startswith(name + "{")] if status == 200 else None


class Fleet:
    """One couponsd per host of site, sharing topics, group, database and Redis prefix (a fresh set per fleet),
    every host a hot standby of every partition. Offers what chaos.check() asks of a daemon."""

    def __init__(self, site, stem, workers=1, overrides=None):
        self.site, self.stem = site, stem
        self.redis, self.pg, self.kafka_cluster = site.redis, site.pg, site.kafka
        self.dbname = servers.unique_name("couponsd_mh")
        conninfo = self.pg.create_db(self.dbname)
        self.redis_prefix = servers.unique_name("mh") + ":"
        name = servers.unique_name(stem)
        self.topics = {"topic": f"{name}-issue", "results_topic": f"{name}-results", "dlq_topic": f"{name}-dlq"}
        self.kafka_cluster.create_topics(*(f"{t}:{PARTITIONS}" for t in self.topics.values()))
        self.daemons = [self._daemon(h, conninfo, name, workers, overrides) for h in site.hosts]

    def _daemon(self, host, conninfo, name, workers, overrides):
        tree = {"issue": {"retry_initial": "50ms", "retry_max": "1s"},
                "daemon": {"worker_timeout": "10s", "shutdown_timeout": "15s", "node": host.name,
                           "stop_drain": f"{round(STOP_DRAIN * 1000)}ms"},
                "kafka": dict(self.topics, brokers=self.kafka_cluster.bootstrap, group_id=f"{name}-group",
                              owned_partitions="all")}
        for section, keys in (overrides or {}).items():
            tree.setdefault(section, {}).update(keys)
        return HostDaemon(host, redis=self.redis, postgres=self.pg, postgres_conninfo=conninfo,
                          redis_prefix=self.redis_prefix, admin_token=chaos.TOKEN, workers=workers,
                          partitions=PARTITIONS, overrides=tree)

    def by_name(self, name):
        return next(d for d in self.daemons if d.node == name)

    def by_addr(self, addr):
        return next((d for d in self.daemons if d.host == addr), None)

    def start(self, t, ready_timeout=60.0):
        """Starts the first host and waits until it is READY (it takes every partition), then the others; each
        standby must be READY too (issue 13: a standby is healthy) and answer /readyz 200. Returns whether every
        host notified READY=1."""
        first, rest = self.daemons[0], self.daemons[1:]
        first.start(wait=False)
        if not first.wait_ready(ready_timeout):
            raise RuntimeError(f"{first.node} not ready within {ready_timeout}s:\n{first.log()[-3000:]}")
        for d in rest:
            d.start(wait=False)
        unready = [d.node for d in rest if not d.wait_ready(min(20.0, ready_timeout))]
        t.ok(not unready, "every standby host notified READY=1 (a standby consumer counts as ready)",
             f"not READY within 20 s: {unready}; their consumers' last lines:\n"
             + "\n".join(ln for d in rest for ln in d.log().splitlines()[-4:]))
        serving = wait_for(lambda: all(d.readyz() == 200 for d in self.daemons), 30, 0.2)
        if not serving:
            raise RuntimeError(f"/readyz not 200 on every host: {[(d.node, d.readyz()) for d in self.daemons]}")
        return not unready

    def alive(self):
        return [d for d in self.daemons if d.proc is not None and d.proc.poll() is None]

    def connections(self, d):
        """{"postgres": n, "redis": n, "kafka": n} of d's established TCP connections, read from its namespace
        (the sizing figures of docs/operations.md)."""
        r = subprocess.run(d.netns_host.launcher() + ["ss", "-Htn", "state", "established"], capture_output=True,
                           text=True, timeout=10)
        kafka = set(self.kafka_cluster.bootstrap.split(","))
        out = collections.Counter()
        for line in r.stdout.splitlines():
            peer = line.split()[-1] if line.split() else ""
            if peer == f"{self.pg.host}:{self.pg.port}":
                out["postgres"] += 1
            elif peer == f"{self.redis.host}:{self.redis.port}":
                out["redis"] += 1
            elif peer in kafka:
                out["kafka"] += 1
        return dict(out)

    def cleanup(self, keep=None):
        for d in self.daemons:
            if keep:
                os.makedirs(keep, exist_ok=True)
                with open(os.path.join(keep, f"{self.stem}-{d.node}.log"), "w") as out:
                    out.write(d.log())
            d.cleanup()
        try:
            self.pg.psql("postgres", f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        except RuntimeError:
            pass

    # ---- what chaos.check() asks of a daemon ----
    def endpoints(self):
        return [(d.host, d.port) for d in self.alive()]

    def kafka_bootstrap(self):
        return self.kafka_cluster.bootstrap

    def topic(self, which="topic"):
        return self.topics[which]

    def sql(self, query):
        return self.pg.psql(self.dbname, query)

    def sql_scalar(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows and rows[0] else None

    def redis_stock(self, coupon_id):
        return self.daemons[0].redis_stock(coupon_id)

    def log(self):
        return "\n".join(f"[{d.node}] {ln}" for d in self.daemons for ln in d.log().splitlines())


# ---- the load balancer and the driver ----------------------------------------------------------------------

class Balancer:
    """Round robin over the hosts in service. A host is in service when its last GET /readyz (every
    PROBE_INTERVAL, PROBE_TIMEOUT) answered 200 (UNHEALTHY_AFTER is 1); a failed or refused connection takes it
    out at once."""

    def __init__(self, fleet, interval=PROBE_INTERVAL):
        self.fleet, self.interval = fleet, interval
        self.up = {d.node: False for d in fleet.daemons}
        self.lock = threading.Lock()
        self.rr = 0
        self.skipped = collections.Counter()  # connections that failed, by host: the request went elsewhere
        self.stopped = threading.Event()
        self.check()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def check(self):
        for d in self.fleet.daemons:
            try:
                ok = http_request(d.port, "GET", "/readyz", timeout=PROBE_TIMEOUT, host=d.host)[0] == 200
            except OSError:
                ok = False
            with self.lock:
                self.up[d.node] = ok

    def _run(self):
        while not self.stopped.wait(self.interval):
            self.check()

    def stop(self):
        self.stopped.set()
        self.thread.join(5)

    def pick(self, tried):
        with self.lock:
            names = [d for d in self.fleet.daemons if self.up[d.node] and d.node not in tried]
            if not names:
                return None
            self.rr += 1
            return names[self.rr % len(names)]

    def take_out(self, node):
        with self.lock:
            self.up[node] = False
            self.skipped[node] += 1


class BalancedLoad(chaos.Load):
    """chaos.Load's flash sale, sent through the Balancer: each answer is also counted by host, and every 503
    is kept with its time and host (a 503 must have a fault to explain it)."""

    def __init__(self, balancer, coupons, users, duration, rng):
        super().__init__(None, coupons, users, duration, threads=48, rng=rng)
        self.lb = balancer
        self.by_host = collections.defaultdict(collections.Counter)
        self.refused_503 = []
        self.served = []  # (time sent, host, status) of every answer
        self.cut_short = []  # (time sent, host, error) of every connection that broke after it was accepted
        self.unplaced = 0  # requests no host was in service for (10 s)

    def _send(self, c, u):
        sent = self.elapsed()
        tried, deadline = set(), time.monotonic() + 10
        while True:
            d = self.lb.pick(tried)
            if d is None:
                if time.monotonic() > deadline:
                    status, body, node = "error: no host in service", None, "-"
                    self.unplaced += 1
                    break
                time.sleep(0.05)
                tried = set()
                continue
            got = self._one(d, c, u)
            if got is None:
                self.lb.take_out(d.node)
                tried.add(d.node)
                continue
            (status, body), node = got, d.node
            break
        with self.lock:
            self.answers.append((c, u, status, body, sent))
            self.by_host[node][chaos.answer_kind(status, body)] += 1
            self.served.append((sent, node, status))
            if status == 503:
                self.refused_503.append((round(sent, 2), node, (body or {}).get("message")))
            elif isinstance(status, str):
                self.cut_short.append((round(sent, 2), node, status))
        return status

    def _one(self, d, c, u):
        """(status, body) from host d, or None when its connection failed (not an answer: the balancer moves
        the request to the next host)."""
        conn = http.client.HTTPConnection(d.host, d.port, timeout=CONNECT_TIMEOUT)
        try:
            try:
                conn.connect()
            except OSError:
                return None
            conn.sock.settimeout(ANSWER_TIMEOUT)
            try:
                conn.request("POST", f"/api/coupons/{c}/issue?userId={u}")
                resp = conn.getresponse()
                return resp.status, parse_json(resp.read().decode(errors="replace"))
            except Exception as e:  # noqa: BLE001 - a connection cut after it was accepted is an answer to count
                return f"error: {type(e).__name__}", None
        finally:
            conn.close()


# ---- ownership, as PostgreSQL sees it ----------------------------------------------------------------------

class Psql:
    """One long-lived psql session (a poll every 100 ms would otherwise fork a psql each time)."""

    END = "__couponsd_end__"

    def __init__(self, pg, db):
        self.proc = subprocess.Popen([os.path.join(servers.PG_BIN, "psql"), "-X", "-q", "-h", pg.host, "-p",
                                      str(pg.port), "-U", "postgres", "-d", db, "-At", "-F", "|"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)

    def rows(self, sql):
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self.END + "\n")
        self.proc.stdin.flush()
        out = []
        while True:
            line = self.proc.stdout.readline()
            if not line or line.rstrip("\n") == self.END:
                return out
            if line.strip():
                out.append(line.rstrip("\n").split("|"))

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


LOCKS = ("SELECT l.objid, host(a.client_addr), a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
         "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
         "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


class Owners:
    """Polls who owns each partition every 100 ms. history: [(time, partition, (addr, backend pid) or None)],
    a row each time a partition's holder changes; table: [(partition, node, since)] each time partition_owners
    shows a new (node, since)."""

    def __init__(self, fleet, interval=0.1):
        self.fleet, self.interval = fleet, interval
        self.psql = Psql(fleet.pg, fleet.dbname)
        self.now = {}
        self.table_now = {}
        self.history, self.table = [], []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.poll()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def poll(self):
        at = time.time()
        held = {int(p): (addr, int(pid)) for p, addr, pid in self.psql.rows(LOCKS)}
        q = ("SELECT partition, node, extract(epoch FROM since) FROM partition_owners WHERE topic = '"
             + self.fleet.topic() + "'")
        table = {int(p): (node, float(since)) for p, node, since in self.psql.rows(q)}
        with self.lock:
            for p in range(PARTITIONS):
                if held.get(p) != self.now.get(p, "unseen"):
                    self.history.append((at, p, held.get(p)))
                if p in table and table[p] != self.table_now.get(p):
                    self.table.append((p, *table[p]))
            self.now, self.table_now = held, table

    def _run(self):
        while not self.stopped.wait(self.interval):
            try:
                self.poll()
            except (OSError, ValueError, IndexError):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join(5)
        self.psql.close()

    def owned_by(self, addr):
        with self.lock:
            return sorted(p for p, h in self.now.items() if h and h[0] == addr)

    def all_owned(self):
        with self.lock:
            return len([p for p in range(PARTITIONS) if self.now.get(p)]) == PARTITIONS

    def takeover(self, partition, at, was, until=float("inf")):
        """After a fault at time at on the session was = (addr, pid) holding partition: (seconds until another
        session held it, its addr) from pg_locks, and (seconds, node) from partition_owners.since (None where no
        new row came before until, the next fault)."""
        with self.lock:
            seen = next(((t - at, h[0]) for t, p, h in self.history
                         if p == partition and at <= t < until and h is not None and h != was), None)
            row = next(((since - at, node) for p, node, since in self.table
                        if p == partition and at <= since < until), None)
        return seen, row


# ---- which session wrote each decision ---------------------------------------------------------------------

WRITERS_SQL = """
CREATE TABLE test_decision_writers (tbl text, request_id text, coupon_id bigint, addr text, backend int,
                                    at timestamptz);
CREATE FUNCTION test_note_writer() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO test_decision_writers VALUES (TG_TABLE_NAME, NEW.request_id, NEW.coupon_id,
                                            host(inet_client_addr()), pg_backend_pid(), clock_timestamp());
  RETURN NULL;
END $$;
CREATE TRIGGER test_note_writer AFTER INSERT ON issued_coupons FOR EACH ROW EXECUTE FUNCTION test_note_writer();
CREATE TRIGGER test_note_writer AFTER INSERT ON rejected_requests FOR EACH ROW EXECUTE FUNCTION test_note_writer();
"""


def note_writers(fleet):
    """Test instrumentation, not product schema: every decision row also notes the client address of the
    session that wrote it (each host has its own address)."""
    fleet.pg.psql(fleet.dbname, WRITERS_SQL)


def writes_by(fleet, addr, after):
    """Decision rows the session(s) from addr wrote after the Unix time after: [(table, requestId, partition,
    Unix time written)]."""
    rows = fleet.sql(f"SELECT tbl, request_id, coupon_id, extract(epoch FROM at) FROM test_decision_writers "
                     f"WHERE addr = '{addr}' AND at > to_timestamp({after}) ORDER BY at")
    return [(tbl, rid, kafka_partition(int(c), PARTITIONS), float(at)) for tbl, rid, c, at in rows]


# ---- faults on hosts ---------------------------------------------------------------------------------------

class HostFaults(chaos.Faults):
    """chaos.Faults for a fleet: what happens to whole hosts. Each fault that may move partitions is a hit:
    (Unix time, host, what, {partition: (addr, backend pid)} it held just before, whether they must move)."""

    def __init__(self, fleet, load, rng, owners, site):
        super().__init__(fleet, load, rng)
        self.fleet, self.owners, self.site = fleet, owners, site
        self.hits = []

    def hit(self, d, what, must_move=True):
        with self.owners.lock:
            held = {p: h for p, h in self.owners.now.items() if h and h[0] == d.host}
        at = time.time()
        self.hits.append((at, d.node, what, held, must_move))
        return at

    def busiest(self):
        """The live host that owns the most partitions right now."""
        return max(self.fleet.alive(), key=lambda d: len(self.owners.owned_by(d.host)))

    def wait_moved(self, d, timeout):
        """Until no partition is held by d's address and every partition has an owner (True), or timeout."""
        return wait_for(lambda: not self.owners.owned_by(d.host) and self.owners.all_owned(), timeout, 0.05)

    def kill_host(self, d):
        self.hit(d, "SIGKILL of the whole process tree")
        pids = d.kill_tree()
        self.note(f"{d.node}: SIGKILL to its {len(pids)} processes (master pid {pids[0] if pids else '-'})")
        return pids

    def cut(self, d):
        at = self.hit(d, "link cut")
        self.site.topology.cut(d.netns_host)
        self.note(f"{d.node}: eth0 down in {d.netns_host.ns} (cut off)")
        return at

    def restore(self, d):
        self.site.topology.restore(d.netns_host)
        self.note(f"{d.node}: eth0 up again")
        return time.time()

    def reload(self, d, timeout=20):
        n = len(d.notes)
        self.hit(d, "SIGHUP reload", must_move=False)
        d.signal(signal.SIGHUP)
        self.note(f"{d.node}: SIGHUP sent")
        if d.wait_note("STATUS=reloaded", timeout, n):
            self.note(f"{d.node}: SIGHUP, reloaded")
        else:
            self.fail(f"{d.node}: SIGHUP: no STATUS=reloaded within {timeout}s")

    def stop_host(self, d, timeout=30):
        self.hit(d, "SIGTERM (stop)")
        d.signal(signal.SIGTERM)
        self.note(f"{d.node}: SIGTERM sent")
        rc = d.wait_exit(timeout)
        d.stop()
        if rc is None:
            self.fail(f"{d.node}: still running {timeout}s after SIGTERM")
        else:
            self.note(f"{d.node}: SIGTERM, exited {rc}")

    def start_host(self, d, timeout=30):
        d.start(wait=False)
        ready = d.wait_ready(timeout)
        serving = wait_for(lambda: d.readyz() == 200, 10 if ready else 1, 0.1)
        self.note(f"{d.node}: started again, {'READY=1' if ready else 'no READY=1 within %ds' % timeout}, "
                  f"/readyz {'200' if serving else d.readyz()}")
        return ready and serving


# ---- a scenario, start to end -----------------------------------------------------------------------------

class Scenario:
    """One sale on a fresh fleet with fault(faults) run while the load runs; then the usual figures
    (chaos.check), the takeover time of every partition a fault moved, and the host-level checks."""

    def __init__(self, t, site, name, users=2000, duration=12.0, allow_errors=False, overrides=None):
        self.t, self.site, self.name = t, site, name
        self.users, self.duration, self.allow_errors = users, duration, allow_errors
        self.overrides = overrides
        self.v = chaos.Verdict(name)
        self.budget = None
        self.fleet = self.balancer = self.owners = self.load = self.faults = None

    def run(self, fault, evidence=None):
        t, name = self.t, self.name
        started = time.monotonic()
        self.budget = Budget(self.duration + 150)
        self.fleet = Fleet(self.site, name.replace("-", ""), overrides=self.overrides)
        try:
            self._run(fault, evidence)
        finally:
            for part in (self.balancer, self.owners):
                if part is not None:
                    part.stop()
            self.fleet.cleanup(os.environ.get("COUPONSD_CHAOS_KEEP"))
        self.v.seconds = time.monotonic() - started
        chaos.verdict(t, self.v)
        self.takeover_verdict()
        return self.v

    def _run(self, fault, evidence):
        t, name, fleet = self.t, self.name, self.fleet
        began = time.monotonic()
        fleet.start(t)
        note_writers(fleet)
        coupons = chaos.create_coupons(fleet.daemons[0], STOCKS)
        self.owners = Owners(fleet)
        t.ok(wait_for(self.owners.all_owned, 15), f"{name}: every partition has an owner before the sale",
             self.owners.now)
        t.diag(f"{name}: hosts {', '.join(f'{d.node}={d.host}:{d.port}' for d in fleet.daemons)}; servers on "
               f"{self.site.addr}; all up in {time.monotonic() - began:.1f}s; owners before the sale: "
               f"{self.owners_text()}")
        for d in fleet.daemons:
            t.diag(f"{name}: {d.node} ({len(d.http_workers())} http worker, {len(d.consumers())} consumers, owns "
                   f"{self.owners.owned_by(d.host)}) holds TCP connections {fleet.connections(d)}")
        self.balancer = Balancer(fleet)
        rng = random.Random(f"{chaos.SEED}:{name}")
        self.load = BalancedLoad(self.balancer, coupons, self.users, self.duration, rng)
        self.faults = HostFaults(fleet, self.load, random.Random(f"{chaos.SEED}:{name}:faults"), self.owners,
                                 self.site)
        self.load.start()
        try:
            fault(self.faults)
        finally:
            self.faults.close()
        t.ok(self.load.join(self.budget.left(self.duration + 60)), f"{name}: the load finished",
             f"{self.load.progress():.0%} sent")
        chaos.check(t, self.v, fleet, coupons, self.load.answers, self.budget)
        chaos.describe(t, self.v, chaos.SEED, self.load, coupons, self.faults)
        self.describe_hosts()
        t.ok(not self.faults.errors, f"{name}: every fault was injected", "\n".join(self.faults.errors))
        if evidence is not None:
            for ok, what, diag in evidence(self):
                t.ok(ok, f"{name}: {what}", diag)
        t.ok(self.v.figures["accepted"] >= 500, f"{name}: enough requests were accepted to mean something (>= 500)",
             self.v.figures["accepted"])
        self.check_hosts()
        gaps = [ln for ln in fleet.log().splitlines() if "were never delivered" in ln]
        t.ok(not gaps, f"{name}: no consumer saw a gap in the Kafka log", "\n".join(gaps[:5]))
        for d in fleet.daemons:
            d.stop()  # now, so that the reports written at exit (LeakSanitizer) are in stderr too
        chaos.check_answers(t, self.v, self.allow_errors)

    def owners_text(self):
        by = collections.defaultdict(list)
        for p, h in sorted(self.owners.now.items()):
            d = self.fleet.by_addr(h[0]) if h else None
            by[d.node if d else (h[0] if h else "nobody")].append(p)
        return ", ".join(f"{n}: {ps}" for n, ps in sorted(by.items())) or "none"

    def describe_hosts(self):
        t, name = self.t, self.name
        for node, kinds in sorted(self.load.by_host.items()):
            t.diag(f"chaos {name}: answers from {node}: {dict(sorted(kinds.items()))}")
        t.diag(f"chaos {name}: connections the balancer moved to another host: {dict(self.balancer.skipped)}; "
               f"requests no host was in service for: {self.load.unplaced}")
        if self.load.refused_503:
            t.diag(f"chaos {name}: 503 answers (time sent, host, message): {sorted(self.load.refused_503)[:20]}")
        broken = collections.defaultdict(list)
        for at, node, error in self.load.cut_short:
            broken[node, error].append(at)
        for (node, error), ats in sorted(broken.items()):
            t.diag(f"chaos {name}: {len(ats)} connections to {node} broken after they were accepted ({error}), "
                   f"sent between {min(ats):.2f}s and {max(ats):.2f}s")
        t.diag(f"chaos {name}: owners at the end: {self.owners_text()}")

    def check_hosts(self):
        """Every host ends up running: master, an HTTP worker, a consumer per partition (owner or standby),
        /readyz 200; every partition has exactly one owner."""
        t, name = self.t, self.name

        def whole():
            return all(d.proc is not None and d.proc.poll() is None and d.http_workers()
                       and len(d.consumers()) == PARTITIONS and d.readyz() == 200 for d in self.fleet.daemons)
        t.ok(wait_for(whole, 15, 0.2), f"{name}: every host is up at the end, with a consumer for every partition "
                                       "(owner or standby) and /readyz 200",
             [(d.node, d.proc.poll() if d.proc else None, len(d.http_workers()), sorted(d.consumers()), d.readyz())
              for d in self.fleet.daemons])
        t.ok(wait_for(self.owners.all_owned, 10), f"{name}: every partition has an owner at the end",
             self.owners_text())

    def lost_at(self, node, what):
        """{partition: Unix time another session took it} for the partitions node held when the fault what hit
        it (the new owner's partition_owners.since)."""
        out = {}
        hits = self.faults.hits
        for i, (at, n, w, held, _) in enumerate(hits):
            if n != node or w != what:
                continue
            until = hits[i + 1][0] if i + 1 < len(hits) else float("inf")
            for p, was in held.items():
                _, row = self.owners.takeover(p, at, was, until)
                if row is not None:
                    out[p] = at + row[0]
        return out

    # ---- takeover figures ----
    def takeovers(self):
        """[(host, what, partition, seconds or None, new owner node, source)] for every partition a hit moved."""
        out = []
        hits = self.faults.hits
        for i, (at, node, what, held, must_move) in enumerate(hits):
            until = hits[i + 1][0] if i + 1 < len(hits) else float("inf")
            for p, was in sorted(held.items()):
                seen, row = self.owners.takeover(p, at, was, until)
                if row is None and not must_move:
                    continue
                secs, new_node = row if row else (None, None)
                obs = f"; pg_locks saw it after {seen[0]:.2f}s" if seen else ""
                out.append((node, what, p, secs, new_node, f"partition_owners.since{obs}"))
        return out

    def takeover_verdict(self):
        t, name = self.t, self.name
        rows = self.takeovers() if self.faults is not None and self.owners is not None else []
        for node, what, p, secs, new, src in rows:
            took = f"{secs:.2f}s" if secs is not None else "never"
            t.diag(f"chaos {name}: takeover of partition {p} after {what} on {node}: {took} (by {new}; {src})")
        slow = [(node, p, secs) for node, what, p, secs, new, src in rows if secs is None or secs > TAKEOVER_BOUND]
        worst = max((s for *_, s, _, _ in rows if s is not None), default=None)
        t.ok(rows and not slow, f"{name}: every takeover took <= {TAKEOVER_BOUND:.0f}s ({len(rows)} takeovers, "
                                f"the longest {worst if worst is None else round(worst, 2)}s)",
             f"too slow or never: {slow}" if rows else "no partition was moved by a fault")
