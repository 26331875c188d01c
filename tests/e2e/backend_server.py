#!/usr/bin/env python3
"""One backend of Ballast's end-to-end topology (tests/e2e/lib.sh).

Runs inside a backend's network namespace, where the VIPs sit on lo:
  - HTTP on 0.0.0.0:HTTP_PORT: every GET is answered with the backend's name,
    one new connection per request (HTTP/1.0, the server closes).
  - UDP on VIP:UDP_PORT for each --vip: every datagram is answered with the
    name. Bound to the VIP itself so that the reply's source is the VIP, as
    direct server return needs (the client's socket is connected to it).

What was served is appended to --served-log, one line per request:
  "<tcp|udp> <local addr>:<local port> <peer addr>:<peer port>"
The line is written before the answer is sent, so once a client holds an
answer the line is already there. The local address tells VIP traffic apart
from anything else that reaches the backend (a health check to its own
address, say): tests count only the VIP's lines.

Prints "ready <name>" on stdout once every socket is bound.
"""

import argparse
import http.server
import socket
import sys
import threading


class ServedLog:
    """The served-requests log, shared by every serving thread."""

    def __init__(self, path):
        # Line-buffered append: each line reaches the file when written, and
        # a test truncating the file between batches stays safe (O_APPEND).
        self._file = open(path, "a", buffering=1, encoding="ascii")
        self._lock = threading.Lock()

    def record(self, proto, local, peer):
        with self._lock:
            self._file.write(f"{proto} {local[0]}:{local[1]} {peer[0]}:{peer[1]}\n")


def make_http_handler(name, served):
    body = (name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so each request the client
        # makes is one new flow at the balancer.
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            served.record("tcp", self.connection.getsockname(), self.client_address)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass  # thousands of requests per test: the served log is enough

    return Handler


class HttpServer(http.server.ThreadingHTTPServer):
    # The default backlog (5) overflows when several client workers connect
    # at once; a dropped SYN would come back a second later as a retransmit
    # and be counted twice by the balancer.
    request_queue_size = 512
    daemon_threads = True


def serve_udp(sock, name, served):
    reply = (name + "\n").encode()
    local = sock.getsockname()
    while True:
        _, peer = sock.recvfrom(2048)
        served.record("udp", local, peer)
        sock.sendto(reply, peer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="answered to every request")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--udp-port", type=int, default=9000)
    parser.add_argument("--vip", action="append", default=[],
                        help="VIP to bind a UDP socket to (repeatable)")
    parser.add_argument("--served-log", required=True,
                        help="file to append one line per request to")
    args = parser.parse_args()

    served = ServedLog(args.served_log)
    http_server = HttpServer(("0.0.0.0", args.http_port),
                             make_http_handler(args.name, served))
    for vip in args.vip:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((vip, args.udp_port))
        threading.Thread(target=serve_udp, args=(sock, args.name, served),
                         daemon=True).start()

    print(f"ready {args.name}", flush=True)
    http_server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
