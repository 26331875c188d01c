#!/usr/bin/env bash
#
# test_paths.sh: the data plane's less travelled paths end to end
# (docs/dataplane.md), with real sockets in veth namespaces:
#   - a TCP request too big to encapsulate: the balancer answers the client
#     with ICMP "fragmentation needed", the client's kernel lowers its path
#     MTU and resends, and the request succeeds;
#   - fragmented UDP datagrams to a VIP with `fragments: true` all reach one
#     backend, which reassembles and answers them; without the option they
#     are the kernel's (and nobody answers);
#   - a backend behind another interface of the balancer: frames leave by
#     XDP_REDIRECT through the tx_ports devmap, and connections succeed.
#
# Usage: tests/e2e/test_paths.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A fourth backend, on the balancer's second interface (test_redirect_*).
readonly B4_LB_IP=10.232.0.1
readonly B4_IP=10.232.0.2

# reason NAME: the balancer's packet count for reason NAME now.
reason() {
	stats_json "$STATE_DIR/stats.json"
	stat_value "$STATE_DIR/stats.json" "reason:$1"
}

# big_requests OUT N PAD: N HTTP requests to VIP1, each with a header of PAD
# bytes (so the request spans several full-size TCP segments), from the
# client; OUT gets one line per request: "ok" or the error.
big_requests() {
	nsx "$NS_CL" "$PYTHON" - "$VIP1" "$HTTP_PORT" "$2" "$3" >"$1" <<'PY'
import socket, sys
vip, port, n, pad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    try:
        s = socket.create_connection((vip, port), timeout=5)
        s.sendall(b"GET / HTTP/1.0\r\nX-Pad: " + b"p" * pad + b"\r\n\r\n")
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        s.close()
        print("ok" if answer.startswith(b"HTTP/1.0 200") else "bad answer %r" % answer[:40])
    except OSError as e:
        print("error %s" % e)
PY
}

# A request bigger than the MTU once encapsulated: answered with ICMP
# "fragmentation needed" by the balancer (tx_icmp_too_big), after which the
# client resends in smaller segments and every request succeeds.
test_too_big_is_answered() {
	decap_all
	{
		cfg_head
		echo "  - {address: $VIP1, port: $HTTP_PORT, protocol: tcp, mode: ipip,"
		echo "     backends: [{address: ${BE_IPS[0]}}, {address: ${BE_IPS[1]}}, {address: ${BE_IPS[2]}}]}"
	} >"$STATE_DIR/cfg.yaml"
	lb_start "$STATE_DIR/cfg.yaml"
	# The client starts from the link's MTU (1500), as a fresh host would.
	nsx "$NS_CL" ip route flush cache
	big_requests "$STATE_DIR/big.out" 20 6000
	local ok
	ok=$(grep -c '^ok$' "$STATE_DIR/big.out" || true)
	((ok == 20)) || fail "$ok of 20 big requests succeeded: $(sort "$STATE_DIR/big.out" | uniq -c | oneline)"
	local too_big dropped
	too_big=$(reason tx_icmp_too_big)
	dropped=$(reason drop_mtu_exceeded)
	((too_big >= 1)) || fail "no ICMP too big was sent (tx_icmp_too_big $too_big)"
	((dropped == 0)) || fail "drop_mtu_exceeded $dropped"
	# The client learnt the MTU that fits: 1500 less the 20-byte outer header.
	nsx "$NS_CL" ip route get "$VIP1" >"$STATE_DIR/route"
	grep -q "mtu 1480" "$STATE_DIR/route" ||
		fail "the client's route to $VIP1 has no mtu 1480: $(oneline <"$STATE_DIR/route")"
}

# udp_big OUT N SIZE: N datagrams of SIZE bytes to VIP1's UDP port, each from
# a new socket (a new source port); OUT gets the answering backend's name per
# datagram, or "timeout".
udp_big() {
	nsx "$NS_CL" "$PYTHON" - "$VIP1" "$UDP_PORT" "$2" "$3" >"$1" <<'PY'
import socket, sys
vip, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((vip, port))
    s.send(b"x" * size)
    try:
        print(s.recv(2048).decode().strip())
    except socket.timeout:
        print("timeout")
    s.close()
PY
}

# Fragmented datagrams to a `fragments: true` VIP reach one backend, which
# reassembles and answers each one (tx_fragment); unfragmented ones still
# spread by 5-tuple. Without the option, fragments are the balancer's
# kernel's: nobody answers (pass_ip_fragment).
test_fragments_reach_one_backend() {
	local vip_line="  - {address: $VIP1, port: $UDP_PORT, protocol: udp,"
	local backends="backends: [{address: ${BE_IPS[0]}}, {address: ${BE_IPS[1]}}, {address: ${BE_IPS[2]}}]}"
	{
		cfg_head
		echo "$vip_line fragments: true,"
		echo "     $backends"
	} >"$STATE_DIR/cfg.yaml"
	lb_start "$STATE_DIR/cfg.yaml"
	udp_big "$STATE_DIR/big.out" 30 3000
	local answered names
	answered=$(grep -vc '^timeout$' "$STATE_DIR/big.out" || true)
	((answered == 30)) || fail "$answered of 30 fragmented datagrams answered: $(sort "$STATE_DIR/big.out" | uniq -c | oneline)"
	names=$(sort -u "$STATE_DIR/big.out" | oneline)
	[[ $(sort -u "$STATE_DIR/big.out" | wc -l) == 1 ]] ||
		fail "fragmented datagrams from one client reached several backends: $names"
	local frags
	frags=$(reason tx_fragment)
	# 3,000 bytes over a 1,500-byte MTU: 3 fragments each.
	((frags >= 90)) || fail "tx_fragment $frags, want at least 90"

	# Small datagrams are not fragments: the 5-tuple spreads them.
	udp_big "$STATE_DIR/small.out" 60 100
	(($(sort -u "$STATE_DIR/small.out" | grep -vc '^timeout$') >= 2)) ||
		fail "60 small datagrams from 60 ports all reached one backend: $(sort "$STATE_DIR/small.out" | uniq -c | oneline)"

	# The option off: fragments pass to the balancer's kernel, unanswered.
	{
		cfg_head
		echo "$vip_line"
		echo "     $backends"
	} >"$STATE_DIR/cfg.yaml"
	lb_cli_ok apply -f "$STATE_DIR/cfg.yaml" >"$STATE_DIR/apply.out"
	grep -q "fragments off" "$STATE_DIR/apply.out" ||
		fail "apply did not log the option: $(oneline <"$STATE_DIR/apply.out")"
	local passed_before passed_after
	passed_before=$(reason pass_ip_fragment)
	udp_big "$STATE_DIR/off.out" 5 3000
	(($(grep -c '^timeout$' "$STATE_DIR/off.out" || true) == 5)) ||
		fail "fragments were answered without fragments: true: $(oneline <"$STATE_DIR/off.out")"
	passed_after=$(reason pass_ip_fragment)
	((passed_after - passed_before >= 15)) ||
		fail "pass_ip_fragment grew by $((passed_after - passed_before)), want at least 15"
}

# b4_create: namespace $PREFIX-b4, a backend linked straight to the
# balancer's second interface (eth1) and serving VIP1 through the decap
# program; its answers go back through the balancer's kernel (forwarding).
b4_create() {
	local ns=$PREFIX-b4
	E2E_EXTRA_NS+=("$ns")
	ip netns add "$ns"
	nsx "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip link add eth1 netns "$NS_LB" type veth peer name eth0 netns "$ns"
	ip -n "$NS_LB" addr add "$B4_LB_IP/24" dev eth1
	ip -n "$NS_LB" link set eth1 up
	nsx "$NS_LB" sysctl -q -w net.ipv4.ip_forward=1
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$B4_IP/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$B4_LB_IP"
	ip -n "$ns" addr add "$VIP1/32" dev lo
	# Its answers cross the native XDP program on the switch's port of the
	# balancer: finished checksums only (shared/README.md).
	nsx "$ns" ethtool -K eth0 tx off >/dev/null
	# XDP_REDIRECT into eth1 delivers only when the peer runs XDP: the
	# decap program is that program.
	nsx "$ns" "$BUILD_DIR/ballast" decap attach eth0 >/dev/null
	: >"$STATE_DIR/be4.served"
	ip netns exec "$ns" "$PYTHON" "$E2E_LIB_DIR/backend_server.py" \
		--name be4 --http-port "$HTTP_PORT" --udp-port "$UDP_PORT" --vip "$VIP1" \
		--served-log "$STATE_DIR/be4.served" >"$STATE_DIR/be4.server.log" 2>&1 &
	track_pid server-be4 "$!"
	disown "$!"
	local deadline=$((SECONDS + 10))
	until grep -q '^ready' "$STATE_DIR/be4.server.log" 2>/dev/null; do
		((SECONDS < deadline)) || fail "be4 did not start: $(oneline <"$STATE_DIR/be4.server.log")"
		sleep 0.05
	done
}

# A backend routed out of another interface: the balancer's program sends
# its frames there with XDP_REDIRECT, and connections to it succeed.
test_redirect_to_other_interface() {
	decap_all
	b4_create
	{
		cfg_head
		echo "  - {address: $VIP1, port: $HTTP_PORT, protocol: tcp, mode: ipip,"
		echo "     backends: [{address: ${BE_IPS[0]}}, {address: $B4_IP}]}"
	} >"$STATE_DIR/cfg.yaml"
	lb_start "$STATE_DIR/cfg.yaml"
	backends_reset_counts
	tcp_batch "$STATE_DIR/tcp.json" 200
	assert_all_ok "$STATE_DIR/tcp.json" 200
	local be1 be4
	be1=$(backend_count be1 tcp "$VIP1" "$HTTP_PORT")
	be4=$(grep -c "^tcp $VIP1:$HTTP_PORT " "$STATE_DIR/be4.served" || true)
	((be4 >= 50 && be1 >= 50 && be1 + be4 == 200)) ||
		fail "be1 served $be1 and be4 $be4 of 200 (weights 1:1)"
	# The egress slot ballastd gave eth1, and the devmap entry behind it.
	local ifindex
	ifindex=$(nsx "$NS_LB" cat /sys/class/net/eth1/ifindex)
	bpftool map dump pinned "$PIN_DIR/tx_ports" -j >"$STATE_DIR/tx_ports.json"
	"$PYTHON" - "$STATE_DIR/tx_ports.json" "$ifindex" <<'PY' ||
import json, sys
entries = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
def num(v):
    return int.from_bytes(bytes(int(b, 16) for b in v), "little") if isinstance(v, list) else int(v)
# Empty devmap slots are listed with {"error": ...} as their value.
sys.exit(0 if any(isinstance(e["value"], list) and num(e["value"]) == want for e in entries) else 1)
PY
		fail "tx_ports has no entry for eth1 (ifindex $ifindex): $(oneline <"$STATE_DIR/tx_ports.json")"
}

# Between tests: lib.sh's reset, and the fourth backend and its link gone.
e2e_after_each() {
	if [[ -e /run/netns/$PREFIX-b4 ]]; then
		local f=$STATE_DIR/pids/server-be4
		[[ -f $f ]] && stop_pid "$(cat "$f")" 5 && rm -f "$f"
		ip netns del "$PREFIX-b4"
		ip -n "$NS_LB" link del eth1 2>/dev/null || true
	fi
	nsx "$NS_CL" ip route flush cache
	e2e_reset_nodes
}

E2E_TESTS=(
	test_too_big_is_answered
	test_fragments_reach_one_backend
	test_redirect_to_other_interface
)

e2e_main "$@"
