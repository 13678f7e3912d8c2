#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The whole test suite: installs what it needs, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer (and the test-only fault switches), runs every unit
# and integration test against the real daemon on the embedded Kafka, runs the
# integration and chaos suites again on a real 3-node Apache Kafka cluster
# (scripts/kafka.sh), the multi-host chaos (hosts in network namespaces),
# then lint, the fuzzers and `make distcheck`.
# The last line is "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

./scripts/install-deps.sh || exit 1
# The real Kafka broker's jars, from Maven Central into ~/.cache/couponsd (a second run needs no network).
sh ./scripts/kafka.sh fetch >/dev/null || { echo "scripts/kafka.sh fetch failed"; echo "0 passed, 1 failed"; exit 1; }
./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; exit 1; }

build="$top/_build/check"
rm -rf "$build"
mkdir -p "$build" && cd "$build" || exit 1
"$top/configure" -q --enable-sanitizers --enable-werror --enable-fault-injection || exit 1
make -j2 >make.log 2>&1 || { tail -50 make.log; echo "0 passed, 1 failed"; exit 1; }

# -j1: the integration tests time restarts and reloads; two suites at once on 2 cores would skew them.
count() { v=$(sed -n "s/^# $2: *\([0-9]*\)$/\1/p" "$1" 2>/dev/null | head -n 1); echo "${v:-0}"; }
passed=0 failed=0 skip=0
tally() { # TEST_SUITE_LOG RC: adds its counts; prints it whole when something failed
	[ -f "$1" ] && [ "$2" -ne 0 ] && cat "$1"
	passed=$((passed + $(count "$1" PASS)))
	failed=$((failed + $(count "$1" FAIL) + $(count "$1" ERROR) + $(count "$1" XPASS)))
	skip=$((skip + $(count "$1" SKIP)))
	[ -f "$1" ] || failed=$((failed + 1))
	# Each failed assertion with the diagnostic lines under it, printed again at the end: CI keeps the head
	# and the tail of this output, and a long suite log puts the reason out of both.
	[ -f "$1" ] && awk '/^not ok /{n=25; print FILENAME ": " $0; next} /^(FAIL|ERROR): /{next} n>0 && /^#/{n--; print; next} {n=0}' \
		"$1" >>"$build/failures.txt"
}
make -j1 check
tally test-suite.log $?

# The integration and chaos suites again, on a real 3-node KRaft cluster: every daemon gets topics of its own
# there. The cluster is this script's: stopped by the pids kafka.sh recorded, whatever happened.
kdir="$build/kafka"
trap 'sh "$top/scripts/kafka.sh" stop "$kdir" >/dev/null 2>&1' EXIT
if bootstrap=$(sh "$top/scripts/kafka.sh" start 3 "$kdir" 8); then
	echo "real Kafka: 3 nodes at $bootstrap"
	COUPONSD_KAFKA=real COUPONSD_KAFKA_DIR="$kdir" make -j1 check-real-kafka
	tally test-suite-real-kafka.log $?
	sh "$top/scripts/kafka.sh" stop "$kdir"
else
	echo "FAIL: scripts/kafka.sh start 3 (the real Kafka cluster did not come up)"
	failed=$((failed + 1))
fi

# Several hosts, each a network namespace with an address and a couponsd of its own, on one real Kafka cluster:
# SIGKILL of a host, a host cut off the network, a rolling restart (tests/chaos/test_chaos_multihost.py). The
# file starts its own 3-node cluster on its bridge's address and removes everything it made, whatever happens.
make -j1 check-multihost
tally test-suite-multihost.log $?

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
n() { grep -c "^$1: fuzz" fuzz.log; }; passed=$((passed + $(n PASS))); failed=$((failed + $(n FAIL))); skip=$((skip + $(n SKIP)))
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

if [ -s "$build/failures.txt" ]; then
	echo "---- the failed assertions again, with their diagnostics (the first 300 lines) ----"
	cut -c1-600 "$build/failures.txt" | head -n 300
fi
echo "${skip:-0} skipped"
# The last line, as CI reads it.
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
