// maglev.h: weighted Maglev-style consistent hashing (Eisenbud et al., NSDI
// 2016) with a bounded-load fill, pure C++: no BPF, no I/O, unit-tested on its
// own (tests/unit/maglev_test). docs/maglev.md explains the choice and its
// figures.
//
// Each backend walks its own permutation of the table's slots, given by
// (offset, skip) derived from a stable hash of its key, exactly as in the
// paper. With equal weights the fill differs: at level j every backend
// looks at the j-th slot of its permutation and takes it if it is free and
// the backend holds fewer than its quota (M/N rounded down or up). Without
// the quota that gives every slot to the backend whose permutation reaches
// it first, a fixed ranking per slot, so a backend leaving would move only
// its own entries; the quota makes the shares even at the price of the few
// extra moves it causes. Plain Maglev instead gives every backend one claim
// per round, skipping taken slots, which keeps shares even but moves
// 1.5-7x the minimum. Mixed weights keep the paper's fill, with turns in
// proportion to weight.
//
// Backends take turns in key order, not input order, so every balancer given
// the same set of backends (keys, weights) and table size computes the same
// table, independent of any earlier table.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ballast::maglev {

constexpr uint32_t kNoBackend = 0xffffffffu;

// The table format: the fill and hashes below. Balancers agree on a flow's
// backend only when they build tables of the same format (with the same
// seed, backends and weights); a change to build_table that changes any
// table (tests/unit/maglev_test pins digests) bumps it.
constexpr uint32_t kTableFormat = 1;

struct Endpoint {
  std::string key;  // stable identity, e.g. the backend's address
  uint32_t weight;  // 0: never in the table
};

// Returns @table_size entries, each an index into @endpoints, or kNoBackend
// for every entry when no endpoint has weight > 0. @table_size must be prime.
// With equal weights each backend owns table_size / N entries rounded down
// or up; the entries of a backend that leaves go to the others, and a few
// more move (docs/maglev.md has the figures). @seed (a fleet's hash_seed)
// seeds every hash of the fill; 0 builds the tables of before seeds.
std::vector<uint32_t> build_table(const std::vector<Endpoint>& endpoints, uint32_t table_size,
                                  uint32_t seed = 0);

// The paper's fill (one claim per backend per round, skipping taken slots),
// same permutations and turn order: the reference that bench_maglev measures
// build_table against. Not used by ballastd.
std::vector<uint32_t> build_table_classic(const std::vector<Endpoint>& endpoints,
                                          uint32_t table_size, uint32_t seed = 0);

// 64-bit FNV-1a with a seed, finished with a MurmurHash3 mix: stable across
// builds and machines (unlike std::hash).
uint64_t stable_hash(const std::string& key, uint64_t seed);

// A fleet digest of a live table: what each entry points at by backend key
// (@key_of: entry id -> key, the backend's address), not by local id, with
// the table's size, @seed and kTableFormat. Two balancers whose tables send
// every slot to the same backend address have the same digest, whatever ids
// their backends got (docs/fleet.md).
uint64_t table_digest(const std::vector<uint32_t>& table,
                      const std::map<uint32_t, std::string>& key_of, uint32_t seed);
// 16 lowercase hex digits.
std::string digest_hex(uint64_t digest);

}  // namespace ballast::maglev
