#!/usr/bin/env bash
#
# test_run_all.sh: the counting rules of tests/run-all.sh, the one verdict
# `make test` ends with. Fake suites (a GoogleTest-like binary printing
# given lines, scripts printing PASS/FAIL/SKIP lines) go through run-all's
# own functions; the last line must say what they did, skips included, and
# count skips as failures under BALLAST_STRICT=1.
#
# Usage: tests/runner/test_run_all.sh [BUILD_DIR]   (BUILD_DIR is unused)
# Prints PASS/FAIL per case; exits 0 when none failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ballast-run-all-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
failed=0

# fake_gtest NAME LINE...: $WORK/build/NAME prints LINEs, exits 0.
fake_gtest() {
	local name=$1
	shift
	mkdir -p "$WORK/build"
	printf '#!/bin/sh\ncat <<"OUT"\n%s\nOUT\n' "$(printf '%s\n' "$@")" >"$WORK/build/$name"
	chmod +x "$WORK/build/$name"
}

# fake_script NAME STATUS LINE...: a suite script printing LINEs, exiting STATUS.
fake_script() {
	local name=$1 status=$2
	shift 2
	mkdir -p "$WORK/suites"
	printf '#!/bin/sh\ncat <<"OUT"\n%s\nOUT\nexit %s\n' "$(printf '%s\n' "$@")" "$status" \
		>"$WORK/suites/$name"
	chmod +x "$WORK/suites/$name"
	echo "$WORK/suites/$name"
}

# case NAME STRICT WANT_LAST WANT_STATUS CMD...: runs CMD (calls of
# run-all's functions, then finish) in a subshell that sourced run-all.sh;
# checks finish's last line and status.
check() {
	local name=$1 strict=$2 want=$3 want_rc=$4 out last rc=0
	shift 4
	out=$(BALLAST_STRICT=$strict bash -c 'source "$1"; shift; BUILD=$WORK/build; eval "$*"; finish' \
		_ "$ROOT/tests/run-all.sh" "$@" 2>&1) || rc=$?
	last=$(tail -n 1 <<<"$out")
	if [[ $last == "$want" && $rc == "$want_rc" ]]; then
		echo "PASS $name"
	else
		echo "FAIL $name: last line '$last' (status $rc), want '$want' (status $want_rc)"
		failed=1
	fi
}
export WORK

fake_gtest g_ok '[==========] 3 tests from 1 test suite ran. (1 ms total)' '[  PASSED  ] 3 tests.'
fake_gtest g_skip '[==========] 3 tests from 1 test suite ran. (1 ms total)' '[  PASSED  ] 2 tests.' \
	'[  SKIPPED ] 1 test.'
# g_shards: by GTEST_SHARD_INDEX, shard 0 passes 3 tests, shard 1 crashes
# after passing 1 (no summary), shard 2 passes 2 and fails 1.
mkdir -p "$WORK/build"
cat >"$WORK/build/g_shards" <<'EOF_SHARDS'
#!/bin/sh
case $GTEST_TOTAL_SHARDS/$GTEST_SHARD_INDEX in
3/0) printf '[==========] 3 tests from 1 test suite ran. (1 ms)\n[  PASSED  ] 3 tests.\n' ;;
3/1) printf '[       OK ] A.B (1 ms)\n[  PASSED  ] 1 test.\n'; exit 134 ;;
3/2) printf '[  FAILED  ] A.C (1 ms)\n[==========] 3 tests from 1 test suite ran. (1 ms)\n'
     printf '[  PASSED  ] 2 tests.\n'; exit 1 ;;
*) echo "unsharded"; exit 2 ;;
esac
EOF_SHARDS
chmod +x "$WORK/build/g_shards"
ok=$(fake_script ok.sh 0 'PASS a' 'PASS b')
skip=$(fake_script skip.sh 0 'PASS a' 'SKIP b: no tool')
nothing=$(fake_script nothing.sh 0 'SKIP all: needs root')
silent=$(fake_script silent.sh 0 'just talk')
crash=$(fake_script crash.sh 3 'PASS a')

# fake_pytest NAME BODY: a pytest file of that body in $WORK/py (beside a
# conftest.py that takes run-all's --build-dir).
fake_pytest() {
	mkdir -p "$WORK/py"
	printf 'def pytest_addoption(parser):\n    parser.addoption("--build-dir")\n' \
		>"$WORK/py/conftest.py"
	printf '%b\n' "$2" >"$WORK/py/$1"
	echo "$WORK/py/$1"
}
py_mixed=$(fake_pytest test_mixed.py 'import pytest\ndef test_a(): pass\ndef test_b(): assert 1 == 2\ndef test_c(): pytest.skip("no tool")\n@pytest.fixture\ndef broken(): raise RuntimeError("set-up")\ndef test_d(broken): pass')
py_empty=$(fake_pytest test_empty.py 'X = 1')
py_broken=$(fake_pytest test_broken.py 'def test_a(:\n    pass')
mkdir -p "$WORK/san"
san_clean=$WORK/san/clean san_dirty=$WORK/san/dirty
mkdir -p "$san_clean" "$san_dirty"
printf 'ERROR: LeakSanitizer: detected memory leaks\n' >"$san_dirty/asan.1234"

check "all green" 0 "5 passed, 0 failed" 0 run_gtest g_ok\; run_e2e "$ok"
check "a GoogleTest skip is shown" 0 "2 passed, 0 failed, 1 skipped" 0 run_gtest g_skip
check "a script's skip is shown" 0 "1 passed, 0 failed, 1 skipped" 0 run_e2e "$skip"
check "skips fail under CI" 1 "3 passed, 2 failed (2 skipped, counted as failed: BALLAST_STRICT=1)" 1 \
	run_gtest g_skip\; run_e2e "$skip"
check "a suite that skips everything is shown" 0 "0 passed, 0 failed, 1 skipped" 0 run_e2e "$nothing"
check "a suite that skips everything fails under CI" 1 \
	"0 passed, 1 failed (1 skipped, counted as failed: BALLAST_STRICT=1)" 1 run_e2e "$nothing"
check "a suite with no verdict fails" 0 "0 passed, 1 failed" 1 run_e2e "$silent"
check "a crash without FAIL fails" 0 "1 passed, 1 failed" 1 run_e2e "$crash"
check "a missing binary fails" 0 "0 passed, 1 failed" 1 run_gtest nosuch
check "shards: every shard counts, a crashed one fails" 0 "6 passed, 2 failed" 1 run_gtest g_shards 3
# The shard that crashed is named in the suite's summary line.
line=$(bash -c 'source "$1"; BUILD=$WORK/build; run_gtest g_shards 3' _ "$ROOT/tests/run-all.sh" 2>&1 |
	grep '^== g_shards: ')
if [[ $line == "== g_shards: 6 passed, 2 failed (shard 2: killed by signal 6 without a failed test listed) in "* ]]; then
	echo "PASS shards: the summary names the crashed shard"
else
	echo "FAIL shards: the summary names the crashed shard: '$line'"
	failed=1
fi
check "pytest: pass, fail, skip and a broken fixture each count" 0 \
	"1 passed, 2 failed, 1 skipped" 1 run_pytest "$py_mixed"
check "pytest: a file with no test fails" 0 "0 passed, 1 failed" 1 run_pytest "$py_empty"
check "pytest: a file that cannot be collected fails" 0 "0 passed, 1 failed" 1 \
	run_pytest "$py_broken"
check "no sanitizer report passes" 0 "1 passed, 0 failed" 0 \
	BALLAST_SANITIZER_LOGS="$san_clean" sanitizer_reports
check "a sanitizer report fails the run" 0 "0 passed, 1 failed" 1 \
	BALLAST_SANITIZER_LOGS="$san_dirty" sanitizer_reports

exit "$failed"
