// netlink.h: rtnetlink requests and their answers' attributes, over
// libmnl, for the neighbour and route lookups ballastd makes
// (neighbor.cpp) and the host snapshot of `ballast doctor`
// (doctor_system.cpp).
#pragma once

#include <libmnl/libmnl.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "address.h"

namespace ballast::netlink {

// One request: the netlink header, the family's header (ndmsg, rtmsg,
// ifaddrmsg, ifinfomsg: header<T>(), once, first) and attributes.
class Request {
 public:
  // @type: RTM_GET*; @dump: all of them (NLM_F_DUMP), else one. A change
  // (RTM_NEWROUTE, RTM_DELROUTE) passes its NLM_F_* in @extra_flags, with
  // NLM_F_ACK so that ask() returns once the kernel has done it.
  Request(uint16_t type, bool dump, uint16_t extra_flags = 0);
  template <typename T>
  T& header() {
    return *static_cast<T*>(mnl_nlmsg_put_extra_header(nlh_, sizeof(T)));
  }
  void put(uint16_t attr_type, const void* data, size_t len) {
    mnl_attr_put(nlh_, attr_type, len, data);
  }
  nlmsghdr* message() const { return nlh_; }

 private:
  alignas(nlmsghdr) std::array<char, 512> buf_{};
  nlmsghdr* nlh_;
};

// Sends @req and returns the payloads of the answer's messages of type
// @type (a dump's, or the one answer). Throws Error with the kernel's
// errno on NLMSG_ERROR.
std::vector<std::vector<char>> ask(const Request& req, uint16_t type);

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
