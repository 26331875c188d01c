// forward_mode.h: the one definition of how a VIP's packets reach its
// backends (docs/dataplane.md): its name in the config and the CLI, its
// flags in the vips map (ballast_abi.h), and the bytes it puts in front of
// the client's packet. The config, the live state, the doctor and the CLI
// all use this.
//   dsr:  L2 direct server return, the MAC rewritten; backends on the
//         balancer's segment hold the VIP on lo.
//   ipip: IP-in-IP to the backend's address (outer family: the backend's);
//         backends strip it with `ballast decap attach` and hold the VIP on lo.
//   gue:  UDP to the VIP's gue_port with the client's packet inside; as ipip.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ballast {

enum class ForwardMode { dsr, ipip, gue };
inline constexpr ForwardMode kForwardModes[] = {ForwardMode::dsr, ForwardMode::ipip,
                                                ForwardMode::gue};

std::string forward_mode_name(ForwardMode m);  // "dsr", "ipip", "gue"
std::optional<ForwardMode> parse_forward_mode(std::string_view text);
bool mode_encapsulates(ForwardMode m);

// The mode's bits of ballast_vip_info.flags, and the mode those bits say.
uint32_t forward_mode_flags(ForwardMode m);
ForwardMode forward_mode_from_flags(uint32_t flags);

// Bytes an encapsulating mode puts in front of the client's packet, by the
// outer header's family: ipip 20 / 40, gue 28 / 48 (GUE variant 1 has no
// header of its own, only UDP's); dsr 0.
uint32_t encap_overhead(ForwardMode m, bool outer_v6);

}  // namespace ballast
