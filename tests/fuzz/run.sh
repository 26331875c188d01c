#!/usr/bin/env bash
#
# run.sh: `make fuzz`. Runs every fuzz target (BUILD_DIR/fuzz/NAME_fuzz) for
# FUZZ_SECONDS (default 60) each, from
# tests/fuzz/corpus/NAME plus what earlier runs found (BUILD_DIR/fuzz/
# corpus-NAME, kept between runs), with tests/fuzz/NAME.dict. Prints per
# target the inputs run, execs per second and the coverage libFuzzer saw.
# A crash stops the run: the input is saved as BUILD_DIR/fuzz/crash-*; add
# it to tests/fuzz/corpus/NAME with the fix, so make test replays it.
#
# Usage: tests/fuzz/run.sh [BUILD_DIR] [NAME...]
set -uo pipefail

BUILD=${1:-build}
shift || true
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
SECONDS_EACH=${FUZZ_SECONDS:-60}
names=("$@")
if ((${#names[@]} == 0)); then
	for src in tests/fuzz/*_fuzz.cpp; do names+=("$(basename "$src" _fuzz.cpp)"); done
fi

status=0
printf '%-8s %12s %10s %8s %8s  %s\n' target inputs exec/s cov ft result
for name in "${names[@]}"; do
	bin=$BUILD/fuzz/${name}_fuzz
	found=$BUILD/fuzz/corpus-$name
	log=$BUILD/fuzz/$name.log
	mkdir -p "$found"
	dict=()
	[[ -e tests/fuzz/$name.dict ]] && dict=(-dict="tests/fuzz/$name.dict")
	rc=0
	"$bin" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=4096 \
		-print_final_stats=1 -artifact_prefix="$BUILD/fuzz/" "${dict[@]}" \
		"$found" "tests/fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if ((rc == 0)); then
		result=ok
	else
		result="FINDING (log: $log)"
		status=1
	fi
	printf '%-8s %12s %10s %8s %8s  %s\n' "$name" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result"
	((rc == 0)) || grep -m1 -A25 'ERROR\|runtime error\|_fuzz: ' "$log" | sed 's/^/    | /'
done
exit "$status"
