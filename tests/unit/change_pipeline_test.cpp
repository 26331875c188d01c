// The change pipeline (plan → audit → execute → record) and the typed
// plans under it: a plan is pure and repeatable, execute refuses a stale
// one, every kind of change carries its data, the audit refuses an
// operator's risky change whole and never the world's, and a dry run
// touches nothing.
#include "change_pipeline.h"

#include <gtest/gtest.h>

#include <variant>

#include "error.h"
#include "fake_neighbors.h"
#include "state_driver.h"
#include "state_fixture.h"

namespace ballast {

// gtest prints a change as the log would.
void PrintTo(const Change& change, std::ostream* os) { *os << describe(change); }

namespace {

const VipKey kVip = VipKey::parse("10.0.0.100:80/tcp");

class ChangePipelineTest : public BalancerStateTest {
 protected:
  ChangePipelineTest() {
    pipeline.add_listener([this](const std::vector<Change>& c) { heard.push_back(c); });
  }
  ChangeLog log{ChangeLog::kDefaultCapacity, std::chrono::system_clock::now,
                [](const std::string&) {}};
  ChangePipeline pipeline{state, log};
  std::vector<std::vector<Change>> heard;
};

Config with_weight(Config c, const char* backend, uint32_t weight) {
  for (auto& b : c.vips[0].backends)
    if (b.address == ip(backend)) b.weight = weight;
  return c;
}

TEST_F(ChangePipelineTest, APlanIsPureAndRepeatable) {
  apply(state, three_backends());
  neighbors.known.erase(ip("10.0.0.14"));  // a new backend without a MAC yet
  Config next = with_weight(three_backends(), "10.0.0.13", 3);
  next.vips[0].backends.push_back(BackendConfig{ip("10.0.0.14"), 1, next.vips[0].check});
  const size_t writes = dp.log.size();
  const auto first = state.plan(ConfigRequest{next});
  const auto second = state.plan(ConfigRequest{next});
  EXPECT_EQ(first.changes(), second.changes()) << "same inputs, same typed plan";
  EXPECT_EQ(dp.log.size(), writes) << "planning wrote to the maps";
  EXPECT_TRUE(neighbors.solicited.empty()) << "planning solicited the kernel";
  ASSERT_EQ(first.changes().size(), 2u);
  EXPECT_EQ(first.changes()[0], Change(WeightChanged{kVip, ip("10.0.0.13"), 2, 3}));
  EXPECT_EQ(first.changes()[1], Change(BackendAdded{kVip, ip("10.0.0.14"), 1}));
  EXPECT_EQ(state.desired(), three_backends()) << "the live config is untouched";

  // Executed, it does what it said, and solicits the missing MAC then.
  EXPECT_EQ(state.execute(first), first.changes());
  EXPECT_EQ(neighbors.solicited, std::vector<IpAddress>{ip("10.0.0.14")});
  EXPECT_EQ(state.desired(), next);
}

TEST_F(ChangePipelineTest, AStalePlanIsRefusedAndWritesNothing) {
  apply(state, three_backends());
  const auto stale = state.plan(ConfigRequest{with_weight(three_backends(), "10.0.0.11", 5)});
  set_drained(state, kVip, ip("10.0.0.12"), true);
  const size_t writes = dp.log.size();
  EXPECT_THROW(state.execute(stale), Error);
  EXPECT_EQ(dp.log.size(), writes);
  EXPECT_EQ(state.desired(), three_backends());
}

TEST_F(ChangePipelineTest, EveryKindOfChangeIsTyped) {
  apply(state, three_backends(tcp_check()));
  EXPECT_EQ(state.plan(HealthRequest{1, Health::down, "3 failures"}).changes(),
            (std::vector<Change>{HealthChanged{kVip, ip("10.0.0.12"), Health::unknown,
                                              Health::down, "3 failures"}}));
  EXPECT_TRUE(state.plan(HealthRequest{1, Health::unknown, ""}).changes().empty());
  EXPECT_EQ(state.plan(DrainRequest{kVip, ip("10.0.0.13"), true}).changes(),
            (std::vector<Change>{DrainChanged{kVip, ip("10.0.0.13"), true}}));
  EXPECT_TRUE(state.plan(DrainRequest{kVip, ip("10.0.0.13"), false}).changes().empty())
      << "undraining a backend that is not drained changes nothing";
  EXPECT_THROW(state.plan(DrainRequest{kVip, ip("10.0.0.99"), true}), Error);

  neighbors.known[ip("10.0.0.12")] = MacAddress{2, 0, 0, 0, 0, 0x99};
  EXPECT_EQ(state.plan(HostRequest{}).changes(),
            (std::vector<Change>{MacChanged{kVip, ip("10.0.0.12"), MacAddress{2, 0, 0, 0, 0, 12},
                                           MacAddress{2, 0, 0, 0, 0, 0x99}}}));

  Config removed = three_backends(tcp_check());
  removed.vips[0].backends.pop_back();
  removed.reconcile = true;
  EXPECT_EQ(state.plan(ConfigRequest{removed}).changes(),
            (std::vector<Change>{BackendRemoved{kVip, ip("10.0.0.13")},
                                 SettingChanged{SettingChanged::Which::reconcile, true}}));
}

TEST_F(ChangePipelineTest, ExecuteKeepsThePublishingOrder) {
  // OrderedDataPlane fails the test at a VIP published before its table or
  // a table naming an inactive slot; a VIP added and one removed in one
  // plan exercise both directions.
  apply(state, three_backends());
  Config next = three_backends();
  next.vips[0] = empty_vip(VipKey::parse("10.0.0.101:80/tcp"));
  next.vips[0].backends.push_back(BackendConfig{ip("10.0.0.14"), 1, {}});
  const auto changes = state.execute(state.plan(ConfigRequest{next}));
  EXPECT_EQ(changes, (std::vector<Change>{VipAdded{VipKey::parse("10.0.0.101:80/tcp")},
                                          BackendAdded{VipKey::parse("10.0.0.101:80/tcp"),
                                                       ip("10.0.0.14"), 1},
                                          VipRemoved{kVip}}));
  const auto install = std::find(dp.log.begin(), dp.log.end(), "install_table 1");
  const auto publish = std::find(dp.log.begin(), dp.log.end(), "put_vip 1");
  const auto withdraw = std::find(dp.log.begin(), dp.log.end(), "delete_vip");
  ASSERT_NE(publish, dp.log.end());
  EXPECT_LT(install, publish);
  EXPECT_LT(publish, withdraw) << "the new VIP goes live before the old one goes";
}

TEST_F(ChangePipelineTest, AnOperatorsRiskyChangeIsRefusedWhole) {
  pipeline.submit(ConfigRequest{three_backends()}, {"uid=0 pid=1"});
  const size_t writes = dp.log.size(), entries = log.size();
  const Config risky = with_weight(three_backends(), "10.0.0.13", 100);
  try {
    pipeline.submit(ConfigRequest{risky}, {"uid=0 pid=1"});
    FAIL() << "a share-limit error was applied";
  } catch (const AuditRefused& e) {
    ASSERT_EQ(e.errors().size(), 1u);
    EXPECT_EQ(e.errors()[0].check, "share-limit");
    EXPECT_EQ(e.errors()[0].backend, "10.0.0.13");
  }
  EXPECT_EQ(dp.log.size(), writes);
  EXPECT_EQ(log.size(), entries);
  EXPECT_EQ(state.desired(), three_backends());

  // A dry run says the same, refuses nothing and touches nothing.
  const auto dry = pipeline.dry_run(ConfigRequest{risky});
  EXPECT_FALSE(dry.applied);
  EXPECT_EQ(dry.audit.added_errors().size(), 1u);
  EXPECT_EQ(dry.changes,
            (std::vector<Change>{WeightChanged{kVip, ip("10.0.0.13"), 2, 100}}));
  EXPECT_EQ(dp.log.size(), writes);

  // Forced, it goes through, and the change log says so.
  const auto forced = pipeline.submit(ConfigRequest{risky}, {"uid=0 pid=1", {}, true});
  EXPECT_TRUE(forced.applied);
  EXPECT_EQ(log.since({}).back().actor, "uid=0 pid=1 (forced)");
  EXPECT_EQ(log.since({}).back().change, "backend set-weight 10.0.0.100:80/tcp 10.0.0.13 2 -> 100");
}

TEST_F(ChangePipelineTest, ADrainIsAuditedLikeAWeight) {
  pipeline.submit(ConfigRequest{three_backends()}, {"uid=0 pid=1"});
  // Weights 1, 1, 2: draining 10.0.0.11 gives 10.0.0.13 two thirds of
  // the new flows, past max_share 0.5.
  EXPECT_THROW(pipeline.submit(DrainRequest{kVip, ip("10.0.0.11"), true}, {"uid=0 pid=1"}),
               AuditRefused);
  EXPECT_FALSE(state.view()[0].backends[0].drained);
  EXPECT_NO_THROW(pipeline.submit(DrainRequest{kVip, ip("10.0.0.13"), true}, {"uid=0 pid=1"}));
  EXPECT_TRUE(state.view()[0].backends[2].drained);
}

TEST_F(ChangePipelineTest, TheWorldIsNeverRefusedAndEveryChangeIsHeard) {
  Config two = three_backends(tcp_check());
  two.vips[0].backends.pop_back();
  two.audit.max_share = 0.6;
  pipeline.submit(ConfigRequest{two}, {"uid=0 pid=1"});
  ASSERT_EQ(heard.size(), 1u);
  // A backend failing its check leaves one taking every new flow: the
  // maps must say so anyway.
  pipeline.submit(HealthRequest{0, Health::up, ""}, {"health-check", ChangeLog::Origin::automatic});
  const auto down = pipeline.submit(HealthRequest{1, Health::down, "3 failures"},
                                    {"health-check", ChangeLog::Origin::automatic});
  EXPECT_TRUE(down.applied);
  EXPECT_EQ(state.view()[0].backends[1].health, Health::down);
  ASSERT_EQ(heard.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<HealthChanged>(heard.back().at(0)));
  // Nothing changed, nothing heard or recorded.
  const size_t entries = log.size();
  pipeline.submit(HealthRequest{1, Health::down, "again"},
                  {"health-check", ChangeLog::Origin::automatic});
  EXPECT_EQ(heard.size(), 3u);
  EXPECT_EQ(log.size(), entries);
}

TEST_F(ChangePipelineTest, AStartingConfigIsReportedNotRefused) {
  const Config risky = with_weight(three_backends(), "10.0.0.13", 100);
  const auto out = pipeline.submit(ConfigRequest{risky}, {"config x", {}, false, false});
  EXPECT_TRUE(out.applied);
  EXPECT_EQ(out.audit.added_errors().size(), 1u);
  EXPECT_EQ(log.since({}).back().actor, "config x");
}

TEST_F(ChangePipelineTest, RepairRewritesDriftAndOnlyDrift) {
  apply(state, three_backends());
  EXPECT_TRUE(state.plan(RepairRequest{dp.snapshot()}).changes().empty());
  dp.backends[1].flags = 0;  // someone cleared a slot's ACTIVE flag
  const auto plan = state.plan(RepairRequest{dp.snapshot()});
  EXPECT_EQ(plan.changes(), (std::vector<Change>{MapRepaired{MapRepaired::What::backend_slot, 1,
                                                            std::nullopt}}));
  state.execute(plan);
  EXPECT_TRUE(dp.backends[1].flags & BALLAST_BACKEND_F_ACTIVE);
  EXPECT_TRUE(state.plan(RepairRequest{dp.snapshot()}).changes().empty());
}

// One-VIP edits: the config stays valid whole and is audited as a whole
// config would be, looking only at the VIPs the edit touches.
TEST_F(ChangePipelineTest, AOneVipEditIsCheckedAsTheWholeConfigWouldBe) {
  Config c = three_backends();
  VipConfig udp = empty_vip(VipKey::parse("10.0.0.100:53/udp"));
  udp.fragments = true;
  udp.backends.push_back(BackendConfig{ip("10.0.0.11"), 1, {}});
  udp.backends.push_back(BackendConfig{ip("10.0.0.12"), 1, {}});
  c.vips.push_back(udp);
  pipeline.submit(ConfigRequest{c}, {"uid=0 pid=1"});

  // A second VIP taking the same address's UDP fragments: refused, as
  // validate_config refuses it in a file.
  VipConfig other = empty_vip(VipKey::parse("10.0.0.100:54/udp"));
  other.fragments = true;
  try {
    pipeline.submit(VipRequest{other.key, other}, {"uid=0 pid=1"});
    FAIL() << "two VIPs take 10.0.0.100's UDP fragments";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "vips[2].fragments: vips[1] already takes the fragments to 10.0.0.100 udp (one VIP "
              "per address and protocol)");
  }
  // A bad weight names the VIP's place in the config.
  VipConfig heavy = *state.desired_vip(kVip);
  heavy.backends[0].weight = kMaxWeight + 1;
  EXPECT_THROW(pipeline.submit(VipRequest{kVip, heavy}, {"uid=0 pid=1"}), Error);
  EXPECT_EQ(state.desired(), c) << "a refused edit changed the config";

  // A VIP at the address of another VIP's backend: that other VIP gets a
  // backend-is-vip error, so the edit is refused though the new VIP alone
  // is fine.
  VipConfig looping = empty_vip(VipKey::parse("10.0.0.11:80/tcp"));
  looping.backends.push_back(BackendConfig{ip("10.0.0.13"), 1, {}});
  looping.backends.push_back(BackendConfig{ip("10.0.0.14"), 1, {}});
  try {
    pipeline.submit(VipRequest{looping.key, looping}, {"uid=0 pid=1"});
    FAIL() << "a VIP at a backend's address was added";
  } catch (const AuditRefused& e) {
    ASSERT_EQ(e.errors().size(), 2u) << findings_text(e.errors());
    for (const auto& f : e.errors()) {
      EXPECT_EQ(f.check, "backend-is-vip");
      EXPECT_EQ(f.backend, "10.0.0.11");
    }
  }
  // What the whole-config audit would say of the same config, found by
  // the one-VIP audit too.
  Config whole = c;
  whole.vips.push_back(looping);
  EXPECT_EQ(new_findings(audit_config(c, state.view()), audit_config(whole, state.view())).size(),
            2u);
}

TEST_F(ChangePipelineTest, OneVipEditsAddChangeAndRemoveInPlace) {
  pipeline.submit(ConfigRequest{three_backends()}, {"uid=0 pid=1"});
  const VipKey second = VipKey::parse("10.0.0.101:80/tcp"), third = VipKey::parse("10.0.0.102:80/tcp");
  for (const VipKey& key : {second, third}) {
    VipConfig vip = empty_vip(key);
    vip.backends.push_back(BackendConfig{ip("10.0.0.11"), 1, {}});
    vip.backends.push_back(BackendConfig{ip("10.0.0.12"), 1, {}});
    pipeline.submit(VipRequest{key, vip}, {"uid=0 pid=1"});
  }
  // Removing the middle one keeps the others in config order, each still
  // found by key.
  const auto removed = pipeline.submit(VipRequest{second, std::nullopt}, {"uid=0 pid=1"});
  EXPECT_EQ(removed.changes, std::vector<Change>{VipRemoved{second}});
  ASSERT_EQ(state.desired().vips.size(), 2u);
  EXPECT_EQ(state.desired().vips[1].key, third);
  EXPECT_EQ(state.view()[1].key, third);
  ASSERT_NE(state.desired_vip(third), nullptr);
  EXPECT_EQ(state.desired_vip(third)->key, third);
  EXPECT_EQ(state.desired_vip(second), nullptr);
  EXPECT_EQ(dp.vips.size(), 2u) << "the removed VIP is still in the vips map";

  // A weight change in place plans exactly that.
  VipConfig edited = *state.desired_vip(third);
  edited.max_share = 0.8;
  edited.backends[1].weight = 3;
  EXPECT_EQ(pipeline.submit(VipRequest{third, edited}, {"uid=0 pid=1"}).changes,
            (std::vector<Change>{WeightChanged{third, ip("10.0.0.12"), 1, 3}}));
  EXPECT_EQ(state.desired().vips[1].backends[1].weight, 3u);

  // The same state a whole config reaches: nothing left to change.
  Config same = three_backends();
  same.vips.push_back(edited);
  EXPECT_TRUE(state.plan(ConfigRequest{same}).changes().empty());
  EXPECT_THROW(pipeline.submit(VipRequest{second, std::nullopt}, {"uid=0 pid=1"}), Error);
}

// The daemon repairs by a finding's type, never its words: map drift says
// rewrite_maps, a program that is not attached says nothing can.
TEST(AuditRepair, MapDriftIsRepairableADetachedProgramIsNot) {
  LiveSnapshot expected;
  ballast_backend slot{};
  slot.family = 4;
  expected.backends[3] = slot;
  const auto findings = audit_drift(expected, LiveSnapshot{}, {}, false, "eth0");
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].repair, Repair::none);
  EXPECT_NE(findings[0].message.find("not attached"), std::string::npos);
  EXPECT_EQ(findings[1].repair, Repair::rewrite_maps);
}

}  // namespace
}  // namespace ballast
