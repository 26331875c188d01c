#include "netlink.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>

#include "error.h"

namespace ballast::netlink {
namespace {

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

std::atomic<uint32_t> next_seq{1};

struct Collect {
  uint16_t type;
  bool dump;
  std::vector<std::vector<char>>* out;
};

int collect(const nlmsghdr* nlh, void* data) {
  auto* c = static_cast<Collect*>(data);
  if (nlh->nlmsg_type != c->type) return MNL_CB_OK;
  const auto* p = static_cast<const char*>(mnl_nlmsg_get_payload(nlh));
  c->out->emplace_back(p, p + mnl_nlmsg_get_payload_len(nlh));
  // One answer to a request that is not a dump: no NLMSG_DONE follows.
  return c->dump ? MNL_CB_OK : MNL_CB_STOP;
}

}  // namespace

Request::Request(uint16_t type, bool dump, uint16_t extra_flags)
    : nlh_(mnl_nlmsg_put_header(buf_.data())) {
  nlh_->nlmsg_type = type;
  nlh_->nlmsg_flags = NLM_F_REQUEST | (dump ? NLM_F_DUMP : 0) | extra_flags;
  nlh_->nlmsg_seq = next_seq++;
}

std::vector<std::vector<char>> ask(const Request& req, uint16_t type) {
  std::unique_ptr<mnl_socket, SocketCloser> sock(mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC));
  if (!sock) throw Error(errno_message("netlink socket", errno));
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    throw Error(errno_message("netlink bind", errno));
  const nlmsghdr* nlh = req.message();
  if (mnl_socket_sendto(sock.get(), nlh, nlh->nlmsg_len) < 0)
    throw Error(errno_message("netlink send", errno));
  const uint32_t portid = mnl_socket_get_portid(sock.get());
  std::vector<std::vector<char>> out;
  Collect ctx{type, (nlh->nlmsg_flags & NLM_F_DUMP) != 0, &out};
  std::vector<char> buf(64 * 1024);
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(sock.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(errno_message("netlink recv", errno));
    }
    // MNL_CB_STOP: NLMSG_DONE, an ACK or the one answer; -1: NLMSG_ERROR
    // (errno holds the kernel's error).
    const int ret = mnl_cb_run(buf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, portid,
                               collect, &ctx);
    if (ret == MNL_CB_ERROR) throw Error(std::strerror(errno));
    if (ret == MNL_CB_STOP) return out;
  }
}

std::map<uint16_t, std::string_view> attributes(const std::vector<char>& payload,
                                                size_t header_len) {
  std::map<uint16_t, std::string_view> out;
  const size_t offset = MNL_ALIGN(header_len);
  if (payload.size() < offset) return out;
  mnl_attr_parse_payload(
      payload.data() + offset, payload.size() - offset,
      [](const nlattr* attr, void* data) {
        static_cast<std::map<uint16_t, std::string_view>*>(data)->emplace(
            mnl_attr_get_type(attr),
            std::string_view(static_cast<const char*>(mnl_attr_get_payload(attr)),
                             mnl_attr_get_payload_len(attr)));
        return MNL_CB_OK;
      },
      &out);
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
