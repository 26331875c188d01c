#!/usr/bin/env bash
#
# test_smoke.sh: `make bench`'s programs, run briefly so they never rot.
# Benchmarks are not tests: nothing here asserts a time. Each bench must
# run to the end, and its own checks (every path took the verdict and
# counted the reason it is meant to measure; every health check answered)
# must hold.
#
# Usage: tests/bench/test_smoke.sh [BUILD_DIR]
# Prints PASS/FAIL/SKIP per bench; exits 0 when none failed.
set -uo pipefail

BUILD=${1:-build}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/ballast-bench-smoke.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

if [[ $EUID -ne 0 ]]; then
	echo "SKIP all: needs root (BPF_PROG_TEST_RUN, network namespaces)"
	exit 0
fi
failed=0
# The in-process benches' results files, rendered by report.py at the end.
mkdir -p "$OUT/inproc"

# verdict NAME LOG STATUS: PASS NAME when STATUS is 0, else FAIL NAME with
# the last lines of LOG (and the script's exit status becomes 1).
verdict() {
	if (($3 == 0)); then
		echo "PASS $1"
	else
		echo "FAIL $1: $(tail -n 3 "$2" | tr '\n' ' ')"
		failed=1
	fi
}

# bench_dataplane --quick: every row of both tables, checked by the bench.
"$BUILD/bench_dataplane" --quick --json "$OUT/inproc/dataplane.json" >"$OUT/dataplane" 2>&1 &&
	grep -q '^malformed: TCP header cut short ' "$OUT/dataplane" &&
	grep -q '^ipip over the MTU: ICMP too big reply ' "$OUT/dataplane"
verdict bench_dataplane "$OUT/dataplane" $?

# bench_maglev --quick: the table measures for 10 and 100 backends.
"$BUILD/bench_maglev" --quick --json "$OUT/inproc/maglev.json" >"$OUT/maglev" 2>&1 &&
	grep -q 'largest |table share - weight share|' "$OUT/maglev"
verdict bench_maglev "$OUT/maglev" $?

# bench_health with 20 targets for 0.5 s per check type: every check answered.
"$BUILD/bench_health" --json "$OUT/inproc/health.json" 20 0.5 >"$OUT/health" 2>&1 &&
	(($(grep -c 'checks started' "$OUT/health") >= 2)) &&
	! grep 'checks started' "$OUT/health" | grep -vq ' 0 failed'
verdict bench_health "$OUT/health" $?

# bench_scaling --quick: every sweep, its own forwarded/new-flow checks.
"$BUILD/bench_scaling" --quick --json "$OUT/inproc/scaling.json" >"$OUT/scaling" 2>&1 &&
	grep -q '^new, table full of live flows (unrecorded) ' "$OUT/scaling"
verdict bench_scaling "$OUT/scaling" $?

# bench_changes --quick: one change at 1, 100 and 1,000 VIPs; its own check
# that a change makes the same map writes and kernel round trips at each.
"$BUILD/bench_changes" --quick --json "$OUT/inproc/changes.json" >"$OUT/changes" 2>&1 &&
	grep -q 'the same at every size' "$OUT/changes"
verdict bench_changes "$OUT/changes" $?

# The network benches (bench/*_bench.sh, bench/*_bench.py) in their --quick
# modes: each builds its own namespaces, checks that traffic went where it
# meant, and writes its results file. A few seconds each, mostly topology
# set-up.
for script in bench/*_bench.sh bench/*_bench.py; do
	[[ -e $script ]] || continue
	name=$(basename "${script%.*}")
	runner=()
	[[ $script == *.py ]] && runner=(/usr/bin/python3)
	mkdir -p "$OUT/$name"
	BENCH_OUT=$OUT/$name "${runner[@]}" "$script" "$BUILD" --quick >"$OUT/$name.log" 2>&1 &&
		compgen -G "$OUT/$name/*.json" >/dev/null
	verdict "$name" "$OUT/$name.log" $?
done

# report.py renders what the quick runs wrote: a section for every bench.
mkdir -p "$OUT/all"
cp "$OUT"/*/*.json "$OUT/all/" 2>/dev/null || true
/usr/bin/python3 bench/report.py "$OUT/all" "$OUT/report/benchmarks.md" >"$OUT/report.log" 2>&1 &&
	(($(grep -c '^## ' "$OUT/report/benchmarks.md") >= 8)) &&
	grep -q '^### Where the time goes' "$OUT/report/benchmarks.md"
verdict report "$OUT/report.log" $?

exit "$failed"
