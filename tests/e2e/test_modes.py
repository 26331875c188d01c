"""Every forwarding mode over both address families end to end
(docs/dataplane.md "The balancer's packet paths", docs/operations.md
"Forwarding modes"), in the IPv6 world: real TCP connections (and UDP
datagrams) from the client through the balancer to backends that answer
the client directly; where the mode encapsulates, each backend's own XDP
program (`ballast decap attach`) strips it.

Each mode's case checks: every request answered; the shares over be1..be3
match weights 1:1:2; the balancer's reason counters name the mode
(tx_forwarded, tx_encap_ipip or tx_encap_gue, the other two zero, no drop_*
at all); its VIP counted the connections as new flows, each backend as many
as it served; each backend's decap program stripped at least 3 packets per
connection it served. The encapsulating cases also capture what the
balancer sends on the wire (a packet socket on the lb's bridge port) and
check the outer headers: source the lb's own address of the backend's
family (or one of the encap source prefix), destination a backend, GUE to
the right UDP port from a per-flow source port.

Shares: N = 3,000 new flows (each from its own source port) over 1:1:2,
4 sd per share (harness/checks.py): be3 may be 3.65 points off its 50 %,
so weights applied as 1:1:1.5 (be3 42.9 %) fail every share check here.
"""

import collections
import ipaddress
import logging
import socket
import struct

from harness.checks import assert_all_ok, assert_shares, assert_stats_match
from harness.configs import config, vip_key
from harness.counters import Sniffer
from harness.processes import ballast_on, batch, decap_attach_all, decapped
from harness.world import (CLIENT_IP, CLIENT_IP6, HTTP_PORT, LB_IP, LB_IP6, UDP_PORT, VIP1,
                           VIP6_1, VIP6_2)

log = logging.getLogger("e2e")

WORLD = {"ipv6": True}

N = 3000
WEIGHTS = [1, 1, 2]
SHARES = {"be1": 1, "be2": 1, "be3": 2}
MODE_REASONS = ("tx_forwarded", "tx_encap_ipip", "tx_encap_gue")
# The GUE port of a VIP and of `ballast decap attach` that name none, and one
# that is not it (test_gue_v4_port).
DEFAULT_GUE_PORT = 6080
GUE_PORT = 7080
# Connections per family in test_encap_source_prefix.
N_PREFIX = 200
PREFIX_V4 = "10.231.200.0/24"
PREFIX_V6 = "fd00:231:200::/96"


def backend_addresses(world, family):
    return [be.ip6 if family == 6 else be.ip for be in world.backends]


def vip_entry(world, address, port, proto, mode, family, **fields):
    """One entry of `vips:` over be1..be3 by their IPv4 or IPv6 addresses
    (@family) with WEIGHTS; each keyword is one more field of the VIP."""
    text = (f'  - address: "{address}"\n    port: {port}\n    protocol: {proto}\n'
            f"    mode: {mode}\n")
    text += "".join(f"    {k}: {v}\n" for k, v in fields.items())
    text += "    backends:\n" + "".join(
        f'      - {{address: "{a}", weight: {w}}}\n'
        for a, w in zip(backend_addresses(world, family), WEIGHTS))
    return text


def decap_all(world, *extra):
    """`ballast decap attach eth0` on every backend; each must list VIP1 and
    VIP6_1 (both on its lo) among the VIPs it decapsulates for."""
    decap_attach_all(world, *extra)
    for be in world.backends:
        status = ballast_on(be, "decap", "status", "eth0", "-o", "json")
        assert VIP6_1 in str(status), f"decap status on {be.name} does not list {VIP6_1}: {status}"


def assert_reasons(stats, want, least):
    """The balancer counted at least @least packets as @want, none as the
    other two modes, none dropped for any reason."""
    r = {x["reason"]: x["packets"] for x in stats["reasons"]}
    log.info("reasons: %s", {k: v for k, v in r.items() if v})
    assert r.get(want, 0) >= least, f"{want} {r.get(want, 0)}, want at least {least}"
    others = {k: r[k] for k in MODE_REASONS if k != want and r.get(k)}
    assert not others, f"the VIP forwards by {want}, yet the balancer counted {others}"
    drops = {k: v for k, v in r.items() if k.startswith("drop_") and v}
    assert not drops, f"drops {drops}"


def vip_stats(stats, key):
    v = next((v for v in stats["vips"] if v["vip"] == key), None)
    assert v is not None, f"{key} not in ballast stats: {[v['vip'] for v in stats['vips']]}"
    return v


def assert_new_flows(stats, key, n):
    """The VIP counted @n new flows, up to 1 % (at least 1) more: a SYN the
    kernel retransmits is counted again, never less."""
    flows = vip_stats(stats, key)["new_flows"]
    assert n <= flows <= n + max(1, -(-n // 100)), f"{key}: new_flows {flows}, {n} flows made"


def decap_counts(world):
    """Packets each backend's decap program has stripped so far."""
    return {be.name: decapped(be) for be in world.backends}


def assert_decapped(world, before, *requests):
    """Every backend's decap program stripped, since @before (decap_counts),
    at least 3 packets (SYN, ACK, request...; 1 for a UDP datagram) per
    request it served of @requests ((proto, vip, port) each) in that time."""
    after = decap_counts(world)
    for be in world.backends:
        served = {r: world.backend_servers.served(be, *r) for r in requests}
        least = sum((1 if proto == "udp" else 3) * n for (proto, _, _), n in served.items())
        stripped = after[be.name] - before[be.name]
        log.info("%s: served %s, decap stripped %d packets", be.name, served, stripped)
        assert stripped >= least, \
            f"{be.name}: decap stripped {stripped} packets for {served} (at least {least})"


class Capture:
    """Every encapsulated frame the balancer sends while it runs: a Sniffer
    on the lb's port of the bridge. IP-in-IP (protocol 4 or 41), and, with
    @gue_port, UDP to that port carrying an IP packet. One record per frame:
    (family, kind, outer src, outer dst, inner src, inner sport, inner dst,
    inner dport), kind "ipip" or ("gue", udp sport, udp dport)."""

    def __init__(self, world, gue_port=None):
        self.gue_port = gue_port
        self.records = []
        self.sniffer = Sniffer(world.lb, self._classify, on_port=True)

    @staticmethod
    def _ip_header(frame, off):
        """(family, src, dst, protocol, payload offset) of the IP header at off."""
        v = frame[off] >> 4
        if v == 4:
            ihl = (frame[off] & 15) * 4
            return (4, str(ipaddress.IPv4Address(frame[off + 12:off + 16])),
                    str(ipaddress.IPv4Address(frame[off + 16:off + 20])), frame[off + 9],
                    off + ihl)
        if v == 6:
            return (6, str(ipaddress.IPv6Address(frame[off + 8:off + 24])),
                    str(ipaddress.IPv6Address(frame[off + 24:off + 40])), frame[off + 6],
                    off + 40)
        raise ValueError(f"IP version {v}")

    def _classify(self, frame):
        if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] not in (0x0800, 0x86DD):
            return None
        try:
            fam, osrc, odst, proto, off = self._ip_header(frame, 14)
            if proto in (4, 41):
                kind = "ipip"
            elif proto == socket.IPPROTO_UDP and self.gue_port:
                usport, udport = struct.unpack("!HH", frame[off:off + 4])
                if udport != self.gue_port:
                    return None
                kind = ("gue", usport, udport)
                off += 8
            else:
                return None
            _, isrc, idst, _, ioff = self._ip_header(frame, off)
            sport, dport = struct.unpack("!HH", frame[ioff:ioff + 4])
        except (ValueError, struct.error, IndexError):
            return "unparsable"
        self.records.append((fam, kind, osrc, odst, isrc, sport, idst, dport))
        return "encapsulated"

    def stop(self):
        counts = self.sniffer.stop()
        log.info("capture: %s", counts)
        return self.records


def assert_capture(world, records, n, outer, gue_port=None):
    """What Capture recorded of the client's packets. For each family in
    @outer ({4 or 6: network}): its @n flows (90 % at least: a capture may
    miss packets under load, hardly whole flows), every outer source in the
    network (a single address: that one), one outer source per flow,
    varying across flows where the network holds more than one address (at
    least n/4 distinct: hashed into 256 (a /24) or 2^32 (a /96) sources, n
    flows give about 0.7 n or n); no frame of another family. Every outer
    destination is a backend. With @gue_port: UDP to that port, from a
    source port in 49152..65535 that is one per flow and varies across
    flows (at least a quarter of the flows' count distinct); else IP-in-IP."""
    want = {fam: ipaddress.ip_network(net) for fam, net in outer.items()}
    backends = set(backend_addresses(world, 4) + backend_addresses(world, 6))
    bad = []

    def problem(what):
        if len(bad) < 6 and what not in bad:
            bad.append(what)

    sources = {4: collections.defaultdict(set), 6: collections.defaultdict(set)}
    ports = collections.defaultdict(set)
    packets = 0
    for rec in records:
        fam, kind, osrc, odst, isrc, sport, idst, dport = rec
        if isrc not in (CLIENT_IP, CLIENT_IP6):
            continue
        packets += 1
        flow = (isrc, sport, idst, dport)
        if fam not in want:
            problem(f"an IPv{fam} outer header, want only IPv{sorted(want)}: {rec}")
            continue
        if ipaddress.ip_address(osrc) not in want[fam]:
            problem(f"outer source {osrc} not in {want[fam]}: {rec}")
        if odst not in backends:
            problem(f"outer destination {odst} is no backend: {rec}")
        if gue_port is None:
            if kind != "ipip":
                problem(f"not ipip: {rec}")
        elif kind == "ipip":
            problem(f"not gue: {rec}")
        else:
            _, usport, udport = kind
            if udport != gue_port or not 49152 <= usport <= 65535:
                problem(f"GUE UDP ports {usport} -> {udport}, want 49152..65535 -> {gue_port}")
            ports[flow].add(usport)
        sources[fam][flow].add(osrc)
    for fam, net in sorted(want.items()):
        flows = sources[fam]
        srcs = set().union(*flows.values()) if flows else set()
        split = [k for k, v in flows.items() if len(v) > 1]
        log.info("IPv%d outer: %d flows, %d distinct sources (e.g. %s)", fam, len(flows),
                 len(srcs), sorted(srcs)[:3])
        if len(flows) < n * 0.9:
            problem(f"IPv{fam}: only {len(flows)} of {n} flows captured")
        if split:
            problem(f"IPv{fam}: {len(split)} flows with more than one outer source, "
                    f"e.g. {split[0]}: {sorted(flows[split[0]])}")
        if net.num_addresses > 1 and len(srcs) < n / 4:
            problem(f"IPv{fam}: {len(srcs)} distinct outer sources for {len(flows)} flows")
    if gue_port is not None:
        split = [k for k, v in ports.items() if len(v) > 1]
        distinct = set().union(*ports.values()) if ports else set()
        log.info("GUE: %d distinct UDP source ports over %d flows", len(distinct), len(ports))
        if split:
            problem(f"{len(split)} flows with more than one GUE source port, "
                    f"e.g. {sorted(ports[split[0]])}")
        if len(distinct) < len(ports) / 4:
            problem(f"{len(distinct)} distinct GUE source ports for {len(ports)} flows")
    log.info("%d encapsulated packets of the client's checked", packets)
    if not packets:
        problem("no encapsulated packet of the client's captured")
    assert not bad, "capture: " + "; ".join(bad)


def tcp_case(world, lb, vip, family, want, outer=None, gue_port=None):
    """N connections to vip:80, whose backends are addressed in @family,
    checked as the top says; @want is the balancer's reason for the VIP's
    mode. With @outer ({family: network}) the encapsulated frames are
    captured and checked by assert_capture."""
    world.backend_servers.reset_counts()
    encapsulated = want != "tx_forwarded"
    decap_before = decap_counts(world) if encapsulated else None
    capture = Capture(world, gue_port) if outer else None
    try:
        report = batch(world, N, address=vip)
    finally:
        records = capture.stop() if capture else None
    assert_all_ok(report, N)
    assert_shares(report, SHARES)
    if outer:
        assert_capture(world, records, N, outer, gue_port)
    stats = lb.cli("stats")
    assert_reasons(stats, want, 3 * N)
    key = vip_key(HTTP_PORT, "tcp", address=vip)
    assert_new_flows(stats, key, N)
    addresses = backend_addresses(world, family)
    assert_stats_match(stats, key, {a: world.backend_servers.served(be, "tcp", vip, HTTP_PORT)
                                    for a, be in zip(addresses, world.backends)},
                       dict(zip(addresses, WEIGHTS)))
    if encapsulated:
        assert_decapped(world, decap_before, ("tcp", vip, HTTP_PORT))


def test_dsr_v6(world, lb):
    """dsr over IPv6: the MAC rewrite alone, to backends holding the IPv6
    VIP on lo; no decap program anywhere."""
    lb.start(config(vip_entry(world, VIP6_1, HTTP_PORT, "tcp", "dsr", 6)))
    tcp_case(world, lb, VIP6_1, 6, "tx_forwarded")


def test_ipip_v6_in_v6(world, lb):
    """IPv6 in IPv6 (next header 41) to the backends' IPv6 addresses, from
    the lb's own IPv6 address."""
    decap_all(world)
    lb.start(config(vip_entry(world, VIP6_1, HTTP_PORT, "tcp", "ipip", 6)))
    tcp_case(world, lb, VIP6_1, 6, "tx_encap_ipip", outer={6: LB_IP6})


def test_ipip_v4_in_v6(world, lb):
    """An IPv4 VIP behind IPv6 backends: IPv4 in IPv6 (next header 4), no
    IPv4 outer header at all."""
    decap_all(world)
    lb.start(config(vip_entry(world, VIP1, HTTP_PORT, "tcp", "ipip", 6)))
    tcp_case(world, lb, VIP1, 6, "tx_encap_ipip", outer={6: LB_IP6})


def test_gue_v4_port(world, lb):
    """GUE over IPv4 to a port that is not the default, on both sides
    (config gue_port, decap --gue-port): the decap program strips only UDP
    to its own port, so a balancer that sent to 6080 would fail every
    connection, and the capture would find no GUE to 7080."""
    decap_all(world, "--gue-port", GUE_PORT)
    port = ballast_on(world.backends[0], "decap", "status", "eth0", "-o", "json")["gue_port"]
    assert port == GUE_PORT, f"decap status says GUE port {port}, attached with {GUE_PORT}"
    lb.start(config(vip_entry(world, VIP1, HTTP_PORT, "tcp", "gue", 4, gue_port=GUE_PORT)))
    tcp_case(world, lb, VIP1, 4, "tx_encap_gue", outer={4: LB_IP}, gue_port=GUE_PORT)


def test_gue_v6(world, lb):
    """GUE over IPv6, the default port (6080) on both sides."""
    decap_all(world)
    lb.start(config(vip_entry(world, VIP6_1, HTTP_PORT, "tcp", "gue", 6)))
    tcp_case(world, lb, VIP6_1, 6, "tx_encap_gue", outer={6: LB_IP6},
             gue_port=DEFAULT_GUE_PORT)


def test_udp_ignore_source_port(world, lb):
    """All gue over IPv6. N datagrams from N source ports of one client to
    a udp VIP with ignore_source_port all reach ONE backend, and the
    balancer counts them as one flow (spread by their ports, 3,000 datagrams
    over 1:1:2 could not all land on one backend); the same to a udp VIP
    without it spread by the weights (a share check that tells 1:1:2 from
    1:1:1.5), each datagram a new flow; and so do N TCP connections to a
    tcp VIP of the sticky VIP's address."""
    decap_all(world)
    lb.start(config(
        vip_entry(world, VIP6_1, UDP_PORT, "udp", "gue", 6, ignore_source_port="true"),
        vip_entry(world, VIP6_2, UDP_PORT, "udp", "gue", 6),
        vip_entry(world, VIP6_1, HTTP_PORT, "tcp", "gue", 6)))
    world.backend_servers.reset_counts()
    decap_before = decap_counts(world)
    sticky = batch(world, N, proto="udp", address=VIP6_1)
    assert_all_ok(sticky, N)
    assert len(sticky["by_backend"]) == 1, \
        f"ignore_source_port: answers from {sticky['by_backend']}, want one backend"
    assert_decapped(world, decap_before, ("udp", VIP6_1, UDP_PORT))

    spread = batch(world, N, proto="udp", address=VIP6_2)
    assert_all_ok(spread, N)
    assert_shares(spread, SHARES)

    tcp_case(world, lb, VIP6_1, 6, "tx_encap_gue")

    stats = lb.cli("stats")
    assert_new_flows(stats, vip_key(UDP_PORT, "udp", address=VIP6_2), N)
    flows = vip_stats(stats, vip_key(UDP_PORT, "udp", address=VIP6_1))["new_flows"]
    log.info("ignore_source_port VIP: %d new flow(s) for %d datagrams", flows, N)
    assert flows == 1, \
        f"ignore_source_port VIP counted {flows} new flows for {N} datagrams of one client"


def test_encap_source_prefix(world, lb):
    """ipip with encap source prefixes (IPv4 and IPv6): the outer source of
    every packet lies in the prefix of its family, one per flow (the flow
    hash picks it), varying from flow to flow (so that backends' RSS spreads
    them); connections work as ever. 200 connections per family: every one
    answered through a backend's decap program; no share check (what is
    checked is the outer source, not the distribution)."""
    decap_all(world)
    lb.start(f'encap: {{source_prefix_v4: {PREFIX_V4}, source_prefix_v6: "{PREFIX_V6}"}}\n'
             + config(vip_entry(world, VIP1, HTTP_PORT, "tcp", "ipip", 4),
                      vip_entry(world, VIP6_1, HTTP_PORT, "tcp", "ipip", 6)))
    world.backend_servers.reset_counts()
    decap_before = decap_counts(world)
    capture = Capture(world)
    try:
        tcp4 = batch(world, N_PREFIX, address=VIP1)
        tcp6 = batch(world, N_PREFIX, address=VIP6_1)
    finally:
        records = capture.stop()
    assert_all_ok(tcp4, N_PREFIX)
    assert_all_ok(tcp6, N_PREFIX)
    assert_decapped(world, decap_before, ("tcp", VIP1, HTTP_PORT), ("tcp", VIP6_1, HTTP_PORT))
    assert_reasons(lb.cli("stats"), "tx_encap_ipip", 6 * N_PREFIX)
    assert_capture(world, records, N_PREFIX, {4: PREFIX_V4, 6: PREFIX_V6})
