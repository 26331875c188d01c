#!/usr/bin/env python3
"""report.py: writes docs/benchmarks.md (and its PNG plots) from the results
that `make bench` (bench/run-all.sh) left in a directory.

Usage: bench/report.py RESULTS_DIR OUTPUT_MD

Every benchmark writes one RESULTS_DIR/<name>.json:

  {
    "bench": "wire",                         # file name without .json
    "title": "Data plane on the wire",       # the section heading
    "command": "bench/wire_bench.sh build",  # how to run it alone
    "order": 30,                             # sections sorted by this
    "sections": [
      {
        "heading": "Packets per second",     # optional sub-heading
        "text": "Markdown: how it was measured, what limits it.",
        "table": {                            # optional
          "columns": ["path", "Mpps", "x XDP_DROP"],
          "rows": [["floor", "1.23", "0.50"], ...]   # cells are strings
        },
        "plot": {                             # optional
          "file": "wire_flows.png",           # written next to OUTPUT_MD,
                                              # under bench/ (docs/bench/)
          "title": "...", "xlabel": "...", "ylabel": "...",
          "xlog": false, "ylog": false, "xticks": [1, 2],   # optional
          "series": [{"label": "Ballast", "x": [1, 1000], "y": [2.1, 2.0]}]
        },
        "text_after": "Markdown after the table and plot (optional)."
      }
    ]
  }

Numbers are formatted by the bench (cells are strings), so each decides its
precision. A results file that does not parse is reported in the document
rather than dropped silently.
"""
import datetime
import json
import os
import platform
import subprocess
import sys


def machine_facts():
    """The machine the figures came from, as Markdown list items."""
    facts = []
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts.append(f"CPU: {cpu}, {os.cpu_count()} logical CPUs")
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        facts.append(f"memory: {kib / 1024 / 1024:.1f} GiB")
    except (OSError, ValueError, IndexError):
        pass
    facts.append(f"kernel: {platform.release()}")
    # The speculation mitigations price every call from an XDP program into
    # the kernel (helpers, map lookups the verifier does not inline), so the
    # data-plane ratios depend on them.
    for name in ("spectre_v2", "spec_rstack_overflow"):
        try:
            with open(f"/sys/devices/system/cpu/vulnerabilities/{name}") as f:
                facts.append(f"kernel's {name}: {f.read().strip()}")
        except OSError:
            pass
    try:
        with open("/etc/debian_version") as f:
            facts.append(f"Debian {f.read().strip()}")
    except OSError:
        pass
    try:
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True).stdout.strip()
        if virt and virt != "none":
            facts.append(f"virtualised: {virt}")
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if rev:
            facts.append(f"Ballast commit: {rev}{' (with uncommitted changes)' if dirty else ''}")
    except OSError:
        pass
    return facts


def md_table(table):
    cols = table["columns"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in table["rows"]:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def draw(plot, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for s in plot["series"]:
        ax.plot(s["x"], s["y"], marker="o", label=s["label"])
    if plot.get("xlog"):
        ax.set_xscale("log")
    if plot.get("xticks"):
        ax.set_xticks(plot["xticks"])
    if plot.get("ylog"):
        ax.set_yscale("log")
    ax.set_title(plot.get("title", ""))
    ax.set_xlabel(plot.get("xlabel", ""))
    ax.set_ylabel(plot.get("ylabel", ""))
    ax.set_ylim(bottom=0) if not plot.get("ylog") else None
    ax.grid(True, alpha=0.3)
    if len(plot["series"]) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RESULTS_DIR OUTPUT_MD")
    results_dir, out_md = sys.argv[1], sys.argv[2]
    plot_dir_rel = "bench"
    plot_dir = os.path.join(os.path.dirname(out_md) or ".", plot_dir_rel)
    os.makedirs(plot_dir, exist_ok=True)

    benches, broken = [], []
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(results_dir, name)) as f:
                benches.append(json.load(f))
        except (OSError, ValueError) as e:
            broken.append(f"{name}: {e}")
    benches.sort(key=lambda b: (b.get("order", 100), b.get("bench", "")))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run-all.sh, then bench/report.py); do not edit by hand.",
        "Each figure below is from the run named here, on this machine. Absolute times on a",
        "shared VM swing by up to 2x between runs, so each bench reports ratios against a",
        "reference measured side by side in the same run; compare those.",
        "",
        f"Run: {now}",
        "",
    ]
    out += [f"- {fact}" for fact in machine_facts()]
    out.append("")
    if broken:
        out += ["**Results that could not be read:**", ""]
        out += [f"- {b}" for b in broken]
        out.append("")

    for b in benches:
        out += [f"## {b['title']}", "", f"Run alone: `{b['command']}`", ""]
        for sec in b.get("sections", []):
            if sec.get("heading"):
                out += [f"### {sec['heading']}", ""]
            if sec.get("text"):
                out += [sec["text"].strip(), ""]
            if sec.get("table"):
                out += [md_table(sec["table"]), ""]
            if sec.get("plot"):
                plot = sec["plot"]
                draw(plot, os.path.join(plot_dir, plot["file"]))
                out += [f"![{plot.get('title', plot['file'])}]({plot_dir_rel}/{plot['file']})", ""]
            if sec.get("text_after"):
                out += [sec["text_after"].strip(), ""]

    with open(out_md, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"report: wrote {out_md} ({len(benches)} benches) and plots under {plot_dir}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
