#!/usr/bin/env bash
#
# run-all.sh: `make bench`. Runs every benchmark, each printing its tables,
# and has each write its results (bench/report.py describes the format) to
# $BENCH_OUT; then bench/report.py rewrites docs/benchmarks.md and its plots
# from them. Benchmarks measure; they assert no timing. A bench that fails
# is reported and the others still run; the exit status says whether any did.
#
# Usage: bench/run-all.sh [BUILD_DIR]
set -uo pipefail

BUILD=${1:-build}
export BENCH_OUT=${BENCH_OUT:-$BUILD/bench-results}
rm -rf "$BENCH_OUT"
mkdir -p "$BENCH_OUT"
failed=()
started=$SECONDS

run() {
	local name=$1 t0=$SECONDS
	shift
	echo
	echo "=== $name: $*"
	if "$@"; then
		echo "=== $name: done in $((SECONDS - t0)) s"
	else
		echo "=== $name: FAILED (status $?) after $((SECONDS - t0)) s"
		failed+=("$name")
	fi
}

run dataplane "$BUILD/bench_dataplane" --json "$BENCH_OUT/dataplane.json"
run scaling "$BUILD/bench_scaling" --json "$BENCH_OUT/scaling.json"
run maglev "$BUILD/bench_maglev" --json "$BENCH_OUT/maglev.json"
run health "$BUILD/bench_health" --json "$BENCH_OUT/health.json"
run changes "$BUILD/bench_changes" --json "$BENCH_OUT/changes.json"
for script in bench/*_bench.sh bench/*_bench.py; do
	[[ -e $script ]] || continue
	name=$(basename "${script%_bench.*}")
	if [[ $script == *.py ]]; then
		run "$name" /usr/bin/python3 "$script" "$BUILD"
	else
		run "$name" "$script" "$BUILD"
	fi
done

echo
run report /usr/bin/python3 bench/report.py "$BENCH_OUT" docs/benchmarks.md
echo "make bench: $((SECONDS - started)) s; ${#failed[@]} failed${failed:+: ${failed[*]}}"
((${#failed[@]} == 0))
