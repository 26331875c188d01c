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
#include <map>
#include <memory>
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
  ForwardMode mode;
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

  // Follows the interfaces (MTU, MAC, addresses: the egress slots), the
  // kernel's routes and neighbour table: each backend's next
  // hop (a route change moves it), MACs of backends that have none
  // (soliciting the kernel for the missing ones) and changed MACs; rewrites
  // what changed.
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

  // The balancer interface (egress slot 0: MAC, MTU, outer sources).
  // apply() writes the slot, and refuses an encapsulating VIP with a
  // backend of a family that has no outer source (no address on the
  // interface and no encap prefix). Call before the first apply().
  void set_interface(const InterfaceFacts& facts) { interface_ = facts; }
  // The balancer's interface was deleted and created again under its name,
  // with index @ifindex: egress slot 0 and every next hop on the old index
  // follow it (MACs learnt stay until the neighbour table says otherwise).
  // Returns what changed, for the change log.
  std::vector<std::string> move_interface(int ifindex);

  const Config& desired() const { return desired_; }
  std::vector<VipView> view() const;

 private:
  // Where a backend's frames go: out of @ifindex, to the MAC of @address
  // (the backend itself on-link, else the gateway or configured router).
  struct NextHop {
    int ifindex = 0;
    IpAddress address;
    bool operator==(const NextHop&) const = default;
  };
  struct LiveBackend {
    uint32_t id;
    BackendConfig config;
    NextHop hop;
    std::optional<MacAddress> mac;  // the next hop's
    Health health = Health::unknown;
    bool drained = false;
  };
  // What a VIP's Maglev table is built from, in order: equal inputs build
  // an equal table, so a change that leaves them alone builds none.
  struct TableInput {
    uint32_t id;
    IpAddress address;
    uint32_t weight;
    bool usable;  // takes new flows (else its entries go to the usable ones)
    bool operator==(const TableInput&) const = default;
  };
  struct LiveVip {
    uint32_t id;
    VipConfig config;
    std::vector<LiveBackend> backends;
    // As installed; null before the first install. Shared: copying the
    // state (the next generation in apply(), plan()'s copy) copies no table.
    std::shared_ptr<const std::vector<uint32_t>> table;
    std::vector<TableInput> table_inputs;  // empty: unknown (adopted), build
    std::map<uint32_t, uint32_t> entries;  // backend id -> its entries in table
  };

  BalancerState(const BalancerState& other, DataPlane& dataplane);

  static bool takes_new_flows(const LiveBackend& b, bool failing_open);
  // The vips map value: table id and forwarding-mode flags.
  static ballast_vip_info vip_info(const LiveVip& vip);
  // The port-0 entry of a VIP with `fragments: true` (docs/dataplane.md).
  static ballast_vip_key fragment_key(const VipConfig& vip);
  static ballast_vip_info fragment_info(const LiveVip& vip);
  // Writes a VIP's vips entries whose value differs from @old's (all when
  // @old is null), and removes its fragment entry when it no longer has one.
  void put_vip_entries(const LiveVip& vip, const LiveVip* old);
  // The egress slot for interface @facts under @desired's encap settings.
  static ballast_egress egress_slot(const InterfaceFacts& facts, const Config& desired);
  // The next hop of @backend of a VIP in @mode, from the kernel's routes.
  // @problem: set (and the backend's own address on our interface returned)
  // when a dsr backend is not on the balancer's segment.
  NextHop next_hop(ForwardMode mode, const IpAddress& backend, const Config& desired,
                   std::string* problem) const;
  // The egress id of interface @ifindex, allocating and writing a slot for
  // an interface not seen before. Throws Error when all are taken.
  uint32_t egress_id(int ifindex, const Config& desired);
  // Rewrites every egress slot whose value differs from @desired and the
  // interfaces as they are now; returns how many it rewrote.
  size_t sync_egress(const Config& desired);
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
  InterfaceFacts interface_;
  std::map<int, uint32_t> egress_ids_;                 // ifindex -> egress id (0: ours)
  std::map<uint32_t, ballast_egress> written_egress_;  // each slot as last written
};

}  // namespace ballast
