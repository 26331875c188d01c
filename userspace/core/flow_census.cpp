#include "flow_census.h"

#include <algorithm>

namespace ballast {

std::optional<FlowCensus::Clock::duration> FlowCensus::next_step_in(Clock::time_point now) const {
  if (current_) return Clock::duration::zero();  // finish what was started
  if (asked_ == Clock::time_point{} || now - asked_ >= kDemandLasts) return std::nullopt;
  if (!done_) return Clock::duration::zero();
  return std::max(Clock::duration::zero(), done_->started + kRewalkAfter - now);
}

std::optional<FlowCensus::Answer> FlowCensus::flows(uint32_t backend, uint64_t idle_ns,
                                                    Clock::time_point now) {
  asked_ = now;
  if (!done_) return std::nullopt;
  Answer out;
  out.age = now - done_->started;
  const auto it = done_->backends.find(backend);
  if (it == done_->backends.end()) return out;
  // The data plane refreshes last_seen_ns at most every
  // BALLAST_CONN_TOUCH_NS: a flow may be that much younger than it looks,
  // so count it active for that much longer (err on waiting too long).
  const uint64_t window = idle_ns + BALLAST_CONN_TOUCH_NS;
  const uint64_t since = done_->started_ns > window ? done_->started_ns - window : 0;
  if (it->second.newest_ns < since) return out;
  const uint64_t window_s = (window + 999'999'999) / 1'000'000'000;
  for (size_t b = 0; b < it->second.by_age.size(); b++) {
    out.flows += it->second.by_age[b];
    if (b < kAgeBoundsS.size() && kAgeBoundsS[b] >= window_s) break;  // the bucket holding idle
  }
  return out;
}

void FlowCensus::step(DataPlane& dataplane, Clock::time_point now) {
  if (!current_) {
    current_ = Walk{now, dataplane.flow_clock_ns(), {}};
    cursor_ = FlowWalk{};
  }
  Walk& walk = *current_;
  dataplane.walk_flows(cursor_, kEntriesPerStep, [&](uint32_t backend, uint64_t last_seen_ns) {
    Backend& b = walk.backends[backend];
    b.newest_ns = std::max(b.newest_ns, last_seen_ns);
    const uint64_t age_s =
        walk.started_ns > last_seen_ns ? (walk.started_ns - last_seen_ns) / 1'000'000'000 : 0;
    const size_t bucket =
        std::upper_bound(kAgeBoundsS.begin(), kAgeBoundsS.end(), age_s) - kAgeBoundsS.begin();
    b.by_age[bucket]++;
  });
  if (!cursor_.done) return;
  done_ = std::move(current_);
  current_.reset();
}

}  // namespace ballast
