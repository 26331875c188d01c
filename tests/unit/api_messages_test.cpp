// api_messages_test.cpp: the control API's typed requests and replies
// (userspace/core/api_messages.h): what each looks like on the wire, that
// each decodes to what was encoded, that a request is decoded strictly and
// a reply leniently.
#include "api_messages.h"

#include <gtest/gtest.h>

#include "error.h"

namespace ballast::api {
namespace {

using nlohmann::json;

const VipKey kVip = VipKey::parse("10.0.0.100:80/tcp");
const VipKey kVip6 = VipKey::parse("[2001:db8::1]:53/udp");
const IpAddress kBackend = *IpAddress::parse("10.0.0.11");

template <typename T>
T round_trip(const T& value) {
  return json::parse(json(value).dump()).get<T>();
}

// The message of the Error that decoding @args as @Request throws.
template <typename Request>
std::string refusal(const json& args) {
  try {
    decode_request<Request>(args);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(ApiMessages, RequestsLookAsDocumented) {
  BackendSetWeight w;
  w.vip = kVip;
  w.address = kBackend;
  w.weight = 7;
  EXPECT_EQ(envelope(w), json::parse(R"({"command": "backend.set_weight", "args":
      {"vip": "10.0.0.100:80/tcp", "address": "10.0.0.11", "weight": 7, "force": false}})"));
  EXPECT_EQ(envelope(Status{}), json::parse(R"({"command": "status", "args": {}})"));
  BackendList all;
  EXPECT_EQ(json(all), json::object()) << "no VIP: every VIP's backends";
  Log log;
  log.since_unix_ms = 5;
  EXPECT_EQ(json(log), json::parse(R"({"since_unix_ms": 5})"));
}

TEST(ApiMessages, EveryRequestDecodesToWhatWasSent) {
  BackendAdd add;
  add.vip = kVip6;
  add.address = *IpAddress::parse("2001:db8::11");
  add.weight = 65535;
  add.force = true;
  EXPECT_EQ(round_trip(add), add);
  BackendList one;
  one.vip = kVip;
  EXPECT_EQ(round_trip(one), one);
  BackendFlows flows;
  flows.vip = kVip;
  flows.address = kBackend;
  flows.idle_ms = 250;
  EXPECT_EQ(round_trip(flows), flows);
  Apply apply;
  apply.config = "interface: eth0\n";
  apply.source = "x.yaml";
  apply.dry_run = true;
  EXPECT_EQ(round_trip(apply), apply);
  VipDel del;
  del.vip = kVip;
  EXPECT_EQ(round_trip(del), del);
  BackendDrain drain;
  drain.vip = kVip;
  drain.address = kBackend;
  drain.force = true;
  EXPECT_EQ(round_trip(drain), drain);
  // And each of them, default-built, through its own codec.
  size_t checked = 0;
  for_each_request([&](auto request) {
    request = decltype(request){};
    if constexpr (requires { request.vip = kVip; }) request.vip = kVip;
    EXPECT_EQ(round_trip(request), request) << request.kCommand;
    ++checked;
  });
  EXPECT_EQ(checked, 18u);
}

TEST(ApiMessages, RequestsAreDecodedStrictly) {
  EXPECT_EQ(refusal<BackendAdd>(json::parse(R"({"vip": "10.0.0.100:80/tcp"})")),
            "missing argument 'address'");
  EXPECT_EQ(refusal<BackendAdd>(json::parse(
                R"({"vip": "10.0.0.100:80/tcp", "address": "10.0.0.11", "wieght": 2})")),
            "unknown argument 'wieght' for backend.add (it takes vip, address, force, weight)")
      << "a misspelt argument is refused, never ignored";
  EXPECT_EQ(refusal<Status>(json::parse(R"({"verbose": true})")),
            "unknown argument 'verbose' for status (it takes none)");
  EXPECT_EQ(refusal<BackendSetWeight>(
                json::parse(R"({"vip": "10.0.0.100:80/tcp", "address": "10.0.0.11"})")),
            "missing argument 'weight'");
  EXPECT_EQ(refusal<BackendSetWeight>(json::parse(
                R"({"vip": "10.0.0.100:80/tcp", "address": "10.0.0.11", "wieght": 2})")),
            "unknown argument 'wieght' for backend.set_weight (it takes vip, address, force, "
            "weight)")
      << "what it does not know is said before what is missing";
  for (const char* weight : {"-3", "70000", "1.5", "\"2\"", "null"})
    EXPECT_EQ(refusal<BackendSetWeight>(json::parse(
                  std::string(R"({"vip": "10.0.0.100:80/tcp", "address": "10.0.0.11", "weight": )") +
                  weight + "}")),
              std::string("weight must be an integer 0..65535, got ") + weight);
  EXPECT_EQ(refusal<BackendDel>(json::parse(R"({"vip": "10.0.0.100:80/tcp", "address": "nope"})")),
            "'nope' is not an IP address");
  EXPECT_NE(refusal<VipAdd>(json::parse(R"({"vip": "10.0.0.100:80"})")).find("10.0.0.100:80"),
            std::string::npos);
  EXPECT_EQ(refusal<VipAdd>(json::parse(R"({"vip": "10.0.0.100:80/tcp", "force": "yes"})")),
            "'force' must be true or false, got \"yes\"");
  EXPECT_EQ(refusal<Log>(json::parse(R"({"since_unix_ms": -1})")),
            "'since_unix_ms' must be an integer 0..18446744073709551615, got -1");
  EXPECT_EQ(refusal<VipList>(json::parse("[1]")), "arguments must be a JSON object, got [1]");
  EXPECT_EQ(refusal<VipList>(json(nullptr)), "(accepted)") << "no args at all: none";
}

TEST(ApiMessages, RepliesDecodeToWhatWasSent) {
  BackendEntry b{.vip = kVip,
                 .address = kBackend,
                 .weight = 3,
                 .id = 4,
                 .mac = "02:00:00:00:00:11",
                 .health = Health::down,
                 .drained = true,
                 .takes_new_flows = false,
                 .table_entries = 21845,
                 .check = "tcp :80",
                 .last_check = "ok 1.2 ms"};
  const VipEntry v{.vip = kVip6,
                   .id = 2,
                   .fail_open = true,
                   .failing_open = false,
                   .backends = {b},
                   .table_digest = "00c0ffee12345678",
                   .hash_seed = 7,
                   .table_format = 1,
                   .announced = true,
                   .announce_reason = "10.0.0.100:80/tcp: 3 of 3 backends usable (min_usable 1)"};
  EXPECT_EQ(round_trip(v), v);
  b.mac.reset();
  EXPECT_EQ(json(b)["resolved"], false);
  EXPECT_EQ(json(b)["mac"], nullptr);
  EXPECT_EQ(round_trip(b), b);

  const ChangeReply change{
      .changes = {"backend set-weight 10.0.0.100:80/tcp 10.0.0.11 1 -> 0"},
      .findings = {Finding{Severity::error, "share-limit", kVip.str(), "10.0.0.13", "m", "h"}},
      .new_findings = {},
      .applied = false};
  EXPECT_EQ(round_trip(change), change);
  EXPECT_EQ(round_trip(AuditReply::of(change.findings)).errors, 1u);

  const StatusReply status{.interface = "eth0",
                           .ifindex = 3,
                           .attach_mode = "native",
                           .program_id = 99,
                           .pin_dir = "/sys/fs/bpf/ballast",
                           .config = "/etc/ballast/ballast.yaml",
                           .vips = 2,
                           .backends = 5,
                           .unresolved_backends = {"10.0.0.100:80/tcp 10.0.0.14"},
                           .version = "0.4.0",
                           .metrics = "http://127.0.0.1:9469/metrics",
                           .errors = {{"audit", 2}},
                           .uptime_seconds = 61,
                           .announce_table = 100,
                           .fleet_left = true,
                           .announced = {"10.0.0.100"}};
  EXPECT_EQ(round_trip(status), status);

  const LogEntry entry{.unix_ms = 1'764'892'800'000, .actor = "uid=0 pid=1", .change = "vip add"};
  EXPECT_EQ(json(entry)["time"], "2025-12-05T00:00:00.000Z") << "time derived from unix_ms";
  EXPECT_EQ(round_trip(entry), entry);

  FlowsReply counting{.flows = std::nullopt, .idle_ms = 5000, .counted_ms_ago = std::nullopt};
  EXPECT_EQ(json(counting), json::parse(R"({"flows": null, "idle_ms": 5000})"));
  EXPECT_EQ(round_trip(counting), counting);
  const FlowsReply counted{.flows = 7, .idle_ms = 5000, .counted_ms_ago = 120};
  EXPECT_EQ(round_trip(counted), counted);

  StatsReply stats;
  stats.vips.push_back({.vip = kVip,
                        .mode = ForwardMode::gue,
                        .counts = {.packets = 10, .bytes = 1000, .new_flows = 3},
                        .backends = {{.address = kBackend,
                                      .weight = 1,
                                      .resolved = true,
                                      .health = Health::up,
                                      .drained = false,
                                      .counts = {.packets = 10, .bytes = 1000, .new_flows = 3},
                                      .expected_share = 1,
                                      .observed_share = 1,
                                      .skew = std::nullopt}}});
  stats.reasons.push_back({.reason = "tx", .verdict = "tx", .packets = 10, .bytes = 1000});
  stats.conn_table = {.capacity = BALLAST_CONN_TABLE_SIZE,
                      .recorded = 5,
                      .replaced_embryonic = 4,
                      .replaced_idle = 3,
                      .unrecorded = 2};
  EXPECT_EQ(json(stats)["conn_table"]["replaced_embryonic"], 4);
  EXPECT_EQ(round_trip(stats), stats);

  SkewReply skew;
  skew.settings.window = std::chrono::seconds(20);
  skew.vips.push_back(
      {.vip = kVip,
       .window_seconds = 12.5,
       .window = {.packets = 5, .bytes = 50, .new_flows = 2},
       .pps = 0.4,
       .confident = false,
       .skew = 1.5,
       .ring_foreign_share = 0,
       .backends = {{.address = kBackend,
                     .weight = 2,
                     .health = Health::unknown,
                     .drained = true,
                     .takes_new_flows = false,
                     .window = {.packets = 5, .bytes = 50, .new_flows = 2},
                     .pps = 0.4,
                     .expected_share = 0.5,
                     .observed_share = {.new_flows = 0.75, .packets = 0.5, .bytes = 0.25},
                     .skew = {.new_flows = 1.5, .packets = std::nullopt, .bytes = 0.5},
                     .z = -2.5,
                     .significant = true,
                     .skewed_seconds = 40,
                     .ring_share = 0.5,
                     .ring_skew = 1.0}}});
  EXPECT_EQ(round_trip(skew), skew);
}

// A newer ballastd may add fields: an older client reads what it knows.
// A missing field it needs is an error that names it.
TEST(ApiMessages, RepliesAreDecodedLeniently) {
  auto j = json(FlowsReply{.flows = 3, .idle_ms = 10, .counted_ms_ago = 1});
  j["walks"] = 12;
  EXPECT_EQ(j.get<FlowsReply>().flows, 3u);
  try {
    json::parse(R"({"idle_ms": 10})").get<FlowsReply>();
    ADD_FAILURE() << "a reply without its flows decoded";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "reply: missing field 'flows'");
  }
}

}  // namespace
}  // namespace ballast::api
