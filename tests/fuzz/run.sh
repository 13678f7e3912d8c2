#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# run.sh: runs each libFuzzer harness for a bounded time and prints "PASS: fuzz NAME", "FAIL: fuzz NAME"
# or "SKIP: fuzz NAME" (scripts/test.sh and `make fuzz` count these lines).
# Usage: run.sh SRCDIR BUILDDIR SECONDS FUZZ_CC NAME...
set -u
srcdir=$1 builddir=$2 seconds=$3 fuzz_cc=$4
shift 4
status=0
for name in "$@"; do
	if [ "$fuzz_cc" = no ]; then
		echo "SKIP: fuzz $name (no clang with -fsanitize=fuzzer; Debian: clang libclang-rt-14-dev)"
		continue
	fi
	bin="$builddir/tests/fuzz/fuzz_$name"
	# New inputs go to a scratch corpus in the build tree; the seed corpus in the source tree is only read.
	work="$builddir/tests/fuzz/work/$name"
	artifacts="$builddir/tests/fuzz/artifacts"
	log="$builddir/tests/fuzz/fuzz_$name.log"
	mkdir -p "$work" "$artifacts" || exit 1
	dict=""
	[ -f "$srcdir/tests/fuzz/$name.dict" ] && dict="-dict=$srcdir/tests/fuzz/$name.dict"
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$artifacts/$name-" $dict "$work" "$srcdir/tests/fuzz/corpus/$name" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(sed -n 's/.*DONE *cov: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
		echo "PASS: fuzz $name (${runs} runs in ${seconds} s, ${rate} exec/s, coverage ${cov:-?})"
	else
		tail -n 40 "$log"
		echo "FAIL: fuzz $name (exit $rc; log $log, crashing input under $artifacts)"
		status=1
	fi
done
exit $status
