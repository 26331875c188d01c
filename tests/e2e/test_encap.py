"""The ipip forwarding mode end to end (docs/operations.md, "Forwarding
modes"): real TCP connections from the client through the balancer, which
wraps each packet in IPv4-in-IPv4 to the backend's address, to backends
whose own XDP program (`ballast decap attach`) strips it and passes the
client's packet up; the backends answer the client directly from the VIP.

Shares: 3,000 connections over 1:1:2, 4 sd per share (harness/checks.py):
weights applied as 1:1:1.5 fail it.
"""

import subprocess

from harness.checks import assert_all_ok, assert_shares
from harness.configs import config, vip
from harness.processes import batch, decap_attach_all, decapped, run_ok
from harness.world import HTTP_PORT, VIP1

N = 3000


def ipip_config(world, weights, mode="ipip"):
    """VIP1:80/tcp over be1..be3 with @weights, forwarded in @mode."""
    return config(vip(world, HTTP_PORT, weights=weights, mode=mode))


def test_ipip_tcp(world, lb):
    """Every connection through ipip succeeds, by the weights; every
    backend's decap program stripped at least 3 packets (SYN, ACK, request)
    per connection it served; the balancer counted tx_encap_ipip, no plain
    dsr and no failed encapsulation."""
    decap_attach_all(world)
    lb.start(ipip_config(world, [1, 1, 2]))
    world.backend_servers.reset_counts()
    report = batch(world, N)
    assert_all_ok(report, N)
    assert_shares(report, {"be1": 1, "be2": 1, "be3": 2})
    for be in world.backends:
        served = world.backend_servers.served(be, "tcp", VIP1, HTTP_PORT)
        stripped = decapped(be)
        assert stripped >= 3 * served, \
            f"{be.name}: decap stripped {stripped} packets for {served} connections"
    reasons = {r["reason"]: r["packets"] for r in lb.cli("stats")["reasons"]}
    assert reasons.get("tx_encap_ipip", 0) > 0 and not reasons.get("tx_forwarded") \
        and not reasons.get("drop_encap_failed"), reasons


def test_mode_switch_live(world, lb):
    """Switching the VIP between dsr and ipip on live traffic is one map
    write: connections before and after both succeed."""
    decap_attach_all(world)
    lb.start(ipip_config(world, [1, 1, 1], mode="dsr"))
    assert_all_ok(batch(world, 100), 100)
    path = lb.write_config(ipip_config(world, [1, 1, 1]))
    out = run_ok([f"{lb.build_dir}/ballast", "apply", "-f", str(path), "--socket", lb.socket])
    assert f"vip options {VIP1}:{HTTP_PORT}/tcp: mode dsr -> ipip" in out.splitlines(), out
    before = decapped(world.backends[0])
    assert_all_ok(batch(world, 100), 100)
    assert decapped(world.backends[0]) > before, "be1 decapsulated nothing after the switch"


def test_decap_cli_errors(world, lb):
    """attach refuses a foreign XDP program, detach leaves one alone, and a
    bad --vip is named."""
    be = world.backends[0]
    run_ok(["ip", "-n", be.ns, "link", "set", "dev", "eth0", "xdpdrv", "obj",
            f"{world.build_dir}/bpf/xdp_pass.bpf.o", "sec", "xdp"])

    def refused(*args):
        done = subprocess.run(be.exec_argv([f"{world.build_dir}/ballast", *args]),
                              capture_output=True, text=True)
        assert done.returncode == 1, f"ballast {' '.join(args)} exited {done.returncode}"
        return done.stdout + done.stderr

    assert "another XDP program (xdp_pass," in refused("decap", "attach", "eth0")
    assert "not Ballast's decap program; left alone" in refused("decap", "detach", "eth0")
    run_ok(["ip", "-n", be.ns, "link", "set", "dev", "eth0", "xdpdrv", "off"])
    assert "--vip 'nonsense' is not an IP address" in refused(
        "decap", "attach", "eth0", "--vip", "10.231.255.1", "--vip", "nonsense")
