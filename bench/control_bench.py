#!/usr/bin/python3
"""control_bench.py: the control plane's figures (issue #6): how long
`ballast apply` of a 1,000-backend config takes until the new Maglev table
is live in the pinned map, what ballastd costs in CPU to health-check 1,000
backends every second, how long a killed backend stays in rotation, and the
memory the maps lock and ballastd holds.

Usage: bench/control_bench.py [BUILD_DIR] [--quick]
  BUILD_DIR defaults to build. Writes $BENCH_OUT/control.json (bench/
  report.py's format; BENCH_OUT defaults to BUILD_DIR/bench-results) and
  prints its tables. Needs root. About 2 minutes; --quick (100 backends,
  two repetitions, one failover, 0.5 s CPU samples, checks every 250 ms)
  about 8 s, for `make test`'s smoke run: the same steps and checks, fewer
  of them.

The world is the end-to-end harness's (tests/e2e/harness: client, lb
running ballastd, backends on a bridge, L2 DSR, every name with a per-run
prefix, torn down on every exit path, SIGTERM and Ctrl-C included), with
four backends:
  be1 holds the N "many" backends: N extra addresses on its eth0, in
    10.231.8.0/21 (the world uses 10.231.0.0/24 and 10.231.100.0/24), each
    answering ARP; the lb gets 10.231.15.254/21 on its eth0 so that they
    are on-link. Both are added here with pyroute2 inside the world's
    namespaces, so they go with them. One VIP, VIP2:80/tcp, spreads over
    them; a listener of ours (a socket made in be1's namespace, accepting
    in a thread of this process) on port 8080 (all addresses) accepts their
    tcp checks.
  be2..be4 serve VIP1:80/tcp for the failover runs (http checks of
    /healthz, interval 1s, timeout 500ms, rise 2, fall 3), with a stream of
    new connections from the client.

Every step checks that it measured what it claims (the table really holds
the new backends with the right shares, every check succeeded, the killed
backend left the table and the connections after it all succeeded) and
exits non-zero with the reason when not. No timing is asserted. The
measuring and checking of the live tables is bench/control_ctl.py's.
"""

import argparse
import contextlib
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/e2e"))

from pyroute2 import NetNS  # noqa: E402

from harness.configs import config, vip  # noqa: E402
from harness.processes import (Backends, BackgroundClient, Ballastd, Failure,  # noqa: E402
                               Interrupted, interrupted)
from harness.world import HTTP_PORT, VIP1, VIP2, World, inside  # noqa: E402

import control_ctl as ctl  # noqa: E402

log = logging.getLogger("e2e")

FEW = 10
MANY_VIP = f"{VIP2}:{HTTP_PORT}/tcp"
FO_VIP = f"{VIP1}:{HTTP_PORT}/tcp"
LB_MANY_IP, MANY_PREFIX_LEN = "10.231.15.254", 21
CHECK_PORT = 8080
# How long the cold apply may take to resolve every MAC (ARP, then
# ballastd's 1 s neighbour refresh), and a failed-over backend to come back.
RESOLVE_LIMIT_S, BACK_LIMIT_S = 20, 10


class Plan:
    """The run's sizes. --quick also checks 4x as often and does not wait
    out the audit before a CPU sample (settle_s): its figures mean nothing,
    its steps run."""

    def __init__(self, quick):
        self.quick = quick
        if quick:
            self.many, self.apply_reps, self.failovers = 100, 2, 1
            self.cpu_s, self.stream_s = 0.5, 0.5
            self.check_times, self.settle_s = "interval: 250ms, timeout: 200ms", 0.2
        else:
            self.many, self.apply_reps, self.failovers = 1000, 8, 3
            self.cpu_s, self.stream_s = 10, 2
            self.check_times = "interval: 1s, timeout: 500ms"
            # After a change, ballastd audits 1 s later: CPU samples start after that.
            self.settle_s = 1.5
        self.many_check = f"{{type: tcp, port: {CHECK_PORT}, {self.check_times}, rise: 2, fall: 3}}"
        self.fo_check = f"{{type: http, path: /healthz, {self.check_times}, rise: 2, fall: 3}}"


def many_addr(i):
    """The i-th (0-based) "many" backend's address."""
    return f"10.231.{8 + i // 250}.{1 + i % 250}"


def weights(count, pattern):
    """{address: weight} of the first @count "many" backends: flat (all 1)
    or alt (1, 2, 1, 2, ...)."""
    return {many_addr(i): 1 + i % 2 if pattern == "alt" else 1 for i in range(count)}


# --- Set-up --------------------------------------------------------------------

class CheckListener:
    """What the tcp checks connect to: a socket on port 8080 made inside
    @node's namespace, accepting and closing in a thread of this process
    (the backend's HTTP server would start a thread per connection)."""

    def __init__(self, node):
        with inside(node.ns):
            self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", CHECK_PORT))
        self.sock.listen(4096)
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            conn.close()
            self.accepted += 1

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def many_setup(world, plan):
    """The N addresses on be1's eth0 and the lb's address in their subnet
    (inside the world's namespaces: they go with them)."""
    be1 = world.backends[0]
    with NetNS(be1.ns) as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        for i in range(plan.many):
            ipr.addr("add", index=eth0, address=many_addr(i), prefixlen=MANY_PREFIX_LEN)
    with NetNS(world.lb.ns) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=LB_MANY_IP,
                 prefixlen=MANY_PREFIX_LEN)
    log.info("%d backend addresses %s..%s on be1", plan.many, many_addr(0), many_addr(plan.many - 1))


def warm_neighbours(world, addresses):
    """The lb's kernel resolves each of @addresses (one datagram to the
    discard port starts ARP, as ballastd's own solicit does), waited for
    (10 s at most). ballastd reads the neighbour table when a change adds a
    backend, and otherwise only at its refresh (every 10 s while every
    backend is resolved): backends whose MAC is in the table already take
    traffic from the apply on."""
    want = set(addresses)
    with inside(world.lb.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        for a in want:
            s.sendto(b"", (a, 9))
    deadline = time.monotonic() + 10
    with NetNS(world.lb.ns) as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        while True:
            have = {n.get_attr("NDA_DST") for n in ipr.get_neighbours(family=socket.AF_INET,
                                                                      ifindex=eth0)
                    if n.get_attr("NDA_LLADDR")}
            if want <= have:
                return
            if time.monotonic() > deadline:
                raise Failure(f"the lb could not resolve every backend's MAC: {len(want - have)} of "
                              f"{len(want)} addresses unresolved, e.g. {sorted(want - have)[:3]} "
                              f"({neighbour_table()})")
            time.sleep(0.05)


def write_config(path, world, plan, count, pattern, check, failover):
    """The config: MANY_VIP over the first @count "many" backends, weights
    by @pattern (flat: all 1; alt: 1, 2, 1, 2, ...), health check @check
    (None for none); @failover adds FO_VIP over be2..be4 with the http check."""
    text = f"  - address: {VIP2}\n    port: {HTTP_PORT}\n    protocol: tcp\n"
    if check:
        text += f"    health_check: {check}\n"
    text += "    backends:\n" + "".join(f"      - {{address: {a}, weight: {w}}}\n"
                                       for a, w in weights(count, pattern).items())
    vips = [text]
    if failover:
        vips.append(vip(world, HTTP_PORT, weights=[None, 1, 1, 1], check=plan.fo_check,
                        address=VIP1))
    path.write_text(config(*vips))
    return path


# --- Measuring helpers -----------------------------------------------------------

class Bench:
    """The world, ballastd, and what each step measured."""

    def __init__(self, world, backends, lb, plan, state_dir, listener):
        self.world, self.backends, self.lb, self.plan = world, backends, lb, plan
        self.state, self.listener = state_dir, listener
        self.tables = ctl.Tables(lb.build_dir / "tools/maglev_probe",
                                 f"{lb.pin_dir}/maglev_tables")
        self.many_id = None
        self.applies, self.mem, self.cpu, self.fails = [], [], None, []

    def cli_raw(self, *args):
        """`ballast ARGS -o json`, which may fail: (parsed reply or None, stderr)."""
        done = subprocess.run([str(self.lb.build_dir / "ballast"), *args, "-o", "json",
                               "--socket", self.lb.socket], capture_output=True, text=True)
        if done.returncode != 0:
            return None, done.stderr.strip()
        return json.loads(done.stdout), ""

    def vip_id(self, vip_key):
        """The VIP's id (its key in maglev_tables)."""
        return next(v["id"] for v in self.lb.cli("vip", "list") if v["vip"] == vip_key)

    def check_table(self, count, pattern):
        """The live table of MANY_VIP is the config's (control_ctl.check_table)."""
        try:
            ctl.check_table(self.tables, self.many_id, MANY_VIP, self.lb.cli("backend", "list"),
                            weights(count, pattern))
        except Failure as exc:
            raise Failure(f"the live table is not the applied config's: {exc}") from None

    def rss_kib(self, field):
        """ballastd's VmRSS or VmHWM, in KiB."""
        status = pathlib.Path(f"/proc/{self.lb.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines()
                        if line.startswith(field + ":")))

    def cpu_ticks(self):
        """ballastd's utime + stime so far, in clock ticks."""
        stat = pathlib.Path(f"/proc/{self.lb.proc.pid}/stat").read_text()
        # The fields after the command name (which may hold spaces), from 3 on.
        fields = stat.rsplit(") ", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def cpu_share(self, seconds):
        """ballastd's CPU over the next @seconds, as a fraction of one core."""
        t0, c0 = time.time(), self.cpu_ticks()
        time.sleep(seconds)
        c1, t1 = self.cpu_ticks(), time.time()
        return round((c1 - c0) / os.sysconf("SC_CLK_TCK") / round(t1 - t0, 3), 5)

    def check_summary(self, rows, vip_key):
        """The backend list summed for @vip_key: up, in_table, down, not_ok
        (last check not "ok ...")."""
        rows = [b for b in rows if b["vip"] == vip_key]
        return {"backends": len(rows), "up": sum(b["health"] == "up" for b in rows),
                "in_table": sum(b["table_entries"] > 0 for b in rows),
                "down": sum(b["health"] == "down" for b in rows),
                "not_ok": sum(not b["last_check"].startswith("ok") for b in rows)}

    def wait_health_all(self, vip_key, n, limit_s):
        """@n backends of @vip_key up with table entries (so resolved too),
        within @limit_s seconds."""
        deadline = time.monotonic() + limit_s
        while True:
            s = self.check_summary(self.lb.cli("backend", "list"), vip_key)
            if s["up"] == n and s["in_table"] == n:
                return
            if time.monotonic() > deadline:
                raise Failure(f"{vip_key}: not all {n} backends up after {limit_s} s: {json.dumps(s)}")
            time.sleep(0.2)

    def wait_backend(self, vip_key, addr, cond, deadline):
        """Polls `ballast backend list` every 0.1 s until the row of @addr
        in @vip_key satisfies @cond (a function of the row) or @deadline
        (unix seconds) has passed; there is always one poll started after
        the deadline, so a state reached in time is seen. Returns (start,
        end) (unix seconds) of the first poll that saw it; fails with the
        last row seen when none did."""
        row = None
        while True:
            start = time.time()
            rows, err = self.cli_raw("backend", "list")
            end = time.time()
            if rows is not None:
                found = [b for b in rows if b["vip"] == vip_key and b["address"] == addr]
                row = found[0] if found else None
                try:
                    ok = row is not None and cond(row)
                except (KeyError, TypeError) as exc:  # a missing field: not (yet) true
                    ok, row = False, {"row": row, "error": repr(exc)}
                if ok:
                    return start, end
            else:
                row = "ballast backend list: " + err
            if start > deadline:
                raise Failure(f"{vip_key} {addr}: last seen {json.dumps(row)}")
            time.sleep(max(0.0, min(0.1, deadline - time.time() + 0.001)))

    # --- The measurements ------------------------------------------------------

    def measure_memory(self, label):
        """The maps' locked bytes and ballastd's RSS now, under @label."""
        self.mem.append({"label": label, "rss_kib": self.rss_kib("VmRSS"),
                         "hwm_kib": self.rss_kib("VmHWM"),
                         "maps": ctl.maps_memlock(self.tables, self.lb.pin_dir)})

    def apply(self, path, swap):
        return ctl.timed_apply(self.tables, self.many_id, self.lb.build_dir / "ballast",
                               self.lb.socket, path, swap)

    def measure_apply(self):
        """The cold apply (FEW -> MANY backends whose MACs nobody knows yet),
        then apply_reps applies of MANY backends alternating two weight
        patterns, each timed and its table checked; then as many applies of
        the last config again, each of which must change nothing."""
        plan = self.plan
        if plan.quick:
            # The cold path waits for ballastd's 10 s neighbour refresh: too
            # long for a smoke run. Quick runs grow with the MACs known.
            warm_neighbours(self.world, [many_addr(i) for i in range(plan.many)])
        configs = {p: write_config(self.state / f"many-{p}.yaml", self.world, plan, plan.many, p,
                                   None, False) for p in ("flat", "alt")}
        try:
            r = self.apply(configs["flat"], False)
        except Failure as exc:
            raise Failure(f"cold apply failed: {exc}") from None
        try:
            settled = ctl.settle(self.tables, self.many_id, plan.many, r["t0_unix"], RESOLVE_LIMIT_S)
        except Failure as exc:
            status, _ = self.cli_raw("status")
            raise Failure(
                f"cold apply: not every backend resolved ({exc}): {json.dumps(status)[:300]} "
                f"({neighbour_table()})") from None
        self.applies.append({"kind": "cold", "warm": plan.quick, "apply": r, "settle": settled})
        self.check_table(plan.many, "flat")
        log.info("cold apply: %s %s", json.dumps(r), json.dumps(settled))
        self.measure_memory(f"1 VIP, {plan.many} backends")

        pattern = "flat"
        for i in range(plan.apply_reps):
            pattern = "flat" if i % 2 else "alt"
            try:
                r = self.apply(configs[pattern], True)
            except Failure as exc:
                raise Failure(f"apply {i} failed: {exc}") from None
            self.check_table(plan.many, pattern)
            self.applies.append({"kind": "weights", "apply": r})
            log.info("apply %d (%s): %s", i, pattern, json.dumps(r))
        # The reference: the last config again, which must change nothing.
        for i in range(plan.apply_reps):
            try:
                r = self.apply(configs[pattern], False)
            except Failure as exc:
                raise Failure(f"no-op apply {i} failed: {exc}") from None
            if r["inner_before"] != r["inner_after"] or r["changes"] != 0:
                raise Failure(f"applying the same config again changed something: {json.dumps(r)}")
            self.applies.append({"kind": "noop", "apply": r})
        self.check_table(plan.many, pattern)

    def measure_cpu(self):
        """ballastd's CPU over cpu_s seconds with MANY backends and no checks
        (the reference), then with MANY tcp checks (and the failover VIP's
        three http checks); every check must pass throughout."""
        plan = self.plan
        # ballastd audits 1 s after a change: let the last apply's pass.
        time.sleep(plan.settle_s)
        idle = self.cpu_share(plan.cpu_s)
        path = write_config(self.state / "many-checked.yaml", self.world, plan, plan.many, "flat",
                            plan.many_check, True)
        warm_neighbours(self.world, [be.ip for be in self.world.backends[1:]])
        self.lb.cli("apply", "-f", str(path))
        # Every backend's first check passed (and be2..be4's): then measure.
        self.wait_health_all(MANY_VIP, plan.many, 10)
        self.wait_health_all(FO_VIP, 3, RESOLVE_LIMIT_S)
        time.sleep(plan.settle_s)
        accepted0 = self.listener.accepted
        before = self.check_summary(self.lb.cli("backend", "list"), MANY_VIP)
        busy = self.cpu_share(plan.cpu_s)
        after = self.check_summary(self.lb.cli("backend", "list"), MANY_VIP)
        self.cpu = {"idle": idle, "busy": busy, "seconds": plan.cpu_s, "before": before,
                    "after": after}
        log.info("ballastd CPU: idle %.5f, checking %.5f of a core; %s -> %s; %d checks accepted "
                 "by the listener meanwhile", idle, busy, json.dumps(before), json.dumps(after),
                 self.listener.accepted - accepted0)
        if after["down"] != 0 or after["not_ok"] != 0:
            raise Failure(f"while measuring, backends failed their checks: {json.dumps(after)}")

    def measure_failover(self, i):
        """Kills be2's server under a stream of new connections to FO_VIP,
        measures until be2 is out of the table and of the stream's answers,
        checks every connection after that succeeded on be3/be4, then (but
        after the last run) restarts be2 and waits for it to be back."""
        plan = self.plan
        be2 = self.world.backends[1]
        stop_file = self.state / f"stream{i}.json.stop"
        stop_file.unlink(missing_ok=True)
        stream = BackgroundClient(self.world, "--vip", VIP1, "--port", HTTP_PORT, "--stream", 50,
                                  "--timeout", 2, "--stop-file", stop_file)
        try:
            log.info("client (pid %d) started: stream of 50 a second to %s", stream.proc.pid, FO_VIP)
            time.sleep(plan.stream_s)
            t_kill = time.time()
            self.backends.kill(be2)
            try:
                t_poll, t_out = self.wait_backend(
                    FO_VIP, be2.ip, lambda b: b["table_entries"] == 0 and b["health"] == "down",
                    t_kill + 10)
            except Failure as exc:
                raise Failure(f"be2 still in rotation 10 s after its server died: {exc}") from None
            # New connections after it left: 50 a second.
            time.sleep(plan.stream_s)
            stop_file.touch()
            report = stream.stop()
        finally:
            stream.close()
        summary = {k: v for k, v in report.items() if k != "requests"}
        log.info("[client report] %s", json.dumps(summary))
        # Only the last seconds: the applies before logged thousands of
        # lines, more than one reply of the control socket holds (1 MiB).
        entries = self.lb.cli("log", "--since", "30s")
        if not isinstance(entries, list):
            raise Failure(f"ballast log -o json printed no JSON array: {json.dumps(entries)[:200]}")
        change = f"backend health {FO_VIP} {be2.ip} up -> down"
        log_ms = next((e["unix_ms"] for e in entries
                       if e["unix_ms"] >= t_kill * 1000 and e["change"].startswith(change)), None)
        if log_ms is None:
            raise Failure(f"ballast log has no '{change}' after the kill")
        result = failover_figures(report["requests"], t_kill, t_out, log_ms, t_poll)
        if isinstance(result, str):
            raise Failure(f"failover {i}: {result}")
        self.fails.append(result)
        log.info("failover %d: %s", i, json.dumps(result))
        if i >= plan.failovers:
            return
        self.backends.start(be2)
        try:
            seen = self.wait_backend(FO_VIP, be2.ip,
                                     lambda b: b["health"] == "up" and b["table_entries"] > 0,
                                     time.time() + BACK_LIMIT_S)
        except Failure as exc:
            raise Failure(f"not within {BACK_LIMIT_S}s: {exc}") from None
        log.info("%s in %s: up with table entries (seen at %.4f %.4f)", be2.ip, FO_VIP, *seen)


def failover_figures(reqs, t_kill, t_out, log_ms, t_poll):
    """One failover's figures from the stream's requests ([start, end,
    backend or "!error"]): a dict, or what was wrong (a string) when fewer
    than 10 connections started after be2 left the list, any of them failed
    or reached be2, or none reached be2 before the kill."""
    failed = [q for q in reqs if q[2].startswith("!")]
    after = [q for q in reqs if q[0] >= t_out]
    bad_after = [q for q in after if q[2].startswith("!") or q[2] == "be2"]
    if len(after) < 10 or bad_after:
        return (f"after be2 left: {len(after)} connections, {len(bad_after)} failed or on be2 "
                f"({bad_after[:3]})")
    before_kill = [q for q in reqs if q[0] < t_kill]
    if not any(q[2] == "be2" for q in before_kill):
        return "no connection reached be2 before the kill: nothing was failed over"
    last_bad = max((q[0] for q in reqs if q[0] >= t_kill and (q[2].startswith("!") or q[2] == "be2")),
                   default=t_kill)
    return {"log_s": log_ms / 1000 - t_kill, "list_s": t_out - t_kill,
            "list_poll_start_s": t_poll - t_kill,
            "last_failed_conn_s": last_bad - t_kill, "failed": len(failed),
            "requests": len(reqs), "after": len(after)}


def neighbour_table():
    """The kernel's IPv4 neighbour entries, machine-wide, and their limit:
    the table and its gc_thresh3 are shared by every namespace (other runs'
    included), and a full table leaves new backends unresolved."""
    lines = pathlib.Path("/proc/net/stat/arp_cache").read_text().splitlines()
    limit = pathlib.Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3").read_text().strip()
    return f"machine-wide ARP entries: {int(lines[1].split()[0], 16)}, gc_thresh3 {limit}"


# --- Report ----------------------------------------------------------------------

def report(bench, out_path):
    """control.json from the measurements (bench/report.py's format), and
    the tables printed."""
    plan = bench.plan
    many, few, quick = plan.many, FEW, plan.quick
    cpu_s, stream_s = float(plan.cpu_s), float(plan.stream_s)
    applies, mem, cpu, fails = bench.applies, bench.mem, bench.cpu, bench.fails

    def ms(s):
        return f"{s * 1000:.0f}" if s >= 0.1 else f"{s * 1000:.1f}"
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
        rows.append(row(f"{few} -> {many} backends, MACs known: new table live", [cold["apply"]],
                        "live_s"))
        rows.append(row(f"{few} -> {many} backends, MACs known: CLI returned", [cold["apply"]],
                        "cli_s"))
    else:
        rows.append(row(f"{few} -> {many} backends, MACs unknown: CLI returned", [cold["apply"]],
                        "cli_s"))
        rows.append(row(f"{few} -> {many} backends, MACs unknown: all in the live table",
                        [cold["settle"]], "settled_s"))
    during = sum(a["seen_during_cli"] for a in warm)
    med_live = statistics.median(a["live_s"] for a in warm)
    med_cli = statistics.median(a["cli_s"] for a in warm)
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
            + "The reference, measured side by side: applying the same config again, which changes "
            "nothing (no slot, no table, no log line) but runs the CLI, the request, the parse, the "
            "validation, the audit and the plan; **x no-op** is each median over that one. Times are "
            "wall-clock on a shared 2-core VM: they swing by 2x between runs, ratios much less; the "
            "maxima show the noise."),
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
                           ["difference, per check",
                            f"{(hz['busy'] - hz['idle']) * 100:.2f}% = {per_check_us:.1f} µs"]]}})

    # Memory.
    by_label = {m["label"]: m for m in mem}
    labels = list(by_label)
    mrows = []
    first = by_label[labels[0]]
    for m in first["maps"]:
        ents = m["max_entries"] or 1
        mrows.append([m["pin"], m["type"], f"{m['bytes_key']} + {m['bytes_value']}",
                      str(m["max_entries"]), f"{m['locked'] / 1048576:.2f}",
                      f"{m['locked'] / ents:.0f}"])
    totals = [[lbl, f"{sum(x['locked'] for x in by_label[lbl]['maps']) / 1048576:.1f}",
               f"{by_label[lbl]['rss_kib'] / 1024:.1f}", f"{by_label[lbl]['hwm_kib'] / 1024:.1f}"]
              for lbl in labels]
    conn = next((m for m in first["maps"] if m["pin"] == "conn_table"), None)
    inner = next((m for m in first["maps"] if m["pin"].startswith("(maglev")), None)
    # A bucket of ways of 16 bytes each (struct ballast_conn_way, bpf/ballast_abi.h).
    ways = conn["max_entries"] * (conn["bytes_value"] // 16) if conn else 0
    conn_txt = (f"The connection table is an array of {conn['max_entries']:,} buckets of "
                f"{conn['bytes_value']} bytes (a {conn['bytes_key']}-byte index as the key), one "
                f"cache line each, of {conn['bytes_value'] // 16} ways of 16 bytes: {ways:,} ways, one "
                f"tracked flow each. The kernel locks {conn['locked'] / 1048576:.1f} MiB for it, "
                f"{conn['locked'] / ways:.1f} bytes per way, allocated whole whatever it holds. "
                if conn else "")
    inner_txt = (f"Each VIP adds one Maglev inner map of {inner['max_entries']:,} entries "
                 f"({inner['locked'] / 1048576:.2f} MiB). " if inner else "")
    sections.append({
        "heading": "Memory",
        "text": (
            "Locked memory per map from `bpftool map show` (`bytes_memlock`: what the kernel charges "
            "for the map, at the sizes ballastd creates them) for every map ballastd pinned plus the "
            "Maglev inner maps `maglev_tables` holds; per entry = locked / max_entries. " + conn_txt
            + inner_txt + "Per-CPU maps hold one value per CPU (2 here), rounded to 8 bytes. Arrays "
            "and preallocated hashes cost the same whatever they hold; only `vips` (not "
            "preallocated) grows with use, so the total moves with the number of VIPs, not of "
            "backends or connections. ballastd's resident set (VmRSS) and its peak (VmHWM) from "
            "`/proc/PID/status`."),
        "table": {"columns": ["map", "type", "key + value bytes", "max entries", "locked MiB",
                              "bytes per entry"],
                  "rows": mrows},
    })
    sections.append({
        "heading": "Memory totals",
        "text": "All maps' locked memory and ballastd's RSS at each point of the run.",
        "table": {"columns": ["state", "maps locked MiB", "ballastd VmRSS MiB", "VmHWM MiB"],
                  "rows": totals}})
    if quick:
        for s in sections:
            s["text"] = (f"(--quick run: {many} backends, fewer repetitions, checks every 250 ms "
                         f"instead of the 1 s below.) " + s["text"])
    doc = {"bench": "control", "title": "Control plane: apply, failover, memory",
           "command": "bench/control_bench.py build", "order": 70, "sections": sections}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2)
    for s in sections:
        print(f"\n{s['heading']}")
        t = s["table"]
        widths = [max(len(str(c)) for c in col) for col in zip(t["columns"], *t["rows"])]
        for r in [t["columns"]] + t["rows"]:
            print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


# --- Main --------------------------------------------------------------------------

def resolve_build(build):
    """Relative to the current directory when it exists there, else to the
    repository root; absolute from here on."""
    path = pathlib.Path(build)
    return path.resolve() if path.is_dir() else (ROOT / build).resolve()


def run(build, plan, bench_out):
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
    state = pathlib.Path(tempfile.mkdtemp(prefix="ballast-bench-control-"))
    world = World(str(build), backends=4)
    backends = Backends(world, state)
    world.backend_servers = backends
    lb = Ballastd(world, state, build)
    listener = None
    log.info("run prefix %s, state in %s", world.prefix, state)
    try:
        world.build()
        backends.start_all()
        many_setup(world, plan)
        listener = CheckListener(world.backends[0])
        bench = Bench(world, backends, lb, plan, state, listener)

        # One VIP over FEW backends: memory and RSS at the small end.
        lb.start(write_config(state / "few.yaml", world, plan, FEW, "flat", None, False)
                 .read_text())
        bench.many_id = bench.vip_id(MANY_VIP)
        bench.wait_health_all(MANY_VIP, FEW, 10)
        bench.check_table(FEW, "flat")
        bench.measure_memory(f"1 VIP, {FEW} backends")

        bench.measure_apply()
        bench.measure_cpu()
        bench.measure_memory(f"2 VIPs, {plan.many + 3} backends, checked")
        for f in range(1, plan.failovers + 1):
            bench.measure_failover(f)
        report(bench, bench_out / "control.json")
    finally:
        # A second signal must not cut the teardown short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if listener is not None:
            listener.close()
        lb.close()
        backends.close()
        world.close()
        if os.environ.get("E2E_KEEP_STATE") == "1":
            log.info("state kept in %s (E2E_KEEP_STATE=1)", state)
        else:
            subprocess.run(["rm", "-rf", str(state)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="build", help="the build directory")
    parser.add_argument("--quick", action="store_true",
                        help="100 backends, fewer repetitions: the smoke run's steps and checks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    if os.geteuid() != 0:
        print("SKIP all: needs root (network namespaces, XDP)")
        return 0
    build = resolve_build(args.build)
    for needed in ("bpf/xdp_pass.bpf.o", "ballastd", "ballast", "tools/maglev_probe"):
        if not (build / needed).exists():
            print(f"FAIL setup: {build / needed} missing (run make first)")
            return 1
    bench_out = pathlib.Path(os.environ.get("BENCH_OUT") or build / "bench-results")
    bench_out.mkdir(parents=True, exist_ok=True)
    if shutil.which("bpftool") is None:
        log.error("FAIL: bpftool missing (scripts/install-deps.sh)")
        return 1
    # Signals unwind like an exception: the world is torn down on every exit path.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        run(build, Plan(args.quick), bench_out)
    except Failure as exc:
        log.error("FAIL: %s", exc)
        return 1
    except Interrupted as exc:
        log.error("interrupted (%s)", exc)
        return 128 + exc.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
