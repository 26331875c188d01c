# shellcheck shell=bash
#
# lib.sh: the world Ballast's end-to-end tests run in, sourced by
# tests/e2e/test_*.sh and scripts/demo.sh. It builds a private L2 segment out
# of network namespaces, starts backends and ballastd in it, runs the test
# functions and tears every piece down again on any exit (success, failure,
# error, Ctrl-C, SIGTERM). Modelled on xdp-tools' lib/testing/test_runner.sh.
#
# Topology (P = a per-run prefix carried by every namespace and link name, so
# that concurrent runs never collide and teardown deletes exactly what this
# run made):
#
#   netns P-cl   client   eth0 10.231.0.2/24 ---+
#   netns P-lb   ballastd eth0 10.231.0.3/24 ---+--- bridge P-br (netns P-sw),
#   netns P-be1  backend  eth0 10.231.0.11/24 --+    one veth port per node:
#   netns P-be2  backend  eth0 10.231.0.12/24 --+    P-cl, P-lb, P-be1, ...
#   netns P-be3  backend  eth0 10.231.0.13/24 --+
#  (netns P-be4  backend  eth0 10.231.0.14/24 --+    with E2E_BACKENDS=4)
#
# L2 direct server return: the client routes the VIP range 10.231.100.0/24 via
# the lb; ballastd's XDP program rewrites the destination MAC to a backend's
# and sends the frame back out (XDP_TX); backends hold every VIP on lo and
# answer the client directly.
#
# IPv6 is disabled in every namespace unless the sourcing script sets
# E2E_IPV6=1 before e2e_setup (e2e_main). Then every node also has an IPv6
# address on eth0 (fd00:231::2 client, ::3 lb, ::11.. backends, /64, no DAD,
# no router solicitations or advertisements taken), the backends hold the
# IPv6 VIPs fd00:231:100::1 and ::2 (VIP6_1, VIP6_2) on lo next to the IPv4
# ones and serve them (HTTP on [::]:80, UDP on each VIP6), and the client
# routes fd00:231:100::/64 via the lb's fd00:231::3 (BE_IPS6, CLIENT_IP6,
# LB_IP6).
#
# Use:
#   source tests/e2e/lib.sh
#   e2e_init "$BUILD_DIR"        # checks, prefix, state dir, traps
#   e2e_setup                    # topology and backend servers
#   E2E_TESTS=(test_a test_b); run_tests "$@"    # exits
#
# Test functions run in a subshell under `set -e`, in their own process group
# (so teardown can end everything a test started). Inside one: fail "why",
# skip "why", lb_start/lb_stop/lb_cli, client_run, backend_count, assert_*;
# for failures and long-lived traffic: backend_kill/backend_start,
# backend_health (the health path's answers), client_bg/client_wait (stream,
# hold and flood modes of client.py), hold_start/hold_stop, wait_backend
# (poll `ballast backend list` for a condition), lb_log_json, stat_value;
# tcp_batch (VIP1), tcp_batch_to/udp_batch_to (any VIP, either family);
# decap_all/decapped (the backends' decap program for ipip and gue VIPs).
# A script may define e2e_after_each, which run_tests calls in the main shell
# after each test instead of the default (e2e_reset_nodes); test_paths.sh
# calls e2e_reset_nodes from its own.

# --- Address plan: only inside our own namespaces ---------------------------
readonly E2E_SUBNET_LEN=24
readonly CLIENT_IP=10.231.0.2
readonly LB_IP=10.231.0.3
# Three backends unless the sourcing script sets E2E_BACKENDS (1..9) first.
E2E_BACKENDS=${E2E_BACKENDS:-3}
((E2E_BACKENDS >= 1 && E2E_BACKENDS <= 9)) || {
	echo "lib.sh: E2E_BACKENDS must be 1..9, got $E2E_BACKENDS" >&2
	exit 1
}
BE_NAMES=() BE_IPS=()
for ((_i = 1; _i <= E2E_BACKENDS; _i++)); do
	BE_NAMES+=("be$_i")
	BE_IPS+=("10.231.0.1$_i")
done
unset _i
readonly BE_NAMES BE_IPS
# The client routes this whole range via the lb; backends hold VIP1 and VIP2.
readonly VIP_RANGE=10.231.100.0/24
readonly VIP1=10.231.100.1
readonly VIP2=10.231.100.2
readonly HTTP_PORT=80
readonly UDP_PORT=9000
# Each backend's UDP health responder, on its own address (not a VIP's):
# the target of UDP health checks (backend_server.py).
readonly UDP_CHECK_PORT=9100

# IPv6, only with E2E_IPV6=1 (read by topo_create and backend_spawn, so a
# script sets it before e2e_setup / e2e_main; see the top).
readonly E2E_SUBNET6_LEN=64
readonly CLIENT_IP6=fd00:231::2
readonly LB_IP6=fd00:231::3
BE_IPS6=()
for ((_i = 1; _i <= E2E_BACKENDS; _i++)); do
	BE_IPS6+=("fd00:231::1$_i")
done
unset _i
readonly BE_IPS6
readonly VIP6_RANGE=fd00:231:100::/64
readonly VIP6_1=fd00:231:100::1
readonly VIP6_2=fd00:231:100::2

# Exit status a test uses to say "skipped" (as xdp-tools' runner does): any
# value a shell command would not return by accident.
readonly E2E_SKIP_RC=249
# How long ballastd may take to print "ready", and to exit after SIGTERM.
readonly LB_READY_TIMEOUT_S=30
readonly LB_STOP_TIMEOUT_S=10

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$E2E_LIB_DIR/../.." && pwd)

# Set by e2e_init.
BUILD_DIR=
PYTHON=
PREFIX=
STATE_DIR=
NS_SW='' NS_CL='' NS_LB=''
NS_BE=()
# Namespaces a script adds to the topology (named $PREFIX-...): torn down
# with the rest on every exit path.
E2E_EXTRA_NS=()
# Host groups a test created (per-run names): deleted at teardown.
E2E_EXTRA_GROUPS=()
PIN_DIR=
LB_SOCK=
# More ballastd options for lb_start (a test sets them for itself).
LB_EXTRA_ARGS=()
LB_NSENTER=()
E2E_MAIN_PID=
E2E_TEST_PID=
E2E_TORN_DOWN=0

# --- Messages ----------------------------------------------------------------

e2e_log() {
	printf '[%s] %s\n' "$(date +%T)" "$*" >&2
}

# fail REASON: ends the current test as FAIL with a one-line reason.
fail() {
	e2e_log "FAIL: $*"
	printf '%s\n' "$*" >"$STATE_DIR/reason"
	exit 1
}

# oneline: stdin's lines joined by "|", for one-line reasons.
oneline() {
	paste -sd '|' -
}

# problem WHAT: notes a failed check and lets the test go on, so that one
# run lists every case that is wrong; fail_if_problems ends the test.
problem() {
	e2e_log "problem: $*"
	printf '%s\n' "$*" >>"$STATE_DIR/problems"
}

# fail_if_problems: FAIL with every problem noted so far, if any.
fail_if_problems() {
	[[ -s $STATE_DIR/problems ]] || return 0
	fail "$(grep -c '' "$STATE_DIR/problems") problem(s): $(awk 'NR > 1 { printf "; " } { printf "%s", $0 }' "$STATE_DIR/problems")"
}

# e2e_on_err STATUS WHERE COMMAND: the tests' ERR trap. The last one wins:
# a failure inside $(...) fires here twice, inner command first.
e2e_on_err() {
	printf '%s: "%s" returned %s\n' "$2" "$3" "$1" >"$STATE_DIR/reason"
}

# skip REASON: ends the current test (or, outside a test, the script) as SKIP.
skip() {
	e2e_log "SKIP: $*"
	printf '%s\n' "$*" >"$STATE_DIR/reason"
	exit "$E2E_SKIP_RC"
}

# --- Set-up and teardown -----------------------------------------------------

# e2e_init BUILD_DIR: checks what the tests need, picks the run's prefix,
# makes the state dir and installs the traps. Prints "SKIP all: ..." and exits
# 0 when the machine cannot run these tests at all (not root, no netns).
e2e_init() {
	local build=${1:-build}
	local tool

	if [[ $EUID -ne 0 ]]; then
		echo "SKIP all: needs root (network namespaces, XDP)"
		exit 0
	fi
	for tool in ip ethtool python3 timeout; do
		if ! command -v "$tool" >/dev/null; then
			echo "SKIP all: missing tool: $tool"
			exit 0
		fi
	done
	# Relative to the current directory when it exists there, else to the
	# repository root; absolute from here on (tests run elsewhere).
	if [[ -d $build ]]; then
		BUILD_DIR=$(cd "$build" && pwd)
	else
		BUILD_DIR=$REPO_ROOT/$build
	fi
	# Debian's interpreter where there is one (the tests use only its
	# standard library), else the real one behind python3, never a version
	# manager's shim: it is started often, inside `ip netns exec`, and
	# Debian's starts in half the time of a version manager's build here.
	if [[ -x /usr/bin/python3 ]]; then
		PYTHON=/usr/bin/python3
	else
		PYTHON=$(python3 -c 'import sys; print(sys.executable)')
	fi

	# bpffs is not mounted at boot here; ballastd pins under it. It stays
	# mounted afterwards: other users of this machine may rely on it.
	if ! mountpoint -q /sys/fs/bpf; then
		mount -t bpf bpf /sys/fs/bpf
	fi

	# Short prefix: link names are "P-be1" and must fit IFNAMSIZ (15).
	while :; do
		PREFIX=$(printf 'bl%05x' $(((RANDOM << 8 ^ $$) & 0xfffff)))
		[[ -e /run/netns/$PREFIX-sw || -e /sys/fs/bpf/ballast-$PREFIX ]] || break
	done
	NS_SW=$PREFIX-sw
	NS_CL=$PREFIX-cl
	NS_LB=$PREFIX-lb
	NS_BE=("${BE_NAMES[@]/#/$PREFIX-}")
	PIN_DIR=/sys/fs/bpf/ballast-$PREFIX
	STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ballast-e2e-$PREFIX.XXXXXX")
	mkdir -p "$STATE_DIR/pids"
	LB_SOCK=$STATE_DIR/ballast.sock
	LB_NSENTER=(nsenter "--net=/run/netns/$NS_LB" --)
	E2E_MAIN_PID=$BASHPID

	trap e2e_teardown EXIT
	# exit from a signal trap runs the EXIT trap: one teardown path. The
	# first thing each does is ignore further signals: a Ctrl-C often
	# arrives twice (the terminal, and a wrapper like timeout forwarding
	# it), and a second one must not cut the teardown short.
	trap 'trap "" INT TERM; e2e_log "interrupted (SIGINT)"; exit 130' INT
	trap 'trap "" INT TERM; e2e_log "terminated (SIGTERM)"; exit 143' TERM
	e2e_log "run prefix $PREFIX, state in $STATE_DIR"
}

# pid_alive PID: true while PID runs (a zombie counts as gone).
pid_alive() {
	local state
	state=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# track_pid NAME PID: teardown will end PID (by its id) if it still runs.
track_pid() {
	printf '%s\n' "$2" >"$STATE_DIR/pids/$1"
}

# stop_pid PID [TIMEOUT_S]: SIGTERM, then SIGKILL if it outlives TIMEOUT_S.
stop_pid() {
	local pid=$1 limit=${2:-5} i
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < limit * 10; i++)); do
		pid_alive "$pid" || return 0
		sleep 0.1
	done
	e2e_log "pid $pid ignored SIGTERM for ${limit}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

# stop_test_group: ends whatever the last test left running (its process
# group: clients, ballastd, any helper).
stop_test_group() {
	local pgid=$E2E_TEST_PID
	[[ -n $pgid ]] || return 0
	E2E_TEST_PID=
	kill -TERM -- "-$pgid" 2>/dev/null || return 0
	sleep 0.2
	kill -KILL -- "-$pgid" 2>/dev/null || true
}

# e2e_teardown: the EXIT trap. Safe to run twice and on a half-built world.
e2e_teardown() {
	local rc=$? f ns pid
	# Subshells (tests) never tear down the world they run in.
	[[ $BASHPID == "$E2E_MAIN_PID" && $E2E_TORN_DOWN == 0 ]] || return "$rc"
	E2E_TORN_DOWN=1
	set +e
	trap '' INT TERM
	stop_test_group
	lb_stop_quiet
	for f in "$STATE_DIR"/pids/*; do
		[[ -f $f ]] || continue
		stop_pid "$(cat "$f")" 5
		rm -f "$f"
	done
	# ballastd's instance locks and change journals under /run/ballast: the
	# lb namespace's interface locks (named by its inode) and this run's
	# pin dir's files.
	local lb_ino=''
	[[ -n $NS_LB && -e /run/netns/$NS_LB ]] && lb_ino=$(stat -L -c %i "/run/netns/$NS_LB" 2>/dev/null)
	for ns in "$NS_CL" "$NS_LB" "${NS_BE[@]}" "${E2E_EXTRA_NS[@]}" "$NS_SW"; do
		[[ -n $ns && -e /run/netns/$ns ]] || continue
		# A process still inside would keep the namespace (and its links)
		# alive after its name is gone: end it first. Only our own
		# namespaces are searched, so only our own processes are found.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			e2e_log "process $pid left in $ns: ending it"
			stop_pid "$pid" 2
		done
		ip netns del "$ns"
	done
	if [[ -n $PIN_DIR && -e $PIN_DIR ]]; then
		e2e_log "pins left in $PIN_DIR: removing them"
		rm -rf "$PIN_DIR"
	fi
	if [[ -n $PREFIX ]]; then
		rm -f /run/ballast/ballastd-pins-*"$PREFIX".lock /run/ballast/ballastd-pins-*"$PREFIX".changes
		[[ -z $lb_ino ]] || rm -f /run/ballast/ballastd-net"$lb_ino"-*.lock
		rm -rf "/run/ballast-e2e-$PREFIX"
	fi
	for f in "${E2E_EXTRA_GROUPS[@]}"; do
		getent group "$f" >/dev/null && groupdel "$f"
	done
	if [[ -n $STATE_DIR && -d $STATE_DIR ]]; then
		if [[ ${E2E_KEEP_STATE:-0} == 1 ]]; then
			e2e_log "state kept in $STATE_DIR (E2E_KEEP_STATE=1)"
		else
			rm -rf "$STATE_DIR"
		fi
	fi
	return "$rc"
}

# nsx NS CMD...: runs CMD inside namespace NS.
nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# e2e_ipv6: true when this run's topology has IPv6 (E2E_IPV6=1).
e2e_ipv6() {
	[[ ${E2E_IPV6:-0} == 1 ]]
}

# topo_create: the namespaces, the bridge and the links described at the top.
topo_create() {
	local i ns port
	local nodes=("$NS_CL" "$NS_LB" "${NS_BE[@]}")
	local ports=("$PREFIX-cl" "$PREFIX-lb" "${BE_NAMES[@]/#/$PREFIX-}")
	local ips=("$CLIENT_IP" "$LB_IP" "${BE_IPS[@]}")
	local ips6=("$CLIENT_IP6" "$LB_IP6" "${BE_IPS6[@]}")

	ip netns add "$NS_SW"
	ip -n "$NS_SW" link add "$PREFIX-br" type bridge
	if e2e_ipv6; then
		# Neighbour discovery is multicast: the bridge floods it to every
		# port rather than follow what MLD snooping learnt (or failed to).
		ip -n "$NS_SW" link set "$PREFIX-br" type bridge mcast_snooping 0
	fi
	ip -n "$NS_SW" link set "$PREFIX-br" up
	for i in "${!nodes[@]}"; do
		ns=${nodes[$i]}
		port=${ports[$i]}
		ip netns add "$ns"
		if e2e_ipv6; then
			# IPv6, but quiet: no router solicitations, no DAD (addresses
			# are usable at once), no router advertisements taken. Set
			# before eth0 exists, so that it inherits the defaults.
			nsx "$ns" sysctl -q -w \
				net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
				net.ipv6.conf.all.router_solicitations=0 \
				net.ipv6.conf.default.router_solicitations=0 \
				net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
				net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0
		else
			# No IPv6: its router solicitations and DAD would only add
			# noise to the balancer's counters.
			nsx "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
				net.ipv6.conf.default.disable_ipv6=1
		fi
		# Created straight into the two namespaces: nothing ever appears in
		# the root namespace.
		ip link add "$port" netns "$NS_SW" type veth peer name eth0 netns "$ns"
		ip -n "$NS_SW" link set "$port" master "$PREFIX-br" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "${ips[$i]}/$E2E_SUBNET_LEN" dev eth0
		if e2e_ipv6; then
			ip -n "$ns" -6 addr add "${ips6[$i]}/$E2E_SUBNET6_LEN" dev eth0 nodad
		fi
		ip -n "$ns" link set eth0 up
	done

	# XDP_TX on veth only delivers when the peer runs an XDP program
	# (shared/README.md): give the lb's bridge port a pass program.
	ip -n "$NS_SW" link set dev "$PREFIX-lb" xdpdrv \
		obj "$BUILD_DIR/bpf/xdp_pass.bpf.o" sec xdp

	# veth leaves TCP/UDP checksums unfinished with TX offload on, and that
	# state is lost when the frame crosses a native XDP program, so the
	# backend would drop the client's packets as bad checksums
	# (shared/README.md). Only the client's frames cross one (ballast on the
	# lb's eth0, then the pass program on its port). Backends' replies go
	# straight to the client through none, and the lb sends only ARP and
	# ICMP of its own: both keep their offload (checked: every test passes
	# so, and with the client's on, TCP to the VIP times out).
	nsx "$NS_CL" ethtool -K eth0 tx off >/dev/null

	# The client reaches every VIP through the balancer.
	ip -n "$NS_CL" route add "$VIP_RANGE" via "$LB_IP" dev eth0
	if e2e_ipv6; then
		ip -n "$NS_CL" -6 route add "$VIP6_RANGE" via "$LB_IP6" dev eth0
	fi

	for i in "${!NS_BE[@]}"; do
		ns=${NS_BE[$i]}
		ip -n "$ns" addr add "$VIP1/32" dev lo
		ip -n "$ns" addr add "$VIP2/32" dev lo
		if e2e_ipv6; then
			# An address on lo is never answered for in neighbour
			# discovery on eth0: IPv6 needs no arp_ignore.
			ip -n "$ns" -6 addr add "$VIP6_1/128" dev lo nodad
			ip -n "$ns" -6 addr add "$VIP6_2/128" dev lo nodad
		fi
		# Answer for the VIPs, never ARP for them: the lb owns the VIP on
		# the segment as far as the client is concerned.
		nsx "$ns" sysctl -q -w net.ipv4.conf.all.arp_ignore=1 \
			net.ipv4.conf.all.arp_announce=2
	done
	e2e_log "topology up: client $CLIENT_IP, lb $LB_IP, backends ${BE_IPS[*]}"
	if e2e_ipv6; then
		e2e_log "IPv6: client $CLIENT_IP6, lb $LB_IP6, backends ${BE_IPS6[*]}, VIPs $VIP6_1 $VIP6_2"
	fi
}

# e2e_setup: topology and backends, for a script's main. A failure here is
# reported as one "FAIL setup: ..." line (then the EXIT trap tears down), so
# that a runner counting FAIL lines sees it.
e2e_setup() {
	local f
	for f in "$BUILD_DIR/bpf/xdp_pass.bpf.o" "$BUILD_DIR/ballastd" "$BUILD_DIR/ballast"; do
		if [[ ! -e $f ]]; then
			echo "FAIL setup: $f missing (run make first)"
			exit 1
		fi
	done
	set -E
	trap 'echo "FAIL setup: ${BASH_SOURCE[0]##*/}:$LINENO: \"$BASH_COMMAND\" returned $?"' ERR
	topo_create
	backends_start
	trap - ERR
	set +E
}

# --- Backends ----------------------------------------------------------------

# backends_start: an HTTP (port 80) and UDP (port 9000, bound to each VIP)
# server in every backend namespace, with a UDP health responder on the
# backend's own address (port 9100); each logs what it served to
# $STATE_DIR/<name>.served.
backends_start() {
	local name
	for name in "${BE_NAMES[@]}"; do
		: >"$STATE_DIR/$name.served"
		backend_spawn "$name"
	done
	for name in "${BE_NAMES[@]}"; do
		backend_wait_ready "$name" || return 1
	done
}

# be_index NAME: NAME's index in BE_NAMES (be1 -> 0).
be_index() {
	local i
	for i in "${!BE_NAMES[@]}"; do
		[[ ${BE_NAMES[$i]} == "$1" ]] && echo "$i" && return 0
	done
	e2e_log "no backend named $1"
	return 1
}

# backend_spawn NAME: starts NAME's server in the background (tracked for
# teardown), without waiting for it. Its health path answers as the file
# $STATE_DIR/NAME.control says (backend_server.py; absent = up), and so
# does its UDP health responder on its own address, port UDP_CHECK_PORT.
backend_spawn() {
	local name=$1 i
	local vips=(--vip "$VIP1" --vip "$VIP2")
	i=$(be_index "$name")
	# With IPv6 the server also listens on [::]:HTTP_PORT (backend_server.py
	# does so once it is given an IPv6 VIP).
	if e2e_ipv6; then
		vips+=(--vip "$VIP6_1" --vip "$VIP6_2")
	fi
	# `ip netns exec` itself (not nsx, a function, which would fork a
	# shell): it execs, so $! is the server's own pid.
	ip netns exec "${NS_BE[$i]}" "$PYTHON" "$E2E_LIB_DIR/backend_server.py" \
		--name "$name" --http-port "$HTTP_PORT" --udp-port "$UDP_PORT" \
		"${vips[@]}" --control "$STATE_DIR/$name.control" \
		--udp-check-addr "${BE_IPS[$i]}" --udp-check-port "$UDP_CHECK_PORT" \
		--served-log "$STATE_DIR/$name.served" >"$STATE_DIR/$name.server.log" 2>&1 &
	track_pid "server-$name" "$!"
	# Not a job of this shell: a killed server would be reported ("Killed").
	disown "$!"
}

# backend_wait_ready NAME: waits (10 s at most) for NAME's server's "ready".
backend_wait_ready() {
	local name=$1 deadline=$((SECONDS + 10))
	until grep -q '^ready' "$STATE_DIR/$name.server.log" 2>/dev/null; do
		if ((SECONDS > deadline)); then
			cat "$STATE_DIR/$name.server.log" >&2
			e2e_log "backend $name did not start"
			return 1
		fi
		sleep 0.05
	done
}

# backend_start NAME: starts NAME's server and waits until it serves.
backend_start() {
	backend_spawn "$1"
	backend_wait_ready "$1" || fail "backend $1 did not start: $(tail -n 2 "$STATE_DIR/$1.server.log" | oneline)"
	e2e_log "backend $1 started (pid $(cat "$STATE_DIR/pids/server-$1"))"
}

# backend_kill NAME: SIGKILL to NAME's server: its ports refuse connections
# (TCP answers RST, UDP ICMP port unreachable) from then on.
backend_kill() {
	local f=$STATE_DIR/pids/server-$1 pid i
	pid=$(cat "$f")
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		pid_alive "$pid" || break
		sleep 0.02
	done
	pid_alive "$pid" && fail "backend $1 (pid $pid) survived SIGKILL"
	e2e_log "backend $1 killed (pid $pid)"
}

# backend_alive NAME: true while NAME's server runs.
backend_alive() {
	local f=$STATE_DIR/pids/server-$1
	[[ -f $f ]] && pid_alive "$(cat "$f")"
}

# backend_health NAME up|sick|flap|silent|closed: how NAME's health path
# and UDP health responder answer from their next check on
# (backend_server.py); VIP traffic is served throughout.
backend_health() {
	printf '%s\n' "$2" >"$STATE_DIR/$1.control.tmp"
	mv -f "$STATE_DIR/$1.control.tmp" "$STATE_DIR/$1.control"
	e2e_log "backend $1 health path: $2"
}

# backends_restore: every backend's server running, its health path up. For
# use between tests (a test may kill a server or make it sick).
backends_restore() {
	local name started=()
	for name in "${BE_NAMES[@]}"; do
		rm -f "$STATE_DIR/$name.control"
		if ! backend_alive "$name"; then
			backend_spawn "$name"
			started+=("$name")
		fi
	done
	for name in "${started[@]}"; do
		backend_wait_ready "$name" || return 1
		e2e_log "backend $name restarted"
	done
}

# backend_count NAME PROTO VIP PORT: requests NAME served for VIP:PORT/PROTO
# since the last backends_reset_counts.
backend_count() {
	local n
	# grep -c prints 0 but fails when nothing matched: no error here.
	n=$(grep -c "^$2 $3:$4 " "$STATE_DIR/$1.served" || true)
	echo "${n:-0}"
}

# backends_reset_counts: forget what the backends served so far.
backends_reset_counts() {
	local name
	for name in "${BE_NAMES[@]}"; do
		: >"$STATE_DIR/$name.served"
	done
}

# backend_counts_json PROTO VIP PORT: {"be1": N, ...} (address-keyed too).
backend_counts_json() {
	local i sep='' out='{'
	for i in "${!BE_NAMES[@]}"; do
		out+="$sep\"${BE_IPS[$i]}\": $(backend_count "${BE_NAMES[$i]}" "$1" "$2" "$3")"
		sep=', '
	done
	echo "$out}"
}

# --- ballastd ----------------------------------------------------------------

# lb_write_config FILE W1 W2 W3: the standard config: VIP1:80/tcp and
# VIP1:9000/udp, each over be1..be3 with weights W1..W3.
lb_write_config() {
	local file=$1 proto port i
	shift
	local weights=("$@")
	{
		echo "interface: eth0"
		echo "attach_mode: native"
		echo "vips:"
		for proto in tcp udp; do
			port=$HTTP_PORT
			[[ $proto == udp ]] && port=$UDP_PORT
			echo "  - address: $VIP1"
			echo "    port: $port"
			echo "    protocol: $proto"
			echo "    backends:"
			for i in "${!BE_IPS[@]}"; do
				echo "      - {address: ${BE_IPS[$i]}, weight: ${weights[$i]}}"
			done
		done
	} >"$file"
}

# lb_exec CMD...: runs CMD in the lb's network namespace, and only there:
# unlike `ip netns exec`, nsenter leaves the mount namespace alone, so
# ballastd pins into the machine's bpffs, as it would in production, where
# the tests can see (and teardown can remove) what it pinned. (`ip netns
# exec` remounts /sys and mounts a private bpffs, which hides the pins and
# silently drops them with the process.)
lb_exec() {
	"${LB_NSENTER[@]}" "$@"
}

# lb_start CONFIG: starts ballastd in the lb namespace and waits until it
# says "ready". Fails with ballastd's last log lines when it dies first.
lb_start() {
	local config=$1 pid deadline log=$STATE_DIR/ballastd.log
	[[ -x $BUILD_DIR/ballastd ]] || fail "$BUILD_DIR/ballastd not built"
	# A second start in one test (a restart) keeps the first one's log.
	[[ -s $log ]] && cat "$log" >>"$STATE_DIR/ballastd.earlier.log"
	: >"$log"
	# nsenter itself, not lb_exec (a function in the background would be a
	# forked shell): nsenter execs, so $! is ballastd's own pid.
	"${LB_NSENTER[@]}" "$BUILD_DIR/ballastd" --config "$config" \
		--socket "$LB_SOCK" --pin-dir "$PIN_DIR" "${LB_EXTRA_ARGS[@]}" >>"$log" 2>&1 &
	pid=$!
	track_pid ballastd "$pid"
	deadline=$((SECONDS + LB_READY_TIMEOUT_S))
	until grep -qw 'ready' "$log"; do
		if ! pid_alive "$pid"; then
			local st=0
			wait "$pid" 2>/dev/null || st=$?
			fail "ballastd exited (status $st) before ready: $(tail -n 3 "$log" | tr '\n' ' ')"
		fi
		((SECONDS <= deadline)) ||
			fail "ballastd not ready after ${LB_READY_TIMEOUT_S}s: $(tail -n 3 "$log" | tr '\n' ' ')"
		sleep 0.1
	done
	e2e_log "ballastd ready (pid $pid)"
}

# lb_pid: the running ballastd's pid, or nothing.
lb_pid() {
	local f=$STATE_DIR/pids/ballastd
	[[ -f $f ]] && cat "$f"
	return 0
}

# lb_stop: SIGTERM to ballastd; returns its exit status when it is this
# shell's child (else 0), 137 when it had to be killed.
lb_stop() {
	local pid rc=0 i
	pid=$(lb_pid)
	[[ -n $pid ]] || return 0
	rm -f "$STATE_DIR/pids/ballastd"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < LB_STOP_TIMEOUT_S * 10; i++)); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		e2e_log "ballastd ignored SIGTERM for ${LB_STOP_TIMEOUT_S}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		rc=137
	fi
	# Reaps it when it is this shell's child and yields its status; 127
	# means it is not (started by another shell): nothing to learn then.
	local st=0
	wait "$pid" 2>/dev/null || st=$?
	[[ $st == 127 ]] || rc=$st
	e2e_log "ballastd stopped (status $rc)"
	return "$rc"
}

# lb_link_delete / lb_link_create MAC: the lb's eth0 deleted (its bridge
# port with it), and created again as topo_create made it, with MAC (an
# interface that comes back keeps its hardware address) and the pass
# program on its bridge port.
lb_link_delete() {
	ip -n "$NS_LB" link del eth0
}
lb_link_create() {
	local port=$PREFIX-lb
	ip link add "$port" netns "$NS_SW" type veth peer name eth0 netns "$NS_LB"
	ip -n "$NS_LB" link set eth0 address "$1"
	ip -n "$NS_SW" link set "$port" master "$PREFIX-br" up
	ip -n "$NS_LB" addr add "$LB_IP/$E2E_SUBNET_LEN" dev eth0
	if e2e_ipv6; then
		ip -n "$NS_LB" -6 addr add "$LB_IP6/$E2E_SUBNET6_LEN" dev eth0 nodad
	fi
	ip -n "$NS_LB" link set eth0 up
	ip -n "$NS_SW" link set dev "$port" xdpdrv obj "$BUILD_DIR/bpf/xdp_pass.bpf.o" sec xdp
}

# lb_remove: `ballastd --cleanup`: Ballast off the lb's eth0, its pins gone
# (a stopped ballastd leaves both in place, forwarding). Fails the test
# when it fails.
lb_remove() {
	local out
	out=$(lb_exec "$BUILD_DIR/ballastd" --cleanup --interface eth0 --pin-dir "$PIN_DIR" 2>&1) ||
		fail "ballastd --cleanup failed: $(oneline <<<"$out")"
	e2e_log "$out"
}

# lb_stop_quiet: lb_stop and lb_remove for teardown paths, where the status
# is no news: the next test starts from an interface without Ballast.
lb_stop_quiet() {
	lb_stop >/dev/null 2>&1 || true
	if [[ -n $NS_LB && -e /run/netns/$NS_LB ]]; then
		lb_exec "$BUILD_DIR/ballastd" --cleanup --interface eth0 --pin-dir "$PIN_DIR" \
			>/dev/null 2>&1 || true
	fi
	if [[ -n $PIN_DIR && -e $PIN_DIR ]]; then
		e2e_log "pins left in $PIN_DIR: removing them"
		rm -rf "$PIN_DIR"
	fi
	return 0
}

# lb_cli ARGS...: the CLI against this run's ballastd.
lb_cli() {
	"$BUILD_DIR/ballast" "$@" --socket "$LB_SOCK"
}

# lb_cli_ok ARGS...: lb_cli; when it fails, the test fails naming the
# command and what it said.
lb_cli_ok() {
	local err=$STATE_DIR/cli_ok.err rc=0
	lb_cli "$@" 2>"$err" || rc=$?
	((rc == 0)) || fail "ballast $* exited $rc: $(oneline <"$err")"
}

# lb_xdp_attached: true when anything XDP is attached to the lb's eth0.
lb_xdp_attached() {
	ip -n "$NS_LB" link show dev eth0 | grep -q 'xdp'
}

# lb_status_field FIELD: one field of `ballast status -o json`.
lb_status_field() {
	lb_cli status -o json | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# lb_xdp_id: the id of the XDP program on the lb's eth0, or nothing.
lb_xdp_id() {
	ip -n "$NS_LB" -d link show dev eth0 | sed -n 's/.*prog\/xdp id \([0-9]*\).*/\1/p' | head -n 1
}

# --- Client ------------------------------------------------------------------

# client_run OUT ARGS...: client.py in the client namespace, JSON to OUT.
client_run() {
	local out=$1
	shift
	nsx "$NS_CL" "$PYTHON" "$E2E_LIB_DIR/client.py" "$@" >"$out"
	e2e_log "client $*: $(cat "$out")"
}

# json_get FILE KEY...: the value at FILE's KEY path (dict keys, list
# indexes), printed as JSON (strings unquoted).
json_get() {
	"$PYTHON" - "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v if isinstance(v, str) else json.dumps(v))
PY
}

# client_bg OUT ARGS...: client.py in the background (stream, hold or flood
# mode: see client.py), JSON to OUT, stderr to OUT.err. Sets CLIENT_PID to
# its pid (python's own: `ip netns exec` execs), for client_wait.
CLIENT_PID=
client_bg() {
	local out=$1
	shift
	ip netns exec "$NS_CL" "$PYTHON" "$E2E_LIB_DIR/client.py" "$@" >"$out" 2>"$out.err" &
	CLIENT_PID=$!
	e2e_log "client (pid $CLIENT_PID) started: $*"
}

# client_wait PID OUT: waits for a background client; fails the test when it
# exited non-zero or printed no JSON. Logs its report (requests left out).
client_wait() {
	local pid=$1 out=$2 st=0
	wait "$pid" || st=$?
	((st == 0)) || fail "client (pid $pid) exited $st: $(tail -n 3 "$out.err" | oneline)"
	"$PYTHON" - "$out" >&2 <<'PY' || fail "client (pid $pid) printed no JSON: $(head -c 200 "$out")"
import json, sys
r = json.load(open(sys.argv[1]))
r.pop("requests", None)
for c in r.get("connections", []):
    c.pop("first_error_unix", None)
print("[client report]", json.dumps(r))
PY
}

# hold_start OUT K NAMES [ARGS...]: long-lived keep-alive connections, K on
# each backend named in NAMES (comma-separated), one request each every
# 100 ms, until OUT.stop exists (hold_stop). Returns once every connection
# is held (their list in OUT.ready); sets HOLD_PID.
HOLD_PID=
hold_start() {
	local out=$1 k=$2 names=$3 deadline
	shift 3
	rm -f "$out.stop" "$out.ready"
	client_bg "$out" --vip "$VIP1" --port "$HTTP_PORT" --hold "$k" --on "$names" \
		--interval 0.1 --timeout 3 --stop-file "$out.stop" --ready-file "$out.ready" "$@"
	HOLD_PID=$CLIENT_PID
	deadline=$((SECONDS + 20))
	until [[ -e $out.ready ]]; do
		pid_alive "$HOLD_PID" ||
			fail "hold client exited before holding its connections: $(tail -n 2 "$out.err" | oneline)"
		((SECONDS <= deadline)) || fail "hold client not ready after 20 s"
		sleep 0.05
	done
	e2e_log "holding: $(cat "$out.ready")"
}

# hold_stop OUT: closes the held connections and waits for the report.
hold_stop() {
	: >"$1.stop"
	client_wait "$HOLD_PID" "$1"
}

# now: wall-clock seconds (fractional), comparable with client.py's times
# and `ballast log`'s unix_ms / 1000.
now() {
	date +%s.%N
}

# time_add T SECONDS: T + SECONDS (fractional).
time_add() {
	awk -v t="$1" -v d="$2" 'BEGIN { printf "%.4f\n", t + d }'
}

# time_diff A B: A - B in seconds (fractional).
time_diff() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a - b }'
}

# backend_row VIP ADDRESS [FIELD]: VIP's backend ADDRESS from `ballast
# backend list -o json` (the whole row as JSON, or one field).
backend_row() {
	lb_cli backend list -o json | "$PYTHON" -c '
import json, sys
vip, addr = sys.argv[1], sys.argv[2]
rows = [b for b in json.load(sys.stdin) if b["vip"] == vip and b["address"] == addr]
if not rows:
    sys.exit(f"backend list has no {addr} in {vip}")
v = rows[0] if len(sys.argv) < 4 else rows[0][sys.argv[3]]
print(v if isinstance(v, str) else json.dumps(v))' "$@"
}

# wait_backend VIP ADDRESS CONDITION DEADLINE: polls `ballast backend list
# -o json` every 0.1 s until the row of ADDRESS in VIP satisfies CONDITION
# (a Python expression over `b`, the row, e.g. 'b["health"] == "down"') or
# DEADLINE (unix seconds) has passed; there is always one poll started after
# the deadline, so a state reached in time is seen. Prints "START END" (unix
# seconds) of the first poll that saw it; returns 1 (printing the last row on
# stderr) when none did.
wait_backend() {
	"$PYTHON" - "$BUILD_DIR/ballast" "$LB_SOCK" "$@" <<'PY'
import json, subprocess, sys, time
cli, sock, vip, addr, cond, deadline = sys.argv[1:7]
deadline = float(deadline)
row = None
while True:
    start = time.time()
    p = subprocess.run([cli, "backend", "list", "-o", "json", "--socket", sock],
                       capture_output=True, text=True)
    end = time.time()
    if p.returncode == 0:
        rows = [b for b in json.loads(p.stdout) if b["vip"] == vip and b["address"] == addr]
        row = rows[0] if rows else None
        try:
            ok = row is not None and eval(cond, {}, {"b": row})
        except Exception as exc:  # a missing field, say: not (yet) true
            ok = False
            row = {"row": row, "error": repr(exc)}
        if ok:
            print(f"{start:.4f} {end:.4f}")
            sys.exit(0)
    else:
        row = "ballast backend list: " + p.stderr.strip()
    if start > deadline:
        print(f"wait_backend {vip} {addr} [{cond}]: last seen {json.dumps(row)}", file=sys.stderr)
        sys.exit(1)
    time.sleep(max(0.0, min(0.1, deadline - time.time() + 0.001)))
PY
}

# wait_backend_for SECONDS VIP ADDRESS CONDITION: wait_backend with a
# deadline SECONDS from now; fails the test when it is not met.
wait_backend_for() {
	local limit=$1 out
	shift
	out=$(wait_backend "$@" "$(time_add "$(now)" "$limit")" 2>"$STATE_DIR/wait.err") ||
		fail "not within ${limit}s: $(cat "$STATE_DIR/wait.err")"
	e2e_log "$2 in $1: [$3] (seen at $out)"
}

# lb_log_json OUT [ARGS...]: `ballast log -o json` to OUT, checked to be a
# JSON array.
lb_log_json() {
	local out=$1
	shift
	lb_cli log -o json "$@" >"$out" 2>"$out.err" ||
		fail "ballast log -o json failed: $(oneline <"$out.err")"
	"$PYTHON" -c 'import json, sys; assert isinstance(json.load(open(sys.argv[1])), list)' "$out" ||
		fail "ballast log -o json printed no JSON array: $(head -c 200 "$out")"
}

# stat_value STATS_JSON WHAT: one counter from `ballast stats -o json`:
#   reason:NAME              packets counted for a verdict reason
#   vip:VIP:FIELD            a VIP's packets, bytes or new_flows
#   backend:VIP:ADDR:FIELD   a backend's (of VIP)
stat_value() {
	"$PYTHON" - "$@" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); what = sys.argv[2]
kind, rest = what.split(":", 1)
if kind == "reason":
    print(next(r["packets"] for r in s["reasons"] if r["reason"] == rest))
else:
    # A VIP contains ":" itself (ADDRESS:PORT/PROTO).
    parts = rest.split(":")
    vip = parts[0] + ":" + parts[1]
    v = next(v for v in s["vips"] if v["vip"] == vip)
    if kind == "vip":
        print(v[parts[2]])
    else:
        print(next(b for b in v["backends"] if b["address"] == parts[2])[parts[3]])
PY
}

# --- Assertions (each prints its working and ends the test on failure) ------

# assert_all_ok CLIENT_JSON N: all N requests answered.
assert_all_ok() {
	local why
	if ! why=$("$PYTHON" - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
if r["ok"] != n or r["failed"] != 0:
    print(f"{r['ok']} of {n} requests answered, {r['failed']} failed {r.get('errors', {})}")
    sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# assert_shares CLIENT_JSON TOL_PP NAME=WEIGHT...: each backend's share of
# the answered requests within TOL_PP percentage points of its weight share,
# or 4.5 standard deviations of a binomial share (sqrt(p(1-p)/n)) where that
# is wider, so that a small batch cannot fail by chance (less than once in
# 100,000 checks of one share); a weight-0 backend must have none at all.
assert_shares() {
	local json=$1 tol=$2 why
	shift 2
	if ! why=$("$PYTHON" - "$json" "$tol" "$@" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1])); tol = float(sys.argv[2]) / 100
weights = {k: int(v) for k, v in (a.split("=") for a in sys.argv[3:])}
total_w = sum(weights.values()); ok = r["ok"]; by = r["by_backend"]
bad = []
print(f"{'backend':8} {'weight':>6} {'expected':>8} {'observed':>8} {'count':>6}", file=sys.stderr)
for name, w in weights.items():
    exp = w / total_w; got = by.get(name, 0); obs = got / ok if ok else 0
    allowed = max(tol, 4.5 * math.sqrt(exp * (1 - exp) / max(1, ok)))
    print(f"{name:8} {w:6} {exp:8.3f} {obs:8.3f} {got:6}", file=sys.stderr)
    if w == 0 and got:
        bad.append(f"{name} (weight 0) got {got} requests")
    elif abs(obs - exp) > allowed:
        bad.append(f"{name} share {obs:.3f}, expected {exp:.3f} +- {allowed:.3f}")
strays = set(by) - set(weights)
if strays:
    bad.append(f"answers from unexpected backends {sorted(strays)}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# stats_json OUT: `ballast stats -o json` to OUT, checked to be JSON.
stats_json() {
	lb_cli stats -o json >"$1" || fail "ballast stats -o json failed"
	"$PYTHON" -m json.tool "$1" >/dev/null ||
		fail "ballast stats -o json printed no JSON: $(head -c 200 "$1")"
}

# assert_stats_match STATS_JSON VIP COUNTS_JSON NAME=WEIGHT...: for every
# backend of VIP, the balancer's new_flows is at least what the backend
# counted (COUNTS_JSON: address -> count) and at most 1% (at least 1) more;
# the VIP's new_flows is the sum of its backends'; expected_share,
# observed_share and skew agree with the weights and the counts.
assert_stats_match() {
	local why
	if ! why=$("$PYTHON" - "$@" "${BE_NAMES[*]}" "${BE_IPS[*]}" <<'PY'
import json, math, sys
stats = json.load(open(sys.argv[1])); vip = sys.argv[2]
counted = json.loads(sys.argv[3])
addr_of = dict(zip(sys.argv[-2].split(), sys.argv[-1].split()))
weights = {addr_of[k]: int(w) for k, w in (a.split("=") for a in sys.argv[4:-2])}
v = next((v for v in stats["vips"] if v["vip"] == vip), None)
if v is None:
    print(f"{vip} not in ballast stats"); sys.exit(1)
bad = []
rows = {b["address"]: b for b in v["backends"]}
total = sum(b["new_flows"] for b in rows.values())
total_w = sum(weights.values())
print(f"{vip}: {'backend':12} {'served':>7} {'new_flows':>9} {'expected':>8} {'observed':>8} {'skew':>6}",
      file=sys.stderr)
for addr, n in counted.items():
    b = rows.get(addr)
    if b is None:
        bad.append(f"{addr} missing from stats"); continue
    f = b["new_flows"]
    # skew is null where nothing is expected (a backend taking no new flows).
    skew = "-" if b["skew"] is None else f"{b['skew']:.3f}"
    print(f"{vip}: {addr:12} {n:7} {f:9} {b['expected_share']:8.4f} {b['observed_share']:8.4f} "
          f"{skew:>6}", file=sys.stderr)
    slack = max(1, math.ceil(n * 0.01))
    if f < n:
        bad.append(f"{addr}: new_flows {f} < {n} served")
    elif f > n + slack:
        bad.append(f"{addr}: new_flows {f} > {n} served + {slack}")
    exp = weights[addr] / total_w
    obs = f / total if total else 0.0
    if abs(b["expected_share"] - exp) > 0.001:
        bad.append(f"{addr}: expected_share {b['expected_share']}, weights say {exp:.4f}")
    if abs(b["observed_share"] - obs) > 0.001:
        bad.append(f"{addr}: observed_share {b['observed_share']}, new_flows say {obs:.4f}")
    if exp and (b["skew"] is None or abs(b["skew"] - obs / exp) > 0.01):
        bad.append(f"{addr}: skew {b['skew']}, shares say {obs / exp:.3f}")
    if not exp and b["skew"] is not None:
        bad.append(f"{addr}: skew {b['skew']} where no new flows are expected (want null)")
if v["new_flows"] != total:
    bad.append(f"VIP new_flows {v['new_flows']} != sum over backends {total}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# --- Traffic across failures and restarts --------------------------------------

# stream_start OUT RATE [client args...]: new HTTP connections to VIP1 at
# RATE per second until stream_stop; sets STREAM_PID.
STREAM_PID=
stream_start() {
	local out=$1 rate=$2
	shift 2
	rm -f "$out.stop"
	client_bg "$out" --vip "$VIP1" --port "$HTTP_PORT" --stream "$rate" \
		--stop-file "$out.stop" "$@"
	# shellcheck disable=SC2034 # read by the test scripts
	STREAM_PID=$CLIENT_PID
}

# stream_stop OUT PID: ends a stream and waits for its report.
stream_stop() {
	: >"$1.stop"
	client_wait "$2" "$1"
}

# wait_all_up VIP SECONDS ADDRESS...: each backend "up" with table entries.
wait_all_up() {
	local vip=$1 limit=$2 a
	shift 2
	for a in "$@"; do
		wait_backend_for "$limit" "$vip" "$a" 'b["health"] == "up" and b["table_entries"] > 0'
	done
}

# assert_stream STREAM_JSON FROM NAME=WEIGHT...: every request of the stream
# started at or after FROM (unix seconds; "" for all) was answered, by the
# named backends only, each within 5 sd of its weight share (a weight-0
# backend: none at all).
assert_stream() {
	local why
	if ! why=$("$PYTHON" - "$@" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
since = float(sys.argv[2]) if sys.argv[2] else 0.0
weights = {k: int(v) for k, v in (a.split("=") for a in sys.argv[3:])}
reqs = [q for q in r["requests"] if q[0] >= since]
bad = []
if len(reqs) < 20:
    print(f"only {len(reqs)} requests started after {since:.3f}: too few to judge"); sys.exit(1)
failed = [q for q in reqs if q[2].startswith("!")]
if failed:
    first = ", ".join(f"{q[2][1:]} at +{q[0] - since:.2f}s" for q in failed[:3])
    bad.append(f"{len(failed)} of {len(reqs)} requests started after {since:.3f} failed ({first})")
ok = [q[2] for q in reqs if not q[2].startswith("!")]
total_w = sum(weights.values())
print(f"{len(reqs)} requests from {since:.3f}: {'backend':8} {'weight':>6} {'expected':>8} "
      f"{'observed':>8} {'count':>6}", file=sys.stderr)
for name, w in weights.items():
    got = ok.count(name); exp = w / total_w; obs = got / len(ok) if ok else 0
    tol = max(0.05, 5 * math.sqrt(exp * (1 - exp) / max(1, len(ok))))
    print(f"    {name:8} {w:6} {exp:8.3f} {obs:8.3f} {got:6}", file=sys.stderr)
    if w == 0 and got:
        bad.append(f"{name} (no new flows allowed) answered {got}")
    elif w and abs(obs - exp) > tol:
        bad.append(f"{name} share {obs:.3f}, expected {exp:.3f} +- {tol:.3f}")
strays = sorted(set(ok) - set(weights))
if strays:
    bad.append(f"answers from {strays}, which should get none")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# assert_held HOLD_JSON: every long-lived connection was answered every
# time, always by the backend that answered it first.
assert_held() {
	local why
	if ! why=$("$PYTHON" - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = []
for c in r["connections"]:
    others = sorted(set(c["answers"]) - {c["backend"]})
    if c["failed"] or c["dead"]:
        bad.append(f"connection from port {c['sport']} to {c['backend']} failed after {c['ok']} answers "
                   f"({c['errors']}, first at {c['first_error_unix']})")
    if others:
        bad.append(f"connection from port {c['sport']} moved from {c['backend']} to {others}")
    print(f"held: port {c['sport']} {c['backend']}: {c['ok']} answered {c['answers']}, "
          f"{c['failed']} failed", file=sys.stderr)
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# xdp_watch OUT STOPFILE: until STOPFILE exists, every 20 ms: the XDP
# program id on the lb's eth0 ("none" when nothing is attached), one line
# per change, with the time.
xdp_watch() {
	local last='' cur
	while [[ ! -e $2 ]]; do
		cur=$(lb_xdp_id)
		cur=${cur:-none}
		[[ $cur == "$last" ]] || echo "$(now) $cur" >>"$1"
		last=$cur
		sleep 0.02
	done
}

# adoption_problems LIST0 LIST1 STATS0 STATS1: what a restart lost, from
# `ballast backend list -o json` and stats_json before (0) and after (1):
# a backend gone, or its id, drain, weight or table entries changed; any
# counter that went down. Prints the problems and returns 1, or nothing.
adoption_problems() {
	"$PYTHON" - "$@" <<'PY'
import json, sys
l0, l1, s0, s1 = (json.load(open(p)) for p in sys.argv[1:5])
bad = []
key = lambda b: (b["vip"], b["address"])
b1 = {key(b): b for b in l1}
for b in l0:
    n = b1.get(key(b))
    if n is None:
        bad.append(f"{key(b)} gone after the restart"); continue
    for f in ("id", "drained", "weight", "table_entries"):
        if b.get(f) != n.get(f):
            bad.append(f"{b['vip']} {b['address']}: {f} {b.get(f)} before, {n.get(f)} after")
def counters(s):
    out = {}
    for v in s["vips"]:
        for f in ("packets", "bytes", "new_flows"):
            out[(v["vip"], f)] = v[f]
        for b in v["backends"]:
            for f in ("packets", "bytes", "new_flows"):
                out[(v["vip"], b["address"], f)] = b[f]
    for r in s["reasons"]:
        out[("reason", r["reason"])] = r["packets"]
    return out
c0, c1 = counters(s0), counters(s1)
went_down = [f"{k}: {v} -> {c1.get(k)}" for k, v in c0.items() if c1.get(k, -1) < v]
if went_down:
    bad.append(f"{len(went_down)} counters went down across the restart: {'; '.join(went_down[:4])}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
}

# --- Runner ------------------------------------------------------------------

# run_one NAME: runs test NAME in a subshell (own process group, `set -e`),
# prints PASS/FAIL/SKIP, cleans up after it, counts a failure in
# E2E_FAILED. Never call it (or run_tests) from a condition (`if`, `||`):
# bash would then ignore `set -e` inside the test too.
E2E_FAILED=0
run_one() {
	local t=$1 rc reason
	local log=$STATE_DIR/$t.log
	rm -f "$STATE_DIR/reason" "$STATE_DIR/ballastd.log" "$STATE_DIR/problems" \
		"$STATE_DIR/ballastd.earlier.log"
	e2e_log "--- $t"
	set +e
	# Job control for this one fork only: the test gets its own process
	# group, which stop_test_group ends whole, and a Ctrl-C reaches this
	# shell's trap rather than half of the test.
	set -m
	(
		# -E: the ERR trap holds in functions too; it names the command
		# that ended the test when no fail() said why.
		set -eE
		trap 'e2e_on_err "$?" "${BASH_SOURCE[0]##*/}:$LINENO" "$BASH_COMMAND"' ERR
		"$t"
	) >"$log" 2>&1 &
	E2E_TEST_PID=$!
	set +m
	wait "$E2E_TEST_PID"
	rc=$?
	set -e
	stop_test_group
	lb_stop_quiet
	backends_reset_counts
	# A script's own clean-up between tests, in this (the main) shell.
	if declare -F e2e_after_each >/dev/null && ! e2e_after_each; then
		e2e_log "e2e_after_each failed after $t: later tests may fail too"
	fi

	reason=
	[[ -f $STATE_DIR/reason ]] && reason=$(head -n 1 "$STATE_DIR/reason")
	case $rc in
	0)
		echo "PASS $t"
		;;
	"$E2E_SKIP_RC")
		echo "SKIP $t: ${reason:-no reason given}"
		;;
	*)
		[[ -n $reason ]] || reason="exit status $rc"
		echo "FAIL $t: $reason"
		# The log says why in full; indented so that only the verdict line
		# starts with FAIL.
		tail -n "${E2E_LOG_LINES:-25}" "$log" | sed 's/^/    | /'
		if [[ -s $STATE_DIR/ballastd.log ]]; then
			echo "    ballastd log (last lines):"
			tail -n 10 "$STATE_DIR/ballastd.log" | sed 's/^/    | /'
		fi
		E2E_FAILED=$((E2E_FAILED + 1))
		;;
	esac
	return 0
}

# run_tests [NAME...]: runs the named tests, or all of E2E_TESTS, in order,
# then exits: 0 when none failed, 1 otherwise.
run_tests() {
	local t
	local tests=("$@")
	((${#tests[@]})) || tests=("${E2E_TESTS[@]}")
	for t in "${tests[@]}"; do
		if ! declare -F "$t" >/dev/null; then
			echo "FAIL $t: no such test"
			E2E_FAILED=$((E2E_FAILED + 1))
			continue
		fi
		run_one "$t"
	done
	((E2E_FAILED == 0)) || exit 1
	exit 0
}

# e2e_main [BUILD_DIR] [test_name...]: a test file's whole main, after it
# set E2E_TESTS. The first argument is the build dir unless it names a test.
e2e_main() {
	local build=build
	if [[ $# -gt 0 && $1 != test_* ]]; then
		build=$1
		shift
	fi
	e2e_init "$build"
	e2e_setup
	run_tests "$@"
}

# --- Shared by the test files ---------------------------------------------------

# A batch stops after this many failed requests: the test fails either way,
# and a dead path would otherwise cost N timeouts (minutes).
readonly GIVE_UP=50

# cfg_vip_weights ADDRESS PORT PROTO FAIL_OPEN CHECK W1 W2...: one VIP over be1,
# be2, ... with weights W1, W2, ...; a weight "-" leaves that backend out.
# FAIL_OPEN: true, false or "" (key left out); CHECK: the health_check
# (a YAML flow mapping) or "" (none: always up).
cfg_vip_weights() {
	local addr=$1 port=$2 proto=$3 fail_open=$4 check=$5 i=0 w
	shift 5
	echo "  - address: $addr"
	echo "    port: $port"
	echo "    protocol: $proto"
	[[ -z $fail_open ]] || echo "    fail_open: $fail_open"
	[[ -z $check ]] || echo "    health_check: $check"
	echo "    backends:"
	for w in "$@"; do
		[[ $w == - ]] || echo "      - {address: ${BE_IPS[$i]}, weight: $w}"
		i=$((i + 1))
	done
}

# cfg_head: a config's first lines (the lb's interface, native XDP).
cfg_head() {
	printf 'interface: eth0\nattach_mode: native\nvips:\n'
}

# tcp_batch OUT N [client args...]: N new HTTP connections to VIP1.
tcp_batch() {
	tcp_batch_to "$VIP1" "$@"
}

# tcp_batch_to VIP OUT N [client args...]: N new HTTP connections to VIP
# (either family: VIP6_1 with E2E_IPV6=1, say).
tcp_batch_to() {
	local vip=$1 out=$2 n=$3
	shift 3
	client_run "$out" --vip "$vip" --port "$HTTP_PORT" --proto tcp -n "$n" \
		--give-up-after "$GIVE_UP" "$@"
}

# udp_batch_to VIP OUT N SPORT_BASE [client args...]: N datagrams to
# VIP:UDP_PORT, request i from the client's source port SPORT_BASE+i (each a
# new socket), each answered by a backend's name.
udp_batch_to() {
	local vip=$1 out=$2 n=$3 base=$4
	shift 4
	client_run "$out" --vip "$vip" --port "$UDP_PORT" --proto udp -n "$n" \
		--give-up-after "$GIVE_UP" --udp-sport-base "$base" "$@"
}

# --- Backends' decap program (ipip and gue VIPs) ----------------------------

# decap_all [ARGS...]: `ballast decap attach eth0 ARGS` on every backend;
# checks that each lists VIP1 on its lo (and VIP6_1 with IPv6).
decap_all() {
	local ns
	for ns in "${NS_BE[@]}"; do
		nsx "$ns" "$BUILD_DIR/ballast" decap attach eth0 "$@" >/dev/null
		nsx "$ns" "$BUILD_DIR/ballast" decap status eth0 -o json >"$STATE_DIR/decap.json"
		grep -q "\"$VIP1\"" "$STATE_DIR/decap.json" ||
			fail "decap status in $ns does not list $VIP1: $(oneline <"$STATE_DIR/decap.json")"
		if e2e_ipv6 && ! grep -q "\"$VIP6_1\"" "$STATE_DIR/decap.json"; then
			fail "decap status in $ns does not list $VIP6_1: $(oneline <"$STATE_DIR/decap.json")"
		fi
	done
}

# decapped NS: packets the decap program in NS stripped so far.
decapped() {
	nsx "$1" "$BUILD_DIR/ballast" decap status eth0 -o json |
		"$PYTHON" -c 'import json,sys; print(next(c["packets"] for c in json.load(sys.stdin)["counters"] if c["reason"] == "decapped"))'
}

# e2e_reset_nodes: every backend serving and healthy again, no decap
# program left on a backend, no program left on the lb's eth0 (a test that
# killed ballastd and failed before restarting it would leave one).
e2e_reset_nodes() {
	local ns
	for ns in "${NS_BE[@]}"; do
		ip -n "$ns" link set dev eth0 xdp off 2>/dev/null || true
	done
	if lb_xdp_attached; then
		e2e_log "XDP left on the lb's eth0 with no ballastd: detaching it"
		ip -n "$NS_LB" link set dev eth0 xdp off || true
	fi
	backends_restore
}

# Between tests (run_one calls it once ballastd is stopped). A script that
# defines its own calls e2e_reset_nodes from it.
e2e_after_each() {
	e2e_reset_nodes
}
