#!/usr/bin/env bash
#
# compare_bench.sh: Ballast against the balancers operators run today, in one
# topology and one run (issue #6). Real HTTP traffic (wrk) and one
# long-lived bulk transfer (iperf3) from a client, through
#   ballast  Ballast, L2 direct server return (XDP on the lb's eth0)
#   haproxy  HAProxy 2.6, mode tcp, roundrobin
#   nginx    nginx 1.22 stream (TCP proxy), round robin
#   direct   no balancer: the client straight to one backend (the ceiling)
# to the same nginx backends, with the same connections and durations.
#
# Topology: tests/e2e/lib.sh's (client, lb, 3 backends on a bridge, per-run
# namespace prefix, teardown on every exit path), with nginx as the backends'
# HTTP server (lib.sh's Python server would be the bottleneck) and iperf3 -s
# on be1. HAProxy and nginx stream listen on the lb's own address; Ballast
# serves the VIP. The proxies run while Ballast's program is detached (and
# the pass program that XDP_TX on veth needs on the lb's bridge port, which
# would take GSO away from the lb's eth0): each balancer in the setup it
# would have in production, bar the topology's own constraints.
#
# Measured per run: wrk's requests/s and p50/p99 latency (or iperf3's
# Gbit/s), the balancer's CPU (proxies: their processes' utime+stime; Ballast:
# its XDP program's run time from the kernel's BPF statistics, and ballastd's
# own process time), and the whole machine's busy CPU. Checked per run (the
# bench fails otherwise): wrk's errors (socket errors, status >= 400) under
# 0.1% of the requests; the backends' nginx counted at least as many requests
# as wrk completed, through a balancer on every backend, direct on be1 only;
# Ballast's program saw at least one packet per request; iperf3 reported no
# error. Timings are never asserted.
#
# Usage: bench/compare_bench.sh [BUILD_DIR] [--quick]
#   --quick: 0.25 s per HTTP run, 32 MB per iperf3 run (one way), one round,
#   checks every 250 ms, no wait for ballastd to settle: a smoke run (the
#   same code path and checks, figures too short to mean anything), about 5 s.
# Writes $BENCH_OUT/compare.json (bench/report.py's format; BENCH_OUT
# defaults to BUILD_DIR/bench-results) and prints the tables. Needs root.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly BENCH_DIR
readonly TPL_DIR=$BENCH_DIR/compare

build=build
QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	-*)
		echo "compare_bench.sh: unknown option $arg" >&2
		exit 2
		;;
	*) build=$arg ;;
	esac
done

# Same load for every balancer: wrk's threads and connections, and the
# length of each run. Two rounds in opposite orders (full run), so that a
# drift of the shared machine during the run weighs on all alike.
readonly WRK_THREADS=1
readonly WRK_CONNS=50
# iperf3's directions: up, the client sends (the data crosses every
# balancer); down, the backend sends (-R: with DSR it bypasses Ballast).
# How long each runs: wrk's and iperf3's shortest are a second, so --quick
# ends each wrk run after HTTP_CUT_S with SIGINT (wrk stops, then reports
# what it did in that time) and its iperf3 moves a fixed amount of data (a
# few tenths of a second). --quick's backends are checked every 250 ms, so
# they come up sooner after ballastd starts.
if ((QUICK)); then
	readonly HTTP_S=1 HTTP_CUT_S=0.25 ROUNDS=1 CHECK_INTERVAL=250ms
	readonly IPERF_LEN=(-n 32M) IPERF_DIRS=(up) IPERF_WHAT="32 MB"
else
	readonly HTTP_S=6 HTTP_CUT_S='' ROUNDS=2 CHECK_INTERVAL=1s
	readonly IPERF_LEN=(-t 4) IPERF_DIRS=(up down) IPERF_WHAT="4 s"
fi
# The request paths: long-lived keep-alive connections, and one new
# connection per request (where a balancer's per-connection work shows).
readonly HTTP_CASES=(keepalive close)
readonly TARGETS=(ballast direct haproxy nginx)
# wrk errors (socket errors, timeouts, status >= 400) allowed, per request.
readonly MAX_ERROR_FRACTION=0.001

readonly IPERF_PORT=5201 HAPROXY_HTTP_PORT=8081 NGINX_HTTP_PORT=8082
readonly HAPROXY_IPERF_PORT=5202 NGINX_IPERF_PORT=5203

E2E_BACKENDS=3
# shellcheck source=tests/e2e/lib.sh
source "$BENCH_DIR/../tests/e2e/lib.sh"
# The backend running iperf3 -s, and the one the direct runs go to.
readonly IPERF_BE=${BE_IPS[0]} DIRECT_BE=${BE_IPS[0]}

CLK_TCK=$(getconf CLK_TCK)
readonly CLK_TCK
BENCH_OUT=${BENCH_OUT:-}
HAPROXY_PID='' NGINX_LB_PID='' XDP_PROG_ID=''
LB_PEER=''

# die WHY: the bench fails, saying why (teardown follows from the EXIT trap).
die() {
	echo "compare_bench: FAIL: $*" >&2
	exit 1
}

# require_tools: every program the bench runs is installed (else it fails:
# scripts/install-deps.sh installs them).
require_tools() {
	local t
	for t in wrk haproxy nginx iperf3 bpftool curl nsenter getconf; do
		command -v "$t" >/dev/null || die "missing $t (scripts/install-deps.sh installs it)"
	done
	[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] ||
		die "nginx's stream module missing (libnginx-mod-stream)"
	for t in bpf/xdp_pass.bpf.o ballastd ballast; do
		[[ -e $BUILD_DIR/$t ]] || die "$BUILD_DIR/$t missing (run make first)"
	done
}

# render TEMPLATE OUT KEY=VALUE...: TEMPLATE with every @KEY@ replaced;
# fails when a placeholder is left. Values may span lines (server lists).
render() {
	"$PYTHON" - "$@" <<'PY'
import re, sys
tpl, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(tpl).read()
for kv in pairs:
    k, v = kv.split("=", 1)
    text = text.replace(f"@{k}@", v)
left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
if left:
    sys.exit(f"{tpl}: placeholders left: {left}")
open(out, "w").write(text)
PY
}

# wait_listen NS PORT WHAT PID: waits (10 s at most) until something in NS
# listens on TCP PORT; fails at once when PID (the server) exits first.
wait_listen() {
	local ns=$1 port=$2 what=$3 pid=$4 deadline=$((SECONDS + 10))
	until nsx "$ns" ss -Hltn "sport = :$port" | grep -q .; do
		pid_alive "$pid" || die "$what (pid $pid) exited before listening on port $port"
		((SECONDS <= deadline)) || die "$what not listening on port $port after 10 s"
		sleep 0.05
	done
}

# ns_sysctls: the namespaces' TCP settings for many short connections (the
# close case opens thousands a second): a wide port range and TIME_WAIT
# reuse where connections are opened (client, and the proxies on the lb),
# deep accept queues where they are accepted. Namespaced: the machine's own
# settings are untouched.
ns_sysctls() {
	local ns
	for ns in "$NS_CL" "$NS_LB"; do
		nsx "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65000" \
			net.ipv4.tcp_tw_reuse=1
	done
	for ns in "$NS_LB" "${NS_BE[@]}"; do
		nsx "$ns" sysctl -q -w net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
	done
}

# backends_start_nginx: nginx (bench/compare/backend-nginx.conf) in every
# backend namespace, and iperf3 -s on be1; tracked for teardown.
backends_start_nginx() {
	local i dir name pid
	for i in "${!BE_NAMES[@]}"; do
		name=${BE_NAMES[$i]}
		dir=$STATE_DIR/$name
		mkdir -p "$dir"
		render "$TPL_DIR/backend-nginx.conf" "$dir/nginx.conf" "DIR=$dir" "NAME=$name"
		ip netns exec "${NS_BE[$i]}" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
			>"$dir/stdout.log" 2>&1 &
		track_pid "nginx-$name" "$!"
		disown "$!"
	done
	for i in "${!BE_NAMES[@]}"; do
		wait_listen "${NS_BE[$i]}" 80 "nginx on ${BE_NAMES[$i]}" "$(cat "$STATE_DIR/pids/nginx-${BE_NAMES[$i]}")"
	done
	ip netns exec "${NS_BE[0]}" iperf3 -s -p "$IPERF_PORT" >"$STATE_DIR/iperf3-server.log" 2>&1 &
	pid=$!
	track_pid iperf3-server "$pid"
	disown "$pid"
	wait_listen "${NS_BE[0]}" "$IPERF_PORT" "iperf3 -s on ${BE_NAMES[0]}" "$pid"
}

# server_lines FORMAT: one line per backend: FORMAT with {name} and {addr}
# replaced by the backend's.
server_lines() {
	local i line
	for i in "${!BE_NAMES[@]}"; do
		line=${1//\{name\}/${BE_NAMES[$i]}}
		printf '%s\n' "${line//\{addr\}/${BE_IPS[$i]}}"
	done
}

# proxies_start: HAProxy and nginx stream in the lb namespace, on the lb's
# address (bench/compare/haproxy.cfg, nginx-stream.conf).
proxies_start() {
	local dir=$STATE_DIR/haproxy
	mkdir -p "$dir"
	render "$TPL_DIR/haproxy.cfg" "$dir/haproxy.cfg" "LB_IP=$LB_IP" \
		"HAPROXY_HTTP_PORT=$HAPROXY_HTTP_PORT" "HAPROXY_IPERF_PORT=$HAPROXY_IPERF_PORT" \
		"IPERF_BE=$IPERF_BE" "IPERF_PORT=$IPERF_PORT" \
		"SERVERS=$(server_lines $'\tserver {name} {addr}:80 check inter 1s')"
	# -db: foreground, one process (HAProxy's threads inside it).
	ip netns exec "$NS_LB" haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
	HAPROXY_PID=$!
	track_pid haproxy "$HAPROXY_PID"
	disown "$HAPROXY_PID"

	dir=$STATE_DIR/nginx-lb
	mkdir -p "$dir"
	render "$TPL_DIR/nginx-stream.conf" "$dir/nginx.conf" "DIR=$dir" "LB_IP=$LB_IP" \
		"NGINX_HTTP_PORT=$NGINX_HTTP_PORT" "NGINX_IPERF_PORT=$NGINX_IPERF_PORT" \
		"IPERF_BE=$IPERF_BE" "IPERF_PORT=$IPERF_PORT" \
		"SERVERS=$(server_lines $'\t\tserver {addr}:80;')"
	ip netns exec "$NS_LB" nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" \
		>"$dir/stdout.log" 2>&1 &
	NGINX_LB_PID=$!
	track_pid nginx-lb "$NGINX_LB_PID"
	disown "$NGINX_LB_PID"

	wait_listen "$NS_LB" "$HAPROXY_HTTP_PORT" haproxy "$HAPROXY_PID"
	wait_listen "$NS_LB" "$NGINX_HTTP_PORT" "nginx stream" "$NGINX_LB_PID"
}

# bpf_stats_on: the kernel's BPF run-time statistics on for this run
# (build/tools/bpf_stats_hold, bench/tools/: reference-counted, off when it
# ends).
bpf_stats_on() {
	local log=$STATE_DIR/bpf_stats.log deadline=$((SECONDS + 10))
	"$BUILD_DIR/tools/bpf_stats_hold" >"$log" 2>&1 &
	track_pid bpf-stats "$!"
	disown "$!"
	until grep -q '^enabled' "$log"; do
		((SECONDS <= deadline)) || die "BPF statistics not enabled: $(cat "$log")"
		sleep 0.05
	done
}

# peer_pass on|off: the pass program on the lb's bridge port, which XDP_TX
# on veth needs (shared/README.md), attached or detached (either way, once).
peer_pass() {
	local attached=off
	ip -n "$NS_SW" link show dev "$LB_PEER" | grep -q xdp && attached=on
	[[ $1 == "$attached" ]] && return 0
	if [[ $1 == on ]]; then
		ip -n "$NS_SW" link set dev "$LB_PEER" xdpdrv \
			obj "$BUILD_DIR/bpf/xdp_pass.bpf.o" sec xdp
	else
		ip -n "$NS_SW" link set dev "$LB_PEER" xdpdrv off
	fi
}

# ballast_on: ballastd serving the VIPs (bench/compare/ballast.yaml); sets
# XDP_PROG_ID to the program attached to the lb's eth0 (libxdp's dispatcher
# when it uses one: its run time includes the programs it calls).
ballast_on() {
	local cfg=$STATE_DIR/ballast.yaml addr
	[[ -n $(lb_pid) ]] && return 0
	render "$TPL_DIR/ballast.yaml" "$cfg" "VIP=$VIP1" "IPERF_PORT=$IPERF_PORT" \
		"CHECK_INTERVAL=$CHECK_INTERVAL" "IPERF_BE=$IPERF_BE" "BACKENDS=$(server_lines '      - {address: {addr}}')"
	peer_pass on
	lb_start "$cfg"
	# Until its first health check passes a backend takes no new flows (the
	# VIP drops them): wait for every one.
	for addr in "${BE_IPS[@]}"; do
		wait_backend_for 10 "$VIP1:$HTTP_PORT/tcp" "$addr" 'b["health"] == "up"' 2>/dev/null
	done
	# (--quick's figures mean nothing anyway: it saves the wait.)
	((QUICK)) || ballastd_settle
	XDP_PROG_ID=$(ip -n "$NS_LB" -j link show dev eth0 | "$PYTHON" -c '
import json, sys
print(json.load(sys.stdin)[0].get("xdp", {}).get("prog", {}).get("id", ""))')
	[[ -n $XDP_PROG_ID ]] || die "ballastd ready but no XDP program on the lb's eth0"
	e2e_log "ballast on: XDP program id $XDP_PROG_ID"
}

# ballastd_settle: waits (4 s at most) until ballastd's CPU time stands
# still (at most a tick in 0.5 s): its first second or two after "ready"
# cost a few tenths of a second of CPU, which is its start (the same in any
# deployment), not what it costs while serving.
ballastd_settle() {
	local pid last now deadline=$((SECONDS + 4))
	pid=$(lb_pid)
	last=$(proc_ticks "$pid")
	while ((SECONDS < deadline)); do
		sleep 0.5
		now=$(proc_ticks "$pid")
		((now - last <= 1)) && return 0
		last=$now
	done
	e2e_log "ballastd still busy 4 s after its start: measuring anyway"
}

# ballast_off: ballastd stopped, Ballast removed from the lb's eth0
# (ballastd --cleanup: a stop alone leaves it forwarding) and the peer's
# pass program detached (checked: the proxies must not run behind an XDP
# program).
ballast_off() {
	if [[ -n $(lb_pid) ]]; then
		lb_stop || die "ballastd exited with status $? on SIGTERM"
	fi
	lb_exec "$BUILD_DIR/ballastd" --cleanup --interface eth0 --pin-dir "$PIN_DIR" >/dev/null 2>&1 ||
		die "ballastd --cleanup failed"
	if lb_xdp_attached; then
		die "XDP program still on the lb's eth0 after ballastd stopped"
	fi
	peer_pass off
	XDP_PROG_ID=''
}

# proc_ticks PID...: utime+stime in clock ticks of each PID (all its
# threads) and of its children (nginx's workers), summed; 0 for none.
proc_ticks() {
	local pid pids=()
	for pid in "$@"; do
		pids+=("$pid")
		# shellcheck disable=SC2207
		pids+=($(cat /proc/"$pid"/task/*/children 2>/dev/null))
	done
	# Fields after the ")" that ends the command name: utime is the 12th,
	# stime the 13th (proc(5)'s 14 and 15).
	for pid in "${pids[@]}"; do
		cat "/proc/$pid/stat" 2>/dev/null || true
	done | awk '{ sub(/.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# target_pids TARGET: the processes doing TARGET's balancing in userspace.
target_pids() {
	case $1 in
	haproxy) echo "$HAPROXY_PID" ;;
	nginx) echo "$NGINX_LB_PID" ;;
	*) ;;
	esac
}

# cpu_counters TARGET: the CPU counters, one "key value" a line: the time,
# the machine's busy and softirq ticks (/proc/stat), TARGET's processes'
# ticks, ballastd's, the client's TCP retransmissions, and Ballast's XDP
# program's run time and count.
cpu_counters() {
	local target=$1 pid
	for pid in $(target_pids "$target") $(lb_pid); do
		pid_alive "$pid" || die "process $pid (a balancer) is gone"
	done
	echo "t $(date +%s.%N)"
	awk '/^cpu / { print "machine_busy", $2 + $3 + $4 + $7 + $8 + $9; print "machine_softirq", $8 }' /proc/stat
	# shellcheck disable=SC2046
	echo "proc $(proc_ticks $(target_pids "$target"))"
	pid=$(lb_pid)
	echo "ballastd $([[ -n $pid ]] && proc_ticks "$pid" || echo 0)"
	# The client's TCP retransmissions: a balancer losing packets shows here.
	# shellcheck disable=SC2016
	nsenter "--net=/run/netns/$NS_CL" -- awk '/^Tcp:/ {
		if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else print "client_retrans", $col["RetransSegs"] }' /proc/net/snmp
	if [[ -n $XDP_PROG_ID ]]; then
		# "run_time_ns N run_cnt M" on the first line; absent while both are 0.
		bpftool prog show id "$XDP_PROG_ID" | awk '
			{ for (i = 1; i < NF; i++) { if ($i == "run_time_ns") ns = $(i + 1); if ($i == "run_cnt") n = $(i + 1) } }
			END { print "xdp_ns", ns + 0; print "xdp_cnt", n + 0 }'
	else
		printf 'xdp_ns 0\nxdp_cnt 0\n'
	fi
}

# backend_counters: requests each backend's nginx has counted (stub_status),
# one "be.NAME N" a line; the backends asked all at once.
backend_counters() {
	local i f pids=()
	for i in "${!BE_NAMES[@]}"; do
		nsenter "--net=/run/netns/${NS_BE[$i]}" -- curl -sf --max-time 5 \
			http://127.0.0.1/stub_status >"$STATE_DIR/stub.${BE_NAMES[$i]}" &
		pids+=("$!")
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || die "stub_status of ${BE_NAMES[$i]} unreadable (curl status $?)"
	done
	for i in "${!BE_NAMES[@]}"; do
		f=$STATE_DIR/stub.${BE_NAMES[$i]}
		# Its third line: accepts handled requests.
		awk -v n="${BE_NAMES[$i]}" 'NR == 3 { print "be." n, $3; ok = 1 } END { exit !ok }' "$f" ||
			die "stub_status of ${BE_NAMES[$i]} printed no request count: $(head -c 200 "$f")"
	done
}

# http_url TARGET: where wrk sends TARGET's requests.
http_url() {
	case $1 in
	ballast) echo "http://$VIP1:$HTTP_PORT/" ;;
	direct) echo "http://$DIRECT_BE:80/" ;;
	haproxy) echo "http://$LB_IP:$HAPROXY_HTTP_PORT/" ;;
	nginx) echo "http://$LB_IP:$NGINX_HTTP_PORT/" ;;
	esac
}

# iperf_dest TARGET: iperf3's server address and port through TARGET.
iperf_dest() {
	case $1 in
	ballast) echo "$VIP1 $IPERF_PORT" ;;
	direct) echo "$IPERF_BE $IPERF_PORT" ;;
	haproxy) echo "$LB_IP $HAPROXY_IPERF_PORT" ;;
	nginx) echo "$LB_IP $NGINX_IPERF_PORT" ;;
	esac
}

# target_ready TARGET: Ballast on for ballast, off for every other target.
target_ready() {
	if [[ $1 == ballast ]]; then ballast_on; else ballast_off; fi
}

# record KIND CASE TARGET ROUND OUT: checks the run whose counters are in
# OUT.before/OUT.after and whose tool output is OUT, and appends its record
# to $STATE_DIR/runs.jsonl (bench/compare/results.py check); fails the bench
# with the check's reason when it does not hold.
record() {
	"$PYTHON" "$TPL_DIR/results.py" check --clk-tck "$CLK_TCK" \
		--max-error-fraction "$MAX_ERROR_FRACTION" --direct-backend "${BE_NAMES[0]}" \
		--kind "$1" --case "$2" --target "$3" --round "$4" --out "$5" \
		>>"$STATE_DIR/runs.jsonl" || die "$1 $2 through $3 (round $4): the check above failed"
}

# http_run CASE TARGET ROUND: one wrk run through TARGET, checked and recorded.
http_run() {
	local case=$1 target=$2 round=$3 out=$STATE_DIR/http-$1-$2-$3
	local args=(-t "$WRK_THREADS" -c "$WRK_CONNS" -d "${HTTP_S}s" --latency
		-s "$TPL_DIR/wrk_report.lua")
	[[ $case == close ]] && args+=(-H "Connection: close")
	target_ready "$target"
	backend_counters >"$out.before"
	cpu_counters "$target" >>"$out.before"
	local cut=()
	[[ -n $HTTP_CUT_S ]] && cut=(timeout --preserve-status -s INT "$HTTP_CUT_S")
	nsx "$NS_CL" "${cut[@]}" wrk "${args[@]}" "$(http_url "$target")" >"$out" 2>&1 ||
		die "wrk through $target exited $?: $(tail -n 3 "$out" | oneline)"
	cpu_counters "$target" >"$out.after"
	backend_counters >>"$out.after"
	record http "$case" "$target" "$round" "$out"
}

# iperf_run DIRECTION TARGET ROUND: one iperf3 run through TARGET (up: the
# client sends; down: -R, the backend sends), checked and recorded.
iperf_run() {
	local dir=$1 target=$2 round=$3 out=$STATE_DIR/iperf-$1-$2-$3 dest args=() try
	read -ra dest <<<"$(iperf_dest "$target")"
	[[ $dir == down ]] && args+=(-R)
	target_ready "$target"
	cpu_counters "$target" >"$out.before"
	# The server takes one test at a time and may still be closing the
	# last one: one retry when it says it is busy.
	for try in 1 2; do
		if nsx "$NS_CL" iperf3 -c "${dest[0]}" -p "${dest[1]}" "${IPERF_LEN[@]}" -J "${args[@]}" \
			>"$out" 2>"$out.err"; then
			break
		fi
		if ((try == 2)) || ! grep -q 'busy' "$out" "$out.err"; then
			break
		fi
		sleep 0.5
		cpu_counters "$target" >"$out.before"
	done
	cpu_counters "$target" >"$out.after"
	record iperf "$dir" "$target" "$round" "$out"
}

# main: the topology, the servers, the runs, the report.
main() {
	local round t c i order=()
	require_tools
	[[ -n $BENCH_OUT ]] || BENCH_OUT=$BUILD_DIR/bench-results
	mkdir -p "$BENCH_OUT"
	topo_create
	LB_PEER=$PREFIX-lb
	ns_sysctls
	backends_start_nginx
	proxies_start
	bpf_stats_on
	: >"$STATE_DIR/runs.jsonl"

	for ((round = 1; round <= ROUNDS; round++)); do
		# Odd rounds in TARGETS' order, even ones reversed; each target's
		# runs together (one ballastd start per round).
		order=("${TARGETS[@]}")
		if ((round % 2 == 0)); then
			order=()
			for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do order+=("${TARGETS[$i]}"); done
		fi
		for t in "${order[@]}"; do
			for c in "${HTTP_CASES[@]}"; do
				e2e_log "round $round: HTTP $c through $t"
				http_run "$c" "$t" "$round"
			done
			for c in "${IPERF_DIRS[@]}"; do
				e2e_log "round $round: iperf3 $c through $t"
				iperf_run "$c" "$t" "$round"
			done
		done
	done
	ballast_off

	"$PYTHON" "$TPL_DIR/results.py" write --runs "$STATE_DIR/runs.jsonl" \
		--out "$BENCH_OUT/compare.json" --quick "$QUICK" --http-s "${HTTP_CUT_S:-$HTTP_S}" \
		--iperf-what "$IPERF_WHAT" --rounds "$ROUNDS" --threads "$WRK_THREADS" \
		--conns "$WRK_CONNS" --backends "${#BE_NAMES[@]}" ||
		die "results.py write failed"
}

e2e_init "$build"
# Any command that fails unchecked ends the bench: say which (not for the
# exit of die or fail, which said why, nor teardown's return of the status).
set -E
trap 'rc=$?; [[ $BASH_COMMAND == exit* || $BASH_COMMAND == return* ]] ||
	echo "compare_bench: FAIL: line $LINENO: \"$BASH_COMMAND\" returned $rc" >&2' ERR
main
