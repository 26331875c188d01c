#include "skew.h"

#include <cmath>

namespace ballast {
namespace {

double share(uint64_t part, uint64_t whole) {
  return whole ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

std::optional<double> ratio(double observed, double expected) {
  if (expected <= 0) return std::nullopt;
  return observed / expected;
}

// Counts since @then, by a counter that may have been reset in between (a
// backend removed and added again): then the whole count is new.
uint64_t since(uint64_t now, uint64_t then) { return now >= then ? now - then : now; }

}  // namespace

void SkewTracker::record(Clock::time_point now, const std::vector<VipView>& vips,
                         DataPlane& dataplane) {
  Sample sample{now, {}};
  for (const auto& vip : vips)
    for (const auto& b : vip.backends) {
      const auto c = dataplane.read_counters(CounterMap::backend, b.id);
      sample.backends[b.id] = {b.address, {c.packets, c.bytes, c.new_flows}};
    }
  samples_.push_back(std::move(sample));
  // Keep one sample at or beyond the window's start, none older.
  while (samples_.size() > 2 && samples_[1].time <= now - settings_.window) samples_.pop_front();

  // How long each backend has been skewed.
  std::map<uint32_t, Clock::time_point> still;
  for (const auto& vip : compute(vips))
    for (const auto& b : vip.backends) {
      if (!b.significant || !b.skew_new_flows || *b.skew_new_flows <= settings_.threshold) continue;
      auto it = skewed_since_.find(b.id);
      still[b.id] = it == skewed_since_.end() ? now : it->second;
    }
  skewed_since_ = std::move(still);
}

const SkewTracker::Sample* SkewTracker::window_start() const {
  if (samples_.empty()) return nullptr;
  const auto from = samples_.back().time - settings_.window;
  const Sample* start = &samples_.front();
  for (const auto& s : samples_)
    if (s.time <= from) start = &s;
  return start;
}

std::vector<VipSkew> SkewTracker::report(const std::vector<VipView>& vips,
                                         DataPlane* live_tables) const {
  std::vector<VipSkew> out = compute(vips);
  if (live_tables)
    for (size_t i = 0; i < out.size(); i++) {
      auto& vip = out[i];
      std::map<uint32_t, uint64_t> entries;
      const auto live = live_tables->live_table(vip.id);
      const TablePtr table = live ? live->entries : nullptr;
      if (table && table == vips[i].table) {
        // The table the state installed (frozen): its counts are known.
        for (const auto& b : vips[i].backends) entries[b.id] = b.table_entries;
      } else if (table) {
        for (uint32_t e : *table) ++entries[e];
      }
      const uint64_t size = table ? table->size() : 0;
      uint64_t ours = 0;
      for (auto& b : vip.backends) {
        const uint64_t n = entries.count(b.id) ? entries[b.id] : 0;
        ours += n;
        b.ring_share = share(n, size);
        b.ring_skew = ratio(b.ring_share, b.expected_share);
      }
      vip.ring_foreign_share = size ? share(size - ours, size) : 1.0;
    }
  if (samples_.empty()) return out;
  const auto now = samples_.back().time;
  for (auto& vip : out)
    for (auto& b : vip.backends) {
      auto it = skewed_since_.find(b.id);
      if (it != skewed_since_.end())
        b.skewed_for = std::chrono::duration_cast<std::chrono::seconds>(now - it->second);
    }
  return out;
}

std::vector<VipSkew> SkewTracker::compute(const std::vector<VipView>& vips) const {
  const Sample* start = window_start();
  const Sample* end = samples_.empty() ? nullptr : &samples_.back();
  std::vector<VipSkew> out;
  for (const auto& vip : vips) {
    VipSkew v;
    v.id = vip.id;
    v.key = vip.key;
    if (start && end)
      v.window_seconds = std::chrono::duration<double>(end->time - start->time).count();
    const double usable = vip.usable_weight();
    uint64_t table_size = 0;
    for (const auto& b : vip.backends) table_size += b.table_entries;
    for (const auto& b : vip.backends) {
      BackendSkew s;
      s.id = b.id;
      s.address = b.address;
      s.expected_share = VipView::expected_share(b, usable);
      if (start && end && start != end) {
        auto e = end->backends.find(b.id);
        if (e != end->backends.end() && e->second.first == b.address) {
          TrafficCounts then{};
          auto st = start->backends.find(b.id);
          if (st != start->backends.end() && st->second.first == b.address)
            then = st->second.second;
          const TrafficCounts& now = e->second.second;
          s.window = {since(now.packets, then.packets), since(now.bytes, then.bytes),
                      since(now.new_flows, then.new_flows)};
        }
      }
      v.window.packets += s.window.packets;
      v.window.bytes += s.window.bytes;
      v.window.new_flows += s.window.new_flows;
      s.ring_share = share(b.table_entries, table_size);
      s.ring_skew = ratio(s.ring_share, s.expected_share);
      v.backends.push_back(s);
    }
    if (table_size == 0) v.ring_foreign_share = 1.0;
    v.confident = v.window.new_flows >= settings_.min_new_flows;
    const double n = static_cast<double>(v.window.new_flows);
    for (auto& s : v.backends) {
      s.observed_new_flows = share(s.window.new_flows, v.window.new_flows);
      s.observed_packets = share(s.window.packets, v.window.packets);
      s.observed_bytes = share(s.window.bytes, v.window.bytes);
      // No traffic at all in the window is no evidence either way: no skew.
      if (v.window.new_flows) s.skew_new_flows = ratio(s.observed_new_flows, s.expected_share);
      if (v.window.packets) s.skew_packets = ratio(s.observed_packets, s.expected_share);
      if (v.window.bytes) s.skew_bytes = ratio(s.observed_bytes, s.expected_share);
      const double p = s.expected_share;
      if (n > 0 && p > 0 && p < 1)
        s.z = (static_cast<double>(s.window.new_flows) - n * p) / std::sqrt(n * p * (1 - p));
      s.significant = v.confident && std::fabs(s.z) >= settings_.z_min;
      if (s.skew_new_flows && (!v.skew || *s.skew_new_flows > *v.skew)) v.skew = s.skew_new_flows;
    }
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace ballast
