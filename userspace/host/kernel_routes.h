// kernel_routes.h: the announced VIP routes (core/announce.h) in the
// kernel, over rtnetlink: "VIP/32 dev lo proto ballast table N" (/128 for
// IPv6). Protocol kRouteProtocol marks them as Ballast's, so a dump finds
// exactly ours and BIRD's kernel protocol (`learn`) takes them as routes of
// another daemon to export.
#pragma once

#include <cstdint>
#include <vector>

#include "announce.h"

namespace ballast {

// rtm_protocol of Ballast's routes: unassigned in iproute2's rt_protos
// (FRR's daemons use 186..196, BIRD 12, keepalived 18).
constexpr uint8_t kRouteProtocol = 177;

class KernelRoutes : public RouteSink {
 public:
  std::vector<IpAddress> list(uint32_t table) override;
  void add(uint32_t table, const IpAddress& address) override;
  void remove(uint32_t table, const IpAddress& address) override;
  // Every Ballast route in every table of this network namespace
  // (`ballastd --cleanup` without a config): (table, address).
  std::vector<std::pair<uint32_t, IpAddress>> list_all();
};

}  // namespace ballast
