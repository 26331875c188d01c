// counters_dataplane.h: a DataPlane for tests of code that only reads
// (skew, metrics): counters, reasons and live tables set by the test;
// writes are ignored.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <vector>

#include "dataplane.h"
#include "fake_maps.h"

namespace ballast::test {

class CountersDataPlane : public DataPlane {
 public:
  std::map<uint32_t, ballast_traffic_counters> vip, backend;
  std::map<uint32_t, ballast_fleet_counters> fleet;  // by VIP id
  ballast_conn_counters conn{};
  std::vector<ballast_reason_counters> reasons =
      std::vector<ballast_reason_counters>(BALLAST_REASON_COUNT);
  std::map<uint32_t, std::vector<uint32_t>> tables;  // live Maglev tables by VIP id
  // Set when the code under test must read backend counters only.
  bool backend_reads_only = false;

  // Adds to backend @id's counters.
  void add(uint32_t id, uint64_t new_flows, uint64_t packets = 0, uint64_t bytes = 0) {
    backend[id].new_flows += new_flows;
    backend[id].packets += packets;
    backend[id].bytes += bytes;
  }

  void put_vip(const ballast_vip_key&, const ballast_vip_info&) override {}
  void delete_vip(const ballast_vip_key&) override {}
  void put_backend(uint32_t, const ballast_backend&) override {}
  void install_table(uint32_t, TablePtr) override {}
  void remove_table(uint32_t) override {}
  void put_egress(uint32_t, const ballast_egress&) override {}
  ballast_traffic_counters read_counters(CounterMap map, uint32_t id) override {
    if (backend_reads_only) {
      EXPECT_EQ(map, CounterMap::backend);
    }
    return map == CounterMap::vip ? vip[id] : backend[id];
  }
  void reset_counters(CounterMap map, uint32_t id) override {
    (map == CounterMap::vip ? vip : backend).erase(id);
    if (map == CounterMap::vip) fleet.erase(id);
  }
  ballast_fleet_counters read_fleet_counters(uint32_t vip_id) override { return fleet[vip_id]; }
  void keep_previous_table(uint32_t) override {}
  void remove_previous_table(uint32_t) override {}
  std::vector<ballast_reason_counters> read_reasons() override { return reasons; }
  ballast_conn_counters read_conn_counters() override { return conn; }
  void walk_flows(FlowWalk& walk, size_t, const std::function<void(uint32_t, uint64_t)>&) override {
    walk.done = true;
  }
  uint64_t flow_clock_ns() override { return 0; }
  LiveSnapshot snapshot() override { return {}; }
  std::optional<LiveTable> live_table(uint32_t vip_id) override {
    return live_table_in(tables, vip_id);
  }
};

}  // namespace ballast::test
