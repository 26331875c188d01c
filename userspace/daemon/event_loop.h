// event_loop.h: ballastd's one loop. One epoll set holds every descriptor
// the daemon waits on (the signalfd, the control and metrics servers'
// epolls, the health checker's epoll) and a timerfd for every job that
// runs at a time rather than on input (skew samples, audits, heartbeats,
// the neighbour table, the servers' request deadlines, flow counting): it
// sleeps until one of them is ready, with no fixed tick.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <map>

#include "fd.h"

namespace ballast {

class EventLoop {
 public:
  using Handler = std::function<void()>;

  // A one-shot timer on CLOCK_MONOTONIC (a timerfd in the loop's set).
  class Timer {
   public:
    // Fires once, @after from now (zero or less: at once); arming again
    // replaces the time.
    void arm(std::chrono::nanoseconds after);
    void disarm();
    bool armed() const { return armed_; }

   private:
    friend class EventLoop;
    UniqueFd fd_;
    bool armed_ = false;
  };

  EventLoop();  // throws Error

  // Calls @handler whenever @fd is readable (level-triggered).
  void watch(int fd, Handler handler);
  // Stops waking for @fd (true) or wakes for it again (false).
  void pause(int fd, bool paused);
  // A timer calling @handler when it fires; it lives as long as the loop.
  Timer& timer(Handler handler);

  // Sleeps until something is ready, then runs the handler of each ready
  // descriptor and fired timer once. Throws Error when epoll_wait fails.
  void run_once();

 private:
  UniqueFd epoll_;
  std::map<int, Handler> handlers_;  // by descriptor, timers' included
  std::list<Timer> timers_;          // stable addresses for the Timer& handed out
};

}  // namespace ballast
