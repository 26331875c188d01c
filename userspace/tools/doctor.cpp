// doctor.cpp: the checks of `ballast doctor` (doctor.h), pure functions of
// a snapshot, and their output. Gathering the snapshot is in
// doctor_system.cpp.
#include "doctor.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dataplane.h"

namespace ballast::doctor {
namespace {

// Client packets are assumed to be at most this long: the Ethernet MTU of
// the Internet. The encapsulated packet must fit the balancer's egress MTU.
constexpr uint32_t kClientMtu = 1500;

Finding ok(std::string check, std::string message) {
  return {Severity::ok, std::move(check), std::move(message), ""};
}
Finding warn(std::string check, std::string message, std::string fix) {
  return {Severity::warn, std::move(check), std::move(message), std::move(fix)};
}
Finding error(std::string check, std::string message, std::string fix) {
  return {Severity::error, std::move(check), std::move(message), std::move(fix)};
}

std::string num(int64_t v) { return std::to_string(v); }

std::string join(const std::vector<std::string>& parts, const std::string& sep = ", ") {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string join_ips(const std::vector<IpAddress>& ips) {
  std::vector<std::string> s;
  for (const auto& ip : ips) s.push_back(ip.str());
  return join(s);
}

// sysctl(8) writes an interface name's dots as slashes (eth0.100 ->
// net.ipv4.conf.eth0/100.rp_filter).
std::string conf_key(const std::string& scope, const std::string& name) {
  std::string s = scope;
  std::replace(s.begin(), s.end(), '.', '/');
  return "net.ipv4.conf." + s + "." + name;
}

bool is_loopback(const IpAddress& a) {
  if (a.is_v4()) return a.bytes[0] == 127;
  static const std::array<uint8_t, 16> one{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a.bytes == one;
}

bool is_link_local(const IpAddress& a) {
  return !a.is_v4() && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80;
}

std::string host_prefix(const IpAddress& a) { return a.is_v4() ? "/32" : "/128"; }

// The command that puts @vip on lo the way a backend needs it.
std::string add_to_lo(const IpAddress& vip) {
  return "ip addr add " + vip.str() + host_prefix(vip) + " dev lo" + (vip.is_v4() ? "" : " nodad");
}

std::string xdp_programs(const XdpState& x) {
  std::vector<std::string> s;
  for (size_t i = 0; i < x.programs.size(); ++i)
    s.push_back(x.programs[i] +
                (i < x.program_ids.size() ? " (id " + num(x.program_ids[i]) + ")" : ""));
  return join(s);
}

// ---------------------------------------------------------------------------
// Backend checks.

std::vector<IpAddress> backend_vips(const BackendHost& host, const BackendOptions& options) {
  if (!options.vips.empty()) return options.vips;
  std::vector<IpAddress> out;
  for (const auto& a : host.addresses)
    if (a.interface == "lo" && !is_loopback(a.address) && !is_link_local(a.address))
      out.push_back(a.address);
  return out;
}

void check_vips(const BackendHost& host, const BackendOptions& options,
                const std::vector<IpAddress>& vips, std::vector<Finding>& out) {
  if (vips.empty()) {
    out.push_back(error("vips",
                        "no VIP to check: lo holds no address but 127.0.0.0/8 and ::1, and no "
                        "--vip was given; the kernel drops packets for a VIP it does not hold",
                        "ip addr add <VIP>/32 dev lo"));
    return;
  }
  for (const auto& vip : vips) {
    const HostAddress* on_lo = nullptr;
    const HostAddress* elsewhere = nullptr;
    for (const auto& a : host.addresses) {
      if (a.address != vip) continue;
      if (a.interface == "lo")
        on_lo = &a;
      else if (!elsewhere)
        elsewhere = &a;
    }
    const std::string v = vip.str();
    const uint8_t host_len = vip.is_v4() ? 32 : 128;
    if (on_lo) {
      if (on_lo->prefix_len != host_len) {
        out.push_back(warn(
            "vip-on-lo",
            v + "/" + num(on_lo->prefix_len) + " is on lo: every address of " + v + "/" +
                num(on_lo->prefix_len) + " is then local to this host, not only the VIP",
            "ip addr del " + v + "/" + num(on_lo->prefix_len) + " dev lo && " + add_to_lo(vip)));
      } else {
        out.push_back(ok("vip-on-lo", v + host_prefix(vip) + " is on lo"));
      }
      if (!vip.is_v4()) {
        if (on_lo->nodad)
          out.push_back(ok("vip-nodad",
                           v + " is on lo with nodad; IPv6 has no ARP (arp_ignore and "
                               "arp_announce do not apply), and neighbour discovery answers only "
                               "for addresses of the interface asked, so lo's VIP stays silent"));
        else
          out.push_back(warn(
              "vip-nodad",
              v + " is on lo without nodad: IPv6 has no ARP, but the VIP must be "
                  "held without duplicate address detection, which would probe "
                  "for (and may disable) an address the balancer owns",
              "ip addr del " + v + "/" + num(on_lo->prefix_len) + " dev lo && " + add_to_lo(vip)));
      }
      continue;
    }
    if (elsewhere) {
      const std::string where =
          v + "/" + num(elsewhere->prefix_len) + " dev " + elsewhere->interface;
      const std::string why =
          options.mode == ForwardMode::dsr
              ? ": the host answers ARP for it there and draws the VIP's traffic away from "
                "the balancer"
              : ": it should be on lo, where it is local without being announced on a link";
      const std::string msg = v + " is on " + elsewhere->interface + ", not on lo" + why;
      const std::string fix = "ip addr del " + where + " && " + add_to_lo(vip);
      out.push_back(options.mode == ForwardMode::dsr ? error("vip-on-lo", msg, fix)
                                                     : warn("vip-on-lo", msg, fix));
      continue;
    }
    out.push_back(error("vip-on-lo",
                        v + " is not on lo (nor on any interface): the kernel drops the packets "
                            "the balancer sends for it",
                        add_to_lo(vip)));
  }
}

// The kernel uses the larger of net.ipv4.conf.all.X and
// net.ipv4.conf.IFACE.X for arp_ignore, arp_announce and rp_filter.
struct Effective {
  std::string text;  // "net.ipv4.conf.all.X is A and net.ipv4.conf.eth0.X is B (...: E)"
  int value = 0;
};

std::optional<Effective> effective(const std::optional<int>& all, const std::optional<int>& iface,
                                   const std::string& interface, const std::string& name) {
  if (!all) return std::nullopt;
  Effective e;
  if (iface && !interface.empty()) {
    e.value = std::max(*all, *iface);
    e.text = conf_key("all", name) + " is " + num(*all) + " and " + conf_key(interface, name) +
             " is " + num(*iface) + " (the kernel uses the larger: " + num(e.value) + ")";
  } else {
    e.value = *all;
    e.text = conf_key("all", name) + " is " + num(*all);
  }
  return e;
}

// sysctl -w setting all (and the interface, when its own value alone would
// keep the effective value out of [lo, hi]) to @want.
std::string sysctl_fix(const std::string& name, int want, const std::optional<int>& iface,
                       const std::string& interface, int lo, int hi) {
  std::string fix = "sysctl -w " + conf_key("all", name) + "=" + num(want);
  if (iface && !interface.empty() && (*iface < lo || *iface > hi))
    fix += " " + conf_key(interface, name) + "=" + num(want);
  return fix;
}

void check_arp(const BackendHost& host, const std::vector<IpAddress>& vips,
               std::vector<Finding>& out) {
  std::vector<IpAddress> v4;
  for (const auto& v : vips)
    if (v.is_v4()) v4.push_back(v);
  if (v4.empty() && !vips.empty()) {
    out.push_back(
        ok("arp-ignore", "every VIP is IPv6: no ARP, so arp_ignore and arp_announce do not apply"));
    return;
  }
  const std::string listed = v4.empty() ? "" : " (" + join_ips(v4) + ")";
  const std::string& ifc = host.interface;
  const std::string on = ifc.empty() ? "its interfaces" : ifc;
  if (auto e = effective(host.conf_all.arp_ignore, host.conf_iface.arp_ignore, ifc, "arp_ignore");
      !e) {
    out.push_back(warn("arp-ignore", "cannot read " + conf_key("all", "arp_ignore"),
                       "sysctl " + conf_key("all", "arp_ignore")));
  } else if (e->value >= 1 && e->value <= 3) {
    out.push_back(ok("arp-ignore", e->text + ": this host does not answer ARP for the VIPs on lo"));
  } else {
    const std::string fix = sysctl_fix("arp_ignore", 1, host.conf_iface.arp_ignore, ifc, 0, 3);
    if (e->value == 0)
      out.push_back(error("arp-ignore",
                          e->text + ": this host answers ARP for the VIPs on lo" + listed + " on " +
                              on +
                              ", so clients and routers may send the VIPs' traffic here instead "
                              "of to the balancer",
                          fix));
    else if (e->value == 8)
      out.push_back(error("arp-ignore",
                          e->text + ": this host answers no ARP at all, not even for its own "
                                    "address, so the balancer cannot learn its MAC",
                          fix));
    else
      out.push_back(
          warn("arp-ignore", e->text + ": a reserved value; 1 is what a backend needs", fix));
  }
  if (auto e =
          effective(host.conf_all.arp_announce, host.conf_iface.arp_announce, ifc, "arp_announce");
      !e) {
    out.push_back(warn("arp-announce", "cannot read " + conf_key("all", "arp_announce"),
                       "sysctl " + conf_key("all", "arp_announce")));
  } else if (e->value == 2) {
    out.push_back(
        ok("arp-announce", e->text + ": ARP requests never carry a VIP as their source address"));
  } else {
    const std::string fix = sysctl_fix("arp_announce", 2, host.conf_iface.arp_announce, ifc, 0, 2);
    if (e->value == 1)
      out.push_back(warn("arp-announce",
                         e->text + ": ARP requests avoid a VIP as source only where another "
                                   "address fits the target's subnet; 2 never uses one",
                         fix));
    else
      out.push_back(error("arp-announce",
                          e->text + ": ARP requests this host sends may carry a VIP" + listed +
                              " as source, which teaches the segment that the VIP lives here",
                          fix));
  }
}

void check_rp_filter(const BackendHost& host, const BackendOptions& options,
                     const std::vector<IpAddress>& vips, std::vector<Finding>& out) {
  if (!vips.empty() &&
      std::none_of(vips.begin(), vips.end(), [](const IpAddress& v) { return v.is_v4(); }))
    return;
  const std::string& ifc = host.interface;
  auto e = effective(host.conf_all.rp_filter, host.conf_iface.rp_filter, ifc, "rp_filter");
  if (!e) {
    out.push_back(warn("rp-filter", "cannot read " + conf_key("all", "rp_filter"),
                       "sysctl " + conf_key("all", "rp_filter")));
    return;
  }
  if (e->value != 1) {
    out.push_back(ok("rp-filter", e->text + (e->value == 0 ? ", off" : ", loose") +
                                      ": packets from clients are accepted whatever interface "
                                      "the route back to them uses"));
    return;
  }
  const std::string arrive = options.mode == ForwardMode::dsr
                                 ? "the client's packets the balancer forwards arrive on "
                                 : "the client's packets the decap program unwraps arrive on ";
  std::string where;
  if (host.default_route_interface.empty())
    where = "; this host has no default route";
  else if (host.default_route_interface != ifc)
    where = "; the default route leaves by " + host.default_route_interface;
  const std::string msg = e->text + ", strict: " + arrive + (ifc.empty() ? "the interface" : ifc) +
                          " with the client's address as source, and strict mode drops every "
                          "one whose route back does not leave by " +
                          (ifc.empty() ? "that interface" : ifc) + where;
  std::string fix = "sysctl -w " + conf_key("all", "rp_filter") + "=2";
  if (!ifc.empty()) fix += " " + conf_key(ifc, "rp_filter") + "=2";
  // With the default route out of the same interface, only clients on
  // more specific routes elsewhere are dropped.
  if (!ifc.empty() && host.default_route_interface == ifc)
    out.push_back(warn("rp-filter", msg, fix));
  else
    out.push_back(error("rp-filter", msg, fix));
}

void check_decap(const BackendHost& host, const BackendOptions& options,
                 const std::vector<IpAddress>& vips, std::vector<Finding>& out) {
  const std::string& ifc = host.interface;
  const std::string mode(forward_mode_name(options.mode));
  // The VIPs the program must hold: the ones asked for, plus those it
  // already holds (attach replaces the whole list).
  std::vector<IpAddress> all = vips;
  for (const auto& v : host.decap_vips)
    if (std::find(all.begin(), all.end(), v) == all.end()) all.push_back(v);
  std::string attach = "ballast decap attach " + ifc;
  for (const auto& v : all) attach += " --vip " + v.str();
  if (options.mode == ForwardMode::gue) attach += " --gue-port " + num(options.gue_port);

  if (host.decap_program_id == 0) {
    if (!host.xdp.programs.empty())
      out.push_back(error("decap-attached",
                          "another XDP program, " + xdp_programs(host.xdp) + ", is attached to " +
                              ifc + " instead of Ballast's decap program: the balancer's " + mode +
                              " packets reach the stack still encapsulated and are dropped",
                          "ip link set dev " + ifc + " xdp off && " + attach));
    else
      out.push_back(error("decap-attached",
                          "no decap program is attached to " + ifc + ": the balancer's " + mode +
                              " packets reach the stack still encapsulated and are dropped",
                          attach));
    return;
  }
  out.push_back(
      ok("decap-attached", "Ballast's decap program (id " + num(host.decap_program_id) +
                               ") is attached to " + ifc +
                               (host.xdp.mode.empty() ? "" : " (" + host.xdp.mode + ")")));
  std::vector<IpAddress> missing;
  for (const auto& v : vips)
    if (std::find(host.decap_vips.begin(), host.decap_vips.end(), v) == host.decap_vips.end())
      missing.push_back(v);
  if (!missing.empty())
    out.push_back(error(
        "decap-vips",
        "the decap program on " + ifc + " holds " + num(host.decap_vips.size()) + " VIP(s) (" +
            (host.decap_vips.empty() ? "none" : join_ips(host.decap_vips)) + ") but not " +
            join_ips(missing) + ": packets for those pass through still encapsulated",
        attach));
  else if (!vips.empty())
    out.push_back(ok("decap-vips", "the decap program on " + ifc + " holds all " +
                                       num(vips.size()) + " VIP(s): " + join_ips(vips)));
  if (options.mode != ForwardMode::gue) return;
  if (host.decap_gue_port == 0)
    out.push_back(error("decap-gue-port",
                        "the decap program on " + ifc +
                            " takes no GUE (its port is 0): GUE packets to port " +
                            num(options.gue_port) + " pass still encapsulated",
                        attach));
  else if (host.decap_gue_port != options.gue_port)
    out.push_back(error("decap-gue-port",
                        "the decap program on " + ifc + " takes GUE on UDP port " +
                            num(host.decap_gue_port) + ", but the VIPs send it to port " +
                            num(options.gue_port) + ": those packets pass still encapsulated",
                        attach));
  else
    out.push_back(ok("decap-gue-port", "the decap program on " + ifc + " takes GUE on UDP port " +
                                           num(host.decap_gue_port)));
}

// The outer header's family: the backend's address, which is on the
// interface: IPv4 when it has one.
bool interface_is_v6_only(const BackendHost& host) {
  bool v4 = false, v6 = false;
  for (const auto& a : host.addresses) {
    if (a.interface != host.interface || is_link_local(a.address)) continue;
    (a.address.is_v4() ? v4 : v6) = true;
  }
  return v6 && !v4;
}

void check_backend_mtu(const BackendHost& host, const BackendOptions& options,
                       std::vector<Finding>& out) {
  const bool v6 = interface_is_v6_only(host);
  const uint32_t over = encap_overhead(options.mode, v6);
  const std::string what = (forward_mode_name(options.mode)) + " adds " + num(over) + " bytes (" +
                           (v6 ? "IPv6" : "IPv4") + " outer header)";
  if (host.mtu >= kClientMtu + over) {
    out.push_back(ok("mtu", host.interface + " MTU " + num(host.mtu) + " leaves room for a " +
                                num(kClientMtu) + "-byte client packet: " + what));
    return;
  }
  const uint32_t largest = host.mtu > over ? host.mtu - over : 0;
  out.push_back(warn("mtu",
                     host.interface + " MTU " + num(host.mtu) + " leaves no headroom: " + what +
                         ", so with this MTU on the balancer too, client packets over " +
                         num(largest) +
                         " bytes will be answered with ICMP too big (raise the MTU here, on the "
                         "balancer's interface and on every hop between)",
                     "ip link set dev " + host.interface + " mtu " + num(kClientMtu + over)));
}

// ---------------------------------------------------------------------------
// Balancer checks.

std::string config_or_placeholder(const BalancerHost& host) {
  return host.config_path.empty() ? "<CONFIG>" : host.config_path;
}

void check_program(const BalancerHost& host, std::vector<Finding>& out) {
  const std::string& ifc = host.interface;
  const std::string start = "ballastd --config " + config_or_placeholder(host);
  // Native mode attaches ballast_xdp, generic mode ballast_xdp_any.
  const auto it =
      std::find_if(host.xdp.programs.begin(), host.xdp.programs.end(), [](const std::string& name) {
        return name == BALLAST_PROG_BOUND || name == BALLAST_PROG_ANY;
      });
  if (it == host.xdp.programs.end()) {
    if (host.xdp.programs.empty())
      out.push_back(error("xdp-program",
                          "no XDP program is attached to " + ifc +
                              ": packets for the VIPs go to this host's stack, not to backends",
                          start));
    else
      out.push_back(error("xdp-program",
                          "the XDP program on " + ifc + " is " + xdp_programs(host.xdp) +
                              ", not Ballast's ballast_xdp: nothing balances the VIPs",
                          "ip link set dev " + ifc + " xdp off && " + start));
    return;
  }
  const size_t i = static_cast<size_t>(it - host.xdp.programs.begin());
  const std::string id =
      i < host.xdp.program_ids.size() ? " (id " + num(host.xdp.program_ids[i]) + ")" : "";
  if (host.xdp.mode == "skb")
    out.push_back(warn("xdp-program",
                       *it + id + " is attached to " + ifc +
                           " in generic (skb) mode: it runs only after the kernel has built an "
                           "skb for every packet, several times slower than native mode",
                       "sed -i 's/^attach_mode: *skb/attach_mode: native/' " +
                           config_or_placeholder(host) + " && kill -TERM $(pidof ballastd); " +
                           start));
  else
    out.push_back(ok("xdp-program", *it + id + " is attached to " + ifc + " in " +
                                        (host.xdp.mode.empty() ? "an unknown" : host.xdp.mode) +
                                        " mode"));
}

void check_pins(const BalancerHost& host, std::vector<Finding>& out) {
  const std::string start = "ballastd --config " + config_or_placeholder(host);
  const auto& want = required_pinned_maps();
  if (!host.pin_dir_exists) {
    out.push_back(error("pinned-maps",
                        host.pin_dir + " does not exist: none of the " + num(want.size()) +
                            " maps ballastd pins is there (ballastd is not running, or was "
                            "started with another --pin-dir)",
                        start));
    return;
  }
  std::vector<std::string> missing;
  for (const auto& m : want)
    if (std::find(host.pinned.begin(), host.pinned.end(), m) == host.pinned.end())
      missing.push_back(m);
  if (missing.empty())
    out.push_back(ok("pinned-maps", "all " + num(want.size()) + " maps are pinned in " +
                                        host.pin_dir + ": " + join(want)));
  else
    out.push_back(error("pinned-maps",
                        num(missing.size()) + " of the " + num(want.size()) + " maps are not in " +
                            host.pin_dir + ": " + join(missing) +
                            "; a restarted ballastd could not adopt the running state",
                        "kill -TERM $(pidof ballastd); " + start));
}

void check_peer(const BalancerHost& host, std::vector<Finding>& out) {
  if (host.kind != "veth") return;
  const std::string& ifc = host.interface;
  if (!host.peer_visible) {
    out.push_back(warn("veth-peer",
                       ifc + " is a veth whose peer is in another network namespace, so whether "
                             "the peer has an XDP program cannot be seen from here; XDP_TX on "
                             "veth delivers only when it has one (an XDP_PASS program is enough)",
                       "ip netns exec <PEER_NETNS> ip link set dev <PEER> xdpdrv obj "
                       "<xdp_pass.bpf.o> sec xdp"));
    return;
  }
  if (host.peer_xdp.programs.empty())
    out.push_back(
        error("veth-peer",
              ifc + " is a veth whose peer " + host.peer_name +
                  " has no XDP program: frames ballast_xdp sends back out with XDP_TX "
                  "are dropped (counted as rx_queue_0_xdp_tx_errors by ethtool -S " +
                  ifc + ")",
              "ip link set dev " + host.peer_name + " xdpdrv obj <xdp_pass.bpf.o> sec xdp"));
  else
    out.push_back(ok("veth-peer", ifc + "'s veth peer " + host.peer_name + " has XDP program " +
                                      xdp_programs(host.peer_xdp) + ", so XDP_TX delivers"));
}

// "42 s", "7 min 3 s", "2 h 5 min", "3 d 4 h": how long, to the unit that matters.
std::string duration_text(int64_t ms) {
  const int64_t s = ms / 1000;
  if (s < 60) return num(s) + " s";
  if (s < 3600) return num(s / 60) + " min " + num(s % 60) + " s";
  if (s < 86400) return num(s / 3600) + " h " + num(s % 3600 / 60) + " min";
  return num(s / 86400) + " d " + num(s % 86400 / 3600) + " h";
}

void check_api(const BalancerHost& host, std::vector<Finding>& out) {
  const std::string start = "ballastd --config " + config_or_placeholder(host);
  if (!host.api_ok) {
    std::string since;
    if (host.heartbeat_age_ms >= 0) {
      since = "; no ballastd has managed the maps in " + host.pin_dir + " for " +
              duration_text(host.heartbeat_age_ms) +
              (host.heartbeat_pid ? " (the last, pid " + num(host.heartbeat_pid) +
                                        ", stopped without a word: killed or crashed)"
                                  : " (the last one was stopped)");
    }
    out.push_back(error("ballastd-api",
                        "ballastd does not answer on " + host.socket + " (" + host.api_error +
                            "): the XDP program keeps forwarding, but nothing checks health, "
                            "resolves MACs or takes changes" +
                            since,
                        start));
    return;
  }
  if (!host.interface.empty() && host.api_interface != host.interface) {
    out.push_back(warn("ballastd-api",
                       "ballastd answers on " + host.socket + " but runs on " + host.api_interface +
                           ", not " + host.interface,
                       "ballast doctor balancer --interface " + host.api_interface));
    return;
  }
  out.push_back(ok("ballastd-api", "ballastd answers on " + host.socket + " (program id " +
                                       num(host.api_program_id) + " on " + host.api_interface +
                                       ")"));
}

void check_paths(const BalancerHost& host, std::vector<Finding>& out) {
  std::set<std::string> seen_route;  // by backend address: once each
  std::set<std::string> seen_mtu;    // by VIP, interface and outer family
  const std::string cfg = config_or_placeholder(host);
  for (const auto& p : host.paths) {
    const std::string b = p.backend.str();
    const std::string mode(forward_mode_name(p.mode));
    const std::string hop = p.gateway ? p.gateway->str() : b;
    if (!p.route_error.empty()) {
      if (seen_route.insert(b).second)
        out.push_back(error("route",
                            "no route to backend " + b + " of " + p.vip + ": " + p.route_error,
                            "ip route add " + b + host_prefix(p.backend) + " via <GATEWAY> dev " +
                                (host.interface.empty() ? "<IFACE>" : host.interface)));
      continue;
    }
    if (p.mode == ForwardMode::dsr && p.gateway) {
      out.push_back(error("backend-l2",
                          p.vip + " is dsr, but its backend " + b + " is reached via gateway " +
                              hop + " on " + p.interface +
                              ": dsr rewrites only the MAC, so the backend must be on the "
                              "balancer's L2 segment",
                          "ballast apply -f " + cfg + "  # after setting mode: ipip (or gue) on " +
                              p.vip + " in " + cfg));
    }
    if (seen_route.insert(b).second) {
      const std::string route =
          p.gateway ? "via " + hop + " on " + p.interface : "on-link on " + p.interface;
      out.push_back(ok("route", "backend " + b + " is " + route));
      if (p.next_hop_mac)
        out.push_back(ok("neighbour", "next hop " + hop + " of backend " + b + " has MAC " +
                                          mac_str(*p.next_hop_mac) + " on " + p.interface));
      else
        out.push_back(error("neighbour",
                            "the kernel has no MAC for next hop " + hop + " of backend " + b +
                                " on " + p.interface +
                                ": ballastd marks the backend unresolved and sends it nothing",
                            "ping -c 1 -W 1 -I " + p.interface + " " + hop));
    }
    if (p.mode == ForwardMode::dsr) continue;
    const bool v6 = !p.backend.is_v4();
    const std::string family = v6 ? "IPv6" : "IPv4";
    if (!p.egress_has_source && seen_mtu.insert("src " + p.interface + family).second)
      out.push_back(error("encap-source",
                          p.interface + " has no " + family + " address to send " + mode +
                              " from (the outer source of " + p.vip + "'s packets to " + b + ")",
                          "ip addr add <ADDRESS>/<PREFIX> dev " + p.interface));
    if (!seen_mtu.insert(p.vip + " " + p.interface + " " + family).second) continue;
    const uint32_t over = encap_overhead(p.mode, v6);
    const uint32_t largest = p.egress_mtu > over ? p.egress_mtu - over : 0;
    const std::string head = p.vip + " (" + mode + ", " + family + " outer, " + num(over) +
                             " bytes) leaves by " + p.interface + " with MTU " + num(p.egress_mtu);
    if (p.egress_mtu >= kClientMtu + over)
      out.push_back(ok("mtu", head + ": a " + num(kClientMtu) + "-byte client packet fits"));
    else
      out.push_back(warn("mtu",
                         head + ": packets over " + num(largest) +
                             " bytes will be answered with ICMP too big (raise the MTU here, on "
                             "the backends and on every hop between)",
                         "ip link set dev " + p.interface + " mtu " + num(kClientMtu + over)));
  }
}

}  // namespace

std::string_view severity_name(Severity s) {
  switch (s) {
    case Severity::ok:
      return "ok";
    case Severity::warn:
      return "warn";
    case Severity::error:
      return "error";
  }
  return "?";
}

const std::vector<std::string>& required_pinned_maps() {
  // Every pinned map but meta, vip_fleet_stats and maglev_prev_tables:
  // pins without meta are layout 1, pins without the other two were made
  // before they existed; a restarted ballastd adopts them all (and adds
  // what is missing).
  static const std::vector<std::string> maps = [] {
    std::vector<std::string> m;
    for (const char* name : kPinnedMaps)
      if (std::string_view(name) != "meta" && std::string_view(name) != "vip_fleet_stats" &&
          std::string_view(name) != "maglev_prev_tables")
        m.push_back(name);
    return m;
  }();
  return maps;
}

std::vector<Finding> check_backend(const BackendHost& host, const BackendOptions& options) {
  std::vector<Finding> out;
  const bool have_interface = !host.interface.empty() && host.interface_exists;
  if (host.interface.empty())
    out.push_back(error("interface", "no interface to check: " + host.interface_note,
                        "ballast doctor backend --mode " + (forward_mode_name(options.mode)) +
                            " --interface <IFACE>"));
  else if (!host.interface_exists)
    out.push_back(error("interface", "there is no interface " + host.interface + " on this host",
                        "ip -br link"));
  else
    out.push_back(
        ok("interface", "checking " + host.interface +
                            (host.interface_note.empty() ? "" : " (" + host.interface_note + ")") +
                            " for " + (forward_mode_name(options.mode))));
  const auto vips = backend_vips(host, options);
  check_vips(host, options, vips, out);
  if (options.mode == ForwardMode::dsr) check_arp(host, vips, out);
  check_rp_filter(host, options, vips, out);
  if (options.mode != ForwardMode::dsr && have_interface) {
    check_decap(host, options, vips, out);
    check_backend_mtu(host, options, out);
  }
  return out;
}

std::vector<Finding> check_balancer(const BalancerHost& host) {
  std::vector<Finding> out;
  if (host.bpffs_mounted)
    out.push_back(ok("bpffs", "a bpf filesystem is mounted at /sys/fs/bpf"));
  else
    out.push_back(error("bpffs",
                        "no bpf filesystem is mounted at /sys/fs/bpf: ballastd cannot pin its "
                        "maps, so a restart loses every flow",
                        "mount -t bpf bpf /sys/fs/bpf"));
  if (host.interface.empty()) {
    out.push_back(error("interface",
                        "no interface to check: no --interface, no config naming one and no "
                        "ballastd to ask",
                        "ballast doctor balancer --interface <IFACE>"));
  } else if (!host.interface_exists) {
    out.push_back(error("interface", "there is no interface " + host.interface + " on this host",
                        "ip -br link"));
  } else {
    check_program(host, out);
    check_peer(host, out);
  }
  check_pins(host, out);
  check_api(host, out);
  if (!host.config_error.empty())
    out.push_back(error("config", host.config_error, "ballast doctor balancer --config <FILE>"));
  else if (host.config_path.empty())
    out.push_back(warn("config",
                       "no config (no --config, ballastd does not say, no "
                       "/etc/ballast/ballast.yaml): backends not checked",
                       "ballast doctor balancer --config <FILE>"));
  else
    out.push_back(ok("config", host.config_path + ": " + num(host.paths.size()) +
                                   " backend(s) of its VIPs to check"));
  check_paths(host, out);
  return out;
}

bool has_error(const std::vector<Finding>& findings) {
  return std::any_of(findings.begin(), findings.end(),
                     [](const Finding& f) { return f.severity == Severity::error; });
}

std::string render_text(const std::vector<Finding>& findings) {
  std::string out;
  size_t errors = 0, warnings = 0;
  for (const auto& f : findings) {
    std::string sev(severity_name(f.severity));
    std::transform(sev.begin(), sev.end(), sev.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    std::string check = f.check;
    check.resize(std::max<size_t>(check.size(), 15), ' ');
    std::string sevp = sev;
    sevp.resize(6, ' ');
    out += sevp + check + " " + f.message + "\n";
    if (!f.fix.empty()) out += "      fix: " + f.fix + "\n";
    errors += f.severity == Severity::error;
    warnings += f.severity == Severity::warn;
  }
  out += num(errors) + " error(s), " + num(warnings) + " warning(s)\n";
  return out;
}

std::string render_json(const std::string& role, const std::vector<Finding>& findings) {
  nlohmann::json out = {{"role", role}, {"findings", nlohmann::json::array()}};
  size_t errors = 0, warnings = 0;
  for (const auto& f : findings) {
    out["findings"].push_back({{"severity", severity_name(f.severity)},
                               {"check", f.check},
                               {"message", f.message},
                               {"fix", f.fix}});
    errors += f.severity == Severity::error;
    warnings += f.severity == Severity::warn;
  }
  out["errors"] = errors;
  out["warnings"] = warnings;
  return out.dump(2) + "\n";
}

}  // namespace ballast::doctor
