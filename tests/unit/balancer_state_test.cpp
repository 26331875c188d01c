// BalancerState and Commands against a fake data plane that records every
// write in order: the order is what keeps packets from ever seeing a VIP
// without a table or a table entry naming a missing backend.
#include "balancer_state.h"

#include <gtest/gtest.h>

#include <map>

#include "commands.h"
#include "error.h"

namespace ballast {
namespace {

class FakeDataPlane : public DataPlane {
 public:
  std::vector<std::string> log;  // "put_vip 0", "install_table 0", ...
  std::map<uint32_t, ballast_backend> backends;
  std::map<uint32_t, std::vector<uint32_t>> tables;
  std::map<std::string, uint32_t> vips;  // key bytes -> id

  void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) override {
    // The table must already be there when the VIP becomes visible.
    EXPECT_TRUE(tables.count(info.vip_id)) << "VIP " << info.vip_id << " published before its table";
    vips[key_str(key)] = info.vip_id;
    log.push_back("put_vip " + std::to_string(info.vip_id));
  }
  void delete_vip(const ballast_vip_key& key) override {
    vips.erase(key_str(key));
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
  void install_table(uint32_t vip_id, const std::vector<uint32_t>& entries) override {
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
  std::vector<ballast_reason_counters> read_reasons() override {
    return std::vector<ballast_reason_counters>(BALLAST_REASON_COUNT);
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

class FakeNeighbors : public NeighborSource {
 public:
  std::map<IpAddress, MacAddress> known;
  std::vector<IpAddress> solicited;
  std::map<IpAddress, MacAddress> macs(int) override { return known; }
  void solicit(int, const IpAddress& a) override { solicited.push_back(a); }
};

IpAddress ip(const char* s) { return *IpAddress::parse(s); }

Config three_backends() {
  Config c;
  c.interface = "eth0";
  c.vips.push_back({VipKey::parse("10.0.0.100:80/tcp"),
                    {{ip("10.0.0.11"), 1}, {ip("10.0.0.12"), 1}, {ip("10.0.0.13"), 2}}});
  return c;
}

class BalancerStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* a : {"10.0.0.11", "10.0.0.12", "10.0.0.13", "10.0.0.14"})
      neighbors.known[ip(a)] = MacAddress{2, 0, 0, 0, 0, uint8_t(ip(a).bytes[3])};
  }
  FakeDataPlane dp;
  FakeNeighbors neighbors;
  BalancerState state{dp, neighbors, 1};
};

TEST_F(BalancerStateTest, FirstApplyWritesBackendsThenTableThenVip) {
  auto changes = state.apply(three_backends());
  EXPECT_EQ(changes.size(), 4u) << "1 vip add + 3 backend add";
  ASSERT_EQ(dp.log.size(), 5u);
  EXPECT_EQ(dp.log[3], "install_table 0");
  EXPECT_EQ(dp.log[4], "put_vip 0");
  auto shares = dp.entries_per_slot(0);
  EXPECT_NEAR(shares[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005) << "weight 2 of 4";
  for (uint32_t id : {0u, 1u, 2u}) {
    EXPECT_TRUE(dp.backends[id].flags & BALLAST_BACKEND_F_ACTIVE) << "slot " << id;
    EXPECT_EQ(dp.backends[id].vip_id, 0u);
  }
  EXPECT_EQ(dp.backends[0].mac[5], 11) << "MAC from the neighbour table";
}

TEST_F(BalancerStateTest, WeightChangeSwapsOnlyTheTable) {
  state.apply(three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips[0].backends[0].weight = 6;
  auto changes = state.apply(c);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 6");
  EXPECT_EQ(dp.log, std::vector<std::string>{"install_table 0"}) << "ids and slots unchanged";
  EXPECT_NEAR(dp.entries_per_slot(0)[0] / double(BALLAST_MAGLEV_SIZE), 6.0 / 9, 0.005);
}

TEST_F(BalancerStateTest, ReapplyingTheSameConfigWritesNothing) {
  state.apply(three_backends());
  dp.log.clear();
  EXPECT_TRUE(state.apply(three_backends()).empty());
  EXPECT_TRUE(dp.log.empty());
}

TEST_F(BalancerStateTest, RemovedBackendLeavesTableBeforeItsSlot) {
  state.apply(three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips[0].backends.erase(c.vips[0].backends.begin());
  state.apply(c);
  EXPECT_EQ(dp.log, (std::vector<std::string>{"install_table 0", "put_backend 0"}));
  EXPECT_FALSE(dp.backends[0].flags & BALLAST_BACKEND_F_ACTIVE);
  EXPECT_EQ(dp.entries_per_slot(0).count(0), 0u);
}

TEST_F(BalancerStateTest, RemovedVipStopsMatchingFirst) {
  state.apply(three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips.clear();
  state.apply(c);
  ASSERT_GE(dp.log.size(), 2u);
  EXPECT_EQ(dp.log[0], "delete_vip");
  EXPECT_EQ(dp.log[1], "remove_table 0");
  EXPECT_TRUE(dp.vips.empty());
  for (uint32_t id : {0u, 1u, 2u}) EXPECT_FALSE(dp.backends[id].flags & BALLAST_BACKEND_F_ACTIVE);
}

TEST_F(BalancerStateTest, UnresolvedBackendWaitsOutsideTheTable) {
  neighbors.known.erase(ip("10.0.0.13"));
  state.apply(three_backends());
  EXPECT_EQ(state.unresolved(), std::vector<std::string>{"10.0.0.100:80/tcp 10.0.0.13"});
  ASSERT_EQ(neighbors.solicited.size(), 1u) << "the kernel is asked to resolve it";
  EXPECT_EQ(dp.entries_per_slot(0).count(2), 0u);
  EXPECT_NEAR(dp.entries_per_slot(0)[0] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);

  neighbors.known[ip("10.0.0.13")] = MacAddress{2, 0, 0, 0, 0, 13};
  auto changes = state.refresh_neighbors();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(state.unresolved().empty());
  EXPECT_NEAR(dp.entries_per_slot(0)[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);
}

TEST_F(BalancerStateTest, KnownMacSurvivesTheKernelForgettingIt) {
  state.apply(three_backends());
  neighbors.known.clear();
  EXPECT_TRUE(state.refresh_neighbors().empty());
  EXPECT_TRUE(state.unresolved().empty());
}

TEST_F(BalancerStateTest, AllWeightsZeroLeavesNoBackendEntries) {
  Config c = three_backends();
  for (auto& b : c.vips[0].backends) b.weight = 0;
  state.apply(c);
  EXPECT_EQ(dp.entries_per_slot(0), (std::map<uint32_t, uint32_t>{{BALLAST_NO_BACKEND, BALLAST_MAGLEV_SIZE}}));
}

class CommandsTest : public BalancerStateTest {
 protected:
  void SetUp() override {
    BalancerStateTest::SetUp();
    state.apply(three_backends());
    dp.log.clear();
  }
  nlohmann::json run(const std::string& cmd, nlohmann::json args) {
    return commands.handle({{"command", cmd}, {"args", args}}, PeerCred{});
  }
  Commands commands{state, dp, [] { return nlohmann::json::object(); }};
};

TEST_F(CommandsTest, BadEditsChangeNothing) {
  const auto before = state.desired().vips;
  const std::vector<std::pair<std::string, nlohmann::json>> bad = {
      {"backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", -3}}},
      {"backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", 70000}}},
      {"backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}}},
      {"backend.set_weight", {{"vip", "10.0.0.100:81/tcp"}, {"address", "10.0.0.11"}, {"weight", 2}}},
      {"backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}, {"weight", 2}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "2001:db8::1"}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "nope"}}},
      {"backend.del", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}}},
      {"vip.add", {{"vip", "10.0.0.100:80/tcp"}}},
      {"vip.add", {{"vip", "10.0.0.100:80"}}},
      {"vip.del", {{"vip", "10.0.0.200:80/tcp"}}},
      {"no.such.command", nlohmann::json::object()},
  };
  for (const auto& [cmd, args] : bad) {
    EXPECT_THROW(run(cmd, args), Error) << cmd << " " << args.dump();
    EXPECT_EQ(state.desired().vips, before) << cmd << " " << args.dump();
    EXPECT_TRUE(dp.log.empty()) << cmd << " " << args.dump() << " wrote " << dp.log.size();
  }
}

TEST_F(CommandsTest, ErrorsSayWhatIsWrong) {
  try {
    run("backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}, {"weight", 2}});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "backend 10.0.0.99 is not in VIP 10.0.0.100:80/tcp");
  }
}

TEST_F(CommandsTest, EditsGoLive) {
  auto r = run("backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.12"}, {"weight", 0}});
  EXPECT_EQ(r["changes"][0], "backend set-weight 10.0.0.100:80/tcp 10.0.0.12 1 -> 0");
  EXPECT_EQ(dp.entries_per_slot(0).count(1), 0u) << "weight 0: no table entries";
  run("backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.14"}, {"weight", 3}});
  EXPECT_EQ(state.desired().vips[0].backends.size(), 4u);
  run("vip.add", {{"vip", "10.0.0.101:53/udp"}});
  run("backend.add", {{"vip", "10.0.0.101:53/udp"}, {"address", "10.0.0.11"}});
  EXPECT_EQ(dp.vips.size(), 2u);
  run("vip.del", {{"vip", "10.0.0.100:80/tcp"}});
  EXPECT_EQ(dp.vips.size(), 1u);
  auto list = run("backend.list", nlohmann::json::object());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["vip"], "10.0.0.101:53/udp");
  EXPECT_EQ(list[0]["table_entries"], BALLAST_MAGLEV_SIZE);
}

}  // namespace
}  // namespace ballast
