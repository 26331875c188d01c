// flow_census.h: how many connection-table entries each backend has, and
// how recently each saw a packet, for `drain --wait` (the control API's
// backend.flows). The table holds up to 2M flows (BALLAST_CONN_TABLE_SIZE
// ways; BpfDataPlane reads it mapped, in place): a walk of it is done a
// slice at a time, one slice per turn of the daemon's loop, so that no
// health check, signal or client waits behind it; every request is
// answered from the last finished walk, and walks run only while someone
// asked recently. No syscalls: the walk goes through DataPlane.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>

#include "dataplane.h"

namespace ballast {

class FlowCensus {
 public:
  using Clock = std::chrono::steady_clock;
  // Ways per step(): a few milliseconds of the loop.
  static constexpr size_t kEntriesPerStep = 32768;
  // Walks go on this long after the last request, a new one starting when
  // the last finished one is kRewalkAfter old (drain --wait asks every
  // second).
  static constexpr auto kDemandLasts = std::chrono::seconds(10);
  static constexpr auto kRewalkAfter = std::chrono::seconds(1);

  struct Answer {
    // Entries of the backend that may have seen a packet within the idle
    // time asked for: exactly 0 when none did; otherwise an upper bound
    // (entries are counted by age in buckets: 1, 2, 5, 10, 30 s, 1, 2, 5,
    // 10, 30 min, 1 h).
    uint64_t flows = 0;
    Clock::duration age{};  // of the walk it comes from (when it started)
  };

  // Backend @backend's flows with a packet within @idle_ns, from the last
  // finished walk; nullopt while none has finished. Asking keeps (or
  // starts) the walks going.
  std::optional<Answer> flows(uint32_t backend, uint64_t idle_ns, Clock::time_point now);
  // When the loop should call step(): zero while a walk is in progress or
  // one is due, else the time until the next is due; nullopt when nobody
  // asked recently (nothing to do).
  std::optional<Clock::duration> next_step_in(Clock::time_point now) const;
  bool walking(Clock::time_point now) const { return next_step_in(now) == Clock::duration::zero(); }
  // One slice of the walk: up to kEntriesPerStep entries.
  void step(DataPlane& dataplane, Clock::time_point now);

 private:
  static constexpr std::array<uint64_t, 11> kAgeBoundsS = {1,   2,   5,    10,   30,  60,
                                                           120, 300, 600, 1800, 3600};
  struct Backend {
    uint64_t newest_ns = 0;  // the most recent last_seen_ns of its entries
    std::array<uint64_t, kAgeBoundsS.size() + 1> by_age{};
  };
  struct Walk {
    Clock::time_point started{};
    uint64_t started_ns = 0;  // on the data plane's clock
    std::map<uint32_t, Backend> backends;
  };

  std::optional<Walk> done_;     // the last finished walk
  std::optional<Walk> current_;  // the walk in progress
  FlowWalk cursor_;
  Clock::time_point asked_{};
};

}  // namespace ballast
