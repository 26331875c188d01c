#include "http_server.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "error.h"

namespace ballast {
namespace {

constexpr size_t kMaxRequest = 8192;
constexpr auto kClientTimeout = std::chrono::seconds(10);
constexpr size_t kMaxConnections = 64;

}  // namespace

const char* http_reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Internal Server Error";
  }
}

HttpServer::HttpServer(const ListenAddress& at, Handler handler)
    : handler_(std::move(handler)), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  const std::string where = at.address.is_v4()
                                ? at.address.str() + ":" + std::to_string(at.port)
                                : "[" + at.address.str() + "]:" + std::to_string(at.port);
  if (!epoll_.valid()) throw Error(errno_message("metrics " + where + ": epoll_create1", errno));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (at.address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(at.port);
    std::memcpy(&sin->sin_addr, at.address.bytes.data(), 4);
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(at.port);
    std::memcpy(&sin6->sin6_addr, at.address.bytes.data(), 16);
    len = sizeof(*sin6);
  }
  listener_ = UniqueFd(socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (!listener_.valid() ||
      setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(listener_.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0 ||
      listen(listener_.get(), 16) < 0)
    throw Error(errno_message("metrics: cannot listen on " + where, errno));
  len = sizeof(ss);
  getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                        : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener_.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev) < 0)
    throw Error(errno_message("metrics: epoll_ctl", errno));
}

HttpServer::~HttpServer() = default;

void HttpServer::serve() {
  epoll_event ready[32];
  const int n = epoll_wait(epoll_.get(), ready, 32, 0);
  for (int i = 0; i < n; ++i) {
    if (ready[i].data.fd == listener_.get())
      accept_all();
    else
      on_ready(ready[i].data.fd);
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto it = connections_.begin(); it != connections_.end();) {
    const int fd = it->first;
    ++it;
    if (connections_.at(fd).deadline < now) close_connection(fd);
  }
}

void HttpServer::accept_all() {
  for (;;) {
    UniqueFd sock(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!sock.valid()) return;                             // EAGAIN, or a client gone already
    if (connections_.size() >= kMaxConnections) continue;  // closed: too many at once
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.fd = sock.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sock.get(), &ev) < 0) continue;
    const int fd = sock.get();
    connections_[fd] = {
        std::move(sock), {}, {}, 0, std::chrono::steady_clock::now() + kClientTimeout};
    on_ready(fd);  // the request may be there already
  }
}

void HttpServer::on_ready(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& c = it->second;
  if (c.out.empty()) {
    char buf[4096];
    bool eof = false;
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n < 0) return close_connection(fd);
      if (n == 0) {  // the client is done sending (it may still read)
        eof = true;
        break;
      }
      // Past the limit the rest is read and dropped: closing with unread
      // data would reset the connection before the client reads the 431.
      const size_t room = kMaxRequest + 1 - std::min(c.in.size(), kMaxRequest + 1);
      c.in.append(buf, std::min(room, static_cast<size_t>(n)));
    }
    const size_t end = c.in.find("\r\n\r\n");
    HttpResponse response;
    if (end == std::string::npos && c.in.size() <= kMaxRequest) {
      if (eof) close_connection(fd);  // closed before a whole request
      return;                         // else more to come
    }
    if (end == std::string::npos) {
      response = {431, "text/plain; charset=utf-8", "request headers too large\n"};
    } else {
      // "METHOD PATH VERSION" on the first line.
      const std::string line = c.in.substr(0, c.in.find("\r\n"));
      const size_t a = line.find(' '), b = line.find(' ', a == std::string::npos ? a : a + 1);
      if (a == std::string::npos || b == std::string::npos ||
          line.compare(b + 1, 5, "HTTP/") != 0) {
        response = {400, "text/plain; charset=utf-8", "malformed request line\n"};
      } else {
        std::string path = line.substr(a + 1, b - a - 1);
        path = path.substr(0, path.find('?'));
        try {
          response = handler_(line.substr(0, a), path);
        } catch (const std::exception& e) {
          response = {500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
        }
      }
    }
    c.out = "HTTP/1.1 " + std::to_string(response.status) + " " + http_reason(response.status) +
            "\r\nContent-Type: " + response.content_type +
            "\r\nContent-Length: " + std::to_string(response.body.size()) +
            "\r\nConnection: close\r\n\r\n" + response.body;
  }
  while (c.sent < c.out.size()) {
    const ssize_t n = send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT comes back
    if (n < 0) return close_connection(fd);
    c.sent += static_cast<size_t>(n);
  }
  close_connection(fd);
}

void HttpServer::close_connection(int fd) {
  connections_.erase(fd);  // closing the socket takes it off the epoll set
}

}  // namespace ballast
