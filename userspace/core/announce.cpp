#include "announce.h"

#include <algorithm>

namespace ballast {

uint32_t usable_backends(const VipView& vip) {
  return static_cast<uint32_t>(std::count_if(
      vip.backends.begin(), vip.backends.end(),
      [](const BackendView& b) { return b.takes_new_flows && b.health == Health::up; }));
}

uint32_t min_usable(const Config& config, const VipConfig& vip) {
  if (!config.fleet.announce) return 0;
  return vip.min_usable.value_or(config.fleet.announce->min_usable);
}

namespace {

std::string usable_text(uint32_t usable, size_t of, uint32_t min) {
  return std::to_string(usable) + " of " + std::to_string(of) + " backends usable (min_usable " +
         std::to_string(min) + ")";
}

}  // namespace

std::vector<AddressVerdict> judge_addresses(const Config& config, const std::vector<VipView>& vips,
                                            bool attached, bool left) {
  std::map<VipKey, const VipView*> live;
  for (const auto& v : vips) live.emplace(v.key, &v);
  std::map<IpAddress, AddressVerdict> by_address;
  std::map<IpAddress, size_t> vips_at;
  for (const auto& vip : config.vips) {
    auto [it, fresh] = by_address.try_emplace(vip.key.address);
    AddressVerdict& verdict = it->second;
    if (fresh) {
      verdict.address = vip.key.address;
      verdict.announce = attached && !left;
      if (!attached)
        verdict.reason = "the program is not attached";
      else if (left)
        verdict.reason = "left the fleet (ballast fleet leave)";
    }
    ++vips_at[vip.key.address];
    if (!verdict.announce) continue;
    const auto found = live.find(vip.key);
    const uint32_t usable = found == live.end() ? 0 : usable_backends(*found->second);
    const uint32_t min = min_usable(config, vip);
    const std::string numbers = usable_text(usable, vip.backends.size(), min);
    if (usable < min) {
      verdict.announce = false;
      verdict.reason = vip.key.str() + " has " + numbers;
    } else {
      verdict.reason = vip.key.str() + ": " + numbers;
    }
  }
  std::vector<AddressVerdict> out;
  for (auto& [address, verdict] : by_address) {
    // Several VIPs at one address: name them by count, not the last one.
    if (verdict.announce && vips_at[address] > 1)
      verdict.reason = "each of its " + std::to_string(vips_at[address]) +
                       " VIPs has its min_usable usable backends";
    out.push_back(std::move(verdict));
  }
  return out;
}

std::vector<Finding> audit_announcements(const std::vector<AddressVerdict>& verdicts,
                                         const std::vector<IpAddress>& present, bool left,
                                         uint32_t table) {
  const std::set<IpAddress> held(present.begin(), present.end());
  const std::string where = " (route in table " + std::to_string(table) + ")";
  std::vector<Finding> out;
  for (const auto& v : verdicts) {
    const bool is_held = held.count(v.address) != 0;
    if (is_held && !v.announce) {
      out.push_back({Severity::error, "announce", "", "",
                     v.address.str() + " is announced" + where + " though " + v.reason +
                         ": routers send it traffic this balancer should not take",
                     "ballastd withdraws it at its next update; if it stays, look for another "
                     "process writing table " +
                         std::to_string(table) + " (`ip route show table " + std::to_string(table) +
                         "`)"});
    } else if (!is_held && v.announce) {
      out.push_back({Severity::warning, "announce", "", "",
                     v.address.str() + " is withdrawn though " + v.reason +
                         ": the routers send its traffic to the other balancers only",
                     "ballastd announces it at its next update; if it stays withdrawn, look "
                     "for another process removing routes from table " +
                         std::to_string(table)});
    } else if (!is_held && left) {
      out.push_back({Severity::info, "announce", "", "",
                     v.address.str() + " is withdrawn: this balancer left the fleet",
                     "`ballast fleet join` announces its VIPs again"});
    }
  }
  return out;
}

void Announcer::adopt(const Config& config, bool left) {
  left_ = left;
  if (!config.fleet.announce) return;
  table_ = config.fleet.announce->table;
  for (const auto& a : sink_.list(*table_)) installed_.insert(a);
}

template <typename Op>
bool Announcer::attempt(Op&& op) {
  try {
    op();
    return true;
  } catch (const std::exception& e) {
    failure_ += (failure_.empty() ? "" : "\n") + std::string(e.what());
    return false;
  }
}

std::vector<Change> Announcer::update(const Config& config, const std::vector<VipView>& vips,
                                      bool attached) {
  std::vector<Change> out;
  failure_.clear();
  const std::optional<uint32_t> table =
      config.fleet.announce ? std::optional(config.fleet.announce->table) : std::nullopt;
  verdicts_ =
      table ? judge_addresses(config, vips, attached, left_) : std::vector<AddressVerdict>{};
  // Announce off, or another table: everything leaves the old table first.
  if (table_ && table_ != table) {
    const std::string why =
        table ? "fleet.announce.table is now " + std::to_string(*table) : "fleet.announce is off";
    for (auto it = installed_.begin(); it != installed_.end();) {
      const IpAddress a = *it;
      if (!attempt([&] { sink_.remove(*table_, a); })) {
        ++it;
        continue;
      }
      it = installed_.erase(it);
      out.push_back(AnnounceChanged{a, false, *table_, why});
    }
    // What could not be withdrawn stays in the old table, tried again
    // at the next update before anything goes to the new one.
    if (!installed_.empty()) return out;
  }
  table_ = table;
  if (!table_) return out;
  std::map<IpAddress, const AddressVerdict*> verdict_of;
  for (const auto& v : verdicts_) verdict_of.emplace(v.address, &v);
  // Withdraw first: an address that must go goes before any other comes.
  for (auto it = installed_.begin(); it != installed_.end();) {
    const auto v = verdict_of.find(*it);
    if (v != verdict_of.end() && v->second->announce) {
      ++it;
      continue;
    }
    const IpAddress a = *it;
    if (!attempt([&] { sink_.remove(*table_, a); })) {
      ++it;
      continue;
    }
    it = installed_.erase(it);
    out.push_back(AnnounceChanged{a, false, *table_,
                                  v == verdict_of.end() ? "no VIP at it" : v->second->reason});
  }
  for (const auto& v : verdicts_) {
    if (!v.announce || installed_.count(v.address)) continue;
    if (!attempt([&] { sink_.add(*table_, v.address); })) continue;
    installed_.insert(v.address);
    out.push_back(AnnounceChanged{v.address, true, *table_, v.reason});
  }
  return out;
}

}  // namespace ballast
