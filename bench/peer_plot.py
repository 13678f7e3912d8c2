#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench/peer_plot.py: couponsd against the peer, as bars, from bench/run.py's JSON results.

    python3 bench/peer_plot.py [-o OUT.png] RESULT.json [RESULT-real-kafka.json ...]

Each JSON is one run of `make bench` on one Kafka (its "kafka" field says which). The figures are those
of the hot phase (one coupon of 2e9, 64 connections) and the sellout phase (one coupon of 10,000), for
couponsd and for the peer measured in the same run. Writes OUT.dat (one row per run) beside OUT.png and
draws it with bench/plot_peer.gp. Without -o the PNG is bench/results/STAMP-peer.png.
"""

import argparse
import json
import os
import subprocess
import sys

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The process groups of "where the CPU went" that are the system under test, the Kafka brokers included.
OURS = ("master", "http workers", "consumers", "redis", "postgres", "embedded kafka", "kafka brokers")
PEERS = ("peer http", "peer consumer", "peer redis", "peer postgres", "peer kafka mock", "kafka brokers")
NAN = "NaN"


def per_202_us(phase, groups):
    """Core-seconds of groups over the phase's wall time, per 202 answered in it (warm-up included)."""
    cpu = phase.get("cpu") or {}
    n = (phase.get("status_all") or {}).get("202", 0)
    if not cpu.get("wall_s") or not n:
        return None
    return sum(cpu.get(g, 0.0) for g in groups) * cpu["wall_s"] / n * 1e6


def rate_202(phase):
    """202s per second after the warm-up (the phase's "rps" counts its 429s too)."""
    n = (phase.get("status") or {}).get("202")
    return n / phase["measured_s"] if n and phase.get("measured_s") else None


def decided_share(phase, decided_key):
    total = phase.get("accepted_total") or phase.get("accepted_ids")
    done = phase.get(decided_key)
    return None if not total or done is None else 100.0 * done / total


def sold_out(phase):
    """(seconds until every unit was issued, or the wait it did not finish in; label)."""
    if not phase:
        return None, ""
    if phase.get("all_issued_s") is not None:
        return phase["all_issued_s"], f"{phase['all_issued_s']:.2f}"
    wait = phase.get("waited_until_s")
    return wait, f"{phase.get('issued', 0):,} of {phase.get('stock', 0):,} after {wait} s"


def row(run):
    """One run's figures: couponsd's, then the peer's, in the .dat's column order."""
    ph = run.get("phases", {})
    hot, peer = ph.get("hot") or {}, ph.get("peer") or {}
    phot = peer.get("hot") or {}
    c_sell, c_sell_label = sold_out(ph.get("sellout"))
    p_sell, p_sell_label = sold_out(peer.get("sellout"))
    return [
        rate_202(hot), rate_202(phot),
        hot.get("p99_202_ms"), phot.get("p99_202_ms"),
        c_sell, p_sell,
        per_202_us(hot, ("http workers",)), per_202_us(phot, ("peer http",)),
        per_202_us(hot, OURS), per_202_us(phot, PEERS),
        decided_share(hot, "decided_when_load_ended"), decided_share(phot, "issued_when_load_ended"),
    ], [c_sell_label, p_sell_label]


def num(v):
    return NAN if v is None else f"{v:.3f}"


def write_dat(paths, dat):
    runs = [json.load(open(p)) for p in paths]
    runs.sort(key=lambda r: r.get("kafka") != "embedded")
    with open(dat, "w") as f:
        f.write("# kafka  hot_rps(c p)  hot_p99_ms(c p)  sellout_s(c p)  http_us_per_202(c p)  "
                "stack_us_per_202(c p)  decided_at_end_pct(c p)  sellout_label(c p)\n")
        for run in runs:
            values, labels = row(run)
            name = "embedded" if run.get("kafka") == "embedded" else "real 3-node"
            f.write(f'"{name}" ' + " ".join(num(v) for v in values) + " " +
                    " ".join(f'"{s}"' for s in labels) + "\n")
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", help="the PNG (default: bench/results/STAMP-peer.png)")
    ap.add_argument("json", nargs="+")
    args = ap.parse_args(argv)
    out = args.output
    if not out:
        stamp = os.path.basename(args.json[0]).split(".")[0].replace("-real-kafka", "")
        out = os.path.join(SRCDIR, "bench", "results", f"{stamp}-peer.png")
    dat = os.path.splitext(out)[0] + ".dat"
    runs = write_dat(args.json, dat)
    if not any(v is not None for run in runs for v in row(run)[0]):
        print(f"peer_plot: no hot or sellout phase in {' '.join(args.json)}: nothing to plot", file=sys.stderr)
        return 1
    started = runs[0].get("started", "")
    argv = ["gnuplot", "-e", f"datafile='{dat}'; output='{out}'; title='couponsd against the peer, "
                             f"same run, same machine ({started})'",
            os.path.join(SRCDIR, "bench", "plot_peer.gp")]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:  # no gnuplot: the JSON results stand without the plot
        print(f"peer_plot: gnuplot: {e}", file=sys.stderr)
        return 1
    if r.returncode != 0:
        print(f"peer_plot: gnuplot failed: {r.stderr[-500:]}", file=sys.stderr)
        return 1
    print(f"peer_plot: {out} (data: {dat})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
