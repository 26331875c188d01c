#!/usr/bin/env bash
#
# test_encap.sh: the ipip forwarding mode end to end (docs/operations.md,
# "Forwarding modes"): real TCP connections from the client through the
# balancer, which wraps each packet in IPv4-in-IPv4 to the backend's
# address, to backends whose own XDP program (`ballast decap attach`)
# strips it and passes the client's packet up; the backends answer the
# client directly from the VIP.
#
# Usage: tests/e2e/test_encap.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.
#
# Statistics: shares over N=1000 connections within TOL_PP=7 percentage
# points: 5 standard deviations of a 25% share (sqrt(.25 * .75 / 1000) =
# 1.37 pp), so a correct balancer fails it about once in 1.7 million checks.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly VIP_TCP=$VIP1:$HTTP_PORT/tcp
readonly N=1000
readonly TOL_PP=7

# cfg_ipip FILE W1 W2 W3 [MODE]: VIP1:80/tcp over be1..be3 in MODE (ipip).
cfg_ipip() {
	{
		cfg_head
		echo "  - address: $VIP1"
		echo "    port: $HTTP_PORT"
		echo "    protocol: tcp"
		echo "    mode: ${5:-ipip}"
		echo "    backends:"
		echo "      - {address: ${BE_IPS[0]}, weight: $2}"
		echo "      - {address: ${BE_IPS[1]}, weight: $3}"
		echo "      - {address: ${BE_IPS[2]}, weight: $4}"
	} >"$1"
}

# Every connection through ipip succeeds, by the weights; every backend's
# decap program stripped at least what it served; the balancer counted the
# packets as tx_encap_ipip, none as plain dsr.
test_ipip_tcp() {
	decap_all
	local ns
	for ns in "${NS_BE[@]}"; do
		nsx "$ns" "$BUILD_DIR/ballast" decap status eth0 -o json >"$STATE_DIR/status.json"
		grep -q "\"$VIP1\"" "$STATE_DIR/status.json" ||
			fail "decap status in $ns does not list $VIP1 (from lo): $(oneline <"$STATE_DIR/status.json")"
	done
	cfg_ipip "$STATE_DIR/cfg.yaml" 1 1 2
	lb_start "$STATE_DIR/cfg.yaml"
	backends_reset_counts
	tcp_batch "$STATE_DIR/tcp.json" "$N"
	assert_all_ok "$STATE_DIR/tcp.json" "$N"
	assert_shares "$STATE_DIR/tcp.json" "$TOL_PP" be1=1 be2=1 be3=2
	local i served stripped
	for i in "${!NS_BE[@]}"; do
		served=$(backend_count "${BE_NAMES[$i]}" tcp "$VIP1" "$HTTP_PORT")
		stripped=$(decapped "${NS_BE[$i]}")
		# Each connection is at least SYN, ACK, request, ACK, FIN: 3 or more
		# client packets per request.
		((stripped >= 3 * served)) ||
			fail "${BE_NAMES[$i]}: decap stripped $stripped packets for $served connections"
	done
	stats_json "$STATE_DIR/stats.json"
	"$PYTHON" - "$STATE_DIR/stats.json" <<'PY' || fail "reasons: $(cat "$STATE_DIR/why")"
import json, sys
r = {x["reason"]: x["packets"] for x in json.load(open(sys.argv[1]))["reasons"]}
ok = r.get("tx_encap_ipip", 0) > 0 and r.get("tx_forwarded", 0) == 0 and r.get("drop_encap_failed", 0) == 0
open(sys.argv[1].rsplit("/", 1)[0] + "/why", "w").write(str(r))
sys.exit(0 if ok else 1)
PY
}

# Switching the VIP between dsr and ipip on live traffic is one map write:
# connections before and after both succeed.
test_mode_switch_live() {
	decap_all
	cfg_ipip "$STATE_DIR/cfg.yaml" 1 1 1 dsr
	lb_start "$STATE_DIR/cfg.yaml"
	tcp_batch "$STATE_DIR/dsr.json" 100
	assert_all_ok "$STATE_DIR/dsr.json" 100
	cfg_ipip "$STATE_DIR/cfg.yaml" 1 1 1 ipip
	lb_cli_ok apply -f "$STATE_DIR/cfg.yaml" >"$STATE_DIR/apply.out"
	grep -q "^vip options $VIP_TCP: mode dsr -> ipip$" "$STATE_DIR/apply.out" ||
		fail "apply did not report the mode change: $(oneline <"$STATE_DIR/apply.out")"
	local before
	before=$(decapped "${NS_BE[0]}")
	tcp_batch "$STATE_DIR/ipip.json" 100
	assert_all_ok "$STATE_DIR/ipip.json" 100
	(($(decapped "${NS_BE[0]}") > before)) || fail "be1 decapsulated nothing after the switch"
}

# attach refuses a foreign XDP program, detach leaves one alone, and a
# backend without VIPs on lo is told what to do.
test_decap_cli_errors() {
	local out rc=0 ns=${NS_BE[0]}
	nsx "$ns" ip link set dev eth0 xdpdrv obj "$BUILD_DIR/bpf/xdp_pass.bpf.o" sec xdp
	out=$(nsx "$ns" "$BUILD_DIR/ballast" decap attach eth0 2>&1) || rc=$?
	((rc == 1)) && [[ $out == *"another XDP program (xdp_pass,"* ]] ||
		fail "attach over a foreign program: exit $rc: $out"
	rc=0
	out=$(nsx "$ns" "$BUILD_DIR/ballast" decap detach eth0 2>&1) || rc=$?
	((rc == 1)) && [[ $out == *"not Ballast's decap program; left alone"* ]] ||
		fail "detach of a foreign program: exit $rc: $out"
	nsx "$ns" ip link set dev eth0 xdpdrv off
	rc=0
	out=$(nsx "$ns" "$BUILD_DIR/ballast" decap attach eth0 --vip 10.231.255.1 --vip nonsense 2>&1) || rc=$?
	((rc == 1)) && [[ $out == *"--vip 'nonsense' is not an IP address"* ]] ||
		fail "a bad --vip: exit $rc: $out"
}


E2E_TESTS=(
	test_ipip_tcp
	test_mode_switch_live
	test_decap_cli_errors
)

e2e_main "$@"
