# SPDX-License-Identifier: BSD-2-Clause
"""chaos_blame.py: which fault caused each 503 of a chaos scenario (issue 11 item 16: "no 503 that no fault
caused").

Every fault injector of chaos.Faults records a window, [dependency, what, start, end], on the load's clock; the
load keeps each 503 and 429 with the times it was sent and answered. A 503 names its cause in its message
(docs/api.md; src/http/http_issue.c): PostgreSQL ("the database cannot be reached") or Kafka ("the request could
not be queued [durably in time]", "kafka topic ..."). It is blamed on a fault when a fault of that dependency was
in progress at some moment between its sending and its answer, or ended at most the dependency's recovery margin
before it was sent. A reload (SIGHUP) is no fault: a 503 whose only neighbour is a reload is unattributed, and so
is any 503 whose message names no dependency (out of memory, no randomness). 429s are never judged: STOCK_HELD
(docs/api.md, "sold out is final") and OVERLOADED (admission control) are answers of a healthy daemon.
"""
import collections
import os
import re
import subprocess

from harness import BIN, SRCDIR

CAUSES = (  # (how the message starts, the dependency it names)
    ("the database cannot be reached", "postgres"),
    ("the request could not be queued", "kafka"),  # "... durably in time" (produce timeout) and a refused produce
    ("kafka topic ", "kafka"),  # the producer's metadata says the topic is missing or has the wrong partitions
)


def pg_backoff_max():
    """The HTTP worker's reconnect back-off toward PostgreSQL doubles up to BACKOFF_MAX_MS (src/http/pg_async.c, a
    constant, not a key): once PostgreSQL is back, a worker may wait that long before its next attempt."""
    with open(os.path.join(SRCDIR, "src", "http", "pg_async.c")) as f:
        return int(re.search(r"#define BACKOFF_MAX_MS (\d+)", f.read()).group(1)) / 1000


def cause(body):
    message = (body or {}).get("message") or ""
    for prefix, dependency in CAUSES:
        if message.startswith(prefix):
            return dependency
    return None


def seconds(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[m.group(2)]


def config_seconds(d, name):
    """A duration key as daemon d runs it: its configuration tree, else couponsd's default (--list-keys)."""
    section, key = name.split(".", 1)
    value = d.tree.get(section, {}).get(key)
    if value is None:
        out = subprocess.run([BIN, "--list-keys"], capture_output=True, text=True, check=True).stdout
        value = next(line.split()[3] for line in out.splitlines() if line.split()[:1] == [name])
    return seconds(value)


# A real node's "start" fault ends when its JVM is launched (scripts/kafka.sh node start does not wait), but the
# broker serves, rejoins the ISR and gets its partitions back only seconds later on these two shared cores (CI: a
# 503 sent 5.2 s after a start, 0.2 s past produce_timeout alone, went unattributed).
REAL_NODE_START_S = 10.0


def margins(d):
    """How long after a fault ends its dependency may still cause a 503, from the daemon's configuration:
    PostgreSQL: a worker's reconnect attempt after its back-off, which may take postgres.timeout to fail;
    Kafka: an event produced when the broker is back may still wait kafka.produce_timeout for its report (on a
    real cluster, "back" is up to REAL_NODE_START_S after the node's start).
    Redis has none: no issue 503 names it (without Redis a request goes to Kafka without the claim)."""
    real = getattr(d, "kafka_cluster", None) is not None
    return {"postgres": pg_backoff_max() + config_seconds(d, "postgres.timeout"),
            "kafka": config_seconds(d, "kafka.produce_timeout") + (REAL_NODE_START_S if real else 0.0)}


def blame(refused, windows, margin, end_of_load):
    """(counts by cause, unattributed [(sent, answered, message, dependency)], {dependency: (how long after its
    fault ended the latest 503 was sent, which)}) of the 503s in refused."""
    counts, unattributed, late = collections.Counter(), [], {}
    for sent, answered, _, status, body in refused:
        if status != 503:
            continue
        dependency = cause(body)
        after = min(((max(0.0, sent - (end_of_load if end is None else end)), what, start)
                     for dep, what, start, end in windows if dep == dependency and start <= answered),
                    default=None)
        if after is not None and after[0] <= margin[dependency]:
            counts[dependency] += 1
            if after[0] >= late.get(dependency, (0.0,))[0]:
                late[dependency] = (round(after[0], 2), f"sent {sent:.2f}s after '{after[1]}' at {after[2]:.1f}s")
        else:
            counts["unattributed"] += 1
            unattributed.append((sent, answered, (body or {}).get("message"), dependency))
    return counts, unattributed, late


def nearest(windows, at, n=3):
    def distance(w):
        start, end = w[2], w[2] if w[3] is None else w[3]
        return 0 if start <= at <= end else min(abs(at - start), abs(at - end))
    return sorted(windows, key=distance)[:n]


def window_text(w):
    dep, what, start, end = w
    return f"{dep} '{what}' {start:.1f}s-{'...' if end is None else f'{end:.1f}s'}"


def check_503s(t, v):
    """The assertion on scenario()'s verdict v: every 503 is blamed on a fault; the figures as TAP diag."""
    load, faults, d = v.load, v.faults, v.daemon
    margin = margins(d)
    counts, unattributed, late = blame(load.refused, faults.windows, margin, load.elapsed())
    codes = collections.Counter(f"{s} {(b or {}).get('error')}" for _, _, _, s, b in load.refused)
    t.diag(f"chaos {v.name}: 503s by cause {dict(sorted(counts.items()))}; refusals by code "
           f"{dict(sorted(codes.items()))}; recovery margins {margin}, used at most "
           f"{dict(sorted(late.items()))}")
    by_message = collections.Counter(message for _, _, message, _ in unattributed)
    lines = [f"{len(unattributed)} unattributed 503s, by message: {dict(by_message)}; the first 10:"]
    for sent, answered, message, dependency in sorted(unattributed)[:10]:
        near = "; ".join(window_text(w) for w in nearest(faults.windows, sent)) or "none (no fault was injected)"
        lines.append(f"unattributed 503 sent {sent:.2f}s answered {answered:.2f}s ({dependency or 'no dependency'}): "
                     f"{message!r}; nearest faults: {near}")
    t.ok(not unattributed, f"{v.name}: every 503 has a fault of the dependency it names (no 503 that no fault "
         f"caused; reloads are not faults)", "\n".join(lines))
    odd = {k: n for k, n in codes.items() if k.startswith("429") and k not in ("429 STOCK_HELD", "429 OVERLOADED")}
    t.ok(not odd, f"{v.name}: every 429 is STOCK_HELD or OVERLOADED (allowed, not judged)", odd)
    return counts
