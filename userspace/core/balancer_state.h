// balancer_state.h: the live state: which VIPs and backends are in the data
// plane, under which ids, with which MACs, health, drains and Maglev tables,
// and the two halves of every change to it:
//
//   plan(request)   what the request would change, as typed changes plus
//                   the next generation of what it touches
//                   (balancer_plan.cpp). Pure: it reads the host (routes,
//                   the neighbour table, interfaces) but writes no map and
//                   solicits nothing, so a dry run is a plan that is never
//                   executed. Bad requests throw here.
//   execute(plan)   the map writes (balancer_state.cpp), in the order that
//                   keeps packets safe: a VIP is published only after its
//                   table, a table names only active slots, a slot is
//                   deactivated only once no table names it.
//
// Requests: a whole desired config (file, reload), one VIP (CLI edits), a drain, a
// health-check result, the host moving under the backends (routes,
// neighbours, interfaces), the interface re-created, and the repair of
// drifted maps. change_pipeline.h puts the audit and the record between and
// after the two; nothing else changes the state.
//
// No libbpf here: writes go through DataPlane, the host through NeighborSource
// (host_facts.h), so this is unit-testable with fakes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "audit_scope.h"
#include "change.h"
#include "config.h"
#include "dataplane.h"
#include "health_model.h"
#include "host_facts.h"

namespace ballast {

// BackendView, VipView: audit_scope.h.

// What a change asks for.
struct ConfigRequest {  // the whole desired config, already validated (require_valid)
  Config desired;
};
// One VIP's whole config (its backends, weights, checks, options), or its
// removal (nullopt): what a CLI edit asks for. Checked here as the whole
// config would be (the VIP's own rules; across VIPs the count, the
// backends in all, one VIP taking an address's fragments), so the config
// stays valid whole, at a cost that does not grow with the number of VIPs.
struct VipRequest {
  VipKey key;
  std::optional<VipConfig> vip;
};
struct DrainRequest {  // no new flows (established ones kept), or new flows again
  VipKey vip;
  IpAddress backend;
  bool drained = true;
};
struct HealthRequest {  // a health-check result for backend slot @backend_id
  uint32_t backend_id = 0;
  Health health = Health::unknown;
  std::string detail;
};
// Follow the host: interfaces' MTU, MAC and addresses (egress slots), the
// kernel's routes (each backend's next hop) and neighbour table (MACs;
// the missing ones get solicited when executed).
struct HostRequest {};
// The balancer's interface was deleted and created again under its name,
// with index facts.ifindex: egress slot 0 and every next hop on the old
// index follow it (MACs learnt stay until the neighbour table says
// otherwise).
struct InterfaceRequest {
  InterfaceFacts facts;
};
// Rewrite every slot, table and VIP that @live (DataPlane::snapshot())
// holds differently from expected(), and clear what the state does not
// know: the repair for drift (`reconcile: true`).
struct RepairRequest {
  LiveSnapshot live;
};
using ChangeRequest = std::variant<ConfigRequest, VipRequest, DrainRequest, HealthRequest,
                                   HostRequest, InterfaceRequest, RepairRequest>;

class BalancerState {
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
    // As installed; null before the first install. Shared: a plan's next
    // generation copies no table.
    TablePtr table;
    std::vector<TableInput> table_inputs;  // empty: unknown (adopted), build
    uint32_t table_seed = 0;               // the fleet hash_seed it was built with
    uint64_t table_digest = 0;             // maglev::table_digest of table
    std::map<uint32_t, uint32_t> entries;  // backend id -> its entries in table
  };

 public:
  // What a request would change (plan()), ready to execute(). Valid for
  // the state generation it was made from: execute() refuses it once any
  // other change was executed in between.
  class Plan {
   public:
    const std::vector<Change>& changes() const { return changes_; }
    // Whether the pre-apply audit judges it (a config, a VIP or a drain:
    // what an operator asked); the others report what the world did.
    bool operator_change() const {
      return kind_ == Kind::config || kind_ == Kind::vip || kind_ == Kind::drain;
    }

   private:
    friend class BalancerState;
    enum class Kind { config, vip, drain, health, host, interface, repair };
    Kind kind_ = Kind::config;
    uint64_t generation_ = 0;
    std::vector<Change> changes_;
    std::optional<Config> desired_;  // config plans
    std::optional<VipKey> vip_key_;  // vip and drain plans: the VIP
    // config: the whole next generation, in the config's order; vip: the
    // VIP as it will be (none: removed); others: the VIPs they replace (by
    // id).
    std::vector<LiveVip> vips_;
    std::vector<std::pair<int, IpAddress>> solicit_;  // (ifindex, address): no MAC yet
    std::map<uint32_t, ballast_egress> egress_;       // egress slots to write, by id
    std::map<int, uint32_t> new_egress_ids_;          // ifindex -> egress id allocated
    std::vector<uint32_t> new_vip_ids_, new_backend_ids_;
    uint32_t next_backend_id_ = 0;
    InterfaceFacts interface_;  // interface plans
  };

  BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex);
  ~BalancerState();

  // Takes over what the pinned maps hold (a restarted daemon): ids, MACs,
  // health and drains, tables and counters stay as they are. Call once,
  // before the first change; @desired supplies the weights and checks the
  // maps do not record. Returns one VipAdopted per VIP.
  std::vector<Change> adopt(const LiveSnapshot& live, const Config& desired);

  // See the top of this file. plan() throws Error for a request that
  // cannot be done (an unknown VIP or backend, an encapsulating VIP with
  // no outer source, a dsr backend off the segment, no free id).
  Plan plan(const ChangeRequest& request) const;
  // Writes @plan and makes it the live state; returns its changes. Throws
  // Error, writing nothing, when the plan is stale.
  std::vector<Change> execute(Plan plan);
  // What the pre-apply audit of @plan looks at, now (@after false) or once
  // executed: every VIP for a whole config; for one VIP or a drain, that
  // VIP and those whose backends are at its address.
  ConfigAuditScope audit_scope(const Plan& plan, bool after) const;

  // Backend slot id of (@vip, @backend); throws Error when there is none.
  uint32_t backend_id(const VipKey& vip, const IpAddress& backend) const;
  // Backends still without a MAC, as "VIP backend" strings.
  std::vector<std::string> unresolved() const;
  // Every backend with its check, keyed by backend slot id.
  std::map<uint64_t, HealthTarget> health_targets() const;

  // What the maps hold if nobody else wrote them: every VIP with its id,
  // every backend slot as last written, every table as installed. The
  // audit compares it with DataPlane::snapshot() to find drift.
  LiveSnapshot expected() const;

  // The balancer interface (egress slot 0: MAC, MTU, outer sources).
  // A config plan refuses an encapsulating VIP with a backend of a family
  // that has no outer source (no address on the interface and no encap
  // prefix). Call before the first change.
  void set_interface(const InterfaceFacts& facts) { interface_ = facts; }

  const Config& desired() const { return desired_; }
  // The VIP @key's config; null when there is none. No scan.
  const VipConfig* desired_vip(const VipKey& key) const;
  std::vector<VipView> view() const;

 private:
  // view() as it will be once @plan is executed.
  std::vector<VipView> view_after(const Plan& plan) const;
  static bool takes_new_flows(const LiveBackend& b, bool failing_open);
  // The VIP's options, as a VipOptionsChanged names them.
  static VipOptions vip_options(const VipConfig& vip) {
    return {vip.mode, vip.gue_port, vip.ignore_source_port, vip.fragments, vip.second_chance};
  }
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
  // The egress id of interface @ifindex in @plan's world: known, allocated
  // by @plan already, or allocated now (its slot added to @plan's writes).
  // Throws Error when all are taken.
  uint32_t plan_egress_id(int ifindex, const Config& desired, Plan& plan) const;
  // The egress slots whose value @desired and the interfaces as they are
  // now would change, by id.
  std::map<uint32_t, ballast_egress> changed_egress(const Config& desired) const;
  static bool failing_open(const LiveVip& vip);
  uint32_t plan_vip_id(Plan& plan) const;
  uint32_t plan_backend_id(Plan& plan) const;
  void free_backend(uint32_t id);

  // Where a plan's new backends' MACs come from: each interface's
  // neighbour table read once per plan; a missing one is to be solicited
  // when the plan executes.
  class MacLookup;
  // Refuses (Error) an encapsulating VIP with a backend of a family that
  // has no outer source.
  void check_outer_sources(const VipConfig& vip, const Config& desired) const;
  // The next generation of one VIP of @desired (@old: as it is live, or
  // null when new), its changes appended to @plan's.
  LiveVip plan_vip_config(const VipConfig& cfg, const LiveVip* old, const Config& desired,
                          const std::function<NextHop(const BackendConfig&)>& hop_of,
                          MacLookup& macs, Plan& plan) const;
  // Takes what @plan allocated: egress slots, backend and VIP ids.
  void commit_allocations(const Plan& plan);
  // Unpublishes a VIP, then its table and slots.
  void remove_vip(const LiveVip& vip);

  // plan() for each request.
  void plan_config(const Config& desired, Plan& plan) const;
  void plan_vip(const VipRequest& request, Plan& plan) const;
  void plan_drain(const DrainRequest& request, Plan& plan) const;
  void plan_health(const HealthRequest& request, Plan& plan) const;
  void plan_host(Plan& plan) const;
  void plan_interface(const InterfaceRequest& request, Plan& plan) const;
  void plan_repair(const LiveSnapshot& live, Plan& plan) const;
  // execute() for each kind.
  void execute_config(Plan& plan);
  void execute_vip(Plan& plan);
  void execute_vips(Plan& plan);
  void execute_interface(Plan& plan);
  void execute_repair(Plan& plan);
  static VipView view_of(const LiveVip& vip);
  // Brings the VIP's table and its backends' slot flags in line with their
  // health, drains and weights: new table first when backends leave it,
  // slots first when they join.
  void sync_vip(LiveVip& vip, uint32_t seed);
  // vip.entries and vip.table_digest from vip.table and its backends.
  static void count_table(LiveVip& vip);

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
  uint64_t generation_ = 0;  // counts executed plans (Plan::generation_)
  // Indexes over vips_ (and desired_.vips, in the same order), so a change
  // to one VIP looks up what it needs instead of scanning every VIP.
  std::map<VipKey, size_t> vip_pos_;
  std::map<IpAddress, std::set<VipKey>> vips_at_;     // VIP address -> the VIPs there
  std::map<IpAddress, std::set<VipKey>> backend_of_;  // backend address -> VIPs listing it
  size_t total_backends_ = 0;
  std::map<uint32_t, VipKey> vip_of_slot_;  // backend slot id -> its VIP
  void reindex();
  void index_vip(const VipConfig& vip, bool add);
  void index_slots(const LiveVip& vip, bool add);
  InterfaceFacts interface_;
  // VIPs whose previous table the data plane may hold (second chance).
  std::set<uint32_t> previous_kept_;
  std::map<int, uint32_t> egress_ids_;                 // ifindex -> egress id (0: ours)
  std::map<uint32_t, ballast_egress> written_egress_;  // each slot as last written
};

}  // namespace ballast
