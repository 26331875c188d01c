// pinned_maps_test.cpp: kPinnedMaps (userspace/core/dataplane.h) is the
// one list of the maps ballastd pins, and so keeps across a restart. A map
// added to bpf/maps.h must be on it, or be the per-CPU cache that is
// rebuilt as packets come (clock_cache): otherwise a restart would lose its
// state.
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "balancer.skel.h"
#include "dataplane.h"

namespace ballast::test {
namespace {

TEST(PinnedMaps, EveryMapOfTheProgramIsPinnedOrACache) {
  balancer* skel = balancer::open();
  ASSERT_NE(skel, nullptr);
  std::set<std::string> maps;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, skel->obj) {
    if (!bpf_map__is_internal(map)) maps.insert(bpf_map__name(map));
  }
  balancer::destroy(skel);
  std::set<std::string> expected(std::begin(kPinnedMaps), std::end(kPinnedMaps));
  EXPECT_EQ(expected.size(), std::size(kPinnedMaps)) << "a name twice in kPinnedMaps";
  expected.insert("clock_cache");  // each CPU's copy of the clock, rebuilt as packets come
  EXPECT_EQ(maps, expected);
}

}  // namespace
}  // namespace ballast::test
