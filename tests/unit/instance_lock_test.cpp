// instance_lock_test.cpp: one ballastd per interface and per pin directory
// (userspace/daemon/instance_lock.cpp). flock(2) locks belong to an open
// file, so a second acquire in this same process conflicts exactly as a
// second ballastd would.
#include "instance_lock.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace ballast {
namespace {

class InstanceLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ballast-lock-test-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string run_dir() const { return (dir_ / "run").string(); }
  std::filesystem::path dir_;
};

TEST_F(InstanceLockTest, SecondStartOnTheSameInterfaceAndPinsIsRefusedNamingTheFirst) {
  auto first = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/ballast");
  try {
    InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/ballast");
    FAIL() << "a second lock on the same interface and pin dir was granted";
  } catch (const AlreadyRunning& e) {
    EXPECT_EQ(e.holder().pid, getpid());
    EXPECT_EQ(std::string(e.what()), "another ballastd (pid " + std::to_string(getpid()) +
                                         ") serves eth0 from /sys/fs/bpf/ballast; nothing was "
                                         "changed");
  }
}

TEST_F(InstanceLockTest, SameInterfaceOtherPinDirIsRefused) {
  auto first = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a");
  EXPECT_THROW(InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/b"), AlreadyRunning);
}

TEST_F(InstanceLockTest, SamePinDirOtherInterfaceIsRefused) {
  auto first = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a");
  try {
    InstanceLock::acquire(run_dir(), "eth1", "/sys/fs/bpf/a/");
    FAIL() << "a second daemon on the same pin dir (trailing slash) was granted";
  } catch (const AlreadyRunning& e) {
    // The message names what the running daemon serves.
    EXPECT_NE(std::string(e.what()).find("serves eth0 from /sys/fs/bpf/a"), std::string::npos)
        << e.what();
  }
}

TEST_F(InstanceLockTest, OtherInterfaceAndPinDirAreIndependent) {
  auto first = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a");
  EXPECT_NO_THROW(InstanceLock::acquire(run_dir(), "eth1", "/sys/fs/bpf/b"));
  // Paths that differ only in '-' versus '/' are different pin dirs.
  EXPECT_NO_THROW(InstanceLock::acquire(run_dir(), "eth2", "/sys/fs/bpf-a"));
  EXPECT_NE(pin_dir_lock_path(run_dir(), "/x/a-b"), pin_dir_lock_path(run_dir(), "/x/a/b"));
}

TEST_F(InstanceLockTest, ReleasedWithItsOwnerAndSeenByLockHolder) {
  EXPECT_FALSE(lock_holder(run_dir(), "eth0", "/sys/fs/bpf/a"));
  {
    auto lock = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a");
    const auto holder = lock_holder(run_dir(), "eth0", "/sys/fs/bpf/a");
    ASSERT_TRUE(holder);
    EXPECT_EQ(holder->pid, getpid());
    EXPECT_EQ(holder->interface, "eth0");
    EXPECT_EQ(holder->pin_dir, "/sys/fs/bpf/a");
  }
  // The lock files stay; the locks went with their owner.
  EXPECT_FALSE(lock_holder(run_dir(), "eth0", "/sys/fs/bpf/a"));
  EXPECT_NO_THROW(InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a"));
}

TEST_F(InstanceLockTest, ARefusedSecondLockReleasesTheFirstItTook) {
  // Holder A: eth0 + /a. Contender B: eth1 + /a takes eth1's lock, fails on
  // /a, and must not keep eth1's.
  auto a = InstanceLock::acquire(run_dir(), "eth0", "/sys/fs/bpf/a");
  EXPECT_THROW(InstanceLock::acquire(run_dir(), "eth1", "/sys/fs/bpf/a"), AlreadyRunning);
  EXPECT_NO_THROW(InstanceLock::acquire(run_dir(), "eth1", "/sys/fs/bpf/c"));
}

}  // namespace
}  // namespace ballast
