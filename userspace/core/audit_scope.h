// audit_scope.h: what the config checks (audit.h, audit_config) look at:
// some VIPs' configs with what is known of their running backends. The
// whole config for the periodic audit and a whole-config change; only the
// VIPs a one-VIP change touches for that change's pre-apply audit
// (BalancerState::audit_scope), so its cost does not grow with the number
// of VIPs.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "address.h"
#include "config.h"
#include "health_model.h"

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
  // The table the state installed (null: none yet); BackendView's
  // table_entries count its entries.
  std::shared_ptr<const std::vector<uint32_t>> table;
  // The fleet hash_seed the table was built with, and its fleet digest
  // (maglev::table_digest; 0 without a table).
  uint32_t hash_seed = 0;
  uint64_t table_digest = 0;

  // The weight of the backends that take new flows (up, undrained,
  // resolved).
  double usable_weight() const {
    double sum = 0;
    for (const auto& b : backends)
      if (b.takes_new_flows) sum += b.weight;
    return sum;
  }
  // A backend's expected share of the VIP's new flows: its weight over
  // @usable (usable_weight()); 0 when it takes none. The one definition,
  // for stats, skew, metrics and alerts.
  static double expected_share(const BackendView& b, double usable) {
    return b.takes_new_flows && usable > 0 ? b.weight / usable : 0.0;
  }
};

struct ConfigAuditScope {
  std::vector<const VipConfig*> vips;  // in config order
  double max_share = 0.5;              // audit.max_share, for VIPs without their own
  // For each address that is a backend of one of these VIPs and also a
  // VIP's address: that VIP's name (the first in config order) for
  // backend-is-vip.
  std::map<IpAddress, std::string> vip_at;
  // What is known of these VIPs' running backends (health, drain).
  std::vector<VipView> live;
};

}  // namespace ballast
