# SPDX-License-Identifier: BSD-2-Clause
"""tap.py: TAP output for the integration tests, so automake counts each assertion."""
import sys
import traceback


class Tap:
    def __init__(self):
        self.count = 0
        self.failed = 0

    def ok(self, cond, description, diag=None):
        self.count += 1
        status = "ok" if cond else "not ok"
        print(f"{status} {self.count} - {description}", flush=True)
        if not cond:
            self.failed += 1
            if diag:
                for line in str(diag).splitlines():
                    print(f"# {line}", flush=True)
        return bool(cond)

    def eq(self, got, want, description):
        return self.ok(got == want, description, f"got:  {got!r}\nwant: {want!r}")

    def skip(self, description, reason):
        """An assertion that cannot be made here, and why (TAP's SKIP directive: counted, never a pass)."""
        self.count += 1
        print(f"ok {self.count} - {description} # SKIP {reason}", flush=True)

    def diag(self, text):
        for line in str(text).splitlines():
            print(f"# {line}", flush=True)

    def check_sanitizers(self):
        """Every daemon a file started had its stderr read at cleanup: ASan, UBSan and LSan report there."""
        import harness
        reports = harness.SANITIZER_REPORTS
        for line in harness.LSAN_TOOL_FAILURES:
            self.diag(line)
        self.ok(not reports, "no sanitizer report from any daemon process started here",
                "\n----\n".join(reports)[-6000:])

    def run(self, *tests):
        """Runs each test function; an exception fails it (with its traceback) and the file goes on."""
        for test in tests:
            try:
                test(self)
            except Exception:  # noqa: BLE001 - a test's crash is a failure to report, not to hide
                self.ok(False, f"{test.__name__} raised", traceback.format_exc())
        self.check_sanitizers()
        print(f"1..{self.count}", flush=True)
        sys.exit(0)
