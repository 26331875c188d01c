// doctor_system.cpp: gathers `ballast doctor`'s snapshots (doctor.h) from
// the running system, and the command itself. Everything is read through
// the kernel's own interfaces, nothing is spawned: sysctls from
// /proc/sys, addresses, links and the default route over rtnetlink, routes,
// neighbours and egress facts as ballastd reads them (neighbor.h), XDP
// attachments with bpf_xdp_query (and libxdp for its dispatcher), the
// decap program with decap_status, ballastd over its API socket.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "api.h"
#include "config.h"
#include "loader.h"
#include "decap.h"
#include "doctor.h"
#include "error.h"
#include "fd.h"
#include "neighbor.h"
#include "netlink.h"

namespace ballast::doctor {
namespace {

constexpr const char* kDefaultPinDir = "/sys/fs/bpf/ballast";
constexpr const char* kDefaultConfig = "/etc/ballast/ballast.yaml";

std::string ifname(int ifindex) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(ifindex), name) ? name
                                                              : "if" + std::to_string(ifindex);
}

// Every address on every interface (RTM_GETADDR dump).
std::vector<HostAddress> all_addresses() {
  netlink::Request req(RTM_GETADDR, /*dump=*/true);
  req.header<ifaddrmsg>().ifa_family = AF_UNSPEC;
  std::vector<HostAddress> out;
  for (const auto& msg : netlink::ask(req, RTM_NEWADDR)) {
    const auto* ifa = reinterpret_cast<const ifaddrmsg*>(msg.data());
    const auto attrs = netlink::attributes(msg, sizeof(ifaddrmsg));
    // IFA_LOCAL is the address itself (IFA_ADDRESS is the peer's on a
    // point-to-point link); IPv6 has only IFA_ADDRESS.
    auto it = attrs.find(IFA_LOCAL);
    if (it == attrs.end()) it = attrs.find(IFA_ADDRESS);
    if (it == attrs.end()) continue;
    auto ip = netlink::attr_ip(it->second);
    if (!ip) continue;
    uint32_t flags = ifa->ifa_flags;
    if (auto f = attrs.find(IFA_FLAGS); f != attrs.end())
      flags = netlink::attr_as<uint32_t>(f->second);
    out.push_back({*ip, ifa->ifa_prefixlen, ifname(static_cast<int>(ifa->ifa_index)),
                   (flags & IFA_F_NODAD) != 0});
  }
  return out;
}

struct Link {
  int ifindex = 0;
  std::string name;
  uint32_t mtu = 0;
  unsigned flags = 0;
  std::string kind;
  int peer_ifindex = 0;           // IFLA_LINK (a veth's peer)
  bool peer_other_netns = false;  // IFLA_LINK_NETNSID present
};

Link parse_link(const std::vector<char>& msg) {
  const auto* ifi = reinterpret_cast<const ifinfomsg*>(msg.data());
  const auto attrs = netlink::attributes(msg, sizeof(ifinfomsg));
  Link l;
  l.ifindex = ifi->ifi_index;
  l.flags = ifi->ifi_flags;
  if (auto it = attrs.find(IFLA_IFNAME); it != attrs.end()) l.name = std::string(it->second.data());
  if (auto it = attrs.find(IFLA_MTU); it != attrs.end())
    l.mtu = netlink::attr_as<uint32_t>(it->second);
  if (auto it = attrs.find(IFLA_LINK); it != attrs.end())
    l.peer_ifindex = netlink::attr_as<int32_t>(it->second);
  l.peer_other_netns = attrs.count(IFLA_LINK_NETNSID) > 0;
  if (auto it = attrs.find(IFLA_LINKINFO); it != attrs.end()) {
    int len = static_cast<int>(it->second.size());
    for (auto* rta = reinterpret_cast<const rtattr*>(it->second.data()); RTA_OK(rta, len);
         rta = RTA_NEXT(rta, len))
      if (rta->rta_type == IFLA_INFO_KIND)
        l.kind = std::string(static_cast<const char*>(RTA_DATA(rta)));
  }
  return l;
}

std::vector<Link> all_links() {
  netlink::Request req(RTM_GETLINK, /*dump=*/true);
  req.header<ifinfomsg>().ifi_family = AF_UNSPEC;
  std::vector<Link> out;
  for (const auto& msg : netlink::ask(req, RTM_NEWLINK))
    out.push_back(parse_link(msg));
  return out;
}

std::optional<Link> find_link(const std::vector<Link>& links, const std::string& name) {
  for (const auto& l : links)
    if (l.name == name) return l;
  return std::nullopt;
}

// The interface of the main table's IPv4 default route, "" when none.
std::string default_route_interface() {
  netlink::Request req(RTM_GETROUTE, /*dump=*/true);
  req.header<rtmsg>().rtm_family = AF_INET;
  for (const auto& msg : netlink::ask(req, RTM_NEWROUTE)) {
    const auto* rt = reinterpret_cast<const rtmsg*>(msg.data());
    if (rt->rtm_dst_len != 0 || rt->rtm_table != RT_TABLE_MAIN || rt->rtm_type != RTN_UNICAST)
      continue;
    const auto attrs = netlink::attributes(msg, sizeof(rtmsg));
    if (auto it = attrs.find(RTA_OIF); it != attrs.end())
      return ifname(netlink::attr_as<int32_t>(it->second));
  }
  return "";
}

// --- BPF --------------------------------------------------------------------

int quiet_libxdp(enum libxdp_print_level, const char*, va_list) { return 0; }

std::string program_name(uint32_t id) {
  UniqueFd fd(bpf_prog_get_fd_by_id(id));
  if (!fd.valid()) return "id " + std::to_string(id);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) < 0) return "id " + std::to_string(id);
  return info.name;
}

// What is attached to @ifindex: one program, or libxdp's dispatcher and the
// programs in it.
XdpState xdp_state(int ifindex) {
  XdpState out;
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (bpf_xdp_query(ifindex, 0, &q) < 0 || q.attach_mode == XDP_ATTACHED_NONE) return out;
  switch (q.attach_mode) {
    case XDP_ATTACHED_DRV:
      out.mode = "native";
      break;
    case XDP_ATTACHED_SKB:
      out.mode = "skb";
      break;
    case XDP_ATTACHED_HW:
      out.mode = "hw";
      break;
    default:
      out.mode = q.drv_prog_id ? "native" : q.skb_prog_id ? "skb" : "hw";
  }
  const uint32_t id = q.prog_id ? q.prog_id : q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id;
  const std::string name = program_name(id);
  if (name == "xdp_dispatcher") {
    libxdp_set_print(quiet_libxdp);
    xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(ifindex);
    if (mp && !libxdp_get_error(mp)) {
      for (xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p;
           p = xdp_multiprog__next_prog(p, mp)) {
        out.programs.push_back(xdp_program__name(p));
        out.program_ids.push_back(xdp_program__id(p));
      }
      xdp_multiprog__close(mp);
      if (!out.programs.empty()) return out;
    }
  }
  out.programs.push_back(name);
  out.program_ids.push_back(id);
  return out;
}

std::optional<int> read_int(const std::string& path) {
  std::ifstream in(path);
  int v = 0;
  if (!(in >> v)) return std::nullopt;
  return v;
}

Ipv4Conf read_conf(const std::string& scope) {
  const std::string dir = "/proc/sys/net/ipv4/conf/" + scope + "/";
  return {read_int(dir + "arp_ignore"), read_int(dir + "arp_announce"),
          read_int(dir + "rp_filter")};
}

}  // namespace

BackendHost gather_backend(const std::string& interface, ForwardMode mode) {
  BackendHost h;
  h.addresses = all_addresses();
  h.default_route_interface = default_route_interface();
  const auto links = all_links();
  if (!interface.empty()) {
    h.interface = interface;
  } else if (!h.default_route_interface.empty()) {
    h.interface = h.default_route_interface;
    h.interface_note = "the default route's";
  } else {
    std::vector<std::string> up;
    for (const auto& l : links)
      if ((l.flags & IFF_UP) && !(l.flags & IFF_LOOPBACK)) up.push_back(l.name);
    if (up.size() == 1) {
      h.interface = up[0];
      h.interface_note = "the only interface up";
    } else {
      h.interface_note = "no default route and " + std::to_string(up.size()) +
                         " interfaces up; name the one the balancer's packets arrive on";
    }
  }
  h.conf_all = read_conf("all");
  const auto link = h.interface.empty() ? std::nullopt : find_link(links, h.interface);
  if (!link) return h;
  h.interface_exists = true;
  h.mtu = link->mtu;
  h.conf_iface = read_conf(h.interface);
  h.xdp = xdp_state(link->ifindex);
  if (mode == ForwardMode::dsr) return h;
  try {
    const DecapStatus st = decap_status(h.interface);
    h.decap_program_id = st.program_id;
    h.decap_vips = st.vips;
    h.decap_gue_port = st.gue_port;
  } catch (const Error&) {
    // Ours by name but unreadable: count it as attached, holding nothing.
    for (size_t i = 0; i < h.xdp.programs.size(); ++i)
      if (h.xdp.programs[i] == "ballast_decap") h.decap_program_id = h.xdp.program_ids[i];
  }
  return h;
}

BalancerHost gather_balancer(const Request& request, const std::string& socket) {
  BalancerHost h;
  struct statfs fs {};
  h.bpffs_mounted =
      statfs("/sys/fs/bpf", &fs) == 0 && static_cast<unsigned long>(fs.f_type) == BPF_FS_MAGIC;
  h.socket = socket;
  h.pin_dir = kDefaultPinDir;
  std::string daemon_config;
  try {
    const auto st = call(socket, api::Status{});
    h.api_ok = true;
    h.api_interface = st.interface;
    h.api_program_id = st.program_id;
    h.pin_dir = st.pin_dir.empty() ? std::string(kDefaultPinDir) : st.pin_dir;
    daemon_config = st.config;
  } catch (const std::exception& e) {
    h.api_error = e.what();
  }
  std::error_code ec;
  h.pin_dir_exists = std::filesystem::is_directory(h.pin_dir, ec);
  if (h.pin_dir_exists)
    for (const auto& entry : std::filesystem::directory_iterator(h.pin_dir, ec))
      h.pinned.push_back(entry.path().filename().string());
  try {
    if (const auto meta = read_pinned_meta(h.pin_dir)) {
      using namespace std::chrono;
      const int64_t now_ms =
          duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
      h.heartbeat_age_ms = std::max<int64_t>(0, now_ms - static_cast<int64_t>(meta->heartbeat_unix_ms));
      h.heartbeat_pid = meta->daemon_pid;
    }
  } catch (const Error&) {
    // Unreadable: the pinned-maps check speaks for the pins.
  }

  h.config_path = !request.config.empty()                   ? request.config
                  : !daemon_config.empty()                  ? daemon_config
                  : std::filesystem::exists(kDefaultConfig) ? kDefaultConfig
                                                            : "";
  std::optional<Config> config;
  if (!h.config_path.empty()) {
    try {
      config = load_config_file(h.config_path);
    } catch (const std::exception& e) {
      h.config_error = e.what();
    }
  }
  h.interface = !request.interface.empty() ? request.interface
                : config                   ? config->interface
                                           : h.api_interface;

  const auto links = all_links();
  if (auto link = h.interface.empty() ? std::nullopt : find_link(links, h.interface)) {
    h.interface_exists = true;
    h.mtu = link->mtu;
    h.kind = link->kind;
    h.xdp = xdp_state(link->ifindex);
    if (h.kind == "veth" && link->peer_ifindex && !link->peer_other_netns) {
      h.peer_visible = true;
      h.peer_name = ifname(link->peer_ifindex);
      h.peer_xdp = xdp_state(link->peer_ifindex);
    }
  }
  if (!config) return h;

  // The route, interface and neighbour lookups ballastd itself makes for
  // its egress slots (neighbor.h), so the doctor sees what ballastd sees.
  KernelNeighbors kernel;
  std::map<int, std::map<IpAddress, MacAddress>> macs;  // by ifindex, asked once each
  for (const auto& vip : config->vips) {
    const auto mode = vip.mode;
    for (const auto& b : vip.backends) {
      BackendPath p;
      p.vip = vip.key.str();
      p.mode = mode;
      p.backend = b.address;
      const auto route = kernel.route(b.address);
      if (!route) {
        p.route_error = "the kernel has no unicast route to it";
      } else if ((p.interface = ifname(route->ifindex)) == "lo") {
        p.route_error = "it is an address of this host";
      } else {
        p.gateway = route->gateway;
        try {
          const InterfaceFacts facts = kernel.interface(route->ifindex);
          p.egress_mtu = facts.mtu;
          p.egress_has_source = b.address.is_v4() ? facts.ipv4.has_value() : facts.ipv6.has_value();
        } catch (const Error& e) {
          p.route_error = e.what();
        }
        if (!macs.count(route->ifindex)) macs[route->ifindex] = kernel.macs(route->ifindex);
        const IpAddress hop = p.gateway ? *p.gateway : b.address;
        if (auto it = macs[route->ifindex].find(hop); it != macs[route->ifindex].end())
          p.next_hop_mac = it->second;
      }
      h.paths.push_back(p);
    }
  }
  return h;
}

int run(const Request& request, const std::string& socket, bool json) {
  std::vector<Finding> findings;
  if (request.role == "backend") {
    const auto mode = parse_forward_mode(request.mode);
    if (!mode) throw Error("--mode '" + request.mode + "': must be dsr, ipip or gue");
    BackendOptions options;
    options.mode = *mode;
    options.gue_port = request.gue_port ? request.gue_port : kDefaultGuePort;
    for (const auto& text : request.vips) {
      auto a = IpAddress::parse(text);
      if (!a) throw Error("--vip '" + text + "' is not an IP address");
      options.vips.push_back(*a);
    }
    findings = check_backend(gather_backend(request.interface, *mode), options);
  } else {
    findings = check_balancer(gather_balancer(request, socket));
  }
  std::cout << (json ? render_json(request.role, findings) : render_text(findings));
  return has_error(findings) ? 1 : 0;
}

}  // namespace ballast::doctor
