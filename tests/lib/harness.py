"""harness.py: starts the real couponsd binary in a scratch directory and observes it from outside."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("COUPONSD_BIN", "src/couponsd")
SRCDIR = os.environ.get("COUPONSD_SRCDIR", ".")

# Sanitizer reports found in the stderr of any daemon this test file started (see Tap.run).
SANITIZER_REPORTS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def proc_children(ppid):
    """[(pid, title, state)] of the live children of ppid, read from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) != ppid:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
            out.append((int(name), title, fields[0]))
        except (OSError, ValueError):
            continue
    return sorted(out)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2] != "Z"
    except OSError:
        return False


def wait_for(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(step)


class Daemon:
    """One couponsd master with its own scratch directory, config file, log and notify socket."""

    def __init__(self, overrides=None, faults=None, workers=2, partitions=2):
        self.dir = tempfile.mkdtemp(prefix="couponsd-test-")
        os.chmod(self.dir, 0o755)
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
        for section, keys in (overrides or {}).items():
            self.tree.setdefault(section, {}).update(keys)
        self.faults = faults
        self.proc = None
        self.notes = []
        self.notify_sock = None
        self.write_config()

    # ---- configuration ----
    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.tree))

    def set(self, section, key, value):
        self.tree.setdefault(section, {})[key] = value
        self.write_config()

    # ---- lifecycle ----
    def start(self, wait=True, timeout=30):
        notify_path = os.path.join(self.dir, "notify.sock")
        self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_sock.bind(notify_path)
        os.chmod(notify_path, 0o666)  # as systemd's is: a daemon that dropped privileges still notifies
        self.notify_sock.settimeout(0.2)
        threading.Thread(target=self._read_notify, daemon=True).start()
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        if self.faults:
            env["COUPONSD_FAULTS"] = self.faults
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([BIN, "-c", self.config_path], env=env, stdin=subprocess.DEVNULL,
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
    @property
    def pid(self):
        return self.proc.pid

    def children(self):
        return proc_children(self.proc.pid)

    def titled(self, title):
        return [pid for pid, t, state in self.children() if t == title and state != "Z"]

    def http_workers(self):
        return self.titled("couponsd: http worker")

    def consumers(self):
        return {t: pid for pid, t, s in self.children() if t.startswith("couponsd: consumer partition") and s != "Z"}

    def kafka(self):
        return self.titled("couponsd: embedded kafka")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_clean(self):
        text = self.stderr_text()
        return "Sanitizer" not in text and "runtime error:" not in text, text[-4000:]

    def ctl(self, command, config_path=None):
        r = subprocess.run([BIN, "-c", config_path or self.config_path, "-s", command], capture_output=True,
                           text=True, timeout=120)
        return r.returncode, r.stdout, r.stderr

    def get(self, path, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode(errors="replace"), dict(resp.getheaders())
        finally:
            conn.close()


def run_cli(*args, timeout=30):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr
