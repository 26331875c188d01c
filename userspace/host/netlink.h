// netlink.h: rtnetlink requests and their answers' attributes, for the
// neighbour and route lookups ballastd makes (neighbor.cpp) and the host
// snapshot of `ballast doctor` (doctor_system.cpp).
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "address.h"

namespace ballast::netlink {

// Sends @req (a complete netlink message) and returns the payloads of the
// answer's messages of type @type (a dump's, or a single answer). Throws
// Error with the kernel's errno on NLMSG_ERROR.
std::vector<std::vector<char>> ask(const void* req, size_t len, uint16_t type);

// Attributes after a fixed header of @header_len bytes in @payload.
std::map<uint16_t, std::string_view> attributes(const std::vector<char>& payload,
                                                size_t header_len);

template <typename T>
T attr_as(std::string_view v) {
  T t{};
  std::memcpy(&t, v.data(), std::min(sizeof(T), v.size()));
  return t;
}

// A 4- or 16-byte address attribute; nullopt for any other size.
std::optional<IpAddress> attr_ip(std::string_view v);

}  // namespace ballast::netlink
