#!/usr/bin/python3
"""compare_bench.py: Ballast against the balancers operators run today, in
one topology and one run (issue #6). Real HTTP traffic (wrk) and one
long-lived bulk transfer (iperf3) from a client, through
  ballast  Ballast, L2 direct server return (XDP on the lb's eth0)
  haproxy  HAProxy 2.6, mode tcp, roundrobin
  nginx    nginx 1.22 stream (TCP proxy), round robin
  direct   no balancer: the client straight to one backend (the ceiling)
to the same nginx backends, with the same connections and durations.

Topology: the end-to-end harness's world (tests/e2e/harness/world.py:
client, lb, 3 backends on a bridge, per-run namespace prefix, torn down on
every exit path, Ctrl-C and SIGTERM included), with nginx as the backends'
HTTP server (the harness's Python server would be the bottleneck) and
iperf3 -s on be1. HAProxy and nginx stream listen on the lb's own address;
Ballast serves the VIP. The proxies run while Ballast's program is detached
(and the pass program that XDP_TX on veth needs on the lb's bridge port,
which would take GSO away from the lb's eth0): each balancer in the setup it
would have in production, bar the topology's own constraints.

Measured per run: wrk's requests/s and p50/p99 latency (or iperf3's
Gbit/s), the balancer's CPU (proxies: their processes' utime+stime; Ballast:
its XDP program's run time from the kernel's BPF statistics, and ballastd's
own process time), and the whole machine's busy CPU. Checked per run (the
bench fails otherwise, exit status 1): wrk's errors (socket errors, status
>= 400) under 0.1% of the requests; the backends' nginx counted at least as
many requests as wrk completed, through a balancer on every backend, direct
on be1 only; Ballast's program saw at least one packet per request; no XDP
program counted on the lb while a proxy or direct ran; iperf3 reported no
error. Timings are never asserted.

Usage: bench/compare_bench.py [BUILD_DIR] [--quick]
  --quick: 0.25 s per HTTP run, 32 MB per iperf3 run (one way), one round,
  checks every 250 ms, no wait for ballastd to settle: a smoke run (the
  same code path and checks, figures too short to mean anything), about 5 s.
Writes $BENCH_OUT/compare.json (bench/report.py's format; BENCH_OUT
defaults to BUILD_DIR/bench-results) and prints the tables. Needs root.
E2E_KEEP_STATE=1 keeps the state directory (configs, tool outputs, logs).
"""

import argparse
import contextlib
import http.client
import logging
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TPL_DIR = BENCH_DIR / "compare"
sys.path.insert(0, str(ROOT / "tests/e2e"))
sys.path.insert(0, str(TPL_DIR))

import results  # noqa: E402  (bench/compare/results.py)
from harness.processes import (Ballastd, Failure, Interrupted, interrupted, run_ok,  # noqa: E402
                               stop, wait_for_line)
from harness.world import HTTP_PORT, LB_IP, VIP1, World, inside, sysctl  # noqa: E402

log = logging.getLogger("e2e")

# Same load for every balancer: wrk's threads and connections. Two rounds
# in opposite orders (full run), so that a drift of the shared machine
# during the run weighs on all alike.
WRK_THREADS = 1
WRK_CONNS = 50
# The request paths: long-lived keep-alive connections, and one new
# connection per request (where a balancer's per-connection work shows).
HTTP_CASES = ("keepalive", "close")
TARGETS = ("ballast", "direct", "haproxy", "nginx")
# wrk errors (socket errors, timeouts, status >= 400) allowed, per request.
MAX_ERROR_FRACTION = 0.001

IPERF_PORT, HAPROXY_HTTP_PORT, NGINX_HTTP_PORT = 5201, 8081, 8082
HAPROXY_IPERF_PORT, NGINX_IPERF_PORT = 5202, 5203

BACKENDS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")
LISTEN_TIMEOUT_S = 10
HEALTHY_TIMEOUT_S = 10


class Load:
    """How long each run lasts. iperf3's directions: up, the client sends
    (the data crosses every balancer); down, the backend sends (-R: with
    DSR it bypasses Ballast). wrk's and iperf3's shortest runs are a second,
    so --quick ends each wrk run after http_cut_s with SIGINT (wrk stops,
    then reports what it did in that time) and its iperf3 moves a fixed
    amount of data (a few tenths of a second). --quick's backends are
    checked every 250 ms, so they come up sooner after ballastd starts."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.http_s, self.http_cut_s, self.rounds = 1, 0.25, 1
            self.check_interval = "250ms"
            self.iperf_len, self.iperf_dirs, self.iperf_what = ["-n", "32M"], ("up",), "32 MB"
        else:
            self.http_s, self.http_cut_s, self.rounds = 6, None, 2
            self.check_interval = "1s"
            self.iperf_len, self.iperf_dirs, self.iperf_what = ["-t", "4"], ("up", "down"), "4 s"


def render(template, **values):
    """bench/compare/@template with every @KEY@ replaced by values[KEY];
    fails when a placeholder is left. Values may span lines (server
    lists)."""
    text = (TPL_DIR / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise Failure(f"{template}: placeholders left: {left}")
    return text


def server_lines(world, line):
    """One line per backend: @line with {name} and {addr} filled in."""
    return "\n".join(line.format(name=be.name, addr=be.ip) for be in world.backends)


def listening(node, port):
    """True when something in @node's namespace listens on TCP @port (any
    address, IPv4 or IPv6)."""
    with inside(node.ns):
        tables = [pathlib.Path(f"/proc/thread-self/net/{t}").read_text() for t in ("tcp", "tcp6")]
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            # local_address is ADDR:PORT in hex; st 0A is LISTEN.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def proc_ticks(*pids):
    """utime+stime in clock ticks of each of @pids (all its threads) and of
    its children (nginx's workers), summed; 0 for none."""
    every = []
    for pid in pids:
        every.append(pid)
        for children in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                every += [int(c) for c in children.read_text().split()]
    ticks = 0
    for pid in every:
        try:
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue    # gone meanwhile (a worker that ended)
        # Fields after the ")" that ends the command name: utime is the
        # 12th, stime the 13th (proc(5)'s 14 and 15).
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks


class Bench:
    """The world, the servers and balancers in it, and the runs."""

    def __init__(self, build, load, bench_out):
        self.build = build
        self.load = load
        self.bench_out = bench_out
        self.world = World(str(build), backends=BACKENDS)
        self.state = pathlib.Path(tempfile.mkdtemp(prefix=f"ballast-compare-{self.world.prefix}."))
        self.lb = Ballastd(self.world, self.state, build)
        self.procs = {}          # name -> Popen: every server, stopped at the end
        self.xdp_prog_id = None
        self.runs = []
        # The backend running iperf3 -s, and the one the direct runs go to.
        self.iperf_be = self.world.backends[0]
        self.direct_be = self.world.backends[0]
        self.lb_peer = self.world.lb.port

    # --- set-up ---------------------------------------------------------

    def spawn(self, name, node, argv, log_path):
        """@argv in @node's namespace (or the root one: None), its output to
        @log_path; stopped at teardown."""
        if node is not None:
            argv = node.exec_argv(argv)
        with open(log_path, "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def wait_listen(self, node, port, what, proc):
        """Waits (10 s at most) until something in @node listens on TCP
        @port; fails at once when @proc (the server) exits first."""
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        while not listening(node, port):
            if proc.poll() is not None:
                raise Failure(f"{what} (pid {proc.pid}) exited (status {proc.returncode}) "
                              f"before listening on port {port}")
            if time.monotonic() > deadline:
                raise Failure(f"{what} not listening on port {port} after {LISTEN_TIMEOUT_S} s")
            time.sleep(0.05)

    def ns_sysctls(self):
        """The namespaces' TCP settings for many short connections (the
        close case opens thousands a second): a wide port range and
        TIME_WAIT reuse where connections are opened (client, and the
        proxies on the lb), deep accept queues where they are accepted.
        Namespaced: the machine's own settings are untouched."""
        w = self.world
        for node in (w.client, w.lb):
            sysctl(node.ns, {"net.ipv4.ip_local_port_range": "1024 65000",
                             "net.ipv4.tcp_tw_reuse": 1})
        for node in [w.lb] + w.backends:
            sysctl(node.ns, {"net.core.somaxconn": 8192, "net.ipv4.tcp_max_syn_backlog": 8192})

    def backends_start_nginx(self):
        """nginx (bench/compare/backend-nginx.conf) in every backend
        namespace, and iperf3 -s on be1."""
        for be in self.world.backends:
            d = self.state / be.name
            d.mkdir()
            (d / "nginx.conf").write_text(render("backend-nginx.conf", DIR=d, NAME=be.name))
            self.spawn(f"nginx-{be.name}", be,
                       ["nginx", "-e", str(d / "error.log"), "-p", str(d), "-c", str(d / "nginx.conf")],
                       d / "stdout.log")
        for be in self.world.backends:
            self.wait_listen(be, 80, f"nginx on {be.name}", self.procs[f"nginx-{be.name}"])
        proc = self.spawn("iperf3-server", self.iperf_be, ["iperf3", "-s", "-p", str(IPERF_PORT)],
                          self.state / "iperf3-server.log")
        self.wait_listen(self.iperf_be, IPERF_PORT, f"iperf3 -s on {self.iperf_be.name}", proc)

    def proxies_start(self):
        """HAProxy and nginx stream in the lb namespace, on the lb's address
        (bench/compare/haproxy.cfg, nginx-stream.conf)."""
        lb = self.world.lb
        d = self.state / "haproxy"
        d.mkdir()
        (d / "haproxy.cfg").write_text(render(
            "haproxy.cfg", LB_IP=LB_IP, HAPROXY_HTTP_PORT=HAPROXY_HTTP_PORT,
            HAPROXY_IPERF_PORT=HAPROXY_IPERF_PORT, IPERF_BE=self.iperf_be.ip, IPERF_PORT=IPERF_PORT,
            SERVERS=server_lines(self.world, "\tserver {name} {addr}:80 check inter 1s")))
        # -db: foreground, one process (HAProxy's threads inside it).
        haproxy = self.spawn("haproxy", lb, ["haproxy", "-db", "-f", str(d / "haproxy.cfg")],
                             d / "haproxy.log")
        d = self.state / "nginx-lb"
        d.mkdir()
        (d / "nginx.conf").write_text(render(
            "nginx-stream.conf", DIR=d, LB_IP=LB_IP, NGINX_HTTP_PORT=NGINX_HTTP_PORT,
            NGINX_IPERF_PORT=NGINX_IPERF_PORT, IPERF_BE=self.iperf_be.ip, IPERF_PORT=IPERF_PORT,
            SERVERS=server_lines(self.world, "\t\tserver {addr}:80;")))
        nginx = self.spawn("nginx-lb", lb,
                           ["nginx", "-e", str(d / "error.log"), "-p", str(d), "-c", str(d / "nginx.conf")],
                           d / "stdout.log")
        self.wait_listen(lb, HAPROXY_HTTP_PORT, "haproxy", haproxy)
        self.wait_listen(lb, NGINX_HTTP_PORT, "nginx stream", nginx)

    def bpf_stats_on(self):
        """The kernel's BPF run-time statistics on for this run
        (build/tools/bpf_stats_hold, bench/tools/: reference-counted, off
        when it ends)."""
        log_path = self.state / "bpf_stats.log"
        proc = self.spawn("bpf-stats", None, [str(self.build / "tools/bpf_stats_hold")], log_path)
        wait_for_line(log_path, "enabled", proc, 10, "bpf_stats_hold (BPF statistics)")

    # --- Ballast on and off ---------------------------------------------

    def peer_pass(self, on):
        """The pass program on the lb's bridge port, which XDP_TX on veth
        needs (shared/README.md), attached or detached (either way, once)."""
        sw = self.world.sw
        attached = "xdp" in run_ok(["ip", "-n", sw, "link", "show", "dev", self.lb_peer])
        if on == attached:
            return
        if on:
            run_ok(["ip", "-n", sw, "link", "set", "dev", self.lb_peer, "xdpdrv",
                    "obj", str(self.build / "bpf/xdp_pass.bpf.o"), "sec", "xdp"])
        else:
            run_ok(["ip", "-n", sw, "link", "set", "dev", self.lb_peer, "xdpdrv", "off"])

    def wait_healthy(self, vip, addr):
        """Waits (10 s at most) until `ballast backend list` says @addr is
        up in @vip; one poll after the deadline, so a state reached in time
        is seen."""
        deadline = time.monotonic() + HEALTHY_TIMEOUT_S
        while True:
            start = time.monotonic()
            try:
                rows = [b for b in self.lb.cli("backend", "list")
                        if b["vip"] == vip and b["address"] == addr]
                row = rows[0] if rows else None
            except Failure as e:
                row = str(e)
            if isinstance(row, dict) and row.get("health") == "up":
                log.info("%s in %s: up", addr, vip)
                return
            if start > deadline:
                raise Failure(f"{addr} in {vip} not up within {HEALTHY_TIMEOUT_S}s: "
                              f"last seen {row}")
            time.sleep(0.1)

    def ballast_on(self):
        """ballastd serving the VIPs (bench/compare/ballast.yaml); sets
        xdp_prog_id to the program attached to the lb's eth0 (libxdp's
        dispatcher when it uses one: its run time includes the programs it
        calls)."""
        if self.lb.proc is not None:
            return
        text = render("ballast.yaml", VIP=VIP1, IPERF_PORT=IPERF_PORT,
                      CHECK_INTERVAL=self.load.check_interval, IPERF_BE=self.iperf_be.ip,
                      BACKENDS=server_lines(self.world, "      - {{address: {addr}}}"))
        self.peer_pass(True)
        self.lb.start(text)     # (written to the state dir's ballast.yaml)
        # Until its first health check passes a backend takes no new flows
        # (the VIP drops them): wait for every one.
        for be in self.world.backends:
            self.wait_healthy(f"{VIP1}:{HTTP_PORT}/tcp", be.ip)
        # (--quick's figures mean nothing anyway: it saves the wait.)
        if not self.load.quick:
            self.ballastd_settle()
        self.xdp_prog_id = self.lb.xdp_id()
        if self.xdp_prog_id is None:
            raise Failure("ballastd ready but no XDP program on the lb's eth0")
        log.info("ballast on: XDP program id %d", self.xdp_prog_id)

    def ballastd_settle(self):
        """Waits (4 s at most) until ballastd's CPU time stands still (at
        most a tick in 0.5 s): its first second or two after "ready" cost a
        few tenths of a second of CPU, which is its start (the same in any
        deployment), not what it costs while serving."""
        pid = self.lb.proc.pid
        last = proc_ticks(pid)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = proc_ticks(pid)
            if now - last <= 1:
                return
            last = now
        log.info("ballastd still busy 4 s after its start: measuring anyway")

    def ballast_off(self):
        """ballastd stopped, Ballast removed from the lb's eth0 (ballastd
        --cleanup: a stop alone leaves it forwarding) and the peer's pass
        program detached (checked: the proxies must not run behind an XDP
        program)."""
        if self.lb.proc is not None:
            rc = self.lb.stop()
            if rc != 0:
                raise Failure(f"ballastd exited with status {rc} on SIGTERM")
        self.lb.remove()
        if self.lb.xdp_id() is not None:
            raise Failure("XDP program still on the lb's eth0 after ballastd stopped")
        self.peer_pass(False)
        self.xdp_prog_id = None

    def target_ready(self, target):
        """Ballast on for ballast, off for every other target."""
        if target == "ballast":
            self.ballast_on()
        else:
            self.ballast_off()

    # --- counters -------------------------------------------------------

    def target_procs(self, target):
        """The processes doing @target's balancing in userspace."""
        return {"haproxy": [self.procs["haproxy"]], "nginx": [self.procs["nginx-lb"]]}.get(target, [])

    def cpu_counters(self, target):
        """The CPU counters: the time, the machine's busy and softirq ticks
        (/proc/stat), @target's processes' ticks, ballastd's, the client's
        TCP retransmissions, and Ballast's XDP program's run time and count."""
        procs = self.target_procs(target) + ([self.lb.proc] if self.lb.proc else [])
        for proc in procs:
            if proc.poll() is not None:
                raise Failure(f"process {proc.pid} (a balancer) is gone "
                              f"(status {proc.returncode})")
        c = {"t": time.monotonic()}
        cpu = pathlib.Path("/proc/stat").read_text().splitlines()[0].split()
        # user nice system idle iowait irq softirq steal: busy is all but
        # idle and iowait.
        c["machine_busy"] = sum(int(cpu[i]) for i in (1, 2, 3, 6, 7, 8))
        c["machine_softirq"] = int(cpu[7])
        c["proc"] = proc_ticks(*(p.pid for p in self.target_procs(target)))
        c["ballastd"] = proc_ticks(self.lb.proc.pid) if self.lb.proc else 0
        # The client's TCP retransmissions: a balancer losing packets shows here.
        with inside(self.world.client.ns):
            snmp = pathlib.Path("/proc/thread-self/net/snmp").read_text().splitlines()
        names, values = [line.split() for line in snmp if line.startswith("Tcp:")][:2]
        c["client_retrans"] = int(values[names.index("RetransSegs")])
        c["xdp_ns"] = c["xdp_cnt"] = 0
        if self.xdp_prog_id is not None:
            # run_time_ns and run_cnt: absent while both are 0.
            prog = run_ok(["bpftool", "prog", "show", "id", str(self.xdp_prog_id)])
            for key, field in (("xdp_ns", "run_time_ns"), ("xdp_cnt", "run_cnt")):
                found = re.search(rf"\b{field} (\d+)", prog)
                c[key] = int(found.group(1)) if found else 0
        return c

    def backend_counters(self):
        """Requests each backend's nginx has counted (stub_status, over
        127.0.0.1 in its namespace), as {"be.NAME": N}."""
        counts = {}
        for be in self.world.backends:
            try:
                with inside(be.ns):
                    conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=5)
                    conn.connect()
                conn.request("GET", "/stub_status")
                reply = conn.getresponse()
                text = reply.read().decode(errors="replace")
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                raise Failure(f"stub_status of {be.name} unreadable: {e!r}") from e
            lines = text.splitlines()
            # Its third line: accepts handled requests.
            if reply.status != 200 or len(lines) < 3 or len(lines[2].split()) < 3:
                raise Failure(f"stub_status of {be.name} printed no request count "
                              f"(status {reply.status}): {text[:200]!r}")
            counts[f"be.{be.name}"] = int(lines[2].split()[2])
        return counts

    # --- runs -----------------------------------------------------------

    def http_url(self, target):
        """Where wrk sends @target's requests."""
        return {"ballast": f"http://{VIP1}:{HTTP_PORT}/",
                "direct": f"http://{self.direct_be.ip}:80/",
                "haproxy": f"http://{LB_IP}:{HAPROXY_HTTP_PORT}/",
                "nginx": f"http://{LB_IP}:{NGINX_HTTP_PORT}/"}[target]

    def iperf_dest(self, target):
        """iperf3's server address and port through @target."""
        return {"ballast": (VIP1, IPERF_PORT),
                "direct": (self.iperf_be.ip, IPERF_PORT),
                "haproxy": (LB_IP, HAPROXY_IPERF_PORT),
                "nginx": (LB_IP, NGINX_IPERF_PORT)}[target]

    def record(self, kind, case, target, round_, before, after, output, errors=""):
        """The run checked (fails the bench with the check's reason when it
        does not hold) and its record kept."""
        try:
            rec = results.check(kind, case, target, round_, before, after, output, errors,
                                clk_tck=CLK_TCK, max_error_fraction=MAX_ERROR_FRACTION,
                                direct_backend=self.direct_be.name)
        except results.CheckFailed as e:
            raise Failure(f"{kind} {case} through {target} (round {round_}): {e}") from None
        self.runs.append(rec)

    def http_run(self, case, target, round_):
        """One wrk run through @target, checked and recorded."""
        out = self.state / f"http-{case}-{target}-{round_}"
        argv = ["wrk", "-t", str(WRK_THREADS), "-c", str(WRK_CONNS), "-d", f"{self.load.http_s}s",
                "--latency", "-s", str(TPL_DIR / "wrk_report.lua")]
        if case == "close":
            argv += ["-H", "Connection: close"]
        argv.append(self.http_url(target))
        self.target_ready(target)
        before = self.backend_counters()
        before.update(self.cpu_counters(target))
        with open(out, "w") as f:
            wrk = subprocess.Popen(self.world.client.exec_argv(argv), stdout=f,
                                   stderr=subprocess.STDOUT)
        try:
            try:
                rc = wrk.wait(self.load.http_cut_s)
            except subprocess.TimeoutExpired:
                # --quick: wrk stops on SIGINT, then reports what it did.
                wrk.send_signal(signal.SIGINT)
                rc = wrk.wait()
        finally:
            stop(wrk)
        text = out.read_text(errors="replace")
        if rc != 0:
            raise Failure(f"wrk through {target} exited {rc}: "
                          + "|".join(text.splitlines()[-3:]))
        after = self.cpu_counters(target)
        after.update(self.backend_counters())
        self.record("http", case, target, round_, before, after, text)

    def iperf_run(self, direction, target, round_):
        """One iperf3 run through @target (up: the client sends; down: -R,
        the backend sends), checked and recorded."""
        out = self.state / f"iperf-{direction}-{target}-{round_}"
        addr, port = self.iperf_dest(target)
        argv = ["iperf3", "-c", addr, "-p", str(port), *self.load.iperf_len, "-J"]
        if direction == "down":
            argv.append("-R")
        self.target_ready(target)
        before = self.cpu_counters(target)
        # The server takes one test at a time and may still be closing the
        # last one: one retry when it says it is busy.
        for attempt in (1, 2):
            done = subprocess.run(self.world.client.exec_argv(argv), capture_output=True,
                                  text=True)
            out.write_text(done.stdout)
            out.with_suffix(".err").write_text(done.stderr)
            if done.returncode == 0 or attempt == 2 or "busy" not in done.stdout + done.stderr:
                break
            time.sleep(0.5)
            before = self.cpu_counters(target)
        after = self.cpu_counters(target)
        self.record("iperf", direction, target, round_, before, after, done.stdout, done.stderr)

    def main(self):
        """The topology, the servers, the runs, the report."""
        self.world.build()
        self.ns_sysctls()
        self.backends_start_nginx()
        self.proxies_start()
        self.bpf_stats_on()
        for round_ in range(1, self.load.rounds + 1):
            # Odd rounds in TARGETS' order, even ones reversed; each
            # target's runs together (one ballastd start per round).
            order = TARGETS if round_ % 2 else tuple(reversed(TARGETS))
            for target in order:
                for case in HTTP_CASES:
                    log.info("round %d: HTTP %s through %s", round_, case, target)
                    self.http_run(case, target, round_)
                for direction in self.load.iperf_dirs:
                    log.info("round %d: iperf3 %s through %s", round_, direction, target)
                    self.iperf_run(direction, target, round_)
        self.ballast_off()
        results.write(self.runs, self.bench_out / "compare.json", quick=self.load.quick,
                      http_s=self.load.http_cut_s or self.load.http_s,
                      iperf_what=self.load.iperf_what, rounds=self.load.rounds,
                      threads=WRK_THREADS, conns=WRK_CONNS, backends=len(self.world.backends))

    def close(self):
        """Teardown, safe on a half-built world: ballastd stopped and
        removed, every server stopped, the namespaces deleted (anything
        left inside killed first), the state directory removed unless
        E2E_KEEP_STATE=1."""
        self.lb.close()
        for proc in self.procs.values():
            stop(proc)
        self.world.close()
        if os.environ.get("E2E_KEEP_STATE") == "1":
            log.info("state kept in %s (E2E_KEEP_STATE=1)", self.state)
        else:
            shutil.rmtree(self.state, ignore_errors=True)


def require_tools(build):
    """Every program the bench runs is installed (else it fails:
    scripts/install-deps.sh installs them)."""
    for tool in ("wrk", "haproxy", "nginx", "iperf3", "bpftool", "nsenter"):
        if shutil.which(tool) is None:
            raise Failure(f"missing {tool} (scripts/install-deps.sh installs it)")
    if not os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
        raise Failure("nginx's stream module missing (libnginx-mod-stream)")
    for path in ("bpf/xdp_pass.bpf.o", "ballastd", "ballast", "tools/bpf_stats_hold"):
        if not (build / path).exists():
            raise Failure(f"{build / path} missing (run make first)")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [BUILD_DIR] [--quick]")
    parser.add_argument("build", nargs="?", default="build", help="the build directory (make's BUILD)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (see above)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)

    if os.geteuid() != 0:
        print("SKIP all: needs root (network namespaces, XDP)")
        return 0
    for tool in ("ip", "ethtool"):
        if shutil.which(tool) is None:
            print(f"SKIP all: missing tool: {tool}")
            return 0
    # Relative to the current directory when it exists there, else to the
    # repository root.
    build = pathlib.Path(args.build)
    build = build.resolve() if build.is_dir() else ROOT / build
    bench_out = pathlib.Path(os.environ.get("BENCH_OUT") or build / "bench-results")
    try:
        require_tools(build)
    except Failure as e:
        print(f"compare_bench: FAIL: {e}", file=sys.stderr)
        return 1
    bench_out.mkdir(parents=True, exist_ok=True)
    # bpffs is not mounted at boot here; ballastd pins under it.
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)

    # SIGTERM and SIGINT unwind: the world is torn down on every exit path.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    bench = None
    try:
        bench = Bench(build, Load(args.quick), bench_out)
        log.info("run prefix %s, state in %s", bench.world.prefix, bench.state)
        bench.main()
        return 0
    except Failure as e:
        print(f"compare_bench: FAIL: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        log.info("interrupted (%s)", e)
        return 128 + e.signum
    finally:
        # A second Ctrl-C (the terminal's, and a wrapper's forwarding it)
        # must not cut the teardown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench is not None:
            bench.close()


if __name__ == "__main__":
    sys.exit(main())
