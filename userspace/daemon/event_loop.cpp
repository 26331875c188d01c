#include "event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "error.h"

namespace ballast {

EventLoop::EventLoop() : epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_.valid()) throw Error(errno_message("epoll_create1", errno));
}

void EventLoop::watch(int fd, Handler handler) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    throw Error(errno_message("epoll_ctl add", errno));
  handlers_[fd] = std::move(handler);
}

void EventLoop::pause(int fd, bool paused) {
  epoll_event ev{};
  ev.events = paused ? 0u : static_cast<uint32_t>(EPOLLIN);
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0)
    throw Error(errno_message("epoll_ctl mod", errno));
}

EventLoop::Timer& EventLoop::timer(Handler handler) {
  Timer& t = timers_.emplace_back();
  t.fd_ = UniqueFd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!t.fd_.valid()) throw Error(errno_message("timerfd_create", errno));
  watch(t.fd_.get(), [&t, handler = std::move(handler)] {
    uint64_t expirations = 0;
    if (read(t.fd_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return;
    t.armed_ = false;
    handler();
  });
  return t;
}

void EventLoop::Timer::arm(std::chrono::nanoseconds after) {
  // A zero it_value disarms: "at once" is the next nanosecond.
  const int64_t ns = std::max<int64_t>(after.count(), 1);
  itimerspec spec{};
  spec.it_value.tv_sec = ns / 1'000'000'000;
  spec.it_value.tv_nsec = ns % 1'000'000'000;
  if (timerfd_settime(fd_.get(), 0, &spec, nullptr) < 0)
    throw Error(errno_message("timerfd_settime", errno));
  armed_ = true;
}

void EventLoop::Timer::disarm() {
  itimerspec spec{};
  if (timerfd_settime(fd_.get(), 0, &spec, nullptr) < 0)
    throw Error(errno_message("timerfd_settime", errno));
  armed_ = false;
}

void EventLoop::run_once() {
  epoll_event events[32];
  const int n = epoll_wait(epoll_.get(), events, 32, -1);
  if (n < 0) {
    if (errno == EINTR) return;
    throw Error(errno_message("epoll_wait", errno));
  }
  // Handlers by descriptor, looked up as each runs: one may pause or
  // re-arm another that is in this batch.
  for (int i = 0; i < n; i++)
    if (auto it = handlers_.find(events[i].data.fd); it != handlers_.end()) it->second();
}

}  // namespace ballast
