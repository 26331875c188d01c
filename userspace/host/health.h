// health.h: active health checks of backends (tcp connect, http GET, udp
// request/reply) from the daemon's one thread, without a thread per backend:
// every probe is a non-blocking socket on one epoll instance with its own
// deadline, and each target's results go through a rise/fall state machine.
// No BPF and no threads; time comes from an injectable Clock.
//
// The daemon's loop polls fd() with its other fds, with a timeout of at most
// time_to_next(), and calls run() whenever fd() is readable or the timeout
// ran out. run() never blocks and returns the state transitions.
//
// What a probe does:
//   tcp   connect; success once connected.
//   http  connect, send "GET <path> HTTP/1.0" with Host, User-Agent
//         ballast-health and Connection: close; success when the status line's
//         code is expected. The body is not waited for.
//   udp   connect (so ICMP errors come back), send the payload; success on the
//         first datagram from the backend's address:port that holds
//         udp_expect (any datagram when empty). A datagram without it fails.
// tcp and http probes end with a reset (SO_LINGER 0), as HAProxy's do: no
// TIME_WAIT left on the balancer for every check. Each probe in flight holds
// one fd: with N targets up to N more, so the daemon's RLIMIT_NOFILE must
// leave room.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "address.h"
#include "fd.h"
#include "health_model.h"

namespace ballast {

// Where in its interval target @id is checked: its checks start at the
// clock's epoch + phase + a whole number of intervals. One of 100 evenly
// spaced phases, chosen by @id (Fibonacci hashing): the checks of many
// targets are spread over the interval (consecutive ids evenly), and those
// that share a phase and an interval start together, in one wake-up,
// whenever each was added.
std::chrono::microseconds check_phase(uint64_t id, std::chrono::milliseconds interval);


struct HealthEvent {
  uint64_t id;
  Health from, to;
  // "first check: ok 0.4 ms", "3 failures, last: connect: Connection refused",
  // "2 successes, last: ok 1.2 ms".
  std::string detail;
};

struct HealthCheckerStats {
  uint64_t started = 0;    // probes started since construction
  uint64_t succeeded = 0;  // probes finished, by outcome
  uint64_t failed = 0;
  size_t in_flight = 0;  // probes running now, each holding one socket
};

class HealthChecker {
 public:
  explicit HealthChecker(Clock& clock);  // throws Error when epoll fails
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // The whole set of targets, by the caller's id. A target whose (address,
  // spec) is unchanged keeps its state, counters and schedule. A new or
  // changed one starts over at unknown, first checked at its next phase (see
  // check_phase()); a `none` one is up at the next run() and never checked
  // again. A removed one is cancelled, its socket closed. Throws Error,
  // changing nothing, when a spec is invalid (check_spec_error()) or a
  // tcp/http/udp spec has port 0. Starts no probe and returns no events.
  void set_targets(const std::map<uint64_t, HealthTarget>& targets);

  // The epoll fd: readable when run() has socket work.
  int fd() const { return epoll_.get(); }
  // Whether to wake for fd() now. After a run() that started probes or
  // read answers, the checker lets answers gather for kAnswerBatch and reads
  // them in one run(), so a batch of probes costs a few wake-ups rather
  // than one or two per probe. Meanwhile the caller polls without fd()
  // (time_to_next() ends the wait). Nothing is missed: run() always reads
  // every ready socket before it looks at deadlines.
  bool watch_fd() const;
  // Until the next probe start or deadline, or the end of the answer batch
  // while probes are in flight, rounded up to whole ms; 0 when one is due;
  // 60 s when nothing is scheduled.
  std::chrono::milliseconds time_to_next() const;
  // Advances every probe whose socket is ready, times out those past their
  // deadline, starts those whose slot has come. Never blocks. A probe still
  // running when its next slot comes is not started twice: that slot is
  // skipped and the next one after the probe ends is used.
  std::vector<HealthEvent> run();

  // For a target still unknown: continue from @health (HealthState::assume).
  // No event; ignored for an id that is not a target or already decided.
  void assume(uint64_t id, Health health);

  // unknown and "" for an id that is not a target.
  Health state(uint64_t id) const;
  // The last probe's outcome: "ok 1.2 ms", "ok 0.8 ms (http 200)",
  // "connect: Connection refused", "connect: timeout after 500 ms",
  // "http status 503", "udp: no reply within 500 ms",
  // "udp: ICMP port unreachable"; "" before the first one ends.
  std::string last_result(uint64_t id) const;
  HealthCheckerStats stats() const { return stats_; }

 private:
  struct Target;
  // (when, target id, target): ordered by time, then id; the pointer saves
  // a lookup and is valid while the timer is armed.
  using Timer = std::tuple<Clock::time_point, uint64_t, Target*>;

  void read_sockets(std::vector<HealthEvent>& events);
  void arm(Target& t, Clock::time_point when);
  void disarm(Target& t);
  // Ends @t's probe and closes its socket.
  void cancel(Target& t);
  // Ends @t's probe; keeps a tcp or http socket for the next one.
  void end_probe(Target& t);
  void start(Target& t, Clock::time_point now, std::vector<HealthEvent>& events);
  void on_ready(Target& t, uint32_t ready, Clock::time_point now, std::vector<HealthEvent>& events);
  void read_http(Target& t, Clock::time_point now, std::vector<HealthEvent>& events);
  void read_udp(Target& t, Clock::time_point now, std::vector<HealthEvent>& events);
  // Ends the probe (or records an immediate result) at @done, feeds the
  // state machine and schedules the next slot.
  void finish(Target& t, bool success, std::string result, Clock::time_point done,
              std::vector<HealthEvent>& events);

  Clock& clock_;
  UniqueFd epoll_;
  std::map<uint64_t, std::unique_ptr<Target>> targets_;
  std::set<Timer> timers_;                     // one per target: its next start, or its deadline
  Clock::time_point answers_batched_until_{};  // see watch_fd()
  HealthCheckerStats stats_;
};

}  // namespace ballast
