#!/usr/bin/env bash
#
# control_bench.sh: the control plane's figures (issue #6): how long `ballast
# apply` of a 1,000-backend config takes until the new Maglev table is live
# in the pinned map, what ballastd costs in CPU to health-check 1,000
# backends every second, how long a killed backend stays in rotation, and
# the memory the maps lock and ballastd holds.
#
# Usage: bench/control_bench.sh [--quick] [BUILD_DIR]
#   BUILD_DIR defaults to build. Writes $BENCH_OUT/control.json (bench/
#   report.py's format; BENCH_OUT defaults to BUILD_DIR/bench-results) and
#   prints its tables. Needs root. About 2 minutes; --quick (100 backends,
#   one repetition, one failover, 0.5 s CPU samples, checks every 250 ms)
#   about 8 s, for `make test`'s smoke run: the same steps and checks,
#   fewer of them.
#
# The world is tests/e2e/lib.sh's (client, lb running ballastd, backends on
# a bridge, L2 DSR, every name with a per-run prefix, torn down on every
# exit path), with four backends:
#   be1 holds the N "many" backends: N extra addresses on its eth0, in
#     10.231.8.0/21 (lib.sh uses 10.231.0.0/24 and 10.231.100.0/24), each
#     answering ARP; the lb gets 10.231.15.254/21 on its eth0 so that they
#     are on-link. One VIP, VIP2:80/tcp, spreads over them; a listener of
#     ours on be1's port 8080 (all addresses) accepts their tcp checks.
#   be2..be4 serve VIP1:80/tcp for the failover runs (http checks of
#     /healthz, interval 1s, timeout 500ms, rise 2, fall 3), with a stream
#     of new connections from the client.
#
# Every step checks that it measured what it claims (the table really holds
# the new backends with the right shares, every check succeeded, the killed
# backend left the table and the connections after it all succeeded) and
# exits non-zero with the reason when not. No timing is asserted.
set -euo pipefail

QUICK=0
build=build
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-*)
		echo "control_bench.sh: unknown option $arg" >&2
		exit 2
		;;
	*) build=$arg ;;
	esac
done

E2E_BACKENDS=4
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/lib.sh"

# --quick also checks 4x as often and does not wait out the audit before a
# CPU sample (SETTLE_S below): its figures mean nothing, its steps run.
if ((QUICK)); then
	readonly MANY=100 APPLY_REPS=2 FAILOVERS=1 CPU_S=0.5 STREAM_S=0.5
	readonly CHECK_TIMES="interval: 250ms, timeout: 200ms" SETTLE_S=0.2
else
	readonly MANY=1000 APPLY_REPS=8 FAILOVERS=3 CPU_S=10 STREAM_S=2
	readonly CHECK_TIMES="interval: 1s, timeout: 500ms"
	# After a change, ballastd audits 1 s later: CPU samples start after that.
	readonly SETTLE_S=1.5
fi
readonly FEW=10
readonly MANY_VIP=$VIP2:$HTTP_PORT/tcp
readonly FO_VIP=$VIP1:$HTTP_PORT/tcp
readonly LB_MANY_IP=10.231.15.254 MANY_PREFIX_LEN=21
readonly CHECK_PORT=8080
readonly MANY_CHECK="{type: tcp, port: $CHECK_PORT, $CHECK_TIMES, rise: 2, fall: 3}"
readonly FO_CHECK="{type: http, path: /healthz, $CHECK_TIMES, rise: 2, fall: 3}"
# How long the cold apply may take to resolve every MAC (ARP, then ballastd's
# 1 s neighbour refresh), and a failed-over backend to come back.
readonly RESOLVE_LIMIT_S=20 BACK_LIMIT_S=10

# many_addr I: the I-th (0-based) "many" backend's address.
many_addr() {
	echo "10.231.$((8 + $1 / 250)).$((1 + $1 % 250))"
}

# --- Set-up --------------------------------------------------------------------

# many_setup: the N addresses on be1's eth0, the lb's address in their
# subnet, and the accepting listener for their tcp checks.
many_setup() {
	local i
	for ((i = 0; i < MANY; i++)); do
		echo "addr add $(many_addr "$i")/$MANY_PREFIX_LEN dev eth0"
	done | ip -n "${NS_BE[0]}" -batch -
	ip -n "$NS_LB" addr add "$LB_MANY_IP/$MANY_PREFIX_LEN" dev eth0
	# Accepts and closes, counting: what the tcp checks connect to (the
	# backend's HTTP server would start a thread per connection).
	ip netns exec "${NS_BE[0]}" "$PYTHON" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()' "$CHECK_PORT" >"$STATE_DIR/checker-listener.log" 2>&1 &
	track_pid check-listener "$!"
	disown "$!"
	local deadline=$((SECONDS + 10))
	until grep -q ready "$STATE_DIR/checker-listener.log"; do
		((SECONDS <= deadline)) || fail "check listener on be1 did not start: $(cat "$STATE_DIR/checker-listener.log")"
		sleep 0.05
	done
	e2e_log "$MANY backend addresses $(many_addr 0)..$(many_addr $((MANY - 1))) on be1"
}

# warm_neighbours ADDRESS...: the lb's kernel resolves each ADDRESS (one
# datagram to the discard port starts ARP, as ballastd's own solicit does),
# waited for (10 s at most). ballastd reads the neighbour table when a
# change adds a backend, and otherwise only at its refresh (every 10 s while
# every backend is resolved): backends whose MAC is in the table already
# take traffic from the apply on.
warm_neighbours() {
	ip netns exec "$NS_LB" "$PYTHON" - "$@" <<'PY' || fail "the lb could not resolve every backend's MAC"
import socket, subprocess, sys, time
want = set(sys.argv[1:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in want:
    s.sendto(b"", (a, 9))
deadline = time.time() + 10
while True:
    out = subprocess.run(["ip", "-4", "neigh", "show", "dev", "eth0"], capture_output=True, text=True).stdout
    have = {l.split()[0] for l in out.splitlines() if "lladdr" in l}
    if want <= have:
        break
    if time.time() > deadline:
        sys.exit(f"{len(want - have)} of {len(want)} addresses unresolved, e.g. {sorted(want - have)[:3]}")
    time.sleep(0.05)
PY
}

# write_config FILE COUNT PATTERN CHECK FAILOVER: the config: MANY_VIP over
# the first COUNT "many" backends, weights by PATTERN (flat: all 1; alt: 1,
# 2, 1, 2, ...), health check CHECK ("" for none); FAILOVER=1 adds FO_VIP
# over be2..be4 with FO_CHECK.
write_config() {
	local file=$1 count=$2 pattern=$3 check=$4 failover=$5 i w
	{
		cfg_head
		echo "  - address: $VIP2"
		echo "    port: $HTTP_PORT"
		echo "    protocol: tcp"
		[[ -z $check ]] || echo "    health_check: $check"
		echo "    backends:"
		for ((i = 0; i < count; i++)); do
			w=1
			[[ $pattern == alt ]] && w=$((1 + i % 2))
			echo "      - {address: $(many_addr "$i"), weight: $w}"
		done
		if ((failover)); then
			echo "  - address: $VIP1"
			echo "    port: $HTTP_PORT"
			echo "    protocol: tcp"
			echo "    health_check: $FO_CHECK"
			echo "    backends:"
			for i in 1 2 3; do
				echo "      - {address: ${BE_IPS[$i]}, weight: 1}"
			done
		fi
	} >"$file"
}

# --- Measuring helpers: bench/control_ctl.py (tables read by maglev_probe) --------

# ctl ARGS...: runs bench/control_ctl.py.
ctl() {
	MAGLEV_PROBE=$BUILD_DIR/tools/maglev_probe "$PYTHON" "$BENCH_DIR/control_ctl.py" "$@"
}

# vip_id VIP: the VIP's id (its key in maglev_tables).
vip_id() {
	lb_cli vip list -o json | "$PYTHON" -c '
import json, sys
print(next(v["id"] for v in json.load(sys.stdin) if v["vip"] == sys.argv[1]))' "$1"
}

# weights_json COUNT PATTERN: {address: weight} of write_config's backends.
weights_json() {
	local i w sep='' out='{'
	for ((i = 0; i < $1; i++)); do
		w=1
		[[ $2 == alt ]] && w=$((1 + i % 2))
		out+="$sep\"$(many_addr "$i")\": $w"
		sep=', '
	done
	echo "$out}"
}

# check_table COUNT PATTERN: the live table of MANY_VIP is the config's (control_ctl.py table).
check_table() {
	lb_cli backend list -o json >"$STATE_DIR/list.json" || fail "ballast backend list failed"
	weights_json "$1" "$2" >"$STATE_DIR/weights.json"
	ctl table "$PIN_DIR/maglev_tables" "$MANY_ID" "$MANY_VIP" "$STATE_DIR/list.json" \
		"$STATE_DIR/weights.json" >/dev/null || fail "the live table is not the applied config's"
}

# rss_kib FIELD: ballastd's VmRSS or VmHWM, in KiB.
rss_kib() {
	awk -v f="$1:" '$1 == f { print $2 }' "/proc/$(lb_pid)/status"
}

# cpu_ticks: ballastd's utime + stime so far, in clock ticks.
cpu_ticks() {
	# The fields after the command name (which may hold spaces), from 3 on.
	sed 's/^.*) //' "/proc/$(lb_pid)/stat" | awk '{ print $12 + $13 }'
}

# cpu_share SECONDS: ballastd's CPU over the next SECONDS, as a fraction of one core.
cpu_share() {
	local t0 c0 c1 t1
	t0=$(now)
	c0=$(cpu_ticks)
	sleep "$1"
	c1=$(cpu_ticks)
	t1=$(now)
	awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v t="$(time_diff "$t1" "$t0")" \
		'BEGIN { printf "%.5f\n", c / hz / t }'
}

# --- The measurements ----------------------------------------------------------

RESULTS=  # $STATE_DIR/results, once e2e_init made it
MANY_ID=

# measure_memory LABEL: the maps' locked bytes and ballastd's RSS now, as one
# JSON line appended to $RESULTS.mem.
measure_memory() {
	local maps
	maps=$(ctl maps "$PIN_DIR" "$PIN_DIR/maglev_tables") || fail "reading the maps' memlock failed"
	printf '{"label": "%s", "rss_kib": %s, "hwm_kib": %s, "maps": %s}\n' "$1" "$(rss_kib VmRSS)" \
		"$(rss_kib VmHWM)" "$maps" >>"$RESULTS.mem"
}

# measure_apply: the cold apply (FEW -> MANY backends whose MACs nobody knows
# yet), then APPLY_REPS applies of MANY backends alternating two weight
# patterns, each timed and its table checked.
measure_apply() {
	local r t0 settled i pattern addrs=()
	if ((QUICK)); then
		# The cold path waits for ballastd's 10 s neighbour refresh: too
		# long for a smoke run. Quick runs grow with the MACs known.
		for ((i = 0; i < MANY; i++)); do
			addrs+=("$(many_addr "$i")")
		done
		warm_neighbours "${addrs[@]}"
	fi
	write_config "$STATE_DIR/many-flat.yaml" "$MANY" flat "" 0
	write_config "$STATE_DIR/many-alt.yaml" "$MANY" alt "" 0
	r=$(ctl apply "$PIN_DIR/maglev_tables" "$MANY_ID" "$BUILD_DIR/ballast" "$LB_SOCK" \
		"$STATE_DIR/many-flat.yaml" 0) || fail "cold apply failed"
	t0=$(json_field "$r" t0_unix)
	settled=$(ctl settle "$PIN_DIR/maglev_tables" "$MANY_ID" "$MANY" "$t0" "$RESOLVE_LIMIT_S") ||
		fail "cold apply: not every backend resolved: $(lb_cli status -o json | head -c 300)" \
			"(machine-wide ARP entries: $(arp_entries), gc_thresh3 $(sysctl -n net.ipv4.neigh.default.gc_thresh3))"
	echo "{\"kind\": \"cold\", \"warm\": $QUICK, \"apply\": $r, \"settle\": $settled}" >>"$RESULTS.apply"
	check_table "$MANY" flat
	e2e_log "cold apply: $r $settled"
	measure_memory "1 VIP, $MANY backends"

	for ((i = 0; i < APPLY_REPS; i++)); do
		pattern=alt
		((i % 2)) && pattern=flat
		r=$(ctl apply "$PIN_DIR/maglev_tables" "$MANY_ID" "$BUILD_DIR/ballast" "$LB_SOCK" \
			"$STATE_DIR/many-$pattern.yaml" 1) || fail "apply $i failed"
		check_table "$MANY" "$pattern"
		echo "{\"kind\": \"weights\", \"apply\": $r}" >>"$RESULTS.apply"
		e2e_log "apply $i ($pattern): $r"
	done
	# The reference: the last config again, which must change nothing.
	for ((i = 0; i < APPLY_REPS; i++)); do
		r=$(ctl apply "$PIN_DIR/maglev_tables" "$MANY_ID" "$BUILD_DIR/ballast" "$LB_SOCK" \
			"$STATE_DIR/many-$pattern.yaml" 0) || fail "no-op apply $i failed"
		[[ $(json_field "$r" inner_before) == $(json_field "$r" inner_after) && $(json_field "$r" changes) == 0 ]] ||
			fail "applying the same config again changed something: $r"
		echo "{\"kind\": \"noop\", \"apply\": $r}" >>"$RESULTS.apply"
	done
	check_table "$MANY" "$pattern"
}

# arp_entries: the kernel's IPv4 neighbour entries, machine-wide (the table
# and its gc_thresh3 limit are shared by every namespace).
arp_entries() {
	printf '%d\n' "0x$(awk 'NR == 2 { print $1 }' /proc/net/stat/arp_cache)"
}

# json_field JSON KEY: one top-level field of a JSON object.
json_field() {
	"$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# measure_cpu: ballastd's CPU over CPU_S seconds with MANY backends and no
# checks (the reference), then with MANY tcp checks a second; the listener's
# accept count says how many checks arrived.
measure_cpu() {
	local idle busy before after
	# ballastd audits 1 s after a change: let the last apply's pass.
	sleep "$SETTLE_S"
	idle=$(cpu_share "$CPU_S")
	write_config "$STATE_DIR/many-checked.yaml" "$MANY" flat "$MANY_CHECK" 1
	warm_neighbours "${BE_IPS[@]:1}"
	lb_cli_ok apply -f "$STATE_DIR/many-checked.yaml" >/dev/null
	# Every backend's first check passed (and be2..be4's): then measure.
	wait_health_all "$MANY_VIP" "$MANY" 10
	wait_health_all "$FO_VIP" 3 "$RESOLVE_LIMIT_S"
	sleep "$SETTLE_S"
	before=$(lb_cli backend list -o json | check_summary "$MANY_VIP")
	busy=$(cpu_share "$CPU_S")
	after=$(lb_cli backend list -o json | check_summary "$MANY_VIP")
	echo "{\"idle\": $idle, \"busy\": $busy, \"seconds\": $CPU_S, \"before\": $before, \"after\": $after}" >"$RESULTS.cpu"
	e2e_log "ballastd CPU: idle $idle, checking $busy of a core; $before -> $after"
	[[ $(json_field "$after" down) == 0 && $(json_field "$after" not_ok) == 0 ]] ||
		fail "while measuring, backends failed their checks: $after"
}

# check_summary VIP: stdin's backend list summed for VIP: up, down, not_ok
# (last check not "ok ...").
check_summary() {
	"$PYTHON" -c '
import json, sys
rows = [b for b in json.load(sys.stdin) if b["vip"] == sys.argv[1]]
print(json.dumps({"backends": len(rows), "up": sum(b["health"] == "up" for b in rows),
                  "in_table": sum(b["table_entries"] > 0 for b in rows),
                  "down": sum(b["health"] == "down" for b in rows),
                  "not_ok": sum(not b["last_check"].startswith("ok") for b in rows)}))' "$1"
}

# wait_health_all VIP COUNT SECONDS: COUNT backends of VIP up with table
# entries (so resolved too), within SECONDS.
wait_health_all() {
	local vip=$1 n=$2 deadline=$((SECONDS + $3)) s
	while :; do
		s=$(lb_cli backend list -o json | check_summary "$vip")
		"$PYTHON" -c 'import json, sys; s = json.loads(sys.argv[1]); n = int(sys.argv[2]); sys.exit(s["up"] != n or s["in_table"] != n)' \
			"$s" "$n" && return 0
		((SECONDS <= deadline)) || fail "$vip: not all $n backends up after $3 s: $s"
		sleep 0.2
	done
}

# measure_failover I: kills be2's server under a stream of new connections to
# FO_VIP, measures until be2 is out of the table and of the stream's
# answers, checks every connection after that succeeded on be3/be4, then
# restarts be2 and waits for it to be back.
measure_failover() {
	local i=$1 out=$STATE_DIR/stream$1.json pid t_kill seen log_ms
	rm -f "$out.stop"
	client_bg "$out" --vip "$VIP1" --port "$HTTP_PORT" --stream 50 --timeout 2 \
		--stop-file "$out.stop"
	pid=$CLIENT_PID
	sleep "$STREAM_S"
	t_kill=$(now)
	backend_kill be2
	seen=$(wait_backend "$FO_VIP" "${BE_IPS[1]}" 'b["table_entries"] == 0 and b["health"] == "down"' \
		"$(time_add "$t_kill" 10)" 2>"$STATE_DIR/wait.err") || {
		: >"$out.stop"
		fail "be2 still in rotation 10 s after its server died: $(cat "$STATE_DIR/wait.err")"
	}
	# New connections after it left: 50 a second.
	sleep "$STREAM_S"
	: >"$out.stop"
	client_wait "$pid" "$out"
	# Only the last seconds: the applies before logged thousands of lines,
	# more than one reply of the control socket holds (1 MiB).
	lb_log_json "$STATE_DIR/log.json" --since 30s
	log_ms=$("$PYTHON" - "$STATE_DIR/log.json" "$FO_VIP ${BE_IPS[1]}" "$t_kill" <<'PY'
import json, sys
t = float(sys.argv[3]) * 1000
for e in json.load(open(sys.argv[1])):
    if e["unix_ms"] >= t and e["change"].startswith(f"backend health {sys.argv[2]} up -> down"):
        print(e["unix_ms"]); break
PY
	)
	[[ -n $log_ms ]] || fail "ballast log has no 'backend health $FO_VIP ${BE_IPS[1]} up -> down' after the kill"
	"$PYTHON" - "$out" "$t_kill" "${seen#* }" "$log_ms" "${seen%% *}" >>"$RESULTS.failover" \
		2>"$STATE_DIR/failover.err" <<'PY' ||
import json, sys
r = json.load(open(sys.argv[1])); t_kill, t_out, log_ms = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
t_poll = float(sys.argv[5])
reqs = r["requests"]
failed = [q for q in reqs if q[2].startswith("!")]
after = [q for q in reqs if q[0] >= t_out]
bad_after = [q for q in after if q[2].startswith("!") or q[2] == "be2"]
if len(after) < 10 or bad_after:
    sys.exit(f"after be2 left: {len(after)} connections, {len(bad_after)} failed or on be2 "
             f"({bad_after[:3]})")
before_kill = [q for q in reqs if q[0] < t_kill]
if not any(q[2] == "be2" for q in before_kill):
    sys.exit("no connection reached be2 before the kill: nothing was failed over")
last_bad = max((q[0] for q in reqs if q[0] >= t_kill and (q[2].startswith("!") or q[2] == "be2")),
               default=t_kill)
print(json.dumps({"log_s": log_ms / 1000 - t_kill, "list_s": t_out - t_kill,
                  "list_poll_start_s": t_poll - t_kill,
                  "last_failed_conn_s": last_bad - t_kill, "failed": len(failed),
                  "requests": len(reqs), "after": len(after)}))
PY
		fail "failover $i: $(tail -n 1 "$STATE_DIR/failover.err")"
	e2e_log "failover $i: $(tail -n 1 "$RESULTS.failover")"
	((i < FAILOVERS)) || return 0
	backend_start be2
	wait_backend_for "$BACK_LIMIT_S" "$FO_VIP" "${BE_IPS[1]}" 'b["health"] == "up" and b["table_entries"] > 0'
}

# --- Report ----------------------------------------------------------------------

# report: control.json from the measurements, and the tables printed.
report() {
	"$PYTHON" - "$RESULTS" "$BENCH_OUT/control.json" "$MANY" "$FEW" "$QUICK" "$CPU_S" "$STREAM_S" <<'PY'
import json, statistics, sys
res, out_path = sys.argv[1], sys.argv[2]
many, few, quick = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
cpu_s, stream_s = float(sys.argv[6]), float(sys.argv[7])
lines = lambda f: [json.loads(l) for l in open(f) if l.strip()]
applies = lines(res + ".apply")
mem = lines(res + ".mem")
cpu = json.load(open(res + ".cpu"))
fails = lines(res + ".failover")
ms = lambda s: f"{s * 1000:.0f}" if s >= 0.1 else f"{s * 1000:.1f}"
sections = []

# Apply latency.
cold = next(a for a in applies if a["kind"] == "cold")
warm = [a["apply"] for a in applies if a["kind"] == "weights"]
noop = [a["apply"] for a in applies if a["kind"] == "noop"]
noop_med = statistics.median(a["cli_s"] for a in noop)
rows = []
def row(name, xs, key):
    v = [x[key] for x in xs]
    return [name, str(len(v)), ms(statistics.median(v)), ms(max(v)),
            f"{statistics.median(v) / noop_med:.1f}"]
rows.append(row(f"weights change, {many} backends: new table live", warm, "live_s"))
rows.append(row(f"weights change, {many} backends: CLI returned", warm, "cli_s"))
if cold["warm"]:
    rows.append(row(f"{few} -> {many} backends, MACs known: new table live", [cold["apply"]], "live_s"))
    rows.append(row(f"{few} -> {many} backends, MACs known: CLI returned", [cold["apply"]], "cli_s"))
else:
    rows.append(row(f"{few} -> {many} backends, MACs unknown: CLI returned", [cold["apply"]], "cli_s"))
    rows.append(row(f"{few} -> {many} backends, MACs unknown: all in the live table",
                    [cold["settle"]], "settled_s"))
during = sum(a["seen_during_cli"] for a in warm)
med_live, med_cli = statistics.median(a["live_s"] for a in warm), statistics.median(a["cli_s"] for a in warm)
sections.append({
    "heading": "Apply latency",
    "text": (
        f"ballastd runs with one VIP (`{'10.231.100.2:80/tcp'}`) over {few} backends; `ballast apply -f` then "
        f"applies a config of {many} backends on the balancer's segment (addresses on one backend "
        f"namespace's interface, each answering ARP), and after that alternates between two "
        f"{many}-backend configs that differ in weights (all 1; 1, 2, 1, 2, ...), so every apply "
        f"rebuilds the whole table. Time runs from just before the CLI starts. **New table live**: "
        f"the first time the VIP's slot in the pinned `maglev_tables` names a new inner map, "
        f"polled every 0.5 ms through bpf(2) (seen while the CLI still ran in {during} of {len(warm)} "
        f"applies; otherwise on the poll right after it returned). **CLI returned**: the "
        f"CLI's exit, after ballastd answered with the list of changes. After each apply the whole "
        f"live table is read back and checked: it names exactly the configured backends, each holds "
        f"as many entries as `ballast backend list` says, and each weight class holds its share "
        f"within 1 point.\n\n"
        f"What the time includes: starting the CLI and reading the file, the request over the "
        f"control socket, parsing and validating the whole config, the pre-apply audit, the plan "
        f"(desired against live), writing the changed backend slots, building the Maglev table "
        f"({65537} entries) in pure C++, creating a fresh inner map and writing every entry, the one "
        f"update of `maglev_tables` that swaps it in, recording one change-log line per changed "
        f"backend (each also printed to ballastd's log) and the reply. ballastd logs no duration of "
        f"its own; its change log stamps each entry. Median live {ms(med_live)} ms against CLI "
        f"{ms(med_cli)} ms: the difference is the reply and the CLI's exit.\n\n"
        + (f"The first apply adds {many - few} backends whose MACs the kernel already knows "
           f"(the lb resolved them just before: this is a --quick run), so the table with all of "
           f"them is built and swapped during the apply.\n\n" if cold["warm"] else
           f"The first apply adds {many - few} backends whose MACs the kernel does not know yet: "
           f"ballastd asks the kernel to resolve each (one datagram, which starts ARP) and the CLI "
           f"returns at once, with the table unchanged. The backends join the table at ballastd's "
           f"next neighbour refresh, which runs every 1 s while a backend is unresolved but every "
           f"10 s once all were, and an apply does not bring it forward: here "
           f"{cold['settle']['settled_s']:.1f} s and {cold['settle']['swaps']} table swap(s) until "
           f"all {many} were in. So the first apply of new backends is bounded by that refresh "
           f"(up to 10 s) and ARP, not by the table build. The kernel's neighbour table is shared "
           f"by all namespaces and keeps at most `gc_thresh3` (1024 by default) entries it may "
           f"not collect: a balancer with 1,000 on-link backends needs it raised.\n\n")
        + f"The reference, measured side by side: applying the same config again, which changes "
        f"nothing (no slot, no table, no log line) but runs the CLI, the request, the parse, the "
        f"validation, the audit and the plan; **x no-op** is each median over that one. Times are "
        f"wall-clock on a shared 2-core VM: they swing by 2x between runs, ratios much less; the "
        f"maxima show the noise."),
    "table": {"columns": ["apply", "runs", "median ms", "max ms", "x no-op"],
              "rows": rows + [row(f"the same {many}-backend config again (no-op): CLI returned",
                                  noop, "cli_s")]}})

# Failover.
frows = [[str(i + 1), f"{f['log_s']:.2f}", f"{f['list_s']:.2f}", f"{f['last_failed_conn_s']:.2f}",
          f"{f['failed']} of {f['requests']}", str(f["after"])] for i, f in enumerate(fails)]
sections.append({
    "heading": "Failover time",
    "text": (
        f"Backends be2, be3, be4 serve `10.231.100.1:80/tcp` with an http health check "
        f"(`GET /healthz`, interval 1 s, timeout 500 ms, rise 2, fall 3), while ballastd also "
        f"tcp-checks the {many} backends of the other VIP. The client opens 50 new connections a "
        f"second to the VIP (each with one HTTP request, 2 s timeout); {stream_s:g} s in, be2's server is "
        "killed (SIGKILL: its port answers RST, so each check fails at once, with no timeout to "
        "wait for). Times are seconds after the kill: **change log**: ballastd's `backend health "
        "... up -> down` entry (the health transition, swapped table included); **backend list**: "
        "the end of the first `ballast backend list` (polled every 0.1 s) showing be2 down with "
        "no table entries; **last failed connection**: the start of the last new connection that "
        "failed or reached be2. Every connection started after be2 left must succeed on be3 or "
        "be4, or the bench fails. Failover time is dominated by the health check: `fall` failed "
        "checks `interval` apart, so between (fall - 1) x interval and fall x interval after the "
        "death, depending on where in its interval the check was (checks run in 20 batches a "
        "second); the rest is ballastd's table swap (milliseconds, above) and the poll. "
        "Connections in that window are refused by the dead server: that is what the table "
        "cannot know before the checks say so."),
    "table": {"columns": ["run", "change log s", "backend list s", "last failed connection s",
                          "failed connections", "connections after"], "rows": frows}})

# Health checking cost, end to end.
hz = cpu
per_check_us = (hz["busy"] - hz["idle"]) / many * 1e6
sections.append({
    "heading": "Health checking cost in ballastd",
    "text": (
        f"ballastd's own CPU time (utime + stime from `/proc/PID/stat`, summed over its threads) "
        f"over {cpu_s:g} s: first with the same {many} backends and no checks (the reference: its "
        f"poll loop, the 1 s skew sampling of {many} backends' counters, the audit), then with a "
        f"tcp check of each of them every second (port {8080}, where a listener of ours accepts "
        f"and closes, timeout 500 ms) plus the three http checks of the failover VIP. The "
        f"difference is what checking costs the daemon; `build/bench_health` (above) measures the "
        f"checker alone with the host's share of the packets. Every check must pass throughout. "
        f"Clock-tick resolution (10 ms over {cpu_s:g} s: {1 / cpu_s:g}% of a core)."),
    "table": {"columns": ["ballastd", "CPU (% of one core)"],
              "rows": [[f"{many} backends, no checks (reference)", f"{hz['idle'] * 100:.2f}%"],
                       [f"{many} backends, tcp-checked every second", f"{hz['busy'] * 100:.2f}%"],
                       ["difference, per check", f"{(hz['busy'] - hz['idle']) * 100:.2f}% = {per_check_us:.1f} µs"]]}})

# Memory.
by_label = {m["label"]: m for m in mem}
labels = list(by_label)
mrows = []
first = by_label[labels[0]]
for m in first["maps"]:
    ents = m["max_entries"] or 1
    mrows.append([m["pin"], m["type"], f"{m['bytes_key']} + {m['bytes_value']}", str(m["max_entries"]),
                  f"{m['locked'] / 1048576:.2f}", f"{m['locked'] / ents:.0f}"])
totals = [[lbl, f"{sum(x['locked'] for x in by_label[lbl]['maps']) / 1048576:.1f}",
           f"{by_label[lbl]['rss_kib'] / 1024:.1f}", f"{by_label[lbl]['hwm_kib'] / 1024:.1f}"] for lbl in labels]
conn = next((m for m in first["maps"] if m["pin"] == "conn_table"), None)
inner = next((m for m in first["maps"] if m["pin"].startswith("(maglev")), None)
conn_txt = (f"A connection-table entry is a {conn['bytes_key']}-byte key and a {conn['bytes_value']}-byte "
            f"value; the kernel locks {conn['locked'] / conn['max_entries']:.0f} bytes per entry "
            f"({conn['locked'] / 1048576:.1f} MiB for {conn['max_entries']:,} entries, "
            f"preallocated: the LRU hash's element header, key and value each rounded to 8 bytes, "
            f"per-CPU LRU lists and the buckets). " if conn else "")
inner_txt = (f"Each VIP adds one Maglev inner map of {inner['max_entries']:,} entries "
             f"({inner['locked'] / 1048576:.2f} MiB). " if inner else "")
sections.append({
    "heading": "Memory",
    "text": (
        "Locked memory per map from `bpftool map show` (`bytes_memlock`: what the kernel charges "
        "for the map, at the sizes ballastd creates them) for every map ballastd pinned plus the "
        "Maglev inner maps `maglev_tables` holds; per entry = locked / max_entries. " + conn_txt +
        inner_txt + "Per-CPU maps hold one value per CPU (2 here), rounded to 8 bytes. Arrays "
        "and preallocated hashes cost the same whatever they hold; only `vips` (not "
        "preallocated) grows with use, so the total moves with the number of VIPs, not of "
        "backends or connections. ballastd's resident set (VmRSS) and its peak (VmHWM) from "
        "`/proc/PID/status`."),
    "table": {"columns": ["map", "type", "key + value bytes", "max entries", "locked MiB", "bytes per entry"],
              "rows": mrows},
})
sections.append({
    "heading": "Memory totals",
    "text": "All maps' locked memory and ballastd's RSS at each point of the run.",
    "table": {"columns": ["state", "maps locked MiB", "ballastd VmRSS MiB", "VmHWM MiB"], "rows": totals}})
if quick:
    for s in sections:
        s["text"] = (f"(--quick run: {many} backends, fewer repetitions, checks every 250 ms "
                     f"instead of the 1 s below.) " + s["text"])
doc = {"bench": "control", "title": "Control plane: apply, failover, memory",
       "command": "bench/control_bench.sh build", "order": 70, "sections": sections}
json.dump(doc, open(out_path, "w"), indent=2)
for s in sections:
    print(f"\n{s['heading']}")
    t = s["table"]
    widths = [max(len(str(c)) for c in col) for col in zip(t["columns"], *t["rows"])]
    for r in [t["columns"]] + t["rows"]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
PY
}

# --- Main --------------------------------------------------------------------------

e2e_init "$build"
BENCH_OUT=${BENCH_OUT:-$BUILD_DIR/bench-results}
mkdir -p "$BENCH_OUT"
command -v bpftool >/dev/null || fail "bpftool missing (scripts/install-deps.sh)"
RESULTS=$STATE_DIR/results
e2e_setup
many_setup

# One VIP over FEW backends: memory and RSS at the small end.
write_config "$STATE_DIR/few.yaml" "$FEW" flat "" 0
lb_start "$STATE_DIR/few.yaml"
MANY_ID=$(vip_id "$MANY_VIP")
wait_health_all "$MANY_VIP" "$FEW" 10
check_table "$FEW" flat
measure_memory "1 VIP, $FEW backends"

measure_apply
measure_cpu
measure_memory "2 VIPs, $((MANY + 3)) backends, checked"
for ((f = 1; f <= FAILOVERS; f++)); do
	measure_failover "$f"
done
report
