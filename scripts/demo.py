#!/usr/bin/python3
"""demo.py: Ballast in one screen.

Builds a private network (a client, the balancer and three backends on one
bridge, all in network namespaces: the end-to-end tests' world,
tests/e2e/harness/world.py), starts ballastd with weights 1:1:2, sends 1,000
real HTTP requests to the VIP, each its own TCP connection from its own
source port, and prints, per backend, the weight, the share it should get,
the share the client saw, and what the balancer itself counted. Then shows
`ballast skew`, `ballast top`, `ballast audit` and the skew metrics, and
removes everything it made, on every exit path (Ctrl-C and SIGTERM
included).

Usage: scripts/demo.py [--build-dir BUILD]    (as root; make demo runs it)
"""

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/e2e"))

from harness.configs import config, vip  # noqa: E402
from harness.processes import Backends, Ballastd, client  # noqa: E402
from harness.world import HTTP_PORT, UDP_PORT, VIP1, World  # noqa: E402

REQUESTS = 1000
WEIGHTS = [1, 1, 2]
SKEW_WINDOW = "60s"        # long enough to hold the whole demo's traffic
SOURCE_PORT_BASE = 20000   # below the kernel's ephemeral range: one port per request
METRICS_URL = "http://127.0.0.1:9469/metrics"


def table(world, report, stats):
    """The operator's view: weight, expected share, what the client saw,
    what ballast counted, skew."""
    name = f"{VIP1}:{HTTP_PORT}/tcp"
    v = next((v for v in stats["vips"] if v["vip"] == name), {"backends": [], "new_flows": 0})
    counted = {b["address"]: b for b in v["backends"]}
    ok = report["ok"]
    lines = [f"VIP {name}: {ok} answered, {report['failed']} failed, "
             f"{report['elapsed_s']:.1f} s", ""]
    head = (f"{'backend':8} {'address':12} {'weight':>6} {'expected':>9} "
            f"{'client saw':>11} {'ballast new_flows':>18} {'skew':>6}")
    lines += [head, "-" * len(head)]
    for be, w in zip(world.backends, WEIGHTS):
        seen = report["by_backend"].get(be.name, 0)
        b = counted.get(be.ip, {})
        skew = b.get("skew")
        lines.append(f"{be.name:8} {be.ip:12} {w:6} {w / sum(WEIGHTS):9.1%} "
                     f"{seen / ok if ok else 0:11.1%} {b.get('new_flows', '?'):>18} "
                     f"{'-' if skew is None else format(skew, '.2f'):>6}")
    lines.append("-" * len(head))
    lines.append(f"{'total':8} {'':12} {sum(WEIGHTS):6} {1:9.1%} {1 if ok else 0:11.1%} "
                 f"{v['new_flows']:>18}")
    lines += ["", "expected = weight / total weight; client saw = answers from that backend / "
              "all answers;", "new_flows = connections ballast sent there; skew = its observed "
              "share / expected share (1.00 = exact)."]
    return "\n".join(lines)


def shell(lb, title, *args):
    """Prints `$ ballast ARGS` and its human output (not JSON)."""
    print(f"\n$ ballast {' '.join(args)}{'      ' if title else ''}{title}")
    done = subprocess.run([f"{lb.build_dir}/ballast", *args, "--socket", lb.socket],
                          capture_output=True, text=True)
    sys.stdout.write(done.stdout + done.stderr)


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo.py: run as root (it creates network namespaces and attaches XDP)")
    signal.signal(signal.SIGTERM, interrupted)
    build = pathlib.Path(args.build_dir).resolve()
    if subprocess.run(["mountpoint", "-q", "/sys/fs/bpf"]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)
    state = pathlib.Path(tempfile.mkdtemp(prefix="ballast-demo-"))
    world = World(str(build))
    backends = Backends(world, state)
    world.backend_servers = backends
    lb = Ballastd(world, state, build)
    try:
        world.build()
        backends.start_all()
        print(f"Network: client {world.client.ip} -> VIP {VIP1} (routed via the balancer "
              f"{world.lb.ip}, XDP, L2 direct server return) -> backends "
              f"{' '.join(b.ip for b in world.backends)}, which answer the client directly.")
        text = config(vip(world, HTTP_PORT, "tcp", WEIGHTS), vip(world, UDP_PORT, "udp", WEIGHTS))
        text += f"skew: {{window: {SKEW_WINDOW}}}\n"
        print("ballastd config:")
        print("".join(f"  {line}\n" for line in text.splitlines()), end="")
        lb.start(text)
        report = client(world, "--vip", VIP1, "--port", HTTP_PORT, "--proto", "tcp",
                        "-n", REQUESTS, "--sport-base", SOURCE_PORT_BASE)
        print("\n" + table(world, report, lb.cli("stats")))
        time.sleep(1.2)   # the next skew sample (one a second)
        shell(lb, f"(the last {SKEW_WINDOW} of traffic against the weights)", "skew")
        shell(lb, "(the live view; without -n it refreshes until Ctrl-C)", "top", "-n", "1")
        shell(lb, "(ballastd checks itself; exit 1 on any error)", "audit")
        print(f"\nPrometheus metrics: curl {METRICS_URL} inside the balancer's namespace:")
        metrics = world.lb.run(["curl", "-s", METRICS_URL])
        for line in metrics.splitlines():
            if line.startswith(("ballast_backend_skew_ratio", "ballast_vip_skew_ratio")) \
                    and 'measure="bytes"' not in line:
                print(f"  {line}")
        return 0 if report["failed"] == 0 else 1
    finally:
        lb.close()
        backends.close()
        world.close()
        subprocess.run(["rm", "-rf", str(state)])


if __name__ == "__main__":
    sys.exit(main())
