// balancer_state.h: the live state: which VIPs and backends are in the data
// plane, under which ids, with which MACs and Maglev tables. apply() is the
// one path for every change (config file, CLI edit): it turns the desired
// config into ordered map writes, so a packet never sees a VIP without a
// table or a table entry pointing at a missing backend.
//
// No libbpf here: writes go through DataPlane, MACs through NeighborSource,
// so this is unit-testable with fakes.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "dataplane.h"
#include "neighbor.h"

namespace ballast {

struct BackendView {
  uint32_t id;
  IpAddress address;
  uint32_t weight;
  std::optional<MacAddress> mac;  // nullopt: not resolved yet, not in the table
  uint32_t table_entries;         // its entries in the live Maglev table
};

struct VipView {
  uint32_t id;
  VipKey key;
  std::vector<BackendView> backends;
};

class BalancerState {
 public:
  BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex);

  // Makes the data plane match @desired (already validated: require_valid).
  // Returns the changes, one human-readable line each.
  std::vector<std::string> apply(const Config& desired);

  // Looks up MACs of backends that have none (soliciting the kernel for the
  // missing ones) and notices changed MACs; rewrites what changed. Returns
  // the changes.
  std::vector<std::string> refresh_neighbors();

  // Backends still without a MAC, as "VIP backend" strings.
  std::vector<std::string> unresolved() const;

  const Config& desired() const { return desired_; }
  std::vector<VipView> view() const;

 private:
  struct LiveBackend {
    uint32_t id;
    BackendConfig config;
    std::optional<MacAddress> mac;
  };
  struct LiveVip {
    uint32_t id;
    VipConfig config;
    std::vector<LiveBackend> backends;
    std::vector<uint32_t> table;  // as installed; empty before the first install
  };

  uint32_t allocate_vip_id();
  uint32_t allocate_backend_id();
  void write_backend(const LiveVip& vip, const LiveBackend& b);
  void deactivate_backend(uint32_t id);
  // Rebuilds the VIP's table from its usable backends; installs it when it
  // differs from the live one.
  void sync_table(LiveVip& vip);

  DataPlane& dataplane_;
  NeighborSource& neighbors_;
  int ifindex_;
  Config desired_;
  std::vector<LiveVip> vips_;
  std::set<uint32_t> used_vip_ids_;
  std::set<uint32_t> used_backend_ids_;
  uint32_t next_backend_id_ = 0;
};

}  // namespace ballast
