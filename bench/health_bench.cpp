// health_bench: what health checking costs the balancer's host. N backends
// (one listening port each) served by a second thread; this thread checks
// every one of them each second with HealthChecker for S seconds.
//
// Usage: bench_health [TARGETS [SECONDS [netns|loopback]]]  (default 1000 10 netns)
//
// netns (the figure to quote; needs root): the backends live in a network
// namespace of their own behind a veth pair, as on other hosts. The checker
// is pinned to CPU 0; the backends' thread and their half of every
// handshake (the veth's receive processing, moved by RPS) run on CPU 1;
// the balancer side's receive processing stays on CPU 0. The cost is CPU 0's
// busy time from /proc/stat (user + system + softirq + irq) while checking,
// less CPU 0's busy time over an idle stretch of the same length: the
// checker's code, its syscalls and its host's share of the packets, which
// is what the balancer host pays. The checker thread's own CPU time is
// printed beside it.
//
// loopback: backends on 127.0.0.1, nothing pinned. Loopback processes both
// ends of a connection in softirq on the sending thread, so the backends'
// half of each handshake is charged to the checker: an upper bound.
//
// The tcp pass also times the same connects back to back without the
// checker: the kernel's floor for that many probes on this machine.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "error.h"
#include "fd.h"
#include "health.h"

namespace ballast {
namespace {

using namespace std::chrono_literals;

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) < 0)
    throw Error(errno_message("sched_setaffinity", errno));
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// This thread's user time: the checker's own code, without the kernel's.
double thread_user_seconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
}

// CPU 0's idle time so far (idle + iowait), in seconds, from /proc/stat.
// With a tickless kernel these two come from the idle loop's own clock,
// not from tick samples, so they stay right for work that wakes, runs for
// a moment and sleeps again between ticks (as the checker does), which the
// tick-sampled user and system fields miss.
double cpu0_idle_seconds() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (!f) throw Error(errno_message("/proc/stat", errno));
  char line[512];
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof(line), f))
    found = std::sscanf(line, "cpu0 %llu %llu %llu %llu %llu", &user, &nice, &system, &idle,
                        &iowait) == 5;
  std::fclose(f);
  if (!found) throw Error("/proc/stat: no cpu0 line");
  return static_cast<double>(idle + iowait) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU 0's busy seconds between two calls: wall time less idle time.
class Cpu0Busy {
 public:
  Cpu0Busy() : wall_(now_seconds()), idle_(cpu0_idle_seconds()) {}
  double seconds() const { return (now_seconds() - wall_) - (cpu0_idle_seconds() - idle_); }

 private:
  double wall_, idle_;
};

void run_or_throw(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw Error("failed: " + command);
}

// The backends' network namespace: a veth pair from this namespace
// (10.251.0.1) to a namespace of its own (10.251.0.2), named with this
// process's id and deleted on destruction (which deletes the pair too).
// RPS sends the receive processing of the backends' end to CPU 1 and keeps
// this end's on CPU 0, where the checker runs.
class BackendNamespace {
 public:
  BackendNamespace() : name_("ballast-bench-" + std::to_string(getpid())) {
    const std::string here = "bbh" + std::to_string(getpid()) + "a";
    const std::string there = "bbh" + std::to_string(getpid()) + "b";
    try {
      run_or_throw("ip netns add " + name_);
      created_ = true;
      run_or_throw("ip link add " + here + " type veth peer name " + there + " netns " + name_);
      run_or_throw("ip addr add 10.251.0.1/24 dev " + here + " && ip link set " + here + " up");
      const std::string in = "ip netns exec " + name_ + " ";
      run_or_throw(in + "ip addr add 10.251.0.2/24 dev " + there + " && " + in + "ip link set " +
                   there + " up && " + in + "ip link set lo up");
      run_or_throw("echo 1 > /sys/class/net/" + here + "/queues/rx-0/rps_cpus");
      run_or_throw(in + "sh -c 'echo 2 > /sys/class/net/" + there + "/queues/rx-0/rps_cpus'");
    } catch (...) {
      remove();
      throw;
    }
  }
  ~BackendNamespace() { remove(); }
  std::string path() const { return "/run/netns/" + name_; }
  static IpAddress local() { return *IpAddress::parse("10.251.0.1"); }
  static IpAddress backend() { return *IpAddress::parse("10.251.0.2"); }

 private:
  void remove() {
    if (created_) (void)std::system(("ip netns del " + name_ + " 2>/dev/null").c_str());
    created_ = false;
  }
  std::string name_;
  bool created_ = false;
};

// Runs @fn with this thread in the network namespace at @path (when not
// empty), then returns the thread to its own namespace. Sockets keep the
// namespace they were made in.
template <typename Fn>
void in_namespace(const std::string& path, Fn fn) {
  if (path.empty()) return fn();
  UniqueFd home(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  UniqueFd there(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!home.valid() || !there.valid() || setns(there.get(), CLONE_NEWNET) < 0)
    throw Error(errno_message("setns " + path, errno));
  try {
    fn();
  } catch (...) {
    setns(home.get(), CLONE_NEWNET);
    throw;
  }
  if (setns(home.get(), CLONE_NEWNET) < 0) throw Error(errno_message("setns back", errno));
}

// N listeners on @address and every connection they accept, on one epoll,
// in one thread (on CPU @cpu when >= 0). tcp: each connection is closed once
// accepted. http: each request is answered "204 No Content" and the
// connection closed.
class Listeners {
 public:
  Listeners(size_t count, bool http, const IpAddress& address, const std::string& netns, int cpu)
      : http_(http), cpu_(cpu), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_.valid()) throw Error(errno_message("epoll_create1", errno));
    in_namespace(netns, [&] {
      for (size_t i = 0; i < count; ++i) {
        UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        std::memcpy(&sin.sin_addr, address.bytes.data(), 4);
        socklen_t len = sizeof(sin);
        if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), len) < 0 ||
            listen(fd.get(), 128) < 0 ||
            getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) < 0)
          throw Error(errno_message("listener " + std::to_string(i), errno));
        watch(fd.get(), kListener);
        ports_.push_back(ntohs(sin.sin_port));
        listeners_.push_back(std::move(fd));
      }
    });
    thread_ = std::thread([this] { serve(); });
  }
  ~Listeners() { stop(); }
  const std::vector<uint16_t>& ports() const { return ports_; }
  // Stops the thread; returns the CPU time it used.
  double stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return cpu_seconds_;
  }

 private:
  static constexpr uint64_t kListener = 1ull << 32;

  void watch(int fd, uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag | static_cast<uint32_t>(fd);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
      throw Error(errno_message("epoll_ctl", errno));
  }

  void serve() {
    static const char kResponse[] = "HTTP/1.0 204 No Content\r\n\r\n";
    if (cpu_ >= 0) pin_to_cpu(cpu_);
    const double cpu_start = thread_cpu_seconds();
    std::map<int, UniqueFd> connections;
    epoll_event ready[256];
    while (!stop_) {
      const int n = epoll_wait(epoll_.get(), ready, 256, 50);
      for (int i = 0; i < n; ++i) {
        const int fd = static_cast<int>(ready[i].data.u64 & 0xffffffff);
        if (ready[i].data.u64 & kListener) {
          for (;;) {
            UniqueFd conn(accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!conn.valid()) break;
            if (!http_) continue;  // tcp: closed on the spot
            watch(conn.get(), 0);
            const int key = conn.get();
            connections[key] = std::move(conn);
          }
          continue;
        }
        // http: the request is small and comes in one segment.
        char buf[1024];
        if (read(fd, buf, sizeof(buf)) > 0)
          (void)send(fd, kResponse, sizeof(kResponse) - 1, MSG_NOSIGNAL);
        connections.erase(fd);
      }
    }
    cpu_seconds_ = thread_cpu_seconds() - cpu_start;
  }

  const bool http_;
  const int cpu_;
  UniqueFd epoll_;
  std::vector<UniqueFd> listeners_;
  std::vector<uint16_t> ports_;
  std::atomic<bool> stop_{false};
  double cpu_seconds_ = 0;
  std::thread thread_;
};

// The kernel's share of a tcp probe, measured bare: @count non-blocking
// connects to @ports of @address in turn on one socket, each waited for on
// an epoll and ended with connect(AF_UNSPEC) (a reset), back to back, as the
// checker does them. Returns this thread's CPU seconds per connect.
double connect_floor(const IpAddress& address, const std::vector<uint16_t>& ports, uint64_t count) {
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  UniqueFd sock(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLET;
  epoll_ctl(epoll.get(), EPOLL_CTL_ADD, sock.get(), &ev);
  const double cpu_start = thread_cpu_seconds();
  for (uint64_t i = 0; i < count; ++i) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    std::memcpy(&sin.sin_addr, address.bytes.data(), 4);
    sin.sin_port = htons(ports[i % ports.size()]);
    connect(sock.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    while (epoll_wait(epoll.get(), &ev, 1, 1000) == 1 && !(ev.events & EPOLLOUT)) {
    }
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    connect(sock.get(), &unspec, sizeof(unspec));
  }
  return count ? (thread_cpu_seconds() - cpu_start) / static_cast<double>(count) : 0;
}

struct Setup {
  bool netns = false;          // backends in their own namespace, CPUs pinned
  std::string netns_path;      // empty for loopback
  IpAddress backend;           // where the listeners are
  double cpu0_idle_per_s = 0;  // CPU 0's busy share when nothing is checked
};

void bench(CheckType type, size_t targets, std::chrono::seconds duration, const Setup& setup) {
  Listeners listeners(targets, type == CheckType::http, setup.backend, setup.netns_path,
                      setup.netns ? 1 : -1);
  std::map<uint64_t, HealthTarget> set;
  for (size_t i = 0; i < targets; ++i) {
    CheckSpec spec;
    spec.type = type;
    spec.port = listeners.ports()[i];
    spec.http_path = "/healthz";
    set[i] = {setup.backend, spec};  // defaults: every 1 s, timeout 500 ms
  }

  SteadyClock clock;
  HealthChecker checker(clock);
  size_t transitions = 0, wakeups = 0;
  const double cpu_start = thread_cpu_seconds(), user_start = thread_user_seconds();
  const Cpu0Busy cpu0_busy;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + duration;
  checker.set_targets(set);
  for (auto now = start; now < end; now = std::chrono::steady_clock::now()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - now);
    pollfd p{checker.watch_fd() ? checker.fd() : -1, POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min(checker.time_to_next(), left).count()));
    transitions += checker.run().size();
    ++wakeups;
  }
  const double cpu0 = cpu0_busy.seconds();
  const double cpu = thread_cpu_seconds() - cpu_start;
  const double user = thread_user_seconds() - user_start;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const HealthCheckerStats s = checker.stats();
  size_t up = 0;
  for (size_t i = 0; i < targets; ++i) up += checker.state(i) == Health::up;
  const double per_check = s.started ? 1e6 / static_cast<double>(s.started) : 0.0;

  std::printf(
      "%-4s %zu targets, %.1f s: %llu checks started, %llu ok, %llu failed, %zu in flight\n",
      std::string(check_type_name(type)).c_str(), targets, wall,
      static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.succeeded),
      static_cast<unsigned long long>(s.failed), s.in_flight);
  std::printf("     %zu up at the end, %zu state changes, %.0f wake-ups/s\n", up, transitions,
              static_cast<double>(wakeups) / wall);
  if (setup.netns) {
    const double host = cpu0 - setup.cpu0_idle_per_s * wall;
    std::printf(
        "     balancer host cost: CPU 0 busy %.0f ms - idle %.0f ms = %.2f%% of one core "
        "(%.1f us per check)\n",
        cpu0 * 1e3, setup.cpu0_idle_per_s * wall * 1e3, 100 * host / wall, host * per_check);
  }
  std::printf("     checker thread CPU %.1f ms = %.2f%% of one core (%.1f us per check)\n",
              cpu * 1e3, 100 * cpu / wall, cpu * per_check);
  std::printf(
      "     of which user space ~%.0f ms = ~%.1f%% (tick-sampled; the rest is the kernel's)\n",
      user * 1e3, 100 * user / wall);
  if (type == CheckType::tcp) {
    const double floor = connect_floor(setup.backend, listeners.ports(), s.started);
    std::printf("     floor: the same %llu connects back to back, no checker: %.1f us each\n",
                static_cast<unsigned long long>(s.started), floor * 1e6);
  }
  std::printf("     backends' thread CPU %.1f ms (not counted)\n", listeners.stop() * 1e3);
}

}  // namespace
}  // namespace ballast

int main(int argc, char** argv) {
  const size_t targets = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000;
  const long seconds = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 10;
  const std::string mode = argc > 3 ? argv[3] : "netns";
  if (mode != "netns" && mode != "loopback") {
    std::fprintf(stderr, "bench_health: mode must be netns or loopback, got %s\n", mode.c_str());
    return 2;
  }
  // Listeners, their connections and the probes in flight: raise the soft
  // fd limit to the hard one.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  try {
    ballast::Setup setup;
    std::unique_ptr<ballast::BackendNamespace> ns;
    if (mode == "netns") {
      if (geteuid() != 0 || sysconf(_SC_NPROCESSORS_ONLN) < 2)
        throw ballast::Error("netns mode needs root and 2 CPUs (run with loopback otherwise)");
      ns = std::make_unique<ballast::BackendNamespace>();
      setup.netns = true;
      setup.netns_path = ns->path();
      setup.backend = ballast::BackendNamespace::backend();
      ballast::pin_to_cpu(0);
      // What CPU 0 does anyway (timers, other processes), subtracted below.
      const ballast::Cpu0Busy idle;
      std::this_thread::sleep_for(std::chrono::seconds(5));
      setup.cpu0_idle_per_s = idle.seconds() / 5;
      std::printf(
          "backends in namespace %s (10.251.0.2), checker on CPU 0, backends on CPU 1;\n"
          "CPU 0 idle baseline %.2f%%\n",
          setup.netns_path.c_str(), 100 * setup.cpu0_idle_per_s);
    } else {
      setup.backend = *ballast::IpAddress::parse("127.0.0.1");
      std::printf("backends on loopback: their half of each handshake is charged to the checker\n");
    }
    for (auto type : {ballast::CheckType::tcp, ballast::CheckType::http})
      ballast::bench(type, targets, std::chrono::seconds(seconds), setup);
  } catch (const ballast::Error& e) {
    std::fprintf(stderr, "bench_health: %s\n", e.what());
    return 1;
  }
  return 0;
}
