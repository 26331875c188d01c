// maglev_table_test.cpp: what ballastd reads back from the real maps
// (userspace/dataplane/bpf_dataplane.h): its Maglev tables, and the
// connection table a slice at a time. A table it installs is frozen, so
// its entries are known without reading it back (live_table() gives back
// the very pointer it was given: the audit and the skew report cost one map
// lookup per VIP); a table swapped in behind its back is read once, frozen
// too, and told apart by its map id.
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "balancer_fixture.h"
#include "bpf_dataplane.h"
#include "fd.h"

namespace ballast::test {
namespace {

constexpr std::uint32_t kVip = 3;

class MaglevTableTest : public ::testing::Test {
 protected:
  MapFds fds() const {
    MapFds f;
    f.vips = lb_.map_fd("vips");
    f.vip_by_id = lb_.map_fd("vip_by_id");
    f.backends = lb_.map_fd("backends");
    f.maglev_tables = lb_.map_fd("maglev_tables");
    f.conn_table = lb_.map_fd("conn_table");
    f.vip_stats = lb_.map_fd("vip_stats");
    f.backend_stats = lb_.map_fd("backend_stats");
    f.reason_stats = lb_.map_fd("reason_stats");
    f.egress = lb_.map_fd("egress");
    f.tx_ports = lb_.map_fd("tx_ports");
    f.vip_filter = lb_.map_fd("vip_filter");
    f.conn_stats = lb_.map_fd("conn_stats");
    return f;
  }
  static TablePtr table_of(std::uint32_t a, std::uint32_t b) {
    std::vector<std::uint32_t> t(BALLAST_MAGLEV_SIZE);
    for (std::size_t i = 0; i < t.size(); i++) t[i] = i % 2 ? a : b;
    return std::make_shared<const std::vector<std::uint32_t>>(std::move(t));
  }
  std::uint32_t inner_id() const {
    std::uint32_t id = 0;
    EXPECT_EQ(bpf_map_lookup_elem(lb_.map_fd("maglev_tables"), &kVip, &id), 0);
    return id;
  }

  BalancerHarness lb_;
};

TEST_F(MaglevTableTest, AnInstalledTableIsFrozenAndKnownWithoutReadingIt) {
  BpfDataPlane dp(fds());
  const TablePtr installed = table_of(10, 11);
  dp.install_table(kVip, installed);
  const auto live = dp.live_table(kVip);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(live->entries, installed) << "the pointer given, not a copy read back";
  EXPECT_EQ(live->map_id, inner_id());

  UniqueFd inner(bpf_map_get_fd_by_id(inner_id()));
  ASSERT_TRUE(inner.valid());
  const std::uint32_t key = 0, value = 99;
  EXPECT_NE(bpf_map_update_elem(inner.get(), &key, &value, BPF_ANY), 0)
      << "an installed table can be written in place";
  EXPECT_EQ(errno, EPERM);

  dp.remove_table(kVip);
  EXPECT_FALSE(dp.live_table(kVip).has_value());
}

TEST_F(MaglevTableTest, ASwappedInTableIsReadOnceAndFrozenToo) {
  BpfDataPlane dp(fds());
  dp.install_table(kVip, table_of(10, 11));
  // Someone else's map, every entry slot 12, swapped in.
  UniqueFd made(bpf_map_create(BPF_MAP_TYPE_ARRAY, "handmade", 4, 4, BALLAST_MAGLEV_SIZE, nullptr));
  ASSERT_TRUE(made.valid());
  for (std::uint32_t i = 0; i < BALLAST_MAGLEV_SIZE; i++) {
    const std::uint32_t twelve = 12;
    ASSERT_EQ(bpf_map_update_elem(made.get(), &i, &twelve, BPF_ANY), 0);
  }
  int made_fd = made.get();
  ASSERT_EQ(bpf_map_update_elem(lb_.map_fd("maglev_tables"), &kVip, &made_fd, BPF_ANY), 0);

  const auto live = dp.live_table(kVip);
  ASSERT_TRUE(live.has_value());
  ASSERT_TRUE(live->entries);
  EXPECT_EQ(*live->entries, std::vector<std::uint32_t>(BALLAST_MAGLEV_SIZE, 12));
  EXPECT_EQ(live->map_id, inner_id());
  EXPECT_EQ(dp.live_table(kVip)->entries, live->entries) << "read again instead of once";
  const std::uint32_t key = 0, value = 13;
  EXPECT_NE(bpf_map_update_elem(made.get(), &key, &value, BPF_ANY), 0)
      << "what was read can still change";
}

// The connection table is walked a slice at a time (drain --wait's count,
// core/flow_census.h): 200,000 ways (50,000 full buckets, the first of the
// table, so that a slice can be full) come back whole, each with its backend
// and the time it was last seen, never more than the slice asked for per
// call.
TEST_F(MaglevTableTest, TheConnectionTableIsWalkedASliceAtATime) {
  BpfDataPlane dp(fds());
  constexpr std::uint32_t kBuckets = 50'000;
  constexpr std::uint32_t kEntries = kBuckets * BALLAST_CONN_WAYS;
  const std::uint64_t seen_ns = coarse_now_ns() - 5'000'000'000ull;  // 5 s ago
  std::vector<std::uint32_t> keys(kBuckets);
  std::vector<ballast_conn_bucket> buckets(kBuckets);
  for (std::uint32_t b = 0; b < kBuckets; b++) {
    keys[b] = b;
    for (std::uint32_t w = 0; w < BALLAST_CONN_WAYS; w++) {
      const std::uint32_t i = b * BALLAST_CONN_WAYS + w;
      // Any nonzero fingerprint: the walk does not look at it.
      buckets[b].way[w] =
          ballast_conn_way{.tag = (std::uint64_t(i) + 1) << 16 | (i % 3),
                           .seen = static_cast<std::uint32_t>(seen_ns >> BALLAST_CONN_SEEN_SHIFT),
                           .flags = BALLAST_CONN_F_CONFIRMED};
    }
  }
  std::uint32_t count = kBuckets;
  ASSERT_EQ(
      bpf_map_update_batch(lb_.map_fd("conn_table"), keys.data(), buckets.data(), &count, nullptr),
      0);
  ASSERT_EQ(count, kBuckets);
  FlowWalk walk;
  std::uint64_t seen = 0, per_backend[3] = {}, wrong_time = 0;
  std::size_t calls = 0, most = 0;
  while (!walk.done && calls < 1000) {
    std::size_t n = 0;
    dp.walk_flows(walk, 32768, [&](std::uint32_t backend, std::uint64_t last_seen_ns) {
      ++n;
      if (backend < 3) ++per_backend[backend];
      // seen has BALLAST_CONN_SEEN_SHIFT units: back in ns, within a unit.
      const std::uint64_t unit = 1ull << BALLAST_CONN_SEEN_SHIFT;
      if (last_seen_ns + unit < seen_ns || last_seen_ns > seen_ns + unit) ++wrong_time;
    });
    seen += n;
    most = std::max(most, n);
    ++calls;
  }
  EXPECT_EQ(seen, kEntries);
  EXPECT_EQ(most, 32768u) << "a slice of full buckets holds as many ways as asked, no more";
  EXPECT_GE(calls, kEntries / 32768);
  EXPECT_EQ(per_backend[0], (kEntries + 2) / 3);
  EXPECT_EQ(per_backend[1], (kEntries + 1) / 3);
  EXPECT_EQ(wrong_time, 0u) << "ways whose last_seen_ns is not when they were seen";
}

}  // namespace
}  // namespace ballast::test
