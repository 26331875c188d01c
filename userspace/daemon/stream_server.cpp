#include "stream_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "error.h"

namespace ballast {

StreamServer::StreamServer(UniqueFd listener, StreamLimits limits, Respond respond)
    : limits_(limits),
      respond_(std::move(respond)),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      listener_(std::move(listener)) {
  if (!epoll_.valid()) throw Error(errno_message("epoll_create1", errno));
  const int flags = fcntl(listener_.get(), F_GETFL);
  if (flags < 0 || fcntl(listener_.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    throw Error(errno_message("making a listener non-blocking", errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener_.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev) < 0)
    throw Error(errno_message("epoll_ctl", errno));
}

void StreamServer::serve() {
  epoll_event ready[64];
  const int n = epoll_wait(epoll_.get(), ready, 64, 0);
  for (int i = 0; i < n; ++i) {
    if (ready[i].data.fd == listener_.get())
      accept_all();
    else
      on_ready(ready[i].data.fd);
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second.deadline < now) {
      ++timed_out_;
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void StreamServer::accept_all() {
  for (;;) {
    UniqueFd sock(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!sock.valid()) return;  // EAGAIN, or a client gone already
    if (connections_.size() >= limits_.max_connections) {
      // Full: the connection nearest its deadline (the one that has had
      // the most of its time) goes, so holding every slot locks nobody out.
      auto oldest = std::min_element(
          connections_.begin(), connections_.end(),
          [](const auto& a, const auto& b) { return a.second.deadline < b.second.deadline; });
      connections_.erase(oldest);
      ++evicted_;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    ev.data.fd = sock.get();
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sock.get(), &ev) < 0) continue;
    const int fd = sock.get();
    Connection c;
    c.sock = std::move(sock);
    c.deadline = std::chrono::steady_clock::now() + limits_.request_deadline;
    connections_[fd] = std::move(c);
    on_ready(fd);  // the request may be there already
  }
}

void StreamServer::on_ready(int fd) {
  auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& c = it->second;
  if (!c.answered) {
    char buf[16384];
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
      // data would reset the connection before the client reads why.
      const size_t room = limits_.max_request + 1 - std::min(c.in.size(), limits_.max_request + 1);
      c.in.append(buf, std::min(room, static_cast<size_t>(n)));
    }
    auto answer = respond_(c.in, eof, fd);
    if (!answer) {
      if (eof) close_connection(fd);  // closed before a whole request
      return;                         // else more to come
    }
    c.out = std::move(*answer);
    c.answered = true;
    c.in.clear();
    c.in.shrink_to_fit();
    c.deadline = std::chrono::steady_clock::now() + limits_.answer_deadline;
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

}  // namespace ballast
