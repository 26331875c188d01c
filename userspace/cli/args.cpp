// Command-line words into typed values (cli.h).
#include "cli.h"
#include "error.h"
#include "health_model.h"

namespace ballast::cli {

VipKey vip_arg(const std::string& text) { return VipKey::parse(text); }

IpAddress address_arg(const std::string& text) {
  const auto a = IpAddress::parse(text);
  if (!a) throw Error("'" + text + "' is not an IP address");
  return *a;
}

int64_t duration_ms(const std::string& text) {
  const auto ms = parse_duration(text);
  if (!ms) throw CLI::ValidationError("'" + text + "' is not a duration (e.g. 500ms, 30s, 5m, 2h)");
  return ms->count();
}

}  // namespace ballast::cli
