"""What arrives on the balancer's wire that no client should send: VLAN-tagged
frames and at least 100,000 malformed and random ones, while a real client
keeps connecting. Nothing of it may reach a backend, every frame must be
counted under exactly one reason, and the client must not notice.

The world (conftest.py) plus one node, "jk", that sends the frames through
a packet socket. Every neighbour and bridge entry is static, and the VIP
has no health check: the only frames the balancer receives are the
client's (all for the VIP: forwarded, a "tx" reason) and jk's (never
forwardable: a "pass" or "drop" reason), so the counters can be held to
exact numbers.
"""

import logging
import time

import pytest

from harness import frames
from harness.counters import Sniffer, delta, reason_verdicts, reasons, tcp_to
from harness.processes import BackgroundClient
from harness.world import CLIENT_IP, HTTP_PORT, VIP1, inside

log = logging.getLogger("e2e")

# Sent from jk with this source address (not a node's): its frames are told
# apart on the backends' wire by it.
JUNK_IP = "10.231.0.60"
GARBAGE_FRAMES = 100_000
# Frames per burst and the pause after each: slow enough that no veth queue
# on the way overflows (the test proves every frame arrived), fast enough
# for 100,000 in a few seconds.
BURST, PAUSE_S = 64, 0.002


def config(world):
    lines = ["interface: eth0", "attach_mode: native", "vips:",
             f"  - {{address: {VIP1}, port: {HTTP_PORT}, protocol: tcp, backends: ["]
    lines.append(", ".join(f"{{address: {be.ip}, weight: 1}}" for be in world.backends) + "]}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def junk(world):
    node = world.add_node("jk")
    world.static_neighbours()
    world.static_forwarding()
    return node


def send(node, frame_list):
    """Sends @frame_list from @node's eth0, in paced bursts."""
    with inside(node.ns):
        sock = frames.packet_socket("eth0")
    try:
        for i, frame in enumerate(frame_list):
            sock.send(frame)
            if i % BURST == BURST - 1:
                time.sleep(PAUSE_S)
    finally:
        sock.close()


def wait_counted(lb, before, count, timeout_s=10):
    """Waits until the reason counters moved by @count frames at least."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = reasons(lb)
        if sum(delta(now, before).values()) >= count or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def backend_sniffers(world, lb_mac, classify):
    return [Sniffer(be, lambda f: classify(f) if f[6:12] == lb_mac else None)
            for be in world.backends]


def test_vlan_tagged_frames_are_not_forwarded(world, junk, lb):
    """A tagged SYN for a VIP belongs to a VLAN Ballast is not on. veth (like
    most NICs) takes the tag out of the frame before XDP runs; the program
    reads it from the frame's metadata (bpf/vlan.h) and passes the frame.
    Forwarded, it would reach a backend untagged: on the wrong network."""
    lb.start(config(world))
    lb_mac = frames.mac_bytes(world.lb.mac)
    sent = [frames.tcp_syn_frame(world.lb.mac, junk.mac, JUNK_IP, VIP1, 40000 + i, HTTP_PORT,
                                 vlan_tags=[(frames.ETH_P_8021Q, 100)]) for i in range(300)]
    sniffers = backend_sniffers(
        world, lb_mac, lambda f: "tagged SYN forwarded" if tcp_to(f, JUNK_IP, VIP1, HTTP_PORT)
        else None)
    before = reasons(lb)
    send(junk, sent)
    after = wait_counted(lb, before, len(sent))
    seen = [s.stop() for s in sniffers]
    moved = delta(after, before)
    assert moved == {"pass_vlan": len(sent)}, \
        f"{len(sent)} tagged SYNs sent: reasons moved {moved}"
    assert not any(seen), f"tagged SYNs reached backends: {seen}"


def test_garbage_while_a_client_connects(world, junk, lb):
    """At least 100,000 frames of garbage (harness/frames.py Garbage: every
    header boundary, bad lengths and checksums, IPv6 extension chains, ICMP
    errors quoting garbage, VLAN, random bytes, mutated SYNs) while the
    client opens a connection every 25 ms: 0 failed connections, 0 garbage
    frames on any backend's wire, and every frame the balancer received
    counted under exactly one reason: jk's all under pass or drop reasons,
    the client's under tx reasons, each of them seen on a backend's wire."""
    lb.start(config(world))
    verdict_of = reason_verdicts(lb)
    lb_mac = frames.mac_bytes(world.lb.mac)
    garbage = frames.Garbage(world.lb.mac, junk.mac, JUNK_IP, VIP1, HTTP_PORT,
                             seed=time.time_ns())
    log.info("garbage seed %d", garbage.seed)
    frame_list = garbage.frames(GARBAGE_FRAMES)

    # Counted from before the client's first frame to after its last: the
    # balancer receives nothing else (see the top), so every count is exact.
    sniffers = backend_sniffers(
        world, lb_mac, lambda f: "client" if tcp_to(f, CLIENT_IP, VIP1, HTTP_PORT)
        else "not the client's")
    before = reasons(lb)
    rx_before = world.lb.link_stats()
    client = BackgroundClient(world, "--vip", VIP1, "--port", HTTP_PORT, "--stream", 40,
                              "--duration", 120, "--timeout", 3)
    try:
        time.sleep(1)
        send(junk, frame_list)
        time.sleep(1)
    finally:
        report = client.stop()
    time.sleep(0.5)   # the last answers' frames
    after = reasons(lb)
    rx_after = world.lb.link_stats()
    seen = {}
    for s in sniffers:
        for label, n in s.stop().items():
            seen[label] = seen.get(label, 0) + n

    moved = delta(after, before)
    received = rx_after["rx_packets"] - rx_before["rx_packets"]
    not_forwarded = {r: n for r, n in moved.items() if verdict_of.get(r) != "tx"}
    log.info("client %s ok, %s failed; reasons moved %s; backends saw %s", report["ok"],
             report["failed"], moved, seen)
    assert report["failed"] == 0 and report["ok"] > 0, \
        f"client: {report['ok']} ok, {report['failed']} failed {report.get('errors')}"
    assert sum(moved.values()) == received, \
        f"the balancer's eth0 received {received} frames, its reasons counted " \
        f"{sum(moved.values())}: {moved}"
    assert sum(not_forwarded.values()) == len(frame_list), \
        f"{len(frame_list)} garbage frames sent, {sum(not_forwarded.values())} counted under " \
        f"pass/drop reasons {not_forwarded} (fewer: some did not arrive or were forwarded; " \
        f"eth0 rx_dropped moved {rx_after['rx_dropped'] - rx_before['rx_dropped']})"
    forwarded = sum(n for r, n in moved.items() if verdict_of.get(r) == "tx")
    assert forwarded == seen.get("client", 0), \
        f"the balancer forwarded {forwarded} frames, the backends saw {seen} from it"
    assert "not the client's" not in seen, \
        f"garbage reached backends: {seen['not the client' + chr(39) + 's']} frames, " \
        f"first: {[s.examples for s in sniffers]}"
    assert seen.get("client", 0) > 0
