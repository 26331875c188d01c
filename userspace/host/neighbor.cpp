#include "neighbor.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "error.h"
#include "fd.h"
#include "netlink.h"

namespace ballast {
namespace {

constexpr uint16_t kValidStates =
    NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;

}  // namespace

std::map<IpAddress, MacAddress> KernelNeighbors::macs(int ifindex) {
  netlink::Request req(RTM_GETNEIGH, /*dump=*/true);
  req.header<ndmsg>().ndm_family = AF_UNSPEC;
  std::map<IpAddress, MacAddress> out;
  for (const auto& msg : netlink::ask(req, RTM_NEWNEIGH)) {
    const auto* nd = reinterpret_cast<const ndmsg*>(msg.data());
    if (nd->ndm_ifindex != ifindex || !(nd->ndm_state & kValidStates)) continue;
    const auto attrs = netlink::attributes(msg, sizeof(ndmsg));
    auto dst = attrs.find(NDA_DST);
    auto lladdr = attrs.find(NDA_LLADDR);
    if (dst == attrs.end() || lladdr == attrs.end() || lladdr->second.size() != 6) continue;
    auto ip = netlink::attr_ip(dst->second);
    if (!ip) continue;
    MacAddress mac;
    std::memcpy(mac.data(), lladdr->second.data(), 6);
    out[*ip] = mac;
  }
  return out;
}

std::optional<Route> KernelNeighbors::route(const IpAddress& dst) {
  const size_t alen = dst.is_v4() ? 4 : 16;
  netlink::Request req(RTM_GETROUTE, /*dump=*/false);
  auto& rt_req = req.header<rtmsg>();
  rt_req.rtm_family = dst.is_v4() ? AF_INET : AF_INET6;
  rt_req.rtm_dst_len = static_cast<unsigned char>(alen * 8);
  req.put(RTA_DST, dst.bytes.data(), alen);
  std::vector<std::vector<char>> answer;
  try {
    answer = netlink::ask(req, RTM_NEWROUTE);
  } catch (const Error&) {
    return std::nullopt;  // no route (ENETUNREACH...)
  }
  if (answer.empty()) return std::nullopt;
  const auto* rt = reinterpret_cast<const rtmsg*>(answer[0].data());
  if (rt->rtm_type != RTN_UNICAST && rt->rtm_type != RTN_LOCAL) return std::nullopt;
  const auto attrs = netlink::attributes(answer[0], sizeof(rtmsg));
  Route r;
  if (auto oif = attrs.find(RTA_OIF); oif != attrs.end())
    r.ifindex = netlink::attr_as<int>(oif->second);
  if (auto gw = attrs.find(RTA_GATEWAY); gw != attrs.end())
    if (auto ip = netlink::attr_ip(gw->second); ip && ip->family == dst.family) r.gateway = ip;
  if (r.ifindex == 0) return std::nullopt;
  return r;
}

InterfaceFacts KernelNeighbors::interface(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (!if_indextoname(static_cast<unsigned>(ifindex), name))
    throw Error(errno_message("interface index " + std::to_string(ifindex), errno));
  return read_interface_facts(name);
}

void KernelNeighbors::solicit(int ifindex, const IpAddress& addr) {
  const int family = addr.is_v4() ? AF_INET : AF_INET6;
  UniqueFd sock(socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (sock.get() < 0) return;
  char ifname[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, ifname))
    setsockopt(sock.get(), SOL_SOCKET, SO_BINDTODEVICE, ifname, strlen(ifname));
  // Discard port: a backend that gets the datagram ignores it.
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(9);
    std::memcpy(&sin->sin_addr, addr.bytes.data(), 4);
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(9);
    std::memcpy(&sin6->sin6_addr, addr.bytes.data(), 16);
    len = sizeof(*sin6);
  }
  // Failure (no route, say) shows up later as "no neighbour entry".
  (void)sendto(sock.get(), "", 0, 0, reinterpret_cast<sockaddr*>(&ss), len);
}

int interface_index(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) throw Error(errno_message("interface " + name, errno));
  return static_cast<int>(idx);
}

std::vector<IpAddress> interface_addresses(const std::string& name) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) < 0) throw Error(errno_message("getifaddrs", errno));
  std::vector<IpAddress> out;
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || name != a->ifa_name) continue;
    IpAddress ip;
    if (a->ifa_addr->sa_family == AF_INET) {
      std::memcpy(ip.bytes.data(), &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, 4);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      ip.family = BALLAST_AF_INET6;
      std::memcpy(ip.bytes.data(), &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(ip);
  }
  freeifaddrs(list);
  return out;
}

std::vector<IpAddress> interface_ipv4_addresses(const std::string& name) {
  std::vector<IpAddress> out;
  for (const auto& a : interface_addresses(name))
    if (a.is_v4()) out.push_back(a);
  return out;
}

std::optional<IpAddress> interface_ipv6(const std::string& name) {
  for (const auto& a : interface_addresses(name)) {
    // Link-local (fe80::/10) is no source for packets routed elsewhere.
    if (a.is_v4() || (a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80)) continue;
    return a;
  }
  return std::nullopt;
}

uint32_t interface_mtu(const std::string& name) {
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw Error(errno_message("socket", errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock.get(), SIOCGIFMTU, &ifr) < 0) throw Error(errno_message("MTU of " + name, errno));
  return static_cast<uint32_t>(ifr.ifr_mtu);
}

std::optional<IpAddress> interface_ipv4(const std::string& name) {
  const auto all = interface_ipv4_addresses(name);
  if (all.empty()) return std::nullopt;
  return all.front();
}

MacAddress interface_mac(const std::string& name) {
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw Error(errno_message("socket", errno));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(sock.get(), SIOCGIFHWADDR, &ifr) < 0)
    throw Error(errno_message("MAC address of " + name, errno));
  MacAddress mac;
  std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  return mac;
}

InterfaceFacts read_interface_facts(const std::string& name) {
  InterfaceFacts f;
  f.ifindex = interface_index(name);
  f.mac = interface_mac(name);
  f.mtu = interface_mtu(name);
  f.ipv4 = interface_ipv4(name);
  f.ipv6 = interface_ipv6(name);
  return f;
}

}  // namespace ballast
