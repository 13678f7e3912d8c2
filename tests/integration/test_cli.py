#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""test_cli.py: the command line: -V, -t, --list-keys, bad options and `-s` (SPEC.md sections 1 and 5)."""
import os
import re
import shutil
import tempfile

import harness
from tap import Tap

# SPEC.md section 5: keys that are part of the contract (none may be renamed).
CONTRACT_KEYS = [
    "daemon.user", "daemon.group", "daemon.pid_file", "daemon.control_socket", "daemon.shutdown_timeout",
    "daemon.worker_timeout",
    "log.level", "log.format", "log.file",
    "http.listen", "http.workers", "http.max_body", "http.read_timeout", "http.max_connections",
    "admin.token",
    "kafka.brokers", "kafka.topic", "kafka.results_topic", "kafka.dlq_topic", "kafka.group_id",
    "kafka.partitions", "kafka.owned_partitions", "kafka.produce_timeout", "kafka.producer", "kafka.consumer",
    "redis.host", "redis.port", "redis.password", "redis.db", "redis.key_prefix", "redis.timeout",
    "postgres.conninfo", "postgres.auto_migrate",
    "issue.batch_size", "issue.result_ttl", "issue.retry_initial", "issue.retry_max", "issue.max_pending",
    "metrics.enabled",
]

LIBRARIES = ["librdkafka", "libevent", "jansson", "hiredis", "libpq", "libyaml"]


def scratch_dir():
    return tempfile.mkdtemp(prefix="couponsd-cli-")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_version(t):
    rc, out, err = harness.run_cli("-V")
    t.eq(rc, 0, "-V exits 0")
    lines = out.splitlines()
    t.ok(lines and re.fullmatch(r"couponsd \d+\.\d+\S*", lines[0]), "-V: first line is 'couponsd VERSION'", out)
    for lib in LIBRARIES:
        t.ok(any(re.fullmatch(re.escape(lib) + r" \d+(\.\d+)+\S*", line) for line in lines),
             f"-V names {lib} with a version", out)


def test_check_example(t):
    example = os.path.join(harness.SRCDIR, "etc", "couponsd.yaml")
    t.ok(os.path.isfile(example), f"the example configuration exists ({example})")
    rc, out, err = harness.run_cli("-t", "-c", example)
    t.eq((rc, out), (0, "ok\n"), "-t on etc/couponsd.yaml prints exactly 'ok' and exits 0")
    t.eq(err, "", "-t on etc/couponsd.yaml writes nothing to stderr")


def test_check_errors(t):
    d = scratch_dir()
    try:
        path = os.path.join(d, "bad.yaml")
        # line 2: value starts at column 21; line 6: the unknown key starts at column 3
        write(path, 'daemon:\n'
                    '  shutdown_timeout: 5 parsecs\n'
                    '  user: ""\n'
                    'http:\n'
                    '  workers: 2\n'
                    '  bogus_key: 1\n')
        rc, out, err = harness.run_cli("-t", "-c", path)
        t.eq(rc, 1, "-t on a file with errors exits 1")
        t.ok("ok" not in out.split(), "-t on a file with errors does not print ok", out)
        lines = [line for line in err.splitlines() if line.strip()]
        t.ok(any(line.startswith(f"{path}:2:21:") and "daemon.shutdown_timeout" in line for line in lines),
             "bad duration reported at FILE:2:21 naming the key", err)
        t.ok(any(line.startswith(f"{path}:6:3:") and "bogus_key" in line for line in lines),
             "unknown key reported at FILE:6:3 naming it", err)
        t.ok(len(lines) >= 2 and all(re.match(re.escape(path) + r":\d+:\d+: \S", line) for line in lines),
             "every error line is FILE:LINE:COLUMN: message", err)

        # More kinds of error, each at its own line:column.
        path3 = os.path.join(d, "more.yaml")
        write(path3, 'bogus:\n'
                     '  x: 1\n'
                     'http:\n'
                     '  workers: 2\n'
                     '  workers: 0\n'
                     '  max_body: 4q\n')
        rc, out, err = harness.run_cli("-t", "-c", path3)
        t.eq(rc, 1, "-t on a file with more errors exits 1")
        for where, word, what in (("1:1", "bogus", "unknown section"), ("5:3", "workers", "duplicate key"),
                                  ("6:13", "max_body", "bad size")):
            t.ok(any(line.startswith(f"{path3}:{where}:") and word in line for line in err.splitlines()),
                 f"{what} reported at FILE:{where}", err)

        # A YAML syntax error: an over-indented key; libyaml stops at its ':' (line 3, column 16).
        path2 = os.path.join(d, "syntax.yaml")
        write(path2, 'http:\n  workers: 2\n   read_timeout: 5s\n')
        rc, out, err = harness.run_cli("-t", "-c", path2)
        t.eq(rc, 1, "-t on a YAML syntax error exits 1")
        t.ok(err.startswith(f"{path2}:3:16:"), "a syntax error is reported at FILE:3:16", err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_check_missing(t):
    d = scratch_dir()
    try:
        path = os.path.join(d, "no-such.yaml")
        rc, out, err = harness.run_cli("-t", "-c", path)
        t.eq(rc, 1, "-t on a missing file exits 1")
        t.ok(path in err and len(err.strip()) > len(path), "-t on a missing file names it in a message", err)
        t.ok("ok" not in out.split(), "-t on a missing file does not print ok", out)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def split_md_row(line):
    """Cells of a markdown table row; '\\|' inside a cell is not a separator."""
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def test_list_keys(t):
    rc, out, err = harness.run_cli("--list-keys")
    t.eq(rc, 0, "--list-keys exits 0")
    rows = [line.split()[0] for line in out.splitlines() if line.strip()]
    listed = rows[1:] if rows and rows[0].upper() == "KEY" else rows  # an optional header line
    t.ok(listed and all(re.fullmatch(r"[a-z_]+\.[a-z_]+", k) for k in listed),
         "--list-keys: every line starts with a section.key name", out[:500])
    missing = [k for k in CONTRACT_KEYS if k not in listed]
    t.ok(not missing, "--list-keys lists every key of SPEC.md section 5", f"missing: {missing}")
    t.ok("daemon.worker_timeout" in listed, "--list-keys lists daemon.worker_timeout")
    t.ok("kafka.owned_partitions" in listed, "--list-keys lists kafka.owned_partitions")
    t.eq(len(listed), len(set(listed)), "--list-keys lists each key once")

    rc, md, err = harness.run_cli("--list-keys", "--markdown")
    t.eq(rc, 0, "--list-keys --markdown exits 0")
    rows = [line for line in md.splitlines() if line.strip()]
    header = split_md_row(rows[0]) if rows else []
    t.ok(rows and rows[0].startswith("|") and len(header) >= 2 and header[0].lower() == "key",
         "--markdown: the first line is a table header starting with Key", md[:500])
    t.ok(len(rows) > 1 and all(re.fullmatch(r":?-{3,}:?", c) for c in split_md_row(rows[1]))
         and len(split_md_row(rows[1])) == len(header), "--markdown: the second line is the separator row",
         md[:500])
    body = rows[2:]
    bad = [r for r in body if not r.startswith("|") or len(split_md_row(r)) != len(header)]
    t.ok(body and not bad, "--markdown: every row has as many cells as the header", "\n".join(bad[:5]))
    md_keys = [split_md_row(r)[0].strip("`") for r in body if not bad]
    t.eq(md_keys, listed, "--markdown lists the same keys, in the same order, as --list-keys")


def test_help(t):
    for opt in ("-h", "--help"):
        rc, out, err = harness.run_cli(opt)
        t.ok(rc == 0 and "usage" in out.lower(), f"{opt} prints the usage on stdout and exits 0", f"rc {rc}\n{out}{err}")


def test_bad_options(t):
    rc, out, err = harness.run_cli("--no-such-option")
    t.eq(rc, 2, "an unknown long option exits 2")
    t.ok("usage" in err.lower(), "an unknown option prints the usage on stderr", err)
    rc, out, err = harness.run_cli("-Z")
    t.eq(rc, 2, "an unknown short option exits 2")
    rc, out, err = harness.run_cli("-c")
    t.eq(rc, 2, "-c without its argument exits 2")
    rc, out, err = harness.run_cli("-t", "stray-argument")
    t.eq(rc, 2, "a stray argument exits 2")
    rc, out, err = harness.run_cli("-s", "bogus")
    t.eq(rc, 2, "-s bogus exits 2")
    t.ok("bogus" in err, "-s bogus says what was wrong", err)


def test_no_daemon(t):
    d = scratch_dir()
    try:
        path = os.path.join(d, "couponsd.yaml")
        sock = os.path.join(d, "control.sock")
        write(path, harness.to_yaml({"daemon": {"user": "", "group": "", "control_socket": sock}}))
        for command in ("reload", "stop", "reopen"):
            rc, out, err = harness.run_cli("-c", path, "-s", command)
            t.eq(rc, 1, f"-s {command} with no daemon running exits 1")
            t.ok("cannot reach" in err and sock in err, f"-s {command} says it cannot reach {sock}", err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_reload_broken_file(t):
    with harness.Daemon(workers=2, partitions=1) as d:
        d.start()
        before = sorted(d.http_workers())
        t.eq(len(before), 2, "two http workers before the reload")
        good = harness.to_yaml(d.tree)
        lines = good.splitlines()
        # Over-indent a key of the http section: YAML syntax error there, daemon section intact above it.
        i = next(n for n, line in enumerate(lines) if line.startswith("  read_timeout:"))
        lines[i] = " " + lines[i]
        want = f"{d.config_path}:{i + 1}:{lines[i].index(':') + 1}:"
        d.write_config("\n".join(lines) + "\n")
        rc, out, err = d.ctl("reload")
        t.eq(rc, 1, "-s reload of a file with a YAML syntax error below the daemon section exits 1")
        t.ok("cannot reach" not in err and "names no daemon.control_socket" not in err,
             "-s reload still found daemon.control_socket in the broken file", err)
        t.ok(want in err, f"-s reload prints the error with file:line:column ({want}) on stderr",
             f"stdout: {out}\nstderr: {err}")
        t.ok(d.proc.poll() is None, "the daemon is still running")
        status, body, _ = d.get("/healthz")
        t.eq(status, 200, "/healthz still answers 200 after the refused reload")
        t.eq(sorted(d.http_workers()), before, "the same http worker pids serve after the refused reload")
        t.ok("reload refused" in d.log(), "the master logged the refused reload", d.log()[-2000:])

        # The control path is not wedged by the refusal: a fixed file reloads.
        d.write_config(good)
        rc, out, err = d.ctl("reload")
        t.ok(rc == 0, "-s reload of the fixed file exits 0", f"rc {rc}: {err}")
        t.ok(harness.wait_for(lambda: d.has_processes(http=2, without=before), 5),
             "the fixed reload replaced the http workers", d.children())
        clean, text = d.sanitizer_clean()
        t.ok(clean, "no sanitizer report", text)


if __name__ == "__main__":
    Tap().run(test_version, test_check_example, test_check_errors, test_check_missing, test_list_keys,
              test_help, test_bad_options, test_no_daemon, test_reload_broken_file)
