// null_dataplane.h: a DataPlane that keeps nothing and counts writes, for
// measuring and testing the core where the maps' contents do not matter.
#pragma once

#include <cstdint>

#include "dataplane.h"

namespace ballast {

class NullDataPlane : public DataPlane {
 public:
  uint64_t writes = 0;

  void put_vip(const ballast_vip_key&, const ballast_vip_info&) override { ++writes; }
  void delete_vip(const ballast_vip_key&) override { ++writes; }
  void put_backend(uint32_t, const ballast_backend&) override { ++writes; }
  void install_table(uint32_t, TablePtr) override { ++writes; }
  void remove_table(uint32_t) override { ++writes; }
  void put_egress(uint32_t, const ballast_egress&) override { ++writes; }
  ballast_traffic_counters read_counters(CounterMap, uint32_t) override { return {}; }
  void reset_counters(CounterMap, uint32_t) override { ++writes; }
  ballast_fleet_counters read_fleet_counters(uint32_t) override { return {}; }
  void keep_previous_table(uint32_t) override {}
  void remove_previous_table(uint32_t) override {}
  std::vector<ballast_reason_counters> read_reasons() override { return {}; }
  void walk_flows(FlowWalk& walk, size_t, const std::function<void(uint32_t, uint64_t)>&) override {
    walk.done = true;
  }
  uint64_t flow_clock_ns() override { return 0; }
  LiveSnapshot snapshot() override { return {}; }
  std::optional<LiveTable> live_table(uint32_t) override { return std::nullopt; }
};

}  // namespace ballast
