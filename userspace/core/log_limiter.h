// log_limiter.h: a budget of log lines for what can come in storms (health
// checks flapping, the neighbour table churning, a client sending refused
// requests in a loop): a burst, then a steady rate; the lines held back are
// counted and said in one summary line per period. What the lines report
// is never lost where it is kept (the change log keeps every change).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace ballast {

class LogLimiter {
 public:
  using time_point = std::chrono::system_clock::time_point;

  LogLimiter(double burst, double per_second, std::chrono::seconds summary_every)
      : burst_(burst), per_second_(per_second), summary_every_(summary_every), tokens_(burst) {}

  // Whether a line may be logged at @now; when not, it is counted.
  bool allow(time_point now);

  struct HeldBack {
    uint64_t lines;
    double seconds;  // since the first of them
  };
  // The lines held back, once summary_every has passed since the first of
  // them (then counting starts afresh); nullopt before, or when none were.
  std::optional<HeldBack> summary(time_point now);

 private:
  double burst_, per_second_;
  std::chrono::seconds summary_every_;
  double tokens_;
  time_point refilled_{};
  uint64_t held_back_ = 0;
  time_point first_held_back_{};
};

}  // namespace ballast
