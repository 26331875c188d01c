#include "health_model.h"

#include <algorithm>
#include <cstdio>

namespace ballast {
namespace {

using std::chrono::milliseconds;

constexpr size_t kMaxUdpPayload = 65507;
constexpr int64_t kMaxDurationMs = int64_t{365} * 24 * 3600 * 1000;  // parse_duration()

bool has_control_or_space(std::string_view text) {
  return std::any_of(text.begin(), text.end(),
                     [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > 64) out += "...";
  return out;
}

std::string plural(uint32_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::optional<CheckType> parse_check_type(std::string_view text) {
  for (CheckType t : {CheckType::none, CheckType::tcp, CheckType::http, CheckType::udp})
    if (text == check_type_name(t)) return t;
  return std::nullopt;
}

std::string_view check_type_name(CheckType type) {
  switch (type) {
    case CheckType::none:
      return "none";
    case CheckType::tcp:
      return "tcp";
    case CheckType::http:
      return "http";
    case CheckType::udp:
      return "udp";
  }
  return "?";
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  // digits [ "." digits ] [ "ms" | "s" | "m" | "h" ]
  size_t i = 0;
  int64_t whole = 0, fraction = 0, fraction_scale = 1;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    whole = whole * 10 + (text[i++] - '0');
    if (whole > kMaxDurationMs) return std::nullopt;  // too long in any unit; no overflow below
  }
  if (i == 0) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    const size_t fraction_start = ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (i - fraction_start >= 6) return std::nullopt;
      fraction = fraction * 10 + (text[i++] - '0');
      fraction_scale *= 10;
    }
    if (i == fraction_start) return std::nullopt;
  }
  const std::string_view unit = text.substr(i);
  int64_t unit_ms;
  if (unit.empty() || unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600 * 1000;
  } else {
    return std::nullopt;
  }
  if (fraction * unit_ms % fraction_scale != 0) return std::nullopt;  // not whole milliseconds
  const int64_t ms = whole * unit_ms + fraction * unit_ms / fraction_scale;
  if (ms > kMaxDurationMs) return std::nullopt;
  return milliseconds(ms);
}

std::string check_spec_error(const CheckSpec& spec) {
  if (spec.interval.count() < 1)
    return "interval: must be at least 1ms, got " + std::to_string(spec.interval.count()) + "ms";
  if (spec.timeout.count() < 1)
    return "timeout: must be at least 1ms, got " + std::to_string(spec.timeout.count()) + "ms";
  if (spec.rise < 1) return "rise: must be at least 1, got 0";
  if (spec.fall < 1) return "fall: must be at least 1, got 0";
  if (spec.type == CheckType::http) {
    if (!spec.http_path.starts_with("/"))
      return "http_path: must start with '/', got \"" + printable(spec.http_path) + "\"";
    if (has_control_or_space(spec.http_path))
      return "http_path: must not hold spaces or control characters, got \"" +
             printable(spec.http_path) + "\"";
    if (has_control_or_space(spec.http_host))
      return "http_host: must not hold spaces or control characters, got \"" +
             printable(spec.http_host) + "\"";
    for (uint16_t code : spec.http_expect)
      if (code < 100 || code > 599)
        return "http_expect: status codes are 100..599, got " + std::to_string(code);
  }
  if (spec.type == CheckType::udp && spec.udp_payload.size() > kMaxUdpPayload)
    return "udp_payload: at most " + std::to_string(kMaxUdpPayload) + " bytes, got " +
           std::to_string(spec.udp_payload.size());
  return "";
}

std::string check_description(const CheckSpec& spec) {
  if (spec.type == CheckType::none) return "none (always up)";
  std::string out(check_type_name(spec.type));
  if (spec.type == CheckType::http) {
    out += " GET " + spec.http_path;
    if (!spec.http_host.empty()) out += " host " + spec.http_host;
  }
  out += spec.port ? " :" + std::to_string(spec.port) : std::string(" :vip-port");
  if (spec.type == CheckType::http) {
    out += " expect ";
    if (spec.http_expect.empty()) out += "200-399";
    for (size_t i = 0; i < spec.http_expect.size(); ++i)
      out += (i ? "," : "") + std::to_string(spec.http_expect[i]);
  } else if (spec.type == CheckType::udp) {
    out += " send " + plural(spec.udp_payload.size(), "byte", "bytes") + " expect " +
           (spec.udp_expect.empty() ? "any reply" : "\"" + printable(spec.udp_expect) + "\"");
  }
  out += " every " + std::to_string(spec.interval.count()) + "ms timeout " +
         std::to_string(spec.timeout.count()) + "ms rise " + std::to_string(spec.rise) + " fall " +
         std::to_string(spec.fall);
  return out;
}


std::string_view health_name(Health health) {
  switch (health) {
    case Health::unknown:
      return "unknown";
    case Health::up:
      return "up";
    case Health::down:
      return "down";
  }
  return "?";
}

HealthState::HealthState(uint32_t rise, uint32_t fall)
    : rise_(std::max(rise, 1u)), fall_(std::max(fall, 1u)) {}

bool HealthState::record(bool success) {
  uint32_t& streak = success ? successes_ : failures_;
  if (streak < UINT32_MAX) ++streak;
  (success ? failures_ : successes_) = 0;
  const Health before = state_;
  if (state_ == Health::unknown)
    state_ = success ? Health::up : Health::down;
  else if (state_ == Health::up && failures_ >= fall_)
    state_ = Health::down;
  else if (state_ == Health::down && successes_ >= rise_)
    state_ = Health::up;
  return state_ != before;
}

void HealthState::assume(Health health) {
  state_ = health;
  successes_ = failures_ = 0;
}

}  // namespace ballast
