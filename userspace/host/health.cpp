#include "health.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "error.h"

namespace ballast {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr int kMaxEvents = 256;          // epoll events taken per epoll_wait
constexpr size_t kRecvBuffer = 4096;     // one recv; a small response is read whole
constexpr size_t kMaxStatusLine = 1024;  // http: the status line must end within this
constexpr auto kIdleWait = std::chrono::seconds(60);  // time_to_next() with nothing scheduled
// Checks run at one of this many evenly spaced phases of their interval, so
// targets that share an interval are checked in batches (1,000 targets
// every 1 s: 50 every 50 ms). Fewer, bigger batches cost less per probe:
// bench_health measured 1,000 tcp checks a second at 4.3-4.7% of a core with
// 100 phases and 3.2-3.3% with 20 (wake-ups, timer reprogramming and cold
// caches are paid per batch, not per probe).
constexpr int64_t kPhases = 20;
// How long answers gather before run() reads them (watch_fd()).
constexpr auto kAnswerBatch = std::chrono::milliseconds(5);

std::string ms_text(milliseconds d) { return std::to_string(d.count()) + " ms"; }

// "1.2 ms", rounded to a tenth.
std::string elapsed_text(nanoseconds d) {
  const int64_t tenths = std::max<int64_t>(0, (d.count() + 50'000) / 100'000);
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10) + " ms";
}



bool status_expected(const CheckSpec& spec, int status) {
  if (spec.http_expect.empty()) return status >= 200 && status <= 399;
  return std::find(spec.http_expect.begin(), spec.http_expect.end(), status) !=
         spec.http_expect.end();
}

// "HTTP/1.1 200 OK" -> 200; nullopt when @line is not a status line.
std::optional<int> parse_status_line(std::string_view line) {
  if (!line.starts_with("HTTP/")) return std::nullopt;
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || line.size() < sp + 4) return std::nullopt;
  const std::string_view code = line.substr(sp + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  if (line.size() > sp + 4 && line[sp + 4] != ' ') return std::nullopt;
  return (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
}

// The first time at or after @now that is the clock's epoch + @phase + a
// whole number of @interval.
Clock::time_point first_slot(Clock::time_point now, microseconds phase, milliseconds interval) {
  nanoseconds into = (now.time_since_epoch() - phase) % interval;
  if (into < nanoseconds::zero()) into += interval;
  return into == nanoseconds::zero() ? now : now - into + interval;
}


}  // namespace

microseconds check_phase(uint64_t id, milliseconds interval) {
  // id * 2^64/phi, read as a fraction of 2^64, picks one of the phases.
  const uint64_t fraction = id * 0x9E3779B97F4A7C15ull;
  const uint64_t phase =
      static_cast<uint64_t>((static_cast<unsigned __int128>(fraction) * kPhases) >> 64);
  return microseconds(interval) * static_cast<int64_t>(phase) / kPhases;
}

struct HealthChecker::Target {
  enum class Phase { idle, connecting, reading };

  Target(uint64_t target_id, const HealthTarget& target)
      : id(target_id), config(target), health(target.spec.rise, target.spec.fall) {}

  uint64_t id;
  HealthTarget config;
  HealthState health;
  std::string last_result;
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
  std::string request;  // http: the whole request, built once

  // The slot of the current or last probe; the next ones follow every
  // interval. The armed timer is the next slot while idle, else the deadline.
  Clock::time_point slot{};
  std::optional<Clock::time_point> timer;

  // The probe in flight (phase != idle): its socket, start and deadline.
  Phase phase = Phase::idle;
  UniqueFd sock;
  Clock::time_point started{}, deadline{};
  std::string response;  // http: bytes so far, up to the status line
};

HealthChecker::HealthChecker(Clock& clock) : clock_(clock), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_.valid()) throw Error(errno_message("health checks: epoll_create1", errno));
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::set_targets(const std::map<uint64_t, HealthTarget>& targets) {
  for (const auto& [id, target] : targets) {
    std::string why = check_spec_error(target.spec);
    if (why.empty() && target.spec.type != CheckType::none && target.spec.port == 0)
      why = "port: 0 (the caller fills in the VIP's port)";
    if (!why.empty())
      throw Error("health check of target " + std::to_string(id) + " (" + target.address.str() +
                  "): " + why);
  }
  for (auto it = targets_.begin(); it != targets_.end();) {
    auto wanted = targets.find(it->first);
    if (wanted != targets.end() && wanted->second == it->second->config) {
      ++it;
    } else {
      cancel(*it->second);
      it = targets_.erase(it);
    }
  }
  const auto now = clock_.now();
  for (const auto& [id, target] : targets) {
    if (targets_.count(id)) continue;
    auto t = std::make_unique<Target>(id, target);
    const CheckSpec& spec = target.spec;
    if (target.address.is_v4()) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&t->peer);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(spec.port);
      std::memcpy(&sin->sin_addr, target.address.bytes.data(), 4);
      t->peer_len = sizeof(*sin);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&t->peer);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(spec.port);
      std::memcpy(&sin6->sin6_addr, target.address.bytes.data(), 16);
      t->peer_len = sizeof(*sin6);
    }
    if (spec.type == CheckType::http) {
      std::string host = spec.http_host;
      if (host.empty()) {
        host = target.address.is_v4() ? target.address.str() : "[" + target.address.str() + "]";
        if (spec.port != 80) host += ":" + std::to_string(spec.port);
      }
      t->request = "GET " + spec.http_path + " HTTP/1.0\r\nHost: " + host +
                   "\r\nUser-Agent: ballast-health\r\nAccept: */*\r\nConnection: close\r\n\r\n";
    }
    t->slot = spec.type == CheckType::none
                  ? now
                  : first_slot(now, check_phase(id, spec.interval), spec.interval);
    arm(*t, t->slot);
    targets_.emplace(id, std::move(t));
  }
}

bool HealthChecker::watch_fd() const { return clock_.now() >= answers_batched_until_; }

std::chrono::milliseconds HealthChecker::time_to_next() const {
  const auto now = clock_.now();
  std::optional<Clock::time_point> next;
  if (!timers_.empty()) next = std::get<0>(*timers_.begin());
  if (stats_.in_flight > 0 && now < answers_batched_until_ &&
      (!next || answers_batched_until_ < *next))
    next = answers_batched_until_;
  if (!next) return kIdleWait;
  const auto wait = *next - now;
  if (wait <= nanoseconds::zero()) return milliseconds::zero();
  return std::min<milliseconds>(std::chrono::ceil<milliseconds>(wait), kIdleWait);
}

std::vector<HealthEvent> HealthChecker::run() {
  std::vector<HealthEvent> events;
  const uint64_t answered = stats_.succeeded + stats_.failed;
  read_sockets(events);
  const auto now = clock_.now();
  bool started = false;
  while (!timers_.empty() && std::get<0>(*timers_.begin()) <= now) {
    const auto [when, id, target] = *timers_.begin();
    Target& t = *target;
    disarm(t);
    if (t.phase == Target::Phase::idle) {
      start(t, now, events);
      started = true;
      continue;
    }
    // Past its deadline: the probe ended then, whenever run() got to it.
    const CheckSpec& spec = t.config.spec;
    std::string why;
    if (t.phase == Target::Phase::connecting)
      why = "connect: timeout after " + ms_text(spec.timeout);
    else if (spec.type == CheckType::http)
      why = "http: no response within " + ms_text(spec.timeout);
    else
      why = "udp: no reply within " + ms_text(spec.timeout);
    finish(t, false, std::move(why), when, events);
  }
  // A near backend (loopback, a refusal) may have answered within connect():
  // take that now rather than in a second wake-up.
  if (started) read_sockets(events);
  // Probes just started or answers just read: more answers are coming.
  if (started || stats_.succeeded + stats_.failed != answered)
    answers_batched_until_ = clock_.now() + kAnswerBatch;
  return events;
}

void HealthChecker::read_sockets(std::vector<HealthEvent>& events) {
  epoll_event ready[kMaxEvents];
  for (;;) {
    const int n = epoll_wait(epoll_.get(), ready, kMaxEvents, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(errno_message("health checks: epoll_wait", errno));
    const auto now = clock_.now();
    for (int i = 0; i < n; ++i) {
      // Only a probe in flight has a socket, and a target's socket is
      // closed before the target goes: the pointer is valid.
      Target& t = *static_cast<Target*>(ready[i].data.ptr);
      if (t.phase != Target::Phase::idle) on_ready(t, ready[i].events, now, events);
    }
    if (n < kMaxEvents) return;
  }
}

Health HealthChecker::state(uint64_t id) const {
  auto it = targets_.find(id);
  return it == targets_.end() ? Health::unknown : it->second->health.state();
}

std::string HealthChecker::last_result(uint64_t id) const {
  auto it = targets_.find(id);
  return it == targets_.end() ? "" : it->second->last_result;
}

void HealthChecker::arm(Target& t, Clock::time_point when) {
  disarm(t);
  timers_.emplace(when, t.id, &t);
  t.timer = when;
}

void HealthChecker::disarm(Target& t) {
  if (t.timer) timers_.erase({*t.timer, t.id, &t});
  t.timer.reset();
}

void HealthChecker::cancel(Target& t) {
  end_probe(t);
  t.sock.reset();  // closing it also takes it off the epoll set
}

void HealthChecker::end_probe(Target& t) {
  disarm(t);
  if (t.phase != Target::Phase::idle) --stats_.in_flight;
  t.phase = Target::Phase::idle;
  if (!t.sock.valid() || t.config.spec.type == CheckType::udp) {
    t.sock.reset();
    return;
  }
  // A tcp or http probe's socket is kept for the next probe: connect() to
  // AF_UNSPEC ends the connection (a reset when it got that far, as a
  // SO_LINGER 0 close would) and leaves the socket unconnected, still on
  // the epoll set. That saves socket(), setsockopt(), epoll_ctl() and
  // close() per probe, about a third of a probe's kernel time.
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  if (connect(t.sock.get(), &unspec, sizeof(unspec)) < 0) t.sock.reset();
}

void HealthChecker::start(Target& t, Clock::time_point now, std::vector<HealthEvent>& events) {
  ++stats_.started;
  t.started = now;
  const CheckSpec& spec = t.config.spec;
  if (spec.type == CheckType::none) {
    finish(t, true, "ok (no check)", now, events);
    return;
  }
  const bool udp = spec.type == CheckType::udp;
  const char* what = udp ? "udp: " : "";
  if (!t.sock.valid()) {
    UniqueFd sock(socket(t.peer.ss_family,
                         (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!sock.valid()) {
      finish(t, false, errno_message(std::string(what) + "socket", errno), now, events);
      return;
    }
    if (!udp) {
      // Closed (target removed) mid-probe: a reset, not FIN and TIME_WAIT.
      const linger abort{1, 0};
      setsockopt(sock.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof(abort));
    }
    // Edge-triggered: each event is read until EAGAIN. An event left over
    // from an earlier probe on a kept socket is harmless: epoll reports the
    // socket's state when it is read, not when the event was raised.
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET | (udp ? 0 : EPOLLOUT | EPOLLRDHUP);
    ev.data.ptr = &t;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sock.get(), &ev) < 0) {
      finish(t, false, errno_message("epoll_ctl", errno), now, events);
      return;
    }
    t.sock = std::move(sock);
  }
  // In flight from here on: every way out goes through finish().
  t.phase = udp ? Target::Phase::reading : Target::Phase::connecting;
  ++stats_.in_flight;
  // UDP connects too: the peer filters replies, and ICMP errors reach us.
  if (connect(t.sock.get(), reinterpret_cast<const sockaddr*>(&t.peer), t.peer_len) < 0 &&
      errno != EINPROGRESS) {
    finish(t, false, errno_message(std::string(what) + "connect", errno), now, events);
    return;
  }
  if (udp && send(t.sock.get(), spec.udp_payload.data(), spec.udp_payload.size(), 0) < 0) {
    finish(t, false,
           errno == ECONNREFUSED ? "udp: ICMP port unreachable" : errno_message("udp: send", errno),
           now, events);
    return;
  }
  t.deadline = now + spec.timeout;
  arm(t, t.deadline);
}

void HealthChecker::on_ready(Target& t, uint32_t ready, Clock::time_point now,
                             std::vector<HealthEvent>& events) {
  const CheckSpec& spec = t.config.spec;
  if (t.phase == Target::Phase::connecting) {
    if (!(ready & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    // Writable without an error flag: connected. An error is read only when
    // flagged, which saves a syscall per probe.
    int err = 0;
    socklen_t len = sizeof(err);
    if ((ready & (EPOLLERR | EPOLLHUP)) &&
        getsockopt(t.sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0)
      err = errno;
    if (err != 0) {
      finish(t, false, errno_message("connect", err), now, events);
      return;
    }
    if (spec.type == CheckType::tcp) {
      finish(t, true, "ok " + elapsed_text(now - t.started), now, events);
      return;
    }
    // The request is far smaller than any socket buffer: one send takes it
    // whole or fails.
    const ssize_t sent = send(t.sock.get(), t.request.data(), t.request.size(), MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(t.request.size())) {
      finish(t, false, sent < 0 ? errno_message("http: send", errno) : "http: send: short write",
             now, events);
      return;
    }
    t.phase = Target::Phase::reading;
    // Edge-triggered: a response that arrives from now on raises its own
    // event, so there is nothing to read yet unless this one says so.
    if (!(ready & EPOLLIN)) return;
  }
  if (spec.type == CheckType::http)
    read_http(t, now, events);
  else
    read_udp(t, now, events);
}

void HealthChecker::read_http(Target& t, Clock::time_point now, std::vector<HealthEvent>& events) {
  const CheckSpec& spec = t.config.spec;
  char buf[kRecvBuffer];
  for (;;) {
    const ssize_t n = recv(t.sock.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      finish(t, false, errno_message("http: recv", errno), now, events);
      return;
    }
    t.response.append(buf, std::min(static_cast<size_t>(n), kMaxStatusLine - t.response.size()));
    const size_t eol = t.response.find('\n');
    if (eol == std::string::npos && n > 0 && t.response.size() < kMaxStatusLine) continue;
    // The status line is in, or the server closed (a last line without
    // "\r\n" still counts), or it sent too much without one. We close once
    // the status line is in: the body, if any, is not read.
    std::string_view line(t.response);
    line = line.substr(0, eol);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::optional<int> status = parse_status_line(line);
    if (!status) {
      finish(t, false,
             line.empty() && n == 0 ? std::string("http: connection closed before the status line")
                                    : "http: malformed status line \"" + printable(line) + "\"",
             now, events);
    } else if (!status_expected(spec, *status)) {
      finish(t, false, "http status " + std::to_string(*status), now, events);
    } else {
      finish(t, true,
             "ok " + elapsed_text(now - t.started) + " (http " + std::to_string(*status) + ")", now,
             events);
    }
    return;
  }
}

void HealthChecker::read_udp(Target& t, Clock::time_point now, std::vector<HealthEvent>& events) {
  const CheckSpec& spec = t.config.spec;
  char buf[kRecvBuffer];
  for (;;) {
    const ssize_t n = recv(t.sock.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      finish(
          t, false,
          errno == ECONNREFUSED ? "udp: ICMP port unreachable" : errno_message("udp: recv", errno),
          now, events);
      return;
    }
    // The first reply decides; a reply longer than the buffer is searched
    // in its first kRecvBuffer bytes.
    const std::string_view reply(buf, static_cast<size_t>(n));
    if (spec.udp_expect.empty() || reply.find(spec.udp_expect) != std::string_view::npos)
      finish(t, true, "ok " + elapsed_text(now - t.started), now, events);
    else
      finish(t, false, "udp: reply without \"" + printable(spec.udp_expect) + "\"", now, events);
    return;
  }
}

void HealthChecker::finish(Target& t, bool success, std::string result, Clock::time_point done,
                           std::vector<HealthEvent>& events) {
  end_probe(t);
  t.response.clear();
  ++(success ? stats_.succeeded : stats_.failed);
  const Health from = t.health.state();
  if (t.health.record(success)) {
    std::string detail = from == Health::unknown
                             ? "first check: " + result
                             : (success ? plural(t.health.streak(), "success", "successes")
                                        : plural(t.health.streak(), "failure", "failures")) +
                                   ", last: " + result;
    events.push_back({t.id, from, t.health.state(), std::move(detail)});
  }
  t.last_result = std::move(result);
  if (t.config.spec.type == CheckType::none) return;  // up for good: nothing to check
  // The first slot after this probe's that the probe has not run into.
  const nanoseconds interval = t.config.spec.interval;
  Clock::time_point next = t.slot + interval;
  if (next < done) next += ((done - next + interval - nanoseconds(1)) / interval) * interval;
  t.slot = next;
  arm(t, next);
}

void HealthChecker::assume(uint64_t id, Health health) {
  auto it = targets_.find(id);
  if (it == targets_.end() || it->second->health.state() != Health::unknown) return;
  it->second->health.assume(health);
}

}  // namespace ballast
