// health_bench: what health checking costs the balancer's host. N backends
// (one listening port each) served by a second thread; this thread checks
// every one of them each second with HealthChecker for S seconds.
//
// Usage: bench_health [--json FILE] [TARGETS [SECONDS [netns|loopback]]]
//        (default 1000 10 netns; about 30 s: an idle baseline of 5 s, or
//        SECONDS if shorter, then each check type for SECONDS plus the tcp
//        floor; SECONDS may be a fraction, as the smoke run's 0.5)
//
// --json FILE: also writes the results for bench/report.py (bench "health").
// Each pass checks that every probe succeeded and every target ended up;
// when one did not, the figures are not what they claim to be and the
// bench exits 1 (after printing them).
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

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
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

// One pass's figures, for the report.
struct Result {
  CheckType type = CheckType::tcp;
  size_t targets = 0, up = 0, down = 0, transitions = 0;
  double wall = 0, wakeups_per_s = 0;
  uint64_t started = 0, succeeded = 0, failed = 0;
  // CPU 0 busy - idle, as a fraction of one core, and per check: netns only,
  // and only when the idle baseline left room to see the checker's share.
  bool host_measured = false;
  double host_share = 0, host_us_per_check = 0;
  double thread_share = 0, thread_us_per_check = 0, user_share = 0;
  double floor_us = -1;        // tcp only
  double backends_cpu_ms = 0;  // not counted
  // Every probe answered and no target down: the figures are the cost of
  // checking healthy backends, as they claim. (A target first checked in a
  // run's last moments may still be unknown: the 0.5 s smoke run.)
  bool clean() const { return failed == 0 && started > 0 && down == 0; }
};

// An idle baseline above this leaves no room to measure the checker's
// share of CPU 0 (another process keeps it busy): the host figure is left
// out of the report then.
constexpr double kCpu0Saturated = 0.9;

struct Setup {
  bool netns = false;          // backends in their own namespace, CPUs pinned
  std::string netns_path;      // empty for loopback
  IpAddress backend;           // where the listeners are
  double cpu0_idle_per_s = 0;  // CPU 0's busy share when nothing is checked
  double baseline_s = 0;       // over how long that was measured, seconds
};

Result bench(CheckType type, size_t targets, std::chrono::duration<double> duration,
             const Setup& setup) {
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
  const auto end =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(duration);
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
  size_t up = 0, down = 0;
  for (size_t i = 0; i < targets; ++i) {
    up += checker.state(i) == Health::up;
    down += checker.state(i) == Health::down;
  }
  const double per_check = s.started ? 1e6 / static_cast<double>(s.started) : 0.0;

  std::printf(
      "%-4s %zu targets, %.1f s: %llu checks started, %llu ok, %llu failed, %zu in flight\n",
      std::string(check_type_name(type)).c_str(), targets, wall,
      static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.succeeded),
      static_cast<unsigned long long>(s.failed), s.in_flight);
  std::printf("     %zu up at the end, %zu state changes, %.0f wake-ups/s\n", up, transitions,
              static_cast<double>(wakeups) / wall);
  Result r;
  r.type = type;
  r.targets = targets;
  r.up = up;
  r.down = down;
  r.transitions = transitions;
  r.wall = wall;
  r.wakeups_per_s = static_cast<double>(wakeups) / wall;
  r.started = s.started;
  r.succeeded = s.succeeded;
  r.failed = s.failed;
  r.thread_share = cpu / wall;
  r.thread_us_per_check = cpu * per_check;
  r.user_share = user / wall;
  if (setup.netns) {
    const double host = cpu0 - setup.cpu0_idle_per_s * wall;
    r.host_measured = setup.cpu0_idle_per_s < kCpu0Saturated;
    r.host_share = host / wall;
    r.host_us_per_check = host * per_check;
    if (!r.host_measured)
      std::printf("     (CPU 0 was %.0f%% busy before checking: the host figure below is noise)\n",
                  100 * setup.cpu0_idle_per_s);
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
    r.floor_us = floor * 1e6;
    std::printf("     floor: the same %llu connects back to back, no checker: %.1f us each\n",
                static_cast<unsigned long long>(s.started), floor * 1e6);
  }
  r.backends_cpu_ms = listeners.stop() * 1e3;
  std::printf("     backends' thread CPU %.1f ms (not counted)\n", r.backends_cpu_ms);
  return r;
}

std::string fmt(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// The results in bench/report.py's format (see its docstring).
nlohmann::json report(const std::vector<Result>& results, const Setup& setup, size_t targets,
                      double seconds) {
  using nlohmann::json;
  json rows = json::array();
  for (const auto& r : results) {
    const bool tcp = r.type == CheckType::tcp;
    rows.push_back(
        {std::string(check_type_name(r.type)), std::to_string(r.started), std::to_string(r.failed),
         r.host_measured ? fmt("%.2f%%", 100 * r.host_share) : std::string("-"),
         r.host_measured ? fmt("%.1f", r.host_us_per_check) : std::string("-"),
         fmt("%.2f%%", 100 * r.thread_share), fmt("%.1f", r.thread_us_per_check),
         fmt("~%.1f%%", 100 * r.user_share), tcp ? fmt("%.1f", r.floor_us) : std::string("-"),
         tcp && r.floor_us > 0 && r.host_measured ? fmt("%.2f", r.host_us_per_check / r.floor_us)
                                                  : std::string("-"),
         tcp && r.floor_us > 0 ? fmt("%.2f", r.thread_us_per_check / r.floor_us) : std::string("-"),
         fmt("%.0f", r.wakeups_per_s)});
  }
  const std::string where =
      setup.netns
          ? "The backends live in a network namespace of their own behind a veth pair (one "
            "listening port each, served by one thread pinned to CPU 1, their half of every "
            "handshake steered to CPU 1 by RPS); the checker runs on CPU 0, where the balancer "
            "side's receive processing stays. **Balancer host** is CPU 0's busy time from "
            "`/proc/stat` (wall time less idle time) while checking, less CPU 0's busy share "
            "over a " +
                fmt("%g", setup.baseline_s) + " s idle stretch measured just before (" +
                fmt("%.2f%%", 100 * setup.cpu0_idle_per_s) + " of one core this run; above " +
                fmt("%.0f%%", 100 * kCpu0Saturated) +
                " another process owns CPU 0 and the host columns say `-`): the checker's "
                "code, its syscalls and the host's share of the packets, which is what the "
                "balancer's host pays. "
          : "Loopback mode: the backends are on 127.0.0.1 and nothing is pinned, so the "
            "backends' half of every handshake is charged to the checker: an upper bound. ";
  const std::string text =
      "`HealthChecker` (ballastd's checker, from libballast) checks " + std::to_string(targets) +
      " backends every second (interval 1 s, timeout 500 ms: the defaults) for " +
      fmt("%g", seconds) +
      " s per check type, in one thread on non-blocking sockets, as ballastd does. " + where +
      "**Checker thread** is that thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`); "
      "its user-space part comes from `getrusage`, tick-sampled, so only roughly. "
      "The reference, measured side by side in the same run: the **kernel floor**, the same "
      "number of tcp connects done back to back on one socket without the checker (each "
      "waited for on an epoll and reset with `connect(AF_UNSPEC)`, as the checker ends its "
      "probes); **host / floor** and **thread / floor** are the cost of one tcp check over "
      "that floor, the figures to compare between runs, since absolute times on these shared "
      "VMs swing by 2x from run to run. An http check sends a request and reads an answer: "
      "two more syscalls and two more packets than a tcp one. Every check must succeed and "
      "no backend may end down, or the bench fails.";
  json section = {{"heading", std::to_string(targets) + " backends checked every second"},
                  {"text", text},
                  {"table",
                   {{"columns",
                     {"check", "checks", "failed", "balancer host (% of a core)", "host µs/check",
                      "checker thread (% of a core)", "thread µs/check", "of which user",
                      "kernel floor µs/connect", "host / floor", "thread / floor", "wake-ups/s"}},
                    {"rows", rows}}}};
  return {{"bench", "health"},
          {"title", "Health checking cost"},
          {"command", "build/bench_health"},
          {"order", 60},
          {"sections", json::array({section})}};
}

}  // namespace
}  // namespace ballast

int main(int argc, char** argv) {
  // --json FILE anywhere; the rest are the positional arguments.
  std::string json_path;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--json") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_health: --json needs a file\n");
        return 2;
      }
      json_path = argv[++i];
    } else {
      args.push_back(arg);
    }
  }
  const size_t targets = args.size() > 0 ? std::strtoul(args[0].c_str(), nullptr, 10) : 1000;
  const double seconds = args.size() > 1 ? std::strtod(args[1].c_str(), nullptr) : 10;
  const std::string mode = args.size() > 2 ? args[2] : "netns";
  if (mode != "netns" && mode != "loopback") {
    std::fprintf(stderr, "bench_health: mode must be netns or loopback, got %s\n", mode.c_str());
    return 2;
  }
  if (targets == 0 || seconds <= 0) {
    std::fprintf(stderr, "bench_health: TARGETS and SECONDS must be positive\n");
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
      // What CPU 0 does anyway (timers, other processes), subtracted below:
      // over 5 s, or over the run's length where that is shorter (the smoke
      // run's 0.5 s).
      setup.baseline_s = std::min(seconds, 5.0);
      const ballast::Cpu0Busy idle;
      std::this_thread::sleep_for(std::chrono::duration<double>(setup.baseline_s));
      setup.cpu0_idle_per_s = idle.seconds() / setup.baseline_s;
      std::printf(
          "backends in namespace %s (10.251.0.2), checker on CPU 0, backends on CPU 1;\n"
          "CPU 0 idle baseline %.2f%%\n",
          setup.netns_path.c_str(), 100 * setup.cpu0_idle_per_s);
    } else {
      setup.backend = *ballast::IpAddress::parse("127.0.0.1");
      std::printf("backends on loopback: their half of each handshake is charged to the checker\n");
    }
    std::vector<ballast::Result> results;
    for (auto type : {ballast::CheckType::tcp, ballast::CheckType::http})
      results.push_back(
          ballast::bench(type, targets, std::chrono::duration<double>(seconds), setup));
    if (!json_path.empty()) {
      std::ofstream out(json_path);
      out << ballast::report(results, setup, targets, seconds).dump(2) << "\n";
      if (!out) throw ballast::Error("cannot write " + json_path);
    }
    for (const auto& r : results) {
      if (r.clean()) continue;
      std::fprintf(stderr,
                   "bench_health: %s: %llu of %llu checks failed, %zu of %zu targets up at the "
                   "end, %zu down: not the cost of checking healthy backends\n",
                   std::string(ballast::check_type_name(r.type)).c_str(),
                   static_cast<unsigned long long>(r.failed),
                   static_cast<unsigned long long>(r.started), r.up, r.targets, r.down);
      return 1;
    }
  } catch (const ballast::Error& e) {
    std::fprintf(stderr, "bench_health: %s\n", e.what());
    return 1;
  }
  return 0;
}
