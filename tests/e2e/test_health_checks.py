"""Ballast's health checks one by one (docs/operations.md, "Health checks"),
against real backends in network namespaces: the tcp and udp check types and
what each failure looks like in `ballast backend list` and the change log, a
per-backend check laid over its VIP's, and the expected share of a drained
backend in `ballast stats`. (Check configs that `ballast apply` must refuse
whole are GoogleTest cases, CommandsTest.AConfigWhoseHealthCheckCannotRun-
IsRefusedWhole and the ConfigErrors rows: the control plane alone. HTTP checks, failover timing, flapping and fail-open are
test_resilience's; a backend flapping for a minute is test_faults'.)

Every test starts its own ballastd on the module's world; between tests
the lb fixture restarts any backend server a test killed and sets every
health answer back to up.

Timing: these are not timing tests. Checks run every 500 ms with a 300 ms
timeout, rise 2, fall 2: a state change takes interval x fall (or rise) +
timeout = 1.3 s at most on an idle machine. Every wait allows CHANGE_S =
5 s, about 4x that, so that a loaded VM cannot fail a test; a daemon that
never makes the change fails all the same.

Shares: harness/checks.py's assert_shares (4 sd per share). The checks here
are about which backends take new flows at all, not about weights: each
says what it can see.
"""

import logging
import re

from harness.checks import assert_all_ok, assert_shares, assert_stats_match
from harness.configs import VIP_TCP, VIP_UDP, config
from harness.processes import batch
from harness.state import backend_row, down_out_of_table, up_in_table, wait_all_up, wait_backend
from harness.world import HTTP_PORT, LB_IP, UDP_CHECK_PORT, UDP_PORT, VIP1

log = logging.getLogger("e2e")

CHANGE_S = 5
# The timing every check here uses, and how `backend list` describes it.
TIMING = "interval: 500ms, timeout: 300ms, rise: 2, fall: 2"
TIMING_DESC = "every 500ms timeout 300ms rise 2 fall 2"


# --- Configs ---------------------------------------------------------------


def vip_block(address, port, proto, check, backends):
    """One VIP of a config; @check is its health_check (a YAML flow mapping)
    or None; each of @backends is the inside of a backend's flow mapping,
    e.g. "address: 10.231.0.11, weight: 1"."""
    text = f"  - address: {address}\n    port: {port}\n    protocol: {proto}\n"
    if check:
        text += f"    health_check: {check}\n"
    return text + "    backends:\n" + "".join(f"      - {{{b}}}\n" for b in backends)


def be(weight, node, more=""):
    """A backend for vip_block: @node's address, @weight, and @more fields."""
    return f"address: {node.ip}, weight: {weight}" + (f", {more}" if more else "")


# --- Helpers ---------------------------------------------------------------


def health_log(lb, text):
    """Entries of `ballast log` by the health checker whose change starts
    with @text."""
    hits = [e for e in lb.cli("log") if e["actor"] == "health-check"
            and e["change"].startswith(text)]
    for e in hits:
        log.info("[log] %s: %s", e["actor"], e["change"])
    return hits


def served_lines(world, node, pattern):
    """Lines of @node's served log (backend_server.py) matching @pattern."""
    text = world.backend_servers.served_log(node).read_text()
    return [line for line in text.splitlines() if re.fullmatch(pattern, line)]


# --- Tests -----------------------------------------------------------------


def test_tcp_check(world, lb):
    """A tcp check passes when a connect to the check port (the VIP's, 80)
    at the backend's own address completes. be1's server killed: be1 is
    down after `fall` (2) refused connects, its last_check naming the
    refusal, out of the Maglev table, and the change log says so with the
    count and the reason; be2 and be3 stay up throughout (no health entry
    names them after the start). be1's server back: up after `rise` (2)
    passes, back in the table, logged."""
    be1, be2, be3 = world.backends
    lb.start(config(vip_block(VIP1, HTTP_PORT, "tcp", f"{{type: tcp, {TIMING}}}",
                              [be(1, be1), be(1, be2), be(1, be3)])))
    wait_all_up(lb, VIP_TCP, [node.ip for node in world.backends], within=CHANGE_S)
    row = backend_row(lb, VIP_TCP, be1.ip)
    assert row["check"] == f"tcp :{HTTP_PORT} {TIMING_DESC}", row
    assert row["last_check"].startswith("ok "), row
    started_log = len(lb.cli("log"))

    world.backend_servers.kill(be1)
    row = wait_backend(lb, VIP_TCP, be1.ip, "down and out of the table", down_out_of_table,
                       within=CHANGE_S).row
    assert row["last_check"] == "connect: Connection refused", row
    for other in (be2, be3):
        assert backend_row(lb, VIP_TCP, other.ip)["health"] == "up", f"{other.name} went down too"
    assert health_log(lb, f"backend health {VIP_TCP} {be1.ip} up -> down (2 failures, last: "
                          "connect: Connection refused)"), "no up -> down entry for be1"

    world.backend_servers.start(be1)
    row = wait_backend(lb, VIP_TCP, be1.ip, "up and back in the table", up_in_table,
                       within=CHANGE_S).row
    assert row["last_check"].startswith("ok "), row
    assert health_log(lb, f"backend health {VIP_TCP} {be1.ip} down -> up (2 successes, last: ok "), \
        "no down -> up entry for be1"
    others = [e["change"] for e in lb.cli("log")[started_log:]
              if f" {be2.ip} " in e["change"] or f" {be3.ip} " in e["change"]]
    assert not others, f"be2 or be3 changed while only be1 failed: {others}"


UDP_FAILURES = {
    # The responder's word -> what be1's last_check must say once down.
    "sick": r'udp: reply without "pong"',
    "silent": r"udp: no reply within .*",
    "closed": r"udp: ICMP port unreachable",
}


def test_udp_check(world, lb):
    """A udp check sends `payload` to the check port at the backend's own
    address (its UDP health responder, UDP_CHECK_PORT) and passes when a
    reply holding `expect` comes back within `timeout`. be1's responder
    replying without "pong", not replying, and closing its port (the ICMP
    port unreachable fails the check at once) each take be1 down after
    `fall` failures, out of the table, its last_check naming the failure;
    be2 and be3 stay up. While be1 is down, its VIP service (which still
    answers) gets none of 200 new UDP flows: one flow to it fails the test
    (be2 and be3 each take half within 14 points, which only says the
    other two share). After each, be1 is up again after `rise` passes, and
    the change log has the transitions with their counts and reasons."""
    be1, be2, be3 = world.backends
    world.backend_servers.reset_counts()
    lb.start(config(vip_block(
        VIP1, UDP_PORT, "udp",
        f"{{type: udp, port: {UDP_CHECK_PORT}, payload: ping, expect: pong, {TIMING}}}",
        [be(1, be1), be(1, be2), be(1, be3)])))
    wait_all_up(lb, VIP_UDP, [node.ip for node in world.backends], within=CHANGE_S)
    row = backend_row(lb, VIP_UDP, be1.ip)
    assert row["check"] == f'udp :{UDP_CHECK_PORT} send 4 bytes expect "pong" {TIMING_DESC}', row
    assert row["last_check"].startswith("ok "), row
    # The machinery: the checks reached be1's responder, at its own address.
    assert served_lines(world, be1, rf"udpcheck {re.escape(be1.ip)}:{UDP_CHECK_PORT} "
                                    rf"{re.escape(LB_IP)}:\d+ pong"), \
        f"test machinery: no 'udpcheck {be1.ip}:{UDP_CHECK_PORT} ... pong' in be1's served log"

    for word, want in UDP_FAILURES.items():
        world.backend_servers.set_health(be1, word)
        # Closing takes the responder up to 50 ms: a check in between may
        # see no reply; a later one, while down, sees the port closed.
        wait_backend(lb, VIP_UDP, be1.ip, f"down ({word}: {want})",
                     lambda b: down_out_of_table(b) and re.fullmatch(want, b["last_check"]),
                     within=CHANGE_S)
        for other in (be2, be3):
            assert backend_row(lb, VIP_UDP, other.ip)["health"] == "up", \
                f"{other.name} went down while be1 was {word}"
        if word == "silent":
            n = 200
            report = batch(world, n, "--timeout", 2, proto="udp")
            assert_all_ok(report, n)
            assert_shares(report, {"be1": 0, "be2": 1, "be3": 1})
        world.backend_servers.set_health(be1, "up")
        wait_backend(lb, VIP_UDP, be1.ip, "up again",
                     lambda b: up_in_table(b) and b["last_check"].startswith("ok "),
                     within=CHANGE_S)

    assert health_log(lb, f"backend health {VIP_UDP} {be1.ip} up -> down (2 failures, last: "
                          'udp: reply without "pong")'), "no up -> down entry for the sick reply"
    assert health_log(lb, f"backend health {VIP_UDP} {be1.ip} down -> up (2 successes, last: ok "), \
        "no down -> up entry for be1"


def test_per_backend_override(world, lb):
    """A backend's health_check is laid over its VIP's: be2's {type: tcp}
    keeps the VIP's interval, timeout, rise and fall. The VIP's http check
    asks for a path every backend answers 404, so be1 and be3 are down
    ("http status 404") and be2, checked by a TCP connect, is the only one
    up; `ballast backend list` describes each backend's own check. Of 200
    new connections be2 takes every one: a single one on be1 or be3 (down)
    fails the test."""
    be1, be2, be3 = world.backends
    world.backend_servers.reset_counts()
    lb.start(config(vip_block(VIP1, HTTP_PORT, "tcp",
                              f"{{type: http, path: /nonexistent, {TIMING}}}",
                              [be(1, be1), be(1, be2, "health_check: {type: tcp}"), be(1, be3)])))
    wait_backend(lb, VIP_TCP, be2.ip, "up and in the table", up_in_table, within=CHANGE_S)
    for node in (be1, be3):
        wait_backend(lb, VIP_TCP, node.ip, "down and out of the table", down_out_of_table,
                     within=CHANGE_S)
    # The machinery: be1's check did ask for /nonexistent and got 404.
    assert served_lines(world, be1, rf"miss {re.escape(be1.ip)}:{HTTP_PORT} "
                                    rf"{re.escape(LB_IP)}:\d+ 404 /nonexistent"), \
        "test machinery: no 404 for /nonexistent in be1's served log"

    row = backend_row(lb, VIP_TCP, be2.ip)
    assert row["check"] == f"tcp :{HTTP_PORT} {TIMING_DESC}", row
    assert row["last_check"].startswith("ok "), row
    for node in (be1, be3):
        row = backend_row(lb, VIP_TCP, node.ip)
        assert row["check"] == \
            f"http GET /nonexistent :{HTTP_PORT} expect 200-399 {TIMING_DESC}", row
        assert row["last_check"] == "http status 404", row

    report = batch(world, 200)
    assert_all_ok(report, 200)
    assert_shares(report, {"be1": 0, "be2": 1, "be3": 0})


def expected_shares(lb, vip):
    v = next(v for v in lb.cli("stats")["vips"] if v["vip"] == vip)
    return {b["address"]: b["expected_share"] for b in v["backends"]}


def assert_expected_shares(lb, vip, want):
    got = expected_shares(lb, vip)
    bad = {a: got.get(a) for a, w in want.items()
           if got.get(a) is None or abs(got[a] - w) > 0.001}
    assert not bad, f"expected_share {got}, want {want}"


def test_expected_share_excludes_drained(world, lb):
    """`ballast stats` gives a backend that takes no new flows (drained)
    expected_share 0, and the others their weight over the weights of
    those that do: 1/2 each of three equal weights with be1 drained (1/3
    each again after undrain). New connections follow: of 1,000, be1 gets
    none (one fails the test) and be2 and be3 half each within 6.3 points
    (4 sd; it sees a split as uneven as 57:43, not a small weight error).
    The balancer's own counts then agree with what each backend served,
    and its expected_share, observed_share and skew with the weights that
    take new flows (harness/checks.py assert_stats_match, be1 as 0)."""
    be1, be2, be3 = world.backends
    n = 1000
    lb.start(config(vip_block(VIP1, HTTP_PORT, "tcp", None,
                              [be(1, be1), be(1, be2), be(1, be3)])))
    wait_all_up(lb, VIP_TCP, [node.ip for node in world.backends], within=CHANGE_S)

    lb.cli("backend", "drain", VIP_TCP, be1.ip)
    wait_backend(lb, VIP_TCP, be1.ip, "drained and out of the table",
                 lambda b: b["drained"] is True and b["table_entries"] == 0, within=CHANGE_S)
    assert_expected_shares(lb, VIP_TCP, {be1.ip: 0, be2.ip: 0.5, be3.ip: 0.5})

    world.backend_servers.reset_counts()
    report = batch(world, n)
    assert_all_ok(report, n)
    assert_shares(report, {"be1": 0, "be2": 1, "be3": 1})
    served = {node.ip: world.backend_servers.served(node, "tcp", VIP1, HTTP_PORT)
              for node in world.backends}
    assert_stats_match(lb.cli("stats"), VIP_TCP, served, {be1.ip: 0, be2.ip: 1, be3.ip: 1})

    lb.cli("backend", "undrain", VIP_TCP, be1.ip)
    wait_backend(lb, VIP_TCP, be1.ip, "undrained and back in the table",
                 lambda b: b["drained"] is False and b["table_entries"] > 0, within=CHANGE_S)
    assert_expected_shares(lb, VIP_TCP, {be1.ip: 1 / 3, be2.ip: 1 / 3, be3.ip: 1 / 3})
