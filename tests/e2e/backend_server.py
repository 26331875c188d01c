#!/usr/bin/env python3
"""One backend of Ballast's end-to-end topology (tests/e2e/lib.sh).

Runs inside a backend's network namespace, where the VIPs sit on lo:
  - HTTP on 0.0.0.0:HTTP_PORT, and also on [::]:HTTP_PORT (IPv6 only) when a
    --vip is an IPv6 address or --ipv6 is given: a GET of / is answered with
    the backend's name
    (any other path but the health path: 404, for checks that must fail).
    One request per connection (HTTP/1.0, the server closes), unless the
    client asks for "Connection: keep-alive": then the connection stays open
    for the next request (the e2e client's long-lived connections).
  - The health path (--health-path, default /healthz) is what ballastd's
    HTTP health checks ask for, at the backend's own address. Its answer
    follows the control file (--control), read on every check:
        absent, empty or "up"  200
        "sick"                 503 (the VIP's own traffic is still served)
        "flap"                 503, 200, 503, 200, ... one per check, starting
                               with 503 whenever the file changes to "flap"
        "silent", "closed"     200 (these two are for the UDP responder)
  - A UDP health responder on --udp-check-addr:--udp-check-port (the
    backend's own address, as ballastd's UDP checks ask; only with
    --udp-check-port), following the same control file, read on every
    datagram and every 50 ms:
        absent, empty, "up", "flap"  "pong\n" to "ping", "what?\n" to anything else
        "sick"                       "sick\n" (a reply without "pong")
        "silent"                     no reply at all (the check times out)
        "closed"                     the socket is closed within 50 ms, so the
                                     kernel answers ICMP port unreachable (bound
                                     again once the word changes)
  - UDP on VIP:UDP_PORT for each --vip (IPv4 or IPv6, a socket of the VIP's
    family): every datagram is answered with the name. Bound to the VIP
    itself so that the reply's source is the VIP, as direct server return
    needs (the client's socket is connected to it).

What was served is appended to --served-log, one line per request:
  "<tcp|udp> <local addr>:<local port> <peer addr>:<peer port>"
and one line per health check:
  "check <local addr>:<local port> <peer addr>:<peer port> <status>"
  "miss <local addr>:<local port> <peer addr>:<peer port> 404 <path>"
  "udpcheck <local addr>:<local port> <peer addr>:<peer port> <pong|what?|sick|silent>"
IPv6 addresses are written as they are, without brackets
("tcp fd00:231:100::1:80 fd00:231::2:40000"). A line is written before the
answer is sent, so once a client holds an answer the line is already there.
The local address tells VIP traffic apart from anything else that reaches
the backend: tests count only the VIP's lines.

Prints "ready <name>" on stdout once every socket is bound.
"""

import argparse
import http.server
import os
import select
import socket
import sys
import threading
import time


class ServedLog:
    """The served-requests log, shared by every serving thread."""

    def __init__(self, path):
        # Line-buffered append: each line reaches the file when written, and
        # a test truncating the file between batches stays safe (O_APPEND).
        self._file = open(path, "a", buffering=1, encoding="ascii")
        self._lock = threading.Lock()

    def record(self, proto, local, peer, extra=""):
        with self._lock:
            self._file.write(f"{proto} {local[0]}:{local[1]} {peer[0]}:{peer[1]}{extra}\n")


class HealthControl:
    """The health path's answers, as the control file says (see above)."""

    def __init__(self, path):
        self._path = path
        self._lock = threading.Lock()
        self._mode = "up"
        self._flap_next_ok = False

    def _read_mode(self):
        if not self._path:
            return "up"
        try:
            with open(self._path, encoding="ascii") as f:
                return f.read().strip() or "up"
        except FileNotFoundError:
            return "up"

    def word(self):
        """The control file's word now (for the UDP responder; it leaves the
        HTTP health path's flap sequence alone)."""
        with self._lock:
            return self._read_mode()

    def status(self):
        """The HTTP status for this health check."""
        with self._lock:
            mode = self._read_mode()
            if mode != self._mode:
                self._mode = mode
                self._flap_next_ok = False
            if mode == "sick":
                return 503
            if mode == "flap":
                ok = self._flap_next_ok
                self._flap_next_ok = not ok
                return 200 if ok else 503
            return 200


def make_http_handler(name, served, health, health_path):
    body = (name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection unless the client asks for
        # keep-alive, so each request of the ordinary client is one new flow
        # at the balancer.
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            local = self.connection.getsockname()
            if self.path.split("?")[0] == health_path:
                status = health.status()
                served.record("check", local, self.client_address, f" {status}")
                self._answer(status, b"ok\n" if status == 200 else b"sick\n")
                return
            if self.path.split("?")[0] != "/":
                served.record("miss", local, self.client_address, f" 404 {self.path}")
                self._answer(404, b"not found\n")
                return
            served.record("tcp", local, self.client_address)
            self._answer(200, body)

        def _answer(self, status, payload):
            keep = self.headers.get("Connection", "").lower() == "keep-alive"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            if keep:
                self.send_header("Connection", "keep-alive")
            self.end_headers()
            self.wfile.write(payload)
            # BaseHTTPRequestHandler's HTTP/1.0 closes after each request;
            # a keep-alive client gets its connection kept.
            if keep:
                self.close_connection = False

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass  # thousands of requests per test: the served log is enough

    return Handler


def family_of(addr):
    """AF_INET6 for an IPv6 address (it has a colon), else AF_INET."""
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class HttpServer(http.server.ThreadingHTTPServer):
    # The default backlog (5) overflows when several client workers connect
    # at once; a dropped SYN would come back a second later as a retransmit
    # and be counted twice by the balancer.
    request_queue_size = 512
    daemon_threads = True

    def handle_error(self, request, client_address):
        # ballastd's tcp checks connect and reset at once (SO_LINGER 0), as
        # HAProxy's do: a peer gone mid-request is normal, not worth a
        # traceback in the server's log per check.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class HttpServer6(HttpServer):
    """The IPv6 listener: [::]:PORT, IPv6 only (IPv4 keeps its own listener,
    so its peers are logged as plain IPv4, never as ::ffff:a.b.c.d)."""

    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def serve_udp(sock, name, served):
    reply = (name + "\n").encode()
    local = sock.getsockname()
    while True:
        _, peer = sock.recvfrom(2048)
        served.record("udp", local, peer)
        sock.sendto(reply, peer)


def udp_health_responder(addr, port, health, served):
    """The UDP health responder (see the top), for the process's life."""

    def bind():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, port))
        return s

    # Bound before "ready" unless the backend starts "closed".
    sock = None if health.word() == "closed" else bind()

    def loop():
        nonlocal sock
        while True:
            word = health.word()
            if word == "closed":
                if sock is not None:
                    sock.close()
                    sock = None
                time.sleep(0.05)
                continue
            if sock is None:
                sock = bind()
            if not select.select([sock], [], [], 0.05)[0]:
                continue
            data, peer = sock.recvfrom(2048)
            word = health.word()
            if word in ("silent", "closed"):
                reply = None
            elif word == "sick":
                reply = b"sick\n"
            else:
                reply = b"pong\n" if data.strip() == b"ping" else b"what?\n"
            what = reply.decode().strip() if reply else "silent"
            served.record("udpcheck", sock.getsockname(), peer, f" {what}")
            if reply:
                sock.sendto(reply, peer)

    threading.Thread(target=loop, daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="answered to every request")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--udp-port", type=int, default=9000)
    parser.add_argument("--vip", action="append", default=[],
                        help="VIP to bind a UDP socket to (repeatable; IPv4 "
                             "or IPv6)")
    parser.add_argument("--ipv6", action="store_true",
                        help="also serve HTTP on [::] (implied by an IPv6 --vip)")
    parser.add_argument("--served-log", required=True,
                        help="file to append one line per request to")
    parser.add_argument("--health-path", default="/healthz",
                        help="HTTP path answered as a health check")
    parser.add_argument("--control", default="",
                        help="file whose word (up, sick, flap) sets the health "
                             "path's answers; read on every check")
    parser.add_argument("--udp-check-addr", default="0.0.0.0",
                        help="address of the UDP health responder (the "
                             "backend's own)")
    parser.add_argument("--udp-check-port", type=int, default=0,
                        help="port of the UDP health responder (0: none)")
    args = parser.parse_args()

    served = ServedLog(args.served_log)
    health = HealthControl(args.control)
    handler = make_http_handler(args.name, served, health, args.health_path)
    http_server = HttpServer(("0.0.0.0", args.http_port), handler)
    if args.ipv6 or any(family_of(v) == socket.AF_INET6 for v in args.vip):
        http6_server = HttpServer6(("::", args.http_port), handler)
        threading.Thread(target=http6_server.serve_forever, daemon=True).start()
    for vip in args.vip:
        sock = socket.socket(family_of(vip), socket.SOCK_DGRAM)
        sock.bind((vip, args.udp_port))
        threading.Thread(target=serve_udp, args=(sock, args.name, served),
                         daemon=True).start()
    if args.udp_check_port:
        udp_health_responder(args.udp_check_addr, args.udp_check_port, health, served)

    print(f"ready {args.name} pid {os.getpid()}", flush=True)
    http_server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
