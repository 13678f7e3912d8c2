# SPDX-License-Identifier: BSD-2-Clause
"""bench/peer.py: the peer (shared/peer: Node.js, fastify + kafkajs + ioredis + pg) as bench/run.py drives it.

The peer's tree is read-only where CI runs, so each stack runs from a copy in the bench's scratch directory;
its node_modules come from `npm ci`, run once per package-lock.json and kept in the bench build
(BUILDDIR/peer-npm/SHA/node_modules), to which each copy links. The stack is started and stopped with
the peer's own run-stack.sh and stop-stack.sh (which stop the pids they recorded); afterwards every
process still running with its working directory in the copy or in the peer's PostgreSQL directory is
reported and stopped by pid, so that the bench leaves nothing behind even when those scripts miss one.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

from procs import free_port, pid_alive  # tests/lib, on the path bench/run.py sets

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A fresh clone has shared/ as its sibling (the same layout as the source tree's, ../shared/peer).
DEFAULT_DIR = os.path.join(os.path.dirname(SRCDIR), "shared", "peer")


def locate(explicit=None):
    """(directory or None, why): BENCH_PEER_DIR or --peer, else ../shared/peer beside the source tree."""
    path = explicit or os.environ.get("BENCH_PEER_DIR") or DEFAULT_DIR
    if path in ("none", "off", ""):
        return None, "disabled (BENCH_PEER_DIR=none)"
    if not os.path.isfile(os.path.join(path, "run-stack.sh")):
        return None, f"{path} has no run-stack.sh (shared/ is absent)"
    return os.path.abspath(path), None


class PeerStack:
    """One run of the peer's stack from a fresh copy: start(), the HTTP port, pids per group, stop()."""

    def __init__(self, source, scratch, npm_cache, workers, brokers=None, topic=None, log=print):
        self.source = source
        self.copy = os.path.join(scratch, "peer")
        self.state = os.path.join(self.copy, ".stack")
        self.npm_cache = npm_cache
        self.workers = workers
        self.brokers = brokers  # a real cluster's bootstrap, else the peer's own librdkafka mock
        self.topic = topic
        self.log = log
        self.up = False
        self.pgdir = None
        self.commands = {}
        self.port = free_port()
        self.env = dict(os.environ, PEER_PORT=str(self.port), PEER_REDIS_PORT=str(free_port()),
                        PEER_PG_PORT=str(free_port()), PEER_HTTP_WORKERS=str(workers), PEER_STATE_DIR=self.state)
        if brokers:
            self.env["PEER_KAFKA_BROKERS"] = brokers
            self.env["PEER_TOPIC"] = topic
        else:
            self.env.pop("PEER_KAFKA_BROKERS", None)
            self.env.pop("PEER_TOPIC", None)

    # ---- the copy and its node_modules ----
    def prepare(self):
        if os.path.exists(self.copy):
            shutil.rmtree(self.copy)
        shutil.copytree(self.source, self.copy, symlinks=True,
                        ignore=shutil.ignore_patterns("node_modules", ".stack", "kafka_mock", "scratch"))
        for root, dirs, files in os.walk(self.copy):  # the source is read-only (r-x): the copy must not be
            for name in dirs + files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | 0o200)
        os.chmod(self.copy, os.stat(self.copy).st_mode | 0o200)
        with open(os.path.join(self.copy, "package-lock.json"), "rb") as f:
            lock = hashlib.sha256(f.read()).hexdigest()[:16]
        cached = os.path.join(self.npm_cache, lock, "node_modules")
        if not os.path.isdir(cached):
            self.log(f"peer: npm ci in {self.copy} (once per package-lock.json; kept in {self.npm_cache})")
            argv = ["npm", "ci", "--no-audit", "--no-fund"]
            r = subprocess.run(argv, cwd=self.copy, capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"peer: npm ci failed:\n{(r.stdout + r.stderr)[-2000:]}")
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            tmp = cached + f".tmp{os.getpid()}"
            shutil.move(os.path.join(self.copy, "node_modules"), tmp)
            os.rename(tmp, cached)
        os.symlink(cached, os.path.join(self.copy, "node_modules"))
        self.commands["npm"] = "npm ci --no-audit --no-fund   (in a copy of the peer; cached per package-lock.json)"

    # ---- the stack ----
    def start(self):
        self.prepare()
        self.commands["stack"] = ("PEER_PORT=%s PEER_HTTP_WORKERS=%s%s ./run-stack.sh   (in the copy)" %
                                  (self.port, self.workers,
                                   f" PEER_KAFKA_BROKERS=... PEER_TOPIC={self.topic}" if self.brokers else ""))
        self.up = True  # from here on stop() runs stop-stack.sh, whatever run-stack.sh managed to start
        with open(os.path.join(self.copy, "run-stack.out"), "w") as out:
            r = subprocess.run(["./run-stack.sh"], cwd=self.copy, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT, timeout=300)
        self.pgdir = self.read(os.path.join(self.state, "pgdir"))
        if r.returncode != 0:
            raise RuntimeError(f"peer: run-stack.sh failed; see {self.copy}/run-stack.out and {self.state}")

    @staticmethod
    def read(path):
        try:
            with open(path) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def pids(self):
        """{group: [pid]} of the running stack (for "where the CPU went")."""
        out = {}
        names = {"http": "peer http", "consumer": "peer consumer", "redis": "peer redis",
                 "postgres": "peer postgres", "kafka_mock": "peer kafka mock"}
        text = self.read(os.path.join(self.state, "pids")) or ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and pid_alive(int(parts[1])):
                out.setdefault(names.get(parts[0], "peer " + parts[0]), []).append(int(parts[1]))
        workers = self.read(os.path.join(self.state, "http-workers.pids")) or ""
        out.setdefault("peer http", []).extend(int(p) for p in workers.split() if p.isdigit() and pid_alive(int(p)))
        pg = out.get("peer postgres")
        if pg:  # the backends, which do the work
            out["peer postgres"] = pg + [p for p in self.children(pg[0])]
        return out

    @staticmethod
    def children(ppid):
        kids = []
        try:
            with open(f"/proc/{ppid}/task/{ppid}/children") as f:
                kids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pass
        return kids

    def leftovers(self):
        """[(pid, cwd, cmdline)] of live processes working in the copy or the peer's PostgreSQL directory."""
        roots = [self.copy + os.sep] + ([self.pgdir + os.sep] if self.pgdir else [])
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                cwd = os.readlink(f"/proc/{name}/cwd") + os.sep
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if any(cwd.startswith(r) for r in roots) and pid_alive(int(name)):
                out.append((int(name), cwd.rstrip(os.sep), cmd[:120]))
        return out

    def stop(self):
        """stop-stack.sh, then a check that nothing it should have stopped is left; returns the leftovers
        found (each then stopped by pid)."""
        if not self.up:
            return []
        self.up = False
        with open(os.path.join(self.copy, "stop-stack.out"), "a") as out:
            subprocess.run(["./stop-stack.sh"], cwd=self.copy, env=self.env, stdin=subprocess.DEVNULL,
                           stdout=out, stderr=subprocess.STDOUT, timeout=180)
        left = self.leftovers()
        for pid, cwd, cmd in left:
            self.log(f"peer: stop-stack.sh left pid {pid} running ({cmd}, in {cwd}); stopping it")
            self.kill(pid)
        if self.pgdir and os.path.isdir(self.pgdir) and os.path.basename(self.pgdir).startswith("peer-pg."):
            shutil.rmtree(self.pgdir, ignore_errors=True)
        return left

    @staticmethod
    def kill(pid):
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except OSError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
            if not pid_alive(pid):
                return

    # ---- the peer's API and database ----
    def create_coupon(self, cid, quantity, name):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/admin/coupons", method="POST",
                                     data=json.dumps({"couponId": cid, "name": name,
                                                      "totalQuantity": quantity}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def psql(self, sql):
        r = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", self.env["PEER_PG_PORT"], "-U",
                            "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"peer psql: {sql}\n{r.stderr}")
        return r.stdout.strip()
