#include "balancer_state.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "error.h"
#include "maglev.h"

namespace ballast {

BalancerState::BalancerState(DataPlane& dataplane, NeighborSource& neighbors, int ifindex)
    : dataplane_(dataplane), neighbors_(neighbors), ifindex_(ifindex) {}

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

void BalancerState::write_backend(const LiveVip& vip, const LiveBackend& b) {
  ballast_backend slot{};
  slot.addr = b.config.address.to_abi();
  slot.family = b.config.address.family;
  slot.vip_id = vip.id;
  if (b.mac) {
    std::memcpy(slot.mac, b.mac->data(), 6);
    slot.flags = BALLAST_BACKEND_F_ACTIVE;
  }
  dataplane_.put_backend(b.id, slot);
}

void BalancerState::deactivate_backend(uint32_t id) {
  dataplane_.put_backend(id, ballast_backend{});
  used_backend_ids_.erase(id);
}

void BalancerState::sync_table(LiveVip& vip) {
  // Only backends with a MAC can take traffic; weight 0 takes no new flows.
  std::vector<maglev::Endpoint> endpoints;
  std::vector<uint32_t> ids;
  for (const auto& b : vip.backends) {
    if (!b.mac) continue;
    endpoints.push_back({b.config.address.str(), b.config.weight});
    ids.push_back(b.id);
  }
  auto table = maglev::build_table(endpoints, BALLAST_MAGLEV_SIZE);
  for (auto& e : table)
    if (e != maglev::kNoBackend) e = ids[e];
  if (table == vip.table) return;
  dataplane_.install_table(vip.id, table);
  vip.table = std::move(table);
}

std::vector<std::string> BalancerState::apply(const Config& desired) {
  std::vector<std::string> changes;
  std::vector<LiveVip> next;

  // Neighbour table read once per apply (only when a backend is new).
  std::optional<std::map<IpAddress, MacAddress>> known_macs;
  auto mac_for = [&](const IpAddress& a) -> std::optional<MacAddress> {
    if (!known_macs) known_macs = neighbors_.macs(ifindex_);
    if (auto it = known_macs->find(a); it != known_macs->end()) return it->second;
    neighbors_.solicit(ifindex_, a);
    return std::nullopt;
  };

  // 1. Backends first: a slot exists before any table names it.
  for (const auto& vip_cfg : desired.vips) {
    auto old = std::find_if(vips_.begin(), vips_.end(),
                            [&](const LiveVip& v) { return v.config.key == vip_cfg.key; });
    LiveVip vip;
    if (old != vips_.end()) {
      vip.id = old->id;
      vip.table = old->table;
    } else {
      vip.id = allocate_vip_id();
      changes.push_back("vip add " + vip_cfg.key.str());
    }
    vip.config = vip_cfg;
    for (const auto& b_cfg : vip_cfg.backends) {
      const LiveBackend* prev = nullptr;
      if (old != vips_.end())
        for (const auto& b : old->backends)
          if (b.config.address == b_cfg.address) prev = &b;
      LiveBackend b{prev ? prev->id : allocate_backend_id(), b_cfg,
                    prev ? prev->mac : std::nullopt};
      if (!prev) {
        b.mac = mac_for(b_cfg.address);
        dataplane_.reset_counters(CounterMap::backend, b.id);
        write_backend(vip, b);
        changes.push_back("backend add " + vip_cfg.key.str() + " " + b_cfg.address.str() +
                          " weight " + std::to_string(b_cfg.weight));
      } else if (prev->config.weight != b_cfg.weight) {
        changes.push_back("backend set-weight " + vip_cfg.key.str() + " " + b_cfg.address.str() +
                          " " + std::to_string(prev->config.weight) + " -> " +
                          std::to_string(b_cfg.weight));
      }
      vip.backends.push_back(b);
    }
    next.push_back(std::move(vip));
  }

  // 2. Tables, swapped whole; 3. then new VIPs become visible.
  for (auto& vip : next) {
    sync_table(vip);
    const bool is_new = std::none_of(vips_.begin(), vips_.end(),
                                     [&](const LiveVip& v) { return v.id == vip.id; });
    if (is_new) {
      dataplane_.reset_counters(CounterMap::vip, vip.id);
      dataplane_.put_vip(vip.config.key.to_abi(), ballast_vip_info{vip.id, 0});
    }
  }

  // 4. What left: VIPs stop matching before their table and backends go;
  // backends leave after the table that no longer names them.
  for (const auto& old : vips_) {
    auto kept = std::find_if(next.begin(), next.end(),
                             [&](const LiveVip& v) { return v.id == old.id; });
    if (kept == next.end()) {
      dataplane_.delete_vip(old.config.key.to_abi());
      dataplane_.remove_table(old.id);
      for (const auto& b : old.backends) deactivate_backend(b.id);
      used_vip_ids_.erase(old.id);
      changes.push_back("vip del " + old.config.key.str());
      continue;
    }
    for (const auto& b : old.backends) {
      if (kept->config.find_backend(b.config.address)) continue;
      deactivate_backend(b.id);
      changes.push_back("backend del " + old.config.key.str() + " " + b.config.address.str());
    }
  }

  vips_ = std::move(next);
  desired_ = desired;
  return changes;
}

std::vector<std::string> BalancerState::refresh_neighbors() {
  std::vector<std::string> changes;
  const auto table = neighbors_.macs(ifindex_);
  for (auto& vip : vips_) {
    bool changed = false;
    for (auto& b : vip.backends) {
      auto it = table.find(b.config.address);
      if (it == table.end()) {
        // A MAC we had stays in use: the kernel ages out entries for hosts
        // it never talks to itself, and XDP_TX traffic is invisible to it.
        if (!b.mac) neighbors_.solicit(ifindex_, b.config.address);
        continue;
      }
      if (b.mac == it->second) continue;
      changes.push_back("backend mac " + vip.config.key.str() + " " + b.config.address.str() + " " +
                        (b.mac ? mac_str(*b.mac) : std::string("unresolved")) + " -> " +
                        mac_str(it->second));
      b.mac = it->second;
      write_backend(vip, b);
      changed = true;
    }
    if (changed) sync_table(vip);
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

std::vector<VipView> BalancerState::view() const {
  std::vector<VipView> out;
  for (const auto& vip : vips_) {
    std::map<uint32_t, uint32_t> entries;
    for (uint32_t e : vip.table) entries[e]++;
    VipView v{vip.id, vip.config.key, {}};
    for (const auto& b : vip.backends)
      v.backends.push_back({b.id, b.config.address, b.config.weight, b.mac, entries[b.id]});
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace ballast
