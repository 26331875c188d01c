"""What a test of ballastd's own life (tests/e2e/test_lifecycle.py) watches
while it stops, restarts or refuses to start: the house rule is that the
daemon never stops forwarding by itself, so each piece here measures one way
forwarding could have stopped.

Held       long-lived keep-alive connections (client.py --hold), each asking
           every 100 ms: judged by held_problems (none failed, none moved)
Stream     new connections at a fixed rate (client.py --stream): judged by
           stream_problems (none failed, shares by weight, no stray backend)
XdpWatch   the XDP program on the lb's eth0 every 20 ms: judged by
           xdp_problems (never without one; at most the replacements the
           test allows)
conn_entries / mark_conn_entries / conn_problems: the connection table's
           entries of the held flows, read from the pinned map and marked:
           the very same entries kept, with the same backend
adoption_problems / changelog_problems: what a restart must carry over
           (backends, ids, weights, table entries, counters, change log)
pins_listing, ballastd_again, cli_text, xdp_attached: the state a refused
           start must leave as it found it
link_delete / link_create: the lb's eth0 and its bridge port deleted and
           made again, in the same namespaces (so World.close still tears
           them down)

Each *_problems function returns a list of what was wrong (empty: nothing),
so that a test can report every broken rule of one run at once.
"""

import json
import logging
import math
import os
import pathlib
import re
import socket
import subprocess
import threading
import time

from pyroute2 import NetNS

from .processes import BackgroundClient, Failure
from .world import HTTP_PORT, IFA_F_NODAD, SUBNET6_LEN, SUBNET_LEN, VIP1, inside

log = logging.getLogger("e2e")

HOLD_READY_TIMEOUT_S = 20


class Held:
    """@k long-lived TCP connections (HTTP keep-alive) on each backend named
    in @names, one GET each every @interval seconds until stop(); a
    connection that fails once is dead, never reopened (client.py --hold).
    Returns once every connection is held; fails the test if the client
    exits first or is not ready within 20 s."""

    def __init__(self, world, state_dir, k, names, interval=0.1, timeout_s=3, tag="hold"):
        self.ready = state_dir / f"{tag}.ready"
        self.stop_file = state_dir / f"{tag}.stop"
        for f in (self.ready, self.stop_file):
            f.unlink(missing_ok=True)
        self.client = BackgroundClient(
            world, "--vip", VIP1, "--port", HTTP_PORT, "--hold", k, "--on", ",".join(names),
            "--interval", interval, "--timeout", timeout_s,
            "--stop-file", self.stop_file, "--ready-file", self.ready)
        deadline = time.monotonic() + HOLD_READY_TIMEOUT_S
        while not self.ready.exists():
            if self.client.proc.poll() is not None:
                err = self.client.proc.stderr.read().strip()
                raise Failure(f"hold client exited before holding its connections: {err[-300:]}")
            if time.monotonic() > deadline:
                self.client.close()
                raise Failure(f"hold client not ready after {HOLD_READY_TIMEOUT_S} s")
            time.sleep(0.05)
        self.connections = json.loads(self.ready.read_text())
        log.info("holding: %s", self.connections)

    @property
    def sports(self):
        return {c["sport"]: c["backend"] for c in self.connections}

    def stop(self):
        """Closes the connections: client.py's report."""
        self.stop_file.write_text("")
        report = self.client.stop(timeout_s=60)
        log.info("held: %d answered, %d failed", report["ok"], report["failed"])
        return report

    def close(self):
        self.client.close()


def held_problems(report):
    """Every held connection answered every time, always by the backend that
    answered it first (lib.sh's assert_held; `moves` and `errors` are the
    same facts as client.py records them)."""
    bad = []
    for c in report["connections"]:
        others = sorted(set(c["answers"]) - {c["backend"]})
        if c["failed"] or c["dead"] or c["errors"]:
            bad.append(f"held connection from port {c['sport']} to {c['backend']} failed after "
                       f"{c['ok']} answers ({c['errors']}, first at {c['first_error_unix']})")
        if others or c["moves"]:
            bad.append(f"held connection from port {c['sport']} moved from {c['backend']} to "
                       f"{others} ({c['moves'][:3]})")
    if not report["connections"]:
        bad.append("the hold client reported no connections")
    return bad


class Stream:
    """New HTTP connections to VIP1 started at @rate per second, on a fixed
    schedule, until stop() or @duration_s (client.py --stream); a request
    not answered within @timeout_s is a failure, never retried. Extra
    client.py arguments (say --sport-base) follow."""

    def __init__(self, world, rate, timeout_s, duration_s, *extra):
        self.client = BackgroundClient(world, "--vip", VIP1, "--port", HTTP_PORT,
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
    """lib.sh's assert_stream: every request of the stream started at or
    after @since (unix seconds) was answered, by the backends of @weights
    ({name: weight}) only, each within max(5 points, 5 sd) of its weight's
    share (weight 0: none at all); at least 20 requests to judge. The
    client's --timeout bounds how long any one request may have waited, and
    so the longest gap in answers the check lets through."""
    reqs = [q for q in report["requests"] if q[0] >= since]
    if len(reqs) < 20:
        return [f"only {len(reqs)} stream requests started after {since:.3f}: too few to judge"]
    bad = []
    failed = [q for q in reqs if q[2].startswith("!")]
    if failed:
        first = ", ".join(f"{q[2][1:]} at {q[0]:.2f}" for q in failed[:3])
        bad.append(f"{len(failed)} of {len(reqs)} stream requests failed ({first})")
    ok = [q[2] for q in reqs if not q[2].startswith("!")]
    total_w = sum(weights.values())
    for name, w in weights.items():
        got = ok.count(name)
        exp = w / total_w
        obs = got / len(ok) if ok else 0.0
        tol = max(0.05, 5 * math.sqrt(exp * (1 - exp) / max(1, len(ok))))
        if w == 0 and got:
            bad.append(f"{name} (no new flows allowed) answered {got} stream requests")
        elif w and abs(obs - exp) > tol:
            bad.append(f"{name} stream share {obs:.3f}, expected {exp:.3f} ± {tol:.3f}")
    strays = sorted(set(ok) - set(weights))
    if strays:
        bad.append(f"stream answers from {strays}, which should get none")
    slowest = max(q[1] - q[0] for q in reqs)
    log.info("stream: %d requests from %.3f, %d failed, slowest %.3f s", len(reqs), since,
             len(failed), slowest)
    return bad


def xdp_prog_id(world):
    """The id of the XDP program on the lb's eth0; None when none is (or
    when eth0 is not there)."""
    out = subprocess.run(["ip", "-n", world.lb.ns, "-d", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout
    found = re.search(r"prog/xdp id (\d+)", out)
    return int(found.group(1)) if found else None


def xdp_attached(world):
    """Anything XDP on the lb's eth0 (any mode)."""
    out = subprocess.run(["ip", "-n", world.lb.ns, "link", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout
    return "xdp" in out


class XdpWatch:
    """The XDP program on the lb's eth0, looked at every 20 ms from a thread
    until stop(): [(unix time, id or None)], one entry per change (lib.sh's
    xdp_watch)."""

    PERIOD_S = 0.02

    def __init__(self, world):
        self.world = world
        self.changes = []
        self.looks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        last = object()
        while not self._stop.is_set():
            cur = xdp_prog_id(self.world)
            self.looks += 1
            if cur != last:
                self.changes.append((time.time(), cur))
                last = cur
            self._stop.wait(self.PERIOD_S)

    def stop(self):
        self._stop.set()
        self._thread.join()
        log.info("XDP program on the lb's eth0 (%d looks): %s", self.looks,
                 " | ".join(f"{t:.3f} {i or 'none'}" for t, i in self.changes))
        return self.changes

    def close(self):
        self._stop.set()
        self._thread.join()


def xdp_problems(changes, replacements):
    """The lb's eth0 never without a program, and its program replaced at
    most @replacements times (0: the same program id from start to end)."""
    bad = []
    if not changes:
        return ["the XDP watch looked at nothing"]
    gaps = [t for t, i in changes if i is None]
    if gaps:
        bad.append(f"the lb's eth0 was without an XDP program (at {gaps[0]:.3f}; "
                   + " | ".join(f"{t:.3f} {i or 'none'}" for t, i in changes) + ")")
    ids = [i for _, i in changes if i is not None]
    if len(ids) - 1 > replacements:
        bad.append(f"the XDP program was replaced {len(ids) - 1} times ({ids}), "
                   f"{replacements} allowed")
    return bad


def pins_listing(pin_dir):
    """(the pin directory's entries, the connection table's entry count): to
    compare before and after a refused start."""
    names = sorted(os.listdir(pin_dir)) if os.path.isdir(pin_dir) else None
    return names, len(bpf_dump(f"{pin_dir}/conn_table"))


def bpf_dump(pinned):
    """`bpftool map dump pinned PATH -j`: [(key bytes, value bytes)]."""
    out = subprocess.run(["bpftool", "map", "dump", "pinned", pinned, "-j"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"bpftool map dump pinned {pinned}: {out.stderr.strip()[-300:]}")
    return [(bytes(int(b, 16) for b in e["key"]), bytes(int(b, 16) for b in e["value"]))
            for e in json.loads(out.stdout)]


# struct ballast_flow_key (bpf/ballast_abi.h): src[16] dst[16] sport dport
# (network order) proto family pad[2]; struct ballast_conn: backend_id, hash
# (host order), last_seen_ns.
FLOW_KEY_SIZE = 40
CONN_MARK = 0xBA11A5F0


def conn_entries(pin_dir, sports):
    """{client source port: (key, value)} of the TCP connection-table
    entries from the client to VIP1:80 whose source port is in @sports."""
    vip = socket.inet_aton(VIP1)
    found = {}
    for key, value in bpf_dump(f"{pin_dir}/conn_table"):
        if len(key) != FLOW_KEY_SIZE or key[16:20] != vip or key[36] != socket.IPPROTO_TCP:
            continue
        sport, dport = int.from_bytes(key[32:34], "big"), int.from_bytes(key[34:36], "big")
        if dport == HTTP_PORT and sport in sports:
            found[sport] = (key, value)
    return found


def mark_conn_entries(pin_dir, entries):
    """Writes a mark into the hash field of each of @entries (conn_entries)
    in the pinned table, the backend left as it is: {sport: mark}.

    Why a mark: a flow whose entry is lost is placed again on its next
    packet by the same Maglev table, on the same backend, with a fresh entry
    (bpf/select.h), so neither "the connection never moved" nor "it has an
    entry" tells a kept table from a lost one. The data plane reads the
    hash field only in the encapsulating modes and never writes it into an
    existing entry, and ballastd never reads it: in dsr mode the mark
    changes nothing, and it is still there afterwards only if the entry
    is."""
    marks = {}
    for sport, (key, value) in entries.items():
        mark = (CONN_MARK + sport) & 0xFFFFFFFF
        new = value[0:4] + mark.to_bytes(4, "little") + value[8:]
        out = subprocess.run(["bpftool", "map", "update", "pinned", f"{pin_dir}/conn_table",
                              "key", "hex", *(f"{b:02x}" for b in key),
                              "value", "hex", *(f"{b:02x}" for b in new), "exist"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise Failure(f"marking the entry of port {sport}: {out.stderr.strip()[-300:]}")
        marks[sport] = mark
    return marks


def conn_problems(sports, before, marks, after):
    """Each held flow (@sports) had its connection-table entry before the
    event (@before, marked with @marks) and still has that very entry (the
    mark, the same backend id) after it (@after)."""
    bad = []
    missing = sorted(set(sports) - set(before))
    if missing:
        bad.append(f"held flows from ports {missing} had no connection-table entry before "
                   "the event")
    lost = sorted(p for p in before if p not in after)
    if lost:
        bad.append(f"the connection table lost the entries of held flows from ports {lost}")
    for p in sorted(set(before) & set(after)):
        backend0 = int.from_bytes(before[p][1][0:4], "little")
        backend1, mark1 = (int.from_bytes(after[p][1][i:i + 4], "little") for i in (0, 4))
        if backend1 != backend0:
            bad.append(f"the connection-table entry of port {p} changed backend: "
                       f"{backend0} -> {backend1}")
        if mark1 != marks.get(p):
            bad.append(f"the connection-table entry of port {p} was made anew (hash {mark1:#x}, "
                       f"marked {marks.get(p, 0):#x}): the table lost it")
    return bad


def adoption_problems(list0, list1, stats0, stats1):
    """What a restart lost, from `ballast backend list` and `ballast stats`
    before (0) and after (1): a backend gone, or its id, drain, weight or
    Maglev table entries changed; any counter that went down (lib.sh's
    adoption_problems)."""
    bad = []

    def key(b):
        return (b["vip"], b["address"])

    b1 = {key(b): b for b in list1}
    for b in list0:
        n = b1.get(key(b))
        if n is None:
            bad.append(f"{key(b)} gone after the event")
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


def changelog_problems(log0, log1):
    """Every change-log entry from before the event is still there after it
    (and there was one)."""
    def key(e):
        return (e["unix_ms"], e["actor"], e["change"])

    before, after = set(map(key, log0)), set(map(key, log1))
    lost = sorted(before - after)
    if not before or lost:
        return [f"the change log did not continue: {len(lost)} of {len(before)} entries lost: "
                f"{lost[:3]}"]
    return []


def ballastd_again(lb, socket_path=None, timeout_s=20):
    """The same ballastd command as lb.start's (its config, socket and pin
    dir), run in the foreground for @timeout_s at most: (exit status, output).
    124 when it was still running at the limit (then killed)."""
    argv = lb.world.lb.exec_argv([f"{lb.build_dir}/ballastd", "--config",
                                  str(lb.state_dir / "ballast.yaml"),
                                  "--socket", str(socket_path or lb.socket),
                                  "--pin-dir", lb.pin_dir])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        rc, out = 124, text(e.stdout) + text(e.stderr)
    log.info("second ballastd exited %d: %s", rc, oneline(out))
    return rc, out


def cli_text(lb, *args):
    """`ballast ARGS` against @lb, as an operator reads it: (status, stdout
    and stderr)."""
    done = subprocess.run([f"{lb.build_dir}/ballast", *map(str, args), "--socket", lb.socket],
                          capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def oneline(text):
    return " | ".join(line for line in text.splitlines() if line.strip())[-600:]


class PortHolder:
    """127.0.0.1:@port taken in @node's namespace (a socket of this process,
    bound and listening there, so that ballastd's metrics listener cannot
    have it) until close()."""

    def __init__(self, node, port):
        with inside(node.ns):
            self.sock = socket.socket()
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port))
            self.sock.listen(1)
        except OSError as e:
            self.sock.close()
            raise Failure(f"could not hold port {port} in {node.ns}: {e}")

    def close(self):
        self.sock.close()


def fd_targets(pid):
    """{descriptor: what it refers to} of process @pid."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:   # closed meanwhile
            pass
    return out


def settled_fds(pid, limit, timeout_s=2.0):
    """fd_targets(@pid) once it holds at most @limit descriptors, or as it is
    after @timeout_s: a descriptor ballastd has yet to close (the control
    connection of the request just answered) is not a leak, and one that
    is still open seconds later is. Returns (first look, last look)."""
    first = fds = fd_targets(pid)
    deadline = time.monotonic() + timeout_s
    while len(fds) > limit and time.monotonic() < deadline:
        time.sleep(0.1)
        fds = fd_targets(pid)
    return first, fds


def new_fds(before, after):
    return sorted(f"{fd} -> {target}" for fd, target in after.items()
                  if before.get(fd) != target)


def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise Failure(f"no VmRSS for pid {pid}")


def link_mac(node):
    with NetNS(node.ns) as ipr:
        return ipr.get_links(ipr.link_lookup(ifname="eth0")[0])[0].get_attr("IFLA_ADDRESS")


def link_index(node):
    """@node's eth0 index, or None when it has none."""
    with NetNS(node.ns) as ipr:
        found = ipr.link_lookup(ifname="eth0")
        return found[0] if found else None


def link_delete(node):
    """@node's eth0 deleted; its veth peer, the node's bridge port, goes
    with it."""
    with NetNS(node.ns) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname="eth0")[0])


def link_create(world, node, mac):
    """@node's eth0 and its bridge port made again as World.build made them
    (straight into the switch's and the node's namespaces, so World.close
    removes them with the namespaces): hardware address @mac (an interface
    that comes back keeps its own), the node's addresses, and, for the lb,
    the pass program on its bridge port that XDP_TX on veth needs."""
    with NetNS(world.sw) as sw:
        sw.link("add", ifname=node.port, kind="veth",
                peer={"ifname": "eth0", "net_ns_fd": node.ns})
        port = sw.link_lookup(ifname=node.port)[0]
        sw.link("set", index=port, master=sw.link_lookup(ifname=world.bridge)[0])
        sw.link("set", index=port, state="up")
    with NetNS(node.ns) as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("set", index=eth0, address=mac)
        if node.ip:
            ipr.addr("add", index=eth0, address=node.ip, prefixlen=SUBNET_LEN)
        if node.ip6:
            ipr.addr("add", index=eth0, address=node.ip6, prefixlen=SUBNET6_LEN,
                     flags=IFA_F_NODAD)
        ipr.link("set", index=eth0, state="up")
    node.mac = mac
    if node is world.lb:
        subprocess.run(["ip", "-n", world.sw, "link", "set", "dev", node.port, "xdpdrv", "obj",
                        f"{world.build_dir}/bpf/xdp_pass.bpf.o", "sec", "xdp"],
                       check=True, capture_output=True)


XDP_ATTACHED_DRV = 1     # (linux/if_link.h): native mode


def xdp_on_link(node):
    """What `ip -d -j link show` says is attached to @node's eth0: {"mode",
    "prog": {"id", "name", ...}}, or None."""
    out = subprocess.run(["ip", "-n", node.ns, "-d", "-j", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)[0].get("xdp")

