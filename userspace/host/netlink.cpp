#include "netlink.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "error.h"
#include "fd.h"

namespace ballast::netlink {

std::vector<std::vector<char>> ask(const void* req, size_t len, uint16_t type) {
  UniqueFd sock(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.valid()) throw Error(errno_message("netlink socket", errno));
  if (send(sock.get(), req, len, 0) < 0) throw Error(errno_message("netlink send", errno));
  const bool dump = reinterpret_cast<const nlmsghdr*>(req)->nlmsg_flags & NLM_F_DUMP;
  std::vector<std::vector<char>> out;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t n = recv(sock.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errno_message("netlink recv", errno));
    }
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nh, static_cast<unsigned>(n));
         nh = NLMSG_NEXT(nh, n)) {
      if (nh->nlmsg_type == NLMSG_DONE) return out;
      if (nh->nlmsg_type == NLMSG_ERROR) {
        const int err = static_cast<nlmsgerr*>(NLMSG_DATA(nh))->error;
        if (err == 0 && !dump) return out;  // an ACK
        throw Error(std::strerror(-err));
      }
      if (nh->nlmsg_type != type) continue;
      const char* p = static_cast<const char*>(NLMSG_DATA(nh));
      out.emplace_back(p, p + NLMSG_PAYLOAD(nh, 0));
      if (!dump) return out;
    }
  }
}

std::map<uint16_t, std::string_view> attributes(const std::vector<char>& payload,
                                                size_t header_len) {
  std::map<uint16_t, std::string_view> out;
  int len = static_cast<int>(payload.size() - NLMSG_ALIGN(header_len));
  for (auto* rta = reinterpret_cast<const rtattr*>(payload.data() + NLMSG_ALIGN(header_len));
       RTA_OK(rta, len); rta = RTA_NEXT(rta, len))
    out.emplace(rta->rta_type,
                std::string_view(static_cast<const char*>(RTA_DATA(rta)), RTA_PAYLOAD(rta)));
  return out;
}

std::optional<IpAddress> attr_ip(std::string_view v) {
  IpAddress a;
  if (v.size() == 4)
    a.family = BALLAST_AF_INET;
  else if (v.size() == 16)
    a.family = BALLAST_AF_INET6;
  else
    return std::nullopt;
  std::memcpy(a.bytes.data(), v.data(), v.size());
  return a;
}

}  // namespace ballast::netlink
