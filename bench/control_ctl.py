#!/usr/bin/env python3
"""The control bench's measuring and checking helpers (bench/control_bench.sh).
The live Maglev tables are read through build/tools/maglev_probe (libbpf;
its path in $MAGLEV_PROBE), never through hand-packed bpf(2) calls.

  apply OUTER VIP_ID CLI SOCK FILE SWAP  time one `ballast apply` (SWAP 0: the
                                        table may stay: new backends unresolved)
  table OUTER VIP_ID VIP LIST WEIGHTS  check the live table against the list
  settle OUTER VIP_ID N T0 LIMIT       wait for a table with N backends
  maps PIN_DIR OUTER                   every map's memlock (bpftool)
"""
import collections
import json
import os
import subprocess
import sys
import time

PROBE = os.environ.get("MAGLEV_PROBE", "build/tools/maglev_probe")
MAGLEV_SIZE = 65537
NO_BACKEND = 0xFFFFFFFF


def probe(*args):
    done = subprocess.run([PROBE, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"maglev_probe {' '.join(map(str, args))}: {done.stderr.strip()}")
    return done.stdout


class Outer:
    """The pinned maglev_tables: VIP id -> the id of its live inner map."""

    def __init__(self, path):
        self.path = path

    def inner_id(self, vip_id):
        return int(probe("inner", self.path, vip_id))


def read_table(outer, vip_id):
    """The VIP's whole live table (backend id per entry)."""
    table = json.loads(probe("table", outer.path, vip_id))
    if len(table) != MAGLEV_SIZE:
        sys.exit(f"VIP id {vip_id}: read {len(table)} of {MAGLEV_SIZE} entries")
    return table


def cmd_apply(outer_path, vip_id, cli, sock, file, swap):
    """One apply, timed from just before the CLI starts: when the VIP's
    inner map id changed (maglev_probe watch polls every 0.5 ms, started
    before the CLI) and when the CLI returned."""
    outer = Outer(outer_path)
    vip_id = int(vip_id)
    before = outer.inner_id(vip_id)
    watcher = subprocess.Popen([PROBE, "watch", outer_path, str(vip_id), str(before), "600"],
                               stdout=subprocess.PIPE, text=True)
    if watcher.stdout.readline().strip() != "ready":
        sys.exit("maglev_probe watch did not start")
    out = open(file + ".out", "w")
    t0_unix = time.time()
    t0 = time.monotonic()
    p = subprocess.Popen([cli, "apply", "-f", file, "-o", "json", "--socket", sock], stdout=out,
                         stderr=subprocess.PIPE)
    p.wait()
    cli_s = time.monotonic() - t0
    # The watcher saw the swap during the CLI or just after; with SWAP 0 the
    # table may stay, and the watcher is stopped.
    if swap != "1" and watcher.poll() is None:
        time.sleep(0.01)
        watcher.terminate()
    try:
        watcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        watcher.terminate()
    lines = watcher.stdout.read().splitlines()
    seen = lines[-1] if lines else ""
    swapped = json.loads(seen)["monotonic_s"] - t0 if seen.startswith("{") else None
    after = outer.inner_id(vip_id)
    if p.returncode != 0:
        sys.exit(f"ballast apply -f {file} exited {p.returncode}: {p.stderr.read().decode().strip()}")
    if after == before and swap == "1":
        sys.exit(f"ballast apply -f {file} returned but VIP {vip_id}'s table is still inner map {before}")
    reply = json.load(open(file + ".out"))
    if not reply.get("applied"):
        sys.exit(f"ballast apply -f {file}: not applied: {json.dumps(reply)[:300]}")
    print(json.dumps({"cli_s": cli_s, "live_s": swapped,
                      "seen_during_cli": swapped is not None and swapped <= cli_s,
                      "inner_before": before, "inner_after": after, "t0_unix": t0_unix,
                      "changes": len(reply.get("changes", []))}))


def cmd_table(outer_path, vip_id, vip, list_json, weights_json):
    """The live table against `ballast backend list`: the VIP's backends are
    exactly those of WEIGHTS (address -> weight) with those weights, each
    holds exactly the entries the list says, every entry names one of them,
    and each weight class holds its share of the table within 1 point."""
    outer = Outer(outer_path)
    table = read_table(outer, int(vip_id))
    rows = [b for b in json.load(open(list_json)) if b["vip"] == vip]
    want = json.load(open(weights_json))
    bad = []
    got = {b["address"]: b for b in rows}
    if set(got) != set(want):
        bad.append(f"backend list has {len(got)} backends, the config {len(want)}")
    counts = collections.Counter(table)
    ids = {b["id"]: b for b in rows}
    strays = [i for i in counts if i not in ids]
    if strays:
        bad.append(f"{sum(counts[i] for i in strays)} entries name no backend of {vip} ({strays[:5]})")
    for b in rows:
        if want.get(b["address"]) != b["weight"]:
            bad.append(f"{b['address']} weight {b['weight']}, config {want.get(b['address'])}")
        if counts.get(b["id"], 0) != b["table_entries"]:
            bad.append(f"{b['address']} holds {counts.get(b['id'], 0)} entries, list says {b['table_entries']}")
        if b["weight"] and not counts.get(b["id"]):
            bad.append(f"{b['address']} (weight {b['weight']}) has no entry")
    total_w = sum(want.values())
    for w in sorted(set(want.values())):
        share = sum(counts.get(b["id"], 0) for b in rows if b["weight"] == w) / MAGLEV_SIZE
        exp = sum(v for v in want.values() if v == w) / total_w
        if abs(share - exp) > 0.01:
            bad.append(f"weight-{w} backends hold {share:.4f} of the table, expected {exp:.4f}")
    if bad:
        sys.exit(f"{vip}'s live table: " + "; ".join(bad[:6]))
    print(json.dumps({"backends": len(rows), "distinct": len(counts), "entries": len(table)}))


def cmd_settle(outer_path, vip_id, n, t0, limit):
    """Polls the VIP's table until it names N distinct backends; prints when
    (seconds after unix time T0) and how many tables were swapped in."""
    outer = Outer(outer_path)
    vip_id, n, t0, limit = int(vip_id), int(n), float(t0), float(limit)
    last, swaps, distinct = None, 0, 0
    while True:
        cur = outer.inner_id(vip_id)
        if cur != last:
            swaps += last is not None
            last = cur
            distinct = len(set(read_table(outer, vip_id)) - {NO_BACKEND}) if cur else 0
            if distinct >= n:
                print(json.dumps({"settled_s": time.time() - t0, "swaps": swaps}))
                return
        if time.time() - t0 > limit:
            sys.exit(f"after {limit:.0f} s the table names {distinct} of {n} backends")
        time.sleep(0.01)


def cmd_maps(pin_dir, outer_path):
    """bpftool's view of every map ballastd pinned, and of the inner tables
    the outer map holds: type, key and value sizes, entries, locked bytes."""
    def show(args):
        p = subprocess.run(["bpftool", "-j", "map", "show"] + args, capture_output=True, text=True)
        return json.loads(p.stdout) if p.returncode == 0 else None
    rows = []
    for name in sorted(os.listdir(pin_dir)):
        m = show(["pinned", os.path.join(pin_dir, name)])
        if m:  # programs and links are pinned there too
            m["pin"] = name
            rows.append(m)
    for vip_id, inner in json.loads(probe("inners", outer_path)).items():
        m = show(["id", str(inner)])
        m["pin"] = f"(maglev table of VIP id {vip_id})"
        rows.append(m)
    for m in rows:
        m["locked"] = m.get("bytes_memlock", m.get("memlock"))
        if m["locked"] is None:
            sys.exit(f"bpftool map show gives no memlock for {m['pin']}: {json.dumps(m)[:200]}")
    print(json.dumps([{k: m.get(k) for k in ("pin", "id", "type", "bytes_key", "bytes_value",
                                            "max_entries", "locked")} for m in rows]))


if __name__ == "__main__":
    {"apply": cmd_apply, "table": cmd_table, "settle": cmd_settle,
     "maps": cmd_maps}[sys.argv[1]](*sys.argv[2:])
