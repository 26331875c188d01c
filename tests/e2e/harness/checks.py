"""Assertions and deadlines the suites share: requests all answered, shares
against weights, the balancer's counters against the backends' own counts;
wait_until for a state that must come within a time; one_line for the text
of a process in a failure message.

Shares: n new flows spread by weight give backend i a binomial share with
standard deviation sqrt(p(1-p)/n). assert_shares allows Z = 4 of them (a
false failure about once in 16,000 checks of one share). The error a check
can see follows from n: with n = 3,000 and weights 1:1:2 the weight-2
backend may be 3.65 points off its 50 %, and weights applied as 1:1:1.5
(42.9 %, 7.1 points off) fail it (3.9 sd beyond the tolerance: once in
17,000 runs would it pass). Every distribution check says in its docstring
what it can see.
"""

import math
import time

from .processes import Failure

Z = 4.0


def share_tolerance(p, n, z=Z):
    """How far a share p of n flows may fall from p by chance (z sd)."""
    return z * math.sqrt(p * (1 - p) / max(1, n))


def assert_all_ok(report, n):
    assert report["ok"] == n and report["failed"] == 0, \
        f"{report['ok']} of {n} requests answered, {report['failed']} failed " \
        f"{report.get('errors', {})}"


def assert_shares(report, weights, z=Z):
    """Each backend's share of the answered requests (client.py's by_backend)
    within z sd of its weight's share; a weight-0 backend and any backend
    not in @weights ({name: weight}) must have none."""
    ok, by = report["ok"], report["by_backend"]
    total = sum(weights.values())
    bad, rows = [], []
    for name, w in weights.items():
        p = w / total
        got = by.get(name, 0)
        share = got / ok if ok else 0.0
        tol = share_tolerance(p, ok, z)
        rows.append(f"{name} w{w} {share:.3f}/{p:.3f}±{tol:.3f}")
        if w == 0 and got:
            bad.append(f"{name} (weight 0) got {got} requests")
        elif abs(share - p) > tol:
            bad.append(f"{name} share {share:.3f}, expected {p:.3f} ± {tol:.3f}")
    strays = sorted(set(by) - set(weights))
    if strays:
        bad.append(f"answers from backends outside the weights: {strays}")
    assert not bad, "; ".join(bad) + f" (of {ok}: " + ", ".join(rows) + ")"


def assert_stats_match(stats, vip, counted, weights):
    """`ballast stats` for @vip ("address:port/proto") against what each
    backend served (@counted: address -> requests) and the weights
    (address -> weight): new_flows at least what was served and at most 1 %
    (at least 1) more (a SYN lost after the balancer is retransmitted and
    counted twice, never less); the VIP's new_flows is its backends' sum;
    expected_share, observed_share and skew agree with both."""
    v = next((v for v in stats["vips"] if v["vip"] == vip), None)
    assert v is not None, f"{vip} not in ballast stats"
    rows = {b["address"]: b for b in v["backends"]}
    total = sum(b["new_flows"] for b in rows.values())
    total_w = sum(weights.values())
    bad = []
    for addr, served in counted.items():
        b = rows.get(addr)
        if b is None:
            bad.append(f"{addr} missing from stats")
            continue
        flows, slack = b["new_flows"], max(1, math.ceil(served * 0.01))
        if flows < served:
            bad.append(f"{addr}: new_flows {flows} < {served} served")
        elif flows > served + slack:
            bad.append(f"{addr}: new_flows {flows} > {served} served + {slack}")
        exp = weights[addr] / total_w
        obs = flows / total if total else 0.0
        if abs(b["expected_share"] - exp) > 0.001:
            bad.append(f"{addr}: expected_share {b['expected_share']}, weights say {exp:.4f}")
        if abs(b["observed_share"] - obs) > 0.001:
            bad.append(f"{addr}: observed_share {b['observed_share']}, new_flows say {obs:.4f}")
        if exp and (b["skew"] is None or abs(b["skew"] - obs / exp) > 0.01):
            bad.append(f"{addr}: skew {b['skew']}, shares say {obs / exp:.3f}")
        if not exp and b["skew"] is not None:
            bad.append(f"{addr}: skew {b['skew']} where no new flows are expected (want null)")
    if v["new_flows"] != total:
        bad.append(f"VIP new_flows {v['new_flows']} != sum over backends {total}")
    assert not bad, "; ".join(bad)


def wait_until(what, predicate, timeout_s, step_s=0.1):
    """@predicate's first true value, tried every @step_s; fails the test
    saying @what was awaited when none comes within @timeout_s. One try
    always starts after the deadline, so a state reached in time is seen
    however late this thread ran."""
    deadline = time.monotonic() + timeout_s
    while True:
        started = time.monotonic()
        value = predicate()
        if value:
            return value
        if started > deadline:
            raise Failure(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)


def one_line(text):
    """A program's output for a failure message: its non-blank lines joined
    with " | ", the last 600 characters."""
    return " | ".join(line for line in text.splitlines() if line.strip())[-600:]
