# SPDX-License-Identifier: BSD-2-Clause
"""netns.py: hosts with addresses of their own, inside this machine, for the multi-host tests (issue 13).

    root namespace                          host namespaces (ip netns), one per host
    bridge cpd<pid>br  198.18.X.1/24  <-->  veth cpd<pid>v1 == eth0 in cpd-<pid>-h1  198.18.X.11/24
    (PostgreSQL, Redis, 3 Kafka nodes)      veth cpd<pid>v2 == eth0 in cpd-<pid>-h2  198.18.X.12/24 ...

The servers listen on the bridge's address; each host's couponsd runs in its namespace (`ip netns exec`) and
reaches them through its veth, like a machine on a LAN. Cutting a host off is `ip link set eth0 down` inside its
namespace: its TCP peers hear nothing more from it, as when a cable is pulled or a machine freezes.

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking: one /24 per run, one no
interface of this machine uses yet. Every name carries the test's pid, so two runs never collide, and a run
first removes what a run that died without its finally left behind (a namespace or link whose pid is gone).
Nothing here routes anywhere else: the bridge has no uplink and the namespaces no default route."""
import ipaddress
import os
import re
import signal
import subprocess

from procs import pid_alive

RANGE = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: never any other range
NS_RE = re.compile(r"^cpd-(\d+)-h\d+$")
LINK_RE = re.compile(r"^cpd(\d+)(?:br|v\d+)$")


class NetnsError(RuntimeError):
    pass


def ip(*args, ns=None, check=True):
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def _ours_alive(pid):
    """Whether the run that owns names with pid is still going: a live Python process (a pid reused by
    something else does not keep our leftovers)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"python" in f.read().split(b"\0")[0]
    except OSError:
        return False


def sweep_leftovers():
    """Deletes the namespaces and links an earlier run of this module left behind when it was killed (their pid
    is gone), and SIGKILLs whatever still runs in those namespaces (our daemons, by their pids). Returns what
    was removed."""
    removed = []
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if not m or _ours_alive(int(m.group(1))):
            continue
        for pid in ip("netns", "pids", name, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        ip("netns", "del", name, check=False)
        removed.append(name)
    for line in ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        m = LINK_RE.match(name)
        if m and not _ours_alive(int(m.group(1))):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet(seed):
    """A /24 of 198.18.0.0/15 that no address of this machine is in, starting from seed's."""
    used = set()
    for line in ip("-o", "-4", "addr", "show", check=False).splitlines():
        m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", line)
        if m and ipaddress.ip_address(m.group(1)) in RANGE:
            used.add(ipaddress.ip_network(m.group(1) + "/24", strict=False))
    subnets = list(RANGE.subnets(new_prefix=24))
    for i in range(len(subnets)):
        net = subnets[(seed + i) % len(subnets)]
        if net not in used:
            return net
    raise NetnsError("no free /24 left in 198.18.0.0/15")


class Host:
    """One host: a network namespace with one veth (eth0 inside) into the bridge, and an address."""

    def __init__(self, index, pid, addr):
        self.index = index
        self.name = f"h{index}"
        self.ns = f"cpd-{pid}-h{index}"
        self.veth = f"cpd{pid}v{index}"  # the root-side end, a port of the bridge
        self.addr = str(addr)

    def launcher(self):
        """The argv prefix that runs a program in this host's namespace (ip execs it: the pid is the program's)."""
        return ["ip", "netns", "exec", self.ns]

    def __repr__(self):
        return f"{self.name} ({self.addr})"


class Topology:
    """The bridge and hosts namespaces. up() builds them, down() removes them (also after a partial up());
    use it as a context manager so that a failing test tears it down too."""

    def __init__(self, hosts=3):
        self.pid = os.getpid()
        self.bridge = f"cpd{self.pid}br"
        self.subnet = None
        self.server_addr = None
        self.hosts = []
        self.count = hosts
        self.built = False

    def up(self):
        self.swept = sweep_leftovers()
        self.subnet = _free_subnet(self.pid)
        first = self.subnet.network_address
        self.server_addr = str(first + 1)
        self.hosts = [Host(i, self.pid, first + 10 + i) for i in range(1, self.count + 1)]
        self.built = True  # from here on down() has something to remove
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.server_addr}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for h in self.hosts:
            ip("netns", "add", h.ns)
            ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
            ip("link", "set", h.veth, "master", self.bridge)
            ip("link", "set", h.veth, "up")
            ip("addr", "add", f"{h.addr}/24", "dev", "eth0", ns=h.ns)
            ip("link", "set", "eth0", "up", ns=h.ns)
            ip("link", "set", "lo", "up", ns=h.ns)
        return self

    def down(self):
        """Removes every namespace and link of this run, whatever state they are in; SIGKILLs what still runs
        in the namespaces (only our daemons can be there). Errors are collected, not raised midway."""
        if not self.built:
            return []
        errors = []
        for h in self.hosts:
            for pid in ip("netns", "pids", h.ns, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", h.ns, check=False)  # takes eth0 and with it the veth's other end
            ip("link", "del", h.veth, check=False)
        ip("link", "del", self.bridge, check=False)
        left = [line for line in ip("-o", "link", "show", check=False).splitlines() if f"cpd{self.pid}" in line]
        left += [n for n in ip("netns", "list", check=False).split() if n.startswith(f"cpd-{self.pid}-")]
        if left:
            errors.append(f"still there after teardown: {left}")
        self.built = False
        return errors

    def cut(self, host):
        """Pulls host's cable: eth0 down inside its namespace (its routes go with it)."""
        ip("link", "set", "eth0", "down", ns=host.ns)

    def restore(self, host):
        ip("link", "set", "eth0", "up", ns=host.ns)
        ip("addr", "replace", f"{host.addr}/24", "dev", "eth0", ns=host.ns)

    def __enter__(self):
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc):
        self.down()


def available():
    """(True, "") when this process can create a network namespace, else (False, why)."""
    if os.geteuid() != 0:
        return False, "network namespaces need root (ip netns add)"
    name = f"cpd-{os.getpid()}-h0"
    try:
        ip("netns", "add", name)
    except (NetnsError, OSError) as e:
        return False, f"cannot create a network namespace: {e}"
    ip("netns", "del", name, check=False)
    return True, ""
