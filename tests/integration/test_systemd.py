#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""test_systemd.py: the packaged .deb and its unit under a real systemd, booted in a container.

`make deb` builds the package; a Debian root (debootstrap, from the mirror this machine's apt uses, cached in
~/.cache/couponsd/nspawn and keyed by what went into it) boots with `systemd-nspawn --boot --volatile=overlay`
(the cached root stays read-only, every change lands in a tmpfs that goes with the container). The container
shares this machine's network, so the daemon inside reaches the Redis and PostgreSQL this file starts on
loopback, and its HTTP port is reachable from here. Inside it: apt installs the .deb, then `systemctl start`
(Type=notify: returns once READY=1), the sandbox as the kernel applied it, `systemctl reload` with a good and a
bad file, logrotate's postrotate reopen, the watchdog (a SIGSTOPped master is killed and restarted) and
`systemctl stop`. The container is halted and its directories removed in a finally, by the PIDs started here.

Skipped (TAP SKIP, naming why) only where this machine cannot boot a container: not root, no CAP_SYS_ADMIN, no
writable cgroup file system, namespaces refused, systemd-nspawn or debootstrap missing (scripts/install-deps.sh
installs them); also under `make distcheck` (a read-only source tree: the main `make check` ran it).
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness
import servers
from procs import read_text
from tap import Tap

SRC = harness.SRCDIR
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(harness.BIN)))
PACKAGES = os.path.join(BUILDDIR, "_packages")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "couponsd", "nspawn")
# Bumped when what a cached root must hold changes in a way the key below does not see.
ROOT_FORMAT = 1
# systemd as PID 1, what the checks run inside (procps: pgrep), logrotate as the package's file expects it.
ROOT_PACKAGES = ["systemd", "systemd-sysv", "dbus", "procps", "logrotate", "ca-certificates"]
MACHINE = f"couponsd-t{os.getpid()}"
SHARE = "/mnt/couponsd"  # the host directory bound into the container: the .deb and the configuration files
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAP_SYS_ADMIN = 21
CAP_NET_BIND_SERVICE = 10


def run(*cmd, timeout=120, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    return r.returncode, r.stdout, r.stderr


def make(target):
    """make TARGET in this build directory without the outer make's flags: (rc, output, seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    start = time.monotonic()
    r = subprocess.run(["make", "-C", BUILDDIR, target], capture_output=True, text=True, env=env, timeout=900)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - start


# ---- can this machine boot a container? ---------------------------------------------------------------------

def cannot_boot_reason():
    """Why this machine cannot boot a systemd container, or None. Each reason names the missing piece."""
    if os.geteuid() != 0:
        return "not root: systemd-nspawn needs root"
    with open("/proc/self/status") as f:
        cap_eff = int(re.search(r"^CapEff:\s+([0-9a-f]+)$", f.read(), re.M).group(1), 16)
    if not cap_eff & (1 << CAP_SYS_ADMIN):
        return "no CAP_SYS_ADMIN in this process's effective capabilities: cannot mount or create namespaces"
    if not os.path.isdir("/sys/fs/cgroup") or not os.listdir("/sys/fs/cgroup"):
        return "no cgroup file system mounted at /sys/fs/cgroup: systemd inside a container needs one"
    if not os.access("/sys/fs/cgroup", os.W_OK) and not os.access("/sys/fs/cgroup/unified", os.W_OK) and \
            not os.access("/sys/fs/cgroup/systemd", os.W_OK):
        return "/sys/fs/cgroup is not writable here: the container's systemd could not manage its services"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs systemd-container and debootstrap)"
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None:
        return "dpkg-buildpackage or debhelper not installed: no .deb to boot with"
    rc, out, err = run("unshare", "--pid", "--mount", "--uts", "--ipc", "--fork", "true", timeout=30)
    if rc != 0:
        return f"the kernel refuses new PID/mount/UTS/IPC namespaces (unshare: {(out + err).strip()})"
    return None


def read_only_source():
    """make distcheck runs `make check` in a tarball whose files it made read-only (root ignores the bits)."""
    return not os.stat(os.path.join(SRC, "configure.ac")).st_mode & 0o222


# ---- the root file system --------------------------------------------------------------------------------

def host_release():
    with open("/etc/os-release") as f:
        fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    return fields.get("ID", "").strip('"'), fields.get("VERSION_CODENAME", "").strip('"')


def host_mirror(codename):
    """The URI this machine's apt fetches CODENAME's main component from (one-line or deb822 sources)."""
    files = ["/etc/apt/sources.list"] + sorted(
        os.path.join("/etc/apt/sources.list.d", n) for n in os.listdir("/etc/apt/sources.list.d")
        if n.endswith((".list", ".sources")))
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", text, re.M):
            if m.group(2) == codename and "main" in m.group(3).split():
                return m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict((k.lower(), v.strip()) for k, v in re.findall(r"^([A-Za-z-]+):(.*)$", stanza, re.M))
            if "deb" in fields.get("types", "").split() and codename in fields.get("suites", "").split() \
                    and "main" in fields.get("components", "").split():
                return fields["uris"].split()[0]
    return "http://deb.debian.org/debian"


def deb_depends(deb):
    """The package names the .deb depends on (first of each alternative), for the root to have them already."""
    rc, out, _ = run("dpkg-deb", "-f", deb, "Depends")
    names = []
    for clause in out.split(","):
        name = clause.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name:
            names.append(name)
    return sorted(set(names))


def ensure_root(t, deb):
    """The cached Debian root for this .deb's dependencies: built once by debootstrap, then reused."""
    _, codename = host_release()
    mirror = host_mirror(codename)
    packages = sorted(set(ROOT_PACKAGES + deb_depends(deb)))
    key = hashlib.sha256(json.dumps([ROOT_FORMAT, codename, mirror, packages]).encode()).hexdigest()[:16]
    root = os.path.join(CACHE, f"{codename}-{key}")
    if os.path.exists(os.path.join(root, ".complete")):
        t.diag(f"cached root {root}")
        return root
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another suite may be building the same root
        if os.path.exists(os.path.join(root, ".complete")):
            return root
        # Older roots (another key) are of no further use: the cache holds one.
        for name in os.listdir(CACHE):
            if name.startswith(f"{codename}-") and name != os.path.basename(root):
                shutil.rmtree(os.path.join(CACHE, name), ignore_errors=True)
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.monotonic()
        rc, out, err = run("debootstrap", "--variant=minbase", f"--include={','.join(packages)}", codename, tmp,
                           mirror, timeout=1200)
        t.diag(f"debootstrap {codename} from {mirror}: {time.monotonic() - start:.0f}s")
        if rc != 0:
            t.ok(False, f"debootstrap {codename} {mirror} builds the root", (out + err)[-3000:])
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write(json.dumps({"codename": codename, "mirror": mirror, "packages": packages}) + "\n")
        os.rename(tmp, root)
    return root


# ---- the container ------------------------------------------------------------------------------------------

class Container:
    """systemd-nspawn --boot on a read-only root with a tmpfs overlay; commands run in it through nsenter."""

    def __init__(self, root, share):
        self.root, self.share = root, share
        self.proc, self.init_pid, self.degraded = None, None, None
        self.log_path = os.path.join(share, "nspawn.log")

    def boot(self, timeout=90):
        argv = ["systemd-nspawn", "-q", "-D", self.root, "--volatile=overlay", "--boot", f"--machine={MACHINE}",
                f"--bind={self.share}:{SHARE}", "--console=pipe"]
        if not os.path.isdir("/run/systemd/system"):
            # No systemd on this machine to register with or to give the container a scope of its own.
            argv += ["--register=no", "--keep-unit"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        self.init_pid = harness.wait_for(self._find_init, 30, 0.1)
        if not self.init_pid or self.init_pid < 0:
            self.init_pid = None
            return f"no systemd started under systemd-nspawn (exit status {self.proc.poll()})"
        answer = []

        def settled():
            # Until systemd has its private socket, systemctl cannot connect: it says nothing, or "offline" (as
            # when no systemd runs at all), and does not wait. Ask again until the boot's own answer, or the end.
            answer[:] = self.sh("systemctl is-system-running --wait", timeout=timeout)
            return answer[1].strip() not in ("", "offline") or self.proc.poll() is not None

        harness.wait_for(settled, timeout, 0.2)
        state = answer[1].strip()
        if state not in ("running", "degraded"):
            return f"the container's systemd reached '{state}' ({answer[2].strip()})"
        if state == "degraded":
            _, failed, _ = self.sh("systemctl --failed --no-legend --plain")
            self.degraded = failed
        return None

    def _find_init(self):
        if self.proc.poll() is not None:
            return -1
        for pid, _, _ in harness.proc_children(self.proc.pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "systemd":
                        return pid
            except OSError:
                pass
        return None

    def log(self):
        return read_text(self.log_path)

    def run(self, *argv, timeout=120, input=None):
        """argv inside the container (all its namespaces, a clean environment): (rc, stdout, stderr)."""
        cmd = ["nsenter", "-t", str(self.init_pid), "-a", "--", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8",
               "SYSTEMD_PAGER=", "DEBIAN_FRONTEND=noninteractive", *argv]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        return r.returncode, r.stdout, r.stderr

    def sh(self, script, timeout=120):
        return self.run("sh", "-c", script, timeout=timeout)

    def show(self, unit, *props):
        _, out, _ = self.run("systemctl", "show", unit, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def halt(self):
        """Stops what boot() started, by its PIDs: SIGTERM asks nspawn to halt the container; if it has not
        gone in 30 s, SIGKILL to the container's init takes its whole PID namespace with it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                if self.init_pid and self.init_pid > 0 and harness.pid_alive(self.init_pid):
                    os.kill(self.init_pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(30)
        # nspawn leaves these behind when /run is not a tmpfs of its own: they are this container's only.
        for leftover in (f"/run/systemd/nspawn/propagate/{MACHINE}", f"/run/systemd/nspawn/unix-export/{MACHINE}"):
            shutil.rmtree(leftover, ignore_errors=True)


# ---- the daemon's configuration ------------------------------------------------------------------------------

def low_port():
    """A free loopback port below 1024: binding it proves the unit's CAP_NET_BIND_SERVICE reaches couponsd."""
    for port in range(979, 900, -1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    return harness.free_port()


def config_tree(port, redis, conninfo, prefix, workers):
    return {
        "daemon": {"user": "couponsd", "group": "couponsd", "pid_file": "/run/couponsd/couponsd.pid",
                   "control_socket": "/run/couponsd/control.sock", "shutdown_timeout": "10s",
                   "worker_timeout": "30s"},
        "log": {"level": "info", "format": "text", "file": "/var/log/couponsd/couponsd.log"},
        "http": {"listen": [f"127.0.0.1:{port}"], "workers": workers, "read_timeout": "5s"},
        "kafka": {"brokers": "embedded", "partitions": 1},
        "redis": {"host": "127.0.0.1", "port": redis.port, "key_prefix": prefix, "timeout": "1s"},
        "postgres": {"conninfo": conninfo},
    }


def timespan(text):
    """Seconds in one of systemctl show's time spans ("20s", "1min 30s", "500ms", "infinity" or "0")."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|min|h)\b", text)
    return sum(float(n) * units[u] for n, u in parts)


# ---- the checks ----------------------------------------------------------------------------------------------

class Check:
    """What the steps share: the container, the daemon's port, the files bound into the container."""

    def __init__(self, t, box, port, share):
        self.t, self.box, self.port, self.share = t, box, port, share

    def install_config(self, name, text):
        with open(os.path.join(self.share, name), "w") as f:
            f.write(text)
        rc, out, err = self.box.run("install", "-o", "root", "-g", "couponsd", "-m", "0640", f"{SHARE}/{name}",
                                    "/etc/couponsd.yaml")
        return self.t.ok(rc == 0, f"/etc/couponsd.yaml <- {name} (root:couponsd 0640)", out + err)

    def readyz(self):
        try:
            status, body, _ = harness.http_request(self.port, "GET", "/readyz", timeout=5)
            return status, body
        except OSError as e:
            return None, str(e)

    def unit(self, *props):
        return self.box.show("couponsd.service", *props)

    def journal(self):
        _, out, _ = self.box.run("journalctl", "-u", "couponsd.service", "--no-pager", "-o", "short-monotonic")
        return out

    def pids(self):
        """The PIDs (in the container) of every process in couponsd.service's cgroup."""
        cg = self.unit("ControlGroup").get("ControlGroup", "")
        for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"):
            rc, out, _ = self.box.run("cat", f"{base}{cg}/cgroup.procs")
            if rc == 0 and cg:
                return sorted(int(p) for p in out.split())
        return []

    def proc_status(self, pid):
        rc, out, _ = self.box.run("cat", f"/proc/{pid}/status")
        return dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M)) if rc == 0 else {}

    def fds(self, pid):
        _, out, _ = self.box.sh(f"for f in /proc/{pid}/fd/*; do readlink \"$f\"; done")
        return out.split()

    def stat(self, path):
        rc, out, _ = self.box.run("stat", "-c", "%U:%G %a %F", path)
        return out.strip() if rc == 0 else None


def step_install(c, deb):
    t, box = c.t, c.box
    rc, out, err = box.run("apt-get", "install", "-y", "-q", "--no-install-recommends",
                           f"{SHARE}/{os.path.basename(deb)}", timeout=300)
    installed = t.ok(rc == 0, "apt-get install ./couponsd_*.deb in the booted root", (out + err)[-3000:])
    _, out, _ = box.run("systemctl", "is-enabled", "couponsd.service")
    t.eq(out.strip(), "disabled", "the package installs the unit without enabling it")
    props = c.unit("Type", "WatchdogUSec", "NotifyAccess")
    t.eq((props.get("Type"), props.get("NotifyAccess")), ("notify", "main"), "systemd loaded it as Type=notify")
    return installed


def step_start(c):
    t, box = c.t, c.box
    start = time.monotonic()
    rc, out, err = box.run("systemctl", "start", "couponsd.service", timeout=120)
    t.ok(rc == 0, f"systemctl start couponsd returns 0 once READY=1 arrives ({time.monotonic() - start:.1f}s)",
         out + err + c.journal()[-3000:])
    props = c.unit("ActiveState", "SubState", "StatusText", "MainPID", "NRestarts")
    t.eq((props.get("ActiveState"), props.get("SubState")), ("active", "running"), "couponsd.service is active")
    t.ok(props.get("StatusText", "").startswith("ready: 1 http workers"),
         "its status is the daemon's READY=1 STATUS= line", props)
    status, body = harness.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(c.readyz()), 30, 0.5) \
        or c.readyz()
    t.eq(status, 200, f"GET /readyz on 127.0.0.1:{c.port} is 200 (Redis, PostgreSQL, Kafka reachable)")
    return rc == 0 and props.get("ActiveState") == "active", int(props.get("MainPID", "0"))


def step_sandbox(c, main_pid):
    """The unit's hardening as the kernel applied it, and a daemon that works inside it."""
    t, box = c.t, c.box
    pids = c.pids()
    t.ok(main_pid in pids and len(pids) >= 4,
         f"the unit's cgroup holds the master and its children ({len(pids)} processes)", pids)
    _, out, _ = box.run("id", "-u", "couponsd")
    uid = out.strip()
    bad = {}
    for pid in pids:
        st = c.proc_status(pid)
        got = (st.get("Uid", "").split(), st.get("NoNewPrivs"), st.get("Seccomp"),
               int(st.get("CapEff", "0"), 16), int(st.get("CapBnd", "0"), 16))
        if got != ([uid] * 4, "1", "2", 1 << CAP_NET_BIND_SERVICE, 1 << CAP_NET_BIND_SERVICE):
            bad[pid] = got
    t.ok(pids and not bad, f"every process runs as couponsd (uid {uid}) with NoNewPrivs, a seccomp filter and "
         "CAP_NET_BIND_SERVICE alone", bad)
    t.ok(c.port < 1024, f"it listens on port {c.port}, below 1024, with no root process")
    t.eq(c.stat("/run/couponsd"), "couponsd:couponsd 750 directory", "/run/couponsd: RuntimeDirectory=, 0750")
    _, pid_text, _ = box.run("cat", "/run/couponsd/couponsd.pid")
    t.eq(pid_text.strip(), str(main_pid), "the pid file names the unit's MainPID")
    t.eq(c.stat("/run/couponsd/couponsd.pid"), "couponsd:couponsd 640 regular file", "pid file: couponsd's, 0640")
    t.ok((c.stat("/run/couponsd/control.sock") or "").endswith("socket") and
         c.stat("/run/couponsd/control.sock").startswith("couponsd:couponsd"), "the control socket is couponsd's",
         c.stat("/run/couponsd/control.sock"))
    t.eq(c.stat("/var/log/couponsd/couponsd.log"), "couponsd:couponsd 640 regular file",
         "the log file in LogsDirectory= is couponsd's, 0640 (UMask=0027)")
    # The master's own view: the file system is read-only where ProtectSystem=strict says so.
    rc, out, _ = box.run("cat", f"/proc/{main_pid}/mountinfo")
    mounts = {fields[4]: fields[5] for fields in (line.split() for line in out.splitlines()) if len(fields) > 5}

    def mode(path):  # the options of the mount that holds path: the longest mount point above it
        point = max((m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")), key=len, default="")
        return mounts.get(point, "").split(",")[0]

    modes = {p: mode(p) for p in ("/usr", "/etc", "/var/lib", "/var/log/couponsd", "/run/couponsd")}
    t.eq(modes, {"/usr": "ro", "/etc": "ro", "/var/lib": "ro", "/var/log/couponsd": "rw", "/run/couponsd": "rw"},
         "ProtectSystem=strict as the master sees it: read-only but for /var/log/couponsd and /run/couponsd")
    _, log, _ = box.run("cat", "/var/log/couponsd/couponsd.log")
    denied = [line for line in (log + c.journal()).splitlines()
              if re.search(r"not permitted|permission denied|EPERM|EACCES|seccomp|audit", line, re.I)]
    t.ok(not denied, "nothing in the log or the journal was refused by the sandbox", "\n".join(denied[-20:]))


def step_reload(c, tree, main_pid):
    t, box = c.t, c.box
    tree["http"]["workers"] = 2
    c.install_config("good.yaml", harness.to_yaml(tree))
    rc, out, err = box.run("systemctl", "reload", "couponsd.service", timeout=120)
    t.ok(rc == 0, "systemctl reload with a good new file (http.workers 1 -> 2) returns 0", out + err)
    props = c.unit("ActiveState", "StatusText", "MainPID")
    t.ok(props.get("StatusText", "").startswith("reloaded: 2 http workers") and "generation 2" in
         props.get("StatusText", ""), "the status says the new generation runs 2 http workers", props)
    t.eq((props.get("ActiveState"), props.get("MainPID")), ("active", str(main_pid)), "same master, still active")
    workers = harness.wait_for(lambda: len(c.pids()) == 5 and c.pids(), 15, 0.5)
    t.ok(workers, "the cgroup now holds the master, 2 http workers, the consumer and Kafka", c.pids())
    t.eq(c.readyz()[0], 200, "/readyz is 200 after the reload")
    before = c.pids()

    bad = harness.to_yaml(tree).replace('read_timeout: "5s"', 'read_timeout: "5 parsecs"')
    c.install_config("bad.yaml", bad)
    rc, out, err = box.run("systemctl", "reload", "couponsd.service", timeout=120)
    journal = c.journal()
    t.ok(rc != 0, f"systemctl reload with a bad file fails (exit {rc})", out + err)
    t.ok("invalid duration '5 parsecs'" in journal, "the journal says why: the reload's own error", journal[-2000:])
    props = c.unit("ActiveState", "StatusText", "MainPID")
    t.eq((props.get("ActiveState"), props.get("MainPID")), ("active", str(main_pid)),
         "the unit stays active with the same master")
    t.ok(props.get("StatusText", "").startswith("reload refused"), "the status says the reload was refused", props)
    t.eq(c.pids(), before, "the same processes run: the old generation keeps serving")
    t.eq(c.readyz()[0], 200, "/readyz is still 200")
    # Put the good file back: a restart (the watchdog's, below) starts from /etc/couponsd.yaml.
    c.install_config("good.yaml", harness.to_yaml(tree))


def step_logrotate(c):
    t, box = c.t, c.box
    rc, out, err = box.run("logrotate", "-f", "/etc/logrotate.d/couponsd", timeout=60)
    t.ok(rc == 0, "logrotate -f /etc/logrotate.d/couponsd (the package's file) exits 0", out + err)
    t.ok(c.stat("/var/log/couponsd/couponsd.log.1") is not None, "the old log is now couponsd.log.1")

    def reopened():
        holders = {pid: [f for f in c.fds(pid) if "/var/log/couponsd/" in f] for pid in c.pids()}
        return holders if holders and all(v and all(f.endswith("/couponsd.log") for f in v)
                                          for v in holders.values()) else None

    holders = harness.wait_for(reopened, 10, 0.5)
    t.ok(holders, "postrotate's `couponsd -s reopen`: every process writes to the new couponsd.log, none to .log.1",
         {pid: [f for f in c.fds(pid) if "/var/log/" in f] for pid in c.pids()})
    _, log, _ = box.run("cat", "/var/log/couponsd/couponsd.log")
    t.ok("log files reopened" in log, "the new file has the master's 'log files reopened'", log[-1000:])
    t.eq(c.stat("/var/log/couponsd/couponsd.log"), "couponsd:couponsd 640 regular file",
         "couponsd created the new file itself: couponsd's, 0640")


def step_watchdog(c, main_pid, started_at):
    t, box = c.t, c.box
    props = c.unit("WatchdogUSec")
    interval = timespan(props.get("WatchdogUSec", ""))
    if not t.ok(interval > 0, f"the unit arms systemd's watchdog (WatchdogSec={interval:g}s)", props):
        return
    # Still the first master well past one interval: it pinged (without WATCHDOG=1 it would have been killed).
    wait = started_at + interval + 3 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    props = c.unit("NRestarts", "MainPID", "ActiveState", "WatchdogTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    t.eq((props.get("ActiveState"), props.get("MainPID"), props.get("NRestarts")), ("active", str(main_pid), "0"),
         f"{interval + 3:g}s after the start the first master still runs: its WATCHDOG=1 pings arrive")
    t.ok(int(props.get("WatchdogTimestampMonotonic", "0")) > int(props.get("ActiveEnterTimestampMonotonic", "0")),
         "systemd recorded a ping after the service became active", props)

    old = c.pids()
    rc, out, err = box.run("kill", "-STOP", str(main_pid))
    t.ok(rc == 0, f"SIGSTOP to the master (pid {main_pid}): its event loop no longer turns", out + err)
    stopped_at = time.monotonic()

    def restarted():
        p = c.unit("NRestarts", "MainPID", "ActiveState")
        return p if p.get("NRestarts") == "1" and p.get("ActiveState") == "active" and \
            p.get("MainPID") not in ("0", str(main_pid)) else None

    props = harness.wait_for(restarted, interval + 60, 0.5) or c.unit("NRestarts", "MainPID", "ActiveState")
    took = time.monotonic() - stopped_at
    journal = c.journal()
    t.ok(restarted() is not None, f"systemd killed it and started a new master ({took:.0f}s)", props)
    t.ok(re.search(r"couponsd\.service: Watchdog timeout", journal), "the journal says: Watchdog timeout",
         journal[-3000:])
    t.ok(took >= interval - 1, f"not before the watchdog interval ({interval:g}s)")
    gone = [p for p in old if p in c.pids()]
    t.ok(not gone, "none of the old processes is left in the unit", gone)
    status, _ = harness.wait_for(lambda: (lambda r: r if r[0] == 200 else None)(c.readyz()), 30, 0.5) or c.readyz()
    t.eq(status, 200, "/readyz is 200 again from the restarted daemon")


def step_stop(c):
    t, box = c.t, c.box
    start = time.monotonic()
    rc, out, err = box.run("systemctl", "stop", "couponsd.service", timeout=120)
    took = time.monotonic() - start
    t.ok(rc == 0, f"systemctl stop couponsd returns 0 ({took:.1f}s)", out + err)
    t.eq(c.unit("ActiveState").get("ActiveState"), "inactive", "couponsd.service is inactive")
    # systemd unloads an inactive unit nothing refers to (its Result= and ExecMainStatus= with it): what the
    # stop did is in the journal, from the last "Stopping" on.
    journal = c.journal()
    tail = journal[journal.rfind("Stopping couponsd"):] if "Stopping couponsd" in journal else journal
    t.ok("couponsd.service: Deactivated successfully." in tail, "systemd: Deactivated successfully", tail[-2000:])
    trouble = [line for line in tail.splitlines()
               if re.search(r"status=[1-9]|code=killed|code=dumped|SIGKILL|Killing process|Failed with result|"
                            r"timed out", line)]
    t.ok(not trouble, "the master exited 0 by itself: no failure, no SIGKILL, no timeout", "\n".join(trouble))
    rc, out, _ = box.run("pgrep", "-a", "-u", "couponsd")
    t.ok(rc == 1, "no process of the couponsd user is left", out)
    t.ok(c.stat("/run/couponsd") is None, "/run/couponsd went with the service (RuntimeDirectory=)")
    t.ok("stopping gracefully" in journal or "stopping gracefully" in box.run(
        "cat", "/var/log/couponsd/couponsd.log")[1], "the master drained gracefully")


def build_deb(t):
    rc, out, secs = make("deb")
    t.diag(f"make deb: {secs:.0f}s")
    if not t.ok(rc == 0, "make deb builds the package", out[-3000:]):
        return None
    with open(os.path.join(BUILDDIR, "Makefile")) as f:
        version = re.search(r"^VERSION = (\S+)$", f.read(), re.M).group(1)
    debs = sorted(p for p in os.listdir(PACKAGES) if re.match(rf"couponsd_{re.escape(version)}-.*_\w+\.deb$", p))
    return os.path.join(PACKAGES, debs[-1]) if debs else None


def test_systemd(t):
    reason = cannot_boot_reason()
    if reason is None and read_only_source():
        reason = "read-only source tree (make distcheck): the main make check boots the container"
    if reason:
        t.skip("the .deb under systemd in a container", reason)
        return
    deb = build_deb(t)
    if not t.ok(deb is not None, "make deb left a .deb in _packages"):
        return
    root = ensure_root(t, deb)
    if root is None:
        return
    redis, pg = servers.shared()
    conninfo = pg.create_db(servers.unique_name("couponsd_"))
    share = tempfile.mkdtemp(prefix="couponsd-nspawn-")
    os.chmod(share, 0o755)
    shutil.copy(deb, share)
    box = Container(root, share)
    try:
        start = time.monotonic()
        why = box.boot()
        t.ok(why is None, f"systemd-nspawn --boot: the container's systemd is up ({time.monotonic() - start:.1f}s)",
             f"{why}\n{box.log()[-3000:]}")
        if why is not None:
            return
        if box.degraded:
            t.diag(f"degraded container; failed units:\n{box.degraded}")
        c = Check(t, box, low_port(), share)
        tree = config_tree(c.port, redis, conninfo, servers.unique_name("sd") + ":", 1)
        if not step_install(c, deb) or not c.install_config("couponsd.yaml", harness.to_yaml(tree)):
            return
        started_at = time.monotonic()
        ok, main_pid = step_start(c)
        if not ok:
            return
        step_sandbox(c, main_pid)
        step_reload(c, tree, main_pid)
        step_logrotate(c)
        step_watchdog(c, main_pid, started_at)
        step_stop(c)
    finally:
        box.halt()
        t.ok(box.proc is None or box.proc.poll() is not None, "the container is gone (systemd-nspawn exited)")
        shutil.rmtree(share, ignore_errors=True)


if __name__ == "__main__":
    Tap().run(test_systemd)
