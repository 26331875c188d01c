#include "audit.h"

#include <arpa/inet.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <tuple>


namespace ballast {
namespace {

std::string pct(double share) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", share * 100);
  return buf;
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

Finding finding(Severity s, std::string check, std::string vip, std::string backend,
                std::string message, std::string hint) {
  return {
      s, std::move(check), std::move(vip), std::move(backend), std::move(message), std::move(hint)};
}

// The live VIPs by key: a check looks up its VIP, never scans them all.
using LiveIndex = std::map<VipKey, const VipView*>;
LiveIndex index_live(const std::vector<VipView>& live) {
  LiveIndex index;
  for (const auto& v : live) index[v.key] = &v;
  return index;
}

const BackendView* live_backend(const LiveIndex& live, const VipKey& vip,
                                const IpAddress& address) {
  auto it = live.find(vip);
  if (it == live.end()) return nullptr;
  for (const auto& b : it->second->backends)
    if (b.address == address) return &b;
  return nullptr;
}

// The slot's backend address; "" for a free slot.
std::string slot_address(const ballast_backend& s) {
  return s.family ? IpAddress::from_abi(s.addr, s.family).str() : "";
}

std::string slot_text(const ballast_backend& s) {
  char mac[32];
  std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", s.mac[0], s.mac[1], s.mac[2],
                s.mac[3], s.mac[4], s.mac[5]);
  return (s.family ? slot_address(s) : std::string("(free)")) + " mac " + mac + " flags " +
         std::to_string(s.flags) + " vip id " + std::to_string(s.vip_id);
}

}  // namespace

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::info:
      return "info";
    case Severity::warning:
      return "warning";
    case Severity::error:
      return "error";
  }
  return "unknown";
}

const std::vector<std::string>& audit_check_ids() {
  static const std::vector<std::string> ids = {
      "share-limit", "single-backend", "duplicate-backend", "backend-is-vip", "unresolved-backend",
      "ring-share",  "traffic-skew",   "backend-down",      "vip-near-down",  "drift",
      "announce"};
  return ids;
}

std::vector<Finding> audit_config(const Config& config, const std::vector<VipView>& live) {
  ConfigAuditScope scope;
  scope.max_share = config.audit.max_share;
  for (const auto& vip : config.vips) {
    scope.vips.push_back(&vip);
    scope.vip_at.emplace(vip.key.address, vip.key.str());
  }
  scope.live = live;
  return audit_config(scope);
}

std::vector<Finding> audit_config(const ConfigAuditScope& scope) {
  std::vector<Finding> out;
  const LiveIndex live = index_live(scope.live);
  const auto& vip_addresses = scope.vip_at;
  for (const VipConfig* vip_ptr : scope.vips) {
    const VipConfig& vip = *vip_ptr;
    const std::string name = vip.key.str();
    const double max_share = vip.max_share.value_or(scope.max_share);
    std::set<IpAddress> seen;
    uint32_t weighted = 0;
    const BackendConfig* only_weighted = nullptr;
    for (const auto& b : vip.backends) {
      if (!seen.insert(b.address).second)
        out.push_back(finding(Severity::error, "duplicate-backend", name, b.address.str(),
                              "VIP " + name + " lists backend " + b.address.str() + " twice.",
                              "keep one entry per backend address"));
      if (auto it = vip_addresses.find(b.address); it != vip_addresses.end())
        out.push_back(finding(Severity::error, "backend-is-vip", name, b.address.str(),
                              "Backend " + b.address.str() + " of VIP " + name +
                                  " is itself the address of VIP " + it->second +
                                  ": its traffic would loop through the balancer.",
                              "use the backend's own address, not a VIP"));
      if (b.weight > 0) {
        ++weighted;
        only_weighted = &b;
      }
    }
    if (vip.backends.empty()) {
      out.push_back(finding(Severity::warning, "single-backend", name, "",
                            "VIP " + name + " has no backends: its new flows are dropped.",
                            "add backends, or delete the VIP"));
    } else if (vip.backends.size() == 1) {
      out.push_back(finding(Severity::warning, "single-backend", name,
                            vip.backends[0].address.str(),
                            "VIP " + name + " has one backend, " + vip.backends[0].address.str() +
                                ": all its traffic goes there.",
                            "add a second backend for redundancy"));
    } else if (weighted == 0) {
      out.push_back(finding(Severity::error, "single-backend", name, "",
                            "None of VIP " + name + "'s " + std::to_string(vip.backends.size()) +
                                " backends has weight > 0: its new flows are dropped.",
                            "give a backend weight, or delete the VIP"));
    } else if (weighted == 1) {
      out.push_back(finding(Severity::error, "single-backend", name, only_weighted->address.str(),
                            "Only backend " + only_weighted->address.str() + " of VIP " + name +
                                "'s " + std::to_string(vip.backends.size()) +
                                " backends has weight > 0: it gets every new flow.",
                            "give the other backends weight, or drain them instead if this is "
                            "maintenance"));
    }
    // Shares by weight among the backends that would take new flows: not
    // known down, not drained, weight > 0.
    double total = 0;
    size_t taking = 0;
    for (const auto& b : vip.backends) {
      const BackendView* now = live_backend(live, vip.key, b.address);
      if (b.weight == 0 || (now && (now->health == Health::down || now->drained))) continue;
      total += b.weight;
      ++taking;
    }
    if (taking < 2) continue;  // single-backend and vip-near-down say it
    for (const auto& b : vip.backends) {
      const BackendView* now = live_backend(live, vip.key, b.address);
      if (b.weight == 0 || (now && (now->health == Health::down || now->drained))) continue;
      const double share = b.weight / total;
      if (share > max_share + 1e-9)
        out.push_back(finding(
            Severity::error, "share-limit", name, b.address.str(),
            "Backend " + b.address.str() + " would get " + pct(share) + " of VIP " + name +
                "'s new flows (weight " + std::to_string(b.weight) + " of " +
                std::to_string(static_cast<uint64_t>(total)) + "), above the " + pct(max_share) +
                " limit, while " + std::to_string(taking - 1) +
                (taking == 2 ? " other backend takes traffic." : " other backends take traffic."),
            "lower its weight, or raise max_share for this VIP if the concentration is "
            "intended"));
    }
  }
  return out;
}

std::vector<Finding> audit_live(const std::vector<VipView>& vips, const std::vector<VipSkew>& skew,
                                const SkewSettings& settings) {
  std::vector<Finding> out;
  std::map<uint32_t, const VipSkew*> skew_of;
  for (const auto& s : skew) skew_of[s.id] = &s;
  for (const auto& vip : vips) {
    const std::string name = vip.key.str();
    size_t usable = 0;
    for (const auto& b : vip.backends) {
      if (!b.mac)
        out.push_back(finding(Severity::error, "unresolved-backend", name, b.address.str(),
                              "Backend " + b.address.str() + " of VIP " + name +
                                  " has no MAC address (no neighbour entry): it takes no traffic.",
                              "check it is up and on the balancer's subnet (ip neigh; ping it "
                              "from the balancer)"));
      if (b.health == Health::down)
        out.push_back(finding(Severity::warning, "backend-down", name, b.address.str(),
                              "Backend " + b.address.str() + " of VIP " + name +
                                  " fails its health check (" + check_description(b.check) + ").",
                              "see its last check in `ballast backend list`"));
      usable += b.takes_new_flows && b.health == Health::up;
    }
    if (!vip.backends.empty() && usable == 0)
      out.push_back(finding(Severity::error, "vip-near-down", name, "",
                            "VIP " + name + " has no usable backend of " +
                                std::to_string(vip.backends.size()) +
                                (vip.failing_open ? ": failing open to all of them."
                                                  : ": its new flows are dropped."),
                            "bring a backend back up or undrain one"));
    else if (vip.backends.size() > 1 && usable == 1)
      out.push_back(finding(
          Severity::warning, "vip-near-down", name, "",
          "VIP " + name + " has one usable backend of " + std::to_string(vip.backends.size()) + ".",
          "bring the others back up or undrain them"));

    auto it = skew_of.find(vip.id);
    if (it == skew_of.end()) continue;
    const VipSkew& s = *it->second;
    bool any_expected = false;
    for (const auto& b : s.backends) {
      any_expected = any_expected || b.expected_share > 0;
      if (b.ring_skew && (*b.ring_skew > 1.1 || *b.ring_skew < 0.9)) {
        const bool bad = *b.ring_skew > 2 || *b.ring_skew < 0.5;
        out.push_back(finding(
            bad ? Severity::error : Severity::warning, "ring-share", name, b.address.str(),
            "Backend " + b.address.str() + " holds " + pct(b.ring_share) + " of VIP " + name +
                "'s live Maglev table against an expected " + pct(b.expected_share) +
                " (ring skew " + fixed2(*b.ring_skew) + ").",
            "compare `ballast skew` with the config; a table edited outside ballastd is drift "
            "(reconcile: true repairs it)"));
      }
      if (b.expected_share == 0 && b.ring_share > 0.001)
        out.push_back(finding(Severity::error, "ring-share", name, b.address.str(),
                              "Backend " + b.address.str() + " holds " + pct(b.ring_share) +
                                  " of VIP " + name +
                                  "'s live Maglev table but should take no new flows (down, "
                                  "drained or weight 0).",
                              "a table edited outside ballastd is drift (reconcile: true repairs "
                              "it)"));
      if (b.skewed_for && *b.skewed_for >= settings.hold && b.skew_new_flows)
        out.push_back(finding(
            Severity::error, "traffic-skew", name, b.address.str(),
            "Backend " + b.address.str() + " got " + pct(b.observed_new_flows) + " of VIP " + name +
                "'s " + std::to_string(s.window.new_flows) + " new flows in the last " +
                std::to_string(static_cast<int>(s.window_seconds + 0.5)) +
                " s against an expected " + pct(b.expected_share) + " (skew " +
                fixed2(*b.skew_new_flows) + ", z " + fixed2(b.z) + ") for " +
                std::to_string(b.skewed_for->count()) + " s.",
            "run `ballast audit` for drift and ring share; check the backends' weights"));
    }
    if (any_expected && s.ring_foreign_share > 0.001)
      out.push_back(
          finding(Severity::error, "ring-share", name, "",
                  pct(s.ring_foreign_share) + " of VIP " + name +
                      "'s live Maglev table names no backend of the VIP.",
                  "a table edited outside ballastd is drift (reconcile: true repairs it)"));
  }
  return out;
}

std::vector<Finding> audit_drift(const LiveSnapshot& expected, const LiveSnapshot& live,
                                 const std::vector<VipView>& vips, bool program_attached,
                                 const std::string& interface) {
  std::vector<Finding> out;
  const std::string hint =
      "something other than ballastd wrote the maps; set reconcile: true or restart ballastd to "
      "rewrite them";
  std::map<uint32_t, std::string> vip_name;
  for (const auto& v : vips) vip_name[v.id] = v.key.str();
  auto name_of = [&](uint32_t id) {
    auto it = vip_name.find(id);
    return it == vip_name.end() ? "vip id " + std::to_string(id) : it->second;
  };
  auto key_bytes = [](const ballast_vip_key& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
  };
  // Flags in the low 16 bits, the GUE port (host order) above them.
  std::map<std::string, uint32_t> want_vips, have_vips, want_flags, have_flags;
  auto flags_text = [](uint32_t v) {
    return "flags " + std::to_string(v & 0xffff) + " and GUE port " + std::to_string(v >> 16);
  };
  std::map<std::string, std::string> have_names;
  for (const auto& [k, i] : expected.vips) {
    want_vips[key_bytes(k)] = i.vip_id;
    want_flags[key_bytes(k)] = i.flags | static_cast<uint32_t>(ntohs(i.gue_port)) << 16;
  }
  for (const auto& [k, i] : live.vips) {
    have_vips[key_bytes(k)] = i.vip_id;
    have_flags[key_bytes(k)] = i.flags | static_cast<uint32_t>(ntohs(i.gue_port)) << 16;
    have_names[key_bytes(k)] = VipKey::from_abi(k).str();
  }
  for (const auto& [k, id] : want_vips) {
    auto it = have_vips.find(k);
    if (it == have_vips.end())
      out.push_back(finding(Severity::error, "drift", name_of(id), "",
                            "VIP " + name_of(id) + " is missing from the vips map.", hint));
    else if (it->second != id)
      out.push_back(finding(Severity::error, "drift", name_of(id), "",
                            "VIP " + name_of(id) + " points at table " +
                                std::to_string(it->second) + " in the vips map, not " +
                                std::to_string(id) + ".",
                            hint));
    else if (have_flags[k] != want_flags[k])
      out.push_back(finding(Severity::error, "drift", name_of(id), "",
                            "VIP " + name_of(id) + " has " + flags_text(have_flags[k]) +
                                " in the vips map, not " + flags_text(want_flags[k]) + ".",
                            hint));
  }
  // vip_by_id must mirror every port entry: established flows take their
  // VIP's mode from it (docs/dataplane.md).
  for (const auto& [k, i] : live.vips) {
    if (k.port == 0) continue;
    auto it = live.vip_by_id.find(i.vip_id);
    if (it == live.vip_by_id.end()) continue;  // not read by this source
    const ballast_vip_entry want{.key = k, .info = i};
    if (std::memcmp(&it->second, &want, sizeof(want)) != 0)
      out.push_back(finding(
          Severity::error, "drift", have_names[key_bytes(k)], "",
          "VIP " + have_names[key_bytes(k)] + "'s vip_by_id entry (id " + std::to_string(i.vip_id) +
              ") does not match the vips map: its established flows take the wrong mode or the "
              "slower path.",
          hint));
  }
  // Every VIP key's address must have its bit in the VIP address filter:
  // with the bit clear the data plane passes the VIP's packets to the
  // host's own stack.
  if (!live.vip_filter.empty())
    for (const auto& [k, i] : live.vips)
      if (!vip_filter_has(live.vip_filter, k.addr))
        out.push_back(finding(Severity::error, "drift", have_names[key_bytes(k)], "",
                              "VIP " + have_names[key_bytes(k)] +
                                  "'s address has no bit in the vip_filter map: its packets are "
                                  "passed to this host instead of forwarded.",
                              hint));
  for (const auto& [k, id] : have_vips)
    if (!want_vips.count(k))
      out.push_back(finding(Severity::error, "drift", have_names[k], "",
                            "The vips map holds VIP " + have_names[k] +
                                ", which ballastd did not write (table id " + std::to_string(id) +
                                ").",
                            hint));
  for (const auto& [id, want] : expected.egress) {
    auto it = live.egress.find(id);
    if (it == live.egress.end() || std::memcmp(&it->second, &want, sizeof(want)) != 0)
      out.push_back(finding(Severity::error, "drift", "", "",
                            "Egress slot " + std::to_string(id) + " (interface index " +
                                std::to_string(want.ifindex) +
                                ") differs from what ballastd wrote: source MAC, MTU or outer "
                                "source addresses changed.",
                            hint));
  }
  for (const auto& [id, want] : expected.backends) {
    auto it = live.backends.find(id);
    const std::string vip = name_of(want.vip_id);
    if (it == live.backends.end())
      out.push_back(finding(Severity::error, "drift", vip, slot_address(want),
                            "Backend slot " + std::to_string(id) + " of VIP " + vip +
                                " is empty in the map; ballastd wrote " + slot_text(want) + ".",
                            hint));
    else if (std::memcmp(&it->second, &want, sizeof(want)) != 0)
      out.push_back(finding(Severity::error, "drift", vip, slot_address(want),
                            "Backend slot " + std::to_string(id) + " of VIP " + vip + " holds " +
                                slot_text(it->second) + "; ballastd wrote " + slot_text(want) + ".",
                            hint));
  }
  for (const auto& [id, have] : live.backends)
    if (!expected.backends.count(id))
      out.push_back(finding(Severity::error, "drift", "", slot_address(have),
                            "Backend slot " + std::to_string(id) + " holds " + slot_text(have) +
                                ", which ballastd did not write.",
                            hint));
  for (const auto& [vip_id, want] : expected.tables) {
    auto it = live.tables.find(vip_id);
    const std::string vip = name_of(vip_id);
    if (it == live.tables.end()) {
      out.push_back(finding(Severity::error, "drift", vip, "",
                            "VIP " + vip + " has no Maglev table in the map.", hint));
      continue;
    }
    if (same_entries(it->second, want)) continue;
    if (!it->second.entries) {
      out.push_back(finding(Severity::error, "drift", vip, "",
                            "VIP " + vip + "'s Maglev table is map id " +
                                std::to_string(it->second.map_id) +
                                ", not the one ballastd installed, and ballastd may not read it "
                                "(opening another process's map takes CAP_SYS_ADMIN).",
                            hint));
      continue;
    }
    const auto& want_entries = *want.entries;
    const auto& live_entries = *it->second.entries;
    size_t differ = 0;
    std::map<uint32_t, size_t> now;
    for (size_t i = 0; i < want_entries.size() && i < live_entries.size(); ++i) {
      if (want_entries[i] == live_entries[i]) continue;
      ++differ;
      ++now[live_entries[i]];  // where the changed entries went
    }
    // Name the slot that gained most of the changed entries, the usual
    // shape of a bad edit.
    uint32_t top = 0;
    size_t top_count = 0;
    for (const auto& [slot, n] : now)
      if (n > top_count) std::tie(top, top_count) = std::tie(slot, n);
    std::string backend;
    for (const auto& v : vips)
      for (const auto& b : v.backends)
        if (b.id == top) backend = b.address.str();
    out.push_back(
        finding(Severity::error, "drift", vip, backend,
                std::to_string(differ) + " of VIP " + vip + "'s " + std::to_string(want_entries.size()) +
                    " Maglev table entries differ from the table ballastd installed; " +
                    (backend.empty() ? "slot " + std::to_string(top) : "backend " + backend) +
                    " now holds " + std::to_string(top_count) + " of them.",
                hint));
  }
  // Every map finding so far is repaired by rewriting the maps; a program
  // that is not attached is not (a restart, or the interface coming back).
  for (auto& f : out) f.repair = Repair::rewrite_maps;
  if (!program_attached)
    out.insert(out.begin(),
               finding(Severity::error, "drift", "", "",
                       "ballastd's XDP program is not attached to " + interface +
                           ": nothing is balanced.",
                       "restart ballastd; check `ip link show " + interface +
                           "` for another XDP program"));
  return out;
}

std::vector<Finding> new_findings(const std::vector<Finding>& before,
                                  const std::vector<Finding>& after) {
  // A finding is the same one while its check, VIP, backend and severity
  // stay (its numbers may move); one about neither a VIP nor a backend is
  // told apart by its sentence.
  using Key = std::tuple<std::string, std::string, std::string, Severity, std::string>;
  auto key = [](const Finding& f) {
    return Key{f.check, f.vip, f.backend, f.severity,
               f.vip.empty() && f.backend.empty() ? f.message : ""};
  };
  std::set<Key> known;
  for (const auto& f : before) known.insert(key(f));
  std::vector<Finding> out;
  for (const auto& f : after)
    if (!known.count(key(f))) out.push_back(f);
  return out;
}

std::vector<Finding> ChangeAudit::added_errors() const {
  std::vector<Finding> out;
  for (const auto& f : added)
    if (f.severity == Severity::error) out.push_back(f);
  return out;
}

bool has_errors(const std::vector<Finding>& findings) {
  for (const auto& f : findings)
    if (f.severity == Severity::error) return true;
  return false;
}

std::string findings_text(const std::vector<Finding>& findings) {
  std::string out;
  for (const auto& f : findings)
    out += (out.empty() ? "" : "\n") + std::string(severity_name(f.severity)) + " " + f.check +
           ": " + f.message + " (hint: " + f.hint + ")";
  return out;
}

}  // namespace ballast
