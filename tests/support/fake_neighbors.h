// fake_neighbors.h: a host for the core's tests and benches
// (NeighborSource, core/host_facts.h): neighbour tables, routes and
// interfaces as plain maps, and a record of what was solicited.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "host_facts.h"

namespace ballast {

class FakeNeighbors : public NeighborSource {
 public:
  std::map<IpAddress, MacAddress> known;  // on interface 1, the balancer's in these tests
  std::vector<IpAddress> solicited;
  // Routes by destination; any other is on-link on interface 1.
  std::map<IpAddress, Route> routes;
  // Neighbours of interfaces other than 1, by interface.
  std::map<int, std::map<IpAddress, MacAddress>> known_on;
  // Calls that would be a kernel round trip in ballastd (one rtnetlink
  // request each): what a change costs outside the process.
  uint64_t round_trips = 0;

  std::map<IpAddress, MacAddress> macs(int ifindex) override {
    ++round_trips;
    return ifindex == 1 ? known : known_on[ifindex];
  }
  void solicit(int, const IpAddress& a) override {
    ++round_trips;
    solicited.push_back(a);
  }
  std::optional<Route> route(const IpAddress& dst) override {
    ++round_trips;
    if (auto it = routes.find(dst); it != routes.end()) return it->second;
    return Route{1, std::nullopt};
  }
  InterfaceFacts interface(int ifindex) override { return facts(ifindex); }

  // Interface @ifindex as this host has it: MAC 02:00:00:00:ee:<ifindex>,
  // MTU 1500, no addresses.
  static InterfaceFacts facts(int ifindex) {
    InterfaceFacts f;
    f.ifindex = ifindex;
    f.mac = MacAddress{2, 0, 0, 0, 0xee, uint8_t(ifindex)};
    f.mtu = 1500;
    return f;
  }
};

}  // namespace ballast
