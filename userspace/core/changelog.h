// changelog.h: every change to the live state (CLI, apply, reload, health
// transition, drain), with its time and who made it, in a bounded history
// (oldest dropped first) that `ballast log` reads. Each entry is also one
// line in ballastd's log, and goes to a sink (ballastd's journal file, so
// that the history outlives a restart; restore() reads it back).
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "change.h"
#include "log_limiter.h"

namespace ballast {

struct ChangeEntry {
  std::chrono::system_clock::time_point time;
  std::string actor;   // "uid=0 pid=1234", "health-check", "config FILE", "reload FILE"
  std::string change;  // "backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 2"
};

class ChangeLog {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  using LogFn = std::function<void(const std::string& line)>;
  static constexpr size_t kDefaultCapacity = 10000;
  // ballastd's log gets every change an operator makes, but the automatic
  // ones (health checks, the neighbour table) only up to a burst of
  // kLogBurst lines, then kLogPerSecond a second; the rest are counted and
  // said in one line every kLogSummaryEvery (flush()). The change log
  // itself keeps every entry.
  static constexpr double kLogBurst = 20, kLogPerSecond = 5;
  static constexpr auto kLogSummaryEvery = std::chrono::seconds(10);

  explicit ChangeLog(size_t capacity = kDefaultCapacity, Now now = std::chrono::system_clock::now,
                     LogFn log = nullptr);

  using Sink = std::function<void(const ChangeEntry&)>;

  // Who asked: an operator (the API, a config file, a reload), or ballastd
  // itself reacting to the world (health checks, the neighbour table),
  // which can come in storms.
  enum class Origin { operator_request, automatic };

  // Each change as one entry (its text: describe()).
  void record(const std::string& actor, const std::vector<Change>& changes,
              Origin origin = Origin::operator_request);
  // Every entry recorded from now on also goes to @sink.
  void set_sink(Sink sink) { sink_ = std::move(sink); }
  // Entries from before this process (oldest first), ahead of any recorded
  // since; not sent to the sink, not counted by recorded().
  void restore(const std::vector<ChangeEntry>& earlier);
  // Entries at or after @since, oldest first.
  std::vector<ChangeEntry> since(std::chrono::system_clock::time_point since) const;
  size_t size() const { return entries_.size(); }
  // The summary of lines held back, once kLogSummaryEvery has passed since
  // the first of them (call it every second).
  void flush();
  // Changes recorded since construction (not capped like size()): a caller
  // compares two readings to learn whether anything changed in between.
  uint64_t recorded() const { return recorded_; }

 private:
  size_t capacity_;
  Now now_;
  std::deque<ChangeEntry> entries_;
  uint64_t recorded_ = 0;
  Sink sink_;
  LogFn log_;
  // The automatic actors' shared budget of log lines.
  LogLimiter automatic_lines_{kLogBurst, kLogPerSecond, kLogSummaryEvery};
};

// "2026-11-26T02:00:00.123Z"
std::string iso8601_utc(std::chrono::system_clock::time_point t);

}  // namespace ballast
