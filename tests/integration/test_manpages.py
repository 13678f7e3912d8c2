#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""test_manpages.py: couponsd(8) and couponsd.yaml(5) against the binary: every configuration key, option,
signal and exit status is documented, the generated KEYS section is current, and groff finds nothing to
warn about. Needs no package tools."""
import os
import re
import shutil
import subprocess
import sys

import harness
from tap import Tap

MAN8 = os.path.join(harness.SRCDIR, "man", "couponsd.8")
MAN5 = os.path.join(harness.SRCDIR, "man", "couponsd.yaml.5")
UPDATE_KEYS = os.path.join(harness.SRCDIR, "man", "update-keys.py")


def read(path):
    with open(path) as f:
        return f.read()


def plain(roff):
    """The page's words without font escapes and with \\- as -, enough to search for names in it."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\&", "").replace("\\e", "\\")


def list_keys():
    rc, out, err = harness.run_cli("--list-keys")
    lines = out.splitlines()
    return rc, [line.split()[0] for line in lines[1:] if line.strip()]


def test_every_key_documented(t):
    rc, keys = list_keys()
    t.eq(rc, 0, "couponsd --list-keys exits 0")
    t.ok(len(keys) >= 39, f"--list-keys prints the key table ({len(keys)} keys)")
    page = read(MAN5)
    headed = set(re.findall(r"^\.B (\S+)$", plain(page), re.M))
    missing = [k for k in keys if k not in headed]
    t.ok(not missing, "couponsd.yaml(5) has an entry (.B KEY) for every key of --list-keys", f"missing: {missing}")
    sections = sorted({k.split(".")[0] for k in keys})
    t.ok(all(f".SS {s}" in page for s in sections), "couponsd.yaml(5) has a subsection for every section",
         sections)


def test_keys_section_current(t):
    r = subprocess.run([sys.executable, UPDATE_KEYS, "--check", harness.BIN, MAN5], capture_output=True, text=True)
    t.eq((r.returncode, r.stderr), (0, ""),
         "the KEYS section of couponsd.yaml(5) is what man/update-keys.py makes of the key table "
         "(run `make update-man`)")


def test_man8_options_signals_exit(t):
    page = plain(read(MAN8))
    rc, usage, _ = harness.run_cli("-h")
    options = sorted(set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", usage)))
    t.ok(rc == 0 and "-t" in options and "--list-keys" in options, "couponsd -h lists the options", usage)
    missing = [o for o in options if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", page)]
    t.ok(not missing, "couponsd(8) names every option couponsd -h lists", f"missing: {missing}")
    for word in ("reload", "stop", "reopen"):
        t.ok(re.search(rf"\b{word}\b", page), f"couponsd(8) describes -s {word}")
    for sig in ("SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1"):
        t.ok(sig in page, f"couponsd(8) describes {sig}")
    exit_section = page.split('.SH "EXIT STATUS"', 1)[-1].split(".SH", 1)[0]
    for code in ("0", "1", "2"):
        t.ok(re.search(rf"^\.B {code}$", exit_section, re.M), f"couponsd(8) EXIT STATUS explains {code}")
    for path in ("/etc/couponsd.yaml", "/run/couponsd/couponsd.pid", "/run/couponsd/control.sock",
                 "/usr/share/couponsd/migrations/"):
        t.ok(path in page, f"couponsd(8) FILES names {path}")
    defaults = {"daemon.pid_file": "/run/couponsd/couponsd.pid", "daemon.control_socket": "/run/couponsd/control.sock"}
    rc, out, _ = harness.run_cli("--list-keys")
    for key, want in defaults.items():
        t.ok(re.search(rf"^{re.escape(key)}\s.*\s{re.escape(want)}\s", out, re.M),
             f"the FILES path of {key} is its default in the key table")


def test_groff_clean(t):
    groff = shutil.which("groff")
    for page in (MAN8, MAN5):
        name = os.path.basename(page)
        if groff is None:
            t.ok(True, f"# SKIP groff not installed: {name} not formatted")
            continue
        r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
        t.eq((r.returncode, r.stderr), (0, ""), f"groff -man -ww formats {name} without a warning")


if __name__ == "__main__":
    Tap().run(test_every_key_documented, test_keys_section_current, test_man8_options_signals_exit,
              test_groff_clean)
