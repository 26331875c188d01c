"""What a fleet of balancers needs from each one (docs/fleet.md): the same
Maglev table for the same config, whatever ids its backends got, shown as a
fleet digest in `ballast vip list -o json` and in the metric
ballast_vip_table_info, and `ballast fleet diff` against another balancer's
`vip list` output. One balancer here stands in for several: a second one
with fresh maps is the same ballastd removed (`ballastd --cleanup`) and
started again, so every id is handed out anew; the ECMP topology with
several balancers and BIRD comes with the rest of issue #17.
"""

import json
import re
import subprocess
import urllib.request

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
