#!/usr/bin/env bash
#
# test_resilience.sh: Ballast under failure and change (issue #3). Health
# checks taking dead backends out and bringing them back, fail-open, drains,
# weight 0, `ballast apply` and SIGHUP, weight changes under heavy traffic,
# and a hitless restart after `kill -9`, all with real traffic from a client
# namespace through ballastd's XDP balancer to the backends (lib.sh).
#
# Usage: tests/e2e/test_resilience.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
#   E2E_KEEP_STATE=1 keeps the logs (the path is printed at the start).
#   E2E_FLIPS=N: weight flips in test_atomic_weight_changes (default 1000).
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed. About 2 min 40 s
# on the 2-core development VM, 90 to 115 s of it the 1,000 applies.
#
# Each test starts its own ballastd on the shared topology, with four
# backends here (be4 is the one no flow may ever reach in
# test_atomic_weight_changes). Between tests every backend server is
# restarted if a test killed it, and its health path set back to "up".
#
# Backends are made to fail in two ways (lib.sh, backend_server.py):
#   backend_kill NAME: the server process dies; its ports refuse connections
#     (the health check sees "connection refused", clients see a reset).
#   backend_health NAME sick|flap|up: only the health path (/healthz, at
#     the backend's own address) answers 503, or 503/200 alternately; the
#     VIP's traffic is still served.
#
# Timing: no test asserts a time tighter than the rule it checks; where a
# rule has a time in it (failover within interval x fall + 1 s, --timeout,
# --idle),
# the assertion is that time, measured from the event by a poll that always
# starts once more after the deadline.
#
# Statistics: a share check over n flows allows 5 standard deviations of a
# binomial share (sqrt(p(1-p)/n)), at least 5 percentage points: a false
# failure less than once in a million checks. The batch checks use N=1000
# flows and 7 pp (4.7 sd at p=1/3; at p=1/2 assert_shares widens it to its
# floor of 4.5 sd, 7.1 pp).

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

E2E_BACKENDS=4
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly N=1000
readonly TOL_PP=7
readonly FLOOD_PORT=9001
readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly VIP_UDP=$VIP1:$UDP_PORT/udp
readonly VIP_FLOOD=$VIP1:$FLOOD_PORT/udp
readonly VIP_NEW=$VIP2:$HTTP_PORT/tcp
readonly BE1=${BE_IPS[0]} BE2=${BE_IPS[1]} BE3=${BE_IPS[2]} BE4=${BE_IPS[3]}
readonly FLIPS=${E2E_FLIPS:-1000}
# Health checks for the tests that only need them to be quick; each test
# that depends on particular numbers spells its own.
readonly FAST_CHECK="{type: http, path: /healthz, interval: 250ms, timeout: 200ms, rise: 2, fall: 2}"

# --- Configs -------------------------------------------------------------------

# lb_start_tcp CHECK W1 W2 W3: ballastd with VIP1:80/tcp only.
lb_start_tcp() {
	local check=$1
	shift
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "$check" "$@"
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
}

# --- Assertions ------------------------------------------------------------------

# log_count LOG_JSON ACTOR CHANGE_REGEX [SINCE]: entries of `ballast log -o
# json` by ACTOR ("" for any) whose change matches CHANGE_REGEX (Python, from
# the start), at or after SINCE (unix seconds). The actor is the spec's word
# ("uid=0 pid=123", "health-check", "config", "reload"), which ballastd may
# follow with details after a space ("reload /etc/ballast/ballast.yaml").
log_count() {
	"$PYTHON" - "$@" <<'PY'
import json, re, sys
log = json.load(open(sys.argv[1])); actor = sys.argv[2]; rx = re.compile(sys.argv[3])
since = float(sys.argv[4]) * 1000 if len(sys.argv) > 4 and sys.argv[4] else 0
def by(e):
    a = e.get("actor", "")
    return not actor or a == actor or a.startswith(actor + " ")
print(sum(1 for e in log if by(e) and rx.match(e.get("change", "")) and e.get("unix_ms", 0) >= since))
PY
}

# log_first_ms LOG_JSON CHANGE_REGEX: unix_ms of the first entry whose change
# matches, or nothing.
log_first_ms() {
	"$PYTHON" - "$@" <<'PY'
import json, re, sys
rx = re.compile(sys.argv[2])
for e in json.load(open(sys.argv[1])):
    if rx.match(e.get("change", "")):
        print(e["unix_ms"]); break
PY
}

# re_quote TEXT: TEXT as a Python regex matching it literally.
re_quote() {
	"$PYTHON" -c 'import re, sys; print(re.escape(sys.argv[1]))' "$1"
}

# new_flows VIP ADDRESS: the balancer's new_flows for one backend, now.
new_flows() {
	stats_json "$STATE_DIR/nf.json"
	stat_value "$STATE_DIR/nf.json" "backend:$1:$2:new_flows"
}

# --- Tests -----------------------------------------------------------------------

# Rule: a backend whose server dies leaves the VIP's Maglev table within
# interval x fall + 1 s (1 s x 3 + 1 s = 4 s here) of its death; every
# connection started after it left succeeds, and the other backends share
# its traffic by weight.
test_failover_time() {
	local check="{type: http, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3}"
	local limit=4 t_kill seen t_out log_ms stream=$STATE_DIR/stream.json pid
	lb_start_tcp "$check" 1 1 1 -
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"

	stream_start "$stream" 50 --timeout 2
	pid=$STREAM_PID
	sleep 1.5
	t_kill=$(now)
	backend_kill be1
	if ! seen=$(wait_backend "$VIP_TCP" "$BE1" 'b["table_entries"] == 0' \
		"$(time_add "$t_kill" "$limit")" 2>"$STATE_DIR/wait.err"); then
		stream_stop "$stream" "$pid"
		fail "be1 still in the Maglev table ${limit}s after its server died (interval 1s x fall 3 + 1s): $(cat "$STATE_DIR/wait.err")"
	fi
	t_out=${seen#* }
	e2e_log "be1 out of rotation $(time_diff "${seen%% *}" "$t_kill")..$(time_diff "$t_out" "$t_kill") s after the kill"
	[[ $(backend_row "$VIP_TCP" "$BE1" health) == down ]] ||
		problem "be1 has no table entries but its health is $(backend_row "$VIP_TCP" "$BE1" health), not down"

	# 4 s of new connections after it left: about 200.
	sleep 4
	stream_stop "$stream" "$pid"
	assert_stream "$stream" "$t_out" be1=0 be2=1 be3=1

	lb_log_json "$STATE_DIR/log.json"
	log_ms=$(log_first_ms "$STATE_DIR/log.json" "backend health $(re_quote "$VIP_TCP $BE1") up -> down")
	if [[ -z $log_ms ]]; then
		problem "ballast log has no 'backend health $VIP_TCP $BE1 up -> down' entry: $(head -c 600 "$STATE_DIR/log.json" | oneline)"
	else
		e2e_log "log: be1 up -> down $(awk -v l="$log_ms" -v k="$t_kill" 'BEGIN { printf "%.2f", l / 1000 - k }') s after the kill"
		awk -v l="$log_ms" -v k="$t_kill" -v lim="$limit" 'BEGIN { exit !(l / 1000 - k <= lim) }' ||
			problem "the log's up -> down entry is $(awk -v l="$log_ms" -v k="$t_kill" 'BEGIN { printf "%.2f", l / 1000 - k }') s after the kill, over ${limit}s"
		[[ $(log_count "$STATE_DIR/log.json" health-check "backend health $(re_quote "$VIP_TCP $BE1") up -> down") -ge 1 ]] ||
			problem "the up -> down entry's actor is not health-check"
	fi
	fail_if_problems
}

# Rule: new flows go only to backends that are up, by weight: 1 of 3 down,
# the other 2 share by weight; 2 of 3 down, all go to the last; all down with
# fail_open false, new flows are dropped (drop_no_backend); all down with
# fail_open true, they are still sent to the backends. A dead backend that
# comes back is up again after `rise` passes and takes its share again.
test_partial_failures() {
	local before after name i
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp false "$FAST_CHECK" 1 1 2 -
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"

	# 1 of 3 down: be2 and be3 share 1:2.
	backend_kill be1
	wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["health"] == "down" and b["table_entries"] == 0'
	tcp_batch "$STATE_DIR/one.json" "$N"
	assert_all_ok "$STATE_DIR/one.json" "$N"
	assert_shares "$STATE_DIR/one.json" "$TOL_PP" be1=0 be2=1 be3=2
	stats_json "$STATE_DIR/stats1.json"
	"$PYTHON" - "$STATE_DIR/stats1.json" "$VIP_TCP" "$BE1" "$BE2" "$BE3" <<'PY' >"$STATE_DIR/share.err" || problem "expected_share with be1 down: $(tail -n 1 "$STATE_DIR/share.err")"
import json, sys
s = json.load(open(sys.argv[1]))
v = next(v for v in s["vips"] if v["vip"] == sys.argv[2])
got = {b["address"]: b["expected_share"] for b in v["backends"]}
want = {sys.argv[3]: 0.0, sys.argv[4]: 1 / 3, sys.argv[5]: 2 / 3}
bad = [f"{a} {got.get(a)} (want {w:.3f})" for a, w in want.items()
       if got.get(a) is None or abs(got[a] - w) > 0.001]
if bad:
    print("; ".join(bad)); sys.exit(1)
PY

	# 2 of 3 down: everything to be3.
	backend_kill be2
	wait_backend_for 5 "$VIP_TCP" "$BE2" 'b["health"] == "down" and b["table_entries"] == 0'
	tcp_batch "$STATE_DIR/two.json" 300
	assert_all_ok "$STATE_DIR/two.json" 300
	assert_shares "$STATE_DIR/two.json" "$TOL_PP" be1=0 be2=0 be3=1

	# 3 of 3 down, fail_open false: new connections are dropped, counted.
	backend_kill be3
	wait_backend_for 5 "$VIP_TCP" "$BE3" 'b["health"] == "down"'
	stats_json "$STATE_DIR/stats-before.json"
	client_run "$STATE_DIR/none.json" --vip "$VIP1" --port "$HTTP_PORT" -n 20 \
		--workers 20 --timeout 1
	stats_json "$STATE_DIR/stats-after.json"
	[[ $(json_get "$STATE_DIR/none.json" ok) == 0 ]] ||
		problem "all backends down, fail_open false: $(json_get "$STATE_DIR/none.json" ok) of 20 connections answered"
	before=$(stat_value "$STATE_DIR/stats-before.json" reason:drop_no_backend)
	after=$(stat_value "$STATE_DIR/stats-after.json" reason:drop_no_backend)
	((after - before >= 20)) ||
		problem "all backends down, fail_open false: drop_no_backend rose by $((after - before)) for 20 new connections"
	for i in 0 1 2; do
		before=$(stat_value "$STATE_DIR/stats-before.json" "backend:$VIP_TCP:${BE_IPS[$i]}:packets")
		after=$(stat_value "$STATE_DIR/stats-after.json" "backend:$VIP_TCP:${BE_IPS[$i]}:packets")
		((after == before)) ||
			problem "all backends down, fail_open false: ${BE_NAMES[$i]} was sent $((after - before)) packets"
	done

	# They come back: up again after `rise` passes, shares by weight.
	for name in be1 be2 be3; do
		backend_spawn "$name"
	done
	for name in be1 be2 be3; do
		backend_wait_ready "$name" || fail "backend $name did not restart"
	done
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"
	backends_reset_counts
	tcp_batch "$STATE_DIR/back.json" "$N"
	assert_all_ok "$STATE_DIR/back.json" "$N"
	assert_shares "$STATE_DIR/back.json" "$TOL_PP" be1=1 be2=1 be3=2

	# All down again, fail_open true (a fresh ballastd: each backend's first
	# check decides): new connections still reach the backends, which
	# refuse them (a reset, not a timeout), and their counters rise.
	for name in be1 be2 be3; do
		backend_kill "$name"
	done
	lb_stop
	lb_remove
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp true "$FAST_CHECK" 1 1 2 -
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	for i in 0 1 2; do
		wait_backend_for 5 "$VIP_TCP" "${BE_IPS[$i]}" 'b["health"] == "down"'
	done
	stats_json "$STATE_DIR/stats-before.json"
	# 60 connections, shares 1/4, 1/4, 1/2: each backend gets at least one
	# but for a chance of (3/4)^60 = 3e-8.
	client_run "$STATE_DIR/open.json" --vip "$VIP1" --port "$HTTP_PORT" -n 60 \
		--workers 20 --timeout 2
	stats_json "$STATE_DIR/stats-after.json"
	"$PYTHON" - "$STATE_DIR/open.json" <<'PY' >"$STATE_DIR/open.err" || problem "fail_open true, all down: $(tail -n 1 "$STATE_DIR/open.err")"
import json, sys
r = json.load(open(sys.argv[1]))
if r["ok"] or set(r["errors"]) - {"refused", "reset"}:
    print(f"want every connection refused by a backend, got {r['ok']} answered, errors {r['errors']}")
    sys.exit(1)
PY
	for i in 0 1 2; do
		before=$(stat_value "$STATE_DIR/stats-before.json" "backend:$VIP_TCP:${BE_IPS[$i]}:packets")
		after=$(stat_value "$STATE_DIR/stats-after.json" "backend:$VIP_TCP:${BE_IPS[$i]}:packets")
		((after > before)) ||
			problem "fail_open true, all down: ${BE_NAMES[$i]}'s packet counter did not rise ($before -> $after)"
	done
	before=$(stat_value "$STATE_DIR/stats-before.json" reason:drop_no_backend)
	after=$(stat_value "$STATE_DIR/stats-after.json" reason:drop_no_backend)
	((after == before)) || problem "fail_open true: drop_no_backend rose by $((after - before))"
	fail_if_problems
}

# Rule: a backend that goes down leaves the table, and its established flows
# move to the other backends on their next packet: a long-lived UDP flow is
# answered by another backend from then on (and only by it); a long-lived
# TCP connection to it is reset (the backend it moved to never knew it).
test_down_moves_established() {
	local udp=$STATE_DIR/udp-hold.json tcp=$STATE_DIR/hold.json upid tpid t_down
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "$FAST_CHECK" 1 1 1 -
		cfg_vip_weights "$VIP1" "$UDP_PORT" udp "" "${FAST_CHECK%\}}, port: $HTTP_PORT}" 1 1 1 -
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"
	wait_all_up "$VIP_UDP" 5 "$BE1" "$BE2" "$BE3"
	hold_start "$udp" 2 be1 --port "$UDP_PORT" --proto udp --timeout 1
	upid=$HOLD_PID
	hold_start "$tcp" 1 be1
	tpid=$HOLD_PID
	sleep 0.5

	# Down by its health check; its server still answers the VIPs.
	backend_health be1 sick
	wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["health"] == "down" and b["table_entries"] == 0'
	wait_backend_for 5 "$VIP_UDP" "$BE1" 'b["health"] == "down" and b["table_entries"] == 0'
	t_down=$(now)
	sleep 1.5
	: >"$udp.stop"
	: >"$tcp.stop"
	client_wait "$upid" "$udp"
	client_wait "$tpid" "$tcp"
	"$PYTHON" - "$udp" "$tcp" "$t_down" <<'PY' >"$STATE_DIR/moves.err" || fail "$(cat "$STATE_DIR/moves.err")"
import json, sys
udp, tcp = (json.load(open(p))["connections"] for p in sys.argv[1:3]); t_down = float(sys.argv[3])
bad = []
for c in udp:
    m = c["moves"]
    print(f"UDP flow from port {c['sport']}: answers {c['answers']}, moves {m}, {c['failed']} lost", file=sys.stderr)
    if not m:
        bad.append(f"UDP flow from port {c['sport']} still answered only by be1 after be1 went down")
    elif len(m) > 1 or m[0][1] != "be1":
        bad.append(f"UDP flow from port {c['sport']} moved more than once: {m}")
    elif m[0][0] > t_down + 0.5:
        # Its next datagram after the swap (one every 0.1 s) moves it.
        bad.append(f"UDP flow from port {c['sport']} moved {m[0][0] - t_down:.2f}s after be1 was seen down")
    if c["failed"]:
        bad.append(f"UDP flow from port {c['sport']}: {c['failed']} datagrams unanswered ({c['errors']})")
for c in tcp:
    print(f"TCP connection from port {c['sport']}: answers {c['answers']}, errors {c['errors']}, dead {c['dead']}",
          file=sys.stderr)
    if not c["dead"] or set(c["answers"]) != {"be1"}:
        bad.append(f"TCP connection from port {c['sport']} to be1 not moved (reset) after be1 went down: "
                   f"answers {c['answers']}, dead {c['dead']}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
}

# Rule: with rise 2 and fall 2, a check that alternates pass and fail never
# has two equal results in a row, so a backend whose state is established
# never changes it: an up backend stays up, a down one stays down.
test_flapping_damped() {
	# A generous timeout: one slow answer would be a second failure in a row.
	local check="{type: http, path: /healthz, interval: 400ms, timeout: 300ms, rise: 2, fall: 2}"
	local t_flap n want=12 deadline
	lb_start_tcp "$check" 1 1 1 -
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"

	for state in up down; do
		if [[ $state == down ]]; then
			backend_health be1 sick
			wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["health"] == "down"'
		fi
		t_flap=$(now)
		: >"$STATE_DIR/be1.served"
		backend_health be1 flap
		deadline=$((SECONDS + 15))
		until n=$(grep -c '^check ' "$STATE_DIR/be1.served" || true); ((n >= want)); do
			((SECONDS <= deadline)) || fail "only $n health checks reached be1 in 15 s"
			sleep 0.1
		done
		# The machinery: the answers did alternate, one per check.
		awk '/^check / { if (NR > 1 && $4 == last) { print "two " $4 " in a row"; exit 1 } last = $4 }' \
			"$STATE_DIR/be1.served" >"$STATE_DIR/alt.err" ||
			fail "test machinery: be1's health answers did not alternate: $(cat "$STATE_DIR/alt.err")"
		e2e_log "be1 ($state), its checks answered: $(awk '/^check / { printf "%s ", $4 }' "$STATE_DIR/be1.served")"
		lb_log_json "$STATE_DIR/log.json"
		n=$(log_count "$STATE_DIR/log.json" "" "backend health $(re_quote "$VIP_TCP $BE1") " "$t_flap")
		((n == 0)) || problem "be1 was $state, its check alternated ($want checks): $n health transition(s) in the log: $(grep -o "backend health [^\"]*${BE1}[^\"]*" "$STATE_DIR/log.json" | tail -n 2 | oneline)"
		[[ $(backend_row "$VIP_TCP" "$BE1" health) == "$state" ]] ||
			problem "be1 was $state, its check alternated: now $(backend_row "$VIP_TCP" "$BE1" health)"
	done
	fail_if_problems
}

# Rule: a drained backend that fails and recovers stays drained, taking no
# new flows, until it is undrained.
test_recover_while_drained() {
	local nf
	lb_start_tcp "$FAST_CHECK" 1 1 1 -
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"
	lb_cli_ok backend drain "$VIP_TCP" "$BE1"
	wait_backend_for 2 "$VIP_TCP" "$BE1" 'b["drained"] is True and b["table_entries"] == 0'

	backend_health be1 sick
	wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["health"] == "down"'
	backend_health be1 up
	wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["health"] == "up"'
	[[ $(backend_row "$VIP_TCP" "$BE1" drained) == true ]] ||
		fail "be1 recovered while drained and is no longer drained: $(backend_row "$VIP_TCP" "$BE1")"
	[[ $(backend_row "$VIP_TCP" "$BE1" table_entries) == 0 ]] ||
		fail "be1 recovered while drained and is back in the table: $(backend_row "$VIP_TCP" "$BE1")"

	nf=$(new_flows "$VIP_TCP" "$BE1")
	tcp_batch "$STATE_DIR/drained.json" "$N"
	assert_all_ok "$STATE_DIR/drained.json" "$N"
	assert_shares "$STATE_DIR/drained.json" "$TOL_PP" be1=0 be2=1 be3=1
	[[ $(new_flows "$VIP_TCP" "$BE1") == "$nf" ]] ||
		fail "be1 (drained, recovered) got $(($(new_flows "$VIP_TCP" "$BE1") - nf)) new flows"

	lb_cli_ok backend undrain "$VIP_TCP" "$BE1"
	wait_backend_for 2 "$VIP_TCP" "$BE1" 'b["drained"] is False and b["table_entries"] > 0'
	# 300 flows at 1/3: be1 gets 100 +- 8; 50 is 6 sd below.
	tcp_batch "$STATE_DIR/undrained.json" 300
	assert_all_ok "$STATE_DIR/undrained.json" 300
	(($(json_get "$STATE_DIR/undrained.json" by_backend be1 2>/dev/null || echo 0) >= 50)) ||
		fail "be1 undrained answered $(json_get "$STATE_DIR/undrained.json" by_backend be1 2>/dev/null || echo 0) of 300"

	lb_log_json "$STATE_DIR/log.json"
	local what
	for what in "backend drain $VIP_TCP $BE1" "backend health $VIP_TCP $BE1 up -> down" \
		"backend health $VIP_TCP $BE1 down -> up" "backend undrain $VIP_TCP $BE1"; do
		(($(log_count "$STATE_DIR/log.json" "" "$(re_quote "$what")") >= 1)) ||
			problem "ballast log has no '$what'"
	done
	fail_if_problems
}

# Rule: weight 0 and drain stop a backend's new flows but keep its
# established ones: long-lived connections to it are answered by it
# throughout, while new connections go elsewhere.
test_weight_zero_keeps_established() {
	local hold=$STATE_DIR/hold.json nf
	lb_start_tcp "" 1 1 1 -
	hold_start "$hold" 2 be1,be2,be3

	lb_cli_ok backend set-weight "$VIP_TCP" "$BE1" 0
	wait_backend_for 2 "$VIP_TCP" "$BE1" 'b["table_entries"] == 0'
	nf=$(new_flows "$VIP_TCP" "$BE1")
	tcp_batch "$STATE_DIR/w0.json" "$N"
	assert_all_ok "$STATE_DIR/w0.json" "$N"
	assert_shares "$STATE_DIR/w0.json" "$TOL_PP" be1=0 be2=1 be3=1
	[[ $(new_flows "$VIP_TCP" "$BE1") == "$nf" ]] || fail "be1 (weight 0) got new flows"
	sleep 0.5

	lb_cli_ok backend set-weight "$VIP_TCP" "$BE1" 1
	lb_cli_ok backend drain "$VIP_TCP" "$BE1"
	wait_backend_for 2 "$VIP_TCP" "$BE1" 'b["drained"] is True and b["table_entries"] == 0'
	nf=$(new_flows "$VIP_TCP" "$BE1")
	tcp_batch "$STATE_DIR/drain.json" "$N"
	assert_all_ok "$STATE_DIR/drain.json" "$N"
	assert_shares "$STATE_DIR/drain.json" "$TOL_PP" be1=0 be2=1 be3=1
	[[ $(new_flows "$VIP_TCP" "$BE1") == "$nf" ]] || fail "be1 (drained) got new flows"
	sleep 0.5

	hold_stop "$hold"
	assert_held "$hold"
}

# Rule: `drain --wait` returns 0 once the backend has had no flow for
# --idle; while a flow stays open it gives up after --timeout with exit 1,
# saying how many flows are left.
test_drain_wait() {
	local hold=$STATE_DIR/hold.json rc=0 t0 t1 el lines dpid t_closed
	lb_start_tcp "" 1 1 1 -
	# Two long-lived connections on be1, nothing else on it.
	hold_start "$hold" 2 be1

	t0=$(now)
	lb_cli backend drain "$VIP_TCP" "$BE1" --wait --idle 2s --timeout 3s \
		>"$STATE_DIR/drain.out" 2>"$STATE_DIR/drain.err" || rc=$?
	t1=$(now)
	el=$(time_diff "$t1" "$t0")
	e2e_log "drain --wait --timeout 3s with 2 flows open: status $rc after ${el}s: $(oneline <"$STATE_DIR/drain.err")"
	((rc == 1)) || problem "drain --wait with 2 flows open exited $rc after ${el}s, want 1 (stdout: $(oneline <"$STATE_DIR/drain.out"))"
	lines=$(grep -c '' "$STATE_DIR/drain.err" || true)
	[[ $lines == 1 ]] || problem "drain --wait timeout: stderr has $lines lines, want one: $(oneline <"$STATE_DIR/drain.err")"
	"$PYTHON" - "$STATE_DIR/drain.err" <<'PY' ||
import re, sys
t = open(sys.argv[1]).read()
sys.exit(not (re.search(r"(?<![\d.])\b2\b(?!\.\d)", t) and "flow" in t.lower()))
PY
		problem "drain --wait timeout does not say that 2 flows are left: $(oneline <"$STATE_DIR/drain.err")"
	awk -v e="$el" 'BEGIN { exit !(e >= 2.9 && e <= 10) }' ||
		problem "drain --wait --timeout 3s gave up after ${el}s"
	[[ $(backend_row "$VIP_TCP" "$BE1" drained) == true ]] ||
		problem "be1 not drained after drain --wait timed out"

	lb_cli_ok backend undrain "$VIP_TCP" "$BE1"
	[[ $(backend_row "$VIP_TCP" "$BE1" drained) == false ]] || problem "be1 still drained after undrain"

	# Drain again, waiting; close the flows after 1.5 s.
	rc=0
	"$BUILD_DIR/ballast" backend drain "$VIP_TCP" "$BE1" --wait --idle 2s --timeout 30s \
		--socket "$LB_SOCK" >"$STATE_DIR/drain2.out" 2>"$STATE_DIR/drain2.err" &
	dpid=$!
	sleep 1.5
	pid_alive "$dpid" || problem "drain --wait returned while 2 flows were open: $(oneline <"$STATE_DIR/drain2.err")"
	hold_stop "$hold"
	assert_held "$hold"
	t_closed=$(json_get "$hold" closed_unix)
	wait "$dpid" || rc=$?
	t1=$(now)
	el=$(time_diff "$t1" "$t_closed")
	e2e_log "drain --wait --idle 2s: status $rc, ${el}s after the flows closed"
	((rc == 0)) || problem "drain --wait exited $rc after the flows closed: $(oneline <"$STATE_DIR/drain2.err")"
	# Not before the flows have been idle for --idle (100 ms allowed for
	# clock granularity: the client notes the close just after it), nor
	# long after.
	awk -v e="$el" 'BEGIN { exit !(e >= 1.9 && e <= 7) }' ||
		problem "drain --wait --idle 2s returned ${el}s after the last flow closed, want 2 s or later (and within 7 s)"
	fail_if_problems
}

# check_apply_json FILE APPLIED REGEX...: `ballast apply -o json` output in
# FILE says applied=APPLIED (true/false) and lists exactly one change per
# REGEX, and no other; prints what is wrong and fails otherwise.
check_apply_json() {
	"$PYTHON" - "$@" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1])); applied = sys.argv[2] == "true"; want = sys.argv[3:]
bad = []
if r.get("applied") is not applied:
    bad.append(f"applied is {r.get('applied')!r}, want {applied}")
ch = r.get("changes", [])
for w in want:
    if sum(1 for c in ch if re.search(w, c)) != 1:
        bad.append(f"changes has not exactly one /{w}/")
if len(ch) != len(want):
    bad.append(f"{len(ch)} changes, want {len(want)}: {ch}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
}

# Rule: `ballast apply` changes the live config to the file's as one change
# and prints one line per change; --dry-run prints the same and changes
# nothing; an invalid file changes nothing (exit 1); SIGHUP applies the
# edited config file; every change is in `ballast log` with its actor. A
# drain (not in any file) survives both.
test_apply_and_reload() {
	local a=$STATE_DIR/a.yaml b=$STATE_DIR/b.yaml bad=$STATE_DIR/bad.yaml
	local rc pid n line
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 1 1 1 -
		cfg_vip_weights "$VIP1" "$UDP_PORT" udp "" "" 1 1 - -
	} >"$a"
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 2 1 - -
		cfg_vip_weights "$VIP1" "$UDP_PORT" udp "" "" 1 1 - -
		cfg_vip_weights "$VIP2" "$HTTP_PORT" tcp "" "" - - 1 -
	} >"$b"
	cp "$a" "$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	lb_cli_ok backend drain "$VIP_TCP" "$BE2"

	lb_log_json "$STATE_DIR/log0.json"
	(($(log_count "$STATE_DIR/log0.json" config "vip add ") >= 2)) ||
		problem "ballast log: no 'vip add' entries by actor config at start: $(head -c 300 "$STATE_DIR/log0.json" | oneline)"
	"$PYTHON" - "$STATE_DIR/log0.json" <<'PY' >"$STATE_DIR/fmt.err" || problem "ballast log entries: $(cat "$STATE_DIR/fmt.err")"
import datetime, json, sys
bad = []
for e in json.load(open(sys.argv[1])):
    try:
        t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        if abs(t.timestamp() * 1000 - e["unix_ms"]) > 1:
            bad.append(f"time {e['time']} != unix_ms {e['unix_ms']}")
        if not isinstance(e["actor"], str) or not isinstance(e["change"], str):
            bad.append(f"actor/change not strings: {e}")
    except Exception as exc:
        bad.append(f"{e}: {exc!r}")
if bad:
    print("; ".join(bad[:3])); sys.exit(1)
PY
	lb_cli backend list -o json >"$STATE_DIR/list0.json"
	lb_cli vip list -o json >"$STATE_DIR/vips0.json"

	# The changes from a to b, as the spec words them.
	local want=(
		"^backend set-weight $(re_quote "$VIP_TCP $BE1 1 -> 2")\$"
		"^backend del $(re_quote "$VIP_TCP $BE3")\$"
		"^vip add $(re_quote "$VIP_NEW")( |\$)"
		"^backend add $(re_quote "$VIP_NEW $BE3")( |\$)"
	)

	# --dry-run: the diff, and nothing changed, nothing logged.
	lb_cli apply -f "$b" --dry-run >"$STATE_DIR/dry.txt" 2>"$STATE_DIR/dry.err" ||
		fail "apply --dry-run exited non-zero: $(oneline <"$STATE_DIR/dry.err")"
	e2e_log "apply --dry-run: $(oneline <"$STATE_DIR/dry.txt")"
	"$PYTHON" - "$STATE_DIR/dry.txt" "${want[@]}" <<'PY' >"$STATE_DIR/j.err" || problem "apply --dry-run output: $(cat "$STATE_DIR/j.err")"
import re, sys
lines = open(sys.argv[1]).read().splitlines()
bad = [f"not exactly one line /{w}/" for w in sys.argv[2:] if sum(1 for l in lines if re.search(w, l)) != 1]
if bad:
    print("; ".join(bad) + f" in {lines}"); sys.exit(1)
PY
	lb_cli apply -f "$b" --dry-run -o json >"$STATE_DIR/dry.json" ||
		fail "apply --dry-run -o json exited non-zero"
	check_apply_json "$STATE_DIR/dry.json" false "${want[@]}" >"$STATE_DIR/j.err" ||
		problem "apply --dry-run -o json: $(cat "$STATE_DIR/j.err")"
	lb_cli backend list -o json >"$STATE_DIR/list1.json"
	lb_cli vip list -o json >"$STATE_DIR/vips1.json"
	cmp -s "$STATE_DIR/list0.json" "$STATE_DIR/list1.json" ||
		problem "apply --dry-run changed the backend list: $(diff "$STATE_DIR/list0.json" "$STATE_DIR/list1.json" | oneline)"
	cmp -s "$STATE_DIR/vips0.json" "$STATE_DIR/vips1.json" ||
		problem "apply --dry-run changed the vip list"
	lb_log_json "$STATE_DIR/log1.json"
	cmp -s "$STATE_DIR/log0.json" "$STATE_DIR/log1.json" ||
		problem "apply --dry-run added to the log: $(diff "$STATE_DIR/log0.json" "$STATE_DIR/log1.json" | grep '^>' | head -n 3 | oneline)"

	# apply: the same changes, made and logged under the caller's uid/pid.
	rc=0
	"$BUILD_DIR/ballast" apply -f "$b" -o json --socket "$LB_SOCK" \
		>"$STATE_DIR/apply.json" 2>"$STATE_DIR/apply.err" &
	pid=$!
	wait "$pid" || rc=$?
	((rc == 0)) || fail "apply -f b exited $rc: $(oneline <"$STATE_DIR/apply.err")"
	check_apply_json "$STATE_DIR/apply.json" true "${want[@]}" >"$STATE_DIR/j.err" ||
		problem "apply -o json: $(cat "$STATE_DIR/j.err")"
	[[ $(backend_row "$VIP_TCP" "$BE1" weight) == 2 ]] || problem "after apply, be1's weight is $(backend_row "$VIP_TCP" "$BE1" weight), want 2"
	backend_row "$VIP_TCP" "$BE3" >/dev/null 2>&1 && problem "after apply, be3 is still in $VIP_TCP"
	[[ $(backend_row "$VIP_NEW" "$BE3" weight 2>/dev/null) == 1 ]] || problem "after apply, $VIP_NEW has no be3 of weight 1"
	[[ $(backend_row "$VIP_TCP" "$BE2" drained) == true ]] || problem "be2's drain did not survive apply"
	client_run "$STATE_DIR/new.json" --vip "$VIP2" --port "$HTTP_PORT" -n 50
	assert_all_ok "$STATE_DIR/new.json" 50
	assert_shares "$STATE_DIR/new.json" 0 be3=1
	lb_log_json "$STATE_DIR/log2.json"
	for line in "${want[@]}"; do
		n=$(log_count "$STATE_DIR/log2.json" "uid=0 pid=$pid" "${line#^}")
		((n == 1)) || problem "ballast log: $n entries /$line/ by actor 'uid=0 pid=$pid', want 1"
	done

	# Applying the same file again changes nothing.
	lb_cli apply -f "$b" -o json >"$STATE_DIR/again.json" || problem "second apply -f b failed"
	[[ $(json_get "$STATE_DIR/again.json" changes) == "[]" ]] ||
		problem "applying the live config again printed changes: $(json_get "$STATE_DIR/again.json" changes)"

	# An invalid file: exit 1, the error named, nothing changed or logged.
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 5 -3 - -
	} >"$bad"
	lb_cli backend list -o json >"$STATE_DIR/list2.json"
	rc=0
	lb_cli apply -f "$bad" >"$STATE_DIR/bad.out" 2>"$STATE_DIR/bad.err" || rc=$?
	e2e_log "apply of an invalid file: status $rc: $(oneline <"$STATE_DIR/bad.err")"
	((rc == 1)) || problem "apply of an invalid file (weight -3) exited $rc, want 1"
	grep -qi weight "$STATE_DIR/bad.err" || problem "apply of an invalid file does not name 'weight': $(oneline <"$STATE_DIR/bad.err")"
	rc=0
	lb_cli apply -f "$bad" --dry-run >/dev/null 2>&1 || rc=$?
	((rc == 1)) || problem "apply --dry-run of an invalid file exited $rc, want 1"
	lb_cli backend list -o json >"$STATE_DIR/list3.json"
	cmp -s "$STATE_DIR/list2.json" "$STATE_DIR/list3.json" ||
		problem "an invalid file changed the backend list: $(diff "$STATE_DIR/list2.json" "$STATE_DIR/list3.json" | oneline)"
	lb_log_json "$STATE_DIR/log3.json"
	cmp -s "$STATE_DIR/log2.json" "$STATE_DIR/log3.json" || problem "an invalid file added to the log"

	# SIGHUP: the edited config file is applied, logged as "reload".
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 3 1 - -
		cfg_vip_weights "$VIP1" "$UDP_PORT" udp "" "" 1 1 - -
		cfg_vip_weights "$VIP2" "$HTTP_PORT" tcp "" "" - - 1 -
	} >"$STATE_DIR/ballast.yaml"
	kill -HUP "$(lb_pid)"
	wait_backend_for 5 "$VIP_TCP" "$BE1" 'b["weight"] == 3'
	[[ $(backend_row "$VIP_TCP" "$BE2" drained) == true ]] || problem "be2's drain did not survive SIGHUP"
	lb_log_json "$STATE_DIR/log4.json"
	n=$(log_count "$STATE_DIR/log4.json" reload "$(re_quote "backend set-weight $VIP_TCP $BE1 2 -> 3")\$")
	((n == 1)) || problem "ballast log: $n entries 'backend set-weight $VIP_TCP $BE1 2 -> 3' by actor reload, want 1: $(tail -c 300 "$STATE_DIR/log4.json" | oneline)"

	# SIGHUP with an invalid file: nothing changes, ballastd carries on.
	cp "$bad" "$STATE_DIR/ballast.yaml"
	lb_cli backend list -o json >"$STATE_DIR/list4.json"
	kill -HUP "$(lb_pid)"
	sleep 1
	pid_alive "$(lb_pid)" || fail "ballastd died on SIGHUP with an invalid config"
	lb_cli backend list -o json >"$STATE_DIR/list5.json"
	cmp -s "$STATE_DIR/list4.json" "$STATE_DIR/list5.json" ||
		problem "SIGHUP with an invalid file changed the backend list"
	lb_log_json "$STATE_DIR/log5.json"
	cmp -s "$STATE_DIR/log4.json" "$STATE_DIR/log5.json" || problem "SIGHUP with an invalid file added to the log"

	# --since: nothing changed in the last 0.5 s (1 s idle), the reload did
	# within the last minute.
	lb_log_json "$STATE_DIR/since.json" --since 500ms
	[[ $("$PYTHON" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$STATE_DIR/since.json") == 0 ]] ||
		problem "ballast log --since 500ms, 1 s after the last change: $(head -c 200 "$STATE_DIR/since.json" | oneline)"
	lb_log_json "$STATE_DIR/since.json" --since 1m
	(($(log_count "$STATE_DIR/since.json" reload "backend set-weight ") == 1)) ||
		problem "ballast log --since 1m lacks the reload"
	fail_if_problems
}

# Rule: a weight change swaps a VIP's table as one unit, and `ballast apply`
# makes a whole config one change. E2E_FLIPS (1,000) applies alternate two
# configs under a flood of new UDP flows plus a stream of new TCP
# connections:
#   VIP1:80/tcp    {be1:1, be2:1, be3:0, be4:0} / {be1:0, be2:1, be3:1, be4:0}
#   VIP1:9001/udp  {be1:1, be2:0, be3:0, be4:0} / {be1:0, be2:0, be3:1, be4:0}
# The UDP VIP's two sets have no backend in common: an apply that changed
# be1 and be3 in two steps would leave it an empty table (or one with both)
# in between. Never a drop_no_backend, never a failed request, never a
# packet to a backend of weight 0 in both sets (be4; be2 on the UDP VIP).
test_atomic_weight_changes() {
	local a=$STATE_DIR/a.yaml b=$STATE_DIR/b.yaml i rc fails=0 first_err='' t0 el n
	local srcs=() stream=$STATE_DIR/tcp.json spid fpid flood=$STATE_DIR/flood.json
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 1 1 0 0
		cfg_vip_weights "$VIP1" "$FLOOD_PORT" udp "" "" 1 0 0 0
	} >"$a"
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "" 0 1 1 0
		cfg_vip_weights "$VIP1" "$FLOOD_PORT" udp "" "" 0 0 1 0
	} >"$b"
	cp "$a" "$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"

	# The flood's sources: 128 more addresses of the client's; 128 x 64,512
	# ports = 8.2 million flows before one repeats (the connection table
	# holds 1M: a repeat would be an established flow, not a new one).
	for i in $(seq 100 227); do
		srcs+=("10.231.0.$i")
	done
	printf 'addr add %s/'"$E2E_SUBNET_LEN"' dev eth0\n' "${srcs[@]}" | ip -n "$NS_CL" -batch -
	stats_json "$STATE_DIR/stats0.json"
	stream_start "$stream" 40 --timeout 5
	spid=$STREAM_PID
	client_bg "$flood" --vip "$VIP1" --port "$FLOOD_PORT" --flood \
		--src "$(IFS=,; echo "${srcs[*]}")" --stop-file "$flood.stop"
	fpid=$CLIENT_PID
	sleep 1

	# Each flip leaves the UDP VIP one backend with weight > 0, which the
	# pre-apply audit refuses: --force.
	t0=$(now)
	for ((i = 0; i < FLIPS; )); do
		rc=0
		if ((i % 2 == 0)); then
			lb_cli apply -f "$b" --force >/dev/null 2>"$STATE_DIR/apply.err" || rc=$?
		else
			lb_cli apply -f "$a" --force >/dev/null 2>"$STATE_DIR/apply.err" || rc=$?
		fi
		i=$((i + 1))
		if ((rc != 0)); then
			fails=$((fails + 1))
			[[ -n $first_err ]] || first_err="apply $i: status $rc: $(oneline <"$STATE_DIR/apply.err")"
			# The test has failed; 10 failures say enough.
			((fails < 10)) || break
		fi
	done
	el=$(time_diff "$(now)" "$t0")
	e2e_log "$i applies in ${el}s, $fails failed"
	sleep 1
	: >"$flood.stop"
	client_wait "$fpid" "$flood"
	stream_stop "$stream" "$spid"
	stats_json "$STATE_DIR/stats1.json"
	((fails == 0)) || fail "$fails of $i applies failed; first: $first_err"

	"$PYTHON" - "$STATE_DIR/stats0.json" "$STATE_DIR/stats1.json" "$flood" "$VIP_TCP" "$VIP_FLOOD" "$BE4" "$BE2" \
		<<'PY' >"$STATE_DIR/atomic.err" 2>&1 || problem "$(tail -n 1 "$STATE_DIR/atomic.err")"
import json, sys
s0, s1 = (json.load(open(p)) for p in sys.argv[1:3])
flood = json.load(open(sys.argv[3])); vips = sys.argv[4:6]; be4, be2 = sys.argv[6:8]
def reason(s, name):
    return next(r["packets"] for r in s["reasons"] if r["reason"] == name)
def vip(s, key):
    return next(v for v in s["vips"] if v["vip"] == key)
bad = []
d = reason(s1, "drop_no_backend") - reason(s0, "drop_no_backend")
if d:
    bad.append(f"drop_no_backend rose by {d}")
for key, addr, name in ((vips[0], be4, "be4"), (vips[1], be4, "be4"), (vips[1], be2, "be2")):
    b = next(b for b in vip(s1, key)["backends"] if b["address"] == addr)
    if b["packets"] or b["new_flows"]:
        bad.append(f"{name} (weight 0 in both sets) got {b['packets']} packets, {b['new_flows']} new flows on {key}")
fl = vip(s1, vips[1])["packets"] - vip(s0, vips[1])["packets"]
nf = vip(s1, vips[1])["new_flows"] - vip(s0, vips[1])["new_flows"]
print(f"flood: {flood['sent']} sent at {flood['rate_pps']}/s; the balancer forwarded {fl} ({nf} new flows); "
      f"tx_forwarded {reason(s1, 'tx_forwarded') - reason(s0, 'tx_forwarded')}")
if fl < flood["sent"] * 0.5:
    bad.append(f"only {fl} of {flood['sent']} flood packets forwarded: was the load there?")
if nf < fl * 0.9:
    bad.append(f"test machinery: only {nf} of {fl} flood packets were new flows")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	cat "$STATE_DIR/atomic.err" >&2
	assert_all_ok "$stream" "$(json_get "$stream" ok)"
	[[ $(backend_count be4 tcp "$VIP1" "$HTTP_PORT") == 0 ]] ||
		problem "be4 served $(backend_count be4 tcp "$VIP1" "$HTTP_PORT") TCP connections"
	# The flips happened: every apply logged its changes.
	lb_log_json "$STATE_DIR/log.json"
	n=$(log_count "$STATE_DIR/log.json" "" "backend set-weight $(re_quote "$VIP_TCP $BE3") ")
	((n == i)) || problem "ballast log has $n set-weight entries for be3, want one per apply ($i)"
	printf 'addr del %s/'"$E2E_SUBNET_LEN"' dev eth0\n' "${srcs[@]}" | ip -n "$NS_CL" -batch - || true
	fail_if_problems
}

# Rule: after `kill -9` the XDP program stays attached and the maps stay
# pinned; a new ballastd with the same config, pin dir and socket adopts the
# live state: no request fails, no established flow changes backend, the
# backend ids, the drain and the counters carry over.
test_hitless_restart() {
	local check="{type: http, path: /healthz, interval: 500ms, timeout: 300ms, rise: 2, fall: 2}"
	local hold=$STATE_DIR/hold.json tcp=$STATE_DIR/tcp.json udp=$STATE_DIR/udp.json
	local tpid upid wpid pid m t_restart why
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "$check" 1 1 1 -
		cfg_vip_weights "$VIP1" "$UDP_PORT" udp "" "" 1 1 1 -
	} >"$STATE_DIR/ballast.yaml"
	lb_start "$STATE_DIR/ballast.yaml"
	wait_all_up "$VIP_TCP" 5 "$BE1" "$BE2" "$BE3"
	hold_start "$hold" 2 be1,be2,be3
	lb_cli_ok backend drain "$VIP_TCP" "$BE3"
	wait_backend_for 2 "$VIP_TCP" "$BE3" 'b["table_entries"] == 0'

	rm -f "$STATE_DIR/xdp.stop"
	xdp_watch "$STATE_DIR/xdp.log" "$STATE_DIR/xdp.stop" &
	wpid=$!
	stream_start "$tcp" 40 --timeout 3
	tpid=$STREAM_PID
	client_bg "$udp" --vip "$VIP1" --port "$UDP_PORT" --proto udp --stream 20 \
		--timeout 2 --udp-sport-base 30000 --stop-file "$udp.stop"
	upid=$CLIENT_PID
	sleep 1.5

	lb_cli backend list -o json >"$STATE_DIR/list0.json"
	stats_json "$STATE_DIR/stats0.json"
	pid=$(lb_pid)
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	rm -f "$STATE_DIR/pids/ballastd"
	e2e_log "ballastd (pid $pid) killed with SIGKILL"
	lb_xdp_attached || problem "XDP program detached when ballastd was killed"
	for m in vips backends maglev_tables conn_table vip_stats backend_stats reason_stats; do
		[[ -e $PIN_DIR/$m ]] || problem "pin $PIN_DIR/$m gone after kill -9"
	done
	sleep 1

	t_restart=$(now)
	lb_start "$STATE_DIR/ballast.yaml"
	# Adopted as the live table implies, not relearnt: the moment it is
	# ready, be1 and be2 are up and in the table, be3 drained.
	lb_cli backend list -o json >"$STATE_DIR/list-ready.json"
	"$PYTHON" - "$STATE_DIR/list-ready.json" "$VIP_TCP" "$BE1" "$BE2" "$BE3" <<'PY' >"$STATE_DIR/ready.err" ||
import json, sys
rows = {b["address"]: b for b in json.load(open(sys.argv[1])) if b["vip"] == sys.argv[2]}
bad = []
for a in sys.argv[3:5]:
    b = rows.get(a, {})
    if b.get("health") != "up" or not b.get("table_entries"):
        bad.append(f"{a}: health {b.get('health')}, {b.get('table_entries')} table entries")
b = rows.get(sys.argv[5], {})
if b.get("drained") is not True or b.get("table_entries"):
    bad.append(f"{sys.argv[5]}: drained {b.get('drained')}, {b.get('table_entries')} table entries")
if bad:
    print("right after the restart: " + "; ".join(bad)); sys.exit(1)
PY
		problem "$(cat "$STATE_DIR/ready.err")"
	sleep 2
	lb_cli backend list -o json >"$STATE_DIR/list1.json"
	stats_json "$STATE_DIR/stats1.json"

	: >"$STATE_DIR/xdp.stop"
	stream_stop "$tcp" "$tpid"
	: >"$udp.stop"
	client_wait "$upid" "$udp"
	hold_stop "$hold"
	wait "$wpid"

	e2e_log "XDP program on the lb's eth0: $(oneline <"$STATE_DIR/xdp.log")"
	grep -q ' none$' "$STATE_DIR/xdp.log" &&
		problem "XDP detached during the restart: $(oneline <"$STATE_DIR/xdp.log")"
	"$PYTHON" - "$hold" <<'PY' >"$STATE_DIR/held.err" || problem "$(cat "$STATE_DIR/held.err")"
import json, sys
bad = []
for c in json.load(open(sys.argv[1]))["connections"]:
    if c["failed"] or set(c["answers"]) != {c["backend"]}:
        bad.append(f"port {c['sport']} to {c['backend']}: answers {c['answers']}, {c['failed']} failed {c['errors']}")
if bad:
    print("long-lived connections broken by the restart: " + "; ".join(bad)); sys.exit(1)
PY
	"$PYTHON" - "$tcp" "$udp" <<'PY' >"$STATE_DIR/streams.err" || problem "$(cat "$STATE_DIR/streams.err")"
import json, sys
bad = []
for path, what in zip(sys.argv[1:], ("TCP", "UDP")):
    r = json.load(open(path))
    if r["failed"]:
        f = [q for q in r["requests"] if q[2].startswith("!")][:3]
        bad.append(f"{what}: {r['failed']} of {r['ok'] + r['failed']} new requests failed (first {f})")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	# New connections after the restart still avoid the drained be3.
	"$PYTHON" - "$tcp" "$t_restart" <<'PY' >"$STATE_DIR/drained.err" || problem "$(cat "$STATE_DIR/drained.err")"
import json, sys
reqs = [q for q in json.load(open(sys.argv[1]))["requests"] if q[0] >= float(sys.argv[2])]
n = sum(1 for q in reqs if q[2] == "be3")
if n:
    print(f"be3 (drained before the kill) answered {n} of {len(reqs)} new connections after the restart"); sys.exit(1)
PY
	why=$(adoption_problems "$STATE_DIR/list0.json" "$STATE_DIR/list1.json" \
		"$STATE_DIR/stats0.json" "$STATE_DIR/stats1.json") || problem "$why"
	fail_if_problems
}

E2E_TESTS=(
	test_failover_time
	test_partial_failures
	test_down_moves_established
	test_flapping_damped
	test_recover_while_drained
	test_weight_zero_keeps_established
	test_drain_wait
	test_apply_and_reload
	test_atomic_weight_changes
	test_hitless_restart
)

e2e_main "$@"
