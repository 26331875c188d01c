// conn_table_test.cpp: the connection table (bpf/conn_table.h; layout in
// ballast_abi.h, where a flow may sit in bpf/conn_hash.h) through the
// balancer's real XDP entry point: where a new flow's way goes, lookups in
// both of a flow's buckets, confirmation, the replacement rule and the
// SYN-flood guard, the touch interval, re-placement when a backend leaves,
// IPv6 flows; and frames passed because they are addressed to another MAC.
//
// Full buckets are built whole (set_conn_bucket) from ways of other flows:
// real flows' fingerprints (conn_place), seen some age before the data
// plane's clock (coarse_now_ns). Flows that share a bucket are found by
// searching clients for the bucket their hash gives. Every forwarded frame
// is compared byte for byte with the client's, its MACs rewritten (dsr).
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "balancer_fixture.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

// --- The world ------------------------------------------------------------------

constexpr std::uint32_t vip_web = 1;   // v4_vip_one:80/tcp, dsr
constexpr std::uint32_t vip_web6 = 2;  // v6_vip_one:80/tcp, dsr

constexpr std::uint32_t web_backend_ids[] = {10, 11, 12};
constexpr std::uint32_t web6_backend_ids[] = {20, 21};
constexpr MacAddr backend_macs[] = {mac_backend_one, mac_backend_two, mac_backend_three};

// Unicast MACs that are not ours: another host's, ours but for the first
// byte, ours but for the last; and the IPv6 all-nodes multicast MAC.
constexpr MacAddr mac_other_host{{0x02, 0x00, 0x00, 0x00, 0x02, 0x01}};
constexpr MacAddr mac_lb_but_first_byte{{0x06, 0x00, 0x00, 0x00, 0x00, 0x0b}};
constexpr MacAddr mac_lb_but_last_byte{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}};
constexpr MacAddr mac_ipv6_all_nodes{{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}};

constexpr std::uint64_t ms_ns = 1'000'000ull;
constexpr std::uint64_t s_ns = 1'000 * ms_ns;

// The MAC of web (or web6) backend @id.
MacAddr backend_mac(std::uint32_t id) {
  for (std::size_t i = 0; i < std::size(web_backend_ids); i++)
    if (web_backend_ids[i] == id) return backend_macs[i];
  for (std::size_t i = 0; i < std::size(web6_backend_ids); i++)
    if (web6_backend_ids[i] == id) return backend_macs[i];
  throw std::out_of_range("no backend " + std::to_string(id));
}

// The backend the web VIP's table (round_robin_table) gives @flow.
std::uint32_t table_pick(const ballast_flow_key& flow) {
  return web_backend_ids[maglev_index(flow) % std::size(web_backend_ids)];
}

// A web backend other than @id.
std::uint32_t other_backend(std::uint32_t id) {
  return id == web_backend_ids[0] ? web_backend_ids[1] : web_backend_ids[0];
}

// A client of the web VIP: the flow's key and its frames, to our MAC.
struct Client {
  Ipv4Addr addr;
  std::uint16_t port;

  ballast_flow_key flow() const {
    return flow_key_v4(addr, port, v4_vip_one, port_http, ipproto_tcp);
  }
  PacketBuilder tcp(std::uint8_t flags) const {
    return PacketBuilder()
        .eth(mac_router, mac_lb)
        .ipv4(addr, v4_vip_one)
        .tcp(port, port_http, flags);
  }
};

constexpr Client client_one{v4_client_one, port_client_one};

// Client @i of the searched clients: 10.204.0.0/16, ports 1024-33791.
Client searched_client(std::uint32_t i) {
  return Client{
      Ipv4Addr{{10, 204, static_cast<std::uint8_t>(i >> 23), static_cast<std::uint8_t>(i >> 15)}},
      static_cast<std::uint16_t>(1024 + (i & 0x7fff))};
}

// @n searched clients whose flows' first bucket is @bucket, from client
// @from on (about 2^19 flows tried per client found).
std::vector<Client> clients_with_first_bucket(std::uint32_t bucket, std::size_t n,
                                              std::uint32_t from = 0) {
  std::vector<Client> found;
  for (std::uint32_t i = from; found.size() < n && i < (1u << 31); i++) {
    const Client c = searched_client(i);
    if (conn_place(c.flow()).bucket_a == bucket) found.push_back(c);
  }
  if (found.size() < n) throw std::runtime_error("no client found for bucket");
  return found;
}

// seen of a way last seen @age_ns before now (BALLAST_CONN_SEEN_SHIFT units).
std::uint32_t seen_ago(std::uint64_t age_ns) {
  return static_cast<std::uint32_t>((coarse_now_ns() - age_ns) >> BALLAST_CONN_SEEN_SHIFT);
}

std::uint32_t now_units() {
  return static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT);
}

// The way of another flow (v4_client_two, client port @n: a flow none of
// these tests sends), to backend @backend_id, with @flags, last seen
// @age_ns ago.
ballast_conn_way other_way(std::uint16_t n, std::uint32_t backend_id, std::uint32_t flags,
                           std::uint64_t age_ns) {
  const ballast_flow_key other = flow_key_v4(v4_client_two, n, v4_vip_one, port_http, ipproto_tcp);
  return ballast_conn_way{
      .tag = conn_place(other).fingerprint | backend_id, .seen = seen_ago(age_ns), .flags = flags};
}

// Shorthands for buckets' contents: a confirmed or an unconfirmed way of
// another flow, seen @age_ns ago.
ballast_conn_way confirmed(std::uint16_t n, std::uint64_t age_ns) {
  return other_way(n, web_backend_ids[n % 3], BALLAST_CONN_F_CONFIRMED, age_ns);
}
ballast_conn_way unconfirmed(std::uint16_t n, std::uint64_t age_ns) {
  return other_way(n, web_backend_ids[n % 3], 0, age_ns);
}
constexpr ballast_conn_way empty_way{};

std::string way_text(const ballast_conn_way& way) {
  std::ostringstream out;
  out << "{tag " << std::hex << way.tag << std::dec << ", seen " << way.seen << ", flags "
      << way.flags << "}";
  return out.str();
}

// Whether two buckets hold the same ways, bit for bit.
::testing::AssertionResult buckets_equal(const ballast_conn_bucket& want,
                                         const ballast_conn_bucket& got) {
  bool same = true;
  std::ostringstream diff;
  for (int i = 0; i < BALLAST_CONN_WAYS; i++) {
    if (std::memcmp(&want.way[i], &got.way[i], sizeof(ballast_conn_way)) == 0) continue;
    same = false;
    diff << "way " << i << ": want " << way_text(want.way[i]) << ", got " << way_text(got.way[i])
         << "\n";
  }
  if (same) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diff.str();
}

// --- Fixture --------------------------------------------------------------------

class ConnTableTest : public ::testing::Test {
 protected:
  ConnTableTest() {
    lb_.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), vip_web);
    lb_.add_vip(vip_key_v6(v6_vip_one, port_http, ipproto_tcp), vip_web6);
    const Ipv4Addr v4[] = {v4_backend_one, v4_backend_two, v4_backend_three};
    for (std::size_t i = 0; i < std::size(web_backend_ids); i++)
      lb_.set_backend(web_backend_ids[i], backend_slot_v4(v4[i], backend_macs[i], vip_web));
    const Ipv6Addr v6[] = {v6_backend_one, v6_backend_two};
    for (std::size_t i = 0; i < std::size(web6_backend_ids); i++)
      lb_.set_backend(web6_backend_ids[i], backend_slot_v6(v6[i], backend_macs[i], vip_web6));
    lb_.install_maglev_table(vip_web, round_robin_table(web_backend_ids));
    lb_.install_maglev_table(vip_web6, round_robin_table(web6_backend_ids));
  }

  // Sends @packet; it must leave XDP_TX for backend @backend_id, its MACs
  // rewritten (from ours, to the backend's) and every other byte as it came.
  void expect_sent_to(const PacketBuilder& packet, std::uint32_t backend_id,
                      const std::string& label) {
    PacketBuilder expected = packet;
    expected.eth(mac_lb, backend_mac(backend_id));
    const RunResult r = lb_.run(packet.build());
    ASSERT_EQ(r.error, 0) << label << ": bpf_prog_test_run_opts";
    EXPECT_STREQ(action_name(r.action), "XDP_TX") << label << ": verdict";
    EXPECT_EQ(frame_mismatch(expected.build(), r.frame), std::nullopt) << label << ": output frame";
  }

  // conn_stats as a test expects them: the fields it does not name are 0.
  struct Placements {
    std::uint64_t recorded = 0;
    std::uint64_t replaced_embryonic = 0;
    std::uint64_t replaced_idle = 0;
    std::uint64_t unrecorded = 0;
  };

  void expect_conn_counters(const Placements& want, const std::string& label) {
    const ballast_conn_counters got = lb_.conn_counters();
    EXPECT_EQ(got.recorded, want.recorded) << label << ": conn_stats.recorded";
    EXPECT_EQ(got.replaced_embryonic, want.replaced_embryonic)
        << label << ": conn_stats.replaced_embryonic";
    EXPECT_EQ(got.replaced_idle, want.replaced_idle) << label << ": conn_stats.replaced_idle";
    EXPECT_EQ(got.unrecorded, want.unrecorded) << label << ": conn_stats.unrecorded";
  }

  // Fills @c's buckets with @a (first) and @b (second), sends @c's SYN and
  // checks that it went to the table's pick and took way @way of its
  // second bucket (@in_second) or its first, unconfirmed and seen now,
  // leaving every other way as it was; the conn_stats counters must then
  // be @counted.
  void expect_syn_takes(const Client& c, const ballast_conn_bucket& a, const ballast_conn_bucket& b,
                        bool in_second, int way, const Placements& counted) {
    const ballast_flow_key flow = c.flow();
    const ConnPlace place = conn_place(flow);
    lb_.set_conn_bucket(place.bucket_a, a);
    lb_.set_conn_bucket(place.bucket_b, b);
    const std::uint32_t before = now_units();
    expect_sent_to(c.tcp(tcp_syn), table_pick(flow), "SYN");

    const std::optional<ConnEntry> conn = lb_.conn(flow);
    ASSERT_TRUE(conn.has_value()) << "the SYN's way";
    EXPECT_EQ(conn->in_second_bucket, in_second) << "in its second bucket";
    EXPECT_EQ(conn->bucket, in_second ? place.bucket_b : place.bucket_a) << "bucket";
    EXPECT_EQ(conn->way, way) << "way";
    EXPECT_EQ(conn->backend_id, table_pick(flow)) << "backend_id";
    EXPECT_EQ(conn->flags, 0u) << "flags: unconfirmed";
    EXPECT_GE(conn->seen, before) << "seen: now";
    EXPECT_LE(conn->seen, now_units()) << "seen: now";

    // The way taken was checked above; every other must be as written.
    const ballast_conn_bucket got_a = lb_.conn_bucket(place.bucket_a);
    const ballast_conn_bucket got_b = lb_.conn_bucket(place.bucket_b);
    ballast_conn_bucket want_a = a, want_b = b;
    if (in_second)
      want_b.way[way] = got_b.way[way];
    else
      want_a.way[way] = got_a.way[way];
    EXPECT_TRUE(buckets_equal(want_a, got_a)) << "first bucket";
    EXPECT_TRUE(buckets_equal(want_b, got_b)) << "second bucket";
    expect_conn_counters(counted, "after the SYN");
  }

  BalancerHarness lb_;
};

// --- Where a new flow's way goes ------------------------------------------------

// Flows whose first bucket is the same take its ways in order while it has
// two empty ways or more; with one left, a flow takes its second bucket
// when that has more empty ways, its first on a tie; with none, its
// second (conn_place). Each is counted as recorded.
TEST_F(ConnTableTest, NewFlowsTakeTheirFirstBucketThenTheEmptierOne) {
  const std::uint32_t bucket = conn_place(client_one.flow()).bucket_a;
  std::vector<Client> clients = clients_with_first_bucket(bucket, 5);
  clients.insert(clients.begin(), client_one);
  auto expect_way = [&](const Client& c, std::uint32_t want_bucket, int want_way, bool second,
                        std::uint64_t recorded, const std::string& label) {
    expect_sent_to(c.tcp(tcp_syn), table_pick(c.flow()), label + " SYN");
    const std::optional<ConnEntry> conn = lb_.conn(c.flow());
    ASSERT_TRUE(conn.has_value()) << label << ": a way";
    EXPECT_EQ(conn->in_second_bucket, second) << label << ": which bucket";
    EXPECT_EQ(conn->bucket, want_bucket) << label << ": bucket";
    EXPECT_EQ(conn->way, want_way) << label << ": the first empty way";
    EXPECT_EQ(conn->backend_id, table_pick(c.flow())) << label << ": backend_id";
    EXPECT_EQ(conn->flags, 0u) << label << ": unconfirmed";
    EXPECT_EQ(lb_.conn_counters().recorded, recorded) << label << ": conn_stats.recorded";
  };

  // While the first bucket has two empty ways or more: the first bucket.
  for (std::size_t i = 0; i < 3; i++)
    expect_way(clients[i], bucket, static_cast<int>(i), false, i + 1, "flow " + std::to_string(i));
  // One empty way left: the second bucket when it has more.
  const ConnPlace third = conn_place(clients[3].flow());
  const ConnPlace fourth = conn_place(clients[4].flow());
  const ConnPlace fifth = conn_place(clients[5].flow());
  ASSERT_NE(third.bucket_b, fourth.bucket_b);
  ASSERT_NE(fourth.bucket_b, fifth.bucket_b);
  ASSERT_NE(third.bucket_b, fifth.bucket_b);
  expect_way(clients[3], third.bucket_b, 0, true, 4, "flow 3 (second bucket empty)");
  // A tie (one empty way in each): the first bucket.
  const ballast_conn_bucket tie{
      {confirmed(1, 1 * s_ns), empty_way, confirmed(2, 2 * s_ns), confirmed(3, 3 * s_ns)}};
  lb_.set_conn_bucket(fourth.bucket_b, tie);
  expect_way(clients[4], bucket, 3, false, 5, "flow 4 (a tie)");
  EXPECT_TRUE(buckets_equal(tie, lb_.conn_bucket(fourth.bucket_b))) << "the tied second bucket";
  // The first bucket full: the second.
  const ballast_conn_bucket full = lb_.conn_bucket(bucket);
  expect_way(clients[5], fifth.bucket_b, 0, true, 6, "flow 5 (first bucket full)");
  EXPECT_TRUE(buckets_equal(full, lb_.conn_bucket(bucket))) << "the full first bucket";
  expect_conn_counters({.recorded = 6}, "six new flows");
}

// An empty way anywhere comes before any way in use: a first bucket full
// of unconfirmed ways is left alone when the second has an empty way.
TEST_F(ConnTableTest, AnEmptyWayInTheSecondBucketComesBeforeAnUnconfirmedOne) {
  expect_syn_takes(client_one,
                   {{unconfirmed(1, 30 * s_ns), unconfirmed(2, 20 * s_ns),
                     unconfirmed(3, 10 * s_ns), unconfirmed(4, 5 * s_ns)}},
                   {{confirmed(5, 1 * s_ns), empty_way, confirmed(6, 2 * s_ns), empty_way}}, true,
                   1, {.recorded = 1});
}

// --- Lookups ----------------------------------------------------------------------

// A flow whose way is in its second bucket (its first was full when it was
// recorded) is found there: its packets go to the backend recorded, not
// to the table's pick, and the first of them confirms it.
TEST_F(ConnTableTest, AFlowInItsSecondBucketGoesToItsRecordedBackend) {
  const ballast_flow_key flow = client_one.flow();
  const ConnPlace place = conn_place(flow);
  const std::uint32_t recorded = other_backend(table_pick(flow));
  const ballast_conn_bucket first{{confirmed(1, 1 * s_ns), confirmed(2, 2 * s_ns),
                                   confirmed(3, 3 * s_ns), confirmed(4, 4 * s_ns)}};
  lb_.set_conn_bucket(place.bucket_a, first);
  lb_.set_conn(flow, recorded, 0);
  std::optional<ConnEntry> conn = lb_.conn(flow);
  ASSERT_TRUE(conn.has_value() && conn->in_second_bucket) << "set_conn: the first bucket is full";

  for (int i = 0; i < 2; i++) {
    const std::string label = "ACK " + std::to_string(i);
    expect_sent_to(client_one.tcp(tcp_ack | tcp_psh).payload("GET /"), recorded, label);
  }
  conn = lb_.conn(flow);
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->bucket, place.bucket_b) << "still in its second bucket";
  EXPECT_EQ(conn->backend_id, recorded) << "backend_id";
  EXPECT_EQ(conn->flags, BALLAST_CONN_F_CONFIRMED) << "flags: confirmed by the first ACK";
  EXPECT_TRUE(buckets_equal(first, lb_.conn_bucket(place.bucket_a))) << "first bucket";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 0u) << "vip_stats.new_flows: the way was found";
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 0u) << "vip_fleet_stats.pickups";
  expect_conn_counters({}, "nothing placed");
}

// --- Confirmation ------------------------------------------------------------------

// A SYN records its flow unconfirmed; the next packet confirms it (and
// leaves seen alone: it is fresh). A SYN for a flow with a confirmed way
// starts the flow again: the table picks its backend, and its way (the
// same one) is unconfirmed again, seen now, and not counted as a new
// placement.
TEST_F(ConnTableTest, TheSecondPacketConfirmsAndASynStartsTheFlowAgain) {
  const ballast_flow_key flow = client_one.flow();
  const std::uint32_t pick = table_pick(flow);
  expect_sent_to(client_one.tcp(tcp_syn), pick, "SYN");
  const std::optional<ConnEntry> after_syn = lb_.conn(flow);
  ASSERT_TRUE(after_syn.has_value()) << "the SYN's way";
  EXPECT_EQ(after_syn->flags, 0u) << "after the SYN: unconfirmed";

  expect_sent_to(client_one.tcp(tcp_ack), pick, "ACK");
  const std::optional<ConnEntry> after_ack = lb_.conn(flow);
  ASSERT_TRUE(after_ack.has_value());
  EXPECT_EQ(after_ack->flags, BALLAST_CONN_F_CONFIRMED) << "after the ACK: confirmed";
  EXPECT_EQ(after_ack->seen, after_syn->seen) << "seen: fresh, so not rewritten";
  EXPECT_EQ(after_ack->bucket, after_syn->bucket);
  EXPECT_EQ(after_ack->way, after_syn->way);

  // The way now names another backend (as after a table change), seen a
  // while ago: a SYN takes the table's pick again.
  lb_.set_conn(flow, other_backend(pick), BALLAST_CONN_F_CONFIRMED, coarse_now_ns() - 10 * s_ns);
  const std::uint32_t before = now_units();
  expect_sent_to(client_one.tcp(tcp_syn), pick, "SYN of a confirmed flow");
  const std::optional<ConnEntry> restarted = lb_.conn(flow);
  ASSERT_TRUE(restarted.has_value());
  EXPECT_EQ(restarted->bucket, after_syn->bucket) << "the flow's own way";
  EXPECT_EQ(restarted->way, after_syn->way) << "the flow's own way";
  EXPECT_EQ(restarted->backend_id, pick) << "backend_id: the table's pick";
  EXPECT_EQ(restarted->flags, 0u) << "flags: unconfirmed again";
  EXPECT_GE(restarted->seen, before) << "seen: now";
  expect_conn_counters({.recorded = 1}, "one placement, the first SYN's");
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 2u) << "vip_stats.new_flows: two SYNs";

  expect_sent_to(client_one.tcp(tcp_ack), pick, "ACK after the second SYN");
  EXPECT_EQ(lb_.conn(flow).value().flags, BALLAST_CONN_F_CONFIRMED) << "confirmed again";
}

// --- Replacement, both buckets full -------------------------------------------

// Unconfirmed ways go first, the oldest of both buckets, even before a
// confirmed way idle past the guard.
TEST_F(ConnTableTest, TheOldestUnconfirmedWayIsTakenFirstInTheSecondBucket) {
  expect_syn_takes(client_one,
                   {{confirmed(1, 300 * s_ns), unconfirmed(2, 5 * s_ns), confirmed(3, 1 * s_ns),
                     confirmed(4, 2 * s_ns)}},
                   {{confirmed(5, 3 * s_ns), unconfirmed(6, 30 * s_ns), unconfirmed(7, 10 * s_ns),
                     confirmed(8, 120 * s_ns)}},
                   true, 1, {.replaced_embryonic = 1});
}

TEST_F(ConnTableTest, TheOldestUnconfirmedWayIsTakenFirstInTheFirstBucket) {
  expect_syn_takes(client_one,
                   {{confirmed(1, 1 * s_ns), confirmed(2, 2 * s_ns), unconfirmed(3, 40 * s_ns),
                     confirmed(4, 3 * s_ns)}},
                   {{unconfirmed(5, 20 * s_ns), confirmed(6, 500 * s_ns), confirmed(7, 4 * s_ns),
                     unconfirmed(8, 1 * s_ns)}},
                   false, 2, {.replaced_embryonic = 1});
}

// Without unconfirmed ways: the confirmed way idle the longest, if longer
// than BALLAST_CONN_PROTECT_NS.
TEST_F(ConnTableTest, ElseTheOldestIdleConfirmedWayIsTakenInTheSecondBucket) {
  static_assert(BALLAST_CONN_PROTECT_NS == 60 * s_ns, "the ages below are around 60 s");
  expect_syn_takes(client_one,
                   {{confirmed(1, 1 * s_ns), confirmed(2, 90 * s_ns), confirmed(3, 2 * s_ns),
                     confirmed(4, 50 * s_ns)}},
                   {{confirmed(5, 4 * s_ns), confirmed(6, 5 * s_ns), confirmed(7, 200 * s_ns),
                     confirmed(8, 6 * s_ns)}},
                   true, 2, {.replaced_idle = 1});
}

TEST_F(ConnTableTest, ElseTheOldestIdleConfirmedWayIsTakenInTheFirstBucket) {
  expect_syn_takes(client_one,
                   {{confirmed(1, 400 * s_ns), confirmed(2, 1 * s_ns), confirmed(3, 2 * s_ns),
                     confirmed(4, 100 * s_ns)}},
                   {{confirmed(5, 300 * s_ns), confirmed(6, 3 * s_ns), confirmed(7, 4 * s_ns),
                     confirmed(8, 5 * s_ns)}},
                   false, 0, {.replaced_idle = 1});
}

// A way last seen 30 days ago is 2^31 units and more behind the clock: as
// a signed difference it would look ahead of it, age 0 and protected.
// Only a way up to BALLAST_CONN_AHEAD_UNITS ahead counts as fresh, so this
// one is the oldest idle way and is taken.
TEST_F(ConnTableTest, AWayIdleForAMonthIsNotMistakenForAFreshOne) {
  constexpr std::uint64_t month_ns = 30ull * 86400 * s_ns;
  static_assert((month_ns >> BALLAST_CONN_SEEN_SHIFT) > (1ull << 31));
  expect_syn_takes(client_one,
                   {{confirmed(1, 1 * s_ns), confirmed(2, 2 * s_ns), confirmed(3, month_ns),
                     confirmed(4, 3 * s_ns)}},
                   {{confirmed(5, 4 * s_ns), confirmed(6, 5 * s_ns), confirmed(7, 6 * s_ns),
                     confirmed(8, 7 * s_ns)}},
                   false, 2, {.replaced_idle = 1});
}

// Every way confirmed and seen within the guard (50 s at most): none is
// taken. The packets are still forwarded to the table's pick, nothing is
// written, and each is counted unrecorded.
TEST_F(ConnTableTest, WhenNoWayMayBeTakenTheFlowIsForwardedUnrecorded) {
  const ballast_flow_key flow = client_one.flow();
  const ConnPlace place = conn_place(flow);
  const ballast_conn_bucket a{
      {confirmed(1, 0), confirmed(2, 10 * s_ns), confirmed(3, 20 * s_ns), confirmed(4, 30 * s_ns)}};
  const ballast_conn_bucket b{{confirmed(5, 40 * s_ns), confirmed(6, 50 * s_ns),
                               confirmed(7, 45 * s_ns), confirmed(8, 500 * ms_ns)}};
  lb_.set_conn_bucket(place.bucket_a, a);
  lb_.set_conn_bucket(place.bucket_b, b);

  expect_sent_to(client_one.tcp(tcp_syn), table_pick(flow), "SYN");
  EXPECT_FALSE(lb_.conn(flow).has_value()) << "after the SYN: no way";
  expect_conn_counters({.unrecorded = 1}, "after the SYN");
  expect_sent_to(client_one.tcp(tcp_ack), table_pick(flow), "ACK");
  EXPECT_FALSE(lb_.conn(flow).has_value()) << "after the ACK: no way";
  expect_conn_counters({.unrecorded = 2}, "after the ACK");
  EXPECT_TRUE(buckets_equal(a, lb_.conn_bucket(place.bucket_a))) << "first bucket untouched";
  EXPECT_TRUE(buckets_equal(b, lb_.conn_bucket(place.bucket_b))) << "second bucket untouched";
}

// A way whose seen is a few units ahead of this CPU's clock was just
// written by a CPU whose copy of the coarse clock is a tick fresher
// (coarse_now_ns caches the clock per CPU, per jiffy): it is in use, not
// idle for 2^32 units, and the guard must protect it as any recent way.
TEST_F(ConnTableTest, AWaySeenByAFresherClockIsProtectedToo) {
  const ballast_flow_key flow = client_one.flow();
  const ConnPlace place = conn_place(flow);
  ballast_conn_way ahead = confirmed(1, 0);
  ahead.seen = now_units() + 3;  // 3 ms ahead: less than a tick at HZ 250
  const ballast_conn_bucket a{
      {ahead, confirmed(2, 1 * s_ns), confirmed(3, 2 * s_ns), confirmed(4, 3 * s_ns)}};
  const ballast_conn_bucket b{{confirmed(5, 4 * s_ns), confirmed(6, 5 * s_ns),
                               confirmed(7, 6 * s_ns), confirmed(8, 7 * s_ns)}};
  lb_.set_conn_bucket(place.bucket_a, a);
  lb_.set_conn_bucket(place.bucket_b, b);

  expect_sent_to(client_one.tcp(tcp_syn), table_pick(flow), "SYN");
  EXPECT_TRUE(buckets_equal(a, lb_.conn_bucket(place.bucket_a))) << "first bucket untouched";
  EXPECT_TRUE(buckets_equal(b, lb_.conn_bucket(place.bucket_b))) << "second bucket untouched";
  expect_conn_counters({.unrecorded = 1}, "after the SYN");
}

// --- The SYN-flood guard ---------------------------------------------------------

// Spoofed SYNs of many distinct flows, whose buckets are full of confirmed
// flows seen in the last 50 s, never take a way: every bucket is left bit
// for bit as it was (same flows, same backends, same seen), each SYN is
// forwarded to the table's pick and counted unrecorded, and real flows in
// those buckets keep going to their recorded backends.
TEST_F(ConnTableTest, ASynFloodNeverTakesTheWaysOfRecentConfirmedFlows) {
  constexpr std::uint32_t spoofed_flows = 256;
  constexpr int rounds = 2;
  constexpr std::size_t real_flows = 4;
  std::vector<Client> spoofed;
  std::map<std::uint32_t, ballast_conn_bucket> buckets;  // as written
  std::uint16_t n = 1;
  for (std::uint32_t i = 0; spoofed.size() < spoofed_flows; i++) {
    const Client c{
        Ipv4Addr{{10, 207, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)}},
        static_cast<std::uint16_t>(1024 + i * 7)};
    const ConnPlace place = conn_place(c.flow());
    if (buckets.count(place.bucket_a) || buckets.count(place.bucket_b)) continue;
    for (const std::uint32_t index : {place.bucket_a, place.bucket_b}) {
      ballast_conn_bucket& bucket = buckets[index];
      for (ballast_conn_way& way : bucket.way) {
        way = confirmed(n, (n % 51) * s_ns);
        n++;
      }
    }
    spoofed.push_back(c);
  }
  // Real flows in the first ways of the first spoofed flows' first buckets,
  // recorded on a backend the table would not give them.
  std::vector<Client> real;
  for (std::size_t k = 0; k < real_flows; k++) {
    const std::uint32_t index = conn_place(spoofed[k].flow()).bucket_a;
    const Client c = clients_with_first_bucket(index, 1).front();
    const std::uint32_t recorded = other_backend(table_pick(c.flow()));
    buckets[index].way[0] = ballast_conn_way{.tag = conn_place(c.flow()).fingerprint | recorded,
                                             .seen = seen_ago(1 * s_ns),
                                             .flags = BALLAST_CONN_F_CONFIRMED};
    real.push_back(c);
  }
  for (const auto& [index, bucket] : buckets) lb_.set_conn_bucket(index, bucket);

  for (int round = 0; round < rounds; round++) {
    for (std::size_t i = 0; i < spoofed.size(); i++) {
      const Client& c = spoofed[i];
      expect_sent_to(c.tcp(tcp_syn), table_pick(c.flow()),
                     "round " + std::to_string(round) + ", spoofed SYN " + std::to_string(i));
      if (HasFailure()) return;
    }
  }

  for (const auto& [index, bucket] : buckets)
    ASSERT_TRUE(buckets_equal(bucket, lb_.conn_bucket(index))) << "bucket " << index;
  for (const Client& c : spoofed) ASSERT_FALSE(lb_.conn(c.flow()).has_value()) << "spoofed way";
  expect_conn_counters({.unrecorded = spoofed_flows * rounds}, "after the flood");
  for (std::size_t k = 0; k < real.size(); k++) {
    const Client& c = real[k];
    const std::optional<ConnEntry> conn = lb_.conn(c.flow());
    ASSERT_TRUE(conn.has_value()) << "real flow " << k;
    expect_sent_to(c.tcp(tcp_ack | tcp_psh).payload("more"), conn->backend_id,
                   "real flow " + std::to_string(k) + " after the flood");
    EXPECT_NE(conn->backend_id, table_pick(c.flow())) << "real flow " << k << ": its own backend";
  }
}

// --- Touching ----------------------------------------------------------------------

// A packet rewrites its way's seen only when it is older than
// BALLAST_CONN_TOUCH_NS (0.5 s): a write per packet would dirty the line on
// every CPU the flow visits.
TEST_F(ConnTableTest, SeenIsRefreshedOnlyWhenOlderThanTheTouchInterval) {
  static_assert(BALLAST_CONN_TOUCH_NS == 500 * ms_ns, "the ages below are around 0.5 s");
  const ballast_flow_key flow = client_one.flow();
  const std::uint32_t pick = table_pick(flow);

  lb_.set_conn(flow, pick, BALLAST_CONN_F_CONFIRMED, coarse_now_ns() - 200 * ms_ns);
  const std::uint32_t recent = lb_.conn(flow).value().seen;
  expect_sent_to(client_one.tcp(tcp_ack), pick, "ACK, seen 0.2 s ago");
  EXPECT_EQ(lb_.conn(flow).value().seen, recent) << "seen 0.2 s ago: left alone";

  lb_.set_conn(flow, pick, BALLAST_CONN_F_CONFIRMED, coarse_now_ns() - 2 * s_ns);
  const std::uint32_t before = now_units();
  expect_sent_to(client_one.tcp(tcp_ack), pick, "ACK, seen 2 s ago");
  const std::optional<ConnEntry> conn = lb_.conn(flow);
  ASSERT_TRUE(conn.has_value());
  EXPECT_GE(conn->seen, before) << "seen 2 s ago: refreshed to now";
  EXPECT_LE(conn->seen, now_units()) << "seen 2 s ago: refreshed to now";
  EXPECT_EQ(conn->flags, BALLAST_CONN_F_CONFIRMED) << "flags";
  EXPECT_EQ(conn->backend_id, pick) << "backend_id";
}

// --- A backend that left -----------------------------------------------------------

// A confirmed flow whose backend left takes the table's pick, rewritten
// into its own way (here in its second bucket, though its first has an
// empty way), still confirmed, seen now; no new placement is counted.
TEST_F(ConnTableTest, AFlowWhoseBackendLeftIsReplacedInItsOwnWay) {
  const ballast_flow_key flow = client_one.flow();
  const ConnPlace place = conn_place(flow);
  const std::uint32_t left = table_pick(flow);
  const std::uint32_t moved = other_backend(left);
  const ballast_conn_bucket a{
      {confirmed(1, 1 * s_ns), confirmed(2, 2 * s_ns), empty_way, confirmed(3, 3 * s_ns)}};
  const ballast_conn_bucket b{{confirmed(4, 4 * s_ns),
                               ballast_conn_way{.tag = place.fingerprint | left,
                                                .seen = seen_ago(3 * s_ns),
                                                .flags = BALLAST_CONN_F_CONFIRMED},
                               empty_way, empty_way}};
  lb_.set_conn_bucket(place.bucket_a, a);
  lb_.set_conn_bucket(place.bucket_b, b);
  ballast_backend slot = lb_.backend(left);
  slot.flags &= ~BALLAST_BACKEND_F_ACTIVE;
  lb_.set_backend(left, slot);
  lb_.install_maglev_table(vip_web, std::vector<std::uint32_t>(BALLAST_MAGLEV_SIZE, moved));

  const std::uint32_t before = now_units();
  expect_sent_to(client_one.tcp(tcp_ack), moved, "ACK after its backend left");
  const std::optional<ConnEntry> conn = lb_.conn(flow);
  ASSERT_TRUE(conn.has_value());
  EXPECT_EQ(conn->bucket, place.bucket_b) << "its own way's bucket";
  EXPECT_EQ(conn->way, 1) << "its own way";
  EXPECT_EQ(conn->backend_id, moved) << "backend_id";
  EXPECT_EQ(conn->flags, BALLAST_CONN_F_CONFIRMED) << "flags kept";
  EXPECT_GE(conn->seen, before) << "seen: now";
  EXPECT_TRUE(buckets_equal(a, lb_.conn_bucket(place.bucket_a))) << "first bucket untouched";
  expect_conn_counters({}, "a re-placement is no new way");
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u) << "vip_stats.new_flows: re-selected";
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 0u) << "vip_fleet_stats.pickups";
  expect_sent_to(client_one.tcp(tcp_ack), moved, "next ACK");
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u) << "the next ACK found its way";
}

// --- IPv6 ---------------------------------------------------------------------------

// An IPv6 flow is recorded in the way its 128-bit addresses hash to, is
// confirmed by its next packet, and follows its way thereafter.
TEST_F(ConnTableTest, Ipv6FlowsUseTheTable) {
  const ballast_flow_key flow =
      flow_key_v6(v6_client_one, port_client_one, v6_vip_one, port_http, ipproto_tcp);
  const ConnPlace place = conn_place(flow);
  const std::uint32_t pick = web6_backend_ids[maglev_index(flow) % std::size(web6_backend_ids)];
  const std::uint32_t other =
      pick == web6_backend_ids[0] ? web6_backend_ids[1] : web6_backend_ids[0];
  auto packet = [](std::uint8_t flags) {
    return PacketBuilder()
        .eth(mac_router, mac_lb)
        .ipv6(v6_client_one, v6_vip_one)
        .tcp(port_client_one, port_http, flags);
  };

  expect_sent_to(packet(tcp_syn), pick, "IPv6 SYN");
  std::optional<ConnEntry> conn = lb_.conn(flow);
  ASSERT_TRUE(conn.has_value()) << "the SYN's way";
  EXPECT_EQ(conn->bucket, place.bucket_a) << "its first bucket";
  EXPECT_EQ(conn->way, 0) << "way";
  EXPECT_EQ(conn->backend_id, pick) << "backend_id";
  EXPECT_EQ(conn->flags, 0u) << "unconfirmed";
  expect_conn_counters({.recorded = 1}, "after the SYN");

  expect_sent_to(packet(tcp_ack), pick, "IPv6 ACK");
  EXPECT_EQ(lb_.conn(flow).value().flags, BALLAST_CONN_F_CONFIRMED) << "confirmed by the ACK";
  lb_.set_conn(flow, other);
  expect_sent_to(packet(tcp_ack), other, "IPv6 ACK after its way changed");
  EXPECT_EQ(lb_.vip_counters(vip_web6).new_flows, 1u) << "vip_stats.new_flows: the SYN only";
}

// --- Frames to another MAC ---------------------------------------------------------

// A frame whose destination is not egress 0's MAC (flooded by a switch, or
// seen in promiscuous mode) is the kernel's, unchanged: before any lookup,
// so a flow with a way is passed too and its way is left alone.
TEST_F(ConnTableTest, FramesToAnotherMacArePassedUnchanged) {
  const ballast_flow_key flow = client_one.flow();
  lb_.set_conn(flow, table_pick(flow), 0, coarse_now_ns() - 2 * s_ns);
  const ballast_conn_bucket bucket = lb_.conn_bucket(conn_place(flow).bucket_a);
  struct Case {
    const char* what;
    MacAddr dst;
    std::uint8_t flags;
  };
  const Case cases[] = {
      {"SYN to another host's MAC", mac_other_host, tcp_syn},
      {"ACK to another host's MAC", mac_other_host, tcp_ack},
      {"SYN to our MAC but its first byte", mac_lb_but_first_byte, tcp_syn},
      {"ACK to our MAC but its last byte", mac_lb_but_last_byte, tcp_ack},
      {"SYN to broadcast", mac_broadcast, tcp_syn},
      {"ACK to an IPv6 multicast MAC", mac_ipv6_all_nodes, tcp_ack},
  };
  std::uint64_t bytes = 0;
  for (const Case& c : cases) {
    PacketBuilder packet = client_one.tcp(c.flags);
    const Bytes in = packet.eth(mac_router, c.dst).build();
    const RunResult r = lb_.run(in);
    ASSERT_EQ(r.error, 0) << c.what << ": bpf_prog_test_run_opts";
    EXPECT_STREQ(action_name(r.action), "XDP_PASS") << c.what << ": verdict";
    EXPECT_EQ(frame_mismatch(in, r.frame), std::nullopt) << c.what << ": output frame";
    bytes += in.size();
  }
  const ballast_reason_counters passed = lb_.reason_counters(BALLAST_REASON_PASS_NOT_OUR_MAC);
  EXPECT_EQ(passed.packets, std::size(cases)) << "reason_stats[pass_not_our_mac].packets";
  EXPECT_EQ(passed.bytes, bytes) << "reason_stats[pass_not_our_mac].bytes";
  EXPECT_EQ(lb_.vip_counters(vip_web).packets, 0u) << "vip_stats.packets";
  EXPECT_TRUE(buckets_equal(bucket, lb_.conn_bucket(conn_place(flow).bucket_a)))
      << "the flow's way: not confirmed, not touched";
  expect_conn_counters({}, "nothing placed");
}

// Until egress 0 is set (ifindex 0) there is no MAC of ours to compare
// with: every frame is ours. Here the backends are behind egress 1, so
// frames to another MAC and to broadcast are forwarded (XDP_REDIRECT).
TEST_F(ConnTableTest, WithoutEgressZeroEveryFrameIsOurs) {
  ballast_egress unset = default_egress();
  unset.ifindex = 0;
  lb_.set_egress(0, unset);
  ballast_egress second = default_egress(mac_lb_second, v4_lb_second);
  second.ifindex = 1;  // lo: any existing device makes a valid devmap entry
  lb_.set_egress(1, second);
  lb_.set_tx_port(1, second.ifindex);
  for (const std::uint32_t id : web_backend_ids) {
    ballast_backend slot = lb_.backend(id);
    slot.egress = 1;
    lb_.set_backend(id, slot);
  }
  const std::uint32_t pick = table_pick(client_one.flow());
  for (const MacAddr& dst : {mac_other_host, mac_broadcast}) {
    PacketBuilder packet = client_one.tcp(tcp_syn);
    packet.eth(mac_router, dst);
    PacketBuilder expected = packet;
    expected.eth(mac_lb_second, backend_mac(pick));
    const RunResult r = lb_.run(packet.build());
    ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
    EXPECT_STREQ(action_name(r.action), "XDP_REDIRECT") << "verdict";
    EXPECT_EQ(frame_mismatch(expected.build(), r.frame), std::nullopt) << "output frame";
  }
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_PASS_NOT_OUR_MAC).packets, 0u)
      << "reason_stats[pass_not_our_mac].packets";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 2u)
      << "reason_stats[tx_forwarded].packets";
}

}  // namespace
}  // namespace ballast::test
