"""Ballast under failure and change (issue #3): health checks taking dead
backends out and bringing them back, fail-open, drains, weight 0, `ballast
apply` and SIGHUP, weight changes under heavy traffic, and a hitless
restart after `kill -9`, all with real traffic from the client namespace
through ballastd's XDP balancer to the backends.

The world has four backends. be4 is the one no flow may ever reach in
test_atomic_weight_changes; where a test takes be1 out of new flows by a
drain or weight 0 it takes part too, so that the backends left share
1:1:2 (the pre-apply audit refuses a drain that leaves one backend more
than half of a VIP's new flows by weight, so 1:2 among two is not an
option). Every test starts its own ballastd; after each, the lb fixture
restarts any backend server the test killed and sets every health path
back to "up" (Backends.restore).

Backends fail in two ways (harness/processes.py, backend_server.py):
  kill(be): the server process dies and its ports refuse connections (the
    health check sees "connection refused" at once, clients a reset);
  set_health(be, "sick" | "flap" | "up"): only the health path (/healthz,
    at the backend's own address) answers 503, or 503/200 alternately; the
    VIPs' traffic is still served.

Timing: no test asserts a performance figure. Where a rule has a time in
it (failover within interval x fall + 1 s, drain --wait's --timeout and
--idle), the check is that time, measured from the event on the wall clock
that client.py and `ballast log` use, by a poll that always runs once more
after the deadline (harness/state.py wait_backend).

Shares: every distribution check sends N = 3,000 new flows, each from its
own source port (SOURCE_PORTS), and allows 4 binomial sd per share
(harness/checks.py). Over 1:1:2 that is +-3.65 points on the weight-2
backend's 50 %, so weights applied as 1:1:1.5 (42.9 %) fail; over 1:2
(be1 dead, be2 and be3 left) +-3.44 points on 66.7 %, so 1:1.5 (60 %)
fails; over 1:1:1:2, +-3.58 points on be4's 40 %, so 1:1:1:1.5 (33.3 %)
fails.

E2E_FLIPS=N: the applies of test_atomic_weight_changes (default 1,000).
"""

import datetime
import json
import logging
import os
import re
import signal
import subprocess
import time

import pytest
from pyroute2 import NetNS

from harness.checks import assert_all_ok, assert_shares, one_line
from harness.configs import VIP_TCP, VIP_UDP, config, vip, vip_key
from harness.continuity import (Held, Stream, XdpWatch, adoption_problems, held_problems,
                                stream_problems, xdp_problems)
from harness.processes import SOURCE_PORTS, BackgroundClient, Failure, ballast, batch
from harness.state import (backend_row, log_matching, stats_backend, stats_reason, wait_all_up,
                           wait_backend)
from harness.world import HTTP_PORT, SUBNET_LEN, UDP_PORT, VIP1, VIP2, backend_ip

log = logging.getLogger("e2e")

WORLD = {"backends": 4}

N = 3000
FLOOD_PORT = 9001
FLIPS = int(os.environ.get("E2E_FLIPS", "1000"))
VIP_FLOOD = vip_key(FLOOD_PORT, "udp")
VIP_NEW = vip_key(HTTP_PORT, address=VIP2)
BE1, BE2, BE3, BE4 = (backend_ip(i) for i in range(1, 5))
# Health checks for the tests that only need them quick; a test that
# depends on particular numbers spells its own.
FAST_CHECK = "{type: http, path: /healthz, interval: 250ms, timeout: 200ms, rise: 2, fall: 2}"
ALL_PINS = ("vips", "backends", "maglev_tables", "conn_table", "vip_stats", "backend_stats",
            "reason_stats")


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
        return self._track(Held(self.world, self.state_dir, k, names, *args, **kwargs))

    def background(self, *args):
        return self._track(BackgroundClient(self.world, *args))

    def close(self):
        for thing in self.started:
            thing.close()


@pytest.fixture
def traffic(world, state_dir, lb):
    """Background clients of one test, stopped after it (before its
    ballastd: this fixture depends on lb, so it is torn down first)."""
    t = Traffic(world, state_dir)
    yield t
    t.close()


def cli_start(lb, *args):
    """`ballast ARGS --socket S` started and left running (its pid is the
    actor the change log names; communicate() ends it)."""
    return subprocess.Popen([f"{lb.build_dir}/ballast", *map(str, args), "--socket", lb.socket],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tcp_only(world, weights, check=None):
    """A config with VIP1:80/tcp alone over be1..be4 (None: left out)."""
    return config(vip(world, HTTP_PORT, weights=weights, check=check))


def new_flows(lb, address, vip_name=VIP_TCP):
    return stats_backend(lb.cli("stats"), vip_name, address)["new_flows"]


# --- Health checks: failover, partial failure, established flows, damping -------


def test_failover_time(world, lb, traffic):
    """A backend whose server dies leaves the VIP's Maglev table within
    interval x fall + 1 s of its death; every connection started after it
    left succeeds, and the others share its traffic by weight.

    The bound: a dead server refuses the check's connection at once (its
    500 ms timeout never runs), and the check before the kill may still
    have passed, so the fall-th failure (fall 3) starts at most 3 intervals
    (1 s each) after the kill: 3 s. The second allowed beyond it covers the
    table build, the 0.1 s poll and a loaded machine's scheduling. The log's
    up -> down entry, by the health checker, must fall in the same window.

    Shares: weights 1:1:2, be1 killed; the 3,000 flows after it left must
    split be2:be3 as 1:2 (+-3.44 points: 1:1.5 fails), be1 none. The stream
    (50 new connections a second, from before the kill until after the
    batch) must have no failure and no answer from be1 among the requests
    started once be1 was out."""
    interval_s, fall = 1.0, 3
    check = "{type: http, path: /healthz, interval: 1s, timeout: 500ms, rise: 2, fall: 3}"
    limit = interval_s * fall + 1.0
    be1 = world.backends[0]
    lb.start(tcp_only(world, [1, 1, 2, None], check))
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])

    stream = traffic.stream(50, timeout_s=2)
    time.sleep(1.5)     # connections to every backend in flight at the kill
    t_kill = time.time()
    world.backend_servers.kill(be1)
    _, seen, t_out = wait_backend(lb, VIP_TCP, BE1, "out of the Maglev table",
                               lambda b: b["table_entries"] == 0, deadline=t_kill + limit)
    log.info("be1 out of rotation %.2f..%.2f s after the kill (limit %.0f s)",
             seen - t_kill, t_out - t_kill, limit)
    health = backend_row(lb, VIP_TCP, BE1)["health"]
    spread = batch(world, N)
    report = stream.stop()

    bad = []
    if health != "down":
        bad.append(f"be1 has no table entries but its health is {health}, not down")
    bad += stream_problems(report, {"be2": 1, "be3": 2}, since=t_out)
    entries = lb.cli("log")
    down = log_matching(entries, "", "backend health " + re.escape(f"{VIP_TCP} {BE1}")
                        + " up -> down")
    if not down:
        bad.append(f"ballast log has no 'backend health {VIP_TCP} {BE1} up -> down' entry: "
                   f"{entries[-5:]}")
    else:
        after = down[0]["unix_ms"] / 1000 - t_kill
        log.info("log: be1 up -> down %.2f s after the kill, actor %s", after, down[0]["actor"])
        if not 0 <= after <= limit:
            bad.append(f"the log's up -> down entry is {after:.2f} s after the kill, "
                       f"not within 0..{limit:.0f} s")
        if not log_matching(down[:1], "health-check", ""):
            bad.append(f"the up -> down entry's actor is {down[0]['actor']!r}, not health-check")
    assert not bad, "; ".join(bad)
    assert_all_ok(spread, N)
    assert_shares(spread, {"be1": 0, "be2": 1, "be3": 2})


def test_partial_failures(world, lb):
    """New flows go only to backends that are up, by weight: 1 of 3 down,
    the other two share by weight (and `ballast stats` says so in
    expected_share); 2 of 3 down, all go to the last; all down with
    fail_open false, new flows are dropped (drop_no_backend) and no backend
    is sent a packet; all down with fail_open true, they are still sent to
    the backends, which refuse them. Dead backends that come back are up
    again after `rise` passes and take their shares again.

    Shares: weights 1:1:2. be1 dead: 3,000 flows must split be2:be3 as 1:2
    (+-3.44 points; 1:1.5 fails). All back: 3,000 flows as 1:1:2
    (+-3.65 points on be3's 50 %; 1:1:1.5 fails). be1 and be2 dead: 300
    flows, every one to be3 (exact)."""
    be1, be2, be3 = world.backends[:3]
    servers = world.backend_servers
    weights = [1, 1, 2, None]
    lb.start(config(vip(world, HTTP_PORT, weights=weights, check=FAST_CHECK, fail_open=False)))
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])

    def wait_out(address):
        wait_backend(lb, VIP_TCP, address, "down and out of the table",
                     lambda b: b["health"] == "down" and b["table_entries"] == 0, within=5)

    # 1 of 3 down: be2 and be3 share 1:2.
    servers.kill(be1)
    wait_out(BE1)
    one = batch(world, N)
    assert_all_ok(one, N)
    assert_shares(one, {"be1": 0, "be2": 1, "be3": 2})
    got = {b["address"]: b["expected_share"]
           for b in next(v for v in lb.cli("stats")["vips"] if v["vip"] == VIP_TCP)["backends"]}
    want = {BE1: 0.0, BE2: 1 / 3, BE3: 2 / 3}
    wrong = [f"{a} {got.get(a)} (want {w:.3f})" for a, w in want.items()
             if got.get(a) is None or abs(got[a] - w) > 0.001]
    assert not wrong, f"expected_share with be1 down: {'; '.join(wrong)}"

    # 2 of 3 down: everything to be3.
    servers.kill(be2)
    wait_out(BE2)
    two = batch(world, 300)
    assert_all_ok(two, 300)
    assert_shares(two, {"be1": 0, "be2": 0, "be3": 1})

    # 3 of 3 down, fail_open false: new connections dropped, counted.
    servers.kill(be3)
    wait_backend(lb, VIP_TCP, BE3, "down", lambda b: b["health"] == "down", within=5)
    before = lb.cli("stats")
    none = batch(world, 20, "--workers", 20, "--timeout", 1, give_up_after=None)
    after = lb.cli("stats")
    bad = []
    if none["ok"]:
        bad.append(f"all backends down, fail_open false: {none['ok']} of 20 connections answered")
    dropped = stats_reason(after, "drop_no_backend") - stats_reason(before, "drop_no_backend")
    if dropped < 20:
        bad.append(f"all backends down, fail_open false: drop_no_backend rose by {dropped} "
                   "for 20 new connections")
    for be in (be1, be2, be3):
        sent = (stats_backend(after, VIP_TCP, be.ip)["packets"]
                - stats_backend(before, VIP_TCP, be.ip)["packets"])
        if sent:
            bad.append(f"all backends down, fail_open false: {be.name} was sent {sent} packets")
    assert not bad, "; ".join(bad)

    # They come back: up again after `rise` passes, shares by weight.
    for be in (be1, be2, be3):
        servers.start(be)
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])
    back = batch(world, N)
    assert_all_ok(back, N)
    assert_shares(back, {"be1": 1, "be2": 1, "be3": 2})

    # All down again, fail_open true (a fresh ballastd: each backend's
    # first check decides): new connections still reach the backends,
    # which refuse them (a reset, not a timeout), and their counters rise.
    for be in (be1, be2, be3):
        servers.kill(be)
    lb.stop()
    lb.remove()
    lb.start(config(vip(world, HTTP_PORT, weights=weights, check=FAST_CHECK, fail_open=True)))
    for address in (BE1, BE2, BE3):
        wait_backend(lb, VIP_TCP, address, "down", lambda b: b["health"] == "down", within=5)
    before = lb.cli("stats")
    # 60 connections at shares 1/4, 1/4, 1/2: each backend gets at least
    # one but for a chance of (3/4)^60 = 3e-8.
    opened = batch(world, 60, "--workers", 20, "--timeout", 2, give_up_after=None)
    after = lb.cli("stats")
    if opened["ok"] or set(opened["errors"]) - {"refused", "reset"}:
        bad.append("fail_open true, all down: want every connection refused by a backend, got "
                   f"{opened['ok']} answered, errors {opened['errors']}")
    for be in (be1, be2, be3):
        b0, b1 = (stats_backend(s, VIP_TCP, be.ip)["packets"] for s in (before, after))
        if b1 <= b0:
            bad.append(f"fail_open true, all down: {be.name}'s packet counter did not rise "
                       f"({b0} -> {b1})")
    dropped = stats_reason(after, "drop_no_backend") - stats_reason(before, "drop_no_backend")
    if dropped:
        bad.append(f"fail_open true: drop_no_backend rose by {dropped}")
    assert not bad, "; ".join(bad)


def test_down_moves_established(world, lb, traffic):
    """A backend that goes down leaves the table, and its established flows
    move to the other backends on their next packet: a long-lived UDP flow
    is answered by another backend from then on (moved once, from be1 to
    be2 or be3, within 0.5 s of be1 being seen down and not before its check
    was made to fail, no datagram lost); a long-lived TCP connection to it
    is reset (the backend it moved to never knew it). be1 goes down by its
    health check only: its server still answers the VIPs, so only the
    balancer can have moved the flows."""
    be1 = world.backends[0]
    udp_check = FAST_CHECK[:-1] + f", port: {HTTP_PORT}}}"
    lb.start(config(vip(world, HTTP_PORT, weights=[1, 1, 1, None], check=FAST_CHECK),
                    vip(world, UDP_PORT, proto="udp", weights=[1, 1, 1, None], check=udp_check)))
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])
    wait_all_up(lb, VIP_UDP, [BE1, BE2, BE3])
    udp = traffic.hold(2, ["be1"], "--proto", "udp", timeout_s=1, port=UDP_PORT, tag="udp")
    tcp = traffic.hold(1, ["be1"], tag="tcp")
    time.sleep(0.5)     # both held flows answered by be1 a few times first

    t_sick = time.time()
    world.backend_servers.set_health(be1, "sick")
    for v in (VIP_TCP, VIP_UDP):
        wait_backend(lb, v, BE1, "down and out of the table",
                     lambda b: b["health"] == "down" and b["table_entries"] == 0, within=5)
    t_down = time.time()
    time.sleep(1.5)     # 15 more requests on each held flow
    udp_report, tcp_report = udp.stop(), tcp.stop()

    bad = []
    for c in udp_report["connections"]:
        m = c["moves"]
        log.info("UDP flow from port %s: answers %s, moves %s, %s lost", c["sport"], c["answers"],
                 m, c["failed"])
        if not m:
            bad.append(f"UDP flow from port {c['sport']} still answered only by be1 after be1 "
                       "went down")
        elif len(m) > 1 or m[0][1] != "be1" or m[0][2] not in ("be2", "be3"):
            bad.append(f"UDP flow from port {c['sport']} did not move once from be1 to be2 or "
                       f"be3: {m}")
        elif not t_sick <= m[0][0] <= t_down + 0.5:
            # Its next datagram after the swap (one every 0.1 s) moves it.
            bad.append(f"UDP flow from port {c['sport']} moved {m[0][0] - t_down:+.2f} s from "
                       f"when be1 was seen down ({t_sick - t_down:+.2f} s: its check made to fail)")
        if c["failed"]:
            bad.append(f"UDP flow from port {c['sport']}: {c['failed']} datagrams unanswered "
                       f"({c['errors']})")
    for c in tcp_report["connections"]:
        log.info("TCP connection from port %s: answers %s, errors %s, dead %s", c["sport"],
                 c["answers"], c["errors"], c["dead"])
        if not c["dead"] or set(c["answers"]) != {"be1"}:
            bad.append(f"TCP connection from port {c['sport']} to be1 not moved (reset) after be1 "
                       f"went down: answers {c['answers']}, dead {c['dead']}")
    assert not bad, "; ".join(bad)


def test_flapping_damped(world, state_dir, lb):
    """With rise 2 and fall 2, a check that alternates pass and fail never
    has two equal results in a row, so a backend whose state is established
    never changes it: an up backend stays up, a down one stays down (no
    health transition in the log while 12 checks alternate). The test
    checks its own machinery too: be1's served log must show the 12 answers
    alternating."""
    # A generous timeout: one slow answer would be a second failure in a row.
    check = "{type: http, path: /healthz, interval: 400ms, timeout: 300ms, rise: 2, fall: 2}"
    want = 12
    be1 = world.backends[0]
    servers = world.backend_servers
    lb.start(tcp_only(world, [1, 1, 1, None], check))
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])

    bad = []
    for state in ("up", "down"):
        if state == "down":
            servers.set_health(be1, "sick")
            wait_backend(lb, VIP_TCP, BE1, "down", lambda b: b["health"] == "down", within=5)
        t_flap = time.time()
        servers.served_log(be1).write_text("")
        servers.set_health(be1, "flap")
        deadline = time.monotonic() + 15
        while True:
            answers = [line.split()[3] for line in servers.served_log(be1).read_text().splitlines()
                       if line.startswith("check ")]
            if len(answers) >= want:
                break
            if time.monotonic() > deadline:
                raise Failure(f"only {len(answers)} health checks reached be1 in 15 s")
            time.sleep(0.1)
        log.info("be1 (%s), its checks answered: %s", state, " ".join(answers))
        repeats = [i for i in range(1, len(answers)) if answers[i] == answers[i - 1]]
        if repeats:
            raise Failure(f"test machinery: be1's health answers did not alternate: {answers}")
        moved = log_matching(lb.cli("log"), "", "backend health "
                             + re.escape(f"{VIP_TCP} {BE1}") + " ", since=t_flap)
        if moved:
            bad.append(f"be1 was {state}, its check alternated ({want} checks): {len(moved)} "
                       f"health transition(s) in the log: {[e['change'] for e in moved[-2:]]}")
        now = backend_row(lb, VIP_TCP, BE1)["health"]
        if now != state:
            bad.append(f"be1 was {state}, its check alternated: now {now}")
    assert not bad, "; ".join(bad)


# --- Drains and weight 0 -------------------------------------------------------------


def test_recover_while_drained(world, lb):
    """A drained backend that fails and recovers stays drained, taking no
    new flows, until it is undrained; then it takes its full share again.
    Every step is in the change log.

    Shares: weights 1:1:1:2. Drained (and recovered), be1 must get no new
    flow in `ballast stats` and none of 3,000 connections, which split
    be2:be3:be4 as 1:1:2 (+-3.65 points on be4's 50 %; 1:1:1.5 fails).
    Undrained, 3,000 connections split 1:1:1:2 (+-2.92 points on be1's
    20 %: a be1 back at half its weight, 11.1 %, fails)."""
    be1 = world.backends[0]
    lb.start(tcp_only(world, [1, 1, 1, 2], FAST_CHECK))
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3, BE4])
    lb.cli("backend", "drain", VIP_TCP, BE1)
    wait_backend(lb, VIP_TCP, BE1, "drained and out of the table",
                 lambda b: b["drained"] is True and b["table_entries"] == 0, within=2)

    world.backend_servers.set_health(be1, "sick")
    wait_backend(lb, VIP_TCP, BE1, "down", lambda b: b["health"] == "down", within=5)
    world.backend_servers.set_health(be1, "up")
    wait_backend(lb, VIP_TCP, BE1, "up", lambda b: b["health"] == "up", within=5)
    row = backend_row(lb, VIP_TCP, BE1)
    assert row["drained"] is True, f"be1 recovered while drained and is no longer drained: {row}"
    assert row["table_entries"] == 0, f"be1 recovered while drained and is back in the table: {row}"

    nf = new_flows(lb, BE1)
    drained = batch(world, N)
    assert_all_ok(drained, N)
    assert_shares(drained, {"be1": 0, "be2": 1, "be3": 1, "be4": 2})
    assert new_flows(lb, BE1) == nf, \
        f"be1 (drained, recovered) got {new_flows(lb, BE1) - nf} new flows"

    lb.cli("backend", "undrain", VIP_TCP, BE1)
    wait_backend(lb, VIP_TCP, BE1, "undrained and in the table",
                 lambda b: b["drained"] is False and b["table_entries"] > 0, within=2)
    undrained = batch(world, N)
    assert_all_ok(undrained, N)
    assert_shares(undrained, {"be1": 1, "be2": 1, "be3": 1, "be4": 2})

    entries = lb.cli("log")
    missing = [what for what in (f"backend drain {VIP_TCP} {BE1}",
                                 f"backend health {VIP_TCP} {BE1} up -> down",
                                 f"backend health {VIP_TCP} {BE1} down -> up",
                                 f"backend undrain {VIP_TCP} {BE1}")
               if not log_matching(entries, "", re.escape(what))]
    assert not missing, f"ballast log has no {missing}"


def test_weight_zero_keeps_established(world, lb, traffic):
    """Weight 0 and drain stop a backend's new flows but keep its
    established ones: two long-lived connections on each backend are
    answered by their own backend throughout (every 100 ms), while new
    connections go elsewhere.

    Shares: weights 1:1:1:2. With be1 at weight 0, and then at weight 1
    but drained, 3,000 connections each time must split be2:be3:be4 as
    1:1:2 (+-3.65 points on be4's 50 %; 1:1:1.5 fails), none to be1, and
    be1's new_flows in `ballast stats` must not move."""
    lb.start(tcp_only(world, [1, 1, 1, 2]))
    hold = traffic.hold(2, ["be1", "be2", "be3", "be4"])

    lb.cli("backend", "set-weight", VIP_TCP, BE1, "0")
    wait_backend(lb, VIP_TCP, BE1, "out of the table", lambda b: b["table_entries"] == 0, within=2)
    nf = new_flows(lb, BE1)
    zero = batch(world, N)
    assert_all_ok(zero, N)
    assert_shares(zero, {"be1": 0, "be2": 1, "be3": 1, "be4": 2})
    assert new_flows(lb, BE1) == nf, f"be1 (weight 0) got {new_flows(lb, BE1) - nf} new flows"
    time.sleep(0.5)     # the held connections go on past the change

    lb.cli("backend", "set-weight", VIP_TCP, BE1, "1")
    lb.cli("backend", "drain", VIP_TCP, BE1)
    wait_backend(lb, VIP_TCP, BE1, "drained and out of the table",
                 lambda b: b["drained"] is True and b["table_entries"] == 0, within=2)
    nf = new_flows(lb, BE1)
    drain = batch(world, N)
    assert_all_ok(drain, N)
    assert_shares(drain, {"be1": 0, "be2": 1, "be3": 1, "be4": 2})
    assert new_flows(lb, BE1) == nf, f"be1 (drained) got {new_flows(lb, BE1) - nf} new flows"
    time.sleep(0.5)

    report = hold.stop()
    broken = held_problems(report)
    assert not broken, "; ".join(broken)
    assert len(report["connections"]) == 8, report["connections"]


def test_drain_wait(world, lb, traffic):
    """`drain --wait` returns 0 once the backend has had no flow for
    --idle; while a flow stays open it gives up after --timeout with exit
    1, saying on one line of stderr how many flows are left.

    Bounds, from the options and docs/operations.md: with flows open,
    --timeout 3s must end it no sooner than 3 s (2.9 s: the clocks' grain)
    and within 10 s; after the last flow closes, --idle 2s must hold it at
    least 2 s (1.9 s: the client notes the close just after it) and at most
    7 s (the data plane refreshes an entry's last-seen time once a second
    and ballastd's count is a second or two old)."""
    lb.start(tcp_only(world, [1, 1, 1, None]))
    # Two long-lived connections on be1, nothing else on it.
    hold = traffic.hold(2, ["be1"])

    bad = []
    t0 = time.time()
    first = ballast(lb, "backend", "drain", VIP_TCP, BE1, "--wait", "--idle", "2s",
                    "--timeout", "3s")
    el = time.time() - t0
    err = first.stderr
    log.info("drain --wait --timeout 3s with 2 flows open: status %d after %.2f s: %s",
             first.returncode, el, one_line(err))
    if first.returncode != 1:
        bad.append(f"drain --wait with 2 flows open exited {first.returncode} after {el:.2f} s, "
                   f"want 1 (stdout: {one_line(first.stdout)})")
    if len(err.splitlines()) != 1:
        bad.append(f"drain --wait timeout: stderr has {len(err.splitlines())} lines, want one: "
                   f"{one_line(err)}")
    if not (re.search(r"(?<![\d.])\b2\b(?!\.\d)", err) and "flow" in err.lower()):
        bad.append(f"drain --wait timeout does not say that 2 flows are left: {one_line(err)}")
    if not 2.9 <= el <= 10:
        bad.append(f"drain --wait --timeout 3s gave up after {el:.2f} s")
    if backend_row(lb, VIP_TCP, BE1)["drained"] is not True:
        bad.append("be1 not drained after drain --wait timed out")

    lb.cli("backend", "undrain", VIP_TCP, BE1)
    if backend_row(lb, VIP_TCP, BE1)["drained"] is not False:
        bad.append("be1 still drained after undrain")

    # Drain again, waiting; close the flows after 1.5 s.
    waiting = cli_start(lb, "backend", "drain", VIP_TCP, BE1, "--wait", "--idle", "2s",
                        "--timeout", "30s")
    try:
        time.sleep(1.5)
        if waiting.poll() is not None:
            bad.append(f"drain --wait returned ({waiting.returncode}) while 2 flows were open: "
                       f"{one_line(waiting.stderr.read())}")
        report = hold.stop()
        bad += held_problems(report)
        out, err = waiting.communicate(timeout=40)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    el = time.time() - report["closed_unix"]
    log.info("drain --wait --idle 2s: status %d, %.2f s after the flows closed",
             waiting.returncode, el)
    if waiting.returncode != 0:
        bad.append(f"drain --wait exited {waiting.returncode} after the flows closed: "
                   f"{one_line(err)}")
    if not 1.9 <= el <= 7:
        bad.append(f"drain --wait --idle 2s returned {el:.2f} s after the last flow closed, "
                   "want 2 s or later (and within 7 s)")
    assert not bad, "; ".join(bad)


# --- Whole-config changes ------------------------------------------------------------


def json_loads(text):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Failure(f"no JSON ({exc}): {text[:200]}") from exc


def apply_json_problems(reply, applied, want):
    """`ballast apply -o json`: applied as @applied, exactly one change per
    regex of @want and no other."""
    bad = []
    if reply.get("applied") is not applied:
        bad.append(f"applied is {reply.get('applied')!r}, want {applied}")
    changes = reply.get("changes", [])
    for w in want:
        if sum(1 for c in changes if re.search(w, c)) != 1:
            bad.append(f"changes has not exactly one /{w}/")
    if len(changes) != len(want):
        bad.append(f"{len(changes)} changes, want {len(want)}: {changes}")
    return bad


def entry_problems(entries):
    """Each `ballast log` entry's time agrees with its unix_ms; actor and
    change are strings."""
    bad = []
    for e in entries:
        try:
            t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            if abs(t.timestamp() * 1000 - e["unix_ms"]) > 1:
                bad.append(f"time {e['time']} != unix_ms {e['unix_ms']}")
            if not isinstance(e["actor"], str) or not isinstance(e["change"], str):
                bad.append(f"actor/change not strings: {e}")
        except (KeyError, ValueError, TypeError) as exc:
            bad.append(f"{e}: {exc!r}")
    return bad[:3]


def test_apply_and_reload(world, lb):
    """`ballast apply` changes the live config to the file's as one change
    and prints one line per change; --dry-run prints the same and changes
    nothing; an invalid file changes nothing (exit 1, the error named, no
    log entry); SIGHUP applies the edited config file, and a SIGHUP with an
    invalid file changes nothing and leaves ballastd running; every change
    is in `ballast log` with its actor (config at start, the applying
    process's uid and pid, reload); a drain (in no file) survives apply and
    SIGHUP; `ballast log --since` cuts by age. The new VIP answers, every
    one of 50 connections by its only backend, be3."""
    tcp_weights_a, udp_weights = [1, 1, 1, None], [1, 1, None, None]
    a = config(vip(world, HTTP_PORT, weights=tcp_weights_a),
               vip(world, UDP_PORT, proto="udp", weights=udp_weights))
    b = config(vip(world, HTTP_PORT, weights=[2, 1, None, None]),
               vip(world, UDP_PORT, proto="udp", weights=udp_weights),
               vip(world, HTTP_PORT, weights=[None, None, 1, None], address=VIP2))
    bad_text = config(vip(world, HTTP_PORT, weights=[5, -3, None, None]))
    b_path, bad_path = lb.state_dir / "b.yaml", lb.state_dir / "bad.yaml"
    b_path.write_text(b)
    bad_path.write_text(bad_text)
    lb.start(a)
    lb.cli("backend", "drain", VIP_TCP, BE2)

    bad = []
    log0 = lb.cli("log")
    if len(log_matching(log0, "config", "vip add ")) < 2:
        bad.append(f"ballast log: no 'vip add' entries by actor config at start: {log0[:3]}")
    bad += [f"ballast log entries: {p}" for p in entry_problems(log0)]
    list0, vips0 = lb.cli("backend", "list"), lb.cli("vip", "list")

    # The changes from a to b, as the spec words them.
    want = [
        "^backend set-weight " + re.escape(f"{VIP_TCP} {BE1} 1 -> 2") + "$",
        "^backend del " + re.escape(f"{VIP_TCP} {BE3}") + "$",
        "^vip add " + re.escape(VIP_NEW) + "( |$)",
        "^backend add " + re.escape(f"{VIP_NEW} {BE3}") + "( |$)",
    ]

    # --dry-run: the diff, and nothing changed, nothing logged.
    dry = ballast(lb, "apply", "-f", b_path, "--dry-run")
    if dry.returncode != 0:
        raise Failure(f"apply --dry-run exited {dry.returncode}: {one_line(dry.stderr)}")
    log.info("apply --dry-run: %s", one_line(dry.stdout))
    lines = dry.stdout.splitlines()
    not_one = [w for w in want if sum(1 for line in lines if re.search(w, line)) != 1]
    if not_one:
        bad.append(f"apply --dry-run output has not exactly one line for each of {not_one}: "
                   f"{lines}")
    bad += [f"apply --dry-run -o json: {p}" for p in
            apply_json_problems(lb.cli("apply", "-f", b_path, "--dry-run"), False, want)]
    list1 = lb.cli("backend", "list")
    if list1 != list0:
        bad.append(f"apply --dry-run changed the backend list: {list0} -> {list1}")
    if lb.cli("vip", "list") != vips0:
        bad.append("apply --dry-run changed the vip list")
    log1 = lb.cli("log")
    if log1 != log0:
        bad.append(f"apply --dry-run added to the log: {log1[len(log0):][:3]}")

    # apply: the same changes, made and logged under the caller's uid/pid.
    applying = cli_start(lb, "apply", "-f", b_path, "-o", "json")
    out, err = applying.communicate(timeout=60)
    pid = applying.pid
    if applying.returncode != 0:
        raise Failure(f"apply -f b exited {applying.returncode}: {one_line(err)}")
    bad += [f"apply -o json: {p}" for p in apply_json_problems(json_loads(out), True, want)]
    row = backend_row(lb, VIP_TCP, BE1)
    if row["weight"] != 2:
        bad.append(f"after apply, be1's weight is {row['weight']}, want 2")
    if backend_row(lb, VIP_TCP, BE3, missing_ok=True) is not None:
        bad.append(f"after apply, be3 is still in {VIP_TCP}")
    row = backend_row(lb, VIP_NEW, BE3, missing_ok=True)
    if row is None or row["weight"] != 1:
        bad.append(f"after apply, {VIP_NEW} has no be3 of weight 1: {row}")
    if backend_row(lb, VIP_TCP, BE2)["drained"] is not True:
        bad.append("be2's drain did not survive apply")
    new = batch(world, 50, address=VIP2)
    assert_all_ok(new, 50)
    assert_shares(new, {"be3": 1})
    log2 = lb.cli("log")
    for w in want:
        n = len(log_matching(log2, f"uid=0 pid={pid}", w[1:]))
        if n != 1:
            bad.append(f"ballast log: {n} entries /{w}/ by actor 'uid=0 pid={pid}', want 1")

    # Applying the same file again changes nothing.
    again = lb.cli("apply", "-f", b_path)
    if again.get("changes") != []:
        bad.append(f"applying the live config again printed changes: {again.get('changes')}")

    # An invalid file: exit 1, the error named, nothing changed or logged.
    list2 = lb.cli("backend", "list")
    refused = ballast(lb, "apply", "-f", bad_path)
    log.info("apply of an invalid file: status %d: %s", refused.returncode,
             one_line(refused.stderr))
    if refused.returncode != 1:
        bad.append(f"apply of an invalid file (weight -3) exited {refused.returncode}, want 1")
    if "weight" not in refused.stderr.lower():
        bad.append(f"apply of an invalid file does not name 'weight': {one_line(refused.stderr)}")
    dry_refused = ballast(lb, "apply", "-f", bad_path, "--dry-run")
    if dry_refused.returncode != 1:
        bad.append(f"apply --dry-run of an invalid file exited {dry_refused.returncode}, want 1")
    if lb.cli("backend", "list") != list2:
        bad.append("an invalid file changed the backend list")
    if lb.cli("log") != log2:
        bad.append("an invalid file added to the log")

    # SIGHUP: the edited config file is applied, logged as "reload".
    lb.write_config(config(vip(world, HTTP_PORT, weights=[3, 1, None, None]),
                           vip(world, UDP_PORT, proto="udp", weights=udp_weights),
                           vip(world, HTTP_PORT, weights=[None, None, 1, None], address=VIP2)))
    os.kill(lb.proc.pid, signal.SIGHUP)
    wait_backend(lb, VIP_TCP, BE1, "at weight 3", lambda b: b["weight"] == 3, within=5)
    if backend_row(lb, VIP_TCP, BE2)["drained"] is not True:
        bad.append("be2's drain did not survive SIGHUP")
    log4 = lb.cli("log")
    n = len(log_matching(log4, "reload", "backend set-weight "
                         + re.escape(f"{VIP_TCP} {BE1} 2 -> 3") + "$"))
    if n != 1:
        bad.append(f"ballast log: {n} entries 'backend set-weight {VIP_TCP} {BE1} 2 -> 3' by "
                   f"actor reload, want 1: {log4[-3:]}")

    # SIGHUP with an invalid file: nothing changes, ballastd carries on and
    # says why.
    lb.write_config(bad_text)
    list4 = lb.cli("backend", "list")
    refusals = lb.log_text().count("reload refused, nothing changed")
    os.kill(lb.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while lb.log_text().count("reload refused, nothing changed") == refusals:
        if lb.proc.poll() is not None:
            raise Failure(f"ballastd died on SIGHUP with an invalid config "
                          f"(status {lb.proc.returncode})")
        if time.monotonic() > deadline:
            raise Failure("ballastd did not refuse the invalid config within 5 s of SIGHUP: "
                          + one_line(lb.log_text()[-400:]))
        time.sleep(0.05)
    if lb.proc.poll() is not None:
        raise Failure(f"ballastd died on SIGHUP with an invalid config ({lb.proc.returncode})")
    lb.cli("status")    # it answers
    if lb.cli("backend", "list") != list4:
        bad.append("SIGHUP with an invalid file changed the backend list")
    log5 = lb.cli("log")
    if log5 != log4:
        bad.append(f"SIGHUP with an invalid file added to the log: {log5[len(log4):][:3]}")

    # --since: nothing changed in the last 0.5 s (1 s idle after the last
    # change), the reload did within the last minute.
    idle_until = log5[-1]["unix_ms"] / 1000 + 1.0
    time.sleep(max(0.0, idle_until - time.time()))
    recent = lb.cli("log", "--since", "500ms")
    if recent:
        bad.append(f"ballast log --since 500ms, 1 s after the last change: {recent[:3]}")
    if len(log_matching(lb.cli("log", "--since", "1m"), "reload", "backend set-weight ")) != 1:
        bad.append("ballast log --since 1m lacks the reload")
    assert not bad, "; ".join(bad)


def test_atomic_weight_changes(world, lb, traffic):
    """A weight change swaps a VIP's table as one unit, and `ballast apply`
    makes a whole config one change. E2E_FLIPS (1,000) applies alternate
    two configs under a flood of new UDP flows plus a stream of new TCP
    connections:

        VIP1:80/tcp    {be1:1, be2:1, be3:0, be4:0} / {be1:0, be2:1, be3:1, be4:0}
        VIP1:9001/udp  {be1:1, be2:0, be3:0, be4:0} / {be1:0, be2:0, be3:1, be4:0}

    The UDP VIP's two sets have no backend in common: an apply that changed
    be1 and be3 in two steps would leave it an empty table (or one with
    both) in between. Never a drop_no_backend, never a failed request,
    never a packet or new flow to a backend of weight 0 in both sets (be4;
    be2 on the UDP VIP), and be4 serves no connection. The traffic must
    overlap the flips (the stream's requests before the first and after the
    last, half the flood's datagrams forwarded, most of them new flows), and
    every apply must be in the log (one be3 set-weight each)."""
    a = config(vip(world, HTTP_PORT, weights=[1, 1, 0, 0]),
               vip(world, FLOOD_PORT, proto="udp", weights=[1, 0, 0, 0]))
    b = config(vip(world, HTTP_PORT, weights=[0, 1, 1, 0]),
               vip(world, FLOOD_PORT, proto="udp", weights=[0, 0, 1, 0]))
    a_path, b_path = lb.state_dir / "a.yaml", lb.state_dir / "b.yaml"
    a_path.write_text(a)
    b_path.write_text(b)
    lb.start(a)
    world.backend_servers.reset_counts()

    # The flood's sources: 128 more addresses of the client's; 128 x 64,512
    # ports = 8.2 million flows before one repeats (the connection table
    # holds 2M: a repeat would be an established flow, not a new one).
    sources = [f"10.231.0.{i}" for i in range(100, 228)]
    with NetNS(world.client.ns) as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        for address in sources:
            ipr.addr("add", index=eth0, address=address, prefixlen=SUBNET_LEN)
    flood = None
    try:
        stats0 = lb.cli("stats")
        stream = traffic.stream(40, timeout_s=5)
        flood = traffic.background("--vip", VIP1, "--port", FLOOD_PORT, "--flood",
                                   "--src", ",".join(sources), "--duration", 900)
        time.sleep(1)   # both under way before the first flip

        # Each flip leaves the UDP VIP one backend with weight > 0, which
        # the pre-apply audit refuses: --force.
        fails, first_err, done = 0, "", 0
        t0 = time.time()
        for i in range(FLIPS):
            path = b_path if i % 2 == 0 else a_path
            applied = ballast(lb, "apply", "-f", path, "--force")
            done += 1
            if applied.returncode != 0:
                fails += 1
                first_err = first_err or (f"apply {done}: status {applied.returncode}: "
                                          f"{one_line(applied.stderr)}")
                if fails >= 10:     # the test has failed; 10 failures say enough
                    break
        t1 = time.time()
        log.info("%d applies in %.1f s, %d failed", done, t1 - t0, fails)
        time.sleep(1)   # traffic on past the last flip
        sent = flood.stop()
        report = stream.stop()
        stats1 = lb.cli("stats")
    finally:
        if flood is not None:
            flood.close()   # before its source addresses go
        with NetNS(world.client.ns) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            for address in sources:
                try:
                    ipr.addr("del", index=eth0, address=address, prefixlen=SUBNET_LEN)
                except Exception as exc:  # pylint: disable=broad-except
                    log.info("could not remove %s from the client: %r", address, exc)
    assert fails == 0, f"{fails} of {done} applies failed; first: {first_err}"

    bad = []
    dropped = stats_reason(stats1, "drop_no_backend") - stats_reason(stats0, "drop_no_backend")
    if dropped:
        bad.append(f"drop_no_backend rose by {dropped}")
    for key, address, name in ((VIP_TCP, BE4, "be4"), (VIP_FLOOD, BE4, "be4"),
                               (VIP_FLOOD, BE2, "be2")):
        row = stats_backend(stats1, key, address)
        if row["packets"] or row["new_flows"]:
            bad.append(f"{name} (weight 0 in both sets) got {row['packets']} packets, "
                       f"{row['new_flows']} new flows on {key}")

    def vip_counter(stats, field):
        return next(v for v in stats["vips"] if v["vip"] == VIP_FLOOD)[field]

    forwarded = vip_counter(stats1, "packets") - vip_counter(stats0, "packets")
    flows = vip_counter(stats1, "new_flows") - vip_counter(stats0, "new_flows")
    log.info("flood: %d sent at %d/s; the balancer forwarded %d (%d new flows); tx_forwarded %d",
             sent["sent"], sent["rate_pps"], forwarded, flows,
             stats_reason(stats1, "tx_forwarded") - stats_reason(stats0, "tx_forwarded"))
    if forwarded < sent["sent"] * 0.5:
        bad.append(f"only {forwarded} of {sent['sent']} flood packets forwarded: "
                   "was the load there?")
    if flows < forwarded * 0.9:
        bad.append(f"test machinery: only {flows} of {forwarded} flood packets were new flows")
    starts = [q[0] for q in report["requests"]]
    if not starts or min(starts) > t0 or max(starts) < t1:
        bad.append(f"the TCP stream did not span the flips ({t0:.2f}..{t1:.2f}): requests from "
                   f"{min(starts, default=0):.2f} to {max(starts, default=0):.2f}")
    if report["failed"]:
        failed = [q for q in report["requests"] if q[2].startswith("!")][:3]
        bad.append(f"{report['failed']} of {report['ok'] + report['failed']} stream requests "
                   f"failed (first {failed})")
    strays = set(report["by_backend"]) - {"be1", "be2", "be3"}
    if strays:
        bad.append(f"stream answers from {sorted(strays)}")
    served = world.backend_servers.served(world.backends[3], "tcp", VIP1, HTTP_PORT)
    if served:
        bad.append(f"be4 served {served} TCP connections")
    # The flips happened: every apply logged its changes.
    n = len(log_matching(lb.cli("log"), "", "backend set-weight "
                         + re.escape(f"{VIP_TCP} {BE3}") + " "))
    if n != done:
        bad.append(f"ballast log has {n} set-weight entries for be3, want one per apply ({done})")
    assert not bad, "; ".join(bad)


# --- Restart ----------------------------------------------------------------------------


def test_hitless_restart(world, lb, traffic):
    """After `kill -9` the XDP program stays attached (the same program id)
    and the maps stay pinned; a new ballastd with the same config, pin dir
    and socket adopts the live state, swapping its own program in
    atomically: the interface is never without a program (watched every
    20 ms), no new TCP or UDP request fails (streams of 40 and 20 a second
    throughout), no long-lived connection fails or changes backend, and
    the backend ids, weights, table entries, the drain (new connections
    after the restart still avoid be3) and every counter carry over. The
    moment the new ballastd is ready, be1 and be2 are up and in the table
    and be3 drained: adopted, not relearnt by health checks."""
    check = "{type: http, path: /healthz, interval: 500ms, timeout: 300ms, rise: 2, fall: 2}"
    cfg = config(vip(world, HTTP_PORT, weights=[1, 1, 1, None], check=check),
                 vip(world, UDP_PORT, proto="udp", weights=[1, 1, 1, None]))
    lb.start(cfg)
    wait_all_up(lb, VIP_TCP, [BE1, BE2, BE3])
    hold = traffic.hold(2, ["be1", "be2", "be3"])
    lb.cli("backend", "drain", VIP_TCP, BE3)
    wait_backend(lb, VIP_TCP, BE3, "out of the table", lambda b: b["table_entries"] == 0,
                 within=2)

    watch = XdpWatch(lb)
    tcp = traffic.stream(40, timeout_s=3)
    udp = traffic.stream(20, "--proto", "udp", "--sport-base", SOURCE_PORTS.block(2000),
                         timeout_s=2, port=UDP_PORT)
    time.sleep(1.5)     # every kind of traffic under way before the kill

    bad = []
    list0, stats0 = lb.cli("backend", "list"), lb.cli("stats")
    id_before = lb.xdp_id()
    pid = lb.proc.pid
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    lb.proc.wait(10)
    log.info("ballastd (pid %d) killed with SIGKILL", pid)
    id_after_kill = lb.xdp_id()
    if id_after_kill != id_before:
        bad.append(f"XDP program {id_before} on the lb's eth0 became {id_after_kill} when "
                   "ballastd was killed")
    gone = [m for m in ALL_PINS if not os.path.exists(f"{lb.pin_dir}/{m}")]
    if gone:
        bad.append(f"pins {gone} gone from {lb.pin_dir} after kill -9")
    time.sleep(1)       # forwarding alone, with no ballastd, for a second

    t_restart = time.time()
    lb.start(cfg)
    ready = {b["address"]: b for b in lb.cli("backend", "list") if b["vip"] == VIP_TCP}
    for address in (BE1, BE2):
        row = ready.get(address, {})
        if row.get("health") != "up" or not row.get("table_entries"):
            bad.append(f"right after the restart, {address}: health {row.get('health')}, "
                       f"{row.get('table_entries')} table entries")
    row = ready.get(BE3, {})
    if row.get("drained") is not True or row.get("table_entries"):
        bad.append(f"right after the restart, {BE3}: drained {row.get('drained')}, "
                   f"{row.get('table_entries')} table entries")
    if f"adopted the maps pinned in {lb.pin_dir}" not in lb.log_text():
        bad.append(f"the new ballastd did not adopt the pins: {one_line(lb.log_text()[-400:])}")
    time.sleep(2)       # traffic on through the new ballastd
    list1, stats1 = lb.cli("backend", "list"), lb.cli("stats")
    id_now = lb.xdp_id()

    changes = watch.stop()
    tcp_report, udp_report = tcp.stop(), udp.stop()
    held = hold.stop()

    log.info("XDP program on the lb's eth0: %s",
             ", ".join(f"{t - t_restart:+.2f}s {i}" for t, i in changes))
    bad += xdp_problems(changes, 1)
    ids = [i for _, i in changes]
    if not ids or ids[0] != id_before or ids[-1] != id_now:
        bad.append(f"XDP programs seen on the lb's eth0: {ids}; want {id_before}, then at most "
                   f"one swap, to {id_now}")
    bad += [f"held across the restart: {p}" for p in held_problems(held)]
    for what, r in (("TCP", tcp_report), ("UDP", udp_report)):
        if r["failed"]:
            first = [q for q in r["requests"] if q[2].startswith("!")][:3]
            bad.append(f"{what}: {r['failed']} of {r['ok'] + r['failed']} new requests failed "
                       f"(first {first})")
    for what, r in (("TCP", tcp_report), ("UDP", udp_report)):
        starts = [q[0] for q in r["requests"]]
        if not starts or min(starts) > t_kill or max(starts) < t_restart + 1:
            bad.append(f"the {what} stream did not span the kill and the restart")
    after = [q for q in tcp_report["requests"] if q[0] >= t_restart]
    to_be3 = sum(1 for q in after if q[2] == "be3")
    if to_be3 or not after:
        bad.append(f"be3 (drained before the kill) answered {to_be3} of {len(after)} new "
                   "connections after the restart")
    bad += adoption_problems(list0, list1, stats0, stats1)
    assert not bad, "; ".join(bad)

