// changelog.h: every change to the live state (CLI, apply, reload, health
// transition, drain), with its time and who made it, in a bounded history
// (oldest dropped first) that `ballast log` reads. Each entry is also one
// line in ballastd's log.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <vector>

namespace ballast {

struct ChangeEntry {
  std::chrono::system_clock::time_point time;
  std::string actor;   // "uid=0 pid=1234", "health-check", "config FILE", "reload FILE"
  std::string change;  // "backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 2"
};

class ChangeLog {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  static constexpr size_t kDefaultCapacity = 10000;

  explicit ChangeLog(size_t capacity = kDefaultCapacity, Now now = std::chrono::system_clock::now);

  void record(const std::string& actor, const std::vector<std::string>& changes);
  // Entries at or after @since, oldest first.
  std::vector<ChangeEntry> since(std::chrono::system_clock::time_point since) const;
  size_t size() const { return entries_.size(); }
  // Changes recorded since construction (not capped like size()): a caller
  // compares two readings to learn whether anything changed in between.
  uint64_t recorded() const { return recorded_; }

 private:
  size_t capacity_;
  Now now_;
  std::deque<ChangeEntry> entries_;
  uint64_t recorded_ = 0;
};

// "2026-11-26T02:00:00.123Z"
std::string iso8601_utc(std::chrono::system_clock::time_point t);

}  // namespace ballast
