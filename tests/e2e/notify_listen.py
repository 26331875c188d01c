#!/usr/bin/env python3
"""A service manager's end of sd_notify, for tests: receives the datagrams
ballastd sends to NOTIFY_SOCKET and writes one JSON line per message to OUT
({"unix": t, "fields": {"READY": "1", ...}}). On the first READY=1 it runs
CHECK (a shell command) at once and adds its exit status to that line as
"check_rc": what the service looked like the moment it said ready.

Usage: notify_listen.py SOCKET OUT CHECK --stop-file PATH
"""

import json
import os
import socket
import subprocess
import sys
import time


def main():
    path, out, check = sys.argv[1], sys.argv[2], sys.argv[3]
    stop = sys.argv[sys.argv.index("--stop-file") + 1]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(0.1)
    ready_seen = False
    with open(out, "a") as f:
        while not os.path.exists(stop):
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            fields = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            line = {"unix": time.time(), "fields": fields}
            if fields.get("READY") == "1" and not ready_seen:
                ready_seen = True
                line["check_rc"] = subprocess.run(check, shell=True).returncode
            f.write(json.dumps(line) + "\n")
            f.flush()


if __name__ == "__main__":
    main()
