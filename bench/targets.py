# SPDX-License-Identifier: BSD-2-Clause
"""bench/targets.py: the targets `make bench` judges (issue 14), and the table it ends with.

Each run (one Kafka) records, per target key, what it measured ("shown", as the table prints it) and
whether it is met: True, False, or None when the run could not measure it (a phase left out with --only,
the peer absent, a stock never issued within the wait). The table puts the runs side by side.
"""

# key, figure, target (the wording); the order is the issue's
TARGETS = [
    ("hot_vs_peer", "accepted/s, one coupon of 2e9, 64 conn., a new user per request", ">= 4 x the peer"),
    ("hot_p99", "  the same: p99 of the 202s", "< 5 ms"),
    ("http_cpu_per_202", "HTTP worker CPU per 202 (accept phase)", "<= 40 us"),
    ("sellout_s", "all stock issued, one coupon of 10,000 under the same load", "<= 0.6 s"),
    ("backlog_vs_pgbench", "decisions/s, 40k backlog over 8 partitions", ">= 0.6 x pgbench's batched insert"),
    ("backlog1_rps", "decisions/s, 40k backlog on one partition (the hot coupon; 20k on the embedded Kafka)",
     ">= 20k/s"),
    ("paced_a2d_p99", "202-to-decision p99, paced at half the maximum accept rate", "< 20 ms"),
    ("soldout_vs_ceiling", "sold-out path: 409/s (kept)", ">= 0.8 x the bare evhttp ceiling"),
    ("rss_master", "master RSS (kept)", "< 10 MB"),
    ("rss_http_worker", "HTTP worker RSS at 10k connections (kept)", "< 50 MB"),
]
TEXT = {key: target for key, _, target in TARGETS}


def verdict(met):
    return {True: "met", False: "NOT met"}.get(met, "not measured")


def table(runs):
    """runs: [(label, bench.out)] -> (rows for the JSON, the printed text)."""
    rows = []
    for key, figure, target in TARGETS:
        row = {"key": key, "figure": figure, "target": target}
        for label, out in runs:
            t = next((t for t in out.get("targets", []) if t["key"] == key), None)
            row[label] = {"shown": t["shown"] if t else "-", "met": t["met"] if t else None,
                          "verdict": verdict(t["met"] if t else None), "measured": t["measured"] if t else None}
        rows.append(row)
    cells = [[f"{r['figure']} ({r['target']})"] + [f"{r[label]['shown']}: {r[label]['verdict']}" for label, _ in runs]
             for r in rows]
    head = ["target"] + [label for label, _ in runs]
    widths = [max(len(c[i]) for c in cells + [head]) for i in range(len(head))]
    lines = ["", "==== targets (issue 14) ====", "  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)).rstrip() for cell in cells]
    for label, _ in runs:
        met = sum(1 for r in rows if r[label]["met"] is True)
        unmeasured = sum(1 for r in rows if r[label]["met"] is None)
        lines.append(f"{label}: {met} of {len(rows)} met" + (f", {unmeasured} not measured" if unmeasured else ""))
    return rows, "\n".join(lines)
