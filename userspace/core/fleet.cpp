#include "fleet.h"

#include <map>

namespace ballast {
namespace {

struct Side {
  uint32_t weight = 0;
  bool usable = false;
  double share = 0;
};

std::map<IpAddress, Side> sides_of(const api::VipEntry& v) {
  uint64_t total = 0;
  for (const auto& b : v.backends) total += b.table_entries;
  std::map<IpAddress, Side> out;
  for (const auto& b : v.backends)
    out[b.address] = {
        b.weight, b.takes_new_flows,
        total ? static_cast<double>(b.table_entries) / static_cast<double>(total) : 0};
  return out;
}

FleetVipDiff compare(const VipKey& key, const api::VipEntry* here, const api::VipEntry* there) {
  FleetVipDiff d;
  d.vip = key;
  d.here = here != nullptr;
  d.there = there != nullptr;
  if (here) {
    d.digest_here = here->table_digest;
    d.seed_here = here->hash_seed;
    d.format_here = here->table_format;
  }
  if (there) {
    d.digest_there = there->table_digest;
    d.seed_there = there->hash_seed;
    d.format_there = there->table_format;
  }
  std::map<IpAddress, FleetBackendDiff> rows;
  // One side's backends into their rows' fields for that side.
  auto fill = [&rows](const api::VipEntry* side, std::optional<uint32_t> FleetBackendDiff::*weight,
                      bool FleetBackendDiff::*usable, double FleetBackendDiff::*share) {
    if (!side) return;
    for (const auto& [address, s] : sides_of(*side)) {
      auto& r = rows[address];
      r.address = address;
      r.*weight = s.weight;
      r.*usable = s.usable;
      r.*share = s.share;
    }
  };
  fill(here, &FleetBackendDiff::weight_here, &FleetBackendDiff::usable_here,
       &FleetBackendDiff::share_here);
  fill(there, &FleetBackendDiff::weight_there, &FleetBackendDiff::usable_there,
       &FleetBackendDiff::share_there);
  for (const auto& [address, r] : rows)
    if (r.weight_here != r.weight_there || r.usable_here != r.usable_there ||
        r.share_here != r.share_there)
      d.backends.push_back(r);
  return d;
}

}  // namespace

std::vector<FleetVipDiff> fleet_diff(const std::vector<api::VipEntry>& here,
                                     const std::vector<api::VipEntry>& there) {
  std::map<VipKey, const api::VipEntry*> theirs;
  for (const auto& v : there) theirs[v.vip] = &v;
  std::vector<FleetVipDiff> out;
  for (const auto& v : here) {
    const auto it = theirs.find(v.vip);
    out.push_back(compare(v.vip, &v, it == theirs.end() ? nullptr : it->second));
    if (it != theirs.end()) theirs.erase(it);
  }
  for (const auto& v : there)
    if (theirs.count(v.vip)) out.push_back(compare(v.vip, nullptr, &v));
  return out;
}

}  // namespace ballast
