#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench/run.py: couponsd's benchmark, with its ceilings measured in the same run (run by `make bench`).

    python3 bench/run.py --builddir DIR [--results DIR] [--scale S] [--only PHASES] [--producer K=V]...
                         [--kafka embedded|real|both]

DIR is a build configured without sanitizers or fault injection (`make bench` makes one: bench/build under
the build tree, CFLAGS=-O2 -g) holding src/couponsd, tests/tools/kproduce and bench/{loadgen,ceiling,kfeed}.

Everything listens on 127.0.0.1, every load is bounded in count and time, and every process this script
starts is stopped by the pid it got (redis-server and PostgreSQL by tests/lib/servers.py --stop, which also
stops only the pids it recorded). The scale (BENCH_SCALE, default 1) multiplies every duration and count;
at 1 a whole `make bench` (both Kafkas, the peer)
takes about 12-15 minutes on 2 busy cores.

--kafka both (the default) runs every phase twice in one run: on the embedded Kafka (librdkafka's mock cluster,
the daemon's own child) and on a real 3-node Apache Kafka cluster (KRaft, replication factor 3,
min.insync.replicas=2, started with scripts/kafka.sh on loopback), and prints the two side by side. On the
real cluster "where the CPU went" has a "kafka brokers" group (the three JVMs), and each daemon start gets
topics of its own (the real-cluster equivalent of a fresh embedded cluster).

Phases, in order (each figure is printed with the command that produced it):
  warmup       real Kafka only: the brokers are warmed before anything is measured (a JVM starts cold):
               bench/kfeed writes events into a topic of its own and kproduce reads them back, then the
               first daemon takes a discarded load like the accept phase's, in segments until the brokers'
               CPU per 202 settles (the JIT compiles the small-produce paths over a minute or more)
  pgbench      the PostgreSQL ceiling: batched insert of 100 issued rows per transaction
               (bench/issue100.sql) into the same PostgreSQL, in a database with couponsd's schema;
               one client per consumer
  accept       couponsd's accept path: distinct users, stock larger than the run, 64 connections;
               in 3 segments, each right after a segment of the HTTP ceiling: a bare evhttp server
               (bench/ceiling, same build flags, as many workers as couponsd's http.workers, the same
               202 body) under the same load generator, so that the ratio compares the same moments
  soldout      couponsd's sold-out fast path: distinct users against an exhausted coupon, interleaved
               with the ceiling in the same way
  hot          one coupon of 2e9 (one partition, one consumer), 64 connections, a new user per request:
               accepted/s (the rest is answered 429 by admission control) and the 202s' p99
  sellout      one coupon of 10,000 under the same load: the time from the first request until the
               10,000th unit is issued (max(issued_at) in PostgreSQL)
  peer         where the peer exists (--peer, BENCH_PEER_DIR, default ../shared/peer beside the source
               tree): the same hot and sellout loads against it, each on a fresh stack started from a copy
               (bench/peer.py); on its own librdkafka mock in the embedded run, on the bench's real cluster
               (PEER_KAFKA_BROKERS) in the real one; skipped with a line saying why where it is absent
  backlog      the consumers' capacity: events written straight into the issue topic (bench/kfeed)
               faster than they are decided, 8 coupons over the 8 partitions; decisions/s into PostgreSQL
  backlog1     the same backlog on one coupon, so one partition and one consumer: a hot coupon's capacity
  flash        the flash sale: 100,000 distinct users, stock 10,000 over 10 coupons, 64 connections
  paced        accepting at half the accept phase's closed-loop maximum, open loop: accept latency from the
               scheduled send time, and 202-to-decision
  memory       RSS of the master and of each HTTP worker holding 10,000 open connections

At the end every issue-14 target (bench/targets.py) is printed with its figure on each Kafka and "met",
"NOT met" or "not measured", and saved in the JSON results (bench/results/STAMP-targets.json, and
"targets_table" in each run's JSON).
"""
import argparse
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRCDIR, "tests", "lib"))
from harness import count_fds, kafka_partition, pid_alive as alive, proc_children  # noqa: E402  (partitioner; /proc)
from servers import stop_pid  # noqa: E402
sys.path.insert(0, os.path.join(SRCDIR, "bench"))
import peer as peerlib  # noqa: E402
import peer_plot  # noqa: E402
import targets  # noqa: E402

# librdkafka 2.0.2's mock keeps about 5 MiB of a partition and drops the oldest events past it as they are written:
# of 40,000 events on one partition it kept 23,600 to 35,000 in earlier runs, so the embedded Kafka's one-partition
# backlog is this many events, all of which it keeps (the real cluster's is 40,000).
EMBEDDED_ONE_PARTITION = 20000

# The real cluster's warm-up (warm_up_daemon): segments of the accept load until the brokers' CPU per 202
# settles. The JIT compiles a path after so many calls, not after so long, so a volume comes first: three
# flat segments of a cold cluster (one run: 8,110 / 7,279 / 5,012 us, then 937 by the twelfth) prove nothing.
WARM_MIN_202 = 30000
WARM_SETTLED = 0.15
WARM_MAX_S = 150


def warm_settled(segments, scale=1.0):
    """Whether the brokers' CPU per 202 has stopped falling: WARM_MIN_202 (x scale) 202s in all, and the last
    two segments within WARM_SETTLED of the one before each."""
    us = [x["broker_us_per_202"] for x in segments]
    done = sum(x["status_all"].get("202", 0) for x in segments)
    if done < WARM_MIN_202 * scale or len(us) < 3 or any(x is None for x in us[-3:]):
        return False
    a, b, c = us[-3:]
    return abs(b - a) <= WARM_SETTLED * a and abs(c - b) <= WARM_SETTLED * b


PHASES = ["warmup", "pgbench", "accept", "soldout", "hot", "sellout", "peer", "backlog", "backlog1", "flash",
          "paced", "memory"]
HOT_QUANTITY = 2000000000
SELLOUT_STOCK = 10000  # the target names this stock: it does not scale
CONNECTIONS = 64
HOLD_PER_WORKER = 10000
INTERVAL_MS = 250


# ---- small utilities ------------------------------------------------------------------------------------

def rel(path):
    """A path as the report shows it: relative to the source tree when inside it."""
    path = str(path)
    return os.path.relpath(path, SRCDIR) if path.startswith(SRCDIR + os.sep) else path


def cmdline(argv):
    return " ".join(shlex.quote(rel(a)) if os.path.isabs(str(a)) else shlex.quote(str(a)) for a in argv)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_ms(text):
    """2026-01-01T00:00:00.123Z -> epoch milliseconds."""
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000 + 0.5)


def quantile(sorted_values, q):
    if not sorted_values:
        return None
    i = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.999999) - 1))
    return sorted_values[i]


def read_proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0])  # kB
    except OSError:
        pass
    return out


def socket_fds(pid):
    return count_fds(pid, lambda target: target.startswith("socket:"))


def children(ppid):
    """[(pid, title)] of the live children of ppid (zombies left out)."""
    return [(pid, title) for pid, title, state in proc_children(ppid) if state != "Z"]


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def machine_ticks():
    """(busy, total) clock ticks of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


class CpuMeter:
    """Where the CPU went during a phase: seconds of CPU per process group, divided by the phase's wall time
    (so 1.0 is one core busy the whole phase), plus the machine's total. Groups are found by pid at the end of
    the phase (a process that died during it is missed: only the load generators do, and they are counted
    through RUSAGE_CHILDREN)."""

    def __init__(self, bench):
        self.bench = bench
        self.start()

    def groups(self):
        b = self.bench
        out = {}
        if b.daemon is not None and b.daemon.poll() is None:
            out["master"] = [b.daemon.pid]
            for pid, title in children(b.daemon.pid):
                key = {"couponsd: http worker": "http workers", "couponsd: embedded kafka": "embedded kafka"}.get(
                    title, "consumers" if title.startswith("couponsd: consumer") else "couponsd other")
                out.setdefault(key, []).append(pid)
        if b.cluster_pids():
            out["kafka brokers"] = b.cluster_pids()
        if getattr(b, "redis_pid", None):
            out["redis"] = [b.redis_pid]
        if getattr(b, "pg_pid", None):
            out["postgres"] = [b.pg_pid] + [pid for pid, _ in children(b.pg_pid)]
        if b.peer is not None and b.peer.up:
            out.update(b.peer.pids())
        for p in b.procs:
            if p.poll() is None and p is not b.daemon and os.path.basename(str(p.args[0])) == "ceiling":
                out["bare evhttp"] = [p.pid] + [pid for pid, _ in children(p.pid)]
        return out

    def start(self):
        self.t = time.monotonic()
        self.mach = machine_ticks()
        self.kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.ticks = {pid: proc_ticks(pid) for pids in self.groups().values() for pid in pids}

    def stop(self):
        wall = time.monotonic() - self.t
        if wall <= 0:
            return {}
        busy, total = machine_ticks()
        out = {"wall_s": round(wall, 2),
               "machine_busy_cores": round((busy - self.mach[0]) / max(1, total - self.mach[1]) * os.cpu_count(), 2)}
        for name, pids in self.groups().items():
            ticks = sum(proc_ticks(pid) - self.ticks.get(pid, 0) for pid in pids)
            out[name] = round(ticks / CLK_TCK / wall, 2)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["load generator and tools"] = round((kids.ru_utime + kids.ru_stime - self.kids.ru_utime -
                                                 self.kids.ru_stime) / wall, 2)
        ours = sum(v for k, v in out.items() if k not in ("wall_s", "machine_busy_cores"))
        # other users of the machine, and kernel work (softirq) charged to no process
        out["not ours"] = round(max(0.0, out["machine_busy_cores"] - ours), 2)
        return out


def fmt(v):
    """A figure as the report prints it."""
    if isinstance(v, float):
        return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": os.uname().release}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_total_mb"] = int(line.split()[1]) // 1024
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


# ---- the progress bar -----------------------------------------------------------------------------------

class Progress:
    """One line: overall progress over the phases (weighted by their expected seconds), the phase's own
    progress and its live figures. Redrawn in place on a terminal, one line every few seconds otherwise."""

    def __init__(self, plan):
        self.plan = plan  # [(name, expected seconds)]
        self.total = sum(s for _, s in plan) or 1
        self.index = -1
        self.fraction = 0.0
        self.detail = ""
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.lock = threading.Lock()

    def phase(self, name):
        with self.lock:
            names = [n for n, _ in self.plan]
            self.index = names.index(name) if name in names else self.index
            self.fraction = 0.0
            self.detail = ""
        self.draw(force=True)

    def update(self, fraction=None, detail=None):
        with self.lock:
            if fraction is not None:
                self.fraction = max(0.0, min(1.0, fraction))
            if detail is not None:
                self.detail = detail
        self.draw()

    def overall(self):
        done = sum(s for _, s in self.plan[:max(self.index, 0)])
        here = self.plan[self.index][1] if 0 <= self.index < len(self.plan) else 0
        return min(1.0, (done + here * self.fraction) / self.total)

    def draw(self, force=False):
        now = time.monotonic()
        if not force and not self.tty and now - self.last_print < 5:
            return
        if not force and self.tty and now - self.last_print < 0.2:
            return
        self.last_print = now
        with self.lock:
            frac = self.overall()
            width = 30
            fill = int(frac * width)
            name = self.plan[self.index][0] if 0 <= self.index < len(self.plan) else "-"
            elapsed = now - self.t0
            line = (f"[{'#' * fill}{'.' * (width - fill)}] {frac * 100:3.0f}%  {self.index + 1}/{len(self.plan)} "
                    f"{name:<8} {self.fraction * 100:3.0f}%  {self.detail}  {int(elapsed // 60)}:{int(elapsed % 60):02d}")
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def message(self, text):
        """A line of its own above the bar."""
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        self.draw(force=True)

    def finish(self):
        if self.tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


# ---- the benchmark --------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args, kafka="embedded", stamp=None):
        self.args = args
        self.kafka = kafka  # "embedded" or "real"
        self.kafka_dir = None  # the real cluster's directory (scripts/kafka.sh), once started
        self.topics = {"topic": "coupon-issue", "results_topic": "coupon-issue-results",
                       "dlq_topic": "coupon-issue-dlq"}
        self.daemon_starts = 0
        self.scale = args.scale
        self.build = os.path.abspath(args.builddir)
        self.bin = os.path.join(self.build, "src", "couponsd")
        self.kproduce = os.path.join(self.build, "tests", "tools", "kproduce")
        self.loadgen = os.path.join(self.build, "bench", "loadgen")
        self.ceiling_bin = os.path.join(self.build, "bench", "ceiling")
        self.kfeed = os.path.join(self.build, "bench", "kfeed")
        self.stamp = (stamp or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")) + \
            ("" if kafka == "embedded" else f"-{kafka}-kafka")
        self.scratch = os.path.join(self.build, "runs", self.stamp)
        self.results_dir = os.path.abspath(args.results)
        os.makedirs(self.scratch, exist_ok=True)
        os.makedirs(self.results_dir, exist_ok=True)
        self.only = set(args.only.split(",")) if args.only else set(PHASES)
        self.procs = []  # every Popen started here, for the exit-time sweep
        self.daemon = None
        self.servers_dir = os.path.join(self.scratch, "servers")
        self.servers_up = False
        self.t0_real = time.time()
        self.out = {"schema": 1, "kafka": kafka, "started": now_iso(), "scale": self.scale, "machine": machine_info(),
                    "commands": {}, "phases": {}, "figures": [], "targets": []}
        self.timelines = []  # (series, t0_real_us, path)
        self.workers = os.cpu_count() or 1
        self.partitions = 8
        if kafka == "embedded":
            self.only.discard("warmup")  # nothing to warm: the mock starts with each daemon
        self.peer = None  # the peer's stack while one runs (bench/peer.py)
        plan = [("setup", 8 if kafka == "embedded" else 30)]
        d = self.duration()
        for name, secs in (("warmup", 2 * d + 90), ("pgbench", d + 4), ("start", 8), ("accept", 2 * d + 10),
                           ("soldout", 2 * d + 6), ("hot", d + 25 * self.scale + 8),
                           ("sellout", d + 10), ("peer", 2 * d + 60),
                           ("backlog", 20 * self.scale + 6), ("backlog1", 10 * self.scale + 8),
                           ("flash", 25 * self.scale + 10), ("paced", d + 8), ("memory", 15), ("results", 10)):
            if name in self.only or name in ("start", "results"):
                plan.append((name, secs))
        self.progress = Progress(plan)

    def duration(self):
        return max(2.0, round(8.0 * self.scale, 1))

    def count(self, n):
        return max(1, int(n * self.scale))

    def sellout_duration(self):
        """The sell-out's load lasts until the stock is all issued, at most this long."""
        return 30 + 30 * self.scale

    # ---- processes ----
    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop_proc(self, p, sig=signal.SIGTERM, timeout=15):
        stop_pid(p, sig, timeout)

    def cleanup(self):
        """Stops everything this run started, each step whatever the others did (a failed step is reported,
        not allowed to leave the rest running)."""
        steps = [("the peer's stack", self.stop_peer), ("couponsd", self.stop_daemon)]
        steps += [(f"pid {p.pid}", lambda p=p: self.stop_proc(p)) for p in reversed(self.procs)]
        steps += [("the Kafka cluster", self.stop_kafka), ("redis-server and PostgreSQL", self.stop_servers)]
        for what, step in steps:
            try:
                step()
            except Exception as e:  # noqa: BLE001  (the next step must run)
                print(f"bench: stopping {what} failed: {e!r}", file=sys.stderr)

    def stop_peer(self):
        stack, self.peer = self.peer, None
        if stack is not None:
            stack.stop()

    def stop_kafka(self):
        if self.kafka_dir is not None:
            d, self.kafka_dir = self.kafka_dir, None
            self.kafka_sh("stop", d)

    def stop_servers(self):
        if self.servers_up and not self.args.keep:
            self.servers_up = False
            subprocess.run([sys.executable, os.path.join(SRCDIR, "tests", "lib", "servers.py"), "--stop",
                            self.servers_dir], capture_output=True, timeout=120)

    # ---- Redis and PostgreSQL ----
    def start_servers(self):
        # PostgreSQL with its default durability (fsync, synchronous_commit, full_page_writes on), like the peer's.
        r = subprocess.run([sys.executable, os.path.join(SRCDIR, "tests", "lib", "servers.py"), "--demo",
                            self.servers_dir], capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, COUPONSD_PG_DURABLE="1"))
        self.servers_up = True
        if r.returncode != 0:
            raise RuntimeError(f"cannot start redis-server and PostgreSQL:\n{r.stderr[-3000:]}")
        env = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            env[k] = shlex.split(v)[0] if v else ""
        self.redis_port = int(env["REDIS_PORT"])
        self.redis_pid = int(env["REDIS_PID"])
        self.pg_pid = int(env["PG_PID"])
        self.pg_port = int(env["PG_PORT"])
        self.pg_conninfo = env["PG_CONNINFO"]
        self.out["servers"] = {"redis_port": self.redis_port, "pg_port": self.pg_port,
                               "redis": tool_version(["redis-server", "--version"]),
                               "postgres": tool_version([os.path.join(os.environ.get(
                                   "COUPONSD_PG_BIN", "/usr/lib/postgresql/15/bin"), "postgres"), "--version"]),
                               "postgres_settings": "the server's defaults (fsync, synchronous_commit and "
                                                    "full_page_writes on), max_connections=200, as the peer's"}

    # ---- a real Kafka cluster (--kafka real) ----
    def kafka_sh(self, *args, timeout=300):
        r = subprocess.run(["sh", os.path.join(SRCDIR, "scripts", "kafka.sh"), *args], capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/kafka.sh {' '.join(args)}: {r.stderr[-2000:]}")
        return r.stdout.strip()

    def start_kafka(self):
        """Three KRaft nodes in the scratch directory; every daemon start creates its own topics there."""
        self.kafka_dir = os.path.join(self.scratch, "kafka")
        self.kafka_bootstrap = self.kafka_sh("start", "3", self.kafka_dir, str(self.partitions))
        self.out["kafka_cluster"] = {"bootstrap": self.kafka_bootstrap, "nodes": 3, "replication_factor": 3,
                                     "min_insync_replicas": 2, "command": f"sh scripts/kafka.sh start 3 DIR "
                                                                          f"{self.partitions}"}

    def cluster_pids(self):
        if self.kafka_dir is None:
            return []
        pids = []
        for i in (1, 2, 3):
            try:
                with open(os.path.join(self.kafka_dir, f"node-{i}", "pid")) as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                continue
            if alive(pid):
                pids.append(pid)
        return pids

    def fresh_topics(self):
        """Topics of their own for the next daemon (the real-cluster equivalent of a fresh embedded cluster)."""
        self.daemon_starts += 1
        stem = f"bench{self.daemon_starts}"
        self.topics = {"topic": f"{stem}-issue", "results_topic": f"{stem}-results", "dlq_topic": f"{stem}-dlq"}
        self.kafka_sh("topics", self.kafka_dir, *(f"{t}:{self.partitions}" for t in self.topics.values()))

    def psql(self, sql, db="couponsd", user="postgres"):
        r = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", user, "-d", db,
                            "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {sql}\n{r.stderr}")
        return r.stdout.strip()

    # ---- the HTTP ceiling ----
    def free_port(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def wait_http(self, port, path, timeout=60, want=200):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                    if resp.status == want:
                        return True
            except urllib.error.HTTPError as e:
                if e.code == want:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def start_ceiling(self):
        self.ceiling_port = self.free_port()
        argv = [self.ceiling_bin, "-p", str(self.ceiling_port), "-w", str(self.workers)]
        self.ceiling_proc = self.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=open(os.path.join(self.scratch, "ceiling.log"), "w"))
        self.out["commands"]["ceiling_server"] = cmdline(argv)
        import socket
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ceiling_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bench/ceiling did not start")

    @staticmethod
    def merge(runs, note):
        """One result from several loadgen runs: counts and times add up, latency from the summed histograms."""
        out = {"segments": [{k: r.get(k) for k in ("rps", "measured", "measured_s", "status", "latency_us")}
                            for r in runs],
               "measured": sum(r["measured"] for r in runs), "measured_s": sum(r["measured_s"] for r in runs),
               "status": {}, "status_all": {}, "errors": sum(r["errors"] for r in runs),
               "timeouts": sum(r["timeouts"] for r in runs), "t0_real": runs[0]["t0_real"],
               "command": runs[0]["command"] + f"   ({note})"}
        for r in runs:
            for key in ("status", "status_all"):
                for k, v in r[key].items():
                    out[key][k] = out[key].get(k, 0) + v
        out["rps"] = out["measured"] / out["measured_s"] if out["measured_s"] else 0
        hist = {}
        for r in runs:
            for v, c in r.get("histogram", {}).items():
                hist[v] = hist.get(v, 0) + c
        total = sum(hist.values())
        lat = {"mean": sum(v * c for v, c in hist.items()) / total if total else 0}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            want, seen = max(1, int(q * total + 0.999999)), 0
            for v in sorted(hist):
                seen += hist[v]
                if seen >= want:
                    lat[name] = v
                    break
        lat["max"] = max((r["latency_us"]["max"] for r in runs), default=0)
        out["latency_us"] = lat
        walls = [r.get("cpu", {}).get("wall_s", 0) for r in runs]
        cpu = {}
        for r, w in zip(runs, walls):
            for k, v in r.get("cpu", {}).items():
                if k != "wall_s":
                    cpu[k] = cpu.get(k, 0) + v * w
        out["cpu"] = {k: round(v / sum(walls), 2) for k, v in cpu.items()} if sum(walls) else {}
        out["cpu"]["wall_s"] = round(sum(walls), 1)
        return out

    def interleaved(self, label, extra_for_round, rounds=3):
        """The phase and the ceiling in alternating segments, so that both see the same machine: the other
        users of a shared machine come and go, and a ratio of two figures taken minutes apart measures them."""
        seg = max(1.5, round(self.duration() / rounds, 1))
        mine, ceiling = [], []
        for r in range(rounds):
            ceiling.append(self.loadgen_run(f"{label}_ceiling{r + 1}", "ceiling", self.ceiling_port,
                                            ["-C", "1", "-U", "1", "-d", str(seg + 0.5), "-w", "0.5"],
                                            pbase=(2 * r) / (2 * rounds), pspan=1 / (2 * rounds),
                                            plot_label="bare evhttp" if r == 0 else None))
            mine.append(self.loadgen_run(f"{label}{r + 1}", "couponsd", self.port,
                                         extra_for_round(r) + ["-d", str(seg + 0.5), "-w", "0.5"],
                                         pbase=(2 * r + 1) / (2 * rounds), pspan=1 / (2 * rounds),
                                         plot_label=label if r == 0 else None))
        note = f"{rounds} segments of {seg:g} s after 0.5 s of warm-up, each after a segment of the ceiling"
        return self.merge(mine, note), self.merge(ceiling, note)

    # ---- the load generator ----
    def loadgen_run(self, label, series, port, extra, conns=CONNECTIONS, ids=False, pbase=0.0, pspan=1.0,
                    plot_label=True, stop_when=None):
        """One load generator run; stop_when(progress) (polled every 0.25 s, progress["2xx"] the 2xx answers so
        far) ends it early with SIGTERM (the load generator still prints its summary)."""
        timeline = os.path.join(self.scratch, f"{label}.timeline")
        hist = os.path.join(self.scratch, f"{label}.hist")
        argv = [self.loadgen, "-p", str(port), "-c", str(conns), "-t", timeline, "-I", str(INTERVAL_MS), "-P",
                "-T", str(max(60, 20 * self.duration())), "-o", "10", "-D", hist] + extra
        ids_path = None
        if ids:
            ids_path = os.path.join(self.scratch, f"{label}.ids")
            argv += ["-i", ids_path]
        self.out["commands"][label] = cmdline(argv)
        t_start = time.time()
        meter = CpuMeter(self)
        p = self.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        other, progress = [], {"2xx": 0}

        def reader():
            for line in p.stderr:
                parts = line.split()
                if parts and parts[0] == "progress" and len(parts) >= 8:
                    elapsed, planned, done, total, rps, p99 = map(float, parts[1:7])
                    progress["2xx"] = int(parts[7])
                    frac = elapsed / planned if planned > 0 else (done / total if total > 0 else 0)
                    self.progress.update(pbase + pspan * min(1.0, frac), f"{rps:,.0f} req/s  p99 {p99 / 1000:.1f} ms")
                else:
                    other.append(line)
        t = threading.Thread(target=reader, daemon=True)
        t.start()

        def watcher():
            while p.poll() is None:
                if stop_when(progress):
                    p.send_signal(signal.SIGTERM)
                    return
                time.sleep(0.25)
        if stop_when is not None:
            threading.Thread(target=watcher, daemon=True).start()
        out = p.stdout.read()
        p.wait()
        cpu = meter.stop()
        t.join(5)
        if p.returncode != 0:
            raise RuntimeError(f"loadgen {label} failed: {''.join(other)[-2000:]}")
        res = json.loads(out)
        res["t0_real"] = t_start
        res["cpu"] = cpu
        res["command"] = self.out["commands"][label]
        if other:
            res["stderr"] = "".join(other)[-1000:]
        self.timelines.append((series, label if plot_label is True else plot_label, t_start, timeline))
        res["histogram"] = {}
        try:
            with open(hist) as f:
                for line in f:
                    v, c = line.split()
                    res["histogram"][int(v)] = int(c)
        except OSError:
            pass
        if ids_path:
            res["ids_path"] = ids_path
        return res

    # ---- PostgreSQL ceiling ----
    def run_pgbench(self):
        db = "bench_ceiling"
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        self.psql(f"CREATE DATABASE {db} OWNER couponsd", db="postgres")
        conf = self.write_config(os.path.join(self.scratch, "ceiling.yaml"),
                                 self.pg_conninfo.replace("dbname=couponsd", f"dbname={db}"), 1)
        r = subprocess.run([self.bin, "-c", conf, "--migrate"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"couponsd --migrate on {db}: {r.stdout}{r.stderr}")
        self.psql("CREATE SEQUENCE bench_users; INSERT INTO coupons (id, name, total_quantity, remaining) "
                  "SELECT g, 'ceiling ' || g, 2000000000, 2000000000 FROM generate_series(1, 8) g",
                  db=db, user="couponsd")
        clients = self.partitions
        argv = ["pgbench", "-n", "-M", "prepared", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "couponsd",
                "-c", str(clients), "-j", "2", "-T", str(int(max(2, self.duration()))), "-P", "1",
                "-f", os.path.join(SRCDIR, "bench", "issue100.sql"), db]
        self.out["commands"]["pgbench"] = cmdline(argv)
        meter = CpuMeter(self)
        p = self.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        series = []
        t_start = time.time()

        def reader():
            for line in p.stderr:
                m = re.match(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms", line)
                if m:
                    el, tps, lat = map(float, m.groups())
                    series.append((t_start + el, tps * 100))
                    self.progress.update(el / self.duration(), f"{tps * 100:,.0f} rows/s  lat {lat:.1f} ms")
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        out = p.stdout.read()
        cpu = meter.stop()
        p.wait()
        t.join(5)
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        lat = re.search(r"latency average = ([\d.]+) ms", out)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"pgbench failed:\n{out[-2000:]}")
        rows = int(self.psql("SELECT count(*) FROM issued_coupons", db=db))
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
        return {"tps": float(m.group(1)), "rows_per_s": float(m.group(1)) * 100, "clients": clients,
                "latency_ms": float(lat.group(1)) if lat else None, "rows_inserted": rows,
                "command": self.out["commands"]["pgbench"], "series": series,
                "cpu_note": "not measured: pgbench's backends exit with it, before their CPU can be read"}

    # ---- couponsd ----
    def write_config(self, path, conninfo, workers=None, read_timeout="30s"):
        d = self.scratch
        producer = "".join(f"\n    {k}: \"{v}\"" for k, v in self.args.producer) if self.args.producer else " {}"
        brokers = "embedded" if self.kafka == "embedded" else self.kafka_bootstrap
        topics = "".join(f"\n  {k}: {v}" for k, v in self.topics.items()) if self.kafka != "embedded" else ""
        text = f"""# Written by bench/run.py: couponsd's defaults, on loopback, with {self.kafka} Kafka.
daemon:
  user: ""
  group: ""
  pid_file: {d}/couponsd.pid
  control_socket: {d}/control.sock
  shutdown_timeout: 30s
log:
  file: {d}/couponsd.log
http:
  listen: ["127.0.0.1:{self.port}"]
  workers: {workers if workers is not None else 'auto'}
  read_timeout: {read_timeout}          # the memory phase holds idle connections open
admin:
  token: "{self.token}"
kafka:
  brokers: "{brokers}"{topics}
  partitions: {self.partitions}
  producer:{producer}
redis:
  host: 127.0.0.1
  port: {self.redis_port}
  key_prefix: "bench:"
postgres:
  conninfo: "{conninfo}"
"""
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_daemon(self):
        if self.kafka != "embedded":
            self.fresh_topics()
        conf = self.write_config(os.path.join(self.scratch, "couponsd.yaml"), self.pg_conninfo)
        with open(conf) as f:
            self.out["config"] = f.read()
        r = subprocess.run([self.bin, "-t", "-c", conf], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"couponsd -t: {r.stdout}{r.stderr}")
        argv = [self.bin, "-c", conf]
        self.out["commands"]["couponsd"] = cmdline(argv)
        self.daemon = self.spawn(argv, stdin=subprocess.DEVNULL,
                                 stdout=open(os.path.join(self.scratch, "couponsd.stderr"), "w"),
                                 stderr=subprocess.STDOUT)
        if not self.wait_http(self.port, "/readyz", 90):
            raise RuntimeError(f"couponsd not ready; see {os.path.join(self.scratch, 'couponsd.log')}")
        kids = children(self.daemon.pid)
        self.http_pids = [p for p, t in kids if t == "couponsd: http worker"]
        self.consumer_pids = [p for p, t in kids if t.startswith("couponsd: consumer partition")]
        self.kafka_pids = [p for p, t in kids if t == "couponsd: embedded kafka"] + self.cluster_pids()
        self.partitions = len(self.consumer_pids) or self.partitions
        if self.kafka == "embedded":
            log = open(os.path.join(self.scratch, "couponsd.log")).read()
            m = re.findall(r"embedded kafka up: \d+ brokers at (\S+?),? \d+ partitions", log)
            self.bootstrap = m[-1] if m else None
        else:
            self.bootstrap = self.kafka_bootstrap
        self.out["daemon"] = {"version": tool_version([self.bin, "-V"]), "http_workers": len(self.http_pids),
                              "consumers": len(self.consumer_pids), "bootstrap": self.bootstrap}
        if len(self.http_pids) != self.workers:
            self.progress.message(f"note: couponsd runs {len(self.http_pids)} HTTP workers, the ceiling ran "
                                  f"{self.workers}")

    def restart_daemon(self, phase):
        """A fresh daemon (so a fresh embedded Kafka, or fresh topics on the real one) for phase; the running one's results topic is read first
        into self.results_seen."""
        self.park_daemon(phase)
        self.start_daemon()
        self.out["daemon"]["started_for"] = phase

    def park_daemon(self, phase):
        """Stops the running daemon (if any) after reading its results topic into self.results_seen."""
        if self.daemon is None:
            return
        if self.bootstrap:
            self.results_seen.update(self.dump_results_topic(f"results-topic-before-{phase}.jsonl"))
        self.out.setdefault("daemons_before", []).append(self.out["daemon"])
        self.stop_daemon()

    def stop_daemon(self):
        p, self.daemon = self.daemon, None
        if p is None or p.poll() is not None:
            return
        kids = [pid for pid, _ in children(p.pid)]
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(40)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def admin(self, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/admin/coupons", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def coupons(self, n, quantity, name):
        """n new coupons whose ids fall into distinct partitions (while there are partitions left)."""
        ids, used = [], set()
        while len(ids) < n:
            self.next_coupon += 1
            part = kafka_partition(self.next_coupon, self.partitions)
            if part in used and len(used) < self.partitions:
                continue
            used.add(part)
            if len(used) == self.partitions:
                used = set()
            self.admin({"couponId": self.next_coupon, "name": f"{name} {len(ids) + 1}", "totalQuantity": quantity})
            ids.append(self.next_coupon)
        return ids

    def decided(self, coupons):
        lst = ",".join(map(str, coupons))
        return int(self.psql(f"SELECT (SELECT count(*) FROM issued_coupons WHERE coupon_id IN ({lst})) + "
                             f"(SELECT count(*) FROM rejected_requests WHERE coupon_id IN ({lst}))"))

    def wait_decided(self, coupons, expected, timeout, stall=15):
        """Polls PostgreSQL until expected decisions exist for these coupons, or none came for stall seconds
        (the embedded Kafka drops the oldest events of a partition past 5 MiB: those never come); returns
        (count, seconds)."""
        t = time.monotonic()
        deadline = t + timeout
        n = self.decided(coupons)
        progressed = time.monotonic()
        while n < expected and time.monotonic() < deadline and time.monotonic() - progressed < stall:
            self.progress.update(detail=f"waiting for decisions: {n:,}/{expected:,}")
            time.sleep(0.5)
            m = self.decided(coupons)
            if m > n:
                progressed = time.monotonic()
            n = m
        return n, time.monotonic() - t

    # ---- phases ----
    def phase_accept(self):
        ids = self.coupons(self.partitions, 100000000, "accept path")
        res, ceiling = self.interleaved("accept", lambda r: ["-C", ",".join(map(str, ids)),
                                                             "-U", str(1000000000 + r * 100000000)])
        self.out["phases"]["ceiling_accept"] = ceiling
        accepted = res["status_all"].get("202", 0)
        n_at_end = self.decided(ids)
        n, waited = self.wait_decided(ids, accepted, 120 * max(1, self.scale))
        res.update({"coupons": ids, "accepted_total": accepted, "decided_when_load_ended": n_at_end,
                    "decided": n, "drain_s": waited})
        return res

    def phase_soldout(self):
        cid, = self.coupons(1, 1, "sold out")
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/coupons/{cid}/issue?userId=1", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
        self.wait_decided([cid], 1, 30)
        time.sleep(1.2)  # the workers' coupon cache (1 s) and stock reading (100 ms) see it sold out
        res, ceiling = self.interleaved("soldout", lambda r: ["-C", str(cid), "-U", str(2000000000 + r * 100000000)])
        self.out["phases"]["ceiling_soldout"] = ceiling
        res["coupon"] = cid
        return res

    def phase_backlog(self, coupons=None):
        ids = self.coupons(coupons or self.partitions, 100000000, "backlog")
        n = self.count(40000)
        if coupons == 1 and self.kafka == "embedded":
            n = min(n, EMBEDDED_ONE_PARTITION)
        argv = [self.kfeed, "-b", self.bootstrap, "-t", self.topics["topic"], "-C", ",".join(map(str, ids)),
                "-U", "3000000000", "-n", str(n)]
        self.out["commands"]["backlog"] = cmdline(argv)
        t_start = time.time()
        meter = CpuMeter(self)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"kfeed: {r.stdout}{r.stderr}")
        feed = json.loads(r.stdout)
        got, waited = self.wait_decided(ids, n, 240 * max(1, self.scale))
        return {"coupons": ids, "events": n, "feed": feed, "decided": got, "t0_real": t_start, "cpu": meter.stop(),
                "command": self.out["commands"]["backlog"]}

    def phase_flash(self):
        users = self.count(100000)
        stock = self.count(10000)
        per = max(1, stock // 10)
        ids = self.coupons(10, per, "flash sale")
        res = self.loadgen_run("flash", "couponsd", self.port, ["-C", ",".join(map(str, ids)), "-U", "4000000000",
                                                                 "-n", str(users)], ids=True)
        accepted = res["status_all"].get("202", 0)
        n, waited = self.wait_decided(ids, accepted, 120 * max(1, self.scale))
        res.update({"coupons": ids, "users": users, "stock": per * len(ids), "accepted_total": accepted,
                    "decided": n})
        res["issued"] = int(self.psql(f"SELECT count(*) FROM issued_coupons WHERE coupon_id IN "
                                      f"({','.join(map(str, ids))})"))
        res["oversold"] = int(self.psql(
            f"SELECT coalesce(sum(greatest(0, n - c.total_quantity)), 0) FROM (SELECT coupon_id, count(*) n FROM "
            f"issued_coupons WHERE coupon_id IN ({','.join(map(str, ids))}) GROUP BY coupon_id) i "
            f"JOIN coupons c ON c.id = i.coupon_id"))
        return res

    def phase_paced(self, accept_rps):
        if accept_rps:
            rate, why = accept_rps * 0.5, "0.5 x the accept phase's closed-loop maximum"
        else:
            rate, why = 1000.0, "1,000/s (no accept phase in this run to take half of)"
        target_rate = rate
        ids = self.coupons(self.partitions, 100000000, "paced")
        res = self.loadgen_run("paced", "couponsd", self.port, ["-C", ",".join(map(str, ids)), "-U", "5000000000",
                                                                 "-d", str(self.duration()),
                                                                 "-w", str(min(2.0, self.duration() / 4)),
                                                                 "-r", f"{rate:.0f}"], ids=True)
        accepted = res["status_all"].get("202", 0)
        n, waited = self.wait_decided(ids, accepted, 120 * max(1, self.scale))
        res.update({"coupons": ids, "rate": rate, "rate_why": why, "target_rate": target_rate,
                    "accepted_total": accepted, "decided": n})
        return res

    def phase_hot(self):
        """One coupon of 2e9: everything on one partition, so admission control answers 429 beyond what its
        one consumer decides (plus issue.max_pending)."""
        cid, = self.coupons(1, HOT_QUANTITY, "hot")
        res = self.loadgen_run("hot", "couponsd", self.port, ["-C", str(cid), "-U", "6000000000",
                                                               "-d", str(self.duration()), "-w", "0.5"], ids=True)
        accepted = res["status_all"].get("202", 0)
        n_at_end = self.decided([cid])
        n, waited = self.wait_decided([cid], accepted, 30 * max(1, self.scale))
        res.update({"coupon": cid, "accepted_total": accepted, "decided_when_load_ended": n_at_end,
                    "decided": n, "drain_s": waited})
        return res

    def sellout(self, label, series, port, cid, user_base, issued):
        """SELLOUT_STOCK units of coupon cid under the hot phase's load, which goes on until all are issued
        (a sale goes on until it is sold out) or sellout_duration() passed; then waits (bounded) for the
        last ones. issued() -> (count, epoch of the last issued_at)."""
        def sold_out(progress):
            # Nothing is issued that was not accepted first: until SELLOUT_STOCK 202s, no need to ask (each
            # psql start takes CPU from the sale it measures).
            return progress["2xx"] >= SELLOUT_STOCK and issued()[0] >= SELLOUT_STOCK
        res = self.loadgen_run(label, series, port, ["-C", str(cid), "-U", str(user_base),
                                                     "-d", str(self.sellout_duration()), "-w", "0"],
                               stop_when=sold_out)
        deadline = time.monotonic() + 15
        n, last = issued()
        while n < SELLOUT_STOCK and time.monotonic() < deadline:
            self.progress.update(detail=f"waiting for the stock to be issued: {n:,}/{SELLOUT_STOCK:,}")
            time.sleep(0.25)
            n, last = issued()
        res.update({"coupon": cid, "stock": SELLOUT_STOCK, "issued": n,
                    "all_issued_s": round(last - res["t0_real"], 3) if n >= SELLOUT_STOCK and last else None,
                    "waited_until_s": round(time.time() - res["t0_real"], 1)})
        return res

    def phase_sellout(self):
        cid, = self.coupons(1, SELLOUT_STOCK, "sell-out")

        def issued():
            row = self.psql(f"SELECT count(*), coalesce(extract(epoch FROM max(issued_at)), 0) FROM issued_coupons "
                            f"WHERE coupon_id = {cid}").split("|")
            return int(row[0]), float(row[1])
        return self.sellout("sellout", "couponsd", self.port, cid, 7000000000, issued)

    def phase_peer(self):
        """The hot and sellout loads against the peer, each on a fresh stack of its own (a hot coupon's backlog
        would otherwise hold up the next phase's partition for minutes)."""
        source, why = peerlib.locate(self.args.peer)
        if source is None:
            self.progress.message(f"peer: SKIPPED: {why}")
            return {"skipped": why}
        out = {"source": source, "node": tool_version(["node", "--version"])}
        for sub in ("hot", "sellout"):
            topic = None
            if self.kafka != "embedded":
                self.daemon_starts += 1
                topic = f"peer{self.daemon_starts}-issue"
                self.kafka_sh("topics", self.kafka_dir, f"{topic}:{self.partitions}")
            self.peer = peerlib.PeerStack(source, os.path.join(self.scratch, f"peer-{sub}"),
                                          os.path.join(self.build, "peer-npm"), self.workers,
                                          self.kafka_bootstrap if self.kafka != "embedded" else None, topic,
                                          log=self.progress.message)
            try:
                self.peer.start()
                out[sub] = self.peer_hot() if sub == "hot" else self.peer_sellout()
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                # the peer is someone else's code: its failure is reported, and couponsd's run goes on
                out[f"{sub}_error"] = str(e)[-1000:]
                self.progress.message(f"peer: FAILED ({sub}): {str(e)[-500:]}")
            finally:
                stack, self.peer = self.peer, None
                out[f"{sub}_leftovers"] = stack.stop()
                out["commands"] = stack.commands
        out["kafka"] = "the peer's own librdkafka mock" if self.kafka == "embedded" else \
            "the bench's real cluster (PEER_KAFKA_BROKERS)"
        return out

    def peer_hot(self):
        cid = 1
        self.peer.create_coupon(cid, HOT_QUANTITY, "hot")
        res = self.loadgen_run("peer_hot", "peer", self.peer.port, ["-C", str(cid), "-U", "6000000000",
                                                                     "-d", str(self.duration()), "-w", "0.5"],
                               ids=True)
        res["issued_when_load_ended"] = int(self.peer.psql(f"SELECT count(*) FROM issued_coupons "
                                                           f"WHERE coupon_id = {cid}"))
        return res

    def peer_sellout(self):
        cid = 2
        self.peer.create_coupon(cid, SELLOUT_STOCK, "sell-out")

        def issued():
            row = self.peer.psql(f"SELECT count(*), coalesce(extract(epoch FROM max(issued_at)), 0) "
                                 f"FROM issued_coupons WHERE coupon_id = {cid}").split("|")
            return int(row[0]), float(row[1])
        return self.sellout("peer_sellout", "peer", self.peer.port, cid, 7000000000, issued)

    def warm_up(self):
        """A real cluster's JVMs start cold (JIT, page cache): warm them before anything is measured, first
        with batches (kfeed, the daemon's producer settings, then read back), then with the daemon's own
        small produces (a discarded load on 8 coupons, after the daemon starts)."""
        topic = "bench-warmup"
        self.kafka_sh("topics", self.kafka_dir, f"{topic}:{self.partitions}")
        meter = CpuMeter(self)
        argv = [self.kfeed, "-b", self.kafka_bootstrap, "-t", topic, "-C", "1,2,3,4,5,6,7,8", "-U", "1",
                "-n", str(self.count(100000))]
        self.out["commands"]["warmup_feed"] = cmdline(argv)
        feed = []
        for _ in range(2):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"kfeed (warm-up): {r.stdout}{r.stderr}")
            feed.append(json.loads(r.stdout))
        read = [self.kproduce, "-C", "-b", self.kafka_bootstrap, "-t", topic, "-w", "30000"]
        subprocess.run(read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        return {"feed": feed, "cpu": meter.stop(), "command": self.out["commands"]["warmup_feed"] +
                "  (x2, then " + cmdline(read) + ")"}

    def warm_up_daemon(self):
        """The daemon's own traffic (small acks=all produces, a fetch per few events, follower fetches on
        every append) runs code paths that kfeed's batches leave cold, and the brokers' JIT compiles them
        over a minute or more: a cold cluster spent 4.2 ms of broker CPU per 202 where a warm one spends
        0.6-0.7 (docs/performance.md, round 2i). So the accept phase's load runs in segments until the
        brokers' CPU per 202 stops falling (warm_settled()), at most WARM_MAX_S seconds in all."""
        ids = self.coupons(self.partitions, 100000000, "warm-up")
        seg_s = max(2.0, self.duration())
        segments, t_end = [], time.monotonic() + WARM_MAX_S * self.scale
        span = seg_s / (WARM_MAX_S * self.scale)
        while True:
            i = len(segments)
            res = self.loadgen_run(f"warmup_load{i}", "couponsd", self.port,
                                   ["-C", ",".join(map(str, ids)), "-U", str(900000000 + i * 10000000),
                                    "-d", str(seg_s)], pbase=min(1.0, i * span), pspan=span,
                                   plot_label="warm-up" if i == 0 else False)
            n = res["status_all"].get("202", 0)
            us = res["cpu"].get("kafka brokers", 0) * res["cpu"]["wall_s"] * 1e6 / n if n else None
            segments.append({"rps": res.get("rps"), "status_all": res.get("status_all") or {},
                             "broker_us_per_202": round(us, 1) if us is not None else None})
            self.progress.update(min(1.0, (i + 1) * span), f"segment {i + 1}: brokers {fmt(us)} us per 202")
            if warm_settled(segments, self.scale) or time.monotonic() + seg_s > t_end:
                break
        return {"segments": segments, "settled": warm_settled(segments, self.scale),
                "command": self.out["commands"]["warmup_load0"] + f"  (-U advanced per segment; "
                f"{len(segments)} segments of {seg_s:g} s)"}

    def phase_memory(self):
        before = {"master": read_proc_status(self.daemon.pid)}
        for i, pid in enumerate(self.http_pids):
            before[f"http{i}"] = read_proc_status(pid)
        total = HOLD_PER_WORKER * len(self.http_pids)
        per_proc = 10000
        gens, held, lines = [], [], []
        hold_s = 20
        for j in range(0, total, per_proc):
            n = min(per_proc, total - j)
            argv = [self.loadgen, "-p", str(self.port), "-c", str(n), "-h", str(hold_s), "-u", "/healthz",
                    "-o", "20", "-T", "60"]
            self.out["commands"]["memory_hold"] = cmdline(argv) + f"   (x{(total + per_proc - 1) // per_proc})"
            p = self.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            gens.append(p)

            def reader(proc=p):
                for line in proc.stderr:
                    if line.startswith("held "):
                        held.append(int(line.split()[1]))
                    elif not line.startswith("progress"):
                        lines.append(line)
            threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + 40
        while len(held) < len(gens) and time.monotonic() < deadline and all(g.poll() is None for g in gens):
            self.progress.update(len(held) / len(gens), f"opening {total:,} connections")
            time.sleep(0.2)
        time.sleep(1.0)  # let the workers settle (their heap after the burst of requests)
        during = {"master": read_proc_status(self.daemon.pid)}
        conns = {}
        for i, pid in enumerate(self.http_pids):
            during[f"http{i}"] = read_proc_status(pid)
            conns[f"http{i}"] = socket_fds(pid)
        others = {}
        for pid in self.consumer_pids[:1] + self.kafka_pids:
            others[f"pid {pid}"] = read_proc_status(pid)
        summaries = []
        for g in gens:
            self.stop_proc(g, signal.SIGTERM, 30)
            try:
                summaries.append(json.loads(g.stdout.read() or "{}"))
            except ValueError:
                summaries.append({})
        return {"connections_total": total, "held": sum(held), "before": before, "during": during,
                "worker_sockets": conns, "others": others, "loadgen": summaries,
                "command": self.out["commands"].get("memory_hold"), "stderr": "".join(lines)[-500:]}

    def dump_results_topic(self, name="results-topic.jsonl"):
        path = os.path.join(self.scratch, name)
        argv = [self.kproduce, "-C", "-b", self.bootstrap, "-t", self.topics["results_topic"], "-w", "30000"]
        self.out["commands"]["results_topic"] = cmdline(argv)
        with open(path, "w") as f:
            subprocess.run(argv, stdout=f, stderr=subprocess.DEVNULL, timeout=300)
        decided = {}  # requestId -> (couponId, decidedAt ms, status)
        with open(path) as f:
            for line in f:
                try:
                    m = json.loads(line)
                    v = json.loads(m["value"])
                except (ValueError, KeyError, TypeError):
                    continue
                rid = v.get("requestId")
                if rid and v.get("decidedAt") and rid not in decided:
                    decided[rid] = (v.get("couponId"), parse_iso_ms(v["decidedAt"]), v.get("status"),
                                    parse_iso_ms(v["acceptedAt"]) if v.get("acceptedAt") else None)
        return decided

    # ---- analysis ----
    def decisions_of(self, decided, coupons):
        cs = set(coupons)
        return sorted(ms for c, ms, _, _ in decided.values() if c in cs)

    def accept_to_decision(self, res, decided):
        """202-to-decision (ms) for each 202 the load generator recorded after its warm-up (like the accept
        latency), joined by requestId."""
        lat, missing, early, t202 = [], 0, 0, []
        skip_before_us = (res["t0_real"] + res.get("warmup_s", 0)) * 1e6
        with open(res["ids_path"]) as f:
            for line in f:
                rid, _k, t_us, lat_us = line.split()
                if int(t_us) < skip_before_us:
                    continue
                t202.append((int(t_us), int(lat_us)))
                d = decided.get(rid)
                if d is None:
                    missing += 1
                    continue
                # decidedAt is truncated to the millisecond: +0.5 ms is the unbiased estimate
                v = (d[1] + 0.5) - int(t_us) / 1000.0
                if v < 0:
                    early += 1
                    v = 0.0
                lat.append(v)
        lat.sort()
        return lat, missing, early, t202

    def figure(self, key, name, value, unit, command, ceiling=None, ratio=None, target=None, met=None, note=None):
        f = {"key": key, "name": name, "value": value, "unit": unit, "command": command}
        for k, v in (("ceiling", ceiling), ("ratio", ratio), ("target", target), ("met", met), ("note", note)):
            if v is not None:
                f[k] = v
        self.out["figures"].append(f)

    def judge(self, key, shown, measured, met):
        """One of bench/targets.py's targets, as this run measured it (met None: could not be measured)."""
        self.out["targets"] = [t for t in self.out["targets"] if t["key"] != key]
        self.out["targets"].append({"key": key, "target": targets.TEXT[key], "shown": shown, "measured": measured,
                                    "met": met})

    def analyse(self, decided):
        ph = self.out["phases"]
        segs = [seg["rps"] for k in ("ceiling_accept", "ceiling_soldout") if k in ph for seg in ph[k]["segments"]]
        ceiling = sum(segs) / len(segs) if segs else None
        if ceiling:
            self.figure("ceiling_rps", "bare evhttp ceiling (mean of its interleaved segments)", round(ceiling),
                        "req/s", self.out["commands"]["ceiling_server"] + "  +  " +
                        ph.get("ceiling_accept", ph.get("ceiling_soldout"))["command"],
                        note="segments: " + " / ".join(f"{v:,.0f}" for v in segs))
            for k in ("ceiling_accept", "ceiling_soldout"):
                if k in ph:
                    self.figure(f"{k}_p99", f"bare evhttp p99 (next to the {k[8:]} path)",
                                ph[k]["latency_us"]["p99"] / 1000, "ms", ph[k]["command"])
        warm = ph.get("warmup", {}).get("daemon_load")
        if warm and warm.get("segments"):
            us = [x["broker_us_per_202"] for x in warm["segments"]]
            self.figure("warmup_broker_us_per_202", "warm-up: the brokers' CPU per 202, its last segment", us[-1],
                        "us", warm["command"],
                        note=("settled" if warm["settled"] else "NOT settled (time cap)") + "; segments: " +
                        " / ".join(fmt(x) for x in us))
        if "accept" in ph:
            a = ph["accept"]
            acc_rps = a["status"].get("202", 0) / a["measured_s"] if a["measured_s"] else 0
            c = ph.get("ceiling_accept", {}).get("rps")
            ratio = acc_rps / c if c else None
            self.figure("accept_rps", "accept path: 202/s at 64 connections", round(acc_rps), "req/s",
                        a["command"], ceiling=round(c) if c else None,
                        ratio=round(ratio, 3) if ratio is not None else None,
                        note=f"{a['measured'] - a['status'].get('202', 0)} non-202 answers")
            p99 = a["latency_us"]["p99"] / 1000
            self.figure("accept_p50", "accept path p50 (64 connections, closed loop)",
                        a["latency_us"]["p50"] / 1000, "ms", a["command"])
            self.figure("accept_p99", "accept path p99 (64 connections, closed loop)", p99, "ms", a["command"])
            us = self.cpu_per("http workers", a, a["status_all"].get("202", 0))
            self.figure("http_cpu_per_202", "HTTP workers' CPU per 202 (accept phase)", us, "us", a["command"],
                        note="core-seconds of the HTTP workers during the load / every 202 of it (warm-up included)")
            self.judge("http_cpu_per_202", f"{fmt(us)} us" if us is not None else "-", us,
                       None if us is None else us <= 40)
            self.figure("accept_lag", "accept path: undecided when the load ended",
                        a["accepted_total"] - a["decided_when_load_ended"], "requests", a["command"],
                        note=f"all {a['decided']:,} decided {a['drain_s']:.1f} s later")
        if "soldout" in ph:
            s = ph["soldout"]
            so_rps = s["status"].get("409", 0) / s["measured_s"] if s["measured_s"] else 0
            c = ph.get("ceiling_soldout", {}).get("rps")
            ratio = so_rps / c if c else None
            self.figure("soldout_rps", "sold-out path: 409/s at 64 connections", round(so_rps), "req/s",
                        s["command"], ceiling=round(c) if c else None,
                        ratio=round(ratio, 3) if ratio is not None else None)
            self.judge("soldout_vs_ceiling", f"{so_rps:,.0f}/s, {ratio:.2f} x {c:,.0f}/s" if ratio else "-",
                       ratio, None if ratio is None else ratio >= 0.8)
            self.figure("soldout_p99", "sold-out path p99", s["latency_us"]["p99"] / 1000, "ms", s["command"])
        pg = ph.get("pgbench")
        if pg:
            self.figure("pgbench_rows", "pgbench ceiling: batched insert, 100 rows/transaction",
                        round(pg["rows_per_s"]), "rows/s", pg["command"],
                        note=f"{pg['tps']:.0f} tps x 100, {pg['clients']} clients, {pg['latency_ms']} ms/tx")
        if "backlog" in ph:
            b = ph["backlog"]
            ms = self.decisions_of(decided, b["coupons"])
            rate = (len(ms) - 1) / ((ms[-1] - ms[0]) / 1000) if len(ms) > 1 and ms[-1] > ms[0] else None
            b["decision_span_s"] = (ms[-1] - ms[0]) / 1000 if len(ms) > 1 else None
            ratio = rate / pg["rows_per_s"] if rate and pg else None
            self.figure("backlog_decisions", "consumers' capacity: decisions/s into PostgreSQL (backlog)",
                        round(rate) if rate else None, "decisions/s", b["command"],
                        ceiling=round(pg["rows_per_s"]) if pg else None,
                        ratio=round(ratio, 3) if ratio is not None else None,
                        note=f"{len(ms):,} decisions of {b['events']:,} events, {self.partitions} consumers; "
                             f"kfeed wrote them in {b['feed']['seconds']:.1f} s")
            self.judge("backlog_vs_pgbench", f"{rate:,.0f}/s, {ratio:.2f} x {pg['rows_per_s']:,.0f}" if ratio
                       else (f"{rate:,.0f}/s (no pgbench)" if rate else "-"), ratio,
                       None if ratio is None else ratio >= 0.6)
        if "backlog1" in ph:
            b = ph["backlog1"]
            ms = self.decisions_of(decided, b["coupons"])
            rate = (len(ms) - 1) / ((ms[-1] - ms[0]) / 1000) if len(ms) > 1 and ms[-1] > ms[0] else None
            b["decision_span_s"] = (ms[-1] - ms[0]) / 1000 if len(ms) > 1 else None
            self.figure("backlog1_decisions", "one partition's capacity: decisions/s, backlog on one coupon",
                        round(rate) if rate else None, "decisions/s", b["command"],
                        note=f"{len(ms):,} decisions of {b['events']:,} events, one consumer; "
                             f"kfeed wrote them in {b['feed']['seconds']:.1f} s")
            # Every event fed must be decided, on both Kafkas (the embedded one is fed only what it keeps).
            complete = len(ms) >= b["events"]
            self.judge("backlog1_rps", f"{rate:,.0f}/s" + ("" if complete else
                                                           f" ({len(ms):,} of {b['events']:,} decided)") if rate else "-",
                       rate, None if not rate else (rate >= 20000 and complete))
        self.analyse_hot(ph)
        if "flash" in ph:
            f = ph["flash"]
            lat, missing, early, t202 = self.accept_to_decision(f, decided)
            ms = self.decisions_of(decided, f["coupons"])
            t_start = f["t0_real"]
            n202 = len(t202)
            acc = sorted(l for _, l in t202)
            last202 = max(t for t, _ in t202) / 1e6 if t202 else None
            acc_rate = n202 / (last202 - t_start) if last202 and last202 > t_start else None
            dec_rate = (len(ms) - 1) / ((ms[-1] - ms[0]) / 1000) if len(ms) > 1 and ms[-1] > ms[0] else None
            all_decided = (ms[-1] / 1000 - t_start) if ms else None
            f.update({"accepted_202": n202, "decisions_seen": len(ms), "decided_after_end_missing": missing,
                      "decided_before_202_arrived": early})
            cmd = f["command"]
            self.figure("flash_accepted_rps", "flash sale: accepted/s (202s until the last 202)",
                        round(acc_rate) if acc_rate else None, "req/s", cmd,
                        note=f"{n202:,} accepted of {f['users']:,} users, stock {f['stock']:,}; "
                             f"{f['status_all'].get('409', 0):,} x 409; all {f['measured']:,} answered at "
                             f"{f['rps']:,.0f} req/s")
            self.figure("flash_accept_p50", "flash sale: 202 latency p50", quantile(acc, 0.5) / 1000 if acc else None,
                        "ms", cmd)
            self.figure("flash_accept_p99", "flash sale: 202 latency p99", quantile(acc, 0.99) / 1000 if acc else None,
                        "ms", cmd)
            self.figure("flash_decisions_rps", "flash sale: decisions/s into PostgreSQL (first to last)",
                        round(dec_rate) if dec_rate else None, "decisions/s", self.out["commands"]["results_topic"])
            self.figure("flash_all_decided_s", "flash sale: time until every request is decided",
                        round(all_decided, 3) if all_decided else None, "s", cmd,
                        note=f"{(ms[-1] / 1000 - last202):.3f} s after the last 202" if ms and last202 else None)
            self.figure("flash_a2d_p50", "flash sale: 202-to-decision p50", quantile(lat, 0.5), "ms",
                        self.out["commands"]["results_topic"])
            self.figure("flash_a2d_p99", "flash sale: 202-to-decision p99", quantile(lat, 0.99), "ms",
                        self.out["commands"]["results_topic"], note="burst at full speed: includes the backlog")
            self.figure("flash_oversold", "flash sale: oversold / issued", f"{f['oversold']} / {f['issued']:,}", "",
                        "psql")
        if "paced" in ph:
            p = ph["paced"]
            lat, missing, early, t202 = self.accept_to_decision(p, decided)
            rate = p["status"].get("202", 0) / p["measured_s"] if p["measured_s"] else 0
            self.figure("paced_rate", "paced: accepted/s (half the accept phase's maximum, open loop)", round(rate), "req/s",
                        p["command"], note=f"asked {p['rate']:,.0f}/s: {p['rate_why']}; target rate "
                                           f"{p['target_rate']:,.0f}/s")
            self.figure("paced_accept_p50", "paced: accept latency p50 (from the scheduled send)",
                        p["latency_us"]["p50"] / 1000, "ms", p["command"])
            p99 = p["latency_us"]["p99"] / 1000
            self.figure("paced_accept_p99", "paced: accept latency p99 (from the scheduled send)", p99, "ms",
                        p["command"])
            a2d99 = quantile(lat, 0.99)
            self.figure("paced_a2d_p50", "paced: 202-to-decision p50", quantile(lat, 0.5), "ms",
                        self.out["commands"]["results_topic"])
            self.figure("paced_a2d_p99", "paced: 202-to-decision p99", a2d99, "ms",
                        self.out["commands"]["results_topic"],
                        note=f"{len(lat):,} joined, {missing} without a result, {early} decided before the 202 "
                             f"reached the client")
            # met only at the rate asked: an accept path that fell behind was not paced at that rate
            kept_up = rate >= 0.95 * p["rate"]
            self.judge("paced_a2d_p99", f"{a2d99:,.1f} ms at {rate:,.0f}/s" + ("" if kept_up else
                                                                                f" (asked {p['rate']:,.0f}/s)")
                       if a2d99 is not None else "-", a2d99,
                       None if a2d99 is None else (a2d99 < 20 and kept_up and missing == 0))
        if "memory" in ph:
            m = ph["memory"]
            master = m["during"]["master"].get("VmRSS", 0) / 1024
            self.figure("rss_master", "RSS master (VmRSS)", round(master, 1), "MB", "/proc/PID/status",
                        target="< 10 MB", met=master < 10)
            self.judge("rss_master", f"{master:.1f} MB", round(master, 1), master < 10)
            worst = max(((k, v.get("VmRSS", 0) / 1024) for k, v in m["during"].items() if k.startswith("http")),
                        key=lambda kv: kv[1], default=(None, 0))
            socks = m["worker_sockets"]
            held = min(socks.values() or [0]) >= HOLD_PER_WORKER * 0.95
            self.judge("rss_http_worker", f"{worst[1]:.1f} MB" + ("" if held else
                                                                  f" (sockets: {', '.join(map(str, socks.values()))})"),
                       round(worst[1], 1), worst[1] < 50 and held)
            self.figure("rss_http_worker", "RSS of the largest HTTP worker holding its connections",
                        round(worst[1], 1), "MB", m["command"], target="< 50 MB at 10,000 connections",
                        met=worst[1] < 50 and min(socks.values() or [0]) >= HOLD_PER_WORKER * 0.95,
                        note="sockets per worker: " + ", ".join(f"{k} {v:,}" for k, v in socks.items()) +
                             "; RSS per worker: " + ", ".join(f"{k} {v.get('VmRSS', 0) / 1024:.1f} MB"
                                                            for k, v in m["during"].items() if k.startswith("http")))

    def cpu_per(self, group, res, n):
        """Microseconds of CPU of a process group per request of a loadgen result (its cpu is cores on
        average over its wall time)."""
        cpu = res.get("cpu", {})
        if not n or group not in cpu or not cpu.get("wall_s"):
            return None
        return round(cpu[group] * cpu["wall_s"] / n * 1e6, 1)

    def latencies_202(self, res):
        """The sorted latencies (ms) of the 202s after the warm-up, from the load generator's ids file."""
        skip_before_us = (res["t0_real"] + res.get("warmup_s", 0)) * 1e6
        out = []
        with open(res["ids_path"]) as f:
            for line in f:
                _rid, _k, t_us, lat_us = line.split()
                if int(t_us) >= skip_before_us:
                    out.append(int(lat_us) / 1000)
        return sorted(out)

    def analyse_hot(self, ph):
        """The hot coupon and the sell-out, couponsd's and the peer's, and the ratio of the two."""
        peer = ph.get("peer", {})
        rates = {}
        for who, res in (("couponsd", ph.get("hot")), ("peer", peer.get("hot"))):
            if not res:
                continue
            rates[who] = res["status"].get("202", 0) / res["measured_s"] if res["measured_s"] else 0
            lat = self.latencies_202(res)
            p99 = quantile(lat, 0.99)
            res["p99_202_ms"] = p99
            others = {k: v for k, v in res["status"].items() if k != "202"}
            self.figure(f"{'hot' if who == 'couponsd' else 'peer_hot'}_rps",
                        f"{who}: one coupon of 2e9, 64 connections: 202/s", round(rates[who]), "req/s",
                        res["command"], note=f"other answers: {others or 'none'}; 202 p99 {fmt(p99)} ms")
            if who == "couponsd":
                self.judge("hot_p99", f"{fmt(p99)} ms", p99, None if p99 is None else p99 < 5)
                us = self.cpu_per("http workers", res, res["status_all"].get("202", 0))
                self.figure("hot_http_cpu_per_202", "HTTP workers' CPU per 202 (hot phase, 429s included)", us,
                            "us", res["command"])
                self.figure("hot_drain", "hot coupon: every 202 decided after the load, in", round(res["drain_s"], 2),
                            "s", res["command"], note=f"{res['accepted_total'] - res['decided_when_load_ended']:,} "
                                                      f"undecided when the load ended; {res['decided']:,} of "
                                                      f"{res['accepted_total']:,} decided")
        if "couponsd" in rates:
            if "peer" in rates and rates["peer"]:
                ratio = rates["couponsd"] / rates["peer"]
                self.figure("hot_vs_peer", "one coupon of 2e9: couponsd's 202/s over the peer's", round(ratio, 2),
                            "x", ph["hot"]["command"])
                self.judge("hot_vs_peer", f"{ratio:.2f} x ({rates['couponsd']:,.0f} / {rates['peer']:,.0f}/s)",
                           round(ratio, 3), ratio >= 4)
            else:
                why = peer.get("skipped") or ("the peer failed: phases.peer.hot_error in the JSON" if "hot_error" in peer
                                              else "peer phase not run")
                self.judge("hot_vs_peer", f"{rates['couponsd']:,.0f}/s, no peer figure ({why})", None, None)
        for who, res in (("couponsd", ph.get("sellout")), ("peer", peer.get("sellout"))):
            if not res:
                continue
            s = res["all_issued_s"]
            res["shown"] = f"{s:.2f} s" if s is not None else f"{res['issued']:,} of {SELLOUT_STOCK:,} issued " \
                                                              f"after {res['waited_until_s']} s"
            self.figure(f"{'sellout' if who == 'couponsd' else 'peer_sellout'}_s",
                        f"{who}: one coupon of 10,000 under the same load: all issued after", s, "s", res["command"],
                        note=f"{res['shown']}; answers {res['status_all']} in {res['measured_s']:.1f} s of load "
                             f"(until sold out, at most {self.sellout_duration():g} s)")
        if rates.get("couponsd") and ph.get("sellout"):
            # The load is a closed loop: 10,000 202s come no faster than the hot phase's 202 rate (64 connections
            # over the 202 latency), so the sell-out cannot beat this unless the edge answers faster.
            self.figure("sellout_floor_s", "sell-out: the closed loop's floor (10,000 / the hot phase's 202/s)",
                        round(SELLOUT_STOCK / rates["couponsd"], 2), "s", ph["hot"]["command"],
                        note="how much of the sell-out time is the edge's: the rest is deciding the last units")
        res = ph.get("sellout")
        if res:
            s = res["all_issued_s"]
            p = peer.get("sellout")
            self.judge("sellout_s", res["shown"] + (f" (peer: {p['shown']})" if p else ""), s,
                       None if s is None and res["issued"] >= SELLOUT_STOCK else (s is not None and s <= 0.6))

    # ---- plot ----
    def plot(self, decided):
        dat = os.path.join(self.scratch, "plot")
        os.makedirs(dat, exist_ok=True)
        t0 = self.t0_real
        labels = []
        files = {"ceiling": open(os.path.join(dat, "ceiling.dat"), "w"),
                 "couponsd": open(os.path.join(dat, "couponsd.dat"), "w"),
                 "peer": open(os.path.join(dat, "peer.dat"), "w")}
        for series, label, t_start, path in self.timelines:
            f = files[series]
            first = None
            try:
                rows = [list(map(float, line.split())) for line in open(path) if line.strip()]
            except OSError:
                continue
            prev = 0.0
            for r in rows:
                t, n, n2, n409, other, p50, p99 = r
                dt = t - prev
                prev = t
                x = t_start - t0 + t
                if first is None:
                    first = x
                if n == 0 or dt <= 0:
                    continue
                f.write(f"{x:.3f} {n / dt:.1f} {n2 / dt:.1f} {n409 / dt:.1f} {p50 / 1000:.3f} {p99 / 1000:.3f}\n")
            f.write("\n\n" if False else "\n")  # a blank line: gnuplot does not join the phases
            if first is not None and label:
                labels.append((first, label))
        for f in files.values():
            f.close()
        with open(os.path.join(dat, "decisions.dat"), "w") as f:
            buckets = {}
            for _, ms, _, _ in decided.values():
                b = int((ms / 1000 - t0) / (INTERVAL_MS / 1000))
                buckets[b] = buckets.get(b, 0) + 1
            prev = None
            for b in sorted(buckets):
                if prev is not None and b != prev + 1:
                    f.write("\n")
                f.write(f"{(b + 0.5) * INTERVAL_MS / 1000:.3f} {buckets[b] / (INTERVAL_MS / 1000):.1f}\n")
                prev = b
        pg = self.out["phases"].get("pgbench")
        with open(os.path.join(dat, "pgbench.dat"), "w") as f:
            for t, rows in (pg or {}).get("series", []):
                f.write(f"{t - t0:.3f} {rows:.1f}\n")
        with open(os.path.join(dat, "labels.gp"), "w") as f:
            for x, label in labels:
                f.write(f'set label "{label}" at first {x:.2f}, graph 0.97 rotate by 90 right font ",8"\n')
            if pg and pg.get("series"):
                f.write(f'set label "pgbench" at first {pg["series"][0][0] - t0:.2f}, graph 0.97 rotate by 90 right '
                        f'font ",8"\n')
            if "backlog" in self.out["phases"]:
                f.write(f'set label "backlog" at first {self.out["phases"]["backlog"]["t0_real"] - t0:.2f}, '
                        f'graph 0.97 rotate by 90 right font ",8"\n')
        png = os.path.join(self.results_dir, f"{self.stamp}.png")
        xmax = max([time.time() - t0] + [x for x, _ in labels])
        argv = ["gnuplot", "-e", f"datadir='{dat}'; output='{png}'; xmax={xmax:.0f}; title='couponsd benchmark "
                                 f"{self.stamp} (scale {self.scale}, {self.out['machine'].get('nproc')} CPUs)'",
                os.path.join(SRCDIR, "bench", "plot.gp")]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.progress.message(f"gnuplot failed: {r.stderr[-500:]}")
            return None
        self.out["commands"]["plot"] = cmdline(argv)
        return png

    # ---- report ----
    def report(self):
        lines = []
        w = max((len(f["name"]) for f in self.out["figures"]), default=10)

        lines.append("")
        lines.append(f"{'figure':<{w}}  {'value':>12} {'unit':<12} {'ceiling':>10} {'ratio':>6}  target")
        lines.append("-" * (w + 70))
        for f in self.out["figures"]:
            target = ""
            if "target" in f:
                target = f"{f['target']}: {'MET' if f['met'] else 'NOT MET'}"
            lines.append(f"{f['name']:<{w}}  {fmt(f['value']):>12} {f['unit']:<12} "
                         f"{fmt(f.get('ceiling', '')):>10} {fmt(f.get('ratio', '')):>6}  {target}")
            if f.get("note"):
                lines.append(f"{'':<{w}}    {f['note']}")
            lines.append(f"{'':<{w}}    $ {f['command']}")
        lines.append("")
        lines.append("where the CPU went (cores busy on average during the load; 1.0 = one core):")
        phases = list(self.out["phases"].items())
        peer = self.out["phases"].get("peer") or {}
        phases += [(f"peer {k}", peer[k]) for k in ("hot", "sellout") if isinstance(peer.get(k), dict)]
        for name, ph in phases:
            cpu = ph.get("cpu") if isinstance(ph, dict) else None
            if cpu:
                parts = [f"machine {cpu.get('machine_busy_cores')}"] + [
                    f"{k} {v}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1] if isinstance(kv[1], float) else 0)
                    if k not in ("wall_s", "machine_busy_cores") and v >= 0.01]
                lines.append(f"  {name:<15} " + ", ".join(parts))
        return "\n".join(lines)

    # ---- the run ----
    def run(self):
        self.token = os.urandom(12).hex()
        self.next_coupon = 1000
        self.port = self.free_port()
        self.progress.phase("setup")
        self.start_servers()
        if self.kafka != "embedded":
            self.start_kafka()
        ph = self.out["phases"]
        self.results_seen = {}  # requestId -> decision, from each daemon's results topic
        if "warmup" in self.only:
            self.progress.phase("warmup")
            ph["warmup"] = self.warm_up()
        self.start_ceiling()
        if "pgbench" in self.only:
            self.progress.phase("pgbench")
            ph["pgbench"] = self.run_pgbench()
        if self.only & {"warmup", "accept", "soldout"}:
            self.progress.phase("start")
            self.start_daemon()
        if "warmup" in self.only:
            self.progress.phase("warmup")
            ph["warmup"]["daemon_load"] = self.warm_up_daemon()
        if "accept" in self.only:
            self.progress.phase("accept")
            ph["accept"] = self.phase_accept()
        if "soldout" in self.only:
            self.progress.phase("soldout")
            ph["soldout"] = self.phase_soldout()
        # The embedded Kafka (librdkafka 2.0.2's mock broker) walks a partition's log from its oldest message
        # set on every fetch that is not at the log end, so its cost grows with every message of the earlier
        # phases (half a core by the flash sale), which a real broker does not do. The phases that go through
        # the consumers therefore each get a fresh daemon; the results topic is read before each restart.
        for name, run in (("hot", self.phase_hot), ("sellout", self.phase_sellout)):
            if name in self.only:
                self.restart_daemon(name)
                self.progress.phase(name)
                ph[name] = run()
        if "peer" in self.only:
            self.park_daemon("peer")  # the peer gets the machine to itself, like couponsd had it
            self.progress.phase("peer")
            ph["peer"] = self.phase_peer()
        for name, run in (("backlog", self.phase_backlog), ("backlog1", lambda: self.phase_backlog(1)),
                          ("flash", self.phase_flash)):
            if name in self.only:
                self.restart_daemon(name)
                self.progress.phase(name)
                ph[name] = run()
        if "paced" in self.only:
            self.restart_daemon("paced")
            self.progress.phase("paced")
            accept = ph.get("accept") or ph.get("hot")
            acc_rps = accept["status"].get("202", 0) / accept["measured_s"] if accept and accept["measured_s"] else None
            ph["paced"] = self.phase_paced(acc_rps)
        if "memory" in self.only:
            if self.daemon is None:
                self.start_daemon()
            self.progress.phase("memory")
            ph["memory"] = self.phase_memory()
        self.progress.phase("results")
        decided = self.results_seen
        decided.update(self.dump_results_topic() if self.daemon is not None and self.bootstrap else {})
        if self.daemon is not None:
            self.out["daemon"]["rss_kb_at_end"] = {str(pid): read_proc_status(pid) for pid in
                                                   [self.daemon.pid] + self.http_pids}
        self.stop_daemon()
        self.stop_proc(self.ceiling_proc)
        self.progress.phase("results")
        self.analyse(decided)
        png = self.plot(decided)
        self.out["finished"] = now_iso()
        self.out["duration_s"] = round(time.time() - self.t0_real, 1)
        self.out["plot"] = rel(png) if png else None
        path = os.path.join(self.results_dir, f"{self.stamp}.json")
        self.out["json"] = rel(path)
        with open(path, "w") as f:
            json.dump(self.out, f, indent=1, default=str)
        self.progress.finish()
        print(f"\n==== couponsd on {self.kafka} Kafka ====")
        print(self.report())
        print(f"\nJSON: {rel(path)}\nplot: {rel(png) if png else '(none)'}\nlogs: {rel(self.scratch)}")
        print(f"whole run: {self.out['duration_s']:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builddir", required=True)
    ap.add_argument("--results", default=os.path.join(SRCDIR, "bench", "results"))
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1") or 1))
    ap.add_argument("--only", help="comma-separated phases: " + ",".join(PHASES))
    ap.add_argument("--producer", action="append", type=lambda s: tuple(s.split("=", 1)), default=[],
                    help="kafka.producer property for couponsd, KEY=VALUE (default: none, librdkafka's defaults)")
    ap.add_argument("--keep", action="store_true", help="leave redis-server and PostgreSQL running")
    ap.add_argument("--kafka", choices=("embedded", "real", "both"), default="both",
                    help="which Kafka the daemon uses (default: both, one after the other, side by side)")
    ap.add_argument("--peer", help="the peer's directory (default: $BENCH_PEER_DIR, else ../shared/peer beside the "
                                   "source tree; 'none' skips the peer phase)")
    args = ap.parse_args()
    for path in ("src/couponsd", "tests/tools/kproduce", "bench/loadgen", "bench/ceiling", "bench/kfeed"):
        if not os.access(os.path.join(args.builddir, path), os.X_OK):
            sys.exit(f"bench: {path} is not built in {args.builddir} (run `make bench`)")
    # 10,000 connections per worker: the daemon and the load generators inherit this
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < HOLD_PER_WORKER + 1000:
        print(f"bench: ulimit -n is {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; the memory phase needs "
              f"{HOLD_PER_WORKER + 1000}", file=sys.stderr)
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    source, why = peerlib.locate(args.peer)
    print(f"bench: peer: {source}" if source else f"bench: peer: the peer phase will be SKIPPED: {why}",
          file=sys.stderr)
    done = []
    for kafka in (("embedded", "real") if args.kafka == "both" else (args.kafka,)):
        bench = Bench(args, kafka, stamp)
        try:
            bench.run()
            done.append(bench)
        except KeyboardInterrupt:
            print("\nbench: interrupted", file=sys.stderr)
            return 130
        finally:
            bench.cleanup()
    if len(done) == 2:
        print(side_by_side(*done))
    if done:
        save_targets(done, stamp, args.results)
    if any((b.out["phases"].get("peer") or {}).get("hot") for b in done):  # STAMP-peer.png: couponsd vs the peer
        peer_plot.main(["-o", os.path.join(os.path.abspath(args.results), f"{stamp}-peer.png")] +
                       [os.path.join(SRCDIR, b.out["json"]) for b in done])
    return 0


def save_targets(done, stamp, results):
    """The targets table, printed last and saved: STAMP-targets.json, and in each run's own JSON."""
    rows, text = targets.table([(b.kafka, b.out) for b in done])
    print(text)
    path = os.path.join(os.path.abspath(results), f"{stamp}-targets.json")
    with open(path, "w") as f:
        json.dump({"stamp": stamp, "runs": {b.kafka: b.out.get("json") for b in done}, "targets": rows}, f,
                  indent=1, default=str)
    for b in done:
        b.out["targets_table"] = rows
        with open(os.path.join(SRCDIR, b.out["json"]) if not os.path.isabs(b.out["json"]) else b.out["json"],
                  "w") as f:
            json.dump(b.out, f, indent=1, default=str)
    print(f"targets: {rel(path)}")


def side_by_side(embedded, real):
    """Every figure of the two runs in one table: the same phases, the same machine, minutes apart."""
    real_by_key = {f["key"]: f for f in real.out["figures"]}
    w = max((len(f["name"]) for f in embedded.out["figures"]), default=10)
    lines = ["", "==== embedded Kafka and a real 3-node Kafka cluster, side by side ====",
             f"{'figure':<{w}}  {'embedded':>12}  {'real':>12}  unit"]
    for f in embedded.out["figures"]:
        r = real_by_key.get(f["key"], {})
        lines.append(f"{f['name']:<{w}}  {fmt(f['value']):>12}  {fmt(r.get('value')):>12}  {f['unit']}")
    lines.append("")
    lines.append("where the CPU went on the real cluster (cores):")
    for name, ph in real.out["phases"].items():
        cpu = ph.get("cpu") if isinstance(ph, dict) else None
        if cpu:
            lines.append(f"  {name:<15} kafka brokers {cpu.get('kafka brokers', 0)}, consumers {cpu.get('consumers', 0)}, "
                         f"http workers {cpu.get('http workers', 0)}, postgres {cpu.get('postgres', 0)}, "
                         f"redis {cpu.get('redis', 0)}, machine {cpu.get('machine_busy_cores')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
