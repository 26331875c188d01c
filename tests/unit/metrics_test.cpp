// The exposition text (metrics.h) and the HTTP server that serves it
// (http_server.h), over a real socket on loopback.
#include "metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "counters_dataplane.h"
#include "error.h"
#include "http_server.h"

namespace ballast {
namespace {

using test::CountersDataPlane;

BackendView backend(uint32_t id, const std::string& address, uint32_t weight, Health health) {
  return BackendView{id,    *IpAddress::parse(address), weight, MacAddress{}, health,
                     false, health == Health::up,       100,    CheckSpec{}};
}

struct Rendered {
  std::string text;
  std::vector<std::string> lines;
};

Rendered render(CountersDataPlane& dp, const std::vector<VipView>& vips, SkewTracker& tracker) {
  const auto report = tracker.report(vips);
  MetricsInput in;
  in.vips = &vips;
  in.skew = &report;
  in.dataplane = &dp;
  in.interface = "eth0";
  in.attach_mode = "native";
  in.program_attached = true;
  in.audit_findings[{"drift", "error"}] = 1;
  Rendered r;
  r.text = render_metrics(in);
  std::istringstream ss(r.text);
  for (std::string line; std::getline(ss, line);) r.lines.push_back(line);
  return r;
}

bool has_line(const Rendered& r, const std::string& line) {
  return std::find(r.lines.begin(), r.lines.end(), line) != r.lines.end();
}

TEST(MetricsTest, SamplesCarryTheNumbersAndLabels) {
  CountersDataPlane dp;
  const std::vector<VipView> vips{VipView{
      4,
      VipKey::parse("10.200.0.10:80/tcp"),
      ForwardMode::dsr,
      false,
      false,
      {backend(1, "10.200.1.1", 1, Health::up), backend(2, "10.200.1.2", 3, Health::down)},
      nullptr}};
  dp.vip[4] = {30, 3000, 10};
  dp.reasons[BALLAST_REASON_TX_FORWARDED] = {7, 700};
  dp.backend[1] = {30, 3000, 10};
  SkewTracker tracker;
  Clock::time_point t{};
  tracker.record(t, vips, dp);
  dp.backend[1].new_flows += 200;
  tracker.record(t + std::chrono::seconds(1), vips, dp);
  const auto r = render(dp, vips, tracker);
  const std::string b1 = "{vip=\"10.200.0.10:80/tcp\",backend=\"10.200.1.1\"}";
  const std::string b2 = "{vip=\"10.200.0.10:80/tcp\",backend=\"10.200.1.2\"}";
  EXPECT_TRUE(has_line(r, "ballast_vip_packets_total{vip=\"10.200.0.10:80/tcp\"} 30"));
  EXPECT_TRUE(has_line(r, "ballast_backend_new_flows_total" + b1 + " 210"));
  EXPECT_TRUE(has_line(r, "ballast_backend_weight" + b2 + " 3"));
  EXPECT_TRUE(has_line(r,
                       "ballast_backend_health{vip=\"10.200.0.10:80/tcp\",backend=\"10.200.1.2\","
                       "state=\"down\"} 1"));
  EXPECT_TRUE(has_line(r,
                       "ballast_backend_health{vip=\"10.200.0.10:80/tcp\",backend=\"10.200.1.2\","
                       "state=\"up\"} 0"));
  EXPECT_TRUE(has_line(r, "ballast_backend_share_expected_ratio" + b1 + " 1"))
      << "the down backend takes no share";
  EXPECT_TRUE(has_line(r,
                       "ballast_backend_skew_ratio{vip=\"10.200.0.10:80/tcp\",backend="
                       "\"10.200.1.1\",measure=\"new_flows\"} 1"));
  EXPECT_TRUE(has_line(r, "ballast_vip_window_new_flows{vip=\"10.200.0.10:80/tcp\"} 200"));
  EXPECT_TRUE(has_line(r, "ballast_vip_backends_usable{vip=\"10.200.0.10:80/tcp\"} 1"));
  EXPECT_TRUE(has_line(r, "ballast_backend_ring_share_ratio" + b1 + " 0.5"));
  EXPECT_TRUE(has_line(r, "ballast_xdp_program_attached{interface=\"eth0\",mode=\"native\"} 1"));
  EXPECT_TRUE(has_line(r, "ballast_xdp_packets_total{reason=\"tx_forwarded\",verdict=\"tx\"} 7"));
  EXPECT_TRUE(has_line(r, "ballast_xdp_bytes_total{reason=\"tx_forwarded\",verdict=\"tx\"} 700"));
  EXPECT_TRUE(has_line(r, "ballast_audit_findings{check=\"drift\",severity=\"error\"} 1"));
  EXPECT_TRUE(
      has_line(r, "ballast_build_info{version=\"" + std::string(kBallastVersion) + "\"} 1"));
  // No skew sample for the backend nothing is expected of.
  EXPECT_EQ(r.text.find("ballast_backend_skew_ratio" + b2.substr(0, b2.size() - 1)),
            std::string::npos);
}

// The fleet digest is a label of an info-style sample (a 64-bit digest
// would not survive Prometheus' floats), only for a VIP with a table.
TEST(MetricsTest, TableInfoCarriesTheFleetDigestSeedAndFormat) {
  CountersDataPlane dp;
  auto table = std::make_shared<const std::vector<uint32_t>>(std::vector<uint32_t>{1, 1, 1});
  std::vector<VipView> vips{VipView{4,
                                    VipKey::parse("10.200.0.10:80/tcp"),
                                    ForwardMode::dsr,
                                    false,
                                    false,
                                    {backend(1, "10.200.1.1", 1, Health::up)},
                                    table,
                                    7,
                                    0x00c0ffee12345678ull},
                            VipView{5,
                                    VipKey::parse("10.200.0.11:80/tcp"),
                                    ForwardMode::dsr,
                                    false,
                                    false,
                                    {},
                                    nullptr}};
  SkewTracker tracker;
  const auto r = render(dp, vips, tracker);
  EXPECT_TRUE(has_line(r,
                       "ballast_vip_table_info{vip=\"10.200.0.10:80/tcp\",digest=\"00c0ffee12345678\","
                       "hash_seed=\"7\",format=\"1\"} 1"))
      << r.text;
  EXPECT_EQ(r.text.find("ballast_vip_table_info{vip=\"10.200.0.11:80/tcp\""), std::string::npos)
      << "a VIP without a table has no digest";
}

// Routes kept in a set (announce.h's sink).
class SetRoutes : public RouteSink {
 public:
  std::vector<IpAddress> list(uint32_t) override { return {held.begin(), held.end()}; }
  void add(uint32_t, const IpAddress& a) override { held.insert(a); }
  void remove(uint32_t, const IpAddress& a) override { held.erase(a); }
  std::set<IpAddress> held;
};

// The connection table's placements (bpf/conn_table.h), one sample per
// placement, and its capacity in flows.
TEST(MetricsTest, ConnTablePlacementsAndCapacity) {
  CountersDataPlane dp;
  dp.conn = {.recorded = 11, .replaced_embryonic = 7, .replaced_idle = 5, .unrecorded = 3};
  SkewTracker tracker;
  auto r = render(dp, {}, tracker);
  for (const auto& [placement, n] : std::vector<std::pair<std::string, int>>{
           {"recorded", 11}, {"replaced_embryonic", 7}, {"replaced_idle", 5}, {"unrecorded", 3}})
    EXPECT_TRUE(has_line(r, "ballast_conn_table_new_flows_total{placement=\"" + placement + "\"} " +
                                std::to_string(n)))
        << placement << "\n"
        << r.text;
  EXPECT_TRUE(has_line(r, "ballast_conn_table_capacity " + std::to_string(BALLAST_CONN_TABLE_SIZE)))
      << r.text;
}

TEST(MetricsTest, PickUpsPerVipAndAnnouncedOnlyWithAnnounce) {
  CountersDataPlane dp;
  const std::vector<VipView> vips{VipView{4,
                                          VipKey::parse("10.200.0.10:80/tcp"),
                                          ForwardMode::dsr,
                                          false,
                                          false,
                                          {backend(1, "10.200.1.1", 1, Health::up)},
                                          nullptr}};
  dp.fleet[4] = {7, 3};
  SkewTracker tracker;
  auto r = render(dp, vips, tracker);
  EXPECT_TRUE(has_line(r, "ballast_vip_pickups_total{vip=\"10.200.0.10:80/tcp\"} 7")) << r.text;
  EXPECT_TRUE(has_line(r, "ballast_vip_second_chance_total{vip=\"10.200.0.10:80/tcp\"} 3"))
      << r.text;
  EXPECT_EQ(r.text.find("ballast_vip_announced"), std::string::npos)
      << "no announce families without an announcer";

  Config config;
  config.interface = "eth0";
  config.fleet.announce = AnnounceSettings{};
  config.vips.push_back(empty_vip(vips[0].key));
  config.vips[0].backends.push_back({.address = *IpAddress::parse("10.200.1.1"), .check = {}});
  SetRoutes routes;
  Announcer announcer(routes);
  announcer.adopt(config, false);
  announcer.update(config, vips, true);
  const auto report = tracker.report(vips);
  MetricsInput in;
  in.vips = &vips;
  in.skew = &report;
  in.dataplane = &dp;
  in.announcer = &announcer;
  std::string text = render_metrics(in);
  EXPECT_NE(text.find("\nballast_vip_announced{vip=\"10.200.0.10:80/tcp\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nballast_fleet_left 0\n"), std::string::npos) << text;
  announcer.set_left(true);
  announcer.update(config, vips, true);
  text = render_metrics(in);
  EXPECT_NE(text.find("\nballast_vip_announced{vip=\"10.200.0.10:80/tcp\"} 0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\nballast_fleet_left 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, EveryFamilyHasHelpAndTypeOnceBeforeItsSamples) {
  CountersDataPlane dp;
  const std::vector<VipView> vips{VipView{0,
                                          VipKey::parse("[2001:db8::1]:443/tcp"),
                                          ForwardMode::dsr,
                                          false,
                                          false,
                                          {backend(0, "2001:db8::11", 1, Health::up)},
                                          nullptr}};
  SkewTracker tracker;
  const auto r = render(dp, vips, tracker);
  std::set<std::string> helped, typed;
  std::string current;
  for (const auto& line : r.lines) {
    if (line.rfind("# HELP ", 0) == 0) {
      current = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(current).second) << "HELP twice: " << current;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      EXPECT_TRUE(typed.insert(line.substr(7, line.find(' ', 7) - 7)).second) << line;
    } else {
      const std::string name = line.substr(0, line.find_first_of("{ "));
      EXPECT_EQ(name, current) << "sample outside its family: " << line;
      EXPECT_EQ(name.rfind("ballast_", 0), 0u) << line;
    }
  }
  EXPECT_EQ(helped, typed);
  EXPECT_TRUE(has_line(r,
                       "ballast_backend_weight{vip=\"[2001:db8::1]:443/tcp\","
                       "backend=\"2001:db8::11\"} 1"));
}

// Port 0: the kernel picks one (parse_listen_address takes 1..65535 only).
const ListenAddress kAnyLoopbackPort{*IpAddress::parse("127.0.0.1"), 0};

// A client for the server under test: sends @request, returns the answer.
std::string http_exchange(HttpServer& server, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(server.port());
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string answer;
  for (int round = 0; round < 200; ++round) {
    server.serve();
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    char buf[65536];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return answer;
}

TEST(HttpServerTest, AnswersEachRequestAndCloses) {
  std::string seen;
  HttpServer server(kAnyLoopbackPort, [&](const std::string& method, const std::string& path) {
    seen = method + " " + path;
    if (path != "/metrics") return HttpResponse{404, "text/plain", "no\n"};
    return HttpResponse{200, "text/plain; version=0.0.4", std::string(300000, 'x')};
  });
  ASSERT_NE(server.port(), 0);
  std::string a = http_exchange(server, "GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(seen, "GET /metrics") << "the query string is not part of the path";
  EXPECT_EQ(a.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << a.substr(0, 80);
  EXPECT_NE(a.find("\r\nContent-Length: 300000\r\n"), std::string::npos);
  EXPECT_NE(a.find("\r\nContent-Type: text/plain; version=0.0.4\r\n"), std::string::npos);
  EXPECT_EQ(a.size() - a.find("\r\n\r\n") - 4, 300000u) << "a big body arrives whole";
  EXPECT_EQ(http_exchange(server, "GET /x HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 404 Not Found\r\n", 0),
            0u);
  EXPECT_EQ(http_exchange(server, "nonsense\r\n\r\n").rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  const std::string big =
      http_exchange(server, "GET / HTTP/1.0\r\nX: " + std::string(9000, 'a') + "\r\n\r\n");
  EXPECT_EQ(big.rfind("HTTP/1.1 431 ", 0), 0u) << big.size() << ": " << big.substr(0, 100);
}

TEST(HttpServerTest, SilentClientIsKeptUntilItsDeadline) {
  HttpServer server(kAnyLoopbackPort,
                    [](const std::string&, const std::string&) { return HttpResponse{}; });
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(server.port());
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  pollfd p{server.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 1000), 1);
  server.serve();
  EXPECT_TRUE(server.has_clients()) << "connected, nothing sent yet: kept (10 s to send)";
  server.serve();
  EXPECT_TRUE(server.has_clients());
  close(fd);
}

TEST(HttpServerTest, BusyPortIsANamedError) {
  HttpServer first(kAnyLoopbackPort,
                   [](const std::string&, const std::string&) { return HttpResponse{}; });
  const std::string at = "127.0.0.1:" + std::to_string(first.port());
  try {
    HttpServer second(*parse_listen_address(at),
                      [](const std::string&, const std::string&) { return HttpResponse{}; });
    FAIL() << "a second server on " << at;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "metrics: cannot listen on " + at + ": Address already in use");
  }
}

}  // namespace
}  // namespace ballast
