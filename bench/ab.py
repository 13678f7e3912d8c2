#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench/ab.py: an A/B of couponsd builds or settings, alternated round by round on one machine.

    python3 bench/ab.py [--rounds N] [--mode hot|accept] [--seconds S] [--rate R] [--loadgen PATH] \\
        LABEL=BINARY[:linger=MS | :NAME=VALUE;NAME=VALUE] ...

Each round starts, for every LABEL in turn, a fresh daemon from BINARY through the test harness
(tests/lib/harness.py: 2 HTTP workers, 8 partitions, its own Redis and PostgreSQL, the embedded Kafka, or
the real cluster that COUPONSD_KAFKA=real and COUPONSD_KAFKA_DIR name), then drives it with bench/loadgen
(64 connections for S seconds, the first 0.5 s a warm-up, a new user per request):
  hot     one coupon of 2e9: one partition, as a flash sale's hot coupon;
  accept  8 coupons, one per partition, the load spread over them.
--rate R paces the load at R requests per second instead (loadgen -r): the CPU per 202 at a given rate.
It prints the 202s per second, their p99, and the CPU per 202 of each kind of process (utime + stime from
/proc, over the load): the HTTP workers, the consumers, the embedded Kafka, Redis and, on the real
cluster, the brokers. In the first round it also prints Redis's commands per 202.
":linger=MS" sets kafka.producer {linger.ms: MS} (one producer, no lanes); ":NAME=VALUE" adds to the
daemon's environment. Build the binaries without sanitizers, e.g. `configure CFLAGS='-O2 -g'`.
Rounds of one binary differ by up to a quarter on a shared machine: read only what repeats in every round.
docs/performance.md, rounds 2f and 2g, were measured with it.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
import harness  # noqa: E402
from procs import proc_stat  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def ticks(pids):
    """utime + stime of the processes, in clock ticks (the ones gone count nothing)."""
    return sum(int(f[11]) + int(f[12]) for f in map(proc_stat, pids) if f is not None)


def kinds_of(d):
    """The daemon's processes by kind ("http worker", "consumer", ...), Redis, and the real brokers."""
    kinds = {}
    for pid, title, _ in d.children():
        kinds.setdefault(title.split(" partition")[0].replace("couponsd: ", ""), []).append(pid)
    kinds["redis"] = [d.redis.proc.pid]
    kdir = os.environ.get("COUPONSD_KAFKA_DIR")
    if kdir and harness.REAL_KAFKA:
        pids = []
        for path in glob.glob(os.path.join(kdir, "node-*", "pid")):
            with open(path) as f:
                pids.append(int(f.read()))
        kinds["brokers"] = pids
    return kinds


def redis_per_202(d, n):
    for line in d.redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line.split(":", 1)
            f = dict(x.split("=", 1) for x in rest.split(","))
            print(f"   redis {name[8:]}: {int(f['calls']) / max(n, 1):.2f} calls and "
                  f"{int(f['usec']) / max(n, 1):.2f} us per 202 ({f['usec_per_call']} us a call)")


def run(args, label, binary, extra, first):
    harness.BIN = binary
    os.environ["COUPONSD_BIN"] = binary
    env, overrides = None, None
    if extra.startswith("linger="):
        overrides = {"kafka": {"producer": {"linger.ms": extra[len("linger="):]}}}
    elif extra:
        env = dict(x.split("=", 1) for x in extra.split(";"))
    with harness.Daemon(overrides, redis=True, postgres=True, workers=2, partitions=8, admin_token="ab") as d:
        d.start(env=env)
        if args.mode == "hot":
            coupons = [d.create_coupon(2_000_000_000)]
        else:
            coupons = [d.create_coupon(100_000_000) for _ in range(8)]
        time.sleep(1)
        kinds = kinds_of(d)
        d.redis.cli("CONFIG", "RESETSTAT")
        before = {k: ticks(v) for k, v in kinds.items()}
        argv = [args.loadgen, "-p", str(d.port), "-c", "64", "-d", str(args.seconds), "-w", "0.5",
                "-C", ",".join(map(str, coupons)), "-U", str(int(time.time() * 1000) % 10**12)]
        if args.rate:
            argv += ["-r", str(args.rate)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        after = {k: ticks(v) for k, v in kinds.items()}
        summary = json.loads(out.strip().splitlines()[-1])
        rate = summary["status"].get("202", 0) / max(summary["measured_s"], 1e-9)  # after the warm-up
        n = summary["status_all"].get("202", 0)  # the CPU was read over the whole run, warm-up included
        cpu = " ".join(f"{k} {(after[k] - before[k]) / HZ * 1e6 / max(n, 1):.1f}" for k in kinds)
        print(f"{label} {args.mode}: {rate:,.0f} 202/s, p99 {summary['latency_us']['p99'] / 1000:.1f} ms;"
              f" us per 202: {cpu}", flush=True)
        if first:
            redis_per_202(d, n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mode", choices=("hot", "accept"), default="hot")
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--rate", type=float, help="paced at this many requests per second (loadgen -r), not a closed loop")
    p.add_argument("--loadgen", default=os.path.join("_build", "bench", "build", "bench", "loadgen"),
                   help="bench/loadgen, built (make bench-build builds it)")
    p.add_argument("specs", nargs="+", metavar="LABEL=BINARY[:EXTRA]")
    args = p.parse_args()
    specs = []
    for spec in args.specs:
        label, rest = spec.split("=", 1)
        binary, _, extra = rest.partition(":")
        specs.append((label, os.path.abspath(binary), extra))
    for r in range(args.rounds):
        for label, binary, extra in specs:
            run(args, label, binary, extra, r == 0)


if __name__ == "__main__":
    main()
