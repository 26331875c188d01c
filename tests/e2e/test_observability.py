"""What Ballast tells an operator about where traffic goes
(docs/observability.md), with real traffic between network namespaces:
`ballast skew` against the weights and against what the backends counted,
the Prometheus endpoint (checked by promtool), `ballast top`, a Maglev table
rewritten by hand with bpftool so that one backend owns every entry (which
skew, ring share and the metrics must all name), and the outage replay with
a real Prometheus running the shipped alert rules.

Every test starts its own ballastd (fresh counters and skew window) on the
module's world. Shares: harness/checks.py (4 binomial sd per share); each
distribution check says what it can see.
"""

import json
import logging
import re
import shutil
import subprocess
import time

import pytest

from harness.checks import assert_all_ok, assert_shares, share_tolerance, wait_until
from harness.configs import VIP_TCP, config, vip
from harness.maps import as_int, bpftool
from harness.processes import BackgroundClient, Failure, ballast, batch
from harness.prometheus import Prometheus, shortened_rules, unix
from harness.prometheus import http_get as prometheus_http_get
from harness.world import HTTP_PORT, VIP1

log = logging.getLogger("e2e")

METRICS_PORT = 9469          # ballastd's default metrics listener, on the lb's loopback
SKEW_SAMPLE_S = 1.2          # ballastd samples the counters every second


# --- Helpers ---------------------------------------------------------------


def cfg_observed(world, weights, skew="window: 60s, hold: 2s", extra=""):
    """VIP1:80/tcp over be1..be3 with @weights; @skew is the skew mapping's
    inside; @extra more top-level lines."""
    return config(vip(world, HTTP_PORT, weights=weights)) + f"skew: {{{skew}}}\n{extra}"


def ballast_text(lb, *args):
    """The CLI's text output; fails the test when it fails."""
    done = ballast(lb, *args)
    if done.returncode != 0:
        raise Failure(f"ballast {' '.join(map(str, args))} exited {done.returncode}: "
                      f"{done.stderr.strip()}")
    return done.stdout


def http_get(world, port, path, method="GET"):
    """An HTTP request to 127.0.0.1:@port inside the lb's namespace (where
    ballastd's metrics listen): (status, body)."""
    return prometheus_http_get(world.lb, port, path, method)


def scrape(world):
    status, text = http_get(world, METRICS_PORT, "/metrics")
    assert status == 200, f"GET /metrics: HTTP {status}"
    return text


def samples(text):
    """The exposition format's samples: [(name, {label: value}, value)]."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?", line)
        if found:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
            out.append((found.group(1), labels, float(found.group(3))))
    return out


def metric(text, name, **labels):
    """The value of the first sample of @name whose labels include
    @labels, or None."""
    for n, have, value in samples(text):
        if n == name and all(have.get(k) == v for k, v in labels.items()):
            return value
    return None


def served_counts(world):
    return {be.ip: world.backend_servers.served(be, "tcp", VIP1, HTTP_PORT)
            for be in world.backends}


def skew_row(lb):
    return next(v for v in lb.cli("skew")["vips"] if v["vip"] == VIP_TCP)


def ids(lb, backend):
    """(the VIP's id, @backend's slot id) as ballastd numbers them."""
    vip_id = next(v["id"] for v in lb.cli("vip", "list") if v["vip"] == VIP_TCP)
    be_id = next(b["id"] for b in lb.cli("backend", "list")
                 if b["vip"] == VIP_TCP and b["address"] == backend.ip)
    return vip_id, be_id


def rewrite_table(lb, state_dir, vip_id, backend_id):
    """The VIP's live Maglev table replaced, with bpftool and behind
    ballastd's back, by one whose every entry is one backend slot. The
    table ballastd installed is frozen: writing it in place must fail, so
    the edit swaps in a map of its own."""
    key = [str(b) for b in vip_id.to_bytes(4, "little")]
    value = [str(b) for b in backend_id.to_bytes(4, "little")]
    tables = f"{lb.pin_dir}/maglev_tables"
    found = json.loads(bpftool("-j", "map", "lookup", "pinned", tables, "key", *key))["value"]
    # The inner map's id: an integer, or its bytes (little endian).
    inner = as_int(found)
    written = subprocess.run(["bpftool", "map", "update", "id", str(inner), "key", "0", "0", "0",
                              "0", "value", *value], capture_output=True, text=True)
    assert written.returncode != 0, \
        f"ballastd's Maglev table (map id {inner}) could be written in place: it is not frozen"
    made = f"{lb.pin_dir}/handmade_table"
    bpftool("map", "create", made, "type", "array", "key", 4, "value", 4, "entries", 65537,
            "name", "handmade")
    commands = state_dir / "batch.txt"
    commands.write_text("".join(f"map update pinned {made} key {i & 255} {(i >> 8) & 255} "
                             f"{(i >> 16) & 255} 0 value {' '.join(value)}\n"
                             for i in range(65537)))
    bpftool("batch", "file", commands)
    bpftool("map", "update", "pinned", tables, "key", *key, "value", "pinned", made)
    subprocess.run(["rm", "-f", made])
    log.info("Maglev table of VIP id %d rewritten: every entry backend slot %d",
             vip_id, backend_id)


# --- Tests -----------------------------------------------------------------


SKEW_N = 3000
SKEW_WEIGHTS = [1, 1, 2]


def test_skew_matches_weights(world, lb):
    """`ballast skew` against the weights and the backends' own counts,
    3,000 new flows over weights 1:1:2 (every one from its own source port,
    so each is an independent draw of the balancer's distribution): each
    backend's window count is what it served (new flows may exceed it by
    SYN retransmissions, 1 %); each observed share lies within 4 sd of its
    weight's share (be1 and be2 25 % ± 3.2 points, be3 50 % ± 3.7 points;
    the expected share taken from the weights, never from the report); the
    window is confident and nobody is skewed; ring share matches the
    weights within 1 point.

    What it can see: an equal split (33.3 % each: be1 8.3 points off, 10 sd)
    and weights applied as 1:1:1.5 (be3 42.9 %: 7.1 points off, 7.8 sd,
    about 4 sd beyond the tolerance; be1 and be2 28.6 %, 4.5 sd). The
    shell version's 600 flows at 5 sd allowed be1 and be2 25 ± 8.8 points
    and be3 50 ± 10.2: the weight-1 backends passed an equal split, and
    1:1:1.5 passed whole."""
    # The window must hold the whole batch (3 s here; far longer on a loaded
    # or sanitized build): 300 s.
    lb.start(cfg_observed(world, SKEW_WEIGHTS, "window: 300s, hold: 2s"))
    world.backend_servers.reset_counts()
    report = batch(world, SKEW_N)
    assert_all_ok(report, SKEW_N)
    served = served_counts(world)
    time.sleep(SKEW_SAMPLE_S)        # the next sample holds the whole batch
    v = skew_row(lb)
    total_w = sum(SKEW_WEIGHTS)
    expected = {be.ip: w / total_w for be, w in zip(world.backends, SKEW_WEIGHTS)}
    bad, rows = [], []
    if not v["confident"]:
        bad.append(f"not confident with {v['window']['new_flows']} new flows")
    if not SKEW_N <= v["window"]["new_flows"] <= SKEW_N * 1.01:
        bad.append(f"window holds {v['window']['new_flows']} new flows, client made {SKEW_N}")
    for b in v["backends"]:
        addr, p = b["address"], expected[b["address"]]
        got, exp = b["window"]["new_flows"], served[addr]
        share, tol = b["observed_share"]["new_flows"], share_tolerance(p, SKEW_N)
        rows.append(f"{addr} {share:.3f}/{p:.3f}±{tol:.3f}")
        if not exp <= got <= exp * 1.01 + 1:
            bad.append(f"{addr}: {got} new flows in the window, it served {exp}")
        if abs(b["expected_share"] - p) > 0.001:
            bad.append(f"{addr}: expected_share {b['expected_share']}, the weights say {p:.3f}")
        if abs(share - p) > tol:
            bad.append(f"{addr}: share {share:.3f}, expected {p:.3f} ± {tol:.3f}")
        if b["skewed_seconds"] is not None:
            bad.append(f"{addr}: reported skewed ({b['skew']['new_flows']:.2f})")
        if abs(b["ring_share"] - p) > 0.01:
            bad.append(f"{addr}: ring share {b['ring_share']:.4f}, the weights say {p:.4f}")
    log.info("skew: %s", ", ".join(rows))
    assert not bad, "; ".join(bad)
    # The table names the verdicts an operator reads.
    text = ballast_text(lb, "skew")
    assert "confident" in text, text
    assert len(re.findall(r" ok$", text, re.M)) == 3, f"not every backend ok:\n{text}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_metrics_endpoint(world, lb):
    """The endpoint serves the exposition format (`promtool check metrics`
    agrees), its new-flow counters equal what each backend served (within
    the 1 % a SYN retransmission allows), every backend's health is up, the
    families an operator's dashboards read are there, the program is
    attached, no drift on a clean start, three usable backends; other
    paths get 404 and other methods 405."""
    lb.start(cfg_observed(world, [1, 1, 2]))
    world.backend_servers.reset_counts()
    report = batch(world, 300)
    assert_all_ok(report, 300)
    served = served_counts(world)
    time.sleep(SKEW_SAMPLE_S)        # the next snapshot holds the batch
    text = scrape(world)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text,
                             capture_output=True, text=True)
    assert checked.returncode == 0, f"promtool check metrics: {checked.stdout}{checked.stderr}"

    bad = []
    for be in world.backends:
        got = metric(text, "ballast_backend_new_flows_total", vip=VIP_TCP, backend=be.ip)
        exp = served[be.ip]
        if got is None or not exp <= got <= exp * 1.01 + 1:
            bad.append(f"{be.ip}: new_flows_total {got}, served {exp}")
        if metric(text, "ballast_backend_health", vip=VIP_TCP, backend=be.ip, state="up") != 1:
            bad.append(f"{be.ip}: health up not 1")
    for name in ("ballast_build_info", "ballast_vip_skew_ratio", "ballast_backend_skew_ratio",
                 "ballast_backend_ring_share_ratio", "ballast_xdp_packets_total",
                 "ballast_audit_findings"):
        if f"\n# TYPE {name} " not in text:
            bad.append(f"no {name} family")
    if metric(text, "ballast_xdp_program_attached") != 1:
        bad.append(f"program attached: {metric(text, 'ballast_xdp_program_attached')}")
    if metric(text, "ballast_audit_findings", check="drift", severity="error") != 0:
        bad.append("drift findings on a clean start")
    if metric(text, "ballast_vip_backends_usable", vip=VIP_TCP) != 3:
        bad.append("usable backends not 3")
    assert not bad, "; ".join(bad)

    status, _ = http_get(world, METRICS_PORT, "/nope")
    assert status == 404, f"GET /nope: HTTP {status}, want 404"
    status, _ = http_get(world, METRICS_PORT, "/metrics", method="POST")
    assert status == 405, f"POST /metrics: HTTP {status}, want 405"


def test_top_frames(world, lb):
    """`ballast top -n 2` prints two frames, each with one line per backend
    holding a 30-column share bar."""
    lb.start(cfg_observed(world, [1, 1, 2]))
    assert_all_ok(batch(world, 200), 200)
    time.sleep(SKEW_SAMPLE_S)
    text = ballast_text(lb, "top", "-n", 2, "-i", "200ms")
    assert len(re.findall(r"^ballast top ", text, re.M)) == 2, f"not 2 frames:\n{text}"
    for be in world.backends:
        bars = re.findall(rf"^  {re.escape(be.ip)} +\[[# |]{{30}}\] ", text, re.M)
        assert len(bars) == 2, f"no bar line for {be.ip} in each frame:\n{text}"


def test_hand_edited_table_shows_as_skew(world, state_dir, lb):
    """A table rewritten by hand so that be1 owns every entry: be1 then
    serves all of 300 new connections (the rewrite took), ring share says
    1.0 (ring skew 3) and the others 0; be1's new-flow skew is about 3,
    significant, reported skewed after the 2 s hold (in `ballast skew -o
    json` and its table, "SKEWED"); the VIP's skew is above 2.9 and
    confident; the metrics carry be1's skew above 2."""
    be1 = world.backends[0]
    lb.start(cfg_observed(world, [1, 1, 1], "window: 10s, hold: 2s"))
    rewrite_table(lb, state_dir, *ids(lb, be1))
    world.backend_servers.reset_counts()
    assert_all_ok(batch(world, 300), 300)
    n = world.backend_servers.served(be1, "tcp", VIP1, HTTP_PORT)
    assert n == 300, f"be1 served {n} of 300: the rewrite did not take"
    # Past the hold (2 s) and a sample; the window (10 s) still holds the
    # batch.
    def be1_skewed():
        v = skew_row(lb)
        skewed = any(b["address"] == be1.ip and b["skewed_seconds"] is not None
                     for b in v["backends"])
        return v if skewed else None
    v = wait_until("be1 reported skewed", be1_skewed, 6)
    text = scrape(world)
    b = {x["address"]: x for x in v["backends"]}
    x = b[be1.ip]
    bad = []
    if not (v["skew"] and v["skew"] > 2.9):
        bad.append(f"VIP skew {v['skew']}")
    if not v["confident"]:
        bad.append("not confident")
    if not (x["skew"]["new_flows"] and x["skew"]["new_flows"] > 2.9):
        bad.append(f"be1 skew {x['skew']}")
    if not x["significant"]:
        bad.append("be1 not significant")
    if abs(x["ring_share"] - 1) > 1e-9 or abs(x["ring_skew"] - 3) > 1e-6:
        bad.append(f"be1 ring share {x['ring_share']} ring skew {x['ring_skew']}")
    for addr, o in b.items():
        if addr != be1.ip and (o["ring_share"] != 0 or o["window"]["new_flows"] != 0):
            bad.append(f"{addr}: ring {o['ring_share']} new flows {o['window']['new_flows']}")
    skew = metric(text, "ballast_backend_skew_ratio", vip=VIP_TCP, backend=be1.ip,
                  measure="new_flows")
    if skew is None or skew <= 2:
        bad.append(f"metric ballast_backend_skew_ratio for be1 = {skew}")
    assert not bad, "; ".join(bad)
    table = ballast_text(lb, "skew")
    assert re.search(rf"{re.escape(be1.ip)} .*SKEWED [0-9]+s$", table, re.M), \
        f"the table does not say SKEWED for be1:\n{table}"


# --- The outage replay -----------------------------------------------------


@pytest.fixture
def prometheus(world, state_dir):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed")
    prom = None
    try:
        prom = Prometheus(world.lb, state_dir, [f"127.0.0.1:{METRICS_PORT}"],
                          shortened_rules(state_dir, {SKEWED: f"{SKEWED_FOR_S}s"}))
        yield prom
    finally:
        if prom:
            prom.close()


def cfg_replay(world, weights, reconcile):
    """The outage replay's config: a 5 s skew window, audits every 2 s."""
    return cfg_observed(world, weights, "window: 5s, hold: 2s",
                        f"audit: {{interval: 2s}}\nreconcile: {str(reconcile).lower()}\n")


SKEWED = "BallastBackendSkewed"
# The shipped rule, shortened (harness.prometheus.shortened_rules): its
# group evaluates every 1 s and it holds `for: 5s` (the shipped 15 s and
# 30 s are promtool's to check, tests/prometheus/alerts_test.yml). Once
# be1's skew series pass 2 the alert is pending within 1 s and firing 5 s
# later. Allowed: that, plus the window filling (6 s), plus 15 s for a
# loaded machine.
EVAL_S = 1
SKEWED_FOR_S = 5
FIRING_WITHIN_S = 6 + EVAL_S + SKEWED_FOR_S + 15
STREAM_RATE = 40     # new connections a second: 200 in a 5 s window (confident from 100)


def test_outage_replay(world, state_dir, lb, prometheus):
    """The outage Ballast exists for, replayed with real TCP traffic and a
    real Prometheus running the shipped rules (timing shortened: SKEWED):

    (a) a config sending nearly everything to one backend (100/1/1) is
    refused by the pre-apply audit naming the backend and 98.0 %, changes
    nothing, --dry-run exits 1 with the finding, and only --force applies
    it (the change log says forced);

    (b) with 40 new connections a second flowing, the live Maglev table is
    rewritten by hand with bpftool so that be1 owns every entry. Right
    before, Prometheus scrapes ballastd and has evaluated the rules, and
    BallastBackendSkewed is neither pending nor firing. After:
    `ballast audit` exits 1 naming the drift and be1's ring share (ring
    skew 3.00); be1's skew metric passes 2 within one window (5 s, plus
    the 1 s sampling); and the alert for be1 becomes active after the
    edit and reaches `firing` (pending alone does not count) within
    FIRING_WITHIN_S;

    (c) with reconcile: true applied, ballastd rewrites the table by itself
    (a reconcile entry in the change log), the audit has no drift or
    ring-share error, no request of the stream failed across the edit and
    the repair, 3,000 new connections split a third each (4 sd: 33.3 ±
    3.4 points, so a table left with be1 on more than 37 % of its entries
    fails), and the alert resolves: Prometheus evaluates the rule inactive
    after the window has emptied of the skewed flows."""
    be1 = world.backends[0]
    lb.start(cfg_replay(world, [1, 1, 1], False))
    assert_all_ok(batch(world, 300), 300)

    # (a) The pre-apply audit.
    risky = state_dir / "risky.yaml"
    risky.write_text(cfg_replay(world, [100, 1, 1], False))
    done = ballast(lb, "apply", "-f", risky)
    assert done.returncode == 1, f"apply of weights 100/1/1 exited {done.returncode}, want 1"
    assert "refused by the pre-apply audit" in done.stderr and \
        f"error share-limit: Backend {be1.ip} would get 98.0% of VIP {VIP_TCP}'s new flows " \
        "(weight 100 of 102)" in done.stderr, \
        f"the refusal does not name the backend and numbers: {done.stderr.strip()}"
    weight = next(b["weight"] for b in lb.cli("backend", "list") if b["address"] == be1.ip)
    assert weight == 1, f"a refused apply changed be1's weight to {weight}"
    done = ballast(lb, "apply", "-f", risky, "--dry-run")
    assert done.returncode == 1 and re.search(r"^ERROR +share-limit", done.stdout, re.M), \
        f"dry run: exit {done.returncode}, want 1 with the share-limit error: {done.stdout}"
    forced = ballast_text(lb, "apply", "-f", risky, "--force")
    assert f"backend set-weight {VIP_TCP} {be1.ip} 1 -> 100" in forced, \
        f"--force did not apply: {forced}"
    assert any("(forced)" in e["actor"] for e in lb.cli("log")), \
        "the change log does not say forced"
    good = state_dir / "replay.yaml"
    good.write_text(cfg_replay(world, [1, 1, 1], False))
    ballast_text(lb, "apply", "-f", good)   # back to 1/1/1: no new finding, no --force

    # (b) A hand-edited table, under a stream of new connections.
    vip_id, be1_id = ids(lb, be1)
    stream = BackgroundClient(world, "--vip", VIP1, "--port", HTTP_PORT, "--stream",
                              STREAM_RATE, "--duration", 300, "--timeout", 3)
    try:
        # Before the edit: an evaluation of the rule over a window full of
        # the stream's (balanced) flows, with be1's skew series scraped,
        # has no alert for be1.
        t_stream = time.time()
        wait_until(f"an evaluation of {SKEWED} after the window filled",
                   lambda: unix(prometheus.rule(SKEWED)["lastEvaluation"]) > t_stream + 7,
                   7 + EVAL_S + 15, 0.5)
        before = prometheus.query(f'ballast_backend_skew_ratio{{backend="{be1.ip}",'
                                  'measure="new_flows"}')
        assert before and float(before[0]["value"][1]) < 2, \
            f"Prometheus's be1 skew before the edit: {before} (want a series, below 2)"
        state, _ = prometheus.alert(SKEWED, backend=be1.ip)
        assert state is None, f"{SKEWED} for be1 is {state} before the edit"
        log.info("before the edit: be1 skew %s in Prometheus, %s quiet for it",
                 before[0]["value"][1], SKEWED)

        rewrite_table(lb, state_dir, vip_id, be1_id)
        t_edit = time.time()
        done = ballast(lb, "audit")
        assert done.returncode == 1, f"ballast audit exited {done.returncode} after the edit"
        assert re.search(rf"^ERROR +drift +[0-9]+ of VIP {re.escape(VIP_TCP)}'s 65537 Maglev table "
                         rf"entries differ .* backend {re.escape(be1.ip)} now holds [0-9]+ of them",
                         done.stdout, re.M), f"no drift finding naming be1:\n{done.stdout}"
        assert re.search(rf"^ERROR +ring-share +Backend {re.escape(be1.ip)} holds 100\.0% of VIP "
                         r".* \(ring skew 3\.00\)", done.stdout, re.M), \
            f"no ring-share finding naming be1:\n{done.stdout}"

        # Within one window (5 s, plus the 1 s sampling) be1's skew metric
        # passes 2. The metric is absent while the window holds no new
        # flow: that is "not yet".
        def be1_skew():
            value = metric(scrape(world), "ballast_backend_skew_ratio", vip=VIP_TCP,
                           backend=be1.ip, measure="new_flows")
            return value if value and value > 2 else None
        skew = wait_until("be1's skew metric above 2 within one window", be1_skew,
                          6 - (time.time() - t_edit), 0.3)
        log.info("be1 new-flow skew %.2f, %.1f s after the edit", skew, time.time() - t_edit)

        # The shipped rule on the scraped values: pending at its first
        # evaluation after the edit, firing once it has held for SKEWED_FOR_S.
        seen = []

        def firing():
            state, active = prometheus.alert(SKEWED, backend=be1.ip)
            if not seen or seen[-1][0] != state:
                seen.append((state, round(time.time() - t_edit, 1)))
                log.info("%s for be1: %s (active since %s), %.1f s after the edit", SKEWED,
                         state, active, time.time() - t_edit)
            return (state, active) if state == "firing" else None
        try:
            _, active = wait_until(f"{SKEWED} firing for be1", firing,
                                   FIRING_WITHIN_S - (time.time() - t_edit), 1)
        except Failure as e:
            raise Failure(f"{e}: states seen (state, s after the edit): {seen}; "
                          f"prometheus: {prometheus.log_tail()}") from None
        assert active >= t_edit, \
            f"{SKEWED} for be1 active since {active}, before the edit at {t_edit}"

        # (c) Reconcile.
        good.write_text(cfg_replay(world, [1, 1, 1], True))
        ballast_text(lb, "apply", "-f", good)
        wait_until("a reconcile entry in the change log",
                   lambda: any(e["actor"] == "reconcile" for e in lb.cli("log")), 10, 0.5)
        t_fixed = time.time()
        audit = ballast(lb, "audit").stdout
        assert not re.search(r"^ERROR +(drift|ring-share)", audit, re.M), \
            f"drift or ring-share left after reconcile:\n{audit}"
        report = batch(world, 3000)
        assert_all_ok(report, 3000)
        assert_shares(report, {"be1": 1, "be2": 1, "be3": 1})

        # Resolved: an evaluation after the window (5 s) has emptied of the
        # skewed flows finds the rule inactive.
        def resolved():
            r = prometheus.rule(SKEWED)
            return unix(r["lastEvaluation"]) > t_fixed + 6 and r["state"] == "inactive"
        wait_until(f"{SKEWED} resolved after reconcile", resolved, 6 + EVAL_S + 15, 1)
    except BaseException:
        stream.close()       # the test's own failure is the news, not the stream's
        raise
    streamed = stream.stop()
    assert streamed["failed"] == 0 and streamed["ok"] > 0, \
        f"the stream across the edit and the repair: {streamed['ok']} ok, " \
        f"{streamed['failed']} failed {streamed['errors']}"
