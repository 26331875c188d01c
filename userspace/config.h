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
#include "health.h"

namespace ballast {

constexpr uint32_t kMaxWeight = 65535;

enum class AttachMode { native, skb };

// How a VIP's packets reach its backends (bpf/balancer.bpf.c):
//   dsr:  L2 direct server return, the MAC rewritten; backends on the
//         balancer's segment hold the VIP on lo.
//   ipip: IPv4-in-IPv4 to the backend's address; backends strip it with
//         `ballast decap attach` and hold the VIP on lo.
enum class ForwardMode { dsr, ipip };
std::string forward_mode_name(ForwardMode m);

// The audit (userspace/audit.h). YAML `audit:`.
struct AuditSettings {
  std::chrono::seconds interval{30};  // how often ballastd audits itself (and after every change)
  double max_share = 0.5;             // the most one backend may get of a VIP by weight
  bool operator==(const AuditSettings&) const = default;
};

// How skew is judged (userspace/skew.h explains each field). YAML `skew:`.
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
  bool fail_open = false;
  // The most one backend may get of this VIP's new flows by weight before
  // the audit calls the config risky; unset: the config's audit.max_share.
  std::optional<double> max_share;
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
  // true: when the audit finds the maps drifted from this config (someone
  // edited a pinned map), ballastd rewrites them from it.
  bool reconcile = false;
  // Prometheus endpoint, "address:port" (YAML `metrics: {listen: ...}`);
  // empty: no endpoint. Fixed for the daemon's life, like the interface.
  std::string metrics_listen = "127.0.0.1:9469";

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

// Throws Error listing validate_config's problems, if any.
void require_valid(const Config& config);

std::string attach_mode_name(AttachMode m);

}  // namespace ballast
