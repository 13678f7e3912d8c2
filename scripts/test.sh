#!/bin/sh
# The whole test suite: installs what it needs, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer (and the test-only fault switches), runs every unit
# and integration test against the real daemon, then `make distcheck`.
# The last line is "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

./scripts/install-deps.sh || exit 1
./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; exit 1; }

build="$top/_build/check"
rm -rf "$build"
mkdir -p "$build" && cd "$build" || exit 1
"$top/configure" -q --enable-sanitizers --enable-werror --enable-fault-injection || exit 1
make -j2 >make.log 2>&1 || { tail -50 make.log; echo "0 passed, 1 failed"; exit 1; }

# -j1: the integration tests time restarts and reloads; two suites at once on 2 cores would skew them.
make -j1 check
check_rc=$?
[ -f test-suite.log ] && [ "$check_rc" -ne 0 ] && cat test-suite.log

count() { sed -n "s/^# $1: *\([0-9]*\)$/\1/p" test-suite.log | head -n 1; }
pass=$(count PASS); fail=$(count FAIL); err=$(count ERROR); xpass=$(count XPASS); skip=$(count SKIP)
passed=${pass:-0}
failed=$(( ${fail:-0} + ${err:-0} + ${xpass:-0} ))

# lint: clang-format leaves the sources unchanged and cppcheck finds nothing.
if make lint >lint.log 2>&1; then
	echo "PASS: make lint"
	passed=$((passed + 1))
else
	cat lint.log
	echo "FAIL: make lint"
	failed=$((failed + 1))
fi

# fuzz: each libFuzzer harness (tests/fuzz) runs FUZZ_SECONDS; SKIP lines when clang has no -fsanitize=fuzzer.
make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-20}" >fuzz.log 2>&1; grep -E '^(PASS|FAIL|SKIP): fuzz' fuzz.log || tail -30 fuzz.log
n() { grep -c "^$1: fuzz" fuzz.log; }; passed=$((passed + $(n PASS))); failed=$((failed + $(n FAIL))); skip=$((${skip:-0} + $(n SKIP)))
[ "$(n PASS)$(n FAIL)$(n SKIP)" = 000 ] && { tail -30 fuzz.log; echo "FAIL: make fuzz"; failed=$((failed + 1)); }

# distcheck: the tarball builds, installs and passes `make check` out of tree.
echo "make distcheck ..."
if COUPONSD_DISTCHECK=1 make -j2 distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-werror --enable-fault-injection" >distcheck.log 2>&1; then
	echo "PASS: make distcheck"
	passed=$((passed + 1))
else
	tail -60 distcheck.log
	echo "FAIL: make distcheck"
	failed=$((failed + 1))
fi

echo "${skip:-0} skipped"
# The last line, as CI reads it.
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
