#!/usr/bin/python3
"""wire_bench.py: packets per second through the balancer on the wire (veth),
for Ballast and, in the same run and topology, for the floor program and
for plain XDP_DROP (the ceiling), at 1, 1k and 1M distinct 5-tuples.
Writes $BENCH_OUT/wire.json (bench/report.py) and prints the table.

Usage: bench/wire_bench.py [BUILD_DIR] [--quick]
  --quick: one round of 0.1 s windows (make test's smoke run, about 4 s):
  every case and check, no figures worth quoting.

Topology (P = bw plus five random hex digits, on every name this run makes;
a prefix whose namespaces exist already is not taken):

  netns P-gen  eth0 02:32:00:00:00:aa 10.232.0.1/24
     |  generator: wire_gen run by BPF_PROG_TEST_RUN with live frames
     |  (build/bench_wire), sent out of this eth0;
     |  receiver: wire_count on this eth0, counting by destination MAC
     |  veth pair
  netns P-lb   eth0 02:32:00:00:00:bb 10.232.0.2/24
        the program under test, which sends each frame back out of this
        eth0 (XDP_TX), to the backend's MAC; backends 10.232.0.11-13 are
        permanent neighbours at 02:32:00:00:01:01-03, whose frames the
        receiver counts.

Built with pyroute2, as the end-to-end harness builds its world
(tests/e2e/harness/world.py, whose sysctl() and run() this reuses, with
harness/processes.py's stop(), wait_for_line() and run_ok()); everything this run made (namespaces, ballastd and bench_wire,
ballastd's pins and its lock and journal files under /run/ballast, the
state directory) is removed on every exit path: the end, a failure, Ctrl-C
and SIGTERM (which unwinds like Ctrl-C, as in bench/soak.py).

One-armed, because that is how Ballast runs (L2 DSR: XDP_TX out of the
interface the frame came in on; tests/e2e does the same), so the path
measured is the production one; a second interface would measure
XDP_REDIRECT instead. The "backends" are MAC addresses the receiver counts:
no third namespace, whose only job would be to drop the frames anyway.

Cases, one after another on the lb's eth0, each at every flow count:
  gen-only  the generator drops its own frames: what generating costs
            (once: it does not depend on the flow count)
  XDP_DROP  wire_drop (bench/wire_count.bpf.c): the ceiling
  floor     xdp_floor (bench/xdp_floor.bpf.c): parse, swap MACs, XDP_TX
  Ballast   ballastd (build/ballastd, attached by libxdp as in production;
            the report says whether libxdp's dispatcher loaded) with one
            UDP VIP over three backends, restarted each round (stopped
            and removed, `ballastd --cleanup`, so that every round starts
            from a bare interface and empty maps); also at twice as
            many flows as its connection table has ways, where new flows
            find their buckets full.
            Its cells warm up for two passes over their flows first.
Everything runs on one core (see the report's text), except the multi-
core cells (CORE_FLOWS): right after a case's one-core cell at those flow
counts, the same with a generator on each CPU, each sending its own share
of the flows into its own queue (both veth ends have a queue per CPU), so
that every CPU carries a generator, the balancer and the receiver; the
report's second section compares them with the one-core cells and plots
Mpps against cores. The rounds repeat the whole sequence; the tables show
each cell's median over the rounds, and each ratio the median of the
rounds' ratios.

Checks (bench_wire's and the report's; a failure exits non-zero): frames
counted went where they were meant to (destination MACs), Ballast forwarded
what reached it and the receiver got what Ballast forwarded (95%), at
1k flows or more every backend got a share (the 5-tuples differ), and in a
multi-core cell every generator ran at least half the window and (Ballast)
every CPU forwarded at least a quarter of its even share.
"""

import argparse
import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/e2e"))

from pyroute2 import NetNS, netns  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import states as neigh_states  # noqa: E402

from harness.processes import Failure, run_ok, stop, wait_for_line  # noqa: E402
from harness.world import run, sysctl  # noqa: E402

FLOWS = (1, 1000, 1000000)
# Ballast's connection table, in ways: one flow each (BALLAST_CONN_TABLE_SIZE
# in bpf/ballast_abi.h; bench_wire reports the value it was built with, and
# the report checks it), and a Ballast-only flow count twice that: more
# flows than the table can hold.
TABLE_FLOWS = 2097152
PAST_FLOWS = 2 * TABLE_FLOWS
CASES = ("gen-only", "drop", "floor", "ballast")
# Measured again on every CPU at once (Settings.cores), right after the same
# case's one-core cell: the flow counts of each.
CORE_FLOWS = {"drop": (1000,), "floor": (1000,), "ballast": (1000, 1000000)}

# Address plan: only inside this run's namespaces.
GEN_MAC, LB_MAC = "02:32:00:00:00:aa", "02:32:00:00:00:bb"
GEN_IP, LB_IP, NET_LEN = "10.232.0.1", "10.232.0.2", 24
BE_IPS = ("10.232.0.11", "10.232.0.12", "10.232.0.13")
BE_MACS = ("02:32:00:00:01:01", "02:32:00:00:01:02", "02:32:00:00:01:03")
VIP, VIP_PORT = "10.232.100.1", 9000
# The generator's first client address (flow i: + i / 16384, port 1024 + i % 16384).
CLIENT = "10.233.0.1"

READY_TIMEOUT_S = 30     # ballastd's "ready"
STOP_TIMEOUT_S = 10      # SIGTERM, then SIGKILL


class Settings:
    """The run's shape: --quick or the full run."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.rounds, self.window_s, self.warmup_s, self.warm_passes = 1, 0.1, 0.05, 0
        else:
            self.rounds, self.window_s, self.warmup_s, self.warm_passes = 3, 2.5, 0.5, 2
        # nproc's count (the CPUs this process may run on). The generator
        # runs on the last, and with it (veth's NAPI runs where the frames
        # were sent from) the balancer's and the receiver's programs.
        self.ncpus = len(os.sched_getaffinity(0))
        self.gen_cpu = self.ncpus - 1
        # The multi-core cells: a generator on each of CPUs 0..n-1, each
        # sending its own share of the flows into its own queue of the
        # balancer's veth (QUEUES: one per CPU).
        self.cores = self.ncpus
        self.queues = self.ncpus


def cpu_seconds(pid):
    """A process's user + system CPU time so far (/proc/PID/stat), in s."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[wire {time.strftime('%T')}] {msg}", file=sys.stderr, flush=True)


class Interrupted(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so that every finally runs."""


def on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


def free_prefix():
    """A per-run prefix no namespace, pin dir or lock of another run uses."""
    while True:
        prefix = "bw%05x" % random.getrandbits(20)
        if not any(os.path.exists(p) for p in (f"/run/netns/{prefix}-gen",
                                               f"/run/netns/{prefix}-lb",
                                               f"/sys/fs/bpf/ballast-bench-{prefix}")):
            return prefix


class WireRun:
    """This run's namespaces, veth pair, ballastd and bench_wire; close()
    removes them all (and only them), whatever state the run stopped in."""

    def __init__(self, build, settings):
        self.build = build
        self.s = settings
        self.prefix = free_prefix()
        self.ns_gen = f"{self.prefix}-gen"
        self.ns_lb = f"{self.prefix}-lb"
        self.pin_dir = f"/sys/fs/bpf/ballast-bench-{self.prefix}"
        self.state = None       # made by setup(), where close() will find it
        self.lb_log = None
        self.lb_ino = None      # the lb namespace's inode: ballastd's interface lock
        self.lb_proc = None
        self.bench_proc = None
        self.cells = []

    def nsenter(self, ns, argv):
        """@argv in namespace @ns, network only: `ip netns exec` would give
        the process a private bpffs, where the pins this run reads would be
        invisible."""
        return ["nsenter", f"--net=/run/netns/{ns}", "--"] + [str(a) for a in argv]

    # --- topology -------------------------------------------------------------

    def setup(self):
        """The state directory (ballastd's config, log and socket), then the
        two namespaces, the veth pair and the neighbours above."""
        self.state = pathlib.Path(tempfile.mkdtemp(prefix=f"ballast-wire-{self.prefix}."))
        self.lb_log = self.state / "ballastd.log"
        for ns in (self.ns_gen, self.ns_lb):
            netns.create(ns)
            # No IPv6: its router solicitations and DAD would only add frames.
            sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": 1,
                        "net.ipv6.conf.default.disable_ipv6": 1})
            with NetNS(ns) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        self.lb_ino = os.stat(f"/run/netns/{self.ns_lb}").st_ino
        # Created straight into the namespaces: nothing appears in the root one.
        # One RX and TX queue per CPU on both ends: veth puts a frame on the
        # receiving end's queue numbered after the sending CPU and polls that
        # queue on that CPU, as RSS spreads a NIC's flows over its queues.
        q = self.s.queues
        with NetNS(self.ns_gen) as gen:
            gen.link("add", ifname="eth0", kind="veth", address=GEN_MAC,
                     num_rx_queues=q, num_tx_queues=q,
                     peer={"ifname": "eth0", "net_ns_fd": self.ns_lb, "address": LB_MAC,
                           "num_rx_queues": q, "num_tx_queues": q})
        for ns, ip in ((self.ns_gen, GEN_IP), (self.ns_lb, LB_IP)):
            with NetNS(ns) as ipr:
                eth0 = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=eth0, address=ip, prefixlen=NET_LEN)
                ipr.link("set", index=eth0, state="up")
                if ns == self.ns_lb:
                    # Backends on-link at fixed MACs (ballastd takes a dsr
                    # backend's MAC from the neighbour table): the receiver
                    # counts frames sent to them.
                    for be_ip, be_mac in zip(BE_IPS, BE_MACS):
                        ipr.neigh("replace", dst=be_ip, lladdr=be_mac, ifindex=eth0,
                                  state=neigh_states["permanent"])

    # --- ballastd -------------------------------------------------------------

    def start_ballastd(self):
        """ballastd on the lb's eth0 with one UDP VIP over the three
        backends; returns once it says "ready"."""
        config = self.state / "ballastd.yaml"
        config.write_text("interface: eth0\nattach_mode: native\nvips:\n"
                          f"  - address: {VIP}\n    port: {VIP_PORT}\n    protocol: udp\n"
                          "    backends:\n"
                          + "".join(f"      - {{address: {ip}}}\n" for ip in BE_IPS))
        # A fresh log each start: the report reads the last one's attach mode.
        with open(self.lb_log, "w") as out:
            # Its own session: a Ctrl-C reaches this script, which stops it.
            self.lb_proc = subprocess.Popen(
                self.nsenter(self.ns_lb, [self.build / "ballastd", "--config", config,
                                          "--socket", self.state / "ballast.sock",
                                          "--pin-dir", self.pin_dir]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_line(self.lb_log, "ready", self.lb_proc, READY_TIMEOUT_S, "ballastd")

    def stop_ballastd(self):
        """SIGTERM to our ballastd, SIGKILL after 10 s."""
        if self.lb_proc is not None:
            stop(self.lb_proc, STOP_TIMEOUT_S)
            self.lb_proc = None

    def remove_ballast(self):
        """`ballastd --cleanup`: its program off the lb's eth0 and its pins
        gone. A stopped ballastd leaves both in place, forwarding; the next
        round's XDP_DROP and floor need the interface bare, and its Ballast
        starts from empty maps, as the first round's does."""
        run_ok(self.nsenter(self.ns_lb, [self.build / "ballastd", "--cleanup",
                                         "--interface", "eth0", "--pin-dir", self.pin_dir]))

    # --- measuring ------------------------------------------------------------

    def cell(self, case, flows, rnd, cores=1):
        """One measurement: bench_wire's JSON, tagged with its case and round.
        One core: the generator on gen_cpu; more: one on each of CPUs
        0..cores-1."""
        passes = 0
        extra = []
        if case == "gen-only":
            prog, macs = "gen-only", "none"
        elif case == "drop":
            prog, macs = "drop", "none"
        elif case == "floor":
            prog, macs = "floor", "aa"
        else:
            prog, macs, passes = "keep", "01,02,03", self.s.warm_passes
            # Past the table one pass fills it; later passes find it full.
            if flows > TABLE_FLOWS and passes > 1:
                passes = 1
            extra = ["--ballast-pins", self.pin_dir]
        argv = [self.build / "bench_wire", "--gen-ns", self.ns_gen, "--lb-ns", self.ns_lb,
                "--lb-prog", prog, "--flows", flows, "--vip", VIP, "--port", VIP_PORT,
                "--client", CLIENT, "--expect-mac", macs, "--warmup-s", self.s.warmup_s,
                "--warm-passes", passes, "--window-s", self.s.window_s,
                "--cpus", ",".join(str(c) for c in
                                   ([self.s.gen_cpu] if cores == 1 else range(cores))),
                *extra]
        # ballastd's own CPU time over the cell (warm-up included): on a
        # machine with as many CPUs as generators it competes with them.
        lb_pid = self.lb_proc.pid if self.lb_proc is not None and case == "ballast" else None
        t0, cpu0 = time.monotonic(), cpu_seconds(lb_pid) if lb_pid else 0
        # Its own session too: close() stops it, whatever stopped the run.
        self.bench_proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True,
                                           start_new_session=True)
        out, err = self.bench_proc.communicate()
        rc, self.bench_proc = self.bench_proc.returncode, None
        if rc != 0:
            sys.stderr.write(err)
            raise Failure(f"{case}, {flows} flows, {cores} core(s), round {rnd}: "
                          "bench_wire failed")
        d = json.loads(out)
        d["case"], d["round"] = case, rnd
        d["ballastd_cpu"] = ((cpu_seconds(lb_pid) - cpu0) / (time.monotonic() - t0)
                             if lb_pid else None)
        self.cells.append(d)
        print(f"[wire] round {d['round']} {d['case']:8} {d['flows']:>7} flows, {cores} core(s): "
              f"{d['mpps']:.3f} Mpps (warm-up {d['warmup_s']:.1f} s)", file=sys.stderr, flush=True)

    def run_round(self, rnd):
        """Every case at every flow count, one after another."""
        for case in CASES:
            flows_list = list(FLOWS)
            if case == "ballast":
                self.start_ballastd()
                flows_list.append(PAST_FLOWS)
            for flows in flows_list:
                # The generator's cost does not depend on the flow count.
                if case == "gen-only" and flows != 1:
                    continue
                self.cell(case, flows, rnd)
                # Every core, before a later cell changes the state (Ballast's
                # past-the-table cell fills the table with other flows).
                if self.s.cores > 1 and flows in CORE_FLOWS.get(case, ()):
                    self.cell(case, flows, rnd, self.s.cores)
            if case == "ballast":
                self.stop_ballastd()
                self.remove_ballast()

    def attach_mode(self):
        """libxdp falls back to attaching the program alone when its
        dispatcher does not load (it does not on these VMs): which one the
        last ballastd measured."""
        text = self.lb_log.read_text(errors="replace") if self.lb_log.exists() else ""
        return "direct" if "without dispatcher" in text else "dispatcher"

    # --- teardown -------------------------------------------------------------

    def close(self):
        """Removes everything this run made, and only that."""
        if self.bench_proc is not None:
            stop(self.bench_proc, STOP_TIMEOUT_S)
            self.bench_proc = None
        self.stop_ballastd()
        for ns in (self.ns_gen, self.ns_lb):
            if not os.path.exists(f"/run/netns/{ns}"):
                continue
            # Only our own namespaces are searched: only our processes are found.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                netns.remove(ns)
        if os.path.exists(self.pin_dir):
            shutil.rmtree(self.pin_dir, ignore_errors=True)
        # ballastd's locks (by the lb namespace's inode, by the pin dir) and
        # its change journal (by the pin dir), which outlive it.
        run_dir = pathlib.Path("/run/ballast")
        leftovers = list(run_dir.glob(f"ballastd-pins-*--{self.prefix}.*"))
        if self.lb_ino is not None:
            leftovers += run_dir.glob(f"ballastd-net{self.lb_ino}-*.lock")
        for path in leftovers:
            path.unlink(missing_ok=True)
        if self.state is not None:
            shutil.rmtree(self.state, ignore_errors=True)


# --- the report ---------------------------------------------------------------

NAMES = {"gen-only": "generator alone", "drop": "XDP_DROP", "floor": "floor", "ballast": "Ballast"}


def med(values):
    return statistics.median(values) if values else float("nan")


def ns_per(m):
    return 1e3 / m if m else float("nan")


def flows_label(f):
    return {1: "1", 1000: "1k", 1000000: "1M"}.get(f, f"{f / 1e6:.1f}M")


def report(cells, s, attach, out_file):
    """The table on stdout and @out_file for bench/report.py (median of the
    rounds; ratios per round, then their median). Fails (Failure) when
    bench_wire's connection table is not TABLE_FLOWS, and when a Ballast cell
    of 1k flows or more did not spread its frames over the three backends
    (the flows were not distinct)."""
    flows_list = list(FLOWS)
    table_size = TABLE_FLOWS
    rounds, gen_cpu, window_s, warmup_s = s.rounds, s.gen_cpu, s.window_s, s.warmup_s
    built = {c["conn_table_size"] for c in cells}
    if built != {table_size}:
        raise Failure(f"wire: bench_wire was built with a connection table of {built}, "
                      f"this script assumes {table_size}: update TABLE_FLOWS")
    by = {(c["case"], c["flows"], c["round"]): c for c in cells if c["cores"] == 1}
    ballast_flows = sorted({c["flows"] for c in cells if c["case"] == "ballast"})

    def ref_flows(f):
        # XDP_DROP and the floor keep no state: a Ballast-only flow count is
        # compared with their largest measured one.
        return f if f in flows_list else flows_list[-1]

    def mpps(case, f):
        return [by[(case, f, r)]["mpps"] for r in range(1, rounds + 1) if (case, f, r) in by]

    def ratio(case, f, ref):
        out = []
        for r in range(1, rounds + 1):
            a, b = by.get((case, f, r)), by.get((ref, ref_flows(f), r))
            if a and b and b["mpps"]:
                out.append(a["mpps"] / b["mpps"])
        return med(out)

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
        raise Failure("wire: the flows did not spread over the backends:\n  "
                      + "\n  ".join(problems))

    def miss(f):
        fr = [by[k]["ballast"]["new_flows"] / by[k]["ballast"]["vip_packets"]
              for k in by if k[0] == "ballast" and k[1] == f and by[k]["ballast"]["vip_packets"]]
        return med(fr)

    cols = ["flows", "program", "Mpps", "range", "ns/packet", "x XDP_DROP", "x floor",
            "ns over floor", "new flows"]
    rows = []
    g = med(mpps("gen-only", 1))
    rows.append(["-", NAMES["gen-only"], f"{g:.3f}", f"{min(mpps('gen-only', 1)):.3f}-"
                 f"{max(mpps('gen-only', 1)):.3f}", f"{ns_per(g):.0f}", "", "", "", ""])
    for f in sorted(set(flows_list) | set(ballast_flows)):
        for case in ("drop", "floor", "ballast"):
            if case != "ballast" and f not in flows_list:
                continue
            m = mpps(case, f)
            if not m:
                continue
            row = [flows_label(f), NAMES[case], f"{med(m):.3f}", f"{min(m):.3f}-{max(m):.3f}",
                   f"{ns_per(med(m)):.0f}"]
            row.append("1" if case == "drop" else f"{ratio(case, f, 'drop'):.2f}")
            row.append("" if case == "drop" else "1" if case == "floor" else
                       f"{ratio(case, f, 'floor'):.2f}")
            if case == "ballast":
                over = [ns_per(by[("ballast", f, r)]["mpps"])
                        - ns_per(by[("floor", ref_flows(f), r)]["mpps"])
                        for r in range(1, rounds + 1)
                        if ("ballast", f, r) in by and ("floor", ref_flows(f), r) in by]
                row += [f"{med(over):+.0f}", f"{100 * miss(f):.1f}%"]
            else:
                row += ["", ""]
            rows.append(row)

    # Where a packet's time goes (one core, one packet at a time: the times
    # add). XDP_DROP and the floor keep no state: every cell of each measures
    # the same path, so all of them make its median.
    def pooled(case):
        return [m for f in flows_list for m in mpps(case, f)]

    t_gen = ns_per(g)
    t_drop = ns_per(med(pooled("drop")))
    t_floor = ns_per(med(pooled("floor")))
    t_b1 = ns_per(med(mpps("ballast", flows_list[0])))
    xmit_err = sum(c["gen_ethtool"].get("tx_xdp_xmit_errors", 0) +
                   c["lb_ethtool"].get("rx_xdp_tx_errors", 0) for c in cells)
    generated = sum(c["generated"] for c in cells)
    miss_1m = miss(1000000) if 1000000 in ballast_flows else float("nan")
    past = [f for f in ballast_flows if f > table_size]
    table = cells[0]
    table_bytes, buckets = table["conn_table_bytes"], table["conn_table_buckets"]

    def placements(f):
        """Where the connection table put the new flows of Ballast's @f-flow
        cells (its conn_stats over the window, pooled over the rounds), as a
        sentence."""
        kinds = ("recorded", "replaced_embryonic", "replaced_idle", "unrecorded")
        n = {k: sum(by[c]["ballast"]["conn_" + k] for c in by
                    if c[0] == "ballast" and c[1] == f) for k in kinds}
        total = sum(n.values())
        if not total:
            return "Ballast placed no new flow in the window."
        pct = {k: 100 * n[k] / total for k in kinds}
        protect = table["conn_protect_s"]
        return (f"Of the {total:,} new flows Ballast placed in the window (its conn_stats), "
                f"{pct['recorded']:.1f}% took an empty way, {pct['replaced_embryonic']:.1f}% the "
                f"way of an unconfirmed flow (seen once), {pct['replaced_idle']:.1f}% that of a "
                f"confirmed flow idle for longer than {protect:.0f} s, and {pct['unrecorded']:.1f}% "
                f"were left unrecorded, forwarded by their Maglev entry alone (both their buckets "
                f"held confirmed flows seen within the last {protect:.0f} s, which a new flow "
                "never takes).")

    attach_text = ("directly: libxdp's dispatcher does not load on this VM (EPERM), so ballastd "
                   "fell back to the program alone, and no dispatcher hop is in the figures"
                   if attach == "direct" else "in libxdp's dispatcher, as in production")
    warm_text = (f"Ballast's cells also warm up for {s.warm_passes:g} passes over their flows "
                 "(one past the table), so that the connection table is in its steady state"
                 if s.warm_passes else "Ballast's cells get no extra warm-up in this smoke run")

    text = f"""\
Frames per second through the balancer's XDP program on a veth pair, on **one core** (CPU
{gen_cpu} of {s.ncpus}). Two namespaces joined by a veth pair: the generator's and the balancer's.
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
    if s.quick:
        text = "**Smoke run (--quick): the figures below are not measurements.**\n\n" + text
    # 1 and 1k flows are meant to measure established flows: say so loudly
    # when the connection table did not keep them (a regression in Ballast,
    # which the figures then do not hide).
    untracked = [f for f in ballast_flows if f <= 1000 and miss(f) > 0.01]
    if untracked and not s.quick:
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
    # Within a factor of 1.5 either way is "about the same" at this VM's
    # noise (the ranges of a program's cells often span 30%).
    if hop_back > 1.5 * hop_in:
        tx_text = (f"The way back (XDP_TX, the second hop and the receiver: {hop_back:.0f} ns) "
                   f"costs clearly more than the way in ({hop_in:.0f} ns): veth's XDP_TX path is "
                   "a limit of its own here, next to the generator.")
    else:
        how = "less than" if hop_back < hop_in / 1.5 else "about as much as"
        tx_text = (f"The way back (XDP_TX, the second hop and the receiver: {hop_back:.0f} ns) "
                   f"costs {how} the way in ({hop_in:.0f} ns): veth's XDP_TX path is no greater "
                   "a limit than veth's hop into the balancer; the generator and the two hops set "
                   "the ceiling and the floor, not the programs.")
    one_core = [c for c in cells if c["cores"] == 1]
    run_share = med([c["gen_thread"]["run"] for c in one_core])
    wait_share = med([c["gen_thread"]["wait"] for c in one_core])
    on_cpu = [c["ballast"]["tx_forwarded_on_gen_cpu"] / c["ballast"]["tx_forwarded"]
              for c in one_core if c["case"] == "ballast" and c["ballast"]["tx_forwarded"]]
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
{100 * run_share:.0f}% of each window (the scheduler's account, /proc/self/task/*/schedstat; the
balancer's and the receiver's programs run inside it, in the softirq its sends raise) and
waited {100 * wait_share:.0f}% for its CPU (medians), and in every Ballast cell at least
{100 * min(on_cpu) if on_cpu else float('nan'):.1f}% of the packets it forwarded were counted on CPU {gen_cpu} (its per-CPU counters). The
other CPU carries ballastd, this script and whatever else runs on the VM. Over the whole run
{lost}. The generator runs one BPF_PROG_TEST_RUN per cell, stopped by a signal: each test run
swaps its program into the kernel's XDP dispatcher and out again, each swap waiting for an RCU
grace period, and with runs of 64k frames those waits took most of a window on this VM.

Connection table: {table_size:,} ways in {buckets:,} buckets of 64 bytes, one cache line each
(bpf/conn_table.h; {table_bytes / 1048576:.0f} MiB, allocated whole): {table_bytes / table_size:.0f} bytes per way, which holds
a flow's fingerprint and backend id, when it was last seen and whether it was confirmed, and no
key. A flow may sit in either of two buckets; its lookup reads the first, and the second only
when the flow is not in the first. 1M flows (1,000,000) are {100 * 1000000 / table_size:.0f}% of its ways: once warm,
{100 * miss_1m:.2f}% of the window's packets were new flows. {placements(1000000)} The 1M cell
measures lookups in a table holding a million flows ({table_bytes / 1e6:.1f} bytes of table per flow):
what it adds over 1k flows is memory, buckets that are no longer in the CPU's caches.
""" + (f"""{', '.join(f"{f:,}" for f in past)} flows (twice the table's ways) is past it:
{100 * miss(past[-1]):.0f}% of the window's packets found no entry and took the flow hash and the
Maglev lookup. {placements(past[-1])} Its ratios are against the same round's
{flows_label(flows_list[-1])}-flow XDP_DROP and floor, whose rates do not depend on the flow count
(the rows above show it).
""" if past else "")

    series = []
    for case in ("drop", "floor", "ballast"):
        xs = [f for f in sorted(set(flows_list) | set(ballast_flows)) if mpps(case, f)]
        series.append({"label": NAMES[case], "x": xs,
                       "y": [round(med(mpps(case, f)), 4) for f in xs]})
    sections = [{
        "heading": "Packets per second, one core",
        "text": text,
        "table": {"columns": cols, "rows": rows},
        "plot": {"file": "wire_flows.png",
                 "title": "Frames per second through the balancer (one core, veth)",
                 "xlabel": "distinct 5-tuples", "ylabel": "Mpps", "xlog": True,
                 "series": series},
        "text_after": after,
    }]
    if s.cores > 1:
        sections.append(cores_section(cells, s))
    result = {
        "bench": "wire",
        "title": "Data plane on the wire (veth, packets per second)",
        "command": "bench/wire_bench.py build",
        "order": 20,
        "sections": sections,
    }
    with open(out_file, "w") as f:
        json.dump(result, f, indent=1)

    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    for r in [cols] + rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()


def cores_section(cells, s):
    """The multi-core section: each case of CORE_FLOWS on one core and on
    s.cores, the scaling the median of the rounds' ratios. Fails (Failure)
    when a multi-core cell did not run on every core: a generator thread
    that ran less than half its window, or (Ballast) a CPU that forwarded
    less than a quarter of its share."""
    n = s.cores
    by = {(c["case"], c["flows"], c["cores"], c["round"]): c for c in cells}
    problems = []
    for c in cells:
        if c["cores"] == 1:
            continue
        where = f"{NAMES[c['case']]}, {c['flows']} flows, {n} cores, round {c['round']}"
        for t in c["gen_threads"]:
            if t["run"] < 0.5:
                problems.append(f"{where}: the generator on CPU {t['cpu']} ran {100 * t['run']:.0f}% "
                                "of the window")
        if c["case"] == "ballast":
            fwd = c["ballast"]["tx_forwarded_by_cpu"]
            total = sum(fwd)
            for cpu in c["gen_cpus"]:
                if fwd[cpu] < total / n / 4:
                    problems.append(f"{where}: CPU {cpu} forwarded {fwd[cpu]} of {total} frames")
    if problems:
        raise Failure("wire: a multi-core cell did not use every core:\n  "
                      + "\n  ".join(problems))

    cols = ["program", "flows", "1 core Mpps", f"{n} cores Mpps", "range", "scaling"]
    rows, series, scalings = [], [], {}
    for case in ("drop", "floor", "ballast"):
        for f in CORE_FLOWS[case]:
            one = [by[(case, f, 1, r)]["mpps"] for r in range(1, s.rounds + 1)
                   if (case, f, 1, r) in by]
            many = [by[(case, f, n, r)]["mpps"] for r in range(1, s.rounds + 1)
                    if (case, f, n, r) in by]
            if not one or not many:
                continue
            scale = med([by[(case, f, n, r)]["mpps"] / by[(case, f, 1, r)]["mpps"]
                         for r in range(1, s.rounds + 1)
                         if (case, f, n, r) in by and (case, f, 1, r) in by
                         and by[(case, f, 1, r)]["mpps"]])
            scalings[(case, f)] = scale
            rows.append([NAMES[case], flows_label(f), f"{med(one):.3f}", f"{med(many):.3f}",
                         f"{min(many):.3f}-{max(many):.3f}", f"{scale:.2f}x"])
            series.append({"label": f"{NAMES[case]}, {flows_label(f)} flows", "x": [1, n],
                           "y": [round(med(one), 4), round(med(many), 4)]})
    busy = [cpu["busy"] for c in cells if c["cores"] > 1 for cpu in c["cpus"]
            if cpu["cpu"] < n]
    soft = [cpu["softirq"] for c in cells if c["cores"] > 1 for cpu in c["cpus"]
            if cpu["cpu"] < n]
    shares = [min(c["ballast"]["tx_forwarded_by_cpu"][:n]) / max(1, sum(c["ballast"]["tx_forwarded_by_cpu"]))
              for c in cells if c["cores"] > 1 and c["case"] == "ballast"]
    b1k = scalings.get(("ballast", 1000), float("nan"))
    floor_s = scalings.get(("floor", 1000), float("nan"))
    b1m = scalings.get(("ballast", 1000000), float("nan"))
    verdict = ("meets" if b1k >= 1.8 and b1m >= 1.8 else
               "misses" if b1k < 1.8 and b1m < 1.8 else "meets at one of the two and misses")
    drop_s = scalings.get(("drop", 1000), float("nan"))
    # Ballast against the stateless programs of the same run: within 10% of
    # the lesser of theirs is scaling as the path does.
    if min(b1k, b1m) >= 0.9 * min(floor_s, drop_s):
        compare = ("So Ballast scales as the programs that keep no state do: nothing of its own "
                   "holds it back.")
    else:
        compare = (f"So Ballast scales less than the path does here (its lesser figure is "
                   f"{min(b1k, b1m) / min(floor_s, drop_s):.2f} of the stateless programs' "
                   "lesser one).")
    ballastd = [c["ballastd_cpu"] for c in cells if c["cores"] > 1 and c["case"] == "ballast"
                and c["ballastd_cpu"] is not None]
    text = f"""\
The same topology with **{n} generators**, one pinned to each of CPUs 0-{n - 1}, each sending its own
1/{n} of the flows (wire_gen.bpf.c: flow = packet x {n} + the CPU's slot, so no flow is sent from two
CPUs, as a NIC's RSS keeps a flow on one queue). Both ends of the veth pair have {s.queues} RX and TX
queues: veth puts a frame on the receiving end's queue numbered after the sending CPU and raises
that queue's NAPI poll on that CPU, so each CPU carries its own generator, the balancer's program
on its own queue, XDP_TX, and the receiver, as one core does in the table above. The one-core
figures are the cells of the table above (same run, generator on CPU {s.gen_cpu}); the
multi-core cells ran right after them, on the same state (Ballast's connection table holding the
same flows). Scaling is the median of the rounds' ratios.
"""
    after = f"""\
Ballast scales {b1k:.2f}x at 1k flows and {b1m:.2f}x at 1M flows from one core to {n}, which
{verdict} the 1.8x target of issue #18; the floor, which keeps no state at all, scales {floor_s:.2f}x
in the same run, and XDP_DROP {drop_s:.2f}x. {compare} Every multi-core cell ran on
every core: the generator threads each ran at least half of their windows, the CPUs were
{100 * med(busy):.0f}% busy (median; {100 * med(soft):.0f}% of it in softirq, where veth's NAPI
runs the programs), and in Ballast's cells the CPU that forwarded the least still forwarded
{100 * min(shares) if shares else float('nan'):.0f}% of the frames (its per-CPU counters; {100 / n:.0f}% is an even split).
Nothing on Ballast's per-packet path writes memory that another CPU writes: every counter is a
per-CPU map (bpf/counters.h), and the connection table is written when a flow is new and when an
established flow's `seen` is older than half a second (bpf/conn_table.h), never per packet. On this
VM the {n} CPUs are all there is: ballastd, this script and the VM's own work share them with the
generators: ballastd itself used {100 * max(ballastd) if ballastd else float('nan'):.1f}% of a
CPU at most during a multi-core cell (/proc/PID/stat), this script and bench_wire's main thread
less. Runs differ by more than the rounds within one: the ratios are worth comparing with each
other (Ballast against the floor in the same run), not to the second decimal across runs.
"""
    return {
        "heading": f"Packets per second, one core and {n}",
        "text": text,
        "table": {"columns": cols, "rows": rows},
        "plot": {"file": "wire_cores.png",
                 "title": f"Frames per second through the balancer, 1 and {n} cores (veth)",
                 "xlabel": "cores (generator, balancer and receiver on each)",
                 "ylabel": "Mpps", "xticks": [1, n], "series": series},
        "text_after": after,
    }


# --- main ---------------------------------------------------------------------

def preflight(build):
    """Root, tools, built files, bpffs. A machine that cannot run this at
    all skips, as the end-to-end tests do."""
    if os.geteuid() != 0:
        print("SKIP wire: needs root (network namespaces, XDP)")
        sys.exit(0)
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            raise Failure(f"missing tool: {tool}")
    for name in ("bench_wire", "ballastd"):
        if not os.access(build / name, os.X_OK):
            raise Failure(f"{build / name} missing (run make first)")
    # ballastd pins under bpffs, which is not mounted at boot here.
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"])


def main():
    parser = argparse.ArgumentParser(
        usage="%(prog)s [BUILD_DIR] [--quick]",
        description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="build", metavar="BUILD_DIR")
    parser.add_argument("--quick", action="store_true",
                        help="one round of 0.1 s windows: every case and check, no figures")
    args = parser.parse_args()
    build = pathlib.Path(args.build).resolve()
    bench_out = pathlib.Path(os.environ.get("BENCH_OUT") or build / "bench-results")
    settings = Settings(args.quick)
    # SIGTERM unwinds like Ctrl-C: everything is torn down on every exit path.
    signal.signal(signal.SIGTERM, on_sigterm)
    t0 = time.monotonic()
    wire = None
    try:
        preflight(build)
        wire = WireRun(build, settings)
        wire.setup()
        log(f"prefix {wire.prefix}, generator on CPU {settings.gen_cpu}, "
            f"{settings.rounds} round(s) of {settings.window_s}s windows")
        for rnd in range(1, settings.rounds + 1):
            wire.run_round(rnd)
        bench_out.mkdir(parents=True, exist_ok=True)
        # Every cell's raw counters, for a second look (report.py reads *.json only).
        with open(bench_out / "wire.cells.jsonl", "w") as f:
            f.writelines(json.dumps(c) + "\n" for c in wire.cells)
        report(wire.cells, settings, wire.attach_mode(), bench_out / "wire.json")
        log(f"done in {time.monotonic() - t0:.0f} s")
        rc = 0
    except Failure as e:
        log(f"FAILED: {e}")
        rc = 1
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Interrupted)
        log("terminated" if terminated else "interrupted")
        rc = 143 if terminated else 130
    finally:
        # No second signal stops the teardown half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if wire is not None:
            wire.close()
    sys.exit(rc)


if __name__ == "__main__":
    main()
