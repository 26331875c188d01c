// BalancerState and Commands against a fake data plane that records every
// write in order: the order is what keeps packets from ever seeing a VIP
// without a table or a table entry naming a missing backend.
#include "balancer_state.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "commands.h"
#include "error.h"
#include "fake_neighbors.h"
#include "state_driver.h"
#include "state_fixture.h"

namespace ballast {
namespace {


TEST_F(BalancerStateTest, FirstApplyWritesBackendsThenTableThenVip) {
  auto changes = apply(state, three_backends());
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

TEST_F(BalancerStateTest, IpipModeIsAVipFlagAndSwitchesWithOneWrite) {
  Config c = three_backends();
  c.vips[0].mode = ForwardMode::ipip;
  try {
    apply(state, c);
    ADD_FAILURE() << "ipip applied without an IPv4 outer source";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "VIP 10.0.0.100:80/tcp: mode ipip to backend 10.0.0.11 needs an IPv4 outer source: "
              "eth0 has no IPv4 address and encap.source_prefix_v4 is not set");
  }
  EXPECT_TRUE(dp.log.empty()) << "refused before any write";
  EXPECT_EQ(dp.egress_writes, 0) << "refused before any write";
  InterfaceFacts facts;
  facts.ifindex = 7;
  facts.ipv4 = ip("10.0.0.2");
  state.set_interface(facts);
  apply(state, c);
  EXPECT_EQ(dp.vip_flags[0], BALLAST_VIP_F_ENCAP_IPIP);
  dp.log.clear();
  c.vips[0].mode = ForwardMode::dsr;
  auto changes = apply(state, c);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "vip options 10.0.0.100:80/tcp: mode ipip -> dsr");
  EXPECT_EQ(dp.log, std::vector<std::string>{"put_vip 0"}) << "one write, no table swap";
  EXPECT_EQ(dp.vip_flags[0], 0u);
  EXPECT_EQ(state.expected().vips[0].second.flags, 0u);
}

TEST_F(BalancerStateTest, GueOptionsAndFragmentsAreVipEntriesAndSurviveARestart) {
  InterfaceFacts facts;
  facts.ifindex = 7;
  facts.ipv4 = ip("10.0.0.2");
  state.set_interface(facts);
  Config c = three_backends();
  VipConfig& vip = c.vips[0];
  vip.key = VipKey::parse("10.0.0.100:53/udp");
  vip.mode = ForwardMode::gue;
  vip.gue_port = 7777;
  vip.ignore_source_port = true;
  vip.fragments = true;
  apply(state, c);
  VipKey frag = vip.key;
  frag.port = 0;
  const auto main_key = OrderedDataPlane::key_str(vip.key.to_abi());
  const auto frag_key = OrderedDataPlane::key_str(frag.to_abi());
  ASSERT_TRUE(dp.vip_infos.count(main_key));
  ASSERT_TRUE(dp.vip_infos.count(frag_key)) << "fragments: a port-0 entry";
  EXPECT_EQ(dp.vip_infos[main_key].flags, BALLAST_VIP_F_ENCAP_GUE | BALLAST_VIP_F_NO_SRC_PORT);
  EXPECT_EQ(ntohs(dp.vip_infos[main_key].gue_port), 7777);
  EXPECT_EQ(dp.vip_infos[frag_key].flags,
            BALLAST_VIP_F_ENCAP_GUE | BALLAST_VIP_F_NO_SRC_PORT | BALLAST_VIP_F_FRAGMENTS);
  EXPECT_EQ(dp.vip_infos[frag_key].vip_id, dp.vip_infos[main_key].vip_id);
  EXPECT_EQ(state.expected().vips.size(), 2u);

  // A restarted daemon reads the mode, port and options back from the maps.
  BalancerState restarted(dp, neighbors, 1);
  restarted.set_interface(facts);
  dp.log.clear();
  restarted.adopt(dp.snapshot(), c);
  EXPECT_TRUE(apply(restarted, c).empty()) << "nothing to change";
  EXPECT_TRUE(dp.log.empty());

  // Turning fragments off removes only the port-0 entry.
  c.vips[0].fragments = false;
  EXPECT_EQ(apply(restarted, c),
            std::vector<std::string>{"vip options 10.0.0.100:53/udp: fragments off"});
  EXPECT_EQ(dp.log, std::vector<std::string>{"delete_vip"});
  EXPECT_FALSE(dp.vip_infos.count(frag_key));
  EXPECT_TRUE(dp.vip_infos.count(main_key));
}

TEST_F(BalancerStateTest, EgressSlotHoldsTheInterfaceAndTheEncapPrefix) {
  InterfaceFacts facts;
  facts.ifindex = 7;
  facts.mac = MacAddress{2, 0, 0, 0, 0, 0x0b};
  facts.mtu = 9000;
  facts.ipv4 = ip("10.0.0.2");
  state.set_interface(facts);
  Config c = three_backends();
  c.vips[0].mode = ForwardMode::ipip;
  apply(state, c);
  ASSERT_TRUE(dp.egress.count(0));
  EXPECT_EQ(dp.egress[0].ifindex, 7u);
  EXPECT_EQ(dp.egress[0].mac[5], 0x0b);
  EXPECT_EQ(dp.egress[0].mtu, 9000);
  EXPECT_EQ(dp.egress[0].src4, ip("10.0.0.2").to_abi().v4);
  EXPECT_EQ(dp.egress[0].src4_hash_mask, 0u) << "the interface's address as is";
  EXPECT_EQ(dp.egress_writes, 1);

  c.encap.source_v4 = IpPrefix::parse("10.255.0.0/16");
  EXPECT_EQ(apply(state, c),
            (std::vector<std::string>{"egress eth0 updated", "encap settings changed"}));
  EXPECT_EQ(dp.egress[0].src4, ip("10.255.0.0").to_abi().v4);
  EXPECT_EQ(dp.egress[0].src4_hash_mask, htonl(0x0000ffff)) << "the host bits from the hash";
  EXPECT_EQ(dp.egress_writes, 2);
  apply(state, c);
  EXPECT_EQ(dp.egress_writes, 2) << "unchanged: not rewritten";

  // The interface's MTU changes under the daemon: the next refresh
  // rewrites the slot, and says so.
  facts.mtu = 1400;
  state.set_interface(facts);
  EXPECT_EQ(follow_host(state),
            std::vector<std::string>{
                "egress slots rewritten: 1 (an interface's MTU, MAC or address changed)"});
  EXPECT_EQ(dp.egress[0].mtu, 1400);
  EXPECT_EQ(dp.egress_writes, 3);
  EXPECT_TRUE(follow_host(state).empty()) << "nothing changed since";

  // An IPv6 backend needs an IPv6 source: refused, nothing written.
  c.vips[0].backends.push_back(BackendConfig{ip("fd00::14"), 1, c.vips[0].check});
  EXPECT_THROW(apply(state, c), Error);
  EXPECT_EQ(dp.egress_writes, 3);
  c.encap.source_v6 = IpPrefix::parse("fd00:ff::/96");
  apply(state, c);
  EXPECT_EQ(dp.egress[0].src6_hash_mask, 0xffffffffu);
}

TEST_F(BalancerStateTest, NextHopsFollowTheKernelsRoutes) {
  InterfaceFacts facts;
  facts.ifindex = 1;
  facts.ipv4 = ip("10.0.0.2");
  state.set_interface(facts);
  // be 10.0.0.12 sits behind router 10.0.0.1; 10.0.0.13 is reached by
  // interface 5 through router 10.9.0.1.
  neighbors.routes[ip("10.0.0.12")] = Route{1, ip("10.0.0.1")};
  neighbors.routes[ip("10.0.0.13")] = Route{5, ip("10.9.0.1")};
  neighbors.known[ip("10.0.0.1")] = MacAddress{2, 0, 0, 0, 0, 1};
  neighbors.known_on[5][ip("10.9.0.1")] = MacAddress{2, 0, 0, 0, 9, 1};

  Config c = three_backends();
  try {
    apply(state, c);
    ADD_FAILURE() << "dsr applied to a backend behind a router";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "VIP 10.0.0.100:80/tcp: backend 10.0.0.12 is not on the balancer's segment (the "
              "route to it goes via 10.0.0.1): mode dsr only rewrites MACs, so it needs backends "
              "on eth0's link; use mode ipip or gue");
  }
  EXPECT_TRUE(dp.log.empty()) << "refused before any write";

  c.vips[0].mode = ForwardMode::ipip;
  apply(state, c);
  EXPECT_EQ(dp.backends[0].mac[5], 11) << "on-link: the backend's own MAC";
  EXPECT_EQ(dp.backends[0].egress, 0);
  EXPECT_EQ(dp.backends[1].mac[5], 1) << "behind a router: the router's MAC";
  EXPECT_EQ(dp.backends[1].egress, 0);
  EXPECT_EQ(dp.backends[2].mac[4], 9) << "another interface: its router's MAC";
  EXPECT_EQ(dp.backends[2].egress, 1) << "another interface: an egress slot of its own";
  ASSERT_TRUE(dp.egress.count(1));
  EXPECT_EQ(dp.egress[1].ifindex, 5u);
  EXPECT_EQ(dp.egress[1].mac[4], 0xee) << "that interface's MAC";
  for (uint32_t id : {0u, 1u, 2u}) EXPECT_TRUE(dp.backends[id].flags & BALLAST_BACKEND_F_ACTIVE);

  // The route to 10.0.0.12 changes: refresh moves it to the new hop.
  neighbors.routes[ip("10.0.0.12")] = Route{1, ip("10.0.0.254")};
  neighbors.known[ip("10.0.0.254")] = MacAddress{2, 0, 0, 0, 0, 0xfe};
  const auto changes = follow_host(state);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0], "backend next-hop 10.0.0.100:80/tcp 10.0.0.12 10.0.0.1 -> 10.0.0.254");
  EXPECT_EQ(changes[1], "backend mac 10.0.0.100:80/tcp 10.0.0.12 unresolved -> 02:00:00:00:00:fe");
  EXPECT_EQ(dp.backends[1].mac[5], 0xfe);

  // A configured router takes every encapsulated packet of its family.
  c.encap.next_hop_v4 = ip("10.0.0.1");
  neighbors.routes[ip("10.0.0.1")] = Route{1, std::nullopt};
  apply(state, c);
  for (uint32_t id : {0u, 1u, 2u}) {
    EXPECT_EQ(dp.backends[id].mac[5], 1) << "slot " << id << ": the configured router's MAC";
    EXPECT_EQ(dp.backends[id].egress, 0);
  }
}

TEST_F(BalancerStateTest, WeightChangeSwapsOnlyTheTable) {
  apply(state, three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips[0].backends[0].weight = 6;
  auto changes = apply(state, c);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 6");
  EXPECT_EQ(dp.log, std::vector<std::string>{"install_table 0"}) << "ids and slots unchanged";
  EXPECT_NEAR(dp.entries_per_slot(0)[0] / double(BALLAST_MAGLEV_SIZE), 6.0 / 9, 0.005);
}

TEST_F(BalancerStateTest, ReapplyingTheSameConfigWritesNothing) {
  apply(state, three_backends());
  dp.log.clear();
  EXPECT_TRUE(apply(state, three_backends()).empty());
  EXPECT_TRUE(dp.log.empty());
}

TEST_F(BalancerStateTest, RemovedBackendLeavesTableBeforeItsSlot) {
  apply(state, three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips[0].backends.erase(c.vips[0].backends.begin());
  apply(state, c);
  EXPECT_EQ(dp.log, (std::vector<std::string>{"install_table 0", "put_backend 0"}));
  EXPECT_FALSE(dp.backends[0].flags & BALLAST_BACKEND_F_ACTIVE);
  EXPECT_EQ(dp.entries_per_slot(0).count(0), 0u);
}

TEST_F(BalancerStateTest, RemovedVipStopsMatchingFirst) {
  apply(state, three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips.clear();
  apply(state, c);
  ASSERT_GE(dp.log.size(), 2u);
  EXPECT_EQ(dp.log[0], "delete_vip");
  EXPECT_EQ(dp.log[1], "remove_table 0");
  EXPECT_TRUE(dp.vips.empty());
  for (uint32_t id : {0u, 1u, 2u}) EXPECT_FALSE(dp.backends[id].flags & BALLAST_BACKEND_F_ACTIVE);
}

TEST_F(BalancerStateTest, UnresolvedBackendWaitsOutsideTheTable) {
  neighbors.known.erase(ip("10.0.0.13"));
  apply(state, three_backends());
  EXPECT_EQ(state.unresolved(), std::vector<std::string>{"10.0.0.100:80/tcp 10.0.0.13"});
  ASSERT_EQ(neighbors.solicited.size(), 1u) << "the kernel is asked to resolve it";
  EXPECT_EQ(dp.entries_per_slot(0).count(2), 0u);
  EXPECT_NEAR(dp.entries_per_slot(0)[0] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);

  neighbors.known[ip("10.0.0.13")] = MacAddress{2, 0, 0, 0, 0, 13};
  auto changes = follow_host(state);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(state.unresolved().empty());
  EXPECT_NEAR(dp.entries_per_slot(0)[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);
}

TEST_F(BalancerStateTest, KnownMacSurvivesTheKernelForgettingIt) {
  apply(state, three_backends());
  neighbors.known.clear();
  EXPECT_TRUE(follow_host(state).empty());
  EXPECT_TRUE(state.unresolved().empty());
}

TEST_F(BalancerStateTest, CheckedBackendsWaitForTheirFirstResult) {
  apply(state, three_backends(tcp_check()));
  EXPECT_EQ(dp.entries_per_slot(0),
            (std::map<uint32_t, uint32_t>{{BALLAST_NO_BACKEND, BALLAST_MAGLEV_SIZE}}))
      << "health unknown: no new flows yet";
  for (uint32_t id : {0u, 1u, 2u}) set_health(state, id, Health::up, "first check");
  EXPECT_NEAR(dp.entries_per_slot(0)[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);
}

TEST_F(BalancerStateTest, DownBackendLeavesTableThenSlotOthersKeepTheirEntries) {
  apply(state, three_backends(tcp_check()));
  for (uint32_t id : {0u, 1u, 2u}) set_health(state, id, Health::up, "");
  const auto before = dp.tables.at(0);
  dp.log.clear();
  auto changes = set_health(state, 1, Health::down, "3 failures");
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0], "backend health 10.0.0.100:80/tcp 10.0.0.12 up -> down (3 failures)");
  EXPECT_EQ(dp.log, (std::vector<std::string>{"install_table 0", "put_backend 1"}))
      << "table without it first, then its slot inactive (its flows re-select)";
  EXPECT_FALSE(dp.backends[1].flags & BALLAST_BACKEND_F_ACTIVE);
  EXPECT_TRUE(dp.backends[1].flags & BALLAST_BACKEND_F_DOWN) << "kept in the map for a restart";
  const auto& after = dp.tables.at(0);
  for (uint32_t i = 0; i < BALLAST_MAGLEV_SIZE; i++) {
    if (before[i] != 1) {
      ASSERT_EQ(after[i], before[i]) << "entry " << i << " moved needlessly";
    }
  }
  auto shares = dp.entries_per_slot(0);
  EXPECT_NEAR(shares[0] / double(BALLAST_MAGLEV_SIZE), 1.0 / 3, 0.005) << "weight 1 of 3 left";
  EXPECT_NEAR(shares[2] / double(BALLAST_MAGLEV_SIZE), 2.0 / 3, 0.005) << "weight 2 of 3 left";
  EXPECT_TRUE(set_health(state, 1, Health::down, "again").empty()) << "no change, no entry";
  set_health(state, 1, Health::up, "2 successes");
  EXPECT_EQ(dp.tables.at(0), before) << "recovery restores the same table";
  EXPECT_TRUE(dp.backends[1].flags & BALLAST_BACKEND_F_ACTIVE);
}

TEST_F(BalancerStateTest, AllDownDropsUnlessFailOpen) {
  Config c = three_backends(tcp_check());
  apply(state, c);
  for (uint32_t id : {0u, 1u, 2u}) set_health(state, id, Health::down, "");
  EXPECT_EQ(dp.entries_per_slot(0).count(BALLAST_NO_BACKEND), 1u) << "fail_open false: drop";
  c.vips[0].fail_open = true;
  auto changes = apply(state, c);
  EXPECT_EQ(changes, std::vector<std::string>{"vip fail-open 10.0.0.100:80/tcp on"});
  EXPECT_NEAR(dp.entries_per_slot(0)[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005)
      << "fail open: every backend by weight";
  for (uint32_t id : {0u, 1u, 2u})
    EXPECT_TRUE(dp.backends[id].flags & BALLAST_BACKEND_F_ACTIVE) << "slot " << id;
  EXPECT_TRUE(state.view()[0].failing_open);
  set_health(state, 0, Health::up, "");
  EXPECT_EQ(dp.entries_per_slot(0), (std::map<uint32_t, uint32_t>{{0, BALLAST_MAGLEV_SIZE}}))
      << "one up backend: fail-open ends";
  EXPECT_FALSE(dp.backends[1].flags & BALLAST_BACKEND_F_ACTIVE);
}

TEST_F(BalancerStateTest, DrainKeepsFlowsAndSurvivesRecoveryAndApply) {
  apply(state, three_backends(tcp_check()));
  for (uint32_t id : {0u, 1u, 2u}) set_health(state, id, Health::up, "");
  auto changes = set_drained(state, VipKey::parse("10.0.0.100:80/tcp"), ip("10.0.0.13"), true);
  EXPECT_EQ(changes, std::vector<std::string>{"backend drain 10.0.0.100:80/tcp 10.0.0.13"});
  EXPECT_EQ(dp.entries_per_slot(0).count(2), 0u) << "drained: no new flows";
  EXPECT_TRUE(dp.backends[2].flags & BALLAST_BACKEND_F_ACTIVE) << "established flows stay";
  EXPECT_TRUE(dp.backends[2].flags & BALLAST_BACKEND_F_DRAINED);
  set_health(state, 2, Health::down, "");
  set_health(state, 2, Health::up, "");
  apply(state, three_backends(tcp_check()));
  EXPECT_EQ(dp.entries_per_slot(0).count(2), 0u) << "recovered and re-applied: still drained";
  set_drained(state, VipKey::parse("10.0.0.100:80/tcp"), ip("10.0.0.13"), false);
  EXPECT_NEAR(dp.entries_per_slot(0)[2] / double(BALLAST_MAGLEV_SIZE), 0.5, 0.005);
  EXPECT_THROW(set_drained(state, VipKey::parse("10.0.0.100:80/tcp"), ip("10.0.0.99"), true), Error);
}

TEST_F(BalancerStateTest, PlanWritesNothing) {
  apply(state, three_backends());
  dp.log.clear();
  Config c = three_backends();
  c.vips[0].backends[0].weight = 5;
  c.vips[0].backends.pop_back();
  auto planned = plan_text(state, c);
  EXPECT_EQ(planned,
            (std::vector<std::string>{"backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 5",
                                      "backend del 10.0.0.100:80/tcp 10.0.0.13"}));
  EXPECT_TRUE(dp.log.empty());
  EXPECT_EQ(state.desired().vips[0].backends.size(), 3u);
  EXPECT_EQ(apply(state, c), planned) << "apply does what plan said";
}

TEST_F(BalancerStateTest, RestartAdoptsIdsHealthDrainsAndTables) {
  apply(state, three_backends(tcp_check()));
  for (uint32_t id : {0u, 1u, 2u}) set_health(state, id, Health::up, "");
  set_health(state, 0, Health::down, "");
  set_drained(state, VipKey::parse("10.0.0.100:80/tcp"), ip("10.0.0.12"), true);
  const auto table = dp.tables.at(0);

  BalancerState restarted(dp, neighbors, 1);
  dp.log.clear();
  restarted.adopt(dp.snapshot(), three_backends(tcp_check()));
  EXPECT_TRUE(apply(restarted, three_backends(tcp_check())).empty()) << "nothing to change";
  EXPECT_TRUE(dp.log.empty()) << "adoption rewrote the maps";
  auto view = restarted.view();
  ASSERT_EQ(view.size(), 1u);
  EXPECT_EQ(view[0].backends[0].health, Health::down);
  EXPECT_TRUE(view[0].backends[1].drained);
  EXPECT_EQ(view[0].backends[2].health, Health::up);
  EXPECT_EQ(dp.tables.at(0), table);
  // A backend added after the restart takes a fresh slot.
  Config more = three_backends(tcp_check());
  more.vips[0].backends.push_back(BackendConfig{ip("10.0.0.14"), 1, more.vips[0].check});
  apply(restarted, more);
  EXPECT_EQ(restarted.view()[0].backends[3].id, 3u);
}

// Two balancers with the same config build the same table whatever ids their
// backends got (here: backends listed, and so numbered, in another order),
// and show the same fleet digest. A new hash_seed is a change of its own:
// every table is built anew and the digest follows.
TEST_F(BalancerStateTest, SameConfigSameDigestWhateverTheIds) {
  apply(state, three_backends());
  OrderedDataPlane other_dp;
  BalancerState other{other_dp, neighbors, 1};
  Config reordered = three_backends();
  std::reverse(reordered.vips[0].backends.begin(), reordered.vips[0].backends.end());
  apply(other, reordered);
  const auto mine = state.view()[0], theirs = other.view()[0];
  ASSERT_TRUE(mine.table && theirs.table);
  EXPECT_NE(*mine.table, *theirs.table) << "the ids differ, so the raw tables do";
  EXPECT_EQ(mine.table_digest, theirs.table_digest);
  EXPECT_NE(mine.table_digest, 0u);

  Config seeded = three_backends();
  seeded.fleet.hash_seed = 7;
  dp.log.clear();
  const auto changes = apply(state, seeded);
  EXPECT_NE(std::find(changes.begin(), changes.end(), "fleet settings changed"), changes.end())
      << "changes: " << ::testing::PrintToString(changes);
  EXPECT_NE(std::find(dp.log.begin(), dp.log.end(), "install_table 0"), dp.log.end())
      << "a new seed builds the table anew";
  EXPECT_EQ(state.view()[0].hash_seed, 7u);
  EXPECT_NE(state.view()[0].table_digest, mine.table_digest);
}

// Second chance: on a gue tcp VIP with it, a table change first keeps the
// table flows began with as the previous one (then installs the new one),
// with the flag in the VIP's entry; turning it off removes the previous
// table; a VIP without it keeps none.
TEST_F(BalancerStateTest, SecondChanceKeepsThePreviousTableWhenTheTableChanges) {
  Config c = three_backends();
  c.encap.source_v4 = IpPrefix::parse("10.255.0.0/16");
  c.vips[0].mode = ForwardMode::gue;
  c.vips[0].second_chance = true;
  apply(state, c);
  EXPECT_TRUE(dp.previous.empty()) << "a new VIP has no previous table";
  EXPECT_TRUE(dp.vip_flags[0] & BALLAST_VIP_F_SECOND_CHANCE);
  const auto before = dp.tables[0];
  c.vips[0].backends.push_back(BackendConfig{ip("10.0.0.14"), 1, c.vips[0].check});
  dp.log.clear();
  const auto changes = apply(state, c);
  ASSERT_TRUE(dp.previous.count(0));
  EXPECT_EQ(dp.previous[0], before) << "the previous table is the one flows began with";
  EXPECT_NE(dp.tables[0], before);
  const auto keep = std::find(dp.log.begin(), dp.log.end(), "keep_previous_table 0");
  const auto install = std::find(dp.log.begin(), dp.log.end(), "install_table 0");
  EXPECT_TRUE(keep != dp.log.end() && install != dp.log.end() && keep < install)
      << ::testing::PrintToString(dp.log);

  c.vips[0].second_chance = false;
  const auto off = apply(state, c);
  EXPECT_FALSE(dp.previous.count(0)) << "second chance off: no previous table";
  EXPECT_FALSE(dp.vip_flags[0] & BALLAST_VIP_F_SECOND_CHANCE);
  EXPECT_NE(std::find(off.begin(), off.end(),
                      "vip options 10.0.0.100:80/tcp: second_chance off"),
            off.end())
      << ::testing::PrintToString(off);
  c.vips[0].backends.pop_back();
  apply(state, c);
  EXPECT_FALSE(dp.previous.count(0)) << "without second chance no table is kept";
}

TEST_F(BalancerStateTest, AllWeightsZeroLeavesNoBackendEntries) {
  Config c = three_backends();
  for (auto& b : c.vips[0].backends) b.weight = 0;
  apply(state, c);
  EXPECT_EQ(dp.entries_per_slot(0),
            (std::map<uint32_t, uint32_t>{{BALLAST_NO_BACKEND, BALLAST_MAGLEV_SIZE}}));
}

class CommandsTest : public BalancerStateTest {
 protected:
  void SetUp() override {
    BalancerStateTest::SetUp();
    apply(state, three_backends());
    dp.log.clear();
  }
  nlohmann::json run(const std::string& cmd, nlohmann::json args) {
    return commands.handle({{"command", cmd}, {"args", args}}, PeerCred{});
  }
  ChangeLog changes;
  ChangePipeline pipeline{state, changes};
  FlowCensus census;
  Commands commands{pipeline,
                    dp,
                    changes,
                    [] { return api::StatusReply{}; },
                    [](uint32_t) { return std::string(); },
                    nullptr,
                    nullptr,
                    &census};
};

// A read-group member reads but may not change: the change is refused with
// its uid, and nothing is written.
TEST_F(CommandsTest, ReadersMayNotChange) {
  commands.set_access(ControlAccess{.read_group = 990, .admin_group = std::nullopt});
  const PeerCred reader{.pid = 77, .uid = 1000, .gid = 990, .groups = {990}};
  EXPECT_NO_THROW(commands.handle({{"command", "backend.list"}}, reader));
  dp.log.clear();
  try {
    commands.handle({{"command", "backend.set_weight"},
                     {"args", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", 5}}}},
                    reader);
    ADD_FAILURE() << "a reader changed a weight";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "permission denied: uid 1000 pid 77 may not change ballastd (root and the admin "
              "group only)");
  }
  EXPECT_TRUE(dp.log.empty());
  EXPECT_EQ(state.desired().vips[0].backends[0].weight, 1u);
  const PeerCred stranger{.pid = 78, .uid = 1001, .gid = 100, .groups = {100}};
  EXPECT_THROW(commands.handle({{"command", "status"}}, stranger), Error);
}

// A drain passes the audit a weight of 0 would: with 1:1:2, draining
// 10.0.0.11 leaves 10.0.0.13 two thirds of the new flows, over the 50 %
// share limit, so it is refused (nothing changes) unless forced.
TEST_F(CommandsTest, DrainsAreAuditedLikeWeights) {
  const nlohmann::json drain = {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}};
  try {
    run("backend.drain", drain);
    ADD_FAILURE() << "a drain that breaks the share limit was applied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refused by the pre-apply audit"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("share-limit"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(state.view()[0].backends[0].drained);
  EXPECT_TRUE(dp.log.empty());
  nlohmann::json forced = drain;
  forced["force"] = true;
  const auto out = run("backend.drain", forced);
  EXPECT_TRUE(state.view()[0].backends[0].drained);
  EXPECT_FALSE(out["new_findings"].empty());
  // Undraining removes the finding: nothing new, so never refused.
  EXPECT_NO_THROW(run("backend.undrain", drain));
  EXPECT_THROW(run("backend.drain", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}}),
               Error);
}

TEST_F(CommandsTest, BadEditsChangeNothing) {
  const auto before = state.desired().vips;
  const std::vector<std::pair<std::string, nlohmann::json>> bad = {
      {"backend.set_weight",
       {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", -3}}},
      {"backend.set_weight",
       {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", 70000}}},
      {"backend.set_weight", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}}},
      {"backend.set_weight",
       {{"vip", "10.0.0.100:81/tcp"}, {"address", "10.0.0.11"}, {"weight", 2}}},
      {"backend.set_weight",
       {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}, {"weight", 2}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "2001:db8::1"}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "nope"}}},
      {"backend.del", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}}},
      {"vip.add", {{"vip", "10.0.0.100:80/tcp"}}},
      {"vip.add", {{"vip", "10.0.0.100:80"}}},
      {"vip.add", {{"vip", "0.0.0.0:80/tcp"}}},
      {"vip.add", {{"vip", "[::ffff:10.0.0.100]:80/tcp"}}},
      {"backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "224.0.0.5"}}},
      {"vip.del", {{"vip", "10.0.0.200:80/tcp"}}},
      {"no.such.command", nlohmann::json::object()},
  };
  for (const auto& [cmd, args] : bad) {
    EXPECT_THROW(run(cmd, args), Error) << cmd << " " << args.dump();
    EXPECT_EQ(state.desired().vips, before) << cmd << " " << args.dump();
    EXPECT_TRUE(dp.log.empty()) << cmd << " " << args.dump() << " wrote " << dp.log.size();
  }
}

// Every request type has its route: none is answered "unknown command"
// (its arguments may well be wrong for this state).
TEST_F(CommandsTest, EveryRequestIsServed) {
  const VipKey vip = state.view()[0].key;
  api::for_each_request([&](auto request) {
    if constexpr (requires { request.vip = vip; }) request.vip = vip;
    try {
      commands.handle(api::envelope(request), PeerCred{});
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find("unknown command"), std::string::npos)
          << request.kCommand << ": " << e.what();
    }
  });
  EXPECT_THROW(run("vip.list", {{"all", true}}), Error) << "an argument it does not take";
}

// A request is read strictly on its way to its command (ballastd's socket
// hands each parsed line to Commands::handle): an argument the command does
// not take, or one of the wrong type, is refused by name, and nothing
// changes: not the desired config, not the data plane, not the change log.
// The same edit with its arguments right is then applied, so the refusals
// were the arguments' and not the pre-apply audit's (weight 9 of 12 would
// also break the share limit: only the exact message tells them apart).
// (Was test_requests_read_strictly in tests/e2e/test_control.sh.)
TEST_F(CommandsTest, MisspeltOrMistypedArgumentsAreRefusedByNameAndChangeNothing) {
  const nlohmann::json args = {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}};
  nlohmann::json misspelt = args, force_text = args, right = args;
  misspelt["wieght"] = 9;
  force_text["weight"] = 9;
  force_text["force"] = "yes";
  right["weight"] = 2;
  const std::vector<std::pair<nlohmann::json, std::string>> refused = {
      {misspelt,
       "unknown argument 'wieght' for backend.set_weight (it takes vip, address, force, weight)"},
      {force_text, "'force' must be true or false, got \"yes\""},
  };
  const auto before = state.desired().vips;
  const size_t logged = changes.size();
  for (const auto& [bad, why] : refused) {
    try {
      run("backend.set_weight", bad);
      ADD_FAILURE() << "accepted: " << bad.dump();
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), why) << bad.dump();
    }
    EXPECT_EQ(state.desired().vips, before) << bad.dump();
    EXPECT_TRUE(dp.log.empty()) << bad.dump() << " wrote " << dp.log.size();
    EXPECT_EQ(changes.size(), logged) << bad.dump() << " was logged as a change";
  }
  run("backend.set_weight", right);
  EXPECT_EQ(state.desired().vips[0].backends[0].weight, 2u);
  EXPECT_EQ(changes.size(), logged + 1);
}

// `ballast -o json` prints a reply decoded into its type (decode_reply, as
// the CLI's call() does) and encoded again: for every read the daemon
// answers, that must be the daemon's own reply field for field, so a script
// reading the CLI sees nothing lost, renamed or defaulted on the way. Every
// field holds a value of the daemon's making (a resolved MAC, a last check,
// a change in the log, counted flows, a finding, a skew sample), so a field
// the decoder drops or misreads shows as a difference.
// (Was test_requests_read_strictly in tests/e2e/test_control.sh.)
TEST_F(CommandsTest, RepliesReadBackByTheClientAreTheDaemonsFieldForField) {
  SkewTracker skew;
  const api::StatusReply status{.interface = "eth0",
                                .ifindex = 3,
                                .attach_mode = "native",
                                .program_id = 42,
                                .pin_dir = "/sys/fs/bpf/ballast",
                                .config = "/etc/ballast/ballast.yaml",
                                .vips = 1,
                                .backends = 3,
                                .unresolved_backends = {"10.0.0.100:80/tcp 10.0.0.14"},
                                .version = "0.4.0",
                                .metrics = "http://127.0.0.1:9469/metrics",
                                .errors = {{"audit", 1}},
                                .uptime_seconds = 17,
                                .announce_table = 100,
                                .fleet_left = false,
                                .announced = {"10.0.0.100"}};
  Commands served{
      pipeline,
      dp,
      changes,
      [&] { return status; },
      [](uint32_t id) { return "ok " + std::to_string(id + 1) + ".5 ms"; },
      &skew,
      [] {
        return std::vector<Finding>{
            Finding{Severity::warning, "share-limit", "10.0.0.100:80/tcp", "10.0.0.13", "m", "h"}};
      },
      &census};
  served.handle({{"command", "backend.set_weight"},
                 {"args", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}, {"weight", 2}}}},
                PeerCred{.pid = 7, .uid = 0, .gid = 0, .groups = {}});
  // Three flows of 10.0.0.11, counted by the walk a first request starts.
  dp.clock_ns = 100'000'000'000;
  dp.conns.assign(3, {0, dp.clock_ns});
  served.handle({{"command", "backend.flows"},
                 {"args", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.11"}}}},
                PeerCred{});
  const auto now = std::chrono::steady_clock::now();
  ASSERT_TRUE(census.walking(now));
  census.step(dp, now);
  skew.record(std::chrono::steady_clock::now(), state.view(), dp);

  const VipKey vip = state.view()[0].key;
  const IpAddress backend = ip("10.0.0.11");
  size_t reads = 0;
  api::for_each_request([&](auto request) {
    if constexpr (decltype(request)::kReadOnly) {
      if constexpr (requires { request.vip = vip; }) request.vip = vip;
      if constexpr (requires { request.address = backend; }) request.address = backend;
      const nlohmann::json reply = served.handle(api::envelope(request), PeerCred{});
      const auto typed = api::decode_reply<decltype(request)>(reply);
      EXPECT_EQ(nlohmann::json(typed), reply) << request.kCommand;
      ++reads;
    }
  });
  EXPECT_EQ(reads, 8u) << "every read command: status, stats, audit, skew, vip.list, "
                          "backend.list, backend.flows, log";
}

TEST_F(CommandsTest, ErrorsSayWhatIsWrong) {
  try {
    run("backend.set_weight",
        {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}, {"weight", 2}});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "backend 10.0.0.99 is not in VIP 10.0.0.100:80/tcp");
  }
}

TEST_F(CommandsTest, EditsGoLive) {
  // 1:1:2 with 10.0.0.12 at weight 0 leaves 10.0.0.13 two thirds: the
  // pre-apply audit refuses it, naming the numbers, and writes nothing.
  const auto writes = dp.log.size();
  try {
    run("backend.set_weight",
        {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.12"}, {"weight", 0}});
    ADD_FAILURE() << "a change past the share limit was applied";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("error share-limit: Backend 10.0.0.13 would get 66.7% of "
                                         "VIP 10.0.0.100:80/tcp's new flows (weight 2 of 3)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(dp.log.size(), writes) << "a refused change wrote to the data plane";
  auto r =
      run("backend.set_weight",
          {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.12"}, {"weight", 0}, {"force", true}});
  ASSERT_FALSE(r["new_findings"].empty());
  EXPECT_EQ(r["new_findings"][0]["check"], "share-limit");
  EXPECT_EQ(changes.since({}).back().actor, "uid=0 pid=0 (forced)");
  EXPECT_EQ(r["changes"][0], "backend set-weight 10.0.0.100:80/tcp 10.0.0.12 1 -> 0");
  EXPECT_EQ(dp.entries_per_slot(0).count(1), 0u) << "weight 0: no table entries";
  run("backend.add", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.14"}, {"weight", 3}});
  EXPECT_EQ(state.desired().vips[0].backends.size(), 4u) << "3 of 6: not past the limit";
  run("vip.add", {{"vip", "10.0.0.101:53/udp"}});
  run("backend.add", {{"vip", "10.0.0.101:53/udp"}, {"address", "10.0.0.11"}});
  EXPECT_EQ(dp.vips.size(), 2u);
  run("vip.del", {{"vip", "10.0.0.100:80/tcp"}});
  EXPECT_EQ(dp.vips.size(), 1u);
  EXPECT_GE(changes.size(), 5u) << "every edit is in the change log";
  EXPECT_EQ(changes.since({})[0].actor, "uid=0 pid=0 (forced)");
  auto list = run("backend.list", nlohmann::json::object());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["vip"], "10.0.0.101:53/udp");
  EXPECT_EQ(list[0]["table_entries"], BALLAST_MAGLEV_SIZE);
}

TEST_F(CommandsTest, ApplyDryRunAndRefusals) {
  const std::string yaml =
      "interface: eth0\nvips:\n  - address: 10.0.0.100\n    port: 80\n    protocol: tcp\n"
      "    backends: [{address: 10.0.0.11, weight: 3}]\n";
  auto r = run("apply", {{"config", yaml}, {"source", "new.yaml"}, {"dry_run", true}});
  EXPECT_EQ(r["applied"], false);
  EXPECT_EQ(r["changes"].size(), 3u) << r.dump();
  EXPECT_TRUE(dp.log.empty()) << "dry run wrote to the data plane";
  EXPECT_EQ(state.desired().vips[0].backends.size(), 3u);
  EXPECT_THROW(run("apply", {{"config", "interface: eth1\nvips: []\n"}}), Error)
      << "the interface cannot change while running";
  EXPECT_THROW(run("apply", {{"config", "interface: eth0\nvips: [{port: 0}]\n"}}), Error);
  EXPECT_TRUE(dp.log.empty());
  r = run("apply", {{"config", yaml}, {"source", "new.yaml"}});
  EXPECT_EQ(r["applied"], true);
  EXPECT_EQ(state.desired().vips[0].backends.size(), 1u);
  EXPECT_EQ(changes.since({}).back().actor, "uid=0 pid=0 apply new.yaml");
}

// A config whose health check cannot run (interval 0 on the VIP or on one
// backend) or names a type there is none of (icmp) is refused whole by
// `apply` and by its dry run: the message names the field, and nothing
// changes (desired config, data plane, change log), although the same file
// also changes a weight and adds a VIP, which a partial apply would show.
// (Was test_bad_check_config in tests/e2e/test_health_checks.sh.)
TEST_F(CommandsTest, AConfigWhoseHealthCheckCannotRunIsRefusedWhole) {
  const auto file = [](const std::string& vip_check, const std::string& backend_check) {
    return "interface: eth0\nvips:\n"
           "  - address: 10.0.0.100\n    port: 80\n    protocol: tcp\n" +
           vip_check +
           "    backends:\n"
           "      - {address: 10.0.0.11, weight: 3}\n"
           "      - {address: 10.0.0.12, weight: 1" +
           backend_check +
           "}\n"
           "      - {address: 10.0.0.13, weight: 2}\n"
           "  - address: 10.0.0.200\n    port: 80\n    protocol: tcp\n"
           "    backends: [{address: 10.0.0.13, weight: 1}]\n";
  };
  const std::vector<std::pair<std::string, std::string>> refused = {
      {file("    health_check: {type: http, interval: 0ms}\n", ""),
       "vips[0].health_check.interval: must be at least 1ms, got 0ms"},
      {file("    health_check: {type: icmp}\n", ""),
       "vips[0].health_check.type: must be none, tcp, http or udp, got 'icmp'"},
      {file("    health_check: {type: tcp, interval: 1s}\n", ", health_check: {interval: 0ms}"),
       "vips[0].backends[1].health_check.interval: must be at least 1ms, got 0ms"},
  };
  const auto before = state.desired().vips;
  const size_t logged = changes.size();
  for (const auto& [yaml, why] : refused) {
    for (const bool dry_run : {false, true}) {
      try {
        run("apply", {{"config", yaml}, {"source", "bad.yaml"}, {"dry_run", dry_run}});
        ADD_FAILURE() << "accepted (dry_run " << dry_run << "):\n" << yaml;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(why), std::string::npos)
            << "message: " << e.what() << "\nwant: " << why;
      }
      EXPECT_EQ(state.desired().vips, before) << why;
      EXPECT_TRUE(dp.log.empty()) << why << " wrote " << dp.log.size();
      EXPECT_EQ(changes.size(), logged) << why << " was logged as a change";
    }
  }
}

TEST_F(CommandsTest, DrainAndFlows) {
  // Seven flows of slot 2 with a packet just now, counted by a walk the
  // first request starts.
  dp.clock_ns = 100'000'000'000;
  dp.conns.assign(7, {2, dp.clock_ns});
  const nlohmann::json which = {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.13"}};
  EXPECT_TRUE(run("backend.flows", which)["flows"].is_null()) << "not counted yet";
  const auto now = std::chrono::steady_clock::now();
  ASSERT_TRUE(census.walking(now));
  census.step(dp, now);
  EXPECT_EQ(run("backend.flows", which)["flows"], 7);
  run("backend.drain", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.13"}});
  auto list = run("backend.list", {{"vip", "10.0.0.100:80/tcp"}});
  EXPECT_EQ(list[2]["drained"], true);
  EXPECT_EQ(list[2]["table_entries"], 0);
  EXPECT_THROW(run("backend.drain", {{"vip", "10.0.0.100:80/tcp"}, {"address", "10.0.0.99"}}),
               Error);
  auto log = run("log", nlohmann::json::object());
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0]["change"], "backend drain 10.0.0.100:80/tcp 10.0.0.13");
}

}  // namespace
}  // namespace ballast
