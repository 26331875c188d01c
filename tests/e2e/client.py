#!/usr/bin/env python3
"""Traffic for Ballast's end-to-end tests: requests to a VIP, then a tally.

Four modes:

batch (default): N requests, each a new flow at the balancer:
  tcp: a new TCP connection carrying one real HTTP GET (HTTP/1.0);
  udp: a new socket (so a new source port) sending one datagram.
  The answer (a backend's name) says which backend served it.

--stream RATE: new requests (as in batch mode) started at RATE per second,
  on a fixed schedule, until --duration seconds have passed or --stop-file
  exists. Besides the tally, "requests" lists every request as
  [start, end, result]: wall-clock seconds (time.time(), comparable with
  `date +%s.%N` on the same machine) and the backend's name, or "!" and the
  error ("!refused", "!timeout").

--hold K --on NAMES: long-lived flows: opens TCP connections (HTTP
  keep-alive) until each backend named in NAMES (comma-separated) holds K of
  them (connections answered by any other backend are closed), writes
  --ready-file, then sends one GET per connection every --interval seconds
  over the same connection until --stop-file exists or --duration passes,
  then closes them. A connection that fails once is dead: it is never
  reopened (a reopened connection would be a new flow). With --proto udp,
  each flow is a connected UDP socket (one source port) sending a datagram
  every --interval; a lost answer is counted and the flow goes on. Prints
  {"ok", "failed", "connections": [{"sport", "backend" (the first answer),
  "answers": {name: n}, "ok", "failed", "errors", "dead",
  "first_error_unix", "moves": [[unix, from, to], ...], "longest_wait_s"
  (the longest one request waited: a stall)}], "closed_unix"}.

--flood: UDP datagrams through a raw socket at the fastest rate one Python
  thread manages, each from a new (source address, source port) pair: every
  one is a new flow at the balancer. No answers are awaited (point it at a
  port nothing listens on). Source addresses from --src (comma-separated,
  each must be the client's), ports 1024..65535 in turn. Prints
  {"sent": N, "elapsed_s": S, "rate_pps": R}.

Stream, hold and flood modes stop cleanly (with their report) on SIGTERM.

--vip is an IPv4 or an IPv6 address ("fd00::1" or "[fd00::1]"): the client's
sockets take its family (flood mode: IPv4 only).

A request that times out or errors is a failure and is never retried: the
tests count flows, and a silent retry would be a flow nobody counted. (The
kernel's own SYN retransmission inside one TCP connect is not ours to stop;
see test_stats_match_backends.)

Batch and stream print one JSON object on stdout:
  {"ok": N, "failed": N, "by_backend": {"be1": N, ...},
   "errors": {"timeout": N, ...}, "elapsed_s": S[, "requests": [...]]}
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import struct
import sys
import threading
import time


class Tally:
    """Results from every worker thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.ok = 0
        self.by_backend = collections.Counter()
        self.errors = collections.Counter()

    def answered(self, backend):
        with self._lock:
            self.ok += 1
            self.by_backend[backend] += 1

    def failed(self, kind):
        with self._lock:
            self.errors[kind] += 1

    def failures(self):
        with self._lock:
            return sum(self.errors.values())


def error_kind(exc):
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return type(exc).__name__


def family_of(addr):
    """AF_INET6 for an IPv6 address (it has a colon), else AF_INET."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def any_address(family):
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def tcp_request(vip, port, timeout, index, sport_base=0):
    # With a base, request i connects from source port base+i (as UDP): the
    # kernel's own choice reuses ports within a batch, and a reused port is
    # the same flow, hashed to the same backend again, so the requests would
    # not be independent samples of the balancer's distribution.
    source = (any_address(family_of(vip)), sport_base + index) if sport_base else None
    conn = http.client.HTTPConnection(vip, port, timeout=timeout, source_address=source)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        if resp.status != 200:
            raise RuntimeError(f"http_{resp.status}")
        return body
    finally:
        conn.close()


def udp_request(vip, port, timeout, index, sport_base):
    family = family_of(vip)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        # With a base, request i uses source port base+i: no two requests of
        # a run share a 5-tuple, so each is a new flow at the balancer. (In
        # 2,000 requests the kernel's random choice repeats some 70 ports,
        # and a repeat is an established flow there.)
        sock.bind((any_address(family), sport_base + index if sport_base else 0))
        # Connected: only an answer from the VIP itself is accepted.
        sock.connect((vip, port))
        sock.send(b"hello\n")
        return sock.recv(2048).decode(errors="replace").strip()
    finally:
        sock.close()


def stop_requested(args, start):
    if TERMINATED.is_set():
        return True
    if args.duration and time.monotonic() - start >= args.duration:
        return True
    return bool(args.stop_file) and os.path.exists(args.stop_file)


def summary(tally, elapsed):
    return {
        "ok": tally.ok,
        "failed": sum(tally.errors.values()),
        "by_backend": dict(sorted(tally.by_backend.items())),
        "errors": dict(sorted(tally.errors.items())),
        "elapsed_s": round(elapsed, 3),
    }


def request_fn(args):
    if args.proto == "tcp":
        return lambda i: tcp_request(args.vip, args.port, args.timeout, i, args.sport_base)
    return lambda i: udp_request(args.vip, args.port, args.timeout, i, args.sport_base)


def run_batch(args):
    tally = Tally()
    request = request_fn(args)

    def one(index):
        if args.give_up_after and tally.failures() >= args.give_up_after:
            tally.failed("not_sent")
            return
        try:
            backend = request(index)
        except Exception as exc:  # pylint: disable=broad-except
            tally.failed(error_kind(exc))
            return
        tally.answered(backend)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        # list(): surfaces any bug in one() instead of dropping it.
        list(pool.map(one, range(args.requests)))
    return summary(tally, time.monotonic() - start)


def run_stream(args):
    tally = Tally()
    request = request_fn(args)
    records = []
    lock = threading.Lock()

    def one(index):
        t_start = time.time()
        try:
            backend = request(index)
            result = backend
            tally.answered(backend)
        except Exception as exc:  # pylint: disable=broad-except
            kind = error_kind(exc)
            result = "!" + kind
            tally.failed(kind)
        with lock:
            records.append([round(t_start, 4), round(time.time(), 4), result])

    # Enough threads that requests never queue behind slow ones: every
    # request in flight for up to its timeout.
    workers = int(args.stream * (args.timeout + 1)) + 4
    start = time.monotonic()
    futures = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        index = 0
        while not stop_requested(args, start):
            if args.sport_base and args.sport_base + index > 65535:
                break
            futures.append(pool.submit(one, index))
            index += 1
            delay = start + index / args.stream - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    for f in futures:
        f.result()  # surfaces any bug in one()
    out = summary(tally, time.monotonic() - start)
    out["requests"] = sorted(records)
    return out


class Held:
    """One long-lived connection of --hold mode."""

    def __init__(self, conn, sport, backend):
        self.conn = conn
        self.sport = sport
        self.backend = backend
        self.answers = collections.Counter({backend: 1})
        self.ok = 1
        self.failed = 0
        self.errors = collections.Counter()
        self.dead = False
        self.first_error_unix = None
        # [unix time, from, to] each time the answering backend changed.
        self.moves = []
        self._last = backend
        # The longest a request waited for its answer (or its failure), in
        # seconds: a stall the flow lived through shows here.
        self.longest_wait_s = 0.0

    def answered(self, name):
        self.answers[name] += 1
        self.ok += 1
        if name != self._last:
            self.moves.append([round(time.time(), 4), self._last, name])
            self._last = name

    def waited(self, started):
        """Notes how long the request sent at @started (time.monotonic())
        waited for its end."""
        self.longest_wait_s = max(self.longest_wait_s, time.monotonic() - started)

    def request(self):
        resp = None
        started = time.monotonic()
        try:
            self.conn.request("GET", "/", headers={"Connection": "keep-alive"})
            resp = self.conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
            if resp.status != 200:
                raise RuntimeError(f"http_{resp.status}")
            self.answered(body)
        except Exception as exc:  # pylint: disable=broad-except
            self.failed += 1
            self.errors[error_kind(exc)] += 1
            if self.first_error_unix is None:
                self.first_error_unix = round(time.time(), 4)
            self.dead = True
            self.conn.close()
        self.waited(started)

    def loop(self, stop, interval):
        while not self.dead and not stop.wait(interval):
            self.request()

    def json(self):
        return {"sport": self.sport, "backend": self.backend,
                "answers": dict(sorted(self.answers.items())), "ok": self.ok,
                "failed": self.failed, "errors": dict(self.errors),
                "dead": self.dead, "first_error_unix": self.first_error_unix,
                "moves": self.moves, "longest_wait_s": round(self.longest_wait_s, 4)}


class HeldUdp(Held):
    """One long-lived UDP flow of --hold mode: one socket, one source port,
    a datagram per --interval. A lost answer is a failure, and the flow
    goes on (UDP has no connection to lose)."""

    def request(self):
        started = time.monotonic()
        try:
            self.conn.send(b"hello\n")
            self.answered(self.conn.recv(2048).decode(errors="replace").strip())
        except Exception as exc:  # pylint: disable=broad-except
            self.failed += 1
            self.errors[error_kind(exc)] += 1
            if self.first_error_unix is None:
                self.first_error_unix = round(time.time(), 4)
        self.waited(started)


def open_held(args):
    """A keep-alive connection with its first answer, or an exception."""
    conn = http.client.HTTPConnection(args.vip, args.port, timeout=args.timeout)
    conn.connect()
    # Never reconnect behind the test's back: a new connection is a new flow.
    conn.auto_open = 0
    try:
        conn.request("GET", "/", headers={"Connection": "keep-alive"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        if resp.status != 200 or resp.will_close:
            raise RuntimeError(f"no keep-alive answer (status {resp.status})")
    except Exception:
        conn.close()
        raise
    return Held(conn, conn.sock.getsockname()[1], body)


def open_held_udp(args):
    """A connected UDP socket with its first answer, or an exception."""
    sock = socket.socket(family_of(args.vip), socket.SOCK_DGRAM)
    try:
        sock.settimeout(args.timeout)
        sock.connect((args.vip, args.port))
        sock.send(b"hello\n")
        body = sock.recv(2048).decode(errors="replace").strip()
    except Exception:
        sock.close()
        raise
    return HeldUdp(sock, sock.getsockname()[1], body)


def run_hold(args):
    wanted = [n for n in args.on.split(",") if n]
    if not wanted:
        sys.exit("client.py: --hold needs --on NAMES")
    held = {name: [] for name in wanted}
    attempts = 0
    while any(len(h) < args.hold for h in held.values()):
        attempts += 1
        if attempts > args.max_attempts:
            have = {k: len(v) for k, v in held.items()}
            sys.exit(f"client.py: after {args.max_attempts} connections, held {have}")
        c = open_held(args) if args.proto == "tcp" else open_held_udp(args)
        if c.backend in held and len(held[c.backend]) < args.hold:
            held[c.backend].append(c)
        else:
            c.conn.close()
    conns = [c for name in wanted for c in held[name]]
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump([{"sport": c.sport, "backend": c.backend} for c in conns], f)
        os.rename(tmp, args.ready_file)

    stop = threading.Event()
    threads = [threading.Thread(target=c.loop, args=(stop, args.interval))
               for c in conns]
    for t in threads:
        t.start()
    start = time.monotonic()
    while not stop_requested(args, start):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    for c in conns:
        c.conn.close()
    return {"ok": sum(c.ok for c in conns),
            "failed": sum(c.failed for c in conns),
            "connections": [c.json() for c in conns],
            "closed_unix": round(time.time(), 4)}


def run_flood(args):
    if family_of(args.vip) != socket.AF_INET:
        sys.exit("client.py: --flood is IPv4 only")
    sources = [socket.inet_aton(a) for a in args.src.split(",") if a]
    if not sources:
        sys.exit("client.py: --flood needs --src ADDRESSES")
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    payload = b"ballast-flood..."
    # IPv4 header: the kernel fills in the total length, the id and the
    # header checksum of a raw IP_HDRINCL packet; UDP checksum 0 means none.
    pkt = bytearray(struct.pack(
        "!BBHHHBBH4s4sHHHH", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0,
        sources[0], socket.inet_aton(args.vip), 1024, args.port,
        8 + len(payload), 0) + payload)
    dest = (args.vip, 0)
    sent = 0
    start = time.monotonic()
    sport = 1024
    rounds = 0
    while True:
        # Check the clock and the stop file every 1,024 rounds.
        rounds += 1
        if (rounds & 1023) == 1 and stop_requested(args, start):
            break
        for src in sources:
            pkt[12:16] = src
            pkt[20:22] = sport.to_bytes(2, "big")
            sock.sendto(pkt, dest)
        sent += len(sources)
        sport = sport + 1 if sport < 65535 else 1024
    elapsed = time.monotonic() - start
    return {"sent": sent, "elapsed_s": round(elapsed, 3),
            "rate_pps": round(sent / elapsed) if elapsed else 0}


TERMINATED = threading.Event()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=8,
                        help="concurrent requests")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds per request (connect + answer)")
    parser.add_argument("--give-up-after", type=int, default=0, metavar="K",
                        help="after K failures send no more requests; the "
                             "rest count as failed (not_sent). 0: never. "
                             "Keeps a broken path from costing N timeouts.")
    parser.add_argument("--sport-base", "--udp-sport-base", type=int, default=0,
                        dest="sport_base",
                        help="request i from source port BASE+i, so that every "
                             "request is a new flow (0: the kernel picks, and "
                             "ports repeat)")
    parser.add_argument("--stream", type=float, default=0, metavar="RATE",
                        help="stream mode: new requests at RATE per second")
    parser.add_argument("--hold", type=int, default=0, metavar="K",
                        help="hold mode: K long-lived connections per backend")
    parser.add_argument("--on", default="",
                        help="hold mode: the backends (names) to hold them on")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="hold mode: seconds between requests")
    parser.add_argument("--max-attempts", type=int, default=500,
                        help="hold mode: connections tried before giving up")
    parser.add_argument("--ready-file", default="",
                        help="hold mode: written once every connection is held")
    parser.add_argument("--flood", action="store_true",
                        help="flood mode: raw UDP, a new flow per datagram")
    parser.add_argument("--src", default="",
                        help="flood mode: source addresses (comma-separated)")
    parser.add_argument("--duration", type=float, default=0,
                        help="stream/hold/flood: stop after this many seconds")
    parser.add_argument("--stop-file", default="",
                        help="stream/hold/flood: stop once this file exists")
    args = parser.parse_args()
    # "[fd00::1]" as well as "fd00::1".
    args.vip = args.vip.strip("[]")
    if args.sport_base and not args.stream and args.sport_base + args.requests > 65536:
        parser.error("--sport-base + --requests exceeds port 65535")
    if (args.stream or args.hold or args.flood) and not (args.duration or args.stop_file):
        parser.error("stream, hold and flood modes need --duration or --stop-file")

    if args.stream or args.hold or args.flood:
        # SIGTERM ends these modes cleanly, with their report.
        signal.signal(signal.SIGTERM, lambda *_: TERMINATED.set())

    if args.flood:
        out = run_flood(args)
    elif args.hold:
        out = run_hold(args)
    elif args.stream:
        out = run_stream(args)
    else:
        out = run_batch(args)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
