#!/usr/bin/env bash
#
# test_service.sh: ballastd as a systemd service (issue #15). The unit
# (scripts/systemd/ballastd.service) passes `systemd-analyze verify` and
# scores "OK" or better in `systemd-analyze security --offline=yes`; and
# ballastd serves traffic as a non-root user holding exactly the
# capabilities the unit grants, while without any one of them it fails to
# start and leaves nothing behind; and ballastd speaks sd_notify as
# Type=notify wants (ready after attach, reload, watchdog, stopping).
# systemd is not PID 1 on the test machines, so the unit is checked, its
# capability set proven with setpriv as the unit would run it, and
# sd_notify read by a listener of ours on NOTIFY_SOCKET.
#
# Usage: tests/e2e/test_service.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly UNIT=$REPO_ROOT/scripts/systemd/ballastd.service
readonly NOBODY=65534

# unit_copy: the unit with ExecStart pointing at this build (verify checks
# that the command exists), in the state dir.
unit_copy() {
	sed "s#/usr/sbin/ballastd#$BUILD_DIR/ballastd#" "$UNIT" >"$STATE_DIR/ballastd.service"
	echo "$STATE_DIR/ballastd.service"
}

# unit_caps: the unit's CapabilityBoundingSet, as setpriv's list
# ("+bpf,+perfmon,...").
unit_caps() {
	sed -n 's/^CapabilityBoundingSet=//p' "$UNIT" | tr ' ' '\n' |
		sed 's/^CAP_//' | tr '[:upper:]' '[:lower:]' | sed 's/^/+/' | paste -sd, -
}

test_unit_verifies() {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
	local unit out
	unit=$(unit_copy)
	out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $(oneline <<<"$out")"
	[[ -z $out ]] || fail "systemd-analyze verify printed: $(oneline <<<"$out")"
	grep -q '^Type=notify' "$UNIT" || fail "the unit is not Type=notify"
	# shellcheck disable=SC2016 # the unit's own text, not ours to expand
	grep -qF 'ExecReload=/bin/kill -HUP $MAINPID' "$UNIT" || fail "ExecReload is not SIGHUP"
	grep -q '^Restart=on-failure' "$UNIT" || fail "no Restart=on-failure"
	! grep -q '^ExecStop' "$UNIT" || fail "an ExecStop would remove what a stop must leave"
}

test_unit_exposure() {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
	local unit out level
	unit=$(unit_copy)
	out=$(systemd-analyze security --offline=yes "$unit" 2>&1) || true
	level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' <<<"$out")
	e2e_log "systemd-analyze security --offline=yes: $level"
	[[ -n $level ]] || fail "no exposure level in: $(tail -n 3 <<<"$out" | oneline)"
	awk -v l="${level%% *}" 'BEGIN { exit !(l <= 2.5) }' ||
		fail "exposure $level, want 2.5 or less (OK)"
}

# start_as_nobody CAPS OUT: ballastd as user nobody with exactly CAPS
# (setpriv's list), its pin and run directories owned by nobody, as the
# unit's ExecStartPre and RuntimeDirectory make them; its control socket
# is $STATE_DIR/run-nobody/ballast.sock. Prints its pid.
start_as_nobody() {
	local caps=$1 out=$2 dir=$STATE_DIR/run-nobody
	mkdir -p "$dir" "$PIN_DIR"
	chown "$NOBODY:$NOBODY" "$dir" "$PIN_DIR"
	chmod 0755 "$STATE_DIR"
	"${LB_NSENTER[@]}" setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups \
		--bounding-set="-all,$caps" --inh-caps="-all,$caps" --ambient-caps="-all,$caps" \
		"$BUILD_DIR/ballastd" --config "$STATE_DIR/ballast.yaml" --socket "$LB_SOCK" \
		--pin-dir "$PIN_DIR" --run-dir "$dir" --read-group "" >"$out" 2>&1 &
	echo $!
}

# wait_ready OUT PID: true once ballastd PID says "ready" in OUT, false
# when it exits first or 10 s pass.
wait_ready() {
	local out=$1 pid=$2
	for _ in $(seq 100); do
		grep -q 'ready' "$out" && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	grep -q 'ready' "$out"
}

test_runs_with_exactly_the_units_capabilities() {
	local caps out=$STATE_DIR/nobody.log pid
	caps=$(unit_caps)
	[[ -n $caps ]] || fail "no CapabilityBoundingSet in the unit"
	LB_SOCK=$STATE_DIR/run-nobody/ballast.sock
	lb_write_config "$STATE_DIR/ballast.yaml" 1 1 1
	# No MAC known: ballastd must solicit them itself, unprivileged.
	ip -n "$NS_LB" neigh flush all
	pid=$(start_as_nobody "$caps" "$out")
	track_pid ballastd "$pid"
	wait_ready "$out" "$pid" || fail "ballastd as nobody with $caps: $(tail -n 3 "$out" | oneline)"
	e2e_log "ballastd as uid $NOBODY with $caps: $(grep -m1 'attached\|replaced' "$out" | oneline)"
	[[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status") == "$NOBODY" ]] || fail "ballastd is not running as nobody"
	tcp_batch "$STATE_DIR/tcp.json" 100
	assert_all_ok "$STATE_DIR/tcp.json" 100
	lb_cli status >/dev/null || fail "ballast status failed against ballastd as nobody"
	lb_cli_ok backend set-weight "$VIP1:$HTTP_PORT/tcp" "${BE_IPS[0]}" 2
	# Without CAP_SYS_ADMIN it cannot open a map by id: everything it reads
	# back (the audit, the skew report behind the metrics, a restart's
	# adoption) must come from what it installed or pinned itself.
	lb_cli audit -o json >"$STATE_DIR/audit.json" || true
	sleep 2  # two metrics refreshes and skew samples
	lb_cli_ok status -o json >"$STATE_DIR/status.json"
	local why
	why=$("$PYTHON" - "$STATE_DIR/audit.json" "$STATE_DIR/status.json" <<'PY'
import json, sys
audit, status = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = [f"{f['check']}: {f['message']}" for f in audit["findings"] if f["check"] in ("drift", "ring-share")]
bad += [f"{step}: {n} errors" for step, n in status["errors"].items() if n]
print("; ".join(bad))
PY
	)
	[[ -z $why ]] || fail "as nobody with $caps: $why"
	lb_stop
	pid=$(start_as_nobody "$caps" "$out.restart")
	track_pid ballastd "$pid"
	wait_ready "$out.restart" "$pid" ||
		fail "a restart as nobody with $caps: $(tail -n 3 "$out.restart" | oneline)"
	grep -q 'adopt vip' "$out.restart" || fail "the restart as nobody adopted nothing"
	tcp_batch "$STATE_DIR/tcp2.json" 100
	assert_all_ok "$STATE_DIR/tcp2.json" 100
	lb_stop
	lb_remove
	# Without any one of them it cannot run: each is needed.
	local cap less
	for cap in ${caps//,/ }; do
		less=$(tr ',' '\n' <<<"$caps" | grep -vx -- "$cap" | paste -sd, -)
		pid=$(start_as_nobody "$less" "$STATE_DIR/less.log")
		if wait_ready "$STATE_DIR/less.log" "$pid"; then
			kill -TERM "$pid"
			wait "$pid" 2>/dev/null || true
			lb_remove
			fail "ballastd started without ${cap#+}: the unit grants more than it needs"
		fi
		wait "$pid" 2>/dev/null || true
		e2e_log "without ${cap#+}: $(tail -n 1 "$STATE_DIR/less.log" | oneline)"
		! lb_xdp_attached || fail "a start that failed without ${cap#+} left a program attached"
	done
}

# Rule: Type=notify: "ready" only once the program is attached and the
# control socket answers; RELOADING then READY around a SIGHUP; watchdog
# pings while it runs; STOPPING on SIGTERM.
test_notifies_the_service_manager() {
	local sock=$STATE_DIR/notify.sock out=$STATE_DIR/notify.jsonl lpid check why
	check="ip -n $NS_LB link show dev eth0 | grep -q xdp && $BUILD_DIR/ballast status --socket $LB_SOCK >/dev/null"
	rm -f "$out.stop"
	"$PYTHON" "$E2E_LIB_DIR/notify_listen.py" "$sock" "$out" "$check" --stop-file "$out.stop" &
	lpid=$!
	for _ in $(seq 50); do
		[[ -S $sock ]] && break
		sleep 0.1
	done
	lb_write_config "$STATE_DIR/ballast.yaml" 1 1 1
	NOTIFY_SOCKET=$sock WATCHDOG_USEC=2000000 lb_start "$STATE_DIR/ballast.yaml"
	sleep 2.5
	kill -HUP "$(lb_pid)"
	sleep 1
	lb_stop
	sleep 0.3
	: >"$out.stop"
	wait "$lpid"
	e2e_log "notifications: $(oneline <"$out")"
	why=$("$PYTHON" - "$out" <<'PY'
import json, sys
msgs = [json.loads(l) for l in open(sys.argv[1])]
seq = [k for m in msgs for k in ("READY", "RELOADING", "STOPPING") if m["fields"].get(k) == "1"]
bad = []
if seq != ["READY", "RELOADING", "READY", "STOPPING"]:
    bad.append(f"sequence {seq}, want READY RELOADING READY STOPPING")
first = next((m for m in msgs if m["fields"].get("READY") == "1"), None)
if first and first.get("check_rc") != 0:
    bad.append("at READY=1 the program was not attached or the control socket did not answer")
if sum(1 for m in msgs if m["fields"].get("WATCHDOG") == "1") < 2:
    bad.append("fewer than 2 watchdog pings in 3.5 s")
print("; ".join(bad))
PY
	)
	[[ -z $why ]] || fail "$why"
}

E2E_TESTS=(
	test_unit_verifies
	test_unit_exposure
	test_runs_with_exactly_the_units_capabilities
	test_notifies_the_service_manager
)

e2e_main "$@"
