#include "stats.h"

namespace ballast {
namespace {

#define BALLAST_REASON_NAME(name, str, verdict) str,
#define BALLAST_REASON_VERDICT(name, str, verdict) verdict,
constexpr const char* kReasonNames[] = {BALLAST_REASONS(BALLAST_REASON_NAME)};
constexpr const char* kReasonVerdicts[] = {BALLAST_REASONS(BALLAST_REASON_VERDICT)};
#undef BALLAST_REASON_NAME
#undef BALLAST_REASON_VERDICT
static_assert(std::size(kReasonNames) == BALLAST_REASON_COUNT);

}  // namespace

std::string_view reason_name(uint32_t reason) {
  return reason < BALLAST_REASON_COUNT ? kReasonNames[reason] : "unknown";
}

std::string_view reason_verdict(uint32_t reason) {
  return reason < BALLAST_REASON_COUNT ? kReasonVerdicts[reason] : "unknown";
}

nlohmann::json stats_json(const std::vector<VipView>& vips, DataPlane& dataplane) {
  nlohmann::json out = {{"vips", nlohmann::json::array()}, {"reasons", nlohmann::json::array()}};
  for (const auto& vip : vips) {
    const auto vc = dataplane.read_counters(CounterMap::vip, vip.id);
    double usable_weight = 0;
    for (const auto& b : vip.backends)
      if (b.takes_new_flows) usable_weight += b.weight;
    nlohmann::json backends = nlohmann::json::array();
    for (const auto& b : vip.backends) {
      const auto bc = dataplane.read_counters(CounterMap::backend, b.id);
      const double expected =
          (b.takes_new_flows && usable_weight > 0) ? b.weight / usable_weight : 0.0;
      const double observed = vc.new_flows ? double(bc.new_flows) / vc.new_flows : 0.0;
      nlohmann::json skew = nullptr;  // undefined when nothing is expected
      if (expected > 0) skew = observed / expected;
      backends.push_back({{"address", b.address.str()},
                          {"weight", b.weight},
                          {"resolved", b.mac.has_value()},
                          {"health", health_name(b.health)},
                          {"drained", b.drained},
                          {"packets", bc.packets},
                          {"bytes", bc.bytes},
                          {"new_flows", bc.new_flows},
                          {"expected_share", expected},
                          {"observed_share", observed},
                          {"skew", skew}});
    }
    out["vips"].push_back({{"vip", vip.key.str()},
                           {"address", vip.key.address.str()},
                           {"port", vip.key.port},
                           {"protocol", protocol_name(vip.key.protocol)},
                           {"mode", forward_mode_name(vip.mode)},
                           {"packets", vc.packets},
                           {"bytes", vc.bytes},
                           {"new_flows", vc.new_flows},
                           {"backends", backends}});
  }
  const auto reasons = dataplane.read_reasons();
  for (uint32_t r = 0; r < reasons.size(); r++)
    out["reasons"].push_back({{"reason", reason_name(r)},
                              {"verdict", reason_verdict(r)},
                              {"packets", reasons[r].packets},
                              {"bytes", reasons[r].bytes}});
  return out;
}

namespace {

nlohmann::json optional_number(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json skew_json(const std::vector<VipView>& vips, const std::vector<VipSkew>& report,
                         const SkewSettings& settings) {
  using nlohmann::json;
  json out = {{"window_seconds", settings.window.count()},
              {"min_new_flows", settings.min_new_flows},
              {"z_min", settings.z_min},
              {"threshold", settings.threshold},
              {"hold_seconds", settings.hold.count()},
              {"vips", json::array()}};
  for (const auto& r : report) {
    const VipView* vip = nullptr;
    for (const auto& v : vips)
      if (v.id == r.id) vip = &v;
    if (!vip) continue;
    const double seconds = r.window_seconds > 0 ? r.window_seconds : 1.0;
    json backends = json::array();
    for (const auto& b : r.backends) {
      const BackendView* view = nullptr;
      for (const auto& v : vip->backends)
        if (v.id == b.id) view = &v;
      if (!view) continue;
      backends.push_back(
          {{"address", b.address.str()},
           {"weight", view->weight},
           {"health", health_name(view->health)},
           {"drained", view->drained},
           {"takes_new_flows", view->takes_new_flows},
           {"window",
            {{"new_flows", b.window.new_flows},
             {"packets", b.window.packets},
             {"bytes", b.window.bytes}}},
           {"pps", static_cast<double>(b.window.packets) / seconds},
           {"expected_share", b.expected_share},
           {"observed_share",
            {{"new_flows", b.observed_new_flows},
             {"packets", b.observed_packets},
             {"bytes", b.observed_bytes}}},
           {"skew",
            {{"new_flows", optional_number(b.skew_new_flows)},
             {"packets", optional_number(b.skew_packets)},
             {"bytes", optional_number(b.skew_bytes)}}},
           {"z", b.z},
           {"significant", b.significant},
           {"skewed_seconds", b.skewed_for ? json(b.skewed_for->count()) : json(nullptr)},
           {"ring_share", b.ring_share},
           {"ring_skew", optional_number(b.ring_skew)}});
    }
    out["vips"].push_back({{"vip", r.key.str()},
                           {"window_seconds", r.window_seconds},
                           {"window",
                            {{"new_flows", r.window.new_flows},
                             {"packets", r.window.packets},
                             {"bytes", r.window.bytes}}},
                           {"pps", static_cast<double>(r.window.packets) / seconds},
                           {"confident", r.confident},
                           {"skew", optional_number(r.skew)},
                           {"ring_foreign_share", r.ring_foreign_share},
                           {"backends", backends}});
  }
  return out;
}

}  // namespace ballast
