#!/usr/bin/env bash
#
# run-all.sh: every Ballast test suite, one verdict.
#
# Usage: tests/run-all.sh [BUILD_DIR]    (BUILD_DIR defaults to build)
#
# Runs, from the repository root:
#   BUILD_DIR/unit_tests, BUILD_DIR/dataplane_tests  (GoogleTest)
#   tests/fuzz/test_*.sh BUILD_DIR                    (PASS/FAIL lines: corpus replay)
#   tests/runner/test_*.sh                            (PASS/FAIL lines: this file's rules)
#   tests/prometheus/test_*.sh                        (PASS/FAIL/SKIP lines: promtool)
#   tests/bench/test_*.sh BUILD_DIR                   (PASS/FAIL/SKIP lines: bench smoke)
#   tests/e2e/test_*.sh BUILD_DIR                     (PASS/FAIL/SKIP lines)
#   tests/e2e/test_*.py under pytest                  (PASS/FAIL/SKIP lines:
#                                                      tests/e2e/conftest.py)
#   and, with BALLAST_SANITIZER_LOGS set, one verdict: no sanitizer report
#   was written there during the run (make test sets it).
# prints each suite's output and summary, and ends with exactly one last line
# "N passed, N failed" summed over all suites (", N skipped" added when any
# test skipped). Exit status 0 iff no failure.
#
# Counting rules (so that nothing broken can look green):
#   GoogleTest: "[  PASSED  ] N", "[  SKIPPED ] N" and "[  FAILED  ] N" from
#   --gtest_brief=1 output; a missing binary, a crash (no summary) or a
#   non-zero exit with no failed test counted is one failure.
#   Scripts (tests/fuzz, runner, prometheus, bench smoke, e2e): one per PASS, FAIL
#   or SKIP line ("SKIP all: ..." included); a script that exits non-zero
#   without printing a FAIL line is one failure, and so is one that prints
#   no verdict at all.
#   Skips are never silent: each suite's line and the last line say how
#   many. With BALLAST_STRICT=1 (.ci/run sets it) every skip counts as a
#   failure too: CI's machine has everything, so a skip there is a defect.
#
# Environment: GTEST_TIMEOUT_S (default 600), E2E_TIMEOUT_S (default 1800):
# a suite that outlives its limit is stopped and counted as failed.
# Needs only bash, coreutils and what the suites need themselves.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
# The suites run from the repository root: a build dir given relative to the
# current directory is made absolute first.
[[ ! -d $BUILD ]] || BUILD=$(cd "$BUILD" && pwd)
GTEST_TIMEOUT_S=${GTEST_TIMEOUT_S:-600}
E2E_TIMEOUT_S=${E2E_TIMEOUT_S:-1800}

TOTAL_PASSED=0
TOTAL_FAILED=0
TOTAL_SKIPPED=0
SUITE_START=
STRICT=${BALLAST_STRICT:-0}
SUMMARY=()
LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ballast-run-all.XXXXXX")

trap 'rm -rf "$LOG_DIR"' EXIT
# A suite handles Ctrl-C itself (e2e scripts tear their world down) and
# exits; without these traps bash would then go on to the next suite.
trap 'echo "run-all: interrupted" >&2; exit 130' INT
trap 'echo "run-all: terminated" >&2; exit 143' TERM

# record NAME PASSED FAILED SKIPPED [NOTE]: adds one suite's result.
record() {
	local line="$1: $2 passed, $3 failed"
	((${4:-0} == 0)) || line+=", $4 skipped"
	line+="${5:+ ($5)}"
	# How long the suite took (CI's budget is the sum of these).
	[[ -z $SUITE_START ]] || line+=" in $((SECONDS - SUITE_START)) s"
	SUITE_START=
	TOTAL_PASSED=$((TOTAL_PASSED + $2))
	TOTAL_FAILED=$((TOTAL_FAILED + $3))
	TOTAL_SKIPPED=$((TOTAL_SKIPPED + ${4:-0}))
	SUMMARY+=("$line")
	echo "== $line"
	echo
}

# run_logged LOG TIMEOUT CMD...: runs CMD (output shown and saved to LOG)
# under TIMEOUT seconds; returns its status (124 on timeout).
run_logged() {
	local log=$1 limit=$2 rc=0
	shift 2
	# --foreground: the suite stays in our process group, so a Ctrl-C at the
	# terminal reaches it (and its teardown) directly. -k: SIGKILL if SIGTERM
	# at the limit is not enough.
	timeout --foreground -k 30 "$limit" "$@" 2>&1 | tee "$log" || rc=$?
	return "$rc"
}

# describe_status RC: how a suite ended, in words.
describe_status() {
	if (($1 == 124)); then
		echo "timed out"
	elif (($1 > 128)); then
		echo "killed by signal $(($1 - 128))"
	else
		echo "exit status $1"
	fi
}

# gtest_counts LOG RC: "PASSED FAILED SKIPPED [NOTE]" of one GoogleTest run
# that wrote LOG and ended with status RC.
gtest_counts() {
	local log=$1 rc=$2 passed failed skipped
	passed=$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -n 1)
	skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9][0-9]*\) test.*/\1/p' "$log" | tail -n 1)
	# --gtest_brief=1 prints one "[  FAILED  ] Suite.Test (N ms)" line per
	# failed test and no "N tests, listed below" summary (without brief, it
	# prints both, each test twice): count distinct test names.
	failed=$(grep '^\[  FAILED  \] ' "$log" | grep -v ', listed below' |
		sed 's/^\[  FAILED  \] //; s/, where GetParam().*//; s/ ([0-9]* ms)$//' |
		sort -u | grep -c '' || true)
	passed=${passed:-0}
	failed=${failed:-0}
	skipped=${skipped:-0}
	if [[ $rc -ne 0 && $failed -eq 0 ]]; then
		# Crashed, hung or failed outside any test (no summary to trust).
		echo "$passed 1 $skipped $(describe_status "$rc") without a failed test listed"
	elif ! grep -q '^\[==========\] .* ran\.' "$log"; then
		echo "$passed $((failed + 1)) $skipped no GoogleTest summary"
	else
		echo "$passed $failed $skipped"
	fi
}

# run_gtest NAME [SHARDS]: one GoogleTest binary from BUILD. With SHARDS > 1
# the binary runs as that many processes at once, each given its share of
# the tests by GoogleTest itself (GTEST_TOTAL_SHARDS / GTEST_SHARD_INDEX:
# every test runs in exactly one shard); their counts are added up, and a
# shard that crashed, hung or printed no summary is one failure more. Both
# test binaries wait more than they compute (dataplane_tests on the kernel:
# a program loaded per test; unit_tests on sockets and timeouts), so 2
# cores run 4 shards in about half the time of one (30 s instead of 54, 9
# instead of 20). Their tests share nothing that would make running them
# at once unsafe: temporary directories, ephemeral ports, unpinned maps.
run_gtest() {
	local name=$1 shards=${2:-1} bin=$BUILD/$1 i rc passed=0 failed=0 skipped=0 counts why note=""
	local -a pids=() got
	SUITE_START=$SECONDS
	if ((shards > 1)); then echo "== $name ($shards shards)"; else echo "== $name"; fi
	if [[ ! -x $bin ]]; then
		echo "$bin: not built"
		record "$name" 0 1 0 "binary missing"
		return
	fi
	if ((shards == 1)); then
		rc=0
		run_logged "$LOG_DIR/$name.0.log" "$GTEST_TIMEOUT_S" "$bin" --gtest_brief=1 || rc=$?
	else
		for ((i = 0; i < shards; i++)); do
			GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i \
				timeout -k 30 "$GTEST_TIMEOUT_S" "$bin" --gtest_brief=1 \
				>"$LOG_DIR/$name.$i.log" 2>&1 &
			pids+=($!)
		done
	fi
	for ((i = 0; i < shards; i++)); do
		if ((shards > 1)); then
			rc=0
			wait "${pids[i]}" || rc=$?
			echo "-- shard $((i + 1)) of $shards"
			cat "$LOG_DIR/$name.$i.log"
		fi
		counts=$(gtest_counts "$LOG_DIR/$name.$i.log" "$rc")
		read -r -a got <<<"$counts"
		passed=$((passed + got[0]))
		failed=$((failed + got[1]))
		skipped=$((skipped + got[2]))
		if ((${#got[@]} > 3)); then
			why="${got[*]:3}"
			((shards == 1)) || why="shard $((i + 1)): $why"
			note+="${note:+; }$why"
		fi
	done
	record "$name" "$passed" "$failed" "$skipped" "$note"
}

# run_e2e SCRIPT: one end-to-end (or promtool, or bench smoke) script.
run_e2e() {
	run_verdicts "$1" "$1" "$BUILD"
}

# run_pytest FILE: one pytest suite (tests/e2e/test_*.py): the plugin
# tests/e2e/harness/verdicts.py prints the same PASS/FAIL/SKIP lines as the
# scripts, in place of pytest's own output. Debian's interpreter, which has
# pytest and pyroute2.
run_pytest() {
	PYTHONPATH=$ROOT/tests/e2e${PYTHONPATH:+:$PYTHONPATH} run_verdicts "$1" \
		/usr/bin/python3 -m pytest -p no:terminal -p no:cacheprovider -p harness.verdicts \
		"$1" --build-dir "$BUILD"
}

# run_verdicts FILE CMD...: runs CMD (a suite that prints one PASS, FAIL or
# SKIP line per test) and records its counts under FILE's name.
run_verdicts() {
	local script=$1 name log rc=0 passed failed skipped
	shift
	name=$(basename "$(dirname "$script")")/$(basename "$script")
	log=$LOG_DIR/$(basename "$script").log
	SUITE_START=$SECONDS
	echo "== $name"
	run_logged "$log" "$E2E_TIMEOUT_S" "$@" || rc=$?
	passed=$(grep -c '^PASS ' "$log" || true)
	failed=$(grep -c '^FAIL ' "$log" || true)
	skipped=$(grep -c '^SKIP ' "$log" || true)
	if [[ $rc -ne 0 && $failed -eq 0 ]]; then
		record "$name" "$passed" 1 "$skipped" "$(describe_status "$rc") without a FAIL line"
	elif ((passed + failed + skipped == 0)); then
		# Not one verdict: a suite that ran nothing is not green.
		record "$name" 0 1 0 "no PASS, FAIL or SKIP line"
	else
		record "$name" "$passed" "$failed" "$skipped"
	fi
}

# sanitizer_reports: with BALLAST_SANITIZER_LOGS set (make test sets it and
# points ASAN_OPTIONS/UBSAN_OPTIONS' log_path there), one verdict: no
# AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report was
# written by any process during the run.
sanitizer_reports() {
	local dir=${BALLAST_SANITIZER_LOGS:-} f reports=()
	[[ -n $dir ]] || return 0
	echo "== sanitizers"
	for f in "$dir"/*; do
		[[ -f $f ]] && reports+=("$f")
	done
	if ((${#reports[@]} == 0)); then
		echo "PASS no sanitizer report in $dir"
		record sanitizers 1 0 0
		return 0
	fi
	echo "FAIL ${#reports[@]} sanitizer report(s) in $dir"
	for f in "${reports[@]}"; do
		echo "    $f:"
		head -n 30 "$f" | sed 's/^/    | /'
	done
	record sanitizers 0 1 0
}

main() {
	local script
	cd "$ROOT"
	if [[ -n ${BALLAST_SANITIZER_LOGS:-} ]]; then
		rm -rf "$BALLAST_SANITIZER_LOGS"
		mkdir -p "$BALLAST_SANITIZER_LOGS"
	fi
	run_gtest unit_tests 4
	run_gtest dataplane_tests 4
	for script in tests/fuzz/test_*.sh tests/runner/test_*.sh tests/prometheus/test_*.sh \
		tests/bench/test_*.sh tests/e2e/test_*.sh; do
		[[ -e $script ]] || continue
		run_e2e "$script"
	done
	for script in tests/e2e/test_*.py; do
		[[ -e $script ]] || continue
		run_pytest "$script"
	done
	sanitizer_reports

	finish
}

# finish: the summary and the last line; returns 0 iff nothing failed.
finish() {
	echo "== Summary"
	printf '  %s\n' "${SUMMARY[@]}"
	if ((TOTAL_SKIPPED > 0 && STRICT == 1)); then
		TOTAL_FAILED=$((TOTAL_FAILED + TOTAL_SKIPPED))
		echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed ($TOTAL_SKIPPED skipped, counted as failed: BALLAST_STRICT=1)"
	elif ((TOTAL_SKIPPED > 0)); then
		echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
	else
		echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
	fi
	((TOTAL_FAILED == 0))
}

# Sourced (tests/runner/test_run_all.sh checks the counting rules): the
# functions only.
[[ ${BASH_SOURCE[0]} != "$0" ]] || main
