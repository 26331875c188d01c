#!/usr/bin/env bash
#
# test_lifecycle.sh: ballastd's own life never stops forwarding (issue #15).
# A second start of the same command, SIGTERM then a start, kill -9 then a
# start, a start that fails (metrics port taken), and an upgrade from pins
# of an older compatible layout: each under a stream of new connections and
# with long-lived connections open, none of which may fail or move, with
# the XDP program on the interface throughout and ids, weights, counters
# and the change log carried over. Then the refusals: pins of another
# layout, --cleanup while a ballastd runs, a --socket path that is not a
# socket; descriptors, memory and log volume flat across hundreds of
# audits and changes; and the interface deleted and created again under
# a running ballastd.
#
# Usage: tests/e2e/test_lifecycle.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly BE1=${BE_IPS[0]} BE2=${BE_IPS[1]} BE3=${BE_IPS[2]}
# ballastd's default metrics listener (the config leaves metrics out).
readonly METRICS_PORT=9469

# --- Helpers -----------------------------------------------------------------

# lb_config: VIP1:80/tcp and VIP1:9000/udp over be1..be3, weights 1:1:1.
lb_config() {
	lb_write_config "$STATE_DIR/ballast.yaml" 1 1 1
}

# ballastd_again OUT: the same ballastd command as lb_start's, in the
# foreground (20 s at most); its output to OUT, its status returned.
ballastd_again() {
	local rc=0
	timeout 20 "${LB_NSENTER[@]}" "$BUILD_DIR/ballastd" --config "$STATE_DIR/ballast.yaml" \
		--socket "$LB_SOCK" --pin-dir "$PIN_DIR" >"$1" 2>&1 || rc=$?
	e2e_log "second ballastd exited $rc: $(oneline <"$1")"
	return "$rc"
}

# pins_listing: the pin directory's entries and the connection table's
# entry count, to compare before and after a refused start.
pins_listing() {
	ls "$PIN_DIR"
	bpftool map dump pinned "$PIN_DIR/conn_table" -j | "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)), "conn_table entries")'
}

# across DISRUPTION: ballastd serving, long-lived connections held (two on
# each backend, a request every 100 ms), new connections at 40 per second
# and the XDP program watched every 20 ms; then DISRUPTION (a function)
# runs; then: no new connection failed, none of the held ones failed or
# moved, the interface never went without the program, and the ballastd
# serving afterwards has the same backends (ids, weights, table entries),
# counters that only went up and every change-log entry from before.
across() {
	local disruption=$1 hold=$STATE_DIR/hold.json tcp=$STATE_DIR/tcp.json wpid tpid why
	lb_config
	lb_start "$STATE_DIR/ballast.yaml"
	for a in "$BE1" "$BE2" "$BE3"; do
		wait_backend_for 5 "$VIP_TCP" "$a" 'b["table_entries"] > 0'
	done
	hold_start "$hold" 2 be1,be2,be3
	rm -f "$STATE_DIR/xdp.stop"
	xdp_watch "$STATE_DIR/xdp.log" "$STATE_DIR/xdp.stop" &
	wpid=$!
	stream_start "$tcp" 40 --timeout 3
	tpid=$STREAM_PID
	sleep 1
	lb_cli_ok backend set-weight "$VIP_TCP" "$BE1" 1 # a change of ours in the log
	lb_cli backend list -o json >"$STATE_DIR/list0.json"
	stats_json "$STATE_DIR/stats0.json"
	lb_log_json "$STATE_DIR/log0.json"

	"$disruption"

	sleep 1.5
	lb_cli backend list -o json >"$STATE_DIR/list1.json"
	stats_json "$STATE_DIR/stats1.json"
	lb_log_json "$STATE_DIR/log1.json"
	"$PYTHON" - "$STATE_DIR/log0.json" "$STATE_DIR/log1.json" >"$STATE_DIR/log.err" <<'PY' ||
import json, sys
key = lambda e: (e["unix_ms"], e["actor"], e["change"])
before, after = (set(map(key, json.load(open(p)))) for p in sys.argv[1:3])
lost = sorted(before - after)
if not before or lost:
    print(f"{len(lost)} of {len(before)} change-log entries lost: {lost[:3]}"); sys.exit(1)
PY
		problem "the change log did not continue: $(cat "$STATE_DIR/log.err")"
	: >"$STATE_DIR/xdp.stop"
	stream_stop "$tcp" "$tpid"
	hold_stop "$hold"
	wait "$wpid"
	e2e_log "XDP program on the lb's eth0: $(oneline <"$STATE_DIR/xdp.log")"
	! grep -q ' none$' "$STATE_DIR/xdp.log" ||
		problem "the lb's eth0 was without an XDP program: $(oneline <"$STATE_DIR/xdp.log")"
	why=$(adoption_problems "$STATE_DIR/list0.json" "$STATE_DIR/list1.json" \
		"$STATE_DIR/stats0.json" "$STATE_DIR/stats1.json") || problem "$why"
	fail_if_problems
	assert_stream "$tcp" "" be1=1 be2=1 be3=1
	assert_held "$hold"
}

# expect_adopted: the ballastd just started adopted the pinned maps.
expect_adopted() {
	grep -q 'adopted the maps pinned in' "$STATE_DIR/ballastd.log" ||
		problem "the new ballastd did not adopt the pins: $(grep -m1 -E 'pinned|adopted' "$STATE_DIR/ballastd.log" | oneline)"
}

# --- Disruptions ---------------------------------------------------------------

# The same command again while ballastd runs: exit 1 naming the running
# one, and nothing changed (same program, the first daemon still answers
# and still sees its program attached).
second_start() {
	local out=$STATE_DIR/second.out rc=0 pid id status_id
	pid=$(lb_pid)
	id=$(lb_xdp_id)
	ballastd_again "$out" || rc=$?
	((rc == 1)) || problem "the second ballastd exited $rc, not 1: $(oneline <"$out")"
	grep -qF "another ballastd (pid $pid) serves eth0 from $PIN_DIR" "$out" ||
		problem "the second ballastd did not name the running one: $(oneline <"$out")"
	[[ $(lb_xdp_id) == "$id" ]] || problem "XDP program $id replaced by $(lb_xdp_id) by a second start"
	status_id=$(lb_status_field program_id)
	[[ $status_id == "$id" ]] || problem "ballast status says program $status_id, $id is attached"
	lb_cli audit >"$STATE_DIR/audit.out" 2>&1 || true
	! grep -qi 'not attached' "$STATE_DIR/audit.out" ||
		problem "the first ballastd's audit says its program is not attached: $(oneline <"$STATE_DIR/audit.out")"
}

# SIGTERM: exit 0 with the program left attached; then a start adopts.
sigterm_then_start() {
	local rc=0 id
	id=$(lb_xdp_id)
	lb_stop || rc=$?
	((rc == 0)) || problem "ballastd exited $rc on SIGTERM"
	[[ $(lb_xdp_id) == "$id" ]] || problem "XDP program $id gone after SIGTERM ('$(lb_xdp_id)' attached)"
	[[ -e $PIN_DIR/conn_table ]] || problem "pins removed by SIGTERM"
	sleep 0.5
	lb_start "$STATE_DIR/ballast.yaml"
	expect_adopted
}

# kill -9: nothing runs ballastd's teardown; a start adopts.
kill9_then_start() {
	local pid
	pid=$(lb_pid)
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	rm -f "$STATE_DIR/pids/ballastd"
	sleep 0.5
	lb_start "$STATE_DIR/ballast.yaml"
	expect_adopted
}

# A start that fails after the old daemon stopped: another process holds
# the metrics port. Nothing changes (same program, same pins); once the
# port is free, a start adopts.
failed_start() {
	local out=$STATE_DIR/failed.out rc=0 id holder before after
	lb_stop || problem "ballastd exited $? on SIGTERM"
	id=$(lb_xdp_id)
	before=$(pins_listing)
	# nsenter itself (it execs): $! is the holder's own pid.
	"${LB_NSENTER[@]}" "$PYTHON" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
open(sys.argv[2], "w").close(); time.sleep(120)' "$METRICS_PORT" "$STATE_DIR/port.held" &
	holder=$!
	track_pid port-holder "$holder"
	for _ in $(seq 50); do
		[[ -e $STATE_DIR/port.held ]] && break
		sleep 0.1
	done
	[[ -e $STATE_DIR/port.held ]] || problem "could not hold port $METRICS_PORT"
	ballastd_again "$out" || rc=$?
	((rc == 1)) || problem "ballastd started with port $METRICS_PORT taken: exit $rc, $(oneline <"$out")"
	grep -q "$METRICS_PORT" "$out" || problem "the failed start did not name port $METRICS_PORT: $(oneline <"$out")"
	[[ $(lb_xdp_id) == "$id" ]] || problem "XDP program $id replaced by '$(lb_xdp_id)' by a failed start"
	after=$(pins_listing)
	[[ $(head -n -1 <<<"$before") == "$(head -n -1 <<<"$after")" ]] ||
		problem "a failed start changed the pins: $(oneline <<<"$before") -> $(oneline <<<"$after")"
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	lb_start "$STATE_DIR/ballast.yaml"
	expect_adopted
}

# An upgrade from pins made before the meta map existed (layout 1, every
# other map the same): the new ballastd adopts them and adds the meta map.
upgrade_from_layout1() {
	lb_stop || problem "ballastd exited $? on SIGTERM"
	rm "$PIN_DIR/meta"
	lb_start "$STATE_DIR/ballast.yaml"
	expect_adopted
	[[ -e $PIN_DIR/meta ]] || problem "no meta map pinned after adopting layout-1 pins"
}

# --- Tests -----------------------------------------------------------------------

test_second_start_changes_nothing() {
	across second_start
}

test_sigterm_then_start_is_hitless() {
	across sigterm_then_start
	grep -q 'stays attached' "$STATE_DIR/ballastd.earlier.log" ||
		fail "the stopped ballastd did not say its program stays attached"
}

test_kill9_then_start_is_hitless() {
	across kill9_then_start
}

test_failed_start_changes_nothing() {
	across failed_start
}

test_upgrade_from_compatible_layout() {
	across upgrade_from_layout1
}

# Pins of a layout this ballastd cannot read (a synthetic older one: meta
# says layout 1): the start is refused with the way out, the pins and the
# program are left as they were and keep forwarding; the way out
# (--cleanup, then a start) works.
test_other_layout_refused() {
	local out=$STATE_DIR/layout.out rc=0 id before after
	lb_config
	lb_start "$STATE_DIR/ballast.yaml"
	tcp_batch "$STATE_DIR/warm.json" 50
	lb_stop || fail "ballastd exited $? on SIGTERM"
	# meta = {layout_version 1, pid 0, heartbeat, created, reserved}: 32 bytes.
	local zeros
	read -ra zeros <<<"$(printf '00 %.0s' $(seq 28))"
	bpftool map update pinned "$PIN_DIR/meta" key hex 00 00 00 00 \
		value hex 01 00 00 00 "${zeros[@]}"
	id=$(lb_xdp_id)
	before=$(pins_listing)
	ballastd_again "$out" || rc=$?
	((rc == 1)) || fail "ballastd adopted pins of layout 1: exit $rc, $(oneline <"$out")"
	grep -q "they have layout 1, this ballastd reads layout 2" "$out" ||
		fail "the refusal does not say which layouts: $(oneline <"$out")"
	grep -q -- "--cleanup" "$out" || fail "the refusal does not give the way out: $(oneline <"$out")"
	after=$(pins_listing)
	[[ $before == "$after" ]] || fail "a refused start changed the pins: $(oneline <<<"$before") -> $(oneline <<<"$after")"
	[[ $(lb_xdp_id) == "$id" ]] || fail "XDP program $id replaced by '$(lb_xdp_id)' by a refused start"
	tcp_batch "$STATE_DIR/after.json" 100
	assert_all_ok "$STATE_DIR/after.json" 100
	lb_remove
	lb_start "$STATE_DIR/ballast.yaml"
	grep -q 'pinned new maps' "$STATE_DIR/ballastd.log" || fail "no fresh start after --cleanup"
	tcp_batch "$STATE_DIR/fresh.json" 100
	assert_all_ok "$STATE_DIR/fresh.json" 100
}

# --cleanup while a ballastd serves the interface: refused, nothing removed.
test_cleanup_refused_while_running() {
	local out rc=0 id
	lb_config
	lb_start "$STATE_DIR/ballast.yaml"
	id=$(lb_xdp_id)
	out=$(lb_exec "$BUILD_DIR/ballastd" --cleanup --interface eth0 --pin-dir "$PIN_DIR" 2>&1) || rc=$?
	((rc == 1)) || fail "--cleanup with ballastd running exited $rc: $(oneline <<<"$out")"
	grep -q "another ballastd (pid $(lb_pid)).*stop it first" <<<"$out" ||
		fail "--cleanup did not name the running ballastd: $(oneline <<<"$out")"
	[[ $(lb_xdp_id) == "$id" ]] || fail "--cleanup refused but program $id is gone"
	[[ -e $PIN_DIR/conn_table ]] || fail "--cleanup refused but the pins are gone"
}

# --socket naming something that is not a socket: refused before anything
# is touched, the file left as it was.
test_socket_path_not_a_socket() {
	local out=$STATE_DIR/notsock.out rc=0
	lb_config
	echo "precious" >"$STATE_DIR/not-a-socket"
	LB_SOCK=$STATE_DIR/not-a-socket
	ballastd_again "$out" || rc=$?
	((rc == 1)) || fail "ballastd exited $rc with --socket on a regular file: $(oneline <"$out")"
	grep -q "is not a socket" "$out" || fail "no clear refusal: $(oneline <"$out")"
	[[ $(cat "$STATE_DIR/not-a-socket") == precious ]] || fail "the file at --socket was changed"
	! lb_xdp_attached || fail "a refused start attached a program"
	[[ ! -e $PIN_DIR ]] || fail "a refused start pinned maps: $(find "$PIN_DIR" -mindepth 1 -printf '%f ')"
}

# fd_count PID / rss_kib PID: open descriptors and resident memory.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Descriptors, memory and log volume flat across 5,000 audits and 2,500
# weight changes (each change also audits, 1 s later, and is logged).
# Before the fix every audit leaked one descriptor. (Here 5,000 audits
# took 5.9 s; 2,500 weight changes 61 s, most of each the kernel filling a
# 65,537-entry table one element at a time: 5,000 would add another
# minute to the suite.)
test_flat_across_audits_and_changes() {
	local pid fd0 fd1 fd2 rss0 rss2 log0 log1 out=$STATE_DIR/drive.json
	local a='{"command": "audit"}'
	local w1="{\"command\": \"backend.set_weight\", \"args\": {\"vip\": \"$VIP_TCP\", \"address\": \"$BE1\", \"weight\": 2}}"
	local w2="{\"command\": \"backend.set_weight\", \"args\": {\"vip\": \"$VIP_TCP\", \"address\": \"$BE1\", \"weight\": 1}}"
	lb_config
	lb_start "$STATE_DIR/ballast.yaml"
	pid=$(lb_pid)
	sleep 1.5
	fd0=$(fd_count "$pid")
	rss0=$(rss_kib "$pid")
	log0=$(wc -l <"$STATE_DIR/ballastd.log")
	"$PYTHON" "$E2E_LIB_DIR/api_drive.py" "$LB_SOCK" 5000 "$a" >"$out"
	e2e_log "audits: $(cat "$out")"
	[[ $(json_get "$out" ok) == 5000 ]] || fail "audits failed: $(cat "$out")"
	fd1=$(fd_count "$pid")
	log1=$(wc -l <"$STATE_DIR/ballastd.log")
	((fd1 <= fd0)) || fail "ballastd's descriptors went from $fd0 to $fd1 across 5,000 audits"
	((log1 - log0 <= 2)) || fail "5,000 audits with nothing new wrote $((log1 - log0)) log lines"
	"$PYTHON" "$E2E_LIB_DIR/api_drive.py" "$LB_SOCK" 2500 "$w1" "$w2" >"$out"
	e2e_log "changes: $(cat "$out")"
	[[ $(json_get "$out" ok) == 2500 ]] || fail "changes failed: $(cat "$out")"
	sleep 1.5 # the audit that follows changes
	fd2=$(fd_count "$pid")
	rss2=$(rss_kib "$pid")
	e2e_log "descriptors $fd0 -> $fd1 -> $fd2; RSS $rss0 -> $rss2 KiB; log lines $log0 -> $(wc -l <"$STATE_DIR/ballastd.log")"
	((fd2 <= fd0)) || fail "ballastd's descriptors went from $fd0 to $fd2 across 2,500 changes"
	# The change log keeps its last 10,000 entries: 2,500 changes may grow
	# it, never by more than a few MiB.
	((rss2 - rss0 < 16384)) || fail "ballastd's RSS grew from $rss0 to $rss2 KiB"
}

# Rule: the interface deleted and created again under its name, under
# traffic: ballastd says it is gone, then attaches again by itself, and
# forwarding resumes with no restart.
test_interface_recreated() {
	local mac id0 id1 status_id
	lb_config
	lb_start "$STATE_DIR/ballast.yaml"
	tcp_batch "$STATE_DIR/before.json" 50
	assert_all_ok "$STATE_DIR/before.json" 50
	mac=$(ip -n "$NS_LB" -j link show dev eth0 | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[0]["address"])')
	id0=$(lb_xdp_id)
	lb_link_delete
	for _ in $(seq 30); do
		grep -q 'interface eth0 is gone' "$STATE_DIR/ballastd.log" && break
		sleep 0.1
	done
	grep -q 'interface eth0 is gone' "$STATE_DIR/ballastd.log" || fail "ballastd did not say eth0 is gone"
	lb_cli status >/dev/null || fail "ballastd does not answer with its interface gone"
	lb_cli audit >"$STATE_DIR/audit-gone.out" 2>&1 || true
	grep -q "XDP program is not attached to eth0" "$STATE_DIR/audit-gone.out" ||
		fail "the audit does not say the program is gone: $(oneline <"$STATE_DIR/audit-gone.out")"
	# The metrics snapshot is rendered every second: within 3 s.
	local attached=''
	for _ in $(seq 30); do
		attached=$(lb_exec curl -s -m 2 http://127.0.0.1:9469/metrics | grep '^ballast_xdp_program_attached{') || true
		[[ $attached == *' 0' ]] && break
		sleep 0.1
	done
	[[ $attached == *' 0' ]] || fail "with the interface gone, metrics say: $attached"
	lb_link_create "$mac"
	for _ in $(seq 50); do
		grep -q 'interface eth0 is back' "$STATE_DIR/ballastd.log" && break
		sleep 0.1
	done
	grep -q 'interface eth0 is back' "$STATE_DIR/ballastd.log" ||
		fail "ballastd did not attach again within 5 s: $(tail -n 2 "$STATE_DIR/ballastd.log" | oneline)"
	id1=$(lb_xdp_id)
	[[ -n $id1 ]] || fail "no XDP program on the new eth0"
	status_id=$(lb_status_field program_id)
	[[ $status_id == "$id1" ]] || fail "ballast status says program $status_id, $id1 is attached"
	e2e_log "program $id0 on the old eth0, $id1 on the new one"
	tcp_batch "$STATE_DIR/after.json" 50
	assert_all_ok "$STATE_DIR/after.json" 50
	lb_cli audit >"$STATE_DIR/audit.out" 2>&1 || true
	! grep -qi 'not attached' "$STATE_DIR/audit.out" ||
		fail "the audit still says the program is not attached: $(oneline <"$STATE_DIR/audit.out")"
}

E2E_TESTS=(
	test_second_start_changes_nothing
	test_sigterm_then_start_is_hitless
	test_kill9_then_start_is_hitless
	test_failed_start_changes_nothing
	test_upgrade_from_compatible_layout
	test_other_layout_refused
	test_cleanup_refused_while_running
	test_socket_path_not_a_socket
	test_flat_across_audits_and_changes
	test_interface_recreated
)

e2e_main "$@"
