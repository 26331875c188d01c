// maglev_bench.cpp: the Maglev table (userspace/maglev.h) as issue #6 asks
// to measure it, against the published reference points:
//   - build time for 10 / 100 / 1,000 backends at M = 65,537 and 655,373
//     (the Maglev paper: 1.8 ms for 1,000 backends at 65,537);
//   - balance: the most entries one backend owns over the mean (plain
//     Maglev at M = 65,537, N = 100: 1.001);
//   - disruption: entries that change owner when one backend leaves or
//     joins, over the theoretical minimum (the leaver's entries, or the
//     joiner's fair share; plain Maglev moves about 1.6x when one leaves);
//   - weighted accuracy: the largest gap between a backend's share of
//     entries and its share of weight.
// Pure C++, no BPF: build times are wall clock, median of several builds.
//
// Usage: bench_maglev [--quick]   (--quick: fewer and smaller cases, the
// smoke run of make test).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "maglev.h"

namespace ballast::maglev {
namespace {

std::vector<Endpoint> backends(uint32_t n, uint32_t first = 0) {
  std::vector<Endpoint> out;
  for (uint32_t i = first; i < first + n; i++)
    out.push_back({"10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                       std::to_string(i % 256),
                   1});
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median wall-clock ms of @builds builds.
double build_ms(const std::vector<Endpoint>& eps, uint32_t m, int builds) {
  std::vector<double> ms;
  for (int i = 0; i < builds; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto table = build_table(eps, m);
    const auto t1 = std::chrono::steady_clock::now();
    if (table.size() != m) std::abort();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(ms);
}

// Entries per endpoint index.
std::vector<uint32_t> counts(const std::vector<uint32_t>& table, size_t n) {
  std::vector<uint32_t> c(n, 0);
  for (uint32_t e : table) c.at(e)++;
  return c;
}

// The most entries one backend owns over the mean.
double max_over_mean(const std::vector<uint32_t>& table, size_t n) {
  const auto c = counts(table, n);
  return *std::max_element(c.begin(), c.end()) / (double(table.size()) / n);
}

// Entries whose owner (by key) differs between two tables.
uint64_t moved(const std::vector<uint32_t>& a, const std::vector<Endpoint>& ea,
               const std::vector<uint32_t>& b, const std::vector<Endpoint>& eb) {
  uint64_t n = 0;
  for (size_t i = 0; i < a.size(); i++)
    if (ea[a[i]].key != eb[b[i]].key) n++;
  return n;
}

int run(bool quick) {
  const std::vector<uint32_t> sizes =
      quick ? std::vector<uint32_t>{65537} : std::vector<uint32_t>{65537, 655373};
  const std::vector<uint32_t> ns =
      quick ? std::vector<uint32_t>{10, 100} : std::vector<uint32_t>{10, 100, 1000};
  const int builds = quick ? 1 : 7;

  std::printf("Maglev tables (userspace/maglev.cpp), median of %d builds per case\n\n", builds);
  std::printf("%8s %6s %10s %10s %12s %12s\n", "M", "N", "build ms", "max/mean", "leave x min",
              "join x min");
  for (uint32_t m : sizes) {
    for (uint32_t n : ns) {
      const auto eps = backends(n);
      const double ms = build_ms(eps, m, builds);
      const auto table = build_table(eps, m);
      const double balance = max_over_mean(table, n);
      // One leaves (the middle one by key order): the minimum is its entries.
      auto fewer = eps;
      fewer.erase(fewer.begin() + n / 2);
      const auto t_fewer = build_table(fewer, m);
      const uint64_t leaver_entries = counts(table, n)[n / 2];
      const double leave = double(moved(table, eps, t_fewer, fewer)) / leaver_entries;
      // One joins: the minimum is its fair share, M / (N + 1).
      auto more = eps;
      more.push_back(backends(1, n)[0]);
      const auto t_more = build_table(more, m);
      const double join = double(moved(table, eps, t_more, more)) / (double(m) / (n + 1));
      std::printf("%8u %6u %10.2f %10.4f %12.2f %12.2f\n", m, n, ms, balance, leave, join);
    }
  }

  // Weighted accuracy: weights 1..10 over 100 backends.
  std::printf("\nweighted accuracy (M = 65537, 100 backends, weights 1..10)\n");
  auto eps = backends(100);
  uint64_t total_weight = 0;
  for (size_t i = 0; i < eps.size(); i++) total_weight += eps[i].weight = 1 + i % 10;
  const auto table = build_table(eps, 65537);
  const auto c = counts(table, eps.size());
  double worst = 0;
  for (size_t i = 0; i < eps.size(); i++)
    worst = std::max(worst, std::fabs(c[i] / 65537.0 - double(eps[i].weight) / total_weight));
  std::printf("largest |table share - weight share|: %.4f percentage points\n", worst * 100);
  return 0;
}

}  // namespace
}  // namespace ballast::maglev

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  if (argc > 1 && !quick) {
    std::fprintf(stderr, "usage: bench_maglev [--quick]\n");
    return 2;
  }
  return ballast::maglev::run(quick);
}
