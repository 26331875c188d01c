// The ipip forwarding mode (bpf/encap.h) and the backends' decap program
// (bpf/decap.bpf.c), byte for byte through BPF_PROG_TEST_RUN. The expected
// outer header is built here from the RFC 2003 rules, not copied from the
// program: version 4, IHL 5, TOS and DF from the inner header, ID 0, TTL 64,
// protocol 4, the balancer's address to the backend's, a valid checksum.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/in.h>

#include <cstring>

#include "balancer_fixture.h"
#include "decap.skel.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

constexpr std::size_t kEth = 14, kIp = 20;

// [eth lb -> backend][outer IPv4 lb -> backend, proto 4][@inner_frame's IP packet]
Bytes ipip_frame(const Bytes& inner_frame, MacAddr backend_mac, Ipv4Addr backend) {
  const Bytes inner(inner_frame.begin() + kEth, inner_frame.end());
  const std::uint16_t inner_len = static_cast<std::uint16_t>((inner[2] << 8) | inner[3]);
  Bytes out(kEth, 0);
  for (std::size_t i = 0; i < 6; ++i) {
    out[i] = backend_mac[i];
    out[6 + i] = mac_lb[i];
  }
  out[12] = 0x08;
  Bytes ip(kIp, 0);
  ip[0] = 0x45;
  ip[1] = inner[1];  // TOS
  const std::uint16_t total = inner_len + kIp;
  ip[2] = static_cast<std::uint8_t>(total >> 8);
  ip[3] = static_cast<std::uint8_t>(total);
  ip[6] = inner[6] & 0x40;  // DF only
  ip[8] = 64;
  ip[9] = IPPROTO_IPIP;
  for (std::size_t i = 0; i < 4; ++i) {
    ip[12 + i] = v4_lb.octets[i];
    ip[16 + i] = backend.octets[i];
  }
  const std::uint16_t csum = checksum_fold(checksum_add(0, ip));
  ip[10] = static_cast<std::uint8_t>(csum >> 8);
  ip[11] = static_cast<std::uint8_t>(csum);
  out.insert(out.end(), ip.begin(), ip.end());
  out.insert(out.end(), inner.begin(), inner.end());
  return out;
}

class IpipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    lb_.add_vip(vip_key_v4(v4_vip_one, port_http, IPPROTO_TCP), 0, BALLAST_VIP_F_ENCAP_IPIP);
    lb_.set_backend(1, backend_slot_v4(v4_backend_one, mac_backend_one, 0));
    const std::uint32_t ids[] = {1};
    lb_.install_maglev_table(0, round_robin_table(ids));
  }
  BalancerHarness lb_;
};

TEST_F(IpipTest, NewAndEstablishedTcpAreEncapsulatedToTheBackend) {
  for (std::uint8_t flags : {tcp_syn, tcp_ack}) {
    const Bytes in = PacketBuilder()
                         .eth(mac_router, mac_lb)
                         .ipv4(v4_client_one, v4_vip_one)
                         .tcp(port_client_one, port_http, flags)
                         .payload("GET / HTTP/1.0\r\n\r\n")
                         .build();
    const RunResult r = lb_.run(in);
    ASSERT_EQ(r.error, 0);
    EXPECT_EQ(r.action, XDP_TX) << (flags == tcp_syn ? "SYN" : "ACK");
    const Bytes want = ipip_frame(in, mac_backend_one, v4_backend_one);
    EXPECT_EQ(frame_mismatch(want, r.frame), std::nullopt) << (flags == tcp_syn ? "SYN" : "ACK");
  }
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_ENCAP_IPIP).packets, 2u);
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 0u);
  EXPECT_EQ(lb_.backend_counters(1).new_flows, 1u) << "the SYN picked, the ACK followed it";
}

TEST_F(IpipTest, DontFragmentAndTosAreCopiedOut) {
  // The builder sets DF on its packets; TOS is set by hand here.
  Bytes in = PacketBuilder()
                 .eth(mac_router, mac_lb)
                 .ipv4(v4_client_one, v4_vip_one)
                 .tcp(port_client_one, port_http, tcp_syn)
                 .build();
  in[kEth + 1] = 0xb8;  // EF
  // (The inner checksum is now stale: the program never looks at it, and
  // the expected frame is built from this one.)
  const RunResult r = lb_.run(in);
  ASSERT_EQ(r.action, XDP_TX);
  ASSERT_GE(r.frame.size(), kEth + kIp);
  EXPECT_EQ(r.frame[kEth + 1], 0xb8) << "outer TOS";
  EXPECT_EQ(r.frame[kEth + 6] & 0x40, in[kEth + 6] & 0x40) << "outer DF as the inner's";
  EXPECT_EQ(frame_mismatch(ipip_frame(in, mac_backend_one, v4_backend_one), r.frame), std::nullopt);
}

TEST_F(IpipTest, DsrVipNextToItIsUnchanged) {
  lb_.add_vip(vip_key_v4(v4_vip_one, port_https, IPPROTO_TCP), 1);  // no flags: dsr
  lb_.set_backend(2, backend_slot_v4(v4_backend_two, mac_backend_two, 1));
  lb_.install_maglev_table(1, round_robin_table(std::vector<std::uint32_t>{2}));
  const Bytes in = PacketBuilder()
                       .eth(mac_router, mac_lb)
                       .ipv4(v4_client_one, v4_vip_one)
                       .tcp(port_client_one, port_https, tcp_syn)
                       .build();
  const RunResult r = lb_.run(in);
  ASSERT_EQ(r.action, XDP_TX);
  EXPECT_EQ(r.frame.size(), in.size()) << "dsr adds nothing";
  EXPECT_EQ(std::memcmp(r.frame.data(), mac_backend_two.data(), 6), 0);
  EXPECT_EQ(lb_.reason_counters(BALLAST_REASON_TX_FORWARDED).packets, 1u);
}

// --- The decap program ----------------------------------------------------------

class DecapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    skel_ = decap::open_and_load();
    ASSERT_NE(skel_, nullptr) << "decap::open_and_load";
    const std::uint32_t vip = v4_vip_one.be32();
    const std::uint8_t one = 1;
    ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.decap_vips), &vip, &one, BPF_ANY), 0);
  }
  void TearDown() override { decap::destroy(skel_); }
  RunResult run(const Bytes& frame) {
    return test_run(bpf_program__fd(skel_->progs.ballast_decap), frame);
  }
  std::uint64_t counted(std::uint32_t reason) {
    const int n = libbpf_num_possible_cpus();
    std::vector<ballast_reason_counters> per_cpu(static_cast<std::size_t>(n));
    EXPECT_EQ(bpf_map_lookup_elem(bpf_map__fd(skel_->maps.decap_stats), &reason, per_cpu.data()),
              0);
    std::uint64_t sum = 0;
    for (const auto& c : per_cpu) sum += c.packets;
    return sum;
  }
  decap* skel_ = nullptr;
};

TEST_F(DecapTest, StripsTheOuterHeaderOfPacketsForALocalVip) {
  const Bytes inner = PacketBuilder()
                          .eth(mac_router, mac_lb)
                          .ipv4(v4_client_one, v4_vip_one)
                          .tcp(port_client_one, port_http, tcp_syn)
                          .payload("hello")
                          .build();
  const Bytes tunnelled = ipip_frame(inner, mac_backend_one, v4_backend_one);
  const RunResult r = run(tunnelled);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.action, XDP_PASS);
  // The backend's own Ethernet header, then the client's packet as sent.
  Bytes want(tunnelled.begin(), tunnelled.begin() + kEth);
  want.insert(want.end(), inner.begin() + kEth, inner.end());
  EXPECT_EQ(frame_mismatch(want, r.frame), std::nullopt);
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 1u);
}

TEST_F(DecapTest, EverythingElsePassesUntouched) {
  const Bytes plain = PacketBuilder()
                          .eth(mac_router, mac_backend_one)
                          .ipv4(v4_client_one, v4_vip_one)
                          .tcp(port_client_one, port_http, tcp_syn)
                          .build();
  const Bytes other_vip = ipip_frame(PacketBuilder()
                                         .eth(mac_router, mac_lb)
                                         .ipv4(v4_client_one, v4_other_host)
                                         .tcp(port_client_one, port_http, tcp_syn)
                                         .build(),
                                     mac_backend_one, v4_backend_one);
  Bytes bad_inner = ipip_frame(plain, mac_backend_one, v4_backend_one);
  bad_inner[kEth + kIp] = 0x65;  // inner version 6 in an IPIP packet
  Bytes cut = ipip_frame(plain, mac_backend_one, v4_backend_one);
  cut.resize(kEth + kIp + 10);  // inner header cut short
  struct Case {
    const char* what;
    Bytes frame;
    std::uint32_t reason;
  } cases[] = {
      {"not encapsulated", plain, BALLAST_DECAP_PASS_NOT_ENCAP},
      {"inner destination not a local VIP", other_vip, BALLAST_DECAP_PASS_NOT_LOCAL_VIP},
      {"inner header not IPv4", bad_inner, BALLAST_DECAP_PASS_MALFORMED},
      {"frame cut inside the outer packet", cut, BALLAST_DECAP_PASS_MALFORMED},
  };
  for (const auto& c : cases) {
    const std::uint64_t before = counted(c.reason);
    const RunResult r = run(c.frame);
    ASSERT_EQ(r.error, 0) << c.what;
    EXPECT_EQ(r.action, XDP_PASS) << c.what;
    EXPECT_EQ(frame_mismatch(c.frame, r.frame), std::nullopt) << c.what << ": changed";
    EXPECT_EQ(counted(c.reason), before + 1) << c.what << ": counted under its reason";
  }
  EXPECT_EQ(counted(BALLAST_DECAP_DECAPPED), 0u);
}

}  // namespace
}  // namespace ballast::test
