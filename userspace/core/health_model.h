// health_model.h: what a health check is and what its results decide, as
// plain data: the check spec (parsed from the config), durations, the
// rise/fall state machine and a backend's health. No sockets: the checker
// that runs probes lives in host/health.h; the config and the change
// pipeline use this without it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.h"

namespace ballast {

// Steady time, injectable: unit tests drive the checker with a fake.
class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

enum class CheckType { none, tcp, http, udp };

struct CheckSpec {
  CheckType type = CheckType::none;
  uint16_t port = 0;                  // 0 = the caller fills it (the VIP's port)
  std::string http_path = "/";        // sent as "GET <path> HTTP/1.0"
  std::string http_host;              // empty: Host is the backend's address[:port]
  std::vector<uint16_t> http_expect;  // empty: 200..399
  std::string udp_payload;            // bytes to send (may be empty)
  std::string udp_expect;             // empty: any reply is success
  std::chrono::milliseconds interval{1000}, timeout{500};
  uint32_t rise = 2, fall = 3;
  bool operator==(const CheckSpec&) const = default;
};

// "none", "tcp", "http", "udp"; nullopt otherwise.
std::optional<CheckType> parse_check_type(std::string_view text);
std::string_view check_type_name(CheckType type);

// "500ms", "1s", "2.5s", "1m", "2h"; a plain number is milliseconds ("250"),
// as in HAProxy. nullopt for anything else: a sign, spaces, another unit, a
// value that is not a whole number of milliseconds ("1.5ms"), more than 365
// days. Zero parses ("0s"); check_spec_error() rejects a zero interval or
// timeout.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Empty when @spec can be run; otherwise what is wrong with it, as
// "field: reason" ("rise: must be at least 1, got 0"), for the config parser
// to prefix with where the spec came from. Port 0 is allowed here.
std::string check_spec_error(const CheckSpec& spec);

// One line for logs and status: "http GET /healthz :80 expect 200-399 every
// 1000ms timeout 500ms rise 2 fall 3".
std::string check_description(const CheckSpec& spec);


enum class Health { unknown, up, down };
std::string_view health_name(Health health);  // "unknown", "up", "down"

// The rise/fall state machine of one target, without sockets or time. The
// first result decides from unknown; afterwards @rise consecutive successes
// take a down target up and @fall consecutive failures take an up target
// down, so a target whose results alternate keeps its state when both are 2
// or more.
class HealthState {
 public:
  HealthState(uint32_t rise, uint32_t fall);  // 0 counts as 1

  // Records one result; true when the state changed.
  bool record(bool success);
  // Starts from @health instead of unknown (a state known before this
  // checker, e.g. adopted after a daemon restart): rise/fall apply from the
  // first result on, instead of that result deciding alone.
  void assume(Health health);
  Health state() const { return state_; }
  // Consecutive results equal to the last one (successes or failures).
  uint32_t streak() const { return successes_ > 0 ? successes_ : failures_; }

 private:
  uint32_t rise_, fall_;
  Health state_ = Health::unknown;
  uint32_t successes_ = 0, failures_ = 0;
};

struct HealthTarget {
  IpAddress address;
  CheckSpec spec;
  bool operator==(const HealthTarget&) const = default;
};

// @text with bytes that would garble a log line escaped, cut at 64 bytes.
std::string printable(std::string_view text);
// "1 byte", "2 bytes".
std::string plural(uint32_t n, const char* one, const char* many);

}  // namespace ballast
