// doctor.h: `ballast doctor`, the answer to "it doesn't forward packets".
// Run on a host, it checks what that host needs for Ballast to forward, and
// says for each thing: ok, warn or error, one sentence naming the thing and
// its numbers, and the shell command that fixes it.
//
// Two roles:
//   backend   a backend host of a dsr, ipip or gue VIP: the VIPs on lo, the
//             ARP and rp_filter sysctls, the decap program, MTU headroom.
//   balancer  the host running ballastd: bpffs, the XDP program and its
//             mode, the pinned maps, the route and neighbour entry of every
//             backend, MTU against the encapsulation, the veth peer's XDP
//             program, ballastd's API socket.
//
// The checks are pure: a snapshot of the host (plain data: sysctls,
// addresses, attached programs, routes, neighbours, MTUs) in, findings out,
// so unit tests feed snapshots (tests/unit/doctor_test.cpp). Gathering a
// snapshot from the running system is separate (doctor_system.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.h"
#include "forward_mode.h"

namespace ballast::doctor {

enum class Severity { ok, warn, error };
std::string_view severity_name(Severity s);  // "ok", "warn", "error"

struct Finding {
  Severity severity = Severity::ok;
  std::string check;    // a stable id: "arp-ignore", "decap-attached", ...
  std::string message;  // one sentence naming the thing and the numbers
  std::string fix;      // the shell command that fixes it; "" when ok
  bool operator==(const Finding&) const = default;
};

// The forwarding modes: ForwardMode (core/forward_mode.h).

// An address configured on an interface.
struct HostAddress {
  IpAddress address;
  uint8_t prefix_len = 32;
  std::string interface;
  bool nodad = false;  // IFA_F_NODAD (IPv6)
};

// net.ipv4.conf.<scope>.*: unset where the file could not be read.
struct Ipv4Conf {
  std::optional<int> arp_ignore;
  std::optional<int> arp_announce;
  std::optional<int> rp_filter;
};

// The XDP attachment of one interface.
struct XdpState {
  std::string mode;  // "" (nothing attached), "native", "skb", "hw"
  // Programs by name: the one attached, or those in libxdp's dispatcher.
  std::vector<std::string> programs;
  std::vector<uint32_t> program_ids;  // same order
};

// ---------------------------------------------------------------------------
// Backend role.

struct BackendHost {
  // The interface the balancer's packets arrive on: --interface, else the
  // default route's, else the only non-loopback interface that is up; ""
  // when none could be chosen (interface_note says why).
  std::string interface;
  std::string interface_note;
  bool interface_exists = false;
  uint32_t mtu = 0;
  std::vector<HostAddress> addresses;   // every address on every interface
  Ipv4Conf conf_all;                    // net.ipv4.conf.all.*
  Ipv4Conf conf_iface;                  // net.ipv4.conf.<interface>.*
  std::string default_route_interface;  // "" when there is no IPv4 default route
  // The XDP program on the interface, and Ballast's decap program's view
  // (userspace/tools/decap.h decap_status): its id (0: not ours or none) and VIPs.
  XdpState xdp;
  uint32_t decap_program_id = 0;
  std::vector<IpAddress> decap_vips;
  uint16_t decap_gue_port = 0;  // the UDP port it takes GUE on; 0: none
};

struct BackendOptions {
  ForwardMode mode = ForwardMode::dsr;
  std::vector<IpAddress> vips;  // empty: the addresses on lo (not 127/8, ::1)
  uint16_t gue_port = 6080;     // gue: the VIPs' gue_port (config.h kDefaultGuePort)
};

std::vector<Finding> check_backend(const BackendHost& host, const BackendOptions& options);

// ---------------------------------------------------------------------------
// Balancer role.

// How the balancer reaches one backend of one VIP.
struct BackendPath {
  std::string vip;  // "10.0.0.100:80/tcp"
  ForwardMode mode = ForwardMode::dsr;
  IpAddress backend;
  std::string route_error;  // "" when the kernel has a unicast route
  std::string interface;    // the route's interface
  std::optional<IpAddress> gateway;
  uint32_t egress_mtu = 0;                 // the route's interface's MTU
  bool egress_has_source = true;           // it has an address of the backend's family
  std::optional<MacAddress> next_hop_mac;  // neighbour entry of gateway or backend
};

struct BalancerHost {
  bool bpffs_mounted = false;  // /sys/fs/bpf is a bpf filesystem
  std::string interface;       // --interface, else the config's, else ballastd's
  bool interface_exists = false;
  uint32_t mtu = 0;
  std::string kind;  // rtnetlink link kind: "veth", "bridge", "" (a NIC)
  XdpState xdp;
  // veth only: the peer, when it is in this network namespace.
  bool peer_visible = false;
  std::string peer_name;
  XdpState peer_xdp;
  std::string pin_dir;
  bool pin_dir_exists = false;
  std::vector<std::string> pinned;  // names found under pin_dir
  // From the pinned meta map: how long ago the managing ballastd last wrote
  // its heartbeat (-1: no meta map), and its pid then (0: it stopped).
  int64_t heartbeat_age_ms = -1;
  uint32_t heartbeat_pid = 0;
  std::string config_path;          // "" when none was found
  std::string config_error;         // "" when it loaded
  std::vector<BackendPath> paths;
  std::string socket;
  bool api_ok = false;
  std::string api_error;
  std::string api_interface;  // what ballastd says it runs on
  uint32_t api_program_id = 0;
};

std::vector<Finding> check_balancer(const BalancerHost& host);

// The maps ballastd pins (kPinnedMaps, core/dataplane.h) but meta,
// vip_fleet_stats and maglev_prev_tables, whose absence a restart adopts; the doctor requires these and ignores any others.
const std::vector<std::string>& required_pinned_maps();

// ---------------------------------------------------------------------------
// Output and the command.

// Text: one line per finding (severity, check id, sentence), the fix under
// it, then a count. JSON: {"role", "findings": [...], "errors", "warnings"}.
std::string render_text(const std::vector<Finding>& findings);
std::string render_json(const std::string& role, const std::vector<Finding>& findings);
bool has_error(const std::vector<Finding>& findings);

// What `ballast doctor` was asked (filled by the CLI's options).
struct Request {
  std::string role;  // "backend" or "balancer"
  std::string mode = "dsr";
  std::vector<std::string> vips;
  std::string interface;
  uint16_t gue_port = 0;  // 0: not given (the config's default, kDefaultGuePort)
  std::string config;
};

// Gathers a snapshot of this host (doctor_system.cpp).
BackendHost gather_backend(const std::string& interface, ForwardMode mode);
BalancerHost gather_balancer(const Request& request, const std::string& socket);

// Gathers, checks and prints; returns the exit status (1 on any error).
// Throws Error for bad arguments.
int run(const Request& request, const std::string& socket, bool json);

}  // namespace ballast::doctor
