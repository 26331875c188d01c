// vip_filter_test.cpp: the VIP address filter (bpf/vip_filter.h,
// ballast_abi.h BALLAST_VIP_FILTER_BITS) through the real program, and
// ballastd's VipFilter (userspace/dataplane/vip_filter_writer.h) writing the real map.
//
// The world: one TCP VIP (v4_vip_one:80) with one backend.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "balancer_fixture.h"
#include "bpf_dataplane.h"
#include "packet_builder.h"
#include "vip_filter_writer.h"

namespace ballast::test {
namespace {

constexpr std::uint32_t vip_web = 1;
constexpr std::uint32_t web_backend = 10;

class VipFilterTest : public ::testing::Test {
 protected:
  VipFilterTest() {
    lb_.add_vip(web_key(), vip_web);
    lb_.set_backend(web_backend, backend_slot_v4(v4_backend_one, mac_backend_one, vip_web));
    const std::uint32_t ids[] = {web_backend};
    lb_.install_maglev_table(vip_web, round_robin_table(ids));
  }

  static ballast_vip_key web_key() { return vip_key_v4(v4_vip_one, port_http, ipproto_tcp); }

  static Bytes tcp_to(Ipv4Addr dst, std::uint8_t flags) {
    return PacketBuilder()
        .eth(mac_router, mac_lb)
        .ipv4(v4_client_one, dst)
        .tcp(port_client_one, port_http, flags)
        .build();
  }

  // Runs @frame once and returns its verdict's name.
  std::string verdict_of(const Bytes& frame) {
    const RunResult r = lb_.run(frame);
    EXPECT_EQ(r.error, 0) << "bpf_prog_test_run_opts";
    return action_name(r.action);
  }

  std::uint64_t passed_not_vip() {
    return lb_.reason_counters(BALLAST_REASON_PASS_NOT_VIP).packets;
  }

  bool map_has(const ballast_addr& addr) {
    return vip_filter_has(read_vip_filter(lb_.map_fd("vip_filter")), addr);
  }

  BalancerHarness lb_;
};

ballast_addr addr_of(Ipv4Addr a) {
  ballast_addr out{};
  out.v4 = a.be32();
  return out;
}

// An address other than @a whose filter bit is @a's: the filter cannot
// tell them apart. 10.0.0.0/8 holds 16M addresses for 65,536 bits.
Ipv4Addr sharing_bit_with(Ipv4Addr a) {
  const ballast_addr aa = addr_of(a);
  const std::uint32_t want = ballast_vip_filter_bit(&aa);
  for (std::uint32_t i = 1; i < (1u << 24); i++) {
    const Ipv4Addr c{{10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
                      static_cast<std::uint8_t>(i)}};
    const ballast_addr ca = addr_of(c);
    if (c.octets != a.octets && ballast_vip_filter_bit(&ca) == want) return c;
  }
  throw std::runtime_error("no address shares the bit");
}

// With its address's bit clear, a VIP's packets are the host's: the filter
// is read before any lookup, for a SYN and for a packet without SYN alike,
// and nothing is written to the connection table. (ballastd never clears a
// bit a VIP needs; the audit reports it.)
TEST_F(VipFilterTest, AVipsPacketsNeedItsAddressBit) {
  const ballast_flow_key flow =
      flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_http, ipproto_tcp);
  lb_.set_vip_filter_bit(web_key().addr, false);
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_PASS") << "SYN, bit clear";
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_ack)), "XDP_PASS") << "ACK, bit clear";
  EXPECT_EQ(passed_not_vip(), 2u);
  EXPECT_FALSE(lb_.conn(flow)) << "a passed packet leaves no connection-table entry";

  lb_.set_vip_filter_bit(web_key().addr, true);
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_TX") << "SYN, bit set";
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_ack)), "XDP_TX") << "ACK, bit set";
  EXPECT_EQ(passed_not_vip(), 2u);
  EXPECT_TRUE(lb_.conn(flow));
}

// A set bit only says "maybe": an address that shares the VIP's bit but is
// no VIP goes on to the lookups, misses vips and is passed as before.
TEST_F(VipFilterTest, AnAddressSharingAVipsBitIsStillPassed) {
  const Ipv4Addr twin = sharing_bit_with(v4_vip_one);
  ASSERT_TRUE(map_has(addr_of(twin))) << "the VIP's bit is the twin's";
  EXPECT_EQ(verdict_of(tcp_to(twin, tcp_syn)), "XDP_PASS");
  EXPECT_EQ(verdict_of(tcp_to(twin, tcp_ack)), "XDP_PASS");
  EXPECT_EQ(passed_not_vip(), 2u);
  EXPECT_FALSE(lb_.conn(flow_key_v4(v4_client_one, port_client_one, twin, port_http, ipproto_tcp)));
}

// What the loader runs between loading the program and attaching it: maps
// adopted from a ballastd without the filter hold VIPs but no bits, and
// the first packet after the attach must find them.
TEST_F(VipFilterTest, PreparingTheMapsSetsEveryVipsBit) {
  lb_.set_vip_filter_bit(web_key().addr, false);
  ASSERT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_PASS");
  BpfDataPlane::prepare_maps(
      MapFds{.vips = lb_.map_fd("vips"), .vip_filter = lb_.map_fd("vip_filter")});
  EXPECT_TRUE(map_has(web_key().addr));
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_TX");
}

// ballastd's VipFilter keeps a bit while any vips key has its address
// (ports, protocols and the fragment entry share an address), clears it
// after the last one, and rebuild() makes the map exactly what the keys
// need: missing bits set, stray ones cleared.
TEST_F(VipFilterTest, BallastdsFilterKeepsABitWhileAnyKeyNeedsIt) {
  const ballast_vip_key web = web_key();
  const ballast_vip_key dns = vip_key_v4(v4_vip_one, port_dns, ipproto_udp);
  const ballast_vip_key two = vip_key_v4(v4_vip_two, port_http, ipproto_tcp);
  ASSERT_NE(ballast_vip_filter_bit(&web.addr), ballast_vip_filter_bit(&two.addr));
  VipFilter filter(lb_.map_fd("vip_filter"));

  // The map holds web's bit (add_vip) and a stray one; two's is missing.
  lb_.set_vip_filter_bit(addr_of(v4_other_host), true);
  filter.rebuild({web, dns, two});
  std::vector<std::uint64_t> words = read_vip_filter(lb_.map_fd("vip_filter"));
  int bits = 0;
  for (std::uint64_t w : words) bits += std::popcount(w);
  EXPECT_EQ(bits, 2) << "one bit per address, the stray one cleared";
  EXPECT_TRUE(vip_filter_has(words, web.addr));
  EXPECT_TRUE(vip_filter_has(words, two.addr));
  EXPECT_FALSE(vip_filter_has(words, addr_of(v4_other_host)));

  filter.remove(web);
  EXPECT_TRUE(map_has(web.addr)) << "dns still has the address";
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_TX");
  filter.remove(dns);
  EXPECT_FALSE(map_has(web.addr)) << "no key has the address";
  EXPECT_TRUE(map_has(two.addr));
  EXPECT_EQ(verdict_of(tcp_to(v4_vip_one, tcp_syn)), "XDP_PASS")
      << "vips still holds web here: the cleared bit is what passed it";

  filter.add(web, true);
  EXPECT_TRUE(map_has(web.addr));
  // A rewrite of a key already counted puts back a bit cleared behind
  // ballastd's back, and one remove then clears it: the count stayed 1.
  lb_.set_vip_filter_bit(web.addr, false);
  filter.add(web, false);
  EXPECT_TRUE(map_has(web.addr));
  filter.remove(web);
  EXPECT_FALSE(map_has(web.addr));
}

}  // namespace
}  // namespace ballast::test
