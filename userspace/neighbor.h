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

// What the rest of the daemon needs from neighbour resolution; tests give a
// fake.
class NeighborSource {
 public:
  virtual ~NeighborSource() = default;
  // Every address the kernel has a MAC for on @ifindex (entries in any state
  // that holds one: REACHABLE, STALE, DELAY, PROBE, PERMANENT).
  virtual std::map<IpAddress, MacAddress> macs(int ifindex) = 0;
  // Makes the kernel resolve @addr (sends it one empty UDP datagram to the
  // discard port out of @ifindex, which starts ARP/ND). Does not wait.
  virtual void solicit(int ifindex, const IpAddress& addr) = 0;
};

class KernelNeighbors : public NeighborSource {
 public:
  // One rtnetlink RTM_GETNEIGH dump.
  std::map<IpAddress, MacAddress> macs(int ifindex) override;
  void solicit(int ifindex, const IpAddress& addr) override;
};

// Interface facts the loader and the data plane need.
int interface_index(const std::string& name);  // throws Error when absent
MacAddress interface_mac(const std::string& name);
// The IPv4 addresses on interface @name (getifaddrs), in the kernel's order.
std::vector<IpAddress> interface_ipv4_addresses(const std::string& name);
// The first of them, if any: the outer source of encapsulated packets.
std::optional<IpAddress> interface_ipv4(const std::string& name);

}  // namespace ballast
