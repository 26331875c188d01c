// fleet_diff (fleet.h): two balancers' `vip list` replies, VIP by VIP.
#include "fleet.h"

#include <gtest/gtest.h>

namespace ballast {
namespace {

api::BackendEntry backend(const char* address, uint32_t weight, uint64_t entries,
                          bool usable = true) {
  api::BackendEntry b;
  b.address = *IpAddress::parse(address);
  b.weight = weight;
  b.table_entries = entries;
  b.takes_new_flows = usable;
  return b;
}

api::VipEntry vip(const char* key, const char* digest, std::vector<api::BackendEntry> backends,
                  uint32_t seed = 0) {
  api::VipEntry v;
  v.vip = VipKey::parse(key);
  v.table_digest = digest;
  v.hash_seed = seed;
  v.table_format = 1;
  v.backends = std::move(backends);
  return v;
}

// 1:1:2 over 8 entries here; there be3 got weight 1 (a third each, 9
// entries): the two VIPs differ in exactly the backends whose weight or
// share moved, each with both sides' numbers.
TEST(FleetDiff, NamesTheBackendsWhoseSharesDifferAndByHowMuch) {
  const auto here = std::vector{
      vip("10.0.0.100:80/tcp", "aaaa",
          {backend("10.0.0.11", 1, 2), backend("10.0.0.12", 1, 2), backend("10.0.0.13", 2, 4)})};
  const auto there = std::vector{
      vip("10.0.0.100:80/tcp", "bbbb",
          {backend("10.0.0.11", 1, 3), backend("10.0.0.12", 1, 3), backend("10.0.0.13", 1, 3)})};
  const auto d = fleet_diff(here, there);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_FALSE(d[0].same());
  ASSERT_EQ(d[0].backends.size(), 3u) << "every share moved";
  const auto& be3 = d[0].backends[2];
  EXPECT_EQ(be3.address.str(), "10.0.0.13");
  EXPECT_EQ(be3.weight_here, 2u);
  EXPECT_EQ(be3.weight_there, 1u);
  EXPECT_DOUBLE_EQ(be3.share_here, 0.5);
  EXPECT_NEAR(be3.share_there, 1.0 / 3, 1e-12);
}

TEST(FleetDiff, SameDigestIsSameAndListsNothing) {
  const auto v =
      vip("10.0.0.100:80/tcp", "aaaa", {backend("10.0.0.11", 1, 2), backend("10.0.0.12", 1, 2)});
  const auto d = fleet_diff({v}, {v});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_TRUE(d[0].same());
  EXPECT_TRUE(d[0].backends.empty());
}

// Another seed: the same weights and shares in other slots. Not the same
// table (a moved flow changes backend), with no backend to blame.
TEST(FleetDiff, AnotherSeedDiffersWithoutABackendRow) {
  const std::vector<api::BackendEntry> bs{backend("10.0.0.11", 1, 2), backend("10.0.0.12", 1, 2)};
  const auto d = fleet_diff({vip("10.0.0.100:80/tcp", "aaaa", bs, 0)},
                            {vip("10.0.0.100:80/tcp", "cccc", bs, 7)});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_FALSE(d[0].same());
  EXPECT_EQ(d[0].seed_here, 0u);
  EXPECT_EQ(d[0].seed_there, 7u);
  EXPECT_TRUE(d[0].backends.empty());
}

// A backend one side does not have, a backend down on one side, and VIPs
// only one side serves.
TEST(FleetDiff, MissingBackendsDownBackendsAndOneSidedVips) {
  const auto here = std::vector{
      vip("10.0.0.100:80/tcp", "aaaa",
          {backend("10.0.0.11", 1, 3), backend("10.0.0.12", 1, 3), backend("10.0.0.13", 1, 3)}),
      vip("10.0.0.101:80/tcp", "dddd", {backend("10.0.0.11", 1, 1)})};
  const auto there =
      std::vector{vip("10.0.0.100:80/tcp", "bbbb",
                      {backend("10.0.0.11", 1, 5), backend("10.0.0.12", 1, 4, false)}),
                  vip("10.0.0.102:80/tcp", "eeee", {backend("10.0.0.11", 1, 1)})};
  const auto d = fleet_diff(here, there);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].vip.str(), "10.0.0.100:80/tcp");
  ASSERT_EQ(d[0].backends.size(), 3u);
  EXPECT_FALSE(d[0].backends[1].usable_there);
  EXPECT_EQ(d[0].backends[2].weight_there, std::nullopt) << "10.0.0.13 is not there";
  EXPECT_TRUE(d[1].here && !d[1].there);
  EXPECT_EQ(d[1].vip.str(), "10.0.0.101:80/tcp");
  EXPECT_TRUE(!d[2].here && d[2].there);
  EXPECT_EQ(d[2].vip.str(), "10.0.0.102:80/tcp");
  for (const auto& v : d) EXPECT_FALSE(v.same()) << v.vip.str();
}

}  // namespace
}  // namespace ballast
