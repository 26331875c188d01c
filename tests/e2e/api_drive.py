#!/usr/bin/env python3
"""Many control-API requests, fast: for tests that need thousands of audits
or changes (a CLI process per request would take minutes).

Usage: api_drive.py SOCKET COUNT REQUEST_JSON [REQUEST_JSON...]
Sends COUNT requests over ballastd's control socket, one connection each
(the API's protocol: one JSON line each way), cycling through the given
requests in order. Prints one JSON object:
  {"sent": N, "ok": N, "failed": N, "first_error": "..." or null, "elapsed_s": S}
Exits 0 when every request was answered, ok or not (the caller judges).
"""

import json
import sys
import time

from harness.api import call


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    requests = [json.loads(a) for a in sys.argv[3:]]
    ok = failed = 0
    first_error = None
    start = time.monotonic()
    for i in range(count):
        answer = call(path, requests[i % len(requests)])
        if answer.get("ok"):
            ok += 1
        else:
            failed += 1
            first_error = first_error or answer.get("error")
    print(json.dumps({"sent": count, "ok": ok, "failed": failed, "first_error": first_error,
                      "elapsed_s": round(time.monotonic() - start, 3)}))


if __name__ == "__main__":
    main()
