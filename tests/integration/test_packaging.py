#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""test_packaging.py: the systemd unit's hardening, then `make deb` and `make rpm` as an operator gets them.

The .deb is built once, installed on this machine with dpkg, checked from the installed files (couponsd -t,
the couponsd user and group, the conffile, the unit, man pages, a real start that drops to the user) and
purged again: the machine is restored even when an assertion fails or a run before this one was killed
half-way. The .rpm is built and inspected with rpm -qp. Each part is skipped (TAP) when its tools are
missing, when not root, when a couponsd package is already installed by someone else, and under
`make distcheck` (a read-only source tree: the main `make check` has run these already).
"""
import fcntl
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time

import harness
from tap import Tap

SRC = harness.SRCDIR
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(harness.BIN)))
PACKAGES = os.path.join(BUILDDIR, "_packages")
UNIT = os.path.join(SRC, "packaging", "couponsd.service")
MAX_EXPOSURE = 2.0
LOCK = "/run/lock/couponsd-packaging-test.lock"
# Present while this test has the package installed: a later run purges what a killed run left behind.
MARKER = "/var/tmp/couponsd-packaging-test.installed"
BUILD_TIMEOUT = 600


def run(*cmd, timeout=120, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    return r.returncode, r.stdout, r.stderr


def dpkg(*args):
    """dpkg, waiting up to two minutes for a lock that apt or another dpkg holds."""
    deadline = time.monotonic() + 120
    while True:
        rc, out, err = run("dpkg", *args, timeout=300)
        if rc == 0 or "lock" not in err or time.monotonic() > deadline:
            return rc, out, err
        time.sleep(2)


def make(target):
    """make TARGET (and VAR=value words) in this build directory, without the outer make's flags;
    (rc, output, seconds)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    start = time.monotonic()
    r = subprocess.run(["make", "-C", BUILDDIR, *target.split()], capture_output=True, text=True, env=env,
                       timeout=BUILD_TIMEOUT)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - start


def version():
    with open(os.path.join(BUILDDIR, "Makefile")) as f:
        return re.search(r"^VERSION = (\S+)$", f.read(), re.M).group(1)


def source_is_read_only():
    """make distcheck runs `make check` in a tarball whose files it made read-only (root ignores the bits)."""
    return not os.stat(os.path.join(SRC, "configure.ac")).st_mode & 0o222


def dpkg_installed(pkg):
    rc, out, _ = run("dpkg-query", "-W", "-f=${Status}", pkg)
    return rc == 0 and "install ok installed" in out


def exists_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def exists_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def eq(t, got, want, description, diag=""):
    """Tap.eq with more to show when it fails."""
    return t.ok(got == want, description, f"got:  {got!r}\nwant: {want!r}\n{diag}")


def skip(t, reason):
    t.ok(True, f"# SKIP {reason}")


# ---- the unit ---------------------------------------------------------------------------------------------

def unit_exposure(path):
    rc, out, err = run("systemd-analyze", "security", "--offline=true", path)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out + err)
    return (float(m.group(1)) if m else None), out + err


def unit_settings(path):
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith(("#", ";", "[")):
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
    return settings


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def test_licence(t):
    """BSD-2-Clause: LICENSE, the Debian copyright file (DEP-5, with the full text), the rpm's License: and
    %license, and LICENSE in the tarball and in `make install`'s docdir."""
    import tempfile
    with open(os.path.join(SRC, "LICENSE")) as f:
        text = f.read()
    t.ok(text.startswith("BSD 2-Clause License\n\nCopyright (c) 2026, The couponsd authors\n"),
         "LICENSE: BSD 2-Clause, (c) 2026 The couponsd authors", text[:120])
    t.ok("\n1. Redistributions of source code" in text and "\n2. Redistributions in binary form" in text
         and "\n3. " not in text, "LICENSE: the two clauses, no third")
    with open(os.path.join(SRC, "packaging", "debian", "copyright")) as f:
        paragraphs = f.read().split("\n\n")
    files = [p for p in paragraphs if p.startswith("Files: *\n")]
    t.ok(files and "\nCopyright: 2026 The couponsd authors\n" in files[0] + "\n" and
         files[0].endswith("\nLicense: BSD-2-Clause"), "debian/copyright: Files: * is BSD-2-Clause", files[:1])
    standalone = [p for p in paragraphs if p.startswith("License: BSD-2-Clause\n")]
    body = standalone[0].splitlines()[1:] if standalone else []
    deb = "\n".join("" if line == " ." else line[1:] for line in body)
    t.eq(" ".join(deb.split()), " ".join(text.split("\n\n", 2)[2].split()),
         "debian/copyright: a stand-alone License: BSD-2-Clause paragraph with LICENSE's text")
    t.ok(not any("unlicensed" in p for p in paragraphs), "debian/copyright: no placeholder licence left")
    with open(os.path.join(SRC, "packaging", "rpm", "couponsd.spec")) as f:
        spec = f.read()
    t.ok(re.search(r"^License:\s+BSD-2-Clause$", spec, re.M) and re.search(r"^%license LICENSE$", spec, re.M),
         "rpm spec: License: BSD-2-Clause and %license LICENSE")
    with tempfile.TemporaryDirectory() as dest:
        # dist_doc_DATA: distributed (automake's dist_ prefix) and installed in $(docdir).
        rc, out, _ = make(f"install-dist_docDATA DESTDIR={dest}")
        found = glob.glob(os.path.join(dest, "**", "doc", "couponsd", "LICENSE"), recursive=True)
        t.ok(rc == 0 and found, "make install puts LICENSE in $(docdir)", out[-1000:])


def test_unit(t):
    s = unit_settings(UNIT)
    one = {k: v[-1] for k, v in s.items()}
    t.eq(one.get("Type"), "notify", "unit: Type=notify")
    t.eq(one.get("ExecStartPre"), "/usr/sbin/couponsd -t -c /etc/couponsd.yaml", "unit: ExecStartPre tests the file")
    t.eq(one.get("ExecStart"), "/usr/sbin/couponsd -c /etc/couponsd.yaml", "unit: ExecStart runs in the foreground")
    t.eq(one.get("ExecReload"), "/usr/sbin/couponsd -c /etc/couponsd.yaml -s reload",
         "unit: ExecReload waits for the outcome (-s reload), not a bare SIGHUP")
    t.eq(one.get("KillMode"), "mixed", "unit: KillMode=mixed")
    watchdog = seconds(one.get("WatchdogSec", "0s"))
    t.ok(watchdog > 0,
         f"unit: WatchdogSec={one.get('WatchdogSec')} (the master pings; test_systemd.py kills a hung one)")
    rc, out, _ = harness.run_cli("--list-keys")
    m = re.search(r"^daemon\.shutdown_timeout\s.*?\s(\d+(?:ms|s|m|h))\s", out, re.M)
    drain = seconds(m.group(1)) if m else None
    stop = int(one.get("TimeoutStopSec", "0"))
    t.ok(drain is not None and stop > drain,
         f"unit: TimeoutStopSec ({stop}s) is longer than the default daemon.shutdown_timeout ({drain}s)")
    t.eq(one.get("RuntimeDirectory"), "couponsd", "unit: RuntimeDirectory=couponsd (pid file, control socket)")
    t.eq(one.get("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE", "unit: only CAP_NET_BIND_SERVICE is kept")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID", "MemoryDenyWriteExecute"):
        t.eq(one.get(key), "yes", f"unit: {key}=yes")
    t.eq(one.get("ProtectSystem"), "strict", "unit: ProtectSystem=strict")
    t.ok("@system-service" in s.get("SystemCallFilter", []), "unit: SystemCallFilter=@system-service")
    if shutil.which("systemd-analyze") is None:
        skip(t, "systemd-analyze not installed: exposure not measured")
        return
    exposure, text = unit_exposure(UNIT)
    t.diag(f"systemd-analyze security --offline=true: exposure {exposure}")
    t.ok(exposure is not None and exposure <= MAX_EXPOSURE,
         f"systemd-analyze security --offline=true: exposure {exposure} <= {MAX_EXPOSURE}", text[-3000:])


# ---- the Debian package -------------------------------------------------------------------------------------

def deb_reason_to_skip():
    if os.geteuid() != 0:
        return "not root: cannot install a package"
    if shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None:
        return "dpkg-buildpackage or debhelper not installed"
    if source_is_read_only():
        return "read-only source tree (make distcheck): the packages are tested by the main make check"
    return None


def purge(t=None):
    rc, out, err = dpkg("--purge", "couponsd")
    if t is not None:
        eq(t, rc, 0, "dpkg --purge couponsd exits 0", out + err)
    return rc


def restore(user_before, group_before):
    """Whatever happened: no couponsd package, and no user or group this test created."""
    if dpkg_installed("couponsd") or os.path.exists(MARKER):
        dpkg("--purge", "couponsd")
    if not user_before and exists_user("couponsd"):
        run("userdel", "couponsd")
    if not group_before and exists_group("couponsd"):
        run("groupdel", "couponsd")
    for leftover in ("/run/couponsd", "/var/lib/couponsd", "/var/log/couponsd"):
        if os.path.isdir(leftover) and not os.listdir(leftover):
            os.rmdir(leftover)
    if os.path.exists(MARKER):
        os.unlink(MARKER)


def deb_file():
    debs = sorted(glob.glob(os.path.join(PACKAGES, f"couponsd_{version()}-*_*.deb")))
    return debs[-1] if debs else None


def check_installed(t, deb):
    rc, out, err = dpkg("-i", deb)
    eq(t, rc, 0, f"dpkg -i {os.path.basename(deb)} exits 0 (runtime dependencies already present)", out + err)
    t.ok(dpkg_installed("couponsd"), "dpkg says couponsd is installed")
    rc, out, err = run("/usr/sbin/couponsd", "-t", "-c", "/etc/couponsd.yaml")
    t.eq((rc, out, err), (0, "ok\n", ""), "installed /usr/sbin/couponsd -t -c /etc/couponsd.yaml prints ok")
    with open("/etc/couponsd.yaml") as f, open(os.path.join(SRC, "etc", "couponsd.yaml")) as g:
        t.ok(f.read() == g.read(), "/etc/couponsd.yaml is the commented example etc/couponsd.yaml")
    rc, out, err = run("/usr/sbin/couponsd", "-V")
    t.ok(rc == 0 and out.startswith(f"couponsd {version()}\n"), f"installed couponsd -V says {version()}", out + err)
    rc, out, _ = run("/usr/sbin/couponsd", "-h")
    t.ok("default FILE: /etc/couponsd.yaml" in out, "the installed binary's default file is /etc/couponsd.yaml", out)
    rc, out, _ = run("ldd", "/usr/sbin/couponsd")
    t.ok(rc == 0 and "not found" not in out and "libasan" not in out and "libubsan" not in out,
         "the installed binary finds its libraries and has no sanitizer runtime", out)
    with open("/usr/sbin/couponsd", "rb") as f:
        t.ok(b"COUPONSD_FAULTS" not in f.read(), "the installed binary has no test-only fault switches")

    # the user and group
    t.ok(exists_group("couponsd"), "the couponsd group exists")
    t.ok(exists_user("couponsd"), "the couponsd user exists")
    if exists_user("couponsd"):
        pw = pwd.getpwnam("couponsd")
        t.ok(pw.pw_uid < 1000 and pw.pw_shell.endswith("nologin"),
             f"couponsd is a system user without a login shell (uid {pw.pw_uid}, {pw.pw_shell})")
        t.eq(pw.pw_dir, "/var/lib/couponsd", "its home is /var/lib/couponsd (for ~/.pgpass)")
        st = os.stat("/etc/couponsd.yaml")
        t.eq((stat.S_IMODE(st.st_mode), st.st_uid, grp.getgrgid(st.st_gid).gr_name), (0o640, 0, "couponsd"),
             "/etc/couponsd.yaml is 0640 root:couponsd (it may hold passwords)")
        rc, out, err = run("runuser", "-u", "couponsd", "--", "/usr/sbin/couponsd", "-t", "-c", "/etc/couponsd.yaml")
        eq(t, (rc, out), (0, "ok\n"), "as the couponsd user (the unit's ExecStartPre), -t reads the file: ok", err)

    # dpkg's view: conffiles and contents
    rc, out, _ = run("dpkg-query", "-W", "-f=${Conffiles}", "couponsd")
    conffiles = [line.split()[0] for line in out.splitlines() if line.strip()]
    t.ok("/etc/couponsd.yaml" in conffiles, "/etc/couponsd.yaml is a conffile", out)
    t.ok("/etc/logrotate.d/couponsd" in conffiles, "/etc/logrotate.d/couponsd is a conffile", out)
    rc, out, _ = run("dpkg", "-L", "couponsd")
    files = set(out.split())
    unit = next((f for f in files if f.endswith("/systemd/system/couponsd.service")), None)
    t.ok(unit is not None and os.path.isfile(unit), f"the unit is installed ({unit})")
    if unit is not None:
        with open(unit) as f, open(UNIT) as g:
            t.ok(f.read() == g.read(), "the installed unit is packaging/couponsd.service")
        wants = glob.glob("/etc/systemd/system/*.wants/couponsd.service")
        t.ok(not wants, "the unit is not enabled by the package", wants)
        if shutil.which("systemd-analyze"):
            rc, out, err = run("systemd-analyze", "verify", "--man=no", unit)
            t.eq((rc, (out + err).strip()), (0, ""), "systemd-analyze verify finds nothing wrong with the installed unit")
            exposure, text = unit_exposure(unit)
            t.ok(exposure is not None and exposure <= MAX_EXPOSURE, f"installed unit: exposure {exposure}", text[-2000:])
    for page in ("/usr/share/man/man8/couponsd.8.gz", "/usr/share/man/man5/couponsd.yaml.5.gz"):
        t.ok(page in files and os.path.isfile(page), f"man page {page} is installed")
    sql = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SRC, "sql", "migrations", "*.sql")))
    got = sorted(os.path.basename(p) for p in glob.glob("/usr/share/couponsd/migrations/*.sql"))
    t.ok(sql and got == sql, "the SQL migrations are in /usr/share/couponsd/migrations", f"{got} vs {sql}")
    for doc in ("README.md", "operations.md", "configuration.md"):
        t.ok(os.path.isfile(f"/usr/share/doc/couponsd/{doc}"), f"/usr/share/doc/couponsd/{doc} is installed")
    t.ok(os.path.isfile("/usr/share/doc/couponsd/copyright"), "/usr/share/doc/couponsd/copyright is installed")
    t.ok(os.path.isfile("/etc/logrotate.d/couponsd"), "the logrotate file is installed")
    if shutil.which("logrotate"):
        rc, out, err = run("logrotate", "--debug", "--state", "/dev/null", "/etc/logrotate.d/couponsd")
        t.ok(rc == 0 and "error" not in (out + err).lower(), "logrotate --debug accepts it", out + err)
    st = os.stat("/var/log/couponsd") if os.path.isdir("/var/log/couponsd") else None
    t.ok(st is not None and st.st_uid == pwd.getpwnam("couponsd").pw_uid,
         "/var/log/couponsd exists and belongs to couponsd")


def check_runs_as_user(t):
    """The installed binary starts as root, drops to the packaged user, serves and stops (embedded Kafka)."""
    harness.BIN = "/usr/sbin/couponsd"
    d = harness.Daemon(overrides={"daemon": {"user": "couponsd", "group": "couponsd"}}, workers=1, partitions=1)
    try:
        uid = pwd.getpwnam("couponsd").pw_uid
        os.chown(d.dir, uid, -1)  # the unprivileged master removes its pid file and socket at exit
        d.start(timeout=60)
        status, body, _ = d.get("/healthz")
        t.eq(status, 200, "installed daemon answers GET /healthz")
        uids = {}
        for pid in [d.pid] + [p for p, _, _ in d.children()]:
            with open(f"/proc/{pid}/status") as f:
                uids[pid] = int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))
        t.ok(len(uids) >= 3 and set(uids.values()) == {uid},
             "master and every child run as the couponsd user after the privilege drop", uids)
        d.signal(signal.SIGTERM)
        t.eq(d.wait_exit(30), 0, "installed daemon stops gracefully with exit 0")
    finally:
        d.cleanup()
        harness.BIN = os.environ.get("COUPONSD_BIN", "src/couponsd")


def check_purged(t):
    purge(t)
    t.ok(not dpkg_installed("couponsd"), "dpkg no longer lists couponsd")
    for path in ("/usr/sbin/couponsd", "/etc/couponsd.yaml", "/etc/logrotate.d/couponsd",
                 "/usr/share/man/man8/couponsd.8.gz", "/usr/share/couponsd", "/var/log/couponsd"):
        t.ok(not os.path.exists(path), f"purge removed {path}")
    t.ok(not glob.glob("/lib/systemd/system/couponsd.service") and
         not glob.glob("/usr/lib/systemd/system/couponsd.service"), "purge removed the unit")
    # Debian's practice: a purged package leaves its system user (files elsewhere may still be owned by it).
    t.ok(exists_user("couponsd"), "the couponsd user stays after purge, as Debian packages do (the test removes it)")


def test_deb(t):
    reason = deb_reason_to_skip()
    if reason:
        skip(t, f"Debian package: {reason}")
        return
    rc, out, secs = make("deb")
    t.diag(f"make deb: {secs:.0f}s")
    if not eq(t, rc, 0, "make deb builds the package", out[-4000:]):
        return
    lint = [line for line in out.splitlines() if re.match(r"[EWIPX]: couponsd", line)]
    if shutil.which("lintian"):
        errors = [line for line in lint if line.startswith("E:")]
        t.ok(not errors, f"lintian: no errors ({len(lint)} other tags)", "\n".join(errors))
        for line in lint:
            t.diag(f"lintian {line}")
    deb = deb_file()
    t.ok(deb is not None, f"make deb left the package in {PACKAGES}", os.listdir(PACKAGES) if os.path.isdir(PACKAGES) else "")
    if deb is None:
        return
    rc, out, _ = run("dpkg-deb", "-f", deb, "Depends")
    t.ok(all(lib in out for lib in ("librdkafka", "libevent", "libjansson", "libhiredis", "libpq5", "libyaml",
                                     "adduser")), "the .deb depends on the six libraries and adduser", out)

    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another suite on this machine may be installing it too
        if os.path.exists(MARKER):  # a killed run left it installed: restore what it found
            with open(MARKER) as f:
                before = f.read().split()
            restore(user_before=before[:1] == ["True"], group_before=before[1:2] == ["True"])
        if dpkg_installed("couponsd"):
            skip(t, "a couponsd package is already installed on this machine: not touching it")
            return
        user_before, group_before = exists_user("couponsd"), exists_group("couponsd")
        try:
            with open(MARKER, "w") as f:
                f.write(f"{user_before} {group_before}\n")
            check_installed(t, deb)
            check_runs_as_user(t)
            check_purged(t)
        finally:
            restore(user_before, group_before)
        t.ok(not dpkg_installed("couponsd") and exists_user("couponsd") == user_before,
             "the machine is as before: no couponsd package, the couponsd user only if it was there")


# ---- the RPM ------------------------------------------------------------------------------------------------

def rpm_query(path, *flags):
    rc, out, err = run("rpm", "-qp", *flags, path)
    return rc, out


def test_rpm(t):
    if shutil.which("rpmbuild") is None:
        skip(t, "RPM: rpmbuild not installed")
        return
    if source_is_read_only():
        skip(t, "RPM: read-only source tree (make distcheck): tested by the main make check")
        return
    rc, out, secs = make("rpm")
    t.diag(f"make rpm: {secs:.0f}s")
    if not eq(t, rc, 0, "make rpm builds the package", out[-4000:]):
        return
    rpms = sorted(glob.glob(os.path.join(PACKAGES, f"couponsd-{version()}-*.rpm")))
    t.ok(rpms, f"make rpm left the package in {PACKAGES}")
    if not rpms:
        return
    rpm = rpms[-1]
    rc, out = rpm_query(rpm, "-l")
    files = set(out.split())
    for want in ("/usr/sbin/couponsd", "/etc/couponsd.yaml", "/usr/lib/systemd/system/couponsd.service",
                 "/etc/logrotate.d/couponsd", "/usr/lib/tmpfiles.d/couponsd.conf", "/var/lib/couponsd",
                 "/var/log/couponsd", "/usr/share/doc/couponsd/operations.md"):
        t.ok(want in files, f"rpm -qpl lists {want}")
    t.ok(any(re.fullmatch(r"/usr/share/man/man8/couponsd\.8(\.gz)?", f) for f in files), "rpm -qpl lists couponsd(8)")
    t.ok(any(re.fullmatch(r"/usr/share/man/man5/couponsd\.yaml\.5(\.gz)?", f) for f in files),
         "rpm -qpl lists couponsd.yaml(5)")
    t.ok(any(re.fullmatch(r"/usr/share/couponsd/migrations/0001_\w+\.sql", f) for f in files),
         "rpm -qpl lists the migrations")
    rc, out = rpm_query(rpm, "-c")
    t.ok({"/etc/couponsd.yaml", "/etc/logrotate.d/couponsd"} <= set(out.split()),
         "rpm -qpc: the configuration and the logrotate file are config files", out)
    rc, out = rpm_query(rpm, "-lv")
    line = next((l for l in out.splitlines() if l.endswith(" /etc/couponsd.yaml")), "")
    t.ok(re.match(r"-rw-r-----\s+\d+\s+root\s+couponsd\s", line), "rpm: /etc/couponsd.yaml is 0640 root:couponsd", line)
    rc, out = rpm_query(rpm, "-R")
    requires = out
    for name in ("librdkafka", "libevent", "jansson", "hiredis", "libpq", "libyaml", "shadow-utils"):
        t.ok(re.search(rf"^{name}\b", requires, re.M), f"rpm -qpR requires {name}", requires)
    t.ok("libasan" not in requires and "libubsan" not in requires, "rpm -qpR: no sanitizer runtime", requires)
    rc, out = rpm_query(rpm, "--scripts")
    pre = out.split("preinstall scriptlet", 1)[-1].split("scriptlet", 1)[0] if "preinstall" in out else ""
    t.ok("useradd" in pre and "groupadd" in pre, "rpm: %pre creates the couponsd user and group", out)
    code = "\n".join(l for l in out.splitlines() if not l.lstrip().startswith("#"))
    t.ok(not re.search(r"systemctl\s+(?:--\S+\s+)*(?:enable|start|preset)\b", code),
         "rpm: no scriptlet enables or starts the service (an upgrade try-restarts a running one)", out)
    rc, out = rpm_query(rpm, "--qf", "%{VERSION}")
    t.eq(out, version(), "rpm version is configure's")


if __name__ == "__main__":
    Tap().run(test_licence, test_unit, test_deb, test_rpm)
