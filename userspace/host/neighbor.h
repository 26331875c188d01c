// neighbor.h: backend MACs from the kernel's neighbour table (rtnetlink),
// and nudging the kernel to resolve an address it has no entry for. The
// config never holds MACs: the kernel already knows them, or learns them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "address.h"
#include "host_facts.h"

namespace ballast {

// Interface @name's facts, read now; throws Error when it is absent.
InterfaceFacts read_interface_facts(const std::string& name);

class KernelNeighbors : public NeighborSource {
 public:
  // One rtnetlink RTM_GETNEIGH dump.
  std::map<IpAddress, MacAddress> macs(int ifindex) override;
  void solicit(int ifindex, const IpAddress& addr) override;
  // One rtnetlink RTM_GETROUTE request.
  std::optional<Route> route(const IpAddress& dst) override;
  InterfaceFacts interface(int ifindex) override;
};

// Interface facts the loader and the data plane need.
int interface_index(const std::string& name);  // throws Error when absent
MacAddress interface_mac(const std::string& name);
// The IPv4 and IPv6 addresses on interface @name (getifaddrs), in the
// kernel's order.
std::vector<IpAddress> interface_addresses(const std::string& name);
std::vector<IpAddress> interface_ipv4_addresses(const std::string& name);
// The first IPv4 / the first IPv6 other than link-local, if any: the outer
// sources of encapsulated packets.
std::optional<IpAddress> interface_ipv4(const std::string& name);
std::optional<IpAddress> interface_ipv6(const std::string& name);
uint32_t interface_mtu(const std::string& name);

}  // namespace ballast
