"""What a fleet of balancers needs from each one (docs/fleet.md): the same
Maglev table for the same config, whatever ids its backends got, shown as a
fleet digest in `ballast vip list -o json` and in the metric
ballast_vip_table_info, and `ballast fleet diff` against another balancer's
`vip list` output. One balancer here stands in for several: a second one
with fresh maps is the same ballastd removed (`ballastd --cleanup`) and
started again, so every id is handed out anew; the ECMP topology with
several balancers and BIRD is test_fleet_ecmp.py.

Route health injection on one balancer (no routing daemon needed: the
routes ballastd keeps in its announce table are what BIRD reads) is
test_announce_follows_usable_backends_leave_and_restarts.
"""

import json
import re
import signal
import subprocess
import time
import urllib.request

from harness.checks import wait_until
from harness.configs import VIP_TCP, config, vip
from harness.processes import ballast
from harness.world import HTTP_PORT, VIP1, inside

METRICS_URL = "http://127.0.0.1:9469/metrics"


def reversed_vip(world, weights):
    """The same VIP as vip(world, HTTP_PORT, weights=...), its backends listed
    last to first: ballastd numbers them in this order."""
    backends = ", ".join(f"{{address: {be.ip}, weight: {w}}}"
                         for be, w in reversed(list(zip(world.backends, weights))))
    return (f"  - address: {VIP1}\n    port: {HTTP_PORT}\n    protocol: tcp\n"
            f"    backends: [{backends}]\n")


def vip_entry(lb):
    return next(v for v in lb.cli("vip", "list") if v["vip"] == VIP_TCP)


def table_info(world):
    """{vip: labels} of ballast_vip_table_info in the lb's /metrics."""
    with inside(world.lb.ns):
        text = urllib.request.urlopen(METRICS_URL, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'ballast_vip_table_info\{(.*)\} 1', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            out[labels["vip"]] = labels
    return out


def fleet_diff(lb, other_file):
    """`ballast fleet diff FILE`: (exit status, its JSON report)."""
    done = ballast(lb, "fleet", "diff", other_file, "-o", "json")
    assert done.returncode in (0, 2), \
        f"fleet diff exited {done.returncode}: {done.stderr.strip()}"
    return done.returncode, {d["vip"]: d for d in json.loads(done.stdout)}


def apply(lb, state_dir, text, name):
    path = state_dir / name
    path.write_text(text)
    done = ballast(lb, "apply", "-f", path, "--force")
    assert done.returncode == 0, f"apply {name}: {done.stderr.strip()}"


def test_same_config_same_digest_and_fleet_diff(world, lb, state_dir):
    """The digest is the table's by backend address: a fresh ballastd whose
    backends got other ids (listed in reverse) shows the same one, in the
    vip list and in the metric. fleet diff against the first balancer's
    vip list: exit 0 while they agree; exit 2 naming each backend whose
    weight and table share moved (1:1:2 -> 1:1:1: be3 50 % -> 33.3 %);
    exit 2 with no backend to blame for another hash_seed (the same shares
    in other slots); agreement again once the config is back."""
    weights = [1, 1, 2]
    lb.start(config(vip(world, HTTP_PORT, weights=weights)))
    first = vip_entry(lb)
    assert re.fullmatch(r"[0-9a-f]{16}", first["table_digest"]), first
    assert (first["hash_seed"], first["table_format"]) == (0, 1), first
    ids_first = {b["address"]: b["id"] for b in first["backends"]}
    info = table_info(world)[VIP_TCP]
    assert info["digest"] == first["table_digest"] and info["hash_seed"] == "0" \
        and info["format"] == "1", f"metric {info} against vip list {first['table_digest']}"
    other = state_dir / "first-balancer.json"
    other.write_text(json.dumps(lb.cli("vip", "list")))

    # "Another balancer": fresh maps, backends numbered in the other order.
    lb.stop()
    lb.remove()
    lb.start(config(reversed_vip(world, weights)))
    second = vip_entry(lb)
    ids_second = {b["address"]: b["id"] for b in second["backends"]}
    assert ids_second != ids_first, f"the ids did not change ({ids_second}): nothing was tested"
    assert second["table_digest"] == first["table_digest"], \
        f"same config, other ids: digest {second['table_digest']} != {first['table_digest']}"
    rc, diff = fleet_diff(lb, other)
    assert rc == 0 and diff[VIP_TCP]["same"] and not diff[VIP_TCP]["backends"], diff
    # The other side's list on stdin (`ssh lb2 ballast vip list -o json |
    # ballast fleet diff -`).
    piped = subprocess.run([f"{lb.build_dir}/ballast", "fleet", "diff", "-", "--socket",
                            lb.socket], input=other.read_text(), capture_output=True, text=True)
    assert piped.returncode == 0 and f"{VIP_TCP}: same table" in piped.stdout, \
        f"fleet diff - exited {piped.returncode}: {piped.stdout} {piped.stderr}"

    apply(lb, state_dir, config(vip(world, HTTP_PORT, weights=[1, 1, 1])), "equal.yaml")
    rc, diff = fleet_diff(lb, other)
    d = diff[VIP_TCP]
    assert rc == 2 and not d["same"], f"1:1:1 against 1:1:2: {d}"
    rows = {b["address"]: b for b in d["backends"]}
    be3 = rows.get(world.backends[2].ip)
    assert be3 and (be3["weight_here"], be3["weight_there"]) == (1, 2), rows
    assert abs(be3["table_share_here"] - 1 / 3) < 0.001 and \
        abs(be3["table_share_there"] - 0.5) < 0.001, be3
    text = ballast(lb, "fleet", "diff", other).stdout
    assert re.search(rf"{re.escape(world.backends[2].ip)} .*50\.0%.*-16\.6\d pt", text), text

    apply(lb, state_dir, config(vip(world, HTTP_PORT, weights=weights)) +
          "fleet: {hash_seed: 7}\n", "seeded.yaml")
    rc, diff = fleet_diff(lb, other)
    d = diff[VIP_TCP]
    assert rc == 2 and (d["hash_seed_here"], d["hash_seed_there"]) == (7, 0) and \
        not d["backends"], f"another seed, same weights: {d}"
    assert table_info(world)[VIP_TCP]["hash_seed"] == "7"

    apply(lb, state_dir, config(vip(world, HTTP_PORT, weights=weights)), "back.yaml")
    rc, diff = fleet_diff(lb, other)
    assert rc == 0 and diff[VIP_TCP]["same"], f"back to the first config: {diff[VIP_TCP]}"
    assert "fleet settings changed" in json.dumps(lb.cli("log")), "the seed change is not logged"


def test_fleet_diff_refuses_what_is_not_a_vip_list(world, lb, state_dir):
    """A FILE that cannot be read, or holds anything but `vip list -o json`,
    is one error line naming it and exit status 1 (not 2, "differs")."""
    lb.start(config(vip(world, HTTP_PORT)))
    bad = state_dir / "not-a-list.json"
    bad.write_text('{"vips": []}')
    for path, why in ((state_dir / "missing.json", "cannot be read"),
                      (bad, "not the output of `ballast vip list -o json`")):
        done = ballast(lb, "fleet", "diff", path)
        assert done.returncode == 1 and f"{path}: {why}" in done.stderr, \
            f"fleet diff {path.name}: exit {done.returncode}, {done.stderr.strip()}"


ANNOUNCE_TABLE = 100
ROUTE_PROTOCOL = "177"     # ballastd's routes (host/kernel_routes.h)
ANNOUNCE = f"fleet: {{announce: {{table: {ANNOUNCE_TABLE}, min_usable: 2}}}}\n"


def announced_routes(world):
    """Destinations of Ballast's routes in the lb's announce table."""
    out = world.lb.run(["ip", "-j", "route", "show", "table", str(ANNOUNCE_TABLE)])
    return sorted(r["dst"] for r in json.loads(out or "[]")
                  if str(r.get("protocol")) == ROUTE_PROTOCOL)


def metric(world, name):
    with inside(world.lb.ns):
        text = urllib.request.urlopen(METRICS_URL, timeout=10).read().decode()
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def wait_announced(world, lb, want, what):
    """Waits (ballastd looks every second) until the route is there (@want)
    or gone, and the vip list says the same."""
    want_routes = [VIP1] if want else []
    wait_until(f"{VIP1} {'announced' if want else 'withdrawn'} ({what})",
               lambda: announced_routes(world) == want_routes
               and vip_entry(lb)["announced"] is want, 5)


def log_changes(lb):
    return [e["change"] for e in lb.cli("log")]


def test_announce_follows_usable_backends_leave_and_restarts(world, lb, state_dir):
    """fleet.announce with min_usable 2 over three backends: the VIP's
    address is a route in table 100 (proto ballast, where BIRD's kernel
    protocol reads it) exactly while two backends are usable: draining two
    withdraws it, undraining one announces it again, each logged with its
    reason and shown by vip list, status and ballast_vip_announced.
    `fleet leave` withdraws and stays in force across a restart; `fleet
    join` announces. kill -9 leaves the route (the program still forwards)
    and the next ballastd (with a backend fewer) adopts it without a
    withdraw; `ballastd --cleanup` removes it. A drain that did not withdraw, a restart that dropped the
    leave or a cleanup that left the route fails here."""
    text = config(vip(world, HTTP_PORT)) + ANNOUNCE
    lb.start(text)
    wait_announced(world, lb, True, "three usable backends")
    assert metric(world, "ballast_vip_announced") == 1
    status = lb.cli("status")
    assert (status["announce_table"], status["announced"], status["fleet_left"]) == \
        (ANNOUNCE_TABLE, [VIP1], False), status
    assert any(c.startswith(f"announce {VIP1} (table {ANNOUNCE_TABLE}): {VIP_TCP}: 3 of 3")
               for c in log_changes(lb)), log_changes(lb)

    be1, be2 = world.backends[0].ip, world.backends[1].ip
    ballast(lb, "backend", "drain", VIP_TCP, be1, "--force")
    wait_announced(world, lb, True, "one drained: two usable")
    ballast(lb, "backend", "drain", VIP_TCP, be2, "--force")
    wait_announced(world, lb, False, "two drained: one usable of min_usable 2")
    reason = vip_entry(lb)["announce_reason"]
    assert reason == f"{VIP_TCP} has 1 of 3 backends usable (min_usable 2)", reason
    assert metric(world, "ballast_vip_announced") == 0
    assert f"withdraw {VIP1} (table {ANNOUNCE_TABLE}): {reason}" in log_changes(lb)
    assert f"withdraw {VIP1}" in lb.log_text(), "the withdraw is not in ballastd's log"
    ballast(lb, "backend", "undrain", VIP_TCP, be2)
    ballast(lb, "backend", "undrain", VIP_TCP, be1)
    wait_announced(world, lb, True, "undrained")

    done = ballast(lb, "fleet", "leave")
    assert done.returncode == 0 and f"withdraw {VIP1}" in done.stdout, done.stdout + done.stderr
    assert announced_routes(world) == [], "fleet leave returned before the withdraw"
    lb.stop()
    lb.start(text)
    time.sleep(2)   # two announce rounds
    assert announced_routes(world) == [] and lb.cli("status")["fleet_left"], \
        "a restart announced a balancer that had left the fleet"
    assert "left the fleet" in lb.log_text()
    done = ballast(lb, "fleet", "join")
    assert done.returncode == 0 and f"announce {VIP1}" in done.stdout, done.stdout + done.stderr
    wait_announced(world, lb, True, "fleet join")

    # kill -9: the program forwards on, so the route stays; the next
    # ballastd adopts it as it is.
    lb.proc.send_signal(signal.SIGKILL)
    lb.proc.wait()
    lb.proc = None
    assert announced_routes(world) == [VIP1], "kill -9 withdrew the VIP"
    # With be3 removed (two usable still meet min_usable 2): a restart whose
    # config changes the state must not judge by a program it has not
    # attached yet.
    lb.start(config(vip(world, HTTP_PORT, weights=[1, 1, None])) + ANNOUNCE)
    time.sleep(2)
    assert announced_routes(world) == [VIP1]
    changes = log_changes(lb)
    last_adopt = max(i for i, c in enumerate(changes) if c.startswith("adopt vip"))
    since_restart = changes[last_adopt:]
    assert not any(c.startswith(("withdraw", "announce")) for c in since_restart), \
        f"the restart withdrew or re-announced: {since_restart}"

    lb.stop()
    lb.remove()
    assert announced_routes(world) == [], "ballastd --cleanup left the announced route"


def test_fleet_leave_without_announce_is_refused(world, lb):
    """A balancer with no fleet.announce has nothing to withdraw: leave is
    one error line, exit 1, and nothing is recorded."""
    lb.start(config(vip(world, HTTP_PORT)))
    done = ballast(lb, "fleet", "leave")
    assert done.returncode == 1 and "announces nothing (no fleet.announce" in done.stderr, \
        f"exit {done.returncode}: {done.stderr.strip()}"
    assert not lb.cli("status")["fleet_left"]
