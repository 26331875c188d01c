// changes_bench.cpp: what one change costs ballastd's control plane as the
// number of VIPs grows (issue #15: "cost proportional to the change").
//
// The control plane's core (Commands -> ChangePipeline -> BalancerState, with the pre-apply
// audit) runs in this process against a data plane that counts its writes
// and keeps nothing, and a neighbour source that answers from memory and
// counts the kernel round trips ballastd would make (a route lookup or a
// neighbour-table dump each). For N VIPs of three backends each, it measures
// adding one more VIP, changing one backend's weight, and `vip list`: the
// median time of several, the kernel round trips and map writes per change,
// and the resident memory each VIP costs.
//
// Usage: bench_changes [--quick] [--json FILE]
//   --quick: N = 1, 100, 1,000 only (the smoke in make test).
//   --json: also write the results for bench/report.py.
// Prints a table. Measures; asserts no timing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "audit.h"
#include "balancer_state.h"
#include "changelog.h"
#include "change_pipeline.h"
#include "commands.h"
#include "config.h"
#include "fake_neighbors.h"
#include "null_dataplane.h"

namespace ballast {
namespace {

using Clock = std::chrono::steady_clock;

std::string vip_name(uint32_t i) {
  return "10." + std::to_string(100 + i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
         std::to_string(i % 256) + ":80/tcp";
}
std::string backend_name(uint32_t i) {
  return "10.250." + std::to_string(1 + i / 256 % 250) + "." + std::to_string(i % 256);
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

struct Row {
  uint32_t vips;
  double add_ms, weight_ms, list_ms;
  double add_trips, add_writes;
  double rss_per_vip_kib;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Row measure(uint32_t n, int repeats) {
  NullDataPlane dp;
  FakeNeighbors nb;
  BalancerState state(dp, nb, 1);
  state.set_interface(FakeNeighbors::facts(1));
  ChangeLog log(ChangeLog::kDefaultCapacity, std::chrono::system_clock::now,
                [](const std::string&) {});
  ChangePipeline pipeline(state, log);
  Commands commands(pipeline, dp, log, [] { return api::StatusReply{}; });
  for (uint32_t b = 0; b < 3 * (n + repeats) + 3; ++b) nb.known[*IpAddress::parse(backend_name(b))] = {2, 0, 0, 0, 0, 2};

  Config c;
  c.interface = "eth0";
  const long rss0 = rss_kib();
  for (uint32_t i = 0; i < n; ++i) {
    VipConfig vip = empty_vip(VipKey::parse(vip_name(i)));
    for (uint32_t b = 0; b < 3; ++b)
      vip.backends.push_back(BackendConfig{*IpAddress::parse(backend_name(3 * i + b)), 2, {}});
    c.vips.push_back(vip);
  }
  require_valid(c);
  pipeline.submit(ConfigRequest{c}, {"bench"});
  const long rss1 = rss_kib();
  const PeerCred root{};
  auto call = [&](const nlohmann::json& req) {
    const auto t0 = Clock::now();
    commands.handle(req, root);
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  std::vector<double> add, weight, list;
  double trips = 0, writes = 0;
  for (int r = 0; r < repeats; ++r) {
    const uint32_t i = n + static_cast<uint32_t>(r);
    const uint64_t t0 = nb.round_trips, w0 = dp.writes;
    add.push_back(call({{"command", "vip.add"}, {"args", {{"vip", vip_name(i)}}}}));
    trips += static_cast<double>(nb.round_trips - t0);
    writes += static_cast<double>(dp.writes - w0);
    weight.push_back(call({{"command", "backend.set_weight"},
                           {"args",
                            {{"vip", vip_name(0)},
                             {"address", backend_name(0)},
                             {"weight", 3 - (r % 2)}}}}));
    list.push_back(call({{"command", "vip.list"}}));
  }
  return Row{n,
             median(add),
             median(weight),
             median(list),
             trips / repeats,
             writes / repeats,
             n ? static_cast<double>(rss1 - rss0) / n : 0};
}

std::string fmt(double v, const char* f) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

}  // namespace
}  // namespace ballast

int main(int argc, char** argv) {
  using namespace ballast;
  bool quick = false;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: bench_changes [--quick] [--json FILE]\n");
      return 2;
    }
  }
  std::vector<uint32_t> sizes =
      quick ? std::vector<uint32_t>{1, 100, 1000} : std::vector<uint32_t>{1, 10, 100, 1000, 3000, 10000};
  int repeats = quick ? 3 : 5;
  // BENCH_CHANGES_N=N BENCH_CHANGES_REPEATS=R: one size, R changes (for a
  // profiler, so that the changes outweigh building the N VIPs).
  if (const char* n = getenv("BENCH_CHANGES_N")) sizes = {static_cast<uint32_t>(atoi(n))};
  if (const char* r = getenv("BENCH_CHANGES_REPEATS")) repeats = atoi(r);
  std::vector<Row> rows;
  std::printf("%8s %12s %12s %12s %14s %12s %12s\n", "VIPs", "vip add ms", "weight ms",
              "vip list ms", "round trips", "map writes", "KiB / VIP");
  for (uint32_t n : sizes) {
    rows.push_back(measure(n, repeats));
    const Row& r = rows.back();
    std::printf("%8u %12.3f %12.3f %12.3f %14.1f %12.1f %12.1f\n", r.vips, r.add_ms, r.weight_ms,
                r.list_ms, r.add_trips, r.add_writes, r.rss_per_vip_kib);
    std::fflush(stdout);
  }
  // What the bench checks (not a timing): a change writes the same map
  // entries and asks the kernel as often whatever the number of VIPs.
  for (const auto& r : rows)
    if (r.add_writes != rows[0].add_writes || r.add_trips != rows[0].add_trips) {
      std::printf("FAIL: at %u VIPs a vip add made %.1f map writes and %.1f round trips, at %u: "
                  "%.1f and %.1f\n",
                  r.vips, r.add_writes, r.add_trips, rows[0].vips, rows[0].add_writes,
                  rows[0].add_trips);
      return 1;
    }
  std::printf("map writes and kernel round trips per change: the same at every size\n");
  if (json_path.empty()) return 0;
  nlohmann::json table_rows = nlohmann::json::array();
  nlohmann::json xs = nlohmann::json::array(), add = nlohmann::json::array(),
                 weight = nlohmann::json::array(), list = nlohmann::json::array();
  for (const auto& r : rows) {
    table_rows.push_back({std::to_string(r.vips), fmt(r.add_ms, "%.3f"), fmt(r.weight_ms, "%.3f"),
                          fmt(r.list_ms, "%.3f"), fmt(r.add_trips, "%.0f"),
                          fmt(r.add_writes, "%.0f"), fmt(r.rss_per_vip_kib, "%.1f")});
    xs.push_back(r.vips);
    add.push_back(r.add_ms);
    weight.push_back(r.weight_ms);
    list.push_back(r.list_ms);
  }
  const nlohmann::json doc = {
      {"bench", "changes"},
      {"title", "Control plane: one change against the number of VIPs"},
      {"command", "build/bench_changes"},
      {"order", 45},
      {"sections",
       {{{"text",
          "ballastd's core (the control API's commands, the pre-apply audit, BalancerState) in "
          "one process, against a data plane that counts its writes and a neighbour source that "
          "counts the kernel round trips ballastd would make (one rtnetlink request each). N "
          "VIPs of three backends each (weight 2); per change the median of several. `vip add` adds one more "
          "VIP; `weight` changes one backend of the first VIP (2 <-> 3); `vip list` reads them all. KiB / "
          "VIP: resident memory the N VIPs cost, per VIP."},
         {"table",
          {{"columns",
            {"VIPs", "vip add (ms)", "weight (ms)", "vip list (ms)", "round trips / add",
             "map writes / add", "KiB / VIP"}},
           {"rows", table_rows}}},
         {"plot",
          {{"file", "changes_vips.png"},
           {"title", "One change against the number of VIPs"},
           {"xlabel", "VIPs"},
           {"ylabel", "ms"},
           {"xlog", true},
           {"ylog", true},
           {"series",
            {{{"label", "vip add"}, {"x", xs}, {"y", add}},
             {{"label", "set weight"}, {"x", xs}, {"y", weight}},
             {{"label", "vip list"}, {"x", xs}, {"y", list}}}}}}}}}};
  std::ofstream(json_path) << doc.dump(2) << "\n";
  return 0;
}
