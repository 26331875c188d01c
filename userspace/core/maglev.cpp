#include "maglev.h"

#include <algorithm>
#include <memory>
#include <queue>
#include <tuple>
#include <utility>

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

namespace {

// One backend's walk along its permutation of the slots, with what both
// fills need. 32-bit fields: the table has fewer than 2^31 slots.
struct Walk {
  uint32_t pos;    // next slot of the permutation (offset + j * skip) % m
  uint32_t skip;   // 1..m-1, coprime with the prime m: the walk visits every slot
  uint32_t index;  // into the caller's endpoints
  uint32_t weight;
  uint32_t quota;   // bounded fill: entries this backend gets
  uint32_t count;   // bounded fill: entries owned so far
  uint64_t credit;  // classic fill: accumulated weight, a turn costs max_weight

  void advance(uint32_t m) {
    pos += skip;
    if (pos >= m) pos -= m;
  }
};

// Taken slots as bits: 8 KiB for 65,537 slots, so the probes stay in L1
// rather than reading the 256 KiB table.
class SlotBits {
 public:
  explicit SlotBits(uint32_t m) : words_((m + 63) / 64, 0) {}
  bool test(uint32_t i) const { return words_[i >> 6] >> (i & 63) & 1; }
  void set(uint32_t i) { words_[i >> 6] |= uint64_t{1} << (i & 63); }
  // Calls @f(i) for every clear bit i < @m, in order.
  template <typename F>
  void for_each_clear(uint32_t m, F f) const {
    for (uint32_t k = 0; k < words_.size(); k++)
      for (uint64_t clear = ~words_[k]; clear != 0; clear &= clear - 1) {
        const uint32_t i = k * 64 + __builtin_ctzll(clear);
        if (i < m) f(i);
      }
  }

 private:
  std::vector<uint64_t> words_;
};

// The slots taken so far, in order, written to the table once the fill is
// done. Storing each take straight into the table (256 KiB at 65,537 slots,
// several times L1) put a random store in every look, and the bounded fill
// took 1.5x as long with it (docs/maglev.md); appending here is sequential.
// @append writes the next entry whether or not it is kept, so that the
// bounded fill's look stays branch-free.
class TakeLog {
 public:
  explicit TakeLog(uint32_t m) : takes_(new Take[m + 1]), end_(takes_.get()) {}
  void append(uint32_t slot, uint32_t index, uint32_t keep) {
    *end_ = {slot, index};
    end_ += keep;
  }
  uint32_t size() const { return static_cast<uint32_t>(end_ - takes_.get()); }
  void write_to(std::vector<uint32_t>& table) const {
    for (const Take* t = takes_.get(); t != end_; t++) table[t->slot] = t->index;
  }

 private:
  struct Take {
    uint32_t slot, index;
  };
  std::unique_ptr<Take[]> takes_;  // one spare entry: append writes before it checks
  Take* end_;
};

// Backends with weight > 0 in key order (so input order does not matter),
// with their permutations. Sets @max_weight and @total_weight.
std::vector<Walk> walks_of(const std::vector<Endpoint>& endpoints, uint32_t m, uint64_t salt,
                           uint32_t& max_weight, uint64_t& total_weight) {
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < endpoints.size(); i++)
    if (endpoints[i].weight > 0) order.push_back(i);
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return endpoints[a].key < endpoints[b].key; });
  max_weight = 0;
  total_weight = 0;
  for (uint32_t i : order) {
    max_weight = std::max(max_weight, endpoints[i].weight);
    total_weight += endpoints[i].weight;
  }
  std::vector<Walk> walks;
  walks.reserve(order.size());
  for (uint32_t i : order) {
    const auto& key = endpoints[i].key;
    const uint32_t w = endpoints[i].weight;
    Walk walk{};
    walk.pos = static_cast<uint32_t>(stable_hash(key, 0x9e3779b97f4a7c15ull ^ salt) % m);
    walk.skip =
        m > 1 ? static_cast<uint32_t>(stable_hash(key, 0x632be59bd9b4e019ull ^ salt) % (m - 1) + 1)
              : 0;
    walk.index = i;
    walk.weight = w;
    walks.push_back(walk);
  }
  return walks;
}

// Equal weights: quotas that add up to exactly @m, m / N rounded down for
// every backend and one more for the m % N backends first by a hash of the
// key. Ranking by hash (not by key order) means the backends that get one
// more for R leftover slots also get it for R' > R whoever else is there, so
// a change of N moves few quotas.
void set_quotas(std::vector<Walk>& walks, const std::vector<Endpoint>& endpoints, uint32_t m,
                uint64_t salt) {
  const uint32_t n = walks.size();
  std::vector<std::pair<uint64_t, uint32_t>> order;  // (priority, walk)
  for (uint32_t i = 0; i < n; i++) {
    walks[i].quota = m / n;
    order.push_back({stable_hash(endpoints[walks[i].index].key, 0x5851f42d4c957f2dull ^ salt), i});
  }
  // Ties (equal hashes) go by key order: walks are in key order.
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (uint32_t i = 0; i < m % n; i++) walks[order[i].second].quota++;
}

// a * b mod m for a, b < m < 2^31, without a division (Barrett).
class MulMod {
 public:
  explicit MulMod(uint32_t m) : m_(m), inv_(UINT64_MAX / m) {}
  uint32_t operator()(uint64_t a, uint64_t b) const {
    const uint64_t x = a * b;
    uint64_t r = x - static_cast<uint64_t>((static_cast<unsigned __int128>(x) * inv_) >> 64) * m_;
    while (r >= m_) r -= m_;
    return static_cast<uint32_t>(r);
  }

 private:
  uint64_t m_, inv_;
};

// The inverse of @a modulo the prime @m (extended Euclid).
uint32_t inverse_mod(uint32_t a, uint32_t m) {
  int64_t t = 0, new_t = 1, r = m, new_r = a;
  while (new_r != 0) {
    const int64_t q = r / new_r;
    std::tie(t, new_t) = std::make_pair(new_t, t - q * new_t);
    std::tie(r, new_r) = std::make_pair(new_r, r - q * new_r);
  }
  return static_cast<uint32_t>(t < 0 ? t + m : t);
}

// Ends the fill of fill_levels exactly as walking on would, from the free
// slots: walk w reaches free slot s after d = (s - pos) / skip mod m more
// looks, and looks at taken slots change nothing. So each free slot goes to
// the walk that reaches it first (fewest more looks, then key order)
// among those still under quota when it does: a heap of one candidate per
// free slot, re-chosen when its walk fills up first. Every walk in @active
// has made the same number of looks (fill_levels stops between levels), so
// counting from now orders the looks as their levels would. Costs free
// slots x walks steps, which the caller keeps under m.
void finish_tail(std::vector<Walk>& active, const SlotBits& taken, std::vector<uint32_t>& table,
                 uint32_t filled) {
  const uint32_t m = table.size();
  const MulMod mulmod(m);
  std::vector<uint32_t> inverse;
  for (const Walk& w : active) inverse.push_back(inverse_mod(w.skip, m));
  // How many more looks walk @i takes to reach slot @s; ties go to the
  // lower @i (key order).
  auto looks_to = [&](size_t i, uint32_t s) -> uint64_t {
    const Walk& w = active[i];
    const uint32_t gap = s >= w.pos ? s - w.pos : s + m - w.pos;
    return mulmod(gap, inverse[i]);
  };
  struct Candidate {
    uint64_t looks;  // from now until the walk reaches the slot
    uint32_t walk, slot;
    bool operator>(const Candidate& o) const {
      return looks != o.looks ? looks > o.looks : walk > o.walk;
    }
  };
  auto candidate = [&](uint32_t s) {
    Candidate best{UINT64_MAX, 0, s};
    for (uint32_t i = 0; i < active.size(); i++) {
      if (active[i].count >= active[i].quota) continue;
      const uint64_t looks = looks_to(i, s);
      if (looks < best.looks) best = {looks, i, s};
    }
    return best;
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  taken.for_each_clear(m, [&](uint32_t s) { heap.push(candidate(s)); });
  while (filled < m) {
    const Candidate c = heap.top();
    heap.pop();
    Walk& w = active[c.walk];
    if (w.count >= w.quota) {  // filled up before it got here
      heap.push(candidate(c.slot));
      continue;
    }
    table[c.slot] = w.index;
    w.count++;
    filled++;
  }
}

// Walks @active (in key order, all at the same level) level by level until
// the table is full: at each level every walk looks at its next slot and
// takes it if free, and a walk that holds its quota drops out.
void fill_levels(std::vector<Walk>& active, SlotBits& taken, std::vector<uint32_t>& table) {
  const uint32_t m = table.size();
  TakeLog log(m);
  for (;;) {
    bool dropped = false;
    for (Walk& w : active) {
      const uint32_t slot = w.pos;
      w.advance(m);
      // Branch-free: whether a slot is free is a coin toss for most of the
      // fill, and mispredicting it cost more than the rest of the look.
      const uint32_t free = !taken.test(slot);
      taken.set(slot);
      log.append(slot, w.index, free);
      w.count += free;
      dropped |= w.count == w.quota;
    }
    // Once the table is full the rest of a level's looks find nothing free,
    // so checking once per level gives the same table.
    const uint32_t filled = log.size();
    if (filled == m) break;
    if (dropped)
      active.erase(std::remove_if(active.begin(), active.end(),
                                  [](const Walk& w) { return w.count >= w.quota; }),
                   active.end());
    // Few free slots: walking to them takes many looks each; solve the rest
    // of the fill directly once that costs less (free x walks under m / 4
    // measured best at 65,537 and 655,373 slots).
    if (uint64_t{m - filled} * active.size() * 4 <= m) {
      log.write_to(table);
      finish_tail(active, taken, table, filled);
      return;
    }
  }
  log.write_to(table);
}

// What the seed changes: every hash the fill takes of a key. Seed 0 gives
// salt 0, the tables Ballast built before seeds existed.
uint64_t salt_of(uint32_t seed) { return uint64_t{seed} * 0xbf58476d1ce4e5b9ull; }

}  // namespace

std::vector<uint32_t> build_table(const std::vector<Endpoint>& endpoints, uint32_t table_size,
                                  uint32_t seed) {
  const uint32_t m = table_size;
  uint32_t max_weight;
  uint64_t total_weight;
  std::vector<Walk> walks = walks_of(endpoints, m, salt_of(seed), max_weight, total_weight);
  if (walks.empty() || m == 0) return std::vector<uint32_t>(m, kNoBackend);
  // Mixed weights keep the paper's fill: in the bounded one a heavier
  // backend would have to walk faster, and walking w times as fast wins
  // more than w times the slots before the quotas cut in, so the quotas
  // bind early and a change moves more than the classic fill does
  // (docs/maglev.md).
  for (const Walk& w : walks)
    if (w.weight != max_weight) return build_table_classic(endpoints, table_size, seed);

  std::vector<uint32_t> table(m, kNoBackend);
  set_quotas(walks, endpoints, m, salt_of(seed));
  SlotBits taken(m);
  fill_levels(walks, taken, table);
  return table;
}

std::vector<uint32_t> build_table_classic(const std::vector<Endpoint>& endpoints,
                                          uint32_t table_size, uint32_t seed) {
  const uint32_t m = table_size;
  std::vector<uint32_t> table(m, kNoBackend);
  uint32_t max_weight;
  uint64_t total_weight;
  std::vector<Walk> walks = walks_of(endpoints, m, salt_of(seed), max_weight, total_weight);
  if (walks.empty() || m == 0) return table;

  // Rounds in key order: a backend of weight w gets w turns for every
  // max_weight turns of the heaviest; a turn claims its next free slot.
  SlotBits taken(m);
  TakeLog log(m);
  for (;;) {
    for (Walk& w : walks) {
      w.credit += w.weight;
      if (w.credit < max_weight) continue;
      w.credit -= max_weight;
      while (taken.test(w.pos)) w.advance(m);
      taken.set(w.pos);
      log.append(w.pos, w.index, 1);
      w.advance(m);
      if (log.size() == m) {
        log.write_to(table);
        return table;
      }
    }
  }
}

uint64_t table_digest(const std::vector<uint32_t>& table,
                      const std::map<uint32_t, std::string>& key_of, uint32_t seed) {
  // One hash per backend, not per entry: 65,537 entries cost a lookup each.
  std::map<uint32_t, uint64_t> hash_of;
  for (const auto& [id, key] : key_of) hash_of[id] = stable_hash(key, 0x2545f4914f6cdd1dull);
  constexpr uint64_t kPrime = 1099511628211ull;
  constexpr uint64_t kEmpty = 0x9ae16a3b2f90404full;    // kNoBackend
  constexpr uint64_t kUnknown = 0xc3a5c85c97cb3127ull;  // an id with no key
  uint64_t h = 14695981039346656037ull;
  for (uint64_t word : {uint64_t{kTableFormat}, uint64_t{seed}, uint64_t{table.size()}})
    h = (h ^ word) * kPrime;
  uint32_t last_id = kNoBackend;
  uint64_t last = kEmpty;
  for (uint32_t e : table) {
    if (e != last_id) {
      last_id = e;
      const auto it = hash_of.find(e);
      last = e == kNoBackend ? kEmpty : it == hash_of.end() ? kUnknown : it->second;
    }
    h = (h ^ last) * kPrime;
  }
  return stable_hash(std::string(reinterpret_cast<const char*>(&h), sizeof h), 0);
}

std::string digest_hex(uint64_t digest) {
  static const char* const kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; i--, digest >>= 4) out[i] = kHex[digest & 0xf];
  return out;
}

}  // namespace ballast::maglev
