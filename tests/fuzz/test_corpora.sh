#!/usr/bin/env bash
#
# test_corpora.sh: `make test` replays every fuzz target's corpus
# (tests/fuzz/corpus/NAME/*) through BUILD_DIR/fuzz-replay/NAME_fuzz: the
# target linked with tests/fuzz/replay_main.cpp, built with AddressSanitizer
# and UndefinedBehaviorSanitizer like the unit tests: each input once, so
# every crash ever found (kept in the corpus with its fix) stays fixed. One PASS or
# FAIL line per target, for tests/run-all.sh.
#
# Usage: tests/fuzz/test_corpora.sh [BUILD_DIR]
set -uo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
work=$(mktemp -d "${TMPDIR:-/tmp}/ballast-fuzz-replay.XXXXXX")
trap 'rm -rf "$work"' EXIT

for src in tests/fuzz/*_fuzz.cpp; do
	name=$(basename "$src" _fuzz.cpp)
	bin=$BUILD/fuzz-replay/${name}_fuzz
	corpus=tests/fuzz/corpus/$name
	if [[ ! -x $bin ]]; then
		echo "FAIL $name: $bin is not built (make fuzz-replay)"
		continue
	fi
	inputs=("$corpus"/*)
	if [[ ! -e ${inputs[0]} ]]; then
		echo "FAIL $name: no corpus in $corpus"
		continue
	fi
	log=$work/$name.log
	# Crash artifacts go to the scratch dir, never into the tree.
	if "$bin" -artifact_prefix="$work/" "${inputs[@]}" >"$log" 2>&1; then
		ran=$(grep -c '^Running: ' "$log" || true)
		if ((ran == ${#inputs[@]})); then
			echo "PASS $name: ${#inputs[@]} corpus inputs replayed, no finding"
		else
			echo "FAIL $name: replayed $ran of ${#inputs[@]} inputs"
		fi
	else
		echo "FAIL $name: a corpus input fails (from $corpus):"
		grep -m1 -B2 -A20 'ERROR\|runtime error\|: broken\|_fuzz: ' "$log" | sed 's/^/    | /'
	fi
done
