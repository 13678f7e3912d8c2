# SPDX-License-Identifier: BSD-2-Clause
"""procs.py: what every test helper needs of the machine: a free loopback port, waiting for a condition, and
processes as /proc shows them. harness.py and servers.py both use it; it imports neither."""
import os
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(path):
    """A log file's text, "" while it does not exist (yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_for(cond, timeout, step=0.05):
    """cond()'s first true value within timeout seconds, or its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name ([0] is the state), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def pid_alive(pid):
    """True while pid is a live (not zombie) process."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def proc_children(ppid):
    """[(pid, title, state)] of the live children of ppid, read from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = proc_stat(name)
        if fields is None or int(fields[1]) != ppid:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        out.append((int(name), title, fields[0]))
    return sorted(out)
