#!/usr/bin/env python3
"""Traffic for Ballast's end-to-end tests: N requests to a VIP, then a tally.

Each request is a new flow at the balancer:
  tcp: a new TCP connection carrying one real HTTP GET (HTTP/1.0);
  udp: a new socket (so a new source port) sending one datagram.
The answer (a backend's name) says which backend served it.

A request that times out or errors is a failure and is never retried: the
tests count flows, and a silent retry would be a flow nobody counted. (The
kernel's own SYN retransmission inside one TCP connect is not ours to stop;
see test_stats_match_backends.)

Prints one JSON object on stdout:
  {"ok": N, "failed": N, "by_backend": {"be1": N, ...},
   "errors": {"timeout": N, ...}, "elapsed_s": S}
"""

import argparse
import collections
import concurrent.futures
import http.client
import json
import socket
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


def tcp_request(vip, port, timeout, _index):
    conn = http.client.HTTPConnection(vip, port, timeout=timeout)
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
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        # With a base, request i uses source port base+i: no two requests of
        # a run share a 5-tuple, so each is a new flow at the balancer. (In
        # 2,000 requests the kernel's random choice repeats some 70 ports,
        # and a repeat is an established flow there.)
        sock.bind(("0.0.0.0", sport_base + index if sport_base else 0))
        # Connected: only an answer from the VIP itself is accepted.
        sock.connect((vip, port))
        sock.send(b"hello\n")
        return sock.recv(2048).decode(errors="replace").strip()
    finally:
        sock.close()


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
    parser.add_argument("--udp-sport-base", type=int, default=0,
                        help="udp: request i from source port BASE+i "
                             "(0: the kernel picks, ports may repeat)")
    args = parser.parse_args()
    if args.udp_sport_base and args.udp_sport_base + args.requests > 65536:
        parser.error("--udp-sport-base + --requests exceeds port 65535")

    tally = Tally()

    def one(index):
        if args.give_up_after and tally.failures() >= args.give_up_after:
            tally.failed("not_sent")
            return
        try:
            if args.proto == "tcp":
                backend = tcp_request(args.vip, args.port, args.timeout, index)
            else:
                backend = udp_request(args.vip, args.port, args.timeout, index,
                                      args.udp_sport_base)
        except Exception as exc:  # pylint: disable=broad-except
            tally.failed(error_kind(exc))
            return
        tally.answered(backend)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        # list(): surfaces any bug in one() instead of dropping it.
        list(pool.map(one, range(args.requests)))
    elapsed = time.monotonic() - start

    json.dump({
        "ok": tally.ok,
        "failed": sum(tally.errors.values()),
        "by_backend": dict(sorted(tally.by_backend.items())),
        "errors": dict(sorted(tally.errors.items())),
        "elapsed_s": round(elapsed, 3),
    }, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
