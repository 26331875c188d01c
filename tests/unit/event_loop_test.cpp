// EventLoop (userspace/daemon/event_loop.h): descriptors and timers in
// one epoll set; it sleeps until one is ready, with no tick.
#include "event_loop.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>

namespace ballast {
namespace {

using namespace std::chrono_literals;

TEST(EventLoopTest, ATimerFiresOnceWhenDueAndNotWhenDisarmed) {
  EventLoop loop;
  int fired = 0, other = 0;
  auto& timer = loop.timer([&] { ++fired; });
  auto& bound = loop.timer([&] { ++other; });
  timer.arm(20ms);
  EXPECT_TRUE(timer.armed());
  loop.run_once();
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer.armed()) << "one-shot";
  timer.arm(10ms);
  timer.disarm();
  bound.arm(40ms);
  loop.run_once();
  EXPECT_EQ(fired, 1) << "a disarmed timer fired";
  EXPECT_EQ(other, 1);
}

TEST(EventLoopTest, ADescriptorWakesItUntilPaused) {
  EventLoop loop;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  int readable = 0, bounded = 0;
  loop.watch(fds[0], [&] {
    char c;
    if (read(fds[0], &c, 1) == 1) ++readable;
  });
  auto& bound = loop.timer([&] { ++bounded; });
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  loop.run_once();
  EXPECT_EQ(readable, 1);
  // Paused, a readable descriptor does not wake it: the timer does.
  ASSERT_EQ(write(fds[1], "y", 1), 1);
  loop.pause(fds[0], true);
  bound.arm(10ms);
  loop.run_once();
  EXPECT_EQ(readable, 1);
  EXPECT_EQ(bounded, 1);
  loop.pause(fds[0], false);
  loop.run_once();
  EXPECT_EQ(readable, 2);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace ballast
