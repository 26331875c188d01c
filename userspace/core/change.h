// change.h: what a change does to the live state, as data. A plan
// (balancer_state.h) is a list of these; the pipeline (change_pipeline.h)
// audits, executes and records them; the change log stores each with its
// text. Control flow looks at the types, never at the text: describe() is
// for the edges (the log line, `ballast log`, the API's "changes").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "address.h"
#include "forward_mode.h"
#include "health_model.h"

namespace ballast {

// A VIP's forwarding options, the part of VipConfig a mode change touches.
struct VipOptions {
  ForwardMode mode = ForwardMode::dsr;
  uint16_t gue_port = 0;
  bool ignore_source_port = false;
  bool fragments = false;
  bool second_chance = false;
  bool operator==(const VipOptions&) const = default;
  // Whether going from @from to these changes what packets get (gue_port
  // counts only in mode gue).
  bool takes_effect_over(const VipOptions& from) const;
};

struct VipAdded {
  VipKey vip;
  bool operator==(const VipAdded&) const = default;
};
struct VipRemoved {
  VipKey vip;
  bool operator==(const VipRemoved&) const = default;
};
struct VipOptionsChanged {
  VipKey vip;
  VipOptions from, to;
  bool operator==(const VipOptionsChanged&) const = default;
};
struct VipFailOpenChanged {
  VipKey vip;
  bool on = false;
  bool operator==(const VipFailOpenChanged&) const = default;
};
// A VIP found in the pinned maps at start and taken over as it is.
struct VipAdopted {
  VipKey vip;
  uint32_t id = 0;
  size_t backends = 0;
  bool operator==(const VipAdopted&) const = default;
};

struct BackendAdded {
  VipKey vip;
  IpAddress backend;
  uint32_t weight = 0;
  bool operator==(const BackendAdded&) const = default;
};
struct BackendRemoved {
  VipKey vip;
  IpAddress backend;
  bool operator==(const BackendRemoved&) const = default;
};
struct WeightChanged {
  VipKey vip;
  IpAddress backend;
  uint32_t from = 0, to = 0;
  bool operator==(const WeightChanged&) const = default;
};
struct CheckChanged {
  VipKey vip;
  IpAddress backend;
  CheckSpec to;
  bool operator==(const CheckChanged&) const = default;
};
struct HealthChanged {
  VipKey vip;
  IpAddress backend;
  Health from = Health::unknown, to = Health::unknown;
  std::string detail;  // the check's last result ("3 failures")
  bool operator==(const HealthChanged&) const = default;
};
struct DrainChanged {
  VipKey vip;
  IpAddress backend;
  bool drained = false;
  bool operator==(const DrainChanged&) const = default;
};

// The host moved under a backend: a route (its next hop), the neighbour
// table (its MAC), or a dsr backend no longer on the balancer's segment.
struct NextHopChanged {
  VipKey vip;
  IpAddress backend;
  IpAddress from, to;
  bool operator==(const NextHopChanged&) const = default;
};
struct MacChanged {
  VipKey vip;
  IpAddress backend;
  std::optional<MacAddress> from;  // nullopt: it had none yet
  MacAddress to{};
  bool operator==(const MacChanged&) const = default;
};
struct BackendUnreachable {
  VipKey vip;
  IpAddress backend;
  std::string reason;
  bool operator==(const BackendUnreachable&) const = default;
};

// The balancer's interface: its egress slot (MAC, MTU, outer sources)
// rewritten, or the interface re-created under its name.
struct EgressChanged {
  std::string interface;  // set: slot 0 after a config change
  size_t slots = 0;       // else: how many slots the host's changes rewrote
  bool operator==(const EgressChanged&) const = default;
};
struct InterfaceMoved {
  std::string interface;
  int from = 0, to = 0;
  size_t next_hops = 0;  // backends' next hops that followed it
  bool operator==(const InterfaceMoved&) const = default;
};
struct ProgramReattached {
  std::string interface;
  uint32_t program_id = 0;
  std::string how;  // the loader's account of the attach
  bool operator==(const ProgramReattached&) const = default;
};

// Settings that live in the daemon, not the maps.
struct SettingChanged {
  enum class Which { skew, audit, encap, reconcile, fleet };
  Which which = Which::skew;
  bool on = false;  // reconcile only
  bool operator==(const SettingChanged&) const = default;
};

// A VIP address announced to the routers or withdrawn (announce.h): its
// route added to or removed from routing table @table.
struct AnnounceChanged {
  IpAddress address;
  bool announced = false;
  uint32_t table = 0;
  std::string reason;
  bool operator==(const AnnounceChanged&) const = default;
};

// A map entry rewritten from the state because it drifted (reconcile).
struct MapRepaired {
  enum class What { egress_slot, backend_slot, table, vip, stray_vip, stray_backend_slot };
  What what = What::vip;
  uint32_t id = 0;                // slot or VIP id
  std::optional<VipKey> vip;      // vip, stray_vip
  bool operator==(const MapRepaired&) const = default;
};

using Change =
    std::variant<VipAdded, VipRemoved, VipOptionsChanged, VipFailOpenChanged, VipAdopted,
                 BackendAdded, BackendRemoved, WeightChanged, CheckChanged, HealthChanged,
                 DrainChanged, NextHopChanged, MacChanged, BackendUnreachable, EgressChanged,
                 InterfaceMoved, ProgramReattached, SettingChanged, MapRepaired,
                 AnnounceChanged>;

// One line, as ballastd logs it and `ballast log` shows it:
// "backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 2".
std::string describe(const Change& change);
std::vector<std::string> describe(const std::vector<Change>& changes);

}  // namespace ballast
