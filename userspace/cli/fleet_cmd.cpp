// fleet diff: this balancer's tables against another's (fleet.h); fleet
// leave|join: route health injection by hand (announce.h).
#include <chrono>
#include <fstream>
#include <thread>
#include <iterator>
#include <sstream>

#include "cli.h"
#include "error.h"
#include "fleet.h"
#include "format.h"
#include "table.h"

namespace ballast::cli {
namespace {

// Exit status when some VIP's tables differ (1 stays "the command failed").
constexpr int kTablesDiffer = 2;

std::vector<api::VipEntry> read_vip_list(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(path);
    if (!in) throw Error(path + ": cannot be read");
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  try {
    return nlohmann::json::parse(text).get<std::vector<api::VipEntry>>();
  } catch (const std::exception& e) {
    throw Error(path + ": not the output of `ballast vip list -o json`: " + e.what());
  }
}

std::string weight_text(const std::optional<uint32_t>& w) {
  return w ? std::to_string(*w) : "absent";
}

std::string points(double d) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(2);
  out << (d >= 0 ? "+" : "") << d * 100 << " pt";
  return out.str();
}

nlohmann::json to_json(const std::vector<FleetVipDiff>& diffs) {
  auto j = nlohmann::json::array();
  for (const auto& d : diffs) {
    auto backends = nlohmann::json::array();
    for (const auto& b : d.backends)
      backends.push_back(
          {{"address", b.address.str()},
           {"weight_here", b.weight_here ? nlohmann::json(*b.weight_here) : nullptr},
           {"weight_there", b.weight_there ? nlohmann::json(*b.weight_there) : nullptr},
           {"usable_here", b.usable_here},
           {"usable_there", b.usable_there},
           {"table_share_here", b.share_here},
           {"table_share_there", b.share_there}});
    j.push_back({{"vip", d.vip.str()},
                 {"same", d.same()},
                 {"here", d.here},
                 {"there", d.there},
                 {"table_digest_here", d.digest_here},
                 {"table_digest_there", d.digest_there},
                 {"hash_seed_here", d.seed_here},
                 {"hash_seed_there", d.seed_there},
                 {"table_format_here", d.format_here},
                 {"table_format_there", d.format_there},
                 {"backends", backends}});
  }
  return j;
}

void print(const std::vector<FleetVipDiff>& diffs, const std::string& there) {
  size_t differ = 0;
  for (const auto& d : diffs) {
    if (d.same()) {
      std::cout << d.vip.str() << ": same table (digest " << d.digest_here << ")\n";
      continue;
    }
    differ++;
    if (!d.there) {
      std::cout << d.vip.str() << ": only here\n";
      continue;
    }
    if (!d.here) {
      std::cout << d.vip.str() << ": only in " << there << "\n";
      continue;
    }
    std::cout << d.vip.str() << ": tables differ (digest " << or_dash(d.digest_here) << " here, "
              << or_dash(d.digest_there) << " there)\n";
    if (d.seed_here != d.seed_there)
      std::cout << "  hash_seed " << d.seed_here << " here, " << d.seed_there << " there\n";
    if (d.format_here != d.format_there)
      std::cout << "  table format " << d.format_here << " here, " << d.format_there
                << " there (another Ballast version)\n";
    if (d.backends.empty()) {
      std::cout << "  every backend has the same weight, health and share of the table: the "
                   "same shares in other slots\n";
      continue;
    }
    Table t({"  BACKEND", "WEIGHT HERE", "THERE", "USABLE HERE", "THERE", "TABLE SHARE HERE",
             "THERE", "DIFFERENCE"});
    for (const auto& b : d.backends)
      t.add({"  " + b.address.str(), weight_text(b.weight_here), weight_text(b.weight_there),
             b.usable_here ? "yes" : "no", b.usable_there ? "yes" : "no", share(b.share_here),
             share(b.share_there), points(b.share_here - b.share_there)});
    t.print();
  }
  std::cout << differ << " of " << diffs.size() << " VIP(s) differ from " << there << "\n";
}

// Packets that reached the balancer's VIPs so far (ballast stats).
uint64_t vip_packets(const Globals& g) {
  uint64_t packets = 0;
  for (const auto& v : call(g.socket, api::Stats{}).vips) packets += v.counts.packets;
  return packets;
}

// leave --wait: the routers take a moment to move the traffic away (BGP
// withdraw, then their FIBs); returns once no packet reached a VIP for
// @quiet_ms, or 1 when the timeout passes first.
int wait_for_quiet(const Globals& g, int64_t timeout_ms, int64_t quiet_ms) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  uint64_t last = vip_packets(g);
  auto quiet_since = Clock::now();
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const uint64_t now_packets = vip_packets(g);
    if (now_packets != last) quiet_since = Clock::now();
    last = now_packets;
    if (Clock::now() - quiet_since >= std::chrono::milliseconds(quiet_ms)) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(quiet_since - start).count();
      (g.json() ? std::cerr : std::cout) << "no traffic: the last packet to a VIP arrived " << ms
                << " ms after the withdraw; this balancer can stop\n";
      return 0;
    }
    if (Clock::now() >= deadline) {
      std::cerr << "ballast: traffic still arrives " << timeout_ms
                << " ms after the withdraw (are the routers' BGP sessions up? does another "
                   "route send it here?)\n";
      return 1;
    }
  }
}

struct LeaveArgs {
  bool wait = false;
  std::string timeout = "30s", quiet = "2s";
  int64_t timeout_ms = 0, quiet_ms = 0;
};

}  // namespace

void add_fleet_commands(CLI::App& app, Action& action) {
  auto* fleet = app.add_subcommand(
      "fleet", "this balancer in its fleet: compare its tables, leave or join the routers");
  fleet->require_subcommand(1);
  auto path = std::make_shared<std::string>();
  auto* diff = fleet->add_subcommand(
      "diff",
      "compare every VIP's table with another balancer's (FILE: what `ballast vip list -o json` "
      "printed there, - for stdin): the table digests, and per backend the weight, whether it "
      "takes new flows and its share of the table. Exit status 0 when every VIP agrees, 2 when "
      "one differs");
  diff->add_option("FILE", *path, "the other balancer's `ballast vip list -o json`")->required();
  diff->callback([&action, path] {
    action = [path](const Globals& g) {
      const auto there = read_vip_list(*path);
      const auto here = call(g.socket, api::VipList{});
      const auto diffs = fleet_diff(here, there);
      if (g.json())
        std::cout << to_json(diffs).dump(2) << "\n";
      else
        print(diffs, *path);
      for (const auto& d : diffs)
        if (!d.same()) return kTablesDiffer;
      return 0;
    };
  });

  auto leave_args = std::make_shared<LeaveArgs>();
  auto* leave = fleet->add_subcommand(
      "leave",
      "withdraw every VIP from the routers (fleet.announce) and stay withdrawn, across restarts "
      "of ballastd, until `fleet join`; forwarding goes on for whatever still arrives");
  leave->add_flag("--wait", leave_args->wait,
                  "return once no packet has reached a VIP for --quiet (exit 1 after --timeout)");
  leave->add_option("--timeout", leave_args->timeout, "how long --wait waits")
      ->capture_default_str();
  leave->add_option("--quiet", leave_args->quiet, "how long without traffic counts as gone")
      ->capture_default_str();
  leave->callback([&action, leave_args] {
    leave_args->timeout_ms = duration_ms(leave_args->timeout);
    leave_args->quiet_ms = duration_ms(leave_args->quiet);
    action = [leave_args](const Globals& g) {
      show(g, api::FleetLeave{}, print_changes);
      return leave_args->wait ? wait_for_quiet(g, leave_args->timeout_ms, leave_args->quiet_ms)
                              : 0;
    };
  });
  fleet->add_subcommand("join", "announce this balancer's VIPs again after `fleet leave`")
      ->callback(sends<api::FleetJoin>(action, print_changes));
}

}  // namespace ballast::cli
