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

api::StatsReply stats_reply(const std::vector<VipView>& vips, DataPlane& dataplane) {
  api::StatsReply out;
  for (const auto& vip : vips) {
    const auto vc = dataplane.read_counters(CounterMap::vip, vip.id);
    const double usable = vip.usable_weight();
    api::StatsReply::Vip v{.vip = vip.key,
                           .mode = vip.mode,
                           .counts = {vc.packets, vc.bytes, vc.new_flows},
                           .pickups = dataplane.read_fleet_counters(vip.id).pickups,
                           .second_chance = dataplane.read_fleet_counters(vip.id).second_chance,
                           .backends = {}};
    for (const auto& b : vip.backends) {
      const auto bc = dataplane.read_counters(CounterMap::backend, b.id);
      const double expected = VipView::expected_share(b, usable);
      const double observed = vc.new_flows ? double(bc.new_flows) / vc.new_flows : 0.0;
      v.backends.push_back({.address = b.address,
                            .weight = b.weight,
                            .resolved = b.mac.has_value(),
                            .health = b.health,
                            .drained = b.drained,
                            .counts = {bc.packets, bc.bytes, bc.new_flows},
                            .expected_share = expected,
                            .observed_share = observed,
                            // Undefined when nothing is expected.
                            .skew = expected > 0 ? std::optional(observed / expected)
                                                 : std::nullopt});
    }
    out.vips.push_back(std::move(v));
  }
  const ballast_conn_counters conn = dataplane.read_conn_counters();
  out.conn_table = {.capacity = BALLAST_CONN_TABLE_SIZE,
                    .recorded = conn.recorded,
                    .replaced_embryonic = conn.replaced_embryonic,
                    .replaced_idle = conn.replaced_idle,
                    .unrecorded = conn.unrecorded};
  const auto reasons = dataplane.read_reasons();
  for (uint32_t r = 0; r < reasons.size(); r++)
    out.reasons.push_back({.reason = std::string(reason_name(r)),
                           .verdict = std::string(reason_verdict(r)),
                           .packets = reasons[r].packets,
                           .bytes = reasons[r].bytes});
  return out;
}

api::SkewReply skew_reply(const std::vector<VipView>& vips, const std::vector<VipSkew>& report,
                          const SkewSettings& settings) {
  api::SkewReply out{.settings = settings, .vips = {}};
  for (const auto& r : report) {
    const VipView* vip = nullptr;
    for (const auto& v : vips)
      if (v.id == r.id) vip = &v;
    if (!vip) continue;
    const double seconds = r.window_seconds > 0 ? r.window_seconds : 1.0;
    api::SkewReply::Vip v{.vip = r.key,
                          .window_seconds = r.window_seconds,
                          .window = r.window,
                          .pps = static_cast<double>(r.window.packets) / seconds,
                          .confident = r.confident,
                          .skew = r.skew,
                          .ring_foreign_share = r.ring_foreign_share,
                          .backends = {}};
    for (const auto& b : r.backends) {
      const BackendView* view = nullptr;
      for (const auto& bv : vip->backends)
        if (bv.id == b.id) view = &bv;
      if (!view) continue;
      v.backends.push_back(
          {.address = b.address,
           .weight = view->weight,
           .health = view->health,
           .drained = view->drained,
           .takes_new_flows = view->takes_new_flows,
           .window = b.window,
           .pps = static_cast<double>(b.window.packets) / seconds,
           .expected_share = b.expected_share,
           .observed_share = {b.observed_new_flows, b.observed_packets, b.observed_bytes},
           .skew = {b.skew_new_flows, b.skew_packets, b.skew_bytes},
           .z = b.z,
           .significant = b.significant,
           .skewed_seconds =
               b.skewed_for ? std::optional<int64_t>(b.skewed_for->count()) : std::nullopt,
           .ring_share = b.ring_share,
           .ring_skew = b.ring_skew});
    }
    out.vips.push_back(std::move(v));
  }
  return out;
}

}  // namespace ballast
