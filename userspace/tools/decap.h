// decap.h: the backends' side of the encapsulating modes. Installs
// bpf/decap.bpf.c on a backend's interface (`ballast decap attach IFACE`)
// so that IP-in-IP and GUE packets for the host's VIPs are stripped in XDP
// and the inner packet goes up the stack. Runs on the backend host, without
// ballastd: the program stays attached after the command exits (the
// netlink attachment holds it), and its VIP map with it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "address.h"
#include "config.h"

namespace ballast {

struct DecapStatus {
  uint32_t program_id = 0;  // 0: not attached
  std::vector<IpAddress> vips;
  uint16_t gue_port = 0;  // 0: GUE not decapsulated
  // Per reason (BALLAST_DECAP_REASONS order): packets and bytes.
  std::vector<std::pair<std::string, std::pair<uint64_t, uint64_t>>> counters;
};

// The addresses on lo other than 127.0.0.0/8, ::1 and link-local: the VIPs
// a backend holds.
std::vector<IpAddress> local_vips();

// Loads the decap program for @vips (IPv4 and IPv6) and GUE on UDP port
// @gue_port (0: none) and attaches it to @interface in @mode, replacing a
// decap program already there in one step. Refuses (Error) when another
// XDP program is attached. Returns the program id.
uint32_t decap_attach(const std::string& interface, const std::vector<IpAddress>& vips,
                      AttachMode mode, uint16_t gue_port);
// Detaches the decap program from @interface; Error when none is attached
// or the attached program is not ours.
void decap_detach(const std::string& interface);
// What is attached to @interface now, with its VIPs and counters.
DecapStatus decap_status(const std::string& interface);

}  // namespace ballast
