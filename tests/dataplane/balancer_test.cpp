// balancer_test.cpp: the balancer's real XDP entry point, loaded into the
// kernel and run by BPF_PROG_TEST_RUN on frames built field by field.
//
// Every test starts from the same small world (seed_world): a TCP VIP with
// three backends, a UDP VIP with two, and a VIP whose table is empty. Single
// packets are table rows (BalancerPacketTest: description, input, verdict,
// output bytes, reason); behaviour over several packets (Maglev consistency,
// the connection table) has its own tests below.
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <sched.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <ostream>
#include <system_error>

#include "balancer_fixture.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

// --- The world ------------------------------------------------------------------

constexpr std::uint32_t vip_web = 1;      // v4_vip_one:80/tcp
constexpr std::uint32_t vip_dns = 2;      // v4_vip_one:53/udp
constexpr std::uint32_t vip_drained = 3;  // v4_vip_two:80/tcp, every entry BALLAST_NO_BACKEND

constexpr std::uint32_t web_backend_one = 10;
constexpr std::uint32_t web_backend_two = 11;
constexpr std::uint32_t web_backend_three = 12;
constexpr std::uint32_t dns_backend_one = 20;
constexpr std::uint32_t dns_backend_two = 21;

struct WorldBackend {
  std::uint32_t id;
  Ipv4Addr addr;
  MacAddr mac;
  std::uint32_t vip_id;
};

// Slots are per (VIP, backend address): backend one serves both VIPs.
constexpr WorldBackend world_backends[] = {
    {web_backend_one, v4_backend_one, mac_backend_one, vip_web},
    {web_backend_two, v4_backend_two, mac_backend_two, vip_web},
    {web_backend_three, v4_backend_three, mac_backend_three, vip_web},
    {dns_backend_one, v4_backend_one, mac_backend_one, vip_dns},
    {dns_backend_two, v4_backend_two, mac_backend_two, vip_dns},
};

constexpr std::uint32_t web_backend_ids[] = {web_backend_one, web_backend_two, web_backend_three};
constexpr std::uint32_t dns_backend_ids[] = {dns_backend_one, dns_backend_two};
constexpr std::uint32_t world_vips[] = {vip_web, vip_dns, vip_drained};

const WorldBackend& world_backend(std::uint32_t id) {
  for (const WorldBackend& backend : world_backends)
    if (backend.id == id) return backend;
  throw std::out_of_range("no world backend " + std::to_string(id));
}

// The Maglev table each VIP starts with.
const std::vector<std::uint32_t>& world_table(std::uint32_t vip_id) {
  static const std::map<std::uint32_t, std::vector<std::uint32_t>> tables{
      {vip_web, round_robin_table(web_backend_ids)},
      {vip_dns, round_robin_table(dns_backend_ids)},
      {vip_drained, round_robin_table({})},
  };
  return tables.at(vip_id);
}

void seed_world(BalancerHarness& lb) {
  lb.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), vip_web);
  lb.add_vip(vip_key_v4(v4_vip_one, port_dns, ipproto_udp), vip_dns);
  lb.add_vip(vip_key_v4(v4_vip_two, port_http, ipproto_tcp), vip_drained);
  for (const WorldBackend& backend : world_backends)
    lb.set_backend(backend.id, backend_slot_v4(backend.addr, backend.mac, backend.vip_id));
  for (std::uint32_t vip_id : world_vips) lb.install_maglev_table(vip_id, world_table(vip_id));
}

// What the program must pick for a new flow: the table entry at
// jhash(flow) % size, computed here from the same bpf/jhash.h.
std::uint32_t expected_backend(std::uint32_t vip_id, const ballast_flow_key& flow) {
  return world_table(vip_id).at(maglev_index(flow));
}

// --- Packets --------------------------------------------------------------------

// Header sizes without options. ETH_HLEN is also the shortest frame
// BPF_PROG_TEST_RUN accepts.
constexpr std::size_t eth_header_len = 14;
constexpr std::size_t ipv4_header_len = 20;
constexpr std::size_t tcp_header_len = 20;
constexpr std::size_t udp_header_len = 8;

// A frame as it reaches the balancer: from the router, to our MAC.
PacketBuilder from_router() { return PacketBuilder().eth(mac_router, mac_lb); }

PacketBuilder web_tcp(std::uint8_t flags, std::uint16_t client_port = port_client_one) {
  return from_router().ipv4(v4_client_one, v4_vip_one).tcp(client_port, port_http, flags);
}

PacketBuilder dns_udp() {
  return from_router()
      .ipv4(v4_client_one, v4_vip_one)
      .udp(port_client_one, port_dns)
      .payload("query");
}

ballast_flow_key web_flow(std::uint16_t client_port = port_client_one) {
  return flow_key_v4(v4_client_one, client_port, v4_vip_one, port_http, ipproto_tcp);
}

::testing::AssertionResult frames_equal(std::span<const std::uint8_t> expected,
                                        std::span<const std::uint8_t> actual) {
  if (auto mismatch = frame_mismatch(expected, actual))
    return ::testing::AssertionFailure() << *mismatch;
  return ::testing::AssertionSuccess();
}

// --- Fixtures -------------------------------------------------------------------

class BalancerTest : public ::testing::Test {
 protected:
  BalancerTest() { seed_world(lb_); }

  // Runs @frame once; the syscall itself must succeed.
  RunResult run_ok(const Bytes& frame, const std::string& label) {
    RunResult result = lb_.run(frame);
    EXPECT_EQ(result.error, 0) << label
                               << ": bpf_prog_test_run_opts: " << std::strerror(-result.error);
    return result;
  }

  // Sends @frame to the web VIP, expecting it forwarded; returns the web
  // backend whose MAC it was sent to.
  std::uint32_t web_backend_chosen(const Bytes& frame, const std::string& label) {
    const RunResult result = run_ok(frame, label);
    EXPECT_STREQ(action_name(result.action), "XDP_TX") << label << ": verdict";
    const MacAddr dst = dst_mac_of(result.frame);
    for (std::uint32_t id : web_backend_ids)
      if (world_backend(id).mac == dst) return id;
    ADD_FAILURE() << label << ": destination MAC is no web backend's:\n" << hex_dump(result.frame);
    return BALLAST_NO_BACKEND;
  }

  std::uint32_t total_reason_packets() {
    std::uint64_t total = 0;
    for (std::uint32_t r = 0; r < BALLAST_REASON_COUNT; r++)
      total += lb_.reason_counters(static_cast<ballast_reason>(r)).packets;
    return static_cast<std::uint32_t>(total);
  }

  BalancerHarness lb_;
};

// --- Single packets, one row each ----------------------------------------------

struct Forwarded {
  std::uint32_t vip_id;
  std::uint32_t backend_id;
  ballast_flow_key flow;
};

struct PacketCase {
  std::string description;
  Bytes input;
  std::uint32_t verdict;
  Bytes expected_output;
  ballast_reason reason;
  std::optional<Forwarded> forwarded;  // set for XDP_TX rows
};

void PrintTo(const PacketCase& row, std::ostream* os) { *os << row.description; }

// A row whose packet goes out XDP_TX with only its MACs rewritten: to the
// backend the VIP's table gives @flow, from the balancer.
PacketCase forwarded_row(std::string description, PacketBuilder packet, std::uint32_t vip_id,
                         const ballast_flow_key& flow) {
  const std::uint32_t backend_id = expected_backend(vip_id, flow);
  Bytes input = packet.build();
  Bytes output = packet.eth(mac_lb, world_backend(backend_id).mac).build();
  return {std::move(description),
          std::move(input),
          XDP_TX,
          std::move(output),
          BALLAST_REASON_TX_FORWARDED,
          Forwarded{vip_id, backend_id, flow}};
}

// A row whose packet leaves byte for byte as it came (passed or dropped).
PacketCase unchanged_row(std::string description, const PacketBuilder& packet,
                         std::uint32_t verdict, ballast_reason reason) {
  Bytes input = packet.build();
  Bytes output = input;
  return {std::move(description), std::move(input), verdict,
          std::move(output),      reason,           std::nullopt};
}

// IPv4 options: three NOPs and an end-of-list, one 4-byte word.
constexpr std::uint8_t ip_option_nop = 1;
constexpr std::uint8_t ip_option_end = 0;
constexpr std::uint8_t nop_options[] = {ip_option_nop, ip_option_nop, ip_option_nop, ip_option_end};

std::vector<PacketCase> forwarding_rows() {
  return {
      forwarded_row("TCP SYN to the web VIP", web_tcp(tcp_syn), vip_web, web_flow()),
      forwarded_row("TCP ACK with data of a flow never seen",
                    web_tcp(tcp_ack | tcp_psh, port_client_two).payload("GET /"), vip_web,
                    web_flow(port_client_two)),
      forwarded_row("UDP datagram to the DNS VIP", dns_udp(), vip_dns,
                    flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_dns, ipproto_udp)),
      forwarded_row("TCP SYN with IPv4 options", web_tcp(tcp_syn).ip_options(nop_options), vip_web,
                    web_flow()),
      // Ethernet pads short frames to 60 bytes: the IPv4 total length is
      // then shorter than the frame, which is allowed.
      forwarded_row("TCP SYN in a frame with Ethernet padding", web_tcp(tcp_syn).eth_padding(6),
                    vip_web, web_flow()),
  };
}

std::vector<PacketCase> pass_rows() {
  return {
      unchanged_row(
          "TCP to an address that is no VIP",
          from_router().ipv4(v4_client_one, v4_other_host).tcp(port_client_one, port_http, tcp_syn),
          XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
      unchanged_row(
          "TCP to a VIP address on a port it does not serve",
          from_router().ipv4(v4_client_one, v4_vip_one).tcp(port_client_one, port_https, tcp_syn),
          XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
      unchanged_row("UDP to the web VIP's TCP port",
                    from_router().ipv4(v4_client_one, v4_vip_one).udp(port_client_one, port_http),
                    XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
      // ICMP that is not an error about a VIP's flow is the kernel's.
      unchanged_row(
          "ICMP echo request to a VIP address",
          from_router().ipv4(v4_client_one, v4_vip_one).icmp_echo_request(7, 1).payload("ping"),
          XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW),
      unchanged_row("ARP request for a VIP address, unicast to us",
                    PacketBuilder()
                        .eth(mac_router, mac_lb)
                        .arp_request(mac_router, v4_client_one, v4_vip_one),
                    XDP_PASS, BALLAST_REASON_PASS_NOT_IP),
      // Frames to another MAC are never forwarded: checked before anything
      // else, ARP included (conn_table_test.cpp has the rest).
      unchanged_row("ARP request for a VIP address, broadcast",
                    PacketBuilder()
                        .eth(mac_router, mac_broadcast)
                        .arp_request(mac_router, v4_client_one, v4_vip_one),
                    XDP_PASS, BALLAST_REASON_PASS_NOT_OUR_MAC),
      unchanged_row(
          "IPv6 TCP SYN to an address that is no VIP here",
          from_router().ipv6(v6_client_one, v6_vip_one).tcp(port_client_one, port_http, tcp_syn),
          XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
      unchanged_row("First IPv4 fragment of a TCP segment to the web VIP",
                    web_tcp(tcp_ack).payload("first part").ip_fragment(0, true), XDP_PASS,
                    BALLAST_REASON_PASS_IP_FRAGMENT),
      // A later fragment carries no transport header, only the protocol number.
      unchanged_row("Later IPv4 fragment to the web VIP",
                    from_router()
                        .ipv4(v4_client_one, v4_vip_one)
                        .ip_protocol(ipproto_tcp)
                        .ip_fragment(1480, false)
                        .payload("rest of the segment"),
                    XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT),
  };
}

std::vector<PacketCase> drop_rows() {
  return {
      unchanged_row("IPv4 IHL 4, below the 5-word minimum", web_tcp(tcp_syn).ip_ihl(4), XDP_DROP,
                    BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("IPv4 IHL 15, header past the end of the frame", web_tcp(tcp_syn).ip_ihl(15),
                    XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("Version 6 in a header under the IPv4 EtherType",
                    web_tcp(tcp_syn).ip_version(6), XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("IPv4 total length one byte longer than the frame",
                    web_tcp(tcp_syn).ip_total_length(ipv4_header_len + tcp_header_len + 1),
                    XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("IPv4 total length shorter than its header",
                    web_tcp(tcp_syn).ip_total_length(19), XDP_DROP,
                    BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("Ethernet header only, IPv4 EtherType", from_router().ethertype(ethertype_ipv4),
                    XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged_row("TCP data offset 4, below the 5-word minimum", web_tcp(tcp_syn).tcp_doff(4),
                    XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged_row("TCP data offset 15, options past the end of the frame",
                    web_tcp(tcp_syn).tcp_doff(15), XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged_row("TCP header of 19 bytes in a well-formed IPv4 packet",
                    web_tcp(tcp_syn).cut_l4_to(tcp_header_len - 1), XDP_DROP,
                    BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged_row("UDP length 7, shorter than its header",
                    dns_udp().udp_length(udp_header_len - 1), XDP_DROP,
                    BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged_row("UDP header of 7 bytes in a well-formed IPv4 packet",
                    dns_udp().cut_l4_to(udp_header_len - 1), XDP_DROP,
                    BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged_row(
          "TCP SYN to a VIP whose table has no backend",
          from_router().ipv4(v4_client_one, v4_vip_two).tcp(port_client_one, port_http, tcp_syn),
          XDP_DROP, BALLAST_REASON_DROP_NO_BACKEND),
  };
}

class BalancerPacketTest : public BalancerTest, public ::testing::WithParamInterface<PacketCase> {};

TEST_P(BalancerPacketTest, VerdictOutputAndCounters) {
  const PacketCase& row = GetParam();
  const RunResult result = lb_.run(row.input);
  ASSERT_EQ(result.error, 0) << "bpf_prog_test_run_opts: " << std::strerror(-result.error);

  EXPECT_STREQ(action_name(result.action), action_name(row.verdict)) << "verdict";
  EXPECT_TRUE(frames_equal(row.expected_output, result.frame)) << "output frame";

  const ballast_reason_counters reason = lb_.reason_counters(row.reason);
  EXPECT_EQ(reason.packets, 1u) << "reason_stats[" << reason_name(row.reason) << "].packets";
  EXPECT_EQ(reason.bytes, row.input.size())
      << "reason_stats[" << reason_name(row.reason) << "].bytes";
  EXPECT_EQ(total_reason_packets(), 1u)
      << "reason_stats summed over every reason: one exit, one count";

  if (!row.forwarded) {
    for (std::uint32_t vip_id : world_vips)
      EXPECT_EQ(lb_.vip_counters(vip_id).packets, 0u) << "vip_stats[" << vip_id << "].packets";
    return;
  }
  const Forwarded& fwd = *row.forwarded;
  const ballast_traffic_counters vip = lb_.vip_counters(fwd.vip_id);
  EXPECT_EQ(vip.packets, 1u) << "vip_stats[" << fwd.vip_id << "].packets";
  EXPECT_EQ(vip.bytes, row.input.size()) << "vip_stats[" << fwd.vip_id << "].bytes";
  EXPECT_EQ(vip.new_flows, 1u) << "vip_stats[" << fwd.vip_id << "].new_flows";
  const ballast_traffic_counters backend = lb_.backend_counters(fwd.backend_id);
  EXPECT_EQ(backend.packets, 1u) << "backend_stats[" << fwd.backend_id << "].packets";
  EXPECT_EQ(backend.bytes, row.input.size()) << "backend_stats[" << fwd.backend_id << "].bytes";
  EXPECT_EQ(backend.new_flows, 1u) << "backend_stats[" << fwd.backend_id << "].new_flows";
  const std::optional<ConnEntry> conn = lb_.conn(fwd.flow);
  ASSERT_TRUE(conn.has_value()) << "conn_table entry for the flow";
  EXPECT_EQ(conn->backend_id, fwd.backend_id) << "conn_table backend_id";
  EXPECT_EQ(conn->flags, 0u) << "conn_table flags: a flow's first packet leaves it unconfirmed";
  // seen is CLOCK_MONOTONIC_COARSE in BALLAST_CONN_SEEN_SHIFT units: set on a
  // new flow, and not in the future (20 ms of slack for the clock's tick).
  const std::uint32_t now_units =
      static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT);
  const std::uint32_t slack_units =
      static_cast<std::uint32_t>(20000000ull >> BALLAST_CONN_SEEN_SHIFT);
  EXPECT_GT(conn->seen, 0u) << "conn_table seen set on a new flow";
  EXPECT_LE(conn->seen, now_units + slack_units) << "conn_table seen is not in the future";
  EXPECT_GE(conn->seen + 1000u, now_units) << "conn_table seen is the time of this packet (1 s)";
}

std::string row_name(const ::testing::TestParamInfo<PacketCase>& info) {
  std::string name;
  for (char c : info.param.description) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      name += c;
    else if (!name.empty() && name.back() != '_')
      name += '_';
  }
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

INSTANTIATE_TEST_SUITE_P(Forward, BalancerPacketTest, ::testing::ValuesIn(forwarding_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(Pass, BalancerPacketTest, ::testing::ValuesIn(pass_rows()), row_name);
INSTANTIATE_TEST_SUITE_P(Drop, BalancerPacketTest, ::testing::ValuesIn(drop_rows()), row_name);

// --- The packet builder itself ------------------------------------------------------

// The worked example of RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to
// ddf2 (after folding), so the checksum is its complement.
TEST(PacketBuilderTest, ChecksumMatchesRfc1071Example) {
  constexpr std::uint8_t words[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum_fold(checksum_add(0, words)), static_cast<std::uint16_t>(~0xddf2u))
      << "checksum";
}

// A header holding a correct checksum sums to all ones, i.e. folds to zero.
TEST(PacketBuilderTest, BuiltFrameCarriesValidChecksums) {
  const Bytes frame = dns_udp().build();
  const std::span ip_header = std::span(frame).subspan(eth_header_len, ipv4_header_len);
  EXPECT_EQ(checksum_fold(checksum_add(0, ip_header)), 0) << "IPv4 header checksum";

  const std::span udp = std::span(frame).subspan(eth_header_len + ipv4_header_len);
  Bytes pseudo_header(v4_client_one.octets.begin(), v4_client_one.octets.end());
  pseudo_header.insert(pseudo_header.end(), v4_vip_one.octets.begin(), v4_vip_one.octets.end());
  pseudo_header.insert(pseudo_header.end(),
                       {0, ipproto_udp, 0, static_cast<std::uint8_t>(udp.size())});
  EXPECT_EQ(checksum_fold(checksum_add(checksum_add(0, pseudo_header), udp)), 0) << "UDP checksum";
}

// --- Frames the kernel accepts ------------------------------------------------------

// BPF_PROG_TEST_RUN refuses XDP input shorter than ETH_HLEN (14 bytes) with
// EINVAL before the program runs (bpf_test_init() in net/bpf/test_run.c), so
// drop_malformed_eth cannot be reached from a test; it guards frames a
// driver hands over, which this harness cannot make.
TEST_F(BalancerTest, TestRunRefusesFramesShorterThanEthernetHeader) {
  const Bytes frame = web_tcp(tcp_syn).build();
  for (std::size_t len = 0; len < eth_header_len; len++) {
    const RunResult result = lb_.run(std::span(frame).first(len));
    EXPECT_EQ(result.error, -EINVAL) << "bpf_prog_test_run_opts on " << len << " bytes";
  }
  EXPECT_EQ(total_reason_packets(), 0u) << "reason_stats: the program never ran";
  EXPECT_EQ(lb_.run(std::span(frame).first(eth_header_len)).error, 0)
      << "bpf_prog_test_run_opts on 14 bytes";
}

// --- Truncation ----------------------------------------------------------------------

// Where a cut at @len bytes lands in an Ethernet/IPv4/L4 frame, for labels.
std::string cut_label(std::size_t len, std::size_t l4_header_len) {
  constexpr std::size_t eth_end = eth_header_len;
  constexpr std::size_t ip_end = eth_end + ipv4_header_len;
  const char* where = len == eth_end                  ? "at the end of the Ethernet header"
                      : len < ip_end                  ? "inside the IPv4 header"
                      : len == ip_end                 ? "at the end of the IPv4 header"
                      : len < ip_end + l4_header_len  ? "inside the transport header"
                      : len == ip_end + l4_header_len ? "at the end of the transport header"
                                                      : "inside the payload";
  return "cut to " + std::to_string(len) + " bytes (" + where + ")";
}

// A frame chopped anywhere (as a short read or a broken driver would) keeps
// an IPv4 total length that now runs past its end: the packet is dropped as
// malformed IPv4 wherever the cut falls, and never forwarded. Cuts shorter
// than an Ethernet header never reach the program (see above).
void expect_every_cut_dropped(BalancerHarness& lb, const Bytes& frame, std::size_t l4_header_len) {
  for (std::size_t len = 0; len < frame.size(); len++) {
    const std::string label = "cut to " + std::to_string(len) + " bytes";
    const RunResult result = lb.run(std::span(frame).first(len));
    if (len < eth_header_len) {
      EXPECT_EQ(result.error, -EINVAL) << label << ": bpf_prog_test_run_opts refuses it";
      continue;
    }
    const std::string where = cut_label(len, l4_header_len);
    ASSERT_EQ(result.error, 0) << where << ": bpf_prog_test_run_opts";
    EXPECT_STREQ(action_name(result.action), "XDP_DROP") << where << ": verdict";
    EXPECT_TRUE(frames_equal(std::span(frame).first(len), result.frame))
        << where << ": output frame";
  }
  const std::uint64_t cuts_run = frame.size() - eth_header_len;
  EXPECT_EQ(lb.reason_counters(BALLAST_REASON_DROP_MALFORMED_IPV4).packets, cuts_run)
      << "reason_stats[drop_malformed_ipv4].packets";
  EXPECT_EQ(lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 0u)
      << "reason_stats[tx_forwarded].packets";
}

TEST_F(BalancerTest, TcpFrameCutAtEveryByteIsNeverForwarded) {
  expect_every_cut_dropped(lb_, web_tcp(tcp_ack | tcp_psh).payload("GET / HTTP/1.0").build(),
                           tcp_header_len);
}

TEST_F(BalancerTest, UdpFrameCutAtEveryByteIsNeverForwarded) {
  expect_every_cut_dropped(lb_, dns_udp().build(), udp_header_len);
}

// A transport header cut short inside an IPv4 packet whose lengths agree
// with the frame: the IP layer is fine, the TCP/UDP parser must refuse it.
TEST_F(BalancerTest, TransportHeaderCutInsideWellFormedIpIsDropped) {
  for (std::size_t kept = 0; kept < tcp_header_len; kept++) {
    const RunResult result = run_ok(web_tcp(tcp_syn).cut_l4_to(kept).build(), "TCP");
    EXPECT_STREQ(action_name(result.action), "XDP_DROP")
        << "TCP header cut to " << kept << " bytes: verdict";
  }
  for (std::size_t kept = 0; kept < udp_header_len; kept++) {
    const RunResult result = run_ok(dns_udp().cut_l4_to(kept).build(), "UDP");
    EXPECT_STREQ(action_name(result.action), "XDP_DROP")
        << "UDP header cut to " << kept << " bytes: verdict";
  }
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_DROP_MALFORMED_TCP).packets, tcp_header_len)
      << "reason_stats[drop_malformed_tcp].packets";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_DROP_MALFORMED_UDP).packets, udp_header_len)
      << "reason_stats[drop_malformed_udp].packets";
}

// --- Maglev selection ------------------------------------------------------------------

// SYNs always consult the table and ACKs the connection table; both must
// land on the entry at jhash(flow) % 65537, every time.
TEST_F(BalancerTest, SameFlowAlwaysGetsItsTableEntry) {
  constexpr int rounds = 50;
  const std::uint32_t expected = expected_backend(vip_web, web_flow());
  for (int i = 0; i < rounds; i++) {
    const std::string label = "round " + std::to_string(i);
    EXPECT_EQ(web_backend_chosen(web_tcp(tcp_syn).build(), label + " SYN"), expected)
        << label << " SYN: backend";
    EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), label + " ACK"), expected)
        << label << " ACK: backend";
  }
  const ballast_traffic_counters backend = lb_.backend_counters(expected);
  EXPECT_EQ(backend.packets, 2u * rounds) << "backend_stats[" << expected << "].packets";
  EXPECT_EQ(backend.new_flows, static_cast<std::uint64_t>(rounds))
      << "backend_stats[" << expected << "].new_flows (one per SYN)";
}

TEST_F(BalancerTest, DifferentFlowsSpreadOverBackends) {
  constexpr std::uint16_t first_port = 10000;
  constexpr int flows = 3000;
  std::map<std::uint32_t, int> flows_per_backend;
  for (int i = 0; i < flows; i++) {
    const auto port = static_cast<std::uint16_t>(first_port + i);
    const std::string label = "client port " + std::to_string(port);
    const std::uint32_t chosen = web_backend_chosen(web_tcp(tcp_syn, port).build(), label);
    ASSERT_EQ(chosen, expected_backend(vip_web, web_flow(port))) << label << ": backend";
    flows_per_backend[chosen]++;
  }
  // Each backend owns a third of the entries; a fair hash gives each about
  // 1000 flows (binomial sd ~26), far inside these bounds.
  for (std::uint32_t id : web_backend_ids) {
    EXPECT_GT(flows_per_backend[id], flows / 4) << "flows on backend " << id;
    EXPECT_LT(flows_per_backend[id], flows * 5 / 12) << "flows on backend " << id;
    EXPECT_EQ(lb_.backend_counters(id).new_flows, static_cast<std::uint64_t>(flows_per_backend[id]))
        << "backend_stats[" << id << "].new_flows";
  }
}

// --- The connection table -------------------------------------------------------------

// A web backend other than @id (the next in the list).
std::uint32_t other_web_backend(std::uint32_t id) {
  return id == web_backend_one ? web_backend_two : web_backend_one;
}

std::vector<std::uint32_t> table_of_only(std::uint32_t backend_id) {
  return std::vector<std::uint32_t>(BALLAST_MAGLEV_SIZE, backend_id);
}

TEST_F(BalancerTest, EstablishedFlowKeepsBackendWhenTableChanges) {
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original)
      << "first ACK: backend";
  std::optional<ConnEntry> conn = lb_.conn(web_flow());
  ASSERT_TRUE(conn.has_value()) << "conn_table entry after the first packet";
  EXPECT_EQ(conn->backend_id, original) << "conn_table backend_id after the first packet";

  lb_.install_maglev_table(vip_web, table_of_only(replacement));

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK after swap"), original)
      << "ACK after the table swap stays on its backend";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u)
      << "vip_stats.new_flows after the established ACK";

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_syn).build(), "SYN after swap"), replacement)
      << "SYN after the table swap follows the new table";
  conn = lb_.conn(web_flow());
  ASSERT_TRUE(conn.has_value()) << "conn_table entry after the SYN";
  EXPECT_EQ(conn->backend_id, replacement) << "conn_table backend_id after the SYN";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 2u) << "vip_stats.new_flows after the SYN";

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK after SYN"), replacement)
      << "ACK after the SYN stays on the new backend";
}

// Removing a backend clears its ACTIVE flag and swaps in a table without
// it; its established flows must move to the new table's choice.
TEST_F(BalancerTest, FlowOnInactiveBackendReselects) {
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original)
      << "first ACK: backend";

  ballast_backend slot = lb_.backend(original);
  slot.flags &= ~BALLAST_BACKEND_F_ACTIVE;
  lb_.set_backend(original, slot);
  lb_.install_maglev_table(vip_web, table_of_only(replacement));

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK after removal"), replacement)
      << "ACK after its backend left";
  const std::optional<ConnEntry> conn = lb_.conn(web_flow());
  ASSERT_TRUE(conn.has_value()) << "conn_table entry after re-selection";
  EXPECT_EQ(conn->backend_id, replacement) << "conn_table backend_id after re-selection";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 2u)
      << "vip_stats.new_flows: the re-selection is a new flow";
  EXPECT_EQ(lb_.backend_counters(replacement).new_flows, 1u)
      << "backend_stats[replacement].new_flows";
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 1u)
      << "vip_fleet_stats.pickups: the first ACK only; a re-selection is no pick-up";
}

// A TCP packet without SYN and without an entry (a flow ECMP moved here
// from another balancer) is placed by the Maglev table and counted as a
// mid-flow pick-up; its later packets, a SYN and UDP are not.
TEST_F(BalancerTest, ATcpPacketWithoutSynOrEntryIsAMidFlowPickUp) {
  const std::uint32_t expected = expected_backend(vip_web, web_flow());
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK of a flow seen elsewhere"), expected)
      << "picked up by the same Maglev table a SYN would take";
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 1u)
      << "vip_fleet_stats.pickups after the first ACK";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u) << "a pick-up is among the new flows";
  web_backend_chosen(web_tcp(tcp_ack).build(), "second ACK");
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 1u)
      << "vip_fleet_stats.pickups after an ACK with an entry";
  web_backend_chosen(web_tcp(tcp_syn).build(), "SYN");
  EXPECT_EQ(lb_.fleet_counters(vip_web).pickups, 1u) << "vip_fleet_stats.pickups after a SYN";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 2u) << "new_flows after the SYN";
  ASSERT_STREQ(action_name(lb_.run(dns_udp().build()).action), "XDP_TX") << "UDP datagram";
  EXPECT_EQ(lb_.vip_counters(vip_dns).new_flows, 1u) << "the datagram is a new flow";
  EXPECT_EQ(lb_.fleet_counters(vip_dns).pickups, 0u)
      << "vip_fleet_stats.pickups: UDP has no SYN to tell";
}

// A slot reused for another VIP must not receive this VIP's flows.
TEST_F(BalancerTest, FlowOnSlotNowServingAnotherVipReselects) {
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original)
      << "first ACK: backend";

  ballast_backend slot = lb_.backend(original);
  slot.vip_id = vip_dns;
  lb_.set_backend(original, slot);
  lb_.install_maglev_table(vip_web, table_of_only(replacement));

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK after reuse"), replacement)
      << "ACK after its slot moved to another VIP";
}

// An established flow finds its VIP through vip_by_id (select.h,
// serving_vip), not the vips hash: make the two disagree on the mode and
// the established ACK follows vip_by_id while a SYN, which always takes the
// full path, follows vips. (ballastd never lets them disagree.)
TEST_F(BalancerTest, EstablishedFlowTakesItsVipFromVipById) {
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original);
  ballast_vip_entry entry = lb_.vip_entry(vip_web);
  ASSERT_EQ(entry.info.vip_id, vip_web) << "add_vip wrote vip_by_id";
  entry.info.flags |= BALLAST_VIP_F_ENCAP_IPIP;
  lb_.set_vip_entry(vip_web, entry);

  RunResult r = run_ok(web_tcp(tcp_ack).build(), "ACK");
  EXPECT_STREQ(action_name(r.action), "XDP_TX");
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_ENCAP_IPIP).packets, 1u)
      << "the established ACK took vip_by_id's mode";
  r = run_ok(web_tcp(tcp_syn).build(), "SYN");
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 2u)
      << "first ACK and the SYN took vips' mode (dsr)";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 2u) << "the ACK was not a new flow";
}

// A vip_by_id entry that is missing or names another key (an id reused, a
// daemon from before vip_by_id) is never used: the flow takes the vips
// path and still keeps its backend across a table change.
TEST_F(BalancerTest, StaleVipByIdEntryFallsBackAndKeepsTheFlow) {
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original);
  lb_.install_maglev_table(vip_web, table_of_only(replacement));

  ballast_vip_entry other = lb_.vip_entry(vip_web);
  other.key.port = static_cast<std::uint16_t>(other.key.port + 1);
  other.info.flags |= BALLAST_VIP_F_ENCAP_GUE;
  lb_.set_vip_entry(vip_web, other);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK, id names another key"), original);

  lb_.set_vip_entry(vip_web, ballast_vip_entry{});
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK, no vip_by_id entry"), original);
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 3u) << "all dsr";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u) << "one flow, never re-selected";
}

// --- One table for every CPU -------------------------------------------------------

// Runs the calling thread on @cpu until destroyed. BPF_PROG_TEST_RUN runs
// the program on the caller's CPU.
class PinnedToCpu {
 public:
  explicit PinnedToCpu(int cpu) {
    if (sched_getaffinity(0, sizeof(saved_), &saved_) != 0)
      throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof(one), &one) != 0)
      throw std::system_error(errno, std::generic_category(),
                              "sched_setaffinity(CPU " + std::to_string(cpu) + ")");
  }
  ~PinnedToCpu() { sched_setaffinity(0, sizeof(saved_), &saved_); }
  PinnedToCpu(const PinnedToCpu&) = delete;
  PinnedToCpu& operator=(const PinnedToCpu&) = delete;

 private:
  cpu_set_t saved_;
};

// The CPUs this test may run on, lowest first.
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0)
    throw std::system_error(errno, std::generic_category(), "sched_getaffinity");
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  return cpus;
}

// Nothing answers for the table: an established packet reads its way every
// time, so a way rewritten behind the program's back (as another writer
// would) is followed by the very next packet.
TEST_F(BalancerTest, EveryEstablishedPacketReadsTheTable) {
  PinnedToCpu pinned(allowed_cpus().front());
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);

  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK"), original);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "second ACK"), original);
  lb_.set_conn(web_flow(), replacement);
  EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK after the way changed"), replacement)
      << "the table's way, as it is now";
  EXPECT_EQ(lb_.vip_counters(vip_web).new_flows, 1u) << "no packet was taken for a new flow";
}

// The table is shared by every CPU: a SYN on one CPU that re-selects a flow
// is what the flow's next packet on another CPU follows.
TEST_F(BalancerTest, SynOnAnotherCpuIsFollowedOnThisCpu) {
  const std::vector<int> cpus = allowed_cpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  const std::uint32_t original = expected_backend(vip_web, web_flow());
  const std::uint32_t replacement = other_web_backend(original);
  {
    PinnedToCpu first(cpus[0]);
    EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "first ACK, CPU A"), original);
  }
  lb_.install_maglev_table(vip_web, table_of_only(replacement));
  {
    PinnedToCpu second(cpus[1]);
    EXPECT_EQ(web_backend_chosen(web_tcp(tcp_syn).build(), "SYN, CPU B"), replacement);
  }
  {
    PinnedToCpu first(cpus[0]);
    EXPECT_EQ(web_backend_chosen(web_tcp(tcp_ack).build(), "ACK, CPU A"), replacement)
        << "CPU A follows the SYN's way";
  }
}

// The table still names a backend that is no longer active (the daemon has
// not swapped it yet): nothing usable, so the packet is dropped, not sent
// to a backend that left.
TEST_F(BalancerTest, TableEntryOnInactiveBackendDrops) {
  const std::uint32_t chosen = expected_backend(vip_web, web_flow());
  ballast_backend slot = lb_.backend(chosen);
  slot.flags &= ~BALLAST_BACKEND_F_ACTIVE;
  lb_.set_backend(chosen, slot);

  const RunResult result = run_ok(web_tcp(tcp_syn).build(), "SYN");
  EXPECT_STREQ(action_name(result.action), "XDP_DROP") << "verdict";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_DROP_NO_BACKEND).packets, 1u)
      << "reason_stats[drop_no_backend].packets";
  EXPECT_FALSE(lb_.conn(web_flow()).has_value()) << "conn_table: no entry for a dropped flow";
}

TEST_F(BalancerTest, VipWithoutTableDrops) {
  constexpr std::uint32_t vip_unconfigured = 4;
  lb_.add_vip(vip_key_v4(v4_vip_two, port_https, ipproto_tcp), vip_unconfigured);
  const RunResult result = run_ok(from_router()
                                      .ipv4(v4_client_one, v4_vip_two)
                                      .tcp(port_client_one, port_https, tcp_syn)
                                      .build(),
                                  "SYN");
  EXPECT_STREQ(action_name(result.action), "XDP_DROP") << "verdict";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_DROP_NO_BACKEND).packets, 1u)
      << "reason_stats[drop_no_backend].packets";
}

}  // namespace
}  // namespace ballast::test
