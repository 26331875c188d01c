#include "balancer_state.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "error.h"
#include "maglev.h"

namespace ballast {
namespace {

bool mac_is_zero(const uint8_t* mac) {
  static const uint8_t zero[6] = {};
  return std::memcmp(mac, zero, 6) == 0;
}

}  // namespace

ballast_vip_info BalancerState::vip_info(const LiveVip& vip) {
  ballast_vip_info info{};
  info.vip_id = vip.id;
  info.flags = forward_mode_flags(vip.config.mode);
  if (vip.config.mode == ForwardMode::gue) info.gue_port = htons(vip.config.gue_port);
  if (vip.config.ignore_source_port) info.flags |= BALLAST_VIP_F_NO_SRC_PORT;
  if (vip.config.second_chance) info.flags |= BALLAST_VIP_F_SECOND_CHANCE;
  return info;
}

ballast_vip_key BalancerState::fragment_key(const VipConfig& vip) {
  VipKey k = vip.key;
  k.port = 0;
  return k.to_abi();
}

ballast_vip_info BalancerState::fragment_info(const LiveVip& vip) {
  ballast_vip_info info = vip_info(vip);
  info.flags |= BALLAST_VIP_F_FRAGMENTS;
  return info;
}

namespace {

// The host bits of a /@length prefix in a 32-bit word, network order.
uint32_t host_mask_be(unsigned length) { return length >= 32 ? 0 : htonl(0xffffffffu >> length); }


}  // namespace

void BalancerState::put_vip_entries(const LiveVip& vip, const LiveVip* old) {
  const ballast_vip_info info = vip_info(vip);
  if (!old || !same_bytes(vip_info(*old), info)) dataplane_.put_vip(vip.config.key.to_abi(), info);
  if (vip.config.fragments) {
    if (!old || !old->config.fragments || !same_bytes(fragment_info(*old), fragment_info(vip)))
      dataplane_.put_vip(fragment_key(vip.config), fragment_info(vip));
  } else if (old && old->config.fragments) {
    dataplane_.delete_vip(fragment_key(old->config));
  }
}

ballast_egress BalancerState::egress_slot(const InterfaceFacts& facts, const Config& desired) {
  ballast_egress e{};
  e.ifindex = static_cast<uint32_t>(facts.ifindex);
  std::memcpy(e.mac, facts.mac.data(), 6);
  e.mtu = static_cast<uint16_t>(std::min<uint32_t>(facts.mtu, 65535));
  if (const auto& p = desired.encap.source_v4) {
    std::memcpy(&e.src4, p->address.bytes.data(), 4);
    e.src4_hash_mask = host_mask_be(p->length);
  } else if (facts.ipv4) {
    std::memcpy(&e.src4, facts.ipv4->bytes.data(), 4);
  }
  if (const auto& p = desired.encap.source_v6) {
    std::memcpy(e.src6, p->address.bytes.data(), 16);
    e.src6_hash_mask = host_mask_be(p->length - 96u);
  } else if (facts.ipv6) {
    std::memcpy(e.src6, facts.ipv6->bytes.data(), 16);
  }
  return e;
}

BalancerState::NextHop BalancerState::next_hop(ForwardMode mode, const IpAddress& backend,
                                               const Config& desired, std::string* problem) const {
  IpAddress target = backend;
  if (mode_encapsulates(mode)) {
    const auto& router = backend.is_v4() ? desired.encap.next_hop_v4 : desired.encap.next_hop_v6;
    if (router) target = *router;
  }
  const auto route = neighbors_.route(target);
  // No route: the backend's own address on our interface, where it will
  // show as unresolved until the kernel can reach it.
  if (!route) return NextHop{ifindex_, target};
  NextHop hop{route->ifindex, route->gateway ? *route->gateway : target};
  if (mode == ForwardMode::dsr && (route->gateway || route->ifindex != ifindex_)) {
    if (problem)
      *problem =
          "backend " + backend.str() + " is not on the balancer's segment (the route to it " +
          (route->gateway ? "goes via " + route->gateway->str() : "leaves by another interface") +
          "): mode dsr only rewrites MACs, so it needs backends on " + desired.interface +
          "'s link; use mode ipip or gue";
    return NextHop{ifindex_, backend};
  }
  return hop;
}

std::map<uint32_t, ballast_egress> BalancerState::changed_egress(const Config& desired) const {
  std::map<uint32_t, ballast_egress> out;
  auto want = [&](uint32_t id, const ballast_egress& e) {
    auto it = written_egress_.find(id);
    if (it == written_egress_.end() || !same_bytes(it->second, e)) out[id] = e;
  };
  want(0, egress_slot(interface_, desired));
  for (const auto& [ifindex, id] : egress_ids_) {
    if (id == 0) continue;
    try {
      want(id, egress_slot(neighbors_.interface(ifindex), desired));
    } catch (const Error&) {
      // The interface is gone: its backends move when their routes do.
    }
  }
  return out;
}

BalancerState::BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex)
    : dataplane_(dataplane), neighbors_(neighbors), ifindex_(ifindex) {}

BalancerState::~BalancerState() = default;

std::vector<Change> BalancerState::execute(Plan plan) {
  if (plan.generation_ != generation_)
    throw Error("stale plan: the live state changed after it was made; nothing was written");
  for (const auto& [ifindex, address] : plan.solicit_) neighbors_.solicit(ifindex, address);
  switch (plan.kind_) {
    case Plan::Kind::config:
      execute_config(plan);
      break;
    case Plan::Kind::vip:
      execute_vip(plan);
      break;
    case Plan::Kind::drain:
    case Plan::Kind::health:
    case Plan::Kind::host:
      execute_vips(plan);
      break;
    case Plan::Kind::interface:
      execute_interface(plan);
      break;
    case Plan::Kind::repair:
      execute_repair(plan);
      break;
  }
  ++generation_;
  return std::move(plan.changes_);
}

void BalancerState::commit_allocations(const Plan& plan) {
  for (const auto& [id, e] : plan.egress_) {
    dataplane_.put_egress(id, e);
    written_egress_[id] = e;
  }
  for (const auto& [ifindex, id] : plan.new_egress_ids_) egress_ids_[ifindex] = id;
  // New slots start from zeroed counters.
  for (uint32_t id : plan.new_backend_ids_) {
    used_backend_ids_.insert(id);
    dataplane_.reset_counters(CounterMap::backend, id);
  }
  next_backend_id_ = plan.next_backend_id_;
  used_vip_ids_.insert(plan.new_vip_ids_.begin(), plan.new_vip_ids_.end());
}

// The VIP stops matching before its table and backends go.
void BalancerState::remove_vip(const LiveVip& vip) {
  dataplane_.delete_vip(vip.config.key.to_abi());
  if (vip.config.fragments) dataplane_.delete_vip(fragment_key(vip.config));
  dataplane_.remove_table(vip.id);
  if (previous_kept_.erase(vip.id)) dataplane_.remove_previous_table(vip.id);
  for (const auto& b : vip.backends) free_backend(b.id);
  used_vip_ids_.erase(vip.id);
}

void BalancerState::execute_config(Plan& plan) {
  commit_allocations(plan);

  // Tables (and slots) first; then new VIPs become visible.
  std::map<uint32_t, const LiveVip*> live_by_id;
  std::set<uint32_t> next_ids;
  for (const auto& v : vips_) live_by_id[v.id] = &v;
  for (auto& vip : plan.vips_) {
    next_ids.insert(vip.id);
    sync_vip(vip, plan.desired_->fleet.hash_seed);
    auto old = live_by_id.find(vip.id);
    if (old == live_by_id.end()) {
      dataplane_.reset_counters(CounterMap::vip, vip.id);
      put_vip_entries(vip, nullptr);
    } else {
      // A mode or option change is one map write: the VIP's next packet
      // takes it.
      put_vip_entries(vip, old->second);
    }
  }

  // What left: VIPs stop matching before their table and backends go;
  // backends leave after the table that no longer names them.
  std::map<uint32_t, const LiveVip*> next_by_id;
  for (const auto& vip : plan.vips_) next_by_id[vip.id] = &vip;
  for (const auto& old : vips_) {
    const auto found = next_by_id.find(old.id);
    if (found == next_by_id.end()) {
      remove_vip(old);
      continue;
    }
    for (const auto& b : old.backends)
      if (!found->second->config.find_backend(b.config.address)) free_backend(b.id);
  }
  vips_ = std::move(plan.vips_);
  desired_ = std::move(*plan.desired_);
  reindex();
}

void BalancerState::execute_vip(Plan& plan) {
  commit_allocations(plan);
  const VipKey& key = *plan.vip_key_;
  const auto pos = vip_pos_.find(key);
  if (plan.vips_.empty()) {  // removed
    const size_t i = pos->second;
    remove_vip(vips_[i]);
    index_vip(desired_.vips[i], false);
    index_slots(vips_[i], false);
    vips_.erase(vips_.begin() + static_cast<std::ptrdiff_t>(i));
    desired_.vips.erase(desired_.vips.begin() + static_cast<std::ptrdiff_t>(i));
    vip_pos_.erase(pos);
    for (auto& [k, p] : vip_pos_)
      if (p > i) --p;
    return;
  }
  LiveVip& next = plan.vips_.front();
  // Slots and table first; then the VIP's entries; backends that left go
  // after the table that no longer names them.
  sync_vip(next, desired_.fleet.hash_seed);
  if (pos == vip_pos_.end()) {
    dataplane_.reset_counters(CounterMap::vip, next.id);
    put_vip_entries(next, nullptr);
    index_vip(next.config, true);
    index_slots(next, true);
    vip_pos_[key] = vips_.size();
    desired_.vips.push_back(next.config);
    vips_.push_back(std::move(next));
    return;
  }
  LiveVip& old = vips_[pos->second];
  put_vip_entries(next, &old);
  for (const auto& b : old.backends)
    if (!next.config.find_backend(b.config.address)) free_backend(b.id);
  index_vip(old.config, false);
  index_vip(next.config, true);
  index_slots(old, false);
  index_slots(next, true);
  desired_.vips[pos->second] = next.config;
  old = std::move(next);
}

void BalancerState::index_vip(const VipConfig& vip, bool add) {
  auto update = [&](std::map<IpAddress, std::set<VipKey>>& index, const IpAddress& at) {
    if (add) {
      index[at].insert(vip.key);
      return;
    }
    auto it = index.find(at);
    if (it == index.end()) return;
    it->second.erase(vip.key);
    if (it->second.empty()) index.erase(it);
  };
  update(vips_at_, vip.key.address);
  for (const auto& b : vip.backends) update(backend_of_, b.address);
  total_backends_ = add ? total_backends_ + vip.backends.size() : total_backends_ - vip.backends.size();
}

void BalancerState::reindex() {
  vip_pos_.clear();
  vips_at_.clear();
  backend_of_.clear();
  vip_of_slot_.clear();
  total_backends_ = 0;
  for (size_t i = 0; i < desired_.vips.size(); i++) {
    vip_pos_[desired_.vips[i].key] = i;
    index_vip(desired_.vips[i], true);
    index_slots(vips_[i], true);
  }
}

void BalancerState::index_slots(const LiveVip& vip, bool add) {
  for (const auto& b : vip.backends)
    if (add)
      vip_of_slot_[b.id] = vip.config.key;
    else
      vip_of_slot_.erase(b.id);
}

const VipConfig* BalancerState::desired_vip(const VipKey& key) const {
  auto it = vip_pos_.find(key);
  return it == vip_pos_.end() ? nullptr : &desired_.vips[it->second];
}

void BalancerState::execute_vips(Plan& plan) {
  for (const auto& [id, e] : plan.egress_) {
    dataplane_.put_egress(id, e);
    written_egress_[id] = e;
  }
  for (const auto& [ifindex, id] : plan.new_egress_ids_) egress_ids_[ifindex] = id;
  for (auto& next : plan.vips_)
    for (auto& vip : vips_)
      if (vip.id == next.id) {
        vip = std::move(next);
        sync_vip(vip, desired_.fleet.hash_seed);
        break;
      }
}

void BalancerState::execute_interface(Plan& plan) {
  interface_ = plan.interface_;
  if (plan.interface_.ifindex == ifindex_) return;
  const int old = ifindex_;
  ifindex_ = plan.interface_.ifindex;
  egress_ids_.erase(ifindex_);  // the new index is slot 0's now
  for (auto& vip : vips_)
    for (auto& b : vip.backends)
      if (b.hop.ifindex == old) b.hop.ifindex = ifindex_;
  written_egress_.erase(0);  // rewritten from the interface's facts
  for (const auto& [id, e] : changed_egress(desired_)) {
    dataplane_.put_egress(id, e);
    written_egress_[id] = e;
  }
}

void BalancerState::execute_repair(Plan& plan) {
  using What = MapRepaired::What;
  const LiveSnapshot want = expected();
  for (const auto& change : plan.changes_) {
    const auto& r = std::get<MapRepaired>(change);
    switch (r.what) {
      case What::egress_slot:
        dataplane_.put_egress(r.id, want.egress.at(r.id));
        break;
      case What::backend_slot:
        dataplane_.put_backend(r.id, want.backends.at(r.id));
        break;
      case What::table:
        dataplane_.install_table(r.id, want.tables.at(r.id).entries);
        break;
      case What::vip:
        for (const auto& [key, info] : want.vips)
          if (VipKey::from_abi(key) == *r.vip) dataplane_.put_vip(key, info);
        break;
      case What::stray_vip:
        dataplane_.delete_vip(r.vip->to_abi());
        break;
      case What::stray_backend_slot:
        dataplane_.put_backend(r.id, ballast_backend{});
        break;
    }
  }
}

VipView BalancerState::view_of(const LiveVip& vip) {
  const bool fo = failing_open(vip);
  VipView v{vip.id,           vip.config.key, vip.config.mode,   vip.config.fail_open, fo, {},
            vip.table,        vip.table_seed, vip.table_digest};
  for (const auto& b : vip.backends) {
    const auto e = vip.entries.find(b.id);
    v.backends.push_back({b.id, b.config.address, b.config.weight, b.mac, b.health, b.drained,
                          takes_new_flows(b, fo), e == vip.entries.end() ? 0 : e->second,
                          b.config.check});
  }
  return v;
}

std::vector<VipView> BalancerState::view() const {
  std::vector<VipView> out;
  out.reserve(vips_.size());
  for (const auto& vip : vips_) out.push_back(view_of(vip));
  return out;
}

std::vector<VipView> BalancerState::view_after(const Plan& plan) const {
  std::vector<VipView> out;
  if (plan.kind_ == Plan::Kind::config) {
    for (const auto& vip : plan.vips_) out.push_back(view_of(vip));
    return out;
  }
  out = view();
  if (plan.kind_ == Plan::Kind::vip && plan.vips_.empty()) {  // a VIP removed
    std::erase_if(out, [&](const VipView& v) { return v.key == *plan.vip_key_; });
    return out;
  }
  if (plan.kind_ == Plan::Kind::vip && !vip_pos_.count(*plan.vip_key_)) {  // a VIP added
    out.push_back(view_of(plan.vips_.front()));
    return out;
  }
  for (const auto& next : plan.vips_)
    for (auto& v : out)
      if (v.id == next.id) v = view_of(next);
  return out;
}

ConfigAuditScope BalancerState::audit_scope(const Plan& plan, bool after) const {
  ConfigAuditScope scope;
  scope.max_share = desired_.audit.max_share;
  if (plan.kind_ == Plan::Kind::config) {
    const Config& config = after ? *plan.desired_ : desired_;
    scope.max_share = config.audit.max_share;
    for (const auto& vip : config.vips) {
      scope.vips.push_back(&vip);
      scope.vip_at.emplace(vip.key.address, vip.key.str());
    }
    scope.live = after ? view_after(plan) : view();
    return scope;
  }
  if (!plan.vip_key_) return scope;
  const VipKey& key = *plan.vip_key_;
  // The VIP as it will be: the plan's (none when removed); as it is: ours.
  const LiveVip* planned = plan.vips_.empty() ? nullptr : &plan.vips_.front();
  const bool removed = plan.kind_ == Plan::Kind::vip && !planned;
  auto position = [&](const VipKey& k) {
    auto it = vip_pos_.find(k);
    return it == vip_pos_.end() ? vips_.size() : it->second;  // a new VIP comes last
  };
  // Its VIP, and (backend-is-vip) every VIP with a backend at its address,
  // in config order.
  std::vector<std::pair<size_t, VipKey>> keys{{position(key), key}};
  if (auto it = backend_of_.find(key.address); it != backend_of_.end())
    for (const VipKey& k : it->second)
      if (k != key) keys.emplace_back(position(k), k);
  std::sort(keys.begin(), keys.end());
  for (const auto& [pos, k] : keys) {
    const LiveVip* live = nullptr;
    if (k == key && after) {
      live = planned;
    } else if (pos < vips_.size()) {
      live = &vips_[pos];
    }
    if (!live || (after && k == key && removed)) continue;
    scope.vips.push_back(after && k == key ? &planned->config : &desired_.vips[pos]);
    scope.live.push_back(view_of(*live));
  }
  // The VIP at each of their backends' addresses, first in config order,
  // in the world before or after the plan.
  for (const VipConfig* vip : scope.vips)
    for (const auto& b : vip->backends) {
      std::vector<std::pair<size_t, VipKey>> at;
      if (auto it = vips_at_.find(b.address); it != vips_at_.end())
        for (const VipKey& k : it->second)
          if (!(after && removed && k == key)) at.emplace_back(position(k), k);
      if (after && !removed && key.address == b.address) at.emplace_back(position(key), key);
      if (at.empty()) continue;
      scope.vip_at[b.address] = std::min_element(at.begin(), at.end())->second.str();
    }
  return scope;
}

// Healthy enough for new flows, and allowed them by the operator.
bool BalancerState::takes_new_flows(const LiveBackend& b, bool failing_open) {
  if (!b.mac || b.config.weight == 0 || b.drained) return false;
  return b.health == Health::up || failing_open;
}

// fail_open and no backend can take new flows on its own health.
bool BalancerState::failing_open(const LiveVip& vip) {
  if (!vip.config.fail_open) return false;
  return std::none_of(vip.backends.begin(), vip.backends.end(),
                      [](const LiveBackend& b) { return takes_new_flows(b, false); });
}

void BalancerState::free_backend(uint32_t id) {
  dataplane_.put_backend(id, ballast_backend{});
  used_backend_ids_.erase(id);
  written_slots_.erase(id);
}

void BalancerState::count_table(LiveVip& vip) {
  vip.entries.clear();
  if (!vip.table) {
    vip.table_digest = 0;
    return;
  }
  for (uint32_t e : *vip.table) vip.entries[e]++;
  std::map<uint32_t, std::string> key_of;
  for (const auto& b : vip.backends) key_of[b.id] = b.config.address.str();
  vip.table_digest = maglev::table_digest(*vip.table, key_of, vip.table_seed);
}

void BalancerState::sync_vip(LiveVip& vip, uint32_t seed) {
  const bool fo = failing_open(vip);
  // Second chance turned off: pick-ups are no longer checked against the
  // previous table, which goes.
  if (!vip.config.second_chance && previous_kept_.erase(vip.id))
    dataplane_.remove_previous_table(vip.id);

  // The slots as they should be: ACTIVE (forward to it, established flows
  // stay) unless it has no MAC or is down (a down backend's flows move).
  std::vector<ballast_backend> want(vip.backends.size());
  for (size_t i = 0; i < vip.backends.size(); i++) {
    const auto& b = vip.backends[i];
    ballast_backend& slot = want[i];
    slot.addr = b.config.address.to_abi();
    slot.family = b.config.address.family;
    slot.vip_id = vip.id;
    if (auto e = egress_ids_.find(b.hop.ifindex); e != egress_ids_.end())
      slot.egress = static_cast<uint8_t>(e->second);
    if (b.mac) std::memcpy(slot.mac, b.mac->data(), 6);
    if (b.mac && (b.health != Health::down || fo)) slot.flags |= BALLAST_BACKEND_F_ACTIVE;
    if (b.drained) slot.flags |= BALLAST_BACKEND_F_DRAINED;
    if (b.health == Health::down) slot.flags |= BALLAST_BACKEND_F_DOWN;
  }
  auto& written = written_slots_;
  auto write_if = [&](bool activating) {
    for (size_t i = 0; i < vip.backends.size(); i++) {
      const uint32_t id = vip.backends[i].id;
      const bool active = want[i].flags & BALLAST_BACKEND_F_ACTIVE;
      auto it = written.find(id);
      if (it != written.end() && same_bytes(it->second, want[i])) continue;
      if (active != activating) continue;
      dataplane_.put_backend(id, want[i]);
      written[id] = want[i];
    }
  };

  // 1. Slots that (still) take traffic, before any table names them.
  write_if(true);
  // 2. The table, swapped whole. The base table holds every backend that
  // could take traffic (resolved, weight > 0); backends that are down or
  // drained give their entries, and only theirs, to the others, as a table
  // of the usable backends alone says. So a failure moves only the failed
  // backend's flows, and its recovery restores the base table exactly.
  std::vector<TableInput> inputs;
  for (const auto& b : vip.backends)
    if (b.mac && b.config.weight != 0)
      inputs.push_back({b.id, b.config.address, b.config.weight, takes_new_flows(b, fo)});
  if (!vip.table || inputs != vip.table_inputs || seed != vip.table_seed) {
    std::vector<maglev::Endpoint> base, usable;
    std::vector<uint32_t> base_ids, usable_ids;
    std::set<uint32_t> usable_set;
    for (const auto& in : inputs) {
      base.push_back({in.address.str(), in.weight});
      base_ids.push_back(in.id);
      if (!in.usable) continue;
      usable.push_back(base.back());
      usable_ids.push_back(in.id);
      usable_set.insert(in.id);
    }
    auto to_ids = [](std::vector<uint32_t> t, const std::vector<uint32_t>& ids) {
      for (auto& e : t)
        if (e != maglev::kNoBackend) e = ids[e];
      return t;
    };
    auto table = to_ids(maglev::build_table(base, BALLAST_MAGLEV_SIZE, seed), base_ids);
    if (usable.size() != base.size()) {
      const auto fallback =
          to_ids(maglev::build_table(usable, BALLAST_MAGLEV_SIZE, seed), usable_ids);
      for (uint32_t i = 0; i < table.size(); i++)
        if (!usable_set.count(table[i])) table[i] = fallback[i];
    }
    if (!vip.table || table != *vip.table) {
      auto installed = std::make_shared<const std::vector<uint32_t>>(std::move(table));
      // Second chance: the table flows began with stays, as the previous
      // one, for the pick-ups of flows another balancer placed by it.
      if (vip.config.second_chance && vip.table) {
        dataplane_.keep_previous_table(vip.id);
        previous_kept_.insert(vip.id);
      }
      dataplane_.install_table(vip.id, installed);
      vip.table = std::move(installed);
    }
    vip.table_inputs = std::move(inputs);
    // Also when the table came out the same: its backends' addresses may
    // not have (an id freed and taken again), and the digest names them.
    vip.table_seed = seed;
    count_table(vip);
  }
  // 3. Slots that stop taking traffic, once no table names them.
  write_if(false);
}

std::vector<Change> BalancerState::adopt(const LiveSnapshot& live, const Config& desired) {
  std::vector<Change> out;
  std::set<uint32_t> claimed;
  for (const auto& [abi_key, info] : live.vips) {
    if (abi_key.port == 0) continue;  // a fragment entry: its VIP's, below
    LiveVip vip;
    vip.id = info.vip_id;
    const VipKey key = VipKey::from_abi(abi_key);
    const VipConfig* want = desired.find_vip(key);
    vip.config = want ? *want : empty_vip(key);
    vip.config.backends.clear();
    // The mode as the map has it: the first config change rewrites it if the config
    // says otherwise.
    vip.config.mode = forward_mode_from_flags(info.flags);
    if (vip.config.mode == ForwardMode::gue) vip.config.gue_port = ntohs(info.gue_port);
    vip.config.ignore_source_port = info.flags & BALLAST_VIP_F_NO_SRC_PORT;
    vip.config.fragments = false;
    for (const auto& [k, i] : live.vips)
      if (k.port == 0 && i.vip_id == info.vip_id && (i.flags & BALLAST_VIP_F_FRAGMENTS))
        vip.config.fragments = true;
    for (const auto& [id, slot] : live.backends) {
      if (slot.vip_id != vip.id) continue;
      LiveBackend b;
      b.id = id;
      b.config.address = IpAddress::from_abi(slot.addr, slot.family);
      // The hop's address is not in the map: the first config change finds it again.
      b.hop = NextHop{ifindex_, b.config.address};
      if (auto e = live.egress.find(slot.egress); e != live.egress.end() && slot.egress != 0)
        b.hop.ifindex = static_cast<int>(e->second.ifindex);
      // Weights and checks are not in the maps: take the desired ones
      // (the first config change then finds nothing to change when they match).
      const BackendConfig* cfg = want ? want->find_backend(b.config.address) : nullptr;
      b.config.weight = cfg ? cfg->weight : 0;
      b.config.check = cfg ? cfg->check : vip.config.check;
      if (!mac_is_zero(slot.mac)) {
        MacAddress mac;
        std::memcpy(mac.data(), slot.mac, 6);
        b.mac = mac;
      }
      b.health = (slot.flags & BALLAST_BACKEND_F_DOWN) ? Health::down : Health::up;
      b.drained = slot.flags & BALLAST_BACKEND_F_DRAINED;
      vip.config.backends.push_back(b.config);
      vip.backends.push_back(b);
      used_backend_ids_.insert(id);
      written_slots_[id] = slot;
      claimed.insert(id);
      next_backend_id_ = std::max(next_backend_id_, (id + 1) % BALLAST_MAX_BACKENDS);
    }
    // A table this process may not read (another map swapped in) stays
    // unknown: the first config change installs one.
    if (auto t = live.tables.find(vip.id); t != live.tables.end() && t->second.entries) {
      vip.table = t->second.entries;
      // Built by an earlier ballastd, with the seed it had: the desired one
      // is the best guess, and the first config change builds it anew.
      vip.table_seed = desired.fleet.hash_seed;
      count_table(vip);
    }
    used_vip_ids_.insert(vip.id);
    out.push_back(VipAdopted{key, vip.id, vip.backends.size()});
    desired_.vips.push_back(vip.config);
    vips_.push_back(std::move(vip));
  }
  // Slots no VIP names (a daemon died between writes): free them.
  for (const auto& [id, slot] : live.backends)
    if (!claimed.count(id)) dataplane_.put_backend(id, ballast_backend{});
  for (const auto& [id, e] : live.egress) {
    written_egress_[id] = e;
    if (id != 0) egress_ids_[static_cast<int>(e.ifindex)] = id;
  }
  desired_.interface = desired.interface;
  desired_.attach_mode = desired.attach_mode;
  desired_.fleet = desired.fleet;
  reindex();
  ++generation_;
  return out;
}

uint32_t BalancerState::backend_id(const VipKey& key, const IpAddress& address) const {
  const auto pos = vip_pos_.find(key);
  if (pos == vip_pos_.end()) throw Error("VIP " + key.str() + " is not configured");
  for (const auto& b : vips_[pos->second].backends)
    if (b.config.address == address) return b.id;
  throw Error("backend " + address.str() + " is not in VIP " + key.str());
}

std::vector<std::string> BalancerState::unresolved() const {
  std::vector<std::string> out;
  for (const auto& vip : vips_)
    for (const auto& b : vip.backends)
      if (!b.mac) out.push_back(vip.config.key.str() + " " + b.config.address.str());
  return out;
}

std::map<uint64_t, HealthTarget> BalancerState::health_targets() const {
  std::map<uint64_t, HealthTarget> out;
  for (const auto& vip : vips_)
    for (const auto& b : vip.backends) out[b.id] = HealthTarget{b.config.address, b.config.check};
  return out;
}

LiveSnapshot BalancerState::expected() const {
  LiveSnapshot out;
  for (const auto& vip : vips_) {
    out.vips.emplace_back(vip.config.key.to_abi(), vip_info(vip));
    if (vip.config.fragments) out.vips.emplace_back(fragment_key(vip.config), fragment_info(vip));
    if (vip.table) out.tables[vip.id] = LiveTable{0, vip.table};
  }
  for (const auto& [id, e] : written_egress_)
    if (e.ifindex != 0) out.egress[id] = e;
  for (const auto& [id, slot] : written_slots_)
    if (slot.family != 0) out.backends[id] = slot;
  return out;
}

}  // namespace ballast
