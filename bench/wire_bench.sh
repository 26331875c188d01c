#!/usr/bin/env bash
#
# wire_bench.sh: packets per second through the balancer on the wire (veth),
# for Ballast and, in the same run and topology, for the floor program and
# for plain XDP_DROP (the ceiling), at 1, 1k and 1M distinct 5-tuples.
# Writes $BENCH_OUT/wire.json (bench/report.py) and prints the table.
#
# Usage: bench/wire_bench.sh [BUILD_DIR] [--quick]
#   --quick: one round of 0.1 s windows (make test's smoke run, about 4 s):
#   every case and check, no figures worth quoting.
#
# Topology (P = bw<pid>, on every name this run makes):
#
#   netns P-gen  eth0 02:32:00:00:00:aa 10.232.0.1/24
#      |  generator: wire_gen run by BPF_PROG_TEST_RUN with live frames
#      |  (build/bench_wire), sent out of this eth0;
#      |  receiver: wire_count on this eth0, counting by destination MAC
#      |  veth pair
#   netns P-lb   eth0 02:32:00:00:00:bb 10.232.0.2/24
#         the program under test, which sends each frame back out of this
#         eth0 (XDP_TX), to the backend's MAC; backends 10.232.0.11-13 are
#         permanent neighbours at 02:32:00:00:01:01-03, whose frames the
#         receiver counts.
#
# One-armed, because that is how Ballast runs (L2 DSR: XDP_TX out of the
# interface the frame came in on; tests/e2e does the same), so the path
# measured is the production one; a second interface would measure
# XDP_REDIRECT instead. The "backends" are MAC addresses the receiver counts:
# no third namespace, whose only job would be to drop the frames anyway.
#
# Cases, one after another on the lb's eth0, each at every flow count:
#   gen-only  the generator drops its own frames: what generating costs
#             (once: it does not depend on the flow count)
#   XDP_DROP  wire_drop (bench/wire_count.bpf.c): the ceiling
#   floor     xdp_floor (bench/xdp_floor.bpf.c): parse, swap MACs, XDP_TX
#   Ballast   ballastd (build/ballastd, attached by libxdp as in production;
#             the report says whether libxdp's dispatcher loaded) with one
#             UDP VIP over three backends, restarted each round; also at
#             twice its connection table's size, where the table evicts.
#             Its cells warm up for two passes over their flows first.
# Everything runs on one core (see the report's text). The rounds repeat
# the whole sequence; the table shows each cell's median over the rounds,
# and each ratio the median of the rounds' ratios.
#
# Checks (bench_wire's and the report's; a failure exits non-zero): frames
# counted went where they were meant to (destination MACs), Ballast forwarded
# what reached it and the receiver got what Ballast forwarded (95%), and at
# 1k flows or more every backend got a share (the 5-tuples differ).
set -euo pipefail

BUILD=build
QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-*)
		echo "usage: $0 [BUILD_DIR] [--quick]" >&2
		exit 2
		;;
	*) BUILD=$arg ;;
	esac
done
BUILD=$(cd "$BUILD" && pwd)
BENCH_OUT=${BENCH_OUT:-$BUILD/bench-results}

readonly FLOWS=(1 1000 1000000)
# Ballast's connection table (BALLAST_CONN_TABLE_SIZE in bpf/ballast_abi.h;
# bench_wire reports the value it was built with, and the report checks
# it), and a Ballast-only flow count twice that: a table that must evict.
readonly TABLE_FLOWS=1048576
readonly PAST_FLOWS=$((2 * TABLE_FLOWS))
if ((QUICK)); then
	ROUNDS=1 WINDOW_S=0.1 WARMUP_S=0.05 WARM_PASSES=0
else
	ROUNDS=3 WINDOW_S=2.5 WARMUP_S=0.5 WARM_PASSES=2
fi
readonly CASES=(gen-only drop floor ballast)
# Debian's interpreter where there is one: started after every cell, and in
# half the time of a version manager's build here.
PYTHON=python3
[[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3
readonly PYTHON

# Address plan: only inside this run's namespaces.
readonly GEN_MAC=02:32:00:00:00:aa LB_MAC=02:32:00:00:00:bb
readonly GEN_IP=10.232.0.1 LB_IP=10.232.0.2 NET_LEN=24
readonly BE_IPS=(10.232.0.11 10.232.0.12 10.232.0.13)
readonly BE_MACS=(02:32:00:00:01:01 02:32:00:00:01:02 02:32:00:00:01:03)
readonly VIP=10.232.100.1 VIP_PORT=9000
# The generator's first client address (flow i: + i / 16384, port 1024 + i % 16384).
readonly CLIENT=10.233.0.1
# The generator runs on this CPU, and with it (veth's NAPI runs where the
# frames were sent from) the balancer's and the receiver's programs.
GEN_CPU=$(($(nproc) - 1))

P=bw$$
NS_GEN=$P-gen
NS_LB=$P-lb
PIN_DIR=/sys/fs/bpf/ballast-bench-$P
STATE=
LB_PID=

log() {
	printf '[wire %s] %s\n' "$(date +%T)" "$*" >&2
}

die() {
	log "FAILED: $*"
	exit 1
}

# stop_ballastd: SIGTERM to our ballastd (by its pid), SIGKILL after 10 s.
stop_ballastd() {
	local i
	[[ -n $LB_PID ]] || return 0
	if kill -TERM "$LB_PID" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$LB_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$LB_PID" 2>/dev/null || true
	fi
	wait "$LB_PID" 2>/dev/null || true
	LB_PID=
}

# cleanup: the EXIT trap. Removes everything this run made, and only that.
cleanup() {
	local rc=$? ns pid
	set +e
	trap '' INT TERM
	stop_ballastd
	for ns in "$NS_GEN" "$NS_LB"; do
		[[ -e /run/netns/$ns ]] || continue
		# Only our own namespaces are searched: only our processes are found.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null
		done
		ip netns del "$ns"
	done
	[[ -e $PIN_DIR ]] && rm -rf "$PIN_DIR"
	[[ -n $STATE && -d $STATE ]] && rm -rf "$STATE"
	return "$rc"
}

# preflight: root, tools, built files, bpffs; then the state dir and traps.
preflight() {
	local f
	# As tests/e2e/lib.sh does: a machine that cannot run this at all skips.
	if [[ $EUID -ne 0 ]]; then
		echo "SKIP wire: needs root (network namespaces, XDP)"
		exit 0
	fi
	for f in ip nsenter python3; do
		command -v "$f" >/dev/null || die "missing tool: $f"
	done
	for f in bench_wire ballastd; do
		[[ -x $BUILD/$f ]] || die "$BUILD/$f missing (run make first)"
	done
	# ballastd pins under bpffs, which is not mounted at boot here.
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
	STATE=$(mktemp -d "${TMPDIR:-/tmp}/ballast-wire-$P.XXXXXX")
	trap cleanup EXIT
	trap 'trap "" INT TERM; log interrupted; exit 130' INT
	trap 'trap "" INT TERM; log terminated; exit 143' TERM
}

# topo_create: the two namespaces, the veth pair and the neighbours above.
topo_create() {
	local ns i
	for ns in "$NS_GEN" "$NS_LB"; do
		ip netns add "$ns"
		# No IPv6: its router solicitations and DAD would only add frames.
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
			net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" link set lo up
	done
	# Created straight into the namespaces: nothing appears in the root one.
	ip link add eth0 netns "$NS_GEN" address "$GEN_MAC" type veth \
		peer name eth0 netns "$NS_LB" address "$LB_MAC"
	ip -n "$NS_GEN" addr add "$GEN_IP/$NET_LEN" dev eth0
	ip -n "$NS_LB" addr add "$LB_IP/$NET_LEN" dev eth0
	ip -n "$NS_GEN" link set eth0 up
	ip -n "$NS_LB" link set eth0 up
	# Backends on-link at fixed MACs (ballastd takes a dsr backend's MAC
	# from the neighbour table): the receiver counts frames sent to them.
	for i in "${!BE_IPS[@]}"; do
		ip -n "$NS_LB" neigh replace "${BE_IPS[$i]}" lladdr "${BE_MACS[$i]}" \
			dev eth0 nud permanent
	done
}

# ballastd_start: ballastd on the lb's eth0 with one UDP VIP over the three
# backends; returns once it says "ready".
ballastd_start() {
	local config=$STATE/ballastd.yaml log=$STATE/ballastd.log deadline ip
	{
		printf 'interface: eth0\nattach_mode: native\nvips:\n'
		printf '  - address: %s\n    port: %s\n    protocol: udp\n    backends:\n' \
			"$VIP" "$VIP_PORT"
		for ip in "${BE_IPS[@]}"; do
			printf '      - {address: %s}\n' "$ip"
		done
	} >"$config"
	: >"$log"
	# nsenter, not `ip netns exec`: the latter gives the process a private
	# bpffs, where the pins this script reads would be invisible.
	nsenter "--net=/run/netns/$NS_LB" -- "$BUILD/ballastd" --config "$config" \
		--socket "$STATE/ballast.sock" --pin-dir "$PIN_DIR" >>"$log" 2>&1 &
	LB_PID=$!
	deadline=$((SECONDS + 30))
	until grep -qw ready "$log"; do
		kill -0 "$LB_PID" 2>/dev/null || die "ballastd exited before ready: $(tail -n 3 "$log")"
		((SECONDS <= deadline)) || die "ballastd not ready after 30 s: $(tail -n 3 "$log")"
		sleep 0.1
	done
}

# cell CASE FLOWS ROUND: one measurement; its JSON goes to $STATE/cells.jsonl.
cell() {
	local case=$1 flows=$2 round=$3 prog macs passes=0 out
	local extra=()
	case $case in
	gen-only) prog=gen-only macs=none ;;
	drop) prog=drop macs=none ;;
	floor) prog=floor macs=aa ;;
	ballast)
		prog=keep macs=01,02,03 passes=$WARM_PASSES
		# Past the table one pass fills it, and every later pass evicts.
		((flows > TABLE_FLOWS && passes > 1)) && passes=1
		extra=(--ballast-pins "$PIN_DIR")
		;;
	esac
	out=$STATE/cell.json
	if ! "$BUILD/bench_wire" --gen-ns "$NS_GEN" --lb-ns "$NS_LB" --lb-prog "$prog" \
		--flows "$flows" --vip "$VIP" --port "$VIP_PORT" --client "$CLIENT" \
		--expect-mac "$macs" --warmup-s "$WARMUP_S" --warm-passes "$passes" \
		--window-s "$WINDOW_S" --cpu "$GEN_CPU" "${extra[@]}" >"$out" 2>"$STATE/cell.err"; then
		cat "$STATE/cell.err" >&2
		die "$case, $flows flows, round $round: bench_wire failed"
	fi
	# Tagged with its case and round, appended; a one-line summary on stderr.
	"$PYTHON" - "$out" "$case" "$round" "$STATE/cells.jsonl" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["case"], d["round"] = sys.argv[2], int(sys.argv[3])
with open(sys.argv[4], "a") as f:
    f.write(json.dumps(d) + "\n")
print(f"[wire] round {d['round']} {d['case']:8} {d['flows']:>7} flows: {d['mpps']:.3f} Mpps "
      f"(warm-up {d['warmup_s']:.1f} s)", file=sys.stderr)
PY
}

# run_round ROUND: every case at every flow count, one after another.
run_round() {
	local round=$1 case flows list
	for case in "${CASES[@]}"; do
		list=("${FLOWS[@]}")
		if [[ $case == ballast ]]; then
			ballastd_start
			list+=("$PAST_FLOWS")
		fi
		for flows in "${list[@]}"; do
			# The generator's cost does not depend on the flow count.
			[[ $case == gen-only && $flows != 1 ]] && continue
			cell "$case" "$flows" "$round"
		done
		[[ $case == ballast ]] && stop_ballastd
	done
	return 0
}

# report CELLS_JSONL OUT_JSON: the table on stdout and OUT_JSON for
# bench/report.py (median of the rounds; ratios per round, then their
# median). Fails when a Ballast cell of 1k flows or more did not spread its
# frames over the three backends (the flows were not distinct).
report() {
	local attach=direct
	# libxdp falls back to attaching the program alone when its dispatcher
	# does not load (it does not on these VMs): say which one was measured.
	grep -q 'without dispatcher' "$STATE/ballastd.log" 2>/dev/null || attach=dispatcher
	"$PYTHON" - "$1" "$2" "$QUICK" "$GEN_CPU" "$(nproc)" "$ROUNDS" "$WINDOW_S" "$WARMUP_S" \
		"$attach" "${FLOWS[*]}" "$TABLE_FLOWS" "$WARM_PASSES" <<'PY'
import json, statistics, sys

cells_file, out_file, quick, gen_cpu, ncpus, rounds, window_s, warmup_s, attach = sys.argv[1:10]
flows_list = [int(f) for f in sys.argv[10].split()]
table_size = int(sys.argv[11])
warm_passes = float(sys.argv[12])
quick, gen_cpu, rounds = quick == "1", int(gen_cpu), int(rounds)
cells = [json.loads(line) for line in open(cells_file)]
built = {c["conn_table_size"] for c in cells}
if built != {table_size}:
    sys.exit(f"wire: bench_wire was built with a connection table of {built}, "
             f"this script assumes {table_size}: update TABLE_FLOWS")
by = {(c["case"], c["flows"], c["round"]): c for c in cells}
ballast_flows = sorted({c["flows"] for c in cells if c["case"] == "ballast"})
names = {"gen-only": "generator alone", "drop": "XDP_DROP", "floor": "floor", "ballast": "Ballast"}

def ref_flows(f):
    # XDP_DROP and the floor keep no state: a Ballast-only flow count is
    # compared with their largest measured one.
    return f if f in flows_list else flows_list[-1]

def med(values):
    return statistics.median(values) if values else float("nan")

def mpps(case, f):
    return [by[(case, f, r)]["mpps"] for r in range(1, rounds + 1) if (case, f, r) in by]

def ratio(case, f, ref):
    out = []
    for r in range(1, rounds + 1):
        a, b = by.get((case, f, r)), by.get((ref, ref_flows(f), r))
        if a and b and b["mpps"]:
            out.append(a["mpps"] / b["mpps"])
    return med(out)

def ns(m):
    return 1e3 / m if m else float("nan")

problems = []
for c in cells:
    if c["case"] == "ballast" and c["flows"] >= 1000:
        got = c["received_by_mac"]
        total = sum(got.values())
        for mac in ("01", "02", "03"):
            if got.get(mac, 0) < 0.2 * total:
                problems.append(f"Ballast, {c['flows']} flows, round {c['round']}: backend "
                                f"..:{mac} got {got.get(mac, 0)} of {total} frames")
if problems:
    print("wire: the flows did not spread over the backends:\n  " + "\n  ".join(problems),
          file=sys.stderr)
    sys.exit(1)

def miss(f):
    fr = [by[k]["ballast"]["new_flows"] / by[k]["ballast"]["vip_packets"]
          for k in by if k[0] == "ballast" and k[1] == f and by[k]["ballast"]["vip_packets"]]
    return med(fr)

def flows_label(f):
    return {1: "1", 1000: "1k", 1000000: "1M"}.get(f, f"{f / 1e6:.1f}M")

cols = ["flows", "program", "Mpps", "range", "ns/packet", "x XDP_DROP", "x floor",
        "ns over floor", "new flows"]
rows = []
g = med(mpps("gen-only", 1))
rows.append(["-", names["gen-only"], f"{g:.3f}", f"{min(mpps('gen-only', 1)):.3f}-"
             f"{max(mpps('gen-only', 1)):.3f}", f"{ns(g):.0f}", "", "", "", ""])
for f in sorted(set(flows_list) | set(ballast_flows)):
    for case in ("drop", "floor", "ballast"):
        if case != "ballast" and f not in flows_list:
            continue
        m = mpps(case, f)
        if not m:
            continue
        row = [flows_label(f), names[case], f"{med(m):.3f}", f"{min(m):.3f}-{max(m):.3f}",
               f"{ns(med(m)):.0f}"]
        row.append("1" if case == "drop" else f"{ratio(case, f, 'drop'):.2f}")
        row.append("" if case == "drop" else "1" if case == "floor" else
                   f"{ratio(case, f, 'floor'):.2f}")
        if case == "ballast":
            over = [ns(by[("ballast", f, r)]["mpps"]) - ns(by[("floor", ref_flows(f), r)]["mpps"])
                    for r in range(1, rounds + 1)
                    if ("ballast", f, r) in by and ("floor", ref_flows(f), r) in by]
            row += [f"{med(over):+.0f}", f"{100 * miss(f):.1f}%"]
        else:
            row += ["", ""]
        rows.append(row)

# Where a packet's time goes (one core, one packet at a time: the times add).
# XDP_DROP and the floor keep no state: every cell of each measures the same
# path, so all of them make its median.
def pooled(case):
    return [m for f in flows_list for m in mpps(case, f)]

t_gen = ns(g)
t_drop = ns(med(pooled("drop")))
t_floor = ns(med(pooled("floor")))
t_b1 = ns(med(mpps("ballast", flows_list[0])))
xmit_err = sum(c["gen_ethtool"].get("tx_xdp_xmit_errors", 0) +
               c["lb_ethtool"].get("rx_xdp_tx_errors", 0) for c in cells)
generated = sum(c["generated"] for c in cells)
miss_1m = miss(1000000) if 1000000 in ballast_flows else float("nan")
past = [f for f in ballast_flows if f > table_size]
attach_text = ("directly: libxdp's dispatcher does not load on this VM (EPERM), so ballastd fell "
               "back to the program alone, and no dispatcher hop is in the figures"
               if attach == "direct" else "in libxdp's dispatcher, as in production")
warm_text = (f"Ballast's cells also warm up for {warm_passes:g} passes over their flows (one "
             "past the table), so that the connection table is in its steady state"
             if warm_passes else "Ballast's cells get no extra warm-up in this smoke run")

text = f"""\
Frames per second through the balancer's XDP program on a veth pair, on **one core** (CPU
{gen_cpu} of {ncpus}). Two namespaces joined by a veth pair: the generator's and the balancer's.
The generator, `wire_gen` (bench/wire_gen.bpf.c), runs under BPF_PROG_TEST_RUN with live frames
(xdp-trafficgen's method; xdp-trafficgen 1.3.1 varies UDP ports only, at most 64k flows) in a
thread of build/bench_wire pinned to CPU {gen_cpu}: each 60-byte IPv4/UDP frame to the VIP
leaves the generator's eth0 with its source address and port set from a per-CPU counter, so
successive frames cycle through N distinct 5-tuples. The balancer's program sends each frame
back out of the interface it came in on (XDP_TX: one-armed L2 direct server return, how Ballast
runs in production and in the e2e tests; a second interface would measure XDP_REDIRECT instead)
to the receiver, `wire_count` (bench/wire_count.bpf.c) on the generator's eth0, which counts
frames by destination MAC and drops them. veth runs the receiving side's XDP in a NAPI poll on
the CPU that sent the frame, so generator, balancer and receiver take turns on CPU {gen_cpu}: the
rate is one core's, and a packet's time there is the sum of the three and of veth's two hops.

Programs on the balancer's eth0, one after another in each round: `wire_drop` (XDP_DROP and
nothing else: the ceiling, counted from veth's own `rx_xdp_drops`), the floor
(bench/xdp_floor.bpf.c: parse, swap MACs, XDP_TX) and Ballast: `ballastd` with one UDP VIP
over three backends (permanent neighbours at fixed MACs; no health checks), attached by libxdp
({attach_text}). Mpps is frames counted at the receiver with the expected destination MAC (the
backends' for Ballast, the generator's own for the floor) over a {window_s} s window after a
{warmup_s} s warm-up; {warm_text}. {rounds} round(s): the table shows the median and the range
of the rounds, and each ratio is the median of the rounds' ratios (a round measures all its
cases within a minute, so slow drift on this shared VM hits both sides of a ratio alike). **The ratios, not the Mpps, are the result.**

Checked in every cell (the bench fails otherwise): no more than 0.1% of what reached the
receiver had another destination MAC; Ballast's `tx_forwarded` (its pinned reason_stats) is at least 95% of the frames that
reached the balancer, and the receiver counted at least 95% of `tx_forwarded`; the floor's
frames arrived (95% of veth's `rx_xdp_tx`); with 1k flows or more, every backend got at least
20% of the frames (the 5-tuples really differ). "new flows" is the share of Ballast's packets
in the window that found no connection-table entry (its `new_flows` counter).
"""
if quick:
    text = "**Smoke run (--quick): the figures below are not measurements.**\n\n" + text
# 1 and 1k flows are meant to measure established flows: say so loudly when
# the connection table did not keep them (a regression in Ballast, which
# the figures then do not hide).
untracked = [f for f in ballast_flows if f <= 1000 and miss(f) > 0.01]
if untracked and not quick:
    note = ("**Ballast found no connection-table entry for " +
            ", ".join(f"{100 * miss(f):.0f}% ({flows_label(f)} flows)" for f in untracked) +
            " of the packets of flows it had already seen: these rows measure its new-flow "
            "path, not established flows.**")
    print(f"wire: WARNING: {note}", file=sys.stderr)
    text += "\n" + note + "\n"

lost = (f"none of the {generated:,} frames generated was lost between the programs (veth's "
        "xmit and XDP_TX error counters), so the generator never outran the path it feeds"
        if not xmit_err else
        f"{xmit_err:,} of the {generated:,} frames generated were lost between the programs "
        "(veth's xmit and XDP_TX error counters): the generator outran the path at times")
hop_in, hop_back = t_drop - t_gen, t_floor - t_drop
# Within a factor of 1.5 either way is "about the same" at this VM's noise
# (the ranges of a program's cells often span 30%).
if hop_back > 1.5 * hop_in:
    tx_text = (f"The way back (XDP_TX, the second hop and the receiver: {hop_back:.0f} ns) costs "
               f"clearly more than the way in ({hop_in:.0f} ns): veth's XDP_TX path is a limit "
               "of its own here, next to the generator.")
else:
    how = "less than" if hop_back < hop_in / 1.5 else "about as much as"
    tx_text = (f"The way back (XDP_TX, the second hop and the receiver: {hop_back:.0f} ns) costs "
               f"{how} the way in ({hop_in:.0f} ns): veth's XDP_TX path is no greater a limit "
               "than veth's hop into the balancer; the generator and the two hops set the "
               "ceiling and the floor, not the programs.")
run = med([c["gen_thread"]["run"] for c in cells])
wait = med([c["gen_thread"]["wait"] for c in cells])
on_cpu = [c["ballast"]["tx_forwarded_on_gen_cpu"] / c["ballast"]["tx_forwarded"]
          for c in cells if c["case"] == "ballast" and c["ballast"]["tx_forwarded"]]
after = f"""\
Where a packet's time goes, from the medians of every XDP_DROP and floor cell (neither keeps
state, so each cell measures the same path) and of Ballast's 1-flow cells; everything runs in
turn on one core, so the times add:

- the generator alone (dropping its own frames): {t_gen:.0f} ns;
- the hop into the balancer's NAPI poll and a program that only drops: {hop_in:.0f} ns more
  (XDP_DROP's {t_drop:.0f} ns);
- the floor's parse and MAC swap, XDP_TX, the hop back and the receiver: {hop_back:.0f} ns more
  (the floor's {t_floor:.0f} ns);
- Ballast's own work over the floor's: {t_b1 - t_floor:.0f} ns more (Ballast's {t_b1:.0f} ns).

So the generator is {100 * t_gen / t_floor:.0f}% of the floor's time on this core and the two
veth hops with the receiver the rest (the floor's own parse and MAC swap are a few ns).
{tx_text} The generator and the receiver share the core with the balancer, which is why the
ratios to XDP_DROP and to the floor are nearer 1 than the same programs' ratios under
BPF_PROG_TEST_RUN (the dataplane bench, which times the programs alone); "ns over floor" is
what Ballast's work adds to each packet on this path, the figure to compare across flow counts.

That it all runs on one core is checked rather than assumed: the generator's thread ran
{100 * run:.0f}% of each window (the scheduler's account, /proc/self/task/*/schedstat; the
balancer's and the receiver's programs run inside it, in the softirq its sends raise) and
waited {100 * wait:.0f}% for its CPU (medians), and in every Ballast cell at least
{100 * min(on_cpu) if on_cpu else float('nan'):.1f}% of the packets it forwarded were counted on CPU {gen_cpu} (its per-CPU counters). The
other CPU carries ballastd, this script and whatever else runs on the VM. Over the whole run
{lost}. The generator runs one BPF_PROG_TEST_RUN per cell, stopped by a signal: each test run
swaps its program into the kernel's XDP dispatcher and out again, each swap waiting for an RCU
grace period, and with runs of 64k frames those waits took most of a window on this VM.

Connection table: {table_size:,} entries (an LRU hash). 1M flows (1,000,000) fit: once warm,
{100 * miss_1m:.2f}% of the window's packets were new flows, so the table filled but did not
evict, and the 1M cell measures lookups that hit in a table of a million entries (about 120 MB):
what it adds over 1k flows is memory, entries that are no longer in the CPU's caches.
""" + (f"""{', '.join(f"{f:,}" for f in past)} flows (twice the table) is past it: every pass
evicts, and {100 * miss(past[-1]):.0f}% of the window's packets found no entry (the kernel's LRU
is approximate, so a cycle larger than the table still hits sometimes); those packets take
the flow hash, the Maglev lookup and an insert that evicts. Its ratios are against the same
round's {flows_label(flows_list[-1])}-flow XDP_DROP and floor, whose rates do not depend on
the flow count (the rows above show it).
""" if past else "")

series = []
for case in ("drop", "floor", "ballast"):
    xs = [f for f in sorted(set(flows_list) | set(ballast_flows)) if mpps(case, f)]
    series.append({"label": names[case], "x": xs, "y": [round(med(mpps(case, f)), 4) for f in xs]})
result = {
    "bench": "wire",
    "title": "Data plane on the wire (veth, packets per second)",
    "command": "bench/wire_bench.sh build",
    "order": 20,
    "sections": [{
        "heading": "Packets per second, one core",
        "text": text,
        "table": {"columns": cols, "rows": rows},
        "plot": {"file": "wire_flows.png", "title": "Frames per second through the balancer (one core, veth)",
                 "xlabel": "distinct 5-tuples", "ylabel": "Mpps", "xlog": True, "series": series},
        "text_after": after,
    }],
}
with open(out_file, "w") as f:
    json.dump(result, f, indent=1)

widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
for r in [cols] + rows:
    print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
PY
}

main() {
	local round t0=$SECONDS
	preflight
	topo_create
	log "prefix $P, generator on CPU $GEN_CPU, $ROUNDS round(s) of ${WINDOW_S}s windows"
	: >"$STATE/cells.jsonl"
	for ((round = 1; round <= ROUNDS; round++)); do
		run_round "$round"
	done
	mkdir -p "$BENCH_OUT"
	# Every cell's raw counters, for a second look (report.py reads *.json only).
	cp "$STATE/cells.jsonl" "$BENCH_OUT/wire.cells.jsonl"
	report "$STATE/cells.jsonl" "$BENCH_OUT/wire.json"
	log "done in $((SECONDS - t0)) s"
}

main
