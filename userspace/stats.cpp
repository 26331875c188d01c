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

}  // namespace ballast
