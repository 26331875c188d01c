"""The data plane's less travelled paths end to end (docs/dataplane.md),
with real sockets in the world's namespaces:

- a TCP request too big to encapsulate: the balancer answers the client
  with ICMP "fragmentation needed", the client's kernel lowers its path MTU
  and resends, and the request succeeds;
- fragmented UDP datagrams to a VIP with `fragments: true` all reach one
  backend, which reassembles and answers them; whole datagrams still spread
  by the weights; without the option fragments are the balancer's kernel's
  (and nobody answers);
- a backend behind another interface of the balancer: frames leave by
  XDP_REDIRECT through the tx_ports devmap, and connections succeed.

Shares: 3,000 new flows (each from its own source port), 4 sd per share
(harness/checks.py): over 1:1:2 weights applied as 1:1:1.5 fail, over 1:1
weights applied as 1:1.5 (40/60 %) do.
"""

import logging
import socket
import time

import pytest
from pyroute2 import NetNS

from harness import maps
from harness.checks import assert_all_ok, assert_shares
from harness.configs import config
from harness.counters import delta, reasons
from harness.processes import ballast_on, batch, decap_attach_all, decapped, run_ok
from harness.world import HTTP_PORT, UDP_PORT, VIP1, VIP2, inside, sysctl

log = logging.getLogger("e2e")

N = 3000
# The fourth backend, on the balancer's second interface (eth1).
B4_LB_IP = "10.232.0.1"
B4_IP = "10.232.0.2"
# The client's link MTU, and what fits once the lb adds a 20-byte IPv4 header.
LINK_MTU = 1500
IPIP_MTU = LINK_MTU - 20


def vip_entry(address, port, proto, backends, **fields):
    """One entry of `vips:`: @backends is [(address, weight)]; each keyword is
    one more field of the VIP."""
    text = f"  - address: {address}\n    port: {port}\n    protocol: {proto}\n"
    text += "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return text + "    backends: [" + ", ".join(
        f"{{address: {a}, weight: {w}}}" for a, w in backends) + "]\n"


def weighted(world, weights):
    return [(be.ip, w) for be, w in zip(world.backends, weights)]


def flush_route_cache(node):
    """The node's learnt path MTUs forgotten (`ip route flush cache`)."""
    sysctl(node.ns, {"net.ipv4.route.flush": 1})


@pytest.fixture(autouse=True)
def fresh_client_routes(world):
    """Every test starts, and leaves, the client with no learnt path MTU:
    it starts from the link's MTU, as a fresh host would."""
    flush_route_cache(world.client)
    yield
    flush_route_cache(world.client)


def big_requests(world, n, pad):
    """n HTTP requests to VIP1 from the client, each with a header of @pad
    bytes (so the request spans several full-size TCP segments): one
    result per request, "ok" or what went wrong."""
    out = []
    for i in range(n):
        start, step = time.monotonic(), "connect"
        try:
            with inside(world.client.ns):
                s = socket.create_connection((VIP1, HTTP_PORT), timeout=5)
            with s:
                step = "send"
                s.sendall(b"GET / HTTP/1.0\r\nX-Pad: " + b"p" * pad + b"\r\n\r\n")
                step = "answer"
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            out.append("ok" if answer.startswith(b"HTTP/1.0 200") else f"bad answer {answer[:40]!r}")
        except OSError as e:
            out.append(f"request {i}: {step}: {e} after {time.monotonic() - start:.1f} s")
    return out


def route_mtu(node, dst):
    """The path MTU @node's kernel holds for @dst (None: none learnt)."""
    with NetNS(node.ns) as ipr:
        metrics = ipr.route("get", dst=dst)[0].get_attr("RTA_METRICS")
    return metrics.get_attr("RTAX_MTU") if metrics else None


def test_too_big_is_answered(world, lb):
    """20 requests of 6,000 bytes over ipip from a client that starts at
    MTU 1500: its 1,500-byte segments do not fit once encapsulated, the
    balancer answers them with ICMP "fragmentation needed" quoting 1480
    (tx_icmp_too_big, never drop_mtu_exceeded), and the client resends in
    smaller segments: every request succeeds, each served once by a
    backend, and the client's route to VIP1 now holds mtu 1480. A balancer
    that dropped the segment or quoted another MTU fails it."""
    decap_attach_all(world)
    lb.start(config(vip_entry(VIP1, HTTP_PORT, "tcp", weighted(world, [1, 1, 1]), mode="ipip")))
    world.backend_servers.reset_counts()
    assert route_mtu(world.client, VIP1) is None, "the client starts with a learnt path MTU"
    results = big_requests(world, 20, 6000)
    assert results.count("ok") == 20, \
        f"{results.count('ok')} of 20 big requests succeeded: " \
        f"{[r for r in results if r != 'ok']}; reasons {reasons(lb)}; " \
        f"client's path MTU {route_mtu(world.client, VIP1)}"
    served = sum(world.backend_servers.served(be, "tcp", VIP1, HTTP_PORT) for be in world.backends)
    assert served == 20, f"the backends served {served} of the 20 big requests"
    r = reasons(lb)
    assert r.get("tx_icmp_too_big", 0) >= 1, f"no ICMP too big was sent: {r}"
    assert not r.get("drop_mtu_exceeded"), f"drop_mtu_exceeded {r['drop_mtu_exceeded']}"
    mtu = route_mtu(world.client, VIP1)
    assert mtu == IPIP_MTU, f"the client's route to {VIP1} has mtu {mtu}, want {IPIP_MTU}"


def udp_big(world, n, size):
    """n datagrams of @size bytes to VIP1's UDP port, each from a new socket
    (a new source port): the answering backend's name per datagram, or
    "timeout"."""
    out = []
    for _ in range(n):
        with inside(world.client.ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.settimeout(1.0)
            s.connect((VIP1, UDP_PORT))
            s.send(b"x" * size)
            try:
                out.append(s.recv(2048).decode().strip())
            except socket.timeout:
                out.append("timeout")
    return out


def test_fragments_reach_one_backend(world, lb):
    """30 datagrams of 3,000 bytes (3 fragments each over MTU 1500), each
    from its own port, to a `fragments: true` VIP: every one reassembled and
    answered (so all fragments of each reached one backend), all by the same
    backend (the fragments of one client go by addresses alone), and every
    fragment counted tx_fragment. 3,000 small datagrams to the same VIP
    spread by their 5-tuples over 1:1:2, a share check that tells it from
    1:1:1.5. Applied without the option, fragments pass to the balancer's
    kernel (pass_ip_fragment, none tx_fragment): nobody answers."""
    weights = weighted(world, [1, 1, 2])
    lb.start(config(vip_entry(VIP1, UDP_PORT, "udp", weights, fragments="true")))
    before = reasons(lb)
    answers = udp_big(world, 30, 3000)
    assert "timeout" not in answers, \
        f"{30 - answers.count('timeout')} of 30 fragmented datagrams answered: {answers}"
    assert len(set(answers)) == 1, \
        f"fragmented datagrams from one client reached several backends: {sorted(set(answers))}"
    frags = delta(reasons(lb), before).get("tx_fragment", 0)
    assert frags >= 90, f"tx_fragment {frags} for 30 datagrams of 3 fragments, want at least 90"

    small = batch(world, N, proto="udp")
    assert_all_ok(small, N)
    assert_shares(small, {"be1": 1, "be2": 1, "be3": 2})

    path = lb.write_config(config(vip_entry(VIP1, UDP_PORT, "udp", weights)))
    out = run_ok([f"{lb.build_dir}/ballast", "apply", "-f", str(path), "--socket", lb.socket])
    assert f"vip options {VIP1}:{UDP_PORT}/udp: fragments off" in out.splitlines(), out
    before = reasons(lb)
    answers = udp_big(world, 5, 3000)
    assert answers == ["timeout"] * 5, f"fragments answered without fragments: true: {answers}"
    moved = delta(reasons(lb), before)
    assert moved.get("pass_ip_fragment", 0) >= 15 and not moved.get("tx_fragment"), \
        f"5 datagrams of 3 fragments without the option: reasons moved {moved}, " \
        f"want pass_ip_fragment at least 15 and no tx_fragment"


@pytest.fixture
def be4(world):
    """A backend linked straight to the balancer's second interface (eth1,
    add_routed_node) and serving VIP1 through the decap program; its answers
    go back through the balancer's kernel (forwarding on). Gone after the
    test, with its link."""
    node = world.add_routed_node("be4", B4_IP, B4_LB_IP)
    try:
        sysctl(world.lb.ns, {"net.ipv4.ip_forward": 1})
        with NetNS(node.ns) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            for vip in (VIP1, VIP2):   # the backend server binds both
                ipr.addr("add", index=lo, address=vip, prefixlen=32)
        # Its answers, forwarded by the lb, cross the native XDP program on
        # the lb's bridge port: finished checksums only (shared/README.md).
        node.run(["ethtool", "-K", "eth0", "tx", "off"])
        # XDP_REDIRECT into eth1 delivers only when the peer runs XDP: the
        # decap program is that program.
        ballast_on(node, "decap", "attach", "eth0")
        world.backend_servers.start(node)
        yield node
    finally:
        if world.backend_servers.alive(node):
            world.backend_servers.kill(node)
        sysctl(world.lb.ns, {"net.ipv4.ip_forward": 0})
        world.remove_routed_node(node)


def tx_ports_ifindexes(lb):
    """The interfaces (ifindex) in ballastd's tx_ports devmap."""
    # Empty devmap slots are listed with {"error": ...} as their value.
    return {maps.as_int(e["value"]) for e in maps.dump(f"{lb.pin_dir}/tx_ports")
            if isinstance(e.get("value"), (list, int))}


def test_redirect_to_other_interface(world, be4, lb):
    """VIP1 over ipip to be1 (on the bridge, behind eth0) and be4 (behind
    eth1), 1:1. The balancer's program sends be4's frames out of eth1 with
    XDP_REDIRECT (the only way an XDP program puts a frame on another
    interface; the lb's kernel has no route to a VIP and never
    encapsulates): every connection succeeds, be4's decap program stripped
    at least 3 packets per connection it served, and tx_ports holds eth1.
    3,000 connections: the shares tell 1:1 from 1:1.5, and be2 and be3 (no
    backends of this VIP) serve none."""
    decap_attach_all(world)
    be1 = world.backends[0]
    lb.start(config(vip_entry(VIP1, HTTP_PORT, "tcp", [(be1.ip, 1), (B4_IP, 1)], mode="ipip")))
    world.backend_servers.reset_counts()
    stripped_before = decapped(be4)
    report = batch(world, N)
    assert_all_ok(report, N)
    assert_shares(report, {"be1": 1, "be4": 1})
    served = {be.name: world.backend_servers.served(be, "tcp", VIP1, HTTP_PORT)
              for be in world.backends + [be4]}
    assert served["be1"] + served["be4"] == N and served["be2"] == served["be3"] == 0, \
        f"served {served}, want be1 + be4 = {N}"
    stripped = decapped(be4) - stripped_before
    assert stripped >= 3 * served["be4"], \
        f"be4's decap program stripped {stripped} packets for {served['be4']} connections"
    r = reasons(lb)
    assert not r.get("drop_no_egress") and not r.get("drop_encap_failed"), r

    with NetNS(world.lb.ns) as ipr:
        eth1 = ipr.link_lookup(ifname="eth1")[0]
    slots = tx_ports_ifindexes(lb)
    assert eth1 in slots, f"tx_ports has no entry for eth1 (ifindex {eth1}): {sorted(slots)}"

