// neighbor.h: backend MACs from the kernel's neighbour table (rtnetlink),
// and nudging the kernel to resolve an address it has no entry for. The
// config never holds MACs: the kernel already knows them, or learns them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "address.h"

namespace ballast {

// An interface as an egress slot describes it (ballast_egress).
struct InterfaceFacts {
  int ifindex = 0;
  MacAddress mac{};
  uint32_t mtu = 1500;
  std::optional<IpAddress> ipv4, ipv6;  // outer sources of encapsulated packets
};
InterfaceFacts read_interface_facts(const std::string& name);

// The kernel's route to an address: the interface and, off-link, the
// gateway whose MAC a frame gets.
struct Route {
  int ifindex = 0;
  std::optional<IpAddress> gateway;  // nullopt: on-link
  bool operator==(const Route&) const = default;
};

// What the rest of the daemon needs from neighbour and route resolution;
// tests give a fake.
class NeighborSource {
 public:
  virtual ~NeighborSource() = default;
  // Every address the kernel has a MAC for on @ifindex (entries in any state
  // that holds one: REACHABLE, STALE, DELAY, PROBE, PERMANENT).
  virtual std::map<IpAddress, MacAddress> macs(int ifindex) = 0;
  // Makes the kernel resolve @addr (sends it one empty UDP datagram to the
  // discard port out of @ifindex, which starts ARP/ND). Does not wait.
  virtual void solicit(int ifindex, const IpAddress& addr) = 0;
  // The kernel's route to @dst (a FIB lookup, as `ip route get`); nullopt
  // when there is none.
  virtual std::optional<Route> route(const IpAddress& dst) = 0;
  // Interface @ifindex's MAC, MTU and addresses; throws Error when it is gone.
  virtual InterfaceFacts interface(int ifindex) = 0;
};

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
