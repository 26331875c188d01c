"""The control bench's measuring and checking helpers, imported by
bench/control_bench.py (which puts tests/e2e on sys.path first: a failed
check raises harness.processes.Failure with what was wrong).

The live Maglev tables are read through build/tools/maglev_probe (libbpf),
never through hand-packed bpf(2) calls; bpftool gives the maps' memlock.

  Tables(probe, outer)      the pinned maglev_tables: a VIP's live inner map,
                            its whole table, every VIP's inner map
  timed_apply(...)          one `ballast apply`, timed until the new table is live
  check_table(...)          the live table against `ballast backend list` and the config
  settle(...)               waits for a table that names N backends
  maps_memlock(...)         every map's locked memory (bpftool)
"""
import collections
import json
import os
import subprocess
import time

from harness.processes import Failure, stop

MAGLEV_SIZE = 65537
NO_BACKEND = 0xFFFFFFFF


class Tables:
    """The pinned maglev_tables (@outer: its pin path), read through
    maglev_probe (@probe: its path): VIP id -> its live inner map."""

    def __init__(self, probe, outer):
        self.probe_path = str(probe)
        self.outer = str(outer)

    def probe(self, *args):
        argv = [self.probe_path, *map(str, args)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise Failure(f"maglev_probe {' '.join(argv[1:])}: {done.stderr.strip()}")
        return done.stdout

    def inner_id(self, vip_id):
        """The id of the VIP's live table (its inner map), 0 when none."""
        return int(self.probe("inner", self.outer, vip_id))

    def table(self, vip_id):
        """The VIP's whole live table (backend id per entry)."""
        table = json.loads(self.probe("table", self.outer, vip_id))
        if len(table) != MAGLEV_SIZE:
            raise Failure(f"VIP id {vip_id}: read {len(table)} of {MAGLEV_SIZE} entries")
        return table

    def inners(self):
        """{VIP id (a string): its inner map's id} for every VIP with a table."""
        return json.loads(self.probe("inners", self.outer))


def timed_apply(tables, vip_id, cli, sock, file, swap):
    """One `ballast apply -f @file`, timed from just before the CLI starts:
    when the VIP's inner map id changed (maglev_probe watch polls every
    0.5 ms, started before the CLI) and when the CLI returned. @swap False:
    the table may stay (new backends not resolved yet). Fails when the CLI
    fails, its reply says not applied, or (@swap) the table is unchanged."""
    before = tables.inner_id(vip_id)
    watcher = subprocess.Popen([tables.probe_path, "watch", tables.outer, str(vip_id), str(before),
                                "600"], stdout=subprocess.PIPE, text=True)
    cli_proc = None
    try:
        if watcher.stdout.readline().strip() != "ready":
            raise Failure("maglev_probe watch did not start")
        out_path, err_path = f"{file}.out", f"{file}.err"
        # The reply to a file, not a pipe: with 1,000 changes it is larger
        # than a pipe holds, and the CLI would block on it.
        with open(out_path, "w") as out, open(err_path, "w") as err:
            t0_unix = time.time()
            t0 = time.monotonic()
            cli_proc = subprocess.Popen([str(cli), "apply", "-f", str(file), "-o", "json",
                                         "--socket", str(sock)], stdout=out, stderr=err)
            cli_proc.wait()
            cli_s = time.monotonic() - t0
        # The watcher saw the swap during the CLI or just after; without
        # @swap the table may stay, and the watcher is stopped.
        if not swap and watcher.poll() is None:
            time.sleep(0.01)
            watcher.terminate()
        try:
            watcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            watcher.terminate()
        lines = watcher.stdout.read().splitlines()
    finally:
        stop(watcher)
        watcher.stdout.close()
        if cli_proc is not None:
            stop(cli_proc)
    seen = lines[-1] if lines else ""
    swapped = json.loads(seen)["monotonic_s"] - t0 if seen.startswith("{") else None
    after = tables.inner_id(vip_id)
    if cli_proc.returncode != 0:
        with open(err_path) as f:
            raise Failure(f"ballast apply -f {file} exited {cli_proc.returncode}: {f.read().strip()}")
    if after == before and swap:
        raise Failure(f"ballast apply -f {file} returned but VIP {vip_id}'s table is still inner "
                      f"map {before}")
    with open(out_path) as f:
        reply = json.load(f)
    if not reply.get("applied"):
        raise Failure(f"ballast apply -f {file}: not applied: {json.dumps(reply)[:300]}")
    return {"cli_s": cli_s, "live_s": swapped,
            "seen_during_cli": swapped is not None and swapped <= cli_s,
            "inner_before": before, "inner_after": after, "t0_unix": t0_unix,
            "changes": len(reply.get("changes", []))}


def check_table(tables, vip_id, vip, rows, want):
    """The live table against `ballast backend list` (@rows: its parsed
    reply): @vip's backends are exactly those of @want (address -> weight)
    with those weights, each holds exactly the entries the list says, every
    entry names one of them, and each weight class holds its share of the
    table within 1 point. Fails naming up to six discrepancies."""
    table = tables.table(vip_id)
    rows = [b for b in rows if b["vip"] == vip]
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
            bad.append(f"{b['address']} holds {counts.get(b['id'], 0)} entries, list says "
                       f"{b['table_entries']}")
        if b["weight"] and not counts.get(b["id"]):
            bad.append(f"{b['address']} (weight {b['weight']}) has no entry")
    total_w = sum(want.values())
    for w in sorted(set(want.values())):
        share = sum(counts.get(b["id"], 0) for b in rows if b["weight"] == w) / MAGLEV_SIZE
        exp = sum(v for v in want.values() if v == w) / total_w
        if abs(share - exp) > 0.01:
            bad.append(f"weight-{w} backends hold {share:.4f} of the table, expected {exp:.4f}")
    if bad:
        raise Failure(f"{vip}'s live table: " + "; ".join(bad[:6]))
    return {"backends": len(rows), "distinct": len(counts), "entries": len(table)}


def settle(tables, vip_id, n, t0, limit):
    """Polls the VIP's table until it names @n distinct backends: when
    (seconds after unix time @t0) and how many tables were swapped in.
    Fails after @limit seconds from @t0."""
    last, swaps, distinct = None, 0, 0
    while True:
        cur = tables.inner_id(vip_id)
        if cur != last:
            swaps += last is not None
            last = cur
            distinct = len(set(tables.table(vip_id)) - {NO_BACKEND}) if cur else 0
            if distinct >= n:
                return {"settled_s": time.time() - t0, "swaps": swaps}
        if time.time() - t0 > limit:
            raise Failure(f"after {limit:.0f} s the table names {distinct} of {n} backends")
        time.sleep(0.01)


def maps_memlock(tables, pin_dir):
    """bpftool's view of every map ballastd pinned in @pin_dir, and of the
    inner tables the outer map holds: type, key and value sizes, entries,
    locked bytes."""
    def show(args):
        p = subprocess.run(["bpftool", "-j", "map", "show"] + args, capture_output=True, text=True)
        return json.loads(p.stdout) if p.returncode == 0 else None
    rows = []
    for name in sorted(os.listdir(pin_dir)):
        m = show(["pinned", os.path.join(pin_dir, name)])
        if m:  # programs and links are pinned there too
            m["pin"] = name
            rows.append(m)
    for vip_id, inner in tables.inners().items():
        m = show(["id", str(inner)])
        if m is None:
            raise Failure(f"bpftool map show id {inner} (VIP id {vip_id}'s table) failed")
        m["pin"] = f"(maglev table of VIP id {vip_id})"
        rows.append(m)
    for m in rows:
        m["locked"] = m.get("bytes_memlock", m.get("memlock"))
        if m["locked"] is None:
            raise Failure(f"bpftool map show gives no memlock for {m['pin']}: {json.dumps(m)[:200]}")
    return [{k: m.get(k) for k in ("pin", "id", "type", "bytes_key", "bytes_value",
                                   "max_entries", "locked")} for m in rows]
