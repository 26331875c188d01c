"""What tests/e2e/test_resilience.py needs beyond the shared harness:
traffic that outlives a change (new connections streamed at a fixed rate,
long-lived connections held on chosen backends, a raw UDP flood), polls of
`ballast backend list` with deadlines, the change log by actor and change,
a watch on the XDP program attached to the lb's eth0, and the CLI run raw
where its exit status and text are what a test checks.

Times are wall-clock seconds (time.time()): client.py stamps its requests
and `ballast log` its entries (unix_ms) on the same clock.
"""

import json
import re
import subprocess
import threading
import time

from .configs import vip
from .processes import BackgroundClient, Failure
from .world import HTTP_PORT, VIP1

# A background client stops on SIGTERM; this only bounds one a test forgot
# (the Traffic fixture stops every one after its test anyway).
BACKGROUND_CAP_S = 900


def vip_key(port, proto="tcp", address=VIP1):
    """"10.231.100.1:80/tcp": how the CLI, `ballast stats` and the log name a VIP."""
    return f"{address}:{port}/{proto}"


def vip_fail_open(world, port, fail_open, **kwargs):
    """harness.configs.vip() with `fail_open: true|false` set."""
    text = vip(world, port, **kwargs)
    line = f"    protocol: {kwargs.get('proto', 'tcp')}\n"
    return text.replace(line, line + f"    fail_open: {'true' if fail_open else 'false'}\n", 1)


# --- The CLI, raw ---------------------------------------------------------------


def cli_run(lb, *args, timeout_s=120):
    """`ballast ARGS --socket S` with no output format added: the finished
    process (its status, stdout and stderr are what the caller checks)."""
    return subprocess.run([f"{lb.build_dir}/ballast", *map(str, args), "--socket", lb.socket],
                          capture_output=True, text=True, timeout=timeout_s)


def cli_start(lb, *args):
    """`ballast ARGS --socket S` started and left running (its pid is the
    actor the change log names; communicate() ends it)."""
    return subprocess.Popen([f"{lb.build_dir}/ballast", *map(str, args), "--socket", lb.socket],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line(text):
    return " | ".join(text.strip().splitlines())


# --- Backends as ballastd sees them ----------------------------------------------


def backend_row(lb, vip_name, address):
    """@address's row of @vip_name in `ballast backend list`, or None."""
    return next((b for b in lb.cli("backend", "list")
                 if b["vip"] == vip_name and b["address"] == address), None)


def wait_backend(lb, vip_name, address, what, cond, within=None, deadline=None):
    """Polls `ballast backend list` every 0.1 s until @address's row of
    @vip_name satisfies @cond (a function of the row), by @deadline (wall
    clock) or @within seconds from now. One poll always starts after the
    deadline, so a state reached in time is seen however late this thread
    ran. Returns (start, end): the wall-clock times of the poll that saw it
    (the state held by `end` at the latest). Raises Failure saying @what was
    awaited and the last row seen."""
    if deadline is None:
        deadline = time.time() + within
    last = None
    while True:
        start = time.time()
        try:
            last = backend_row(lb, vip_name, address)
            ok = last is not None and bool(cond(last))
        except (Failure, KeyError) as exc:   # the CLI failed, a field missing: not (yet)
            last, ok = repr(exc), False
        end = time.time()
        if ok:
            return start, end
        if start > deadline:
            raise Failure(f"{address} in {vip_name} not {what} by the deadline (the last "
                          f"poll {start - deadline:+.2f} s after it); last seen: "
                          f"{json.dumps(last)}")
        time.sleep(max(0.0, min(0.1, deadline - time.time() + 0.001)))


def wait_all_up(lb, vip_name, addresses, within=5):
    """Each of @addresses "up" in @vip_name with table entries."""
    for a in addresses:
        wait_backend(lb, vip_name, a, "up with table entries",
                     lambda b: b["health"] == "up" and b["table_entries"] > 0, within=within)


def stats_backend(stats, vip_name, address):
    """One backend's row of `ballast stats` for @vip_name."""
    v = next(v for v in stats["vips"] if v["vip"] == vip_name)
    return next(b for b in v["backends"] if b["address"] == address)


def stats_reason(stats, reason):
    return next(r["packets"] for r in stats["reasons"] if r["reason"] == reason)


def adoption_problems(list0, list1, stats0, stats1):
    """What a restart lost, from `ballast backend list` and `ballast stats`
    before (0) and after (1): a backend gone, its id, drain, weight or table
    entries changed; any counter that went down. A list of problems."""
    bad = []
    after = {(b["vip"], b["address"]): b for b in list1}
    for b in list0:
        n = after.get((b["vip"], b["address"]))
        if n is None:
            bad.append(f"{b['vip']} {b['address']} gone after the restart")
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
        bad.append(f"{len(went_down)} counters went down across the restart: "
                   + "; ".join(went_down[:4]))
    return bad


# --- The change log ----------------------------------------------------------------


def by_actor(entry, actor):
    """The spec's actor word ("uid=0 pid=123", "health-check", "config",
    "reload"), which ballastd may follow with details after a space
    ("reload /etc/ballast/ballast.yaml"); "" matches any."""
    a = entry.get("actor", "")
    return not actor or a == actor or a.startswith(actor + " ")


def log_matching(entries, actor, change, since=0.0):
    """Entries of `ballast log` by @actor whose change matches the regex
    @change from its start, at or after @since (unix seconds)."""
    rx = re.compile(change)
    return [e for e in entries if by_actor(e, actor) and rx.match(e.get("change", ""))
            and e.get("unix_ms", 0) >= since * 1000]


# --- Traffic that outlives a change ------------------------------------------------


class Stream:
    """New requests at @rate per second (client.py --stream), each a new
    flow, until stop(): the report lists every request as [start, end,
    answer] ("!error" for a failure)."""

    def __init__(self, world, rate, *args, port=HTTP_PORT, address=VIP1):
        self.client = BackgroundClient(world, "--vip", address, "--port", port, "--stream", rate,
                                       "--duration", BACKGROUND_CAP_S, *args)

    def stop(self):
        return self.client.stop(timeout_s=60)

    def close(self):
        self.client.close()


class Hold:
    """Long-lived flows (client.py --hold), @k on each backend in @names,
    each sending a request every 100 ms until stop(): TCP keep-alive
    connections, or with "--proto udp" connected UDP sockets. Returns once
    every flow is held; `held` lists them ({"sport", "backend"})."""

    def __init__(self, world, state_dir, k, names, *args, port=HTTP_PORT, tag="hold"):
        self.ready = state_dir / f"{tag}.ready"
        self.ready.unlink(missing_ok=True)
        self.client = BackgroundClient(world, "--vip", VIP1, "--port", port, "--hold", k,
                                       "--on", ",".join(names), "--interval", 0.1, "--timeout", 3,
                                       "--ready-file", self.ready,
                                       "--duration", BACKGROUND_CAP_S, *args)
        try:
            self._wait_ready(k, names)
        except BaseException:
            self.client.close()
            raise
        self.held = json.loads(self.ready.read_text())

    def _wait_ready(self, k, names):
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            if self.client.proc.poll() is not None:
                raise Failure(f"hold client exited {self.client.proc.returncode} before holding "
                              f"its flows: {self.client.proc.stderr.read().strip()[-300:]}")
            if time.monotonic() > deadline:
                raise Failure(f"hold client not holding {k} flows on each of {names} after 20 s")
            time.sleep(0.05)

    def stop(self):
        """Closes the flows: the report ("connections", "closed_unix")."""
        return self.client.stop(timeout_s=60)

    def close(self):
        self.client.close()


def held_problems(report):
    """Every held flow answered every time, always by the backend that
    answered it first: a list of the flows that were not."""
    bad = []
    for c in report["connections"]:
        others = sorted(set(c["answers"]) - {c["backend"]})
        if c["failed"] or c["dead"]:
            bad.append(f"flow from port {c['sport']} to {c['backend']} failed after {c['ok']} "
                       f"answers ({c['errors']}, first at {c['first_error_unix']})")
        if others or c["moves"]:
            bad.append(f"flow from port {c['sport']} moved from {c['backend']} to {others}: "
                       f"{c['moves']}")
    return bad


class Traffic:
    """Every background client a test starts, stopped after it whatever
    happened (the test's own stop() collects the report first)."""

    def __init__(self, world, state_dir):
        self.world = world
        self.state_dir = state_dir
        self.started = []

    def _track(self, thing):
        self.started.append(thing)
        return thing

    def stream(self, rate, *args, **kwargs):
        return self._track(Stream(self.world, rate, *args, **kwargs))

    def hold(self, k, names, *args, **kwargs):
        kwargs.setdefault("tag", f"hold{len(self.started)}")
        return self._track(Hold(self.world, self.state_dir, k, names, *args, **kwargs))

    def background(self, *args):
        return self._track(BackgroundClient(self.world, *args))

    def close(self):
        for thing in self.started:
            thing.close()


class XdpWatch:
    """The id of the XDP program on the lb's eth0 every 20 ms, from a
    thread, until stop(): [(unix time, id or None)], one entry per change."""

    def __init__(self, lb, period_s=0.02):
        self.lb = lb
        self.period_s = period_s
        self.changes = []
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
            if now != last:
                self.changes.append((time.time(), now))
                last = now
            self._stop.wait(self.period_s)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.changes
