// state_fixture.h: the core's tests' data plane and fixture.
// OrderedDataPlane records every write in order and fails the test at a
// write that would let a packet see a VIP without a table, or a table
// entry naming a slot that is not active. BalancerStateTest holds one with
// a FakeNeighbors host and a BalancerState over both.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "balancer_state.h"
#include "fake_maps.h"
#include "fake_neighbors.h"

namespace ballast {

class OrderedDataPlane : public DataPlane {
 public:
  std::vector<std::string> log;  // "put_vip 0", "install_table 0", ...
  std::map<uint32_t, ballast_backend> backends;
  std::map<uint32_t, std::vector<uint32_t>> tables;
  std::map<std::string, uint32_t> vips;    // key bytes -> id
  std::map<uint32_t, uint32_t> vip_flags;  // id -> ballast_vip_info.flags as last written
  std::map<std::string, ballast_vip_info> vip_infos;  // key bytes -> value as last written
  // Egress slots as last written; not in the log, which tracks the order
  // of VIP, slot and table writes.
  std::map<uint32_t, ballast_egress> egress;
  int egress_writes = 0;

  void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) override {
    // The table must already be there when the VIP becomes visible.
    EXPECT_TRUE(tables.count(info.vip_id))
        << "VIP " << info.vip_id << " published before its table";
    vips[key_str(key)] = info.vip_id;
    vip_flags[info.vip_id] = info.flags;
    vip_infos[key_str(key)] = info;
    log.push_back("put_vip " + std::to_string(info.vip_id));
  }
  void put_egress(uint32_t id, const ballast_egress& e) override {
    egress[id] = e;
    egress_writes++;
  }
  void delete_vip(const ballast_vip_key& key) override {
    vips.erase(key_str(key));
    vip_infos.erase(key_str(key));
    log.push_back("delete_vip");
  }
  void put_backend(uint32_t id, const ballast_backend& b) override {
    // No live table may name a slot that is being deactivated.
    if (!(b.flags & BALLAST_BACKEND_F_ACTIVE)) {
      for (const auto& [vip, t] : tables) {
        for (uint32_t e : t) {
          ASSERT_NE(e, id) << "slot " << id << " deactivated while table " << vip << " names it";
        }
      }
    }
    backends[id] = b;
    log.push_back("put_backend " + std::to_string(id));
  }
  void install_table(uint32_t vip_id, TablePtr table) override {
    const std::vector<uint32_t>& entries = *table;
    ASSERT_EQ(entries.size(), BALLAST_MAGLEV_SIZE);
    for (uint32_t e : entries) {
      if (e != BALLAST_NO_BACKEND) {
        ASSERT_TRUE(backends.count(e) && (backends[e].flags & BALLAST_BACKEND_F_ACTIVE))
            << "table names slot " << e << " before it is active";
      }
    }
    tables[vip_id] = entries;
    log.push_back("install_table " + std::to_string(vip_id));
  }
  void remove_table(uint32_t vip_id) override {
    tables.erase(vip_id);
    log.push_back("remove_table " + std::to_string(vip_id));
  }
  ballast_traffic_counters read_counters(CounterMap, uint32_t) override { return {}; }
  void reset_counters(CounterMap, uint32_t) override {}
  ballast_fleet_counters read_fleet_counters(uint32_t) override { return {}; }
  // Second chance: the previous tables, as the program would see them.
  std::map<uint32_t, std::vector<uint32_t>> previous;
  void keep_previous_table(uint32_t vip_id) override {
    if (tables.count(vip_id)) previous[vip_id] = tables[vip_id];
    log.push_back("keep_previous_table " + std::to_string(vip_id));
  }
  void remove_previous_table(uint32_t vip_id) override {
    previous.erase(vip_id);
    log.push_back("remove_previous_table " + std::to_string(vip_id));
  }
  std::vector<ballast_reason_counters> read_reasons() override {
    return std::vector<ballast_reason_counters>(BALLAST_REASON_COUNT);
  }
  // The connection table: (backend id, last_seen_ns) per entry, walked
  // in order; the clock its times are on.
  std::vector<std::pair<uint32_t, uint64_t>> conns;
  uint64_t clock_ns = 0;
  void walk_flows(FlowWalk& walk, size_t max,
                  const std::function<void(uint32_t, uint64_t)>& visit) override {
    size_t i = walk.started ? walk.token : 0;
    for (size_t n = 0; n < max && i < conns.size(); n++, i++) visit(conns[i].first, conns[i].second);
    walk.started = true;
    walk.token = i;
    walk.done = i == conns.size();
  }
  uint64_t flow_clock_ns() override { return clock_ns; }
  std::optional<LiveTable> live_table(uint32_t vip_id) override {
    return live_table_in(tables, vip_id);
  }
  LiveSnapshot snapshot() override {
    LiveSnapshot snap;
    for (const auto& [k, id] : vips) {
      ballast_vip_key key;
      std::memcpy(&key, k.data(), sizeof(key));
      snap.vips.push_back({key, vip_infos.count(k) ? vip_infos[k] : ballast_vip_info{id, 0, 0, 0}});
    }
    snap.egress = egress;
    for (const auto& [id, b] : backends)
      if (b.family) snap.backends[id] = b;
    for (const auto& [id, t] : tables)
      snap.tables[id] = LiveTable{0, std::make_shared<const std::vector<uint32_t>>(t)};
    return snap;
  }

  static std::string key_str(const ballast_vip_key& k) {
    return std::string(reinterpret_cast<const char*>(&k), sizeof(k));
  }
  std::map<uint32_t, uint32_t> entries_per_slot(uint32_t vip_id) {
    std::map<uint32_t, uint32_t> out;
    for (uint32_t e : tables.at(vip_id)) out[e]++;
    return out;
  }
};

inline IpAddress ip(const char* s) { return *IpAddress::parse(s); }

// The example: weights 1, 1, 2; @check for every backend.
inline Config three_backends(CheckSpec check = {}) {
  Config c;
  c.interface = "eth0";
  VipConfig vip = empty_vip(VipKey::parse("10.0.0.100:80/tcp"));
  check.port = 80;
  vip.check = check;
  for (auto [addr, weight] : {std::pair{"10.0.0.11", 1u}, {"10.0.0.12", 1u}, {"10.0.0.13", 2u}})
    vip.backends.push_back(BackendConfig{ip(addr), weight, check});
  c.vips.push_back(vip);
  return c;
}

inline CheckSpec tcp_check() {
  CheckSpec c;
  c.type = CheckType::tcp;
  return c;
}

class BalancerStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* a : {"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"})
      neighbors.known[ip(a)] = MacAddress{2, 0, 0, 0, 0, uint8_t(ip(a).bytes[3])};
  }
  OrderedDataPlane dp;
  FakeNeighbors neighbors;
  BalancerState state{dp, neighbors, 1};
};

}  // namespace ballast
