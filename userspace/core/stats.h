// stats.h: counters joined with the live state into what `ballast stats`
// prints: per VIP and per backend packets, bytes, new flows, expected share
// (weight over the weight of the VIP's backends that take new flows:
// up, undrained, resolved), observed share (of new flows) and
// skew (observed / expected); per reason packets and bytes. Pure: the
// counters come in through DataPlane.
#pragma once

#include <string_view>

#include "api_messages.h"
#include "balancer_state.h"
#include "dataplane.h"
#include "skew.h"

namespace ballast {

api::StatsReply stats_reply(const std::vector<VipView>& vips, DataPlane& dataplane);

// What `ballast skew` and `ballast top` show: the settings, and per VIP and
// backend the window's counts, shares, skew, z-score, how long skewed, ring
// share, with weight, health and drain state. @report is
// SkewTracker::report(@vips).
api::SkewReply skew_reply(const std::vector<VipView>& vips, const std::vector<VipSkew>& report,
                          const SkewSettings& settings);

// Name and verdict ("tx", "pass", "drop") of a reason, from BALLAST_REASONS.
std::string_view reason_name(uint32_t reason);
std::string_view reason_verdict(uint32_t reason);

}  // namespace ballast
