// maglev.h: weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016),
// pure C++: no BPF, no I/O, unit-tested on its own (tests/unit/maglev_test).
//
// Each backend walks its own permutation of the table's slots, given by
// (offset, skip) derived from a stable hash of its key; backends take turns
// claiming their next free slot. Weights set how often a backend gets a turn
// (a backend of weight w gets w turns for every max-weight turns of the
// heaviest), so its share of slots follows its weight. Backends take turns in
// key order, not input order, so every balancer given the same set of
// backends computes the same table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ballast::maglev {

constexpr uint32_t kNoBackend = 0xffffffffu;

struct Endpoint {
  std::string key;  // stable identity, e.g. the backend's address
  uint32_t weight;  // 0: never in the table
};

// Returns @table_size entries, each an index into @endpoints, or kNoBackend
// for every entry when no endpoint has weight > 0. @table_size must be prime.
std::vector<uint32_t> build_table(const std::vector<Endpoint>& endpoints, uint32_t table_size);

// 64-bit FNV-1a with a seed, finished with a MurmurHash3 mix: stable across
// builds and machines (unlike std::hash).
uint64_t stable_hash(const std::string& key, uint64_t seed);

}  // namespace ballast::maglev
