// instance_lock.h: one ballastd per interface and per pin directory.
//
// Two ballastds on one interface, or on one pin directory, would each
// replace the other's program and write the other's maps. Each takes two
// flock(2) locks before it touches anything: one named after the interface
// (and the network namespace it lives in, so "eth0" in two namespaces are
// two interfaces) and one named after the pin directory, both files under
// the run directory (/run/ballast). The kernel drops a lock with its
// holder, so a ballastd that dies (kill -9 included) never leaves a stale
// one. The holder writes its pid, interface and pin directory into each
// file, for the message a second start prints.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "error.h"
#include "fd.h"

namespace ballast {

constexpr const char* kDefaultRunDir = "/run/ballast";

// Who holds a lock: what it wrote into the lock file.
struct LockHolder {
  pid_t pid = 0;
  std::string interface;
  std::string pin_dir;
};

// Thrown by InstanceLock::acquire when another process holds a lock.
class AlreadyRunning : public Error {
 public:
  AlreadyRunning(const std::string& what, LockHolder holder)
      : Error(what), holder_(std::move(holder)) {}
  const LockHolder& holder() const { return holder_; }

 private:
  LockHolder holder_;
};

class InstanceLock {
 public:
  // Takes both locks, or throws AlreadyRunning ("another ballastd (pid N)
  // serves eth0 from /sys/fs/bpf/ballast") holding neither; Error when the
  // run directory cannot be made.
  static InstanceLock acquire(const std::string& run_dir, const std::string& interface,
                              const std::string& pin_dir);

  InstanceLock(InstanceLock&&) = default;
  InstanceLock& operator=(InstanceLock&&) = default;

 private:
  InstanceLock() = default;
  UniqueFd interface_lock_;
  UniqueFd pin_dir_lock_;
};

// The ballastd holding the lock of @interface (in this network namespace)
// or of @pin_dir, or nullopt when neither is held. Takes no lock.
std::optional<LockHolder> lock_holder(const std::string& run_dir, const std::string& interface,
                                      const std::string& pin_dir);

// The lock files' paths (for messages and tests).
std::string interface_lock_path(const std::string& run_dir, const std::string& interface);
std::string pin_dir_lock_path(const std::string& run_dir, const std::string& pin_dir);
// The change journal of the pins in @pin_dir (change_journal.h).
std::string pin_dir_journal_path(const std::string& run_dir, const std::string& pin_dir);
// Present while `ballast fleet leave` is in force for the pins in
// @pin_dir: a restarted ballastd stays withdrawn (docs/fleet.md).
std::string pin_dir_left_path(const std::string& run_dir, const std::string& pin_dir);

}  // namespace ballast
