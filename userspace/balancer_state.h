// balancer_state.h: the live state: which VIPs and backends are in the data
// plane, under which ids, with which MACs, health, drains and Maglev tables.
// apply() is the one path for every config change (file, reload, CLI edit):
// it turns the desired config into ordered map writes, so a packet never
// sees a VIP without a table or a table entry pointing at a missing backend.
// Health transitions and drains go through the same table rebuild.
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
#include "health.h"
#include "neighbor.h"

namespace ballast {

struct BackendView {
  uint32_t id;
  IpAddress address;
  uint32_t weight;
  std::optional<MacAddress> mac;  // nullopt: not resolved yet, not in the table
  Health health;
  bool drained;
  bool takes_new_flows;    // in the Maglev table's candidate set
  uint32_t table_entries;  // its entries in the live Maglev table
  CheckSpec check;
};

struct VipView {
  uint32_t id;
  VipKey key;
  bool fail_open;
  bool failing_open;  // no backend is up: sending to the down ones
  std::vector<BackendView> backends;
};

class BalancerState {
 public:
  BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex);

  // Takes over what the pinned maps hold (a restarted daemon): ids, MACs,
  // health and drains, tables and counters stay as they are. Call once,
  // before the first apply(); @desired supplies the weights and checks the
  // maps do not record. Returns one line per adopted VIP.
  std::vector<std::string> adopt(const LiveSnapshot& live, const Config& desired);

  // Makes the data plane match @desired (already validated: require_valid).
  // Returns the changes, one human-readable line each.
  std::vector<std::string> apply(const Config& desired);
  // What apply(@desired) would change, changing nothing.
  std::vector<std::string> plan(const Config& desired) const;

  // A health-check result for backend slot @id; returns the change, if any.
  std::vector<std::string> set_health(uint32_t id, Health health, const std::string& detail);
  // Drains (no new flows, established ones kept) or undrains a backend.
  // Throws Error for an unknown VIP or backend.
  std::vector<std::string> set_drained(const VipKey& vip, const IpAddress& backend, bool drained);
  // Backend slot id of (@vip, @backend); throws Error when there is none.
  uint32_t backend_id(const VipKey& vip, const IpAddress& backend) const;

  // Looks up MACs of backends that have none (soliciting the kernel for the
  // missing ones) and notices changed MACs; rewrites what changed.
  std::vector<std::string> refresh_neighbors();

  // Backends still without a MAC, as "VIP backend" strings.
  std::vector<std::string> unresolved() const;
  // Every backend with its check, keyed by backend slot id.
  std::map<uint64_t, HealthTarget> health_targets() const;

  // What the maps hold if nobody else wrote them: every VIP with its id,
  // every backend slot as last written, every table as installed. The
  // audit compares it with DataPlane::snapshot() to find drift.
  LiveSnapshot expected() const;
  // Rewrites every slot, table and VIP from this state whatever the maps
  // hold now (@live, from DataPlane::snapshot()), and clears VIPs and slots
  // the state does not know: the repair for drift (`reconcile: true`).
  // Order: active slots, tables, inactive slots, VIPs; strays last.
  // Returns one line per write.
  std::vector<std::string> rewrite_all(const LiveSnapshot& live);

  // Whether the program has an IPv4 outer source for ipip (the
  // interface's address); apply() refuses ipip VIPs without one.
  void set_encap_source_v4(bool has) { has_encap_source_v4_ = has; }

  const Config& desired() const { return desired_; }
  std::vector<VipView> view() const;

 private:
  struct LiveBackend {
    uint32_t id;
    BackendConfig config;
    std::optional<MacAddress> mac;
    Health health = Health::unknown;
    bool drained = false;
  };
  struct LiveVip {
    uint32_t id;
    VipConfig config;
    std::vector<LiveBackend> backends;
    std::vector<uint32_t> table;  // as installed; empty before the first install
  };

  BalancerState(const BalancerState& other, DataPlane& dataplane);

  static bool takes_new_flows(const LiveBackend& b, bool failing_open);
  // The vips map value: table id and forwarding-mode flags.
  static ballast_vip_info vip_info(const LiveVip& vip);
  static bool failing_open(const LiveVip& vip);
  uint32_t allocate_vip_id();
  uint32_t allocate_backend_id();
  void write_backend(const LiveVip& vip, const LiveBackend& b);
  void free_backend(uint32_t id);
  // Brings the VIP's table and its backends' slot flags in line with their
  // health, drains and weights: new table first when backends leave it,
  // slots first when they join.
  void sync_vip(LiveVip& vip);
  LiveBackend* find_backend(uint32_t id, LiveVip** vip_out);

  DataPlane& dataplane_;
  NeighborSource& neighbors_;
  int ifindex_;
  Config desired_;
  std::vector<LiveVip> vips_;
  std::set<uint32_t> used_vip_ids_;
  std::set<uint32_t> used_backend_ids_;
  uint32_t next_backend_id_ = 0;
  // Each slot as last written, so sync_vip writes only what changed.
  std::map<uint32_t, ballast_backend> written_slots_;
  bool dry_run_ = false;  // plan(): never solicit the kernel
  bool has_encap_source_v4_ = false;
};

}  // namespace ballast
