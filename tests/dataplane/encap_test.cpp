// The encapsulating modes end to end in one program each: the balancer's
// ipip mode next to a dsr VIP (the full matrix of modes and families is
// packet_suite_test.cpp), and the backends' decap program (bpf/decap.bpf.c)
// on every tunnel it strips, byte for byte through BPF_PROG_TEST_RUN. The
// expected frames are built from docs/dataplane.md by packet_builder's
// encapsulate_ipip / encapsulate_gue, never copied from the program.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <string>

#include "balancer_fixture.h"
#include "decap.skel.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

constexpr std::size_t eth_header_len = 14;

// The tunnel the balancer builds from @client_frame to backend one (IPv4).
Outer outer_to_backend_one() { return Outer{mac_lb, mac_backend_one, v4_lb, v4_backend_one, 0}; }

PacketBuilder web_request(std::uint8_t flags) {
  return PacketBuilder()
      .eth(mac_router, mac_lb)
      .ipv4(v4_client_one, v4_vip_one)
      .tcp(port_client_one, port_http, flags)
      .payload("GET / HTTP/1.0\r\n\r\n");
}

class IpipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lb_.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), 0, BALLAST_VIP_F_ENCAP_IPIP);
    lb_.set_backend(1, backend_slot_v4(v4_backend_one, mac_backend_one, 0));
    const std::uint32_t ids[] = {1};
    lb_.install_maglev_table(0, round_robin_table(ids));
  }
  BalancerHarness lb_;
};

TEST_F(IpipTest, NewAndEstablishedTcpAreEncapsulatedToTheBackend) {
  for (std::uint8_t flags : {tcp_syn, tcp_ack}) {
    const std::string label = flags == tcp_syn ? "SYN" : "ACK";
    const Bytes in = web_request(flags).build();
    const RunResult r = lb_.run(in);
    ASSERT_EQ(r.error, 0) << label << ": bpf_prog_test_run_opts";
    EXPECT_EQ(r.action, XDP_TX) << label << ": verdict";
    EXPECT_EQ(frame_mismatch(encapsulate_ipip(in, outer_to_backend_one()), r.frame), std::nullopt)
        << label << ": output frame";
  }
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_ENCAP_IPIP).packets, 2u)
      << "reason_stats[tx_encap_ipip].packets";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 0u)
      << "reason_stats[tx_forwarded].packets";
  EXPECT_EQ(lb_.backend_counters(1).new_flows, 1u) << "the SYN picked, the ACK followed it";
}

TEST_F(IpipTest, DontFragmentAndTosAreCopiedOut) {
  const Bytes in = web_request(tcp_syn).ip_tos(0xb8 /* EF */).ip_dont_fragment().build();
  const RunResult r = lb_.run(in);
  ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
  ASSERT_EQ(r.action, XDP_TX) << "verdict";
  ASSERT_GE(r.frame.size(), eth_header_len + 20) << "output frame length";
  EXPECT_EQ(r.frame[eth_header_len + 1], 0xb8) << "outer TOS";
  EXPECT_EQ(r.frame[eth_header_len + 6] & 0x40, 0x40) << "outer DF as the inner's";
  EXPECT_EQ(frame_mismatch(encapsulate_ipip(in, outer_to_backend_one()), r.frame), std::nullopt)
      << "output frame";
}

TEST_F(IpipTest, DsrVipNextToItIsUnchanged) {
  lb_.add_vip(vip_key_v4(v4_vip_one, port_https, ipproto_tcp), 1);  // no flags: dsr
  lb_.set_backend(2, backend_slot_v4(v4_backend_two, mac_backend_two, 1));
  lb_.install_maglev_table(1, round_robin_table(std::vector<std::uint32_t>{2}));
  PacketBuilder packet = PacketBuilder()
                             .eth(mac_router, mac_lb)
                             .ipv4(v4_client_one, v4_vip_one)
                             .tcp(port_client_one, port_https, tcp_syn);
  const Bytes in = packet.build();
  const RunResult r = lb_.run(in);
  ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
  ASSERT_EQ(r.action, XDP_TX) << "verdict";
  EXPECT_EQ(frame_mismatch(packet.eth(mac_lb, mac_backend_two).build(), r.frame), std::nullopt)
      << "dsr rewrites the MACs only";
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 1u)
      << "reason_stats[tx_forwarded].packets";
}

// --- The decap program ----------------------------------------------------------

// decap.bpf.c loaded, holding v4_vip_one and v6_vip_one as local VIPs and
// decapsulating GUE on port_gue. Maps are found by name so that this file
// builds against any version of the program.
class DecapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_ = decap::open_and_load();
    ASSERT_NE(skel_, nullptr) << "decap::open_and_load";
    add_local_vip(BALLAST_AF_INET, v4_vip_one.octets);
    add_local_vip(BALLAST_AF_INET6, v6_vip_one.octets);
    const bpf_map* config = map("decap_config");
    ASSERT_NE(config, nullptr) << "decap_config map";
    const std::uint32_t zero = 0;
    ballast_decap_config value{};
    value.gue_port = htons(port_gue);
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(config), &zero, &value, BPF_ANY), 0)
        << "bpf_map_update_elem(decap_config)";
  }
  void TearDown() override { decap::destroy(skel_); }

  const bpf_map* map(const char* name) { return bpf_object__find_map_by_name(skel_->obj, name); }

  void add_local_vip(std::uint8_t family, std::span<const std::uint8_t> addr) {
    const bpf_map* vips = map("decap_vips");
    ASSERT_NE(vips, nullptr) << "decap_vips map";
    ballast_decap_vip key{};
    std::memcpy(key.addr.bytes, addr.data(), addr.size());
    key.family = family;
    // The value only marks presence; whatever its size, a nonzero first byte.
    std::vector<std::uint8_t> value(bpf_map__value_size(vips), 0);
    value.at(0) = 1;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(vips), &key, value.data(), BPF_ANY), 0)
        << "bpf_map_update_elem(decap_vips)";
  }

  RunResult run(const Bytes& frame) {
    return test_run(bpf_program__fd(skel_->progs.ballast_decap), frame);
  }

  std::uint64_t counted(std::uint32_t reason) {
    const int n = libbpf_num_possible_cpus();
    std::vector<ballast_reason_counters> per_cpu(static_cast<std::size_t>(n));
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(map("decap_stats")), &reason, per_cpu.data()), 0)
        << "bpf_map_lookup_elem(decap_stats)";
    std::uint64_t sum = 0;
    for (const auto& c : per_cpu) sum += c.packets;
    return sum;
  }

  decap* skel_ = nullptr;
};

// What reaches a backend: the client's packet to @vip (either family).
PacketBuilder client_packet(const IpAddr& vip) {
  PacketBuilder packet;
  packet.eth(mac_router, mac_lb);
  if (const auto* v4 = std::get_if<Ipv4Addr>(&vip))
    packet.ipv4(v4_client_one, *v4);
  else
    packet.ipv6(v6_client_one, std::get<Ipv6Addr>(vip));
  return packet.tcp(port_client_one, port_http, tcp_syn).payload("hello");
}

// The tunnel from the balancer to backend one, in @outer_family.
Outer tunnel(int outer_family) {
  if (outer_family == 4) return Outer{mac_lb, mac_backend_one, v4_lb, v4_backend_one, 0x12345};
  return Outer{mac_lb, mac_backend_one, v6_lb, v6_backend_one, 0x12345};
}

// After decap: the tunnel frame's own MACs, the inner family's EtherType,
// then the client's IP packet as it left the client.
Bytes decapped(const Bytes& tunnelled, const Bytes& inner_frame) {
  Bytes want(tunnelled.begin(), tunnelled.begin() + 12);
  const bool inner_v6 = inner_frame.at(eth_header_len) >> 4 == 6;
  const std::uint16_t type = inner_v6 ? ethertype_ipv6 : ethertype_ipv4;
  want.push_back(static_cast<std::uint8_t>(type >> 8));
  want.push_back(static_cast<std::uint8_t>(type));
  want.insert(want.end(), inner_frame.begin() + eth_header_len, inner_frame.end());
  return want;
}

struct DecapCase {
  std::string name;
  int outer_family;
  bool inner_v6;
  bool gue;
};

class DecapTunnelTest : public DecapTest, public ::testing::WithParamInterface<DecapCase> {
 protected:
  Bytes tunnelled(const Bytes& inner_frame, std::uint16_t gue_port) const {
    const DecapCase& c = GetParam();
    return c.gue ? encapsulate_gue(inner_frame, tunnel(c.outer_family), gue_port)
                 : encapsulate_ipip(inner_frame, tunnel(c.outer_family));
  }
};

TEST_P(DecapTunnelTest, ToLocalVipIsStripped) {
  const DecapCase& c = GetParam();
  const Bytes inner = client_packet(c.inner_v6 ? IpAddr{v6_vip_one} : IpAddr{v4_vip_one}).build();
  const Bytes in = tunnelled(inner, port_gue);
  const RunResult r = run(in);
  ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
  EXPECT_EQ(r.action, XDP_PASS) << "verdict";
  EXPECT_EQ(frame_mismatch(decapped(in, inner), r.frame), std::nullopt) << "output frame";
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 1u) << "decap_stats[decapped]";
}

TEST_P(DecapTunnelTest, ToForeignInnerDestinationPassesUntouched) {
  const DecapCase& c = GetParam();
  const Bytes inner =
      client_packet(c.inner_v6 ? IpAddr{v6_other_host} : IpAddr{v4_other_host}).build();
  const Bytes in = tunnelled(inner, port_gue);
  const RunResult r = run(in);
  ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
  EXPECT_EQ(r.action, XDP_PASS) << "verdict";
  EXPECT_EQ(frame_mismatch(in, r.frame), std::nullopt) << "output frame";
  EXPECT_EQ(counted(BALLAST_DECAP_PASS_NOT_LOCAL_VIP), 1u) << "decap_stats[pass_not_local_vip]";
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u) << "decap_stats[decapped]";
}

const DecapCase decap_cases[] = {
    {"Ipv4InIpv4", 4, false, false},     {"Ipv6InIpv4", 4, true, false},
    {"Ipv4InIpv6", 6, false, false},     {"Ipv6InIpv6", 6, true, false},
    {"GueIpv4OverIpv4", 4, false, true}, {"GueIpv6OverIpv4", 4, true, true},
    {"GueIpv4OverIpv6", 6, false, true}, {"GueIpv6OverIpv6", 6, true, true},
};

INSTANTIATE_TEST_SUITE_P(Tunnels, DecapTunnelTest, ::testing::ValuesIn(decap_cases),
                         [](const ::testing::TestParamInfo<DecapCase>& info) {
                           return info.param.name;
                         });

TEST_F(DecapTest, GueToAnotherPortPassesUntouched) {
  for (int outer_family : {4, 6}) {
    const std::string label = "outer IPv" + std::to_string(outer_family);
    const Bytes inner = client_packet(v4_vip_one).build();
    const Bytes in = encapsulate_gue(inner, tunnel(outer_family), port_gue + 1);
    const std::uint64_t before = counted(BALLAST_DECAP_PASS_NOT_ENCAP);
    const RunResult r = run(in);
    ASSERT_EQ(r.error, 0) << label << ": bpf_prog_test_run_opts";
    EXPECT_EQ(r.action, XDP_PASS) << label << ": verdict";
    EXPECT_EQ(frame_mismatch(in, r.frame), std::nullopt) << label << ": output frame";
    EXPECT_EQ(counted(BALLAST_DECAP_PASS_NOT_ENCAP), before + 1)
        << label << ": decap_stats[pass_not_encapsulated]";
  }
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u) << "decap_stats[decapped]";
}

TEST_F(DecapTest, EverythingElsePassesUntouched) {
  const Bytes plain = PacketBuilder()
                          .eth(mac_router, mac_backend_one)
                          .ipv4(v4_client_one, v4_vip_one)
                          .tcp(port_client_one, port_http, tcp_syn)
                          .build();
  const Bytes plain_v6 = PacketBuilder()
                             .eth(mac_router, mac_backend_one)
                             .ipv6(v6_client_one, v6_vip_one)
                             .tcp(port_client_one, port_http, tcp_syn)
                             .build();
  // Protocol 4 promises IPv4 inside; this one carries version 6.
  const Bytes wrong_inner_version = PacketBuilder()
                                        .eth(mac_lb, mac_backend_one)
                                        .ipv4(v4_lb, v4_backend_one)
                                        .ip_protocol(ipproto_ipip)
                                        .payload(ip_packet_of(plain_v6))
                                        .build();
  Bytes cut = encapsulate_ipip(plain, tunnel(4));
  cut.resize(eth_header_len + 20 + 10);  // inner header cut short
  struct Case {
    const char* what;
    Bytes frame;
    std::uint32_t reason;
  } cases[] = {
      {"not encapsulated (IPv4)", plain, BALLAST_DECAP_PASS_NOT_ENCAP},
      {"not encapsulated (IPv6)", plain_v6, BALLAST_DECAP_PASS_NOT_ENCAP},
      {"protocol 4 with an IPv6 packet inside", wrong_inner_version, BALLAST_DECAP_PASS_MALFORMED},
      {"frame cut inside the inner header", cut, BALLAST_DECAP_PASS_MALFORMED},
  };
  for (const auto& c : cases) {
    const std::uint64_t before = counted(c.reason);
    const RunResult r = run(c.frame);
    ASSERT_EQ(r.error, 0) << c.what;
    EXPECT_EQ(r.action, XDP_PASS) << c.what;
    EXPECT_EQ(frame_mismatch(c.frame, r.frame), std::nullopt) << c.what << ": changed";
    EXPECT_EQ(counted(c.reason), before + 1) << c.what << ": counted under its reason";
  }
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u) << "decap_stats[decapped]";
}

}  // namespace
}  // namespace ballast::test
