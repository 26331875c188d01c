// config.h: the desired state (what the operator asked for), parsed from
// YAML and validated whole. No I/O to maps or the kernel: every check here
// runs on plain data, so a bad file is refused before anything changes.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "address.h"
#include "forward_mode.h"
#include "health_model.h"

namespace ballast {

constexpr uint32_t kMaxWeight = 65535;

enum class AttachMode { native, skb };

// ForwardMode: forward_mode.h.

// GUE's destination port when a VIP does not name one. GUE has no IANA
// port; backends must use the same (`ballast decap attach --gue-port`).
constexpr uint16_t kDefaultGuePort = 6080;

// The outer source of encapsulated packets (YAML `encap:`). Unset: the
// balancer interface's own address of the backend's family. A prefix: its
// host bits come from the flow hash, so backends' RSS spreads flows (as
// Katran does); IPv6 prefixes are /96 or longer (32 bits of hash at most).
//
// Encapsulated packets leave toward the kernel's next hop for the backend
// (its gateway, or the backend itself when on-link), or, when set, toward
// next_hop_v4 / next_hop_v6 (a router of the operator's choosing): either
// way the MAC comes from the kernel's neighbour table.
struct EncapSettings {
  std::optional<IpPrefix> source_v4;
  std::optional<IpPrefix> source_v6;
  std::optional<IpAddress> next_hop_v4;
  std::optional<IpAddress> next_hop_v6;
  bool operator==(const EncapSettings&) const = default;
};

// Route health injection (docs/fleet.md): ballastd keeps a host route per
// announced VIP address in kernel routing table @table, which no ip rule
// uses (forwarding is untouched) and a routing daemon's kernel protocol
// (BIRD's `learn`) reads and announces. YAML `fleet: {announce: {...}}`.
struct AnnounceSettings {
  uint32_t table = 100;
  // A VIP is servable with at least this many usable backends (up,
  // undrained, resolved, weight above 0); a VIP's own min_usable wins.
  uint32_t min_usable = 1;
  bool operator==(const AnnounceSettings&) const = default;
};

// Tables an announce table may not be: the kernel's own (unspec, compat,
// default, main, local), which forwarding uses.
bool reserved_route_table(uint64_t table);

// What every balancer of a fleet must share to pick the same backend for the
// same flow (docs/fleet.md). YAML `fleet: {hash_seed: N, announce: {...}}`.
struct FleetSettings {
  // Seeds the Maglev permutations: balancers with the same seed, backends
  // and weights build identical tables; 0 (the default) builds the tables
  // Ballast always built.
  uint32_t hash_seed = 0;
  // nullopt: ballastd announces nothing (and withdraws what it announced).
  std::optional<AnnounceSettings> announce;
  // How long a second-chance VIP's previous Maglev table is kept after
  // its table changed (docs/fleet.md).
  std::chrono::seconds second_chance_keep{60};
  bool operator==(const FleetSettings&) const = default;
};

// The audit (userspace/core/audit.h). YAML `audit:`.
struct AuditSettings {
  std::chrono::seconds interval{30};  // how often ballastd audits itself (and after every change)
  double max_share = 0.5;             // the most one backend may get of a VIP by weight
  bool operator==(const AuditSettings&) const = default;
};

// How skew is judged (userspace/core/skew.h explains each field). YAML `skew:`.
struct SkewSettings {
  std::chrono::seconds window{10};  // sliding window of the observed shares
  uint64_t min_new_flows = 100;     // a VIP's new flows in the window to be confident
  double z_min = 3.0;               // standard deviations for a significant deviation
  double threshold = 2.0;           // skew (observed / expected) that counts as skewed
  std::chrono::seconds hold{30};    // how long skewed before audits report it
  bool operator==(const SkewSettings&) const = default;
};

struct BackendConfig {
  IpAddress address;
  uint32_t weight = 1;
  // The check this backend gets: the VIP's, with the backend's own
  // health_check fields over it; port filled (the VIP's port by default).
  CheckSpec check;
  bool operator==(const BackendConfig&) const = default;
};

struct VipConfig {
  VipKey key;
  std::vector<BackendConfig> backends;
  // When every backend is down: true keeps sending new flows to all of
  // them (better a sick backend than none), false drops them, counted.
  ForwardMode mode = ForwardMode::dsr;
  uint16_t gue_port = kDefaultGuePort;  // mode gue: the backends' GUE port
  // UDP only: flows keyed and hashed without the client's source port.
  bool ignore_source_port = false;
  // IP fragments to this VIP's address and protocol come to this VIP,
  // hashed on addresses only (docs/dataplane.md, Fragments).
  bool fragments = false;
  // gue, tcp: a flow ECMP moves here after the backend set changed reaches
  // the backend it began on (docs/fleet.md, second chance).
  bool second_chance = false;
  bool fail_open = false;
  // The most one backend may get of this VIP's new flows by weight before
  // the audit calls the config risky; unset: the config's audit.max_share.
  std::optional<double> max_share;
  // Announced (fleet.announce) only with at least this many usable
  // backends; unset: fleet.announce.min_usable.
  std::optional<uint32_t> min_usable;
  // The default check of the VIP's backends (and of backends added later
  // through the API), port filled.
  CheckSpec check;
  bool operator==(const VipConfig&) const = default;

  const BackendConfig* find_backend(const IpAddress& a) const;
};

// A VIP with no backends and the default (none) check on its own port.
VipConfig empty_vip(const VipKey& key);

struct Config {
  std::string interface;
  AttachMode attach_mode = AttachMode::native;
  std::vector<VipConfig> vips;
  SkewSettings skew;
  AuditSettings audit;
  EncapSettings encap;
  FleetSettings fleet;
  // true: when the audit finds the maps drifted from this config (someone
  // edited a pinned map), ballastd rewrites them from it.
  bool reconcile = false;
  // Prometheus endpoint, "address:port" (YAML `metrics: {listen: ...}`);
  // empty: no endpoint. Fixed for the daemon's life, like the interface.
  std::string metrics_listen = "127.0.0.1:9469";
  bool operator==(const Config&) const = default;

  const VipConfig* find_vip(const VipKey& k) const;
  VipConfig* find_vip(const VipKey& k);
};

// Parses @yaml_text; @source names the file in messages. Every problem found
// is listed (one per line, "file:line: field: reason"), thrown as one Error.
// The result is already validated.
Config parse_config(const std::string& yaml_text, const std::string& source);
Config load_config_file(const std::string& path);

// Checks a whole config (the same rules the YAML parser applies, for configs
// edited through the API). Returns the problems; empty when valid.
std::vector<std::string> validate_config(const Config& config);

// The rules of one VIP alone (@path: "vips[3]"), appended to @out; those
// across VIPs are validate_config's (and BalancerState's for one-VIP
// changes), each with its message below.
void validate_vip(const VipConfig& vip, const std::string& path, std::vector<std::string>& out);
std::string fragments_taken(const std::string& path, size_t owner, const VipKey& key);
std::string too_many_backends(size_t total);
std::string too_many_vips(size_t total);

// Throws Error listing validate_config's problems, if any.
void require_valid(const Config& config);

std::string attach_mode_name(AttachMode m);

}  // namespace ballast
