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
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "balancer_fixture.h"
#include "decap.skel.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

constexpr std::size_t eth_header_len = 14;
constexpr std::uint32_t kVip0 = 0;

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

  std::uint64_t counted(std::uint32_t reason) { return counters(reason).packets; }
  ballast_reason_counters counters(std::uint32_t reason) {
    const int n = libbpf_num_possible_cpus();
    std::vector<ballast_reason_counters> per_cpu(static_cast<std::size_t>(n));
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(map("decap_stats")), &reason, per_cpu.data()), 0)
        << "bpf_map_lookup_elem(decap_stats)";
    ballast_reason_counters sum{};
    for (const auto& c : per_cpu) {
      sum.packets += c.packets;
      sum.bytes += c.bytes;
    }
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

// A multi-buffer tunnel frame (9,000 bytes: BPF_PROG_TEST_RUN hands the
// xdp.frags program a linear part and fragments) is stripped whole and
// counted with its whole length.
TEST_P(DecapTunnelTest, JumboToLocalVipIsStrippedWhole) {
  const DecapCase& c = GetParam();
  PacketBuilder packet = client_packet(c.inner_v6 ? IpAddr{v6_vip_one} : IpAddr{v4_vip_one});
  const std::size_t small = tunnelled(packet.build(), port_gue).size();
  const Bytes inner = packet.payload(Bytes(9000 - small, 'j')).build();
  const Bytes in = tunnelled(inner, port_gue);
  ASSERT_GT(in.size(), 8000u) << "a frame past one page";
  const RunResult r = run(in);
  ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
  EXPECT_EQ(r.action, XDP_PASS) << "verdict";
  EXPECT_EQ(frame_mismatch(decapped(in, inner), r.frame), std::nullopt) << "output frame";
  EXPECT_EQ(counters(BALLAST_DECAP_DECAPPED).packets, 1u) << "decap_stats[decapped].packets";
  EXPECT_EQ(counters(BALLAST_DECAP_DECAPPED).bytes, in.size()) << "decap_stats[decapped].bytes";
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

// --- Second chance, the balancer's side (docs/fleet.md) -------------------------

// A gue VIP with second chance over backends 1 and 2 (IPv4): its table
// sends every flow to backend 1, its previous table to backend 2.
class SecondChanceBalancerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lb_.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), 0,
                BALLAST_VIP_F_ENCAP_GUE | BALLAST_VIP_F_SECOND_CHANCE, port_gue);
    lb_.set_backend(1, backend_slot_v4(v4_backend_one, mac_backend_one, 0));
    lb_.set_backend(2, backend_slot_v4(v4_backend_two, mac_backend_two, 0));
    lb_.install_maglev_table(0, round_robin_table(std::vector<std::uint32_t>{1}));
    lb_.install_previous_table(0, round_robin_table(std::vector<std::uint32_t>{2}));
  }
  static ballast_flow_key flow() {
    return flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_http, ipproto_tcp);
  }
  // The tunnel to backend @n (1 or 2) for flow().
  static Outer tunnel_to_backend(int n) {
    return Outer{mac_lb, n == 1 ? mac_backend_one : mac_backend_two, v4_lb,
                 n == 1 ? v4_backend_one : v4_backend_two, flow_hash(flow())};
  }
  BalancerHarness lb_;
};

// A pick-up (no SYN, no entry) that the previous table placed on backend 2
// goes to backend 1 with backend 2 in its GUE header, and leaves no entry:
// each of its packets is placed the same way, and counted as a
// second-chance packet (not a new flow, not a pick-up).
TEST_F(SecondChanceBalancerTest, APickUpThePreviousTablePlacedElsewhereCarriesThatBackend) {
  const Bytes in = web_request(tcp_ack).build();
  const Bytes want =
      encapsulate_gue_second_chance(in, tunnel_to_backend(1), port_gue, v4_backend_two, 1);
  for (int i = 1; i <= 2; i++) {
    const RunResult r = lb_.run(in);
    ASSERT_EQ(r.error, 0) << "packet " << i;
    EXPECT_EQ(r.action, XDP_TX) << "packet " << i;
    EXPECT_EQ(frame_mismatch(want, r.frame), std::nullopt) << "packet " << i << ": output frame";
    EXPECT_FALSE(lb_.conn(flow()).has_value()) << "packet " << i << ": no entry recorded";
    EXPECT_EQ(lb_.fleet_counters(0).second_chance, static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(lb_.fleet_counters(0).pickups, 0u) << "nothing recorded, so no pick-up";
  EXPECT_EQ(lb_.vip_counters(0).new_flows, 0u) << "a flow that began elsewhere is no new flow";
  EXPECT_EQ(lb_.vip_counters(0).packets, 2u);
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_ENCAP_GUE).packets, 2u);
}

// What gets no second chance: a SYN (a flow that begins now, recorded),
// the packets of a flow with an entry, a pick-up both tables place alike
// (recorded), a pick-up with no previous table, and any packet of a VIP
// without the flag. Each is plain GUE to backend 1.
TEST_F(SecondChanceBalancerTest, SynsEntriesAgreeingTablesAndOtherVipsGetPlainGue) {
  const Bytes syn = web_request(tcp_syn).build();
  const Bytes ack = web_request(tcp_ack).build();
  auto plain = [&](const Bytes& in, const std::string& what) {
    const RunResult r = lb_.run(in);
    ASSERT_EQ(r.error, 0) << what;
    EXPECT_EQ(r.action, XDP_TX) << what;
    EXPECT_EQ(frame_mismatch(encapsulate_gue(in, tunnel_to_backend(1), port_gue), r.frame),
              std::nullopt)
        << what << ": output frame";
  };
  plain(syn, "SYN");
  ASSERT_TRUE(lb_.conn(flow()).has_value()) << "the SYN's entry";
  plain(ack, "ACK with an entry");
  lb_.forget_flow(flow());
  lb_.install_previous_table(0, round_robin_table(std::vector<std::uint32_t>{1}));
  plain(ack, "pick-up, both tables give backend 1");
  EXPECT_TRUE(lb_.conn(flow()).has_value()) << "an agreeing pick-up is recorded";
  lb_.forget_flow(flow());
  ASSERT_EQ(bpf_map_delete_elem(lb_.map_fd("maglev_prev_tables"), &kVip0), 0);
  plain(ack, "pick-up, no previous table");
  lb_.forget_flow(flow());
  lb_.install_previous_table(0, round_robin_table(std::vector<std::uint32_t>{2}));
  lb_.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), 0, BALLAST_VIP_F_ENCAP_GUE, port_gue);
  plain(ack, "pick-up, VIP without second chance");
  EXPECT_EQ(lb_.fleet_counters(0).second_chance, 0u);
  EXPECT_EQ(lb_.fleet_counters(0).pickups, 3u);
}

// A previous backend whose slot was freed, or now serves another VIP, is
// no flow's owner: plain GUE.
TEST_F(SecondChanceBalancerTest, AFreedOrReusedPreviousSlotIsIgnored) {
  const Bytes ack = web_request(tcp_ack).build();
  lb_.set_backend(2, ballast_backend{});
  RunResult r = lb_.run(ack);
  EXPECT_EQ(frame_mismatch(encapsulate_gue(ack, tunnel_to_backend(1), port_gue), r.frame),
            std::nullopt)
      << "freed slot";
  lb_.forget_flow(flow());
  lb_.set_backend(2, backend_slot_v4(v4_backend_two, mac_backend_two, 7));
  r = lb_.run(ack);
  EXPECT_EQ(frame_mismatch(encapsulate_gue(ack, tunnel_to_backend(1), port_gue), r.frame),
            std::nullopt)
      << "slot of another VIP";
  EXPECT_EQ(lb_.fleet_counters(0).second_chance, 0u);
}

// --- Second chance (docs/fleet.md) ----------------------------------------------

// Runs @body on a thread of its own in a fresh network namespace with lo up:
// the sockets it opens, and the socket and FIB lookups of the programs it
// runs, see that namespace only (no routes but lo's, forwarding off), not
// the machine's.
void in_fresh_netns(const std::function<void()>& body) {
  std::string failure;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      failure = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_UP;
    if (fd < 0 || ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
      failure = std::string("lo up: ") + std::strerror(errno);
      if (fd >= 0) close(fd);
      return;
    }
    close(fd);
    body();
  });
  t.join();
  ASSERT_EQ(failure, "");
}

// An established TCP connection over lo: the server side's socket is what
// the decap program must find. Ports: the listener's and the client's.
struct LoopbackConnection {
  explicit LoopbackConnection(int family) {
    listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_storage addr{};
    socklen_t len = loopback(family, addr, 0);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0) << "bind";
    EXPECT_EQ(listen(listener, 4), 0) << "listen";
    EXPECT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    server_port = port_of(addr);
    client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), len), 0) << "connect";
    sockaddr_storage mine{};
    socklen_t mine_len = sizeof(mine);
    EXPECT_EQ(getsockname(client, reinterpret_cast<sockaddr*>(&mine), &mine_len), 0);
    client_port = port_of(mine);
    accepted = accept(listener, nullptr, nullptr);
    EXPECT_GE(accepted, 0) << "accept";
  }
  ~LoopbackConnection() {
    for (int fd : {accepted, client, listener})
      if (fd >= 0) close(fd);
  }
  static socklen_t loopback(int family, sockaddr_storage& addr, std::uint16_t port) {
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a->sin_port = htons(port);
      return sizeof(*a);
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    a->sin6_port = htons(port);
    return sizeof(*a);
  }
  static std::uint16_t port_of(const sockaddr_storage& addr) {
    return ntohs(addr.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(addr).sin_port
                                           : reinterpret_cast<const sockaddr_in6&>(addr).sin6_port);
  }
  int listener = -1, client = -1, accepted = -1;
  std::uint16_t server_port = 0, client_port = 0;
};

const Ipv4Addr v4_loopback{{127, 0, 0, 1}};
const Ipv6Addr v6_loopback{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};

class SecondChanceTest : public DecapTest, public ::testing::WithParamInterface<int> {
 protected:
  // The family of every address here: the tunnel's, the client packet's
  // (over lo, to "the VIP" 127.0.0.1 / ::1) and the previous backend's.
  int family() const { return GetParam(); }
  IpAddr vip() const { return family() == 4 ? IpAddr{v4_loopback} : IpAddr{v6_loopback}; }
  IpAddr previous_backend() const {
    return family() == 4 ? IpAddr{v4_backend_two} : IpAddr{v6_backend_two};
  }
  // From the balancer to backend one (@to: another destination).
  Outer tunnel_to(const IpAddr& to) const {
    Outer outer = tunnel(family());
    outer.dst = to;
    return outer;
  }
  void hold_vip() {
    if (family() == 4)
      add_local_vip(BALLAST_AF_INET, v4_loopback.octets);
    else
      add_local_vip(BALLAST_AF_INET6, v6_loopback.octets);
  }
  // A packet over lo (to "the VIP"), up to its IP header.
  PacketBuilder over_lo() const {
    PacketBuilder p;
    p.eth(mac_router, mac_lb);
    if (family() == 4)
      p.ipv4(v4_loopback, v4_loopback);
    else
      p.ipv6(v6_loopback, v6_loopback);
    return p;
  }
  // The client's TCP packet over lo: from @sport to the VIP's @dport.
  Bytes client_packet_over_lo(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) const {
    return over_lo().tcp(sport, dport, flags).payload("more").build();
  }
  Bytes second_chance(const Bytes& inner, std::uint8_t hops) const {
    return encapsulate_gue_second_chance(inner, tunnel(family()), port_gue, previous_backend(),
                                         hops);
  }
};

// The host has the connection: the packet is decapsulated here (GUE
// header and all), as any other.
TEST_P(SecondChanceTest, AFlowThisHostHasIsKeptAndDecapsulated) {
  hold_vip();
  in_fresh_netns([&] {
    LoopbackConnection conn(family() == 4 ? AF_INET : AF_INET6);
    const Bytes inner = client_packet_over_lo(conn.client_port, conn.server_port, tcp_ack);
    const Bytes in = second_chance(inner, 1);
    const RunResult r = run(in);
    ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
    EXPECT_EQ(r.action, XDP_PASS) << "verdict";
    EXPECT_EQ(frame_mismatch(decapped(in, inner), r.frame), std::nullopt) << "output frame";
  });
  EXPECT_EQ(counted(BALLAST_DECAP_SECOND_CHANCE_KEPT), 1u) << "decap_stats[second_chance_kept]";
  EXPECT_EQ(counted(BALLAST_DECAP_SECOND_CHANCE_TO_KERNEL), 0u);
}

// No socket for the flow (a listener on its port is none): the packet goes
// on to the previous backend, still encapsulated, with no hop left. In this
// namespace the FIB has no route (forwarding off), so the kernel gets the
// rewritten packet to route.
TEST_P(SecondChanceTest, AFlowThisHostLacksGoesToThePreviousBackend) {
  hold_vip();
  in_fresh_netns([&] {
    LoopbackConnection conn(family() == 4 ? AF_INET : AF_INET6);
    const std::uint16_t stranger = static_cast<std::uint16_t>(conn.client_port + 1);
    const Bytes inner = client_packet_over_lo(stranger, conn.server_port, tcp_ack);
    const RunResult r = run(second_chance(inner, 1));
    ASSERT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
    EXPECT_EQ(r.action, XDP_PASS) << "verdict: the kernel routes it";
    const Bytes want = encapsulate_gue_second_chance(inner, tunnel_to(previous_backend()), port_gue,
                                                     previous_backend(), 0);
    EXPECT_EQ(frame_mismatch(want, r.frame), std::nullopt)
        << "output frame: to the previous backend, hops 0, header checksum updated";
  });
  EXPECT_EQ(counted(BALLAST_DECAP_SECOND_CHANCE_TO_KERNEL), 1u)
      << "decap_stats[second_chance_to_kernel]";
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u);
}

// What a second-chance header does not change: a SYN starts a flow here;
// a packet with no hop left (sent on already) stays; UDP has no socket to
// ask. Each is decapsulated.
TEST_P(SecondChanceTest, SynsSentOnPacketsAndUdpAreDecapsulatedHere) {
  hold_vip();
  const Bytes udp_inner = over_lo().udp(port_client_one, 53).payload("q").build();
  in_fresh_netns([&] {
    const struct {
      const char* what;
      Bytes inner;
      std::uint8_t hops;
    } cases[] = {
        {"SYN", client_packet_over_lo(40000, 9, tcp_syn), 1},
        {"no hop left", client_packet_over_lo(40000, 9, tcp_ack), 0},
        {"UDP", udp_inner, 1},
    };
    for (const auto& c : cases) {
      const Bytes in = second_chance(c.inner, c.hops);
      const RunResult r = run(in);
      ASSERT_EQ(r.error, 0) << c.what;
      EXPECT_EQ(r.action, XDP_PASS) << c.what;
      EXPECT_EQ(frame_mismatch(decapped(in, c.inner), r.frame), std::nullopt) << c.what;
    }
  });
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 3u) << "decap_stats[decapped]";
}

INSTANTIATE_TEST_SUITE_P(Families, SecondChanceTest, ::testing::Values(4, 6),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "Ipv" + std::to_string(info.param);
                         });

// A GUE variant 0 header that is not Ballast's (another magic, another
// length) is not ours to strip.
TEST_F(DecapTest, AnotherGueHeaderPassesUntouched) {
  const Bytes inner = client_packet(v4_vip_one).build();
  Bytes in = encapsulate_gue_second_chance(inner, tunnel(4), port_gue, v4_backend_two, 1);
  const std::size_t gue_at = eth_header_len + 20 + 8;
  Bytes other_magic = in;
  other_magic.at(gue_at + 4) = 0x12;
  Bytes other_length = in;
  other_length.at(gue_at) = 4;
  for (const Bytes* frame : {&other_magic, &other_length}) {
    const RunResult r = run(*frame);
    ASSERT_EQ(r.error, 0);
    EXPECT_EQ(r.action, XDP_PASS);
    EXPECT_EQ(frame_mismatch(*frame, r.frame), std::nullopt) << "untouched";
  }
  EXPECT_EQ(counted(BALLAST_DECAP_PASS_NOT_ENCAP), 2u);
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u);
}

}  // namespace
}  // namespace ballast::test
