// fake_maps.h: pieces the tests' fake data planes share.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "dataplane.h"

namespace ballast {

// DataPlane::live_table() over a fake's tables (by VIP id): a copy of
// the entries, as a map swapped in by someone else would read.
inline std::optional<LiveTable> live_table_in(const std::map<uint32_t, std::vector<uint32_t>>& tables,
                                              uint32_t vip_id) {
  auto it = tables.find(vip_id);
  if (it == tables.end()) return std::nullopt;
  return LiveTable{0, std::make_shared<const std::vector<uint32_t>>(it->second)};
}

}  // namespace ballast
