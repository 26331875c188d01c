#!/usr/bin/env bash
#
# test_control.sh: ballastd's control socket against hostile and
# unprivileged clients (issue #15). Fifty clients that hold the socket open
# and drip a byte every 0.9 s delay nothing: a killed backend still leaves
# rotation within interval x fall + 1 s and another client's `ballast
# status` answers at once; a request nested 100,000 levels deep gets an
# error and ballastd lives; a local user outside the read group can neither
# read nor change, a read-group member reads but cannot change, and every
# refusal of ballastd's is logged with the peer's uid and pid; holding every
# metrics connection does not lock Prometheus out.
#
# Usage: tests/e2e/test_control.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly BE1=${BE_IPS[0]} BE2=${BE_IPS[1]} BE3=${BE_IPS[2]}
readonly CHECK="{type: http, path: /healthz, interval: 500ms, timeout: 300ms, rise: 2, fall: 2}"
readonly NOBODY=65534

# lb_config_checked: VIP1:80/tcp over be1..be3 with a 500 ms x 2 check.
lb_config_checked() {
	{
		cfg_head
		cfg_vip_weights "$VIP1" "$HTTP_PORT" tcp "" "$CHECK" 1 1 1
	} >"$STATE_DIR/ballast.yaml"
}

# Rule: 50 clients dripping half a request each hold up neither the health
# checks nor another client.
test_dripping_clients_delay_nothing() {
	local drip=$STATE_DIR/drip.json dpid t0 elapsed i
	lb_config_checked
	lb_start "$STATE_DIR/ballast.yaml"
	for a in "$BE1" "$BE2" "$BE3"; do
		wait_backend_for 5 "$VIP_TCP" "$a" 'b["health"] == "up" and b["table_entries"] > 0'
	done
	rm -f "$drip.stop" "$drip.ready"
	"$PYTHON" "$E2E_LIB_DIR/control_drip.py" "$LB_SOCK" 50 --interval 0.9 \
		--stop-file "$drip.stop" --ready-file "$drip.ready" >"$drip" 2>"$drip.err" &
	dpid=$!
	for i in $(seq 50); do
		[[ -e $drip.ready ]] && break
		sleep 0.1
	done
	[[ -e $drip.ready ]] || fail "the dripping clients did not connect: $(oneline <"$drip.err")"
	sleep 2
	# Another client, meanwhile: answered at once, ten times.
	for i in $(seq 10); do
		t0=$(now)
		lb_cli status -o json >/dev/null || fail "ballast status failed while 50 clients drip"
		elapsed=$(time_diff "$(now)" "$t0")
		awk -v e="$elapsed" 'BEGIN { exit !(e < 1.0) }' ||
			fail "ballast status took ${elapsed}s while 50 clients drip (a dripper's deadline is 5 s)"
	done
	backend_kill be2
	# interval x fall + 1 s = 0.5 x 2 + 1 = 2 s.
	wait_backend_for 2 "$VIP_TCP" "$BE2" 'b["health"] == "down" and b["table_entries"] == 0'
	# Past a dripper's 5 s deadline since it connected.
	sleep 4
	: >"$drip.stop"
	wait "$dpid" || fail "the dripping clients failed: $(oneline <"$drip.err")"
	e2e_log "drip: $(cat "$drip")"
	# The server closed them at their deadline (5 s), and they came back.
	[[ $(json_get "$drip" closed_by_server) -ge 50 ]] ||
		fail "dripping clients were never dropped: $(cat "$drip")"
}

# Rule: a request nested 100,000 levels deep is answered with an error and
# ballastd lives.
test_deep_nesting_answered() {
	local out=$STATE_DIR/deep.json
	lb_config_checked
	lb_start "$STATE_DIR/ballast.yaml"
	"$PYTHON" - "$LB_SOCK" >"$out" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'{"command": "status", "args": ' + b"[" * 100000 + b"]" * 100000 + b"}\n")
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.decode())
PY
	grep -q '"ok":false' "$out" || fail "a 100k-deep request was not refused: $(head -c 200 "$out")"
	grep -q 'nested deeper than 64 levels' "$out" || fail "no reason given: $(head -c 200 "$out")"
	pid_alive "$(lb_pid)" || fail "ballastd died on a deeply nested request"
	lb_cli_ok status
}

# Rule: a request is read strictly (api_messages.h): an argument the
# command does not take, or one of the wrong type, is refused by name and
# changes nothing; the CLI's typed reply is the daemon's, field for field.
test_requests_read_strictly() {
	local out=$STATE_DIR/strict.json before after
	lb_config_checked
	lb_start "$STATE_DIR/ballast.yaml"
	# Health settled first: the two reads below must see the same state.
	wait_all_up "$VIP_TCP" 10 "$BE1" "$BE2" "$BE3"
	lb_cli_ok -o json backend list "$VIP_TCP" >"$STATE_DIR/before.json"
	"$PYTHON" - "$LB_SOCK" "$VIP_TCP" "$BE1" >"$out" <<'PY'
import json, socket, sys
sock, vip, be = sys.argv[1:4]
def call(req):
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    s.sendall(json.dumps(req).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk: break
        data += chunk
    return json.loads(data)
args = {"vip": vip, "address": be}
print(json.dumps({
    "misspelt": call({"command": "backend.set_weight", "args": dict(args, wieght=9)}),
    "force_text": call({"command": "backend.set_weight", "args": dict(args, weight=9, force="yes")}),
    "raw_list": call({"command": "backend.list", "args": {"vip": vip}}),
}))
PY
	[[ $(json_get "$out" misspelt error) == "unknown argument 'wieght' for backend.set_weight (it takes vip, address, force, weight)" ]] ||
		fail "a misspelt argument: $(json_get "$out" misspelt)"
	[[ $(json_get "$out" force_text error) == "'force' must be true or false, got \"yes\"" ]] ||
		fail "force as text: $(json_get "$out" force_text)"
	lb_cli_ok -o json backend list "$VIP_TCP" >"$STATE_DIR/after.json"
	before=$(json_get "$STATE_DIR/before.json" 0 weight)
	after=$(json_get "$STATE_DIR/after.json" 0 weight)
	[[ $before == "$after" ]] || fail "a refused request changed the weight: $before -> $after"
	# The CLI decodes the reply into its type and prints it again: nothing
	# may be lost or renamed on the way (last_check moves between the two
	# reads, so it is left out).
	"$PYTHON" - "$out" "$STATE_DIR/after.json" <<'PY' || fail "ballast -o json differs from the daemon's reply"
import json, sys
raw = json.load(open(sys.argv[1]))["raw_list"]["result"]
cli = json.load(open(sys.argv[2]))
strip = lambda rows: [{k: v for k, v in r.items() if k != "last_check"} for r in rows]
if strip(raw) != strip(cli):
    print("daemon:", raw, "\ncli:", cli, file=sys.stderr)
    sys.exit(1)
PY
}

# Rule: outside the read group nothing; inside it reads only; each refusal
# by ballastd logged with uid and pid.
test_readers_and_outsiders() {
	local group=${PREFIX}rd dir=/run/ballast-e2e-$PREFIX out rc
	groupadd --system "$group"
	E2E_EXTRA_GROUPS+=("$group")
	mkdir -p "$dir"
	chmod 0755 "$dir"
	LB_SOCK=$dir/ballast.sock
	LB_EXTRA_ARGS=(--read-group "$group")
	lb_config_checked
	lb_start "$STATE_DIR/ballast.yaml"
	local gid mode
	gid=$(getent group "$group" | cut -d: -f3)
	mode=$(stat -c '%a %G' "$LB_SOCK")
	[[ $mode == "660 $group" ]] || fail "socket mode and group: $mode, want 660 $group"
	as_nobody() { setpriv --reuid="$NOBODY" --regid="$NOBODY" "$@"; }

	rc=0
	out=$(as_nobody --clear-groups "$BUILD_DIR/ballast" status --socket "$LB_SOCK" 2>&1) || rc=$?
	((rc != 0)) || fail "a user outside $group read the status: $(oneline <<<"$out")"
	grep -qi 'permission denied' <<<"$out" || fail "outsider's refusal does not say why: $(oneline <<<"$out")"

	as_nobody --groups="$gid" "$BUILD_DIR/ballast" status --socket "$LB_SOCK" >/dev/null ||
		fail "a member of $group could not read the status"
	as_nobody --groups="$gid" "$BUILD_DIR/ballast" backend list --socket "$LB_SOCK" >/dev/null ||
		fail "a member of $group could not list backends"
	rc=0
	out=$(as_nobody --groups="$gid" "$BUILD_DIR/ballast" backend set-weight "$VIP_TCP" "$BE1" 5 \
		--socket "$LB_SOCK" 2>&1) || rc=$?
	((rc != 0)) || fail "a member of $group changed a weight"
	grep -q "permission denied: uid $NOBODY pid [0-9]* may not change ballastd" <<<"$out" ||
		fail "the reader's refusal does not say why: $(oneline <<<"$out")"
	grep -q "control: refused 'backend.set_weight' from uid $NOBODY pid [0-9]" "$STATE_DIR/ballastd.log" ||
		fail "the refusal is not in ballastd's log"
	[[ $(backend_row "$VIP_TCP" "$BE1" weight) == 1 ]] || fail "the weight changed after a refusal"
	lb_stop
	rm -rf "$dir"
}

# Rule: holding every metrics connection does not lock Prometheus out.
test_metrics_not_starved() {
	local hold=$STATE_DIR/mhold.json hpid code
	lb_config_checked
	lb_start "$STATE_DIR/ballast.yaml"
	rm -f "$hold.stop" "$hold.ready"
	lb_exec "$PYTHON" - "$hold.stop" "$hold.ready" <<'PY' &
import os, socket, sys, time
conns = []
for _ in range(200):
    s = socket.create_connection(("127.0.0.1", 9469)); s.send(b"GET"); conns.append(s)
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
PY
	hpid=$!
	for _ in $(seq 50); do
		[[ -e $hold.ready ]] && break
		sleep 0.1
	done
	[[ -e $hold.ready ]] || fail "could not open 200 metrics connections"
	for _ in $(seq 5); do
		code=$(lb_exec curl -s -m 2 -o "$STATE_DIR/m.txt" -w '%{http_code}' http://127.0.0.1:9469/metrics) || true
		[[ $code == 200 ]] || fail "GET /metrics answered '$code' while 200 connections were held"
		grep -q '^ballast_build_info' "$STATE_DIR/m.txt" || fail "no metrics in the answer"
	done
	: >"$hold.stop"
	wait "$hpid" || true
}

E2E_TESTS=(
	test_dripping_clients_delay_nothing
	test_deep_nesting_answered
	test_requests_read_strictly
	test_readers_and_outsiders
	test_metrics_not_starved
)

e2e_main "$@"
