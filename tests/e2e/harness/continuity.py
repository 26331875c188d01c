"""Traffic and watches that must not notice an event (a restart, a failed
start, pins removed, a drain, a weight change): the house rule is that
ballastd never stops forwarding by itself, so each piece here measures one
way forwarding could have stopped.

Held       long-lived flows (client.py --hold) on chosen backends, each
           asking every 100 ms: judged by held_problems (none failed, none
           moved)
Stream     new connections at a fixed rate (client.py --stream): judged by
           stream_problems (none failed, shares by weight, no stray backend)
XdpWatch   the XDP program on the lb's eth0 every 20 ms: judged by
           xdp_problems (never without one; at most the replacements the
           test allows)
adoption_problems: what a restart must carry over (backends, ids, weights,
           table entries, counters)

Each *_problems function returns a list of what was wrong (empty: nothing),
so that a test can report every broken rule of one run at once. Times are
wall-clock seconds (time.time()), as client.py stamps its requests.
"""

import json
import logging
import math
import threading
import time

from .processes import BackgroundClient, Failure
from .world import HTTP_PORT, VIP1

log = logging.getLogger("e2e")

# A background client stops on SIGTERM; this only bounds one a test forgot.
BACKGROUND_CAP_S = 900
HOLD_READY_TIMEOUT_S = 30


class Held:
    """@k long-lived flows on each backend named in @names, one request each
    every @interval seconds until stop(): TCP keep-alive connections, or
    with "--proto udp" in @extra connected UDP sockets (client.py --hold). A
    flow that fails once is dead, never reopened; a request not answered
    within @timeout_s failed. Returns once every flow is held
    (`connections`: [{"sport", "backend"}]); fails the test if the client
    exits first or is not ready within HOLD_READY_TIMEOUT_S."""

    def __init__(self, world, state_dir, k, names, *extra, port=HTTP_PORT, interval=0.1,
                 timeout_s=3, tag="hold"):
        self.ready = state_dir / f"{tag}.ready"
        self.stop_file = state_dir / f"{tag}.stop"
        for f in (self.ready, self.stop_file):
            f.unlink(missing_ok=True)
        self.client = BackgroundClient(
            world, "--vip", VIP1, "--port", port, "--hold", k, "--on", ",".join(names),
            "--interval", interval, "--timeout", timeout_s, "--ready-file", self.ready,
            "--stop-file", self.stop_file, "--duration", BACKGROUND_CAP_S, *extra)
        try:
            self._wait_ready(k, names)
        except BaseException:
            self.client.close()
            raise
        self.connections = json.loads(self.ready.read_text())
        log.info("holding: %s", self.connections)

    def _wait_ready(self, k, names):
        deadline = time.monotonic() + HOLD_READY_TIMEOUT_S
        while not self.ready.exists():
            if self.client.proc.poll() is not None:
                raise Failure(f"hold client exited {self.client.proc.returncode} before holding "
                              f"its flows: {self.client.proc.stderr.read().strip()[-300:]}")
            if time.monotonic() > deadline:
                raise Failure(f"hold client not holding {k} flows on each of {names} after "
                              f"{HOLD_READY_TIMEOUT_S} s")
            time.sleep(0.05)

    @property
    def sports(self):
        """{source port: backend} of the held flows."""
        return {c["sport"]: c["backend"] for c in self.connections}

    def stop(self):
        """Closes the flows: client.py's report ("connections", "closed_unix")."""
        self.stop_file.write_text("")
        report = self.client.stop(timeout_s=60)
        log.info("held: %d answered, %d failed", report["ok"], report["failed"])
        return report

    def close(self):
        self.client.close()


def held_problems(report):
    """Every held flow answered every time, always by the backend that
    answered it first (`moves` and `errors` are the same facts as client.py
    records them), and there was at least one."""
    bad = []
    for c in report["connections"]:
        others = sorted(set(c["answers"]) - {c["backend"]})
        if c["failed"] or c["dead"] or c["errors"]:
            bad.append(f"held flow from port {c['sport']} to {c['backend']} failed after "
                       f"{c['ok']} answers ({c['errors']}, first at {c['first_error_unix']})")
        if others or c["moves"]:
            bad.append(f"held flow from port {c['sport']} moved from {c['backend']} to "
                       f"{others} ({c['moves'][:3]})")
    if not report["connections"]:
        bad.append("the hold client reported no connections")
    return bad


class Stream:
    """New requests to @address:@port at @rate per second, each a new flow,
    on a fixed schedule until stop() or @duration_s (client.py --stream); a
    request not answered within @timeout_s is a failure, never retried. The
    report lists every request as [start, end, answer] ("!error" for a
    failure). More client.py arguments (--proto udp, --sport-base) in
    @extra."""

    def __init__(self, world, rate, *extra, timeout_s=3, duration_s=BACKGROUND_CAP_S,
                 port=HTTP_PORT, address=VIP1):
        self.client = BackgroundClient(world, "--vip", address, "--port", port,
                                       "--stream", rate, "--timeout", timeout_s,
                                       "--duration", duration_s, *extra)

    def stop(self):
        report = self.client.stop(timeout_s=60)
        log.info("stream: %d answered, %d failed %s, by backend %s", report["ok"],
                 report["failed"], report["errors"], report["by_backend"])
        return report

    def close(self):
        self.client.close()


def stream_problems(report, weights, since=0.0):
    """Every request of the stream started at or after @since (unix seconds)
    was answered, by the backends of @weights ({name: weight}) only, each
    within max(5 points, 5 sd) of its weight's share (weight 0: none at
    all); at least 20 requests to judge. The client's --timeout bounds how
    long any one request may have waited, and so the longest gap in
    answers the check lets through."""
    reqs = [q for q in report["requests"] if q[0] >= since]
    if len(reqs) < 20:
        return [f"only {len(reqs)} stream requests started after {since:.3f}: too few to judge"]
    bad = []
    failed = [q for q in reqs if q[2].startswith("!")]
    if failed:
        first = ", ".join(f"{q[2][1:]} at {q[0]:.2f}" for q in failed[:3])
        bad.append(f"{len(failed)} of {len(reqs)} stream requests started after {since:.3f} "
                   f"failed ({first})")
    ok = [q[2] for q in reqs if not q[2].startswith("!")]
    answers = {name: ok.count(name) for name in sorted(set(ok))}
    total_w = sum(weights.values())
    for name, w in weights.items():
        got = answers.get(name, 0)
        exp = w / total_w
        obs = got / len(ok) if ok else 0.0
        tol = max(0.05, 5 * math.sqrt(exp * (1 - exp) / max(1, len(ok))))
        if w == 0 and got:
            bad.append(f"{name} (no new flows allowed) answered {got} stream requests")
        elif w and abs(obs - exp) > tol:
            bad.append(f"{name} stream share {obs:.3f}, expected {exp:.3f} ± {tol:.3f}")
    strays = {name: n for name, n in answers.items() if name not in weights}
    if strays:
        bad.append(f"stream answers from {strays}, which should get none (of {len(reqs)} "
                   "requests)")
    slowest = max(q[1] - q[0] for q in reqs)
    log.info("stream: %d requests from %.3f, %d failed, slowest %.3f s, answers %s", len(reqs),
             since, len(failed), slowest, answers)
    return bad


class XdpWatch:
    """The id of the XDP program on the lb's eth0 (Ballastd.xdp_id), looked
    at every 20 ms from a thread until stop(): [(unix time, id, None when
    there was none, or "error: ..." when it could not be read)], one entry
    per change."""

    PERIOD_S = 0.02

    def __init__(self, lb):
        self.lb = lb
        self.changes = []
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = object()
        while not self._stop.is_set():
            try:
                now = self.lb.xdp_id()
            except Failure as exc:
                now = f"error: {exc}"
            self.looks += 1
            if now != last:
                self.changes.append((time.time(), now))
                last = now
            self._stop.wait(self.PERIOD_S)

    def stop(self):
        self.close()
        log.info("XDP program on the lb's eth0 (%d looks): %s", self.looks,
                 " | ".join(f"{t:.3f} {i or 'none'}" for t, i in self.changes))
        return self.changes

    def close(self):
        self._stop.set()
        self._thread.join()


def xdp_problems(changes, replacements):
    """The lb's eth0 never without a program (nor unreadable), and its
    program replaced at most @replacements times (0: the same program id
    from start to end)."""
    if not changes:
        return ["the XDP watch looked at nothing"]
    bad = []
    gaps = [t for t, i in changes if not isinstance(i, int)]
    if gaps:
        bad.append(f"the lb's eth0 was without an XDP program (or unreadable) (at {gaps[0]:.3f}; "
                   + " | ".join(f"{t:.3f} {i or 'none'}" for t, i in changes) + ")")
    ids = [i for _, i in changes if isinstance(i, int)]
    if len(ids) - 1 > replacements:
        bad.append(f"the XDP program was replaced {len(ids) - 1} times ({ids}), "
                   f"{replacements} allowed")
    return bad


def adoption_problems(list0, list1, stats0, stats1):
    """What a restart lost, from `ballast backend list` and `ballast stats`
    before (0) and after (1): a backend gone, or its id, drain, weight or
    Maglev table entries changed; any counter that went down."""
    bad = []

    def key(b):
        return (b["vip"], b["address"])

    b1 = {key(b): b for b in list1}
    for b in list0:
        n = b1.get(key(b))
        if n is None:
            bad.append(f"{b['vip']} {b['address']} gone after the event")
            continue
        for f in ("id", "drained", "weight", "table_entries"):
            if b.get(f) != n.get(f):
                bad.append(f"{b['vip']} {b['address']}: {f} {b.get(f)} before, {n.get(f)} after")

    def counters(s):
        out = {}
        for v in s["vips"]:
            for f in ("packets", "bytes", "new_flows"):
                out[(v["vip"], f)] = v[f]
            for b in v["backends"]:
                for f in ("packets", "bytes", "new_flows"):
                    out[(v["vip"], b["address"], f)] = b[f]
        for r in s["reasons"]:
            out[("reason", r["reason"])] = r["packets"]
        return out

    c0, c1 = counters(stats0), counters(stats1)
    went_down = [f"{k}: {v} -> {c1.get(k)}" for k, v in c0.items() if c1.get(k, -1) < v]
    if went_down:
        bad.append(f"{len(went_down)} counters went down across the event: "
                   + "; ".join(went_down[:4]))
    return bad
