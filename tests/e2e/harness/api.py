"""ballastd's control API spoken directly: one JSON line each way over its
unix socket (docs/operations.md, "The control API"). For loops that would
otherwise start a CLI process per request."""

import json
import socket


def call(path, request, timeout_s=30):
    """One request ({"command": ..., "args": {...}}) on a new connection:
    the reply ({"ok": true, "result": ...} or {"ok": false, "error": ...})."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
