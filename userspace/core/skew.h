// skew.h: each backend's observed share of its VIP's traffic over a sliding
// window, against the share its weight gives it. Skew = observed / expected:
// 1 is exactly as configured, 3 is three times its share. A VIP's skew is its
// largest backend skew of new flows.
//
// Small samples must not cry wolf. A window is *confident* when its VIP saw
// at least min_new_flows new flows; a backend's deviation is *significant*
// when, in addition, its new-flow count is at least z_min binomial standard
// deviations from what its expected share predicts
// (z = (k - n p) / sqrt(n p (1 - p)), k of the VIP's n new flows, share p).
// A backend is *skewed* when its new-flow skew is above `threshold` and
// significant; audits and alerts report it once it stayed skewed for `hold`.
//
// Packet and byte shares are reported beside, with the same expected share:
// they tell long-lived flows apart from many short ones, but packets of one
// flow are not independent samples, so confidence is judged on new flows.
//
// Ring share: the backend's share of the VIP's live Maglev table entries,
// and ring skew against the expected share: a wrong table shows before any
// traffic does.
//
// Pure: counters come in through DataPlane, state through VipView, time
// through the caller; unit tests drive it with fakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "balancer_state.h"
#include "config.h"
#include "dataplane.h"
#include "health_model.h"

namespace ballast {

struct TrafficCounts {
  uint64_t packets = 0, bytes = 0, new_flows = 0;
  bool operator==(const TrafficCounts&) const = default;
};

struct BackendSkew {
  uint32_t id = 0;
  IpAddress address;
  double expected_share = 0;  // weight / weight of the VIP's backends taking new flows; 0 if none
  TrafficCounts window;       // counted in the window
  // Of the VIP's counts in the window (summed over its backends); 0 when
  // the VIP counted nothing.
  double observed_new_flows = 0, observed_packets = 0, observed_bytes = 0;
  // observed / expected; nullopt when nothing is expected of it or the VIP
  // counted nothing of that measure in the window.
  std::optional<double> skew_new_flows, skew_packets, skew_bytes;
  double z = 0;  // new flows, binomial z-score against the expected share
  bool significant = false;
  // Skewed (above threshold, significant) since this long; nullopt if not.
  std::optional<std::chrono::seconds> skewed_for;
  double ring_share = 0;  // of the VIP's live table entries
  std::optional<double> ring_skew;
};

struct VipSkew {
  uint32_t id = 0;
  VipKey key;
  double window_seconds = 0;  // what the counts span: up to the setting
  TrafficCounts window;
  bool confident = false;  // window.new_flows >= min_new_flows
  // Largest backend new-flow skew; nullopt when no backend has an expected share.
  std::optional<double> skew;
  // Share of the table's entries that name none of the VIP's backends
  // (empty slots, or slots of another VIP's backends); 1 with no table.
  double ring_foreign_share = 0;
  std::vector<BackendSkew> backends;
};

class SkewTracker {
 public:
  explicit SkewTracker(SkewSettings settings = {}) : settings_(settings) {}

  // Reads every backend's counters at @now and keeps them for the window;
  // updates how long each backend has been skewed. Call about once a second.
  void record(Clock::time_point now, const std::vector<VipView>& vips, DataPlane& dataplane);
  // The window ending at the last record(), for @vips as they are now.
  // Ring shares come from @live_tables' maps as the program sees them now
  // (a table edited behind the daemon's back shows); without it, from the
  // tables the daemon installed (VipView's table_entries).
  std::vector<VipSkew> report(const std::vector<VipView>& vips,
                              DataPlane* live_tables = nullptr) const;

  const SkewSettings& settings() const { return settings_; }
  // A new window length or rule; the kept samples stay.
  void set_settings(const SkewSettings& settings) { settings_ = settings; }

 private:
  struct Sample {
    Clock::time_point time;
    // backend slot id -> (address, counters): a slot reused by another
    // backend does not mix their counts.
    std::map<uint32_t, std::pair<IpAddress, TrafficCounts>> backends;
  };
  // The sample the window starts at: the newest one at least a window
  // older than the last, else the oldest.
  const Sample* window_start() const;
  std::vector<VipSkew> compute(const std::vector<VipView>& vips) const;

  SkewSettings settings_;
  std::deque<Sample> samples_;
  std::map<uint32_t, Clock::time_point> skewed_since_;  // backend slot id
};

}  // namespace ballast
