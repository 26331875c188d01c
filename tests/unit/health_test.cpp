// Health checks: the rise/fall state machine alone; the checker's schedule
// on a fake clock (spread of first checks, no second start of a running
// check, set_targets keeping or cancelling); real tcp, http and udp probes
// against in-test servers on loopback, driven by the steady clock. Waits
// are generous (up to seconds) and only lower bounds of time are asserted.
#include "health.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>

#include "error.h"

namespace ballast {
namespace {

using namespace std::chrono_literals;

const IpAddress kLoopback = *IpAddress::parse("127.0.0.1");
const IpAddress kLoopback6 = *IpAddress::parse("::1");
constexpr auto kPatience = 5s;  // the longest any test waits for an outcome

class FakeClock : public Clock {
 public:
  time_point now() const override { return now_; }
  void advance(std::chrono::nanoseconds d) { now_ += d; }

 private:
  time_point now_ = time_point(1h);
};

// ---- sockets for the in-test servers ----

sockaddr_storage socket_address(const IpAddress& address, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, address.bytes.data(), 4);
    *len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, address.bytes.data(), 16);
    *len = sizeof(*sin6);
  }
  return ss;
}

// A socket bound to @address:@port (0: any free port), listening when
// @backlog >= 0. A bound TCP socket that does not listen answers SYNs with a
// reset: a closed port that nobody else can take meanwhile.
UniqueFd bound_socket(int type, const IpAddress& address, uint16_t port, int backlog = -1) {
  UniqueFd fd(socket(address.is_v4() ? AF_INET : AF_INET6, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) throw Error(errno_message("socket", errno));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len;
  sockaddr_storage ss = socket_address(address, port, &len);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0)
    throw Error(errno_message("bind", errno));
  if (backlog >= 0 && listen(fd.get(), backlog) < 0) throw Error(errno_message("listen", errno));
  return fd;
}

uint16_t port_of(const UniqueFd& fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

bool readable_within(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(wait.count())) > 0;
}

// The peer has ended the connection (probes end theirs with a reset).
bool connection_ended(int fd) {
  char buf[16];
  const ssize_t n = read(fd, buf, sizeof(buf));
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Accepts every connection, reads its request up to the blank line, answers
// @response (nothing when empty) and closes it.
class HttpServer {
 public:
  explicit HttpServer(std::string response)
      : listener_(bound_socket(SOCK_STREAM, kLoopback, 0, 64)),
        response_(std::move(response)),
        thread_([this] { serve(); }) {}
  ~HttpServer() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_of(listener_); }
  std::string request() const {
    std::lock_guard lock(mutex_);
    return request_;
  }

 private:
  void serve() {
    while (!stop_) {
      if (!readable_within(listener_.get(), 20ms)) continue;
      UniqueFd conn(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) continue;
      std::string request;
      char buf[1024];
      while (request.find("\r\n\r\n") == std::string::npos && readable_within(conn.get(), 2s)) {
        const ssize_t n = read(conn.get(), buf, sizeof(buf));
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mutex_);
        request_ = request;
      }
      if (!response_.empty())
        (void)send(conn.get(), response_.data(), response_.size(), MSG_NOSIGNAL);
    }
  }

  UniqueFd listener_;
  const std::string response_;
  mutable std::mutex mutex_;
  std::string request_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once the rest is built
};

// Answers each datagram with @reply.
class UdpServer {
 public:
  explicit UdpServer(std::string reply)
      : sock_(bound_socket(SOCK_DGRAM, kLoopback, 0)),
        reply_(std::move(reply)),
        thread_([this] { serve(); }) {}
  ~UdpServer() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_of(sock_); }
  std::string received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  void serve() {
    while (!stop_) {
      if (!readable_within(sock_.get(), 20ms)) continue;
      char buf[2048];
      sockaddr_storage from{};
      socklen_t len = sizeof(from);
      const ssize_t n =
          recvfrom(sock_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) continue;
      {
        std::lock_guard lock(mutex_);
        received_.assign(buf, static_cast<size_t>(n));
      }
      (void)sendto(sock_.get(), reply_.data(), reply_.size(), 0, reinterpret_cast<sockaddr*>(&from),
                   len);
    }
  }

  UniqueFd sock_;
  const std::string reply_;
  mutable std::mutex mutex_;
  std::string received_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// ---- driving the checker ----

void append(std::vector<HealthEvent>& to, std::vector<HealthEvent> from) {
  to.insert(to.end(), from.begin(), from.end());
}

// Steady clock: polls and runs the checker until @done or kPatience.
std::vector<HealthEvent> run_until(HealthChecker& checker, const std::function<bool()>& done) {
  std::vector<HealthEvent> events;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (!done() && std::chrono::steady_clock::now() < give_up) {
    pollfd p{checker.fd(), POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min(checker.time_to_next(), 50ms).count()));
    append(events, checker.run());
  }
  return events;
}

// Fake clock: lets every probe in flight finish on its socket, time standing
// still (so none can time out).
std::vector<HealthEvent> settle(HealthChecker& checker) {
  std::vector<HealthEvent> events;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (checker.stats().in_flight > 0 && std::chrono::steady_clock::now() < give_up) {
    readable_within(checker.fd(), 50ms);
    append(events, checker.run());
  }
  return events;
}

// Fake clock: moves to the next timer, runs, lets the probes finish.
std::vector<HealthEvent> next_check(HealthChecker& checker, FakeClock& clock) {
  clock.advance(checker.time_to_next());
  std::vector<HealthEvent> events = checker.run();
  append(events, settle(checker));
  return events;
}

CheckSpec tcp_spec(uint16_t port) {
  CheckSpec spec;
  spec.type = CheckType::tcp;
  spec.port = port;
  spec.interval = 200ms;
  spec.timeout = 2000ms;  // a loaded VM must not turn a success into a timeout
  return spec;
}

CheckSpec http_spec(uint16_t port) {
  CheckSpec spec = tcp_spec(port);
  spec.type = CheckType::http;
  return spec;
}

CheckSpec udp_spec(uint16_t port) {
  CheckSpec spec = tcp_spec(port);
  spec.type = CheckType::udp;
  spec.udp_payload = "ping";
  return spec;
}

// Checks one target with the steady clock until its first result is in.
struct FirstResult {
  Health state;
  std::string result;
  std::vector<HealthEvent> events;
};

FirstResult first_result(const IpAddress& address, const CheckSpec& spec) {
  SteadyClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {address, spec}}});
  FirstResult out;
  out.events = run_until(checker, [&] { return checker.state(1) != Health::unknown; });
  out.state = checker.state(1);
  out.result = checker.last_result(1);
  return out;
}

// ---- the state machine alone ----

TEST(HealthStateTest, FirstResultDecidesFromUnknown) {
  HealthState ok(5, 5);
  EXPECT_EQ(ok.state(), Health::unknown);
  EXPECT_TRUE(ok.record(true));
  EXPECT_EQ(ok.state(), Health::up) << "one success takes unknown up, whatever rise is";

  HealthState bad(5, 5);
  EXPECT_TRUE(bad.record(false));
  EXPECT_EQ(bad.state(), Health::down) << "one failure takes unknown down, whatever fall is";
}

TEST(HealthStateTest, RiseConsecutiveSuccessesTakeDownToUp) {
  HealthState s(3, 2);
  s.record(false);
  ASSERT_EQ(s.state(), Health::down);
  EXPECT_FALSE(s.record(true));
  EXPECT_FALSE(s.record(true));
  EXPECT_FALSE(s.record(false)) << "a failure resets the successes";
  EXPECT_FALSE(s.record(true));
  EXPECT_FALSE(s.record(true));
  EXPECT_EQ(s.state(), Health::down) << "2 consecutive successes < rise 3";
  EXPECT_TRUE(s.record(true));
  EXPECT_EQ(s.state(), Health::up);
  EXPECT_EQ(s.streak(), 3u);
}

TEST(HealthStateTest, FallConsecutiveFailuresTakeUpToDown) {
  HealthState s(2, 3);
  s.record(true);
  ASSERT_EQ(s.state(), Health::up);
  EXPECT_FALSE(s.record(false));
  EXPECT_FALSE(s.record(false));
  EXPECT_FALSE(s.record(true)) << "a success resets the failures";
  EXPECT_FALSE(s.record(false));
  EXPECT_FALSE(s.record(false));
  EXPECT_EQ(s.state(), Health::up) << "2 consecutive failures < fall 3";
  EXPECT_TRUE(s.record(false));
  EXPECT_EQ(s.state(), Health::down);
  EXPECT_EQ(s.streak(), 3u);
}

TEST(HealthStateTest, FlappingIsDamped) {
  for (bool first : {true, false}) {
    HealthState s(2, 2);
    s.record(first);
    const Health settled = s.state();
    bool next = !first;
    for (int i = 0; i < 100; ++i, next = !next) {
      EXPECT_FALSE(s.record(next)) << "alternating result " << i << " flipped the state";
    }
    EXPECT_EQ(s.state(), settled);
  }
}

TEST(HealthStateTest, RiseAndFallOfOneFollowEveryResult) {
  HealthState s(1, 1);
  s.record(true);
  EXPECT_TRUE(s.record(false));
  EXPECT_EQ(s.state(), Health::down);
  EXPECT_TRUE(s.record(true));
  EXPECT_EQ(s.state(), Health::up);
}

// ---- parsing and description ----

TEST(HealthParseTest, Durations) {
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("1s"), 1000ms);
  EXPECT_EQ(parse_duration("2.5s"), 2500ms);
  EXPECT_EQ(parse_duration("0.001s"), 1ms);
  EXPECT_EQ(parse_duration("1m"), 60000ms);
  EXPECT_EQ(parse_duration("1.5m"), 90000ms);
  EXPECT_EQ(parse_duration("250"), 250ms) << "a plain number is milliseconds";
  EXPECT_EQ(parse_duration("0"), 0ms);
  EXPECT_EQ(parse_duration("2h"), 7200000ms);
  EXPECT_EQ(parse_duration("0.5h"), 1800000ms);
  EXPECT_EQ(parse_duration("8760h"), 31536000000ms) << "365 days is the most";
  for (const char* bad : {"",           "-1s",  "+1s", "-5",    "1.5ms",
                          "0.0001s",    "1.s",  ".5s", "1 s",   " 1s",
                          "1s ",        "s",    "ms",  "1sec",  "1S",
                          "1d",         "abc",  "1e3", "8761h", "99999999999999999999",
                          "1.0000001s", "1,5s", "0x10"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << "\"" << bad << "\" should be rejected";
  }
}

TEST(HealthParseTest, CheckTypes) {
  EXPECT_EQ(parse_check_type("none"), CheckType::none);
  EXPECT_EQ(parse_check_type("tcp"), CheckType::tcp);
  EXPECT_EQ(parse_check_type("http"), CheckType::http);
  EXPECT_EQ(parse_check_type("udp"), CheckType::udp);
  EXPECT_EQ(parse_check_type("HTTP"), std::nullopt);
  EXPECT_EQ(parse_check_type("https"), std::nullopt);
  EXPECT_EQ(parse_check_type(""), std::nullopt);
  for (CheckType t : {CheckType::none, CheckType::tcp, CheckType::http, CheckType::udp})
    EXPECT_EQ(parse_check_type(check_type_name(t)), t);
}

TEST(HealthParseTest, Descriptions) {
  CheckSpec http;
  http.type = CheckType::http;
  http.port = 80;
  http.http_path = "/healthz";
  EXPECT_EQ(check_description(http),
            "http GET /healthz :80 expect 200-399 every 1000ms timeout 500ms rise 2 fall 3");
  http.http_host = "example.com";
  http.http_expect = {200, 204};
  http.port = 0;
  EXPECT_EQ(check_description(http),
            "http GET /healthz host example.com :vip-port expect 200,204 every 1000ms timeout "
            "500ms rise 2 fall 3");

  CheckSpec tcp;
  tcp.type = CheckType::tcp;
  tcp.port = 443;
  tcp.interval = 2000ms;
  tcp.timeout = 250ms;
  tcp.rise = 1;
  tcp.fall = 5;
  EXPECT_EQ(check_description(tcp), "tcp :443 every 2000ms timeout 250ms rise 1 fall 5");

  CheckSpec udp;
  udp.type = CheckType::udp;
  udp.port = 53;
  udp.udp_payload = "ping";
  EXPECT_EQ(check_description(udp),
            "udp :53 send 4 bytes expect any reply every 1000ms timeout 500ms rise 2 fall 3");
  udp.udp_expect = "pong";
  EXPECT_EQ(check_description(udp),
            "udp :53 send 4 bytes expect \"pong\" every 1000ms timeout 500ms rise 2 fall 3");

  EXPECT_EQ(check_description(CheckSpec{}), "none (always up)");
}

TEST(HealthParseTest, SpecErrorsNameTheField) {
  EXPECT_EQ(check_spec_error(CheckSpec{}), "");
  CheckSpec http = http_spec(80);
  EXPECT_EQ(check_spec_error(http), "");

  auto error_of = [](CheckSpec spec, const std::function<void(CheckSpec&)>& edit) {
    edit(spec);
    return check_spec_error(spec);
  };
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.interval = 0ms; }),
            "interval: must be at least 1ms, got 0ms");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.timeout = -5ms; }),
            "timeout: must be at least 1ms, got -5ms");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.rise = 0; }), "rise: must be at least 1, got 0");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.fall = 0; }), "fall: must be at least 1, got 0");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.http_path = "healthz"; }),
            "http_path: must start with '/', got \"healthz\"");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.http_path = "/a b"; }),
            "http_path: must not hold spaces or control characters, got \"/a b\"");
  EXPECT_EQ(error_of(http, [](CheckSpec& s) { s.http_host = "a\r\nX-Evil: 1"; }),
            "http_host: must not hold spaces or control characters, got \"a\\x0d\\x0aX-Evil: 1\"");
  EXPECT_EQ(error_of(http,
                     [](CheckSpec& s) {
                       s.http_expect = {200, 42};
                     }),
            "http_expect: status codes are 100..599, got 42");
  EXPECT_EQ(error_of(udp_spec(53), [](CheckSpec& s) { s.udp_payload.assign(70000, 'x'); }),
            "udp_payload: at most 65507 bytes, got 70000");
  EXPECT_EQ(error_of(tcp_spec(80), [](CheckSpec& s) { s.http_path = "no slash"; }), "")
      << "http fields do not matter to a tcp check";
}

// ---- schedule (fake clock) ----

TEST(HealthScheduleTest, PhasesSpreadOverTheInterval) {
  // 20 phases per interval. 1,000 consecutive ids over 1 s: about 50 per
  // 50 ms, none outside, and every phase starts on a 50 ms boundary.
  std::vector<int> per_50ms(20, 0);
  for (uint64_t id = 0; id < 1000; ++id) {
    const auto phase = check_phase(id, 1000ms);
    ASSERT_GE(phase.count(), 0);
    ASSERT_LT(phase, 1000ms) << "id " << id;
    ASSERT_EQ(phase.count() % 50000, 0) << "id " << id;
    ++per_50ms[static_cast<size_t>(phase.count() / 50000)];
  }
  EXPECT_LE(*std::max_element(per_50ms.begin(), per_50ms.end()), 60);
  EXPECT_GE(*std::min_element(per_50ms.begin(), per_50ms.end()), 40);
  // Scattered ids too: no 50 ms holds more than 8% of them.
  std::fill(per_50ms.begin(), per_50ms.end(), 0);
  for (uint64_t id = 1; id <= 1000; ++id)
    ++per_50ms[static_cast<size_t>(check_phase(id * 7919 + (id << 40), 1000ms).count() / 50000)];
  EXPECT_LE(*std::max_element(per_50ms.begin(), per_50ms.end()), 80);
  EXPECT_EQ(check_phase(12345, 1000ms), check_phase(12345, 1000ms));
}

TEST(HealthCheckerScheduleTest, TargetsAddedLaterKeepTheirPhase) {
  // Targets with one phase start together however far apart they were
  // added, and at that phase of the clock.
  UniqueFd sink = bound_socket(SOCK_DGRAM, kLoopback, 0);
  CheckSpec spec = udp_spec(port_of(sink));
  spec.interval = 1000ms;
  spec.timeout = 50ms;
  uint64_t a = 1, b = 2;
  while (check_phase(b, 1000ms) != check_phase(a, 1000ms)) ++b;
  FakeClock clock;  // at a whole second
  HealthChecker checker(clock);
  checker.set_targets({{a, {kLoopback, spec}}});
  EXPECT_EQ(std::chrono::microseconds(checker.time_to_next()), check_phase(a, 1000ms));
  clock.advance(checker.time_to_next());
  checker.run();
  ASSERT_EQ(checker.stats().started, 1u);
  clock.advance(400ms);
  checker.run();  // a's probe timed out: no reply from the sink
  ASSERT_EQ(checker.stats().in_flight, 0u);

  checker.set_targets({{a, {kLoopback, spec}}, {b, {kLoopback, spec}}});
  EXPECT_EQ(checker.time_to_next(), 600ms) << "a's next check, 1 s after its first";
  clock.advance(checker.time_to_next());
  checker.run();
  EXPECT_EQ(checker.stats().started, 3u) << "b, added 400 ms after a's check, joins a's batch";
}

TEST(HealthCheckerScheduleTest, NoneIsUpAtTheFirstRunWithoutTraffic) {
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{3, {kLoopback, CheckSpec{}}}});
  EXPECT_EQ(checker.time_to_next(), 0ms);
  auto events = checker.run();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, 3u);
  EXPECT_EQ(events[0].from, Health::unknown);
  EXPECT_EQ(events[0].to, Health::up);
  EXPECT_EQ(events[0].detail, "first check: ok (no check)");
  EXPECT_EQ(checker.stats().in_flight, 0u);
  clock.advance(1h);
  EXPECT_TRUE(checker.run().empty());
  EXPECT_EQ(checker.stats().started, 1u) << "a none target is never checked again";
  EXPECT_EQ(checker.state(3), Health::up);
}

TEST(HealthCheckerScheduleTest, FirstChecksOfManyTargetsAreSpread) {
  // UDP probes to a socket that never answers: each start sends a datagram
  // and nothing else happens until its deadline.
  UniqueFd sink = bound_socket(SOCK_DGRAM, kLoopback, 0);
  CheckSpec spec = udp_spec(port_of(sink));
  spec.interval = 1000ms;
  spec.timeout = 50ms;
  std::map<uint64_t, HealthTarget> targets;
  for (uint64_t id = 0; id < 200; ++id) targets[id] = {kLoopback, spec};

  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets(targets);
  uint64_t most_in_one_step = 0;
  for (int step = 0; step < 100; ++step) {
    const uint64_t before = checker.stats().started;
    checker.run();
    most_in_one_step = std::max(most_in_one_step, checker.stats().started - before);
    clock.advance(step < 99 ? 10ms : 9999us);  // the last step stops short of 1 s
  }
  checker.run();
  EXPECT_EQ(checker.stats().started, 200u) << "each target checked once in its first interval";
  EXPECT_LE(most_in_one_step, 16u) << "200 first checks over 1 s: about 10 per 50 ms phase";
  EXPECT_GE(most_in_one_step, 5u) << "checks start in batches, one per phase";
}

TEST(HealthCheckerScheduleTest, AnswersGatherBeforeTheyAreRead) {
  // A probe started: the caller stops watching fd() for the answer batch,
  // and time_to_next() ends the wait when the batch does.
  UniqueFd sink = bound_socket(SOCK_DGRAM, kLoopback, 0);
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, udp_spec(port_of(sink))}}});
  EXPECT_TRUE(checker.watch_fd()) << "nothing started yet";
  clock.advance(checker.time_to_next());
  checker.run();
  ASSERT_EQ(checker.stats().in_flight, 1u);
  EXPECT_FALSE(checker.watch_fd());
  EXPECT_EQ(checker.time_to_next(), 5ms) << "the batch ends before the 2 s deadline";
  clock.advance(5ms);
  EXPECT_TRUE(checker.watch_fd());
  EXPECT_EQ(checker.time_to_next(), 1995ms) << "then the deadline";
  EXPECT_TRUE(checker.run().empty());
  EXPECT_TRUE(checker.watch_fd()) << "nothing answered: nothing more to gather";
}

TEST(HealthCheckerScheduleTest, RunningCheckIsNotStartedTwice) {
  // An http server that accepts (in the kernel) but never answers.
  UniqueFd silent = bound_socket(SOCK_STREAM, kLoopback, 0, 16);
  CheckSpec spec = http_spec(port_of(silent));
  spec.interval = 100ms;
  spec.timeout = 350ms;

  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, spec}}});
  clock.advance(checker.time_to_next());
  checker.run();
  ASSERT_EQ(checker.stats().started, 1u);
  for (int slot = 1; slot <= 3; ++slot) {
    clock.advance(100ms);
    EXPECT_TRUE(checker.run().empty());
    EXPECT_EQ(checker.stats().started, 1u) << "slot " << slot << " started a second probe";
    EXPECT_EQ(checker.stats().in_flight, 1u);
  }
  // The server saw one connection only (kept open: it never answers).
  std::vector<UniqueFd> connections;
  while (readable_within(silent.get(), 200ms)) {
    connections.emplace_back(accept4(silent.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(connections.back().valid());
  }
  EXPECT_EQ(connections.size(), 1u);

  clock.advance(50ms);  // the deadline: start + 350 ms
  auto events = checker.run();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].to, Health::down);
  EXPECT_EQ(events[0].detail, "first check: http: no response within 350 ms");
  EXPECT_EQ(checker.stats().in_flight, 0u);
  EXPECT_EQ(checker.time_to_next(), 50ms) << "next slot: start + 400 ms, the first after the end";
  clock.advance(50ms);
  checker.run();
  EXPECT_EQ(checker.stats().started, 2u);
}

TEST(HealthCheckerScheduleTest, RiseAndFallThroughRealProbes) {
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 64);
  const uint16_t port = port_of(server);
  CheckSpec spec = tcp_spec(port);
  spec.interval = 1000ms;
  spec.rise = 2;
  spec.fall = 3;
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{9, {kLoopback, spec}}});

  auto events = next_check(checker, clock);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].from, Health::unknown);
  EXPECT_EQ(events[0].to, Health::up);
  EXPECT_EQ(events[0].detail.rfind("first check: ok ", 0), 0u) << events[0].detail;

  server = UniqueFd();  // close the listener first, then hold the port closed
  server = bound_socket(SOCK_STREAM, kLoopback, port);
  EXPECT_TRUE(next_check(checker, clock).empty()) << "failure 1 of fall 3";
  EXPECT_TRUE(next_check(checker, clock).empty()) << "failure 2 of fall 3";
  EXPECT_EQ(checker.state(9), Health::up);
  events = next_check(checker, clock);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].from, Health::up);
  EXPECT_EQ(events[0].to, Health::down);
  EXPECT_EQ(events[0].detail, "3 failures, last: connect: Connection refused");

  server = UniqueFd();
  server = bound_socket(SOCK_STREAM, kLoopback, port, 64);
  EXPECT_TRUE(next_check(checker, clock).empty()) << "success 1 of rise 2";
  EXPECT_EQ(checker.state(9), Health::down);
  events = next_check(checker, clock);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].to, Health::up);
  EXPECT_EQ(events[0].detail.rfind("2 successes, last: ok ", 0), 0u) << events[0].detail;
  EXPECT_EQ(checker.stats().started, 6u);
  EXPECT_EQ(checker.stats().succeeded, 3u);
  EXPECT_EQ(checker.stats().failed, 3u);
}

TEST(HealthCheckerScheduleTest, SetTargetsKeepsUnchangedAndRestartsChanged) {
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 64);
  const CheckSpec spec = tcp_spec(port_of(server));
  std::map<uint64_t, HealthTarget> targets = {{1, {kLoopback, spec}}, {2, {kLoopback, spec}}};
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets(targets);
  while (checker.state(1) == Health::unknown || checker.state(2) == Health::unknown) {
    ASSERT_LT(checker.stats().started, 10u);
    next_check(checker, clock);
  }
  const auto started = checker.stats().started;
  const auto wait = checker.time_to_next();

  checker.set_targets(targets);
  EXPECT_EQ(checker.state(1), Health::up);
  EXPECT_EQ(checker.state(2), Health::up);
  EXPECT_EQ(checker.time_to_next(), wait) << "the same targets keep their schedule";
  EXPECT_TRUE(checker.run().empty());
  EXPECT_EQ(checker.stats().started, started);

  CheckSpec changed = spec;
  changed.rise = 5;
  targets[2].spec = changed;
  targets[3] = {kLoopback, spec};
  checker.set_targets(targets);
  EXPECT_EQ(checker.state(1), Health::up) << "unchanged";
  EXPECT_NE(checker.last_result(1), "");
  EXPECT_EQ(checker.state(2), Health::unknown) << "spec changed: starts over";
  EXPECT_EQ(checker.last_result(2), "");
  EXPECT_EQ(checker.state(3), Health::unknown) << "new";

  targets.erase(1);
  checker.set_targets(targets);
  EXPECT_EQ(checker.state(1), Health::unknown) << "removed";
  EXPECT_EQ(checker.last_result(1), "");
  checker.set_targets({});
  EXPECT_EQ(checker.time_to_next(), 60s) << "nothing scheduled";
}

TEST(HealthCheckerScheduleTest, InvalidTargetChangesNothing) {
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 64);
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, tcp_spec(port_of(server))}}});
  next_check(checker, clock);
  ASSERT_EQ(checker.state(1), Health::up);
  try {
    checker.set_targets({{2, {kLoopback, tcp_spec(0)}}});
    FAIL() << "port 0 accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "health check of target 2 (127.0.0.1): port: 0 (the caller fills in the VIP's "
                 "port)");
  }
  EXPECT_EQ(checker.state(1), Health::up) << "target 1 survived the refused set";
}

TEST(HealthCheckerScheduleTest, RemovedTargetClosesItsSocket) {
  UniqueFd silent = bound_socket(SOCK_STREAM, kLoopback, 0, 16);
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, http_spec(port_of(silent))}}});
  clock.advance(checker.time_to_next());
  checker.run();
  ASSERT_TRUE(readable_within(silent.get(), 5000ms));
  UniqueFd conn(accept4(silent.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  // The checker sends its request once connected; the server reads it.
  std::string request;
  char buf[1024];
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (request.find("\r\n\r\n") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "no request: " << request;
    readable_within(checker.fd(), 50ms);
    checker.run();
    if (readable_within(conn.get(), 50ms)) {
      const ssize_t n = read(conn.get(), buf, sizeof(buf));
      ASSERT_GT(n, 0);
      request.append(buf, static_cast<size_t>(n));
    }
  }
  ASSERT_EQ(checker.stats().in_flight, 1u);

  checker.set_targets({});
  EXPECT_EQ(checker.stats().in_flight, 0u);
  ASSERT_TRUE(readable_within(conn.get(), 5000ms)) << "the probe's socket was left open";
  EXPECT_TRUE(connection_ended(conn.get()));
  EXPECT_TRUE(checker.run().empty());
}

// ---- real probes on loopback (steady clock) ----

TEST(HealthCheckerTcpTest, UpAgainstListener) {
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 64);
  auto r = first_result(kLoopback, tcp_spec(port_of(server)));
  EXPECT_EQ(r.state, Health::up);
  EXPECT_EQ(r.result.rfind("ok ", 0), 0u) << r.result;
  EXPECT_TRUE(r.result.ends_with(" ms")) << r.result;
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].id, 1u);
}

TEST(HealthCheckerScheduleTest, TcpProbeClosesItsConnectionOnceConnected) {
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 64);
  CheckSpec spec = tcp_spec(port_of(server));
  // A fake clock that stays put: no second probe closes the first one's
  // socket by taking its place.
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, spec}}});
  next_check(checker, clock);
  ASSERT_EQ(checker.state(1), Health::up) << checker.last_result(1);
  EXPECT_EQ(checker.stats().in_flight, 0u);
  ASSERT_TRUE(readable_within(server.get(), 5000ms));
  UniqueFd conn(accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(readable_within(conn.get(), 5000ms)) << "the probe's connection is still open";
  EXPECT_TRUE(connection_ended(conn.get()));
}

TEST(HealthCheckerTcpTest, DownAgainstClosedPort) {
  UniqueFd closed = bound_socket(SOCK_STREAM, kLoopback, 0);  // bound, not listening
  auto r = first_result(kLoopback, tcp_spec(port_of(closed)));
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "connect: Connection refused");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].detail, "first check: connect: Connection refused");
}

TEST(HealthCheckerTcpTest, TimeoutWhenTheBacklogIsFull) {
  // backlog 0 holds one connection; once it is full the kernel drops SYNs,
  // so a connect stays in progress. Fill it until a connect hangs.
  UniqueFd server = bound_socket(SOCK_STREAM, kLoopback, 0, 0);
  const uint16_t port = port_of(server);
  std::vector<UniqueFd> fillers;
  for (bool hung = false; !hung;) {
    ASSERT_LT(fillers.size(), 16u) << "the listener never filled up";
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    socklen_t len;
    sockaddr_storage ss = socket_address(kLoopback, port, &len);
    connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len);
    pollfd p{c.get(), POLLOUT, 0};
    hung = poll(&p, 1, 300) == 0;
    fillers.push_back(std::move(c));
  }
  CheckSpec spec = tcp_spec(port);
  spec.timeout = 300ms;
  spec.interval = 1000ms;
  const auto begin = std::chrono::steady_clock::now();
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "connect: timeout after 300 ms");
  EXPECT_GE(std::chrono::steady_clock::now() - begin, 300ms) << "timed out before the deadline";
}

TEST(HealthCheckerTcpTest, Ipv6) {
  UniqueFd server;
  try {
    server = bound_socket(SOCK_STREAM, kLoopback6, 0, 64);
  } catch (const Error& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  auto r = first_result(kLoopback6, tcp_spec(port_of(server)));
  EXPECT_EQ(r.state, Health::up) << r.result;
  UniqueFd closed = bound_socket(SOCK_STREAM, kLoopback6, 0);
  EXPECT_EQ(first_result(kLoopback6, tcp_spec(port_of(closed))).result,
            "connect: Connection refused");
}

TEST(HealthCheckerHttpTest, ExpectedStatusIsUpAndTheRequestIsWellFormed) {
  HttpServer server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  CheckSpec spec = http_spec(server.port());
  spec.http_path = "/healthz";
  spec.http_host = "example.com";
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::up) << r.result;
  EXPECT_EQ(r.result.rfind("ok ", 0), 0u) << r.result;
  EXPECT_TRUE(r.result.ends_with(" ms (http 200)")) << r.result;
  const std::string request = server.request();
  EXPECT_EQ(request.rfind("GET /healthz HTTP/1.0\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("\r\nHost: example.com\r\n"), std::string::npos) << request;
  EXPECT_TRUE(request.ends_with("\r\n\r\n")) << request;
}

TEST(HealthCheckerHttpTest, EveryProbeOnTheKeptSocketSucceeds) {
  // tcp and http probes reuse one socket, ended with connect(AF_UNSPEC)
  // after each probe: the next connect and request must work the same.
  HttpServer server("HTTP/1.0 200 OK\r\n\r\n");
  FakeClock clock;
  HealthChecker checker(clock);
  checker.set_targets({{1, {kLoopback, http_spec(server.port())}}});
  for (int i = 0; i < 4; ++i) next_check(checker, clock);
  EXPECT_EQ(checker.state(1), Health::up) << checker.last_result(1);
  EXPECT_EQ(checker.stats().started, 4u);
  EXPECT_EQ(checker.stats().succeeded, 4u) << checker.last_result(1);
}

TEST(HealthCheckerHttpTest, HostDefaultsToTheAddress) {
  HttpServer server("HTTP/1.0 204 No Content\r\n\r\n");
  auto r = first_result(kLoopback, http_spec(server.port()));
  EXPECT_EQ(r.state, Health::up) << r.result;
  EXPECT_NE(server.request().find("\r\nHost: 127.0.0.1:" + std::to_string(server.port()) + "\r\n"),
            std::string::npos)
      << server.request();
}

TEST(HealthCheckerHttpTest, Status503IsDown) {
  HttpServer server("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  auto r = first_result(kLoopback, http_spec(server.port()));
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "http status 503");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].detail, "first check: http status 503");
}

TEST(HealthCheckerHttpTest, ExpectListReplacesTheDefaultRange) {
  HttpServer ok("HTTP/1.1 204 No Content\r\n\r\n");
  CheckSpec spec = http_spec(ok.port());
  spec.http_expect = {204};
  EXPECT_EQ(first_result(kLoopback, spec).state, Health::up);

  HttpServer not_listed("HTTP/1.1 200 OK\r\n\r\n");
  spec.port = not_listed.port();
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "http status 200");

  HttpServer redirect("HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n");
  EXPECT_EQ(first_result(kLoopback, http_spec(redirect.port())).state, Health::up)
      << "302 is in the default 200-399";
  HttpServer not_found("HTTP/1.1 404 Not Found\r\n\r\n");
  EXPECT_EQ(first_result(kLoopback, http_spec(not_found.port())).result, "http status 404");
}

TEST(HealthCheckerHttpTest, NotHttpIsAMalformedStatusLine) {
  HttpServer server("SSH-2.0-OpenSSH_9.2\r\n");
  auto r = first_result(kLoopback, http_spec(server.port()));
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "http: malformed status line \"SSH-2.0-OpenSSH_9.2\"");
}

TEST(HealthCheckerHttpTest, ClosedWithoutAnswerIsDown) {
  HttpServer server("");
  auto r = first_result(kLoopback, http_spec(server.port()));
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "http: connection closed before the status line");
}

TEST(HealthCheckerHttpTest, SilentServerTimesOut) {
  UniqueFd silent = bound_socket(SOCK_STREAM, kLoopback, 0, 16);
  CheckSpec spec = http_spec(port_of(silent));
  spec.timeout = 300ms;
  spec.interval = 1000ms;
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "http: no response within 300 ms");
}

TEST(HealthCheckerUdpTest, AnyReplyIsUp) {
  UdpServer server("whatever");
  auto r = first_result(kLoopback, udp_spec(server.port()));
  EXPECT_EQ(r.state, Health::up) << r.result;
  EXPECT_EQ(r.result.rfind("ok ", 0), 0u) << r.result;
  EXPECT_EQ(server.received(), "ping") << "the payload is sent as is";
}

TEST(HealthCheckerUdpTest, ExpectedStringMustBeInTheReply) {
  UdpServer good("<pong>");
  CheckSpec spec = udp_spec(good.port());
  spec.udp_expect = "pong";
  EXPECT_EQ(first_result(kLoopback, spec).state, Health::up);

  UdpServer bad("nope");
  spec.port = bad.port();
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "udp: reply without \"pong\"");
}

TEST(HealthCheckerUdpTest, NoReplyIsDown) {
  UniqueFd sink = bound_socket(SOCK_DGRAM, kLoopback, 0);  // takes datagrams, never answers
  CheckSpec spec = udp_spec(port_of(sink));
  spec.timeout = 300ms;
  spec.interval = 1000ms;
  auto r = first_result(kLoopback, spec);
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "udp: no reply within 300 ms");
}

TEST(HealthCheckerUdpTest, ClosedPortIsIcmpUnreachable) {
  uint16_t port;
  {
    UniqueFd probe = bound_socket(SOCK_DGRAM, kLoopback, 0);
    port = port_of(probe);
  }  // closed again: datagrams to it get ICMP port unreachable
  auto r = first_result(kLoopback, udp_spec(port));
  EXPECT_EQ(r.state, Health::down);
  EXPECT_EQ(r.result, "udp: ICMP port unreachable");
}

}  // namespace
}  // namespace ballast

namespace ballast {
namespace {

// A state known before the checker (adopted after a restart) is continued,
// not re-decided by the first result: one failure does not take an up
// backend down when fall is 3, one success does not bring a down one back.
TEST(HealthStateAssume, ContinuesFromTheAssumedState) {
  HealthState up(2, 3);
  up.assume(Health::up);
  EXPECT_FALSE(up.record(false)) << "one failure of fall 3";
  EXPECT_EQ(up.state(), Health::up);
  up.record(false);
  EXPECT_TRUE(up.record(false)) << "the third failure";
  EXPECT_EQ(up.state(), Health::down);

  HealthState down(2, 3);
  down.assume(Health::down);
  EXPECT_FALSE(down.record(true)) << "one success of rise 2";
  EXPECT_TRUE(down.record(true));
  EXPECT_EQ(down.state(), Health::up);
}

}  // namespace
}  // namespace ballast
