# SPDX-License-Identifier: BSD-2-Clause
"""harness.py: starts the real couponsd binary in a scratch directory and observes it from outside."""
import collections
import datetime
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from procs import free_port, pid_alive, proc_children, read_text, wait_for  # noqa: F401  (re-exported to the tests)

BIN = os.environ.get("COUPONSD_BIN", "src/couponsd")
SRCDIR = os.environ.get("COUPONSD_SRCDIR", ".")

# Which Kafka the daemons of this run use: "embedded" (librdkafka's mock cluster, the daemon's own child) or
# "real" (a real Apache Kafka cluster: the one COUPONSD_KAFKA_DIR names, else one per test file; see
# servers.Kafka). scripts/test.sh runs the integration and chaos suites once in each mode.
KAFKA_MODE = os.environ.get("COUPONSD_KAFKA", "embedded")
REAL_KAFKA = KAFKA_MODE == "real"
KAFKA_CHILDREN = 0 if REAL_KAFKA else 1  # the master's embedded kafka child, in embedded mode only

# Sanitizer reports found in the stderr of any daemon this test file started (see Tap.run).
SANITIZER_REPORTS = []
# LeakSanitizer's tracer failing at a process's exit (see Daemon.sanitizer_clean): a tool failure, not a report.
LSAN_TOOL_FAILURE = re.compile(r"==\d+==LeakSanitizer has encountered a fatal error\.\n"
                               r"==\d+==HINT: For debugging, try setting environment variable LSAN_OPTIONS=\S*\n"
                               r"==\d+==HINT: LeakSanitizer does not work under ptrace \(strace, gdb, etc\)\n?")
LSAN_TOOL_FAILURES = []


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(tree):
    """Emits the two-level mapping couponsd's configuration uses."""
    lines = []
    for section, keys in tree.items():
        lines.append(f"{section}:")
        for key, value in keys.items():
            if isinstance(value, list):
                lines.append(f"  {key}: [{', '.join(yaml_scalar(x) for x in value)}]")
            elif isinstance(value, dict):
                inner = ", ".join(f"{k}: {yaml_scalar(x)}" for k, x in value.items())
                lines.append(f"  {key}: {{{inner}}}")
            else:
                lines.append(f"  {key}: {yaml_scalar(value)}")
    return "\n".join(lines) + "\n"


class Daemon:
    """One couponsd master with its own scratch directory, config file, log and notify socket."""

    def __init__(self, overrides=None, faults=None, workers=2, partitions=2, redis=None, postgres=None,
                 postgres_conninfo=None, redis_prefix=None, admin_token=None):
        """redis: a servers.Redis (True: this file's shared one); the daemon gets its own key prefix
        (redis_prefix, default unique). postgres: a servers.Postgres (True: the shared one); the daemon gets a
        fresh database of its own, unless postgres_conninfo names one (e.g. shared by two daemons).
        admin_token sets admin.token. overrides are applied last and win."""
        self.dir = tempfile.mkdtemp(prefix="couponsd-test-")
        os.chmod(self.dir, 0o755)
        # Where its HTTP side is reached, and what its command line is prefixed with: a multi-host test runs
        # each daemon in a network namespace of its own, on that namespace's address (tests/lib/netns.py).
        self.host = "127.0.0.1"
        self.launcher = []
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "couponsd.yaml")
        self.log_path = os.path.join(self.dir, "couponsd.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.tree = {
            "daemon": {
                "user": "", "group": "",
                "pid_file": os.path.join(self.dir, "couponsd.pid"),
                "control_socket": os.path.join(self.dir, "control.sock"),
                "shutdown_timeout": "10s", "worker_timeout": "10s",
            },
            "log": {"level": "info", "format": "text", "file": self.log_path},
            "http": {"listen": [f"127.0.0.1:{self.port}"], "workers": workers, "read_timeout": "5s"},
            "kafka": {"brokers": "embedded", "partitions": partitions},
        }
        self._attach_services(redis, postgres, postgres_conninfo, redis_prefix, admin_token)
        for section, keys in (overrides or {}).items():
            self.tree.setdefault(section, {}).update(keys)
        self.kafka_cluster = None
        if REAL_KAFKA and self.tree["kafka"].get("brokers") == "embedded":
            self._attach_real_kafka()
        self.faults = faults
        self.proc = None
        self.notes = []
        self.notify_sock = None
        self.write_config()

    def _attach_services(self, redis, postgres, postgres_conninfo, redis_prefix, admin_token):
        self.redis, self.pg, self.dbname, self.redis_prefix = None, None, None, redis_prefix
        self.admin_token = admin_token
        if admin_token is not None:
            self.tree["admin"] = {"token": admin_token}
        if redis is None and postgres is None and postgres_conninfo is None:
            return
        import servers  # only the tests that use real services load it
        if redis is True:
            redis = servers.shared_redis()
        if postgres is True:
            postgres = servers.shared_postgres()
        self.redis, self.pg, self.dbname = redis, postgres, None
        self.redis_prefix = redis_prefix
        if redis is not None:
            self.redis_prefix = redis_prefix or servers.unique_name("t") + ":"
            self.tree["redis"] = {"host": redis.host, "port": redis.port, "key_prefix": self.redis_prefix,
                                  "timeout": "1s"}
        if postgres_conninfo is None and postgres is not None:
            self.dbname = servers.unique_name("couponsd_")
            postgres_conninfo = postgres.create_db(self.dbname)
        if postgres_conninfo is not None:
            m = re.search(r"dbname=(\S+)", postgres_conninfo)
            self.dbname = m.group(1) if m else self.dbname
            self.tree["postgres"] = {"conninfo": postgres_conninfo}

    def _attach_real_kafka(self):
        """Points the daemon at the run's real cluster, with topics and a consumer group of its own (created
        here: couponsd never creates topics on a real cluster)."""
        import servers
        self.kafka_cluster = servers.shared_kafka()
        name = servers.unique_name("k")
        kafka = self.tree["kafka"]
        kafka.update(brokers=self.kafka_cluster.bootstrap, topic=f"{name}-issue", results_topic=f"{name}-results",
                     dlq_topic=f"{name}-dlq", group_id=f"{name}-group")
        parts = kafka.get("partitions", 8)
        self.kafka_cluster.create_topics(*(f"{kafka[k]}:{parts}" for k in ("topic", "results_topic", "dlq_topic")))

    def topic(self, which="topic"):
        """The name of this daemon's issue topic (or "results_topic", "dlq_topic")."""
        default = {"topic": "coupon-issue", "results_topic": "coupon-issue-results", "dlq_topic": "coupon-issue-dlq"}
        return self.tree.get("kafka", {}).get(which, default[which])

    # ---- configuration ----
    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.tree))

    def set(self, section, key, value):
        self.tree.setdefault(section, {})[key] = value
        self.write_config()

    # ---- lifecycle ----
    def start(self, wait=True, timeout=30, env=None):
        """env: variables added to the daemon's environment (as systemd adds WATCHDOG_USEC)."""
        notify_path = os.path.join(self.dir, "notify.sock")
        if os.path.exists(notify_path):
            os.unlink(notify_path)  # the socket of this daemon's previous run (a restart)
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(notify_path)
        os.chmod(notify_path, 0o666)  # as systemd's is: a daemon that dropped privileges still notifies
        self.notify_sock.settimeout(0.2)
        threading.Thread(target=self._read_notify, daemon=True).start()
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, **(env or {}))
        if self.faults:
            env["COUPONSD_FAULTS"] = self.faults
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([*self.launcher, BIN, "-c", self.config_path], env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)
        if wait and not self.wait_note("READY=1", timeout):
            raise RuntimeError(f"daemon not ready within {timeout}s:\n{self.log()[-3000:]}")
        return self

    def _read_notify(self):
        while self.notify_sock is not None:
            try:
                data = self.notify_sock.recv(4096)
            except (socket.timeout, OSError):
                if self.proc is not None and self.proc.poll() is not None:
                    return
                continue
            self.notes.append(data.decode())

    def wait_note(self, needle, timeout, start=0):
        """Waits for a notify datagram containing needle, at index >= start; returns its index + 1 or 0."""
        def found():
            for i, note in enumerate(self.notes[start:], start):
                if needle in note:
                    return i + 1
            return 0
        return wait_for(found, timeout)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """Tears everything down, whatever state the test left it in; only our own pids are touched."""
        if self.proc is not None and self.proc.poll() is None:
            kids = [pid for pid, _, _ in self.children()]
            self.proc.send_signal(signal.SIGTERM)
            if self.wait_exit(20) is None:
                self.proc.kill()
                self.proc.wait()
            for pid in kids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.notify_sock is not None:
            sock, self.notify_sock = self.notify_sock, None
            sock.close()
        if hasattr(self, "stderr"):
            self.stderr.close()

    def cleanup(self):
        self.stop()
        clean, text = self.sanitizer_clean()
        if not clean:
            SANITIZER_REPORTS.append(text)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # ---- observation ----
    def endpoints(self):
        """[(host, port)] its HTTP API answers on (a fleet of hosts has several: tests/lib/multihost.py)."""
        return [(self.host, self.port)]

    @property
    def pid(self):
        return self.proc.pid

    def children(self):
        return proc_children(self.proc.pid)

    def tree_pids(self):
        """The master and every process under it."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + [pid for pid, _, _ in self.children()]

    def kill_tree(self):
        """SIGKILL to the master and all its children at once: the daemon dies as in a power cut, while
        its kernel lives on and closes its sockets. Returns the pids, once every one of them is gone."""
        pids = self.tree_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids[1:]), 10, 0.05)
        return pids

    def has_processes(self, http=None, consumers=None, without=()):
        """One reading of the process list: `http` HTTP workers and `consumers` consumers (None: any number),
        none of them in `without`. Two readings (a count, then a membership) can each see another moment of
        a restart, and agree on a state that never was."""
        kids = [(pid, title) for pid, title, state in self.children() if state != "Z"]
        hw = [pid for pid, title in kids if title == "couponsd: http worker"]
        cs = [pid for pid, title in kids if title.startswith("couponsd: consumer partition")]
        if (http is not None and len(hw) != http) or (consumers is not None and len(cs) != consumers):
            return False
        return not set(hw + cs) & set(without)

    def titled(self, title):
        return [pid for pid, t, state in self.children() if t == title and state != "Z"]

    def http_workers(self):
        return self.titled("couponsd: http worker")

    def consumers(self):
        return {t: pid for pid, t, s in self.children() if t.startswith("couponsd: consumer partition") and s != "Z"}

    def kafka(self):
        return self.titled("couponsd: embedded kafka")

    def log(self):
        return read_text(self.log_path)

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_clean(self):
        """(no report, the stderr's tail). LeakSanitizer's own failure to stop a process's threads at exit (its
        ptrace tracer fails now and then, and says "has encountered a fatal error" and two HINT lines) is not
        a report: that process's leak check did not run. It is counted in LSAN_TOOL_FAILURES and printed as a
        diagnostic (tap.py); any other sanitizer line in the same stderr still fails."""
        text = self.stderr_text()
        rest, n = LSAN_TOOL_FAILURE.subn("", text)
        if n:
            LSAN_TOOL_FAILURES.append(f"{self.dir}: {n} x LeakSanitizer could not stop the threads of a process "
                                      "at its exit; its leak check did not run")
        return "Sanitizer" not in rest and "runtime error:" not in rest, text[-4000:]

    def ctl(self, command, config_path=None):
        r = subprocess.run([BIN, "-c", config_path or self.config_path, "-s", command], capture_output=True,
                           text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def get(self, path, timeout=5):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace"), dict(resp.getheaders())
        finally:
            conn.close()

    # ---- the HTTP API ----
    def request(self, method, path, body=None, headers=None, timeout=10, port=None):
        """One request on a fresh connection: (status, body text, headers). body may be a dict/list (sent as
        JSON), str or bytes. The headers are an http.client.HTTPMessage: h.get("location") ignores case."""
        return http_request(port or self.port, method, path, body, headers, timeout, host=self.host)

    def post(self, path, body=None, headers=None, timeout=10):
        return self.request("POST", path, body, headers, timeout)

    def json(self, method, path, body=None, headers=None, timeout=10, port=None):
        """Like request(), with the body parsed as JSON (None when it is not JSON)."""
        status, text, hdrs = self.request(method, path, body, headers, timeout, port)
        return status, parse_json(text), hdrs

    def get_json(self, path, timeout=10):
        return self.json("GET", path, timeout=timeout)

    def issue(self, coupon_id, user_id, json_body=False, port=None, timeout=10):
        """POST /api/coupons/{c}/issue?userId=U (or with the body {"userId": U}): (status, json, headers)."""
        if json_body:
            return self.json("POST", f"/api/coupons/{coupon_id}/issue", {"userId": user_id}, port=port,
                             timeout=timeout)
        return self.json("POST", f"/api/coupons/{coupon_id}/issue?userId={user_id}", port=port, timeout=timeout)

    def request_status(self, request_id):
        return self.get_json(f"/api/requests/{request_id}")

    def wait_final(self, request_id, timeout=20, step=0.05):
        """Polls GET /api/requests/{id} until it is ISSUED or REJECTED; returns the last body seen (or None)."""
        deadline, last = time.monotonic() + timeout, None
        while True:
            try:
                status, body, _ = self.request_status(request_id)
                if status == 200 and isinstance(body, dict):
                    last = body
                    if body.get("status") in ("ISSUED", "REJECTED"):
                        return body
            except OSError:
                pass
            if time.monotonic() >= deadline:
                return last
            time.sleep(step)

    def sse(self, path, timeout=10, port=None):
        """Reads a Server-Sent Events stream: a list of (event, data) until the server ends the stream.
        The list also has .status, .headers, .comments (comment lines seen) and .ended (False: timed out)."""
        return sse_read(port or self.port, path, timeout, host=self.host)

    def admin_create(self, name, quantity, coupon_id=None, starts_at=None, ends_at=None, token=None, extra=None):
        """POST /api/admin/coupons with the daemon's bearer token (or token): (status, json, headers).
        starts_at / ends_at: a datetime, seconds from now (int/float) or a string sent as is."""
        body = {"name": name, "totalQuantity": quantity}
        if coupon_id is not None:
            body["couponId"] = coupon_id
        if starts_at is not None:
            body["startsAt"] = iso_time(starts_at)
        if ends_at is not None:
            body["endsAt"] = iso_time(ends_at)
        body.update(extra or {})
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.json("POST", "/api/admin/coupons", body, headers)

    def create_coupon(self, quantity, name=None, **kw):
        """admin_create that must succeed; returns the new coupon id. Asked once: a worker accepts only once its
        PostgreSQL session is up (docs/operations.md), so a 503 right after READY=1 is a failure."""
        status, body, _ = self.admin_create(name or f"coupon of {quantity}", quantity, **kw)
        if status != 201 or not isinstance(body, dict) or not isinstance(body.get("couponId"), int):
            raise RuntimeError(f"admin create failed: {status} {body}")
        return body["couponId"]

    def raw(self, data, timeout=10):
        """Sends bytes as they are on a fresh connection; returns (status or None, headers text, body bytes)."""
        return raw_request(self.port, data, timeout)

    # ---- what the daemon keeps in Redis and PostgreSQL ----
    def sql(self, query):
        """Rows of a query on this daemon's database (lists of strings)."""
        return self.pg.psql(self.dbname, query)

    def sql_scalar(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows and rows[0] else None

    def stock_key(self, coupon_id):
        return f"{self.redis_prefix}{{{coupon_id}}}:stock"

    def redis_stock(self, coupon_id):
        v = self.redis.get(self.stock_key(coupon_id))
        return int(v) if v is not None and v.lstrip("-").isdigit() else v

    # ---- the embedded Kafka ----
    def kafka_bootstrap(self, timeout=15):
        """The Kafka bootstrap list: the configured one, or the embedded cluster's, from the line the daemon
        logs when it is up."""
        if self.tree["kafka"].get("brokers", "embedded") != "embedded":
            return self.tree["kafka"]["brokers"]

        def find():
            found = re.findall(r"embedded kafka up: \d+ brokers at (\S+?),? \d+ partitions", self.log())
            return found[-1] if found else None
        return wait_for(find, timeout)


def run_cli(*args, timeout=30):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


# ---- HTTP, SSE and Kafka helpers shared by the API tests ------------------------------------------------

def parse_json(text):
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def _encode_body(body, headers):
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    return body, headers


def http_request(port, method, path, body=None, headers=None, timeout=10, host="127.0.0.1"):
    body, headers = _encode_body(body, headers)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace"), resp.headers
    finally:
        conn.close()



class RequestLoop:
    """A bounded loop of fresh-connection GET path requests from two threads (each one may reach any worker),
    for what a reload or a restart does to the requests around it. statuses counts each answer: its status, or
    the exception's name when the connection failed."""

    def __init__(self, port, path="/healthz", seconds=30, threads=2):
        self.port, self.path, self.deadline = port, path, time.monotonic() + seconds
        self.statuses = {}
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(threads)]
        for th in self.threads:
            th.start()

    def loop(self):
        while not self.stopping and time.monotonic() < self.deadline:
            try:
                answer = http_request(self.port, "GET", self.path, timeout=5)[0]
            except OSError as e:
                answer = type(e).__name__
            with self.lock:
                self.statuses[answer] = self.statuses.get(answer, 0) + 1

    def count(self, answer):
        with self.lock:
            return self.statuses.get(answer, 0)

    def stop(self):
        self.stopping = True
        for th in self.threads:
            th.join()
        return dict(self.statuses)


def raw_request(port, data, timeout=10):
    """Writes data as is and reads the answer until the server closes or the body (Content-Length) is in.
    Returns (status or None, header text, body bytes); a reset after a partial write still reads the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer (413) and close before it has read all we send
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and m and len(rest) >= int(m.group(1)):
                break
    finally:
        sock.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else None), head.decode(errors="replace"), body


class SseEvents(list):
    status = None
    headers = None
    ended = False
    comments = 0


def sse_read(port, path, timeout=10, host="127.0.0.1"):
    """GET path as text/event-stream; parses events until the stream ends or timeout passes."""
    events = SseEvents()
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        events.status, events.headers = resp.status, resp.headers
        if resp.status != 200:
            resp.read()
            events.ended = True
            return events
        name, data = None, []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return events
            conn.sock.settimeout(left)
            try:
                line = resp.readline()
            except (socket.timeout, TimeoutError):
                return events
            except (OSError, http.client.HTTPException):
                events.ended = True
                return events
            if not line:
                events.ended = True
                return events
            line = line.decode(errors="replace").rstrip("\r\n")
            if line == "":
                if data or name:
                    events.append((name or "message", "\n".join(data)))
                name, data = None, []
            elif line.startswith(":"):
                events.comments += 1
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
    finally:
        conn.close()


def iso_time(t):
    """A datetime, or seconds from now, as the API's ISO-8601 UTC text (2026-01-01T00:00:00.000Z)."""
    if isinstance(t, (int, float)):
        t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=t)
    if isinstance(t, datetime.datetime):
        t = t.astimezone(datetime.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t


def murmur2(data):
    """The Java Kafka client's murmur2 (librdkafka's murmur2 and murmur2_random partitioners use it)."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rem = data[4 * n4:], len(data) % 4
    if rem == 3:
        h ^= tail[2] << 16
    if rem >= 2:
        h ^= tail[1] << 8
    if rem >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def kafka_partition(key, partitions):
    """The partition couponsd's producer (murmur2_random, key = coupon id in decimal) picks for key."""
    return (murmur2(str(key).encode()) & 0x7FFFFFFF) % partitions


def kproduce_bin():
    """tests/tools/kproduce of the build the daemon under test comes from (built on demand)."""
    path = os.environ.get("KPRODUCE_BIN")
    if path:
        return path
    builddir = os.path.dirname(os.path.dirname(os.path.abspath(BIN)))
    path = os.path.join(builddir, "tests", "tools", "kproduce")
    if not os.access(path, os.X_OK):
        subprocess.run(["make", "-C", builddir, "tests/tools/kproduce"], capture_output=True, timeout=300)
    return path


def kafka_produce(bootstrap, topic, value, key=None, partition=None, headers=None, count=1, timeout=30):
    """Produces value (str or bytes) count times; returns [(partition, offset)] or raises."""
    argv = [kproduce_bin(), "-b", bootstrap, "-t", topic, "-n", str(count), "-f", "-"]
    if key is not None:
        argv += ["-k", str(key)]
    if partition is not None:
        argv += ["-p", str(partition)]
    for name, v in (headers or {}).items():
        argv += ["-H", f"{name}={v}"]
    data = value.encode() if isinstance(value, str) else value
    r = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"kproduce failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
    return [tuple(map(int, line.split())) for line in r.stdout.decode().split("\n") if line.strip()]


def kafka_consume(bootstrap, topic, partition=None, max_messages=None, timeout_ms=15000, whole=None):
    """Every message of the topic (or one partition) from the beginning to its current end, as dicts:
    partition, offset, key, value (bytes are exact via .encode("latin-1") of the str), headers (dict).
    whole, a dict, gets "complete": whether every partition was read to its end within timeout_ms (kproduce's
    exit status; a read cut by the timeout returns what it had)."""
    argv = [kproduce_bin(), "-C", "-b", bootstrap, "-t", topic, "-w", str(timeout_ms)]
    if partition is not None:
        argv += ["-p", str(partition)]
    if max_messages:
        argv += ["-m", str(max_messages)]
    r = subprocess.run(argv, capture_output=True, timeout=timeout_ms / 1000 + 30)
    if whole is not None:
        whole["complete"] = r.returncode == 0
        whole["stderr"] = r.stderr.decode(errors="replace")[-500:]
    out = []
    for line in r.stdout.decode().split("\n"):
        if line.strip():
            msg = json.loads(line)
            msg["headers"] = {k: v for k, v in msg["headers"]}
            out.append(msg)
    return out


def issue_burst(ports, coupon_id, user_ids, threads=48, timeout=90):
    """Fires POST /api/coupons/{c}/issue?userId=U for every user at once from a thread pool, spreading the
    requests over ports (one or several daemons). Returns [(user, status or the exception's repr, json)] in
    user order; never waits longer than timeout in all."""
    import concurrent.futures
    ports = ports if isinstance(ports, (list, tuple)) else [ports]
    deadline = time.monotonic() + timeout

    def one(i_user):
        i, user = i_user
        if time.monotonic() > deadline:
            return user, "skipped: out of time", None
        try:
            status, text, _ = http_request(ports[i % len(ports)], "POST",
                                           f"/api/coupons/{coupon_id}/issue?userId={user}", timeout=15)
            return user, status, parse_json(text)
        except Exception as e:  # noqa: BLE001 - a failed request is a result to count
            return user, repr(e), None
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, enumerate(user_ids)))


# ---- a pipelining HTTP client: many requests per connection, answers read in order ----

def read_response(sock, buf):
    """One response from sock (buf holds bytes already read): (status, headers text, body bytes, rest of buf)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            m = re.search(rb"(?im)^content-length: *(\d+)", buf[:end])
            length = int(m.group(1)) if m else 0
            if len(buf) >= end + 4 + length:
                head = buf[:end].decode(errors="replace")
                return int(head[9:12]), head, buf[end + 4:end + 4 + length], buf[end + 4 + length:]
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk


def pump(port, coupon, users, depth, out, tally, enough=None):
    """POSTs an issue request for every user on one keep-alive connection, depth requests per write; appends
    (user, status, headers, json) to out and counts statuses in tally. Stops early once enough(tally) says so."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    buf = b""
    try:
        for i in range(0, len(users), depth):
            if enough is not None and enough(tally):
                return
            chunk = users[i:i + depth]
            sock.sendall(b"".join(b"POST /api/coupons/%d/issue?userId=%d HTTP/1.1\r\nHost: t\r\n"
                                  b"Content-Length: 0\r\n\r\n" % (coupon, u) for u in chunk))
            for user in chunk:
                status, head, body, buf = read_response(sock, buf)
                out.append((user, status, head, parse_json(body)))
                tally[status] += 1  # shared by the threads: a lost increment only delays the stop
    finally:
        sock.close()


def hold_table_lock(pg, db, table, timeout=10):
    """A psql session holding an ACCESS EXCLUSIVE lock on table until its stdin gets ROLLBACK. Returns once the
    lock is held (psql says so after the LOCK): a request sent before that could run unhindered."""
    import servers

    psql = subprocess.Popen([os.path.join(servers.PG_BIN, "psql"), "-X", "-q", "-h", pg.host, "-p", str(pg.port),
                             "-U", "postgres", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    psql.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
    psql.stdin.flush()
    ready, _, _ = select.select([psql.stdout], [], [], timeout)
    if not ready or psql.stdout.readline().strip() != "locked":
        psql.kill()
        psql.wait()
        raise RuntimeError(f"psql did not take the lock on {table} within {timeout}s")
    return psql


def issue_pipelined(port, coupon, users, conns=4, depth=1, enough=None):
    """Spreads users over conns connections; returns [(user, status, headers, json)]."""
    outs = [[] for _ in range(conns)]
    tally, errors = collections.Counter(), []

    def run(k):
        try:
            pump(port, coupon, users[k::conns], depth, outs[k], tally, enough)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(k,)) for k in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"client errors: {errors[:3]}")
    return [r for o in outs for r in o]


def wait_all_final(ports, request_ids, timeout=60, threads=16):
    """Polls GET /api/requests/{id} for every id until each is ISSUED or REJECTED, or timeout passes in all.
    ports: loopback ports, or (host, port) pairs. Returns {requestId: last status body (or None)}."""
    import concurrent.futures
    ports = ports if isinstance(ports, (list, tuple)) else [ports]
    deadline = time.monotonic() + timeout
    todo, done = list(request_ids), {}
    while todo and time.monotonic() < deadline:
        def one(i_rid):
            i, rid = i_rid
            try:
                at = ports[i % len(ports)]
                host, port = at if isinstance(at, tuple) else ("127.0.0.1", at)
                status, text, _ = http_request(port, "GET", f"/api/requests/{rid}", timeout=10, host=host)
                return rid, parse_json(text) if status == 200 else None
            except Exception:  # noqa: BLE001
                return rid, None
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, enumerate(todo)))
        todo = []
        for rid, body in results:
            done[rid] = body
            if not (isinstance(body, dict) and body.get("status") in ("ISSUED", "REJECTED")):
                todo.append(rid)
        if todo:
            time.sleep(0.2)
    return done


def count_fds(pid, matches):
    """How many of pid's open descriptors point at something matches(link target) accepts (0 when pid is gone)."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += bool(matches(os.readlink(f"/proc/{pid}/fd/{fd}")))
            except OSError:
                pass
    except OSError:
        pass
    return n


CHILD_DIED = r"killed by signal|exited with status [1-9]"


def check_no_child_died(t, d):
    """No child of the daemon died along the way (the master logs every death)."""
    return t.ok(not re.search(CHILD_DIED, d.log()), "no child died",
                "\n".join(re.findall(rf".*(?:{CHILD_DIED}).*", d.log()))[:2000])


def check_survivors(t, d, workers, consumers):
    """What a file that shares one daemon ends with: the processes it started with are the ones alive."""
    t.eq(sorted(d.http_workers()), workers, "the same http worker pids are alive at the end (no crash)")
    t.eq(d.consumers(), consumers, "the same consumer pids are alive at the end")
    check_no_child_died(t, d)


def expect(t, got, want, description, diag=None):
    """t.eq with extra diagnostics printed when it fails."""
    return t.ok(got == want, description, f"got:  {got!r}\nwant: {want!r}" + (f"\n{diag}" if diag else ""))


class Budget:
    """A test file's time budget: a wait takes the smaller of its own timeout and what is left, so a daemon
    that never answers makes the file fail within its bound instead of running past it."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds

    def left(self, timeout, floor=0.5):
        return max(floor, min(timeout, self.deadline - time.monotonic()))
