"""A pinned connection table read (and, for marks, written) in place.

The table (bpf/ballast_abi.h, bpf/conn_table.h) is an array of 64-byte
buckets of four 16-byte ways, and keeps no keys: a flow is found by its
64-bit conn hash, which gives its two buckets and the fingerprint its way
carries. flow_slot() computes them as bpf/conn_hash.h does; a test that gets
it wrong finds no flow at all, so every user of this module checks it.

The map is BPF_F_MMAPABLE: it is opened from its pin with the bpf syscall
and mapped into this process, so a test reads thousands of flows without a
bpftool call each."""

import ctypes
import functools
import ipaddress
import mmap
import os
import socket
import struct

# bpf/ballast_abi.h
WAYS = 4
BUCKET_BITS = 19
BUCKETS = 1 << BUCKET_BITS
BUCKET_SIZE = 64
WAY_SIZE = 16
ID_MASK = 0xFFFF
FP_MASK = ~ID_MASK & (1 << 64) - 1
SEEN_SHIFT = 20
CONFIRMED = 1
AF_INET, AF_INET6 = 4, 6

_M64 = (1 << 64) - 1
_SYS_BPF = 321  # x86_64
_BPF_OBJ_GET = 7


def _mix(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _M64
    x ^= x >> 33
    return x


def _le32(data):
    """A 32-bit field as the data plane loads it: the packet's bytes, read
    little-endian."""
    return int.from_bytes(data, "little")


def _le16(port):
    """A __be16 port as the data plane loads it into a u16."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


@functools.lru_cache(maxsize=64)
def _addr_words(address):
    """(family, the 16-byte address field's four u32 words as loaded)."""
    a = ipaddress.ip_address(address)
    packed = a.packed.ljust(16, b"\0")
    return (AF_INET if a.version == 4 else AF_INET6,
            [_le32(packed[i:i + 4]) for i in range(0, 16, 4)])


def conn_hash(src, sport, dst, dport, proto):
    """bpf/conn_hash.h, ballast_conn_hash: @src/@dst address strings (one
    family), ports in host order, @proto an IPPROTO number."""
    family, sw = _addr_words(src)
    _, dw = _addr_words(dst)
    ports = _le16(sport) << 16 | _le16(dport)
    tail = (ports << 32 | proto << 8 | family) & _M64
    h = _mix(((sw[0] << 32) | dw[0]) ^ tail)
    if family != AF_INET:
        h = _mix(h ^ (sw[1] << 32 | sw[2]))
        h = _mix(h ^ (sw[3] << 32 | dw[1]))
        h = _mix(h ^ (dw[2] << 32 | dw[3]))
    return _mix(h ^ ((tail * 0x9E3779B97F4A7C15) & _M64))


def flow_slot(src, sport, dst, dport, proto=socket.IPPROTO_TCP):
    """(bucket a, bucket b, fingerprint) of a flow."""
    h = conn_hash(src, sport, dst, dport, proto)
    a = h & (BUCKETS - 1)
    b = (h >> BUCKET_BITS) & (BUCKETS - 1)
    if b == a:
        b ^= 1
    fp = h & FP_MASK
    return a, b, fp if fp else 1 << 16


def _obj_get(path):
    libc = ctypes.CDLL(None, use_errno=True)
    raw = os.fsencode(path) + b"\0"
    buf = ctypes.create_string_buffer(raw)
    # union bpf_attr for BPF_OBJ_GET: pathname (u64), bpf_fd, file_flags.
    attr = struct.pack("QII", ctypes.addressof(buf), 0, 0)
    attr = ctypes.create_string_buffer(attr.ljust(128, b"\0"))
    fd = libc.syscall(_SYS_BPF, _BPF_OBJ_GET, attr, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"opening the pinned map {path}: {os.strerror(err)}")
    return fd


class Way:
    """One way as read: backend id, seen (units), flags, and where it is."""

    def __init__(self, offset, tag, seen, flags):
        self.offset, self.tag, self.seen, self.flags = offset, tag, seen, flags
        self.backend_id = tag & ID_MASK

    @property
    def confirmed(self):
        return bool(self.flags & CONFIRMED)


class ConnTable:
    """The table pinned at @path (a pin directory's conn_table), mapped
    read-only unless @writable. Use as a context manager."""

    def __init__(self, path, writable=False):
        # Opened read-write either way: this kernel refuses a shared
        # mapping of a map through a read-only fd (EINVAL).
        fd = _obj_get(path)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            self._map = mmap.mmap(fd, BUCKETS * BUCKET_SIZE, mmap.MAP_SHARED, prot)
        finally:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._map.close()

    def _way(self, offset):
        tag, seen, flags = struct.unpack_from("<QII", self._map, offset)
        return Way(offset, tag, seen, flags)

    def find(self, src, sport, dst, dport, proto=socket.IPPROTO_TCP):
        """The flow's Way, or None: its first bucket, then its second, as
        the data plane looks."""
        a, b, fp = flow_slot(src, sport, dst, dport, proto)
        for bucket in (a, b):
            for i in range(WAYS):
                way = self._way(bucket * BUCKET_SIZE + i * WAY_SIZE)
                if way.tag & FP_MASK == fp:
                    return way
        return None

    def set_flags(self, way, flags):
        """Writes @way's flags word (a test's mark in the bits the data plane
        keeps: it only ever sets CONFIRMED, or zeroes the word when a SYN
        starts the flow again)."""
        struct.pack_into("<I", self._map, way.offset + 12, flags)

    def ways(self, client, sports, vip, port, proto=socket.IPPROTO_TCP):
        """{source port: Way} of the flows from @client (any of @sports) to
        @vip:@port that have a way."""
        found = {}
        for sport in sports:
            way = self.find(client, sport, vip, port, proto)
            if way:
                found[sport] = way
        return found

    def count(self):
        """Ways in use (a walk of the whole table: 2M ways, ~1 s)."""
        view = memoryview(self._map)
        used = 0
        for offset in range(0, BUCKETS * BUCKET_SIZE, WAY_SIZE):
            if view[offset:offset + 8] != b"\0" * 8:
                used += 1
        return used


def flow_ways(pin_dir, client, sports, vip, port, proto=socket.IPPROTO_TCP):
    """{source port: Way} of @client's flows to @vip:@port (source ports
    @sports) in the table pinned under @pin_dir."""
    with ConnTable(f"{pin_dir}/conn_table") as table:
        return table.ways(client, sports, vip, port, proto)
