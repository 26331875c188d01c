// stats, skew, top: what the traffic did, against what was configured.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

#include "cli.h"
#include "format.h"
#include "table.h"

namespace ballast::cli {
namespace {

void print_stats(const api::StatsReply& stats) {
  Table t({"VIP", "BACKEND", "WEIGHT", "PACKETS", "BYTES", "NEW FLOWS", "EXPECTED", "OBSERVED",
           "SKEW"});
  for (const auto& v : stats.vips) {
    t.add({v.vip.str() + " " + forward_mode_name(v.mode), "(all)", "",
           std::to_string(v.counts.packets), std::to_string(v.counts.bytes),
           std::to_string(v.counts.new_flows), "", "", ""});
    for (const auto& b : v.backends)
      t.add({"", b.address.str(), std::to_string(b.weight), std::to_string(b.counts.packets),
             std::to_string(b.counts.bytes), std::to_string(b.counts.new_flows),
             share(b.expected_share), share(b.observed_share), ratio(b.skew)});
  }
  t.print();
  std::cout << "\n";
  // Only when there are some: a balancer alone never has flows moved to it.
  Table p({"VIP", "MID-FLOW PICK-UPS", "SECOND CHANCE"});
  bool any_pickups = false;
  for (const auto& v : stats.vips) {
    p.add({v.vip.str(), std::to_string(v.pickups), std::to_string(v.second_chance)});
    any_pickups = any_pickups || v.pickups > 0;
  }
  if (any_pickups) {
    p.print();
    std::cout << "\n";
  }
  // Where new flows' entries went: the SYN-flood guard at work shows as
  // unrecorded flows (docs/dataplane.md, "The connection table").
  const auto& c = stats.conn_table;
  Table ct({"CONN TABLE", "CAPACITY", "RECORDED", "REPLACED UNCONFIRMED", "REPLACED IDLE",
            "UNRECORDED"});
  ct.add({"new flows", std::to_string(c.capacity), std::to_string(c.recorded),
          std::to_string(c.replaced_embryonic), std::to_string(c.replaced_idle),
          std::to_string(c.unrecorded)});
  ct.print();
  std::cout << "\n";
  Table r({"REASON", "VERDICT", "PACKETS", "BYTES"});
  for (const auto& x : stats.reasons)
    r.add({x.reason, x.verdict, std::to_string(x.packets), std::to_string(x.bytes)});
  r.print();
}

// One backend's verdict in `skew` and `top`.
std::string skew_status(const api::SkewReply::Vip& vip, const api::SkewReply::Backend& b) {
  if (!b.skew.new_flows) return b.takes_new_flows ? "-" : "no share";
  if (b.skewed_seconds) return "SKEWED " + std::to_string(*b.skewed_seconds) + "s";
  if (!vip.confident) return "low sample";
  if (b.significant) return "significant";
  return "ok";
}

std::string health_text(const api::SkewReply::Backend& b) {
  return std::string(health_name(b.health)) + (b.drained ? ",drained" : "");
}

void print_skew(const api::SkewReply& s) {
  std::printf(
      "window %lld s, confident from %llu new flows per VIP, skewed above %.2f for %lld s "
      "(|z| >= %.1f)\n\n",
      static_cast<long long>(s.settings.window.count()),
      static_cast<unsigned long long>(s.settings.min_new_flows), s.settings.threshold,
      static_cast<long long>(s.settings.hold.count()), s.settings.z_min);
  Table t({"VIP", "BACKEND", "HEALTH", "WEIGHT", "EXPECTED", "NEW FLOWS", "OBSERVED", "SKEW",
           "PKT SKEW", "Z", "RING", "RING SKEW", "STATUS"});
  for (const auto& v : s.vips) {
    t.add({v.vip.str(), "(all)", "", "", "", std::to_string(v.window.new_flows), "", ratio(v.skew),
           "", "", "", "", v.confident ? "confident" : "low sample"});
    for (const auto& b : v.backends)
      t.add({"", b.address.str(), health_text(b), std::to_string(b.weight),
             share(b.expected_share), std::to_string(b.window.new_flows),
             share(b.observed_share.new_flows), ratio(b.skew.new_flows), ratio(b.skew.packets),
             ratio(b.z), share(b.ring_share), ratio(b.ring_skew), skew_status(v, b)});
  }
  t.print();
}

// `top`: a bar of the observed new-flow share ('#') with the expected
// share marked ('|'), @width characters for 100%.
std::string share_bar(double observed, double expected, size_t width) {
  std::string bar(width, ' ');
  const auto fill = static_cast<size_t>(std::min(1.0, std::max(0.0, observed)) * width + 0.5);
  for (size_t i = 0; i < fill; ++i) bar[i] = '#';
  if (expected > 0) {
    const auto mark = std::min(width - 1, static_cast<size_t>(expected * width));
    bar[mark] = '|';
  }
  return "[" + bar + "]";
}

void print_top(const api::SkewReply& s, bool clear) {
  if (clear) std::cout << "\033[H\033[2J";
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[32];
  std::strftime(when, sizeof(when), "%H:%M:%S", std::localtime(&now));
  std::printf(
      "ballast top  %s  window %lld s  bar: # observed new-flow share, | expected  "
      "(Ctrl-C quits)\n",
      when, static_cast<long long>(s.settings.window.count()));
  for (const auto& v : s.vips) {
    std::printf("\n%s  %s pps  %llu new flows in window  skew %s  %s\n", v.vip.str().c_str(),
                per_second(v.pps).c_str(), static_cast<unsigned long long>(v.window.new_flows),
                ratio(v.skew).c_str(), v.confident ? "" : "(low sample)");
    Table t({"  BACKEND", "SHARE", "OBSERVED", "EXPECTED", "SKEW", "PPS", "HEALTH", "STATUS"});
    for (const auto& b : v.backends)
      t.add({"  " + b.address.str(),
             share_bar(b.observed_share.new_flows, b.expected_share, 30),
             share(b.observed_share.new_flows), share(b.expected_share),
             ratio(b.skew.new_flows), per_second(b.pps), health_text(b), skew_status(v, b)});
    t.print();
  }
  std::cout.flush();
}

}  // namespace

void add_traffic_commands(CLI::App& app, Action& action) {
  app.add_subcommand("stats",
                     "packets, bytes and new flows per VIP and backend, with expected and observed "
                     "shares and skew; packets per verdict reason")
      ->callback(sends<api::Stats>(action, print_stats));

  app.add_subcommand("skew",
                     "each backend's observed share of new flows (and packets) in the sliding "
                     "window against its expected share; ring share of the live Maglev table")
      ->callback(sends<api::Skew>(action, print_skew));

  struct TopArgs {
    std::string interval = "1s";
    int count = 0;
  };
  auto args = std::make_shared<TopArgs>();
  auto* top = app.add_subcommand(
      "top", "live view, one line per backend: share bar, expected share, skew, pps, health");
  top->add_option("-i,--interval", args->interval, "refresh period")->capture_default_str();
  top->add_option("-n,--count", args->count, "frames to show, then exit (0: until Ctrl-C)")
      ->capture_default_str();
  top->callback([&action, args] {
    const auto period = std::chrono::milliseconds(duration_ms(args->interval));
    action = [args, period](const Globals& g) {
      if (g.json()) {  // one frame, as `skew -o json`
        show(g, api::Skew{}, [](const api::SkewReply&) {});
        return 0;
      }
      // Refreshes in place on a terminal; frames one after another otherwise.
      const bool tty = isatty(STDOUT_FILENO);
      for (int frame = 0; args->count == 0 || frame < args->count; ++frame) {
        if (frame > 0) std::this_thread::sleep_for(period);
        print_top(call(g.socket, api::Skew{}), tty);
      }
      return 0;
    };
  });
}

}  // namespace ballast::cli
