// Route health injection (announce.h): which addresses are announced, the
// routes kept equal to that, and the audit's view of routes that disagree.
#include "announce.h"

#include <gtest/gtest.h>

#include <set>

#include "error.h"

namespace ballast {
namespace {

const IpAddress kVip = *IpAddress::parse("10.0.0.100");
const IpAddress kVip2 = *IpAddress::parse("10.0.0.101");

// Routes in a map, by table; remove of a route that is not there is fine
// (as KernelRoutes). fail_add: the next add throws.
class FakeRoutes : public RouteSink {
 public:
  std::vector<IpAddress> list(uint32_t table) override {
    return {tables[table].begin(), tables[table].end()};
  }
  void add(uint32_t table, const IpAddress& a) override {
    if (fail_add) throw Error("add refused");
    tables[table].insert(a);
    ++writes;
  }
  void remove(uint32_t table, const IpAddress& a) override {
    tables[table].erase(a);
    ++writes;
  }
  std::map<uint32_t, std::set<IpAddress>> tables;
  bool fail_add = false;
  int writes = 0;
};

BackendView backend(const char* address, bool usable, Health health = Health::up) {
  return {.id = 0,
          .address = *IpAddress::parse(address),
          .weight = 1,
          .mac = MacAddress{},
          .health = health,
          .drained = !usable,
          .takes_new_flows = usable,
          .table_entries = 0,
          .check = {}};
}

VipView view(const VipKey& key, std::vector<BackendView> backends) {
  return {.id = 0,
          .key = key,
          .mode = ForwardMode::dsr,
          .fail_open = false,
          .failing_open = false,
          .backends = std::move(backends),
          .table = nullptr};
}

VipKey key(const IpAddress& a, uint16_t port) { return {a, port, Protocol::tcp}; }

Config config_with(std::vector<VipKey> keys, uint32_t min_usable = 1) {
  Config c;
  c.interface = "eth0";
  c.fleet.announce = AnnounceSettings{.table = 100, .min_usable = min_usable};
  for (const auto& k : keys) {
    VipConfig v = empty_vip(k);
    for (const char* b : {"10.0.0.11", "10.0.0.12", "10.0.0.13"})
      v.backends.push_back({.address = *IpAddress::parse(b), .weight = 1, .check = {}});
    c.vips.push_back(v);
  }
  return c;
}

std::vector<VipView> views(const std::vector<VipKey>& keys, int usable) {
  std::vector<VipView> out;
  for (const auto& k : keys) {
    std::vector<BackendView> bs;
    const char* names[] = {"10.0.0.11", "10.0.0.12", "10.0.0.13"};
    for (int i = 0; i < 3; i++) bs.push_back(backend(names[i], i < usable));
    out.push_back(view(k, bs));
  }
  return out;
}

TEST(AnnounceTest, AnnouncedWhileAttachedWithEnoughUsableBackends) {
  const auto k = key(kVip, 80);
  const Config c = config_with({k}, 2);
  auto v = judge_addresses(c, views({k}, 2), true, false);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_TRUE(v[0].announce);
  EXPECT_EQ(v[0].reason, "10.0.0.100:80/tcp: 2 of 3 backends usable (min_usable 2)");
  v = judge_addresses(c, views({k}, 1), true, false);
  EXPECT_FALSE(v[0].announce);
  EXPECT_EQ(v[0].reason, "10.0.0.100:80/tcp has 1 of 3 backends usable (min_usable 2)");
  v = judge_addresses(c, views({k}, 3), false, false);
  EXPECT_FALSE(v[0].announce);
  EXPECT_EQ(v[0].reason, "the program is not attached");
  v = judge_addresses(c, views({k}, 3), true, true);
  EXPECT_FALSE(v[0].announce);
  EXPECT_EQ(v[0].reason, "left the fleet (ballast fleet leave)");
}

TEST(AnnounceTest, ABackendUpButDrainedOrDownButFailingOpenIsNotUsable) {
  const auto k = key(kVip, 80);
  const Config c = config_with({k}, 1);
  // Failing open: the backends take new flows but none is up.
  auto vs = views({k}, 3);
  for (auto& b : vs[0].backends) b.health = Health::down;
  vs[0].failing_open = true;
  EXPECT_FALSE(judge_addresses(c, vs, true, false)[0].announce);
  EXPECT_EQ(usable_backends(vs[0]), 0u);
  EXPECT_EQ(usable_backends(views({k}, 2)[0]), 2u);
}

TEST(AnnounceTest, AnAddressIsAnnouncedOnlyWhenEveryVipAtItQualifies) {
  const auto web = key(kVip, 80), tls = key(kVip, 443);
  Config c = config_with({web, tls}, 1);
  c.vips[1].min_usable = 3;  // its own min_usable wins over the default
  auto vs = views({web, tls}, 2);
  auto v = judge_addresses(c, vs, true, false);
  ASSERT_EQ(v.size(), 1u) << "one verdict per address";
  EXPECT_FALSE(v[0].announce);
  EXPECT_EQ(v[0].reason, "10.0.0.100:443/tcp has 2 of 3 backends usable (min_usable 3)");
  vs = views({web, tls}, 3);
  v = judge_addresses(c, vs, true, false);
  EXPECT_TRUE(v[0].announce);
  EXPECT_EQ(v[0].reason, "each of its 2 VIPs has its min_usable usable backends");
}

TEST(AnnounceTest, UpdateWithdrawsFirstThenAnnouncesAndSaysWhy) {
  FakeRoutes routes;
  Announcer a(routes);
  const auto k1 = key(kVip, 80), k2 = key(kVip2, 80);
  const Config c = config_with({k1, k2});
  a.adopt(c, false);
  auto vs = views({k1, k2}, 3);
  auto changes = a.update(c, vs, true);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(describe(changes[0]),
            "announce 10.0.0.100 (table 100): 10.0.0.100:80/tcp: 3 of 3 backends usable "
            "(min_usable 1)");
  EXPECT_EQ(routes.tables[100], (std::set<IpAddress>{kVip, kVip2}));
  EXPECT_TRUE(a.update(c, vs, true).empty()) << "nothing to do the second time";
  const int writes = routes.writes;
  // kVip2's backends all drained: only it goes.
  vs[1] = views({k2}, 0)[0];
  changes = a.update(c, vs, true);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(describe(changes[0]),
            "withdraw 10.0.0.101 (table 100): 10.0.0.101:80/tcp has 0 of 3 backends usable "
            "(min_usable 1)");
  EXPECT_EQ(routes.writes, writes + 1);
  EXPECT_TRUE(a.announced(kVip));
  EXPECT_FALSE(a.announced(kVip2));
  // Detached: everything goes.
  changes = a.update(c, vs, false);
  EXPECT_EQ(changes.size(), 1u);
  EXPECT_TRUE(routes.tables[100].empty());
}

TEST(AnnounceTest, ARestartAdoptsTheRoutesItFindsAndWithdrawsNothingThatStillQualifies) {
  FakeRoutes routes;
  const auto k1 = key(kVip, 80);
  const Config c = config_with({k1});
  routes.tables[100] = {kVip, kVip2};  // kVip2: a VIP since removed from the config
  Announcer a(routes);
  a.adopt(c, false);
  EXPECT_TRUE(a.announced(kVip));
  const auto changes = a.update(c, views({k1}, 3), true);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(describe(changes[0]), "withdraw 10.0.0.101 (table 100): no VIP at it");
  EXPECT_EQ(routes.tables[100], std::set<IpAddress>{kVip});
}

TEST(AnnounceTest, LeaveWithdrawsEverythingAndJoinAnnouncesAgain) {
  FakeRoutes routes;
  Announcer a(routes);
  const auto k1 = key(kVip, 80);
  const Config c = config_with({k1});
  a.adopt(c, false);
  a.update(c, views({k1}, 3), true);
  a.set_left(true);
  auto changes = a.update(c, views({k1}, 3), true);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(describe(changes[0]),
            "withdraw 10.0.0.100 (table 100): left the fleet (ballast fleet leave)");
  EXPECT_TRUE(routes.tables[100].empty());
  a.set_left(false);
  EXPECT_EQ(a.update(c, views({k1}, 3), true).size(), 1u);
  EXPECT_EQ(routes.tables[100], std::set<IpAddress>{kVip});
}

TEST(AnnounceTest, AnotherTableOrAnnounceOffMovesOrWithdrawsEveryRoute) {
  FakeRoutes routes;
  Announcer a(routes);
  const auto k1 = key(kVip, 80);
  Config c = config_with({k1});
  a.adopt(c, false);
  a.update(c, views({k1}, 3), true);
  c.fleet.announce->table = 200;
  auto changes = a.update(c, views({k1}, 3), true);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(describe(changes[0]),
            "withdraw 10.0.0.100 (table 100): fleet.announce.table is now 200");
  EXPECT_TRUE(routes.tables[100].empty());
  EXPECT_EQ(routes.tables[200], std::set<IpAddress>{kVip});
  c.fleet.announce.reset();
  changes = a.update(c, views({k1}, 3), true);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(describe(changes[0]), "withdraw 10.0.0.100 (table 200): fleet.announce is off");
  EXPECT_TRUE(routes.tables[200].empty());
  EXPECT_FALSE(a.enabled());
}

TEST(AnnounceTest, AFailedAddIsTriedAgainAtTheNextUpdate) {
  FakeRoutes routes;
  Announcer a(routes);
  const auto k1 = key(kVip, 80);
  const Config c = config_with({k1});
  a.adopt(c, false);
  routes.fail_add = true;
  EXPECT_TRUE(a.update(c, views({k1}, 3), true).empty());
  EXPECT_EQ(a.failure(), "add refused");
  EXPECT_FALSE(a.announced(kVip));
  routes.fail_add = false;
  EXPECT_EQ(a.update(c, views({k1}, 3), true).size(), 1u);
  EXPECT_EQ(a.failure(), "");
  EXPECT_TRUE(a.announced(kVip));
}

TEST(AnnounceTest, TheAuditNamesRoutesThatDisagreeWithTheVerdicts) {
  const auto k1 = key(kVip, 80), k2 = key(kVip2, 80);
  const Config c = config_with({k1, k2});
  auto vs = views({k1, k2}, 3);
  vs[1] = views({k2}, 0)[0];
  const auto verdicts = judge_addresses(c, vs, true, false);
  // kVip qualifies but its route is gone; kVip2 does not but has one.
  auto findings = audit_announcements(verdicts, {kVip2}, false, 100);
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].severity, Severity::warning);
  EXPECT_EQ(findings[0].check, "announce");
  EXPECT_NE(findings[0].message.find("10.0.0.100 is withdrawn though"), std::string::npos)
      << findings[0].message;
  EXPECT_EQ(findings[1].severity, Severity::error);
  EXPECT_NE(findings[1].message.find("10.0.0.101 is announced (route in table 100) though "
                                     "10.0.0.101:80/tcp has 0 of 3"),
            std::string::npos)
      << findings[1].message;
  EXPECT_TRUE(audit_announcements(verdicts, {kVip}, false, 100).empty());
  // Left on purpose: withdrawn is info, not a warning.
  findings = audit_announcements(judge_addresses(c, vs, true, true), {}, true, 100);
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_EQ(findings[0].severity, Severity::info);
}

}  // namespace
}  // namespace ballast
