#include "instance_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <sstream>

namespace ballast {
namespace {

// The network namespace this process is in, by inode: interface names are
// per namespace.
std::string netns_id() {
  struct stat st {};
  if (stat("/proc/self/ns/net", &st) != 0) return "0";
  return std::to_string(st.st_ino);
}

// A path as one file name: "/sys/fs/bpf/ballast" -> "sys-fs-bpf-ballast",
// with '-' itself doubled so that "/a-b" and "/a/b" stay apart.
std::string escape_path(const std::string& path) {
  std::string normal = std::filesystem::path(path).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  std::string out;
  for (char c : normal) {
    if (c == '/')
      out += out.empty() ? "" : "-";
    else if (c == '-')
      out += "--";
    else
      out += c;
  }
  return out.empty() ? "root" : out;
}

LockHolder read_holder(int fd) {
  LockHolder h;
  char buf[1024];
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return h;
  std::istringstream in(std::string(buf, static_cast<size_t>(n)));
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "pid")
      h.pid = static_cast<pid_t>(std::atol(value.c_str()));
    else if (key == "interface")
      h.interface = value;
    else if (key == "pin_dir")
      h.pin_dir = value;
  }
  return h;
}

std::string describe(const LockHolder& h, const std::string& interface, const std::string& pin_dir) {
  return "another ballastd (pid " + std::to_string(h.pid) + ") serves " +
         (h.interface.empty() ? interface : h.interface) + " from " +
         (h.pin_dir.empty() ? pin_dir : h.pin_dir) + "; nothing was changed";
}

// Opens (creating) and locks @path; returns the fd, or throws
// AlreadyRunning naming the holder.
UniqueFd lock_file(const std::string& path, const std::string& interface,
                   const std::string& pin_dir) {
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) throw Error(errno_message("opening lock file " + path, errno));
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw Error(errno_message("locking " + path, errno));
    const LockHolder h = read_holder(fd.get());
    throw AlreadyRunning(describe(h, interface, pin_dir), h);
  }
  const std::string content = "pid=" + std::to_string(getpid()) + "\ninterface=" + interface +
                              "\npin_dir=" + pin_dir + "\nnetns=" + netns_id() + "\n";
  if (ftruncate(fd.get(), 0) != 0 ||
      pwrite(fd.get(), content.data(), content.size(), 0) != static_cast<ssize_t>(content.size()))
    throw Error(errno_message("writing lock file " + path, errno));
  return fd;
}

}  // namespace

std::string interface_lock_path(const std::string& run_dir, const std::string& interface) {
  return run_dir + "/ballastd-net" + netns_id() + "-" + interface + ".lock";
}

std::string pin_dir_lock_path(const std::string& run_dir, const std::string& pin_dir) {
  return run_dir + "/ballastd-pins-" + escape_path(pin_dir) + ".lock";
}

std::string pin_dir_journal_path(const std::string& run_dir, const std::string& pin_dir) {
  return run_dir + "/ballastd-pins-" + escape_path(pin_dir) + ".changes";
}

std::string pin_dir_left_path(const std::string& run_dir, const std::string& pin_dir) {
  return run_dir + "/ballastd-pins-" + escape_path(pin_dir) + ".fleet-left";
}

InstanceLock InstanceLock::acquire(const std::string& run_dir, const std::string& interface,
                                   const std::string& pin_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) throw Error("creating run directory " + run_dir + ": " + ec.message());
  InstanceLock lock;
  lock.interface_lock_ = lock_file(interface_lock_path(run_dir, interface), interface, pin_dir);
  lock.pin_dir_lock_ = lock_file(pin_dir_lock_path(run_dir, pin_dir), interface, pin_dir);
  return lock;
}

std::optional<LockHolder> lock_holder(const std::string& run_dir, const std::string& interface,
                                      const std::string& pin_dir) {
  for (const auto& path :
       {interface_lock_path(run_dir, interface), pin_dir_lock_path(run_dir, pin_dir)}) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) continue;
    if (flock(fd.get(), LOCK_SH | LOCK_NB) == 0) continue;  // free (ours drops with the fd)
    return read_holder(fd.get());
  }
  return std::nullopt;
}

}  // namespace ballast
