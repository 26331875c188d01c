// Command-line words into typed values (cli.h).
#include <charconv>

#include "cli.h"
#include "config.h"
#include "error.h"
#include "health_model.h"

namespace ballast::cli {

VipKey vip_arg(const std::string& text) { return VipKey::parse(text); }

IpAddress address_arg(const std::string& text) {
  const auto a = IpAddress::parse(text);
  if (!a) throw Error("'" + text + "' is not an IP address");
  return *a;
}

uint32_t weight_arg(const std::string& text) {
  uint32_t weight = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), weight, 10);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || weight > kMaxWeight)
    throw Error("weight must be an integer 0.." + std::to_string(kMaxWeight) + ", got '" + text +
                "'");
  return weight;
}

int64_t duration_ms(const std::string& text) {
  const auto ms = parse_duration(text);
  if (!ms) throw CLI::ValidationError("'" + text + "' is not a duration (e.g. 500ms, 30s, 5m, 2h)");
  return ms->count();
}

}  // namespace ballast::cli
