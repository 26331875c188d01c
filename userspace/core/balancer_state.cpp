#include "balancer_state.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "error.h"
#include "maglev.h"
#include "vip_filter_writer.h"

namespace ballast {
namespace {

// plan()'s data plane: every write is dropped.
class NullDataPlane : public DataPlane {
 public:
  void put_vip(const ballast_vip_key&, const ballast_vip_info&) override {}
  void delete_vip(const ballast_vip_key&) override {}
  void put_backend(uint32_t, const ballast_backend&) override {}
  void install_table(uint32_t, const std::vector<uint32_t>&) override {}
  void remove_table(uint32_t) override {}
  void put_egress(uint32_t, const ballast_egress&) override {}
  ballast_traffic_counters read_counters(CounterMap, uint32_t) override { return {}; }
  void reset_counters(CounterMap, uint32_t) override {}
  std::vector<ballast_reason_counters> read_reasons() override { return {}; }
  std::map<uint32_t, uint64_t> active_flows(uint64_t) override { return {}; }
  LiveSnapshot snapshot() override { return {}; }
  std::optional<std::vector<uint32_t>> read_table(uint32_t) override { return std::nullopt; }
};

bool mac_is_zero(const uint8_t* mac) {
  static const uint8_t zero[6] = {};
  return std::memcmp(mac, zero, 6) == 0;
}

}  // namespace

ballast_vip_info BalancerState::vip_info(const LiveVip& vip) {
  ballast_vip_info info{};
  info.vip_id = vip.id;
  if (vip.config.mode == ForwardMode::ipip) info.flags |= BALLAST_VIP_F_ENCAP_IPIP;
  if (vip.config.mode == ForwardMode::gue) {
    info.flags |= BALLAST_VIP_F_ENCAP_GUE;
    info.gue_port = htons(vip.config.gue_port);
  }
  if (vip.config.ignore_source_port) info.flags |= BALLAST_VIP_F_NO_SRC_PORT;
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

bool same_slot(const ballast_backend& a, const ballast_backend& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

bool same_info(const ballast_vip_info& a, const ballast_vip_info& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

bool same_egress(const ballast_egress& a, const ballast_egress& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// The host bits of a /@length prefix in a 32-bit word, network order.
uint32_t host_mask_be(unsigned length) { return length >= 32 ? 0 : htonl(0xffffffffu >> length); }

// What changed in a VIP's options, for the change log ("" when nothing).
std::string option_changes(const VipConfig& from, const VipConfig& to) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  if (from.mode != to.mode)
    add("mode " + forward_mode_name(from.mode) + " -> " + forward_mode_name(to.mode));
  if (to.mode == ForwardMode::gue && from.gue_port != to.gue_port)
    add("gue_port " + std::to_string(from.gue_port) + " -> " + std::to_string(to.gue_port));
  if (from.ignore_source_port != to.ignore_source_port)
    add(std::string("ignore_source_port ") + (to.ignore_source_port ? "on" : "off"));
  if (from.fragments != to.fragments)
    add(std::string("fragments ") + (to.fragments ? "on" : "off"));
  return out;
}

}  // namespace

void BalancerState::put_vip_entries(const LiveVip& vip, const LiveVip* old) {
  const ballast_vip_info info = vip_info(vip);
  if (!old || !same_info(vip_info(*old), info)) dataplane_.put_vip(vip.config.key.to_abi(), info);
  if (vip.config.fragments) {
    if (!old || !old->config.fragments || !same_info(fragment_info(*old), fragment_info(vip)))
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

uint32_t BalancerState::egress_id(int ifindex, const Config& desired) {
  if (ifindex == ifindex_) return 0;
  if (auto it = egress_ids_.find(ifindex); it != egress_ids_.end()) return it->second;
  std::set<uint32_t> used{0};
  for (const auto& [ix, id] : egress_ids_) used.insert(id);
  uint32_t id = 1;
  while (used.count(id)) id++;
  if (id >= BALLAST_MAX_EGRESS)
    throw Error("no free egress slot for interface index " + std::to_string(ifindex) +
                " (at most " + std::to_string(BALLAST_MAX_EGRESS - 1) + " other interfaces)");
  const ballast_egress e = egress_slot(neighbors_.interface(ifindex), desired);
  dataplane_.put_egress(id, e);
  written_egress_[id] = e;
  egress_ids_[ifindex] = id;
  return id;
}

size_t BalancerState::sync_egress(const Config& desired) {
  size_t rewritten = 0;
  auto put = [&](uint32_t id, const ballast_egress& e) {
    auto it = written_egress_.find(id);
    if (it != written_egress_.end() && same_egress(it->second, e)) return;
    dataplane_.put_egress(id, e);
    written_egress_[id] = e;
    rewritten++;
  };
  put(0, egress_slot(interface_, desired));
  for (const auto& [ifindex, id] : egress_ids_) {
    if (id == 0) continue;
    try {
      put(id, egress_slot(neighbors_.interface(ifindex), desired));
    } catch (const Error&) {
      // The interface is gone: its backends move when their routes do.
    }
  }
  return rewritten;
}

BalancerState::BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex)
    : dataplane_(dataplane), neighbors_(neighbors), ifindex_(ifindex) {}

BalancerState::BalancerState(const BalancerState& other, DataPlane& dataplane)
    : dataplane_(dataplane),
      neighbors_(other.neighbors_),
      ifindex_(other.ifindex_),
      desired_(other.desired_),
      vips_(other.vips_),
      used_vip_ids_(other.used_vip_ids_),
      used_backend_ids_(other.used_backend_ids_),
      next_backend_id_(other.next_backend_id_),
      written_slots_(other.written_slots_),
      dry_run_(true),
      interface_(other.interface_),
      egress_ids_(other.egress_ids_),
      written_egress_(other.written_egress_) {}

uint32_t BalancerState::allocate_vip_id() {
  for (uint32_t id = 0; id < BALLAST_MAX_VIPS; id++)
    if (used_vip_ids_.insert(id).second) return id;
  throw Error("no free VIP id (at most " + std::to_string(BALLAST_MAX_VIPS) + " VIPs)");
}

// Round robin, not lowest-free: a freed id is reused as late as possible, so
// connection-table entries still naming it have long expired or re-selected.
uint32_t BalancerState::allocate_backend_id() {
  for (uint32_t n = 0; n < BALLAST_MAX_BACKENDS; n++) {
    uint32_t id = (next_backend_id_ + n) % BALLAST_MAX_BACKENDS;
    if (used_backend_ids_.insert(id).second) {
      next_backend_id_ = (id + 1) % BALLAST_MAX_BACKENDS;
      return id;
    }
  }
  throw Error("no free backend slot (at most " + std::to_string(BALLAST_MAX_BACKENDS) + ")");
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

void BalancerState::sync_vip(LiveVip& vip) {
  const bool fo = failing_open(vip);

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
      if (it != written.end() && same_slot(it->second, want[i])) continue;
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
  if (!vip.table || inputs != vip.table_inputs) {
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
    auto table = to_ids(maglev::build_table(base, BALLAST_MAGLEV_SIZE), base_ids);
    if (usable.size() != base.size()) {
      const auto fallback = to_ids(maglev::build_table(usable, BALLAST_MAGLEV_SIZE), usable_ids);
      for (uint32_t i = 0; i < table.size(); i++)
        if (!usable_set.count(table[i])) table[i] = fallback[i];
    }
    if (!vip.table || table != *vip.table) {
      dataplane_.install_table(vip.id, table);
      vip.entries.clear();
      for (uint32_t e : table) vip.entries[e]++;
      vip.table = std::make_shared<const std::vector<uint32_t>>(std::move(table));
    }
    vip.table_inputs = std::move(inputs);
  }
  // 3. Slots that stop taking traffic, once no table names them.
  write_if(false);
}

std::vector<std::string> BalancerState::adopt(const LiveSnapshot& live, const Config& desired) {
  std::vector<std::string> out;
  std::set<uint32_t> claimed;
  for (const auto& [abi_key, info] : live.vips) {
    if (abi_key.port == 0) continue;  // a fragment entry: its VIP's, below
    LiveVip vip;
    vip.id = info.vip_id;
    const VipKey key = VipKey::from_abi(abi_key);
    const VipConfig* want = desired.find_vip(key);
    vip.config = want ? *want : empty_vip(key);
    vip.config.backends.clear();
    // The mode as the map has it: apply() then rewrites it if the config
    // says otherwise.
    vip.config.mode = (info.flags & BALLAST_VIP_F_ENCAP_IPIP)  ? ForwardMode::ipip
                      : (info.flags & BALLAST_VIP_F_ENCAP_GUE) ? ForwardMode::gue
                                                               : ForwardMode::dsr;
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
      // The hop's address is not in the map: apply() finds it again.
      b.hop = NextHop{ifindex_, b.config.address};
      if (auto e = live.egress.find(slot.egress); e != live.egress.end() && slot.egress != 0)
        b.hop.ifindex = static_cast<int>(e->second.ifindex);
      // Weights and checks are not in the maps: take the desired ones
      // (apply() then finds nothing to change when they match).
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
    if (auto t = live.tables.find(vip.id); t != live.tables.end()) {
      for (uint32_t e : t->second) vip.entries[e]++;
      vip.table = std::make_shared<const std::vector<uint32_t>>(t->second);
    }
    used_vip_ids_.insert(vip.id);
    out.push_back("adopt vip " + key.str() + " id " + std::to_string(vip.id) + " with " +
                  std::to_string(vip.backends.size()) + " backends");
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
  return out;
}

std::vector<std::string> BalancerState::apply(const Config& desired) {
  // Refused before any write: an encapsulating VIP needs an outer source
  // of each of its backends' families, and a dsr VIP backends on our link.
  const ballast_egress egress = egress_slot(interface_, desired);
  for (const auto& vip : desired.vips) {
    if (!mode_encapsulates(vip.mode)) continue;
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
  // The live VIPs by key, and their backends by address: a change looks up
  // what it touches instead of scanning every VIP.
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
  // when the encap settings did. The others keep theirs; refresh_neighbors()
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
  std::vector<std::string> changes;
  // Egress slots first: backends and VIPs written below rely on them.
  if (written_egress_.count(0) && !same_egress(written_egress_[0], egress))
    changes.push_back("egress " + desired.interface + " updated");
  sync_egress(desired);
  std::vector<LiveVip> next;
  std::vector<uint32_t> new_backends;

  // Neighbour tables read once per apply and interface (only when a
  // backend is new or its next hop moved).
  std::map<int, std::map<IpAddress, MacAddress>> known_macs;
  auto mac_for = [&](const NextHop& hop) -> std::optional<MacAddress> {
    auto table = known_macs.find(hop.ifindex);
    if (table == known_macs.end())
      table = known_macs.emplace(hop.ifindex, neighbors_.macs(hop.ifindex)).first;
    if (auto it = table->second.find(hop.address); it != table->second.end()) return it->second;
    if (!dry_run_) neighbors_.solicit(hop.ifindex, hop.address);
    return std::nullopt;
  };

  for (const auto& vip_cfg : desired.vips) {
    const auto found = live_by_key.find(vip_cfg.key);
    const LiveVip* old = found == live_by_key.end() ? nullptr : found->second;
    const std::string vname = vip_cfg.key.str();
    LiveVip vip;
    if (old) {
      vip.id = old->id;
      vip.table = old->table;
      vip.table_inputs = old->table_inputs;
      vip.entries = old->entries;
      if (old->config.fail_open != vip_cfg.fail_open)
        changes.push_back("vip fail-open " + vname + " " + (vip_cfg.fail_open ? "on" : "off"));
      if (auto what = option_changes(old->config, vip_cfg); !what.empty())
        changes.push_back("vip options " + vname + ": " + what);
    } else {
      vip.id = allocate_vip_id();
      changes.push_back("vip add " + vname);
    }
    vip.config = vip_cfg;
    for (const auto& b_cfg : vip_cfg.backends) {
      const LiveBackend* prev = old ? live_backend(vip_cfg, b_cfg.address) : nullptr;
      const std::string bname = vname + " " + b_cfg.address.str();
      LiveBackend b;
      const NextHop hop = hops.at({mode_encapsulates(vip_cfg.mode), b_cfg.address});
      if (prev) {
        b = *prev;
        if (prev->hop != hop) {
          b.hop = hop;
          b.mac = mac_for(hop);
          changes.push_back("backend next-hop " + bname + " " + hop.address.str());
        }
        if (prev->config.weight != b_cfg.weight)
          changes.push_back("backend set-weight " + bname + " " +
                            std::to_string(prev->config.weight) + " -> " +
                            std::to_string(b_cfg.weight));
        if (prev->config.check != b_cfg.check)
          changes.push_back("backend check " + bname + ": " + check_description(b_cfg.check));
      } else {
        b.id = allocate_backend_id();
        b.hop = hop;
        b.mac = mac_for(hop);
        // Without a check a backend is up; with one, its first result decides.
        b.health = b_cfg.check.type == CheckType::none ? Health::up : Health::unknown;
        new_backends.push_back(b.id);
        changes.push_back("backend add " + bname + " weight " + std::to_string(b_cfg.weight));
      }
      b.config = b_cfg;
      if (b_cfg.check.type == CheckType::none) b.health = Health::up;
      vip.backends.push_back(b);
    }
    next.push_back(std::move(vip));
  }

  // New slots start from zeroed counters.
  for (uint32_t id : new_backends) dataplane_.reset_counters(CounterMap::backend, id);
  // Other interfaces' egress slots, before a slot names them.
  for (const auto& vip : next)
    for (const auto& b : vip.backends) egress_id(b.hop.ifindex, desired);

  // Tables (and slots) first; then new VIPs become visible.
  std::map<uint32_t, const LiveVip*> live_by_id, next_by_id;
  for (const auto& v : vips_) live_by_id[v.id] = &v;
  for (auto& vip : next) {
    next_by_id[vip.id] = &vip;
    sync_vip(vip);
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
  for (const auto& old : vips_) {
    const auto found = next_by_id.find(old.id);
    const LiveVip* kept = found == next_by_id.end() ? nullptr : found->second;
    if (!kept) {
      dataplane_.delete_vip(old.config.key.to_abi());
      if (old.config.fragments) dataplane_.delete_vip(fragment_key(old.config));
      dataplane_.remove_table(old.id);
      for (const auto& b : old.backends) free_backend(b.id);
      used_vip_ids_.erase(old.id);
      changes.push_back("vip del " + old.config.key.str());
      continue;
    }
    for (const auto& b : old.backends) {
      if (kept->config.find_backend(b.config.address)) continue;
      free_backend(b.id);
      changes.push_back("backend del " + old.config.key.str() + " " + b.config.address.str());
    }
  }

  // Settings that live in the daemon, not the maps: logged like the rest.
  if (desired.skew != desired_.skew) changes.push_back("skew settings changed");
  if (desired.audit != desired_.audit) changes.push_back("audit settings changed");
  if (desired.encap != desired_.encap) changes.push_back("encap settings changed");
  if (desired.reconcile != desired_.reconcile)
    changes.push_back(std::string("reconcile ") + (desired.reconcile ? "on" : "off"));
  vips_ = std::move(next);
  desired_ = desired;
  return changes;
}

std::vector<std::string> BalancerState::plan(const Config& desired) const {
  NullDataPlane null;
  BalancerState copy(*this, null);  // dry_run_: reads neighbours, never solicits
  return copy.apply(desired);
}

BalancerState::LiveBackend* BalancerState::find_backend(uint32_t id, LiveVip** vip_out) {
  for (auto& vip : vips_)
    for (auto& b : vip.backends)
      if (b.id == id) {
        *vip_out = &vip;
        return &b;
      }
  return nullptr;
}

std::vector<std::string> BalancerState::set_health(uint32_t id, Health health,
                                                   const std::string& detail) {
  LiveVip* vip = nullptr;
  LiveBackend* b = find_backend(id, &vip);
  if (!b || b->health == health || health == Health::unknown) return {};
  const Health from = b->health;
  b->health = health;
  sync_vip(*vip);
  return {"backend health " + vip->config.key.str() + " " + b->config.address.str() + " " +
          std::string(health_name(from)) + " -> " + std::string(health_name(health)) +
          (detail.empty() ? "" : " (" + detail + ")")};
}

uint32_t BalancerState::backend_id(const VipKey& key, const IpAddress& address) const {
  for (const auto& vip : vips_) {
    if (vip.config.key != key) continue;
    for (const auto& b : vip.backends)
      if (b.config.address == address) return b.id;
    throw Error("backend " + address.str() + " is not in VIP " + key.str());
  }
  throw Error("VIP " + key.str() + " is not configured");
}

std::vector<std::string> BalancerState::set_drained(const VipKey& key, const IpAddress& address,
                                                    bool drained) {
  LiveVip* vip = nullptr;
  LiveBackend* b = find_backend(backend_id(key, address), &vip);
  if (b->drained == drained) return {};
  b->drained = drained;
  sync_vip(*vip);
  return {std::string(drained ? "backend drain " : "backend undrain ") + key.str() + " " +
          address.str()};
}

std::vector<std::string> BalancerState::move_interface(int ifindex) {
  if (ifindex == ifindex_) return {};
  const int old = ifindex_;
  ifindex_ = ifindex;
  egress_ids_.erase(ifindex);  // the new index is slot 0's now
  size_t hops = 0;
  for (auto& vip : vips_)
    for (auto& b : vip.backends)
      if (b.hop.ifindex == old) {
        b.hop.ifindex = ifindex;
        hops++;
      }
  written_egress_.erase(0);  // rewritten from the interface's facts
  sync_egress(desired_);
  return {"interface " + desired_.interface + " index " + std::to_string(old) + " -> " +
          std::to_string(ifindex) + ": egress slot 0 and " + std::to_string(hops) +
          " next hops follow it"};
}

std::vector<std::string> BalancerState::refresh_neighbors() {
  std::vector<std::string> changes;
  // Only a change: the first apply writes the slots.
  if (!written_egress_.empty())
    if (const size_t n = sync_egress(desired_); n > 0)
      changes.push_back("egress slots rewritten: " + std::to_string(n) +
                        " (an interface's MTU, MAC or address changed)");
  std::map<int, std::map<IpAddress, MacAddress>> tables;
  auto table_of = [&](int ifindex) -> const std::map<IpAddress, MacAddress>& {
    auto it = tables.find(ifindex);
    if (it == tables.end()) it = tables.emplace(ifindex, neighbors_.macs(ifindex)).first;
    return it->second;
  };
  for (auto& vip : vips_) {
    bool changed = false;
    for (auto& b : vip.backends) {
      const std::string bname = vip.config.key.str() + " " + b.config.address.str();
      std::string problem;
      const NextHop hop = next_hop(vip.config.mode, b.config.address, desired_, &problem);
      if (hop != b.hop) {
        // A route change: frames go to another hop's MAC from now on.
        egress_id(hop.ifindex, desired_);
        changes.push_back("backend next-hop " + bname + " " + b.hop.address.str() + " -> " +
                          hop.address.str());
        b.hop = hop;
        b.mac.reset();
        changed = true;
      }
      if (!problem.empty() && b.mac) {
        changes.push_back("backend unreachable " + bname + ": " + problem);
        b.mac.reset();
        changed = true;
        continue;
      }
      if (!problem.empty()) continue;
      const auto& table = table_of(hop.ifindex);
      auto it = table.find(hop.address);
      if (it == table.end()) {
        // A MAC we had stays in use: the kernel ages out entries for hosts
        // it never talks to itself, and XDP_TX traffic is invisible to it.
        if (!b.mac) neighbors_.solicit(hop.ifindex, hop.address);
        continue;
      }
      if (b.mac == it->second) continue;
      changes.push_back("backend mac " + bname + " " +
                        (b.mac ? mac_str(*b.mac) : std::string("unresolved")) + " -> " +
                        mac_str(it->second));
      b.mac = it->second;
      changed = true;
    }
    if (changed) sync_vip(vip);
  }
  return changes;
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

std::vector<VipView> BalancerState::view() const {
  std::vector<VipView> out;
  for (const auto& vip : vips_) {
    const bool fo = failing_open(vip);
    VipView v{vip.id, vip.config.key, vip.config.mode, vip.config.fail_open, fo, {}};
    for (const auto& b : vip.backends) {
      const auto e = vip.entries.find(b.id);
      v.backends.push_back({b.id, b.config.address, b.config.weight, b.mac, b.health, b.drained,
                            takes_new_flows(b, fo), e == vip.entries.end() ? 0 : e->second,
                            b.config.check});
    }
    out.push_back(std::move(v));
  }
  return out;
}

LiveSnapshot BalancerState::expected() const {
  LiveSnapshot out;
  for (const auto& vip : vips_) {
    out.vips.emplace_back(vip.config.key.to_abi(), vip_info(vip));
    if (vip.config.fragments) out.vips.emplace_back(fragment_key(vip.config), fragment_info(vip));
    if (vip.table) out.tables[vip.id] = *vip.table;
  }
  for (const auto& [id, e] : written_egress_)
    if (e.ifindex != 0) out.egress[id] = e;
  for (const auto& [id, slot] : written_slots_)
    if (slot.family != 0) out.backends[id] = slot;
  return out;
}

std::vector<std::string> BalancerState::rewrite_all(const LiveSnapshot& live) {
  std::vector<std::string> out;
  const LiveSnapshot want = expected();
  // Active slots before the tables that name them, inactive ones after the
  // tables stop naming them: the same order apply() keeps.
  auto repair_slots = [&](bool active) {
    for (const auto& [id, slot] : want.backends) {
      if (static_cast<bool>(slot.flags & BALLAST_BACKEND_F_ACTIVE) != active) continue;
      auto it = live.backends.find(id);
      if (it != live.backends.end() && same_slot(it->second, slot)) continue;
      dataplane_.put_backend(id, slot);
      out.push_back("repair backend slot " + std::to_string(id));
    }
  };
  for (const auto& [id, e] : want.egress) {
    auto it = live.egress.find(id);
    if (it != live.egress.end() && same_egress(it->second, e)) continue;
    dataplane_.put_egress(id, e);
    out.push_back("repair egress slot " + std::to_string(id));
  }
  repair_slots(true);
  for (const auto& [vip_id, table] : want.tables) {
    auto it = live.tables.find(vip_id);
    if (it != live.tables.end() && it->second == table) continue;
    dataplane_.install_table(vip_id, table);
    out.push_back("repair Maglev table of vip id " + std::to_string(vip_id));
  }
  repair_slots(false);
  auto same_key = [](const ballast_vip_key& a, const ballast_vip_key& b) {
    return std::memcmp(&a, &b, sizeof(a)) == 0;
  };
  for (const auto& [key, info] : want.vips) {
    bool ok = false;
    for (const auto& [k, i] : live.vips) ok = ok || (same_key(k, key) && same_info(i, info));
    // put_vip writes vip_by_id too: a port entry whose mirror drifted is
    // rewritten.
    if (auto it = live.vip_by_id.find(info.vip_id); key.port != 0 && it != live.vip_by_id.end())
      ok = ok && same_key(it->second.key, key) && same_info(it->second.info, info);
    // And the address's bit in the VIP filter.
    if (!live.vip_filter.empty()) ok = ok && vip_filter_has(live.vip_filter, key.addr);
    if (ok) continue;
    dataplane_.put_vip(key, info);
    out.push_back("repair vip " + VipKey::from_abi(key).str());
  }
  for (const auto& [k, i] : live.vips) {
    bool known = false;
    for (const auto& [key, info] : want.vips) known = known || same_key(k, key);
    if (known) continue;
    dataplane_.delete_vip(k);
    out.push_back("remove stray vip " + VipKey::from_abi(k).str());
  }
  for (const auto& [id, slot] : live.backends) {
    if (want.backends.count(id)) continue;
    dataplane_.put_backend(id, ballast_backend{});
    out.push_back("clear stray backend slot " + std::to_string(id));
  }
  return out;
}

}  // namespace ballast
