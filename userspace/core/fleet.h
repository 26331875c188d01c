// fleet.h: this balancer's tables against another's, VIP by VIP, for
// `ballast fleet diff`. Pure: both sides are `vip.list` replies (the other
// one read from a file its `ballast vip list -o json` wrote), so that an
// operator can see which backends' shares differ and by how much when the
// fleet digests of a VIP disagree (docs/fleet.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api_messages.h"

namespace ballast {

struct FleetBackendDiff {
  IpAddress address;
  // nullopt: the backend is not in that side's VIP.
  std::optional<uint32_t> weight_here, weight_there;
  bool usable_here = false, usable_there = false;  // takes new flows
  // Its share of the VIP's live table (entries / all entries).
  double share_here = 0, share_there = 0;
  bool operator==(const FleetBackendDiff&) const = default;
};

struct FleetVipDiff {
  VipKey vip;
  bool here = false, there = false;  // configured on each side
  std::string digest_here, digest_there;
  uint32_t seed_here = 0, seed_there = 0, format_here = 0, format_there = 0;
  // Only the backends whose weight, usability or table share differ.
  std::vector<FleetBackendDiff> backends;
  // The tables agree: same digest (so the same backend for every flow).
  bool same() const { return here && there && digest_here == digest_there; }
  bool operator==(const FleetVipDiff&) const = default;
};

// Every VIP of either side, in @here's order then the ones only @there has.
std::vector<FleetVipDiff> fleet_diff(const std::vector<api::VipEntry>& here,
                                     const std::vector<api::VipEntry>& there);

}  // namespace ballast
