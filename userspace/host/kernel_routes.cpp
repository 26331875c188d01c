#include "kernel_routes.h"

#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>

#include "error.h"
#include "netlink.h"

namespace ballast {
namespace {

// The route's table: RTA_TABLE when present (tables above 255 have only
// that), else the header's.
uint32_t table_of(const rtmsg& rt, const std::map<uint16_t, std::string_view>& attrs) {
  if (const auto t = attrs.find(RTA_TABLE); t != attrs.end())
    return netlink::attr_as<uint32_t>(t->second);
  return rt.rtm_table;
}

// A route change for @address in @table: header and attributes.
void describe_route(netlink::Request& req, uint32_t table, const IpAddress& address) {
  const size_t alen = address.is_v4() ? 4 : 16;
  auto& rt = req.header<rtmsg>();
  rt.rtm_family = address.is_v4() ? AF_INET : AF_INET6;
  rt.rtm_dst_len = static_cast<unsigned char>(alen * 8);
  rt.rtm_table = RT_TABLE_UNSPEC;  // RTA_TABLE says which (any u32)
  rt.rtm_protocol = kRouteProtocol;
  rt.rtm_scope = RT_SCOPE_LINK;
  rt.rtm_type = RTN_UNICAST;
  req.put(RTA_DST, address.bytes.data(), alen);
  req.put(RTA_TABLE, &table, sizeof(table));
  // Through lo: a host route BIRD takes as a device route. No ip rule
  // looks up this table, so nothing is ever forwarded by it.
  const uint32_t lo = if_nametoindex("lo");
  if (lo == 0) throw Error("announce: no interface lo in this network namespace");
  req.put(RTA_OIF, &lo, sizeof(lo));
}

}  // namespace

std::vector<std::pair<uint32_t, IpAddress>> KernelRoutes::list_all() {
  std::vector<std::pair<uint32_t, IpAddress>> out;
  for (const unsigned char family : {AF_INET, AF_INET6}) {
    netlink::Request req(RTM_GETROUTE, /*dump=*/true);
    req.header<rtmsg>().rtm_family = family;
    for (const auto& payload : netlink::ask(req, RTM_NEWROUTE)) {
      if (payload.size() < sizeof(rtmsg)) continue;
      const auto* rt = reinterpret_cast<const rtmsg*>(payload.data());
      if (rt->rtm_protocol != kRouteProtocol) continue;
      const auto attrs = netlink::attributes(payload, sizeof(rtmsg));
      const auto dst = attrs.find(RTA_DST);
      if (dst == attrs.end()) continue;
      if (const auto ip = netlink::attr_ip(dst->second))
        out.emplace_back(table_of(*rt, attrs), *ip);
    }
  }
  return out;
}

std::vector<IpAddress> KernelRoutes::list(uint32_t table) {
  std::vector<IpAddress> out;
  for (const auto& [t, address] : list_all())
    if (t == table) out.push_back(address);
  return out;
}

void KernelRoutes::add(uint32_t table, const IpAddress& address) {
  netlink::Request req(RTM_NEWROUTE, /*dump=*/false, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
  describe_route(req, table, address);
  try {
    netlink::ask(req, RTM_NEWROUTE);
  } catch (const Error& e) {
    throw Error("announce " + address.str() + " (route in table " + std::to_string(table) +
                "): " + e.what());
  }
}

void KernelRoutes::remove(uint32_t table, const IpAddress& address) {
  netlink::Request req(RTM_DELROUTE, /*dump=*/false, NLM_F_ACK);
  describe_route(req, table, address);
  try {
    netlink::ask(req, RTM_DELROUTE);
  } catch (const Error& e) {
    // Gone already (someone deleted it): withdrawn all the same.
    const auto still = list(table);
    if (std::find(still.begin(), still.end(), address) == still.end()) return;
    throw Error("withdraw " + address.str() + " (route in table " + std::to_string(table) +
                "): " + e.what());
  }
}

}  // namespace ballast
