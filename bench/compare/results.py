"""results.py: bench/compare_bench.py's checks and report.

  check(...)  one run: the tool's output (wrk with wrk_report.lua, or
              iperf3 -J) and the counters the bench took before and after
              it ({key: value}), checked to have measured what the run
              meant to; returns its record (and prints a line about it on
              stderr). Raises CheckFailed with the reason when a check fails.
  write(...)  every record: prints the tables and writes compare.json in
              bench/report.py's format.

No timing is checked: only that requests succeeded, that they reached the
backends they should have, and that Ballast's program saw the traffic.
"""
import json
import os
import statistics
import sys

TARGET_NAMES = {
    "ballast": "Ballast (XDP, L2 DSR)",
    "haproxy": "HAProxy 2.6 (mode tcp)",
    "nginx": "nginx 1.22 stream",
    "direct": "none (client to one backend)",
}
TARGET_ORDER = ["direct", "ballast", "haproxy", "nginx"]
PROXIES = ("haproxy", "nginx")
CPUS = os.cpu_count() or 1


class CheckFailed(Exception):
    """A run that did not measure what it meant to: the message says why."""


def fail(msg):
    raise CheckFailed(msg)


def deltas(a, b, clk_tck):
    """The CPU and traffic counters' changes over the run (@a before it,
    @b after it)."""
    d = {k: b[k] - a[k] for k in a if k in b}
    return {
        "wall_s": d["t"],
        "proc_cpu_s": d["proc"] / clk_tck,
        "ballastd_cpu_s": d["ballastd"] / clk_tck,
        "xdp_s": d["xdp_ns"] / 1e9,
        "xdp_packets": int(d["xdp_cnt"]),
        "machine_busy_s": d["machine_busy"] / clk_tck,
        "machine_softirq_s": d["machine_softirq"] / clk_tck,
        "client_retrans": int(d["client_retrans"]),
        # The "after" stub_status request counts itself: one less.
        "backends": {k[3:]: int(v) - 1 for k, v in d.items() if k.startswith("be.")},
    }


def check_http(rec, text, target, max_error_fraction, direct_backend):
    """wrk's summary (@text, its output); requests succeeded and went where
    they should."""
    line = None
    for l in text.splitlines():
        if l.startswith("WRK_JSON "):
            line = l[len("WRK_JSON "):]
    if line is None:
        fail(f"wrk printed no summary (wrk_report.lua's WRK_JSON line): {text[-300:]}")
    w = json.loads(line)
    rec["wrk"] = w
    n = w["requests"]
    if n <= 0:
        fail("wrk completed no request")
    errors = w["connect"] + w["read"] + w["write"] + w["timeout"] + w["status"]
    if errors > max_error_fraction * n:
        fail(f"wrk: {errors} errors in {n} requests (connect {w['connect']}, read {w['read']}, "
             f"write {w['write']}, timeout {w['timeout']}, status>=400 {w['status']}); "
             f"at most {max_error_fraction:.1%} allowed")
    served = rec["backends"]
    if sum(served.values()) < n:
        fail(f"backends counted {sum(served.values())} requests {served}, wrk completed {n}: "
             "answers came from elsewhere")
    if target == "direct":
        others = {k: v for k, v in served.items() if k != direct_backend}
        if any(others.values()):
            fail(f"direct run to {direct_backend}, but other backends served {others}")
    else:
        idle = [k for k, v in served.items() if v == 0]
        if idle:
            fail(f"through {target}, backends {idle} served nothing ({served})")
    if target == "ballast" and rec["xdp_packets"] < n:
        fail(f"Ballast's XDP program ran {rec['xdp_packets']} times for {n} requests: "
             "the traffic did not go through it")
    if target != "ballast" and rec["xdp_packets"]:
        fail(f"an XDP program counted on the lb during the {target} run")


def check_iperf(rec, out, err, target):
    """iperf3's JSON (@out, its stdout; @err, its stderr): no error, data
    moved; Ballast's program saw it."""
    try:
        j = json.loads(out)
    except ValueError as e:
        fail(f"iperf3 printed no JSON ({e}): {out[:300]!r}, stderr {err[:300]!r}")
    if "error" in j:
        fail(f"iperf3: {j['error']}")
    end = j["end"]
    recv, sent = end["sum_received"], end["sum_sent"]
    if recv["bytes"] <= 0:
        fail("iperf3 moved no data")
    rec["iperf"] = {
        "bits_per_second": recv["bits_per_second"],
        "bytes": recv["bytes"],
        "seconds": recv["seconds"],
        "retransmits": sent.get("retransmits", 0),
    }
    if target == "ballast" and rec["xdp_packets"] <= 0:
        fail("Ballast's XDP program saw none of iperf3's packets")


def check(kind, case, target, round_, before, after, output, errors, *, clk_tck,
          max_error_fraction, direct_backend):
    """One run's record: its counters' changes (@before and @after: {key:
    value}) and what its tool reported (@output: wrk's output, or iperf3's
    JSON with @errors its stderr), checked (CheckFailed says why not):
    wrk's errors at most @max_error_fraction of its requests, a direct run
    served by @direct_backend alone."""
    rec = {"kind": kind, "case": case, "target": target, "round": round_}
    rec.update(deltas(before, after, clk_tck))
    if kind == "http":
        check_http(rec, output, target, max_error_fraction, direct_backend)
    else:
        check_iperf(rec, output, errors, target)
    brief = (f"{rec['wrk']['requests'] / (rec['wrk']['duration_us'] / 1e6):.0f} req/s"
             if kind == "http" else f"{rec['iperf']['bits_per_second'] / 1e9:.2f} Gbit/s")
    print(f"{kind} {case} via {target} (round {round_}): {brief}, "
          f"balancer process {rec['proc_cpu_s'] + rec['ballastd_cpu_s']:.2f} s, "
          f"XDP {rec['xdp_s'] * 1e3:.1f} ms / {rec['xdp_packets']} packets, "
          f"backends {rec['backends'] if kind == 'http' else '-'}", file=sys.stderr, flush=True)
    return rec


def fmt(x, digits=2):
    return f"{x:,.{digits}f}"


def per_100k(seconds, requests):
    return seconds / requests * 1e5 if requests else 0.0


def busy_pct(rs):
    """The machine's busy share of all its CPUs over the runs RS, in %."""
    return sum(r["machine_busy_s"] for r in rs) / sum(r["wall_s"] for r in rs) / CPUS * 100


def by_round(runs, value):
    """{(target, round): value(run)} and the rounds, for per-round ratios."""
    return {(r["target"], r["round"]): value(r) for r in runs}, sorted({r["round"] for r in runs})


def ratio_to_direct(vals, rounds, t):
    """TARGET's value over direct's in the same round, averaged over rounds:
    a ratio measured side by side, which the machine's drift cancels out of."""
    return statistics.mean(vals[(t, k)] / vals[("direct", k)] for k in rounds)


def http_table(runs):
    """Columns and rows for one HTTP case (every target, every round)."""
    rate, rounds = by_round(runs, lambda r: r["wrk"]["requests"] / (r["wrk"]["duration_us"] / 1e6))
    cols = ["balancer", "req/s", "x direct", "p50 ms", "p99 ms", "balancer CPU s/100k req",
            "ballastd s/100k req", "XDP prog s/100k req (ns/packet)", "machine busy",
            "client retransmits", "req/s by round"]
    rows = []
    for t in TARGET_ORDER:
        rs = [r for r in runs if r["target"] == t]
        if not rs:
            continue
        n = sum(r["wrk"]["requests"] for r in rs)
        xdp, pk = sum(r["xdp_s"] for r in rs), sum(r["xdp_packets"] for r in rs)
        rows.append([
            TARGET_NAMES[t],
            fmt(statistics.mean(rate[(t, k)] for k in rounds), 0),
            fmt(ratio_to_direct(rate, rounds, t)),
            fmt(statistics.mean(r["wrk"]["p50_us"] for r in rs) / 1e3),
            fmt(statistics.mean(r["wrk"]["p99_us"] for r in rs) / 1e3),
            fmt(per_100k(sum(r["proc_cpu_s"] for r in rs), n), 3) if t in PROXIES else "-",
            fmt(per_100k(sum(r["ballastd_cpu_s"] for r in rs), n), 4) if t == "ballast" else "-",
            f"{fmt(per_100k(xdp, n), 4)} ({xdp / pk * 1e9:.0f})" if t == "ballast" and pk else "-",
            f"{busy_pct(rs):.0f}%",
            str(sum(r["client_retrans"] for r in rs)),
            " / ".join(fmt(rate[(t, k)], 0) for k in rounds),
        ])
    return cols, rows


def iperf_table(runs):
    """Columns and rows for iperf3: every direction, target and round."""
    cols = ["balancer", "direction", "Gbit/s", "x direct", "balancer CPU % of a core",
            "ballastd % of a core", "XDP prog % of a core (ns/packet)", "machine busy",
            "retransmits", "Gbit/s by round"]
    rows = []
    for case in ("up", "down"):
        cr = [r for r in runs if r["case"] == case]
        gbit, rounds = by_round(cr, lambda r: r["iperf"]["bits_per_second"] / 1e9)
        for t in TARGET_ORDER:
            rs = [r for r in cr if r["target"] == t]
            if not rs:
                continue
            wall = sum(r["wall_s"] for r in rs)
            xdp, pk = sum(r["xdp_s"] for r in rs), sum(r["xdp_packets"] for r in rs)
            rows.append([
                TARGET_NAMES[t],
                "client -> backend" if case == "up" else "backend -> client (-R)",
                fmt(statistics.mean(gbit[(t, k)] for k in rounds)),
                fmt(ratio_to_direct(gbit, rounds, t)),
                fmt(sum(r["proc_cpu_s"] for r in rs) / wall * 100, 0) if t in PROXIES else "-",
                fmt(sum(r["ballastd_cpu_s"] for r in rs) / wall * 100, 1) if t == "ballast" else "-",
                (f"{fmt(xdp / wall * 100, 1)} ({xdp / pk * 1e9:.0f})"
                 if t == "ballast" and pk else "-"),
                f"{busy_pct(rs):.0f}%",
                str(sum(r["iperf"]["retransmits"] for r in rs)),
                " / ".join(fmt(gbit[(t, k)]) for k in rounds),
            ])
    return cols, rows


def print_table(title, cols, rows):
    print(f"\n{title}")
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


HTTP_TITLES = {
    "keepalive": "HTTP over keep-alive connections",
    "close": "HTTP with a new connection per request (Connection: close)",
}


def write(runs, out, quick, http_s, iperf_what, rounds, threads, conns, backends):
    """The tables of @runs (check's records) printed, and compare.json
    written to @out. @http_s: each HTTP run's length; @iperf_what: each
    iperf3 run's ("4 s"); @threads, @conns: wrk's; @backends: how many."""
    facts = {"quick": quick, "http_s": http_s, "rounds": rounds, "threads": threads,
             "conns": conns, "backends": backends}
    sections = [{"text": intro_text(facts)}]
    for case in ("keepalive", "close"):
        rs = [r for r in runs if r["kind"] == "http" and r["case"] == case]
        if not rs:
            continue
        cols, rows = http_table(rs)
        print_table(HTTP_TITLES[case], cols, rows)
        sections.append({"heading": HTTP_TITLES[case], "text": HTTP_TEXT[case],
                         "table": {"columns": cols, "rows": rows}})
    rs = [r for r in runs if r["kind"] == "iperf"]
    if rs:
        cols, rows = iperf_table(rs)
        print_table("One long-lived TCP connection (iperf3)", cols, rows)
        sections.append({"heading": "One long-lived TCP connection (iperf3)",
                         "text": IPERF_TEXT.format(what=iperf_what),
                         "table": {"columns": cols, "rows": rows}})
    sections.append({"heading": "What the CPU figures include", "text": CPU_TEXT})
    doc = {
        "bench": "compare",
        "title": "Ballast, HAProxy and nginx side by side",
        "command": "bench/compare_bench.py build" + (" --quick" if quick else ""),
        "order": 40,
        "sections": sections,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"\nwrote {out}")


def intro_text(a):
    """The section that says how it was measured (@a: write's facts)."""
    quick = (f"**This is a --quick run ({a['http_s']:g} s per HTTP run, 32 MB per iperf3 run, "
             "one round): the figures are a smoke test, not a measurement.**\n\n" if a["quick"] else "")
    rounds = ("one round" if a["rounds"] == 1 else
              f"{a['rounds']} rounds, every other one in the reverse order (so that a drift of "
              "the machine during the run weighs on all alike)")
    return quick + f"""\
Real traffic through each balancer, in one topology and one run: the end-to-end harness's network
namespaces (a client, a balancer host "lb" and {a['backends']} backends on one bridge, veth links),
each backend running nginx (one worker per CPU) with a static 3-byte answer
(`return 200 "ok\\n"`). The balancers:

- **Ballast**: the VIP served by ballastd's XDP program on the lb's eth0 in `dsr` mode (L2 direct
  server return: the program rewrites the destination MAC and sends the frame back out; the
  backends hold the VIP on `lo` and **answer the client directly, so replies never cross the
  balancer**: that is the point of DSR), with a TCP health check per backend each second.
- **HAProxy 2.6**, `mode tcp`, `balance roundrobin`, a TCP check per backend each second, its
  default of one thread per CPU; **nginx 1.22 stream**, round robin, `worker_processes auto`
  (open-source nginx has no active checks). Both listen on the lb's own address and **proxy
  both directions**: every answer comes back through them.
- **direct**: the client straight to one backend, no balancer: the ceiling of this machine.

The proxies run while Ballast's XDP program is detached, and so is the pass program on the lb's
bridge port that XDP_TX on veth needs here (an XDP program without multi-buffer support on a
veth peer takes GSO away from the lb's eth0): each balancer is measured as it would be
deployed. The client's transmit checksum offload is off in every run (the topology needs it for
XDP on veth), so the client's side is the same for all.

Load: wrk from the client namespace, {a['threads']} thread, {a['conns']} connections, {a['http_s']:g} s per
run, the same for every balancer; {rounds}, and each balancer's ratio to *direct* is taken
within a round and then averaged. **Absolute figures
on these shared VMs swing 2x between runs (see the "by round" columns); the ratios measured side
by side are what to compare.** The machine has only {CPUS} CPUs, shared by the client (wrk),
the balancer and the backends: every run keeps the whole machine busy ("machine busy" column),
which caps absolute req/s far below what any of these balancers does on hardware of its own.
With the machine saturated, whole-machine CPU per request is the CPU count over req/s, so
**"x direct" is also the inverse of each configuration's whole-machine CPU cost per request**,
kernel work included (as long as nothing else ran on the machine: `make bench` runs its
benchmarks one after another): a balancer that costs less leaves more CPU to wrk and the
backends.

Veth is not a NIC: a frame reaching XDP on veth is already a socket buffer, converted (copied
when it must be) to an XDP buffer, and XDP_TX turns it back into one on the peer, with the pass
program run there too. That is work a NIC driver running XDP on its receive ring does not do;
it is in Ballast's whole-machine cost here (not in its XDP program figure), which is therefore
likely higher than it would be on a NIC.

Checked on every run (the bench fails otherwise; no timing is asserted): wrk's socket errors,
timeouts and statuses >= 400 under 0.1% of its requests; the backends' nginx counted at least
as many requests as wrk completed, through a balancer on every backend, direct on be1 only;
Ballast's XDP program ran at least once per request; no XDP program on the lb while a proxy is
measured; iperf3 reported no error. "client retransmits" (the client namespace's TCP
RetransSegs over the run) would show a balancer losing packets."""


HTTP_TEXT = {
    "keepalive": """\
Each of wrk's connections stays open for the whole run and carries request after request: the
balancer's per-packet cost. Ballast picks a backend per connection (Maglev, with connection
tracking), so the 50 connections land unevenly on the 3 backends; the proxies spread their
backend connections round robin. p50/p99 are wrk's (request written to answer read), averaged
over the rounds.""",
    "close": """\
wrk sends `Connection: close`: every request opens a new TCP connection (handshake, request,
answer, close); wrk's latency excludes the connect. Each proxy accepts the client's connection
and opens a second one to a backend per request; Ballast adds a connection-tracking entry and
forwards the client's packets only (the client and lb namespaces reuse TIME_WAIT ports and have
a wide port range, so thousands of connections a second do not run out of ports).""",
}

IPERF_TEXT = """\
One TCP connection for {what} (iperf3 -s on be1; the iperf3 VIP or proxy entry has that one
backend, since iperf3's control and data connections must meet on one server). *client ->
backend*: the client sends, so the data crosses every balancer (and the client sends
MTU-sized segments, its offloads being off: the same for all). *backend -> client* (`-R`): the
backend sends; with DSR the data bypasses Ballast entirely (it sees only the client's ACKs),
while the proxies relay every byte. Through Ballast the data then takes exactly the path of the
direct run, so **that row's distance from 1.00 is this machine's noise**, a control built into
the table. Gbit/s as iperf3's receiver counted it; balancer CPU as a share of one core over the
run; retransmits as iperf3's sender counted them."""

CPU_TEXT = """\
- **balancer CPU (HAProxy, nginx)**: utime + stime of the balancer's processes (HAProxy's one
  process with all its threads, including its health checks; nginx's master and workers) from
  `/proc/PID/stat`, read before and after the run, in clock ticks (10 ms). It includes their
  system calls and the kernel TCP/IP work done in the proxy's own context (a send runs down
  through the veth into the receiving namespace's stack). This kernel (tick-based accounting,
  no `IRQ_TIME_ACCOUNTING`) charges softirq work to whichever task a tick interrupts, so softirq
  processing of *other* namespaces' packets can land in the proxy's stime, and some of the
  proxy's own receive work lands in wrk's or nginx's: on one host with veth the softirq work of
  all namespaces is mixed. Per-process figures are therefore approximate; "x direct" (the whole
  machine, see above) is not.
- **XDP prog (Ballast)**: the time the kernel measures around each run of the XDP program
  attached to the lb's eth0 (`run_time_ns` and `run_cnt` of `bpftool prog show`; statistics on
  for the bench through `BPF_ENABLE_STATS`, which is reference-counted, rather than the global
  sysctl). The program alone: not the veth driver's receive and XDP_TX work around it (a NIC
  driver's ring work), nor the bridge. It is wall time around each run, so it also holds the
  two clock reads of the statistics themselves, cache misses (at a few thousand packets a second
  each packet finds cold caches: ns/packet is far above `bench_dataplane`'s hot-loop figure) and
  any time the hypervisor took the CPU away. ns/packet is that time over the packets it ran for.
- **ballastd**: the daemon's utime + stime (health checks, statistics, API), measured once it
  settled after its start (the start itself, loading and first tables, is excluded). It does no
  per-packet work; the lb namespace has no other process doing work for Ballast.
- **machine busy**: the share of all CPUs that `/proc/stat` counts busy over the run (user, nice,
  system, irq, softirq, steal; every namespace), to show that each run saturated the machine."""
