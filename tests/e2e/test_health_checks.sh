#!/usr/bin/env bash
#
# test_health_checks.sh: Ballast's health checks one by one (docs/operations.md,
# "Health checks"), with real backends in network namespaces (lib.sh): the
# tcp and udp check types and what each failure looks like in `ballast
# backend list`, a per-backend override laid over its VIP's check, the
# expected share of a drained backend in `ballast stats`, and check configs
# that `ballast apply` must refuse. (HTTP checks, failover timing, flapping and
# fail-open are test_resilience.sh's.)
#
# Usage: tests/e2e/test_health_checks.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
#   E2E_KEEP_STATE=1 keeps the logs (the path is printed at the start).
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed. About 20 s on the
# 2-core development VM.
#
# Each test starts its own ballastd on the shared topology (three backends).
# Between tests every backend server is restarted if a test killed it, and
# its control file removed (health path and UDP responder "up").
#
# Timing: these are not timing tests (test_failover_time is). Checks run
# every 500 ms with a 300 ms timeout, rise 2, fall 2: a state change takes
# interval x fall (or rise) + timeout = 1.3 s at most on an idle machine.
# Every wait allows CHANGE_S = 5 s, about 4x that, so that a loaded VM cannot
# make a test fail; a daemon that never makes the change fails all the same.
#
# Statistics: a share check over n flows allows 5 standard deviations of a
# binomial share, sqrt(p(1-p)/n) (a false failure about once in 1.7 million
# checks of one share); see each test for its n.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly CHANGE_S=5
readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly VIP_UDP=$VIP1:$UDP_PORT/udp
readonly BE1=${BE_IPS[0]} BE2=${BE_IPS[1]} BE3=${BE_IPS[2]}
# The timing every check here uses, and how `backend list` describes it.
readonly TIMING="interval: 500ms, timeout: 300ms, rise: 2, fall: 2"
readonly TIMING_DESC="every 500ms timeout 300ms rise 2 fall 2"

# --- Configs -------------------------------------------------------------------

# cfg_vip ADDRESS PORT PROTO CHECK BACKEND...: one VIP; CHECK is its
# health_check (a YAML flow mapping) or "" (none); each BACKEND is the
# flow mapping's inside, e.g. "address: 10.231.0.11, weight: 1".
cfg_vip() {
	local addr=$1 port=$2 proto=$3 check=$4 b
	shift 4
	echo "  - address: $addr"
	echo "    port: $port"
	echo "    protocol: $proto"
	[[ -z $check ]] || echo "    health_check: $check"
	echo "    backends:"
	for b in "$@"; do
		echo "      - {$b}"
	done
}

# be W ADDRESS [MORE]: a backend for cfg_vip.
be() {
	echo "address: $2, weight: $1${3:+, $3}"
}

# --- Helpers -------------------------------------------------------------------

# wait_all_up VIP ADDRESS...: each backend up and in the table.
wait_all_up() {
	local vip=$1 a
	shift
	for a in "$@"; do
		wait_backend_for "$CHANGE_S" "$vip" "$a" 'b["health"] == "up" and b["table_entries"] > 0'
	done
}

# expect_field VIP ADDRESS FIELD REGEX: a problem unless the backend's FIELD
# in `ballast backend list -o json` matches REGEX (Python, searched).
expect_field() {
	local vip=$1 addr=$2 field=$3 rx=$4 v
	if ! v=$(backend_row "$vip" "$addr" "$field" 2>&1); then
		problem "$addr in $vip: $v"
		return 0
	fi
	"$PYTHON" -c 'import re, sys; sys.exit(not re.search(sys.argv[1], sys.argv[2]))' "$rx" "$v" ||
		problem "$addr in $vip: $field is '$v', want /$rx/"
}

# expect_log LOG_JSON ACTOR TEXT: a problem unless `ballast log -o json`
# (saved in LOG_JSON) has an entry by ACTOR whose change starts with TEXT.
expect_log() {
	"$PYTHON" - "$@" <<'PY' || problem "ballast log has no entry by '$2' starting '$3'"
import json, sys
log, actor, text = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
hits = [e for e in log if e["actor"] == actor and e["change"].startswith(text)]
for e in hits:
    print(f"[log] {e['actor']}: {e['change']}", file=sys.stderr)
sys.exit(not hits)
PY
}

# served_lines NAME REGEX: NAME's served-log lines matching REGEX (ERE).
served_lines() {
	grep -cE "$2" "$STATE_DIR/$1.served" || true
}

# --- Tests -----------------------------------------------------------------------

# Rule: a tcp check passes when a connect to the check port (the VIP's, 80)
# at the backend's own address completes. A backend whose listener is gone is
# down after `fall` (2) refused connects in a row, with last_check naming the
# refusal and no Maglev table entries; once it listens again it is up after
# `rise` (2) passes in a row, back in the table. The other backends are
# untouched throughout.
test_tcp_check() {
	{
		cfg_head
		cfg_vip "$VIP1" "$HTTP_PORT" tcp "{type: tcp, $TIMING}" \
			"$(be 1 "$BE1")" "$(be 1 "$BE2")" "$(be 1 "$BE3")"
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_TCP" "$BE1" "$BE2" "$BE3"
	expect_field "$VIP_TCP" "$BE1" check "^tcp :$HTTP_PORT $TIMING_DESC\$"
	expect_field "$VIP_TCP" "$BE1" last_check '^ok '

	backend_kill be1
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE1" 'b["health"] == "down" and b["table_entries"] == 0'
	expect_field "$VIP_TCP" "$BE1" last_check '^connect: Connection refused$'
	expect_field "$VIP_TCP" "$BE2" health '^up$'
	expect_field "$VIP_TCP" "$BE3" health '^up$'
	lb_log_json "$STATE_DIR/log-down.json"
	expect_log "$STATE_DIR/log-down.json" health-check \
		"backend health $VIP_TCP $BE1 up -> down (2 failures, last: connect: Connection refused)"

	backend_start be1
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE1" 'b["health"] == "up" and b["table_entries"] > 0'
	expect_field "$VIP_TCP" "$BE1" last_check '^ok '
	lb_log_json "$STATE_DIR/log-up.json"
	expect_log "$STATE_DIR/log-up.json" health-check \
		"backend health $VIP_TCP $BE1 down -> up (2 successes, last: ok "
	fail_if_problems
}

# Rule: a udp check sends `payload` to the check port at the backend's own
# address and passes when a reply holding `expect` comes back within
# `timeout`. A backend that replies without it, does not reply, or whose port
# is closed (an ICMP port unreachable fails the check at once) is down after
# `fall` failures, its last_check saying which, and out of the table: its
# VIP service, which still answers, gets no new flows. It is up again after
# `rise` passes.
test_udp_check() {
	local word want n
	{
		cfg_head
		cfg_vip "$VIP1" "$UDP_PORT" udp \
			"{type: udp, port: $UDP_CHECK_PORT, payload: ping, expect: pong, $TIMING}" \
			"$(be 1 "$BE1")" "$(be 1 "$BE2")" "$(be 1 "$BE3")"
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_UDP" "$BE1" "$BE2" "$BE3"
	expect_field "$VIP_UDP" "$BE1" check "^udp :$UDP_CHECK_PORT send 4 bytes expect \"pong\" $TIMING_DESC\$"
	expect_field "$VIP_UDP" "$BE1" last_check '^ok '
	# The machinery: the checks reached be1's responder, at its own address.
	n=$(served_lines be1 "^udpcheck $BE1:$UDP_CHECK_PORT $LB_IP:[0-9]+ pong\$")
	((n >= 1)) || fail "test machinery: no 'udpcheck $BE1:$UDP_CHECK_PORT ... pong' line in be1's served log"

	for word in sick silent closed; do
		case $word in
		sick) want='^udp: reply without "pong"$' ;;
		silent) want='^udp: no reply within ' ;;
		closed) want='^udp: ICMP port unreachable$' ;;
		esac
		backend_health be1 "$word"
		# Closing takes the responder up to 50 ms: a check in between may
		# see no reply; a later one, while down, sees the port closed.
		wait_backend_for "$CHANGE_S" "$VIP_UDP" "$BE1" \
			"b['health'] == 'down' and b['table_entries'] == 0 and __import__('re').search(r'''$want''', b['last_check']) is not None"
		expect_field "$VIP_UDP" "$BE2" health '^up$'
		expect_field "$VIP_UDP" "$BE3" health '^up$'
		if [[ $word == silent ]]; then
			# be1's VIP service still answers: only the table keeps
			# flows off it. 200 flows, be2 and be3 at 1/2 each: 5 sd
			# is 17.7 pp.
			client_run "$STATE_DIR/udp-down.json" --vip "$VIP1" --port "$UDP_PORT" \
				--proto udp -n 200 --timeout 2 --give-up-after "$GIVE_UP"
			assert_all_ok "$STATE_DIR/udp-down.json" 200
			assert_shares "$STATE_DIR/udp-down.json" 17.7 be1=0 be2=1 be3=1
		fi
		backend_health be1 up
		wait_backend_for "$CHANGE_S" "$VIP_UDP" "$BE1" \
			'b["health"] == "up" and b["table_entries"] > 0 and b["last_check"].startswith("ok ")'
	done
	lb_log_json "$STATE_DIR/log.json"
	expect_log "$STATE_DIR/log.json" health-check \
		"backend health $VIP_UDP $BE1 up -> down (2 failures, last: udp: reply without \"pong\")"
	expect_log "$STATE_DIR/log.json" health-check \
		"backend health $VIP_UDP $BE1 down -> up (2 successes, last: ok "
	fail_if_problems
}

# Rule: a backend's health_check is laid over its VIP's: be2's {type: tcp}
# keeps the VIP's interval, timeout, rise and fall. The VIP's http check asks
# for a path every backend answers 404, so be1 and be3 are down ("http status
# 404") and be2, checked by a TCP connect, is the only one up and takes every
# new connection. `ballast backend list` describes each backend's own check.
test_per_backend_override() {
	local n
	{
		cfg_head
		cfg_vip "$VIP1" "$HTTP_PORT" tcp "{type: http, path: /nonexistent, $TIMING}" \
			"$(be 1 "$BE1")" "$(be 1 "$BE2" "health_check: {type: tcp}")" "$(be 1 "$BE3")"
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE2" 'b["health"] == "up" and b["table_entries"] > 0'
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE1" 'b["health"] == "down" and b["table_entries"] == 0'
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE3" 'b["health"] == "down" and b["table_entries"] == 0'
	# The machinery: be1's check did ask for /nonexistent and got 404.
	n=$(served_lines be1 "^miss $BE1:$HTTP_PORT $LB_IP:[0-9]+ 404 /nonexistent\$")
	((n >= 1)) || fail "test machinery: no 404 for /nonexistent in be1's served log"

	expect_field "$VIP_TCP" "$BE2" check "^tcp :$HTTP_PORT $TIMING_DESC\$"
	expect_field "$VIP_TCP" "$BE2" last_check '^ok '
	local a
	for a in "$BE1" "$BE3"; do
		expect_field "$VIP_TCP" "$a" check "^http GET /nonexistent :$HTTP_PORT expect 200-399 $TIMING_DESC\$"
		expect_field "$VIP_TCP" "$a" last_check '^http status 404$'
	done
	fail_if_problems

	tcp_batch "$STATE_DIR/tcp.json" 200
	assert_all_ok "$STATE_DIR/tcp.json" 200
	assert_shares "$STATE_DIR/tcp.json" 0 be1=0 be2=1 be3=0
}

# Rule: `ballast stats` gives a backend that takes no new flows (drained)
# expected_share 0, and the others their weight over the weights of those
# that do: 1/2 each of three equal weights with one drained (1/3 each again
# after undrain). New connections follow: the drained one gets none, the
# other two 1/2 each; 1,000 flows, so 5 sd is 7.9 pp.
test_expected_share_excludes_drained() {
	local n=1000
	{
		cfg_head
		cfg_vip "$VIP1" "$HTTP_PORT" tcp "" "$(be 1 "$BE1")" "$(be 1 "$BE2")" "$(be 1 "$BE3")"
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_TCP" "$BE1" "$BE2" "$BE3"

	lb_cli_ok backend drain "$VIP_TCP" "$BE1"
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE1" 'b["drained"] is True and b["table_entries"] == 0'
	stats_json "$STATE_DIR/stats0.json"
	expect_shares "$STATE_DIR/stats0.json" "$BE1=0" "$BE2=0.5" "$BE3=0.5"

	tcp_batch "$STATE_DIR/tcp.json" "$n"
	assert_all_ok "$STATE_DIR/tcp.json" "$n"
	assert_shares "$STATE_DIR/tcp.json" 7.9 be1=0 be2=1 be3=1
	# The balancer's own counts agree with the backends', and its
	# expected_share, observed_share and skew with the weights that take
	# new flows (be1's counts as 0).
	stats_json "$STATE_DIR/stats1.json"
	assert_stats_match "$STATE_DIR/stats1.json" "$VIP_TCP" "$(backend_counts_json tcp "$VIP1" "$HTTP_PORT")" \
		be1=0 be2=1 be3=1

	lb_cli_ok backend undrain "$VIP_TCP" "$BE1"
	wait_backend_for "$CHANGE_S" "$VIP_TCP" "$BE1" 'b["drained"] is False and b["table_entries"] > 0'
	stats_json "$STATE_DIR/stats2.json"
	expect_shares "$STATE_DIR/stats2.json" "$BE1=0.3333" "$BE2=0.3333" "$BE3=0.3333"
	fail_if_problems
}

# expect_shares STATS_JSON ADDRESS=SHARE...: a problem unless each backend
# of VIP_TCP has that expected_share (within 0.001) in STATS_JSON.
expect_shares() {
	"$PYTHON" - "$VIP_TCP" "$@" <<'PY' >"$STATE_DIR/shares.err" 2>&1 || problem "$(tail -n 1 "$STATE_DIR/shares.err")"
import json, sys
vip, path = sys.argv[1], sys.argv[2]
want = {a: float(s) for a, s in (x.split("=") for x in sys.argv[3:])}
v = next(v for v in json.load(open(path))["vips"] if v["vip"] == vip)
got = {b["address"]: b["expected_share"] for b in v["backends"]}
print("expected_share: " + ", ".join(f"{a} {s}" for a, s in got.items()))
bad = [f"{a} {got.get(a)} (want {w})" for a, w in want.items()
       if got.get(a) is None or abs(got[a] - w) > 0.001]
if bad:
    print("expected_share: " + "; ".join(bad)); sys.exit(1)
PY
	cat "$STATE_DIR/shares.err" >&2
}

# Rule: a config whose health check cannot run (interval 0, on the VIP or
# on one backend) or names an unknown type (icmp) is refused whole by
# `ballast apply -f` and by --dry-run: exit 1, the message naming the field,
# nothing changed, nothing logged (health transitions aside), ballastd still
# running. Each bad file also changes a weight and adds a VIP, so that a
# partial apply would show.
test_bad_check_config() {
	local good=$STATE_DIR/ballast.yaml bad rc name field mode
	{
		cfg_head
		cfg_vip "$VIP1" "$HTTP_PORT" tcp "{type: tcp, $TIMING}" \
			"$(be 1 "$BE1")" "$(be 1 "$BE2")" "$(be 1 "$BE3")"
	} >"$good"
	lb_start "$good"
	wait_all_up "$VIP_TCP" "$BE1" "$BE2" "$BE3"
	snapshot "$STATE_DIR/before"

	# name|VIP check|be2's extra|the field the message must name
	local cases=(
		"interval|{type: http, interval: 0ms}||vips\\[0\\]\\.health_check\\.interval"
		"icmp|{type: icmp}||vips\\[0\\]\\.health_check\\.type.*icmp"
		"backend-interval|{type: tcp, $TIMING}|health_check: {interval: 0ms}|vips\\[0\\]\\.backends\\[1\\]\\.health_check\\.interval"
	)
	local c vcheck extra
	for c in "${cases[@]}"; do
		IFS='|' read -r name vcheck extra field <<<"$c"
		bad=$STATE_DIR/bad-$name.yaml
		{
			cfg_head
			cfg_vip "$VIP1" "$HTTP_PORT" tcp "$vcheck" \
				"$(be 3 "$BE1")" "$(be 1 "$BE2" "$extra")" "$(be 1 "$BE3")"
			cfg_vip "$VIP2" "$HTTP_PORT" tcp "" "$(be 1 "$BE3")"
		} >"$bad"
		for mode in apply dry-run; do
			rc=0
			if [[ $mode == apply ]]; then
				lb_cli apply -f "$bad" >"$STATE_DIR/bad.out" 2>"$STATE_DIR/bad.err" || rc=$?
			else
				lb_cli apply -f "$bad" --dry-run >"$STATE_DIR/bad.out" 2>"$STATE_DIR/bad.err" || rc=$?
			fi
			e2e_log "$mode of bad-$name.yaml: status $rc: $(oneline <"$STATE_DIR/bad.err")"
			((rc == 1)) || problem "$mode of a config with $name exited $rc, want 1 (stdout: $(oneline <"$STATE_DIR/bad.out"))"
			grep -qE "$field" "$STATE_DIR/bad.err" ||
				problem "$mode of a config with $name: message does not name /$field/: $(oneline <"$STATE_DIR/bad.err")"
		done
	done

	pid_alive "$(lb_pid)" || fail "ballastd died after the refused applies"
	snapshot "$STATE_DIR/after"
	local what
	for what in backends vips log; do
		cmp -s "$STATE_DIR/before.$what" "$STATE_DIR/after.$what" ||
			problem "a refused config changed the $what: $(diff "$STATE_DIR/before.$what" "$STATE_DIR/after.$what" | grep '^[<>]' | head -n 4 | oneline)"
	done
	fail_if_problems
}

# snapshot PREFIX: the live state, to compare: PREFIX.backends and
# PREFIX.vips (backend and vip lists without last_check, which changes with
# every check), PREFIX.log (the change log without health-check entries).
snapshot() {
	local what
	for what in backend vip; do
		lb_cli "$what" list -o json | "$PYTHON" -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k != "last_check"}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
print(json.dumps(strip(json.load(sys.stdin)), indent=1, sort_keys=True))' >"$1.${what}s"
	done
	lb_log_json "$1.logall"
	"$PYTHON" -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    if e["actor"] != "health-check":
        print(e["time"], e["actor"], e["change"])' "$1.logall" >"$1.log"
}

E2E_TESTS=(
	test_tcp_check
	test_udp_check
	test_per_backend_override
	test_expected_share_excludes_drained
	test_bad_check_config
)

e2e_main "$@"
