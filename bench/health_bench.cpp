// health_bench: what health checking costs the daemon's thread. Starts N
// loopback listeners (127.0.0.1, one port each) served by a second thread,
// checks every one of them each second with HealthChecker from this thread
// for S seconds, and prints this thread's CPU time (CLOCK_THREAD_CPUTIME_ID)
// as a share of one core, with how many checks ran and succeeded. One pass
// with tcp checks, then one with http checks against tiny HTTP servers.
//
// Usage: bench_health [TARGETS [SECONDS [pin]]]   (default 1000 10)
//   pin: the checker on CPU 0, the listeners on CPU 1.
//
// Loopback packets are processed in softirq on whichever thread sends them,
// so much of the listeners' TCP work (their half of every handshake) lands
// on the checker's thread: with backends on other hosts the checker pays
// less. To move receive processing off the checker's core, as a NIC would:
//   echo 2 > /sys/class/net/lo/queues/rx-0/rps_cpus; bench_health 1000 10 pin
//   echo 0 > /sys/class/net/lo/queues/rx-0/rps_cpus
// The tcp pass also times the same connects back to back without the
// checker: the kernel's floor for that many probes on this machine.
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "error.h"
#include "fd.h"
#include "health.h"

namespace ballast {
namespace {

using namespace std::chrono_literals;

const IpAddress kLoopback = *IpAddress::parse("127.0.0.1");

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

// N listeners and every connection they accept, on one epoll, in one
// thread. tcp: each connection is closed once accepted. http: each request
// is answered "204 No Content" and the connection closed.
class Listeners {
 public:
  Listeners(size_t count, bool http, bool pin)
      : http_(http), pin_(pin), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_.valid()) throw Error(errno_message("epoll_create1", errno));
    for (size_t i = 0; i < count; ++i) {
      UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t len = sizeof(sin);
      if (!fd.valid() || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), len) < 0 ||
          listen(fd.get(), 128) < 0 ||
          getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) < 0)
        throw Error(errno_message("listener " + std::to_string(i), errno));
      watch(fd.get(), kListener);
      ports_.push_back(ntohs(sin.sin_port));
      listeners_.push_back(std::move(fd));
    }
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
    if (pin_) pin_to_cpu(1);
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
        // http: the whole request comes in one segment on loopback.
        char buf[1024];
        if (read(fd, buf, sizeof(buf)) > 0)
          (void)send(fd, kResponse, sizeof(kResponse) - 1, MSG_NOSIGNAL);
        connections.erase(fd);
      }
    }
    cpu_seconds_ = thread_cpu_seconds() - cpu_start;
  }

  const bool http_, pin_;
  UniqueFd epoll_;
  std::vector<UniqueFd> listeners_;
  std::vector<uint16_t> ports_;
  std::atomic<bool> stop_{false};
  double cpu_seconds_ = 0;
  std::thread thread_;
};

// The kernel's share of a tcp probe, measured bare: @count non-blocking
// connects to @ports in turn, each waited for on an epoll and closed with a
// reset, back to back. Returns this thread's CPU seconds per connect.
double connect_floor(const std::vector<uint16_t>& ports, uint64_t count) {
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  const double cpu_start = thread_cpu_seconds();
  for (uint64_t i = 0; i < count; ++i) {
    UniqueFd sock(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const linger abort{1, 0};
    setsockopt(sock.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(ports[i % ports.size()]);
    connect(sock.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    epoll_ctl(epoll.get(), EPOLL_CTL_ADD, sock.get(), &ev);
    epoll_wait(epoll.get(), &ev, 1, 1000);
  }
  return count ? (thread_cpu_seconds() - cpu_start) / static_cast<double>(count) : 0;
}

void bench(CheckType type, size_t targets, std::chrono::seconds duration, bool pin) {
  Listeners listeners(targets, type == CheckType::http, pin);
  std::map<uint64_t, HealthTarget> set;
  for (size_t i = 0; i < targets; ++i) {
    CheckSpec spec;
    spec.type = type;
    spec.port = listeners.ports()[i];
    spec.http_path = "/healthz";
    set[i] = {kLoopback, spec};  // defaults: every 1 s, timeout 500 ms
  }

  SteadyClock clock;
  HealthChecker checker(clock);
  size_t transitions = 0, wakeups = 0;
  const double cpu_start = thread_cpu_seconds(), user_start = thread_user_seconds();
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + duration;
  checker.set_targets(set);
  for (auto now = start; now < end; now = std::chrono::steady_clock::now()) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(end - now);
    pollfd p{checker.fd(), POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min(checker.time_to_next(), left).count()));
    transitions += checker.run().size();
    ++wakeups;
  }
  const double cpu = thread_cpu_seconds() - cpu_start;
  const double user = thread_user_seconds() - user_start;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const HealthCheckerStats s = checker.stats();
  size_t up = 0;
  for (size_t i = 0; i < targets; ++i) up += checker.state(i) == Health::up;

  std::printf(
      "%-4s %zu targets, %.1f s: %llu checks started, %llu ok, %llu failed, %zu in flight\n",
      std::string(check_type_name(type)).c_str(), targets, wall,
      static_cast<unsigned long long>(s.started), static_cast<unsigned long long>(s.succeeded),
      static_cast<unsigned long long>(s.failed), s.in_flight);
  std::printf("     %zu up at the end, %zu state changes, %.0f wake-ups/s\n", up, transitions,
              static_cast<double>(wakeups) / wall);
  std::printf("     checker thread CPU %.1f ms = %.2f%% of one core (%.1f us per check)\n",
              cpu * 1e3, 100 * cpu / wall,
              s.started ? cpu * 1e6 / static_cast<double>(s.started) : 0.0);
  std::printf(
      "     of which user space ~%.0f ms = ~%.1f%% (tick-sampled; the rest is the kernel's)\n",
      user * 1e3, 100 * user / wall);
  if (type == CheckType::tcp) {
    const double floor = connect_floor(listeners.ports(), s.started);
    std::printf("     floor: the same %llu connects back to back, no checker: %.1f us each\n",
                static_cast<unsigned long long>(s.started), floor * 1e6);
  }
  std::printf("     listener thread CPU %.1f ms (not counted)\n", listeners.stop() * 1e3);
}

}  // namespace
}  // namespace ballast

int main(int argc, char** argv) {
  const size_t targets = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000;
  const long seconds = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 10;
  const bool pin = argc > 3 && std::string(argv[3]) == "pin";
  // Listeners, their connections and the probes in flight: raise the soft
  // fd limit to the hard one.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  try {
    if (pin) ballast::pin_to_cpu(0);
    for (auto type : {ballast::CheckType::tcp, ballast::CheckType::http})
      ballast::bench(type, targets, std::chrono::seconds(seconds), pin);
  } catch (const ballast::Error& e) {
    std::fprintf(stderr, "bench_health: %s\n", e.what());
    return 1;
  }
  return 0;
}
