#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""test_notify.py: the systemd Type=notify datagrams: READY, RELOADING + MONOTONIC_USEC, STOPPING (SPEC.md 1)."""
import re
import signal
import time

import harness
from tap import Tap


def fields(note):
    """The KEY=VALUE lines of one datagram, as a dict."""
    out = {}
    for line in note.split("\n"):
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def first_from(d, needle, start, timeout):
    """(index, datagram) of the first datagram at index >= start containing needle, or (None, None)."""
    n = d.wait_note(needle, timeout, start)
    return (n - 1, d.notes[n - 1]) if n else (None, None)


def test_ready(t):
    with harness.Daemon(workers=3, partitions=2) as d:
        d.start()
        # READY=1 means serving: a request right after it is answered.
        status = d.get("/healthz")[0]
        t.eq(status, 200, "READY=1: /healthz answers at once")
        i, note = first_from(d, "READY=1", 0, 1)
        f = fields(note or "")
        t.ok(note is not None and f.get("READY") == "1", "READY=1 datagram after start", d.notes)
        t.ok(re.search(r"\b3 http workers\b", f.get("STATUS", "")) and re.search(r"\b2 consumers\b",
                                                                                  f.get("STATUS", "")),
             "READY=1 comes with a STATUS= naming 3 http workers and 2 consumers", note)
        t.ok(len(d.http_workers()) == 3 and len(d.consumers()) == 2, "the counts are true", d.children())
        t.eq(sum("READY=1" in n for n in d.notes), 1, "exactly one READY=1 at start")
        t.ok(not any("READY=1" in n for n in d.notes[:i]) and not any("STOPPING=1" in n or "RELOADING=1" in n
                                                                     for n in d.notes),
             "nothing but status before READY=1, no RELOADING/STOPPING", d.notes)


def check_reloading(t, d, start, what):
    """The RELOADING=1 datagram of a reload asked for at index start; returns its index."""
    before_us = time.monotonic_ns() // 1000
    i, note = first_from(d, "RELOADING=1", start, 10)
    t.ok(note is not None, f"{what}: RELOADING=1 sent", d.notes[start:])
    f = fields(note or "")
    t.ok(re.fullmatch(r"\d+", f.get("MONOTONIC_USEC", "")), f"{what}: MONOTONIC_USEC=<digits> in the same datagram",
         note)
    if re.fullmatch(r"\d+", f.get("MONOTONIC_USEC", "")):
        # systemd compares it with its own CLOCK_MONOTONIC: it must be the current time on that clock.
        usec = int(f["MONOTONIC_USEC"])
        t.ok(abs(usec - before_us) < 10_000_000, f"{what}: MONOTONIC_USEC is CLOCK_MONOTONIC now "
             f"({usec} vs {before_us})")
    return i


def test_reload_valid(t):
    with harness.Daemon(workers=2, partitions=1) as d:
        d.start()
        old = sorted(d.http_workers())
        d.set("http", "workers", 3)
        start = len(d.notes)
        d.signal(signal.SIGHUP)
        i = check_reloading(t, d, start, "SIGHUP")
        j, ready = first_from(d, "READY=1", (i if i is not None else start) + 1, 10)
        t.ok(ready is not None and i is not None and j > i, "SIGHUP: READY=1 follows RELOADING=1",
             d.notes[start:])
        t.ok(re.search(r"\b3 http workers\b", fields(ready or "").get("STATUS", "")),
             "SIGHUP: that READY=1's STATUS names the new count of 3 http workers", ready)
        t.ok(not any("READY=1" in n for n in d.notes[start:i]) if i is not None else False,
             "SIGHUP: no READY=1 between the signal and RELOADING=1", d.notes[start:])
        t.ok(harness.wait_for(lambda: d.has_processes(http=3, without=old), 5),
             "SIGHUP: the new generation serves", d.children())
        t.eq(d.get("/healthz")[0], 200, "SIGHUP: /healthz answers after the reload")

        # The same through the control socket, which waits for the outcome.
        start = len(d.notes)
        rc, out, err = d.ctl("reload")
        t.ok(rc == 0, "-s reload exits 0", f"rc {rc}: {err}")
        i = check_reloading(t, d, start, "-s reload")
        t.ok(i is not None and first_from(d, "READY=1", i + 1, 5)[0] is not None,
             "-s reload: READY=1 follows RELOADING=1", d.notes[start:])
        clean, text = d.sanitizer_clean()
        t.ok(clean, "valid reload: no sanitizer report", text)


def test_reload_invalid(t):
    with harness.Daemon(workers=2, partitions=1) as d:
        d.start()
        old = sorted(d.http_workers())
        d.set("http", "no_such_key", 1)
        start = len(d.notes)
        d.signal(signal.SIGHUP)
        i = check_reloading(t, d, start, "refused SIGHUP")
        j, ready = first_from(d, "READY=1", (i if i is not None else start) + 1, 10)
        t.ok(ready is not None and i is not None and j > i, "refused SIGHUP: READY=1 follows RELOADING=1",
             d.notes[start:])
        t.ok("refused" in fields(ready or "").get("STATUS", ""),
             "refused SIGHUP: that READY=1's STATUS says the reload was refused", ready)
        t.eq(sorted(d.http_workers()), old, "refused SIGHUP: the same http workers serve")
        t.eq(d.get("/healthz")[0], 200, "refused SIGHUP: /healthz answers")

        start = len(d.notes)
        rc, out, err = d.ctl("reload")
        t.eq(rc, 1, "refused -s reload exits 1")
        t.ok("no_such_key" in err, "refused -s reload prints the error", err)
        i = check_reloading(t, d, start, "refused -s reload")
        j, ready = first_from(d, "READY=1", (i if i is not None else start) + 1, 5)
        t.ok(ready is not None and "refused" in ready, "refused -s reload: READY=1 with a refused STATUS",
             d.notes[start:])
        clean, text = d.sanitizer_clean()
        t.ok(clean, "refused reload: no sanitizer report", text)


def test_stopping(t):
    with harness.Daemon(workers=2, partitions=1) as d:
        d.start()
        start = len(d.notes)
        d.signal(signal.SIGTERM)
        t.eq(d.wait_exit(15), 0, "SIGTERM: exit 0")
        i, note = first_from(d, "STOPPING=1", start, 3)
        t.ok(note is not None, "SIGTERM: STOPPING=1 sent", d.notes[start:])
        t.ok(i is not None and not any("READY=1" in n for n in d.notes[i:]), "SIGTERM: no READY=1 after STOPPING=1",
             d.notes[start:])
        t.eq(sum("STOPPING=1" in n for n in d.notes), 1, "SIGTERM: STOPPING=1 sent once")


def test_stopping_during_reload(t):
    """A stop asked for while new workers are starting still says STOPPING=1, and no READY=1 after it."""
    with harness.Daemon(workers=2, partitions=1) as d:
        d.start()
        start = len(d.notes)
        d.signal(signal.SIGHUP)
        d.signal(signal.SIGTERM)
        t.eq(d.wait_exit(15), 0, "SIGHUP+SIGTERM: exit 0")
        i, note = first_from(d, "STOPPING=1", start, 3)
        t.ok(note is not None, "SIGHUP+SIGTERM: STOPPING=1 sent", d.notes[start:])
        t.ok(i is not None and not any("READY=1" in n for n in d.notes[i:]),
             "SIGHUP+SIGTERM: no READY=1 after STOPPING=1", d.notes[start:])


def test_watchdog(t):
    """WatchdogSec=: the master pings every WATCHDOG_USEC/2, and only when WATCHDOG_PID (if set) is its own pid.
    test_systemd.py shows systemd itself killing a master that stopped pinging."""
    def pings(d, seconds):
        start = len(d.notes)
        time.sleep(seconds)
        return sum(note == "WATCHDOG=1" for note in d.notes[start:])

    with harness.Daemon(workers=1, partitions=1) as d:
        d.start(env={"WATCHDOG_USEC": "600000"})
        n = pings(d, 2.0)
        # Half the interval, on the master's 250 ms tick: every 0.5 s, well inside the 0.6 s systemd allows.
        t.ok(3 <= n <= 7, f"WATCHDOG_USEC=600000: {n} WATCHDOG=1 in 2 s (one per 0.5 s expected)", d.notes[-10:])
    with harness.Daemon(workers=1, partitions=1) as d:
        d.start(env={"WATCHDOG_USEC": "600000", "WATCHDOG_PID": "1"})
        t.eq(pings(d, 1.0), 0, "WATCHDOG_PID names another process: no ping")
    with harness.Daemon(workers=1, partitions=1) as d:
        d.start()
        t.eq(pings(d, 1.0), 0, "no WATCHDOG_USEC: no ping")


if __name__ == "__main__":
    Tap().run(test_ready, test_reload_valid, test_reload_invalid, test_stopping, test_stopping_during_reload,
              test_watchdog)
