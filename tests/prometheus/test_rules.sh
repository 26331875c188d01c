#!/usr/bin/env bash
#
# test_rules.sh: checks and unit-tests the shipped Prometheus alerting rules.
#
# Usage: tests/prometheus/test_rules.sh          (from any directory)
#
#   promtool check rules docs/prometheus/alerts.yml        -> check_rules
#   promtool test rules tests/prometheus/alerts_test.yml   -> test_rules
#
# prints promtool's output, then one line per check: "PASS NAME" or
# "FAIL NAME: REASON". Exit status 0 iff both pass. Without promtool
# (Debian: apt-get install prometheus) it prints "SKIP all: promtool not
# installed" and exits 0. PROMTOOL names another binary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PROMTOOL=${PROMTOOL:-promtool}
cd "$ROOT"

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
	echo "SKIP all: promtool not installed"
	exit 0
fi

FAILED=0

# run NAME CMD...: runs one promtool check, shows its output and the verdict.
# The reason is the first line after promtool's "FAILED:" (a failed test's
# "name: ..." joined with its "alertname/expr: ..., time: ..." line), or the
# first line that says error, else the exit status.
run() {
	local name=$1 out rc=0 reason
	shift
	out=$("$@" 2>&1) || rc=$?
	printf '%s\n' "$out"
	if ((rc == 0)); then
		echo "PASS $name"
		return
	fi
	reason=$(printf '%s\n' "$out" | awk '
		{ line = $0; sub(/^[ \t]+/, "", line); sub(/[ ,]+$/, "", line) }
		reason != "" { if (line ~ /^(alertname|expr):/) reason = reason " (" line ")"; exit }
		found && line != "" { reason = line; if (line !~ /^name:/) exit; next }
		/FAILED:$/ { found = 1; next }
		/FAILED: |[Ee]rror/ && first == "" { first = line }
		END { print (reason != "" ? reason : first) }')
	echo "FAIL $name: ${reason:-$1 exited with status $rc}"
	FAILED=1
}

run check_rules "$PROMTOOL" check rules docs/prometheus/alerts.yml
run test_rules "$PROMTOOL" test rules tests/prometheus/alerts_test.yml
exit "$FAILED"
