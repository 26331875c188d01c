#include "maglev.h"

#include <algorithm>
#include <numeric>

namespace ballast::maglev {

uint64_t stable_hash(const std::string& key, uint64_t seed) {
  uint64_t h = 14695981039346656037ull ^ seed;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::vector<uint32_t> build_table(const std::vector<Endpoint>& endpoints, uint32_t table_size) {
  std::vector<uint32_t> table(table_size, kNoBackend);

  // Turn order: by key, so the input order does not matter.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < endpoints.size(); i++)
    if (endpoints[i].weight > 0) order.push_back(i);
  if (order.empty() || table_size == 0) return table;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return endpoints[a].key < endpoints[b].key; });

  struct Walk {
    uint64_t offset, skip, next = 0;
    uint64_t credit = 0;  // accumulated weight; a turn costs max_weight
  };
  std::vector<Walk> walks;
  walks.reserve(order.size());
  uint32_t max_weight = 0;
  for (uint32_t i : order) {
    const auto& key = endpoints[i].key;
    walks.push_back({stable_hash(key, 0x9e3779b97f4a7c15ull) % table_size,
                     stable_hash(key, 0x632be59bd9b4e019ull) % (table_size - 1) + 1});
    max_weight = std::max(max_weight, endpoints[i].weight);
  }

  uint32_t filled = 0;
  for (;;) {
    for (size_t n = 0; n < order.size(); n++) {
      Walk& w = walks[n];
      w.credit += endpoints[order[n]].weight;
      if (w.credit < max_weight) continue;
      w.credit -= max_weight;
      // Claim this backend's next slot that is still free.
      uint64_t slot = (w.offset + w.next * w.skip) % table_size;
      while (table[slot] != kNoBackend) {
        w.next++;
        slot = (w.offset + w.next * w.skip) % table_size;
      }
      w.next++;
      table[slot] = order[n];
      if (++filled == table_size) return table;
    }
  }
}

}  // namespace ballast::maglev
