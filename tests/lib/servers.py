# SPDX-License-Identifier: BSD-2-Clause
"""servers.py: real redis-server and PostgreSQL instances on loopback ports, started and torn down by the tests.

Each server lives in its own scratch directory on a free 127.0.0.1 port (or on host=ADDR: the multi-host
test's bridge address, tests/lib/netns.py) and is stopped by the pid this
module started, never by name, at the latest when the Python process exits (atexit, SIGTERM, and, for a
server started from the main thread, the parent-death signal should the test runner itself be killed).

    python3 tests/lib/servers.py --demo DIR    start both detached in DIR, print their addresses as shell assignments
    python3 tests/lib/servers.py --stop DIR    stop the servers a --demo run left in DIR
"""
import ast
import atexit
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from procs import free_port  # noqa: F401  (for callers)
from procs import pid_alive as _alive, proc_children, read_text, wait_for as _wait_for

PG_BIN = os.environ.get("COUPONSD_PG_BIN", "/usr/lib/postgresql/15/bin")
REDIS_SERVER = os.environ.get("COUPONSD_REDIS_SERVER", "redis-server")
REDIS_CLI = os.environ.get("COUPONSD_REDIS_CLI", "redis-cli")

_LIVE = []  # every server started here and not yet stopped, for the exit-time sweep
_LIVE_LOCK = threading.Lock()


def _launch_prefix(detach, deathsig, user=None):
    """The setpriv(1) prefix that runs a server as user and, when attached, makes it get deathsig as soon as
    the thread that started it dies (PR_SET_PDEATHSIG follows the forking thread: only the main one is safe)."""
    prefix = []
    if user is not None:
        prefix += [f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    if not detach and threading.current_thread() is threading.main_thread():
        prefix += ["--pdeathsig", signal.Signals(deathsig).name]
    return ["setpriv", *prefix, "--"] if prefix else []


def stop_pid(proc_or_pid, first=signal.SIGTERM, timeout=10):
    """Signals one pid we started (first, then SIGKILL) and waits for it; a Popen is reaped."""
    if isinstance(proc_or_pid, subprocess.Popen):
        proc = proc_or_pid
        if proc.poll() is not None:
            return
        proc.send_signal(first)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    pid = proc_or_pid
    if not _alive(pid):
        return
    os.kill(pid, first)
    if not _wait_for(lambda: not _alive(pid), timeout):
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: not _alive(pid), 5)


class _Server:
    """What Redis and Postgres share: a scratch dir, a port, a pid, the exit-time sweep, `with`."""

    name = "server"

    def __init__(self, detach=False, keep_dir=False, host=None):
        self.detach = detach
        self.keep_dir = keep_dir or detach
        self.host = host or "127.0.0.1"
        self.port = None
        self.proc = None
        self.dir = None

    def _register(self):
        if self.detach:
            return
        with _LIVE_LOCK:
            if self not in _LIVE:
                _LIVE.append(self)
        _install_exit_hooks()

    def _unregister(self):
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_children(self, sig):
        for pid, _, _ in proc_children(self.proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass  # it ended meanwhile

    def pause(self):
        """SIGSTOP: the server hangs with its sockets open (a chaos test's stuck dependency). Its children too:
        each PostgreSQL backend is a process of its own, and with the postmaster alone stopped the open
        connections went on answering (only new ones hung). The server first, so that it forks no child the
        sweep would miss."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGSTOP)
            self._signal_children(signal.SIGSTOP)

    def resume(self):
        if self.alive():
            self._signal_children(signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGCONT)

    def log(self):
        return read_text(self.log_path)

    def close(self):
        """Stops the server and removes its directory (unless kept); safe to call twice."""
        try:
            self.stop()
        finally:
            self._unregister()
            if self.dir and not self.keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Redis(_Server):
    """One redis-server on a free loopback port, with no persistence unless appendonly=True."""

    name = "redis"

    def __init__(self, appendonly=False, port=None, directory=None, detach=False, start=True, host=None):
        super().__init__(detach=detach, keep_dir=directory is not None, host=host)
        self.appendonly = appendonly
        self.dir = directory or tempfile.mkdtemp(prefix="couponsd-redis-")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.log_path = os.path.join(self.dir, "redis.log")
        if start:
            self.start()

    def argv(self):
        return [REDIS_SERVER, "--bind", self.host, "--port", str(self.port), "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                # Protected mode admits loopback clients only: on a bridge (no uplink) the hosts are the clients.
                "--daemonize", "no", "--protected-mode", "yes" if self.host == "127.0.0.1" else "no",
                "--logfile", self.log_path,
                "--pidfile", os.path.join(self.dir, "redis.pid")]

    def start(self, timeout=15):
        if self.alive():
            return self
        argv = _launch_prefix(self.detach, signal.SIGTERM) + self.argv()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self._register()
        if not _wait_for(lambda: self.ping() or not self.alive(), timeout, 0.05) or not self.alive():
            out = self.log()[-2000:]
            self.stop()
            raise RuntimeError(f"redis-server on port {self.port} did not answer PING:\n{out}")
        return self

    def ping(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout=10):
        """SIGTERM (then SIGKILL) to the pid we started; like a crash as far as data goes unless appendonly."""
        if self.proc is not None:
            self.resume()  # a paused server cannot act on SIGTERM
            stop_pid(self.proc, signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL: a crash, with no chance to write anything."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()

    def restart(self, flush=True):
        """Stops and starts on the same port. flush=True starts empty; flush=False keeps the data
        (the AOF with appendonly, else a SAVE just before the stop)."""
        if not flush and not self.appendonly and self.alive():
            self.cli("SAVE")
        self.stop()
        if flush:
            for name in ("dump.rdb", "appendonly.aof", "appendonlydir"):
                path = os.path.join(self.dir, name)
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else \
                    (os.path.exists(path) and os.unlink(path))
        return self.start()

    def cli(self, *args, timeout=10):
        """Runs redis-cli against this server; returns its stdout without the trailing newline."""
        r = subprocess.run([REDIS_CLI, "-h", self.host, "-p", str(self.port), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(map(str, args))}: {r.stderr.strip()}")
        return r.stdout.rstrip("\n")

    def get(self, key):
        """GET key, or None when the key does not exist."""
        out = self.cli("--no-raw", "GET", key)  # quoted, so that nil and "" differ
        if out == "(nil)":
            return None
        if out.startswith('"') and out.endswith('"'):
            return ast.literal_eval(out)  # redis-cli's quoting (\\, \", \n, \xHH) is Python's
        raise RuntimeError(f"redis GET {key}: {out}")

    def keys(self, pattern):
        out = self.cli("--scan", "--pattern", pattern)
        return [k for k in out.split("\n") if k]

    def flushall(self):
        return self.cli("FLUSHALL")

    def url(self):
        return f"redis://{self.host}:{self.port}"


class Postgres(_Server):
    """One PostgreSQL 15 cluster in a scratch directory, on a free loopback port (or host), run as the postgres
    user. clients: a CIDR whose hosts may log in without a password too (initdb's trust covers loopback only)."""

    name = "postgres"

    def __init__(self, port=None, directory=None, detach=False, start=True, host=None, clients=None):
        super().__init__(detach=detach, keep_dir=directory is not None, host=host)
        self.clients = clients
        self.dir = directory or tempfile.mkdtemp(prefix="couponsd-pg-")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self._as_postgres = os.getuid() == 0  # PostgreSQL refuses to run as root
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self._uid, self._gid)
            os.chmod(self.dir, 0o700)
        self._lock = threading.Lock()
        if start:
            self.start()

    def _user(self):
        return "postgres" if self._as_postgres else None

    def initdb(self):
        if os.path.exists(os.path.join(self.data, "PG_VERSION")):
            return
        argv = [os.path.join(PG_BIN, "initdb"), "-D", self.data, "--auth=trust", "-U", "postgres",
                "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        r = subprocess.run(_launch_prefix(True, 0, self._user()) + argv, capture_output=True, text=True,
                           timeout=120, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        if self.clients:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write(f"host all all {self.clients} trust\n")

    def argv(self):
        settings = {"listen_addresses": self.host, "port": self.port, "unix_socket_directories": self.dir,
                    "max_connections": 200, "logging_collector": "off", "log_min_messages": "warning"}
        # Tests trade durability for speed; the bench (COUPONSD_PG_DURABLE=1) keeps the server's defaults, as
        # the peer it is compared with does (fsync and synchronous_commit on).
        if os.environ.get("COUPONSD_PG_DURABLE") != "1":
            settings.update({"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off",
                             "shared_buffers": "64MB"})
        argv = [os.path.join(PG_BIN, "postgres"), "-D", self.data]
        for k, v in settings.items():
            argv += ["-c", f"{k}={v}"]
        return argv

    def start(self, timeout=60):
        """initdb (once), then the postmaster in the foreground as our child (pg_ctl's options, our pid)."""
        with self._lock:
            if self.alive():
                return self
            self.initdb()
            logf = open(self.log_path, "ab")
            try:
                argv = _launch_prefix(self.detach, signal.SIGQUIT, self._user()) + self.argv()
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                             cwd=self.dir, start_new_session=True)
            finally:
                logf.close()
            self._register()
            ready = _wait_for(lambda: not self.alive() or self.isready(), timeout, 0.1)
            if not ready or not self.alive():
                out = self.log()[-3000:]
                self.stop()
                raise RuntimeError(f"postgres on port {self.port} did not accept connections:\n{out}")
            return self

    def isready(self):
        r = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
                            "-U", "postgres", "-t", "1"], capture_output=True, timeout=10)
        return r.returncode == 0

    def stop(self, mode="fast", timeout=30):
        """pg_ctl stop -m MODE, done by signalling the postmaster we started: fast (SIGINT), smart (SIGTERM),
        immediate (SIGQUIT, like a crash); SIGKILL if it overruns."""
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        if self.proc is not None:
            self.resume()
            stop_pid(self.proc, sig, timeout)

    def restart(self, mode="fast"):
        self.stop(mode)
        return self.start()

    def psql(self, db, sql, timeout=60):
        """Runs sql in db as the superuser; returns the rows as lists of strings (psql -At -F '|')."""
        r = subprocess.run([os.path.join(PG_BIN, "psql"), "-X", "-q", "-h", self.host, "-p", str(self.port),
                            "-U", "postgres", "-d", db, "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=timeout, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        if r.returncode != 0:
            raise RuntimeError(f"psql {db}: {sql}\n{r.stderr.strip()}")
        return [line.split("|") for line in r.stdout.splitlines() if line != ""]

    def scalar(self, db, sql):
        """The first column of the first row, or None."""
        rows = self.psql(db, sql)
        return rows[0][0] if rows and rows[0] else None

    def create_db(self, name, owner="couponsd"):
        """A fresh database owned by the login role owner (created if missing); returns its conninfo."""
        self.psql("postgres", f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') "
                              f"THEN CREATE ROLE {owner} LOGIN; END IF; END $$")
        self.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql("postgres", f'CREATE DATABASE "{name}" OWNER {owner}')
        return self.conninfo(name, owner)

    def conninfo(self, db, user="couponsd"):
        return f"host={self.host} port={self.port} dbname={db} user={user}"


# ---- exit-time teardown ----------------------------------------------------------------------------------

class Kafka(_Server):
    """A real Apache Kafka cluster of 1 or 3 KRaft nodes (scripts/kafka.sh) in a scratch directory, or the one
    a test runner started already (attach=DIR: used, never stopped, by this process). Nodes are numbered 1..N
    and are stopped, killed, paused and restarted by the pids kafka.sh recorded."""

    name = "kafka"

    def __init__(self, nodes=3, partitions=8, attach=None, host=None):
        """host: the address the nodes listen on and advertise (kafka.sh's KAFKA_HOST), when not loopback."""
        super().__init__(host=host)
        self.script = os.path.join(os.environ.get("COUPONSD_SRCDIR", "."), "scripts", "kafka.sh")
        self.owned = attach is None
        self.dir = attach or tempfile.mkdtemp(prefix="couponsd-kafka-")
        self.keep_dir = not self.owned
        if self.owned:
            self._register()
            r = subprocess.run(["sh", self.script, "start", str(nodes), self.dir, str(partitions)],
                               capture_output=True, text=True, timeout=300, env=dict(os.environ, KAFKA_HOST=self.host))
            if r.returncode != 0:
                self.close()
                raise RuntimeError(f"kafka.sh start failed: {r.stderr.strip()[-2000:]}")
        with open(os.path.join(self.dir, "bootstrap")) as f:
            self.bootstrap = f.read().strip()
        with open(os.path.join(self.dir, "nodes")) as f:
            self.nodes = int(f.read())

    def _kafka_sh(self, *args, timeout=120):
        r = subprocess.run(["sh", self.script, *args], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)}: {r.stderr.strip()[-2000:]}")
        return r.stdout.strip()

    @property
    def pid(self):
        return self.node_pid(1)

    def alive(self):
        return all(self.node_alive(i) for i in range(1, self.nodes + 1))

    def node_pid(self, i):
        try:
            with open(os.path.join(self.dir, f"node-{i}", "pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def node_alive(self, i):
        pid = self.node_pid(i)
        return pid is not None and _alive(pid)

    def node(self, i, action):
        """start | term | kill | pause | resume, on node i by its pid."""
        self._kafka_sh("node", self.dir, str(i), action)

    def create_topics(self, *specs):
        """specs: "name:partitions[:key=value,...]", with the cluster's replication factor and min ISR."""
        self._kafka_sh("topics", self.dir, *specs)

    def admin(self, *args, timeout=60):
        return self._kafka_sh("admin", self.dir, *args, timeout=timeout)

    def leader(self, topic, partition):
        return int(self.admin("leader", topic, str(partition)))

    def controller(self):
        return int(self.admin("controller"))

    def wait_isr(self, topics, seconds=60):
        self.admin("wait-isr", str(seconds), *topics, timeout=seconds + 30)

    def heal(self, topics=(), seconds=90):
        """Resumes paused nodes and starts dead ones, then waits until the topics are fully in sync again:
        after a fault the next test must find the whole cluster."""
        for i in range(1, self.nodes + 1):
            if self.node_alive(i):
                self.node(i, "resume")
            else:
                self.node(i, "start")
        if topics:
            self.wait_isr(topics, seconds)

    def stop(self, timeout=30):
        if self.owned and os.path.exists(os.path.join(self.dir, "nodes")):
            self._kafka_sh("stop", self.dir, timeout=timeout + 30)


_HOOKS_INSTALLED = False


def _sweep():
    """Stops every server still running; each one by its own pid."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for server in reversed(live):
        try:
            server.close()
        except Exception as e:  # noqa: BLE001 - the sweep must reach every server
            print(f"# servers: could not stop {server.name} (pid {server.pid}): {e}", file=sys.stderr)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds `with` blocks, then atexit runs the sweep


def _install_exit_hooks():
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_sweep)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _on_sigterm)


# ---- one Redis and one PostgreSQL per test file -----------------------------------------------------------

_SHARED = {}
_COUNTER = [0]


def shared_redis():
    """The Redis server of this test file (started on first use, stopped at exit)."""
    with _LIVE_LOCK:
        r = _SHARED.get("redis")
    if r is None or not r.alive():
        r = r.start() if r is not None else Redis()
        _SHARED["redis"] = r
    return r


def shared_postgres():
    """The PostgreSQL cluster of this test file (started on first use, stopped at exit)."""
    with _LIVE_LOCK:
        p = _SHARED.get("postgres")
    if p is None or not p.alive():
        p = p.start() if p is not None else Postgres()
        _SHARED["postgres"] = p
    return p


def shared():
    """(redis, postgres) shared by every daemon of this test file; each daemon gets its own database and
    Redis key prefix through unique_name()."""
    return shared_redis(), shared_postgres()


def shared_kafka():
    """The real Kafka cluster of this test run: the one COUPONSD_KAFKA_DIR names (scripts/test.sh starts it
    once for the whole real-Kafka pass), else one of this test file's own (3 nodes, stopped at exit)."""
    k = _SHARED.get("kafka")
    if k is None:
        k = Kafka(attach=os.environ.get("COUPONSD_KAFKA_DIR") or None)
        _SHARED["kafka"] = k
    return k


def unique_name(stem="t"):
    """A name no other daemon of this process uses: database names and key prefixes are built from it."""
    with _LIVE_LOCK:
        _COUNTER[0] += 1
        n = _COUNTER[0]
    return f"{stem}{os.getpid()}_{n}"


# ---- the demo's detached servers --------------------------------------------------------------------------

def demo_start(directory):
    """Starts Redis and PostgreSQL detached under directory; prints shell assignments describing them."""
    directory = os.path.abspath(directory)
    demo_stop(directory, quiet=True)
    os.makedirs(directory, exist_ok=True)
    rdir, pdir = os.path.join(directory, "redis"), os.path.join(directory, "postgres")
    os.makedirs(rdir, exist_ok=True)
    r = Redis(directory=rdir, detach=True)
    _write_pid(directory, "redis", r.pid)  # recorded at once: a failure below still leaves it stoppable
    p = Postgres(directory=pdir, detach=True)
    _write_pid(directory, "postgres", p.pid)
    conninfo = p.create_db("couponsd")
    out = {"REDIS_PORT": r.port, "REDIS_PID": r.pid, "PG_PORT": p.port, "PG_PID": p.pid,
           "PG_CONNINFO": conninfo, "PG_PSQL": f"psql -h 127.0.0.1 -p {p.port} -U postgres -d couponsd"}
    for k, v in out.items():
        print(f"{k}={shlex.quote(str(v))}")


def _write_pid(directory, name, pid):
    with open(os.path.join(directory, f"{name}.pid"), "w") as f:
        f.write(f"{pid}\n")


def _pid_is(pid, program):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return program in f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False


def demo_stop(directory, quiet=False):
    """Stops the servers a demo_start left in directory: only the recorded pids, and only if they still are
    the programs we started (a recycled pid is left alone)."""
    for name, program, sig in (("redis", "redis-server", signal.SIGTERM), ("postgres", "postgres", signal.SIGINT)):
        path = os.path.join(os.path.abspath(directory), f"{name}.pid")
        try:
            with open(path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and _pid_is(pid, program):
            stop_pid(pid, sig, 30)
            if not quiet:
                print(f"stopped {name} (pid {pid})")
        os.unlink(path)


def main(argv):
    if len(argv) == 3 and argv[1] == "--demo":
        demo_start(argv[2])
    elif len(argv) == 3 and argv[1] == "--stop":
        demo_stop(argv[2])
    else:
        print(__doc__.strip().split("\n\n")[-1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
