// Skew over a sliding window: shares, the small-sample rule, the hold time
// and ring share, with counters from a fake data plane and a fake clock.
#include "skew.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "counters_dataplane.h"

namespace ballast {
namespace {

using namespace std::chrono_literals;

using test::CountersDataPlane;

BackendView backend(uint32_t id, const std::string& address, uint32_t weight,
                    uint32_t table_entries = 0) {
  return BackendView{id,         *IpAddress::parse(address),
                     weight,     MacAddress{},
                     Health::up, false,
                     true,       table_entries,
                     CheckSpec{}};
}

VipView vip(std::vector<BackendView> backends) {
  return VipView{
      0, VipKey::parse("10.200.0.10:80/tcp"), ForwardMode::dsr, false, false, std::move(backends),
      nullptr};
}

struct Fixture {
  CountersDataPlane dp;
  SkewTracker tracker;
  Clock::time_point now{};
  explicit Fixture(SkewSettings s = {}) : tracker(s) { dp.backend_reads_only = true; }
  void record(const std::vector<VipView>& vips, std::chrono::seconds after = 1s) {
    now += after;
    tracker.record(now, vips, dp);
  }
};

TEST(SkewTest, TrafficAsWeightedIsSkewOne) {
  Fixture f;
  const auto vips = std::vector{
      vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1), backend(3, "10.200.1.3", 2)})};
  f.record(vips);
  f.dp.add(1, 250, 2500, 250000);
  f.dp.add(2, 250, 2500, 250000);
  f.dp.add(3, 500, 5000, 500000);
  f.record(vips);
  const auto r = f.tracker.report(vips);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].confident);
  EXPECT_EQ(r[0].window.new_flows, 1000u);
  EXPECT_DOUBLE_EQ(r[0].window_seconds, 1.0);
  ASSERT_TRUE(r[0].skew);
  EXPECT_DOUBLE_EQ(*r[0].skew, 1.0);
  const double expected[] = {0.25, 0.25, 0.5};
  for (size_t i = 0; i < 3; ++i) {
    const auto& b = r[0].backends[i];
    EXPECT_DOUBLE_EQ(b.expected_share, expected[i]);
    EXPECT_DOUBLE_EQ(b.observed_new_flows, expected[i]);
    EXPECT_DOUBLE_EQ(b.observed_packets, expected[i]);
    EXPECT_DOUBLE_EQ(b.observed_bytes, expected[i]);
    EXPECT_DOUBLE_EQ(*b.skew_new_flows, 1.0);
    EXPECT_DOUBLE_EQ(b.z, 0.0);
    EXPECT_FALSE(b.significant);
    EXPECT_FALSE(b.skewed_for);
  }
}

TEST(SkewTest, OneBackendTakingEverythingIsSkewedAndHeld) {
  SkewSettings s;
  s.hold = 5s;
  Fixture f(s);
  const auto vips = std::vector{
      vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1), backend(3, "10.200.1.3", 1)})};
  f.record(vips);
  for (int second = 1; second <= 8; ++second) {
    f.dp.add(1, 100);
    f.record(vips);
  }
  const auto r = f.tracker.report(vips);
  ASSERT_TRUE(r[0].skew);
  EXPECT_NEAR(*r[0].skew, 3.0, 1e-9) << "all new flows where a third was expected";
  const auto& b1 = r[0].backends[0];
  EXPECT_NEAR(b1.observed_new_flows, 1.0, 1e-9);
  EXPECT_GT(b1.z, 3.0);
  EXPECT_TRUE(b1.significant);
  ASSERT_TRUE(b1.skewed_for);
  EXPECT_EQ(*b1.skewed_for, 7s) << "skewed from the first confident sample (100 flows) on";
  EXPECT_NEAR(*r[0].backends[1].skew_new_flows, 0.0, 1e-9);
  EXPECT_LT(r[0].backends[1].z, -3.0);
  EXPECT_FALSE(r[0].backends[1].skewed_for) << "too little is not skew above the threshold";

  // Back to even: the skew clears once the window no longer holds it.
  for (int second = 0; second < 11; ++second) {
    f.dp.add(1, 100);
    f.dp.add(2, 100);
    f.dp.add(3, 100);
    f.record(vips);
  }
  const auto after = f.tracker.report(vips);
  EXPECT_NEAR(*after[0].skew, 1.0, 1e-9);
  EXPECT_FALSE(after[0].backends[0].skewed_for);
}

TEST(SkewTest, SmallSampleIsNeitherConfidentNorSignificant) {
  Fixture f;
  const auto vips = std::vector{
      vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1), backend(3, "10.200.1.3", 1)})};
  f.record(vips);
  f.dp.add(1, 10);  // ten flows, all to one backend: a coin can do that
  f.record(vips);
  const auto r = f.tracker.report(vips);
  EXPECT_FALSE(r[0].confident);
  EXPECT_NEAR(*r[0].skew, 3.0, 1e-9) << "the number is still shown";
  EXPECT_FALSE(r[0].backends[0].significant);
  EXPECT_FALSE(r[0].backends[0].skewed_for);
}

TEST(SkewTest, ConfidentButWithinChanceIsNotSignificant) {
  Fixture f;
  const auto vips = std::vector{vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1)})};
  f.record(vips);
  f.dp.add(1, 110);  // 110 of 200 where 100 expected: z = 10 / sqrt(50) = 1.41
  f.dp.add(2, 90);
  f.record(vips);
  const auto r = f.tracker.report(vips);
  EXPECT_TRUE(r[0].confident);
  EXPECT_NEAR(r[0].backends[0].z, 10 / std::sqrt(50.0), 1e-9);
  EXPECT_FALSE(r[0].backends[0].significant);
}

TEST(SkewTest, WindowHoldsOnlyTheLastWindowOfCounts) {
  SkewSettings s;
  s.window = 10s;
  Fixture f(s);
  const auto vips = std::vector{vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1)})};
  f.record(vips);
  for (int second = 0; second < 20; ++second) {
    f.dp.add(second < 10 ? 1 : 2, 50);  // first ten seconds to 1, the next ten to 2
    f.record(vips);
  }
  const auto r = f.tracker.report(vips);
  EXPECT_DOUBLE_EQ(r[0].window_seconds, 10.0);
  EXPECT_EQ(r[0].window.new_flows, 500u);
  EXPECT_EQ(r[0].backends[0].window.new_flows, 0u);
  EXPECT_EQ(r[0].backends[1].window.new_flows, 500u);
}

TEST(SkewTest, ReusedSlotOrResetCounterCountsFromZero) {
  Fixture f;
  auto vips = std::vector{vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.2", 1)})};
  f.dp.add(1, 1000);
  f.dp.add(2, 1000);
  f.record(vips);
  // Slot 2 now holds another backend, its counters reset and counting anew.
  vips = std::vector{vip({backend(1, "10.200.1.1", 1), backend(2, "10.200.1.9", 1)})};
  f.dp.backend.erase(2);
  f.dp.add(1, 60);
  f.dp.add(2, 40);
  f.record(vips);
  const auto r = f.tracker.report(vips);
  EXPECT_EQ(r[0].backends[0].window.new_flows, 60u);
  EXPECT_EQ(r[0].backends[1].window.new_flows, 40u) << "not 40 - 1000, not mixed with the old";
}

TEST(SkewTest, ExpectedShareLeavesOutBackendsTakingNoNewFlows) {
  Fixture f;
  auto drained = backend(2, "10.200.1.2", 1);
  drained.drained = true;
  drained.takes_new_flows = false;
  const auto vips = std::vector{vip({backend(1, "10.200.1.1", 1), drained})};
  f.record(vips);
  f.dp.add(1, 200);
  f.record(vips);
  const auto r = f.tracker.report(vips);
  EXPECT_DOUBLE_EQ(r[0].backends[0].expected_share, 1.0);
  EXPECT_DOUBLE_EQ(*r[0].backends[0].skew_new_flows, 1.0);
  EXPECT_DOUBLE_EQ(r[0].backends[1].expected_share, 0.0);
  EXPECT_FALSE(r[0].backends[1].skew_new_flows) << "no skew where nothing is expected";
  EXPECT_DOUBLE_EQ(*r[0].skew, 1.0);
}

TEST(SkewTest, RingShareShowsABadTableBeforeTraffic) {
  Fixture f;
  const auto vips =
      std::vector{vip({backend(1, "10.200.1.1", 1, 65537), backend(2, "10.200.1.2", 1, 0),
                       backend(3, "10.200.1.3", 2, 0)})};
  const auto r = f.tracker.report(vips);  // no sample yet
  EXPECT_FALSE(r[0].confident);
  EXPECT_FALSE(r[0].skew) << "no traffic: no skew, not skew 0";
  EXPECT_FALSE(r[0].backends[0].skew_new_flows);
  EXPECT_EQ(r[0].window.new_flows, 0u);
  EXPECT_DOUBLE_EQ(r[0].backends[0].ring_share, 1.0);
  EXPECT_DOUBLE_EQ(*r[0].backends[0].ring_skew, 4.0);
  EXPECT_DOUBLE_EQ(*r[0].backends[2].ring_skew, 0.0);
}

TEST(SkewTest, RingShareFromTheLiveTableShowsAHandEdit) {
  // The daemon installed an even table; someone rewrote the live one so
  // that slot 1 owns two thirds and a stranger (slot 9) the rest.
  Fixture f;
  const auto vips =
      std::vector{vip({backend(1, "10.200.1.1", 1, 21846), backend(2, "10.200.1.2", 1, 21846),
                       backend(3, "10.200.1.3", 1, 21845)})};
  std::vector<uint32_t> live(BALLAST_MAGLEV_SIZE, 1);
  for (size_t i = 0; i < live.size() / 3; ++i) live[i] = 9;
  f.dp.tables[0] = live;
  const auto installed = f.tracker.report(vips);
  EXPECT_NEAR(*installed[0].backends[0].ring_skew, 1.0, 1e-3) << "as installed";
  const auto r = f.tracker.report(vips, &f.dp);
  const double slot9 = static_cast<double>(BALLAST_MAGLEV_SIZE / 3) / BALLAST_MAGLEV_SIZE;
  EXPECT_NEAR(r[0].backends[0].ring_share, 1 - slot9, 1e-12);
  EXPECT_NEAR(*r[0].backends[0].ring_skew, 3 * (1 - slot9), 1e-9);
  EXPECT_EQ(r[0].backends[1].ring_share, 0.0);
  EXPECT_NEAR(r[0].ring_foreign_share, slot9, 1e-12);
  f.dp.tables.clear();
  EXPECT_EQ(f.tracker.report(vips, &f.dp)[0].ring_foreign_share, 1.0) << "no live table at all";
}

}  // namespace
}  // namespace ballast
