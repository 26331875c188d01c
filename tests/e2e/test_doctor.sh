#!/usr/bin/env bash
#
# test_doctor.sh: `ballast doctor` end to end (docs/operations.md, "ballast
# doctor"). Backends start bare (no VIP on lo, the kernel's default
# sysctls, no decap program); the doctor must find what is wrong, exit 1,
# and print fix commands that, run as printed, make the next run exit 0.
# Then the balancer role against a running ballastd.
#
# Topology (P = this run's prefix; lib.sh's teardown deletes exactly these):
#
#   netns P-bd   dsr backend   eth0 10.231.0.11/24 ---+
#   netns P-bi   ipip backend  eth0 10.231.0.12/24 ---+--- bridge P-br (netns P-sw)
#   netns P-lb   ballastd      eth0 10.231.0.3/24  ---+
#
# Usage: tests/e2e/test_doctor.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly DSR_IP=10.231.0.11
readonly IPIP_IP=10.231.0.12

# doctor_setup: the bare topology above. Unlike lib.sh's e2e_setup, the
# backends get no VIP and no sysctl: that is the doctor's work. A failure
# is one "FAIL setup: ..." line, as in e2e_setup.
doctor_setup() {
	local f
	for f in "$BUILD_DIR/ballast" "$BUILD_DIR/ballastd" "$BUILD_DIR/bpf/xdp_pass.bpf.o"; do
		if [[ ! -e $f ]]; then
			echo "FAIL setup: $f missing (run make first)"
			exit 1
		fi
	done
	# lib.sh's teardown deletes NS_BE, NS_LB and NS_SW: these are ours.
	NS_BE=("$PREFIX-bd" "$PREFIX-bi")
	NS_CL=''
	set -E
	trap 'echo "FAIL setup: ${BASH_SOURCE[0]##*/}:$LINENO: \"$BASH_COMMAND\" returned $?"' ERR
	ip netns add "$NS_SW"
	ip -n "$NS_SW" link add "$PREFIX-br" type bridge
	ip -n "$NS_SW" link set "$PREFIX-br" up
	local nodes=("${NS_BE[@]}" "$NS_LB") ips=("$DSR_IP" "$IPIP_IP" "$LB_IP") i ns port
	for i in "${!nodes[@]}"; do
		ns=${nodes[$i]}
		port=${ns/#$PREFIX/$PREFIX-p}
		ip netns add "$ns"
		nsx "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1
		ip link add "$port" netns "$NS_SW" type veth peer name eth0 netns "$ns"
		ip -n "$NS_SW" link set "$port" master "$PREFIX-br" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "${ips[$i]}/$E2E_SUBNET_LEN" dev eth0
		ip -n "$ns" link set eth0 up
	done
	trap - ERR
	set +E
	e2e_log "doctor topology up: dsr backend $DSR_IP, ipip backend $IPIP_IP, lb $LB_IP"
}

# doctor_in NS OUT ARGS...: `ballast doctor ARGS -o json` in NS, JSON to
# OUT; echoes its exit status (the doctor's verdict), never fails.
doctor_in() {
	local ns=$1 out=$2 rc=0
	shift 2
	nsx "$ns" "$BUILD_DIR/ballast" doctor "$@" -o json >"$out" 2>"$out.err" || rc=$?
	e2e_log "doctor $* in $ns: exit $rc, $(findings_summary "$out")"
	echo "$rc"
}

# findings_summary JSON: "severity check" of every finding not ok.
findings_summary() {
	"$PYTHON" - "$1" <<'PY' 2>/dev/null || echo "(no JSON)"
import json, sys
f = json.load(open(sys.argv[1]))["findings"]
print("; ".join(f"{x['severity']} {x['check']}" for x in f if x["severity"] != "ok") or "all ok")
PY
}

# finding JSON CHECK SEVERITY FIX_PREFIX: true when JSON has a CHECK finding
# of SEVERITY whose fix starts with FIX_PREFIX.
finding() {
	"$PYTHON" - "$@" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["findings"]
check, sev, fix = sys.argv[2:5]
sys.exit(0 if any(x["check"] == check and x["severity"] == sev and x["fix"].startswith(fix)
                  for x in f) else 1)
PY
}

# apply_fixes NS JSON: runs in NS, as printed and in order, the fix of
# every error and warning (with the built ballast first on PATH). A fix
# with a <PLACEHOLDER> cannot be run as printed: a test failure for an
# error, skipped for a warning.
apply_fixes() {
	local ns=$1 json=$2 fix
	"$PYTHON" - "$json" >"$json.fixes" <<'PY' || fail "$(cat "$json.fixes")"
import json, sys
bad = []
for x in json.load(open(sys.argv[1]))["findings"]:
    if x["severity"] == "ok" or not x["fix"]:
        continue
    if "<" in x["fix"]:
        if x["severity"] == "error":
            bad.append(f"{x['check']}: fix cannot be run as printed: {x['fix']}")
        continue
    print(x["fix"])
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	while IFS= read -r fix; do
		e2e_log "applying in $ns: $fix"
		nsx "$ns" env PATH="$BUILD_DIR:$PATH" bash -c "$fix" ||
			fail "fix failed in $ns: $fix"
	done <"$json.fixes"
}

# A bare dsr backend: exit 1 with the arp_ignore finding and its fix;
# after running every fix printed, exit 0 with nothing but oks.
test_backend_dsr() {
	local ns=${NS_BE[0]} rc
	rc=$(doctor_in "$ns" "$STATE_DIR/before.json" backend --mode dsr --vip "$VIP1")
	((rc == 1)) || fail "bare dsr backend: exit $rc, want 1: $(findings_summary "$STATE_DIR/before.json")"
	finding "$STATE_DIR/before.json" arp-ignore error "sysctl -w net.ipv4.conf.all.arp_ignore=1" ||
		fail "no arp-ignore error with its fix: $(oneline <"$STATE_DIR/before.json")"
	finding "$STATE_DIR/before.json" arp-announce error "sysctl -w net.ipv4.conf.all.arp_announce=2" ||
		fail "no arp-announce error with its fix"
	finding "$STATE_DIR/before.json" vip-on-lo error "ip addr add $VIP1/32 dev lo" ||
		fail "no vip-on-lo error with its fix"
	# The text output says the same, with the fix under the finding.
	local text
	text=$(nsx "$ns" "$BUILD_DIR/ballast" doctor backend --mode dsr --vip "$VIP1" || true)
	[[ $text == *"ERROR arp-ignore"*"fix: sysctl -w net.ipv4.conf.all.arp_ignore=1"* ]] ||
		fail "text output lacks the arp-ignore error and fix: $text"

	apply_fixes "$ns" "$STATE_DIR/before.json"
	rc=$(doctor_in "$ns" "$STATE_DIR/after.json" backend --mode dsr --vip "$VIP1")
	((rc == 0)) || fail "after the fixes: exit $rc, want 0: $(findings_summary "$STATE_DIR/after.json")"
	[[ $(findings_summary "$STATE_DIR/after.json") == "all ok" ]] ||
		fail "after the fixes: $(findings_summary "$STATE_DIR/after.json")"
	# Without --vip the VIPs are lo's: the one just added.
	rc=$(doctor_in "$ns" "$STATE_DIR/lo.json" backend --mode dsr)
	((rc == 0)) || fail "VIPs from lo: exit $rc: $(findings_summary "$STATE_DIR/lo.json")"
	grep -q "$VIP1/32 is on lo" "$STATE_DIR/lo.json" || fail "VIPs from lo: $VIP1 not checked"
}

# A bare ipip backend: exit 1 with the VIP and decap findings; the fixes
# (ip addr add, ballast decap attach, the MTU) make it exit 0. A second
# VIP the decap program does not hold is an error again, and its fix (one
# attach with both VIPs) clears it; so is a GUE port other than the decap
# program's.
test_backend_ipip() {
	local ns=${NS_BE[1]} rc
	rc=$(doctor_in "$ns" "$STATE_DIR/before.json" backend --mode ipip --vip "$VIP1")
	((rc == 1)) || fail "bare ipip backend: exit $rc, want 1: $(findings_summary "$STATE_DIR/before.json")"
	finding "$STATE_DIR/before.json" decap-attached error "ballast decap attach eth0 --vip $VIP1" ||
		fail "no decap-attached error with its fix: $(oneline <"$STATE_DIR/before.json")"
	finding "$STATE_DIR/before.json" mtu warn "ip link set dev eth0 mtu 1520" ||
		fail "no mtu warning stating 1520"
	grep -q 'over 1480 bytes will be answered with ICMP too big' "$STATE_DIR/before.json" ||
		fail "the mtu finding does not name 1480"

	apply_fixes "$ns" "$STATE_DIR/before.json"
	rc=$(doctor_in "$ns" "$STATE_DIR/after.json" backend --mode ipip --vip "$VIP1")
	((rc == 0)) || fail "after the fixes: exit $rc, want 0: $(findings_summary "$STATE_DIR/after.json")"
	[[ $(findings_summary "$STATE_DIR/after.json") == "all ok" ]] ||
		fail "after the fixes: $(findings_summary "$STATE_DIR/after.json")"
	nsx "$ns" "$BUILD_DIR/ballast" decap status eth0 -o json | grep -q "\"$VIP1\"" ||
		fail "decap status does not list $VIP1 after the doctor's fix"

	rc=$(doctor_in "$ns" "$STATE_DIR/two.json" backend --mode ipip --vip "$VIP1" --vip "$VIP2")
	((rc == 1)) || fail "a VIP missing from decap: exit $rc, want 1"
	finding "$STATE_DIR/two.json" decap-vips error "ballast decap attach eth0 --vip $VIP1 --vip $VIP2" ||
		fail "no decap-vips error with its fix: $(findings_summary "$STATE_DIR/two.json")"
	apply_fixes "$ns" "$STATE_DIR/two.json"
	rc=$(doctor_in "$ns" "$STATE_DIR/two-after.json" backend --mode ipip --vip "$VIP1" --vip "$VIP2")
	((rc == 0)) || fail "two VIPs after the fixes: exit $rc: $(findings_summary "$STATE_DIR/two-after.json")"

	# gue on another port than the decap program's (attach's default, 6080).
	rc=$(doctor_in "$ns" "$STATE_DIR/gue.json" backend --mode gue --gue-port 5555)
	((rc == 1)) || fail "gue on port 5555: exit $rc, want 1"
	finding "$STATE_DIR/gue.json" decap-gue-port error \
		"ballast decap attach eth0 --vip $VIP1 --vip $VIP2 --gue-port 5555" ||
		fail "no decap-gue-port error with its fix: $(findings_summary "$STATE_DIR/gue.json")"
	grep -q 'takes GUE on UDP port 6080, but the VIPs send it to port 5555' "$STATE_DIR/gue.json" ||
		fail "the decap-gue-port finding does not name both ports"
	apply_fixes "$ns" "$STATE_DIR/gue.json"
	rc=$(doctor_in "$ns" "$STATE_DIR/gue-after.json" backend --mode gue --gue-port 5555)
	((rc == 0)) || fail "gue after the fixes: exit $rc: $(findings_summary "$STATE_DIR/gue-after.json")"
}

# The balancer role: before ballastd, no program and no daemon (exit 1);
# with ballastd running a dsr and an ipip VIP, exit 0: program native,
# pins, socket, routes and MACs ok; warnings for the veth peer in another
# namespace and the ipip MTU.
test_balancer() {
	local rc cfg=$STATE_DIR/cfg.yaml
	{
		cfg_head
		echo "  - {address: $VIP1, port: $HTTP_PORT, protocol: tcp, mode: dsr,"
		echo "     backends: [{address: $DSR_IP}, {address: $IPIP_IP}]}"
		echo "  - {address: $VIP2, port: $HTTP_PORT, protocol: tcp, mode: ipip,"
		echo "     backends: [{address: $DSR_IP}, {address: $IPIP_IP}]}"
	} >"$cfg"
	rc=0
	lb_exec "$BUILD_DIR/ballast" doctor balancer --config "$cfg" -s "$LB_SOCK" -o json \
		>"$STATE_DIR/before.json" || rc=$?
	e2e_log "doctor balancer before ballastd: exit $rc, $(findings_summary "$STATE_DIR/before.json")"
	((rc == 1)) || fail "balancer without ballastd: exit $rc, want 1"
	finding "$STATE_DIR/before.json" xdp-program error "ballastd --config $cfg" ||
		fail "no xdp-program error: $(findings_summary "$STATE_DIR/before.json")"
	finding "$STATE_DIR/before.json" ballastd-api error "ballastd --config $cfg" ||
		fail "no ballastd-api error"

	lb_start "$cfg"
	# ballastd asks the kernel for both backends' MACs at start.
	wait_backend_for 10 "$VIP1:$HTTP_PORT/tcp" "$DSR_IP" 'b["resolved"]'
	wait_backend_for 10 "$VIP1:$HTTP_PORT/tcp" "$IPIP_IP" 'b["resolved"]'
	rc=0
	lb_exec "$BUILD_DIR/ballast" doctor balancer -s "$LB_SOCK" -o json \
		>"$STATE_DIR/after.json" || rc=$?
	e2e_log "doctor balancer with ballastd: exit $rc, $(findings_summary "$STATE_DIR/after.json")"
	((rc == 0)) || fail "balancer with ballastd: exit $rc, want 0: $(findings_summary "$STATE_DIR/after.json")"
	"$PYTHON" - "$STATE_DIR/after.json" "$PIN_DIR" <<'PY' || fail "$(cat "$STATE_DIR/why")"
import json, os, sys
f = json.load(open(sys.argv[1]))["findings"]
sev = {}
for x in f:
    sev.setdefault(x["check"], []).append(x["severity"])
want = {"bpffs": ["ok"], "xdp-program": ["ok"], "pinned-maps": ["ok"], "ballastd-api": ["ok"],
        "veth-peer": ["warn"], "config": ["ok"], "route": ["ok", "ok"],
        "neighbour": ["ok", "ok"], "mtu": ["warn"]}
bad = [f"{k}: {sev.get(k)} != {v}" for k, v in want.items() if sev.get(k) != v]
text = {x["check"]: x["message"] for x in f}
if "in native mode" not in text.get("xdp-program", ""):
    bad.append("xdp-program: " + text.get("xdp-program", "?"))
if sys.argv[2] not in text.get("pinned-maps", ""):
    bad.append("pinned-maps does not name " + sys.argv[2])
if "packets over 1480 bytes will be answered with ICMP too big" not in text.get("mtu", ""):
    bad.append("mtu: " + text.get("mtu", "?"))
open(os.path.dirname(sys.argv[1]) + "/why", "w").write("; ".join(bad))
sys.exit(1 if bad else 0)
PY
	# The example for docs/operations.md.
	lb_exec "$BUILD_DIR/ballast" doctor balancer -s "$LB_SOCK" >&2 || true
}

e2e_after_each() {
	return 0
}

E2E_TESTS=(
	test_backend_dsr
	test_backend_ipip
	test_balancer
)

build=build
if [[ $# -gt 0 && $1 != test_* ]]; then
	build=$1
	shift
fi
e2e_init "$build"
doctor_setup
run_tests "$@"
