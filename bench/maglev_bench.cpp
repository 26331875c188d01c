// maglev_bench.cpp: the Maglev table (userspace/core/maglev.h) as issue #6 asks
// to measure it, against the published reference points:
//   - build time for 10 / 100 / 1,000 backends at M = 65,537 and 655,373
//     (the Maglev paper: 1.8 ms for 1,000 backends at 65,537);
//   - balance: the most entries one backend owns over the mean (plain
//     Maglev at M = 65,537, N = 100: 1.001), next to the best an integer
//     table can do, ceil(M/N) / (M/N);
//   - disruption: entries that change owner when one backend leaves or
//     joins, over the theoretical minimum (the leaver's entries, or the
//     joiner's fair share; plain Maglev moves about 1.6x when one leaves);
//   - weighted accuracy: the largest gap between a backend's share of
//     entries and its share of weight.
// Each figure is taken for ballastd's fill (build_table, bounded) and for
// the paper's fill (build_table_classic) side by side in the same run, so
// the ratio between them holds even when the VM's speed swings.
// Pure C++, no BPF: build times are wall clock, median of several builds.
//
// Usage: bench_maglev [--quick] [--json FILE]
//   --quick: fewer and smaller cases, the smoke run of make test;
//   --json: also write the results for bench/report.py.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "maglev.h"

namespace ballast::maglev {
namespace {

using Builder = std::function<std::vector<uint32_t>(const std::vector<Endpoint>&, uint32_t)>;

struct Fill {
  const char* name;
  Builder build;
  bool capped;  // promises no backend more than its share rounded up
};

const Fill kFills[] = {
    {"bounded", [](const auto& eps, uint32_t m) { return build_table(eps, m); }, true},
    {"classic", [](const auto& eps, uint32_t m) { return build_table_classic(eps, m); }, false}};

std::string key_of(uint32_t i) {
  return "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
         std::to_string(i % 256);
}

std::vector<Endpoint> backends(uint32_t n) {
  std::vector<Endpoint> out;
  for (uint32_t i = 0; i < n; i++) out.push_back({key_of(i), 1});
  return out;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Entries per endpoint index; fails loudly on an entry that names none of
// them (a table with holes is not what we meant to measure).
std::vector<uint32_t> counts(const std::vector<uint32_t>& table, size_t n) {
  std::vector<uint32_t> c(n, 0);
  for (uint32_t e : table) {
    if (e >= n) throw std::runtime_error("table entry names no backend");
    c[e]++;
  }
  return c;
}

// A table, checked: every entry names a backend, and for the bounded fill
// (equal weights) no backend owns more than its share rounded up.
std::vector<uint32_t> checked_build(const Fill& fill, const std::vector<Endpoint>& eps,
                                    uint32_t m) {
  auto table = fill.build(eps, m);
  if (table.size() != m) throw std::runtime_error(std::string(fill.name) + ": wrong table size");
  const auto c = counts(table, eps.size());
  uint64_t total = 0;
  bool uniform = true;
  for (const auto& e : eps) {
    total += e.weight;
    uniform &= e.weight == eps[0].weight;
  }
  if (!uniform) return table;  // mixed weights: build_table uses the classic fill
  for (size_t i = 0; i < eps.size(); i++) {
    const uint64_t cap = (uint64_t{m} * eps[i].weight + total - 1) / total;
    if (fill.capped && c[i] > cap)
      throw std::runtime_error(std::string(fill.name) + ": " + eps[i].key + " owns " +
                               std::to_string(c[i]) + " entries, over its cap " +
                               std::to_string(cap));
  }
  return table;
}

// This thread's CPU time in ms: unlike wall clock it leaves out the time
// other processes on the shared VM hold the core.
double thread_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

// Median CPU ms of @builds builds.
double build_ms(const Fill& fill, const std::vector<Endpoint>& eps, uint32_t m, int builds) {
  std::vector<double> ms;
  for (int i = 0; i < builds; i++) {
    const double t0 = thread_cpu_ms();
    const auto table = fill.build(eps, m);
    ms.push_back(thread_cpu_ms() - t0);
    if (table.size() != m) throw std::runtime_error("wrong table size");
  }
  return median(ms);
}

// Entries whose owner (by key) differs between two tables.
uint64_t moved(const std::vector<uint32_t>& a, const std::vector<Endpoint>& ea,
               const std::vector<uint32_t>& b, const std::vector<Endpoint>& eb) {
  uint64_t n = 0;
  for (size_t i = 0; i < a.size(); i++)
    if (ea[a[i]].key != eb[b[i]].key) n++;
  return n;
}

struct Disruption {
  double leave, join;  // moved entries over the minimum, mean over the trials
};

// One backend leaves (@trials leavers spread over the key order; the minimum
// is the leaver's entries) or one joins (@trials new keys; the minimum is
// its fair share M / (N + 1)).
Disruption disruption(const Fill& fill, uint32_t n, uint32_t m, int trials) {
  const auto eps = backends(n);
  const auto table = checked_build(fill, eps, m);
  const auto c = counts(table, n);
  double leave = 0, join = 0;
  for (int t = 0; t < trials; t++) {
    const uint32_t gone = (2 * t + 1) * n / (2 * trials);
    auto fewer = eps;
    fewer.erase(fewer.begin() + gone);
    leave += double(moved(table, eps, checked_build(fill, fewer, m), fewer)) / c[gone];
    auto more = eps;
    more.push_back({key_of(n + 1000 * t), 1});
    join += double(moved(table, eps, checked_build(fill, more, m), more)) / (double(m) / (n + 1));
  }
  return {leave / trials, join / trials};
}

// Input order must not matter: the reversed list gives the same table.
void check_order_independent(const Fill& fill, uint32_t n, uint32_t m) {
  const auto eps = backends(n);
  const std::vector<Endpoint> rev(eps.rbegin(), eps.rend());
  const auto a = fill.build(eps, m), b = fill.build(rev, m);
  for (uint32_t i = 0; i < m; i++)
    if (eps[a[i]].key != rev[b[i]].key)
      throw std::runtime_error(std::string(fill.name) + ": table depends on input order");
}

// Largest |table share - weight share| in percentage points, 100 backends
// of weights 1..10.
double weighted_accuracy(const Fill& fill, uint32_t m) {
  auto eps = backends(100);
  uint64_t total = 0;
  for (size_t i = 0; i < eps.size(); i++) total += eps[i].weight = 1 + i % 10;
  const auto c = counts(checked_build(fill, eps, m), eps.size());
  double worst = 0;
  for (size_t i = 0; i < eps.size(); i++)
    worst = std::max(worst, std::fabs(double(c[i]) / m - double(eps[i].weight) / total));
  return worst * 100;
}

// Share of entries on which the two fills agree: what a rolling upgrade
// from the classic fill moves once.
double agreement(uint32_t n, uint32_t m) {
  const auto eps = backends(n);
  const auto a = build_table(eps, m), b = build_table_classic(eps, m);
  uint64_t same = 0;
  for (uint32_t i = 0; i < m; i++) same += a[i] == b[i];
  return double(same) / m;
}

struct Row {
  uint32_t m, n;
  double ms[2], balance[2], best;
  Disruption d[2];
};

const char* kMethod =
    R"(Pure C++ (`userspace/core/maglev.cpp`), no BPF. For each table size M and backend count
N, **bounded** is the fill ballastd uses (`build_table`: at level j every backend looks at the
j-th slot of its permutation and takes it if free, up to a quota of M/N rounded down or up; mixed
weights fall back to the classic fill) and **classic** is the
paper's fill (`build_table_classic`: one claim per backend per round, skipping taken slots), both with
the same permutations, measured side by side in the same run. Build time is the median of %d builds,
single-threaded, in the thread's CPU time (so time the shared VM gives to other processes is left
out, but their cache and core sharing is not); absolute times swing up to 2x between runs, so
compare the ratio between the two fills (*x classic*), not the milliseconds across runs.
max/mean is the most entries one backend owns over the mean; *best possible* is ceil(M/N)/(M/N),
what any integer table can reach. Leave and join count the entries whose backend changes when one
backend leaves (mean over %d leavers spread over the key order; the minimum is the leaver's entries)
or one joins (mean over %d new keys; the minimum is M/(N+1)), as a multiple of that minimum.
Every table is checked: every entry names a backend, no backend owns more than its share rounded
up (bounded fill), and the reversed input list gives the same table.)";

// The row of @rows for (m, n); rows always hold M = 65,537 with N = 100.
const Row* find_row(const std::vector<Row>& rows, uint32_t m, uint32_t n) {
  for (const auto& r : rows)
    if (r.m == m && r.n == n) return &r;
  return nullptr;
}

// The published reference points and our targets, with where we stand.
std::string targets_text(const std::vector<Row>& rows) {
  std::string t =
      "| figure | published | target | bounded (ballastd) | classic (same run) |\n"
      "|---|---|---|---|---|\n";
  if (const Row* r = find_row(rows, 65537, 1000))
    t += "| build, N = 1,000, M = 65,537 | 1.8 ms (Maglev paper) | < 1 ms | " +
         fmt("%.2f ms", r->ms[0]) + " | " + fmt("%.2f ms", r->ms[1]) + " |\n";
  if (const Row* r = find_row(rows, 65537, 100)) {
    t += "| max/mean, N = 100, M = 65,537 | 1.001 | <= 1.002 | " + fmt("%.4f", r->balance[0]) +
         " (best possible " + fmt("%.4f", r->best) + ") | " + fmt("%.4f", r->balance[1]) + " |\n";
    t += "| leave, N = 100, M = 65,537 | about 1.6x | <= 1.2x | " + fmt("%.2fx", r->d[0].leave) +
         " | " + fmt("%.2fx", r->d[1].leave) + " |\n";
    t += "| join, N = 100, M = 65,537 | | <= 1.2x | " + fmt("%.2fx", r->d[0].join) + " | " +
         fmt("%.2fx", r->d[1].join) + " |\n";
  }
  if (const Row* r = find_row(rows, 655373, 100))
    t += "| leave / join, N = 100, M = 655,373 | | <= 1.2x | " + fmt("%.2fx", r->d[0].leave) +
         " / " + fmt("%.2fx", r->d[0].join) + " | " + fmt("%.2fx", r->d[1].leave) + " / " +
         fmt("%.2fx", r->d[1].join) + " |\n";
  return t;
}

// Which targets this run met, and the gap to those it missed.
std::string verdict_text(const std::vector<Row>& rows) {
  std::string met, missed;
  auto add = [](std::string& list, const std::string& item) {
    list += (list.empty() ? "" : "; ") + item;
  };
  if (const Row* r = find_row(rows, 65537, 1000)) {
    const std::string item = "build < 1 ms at N = 1,000, M = 65,537 (" + fmt("%.2f ms", r->ms[0]) +
                             ", " + fmt("%.2fx", r->ms[0] / r->ms[1]) + " the classic fill)";
    add(r->ms[0] < 1.0 ? met : missed, item);
  }
  for (const Row& r : rows) {
    const double target = std::max(1.002, r.best);
    const std::string item = "max/mean at N = " + std::to_string(r.n) +
                             ", M = " + std::to_string(r.m) + " " + fmt("%.4f", r.balance[0]) +
                             (r.best > 1.002 ? " (best possible " + fmt("%.4f", r.best) + ")" : "");
    add(r.balance[0] <= target + 1e-9 ? met : missed, item);
    const double worst = std::max(r.d[0].leave, r.d[0].join);
    const std::string d = "disruption <= 1.2x at N = " + std::to_string(r.n) +
                          ", M = " + std::to_string(r.m) + " (" + fmt("%.2fx", worst) + ")";
    add(worst <= 1.2 ? met : missed, d);
  }
  return "**Met:** " + (met.empty() ? std::string("none") : met) + ".\n\n**Missed:** " +
         (missed.empty() ? std::string("none") : missed) + ".";
}

bool write_json(const std::string& path, const std::vector<Row>& rows, const nlohmann::json& series,
                double acc_b, double acc_c, int builds, int trials) {
  char method[4096];
  std::snprintf(method, sizeof method, kMethod, builds, trials, trials);
  nlohmann::json sections = nlohmann::json::array();
  sections.push_back(
      {{"text", std::string(method) + "\n\n" + targets_text(rows) + "\n" + verdict_text(rows) +
                    " docs/maglev.md explains the fill, argues why few entries per "
                    "backend leave a floor under disruption, and what a larger "
                    "table (M = 655,373: 2.5 MiB per VIP instead of 256 KiB) "
                    "buys."}});
  for (uint32_t m : {65537u, 655373u}) {
    nlohmann::json table_rows = nlohmann::json::array();
    for (const auto& r : rows) {
      if (r.m != m) continue;
      table_rows.push_back({std::to_string(r.n), fmt("%.3f", r.ms[0]), fmt("%.3f", r.ms[1]),
                            fmt("%.2f", r.ms[0] / r.ms[1]), fmt("%.4f", r.balance[0]),
                            fmt("%.4f", r.balance[1]), fmt("%.4f", r.best),
                            fmt("%.2f", r.d[0].leave), fmt("%.2f", r.d[1].leave),
                            fmt("%.2f", r.d[0].join), fmt("%.2f", r.d[1].join)});
    }
    if (table_rows.empty()) continue;
    sections.push_back(
        {{"heading",
          "M = " + std::to_string(m) + " (" + fmt("%.2f", m * 4.0 / 1024 / 1024) + " MiB per VIP)"},
         {"table",
          {{"columns",
            {"N", "build ms", "classic ms", "x classic", "max/mean", "classic max/mean",
             "best possible", "leave x min", "classic leave", "join x min", "classic join"}},
           {"rows", table_rows}}}});
  }
  if (!series.empty())
    sections.push_back({{"heading", "Disruption against the number of backends"},
                        {"text",
                         "Entries moved when one backend leaves or joins (the larger of the "
                         "two, which differ by under 0.1), over the minimum (1.0 = only the "
                         "leaver's or joiner's own entries move); target 1.2."},
                        {"plot",
                         {{"file", "maglev_disruption.png"},
                          {"title", "Maglev: entries moved over the minimum"},
                          {"xlabel", "backends (N)"},
                          {"ylabel", "moved / minimum"},
                          {"xlog", true},
                          {"series", series}}}});
  sections.push_back(
      {{"heading", "Weighted accuracy"},
       {"text",
        "M = 65,537, 100 backends of weights 1..10: the largest |table share - weight "
        "share| is " +
            fmt("%.4f", acc_b) + " percentage points (classic fill: " + fmt("%.4f", acc_c) +
            "; one entry is 0.0015). Mixed weights keep the classic fill in "
            "`build_table` (docs/maglev.md says why), so the two are the same "
            "table; with equal weights every backend owns M/N rounded down or up "
            "(checked above)."}});
  const nlohmann::json doc = {{"bench", "maglev"},
                              {"title", "Maglev tables"},
                              {"command", "build/bench_maglev"},
                              {"order", 50},
                              {"sections", sections}};
  std::ofstream out(path);
  out << doc.dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "bench_maglev: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

int run(bool quick, const std::string& json_path) {
  const std::vector<uint32_t> sizes =
      quick ? std::vector<uint32_t>{65537} : std::vector<uint32_t>{65537, 655373};
  const std::vector<uint32_t> ns =
      quick ? std::vector<uint32_t>{10, 100} : std::vector<uint32_t>{10, 100, 1000};
  const std::vector<uint32_t> plot_ns =
      quick ? std::vector<uint32_t>{} : std::vector<uint32_t>{10, 30, 100, 300, 1000};
  const int builds = quick ? 1 : 7;
  const int trials = quick ? 1 : 5;

  std::printf("Maglev tables (userspace/core/maglev.cpp), median of %d builds per case,\n", builds);
  std::printf(
      "disruption: mean of %d leavers / joiners; bounded = ballastd's fill, classic = "
      "the paper's\n\n",
      trials);
  std::printf("%8s %5s %8s %8s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n", "M", "N", "ms bnd", "ms cls",
              "bnd/cls", "max/mean", "(cls)", "best", "leave", "(cls)", "join", "(cls)", "agree");
  std::vector<Row> rows;
  for (uint32_t m : sizes) {
    for (uint32_t n : ns) {
      Row r{m, n, {}, {}, std::ceil(double(m) / n) / (double(m) / n), {}};
      for (int f = 0; f < 2; f++) {
        const auto eps = backends(n);
        check_order_independent(kFills[f], n, m);
        r.ms[f] = build_ms(kFills[f], eps, m, builds);
        const auto c = counts(checked_build(kFills[f], eps, m), n);
        r.balance[f] = *std::max_element(c.begin(), c.end()) / (double(m) / n);
        r.d[f] = disruption(kFills[f], n, m, trials);
      }
      std::printf("%8u %5u %8.3f %8.3f %9.2f %9.4f %9.4f %9.4f %9.2f %9.2f %9.2f %9.2f %9.3f\n", m,
                  n, r.ms[0], r.ms[1], r.ms[0] / r.ms[1], r.balance[0], r.balance[1], r.best,
                  r.d[0].leave, r.d[1].leave, r.d[0].join, r.d[1].join, agreement(n, m));
      rows.push_back(r);
    }
  }

  // Disruption against N, for the plot.
  nlohmann::json series = nlohmann::json::array();
  if (!plot_ns.empty()) std::printf("\ndisruption (leave, join x min) against N\n");
  for (uint32_t m : sizes) {
    for (int f = 0; f < 2; f++) {
      std::vector<double> xs, leave, join;
      for (uint32_t n : plot_ns) {
        const auto d = disruption(kFills[f], n, m, trials);
        std::printf("  M %u %s N %u: leave %.2f join %.2f\n", m, kFills[f].name, n, d.leave,
                    d.join);
        xs.push_back(n);
        leave.push_back(d.leave);
        join.push_back(d.join);
      }
      if (xs.empty()) continue;
      // Leave and join lie on top of each other: plot the larger.
      std::vector<double> worst;
      for (size_t i = 0; i < xs.size(); i++) worst.push_back(std::max(leave[i], join[i]));
      series.push_back({{"label", std::string(kFills[f].name) + ", M = " + std::to_string(m)},
                        {"x", xs},
                        {"y", worst}});
    }
  }

  const uint32_t wm = 65537;
  const double acc_b = weighted_accuracy(kFills[0], wm), acc_c = weighted_accuracy(kFills[1], wm);
  std::printf("\nweighted accuracy (M = %u, 100 backends, weights 1..10)\n", wm);
  std::printf("largest |table share - weight share|: %.4f percentage points (classic %.4f)\n",
              acc_b, acc_c);

  if (json_path.empty()) return 0;
  return write_json(json_path, rows, series, acc_b, acc_c, builds, trials) ? 0 : 1;
}

}  // namespace
}  // namespace ballast::maglev

int main(int argc, char** argv) {
  bool quick = false;
  std::string json;
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_maglev [--quick] [--json FILE]\n");
      return 2;
    }
  }
  try {
    return ballast::maglev::run(quick, json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_maglev: %s\n", e.what());
    return 1;
  }
}
