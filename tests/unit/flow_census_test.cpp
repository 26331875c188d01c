// FlowCensus: drain --wait's flow counts come from a walk of the connection
// table done a slice per loop turn, never more than kEntriesPerStep entries
// at once; a backend with no recent entry is exactly 0.
#include "flow_census.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "state_fixture.h"

namespace ballast {
namespace {

using std::chrono::seconds;
constexpr uint64_t kSecond = 1'000'000'000;

// An OrderedDataPlane that records how many entries each walk step gave.
class CountingConns : public OrderedDataPlane {
 public:
  std::vector<size_t> per_step;
  void walk_flows(FlowWalk& walk, size_t max,
                  const std::function<void(uint32_t, uint64_t)>& visit) override {
    size_t n = 0;
    OrderedDataPlane::walk_flows(walk, max, [&](uint32_t b, uint64_t t) {
      ++n;
      visit(b, t);
    });
    per_step.push_back(n);
  }
};

TEST(FlowCensusTest, AWalkGoesASliceAtATime) {
  CountingConns dp;
  dp.clock_ns = 1000 * kSecond;
  dp.conns.assign(100'000, {1, dp.clock_ns});
  FlowCensus census;
  auto now = FlowCensus::Clock::time_point(seconds(50));
  EXPECT_FALSE(census.walking(now)) << "nobody asked";
  EXPECT_FALSE(census.flows(1, 5 * kSecond, now).has_value()) << "no walk finished yet";
  int steps = 0;
  while (census.walking(now) && steps < 100) {
    census.step(dp, now);
    ++steps;
  }
  EXPECT_EQ(steps, 4) << "100,000 entries in slices of " << FlowCensus::kEntriesPerStep;
  EXPECT_LE(*std::max_element(dp.per_step.begin(), dp.per_step.end()),
            FlowCensus::kEntriesPerStep);
  const auto counted = census.flows(1, 5 * kSecond, now);
  ASSERT_TRUE(counted.has_value());
  EXPECT_EQ(counted->flows, 100'000u);
  // A new walk once the last is a second old, none after the asking stops.
  EXPECT_FALSE(census.walking(now));
  EXPECT_TRUE(census.walking(now + seconds(1)));
  EXPECT_FALSE(census.walking(now + FlowCensus::kDemandLasts));
}

TEST(FlowCensusTest, IdleBackendsAreExactlyZeroBusyOnesAnUpperBound) {
  OrderedDataPlane dp;
  dp.clock_ns = 10'000 * kSecond;
  const uint64_t t = dp.clock_ns;
  dp.conns = {{1, t - 60 * kSecond}, {1, t - 100 * kSecond},  // backend 1: idle a minute
              {2, t}, {2, t - 3 * kSecond}, {2, t - 40 * kSecond}};
  FlowCensus census;
  const auto now = FlowCensus::Clock::time_point(seconds(50));
  census.flows(1, 5 * kSecond, now);
  census.step(dp, now);
  EXPECT_EQ(census.flows(1, 5 * kSecond, now)->flows, 0u) << "nothing within 5 s";
  EXPECT_EQ(census.flows(2, 5 * kSecond, now)->flows, 2u)
      << "the entries 0 and 3 s old, not the one 40 s old";
  EXPECT_EQ(census.flows(1, 120 * kSecond, now)->flows, 2u) << "both within two minutes";
  EXPECT_EQ(census.flows(3, 5 * kSecond, now)->flows, 0u) << "no entries at all";
}

}  // namespace
}  // namespace ballast
