#include "changelog.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "log.h"

namespace ballast {

ChangeLog::ChangeLog(size_t capacity, Now now, LogFn log)
    : capacity_(capacity), now_(std::move(now)), log_(std::move(log)) {
  if (!log_) log_ = [](const std::string& line) { log_line(LogLevel::info, line); };
}

void ChangeLog::flush() {
  const auto held = automatic_lines_.summary(now_());
  if (!held) return;
  char span[32];
  std::snprintf(span, sizeof(span), "%.0f", held->seconds);
  log_(std::to_string(held->lines) +
       " more automatic changes (health checks, neighbour table) in " + span +
       " s not logged one by one; every one is in `ballast log`");
}

void ChangeLog::record(const std::string& actor, const std::vector<Change>& changes,
                       Origin origin) {
  const auto t = now_();
  for (const auto& change : changes) {
    const std::string c = describe(change);
    if (origin == Origin::operator_request || automatic_lines_.allow(t))
      log_("change by " + actor + ": " + c);
    entries_.push_back({t, actor, c});
    ++recorded_;
    if (entries_.size() > capacity_) entries_.pop_front();
    if (sink_) sink_(entries_.back());
  }
}

void ChangeLog::restore(const std::vector<ChangeEntry>& earlier) {
  std::deque<ChangeEntry> merged(earlier.begin(), earlier.end());
  merged.insert(merged.end(), entries_.begin(), entries_.end());
  while (merged.size() > capacity_) merged.pop_front();
  entries_ = std::move(merged);
}

std::vector<ChangeEntry> ChangeLog::since(std::chrono::system_clock::time_point since) const {
  std::vector<ChangeEntry> out;
  for (const auto& e : entries_)
    if (e.time >= since) out.push_back(e);
  return out;
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

}  // namespace ballast
