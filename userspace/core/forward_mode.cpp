#include "forward_mode.h"

#include "ballast_abi.h"

namespace ballast {

std::string forward_mode_name(ForwardMode m) {
  switch (m) {
    case ForwardMode::dsr:
      return "dsr";
    case ForwardMode::ipip:
      return "ipip";
    case ForwardMode::gue:
      return "gue";
  }
  return "?";
}

std::optional<ForwardMode> parse_forward_mode(std::string_view text) {
  for (ForwardMode m : kForwardModes)
    if (text == forward_mode_name(m)) return m;
  return std::nullopt;
}

bool mode_encapsulates(ForwardMode m) { return m != ForwardMode::dsr; }

uint32_t forward_mode_flags(ForwardMode m) {
  switch (m) {
    case ForwardMode::dsr:
      return 0;
    case ForwardMode::ipip:
      return BALLAST_VIP_F_ENCAP_IPIP;
    case ForwardMode::gue:
      return BALLAST_VIP_F_ENCAP_GUE;
  }
  return 0;
}

ForwardMode forward_mode_from_flags(uint32_t flags) {
  if (flags & BALLAST_VIP_F_ENCAP_IPIP) return ForwardMode::ipip;
  if (flags & BALLAST_VIP_F_ENCAP_GUE) return ForwardMode::gue;
  return ForwardMode::dsr;
}

uint32_t encap_overhead(ForwardMode m, bool outer_v6) {
  const uint32_t ip = outer_v6 ? 40 : 20;
  switch (m) {
    case ForwardMode::dsr:
      return 0;
    case ForwardMode::ipip:
      return ip;
    case ForwardMode::gue:
      return ip + 8;
  }
  return 0;
}

}  // namespace ballast
