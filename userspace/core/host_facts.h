// host_facts.h: what the core asks of the host it runs on: the kernel's
// routes, its neighbour table, an interface's MAC, MTU and addresses, and
// a nudge to resolve a MAC. An interface, so the policy code (the live
// state, the planner) reads the host through it and unit tests give a
// fake; host/neighbor.h answers it from the kernel over rtnetlink.
#pragma once

#include <map>
#include <optional>

#include "address.h"

namespace ballast {

// An interface as an egress slot describes it (ballast_egress).
struct InterfaceFacts {
  int ifindex = 0;
  MacAddress mac{};
  uint32_t mtu = 1500;
  std::optional<IpAddress> ipv4, ipv6;  // outer sources of encapsulated packets
};

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

}  // namespace ballast
