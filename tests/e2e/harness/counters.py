"""What end-to-end tests measure: the balancer's reason counters, a link's
packet counters, and frames seen on a backend's wire."""

import select
import socket
import struct
import threading

from .frames import ETH_P_ALL, ETH_P_IP, checksum
from .world import inside

PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33   # (Linux; Python names it not)


def reasons(lb):
    """{reason: packets} from `ballast stats`: every frame the program saw
    ends under exactly one reason."""
    return {r["reason"]: r["packets"] for r in lb.cli("stats")["reasons"]}


def reason_verdicts(lb):
    return {r["reason"]: r["verdict"] for r in lb.cli("stats")["reasons"]}


def delta(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) != before.get(k, 0)}


class Sniffer:
    """Counts the frames arriving on one node's eth0, from a thread that
    drains an AF_PACKET socket opened in the node's namespace, each frame
    given to @classify (which returns a label, or None to ignore it).
    With on_port=True it listens on the node's port of the bridge instead
    (in the switch's namespace): the frames the node sends onto the wire,
    as they arrive there."""

    def __init__(self, node, classify, on_port=False):
        ns, ifname = (node.world.sw, node.port) if on_port else (node.ns, "eth0")
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        self.classify = classify
        self.counts = {}
        self.examples = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                self._drain()
        self._drain()

    def _drain(self):
        while True:
            try:
                frame, addr = self.sock.recvfrom(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            label = self.classify(frame)
            if label is not None:
                self.counts[label] = self.counts.get(label, 0) + 1
                self.examples.setdefault(label, frame[:64].hex())

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.counts


def tcp_to(frame, src, dst, dport):
    """True when @frame is a well-formed IPv4 TCP segment src -> dst:dport
    (valid header checksum, lengths inside the frame)."""
    if len(frame) < 14 + 20 + 20 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return False
    ip = frame[14:]
    ihl = (ip[0] & 0xF) * 4
    tot_len = struct.unpack("!H", ip[2:4])[0]
    if ip[0] >> 4 != 4 or ihl < 20 or tot_len > len(ip) or tot_len < ihl + 20:
        return False
    if ip[9] != 6 or checksum(ip[:ihl]) != 0:
        return False
    if socket.inet_ntoa(ip[12:16]) != src or socket.inet_ntoa(ip[16:20]) != dst:
        return False
    return struct.unpack("!H", ip[ihl + 2:ihl + 4])[0] == dport
