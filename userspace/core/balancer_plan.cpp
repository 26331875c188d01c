// balancer_plan.cpp: BalancerState::plan() for every request: what a
// change would do, as typed changes and the next generation of what it
// touches, reading the host but writing nothing (balancer_state.h). The
// writes are balancer_state.cpp's execute().
#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "balancer_state.h"
#include "error.h"

namespace ballast {

uint32_t BalancerState::plan_egress_id(int ifindex, const Config& desired, Plan& plan) const {
  if (ifindex == ifindex_) return 0;
  if (auto it = egress_ids_.find(ifindex); it != egress_ids_.end()) return it->second;
  if (auto it = plan.new_egress_ids_.find(ifindex); it != plan.new_egress_ids_.end())
    return it->second;
  std::set<uint32_t> used{0};
  for (const auto& [ix, id] : egress_ids_) used.insert(id);
  for (const auto& [ix, id] : plan.new_egress_ids_) used.insert(id);
  uint32_t id = 1;
  while (used.count(id)) id++;
  if (id >= BALLAST_MAX_EGRESS)
    throw Error("no free egress slot for interface index " + std::to_string(ifindex) +
                " (at most " + std::to_string(BALLAST_MAX_EGRESS - 1) + " other interfaces)");
  plan.egress_[id] = egress_slot(neighbors_.interface(ifindex), desired);
  plan.new_egress_ids_[ifindex] = id;
  return id;
}

// Lowest free first. Within one plan nothing is freed before it executes,
// so each id it takes is above the last: the search starts there.
uint32_t BalancerState::plan_vip_id(Plan& plan) const {
  const uint32_t from = plan.new_vip_ids_.empty() ? 0 : plan.new_vip_ids_.back() + 1;
  for (uint32_t id = from; id < BALLAST_MAX_VIPS; id++) {
    if (used_vip_ids_.count(id)) continue;
    plan.new_vip_ids_.push_back(id);
    return id;
  }
  throw Error("no free VIP id (at most " + std::to_string(BALLAST_MAX_VIPS) + " VIPs)");
}

// Round robin, not lowest-free: a freed id is reused as late as possible, so
// connection-table entries still naming it have long expired or re-selected.
uint32_t BalancerState::plan_backend_id(Plan& plan) const {
  for (uint32_t n = 0; n < BALLAST_MAX_BACKENDS; n++) {
    const uint32_t id = (plan.next_backend_id_ + n) % BALLAST_MAX_BACKENDS;
    if (used_backend_ids_.count(id) ||
        std::find(plan.new_backend_ids_.begin(), plan.new_backend_ids_.end(), id) !=
            plan.new_backend_ids_.end())
      continue;
    plan.new_backend_ids_.push_back(id);
    plan.next_backend_id_ = (id + 1) % BALLAST_MAX_BACKENDS;
    return id;
  }
  throw Error("no free backend slot (at most " + std::to_string(BALLAST_MAX_BACKENDS) + ")");
}

BalancerState::Plan BalancerState::plan(const ChangeRequest& request) const {
  Plan plan;
  plan.generation_ = generation_;
  plan.next_backend_id_ = next_backend_id_;
  if (const auto* r = std::get_if<ConfigRequest>(&request)) plan_config(r->desired, plan);
  if (const auto* r = std::get_if<VipRequest>(&request)) plan_vip(*r, plan);
  if (const auto* r = std::get_if<DrainRequest>(&request)) plan_drain(*r, plan);
  if (const auto* r = std::get_if<HealthRequest>(&request)) plan_health(*r, plan);
  if (std::holds_alternative<HostRequest>(request)) plan_host(plan);
  if (const auto* r = std::get_if<InterfaceRequest>(&request)) plan_interface(*r, plan);
  if (const auto* r = std::get_if<RepairRequest>(&request)) plan_repair(r->live, plan);
  return plan;
}

class BalancerState::MacLookup {
 public:
  MacLookup(NeighborSource& neighbors, Plan& plan) : neighbors_(neighbors), plan_(plan) {}
  std::optional<MacAddress> operator()(const NextHop& hop) {
    auto table = tables_.find(hop.ifindex);
    if (table == tables_.end())
      table = tables_.emplace(hop.ifindex, neighbors_.macs(hop.ifindex)).first;
    if (auto it = table->second.find(hop.address); it != table->second.end()) return it->second;
    if (solicited_.insert({hop.ifindex, hop.address}).second)
      plan_.solicit_.emplace_back(hop.ifindex, hop.address);
    return std::nullopt;
  }

 private:
  NeighborSource& neighbors_;
  Plan& plan_;
  std::map<int, std::map<IpAddress, MacAddress>> tables_;
  std::set<std::pair<int, IpAddress>> solicited_;
};

void BalancerState::check_outer_sources(const VipConfig& vip, const Config& desired) const {
  if (!mode_encapsulates(vip.mode)) return;
  const ballast_egress egress = egress_slot(interface_, desired);
  for (const auto& b : vip.backends) {
    const bool v4 = b.address.is_v4();
    const bool has = v4 ? egress.src4 != 0 || desired.encap.source_v4
                        : desired.encap.source_v6 || interface_.ipv6;
    if (!has)
      throw Error("VIP " + vip.key.str() + ": mode " + forward_mode_name(vip.mode) +
                  " to backend " + b.address.str() + " needs an " + (v4 ? "IPv4" : "IPv6") +
                  " outer source: " + desired.interface + " has no " + (v4 ? "IPv4" : "IPv6") +
                  " address and encap.source_prefix_" + (v4 ? "v4" : "v6") + " is not set");
  }
}

BalancerState::LiveVip BalancerState::plan_vip_config(
    const VipConfig& cfg, const LiveVip* old, const Config& desired,
    const std::function<NextHop(const BackendConfig&)>& hop_of, MacLookup& macs,
    Plan& plan) const {
  auto& changes = plan.changes_;
  LiveVip vip;
  if (old) {
    vip.id = old->id;
    vip.table = old->table;
    vip.table_inputs = old->table_inputs;
    vip.table_seed = old->table_seed;
    vip.table_digest = old->table_digest;
    vip.entries = old->entries;
    if (old->config.fail_open != cfg.fail_open)
      changes.push_back(VipFailOpenChanged{cfg.key, cfg.fail_open});
    if (vip_options(cfg).takes_effect_over(vip_options(old->config)))
      changes.push_back(VipOptionsChanged{cfg.key, vip_options(old->config), vip_options(cfg)});
  } else {
    vip.id = plan_vip_id(plan);
    changes.push_back(VipAdded{cfg.key});
  }
  vip.config = cfg;
  for (const auto& b_cfg : cfg.backends) {
    const LiveBackend* prev = nullptr;
    if (old)
      for (const auto& b : old->backends)
        if (b.config.address == b_cfg.address) prev = &b;
    LiveBackend b;
    const NextHop hop = hop_of(b_cfg);
    if (prev) {
      b = *prev;
      if (prev->hop != hop) {
        b.hop = hop;
        b.mac = macs(hop);
        changes.push_back(NextHopChanged{cfg.key, b_cfg.address, prev->hop.address, hop.address});
      }
      if (prev->config.weight != b_cfg.weight)
        changes.push_back(WeightChanged{cfg.key, b_cfg.address, prev->config.weight, b_cfg.weight});
      if (prev->config.check != b_cfg.check)
        changes.push_back(CheckChanged{cfg.key, b_cfg.address, b_cfg.check});
    } else {
      b.id = plan_backend_id(plan);
      b.hop = hop;
      b.mac = macs(hop);
      // Without a check a backend is up; with one, its first result decides.
      b.health = b_cfg.check.type == CheckType::none ? Health::up : Health::unknown;
      changes.push_back(BackendAdded{cfg.key, b_cfg.address, b_cfg.weight});
    }
    b.config = b_cfg;
    if (b_cfg.check.type == CheckType::none) b.health = Health::up;
    // Other interfaces' egress slots, before a slot names them.
    plan_egress_id(b.hop.ifindex, desired, plan);
    vip.backends.push_back(b);
  }
  return vip;
}

void BalancerState::plan_config(const Config& desired, Plan& plan) const {
  plan.kind_ = Plan::Kind::config;
  auto& changes = plan.changes_;
  // Refused before any write: an encapsulating VIP needs an outer source
  // of each of its backends' families, and a dsr VIP backends on our link.
  for (const auto& vip : desired.vips) check_outer_sources(vip, desired);
  // The live VIPs by key: a VIP looks up what it touches instead of
  // scanning every VIP.
  std::map<VipKey, const LiveVip*> live_by_key;
  for (const auto& v : vips_) live_by_key[v.config.key] = &v;
  auto live_backend = [&](const VipConfig& vip, const IpAddress& address) -> const LiveBackend* {
    auto it = live_by_key.find(vip.key);
    if (it == live_by_key.end()) return nullptr;
    for (const auto& b : it->second->backends)
      if (b.config.address == address) return &b;
    return nullptr;
  };
  // Next hops from the kernel's routes, by (mode encapsulates, backend):
  // asked only for backends that are new, whose VIP's mode changed, or all
  // when the encap settings did. The others keep theirs; a HostRequest
  // follows route changes for every backend.
  std::map<std::pair<bool, IpAddress>, NextHop> hops;
  for (const auto& vip : desired.vips) {
    const bool encap = mode_encapsulates(vip.mode);
    auto live = live_by_key.find(vip.key);
    // (A new encap router moves every encapsulated backend's hop.)
    const bool same_mode = live != live_by_key.end() && live->second->config.mode == vip.mode &&
                           desired.encap == desired_.encap;
    for (const auto& b : vip.backends) {
      if (hops.count({encap, b.address})) continue;
      if (const LiveBackend* known = same_mode ? live_backend(vip, b.address) : nullptr) {
        hops[{encap, b.address}] = known->hop;
        continue;
      }
      std::string problem;
      auto hop = next_hop(vip.mode, b.address, desired, &problem);
      if (!problem.empty()) throw Error("VIP " + vip.key.str() + ": " + problem);
      hops[{encap, b.address}] = hop;
    }
  }
  // Egress slots first: backends and VIPs written after rely on them.
  plan.egress_ = changed_egress(desired);
  if (written_egress_.count(0) && plan.egress_.count(0))
    changes.push_back(EgressChanged{desired.interface, 1});

  MacLookup macs(neighbors_, plan);
  auto& next = plan.vips_;
  next.reserve(desired.vips.size());
  for (const auto& vip_cfg : desired.vips) {
    const auto found = live_by_key.find(vip_cfg.key);
    const bool encap = mode_encapsulates(vip_cfg.mode);
    next.push_back(plan_vip_config(
        vip_cfg, found == live_by_key.end() ? nullptr : found->second, desired,
        [&](const BackendConfig& b) { return hops.at({encap, b.address}); }, macs, plan));
  }

  // What leaves: VIPs, and backends of VIPs that stay.
  std::map<uint32_t, const LiveVip*> next_by_id;
  for (const auto& vip : next) next_by_id[vip.id] = &vip;
  for (const auto& old : vips_) {
    const auto kept = next_by_id.find(old.id);
    if (kept == next_by_id.end()) {
      changes.push_back(VipRemoved{old.config.key});
      continue;
    }
    for (const auto& b : old.backends)
      if (!kept->second->config.find_backend(b.config.address))
        changes.push_back(BackendRemoved{old.config.key, b.config.address});
  }

  // Settings that live in the daemon, not the maps: recorded like the rest.
  using Which = SettingChanged::Which;
  if (desired.skew != desired_.skew) changes.push_back(SettingChanged{Which::skew});
  if (desired.audit != desired_.audit) changes.push_back(SettingChanged{Which::audit});
  if (desired.encap != desired_.encap) changes.push_back(SettingChanged{Which::encap});
  if (desired.fleet != desired_.fleet) changes.push_back(SettingChanged{Which::fleet});
  if (desired.reconcile != desired_.reconcile)
    changes.push_back(SettingChanged{Which::reconcile, desired.reconcile});
  plan.desired_ = desired;
}

void BalancerState::plan_vip(const VipRequest& request, Plan& plan) const {
  plan.kind_ = Plan::Kind::vip;
  plan.vip_key_ = request.key;
  const auto pos = vip_pos_.find(request.key);
  const LiveVip* old = pos == vip_pos_.end() ? nullptr : &vips_[pos->second];
  if (!request.vip) {
    if (!old) throw Error("VIP " + request.key.str() + " is not configured");
    plan.changes_.push_back(VipRemoved{request.key});
    return;
  }
  const VipConfig& cfg = *request.vip;
  if (cfg.key != request.key)
    throw Error("VIP " + request.key.str() + ": the config given is " + cfg.key.str() + "'s");
  // The whole config's rules, where this VIP takes part in them.
  const size_t index = old ? pos->second : vips_.size();
  const std::string path = "vips[" + std::to_string(index) + "]";
  std::vector<std::string> problems;
  if (!old && vips_.size() + 1 > BALLAST_MAX_VIPS) problems.push_back(too_many_vips(vips_.size() + 1));
  if (cfg.fragments)
    if (auto at = vips_at_.find(cfg.key.address); at != vips_at_.end())
      for (const VipKey& other : at->second) {
        if (other == cfg.key || other.protocol != cfg.key.protocol) continue;
        if (desired_vip(other)->fragments)
          problems.push_back(fragments_taken(path, vip_pos_.at(other), cfg.key));
      }
  validate_vip(cfg, path, problems);
  const size_t total = total_backends_ - (old ? old->backends.size() : 0) + cfg.backends.size();
  if (total > BALLAST_MAX_BACKENDS) problems.push_back(too_many_backends(total));
  if (!problems.empty()) {
    std::string msg;
    for (const auto& p : problems) msg += (msg.empty() ? "" : "\n") + p;
    throw Error(msg);
  }
  check_outer_sources(cfg, desired_);
  // Next hops: a backend keeps its hop while the VIP's mode stays; a new
  // one (or all, when the mode changed) asks the kernel's routes.
  const bool same_mode = old && old->config.mode == cfg.mode;
  auto hop_of = [&](const BackendConfig& b) -> NextHop {
    if (same_mode)
      for (const auto& live : old->backends)
        if (live.config.address == b.address) return live.hop;
    std::string problem;
    auto hop = next_hop(cfg.mode, b.address, desired_, &problem);
    if (!problem.empty()) throw Error("VIP " + cfg.key.str() + ": " + problem);
    return hop;
  };
  MacLookup macs(neighbors_, plan);
  plan.vips_.push_back(plan_vip_config(cfg, old, desired_, hop_of, macs, plan));
  if (old)
    for (const auto& b : old->backends)
      if (!cfg.find_backend(b.config.address))
        plan.changes_.push_back(BackendRemoved{cfg.key, b.config.address});
}

void BalancerState::plan_drain(const DrainRequest& request, Plan& plan) const {
  plan.kind_ = Plan::Kind::drain;
  plan.vip_key_ = request.vip;
  const uint32_t id = backend_id(request.vip, request.backend);  // throws for unknown ones
  const LiveVip& vip = vips_[vip_pos_.at(request.vip)];
  for (size_t i = 0; i < vip.backends.size(); i++) {
    if (vip.backends[i].id != id || vip.backends[i].drained == request.drained) continue;
    LiveVip next = vip;
    next.backends[i].drained = request.drained;
    plan.changes_.push_back(DrainChanged{request.vip, request.backend, request.drained});
    plan.vips_.push_back(std::move(next));
    return;
  }
}

void BalancerState::plan_health(const HealthRequest& request, Plan& plan) const {
  plan.kind_ = Plan::Kind::health;
  if (request.health == Health::unknown) return;
  const auto slot = vip_of_slot_.find(request.backend_id);
  if (slot == vip_of_slot_.end()) return;  // a result for a backend since removed
  const LiveVip& vip = vips_[vip_pos_.at(slot->second)];
  for (size_t i = 0; i < vip.backends.size(); i++) {
    const LiveBackend& b = vip.backends[i];
    if (b.id != request.backend_id) continue;
    if (b.health == request.health) return;
    LiveVip next = vip;
    next.backends[i].health = request.health;
    plan.changes_.push_back(HealthChanged{vip.config.key, b.config.address, b.health,
                                          request.health, request.detail});
    plan.vips_.push_back(std::move(next));
    return;
  }
}

void BalancerState::plan_host(Plan& plan) const {
  plan.kind_ = Plan::Kind::host;
  auto& changes = plan.changes_;
  // Only a change: the first config change writes the slots.
  if (!written_egress_.empty()) {
    plan.egress_ = changed_egress(desired_);
    if (!plan.egress_.empty()) changes.push_back(EgressChanged{"", plan.egress_.size()});
  }
  std::map<int, std::map<IpAddress, MacAddress>> tables;
  auto table_of = [&](int ifindex) -> const std::map<IpAddress, MacAddress>& {
    auto it = tables.find(ifindex);
    if (it == tables.end()) it = tables.emplace(ifindex, neighbors_.macs(ifindex)).first;
    return it->second;
  };
  for (const auto& vip : vips_) {
    // Copied only when one of its backends changes.
    std::optional<LiveVip> next;
    auto edit = [&](size_t i) -> LiveBackend& {
      if (!next) next = vip;
      return next->backends[i];
    };
    for (size_t i = 0; i < vip.backends.size(); i++) {
      const LiveBackend& now = next ? next->backends[i] : vip.backends[i];
      const VipKey& key = vip.config.key;
      const IpAddress& address = now.config.address;
      std::string problem;
      const NextHop hop = next_hop(vip.config.mode, address, desired_, &problem);
      if (hop != now.hop) {
        // A route change: frames go to another hop's MAC from now on.
        plan_egress_id(hop.ifindex, desired_, plan);
        changes.push_back(NextHopChanged{key, address, now.hop.address, hop.address});
        LiveBackend& b = edit(i);
        b.hop = hop;
        b.mac.reset();
      }
      const LiveBackend& cur = next ? next->backends[i] : vip.backends[i];
      if (!problem.empty()) {
        if (cur.mac) {
          changes.push_back(BackendUnreachable{key, address, problem});
          edit(i).mac.reset();
        }
        continue;
      }
      const auto& table = table_of(hop.ifindex);
      auto it = table.find(hop.address);
      if (it == table.end()) {
        // A MAC we had stays in use: the kernel ages out entries for hosts
        // it never talks to itself, and XDP_TX traffic is invisible to it.
        if (!cur.mac) plan.solicit_.emplace_back(hop.ifindex, hop.address);
        continue;
      }
      if (cur.mac == it->second) continue;
      changes.push_back(MacChanged{key, address, cur.mac, it->second});
      edit(i).mac = it->second;
    }
    if (next) plan.vips_.push_back(std::move(*next));
  }
}

void BalancerState::plan_interface(const InterfaceRequest& request, Plan& plan) const {
  plan.kind_ = Plan::Kind::interface;
  plan.interface_ = request.facts;
  if (request.facts.ifindex == ifindex_) return;
  size_t hops = 0;
  for (const auto& vip : vips_)
    for (const auto& b : vip.backends) hops += b.hop.ifindex == ifindex_;
  plan.changes_.push_back(
      InterfaceMoved{desired_.interface, ifindex_, request.facts.ifindex, hops});
}

// Active slots before the tables that name them, inactive ones after the
// tables stop naming them: the order a config change keeps. Then VIPs
// (and their vip_by_id mirror and filter bit), strays last.
void BalancerState::plan_repair(const LiveSnapshot& live, Plan& plan) const {
  plan.kind_ = Plan::Kind::repair;
  using What = MapRepaired::What;
  auto& out = plan.changes_;
  const LiveSnapshot want = expected();
  for (const auto& [id, e] : want.egress) {
    auto it = live.egress.find(id);
    if (it == live.egress.end() || !same_bytes(it->second, e))
      out.push_back(MapRepaired{What::egress_slot, id, std::nullopt});
  }
  auto repair_slots = [&](bool active) {
    for (const auto& [id, slot] : want.backends) {
      if (static_cast<bool>(slot.flags & BALLAST_BACKEND_F_ACTIVE) != active) continue;
      auto it = live.backends.find(id);
      if (it == live.backends.end() || !same_bytes(it->second, slot))
        out.push_back(MapRepaired{What::backend_slot, id, std::nullopt});
    }
  };
  repair_slots(true);
  for (const auto& [vip_id, table] : want.tables) {
    auto it = live.tables.find(vip_id);
    if (it == live.tables.end() || !same_entries(it->second, table))
      out.push_back(MapRepaired{What::table, vip_id, std::nullopt});
  }
  repair_slots(false);
  auto same_key = [](const ballast_vip_key& a, const ballast_vip_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
  };
  for (const auto& [key, info] : want.vips) {
    bool ok = false;
    for (const auto& [k, i] : live.vips) ok = ok || (same_key(k, key) && same_bytes(i, info));
    // put_vip writes vip_by_id too: a port entry whose mirror drifted is
    // rewritten.
    if (auto it = live.vip_by_id.find(info.vip_id); key.port != 0 && it != live.vip_by_id.end())
      ok = ok && same_key(it->second.key, key) && same_bytes(it->second.info, info);
    // And the address's bit in the VIP filter.
    if (!live.vip_filter.empty()) ok = ok && vip_filter_has(live.vip_filter, key.addr);
    if (!ok) out.push_back(MapRepaired{What::vip, info.vip_id, VipKey::from_abi(key)});
  }
  for (const auto& [k, i] : live.vips) {
    bool known = false;
    for (const auto& [key, info] : want.vips) known = known || same_key(k, key);
    if (!known) out.push_back(MapRepaired{What::stray_vip, i.vip_id, VipKey::from_abi(k)});
  }
  for (const auto& [id, slot] : live.backends)
    if (!want.backends.count(id))
      out.push_back(MapRepaired{What::stray_backend_slot, id, std::nullopt});
}

}  // namespace ballast
