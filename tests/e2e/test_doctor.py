"""`ballast doctor` end to end (docs/operations.md, "ballast doctor").
Two bare backends (no VIP on lo, the kernel's default sysctls, no decap
program) are nodes of this suite's own on the segment: the doctor must find
what is wrong, exit 1, and print fixes that, run as printed in the node,
make the next run exit 0 with nothing but oks. Then the balancer role,
before and with a running ballastd.

    netns P-bd   dsr backend   eth0 10.231.0.21/24 --+
    netns P-bi   ipip backend  eth0 10.231.0.22/24 --+-- the world's bridge
    netns P-lb   ballastd      eth0 10.231.0.3/24  --+

Each finding's logic (every sysctl value, prefix, MTU, program and pin
case) is GoogleTest's (tests/unit/doctor_test.cpp, over fake host facts);
here the facts are a real kernel's and the fixes really run.
"""

import json
import logging
import os
import subprocess
import time

import pytest

from harness.processes import Failure
from harness.world import HTTP_PORT, VIP1, VIP2

log = logging.getLogger("e2e")

# One backend of the world's own: the doctor's backends are the two below.
WORLD = {"backends": 1}
DSR_IP = "10.231.0.21"
IPIP_IP = "10.231.0.22"


@pytest.fixture(scope="module")
def bare(world):
    """The two bare backends, on the bridge as any node, with nothing set up
    for Ballast."""
    return world.add_node("bd", DSR_IP), world.add_node("bi", IPIP_IP)


def doctor(node, build_dir, *args):
    """`ballast doctor ARGS -o json` in @node: (exit status, findings). The
    exit status is the doctor's verdict."""
    done = subprocess.run(node.exec_argv([str(build_dir / "ballast"), "doctor", *args,
                                          "-o", "json"]),
                          capture_output=True, text=True)
    try:
        findings = json.loads(done.stdout)["findings"]
    except (ValueError, KeyError):
        raise Failure(f"doctor {' '.join(args)} exited {done.returncode} without findings: "
                      f"{done.stdout[:200]} {done.stderr.strip()[-300:]}")
    log.info("doctor %s in %s: exit %d, %s", " ".join(args), node.name, done.returncode,
             summary(findings))
    return done.returncode, findings


def summary(findings):
    """"severity check" of every finding not ok, or "all ok"."""
    return "; ".join(f"{f['severity']} {f['check']}" for f in findings
                     if f["severity"] != "ok") or "all ok"


def has(findings, check, severity, fix_prefix):
    return any(f["check"] == check and f["severity"] == severity
               and f["fix"].startswith(fix_prefix) for f in findings)


def apply_fixes(node, build_dir, findings):
    """Runs in @node, as printed and in order, the fix of every error and
    warning (with the built ballast first on PATH). An error's fix with a
    <PLACEHOLDER> cannot be run as printed: a failure; a warning's is left."""
    unrunnable = [f"{f['check']}: {f['fix']}" for f in findings
                  if f["severity"] == "error" and "<" in f["fix"]]
    assert not unrunnable, f"fixes that cannot be run as printed: {unrunnable}"
    path = f"{build_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    for f in findings:
        if f["severity"] == "ok" or not f["fix"] or "<" in f["fix"]:
            continue
        log.info("applying in %s: %s", node.name, f["fix"])
        done = subprocess.run(node.exec_argv(["env", f"PATH={path}", "bash", "-c", f["fix"]]),
                              capture_output=True, text=True)
        assert done.returncode == 0, \
            f"fix failed in {node.name} (exit {done.returncode}): {f['fix']}: {done.stderr.strip()}"


def assert_clean(rc, findings, what):
    assert (rc, summary(findings)) == (0, "all ok"), \
        f"{what}: exit {rc}, {summary(findings)}; want exit 0, all ok"


def test_backend_dsr(bare, build_dir):
    """A bare dsr backend: exit 1 with the arp_ignore, arp_announce and
    VIP-on-lo errors, each with its fix, and the text output shows the
    arp_ignore error with its fix under it. After every fix printed has
    run, exit 0 with nothing but oks; and without --vip the doctor takes
    the VIPs from lo: the one just added."""
    node = bare[0]
    rc, findings = doctor(node, build_dir, "backend", "--mode", "dsr", "--vip", VIP1)
    assert rc == 1, f"bare dsr backend: exit {rc}, want 1: {summary(findings)}"
    for check, fix in (("arp-ignore", "sysctl -w net.ipv4.conf.all.arp_ignore=1"),
                       ("arp-announce", "sysctl -w net.ipv4.conf.all.arp_announce=2"),
                       ("vip-on-lo", f"ip addr add {VIP1}/32 dev lo")):
        assert has(findings, check, "error", fix), \
            f"no {check} error with the fix '{fix}': {findings}"
    text = subprocess.run(node.exec_argv([str(build_dir / "ballast"), "doctor", "backend",
                                          "--mode", "dsr", "--vip", VIP1]),
                          capture_output=True, text=True).stdout
    at = text.find("ERROR arp-ignore")
    assert at >= 0 and text.find("fix: sysctl -w net.ipv4.conf.all.arp_ignore=1", at) > at, \
        f"the text output lacks the arp-ignore error with its fix under it: {text}"

    apply_fixes(node, build_dir, findings)
    rc, findings = doctor(node, build_dir, "backend", "--mode", "dsr", "--vip", VIP1)
    assert_clean(rc, findings, "after the fixes")
    rc, findings = doctor(node, build_dir, "backend", "--mode", "dsr")
    assert_clean(rc, findings, "VIPs from lo")
    assert f"{VIP1}/32 is on lo" in json.dumps(findings), f"VIPs from lo: {VIP1} not checked"


def test_backend_ipip(bare, build_dir):
    """A bare ipip backend: exit 1 with the decap-attached error (fix:
    `ballast decap attach eth0 --vip VIP1`) and the MTU warning naming 1520
    and 1480; after the fixes, exit 0, all ok, and `ballast decap status`
    lists VIP1. A second VIP the decap program does not hold is a
    decap-vips error whose fix (one attach with both VIPs) clears it; so is
    GUE on a port (5555) other than the decap program's (6080)."""
    node = bare[1]
    rc, findings = doctor(node, build_dir, "backend", "--mode", "ipip", "--vip", VIP1)
    assert rc == 1, f"bare ipip backend: exit {rc}, want 1: {summary(findings)}"
    assert has(findings, "decap-attached", "error", f"ballast decap attach eth0 --vip {VIP1}"), \
        f"no decap-attached error with its fix: {findings}"
    assert has(findings, "mtu", "warn", "ip link set dev eth0 mtu 1520"), \
        f"no mtu warning stating 1520: {findings}"
    assert "over 1480 bytes will be answered with ICMP too big" in json.dumps(findings), \
        "the mtu finding does not name 1480"
    apply_fixes(node, build_dir, findings)
    rc, findings = doctor(node, build_dir, "backend", "--mode", "ipip", "--vip", VIP1)
    assert_clean(rc, findings, "after the fixes")
    status = subprocess.run(node.exec_argv([str(build_dir / "ballast"), "decap", "status", "eth0",
                                            "-o", "json"]), capture_output=True, text=True)
    assert f'"{VIP1}"' in status.stdout, \
        f"decap status does not list {VIP1} after the doctor's fix: {status.stdout}"

    two = ("backend", "--mode", "ipip", "--vip", VIP1, "--vip", VIP2)
    rc, findings = doctor(node, build_dir, *two)
    assert rc == 1, f"a VIP missing from decap: exit {rc}, want 1: {summary(findings)}"
    assert has(findings, "decap-vips", "error",
               f"ballast decap attach eth0 --vip {VIP1} --vip {VIP2}"), \
        f"no decap-vips error with its fix: {findings}"
    apply_fixes(node, build_dir, findings)
    rc, findings = doctor(node, build_dir, *two)
    assert_clean(rc, findings, "two VIPs after the fixes")

    gue = ("backend", "--mode", "gue", "--gue-port", "5555")
    rc, findings = doctor(node, build_dir, *gue)
    assert rc == 1, f"gue on port 5555: exit {rc}, want 1: {summary(findings)}"
    assert has(findings, "decap-gue-port", "error",
               f"ballast decap attach eth0 --vip {VIP1} --vip {VIP2} --gue-port 5555"), \
        f"no decap-gue-port error with its fix: {findings}"
    assert "takes GUE on UDP port 6080, but the VIPs send it to port 5555" in json.dumps(findings), \
        "the decap-gue-port finding does not name both ports"
    apply_fixes(node, build_dir, findings)
    rc, findings = doctor(node, build_dir, *gue)
    assert_clean(rc, findings, "gue after the fixes")


def test_balancer(world, bare, lb, build_dir):
    """The balancer role. Before ballastd: exit 1, with the xdp-program and
    ballastd-api errors whose fix starts ballastd with the config. With
    ballastd running a dsr VIP and an ipip VIP over the two backends (both
    MACs resolved): exit 0, with exactly these findings: bpffs, program (in
    native mode), pins (naming the pin dir), API, config ok; one route and
    one neighbour ok per backend; a warning for the veth peer in another
    namespace and one for the ipip MTU (packets over 1480 bytes)."""
    backends = "[{address: %s}, {address: %s}]" % tuple(n.ip for n in bare)
    text = (f"interface: eth0\nattach_mode: native\nvips:\n"
            f"  - {{address: {VIP1}, port: {HTTP_PORT}, protocol: tcp, mode: dsr, "
            f"backends: {backends}}}\n"
            f"  - {{address: {VIP2}, port: {HTTP_PORT}, protocol: tcp, mode: ipip, "
            f"backends: {backends}}}\n")
    cfg = lb.write_config(text)
    rc, findings = doctor(world.lb, build_dir, "balancer", "--config", str(cfg), "-s", lb.socket)
    assert rc == 1, f"balancer without ballastd: exit {rc}, want 1: {summary(findings)}"
    for check in ("xdp-program", "ballastd-api"):
        assert has(findings, check, "error", f"ballastd --config {cfg}"), \
            f"no {check} error whose fix starts ballastd: {findings}"

    lb.start(text)
    # ballastd asks the kernel for both backends' MACs at start.
    deadline = time.monotonic() + 10
    while not all(r["resolved"] for r in lb.cli("backend", "list", f"{VIP1}:{HTTP_PORT}/tcp")):
        if time.monotonic() > deadline:
            raise Failure("the backends' MACs not resolved within 10 s: "
                          f"{lb.cli('backend', 'list')}")
        time.sleep(0.1)
    rc, findings = doctor(world.lb, build_dir, "balancer", "-s", lb.socket)
    assert rc == 0, f"balancer with ballastd: exit {rc}, want 0: {summary(findings)}"
    severities = {}
    for f in findings:
        severities.setdefault(f["check"], []).append(f["severity"])
    want = {"bpffs": ["ok"], "xdp-program": ["ok"], "pinned-maps": ["ok"],
            "ballastd-api": ["ok"], "veth-peer": ["warn"], "config": ["ok"],
            "route": ["ok", "ok"], "neighbour": ["ok", "ok"], "mtu": ["warn"]}
    assert severities == want, f"findings {severities}, want {want}"
    message = {f["check"]: f["message"] for f in findings}
    assert "in native mode" in message["xdp-program"], message["xdp-program"]
    assert lb.pin_dir in message["pinned-maps"], message["pinned-maps"]
    assert "packets over 1480 bytes will be answered with ICMP too big" in message["mtu"], \
        message["mtu"]
    # The example for docs/operations.md.
    example = subprocess.run(world.lb.exec_argv([str(build_dir / "ballast"), "doctor",
                                                 "balancer", "-s", lb.socket]),
                             capture_output=True, text=True)
    log.info("ballast doctor balancer:\n%s", example.stdout)
