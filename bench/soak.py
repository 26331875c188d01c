#!/usr/bin/python3
"""make soak: ballastd under a long mix of everything an operator's day
brings, sampled for growth. Not a test: it measures and prints.

For --minutes (default 30) on the end-to-end harness's world (client,
balancer, three backends in namespaces; tests/e2e/harness):
  - traffic: the client opens 50 connections a second to a TCP VIP, and
    sends 20 datagrams a second (new source ports) to a UDP VIP;
  - changes: every 5 s a whole config is applied (weights rotate), so
    every apply rebuilds the tables; and weight changes through the control
    API at the rate that fills the change log to its 10,000-entry cap in
    the first 40 % of the run (14 a second in 30 minutes), so the soak shows
    it staying there;
  - health flaps: every 10 s be3's health path toggles between failing
    and passing (checks every 200 ms);
  - reads: every 2 s status, stats, skew, backend list, vip list, audit,
    log, and a backend's active-flow count (the flow census).
Every 10 s it samples ballastd's RSS and open descriptors, the live flows
the census counts, the change log's entries and its journal file's size.

Writes BUILD/soak/soak.csv, plots docs/bench/soak.png, and prints each
measure's first, middle and last values with a verdict: flat when the last
third's median is within 10 % (descriptors and entries: equal) of the
middle third's, after warm-up (the change log fills to its 10,000-entry
cap, the conn table to what the traffic keeps alive).
"""

import argparse
import csv
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/e2e"))

from harness.api import call  # noqa: E402
from harness.configs import config, vip  # noqa: E402
from harness.processes import Backends, BackgroundClient, Ballastd  # noqa: E402
from harness.world import HTTP_PORT, UDP_PORT, VIP1, World  # noqa: E402

CHECK = "{type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 2, fall: 2}"
ROTATION = ([2, 2, 3], [3, 2, 2], [2, 3, 2])
LOG_CAP = 10000   # the change log's entries (docs/operations.md)


def sample(lb, world, t0):
    pid = lb.proc.pid
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    rss = int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS:")))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    flows = 0
    for be in world.backends:
        reply = call(lb.socket, {"command": "backend.flows",
                                 "args": {"vip": f"{VIP1}:{HTTP_PORT}/tcp", "address": be.ip}})
        flows += (reply.get("result") or {}).get("flows") or 0
    log_entries = len(lb.cli("log"))
    journal = sum(p.stat().st_size for p in pathlib.Path("/run/ballast").glob(
        f"ballastd-pins-*{world.prefix}*.changes"))
    return {"t_s": round(time.monotonic() - t0, 1), "rss_kib": rss, "fds": fds,
            "live_flows": flows, "log_entries": log_entries, "journal_bytes": journal}


def verdict(rows, key, exact):
    third = len(rows) // 3
    if third < 2:
        return "too short"
    middle = statistics.median(r[key] for r in rows[third:2 * third])
    last = statistics.median(r[key] for r in rows[2 * third:])
    if exact:
        return "flat" if last <= middle else f"GROWING ({middle} -> {last})"
    return "flat" if last <= middle * 1.10 + 1 else f"GROWING ({middle:.0f} -> {last:.0f})"


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [("rss_kib", "RSS (KiB)"), ("fds", "open descriptors"),
            ("live_flows", "live flows (census)"), ("log_entries", "change-log entries"),
            ("journal_bytes", "change journal (bytes)")]
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2 * len(keys)), sharex=True)
    t = [r["t_s"] / 60 for r in rows]
    for ax, (key, label) in zip(axes, keys):
        ax.plot(t, [r[key] for r in rows])
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle("ballastd under make soak: traffic, applies every 5 s, health flaps, reads")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--plot", default=str(ROOT / "docs/bench/soak.png"))
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the world is torn down on every exit path.
    signal.signal(signal.SIGTERM, interrupted)
    build = pathlib.Path(args.build_dir).resolve()
    out_dir = build / "soak"
    out_dir.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)

    world = World(str(build))
    backends = Backends(world, out_dir)
    world.backend_servers = backends
    lb = Ballastd(world, out_dir, build)
    rows, traffic = [], []
    try:
        world.build()
        backends.start_all()
        configs = [config(vip(world, HTTP_PORT, weights=w, check=CHECK),
                          vip(world, UDP_PORT, proto="udp", weights=w)) for w in ROTATION]
        lb.start(configs[0])
        seconds = args.minutes * 60
        traffic = [
            BackgroundClient(world, "--vip", VIP1, "--port", HTTP_PORT, "--stream", 50,
                             "--duration", seconds + 60, "--timeout", 3),
            BackgroundClient(world, "--vip", VIP1, "--port", UDP_PORT, "--proto", "udp",
                             "--stream", 20, "--duration", seconds + 60, "--timeout", 3)]
        control = backends.control(world.backends[2])
        changes_per_s = -(-LOG_CAP // int(0.4 * seconds))   # rounded up
        t0 = time.monotonic()
        tick = 0
        while time.monotonic() - t0 < seconds:
            if tick % 5 == 0:
                path = out_dir / "apply.yaml"
                path.write_text(configs[(tick // 5) % len(configs)])
                lb.cli("apply", "-f", str(path), "--force")
            if tick % 10 == 0:
                control.write_text("sick\n" if (tick // 10) % 2 == 0 else "up\n")
            for i in range(changes_per_s):
                call(lb.socket, {"command": "backend.set_weight", "args": {
                    "vip": f"{VIP1}:{HTTP_PORT}/tcp", "address": world.backends[0].ip,
                    "weight": 2 + i % 2, "force": True}})
            if tick % 2 == 0:
                for args_ in (["status"], ["stats"], ["skew"], ["backend", "list"],
                              ["vip", "list"], ["log"]):
                    lb.cli(*args_)
                subprocess.run([f"{build}/ballast", "audit", "--socket", lb.socket],
                               capture_output=True)
            if tick % 10 == 0:
                rows.append(sample(lb, world, t0))
                print(json.dumps(rows[-1]), flush=True)
            tick += 1
            time.sleep(max(0.0, t0 + tick - time.monotonic()))
        reports = [c.stop(timeout_s=120) for c in traffic]
        traffic = []
    finally:
        for c in traffic:
            c.close()
        lb.close()
        backends.close()
        world.close()

    with open(out_dir / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.plot)
    print(f"\nsoak: {args.minutes:g} min, {len(rows)} samples; traffic: "
          + "; ".join(f"{r['ok']} ok, {r['failed']} failed" for r in reports))
    print(f"{'measure':16} {'first':>10} {'middle':>10} {'last':>10}  verdict")
    for key, exact in (("rss_kib", False), ("fds", True), ("live_flows", False),
                       ("log_entries", True), ("journal_bytes", False)):
        mid = rows[len(rows) // 2][key]
        said = verdict(rows, key, exact)
        if key == "log_entries" and rows[-1][key] == LOG_CAP:
            said = f"flat at its cap ({LOG_CAP})"
        rewrites = sum(1 for a, b in zip(rows, rows[1:]) if b[key] < a[key])
        if key == "journal_bytes" and rewrites:
            # The journal is rewritten with the newest entries at twice the
            # log's cap: a sawtooth, bounded by its peak.
            said = f"bounded: rewritten {rewrites} time(s), peak {max(r[key] for r in rows)}"
        print(f"{key:16} {rows[0][key]:>10} {mid:>10} {rows[-1][key]:>10}  {said}")
    print(f"wrote {out_dir / 'soak.csv'} and {args.plot}")


if __name__ == "__main__":
    main()
