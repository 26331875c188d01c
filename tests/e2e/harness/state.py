"""ballastd's state as its CLI reports it, read by the suites: a backend's
row of `ballast backend list` and polls of it with deadlines, rows and
counters of `ballast stats`, entries of the change log (`ballast log`).

Times are wall-clock seconds (time.time()): client.py stamps its requests
and `ballast log` its entries (unix_ms) on the same clock, so a test can
set a poll's deadline from an event it also finds in either.
"""

import collections
import json
import logging
import re
import time

from .processes import Failure

log = logging.getLogger("e2e")


# --- Backends -------------------------------------------------------------------


def backend_row(lb, vip_name, address, missing_ok=False):
    """@address's row of @vip_name ("10.231.100.1:80/tcp") in `ballast
    backend list`; when there is none, None if @missing_ok, else the test
    fails saying so."""
    row = next((b for b in lb.cli("backend", "list")
                if b["vip"] == vip_name and b["address"] == address), None)
    if row is None and not missing_ok:
        raise Failure(f"backend list has no {address} in {vip_name}")
    return row


def up_in_table(row):
    return row["health"] == "up" and row["table_entries"] > 0


def down_out_of_table(row):
    return row["health"] == "down" and row["table_entries"] == 0


# What wait_backend saw: the row that satisfied the condition, and the
# wall-clock start and end of the poll that read it.
Seen = collections.namedtuple("Seen", "row start end")


def wait_backend(lb, vip_name, address, what, cond, within=5, deadline=None):
    """Polls `ballast backend list` every 0.1 s until @address's row of
    @vip_name satisfies @cond (a function of the row), by @deadline (wall
    clock) or else @within seconds from now. One poll always starts after
    the deadline, so a state reached in time is seen however late this
    thread ran. Returns Seen(row, start, end): the state held by `end` at
    the latest. Raises Failure saying @what was awaited and the last row
    seen (a row missing, a field missing or the CLI failing is "not yet")."""
    if deadline is None:
        deadline = time.time() + within
    t0 = time.time()
    last = None
    while True:
        start = time.time()
        try:
            last = backend_row(lb, vip_name, address, missing_ok=True)
            ok = last is not None and bool(cond(last))
        except (Failure, KeyError) as exc:
            last, ok = repr(exc), False
        end = time.time()
        if ok:
            log.info("%s in %s %s after %.2f s", address, vip_name, what, start - t0)
            return Seen(last, start, end)
        if start > deadline:
            raise Failure(f"{address} in {vip_name} not {what} by the deadline (the last "
                          f"poll {start - deadline:+.2f} s after it); last seen: "
                          f"{json.dumps(last)}")
        time.sleep(max(0.0, min(0.1, deadline - time.time() + 0.001)))


def wait_all_up(lb, vip_name, addresses, within=5):
    """Each of @addresses "up" in @vip_name with table entries."""
    for a in addresses:
        wait_backend(lb, vip_name, a, "up with table entries", up_in_table, within=within)


# --- Counters ---------------------------------------------------------------------


def stats_backend(stats, vip_name, address):
    """One backend's row of `ballast stats` for @vip_name."""
    v = next(v for v in stats["vips"] if v["vip"] == vip_name)
    return next(b for b in v["backends"] if b["address"] == address)


def stats_reason(stats, reason):
    return next(r["packets"] for r in stats["reasons"] if r["reason"] == reason)


# --- The change log ------------------------------------------------------------------


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
