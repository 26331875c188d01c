#!/usr/bin/env python3
"""Hostile control-socket clients, for tests that ballastd serves others
meanwhile: N connections to a Unix socket, each sending one byte of a
request that never ends every --interval seconds, reconnecting when the
server closes it, until --stop-file exists.

Usage: control_drip.py SOCKET N --interval S --stop-file PATH [--ready-file PATH]
Prints {"connections": N, "closed_by_server": N, "bytes_sent": N} at the end.
"""

import argparse
import json
import os
import socket
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(True)
    s.connect(path)
    s.setblocking(False)
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    p.add_argument("n", type=int)
    p.add_argument("--interval", type=float, default=0.9)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--ready-file", default="")
    a = p.parse_args()
    conns = [connect(a.socket) for _ in range(a.n)]
    if a.ready_file:
        open(a.ready_file, "w").close()
    closed = sent = 0
    while not os.path.exists(a.stop_file):
        for i, s in enumerate(conns):
            try:
                s.send(b"{" if sent < a.n else b" ")
                sent += 1
            except OSError:
                closed += 1
                s.close()
                conns[i] = connect(a.socket)
        time.sleep(a.interval)
    for s in conns:
        s.close()
    print(json.dumps({"connections": a.n, "closed_by_server": closed, "bytes_sent": sent}))


if __name__ == "__main__":
    main()
