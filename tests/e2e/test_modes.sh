#!/usr/bin/env bash
#
# test_modes.sh: every forwarding mode over both address families end to end
# (docs/dataplane.md "The balancer's packet paths", docs/operations.md
# "Forwarding modes"), in lib.sh's IPv6 topology (E2E_IPV6=1): real TCP
# connections (and UDP datagrams) from the client through the balancer to
# backends that answer the client directly; where the mode encapsulates, the
# backends' own XDP program (`ballast decap attach`) strips it.
#
#   test_dsr_v6                 dsr, IPv6 VIP, IPv6 backends
#   test_ipip_v6_in_v6          ipip, IPv6 VIP, IPv6 backends
#   test_ipip_v4_in_v6          ipip, IPv4 VIP behind IPv6 backends
#   test_gue_v4_port            gue over IPv4 on a non-default port (config
#                               gue_port and decap --gue-port)
#   test_gue_v6                 gue over IPv6 (default port)
#   test_udp_ignore_source_port gue over IPv6: a udp VIP with
#                               ignore_source_port takes one client's
#                               datagrams from many ports to ONE backend;
#                               a udp VIP without it and a tcp VIP spread
#   test_encap_source_prefix    ipip with encap source prefixes (v4 and v6):
#                               outer sources captured on the wire lie in
#                               the prefix, one per flow, varying across flows
#
# Each case checks: every request answered; the shares over be1..be3 match
# weights 1:1:2; the balancer's reason counters name the mode (tx_forwarded,
# tx_encap_ipip or tx_encap_gue, the other two zero, no drop_* at all) and
# its VIP counted the connections as new flows; each backend's decap program
# stripped at least 3 packets per connection it served. The encapsulating
# cases also capture what the balancer sends on the wire (AF_PACKET on the
# lb's bridge port) and check the outer headers: source the lb's own address
# of the backend's family (or in the encap source prefix), destination a
# backend, GUE to the right UDP port from a per-flow source port.
#
# Usage: tests/e2e/test_modes.sh [BUILD_DIR] [test_name...]
#   BUILD_DIR defaults to build; no names runs every test. Needs root.
# Prints PASS/FAIL/SKIP per test; exits 0 when none failed.
#
# Statistics: shares over N=1000 requests within TOL_PP=8 percentage points:
# 5 standard deviations of be3's 50% share (sqrt(.5 * .5 / 1000) = 1.58 pp)
# and 5.8 of a 25% share (1.37 pp), so a correct balancer fails one share
# check about once in 1.7 million (the 50% share; the 25% ones far less
# often), and a run of this script (21 share checks, 7 of a 50% share) about
# once in 250,000.
# A wrong weighting fails by far: 1:1:1 gives be3 33% (17 pp off).

# Test functions are called indirectly (run_tests), which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

# Before lib.sh's e2e_setup: this script's topology has IPv6.
E2E_IPV6=1
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly N=1000
readonly TOL_PP=8
readonly WEIGHTS=(1 1 2)
readonly SHARES=(be1=1 be2=1 be3=2)
# The GUE port of a VIP and of `ballast decap attach` that name none, and
# one that is not it, for test_gue_v4_port.
readonly DEFAULT_GUE_PORT=6080
readonly GUE_PORT=7080
# Connections per family in test_encap_source_prefix.
readonly N_PREFIX=200
readonly PREFIX_V4=10.231.200.0/24
readonly PREFIX_V6=fd00:231:200::/96

# vip_key ADDRESS PORT PROTO: the VIP as ballast names it (IPv6 in brackets).
vip_key() {
	if [[ $1 == *:* ]]; then
		echo "[$1]:$2/$3"
	else
		echo "$1:$2/$3"
	fi
}

# vip_yaml ADDRESS PORT PROTO MODE 4|6 [KEY=VALUE...]: one entry of `vips:`
# over be1..be3 (their IPv4 or IPv6 addresses) with WEIGHTS; each KEY=VALUE
# is one more field of the VIP.
vip_yaml() {
	local addr=$1 port=$2 proto=$3 mode=$4 fam=$5 i opt
	shift 5
	local ips=("${BE_IPS[@]}")
	if [[ $fam == 6 ]]; then
		ips=("${BE_IPS6[@]}")
	fi
	echo "  - address: \"$addr\""
	echo "    port: $port"
	echo "    protocol: $proto"
	echo "    mode: $mode"
	for opt in "$@"; do
		echo "    ${opt%%=*}: ${opt#*=}"
	done
	echo "    backends:"
	for i in "${!ips[@]}"; do
		echo "      - {address: \"${ips[$i]}\", weight: ${WEIGHTS[$i]}}"
	done
}

# assert_decapped PROTO VIP PORT: every backend's decap program stripped at
# least 3 packets (SYN, ACK, request, ACK, FIN...; 1 for a UDP datagram) per
# request it served for VIP:PORT/PROTO, and at least one.
assert_decapped() {
	local proto=$1 vip=$2 port=$3 i served stripped per=3
	[[ $proto == udp ]] && per=1
	for i in "${!NS_BE[@]}"; do
		served=$(backend_count "${BE_NAMES[$i]}" "$proto" "$vip" "$port")
		stripped=$(decapped "${NS_BE[$i]}")
		e2e_log "${BE_NAMES[$i]}: served $served $proto requests, decap stripped $stripped packets"
		((served == 0 || stripped >= per * served)) ||
			fail "${BE_NAMES[$i]}: decap stripped $stripped packets for $served $proto requests"
		((served == 0 || stripped > 0)) || fail "${BE_NAMES[$i]}: decap stripped nothing"
	done
}

# assert_reasons STATS_JSON WANT MIN: the balancer counted at least MIN
# packets as WANT (tx_forwarded, tx_encap_ipip or tx_encap_gue), none as the
# other two modes, none dropped for any reason. Logs every non-zero reason.
assert_reasons() {
	local why
	if ! why=$("$PYTHON" - "$@" <<'PY'
import json, sys
stats, want, least = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
r = {x["reason"]: x["packets"] for x in stats["reasons"]}
print("reasons:", {k: v for k, v in r.items() if v}, file=sys.stderr)
bad = []
if r.get(want, 0) < least:
    bad.append(f"{want} {r.get(want, 0)} < {least}")
for other in ("tx_forwarded", "tx_encap_ipip", "tx_encap_gue"):
    if other != want and r.get(other, 0):
        bad.append(f"{other} {r[other]} (want 0)")
drops = {k: v for k, v in r.items() if k.startswith("drop_") and v}
if drops:
    bad.append(f"drops {drops}")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "reason counters: $why"
	fi
}

# assert_new_flows STATS_JSON VIPKEY N: the VIP counted N new flows (up to
# 1% more: a SYN the kernel retransmits is counted again).
assert_new_flows() {
	local why
	if ! why=$("$PYTHON" - "$@" <<'PY'
import json, math, sys
stats, key, n = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
v = next((v for v in stats["vips"] if v["vip"] == key), None)
if v is None:
    print(f"{key} not in ballast stats: {[v['vip'] for v in stats['vips']]}"); sys.exit(1)
print(f"{key}: new_flows {v['new_flows']}, backends "
      f"{ {b['address']: b['new_flows'] for b in v['backends']} }", file=sys.stderr)
if not n <= v["new_flows"] <= n + max(1, math.ceil(n / 100)):
    print(f"{key}: new_flows {v['new_flows']}, {n} connections made"); sys.exit(1)
PY
	); then
		fail "$why"
	fi
}

# tcp_case VIP WANT [KIND FAMILY=NETWORK...]: N connections to VIP:80,
# checked as the header says; WANT is the balancer's reason for the VIP's
# mode. With KIND (ipip, gue:PORT), the encapsulated frames are captured on
# the wire and checked by assert_capture (outer sources: the lb's own
# address, say).
tcp_case() {
	local vip=$1 want=$2
	shift 2
	backends_reset_counts
	if (($#)); then
		capture_start "$STATE_DIR/cap.txt" "$(gue_port_of "$1")"
	fi
	tcp_batch_to "$vip" "$STATE_DIR/tcp.json" "$N"
	if (($#)); then
		capture_stop "$STATE_DIR/cap.txt"
		assert_capture "$STATE_DIR/cap.txt" "$N" "$@"
	fi
	assert_all_ok "$STATE_DIR/tcp.json" "$N"
	assert_shares "$STATE_DIR/tcp.json" "$TOL_PP" "${SHARES[@]}"
	stats_json "$STATE_DIR/stats.json"
	assert_reasons "$STATE_DIR/stats.json" "$want" $((3 * N))
	assert_new_flows "$STATE_DIR/stats.json" "$(vip_key "$vip" "$HTTP_PORT" tcp)" "$N"
	if [[ $want != tx_forwarded ]]; then
		assert_decapped tcp "$vip" "$HTTP_PORT"
	fi
}

# gue_port_of KIND: PORT of gue:PORT, 0 for ipip.
gue_port_of() {
	if [[ $1 == gue:* ]]; then
		echo "${1#gue:}"
	else
		echo 0
	fi
}

# start_with VIP_YAML...: ballastd on a config of cfg_head and the VIPs
# (each argument a vip_yaml argument list, as one string).
start_with() {
	local v
	{
		cfg_head
		for v in "$@"; do
			# shellcheck disable=SC2086 # word splitting wanted: one VIP's arguments
			vip_yaml $v
		done
	} >"$STATE_DIR/cfg.yaml"
	lb_start "$STATE_DIR/cfg.yaml"
}

# dsr over IPv6: the MAC rewrite alone; no decap program anywhere.
test_dsr_v6() {
	start_with "$VIP6_1 $HTTP_PORT tcp dsr 6"
	tcp_case "$VIP6_1" tx_forwarded
}

# IPv6 in IPv6 (next header 41) to the backends' IPv6 addresses.
test_ipip_v6_in_v6() {
	decap_all
	start_with "$VIP6_1 $HTTP_PORT tcp ipip 6"
	tcp_case "$VIP6_1" tx_encap_ipip ipip 6="$LB_IP6"
}

# An IPv4 VIP behind IPv6 backends: IPv4 in IPv6 (next header 4).
test_ipip_v4_in_v6() {
	decap_all
	start_with "$VIP1 $HTTP_PORT tcp ipip 6"
	tcp_case "$VIP1" tx_encap_ipip ipip 6="$LB_IP6"
}

# GUE over IPv4 to a port that is not the default, on both sides: the decap
# program strips only UDP to its own port, so a balancer that sent to 6080
# would fail every connection.
test_gue_v4_port() {
	decap_all --gue-port "$GUE_PORT"
	local port
	port=$(nsx "${NS_BE[0]}" "$BUILD_DIR/ballast" decap status eth0 -o json | "$PYTHON" -c \
		'import json,sys; print(json.load(sys.stdin)["gue_port"])')
	[[ $port == "$GUE_PORT" ]] || fail "decap status says GUE port $port, attached with $GUE_PORT"
	start_with "$VIP1 $HTTP_PORT tcp gue 4 gue_port=$GUE_PORT"
	tcp_case "$VIP1" tx_encap_gue gue:"$GUE_PORT" 4="$LB_IP"
}

# GUE over IPv6, default port on both sides.
test_gue_v6() {
	decap_all
	start_with "$VIP6_1 $HTTP_PORT tcp gue 6"
	tcp_case "$VIP6_1" tx_encap_gue gue:"$DEFAULT_GUE_PORT" 6="$LB_IP6"
}

# ignore_source_port: N datagrams from N source ports of one client to a
# udp VIP with it all reach ONE backend; the same to a udp VIP without it
# spread by the weights, and so do N TCP connections to a tcp VIP of the
# same address. All gue over IPv6.
test_udp_ignore_source_port() {
	decap_all
	start_with "$VIP6_1 $UDP_PORT udp gue 6 ignore_source_port=true" \
		"$VIP6_2 $UDP_PORT udp gue 6" "$VIP6_1 $HTTP_PORT tcp gue 6"
	backends_reset_counts
	udp_batch_to "$VIP6_1" "$STATE_DIR/sticky.json" "$N" 20000
	assert_all_ok "$STATE_DIR/sticky.json" "$N"
	"$PYTHON" - "$STATE_DIR/sticky.json" <<'PY' || fail "ignore_source_port: answers from $(json_get "$STATE_DIR/sticky.json" by_backend), want one backend"
import json, sys
sys.exit(0 if len(json.load(open(sys.argv[1]))["by_backend"]) == 1 else 1)
PY
	assert_decapped udp "$VIP6_1" "$UDP_PORT"
	udp_batch_to "$VIP6_2" "$STATE_DIR/spread.json" "$N" 30000
	assert_all_ok "$STATE_DIR/spread.json" "$N"
	assert_shares "$STATE_DIR/spread.json" "$TOL_PP" "${SHARES[@]}"
	tcp_case "$VIP6_1" tx_encap_gue
	# The sticky VIP's datagrams, whatever their source port, are one flow
	# at the balancer.
	stats_json "$STATE_DIR/stats.json"
	assert_new_flows "$STATE_DIR/stats.json" "$(vip_key "$VIP6_2" "$UDP_PORT" udp)" "$N"
	local flows
	flows=$("$PYTHON" -c '
import json, sys
print(next(v["new_flows"] for v in json.load(open(sys.argv[1]))["vips"] if v["vip"] == sys.argv[2]))' \
		"$STATE_DIR/stats.json" "$(vip_key "$VIP6_1" "$UDP_PORT" udp)")
	e2e_log "ignore_source_port VIP: $flows new flow(s) for $N datagrams"
	((flows == 1)) ||
		fail "ignore_source_port VIP counted $flows new flows for $N datagrams of one client (want 1)"
}

# capture_start OUT [GUE_PORT]: records every encapsulated frame the
# balancer sends (an AF_PACKET socket on the lb's bridge port, in the switch
# namespace; no tcpdump needed): IP-in-IP, and UDP to GUE_PORT carrying an IP
# packet. One line per frame to OUT:
#   "FAMILY KIND OUTER_SRC OUTER_DST INNER_SRC INNER_SPORT INNER_DST INNER_DPORT"
# KIND: "ipip", or "gue/UDP_SPORT/UDP_DPORT". Until OUT.stop exists
# (capture_stop). Sets CAPTURE_PID once it listens.
CAPTURE_PID=
capture_start() {
	local out=$1 gue=${2:-0} deadline=$((SECONDS + 10))
	rm -f "$out.stop"
	ip netns exec "$NS_SW" "$PYTHON" - "$PREFIX-lb" "$out" "$gue" >"$out.err" 2>&1 <<'PY' &
import ipaddress, os, select, socket, struct, sys
ifname, out, gue = sys.argv[1], sys.argv[2], int(sys.argv[3])
ETH_P_ALL = 3
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
s.bind((ifname, 0))
s.setblocking(False)
print("listening on", ifname, flush=True)

def addr(b):
    return str(ipaddress.ip_address(b))

def ip_header(frame, off):
    """(family, src, dst, protocol, payload offset) of the IP header at off."""
    v = frame[off] >> 4
    if v == 4:
        ihl = (frame[off] & 15) * 4
        return 4, addr(frame[off + 12:off + 16]), addr(frame[off + 16:off + 20]), frame[off + 9], off + ihl
    if v == 6:
        return 6, addr(frame[off + 8:off + 24]), addr(frame[off + 24:off + 40]), frame[off + 6], off + 40
    raise ValueError(f"IP version {v}")

seen = other = 0
with open(out, "w", encoding="ascii") as f:
    stop = False
    while True:
        if not stop and os.path.exists(out + ".stop"):
            stop = True  # one more round: take what is queued
        if not select.select([s], [], [], 0.05)[0]:
            if stop:
                break
            continue
        while True:
            try:
                frame, where = s.recvfrom(65535)
            except BlockingIOError:
                break
            if where[2] == socket.PACKET_OUTGOING:
                continue
            if struct.unpack("!H", frame[12:14])[0] not in (0x0800, 0x86DD):
                continue
            try:
                fam, osrc, odst, proto, off = ip_header(frame, 14)
                if proto in (4, 41):
                    kind = "ipip"
                elif proto == 17 and gue:
                    usport, udport = struct.unpack("!HH", frame[off:off + 4])
                    if udport != gue:
                        continue
                    kind = f"gue/{usport}/{udport}"
                    off += 8
                else:
                    continue
                _, isrc, idst, _, ioff = ip_header(frame, off)
                sport, dport = struct.unpack("!HH", frame[ioff:ioff + 4])
            except (ValueError, struct.error, IndexError):
                other += 1
                continue
            seen += 1
            f.write(f"{fam} {kind} {osrc} {odst} {isrc} {sport} {idst} {dport}\n")
print(f"captured {seen} encapsulated frames, {other} unparsable", flush=True)
PY
	CAPTURE_PID=$!
	until grep -q 'listening on' "$out.err" 2>/dev/null; do
		pid_alive "$CAPTURE_PID" || fail "capture exited: $(oneline <"$out.err")"
		((SECONDS <= deadline)) || fail "capture not listening after 10 s"
		sleep 0.05
	done
}

# capture_stop OUT: ends the capture once it has read what was queued.
capture_stop() {
	: >"$1.stop"
	wait "$CAPTURE_PID" || fail "capture failed: $(oneline <"$1.err")"
	e2e_log "capture: $(tail -n 1 "$1.err")"
}

# assert_capture OUT N KIND FAMILY=NETWORK...: what capture_start recorded
# of the client's packets: for each FAMILY (4, 6) named, its N flows (90% at
# least: a capture may miss packets under load, hardly whole flows) and
# every outer source in NETWORK (an address: that one), one outer source per
# flow, varying across flows where NETWORK holds more than one address (at
# least N/4 distinct ones: hashed into 256 (a /24) or 2^32 (a /96) sources,
# N flows give about 0.7 N or N); no frame of another family. Every outer
# destination is a backend. KIND: ipip, or gue:PORT (UDP to PORT, from a
# source port in 49152..65535 that is one per flow and varies across flows).
assert_capture() {
	local why
	if ! why=$("$PYTHON" - "$CLIENT_IP" "$CLIENT_IP6" "${BE_IPS[*]} ${BE_IPS6[*]}" "$@" <<'PY'
import collections, ipaddress, sys
c4, c6, backends, path, n, kind = sys.argv[1:7]
n = int(n)
want = {int(k): ipaddress.ip_network(v) for k, v in (a.split("=") for a in sys.argv[7:])}
clients = {c4, c6}
backends = set(backends.split())
gue_port = int(kind.split(":")[1]) if kind.startswith("gue:") else None
bad = []
def problem(what):
    if len(bad) < 6:
        bad.append(what)
sources = {4: collections.defaultdict(set), 6: collections.defaultdict(set)}
ports = collections.defaultdict(set)
packets = 0
for line in open(path):
    fam, k, osrc, odst, isrc, sport, idst, dport = line.split()
    fam = int(fam)
    if isrc not in clients:
        continue
    packets += 1
    flow = (isrc, sport, idst, dport)
    if fam not in want:
        problem(f"an IPv{fam} outer header, want only IPv{sorted(want)}: {line.strip()}")
        continue
    if ipaddress.ip_address(osrc) not in want[fam]:
        problem(f"outer source {osrc} not in {want[fam]}: {line.strip()}")
    if odst not in backends:
        problem(f"outer destination {odst} is no backend: {line.strip()}")
    if gue_port is None:
        if k != "ipip":
            problem(f"not ipip: {line.strip()}")
    elif not k.startswith("gue/"):
        problem(f"not gue: {line.strip()}")
    else:
        usport, udport = map(int, k.split("/")[1:])
        if udport != gue_port or not 49152 <= usport <= 65535:
            problem(f"GUE UDP ports {usport} -> {udport}, want 49152..65535 -> {gue_port}: {line.strip()}")
        ports[flow].add(usport)
    sources[fam][flow].add(osrc)
for fam, net in sorted(want.items()):
    f = sources[fam]
    srcs = set().union(*f.values()) if f else set()
    split = [k for k, v in f.items() if len(v) > 1]
    print(f"IPv{fam} outer: {len(f)} flows, {len(srcs)} distinct sources "
          f"(e.g. {sorted(srcs)[:3]})", file=sys.stderr)
    if len(f) < n * 0.9:
        problem(f"IPv{fam}: only {len(f)} of {n} flows captured")
    if split:
        problem(f"IPv{fam}: {len(split)} flows with more than one outer source, "
                f"e.g. {split[0]}: {sorted(f[split[0]])}")
    if net.num_addresses > 1 and len(srcs) < n / 4:
        problem(f"IPv{fam}: {len(srcs)} distinct outer sources for {len(f)} flows")
if gue_port is not None:
    split = [k for k, v in ports.items() if len(v) > 1]
    distinct = set().union(*ports.values()) if ports else set()
    print(f"GUE: {len(distinct)} distinct UDP source ports over {len(ports)} flows", file=sys.stderr)
    if split:
        problem(f"{len(split)} flows with more than one GUE source port, e.g. {sorted(ports[split[0]])}")
    if len(distinct) < len(ports) / 4:
        problem(f"{len(distinct)} distinct GUE source ports for {len(ports)} flows")
print(f"{packets} encapsulated packets of the client's checked", file=sys.stderr)
if not packets:
    problem("no encapsulated packet of the client's captured")
if bad:
    print("; ".join(bad)); sys.exit(1)
PY
	); then
		fail "capture: $why"
	fi
}

# With encap source prefixes, the outer source of every packet is in the
# prefix of its family, one per flow (the flow hash picks it), and differs
# from flow to flow (so that backends' RSS spreads them); connections work
# as ever.
test_encap_source_prefix() {
	decap_all
	{
		echo "encap: {source_prefix_v4: $PREFIX_V4, source_prefix_v6: \"$PREFIX_V6\"}"
		cfg_head
		vip_yaml "$VIP1" "$HTTP_PORT" tcp ipip 4
		vip_yaml "$VIP6_1" "$HTTP_PORT" tcp ipip 6
	} >"$STATE_DIR/cfg.yaml"
	lb_start "$STATE_DIR/cfg.yaml"
	capture_start "$STATE_DIR/cap.txt"
	backends_reset_counts
	tcp_batch_to "$VIP1" "$STATE_DIR/tcp4.json" "$N_PREFIX"
	tcp_batch_to "$VIP6_1" "$STATE_DIR/tcp6.json" "$N_PREFIX"
	capture_stop "$STATE_DIR/cap.txt"
	assert_all_ok "$STATE_DIR/tcp4.json" "$N_PREFIX"
	assert_all_ok "$STATE_DIR/tcp6.json" "$N_PREFIX"
	assert_decapped tcp "$VIP1" "$HTTP_PORT"
	assert_decapped tcp "$VIP6_1" "$HTTP_PORT"
	stats_json "$STATE_DIR/stats.json"
	assert_reasons "$STATE_DIR/stats.json" tx_encap_ipip $((6 * N_PREFIX))
	assert_capture "$STATE_DIR/cap.txt" "$N_PREFIX" ipip 4="$PREFIX_V4" 6="$PREFIX_V6"
}


E2E_TESTS=(
	test_dsr_v6
	test_ipip_v6_in_v6
	test_ipip_v4_in_v6
	test_gue_v4_port
	test_gue_v6
	test_udp_ignore_source_port
	test_encap_source_prefix
)

e2e_main "$@"
