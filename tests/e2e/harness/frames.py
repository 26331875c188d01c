"""Raw Ethernet frames for tests that talk to the balancer below the socket
API: well-formed ones (with correct checksums), 802.1Q-tagged ones, and the
malformed and random ones of the garbage test.

Built with struct, byte by byte, so that a test says exactly what it sent.
"""

import ipaddress
import random
import socket
import struct

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_ALL = 0x0003


def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst_mac, src_mac, ethertype, payload, vlan_tags=()):
    """One frame; @vlan_tags: (tpid, vid) pairs, outermost first."""
    head = mac_bytes(dst_mac) + mac_bytes(src_mac)
    for tpid, vid in vlan_tags:
        head += struct.pack("!HH", tpid, vid & 0x0FFF)
    return head + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload, ttl=64, ihl=5, tot_len=None, version=4, options=b"",
         frag_off=0x4000, good_checksum=True):
    """An IPv4 packet; the fields a malformed one gets wrong are parameters."""
    if tot_len is None:
        tot_len = ihl * 4 + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 0xF), 0, tot_len & 0xFFFF,
                         0x1234, frag_off, ttl, proto, 0,
                         socket.inet_aton(src), socket.inet_aton(dst)) + options
    csum = checksum(header)
    if not good_checksum:
        csum ^= 0x5555
    header = header[:10] + struct.pack("!H", csum) + header[12:]
    return header + payload


def ipv6(src, dst, nexthdr, payload, payload_len=None):
    if payload_len is None:
        payload_len = len(payload)
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len & 0xFFFF, nexthdr, 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


def _pseudo4(src, dst, proto, length):
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def tcp(src, dst, sport, dport, flags=0x02, seq=1, doff=5, payload=b""):
    """A TCP segment with its checksum over the IPv4 pseudo-header."""
    options = b"\0" * max(0, (doff - 5) * 4)
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (doff & 0xF) << 4, flags, 65535, 0,
                      0) + options + payload
    csum = checksum(_pseudo4(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def udp(src, dst, sport, dport, payload=b"", length=None):
    if length is None:
        length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length & 0xFFFF, 0) + payload
    csum = checksum(_pseudo4(src, dst, 17, len(dgram)) + dgram) or 0xFFFF
    return dgram[:6] + struct.pack("!H", csum) + dgram[8:]


def tcp_syn_frame(dst_mac, src_mac, src, dst, sport, dport, vlan_tags=()):
    """A well-formed TCP SYN from @src:@sport to @dst:@dport."""
    return ethernet(dst_mac, src_mac, ETH_P_IP,
                    ipv4(src, dst, 6, tcp(src, dst, sport, dport)), vlan_tags)


def packet_socket(ifname):
    """An AF_PACKET socket bound to @ifname (open it inside the namespace)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    return sock


class Garbage:
    """Malformed and random frames aimed at the balancer, none of which it may
    forward: every header boundary cut, every length field wrong, IPv4
    header checksums wrong, IPv6 extension chains too long or running past
    the packet, ICMP errors quoting garbage, VLAN-tagged frames (single and
    double), random bytes behind an IPv4, IPv6 or random EtherType, and
    well-formed frames with one or two random bytes changed.

    What makes each "never forwardable" is written beside it: a frame that a
    correct balancer would forward (a well-formed packet for a VIP) is not
    garbage, and the garbage test counts every frame that was forwarded as a
    failure. Random bytes reach a VIP's address with a chance of 2^-32 per
    frame; the structured cases aim at the VIP, and the mutated ones at
    NOT_VIP, three bytes away from every VIP of the world (two changed
    bytes cannot make it one).
    """

    NOT_VIP = "10.232.200.201"

    def __init__(self, dst_mac, src_mac, src_ip, vip, port, seed):
        self.dst_mac, self.src_mac = dst_mac, src_mac
        self.src_ip, self.vip, self.port = src_ip, vip, port
        self.seed = seed
        self.rng = random.Random(seed)

    def _eth(self, ethertype, payload, tags=()):
        return ethernet(self.dst_mac, self.src_mac, ethertype, payload, tags)

    def _syn(self, dst=None, sport=None):
        dst = dst or self.vip
        sport = sport or self.rng.randrange(1024, 65536)
        return ipv4(self.src_ip, dst, 6, tcp(self.src_ip, dst, sport, self.port))

    def structured(self):
        """One of each structured case, as (name, frame) pairs."""
        rng = self.rng
        cases = []
        syn = self._eth(ETH_P_IP, self._syn())
        # Cut at every byte from the end of the Ethernet header to the end of
        # the TCP header: IPv4 and TCP each incomplete. (A packet socket
        # refuses to send less than an Ethernet header.)
        for cut in range(14, 14 + 20 + 20):
            cases.append((f"cut{cut}", syn[:cut]))
        sport = rng.randrange(1024, 65536)
        seg = tcp(self.src_ip, self.vip, sport, self.port)
        # IPv4 length fields and version wrong (each makes the header invalid).
        cases += [
            ("ihl4", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg, ihl=4))),
            ("ihl15_past_frame", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg[:8],
                                                          ihl=15, tot_len=28))),
            ("totlen_past_frame", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg,
                                                           tot_len=1400))),
            ("totlen_below_ihl", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg,
                                                          tot_len=12))),
            ("version6_in_ipv4", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg,
                                                          version=6))),
            ("bad_ipv4_checksum", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6, seg,
                                                           good_checksum=False))),
            # TCP data offset below 5, and past the packet.
            ("tcp_doff4", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6,
                                                   tcp(self.src_ip, self.vip, sport, self.port,
                                                       doff=4)))),
            ("tcp_doff15_past", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 6,
                                                         seg[:12] + bytes([15 << 4]) + seg[13:]))),
            # UDP length below 8 and past the packet.
            ("udp_len7", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 17,
                                                  udp(self.src_ip, self.vip, sport, 9000, b"x",
                                                      length=7)))),
            ("udp_len_past", self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 17,
                                                      udp(self.src_ip, self.vip, sport, 9000,
                                                          b"x", length=400)))),
        ]
        # VLAN: a well-formed VIP SYN behind one tag and behind two.
        cases.append(("vlan_8021q", self._eth(ETH_P_IP, self._syn(), [(ETH_P_8021Q, 100)])))
        cases.append(("vlan_qinq", self._eth(ETH_P_IP, self._syn(),
                                             [(ETH_P_8021AD, 200), (ETH_P_8021Q, 100)])))
        # IPv6: payload length past the frame; five extension headers (one
        # more than the balancer walks); a destination-options header whose
        # length runs past the packet.
        v6s, v6d = "fd00:231::2", "fd00:231:100::1"
        tcp6 = b"\0" * 20
        cases.append(("ipv6_plen_past", self._eth(ETH_P_IPV6, ipv6(v6s, v6d, 6, tcp6,
                                                                   payload_len=900))))
        chain = b"".join(struct.pack("!BB6x", 60, 0) for _ in range(4)) + \
            struct.pack("!BB6x", 6, 0) + tcp6
        cases.append(("ipv6_ext5", self._eth(ETH_P_IPV6, ipv6(v6s, v6d, 60, chain))))
        cases.append(("ipv6_ext_past", self._eth(ETH_P_IPV6, ipv6(
            v6s, v6d, 60, struct.pack("!BB6x", 6, 200) + tcp6))))
        # ICMP errors (destination unreachable, fragmentation needed) whose
        # quoted packet is garbage: cut short, bad IHL, or from no VIP.
        for name, quoted in (
                ("icmp_quote_cut", ipv4(self.vip, self.src_ip, 6,
                                        tcp(self.vip, self.src_ip, self.port, sport))[:24]),
                ("icmp_quote_ihl3", ipv4(self.vip, self.src_ip, 6, b"\0" * 8, ihl=3)),
                ("icmp_quote_not_vip", ipv4(self.NOT_VIP, self.src_ip, 6,
                                            tcp(self.NOT_VIP, self.src_ip, self.port, sport)))):
            icmp = struct.pack("!BBHI", 3, 4, 0, 1400) + quoted
            icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
            cases.append((name, self._eth(ETH_P_IP, ipv4(self.src_ip, self.vip, 1, icmp))))
        return cases

    def random_frame(self):
        """Random bytes behind an IPv4, IPv6 or random EtherType."""
        rng = self.rng
        ethertype = rng.choice((ETH_P_IP, ETH_P_IPV6, rng.randrange(0x600, 0x10000)))
        return self._eth(ethertype, rng.randbytes(rng.randrange(0, 1500)))

    def mutated_frame(self):
        """A well-formed SYN to NOT_VIP with one or two random bytes
        changed anywhere after the MAC addresses."""
        frame = bytearray(self._eth(ETH_P_IP, self._syn(dst=self.NOT_VIP)))
        for _ in range(self.rng.randrange(1, 3)):
            frame[self.rng.randrange(12, len(frame))] = self.rng.randrange(256)
        return bytes(frame)

    def frames(self, count):
        """@count frames: every structured case once, then random and
        mutated frames in turn."""
        out = [frame for _, frame in self.structured()]
        while len(out) < count:
            out.append(self.random_frame() if len(out) % 2 else self.mutated_frame())
        return out[:count]
