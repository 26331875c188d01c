// packet_fuzz.cpp: libFuzzer target for the data plane. Each input is one
// Ethernet frame, run through the real balancer program (bpf/balancer.bpf.c)
// with BPF_PROG_TEST_RUN, in a world of VIPs of every mode and family: dsr,
// ipip and gue; IPv4 and IPv6; a VIP of one family with backends of the
// other; UDP without source ports; fragments; backends behind a second
// interface (XDP_REDIRECT). On every input:
//   - exactly one reason counter moves, by one, and its verdict is the
//     program's action (tx: XDP_TX or XDP_REDIRECT, pass, drop);
//   - a passed frame leaves unchanged;
//   - a frame leaves (TX/REDIRECT) only if it is addressed to a VIP, and
//     either as Ballast's own ICMP "too big" answer back to its sender, or
//     toward a configured backend's MAC from the balancer's own, as:
//       dsr: the input with only the MACs rewritten, or
//       ipip/gue: outer IPv4/IPv6 (+ UDP for gue) with consistent lengths
//       and a valid IPv4 header checksum, around the input's IP packet
//       byte for byte.
// The connection table keeps what earlier inputs created (as on a real
// host); each verdict is checked against the input alone.
// Built by `make fuzz-build` with clang-14, ASan and UBSan; needs root
// (BPF). A custom mutator repairs lengths and checksums in half of the
// mutations, so the mutations reach past the parsers' checks.
#include <linux/bpf.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ballast_abi.h"
#include "fuzz_checks.h"
#include "balancer_fixture.h"
#include "packet_builder.h"
#include "stats.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using namespace ballast::test;

constexpr std::uint32_t kBackendsPerVip = 3;

struct Vip {
  std::uint32_t id;
  int family;
  std::uint8_t proto;
  std::uint16_t port;
  std::uint32_t flags;
  int backend_family;
  std::uint8_t egress;
};

// The world: every mode and family, one of each special case.
constexpr std::array<Vip, 6> kVips = {{
    {1, 4, ipproto_tcp, port_http, 0, 4, 0},
    {2, 4, ipproto_udp, port_dns, BALLAST_VIP_F_ENCAP_IPIP | BALLAST_VIP_F_NO_SRC_PORT, 4, 1},
    {3, 6, ipproto_tcp, port_https, BALLAST_VIP_F_ENCAP_GUE, 6, 0},
    {4, 6, ipproto_udp, port_dns, BALLAST_VIP_F_ENCAP_IPIP, 4, 0},
    {5, 4, ipproto_tcp, port_https, BALLAST_VIP_F_ENCAP_GUE, 6, 0},
    {6, 6, ipproto_udp, 5353, BALLAST_VIP_F_FRAGMENTS, 6, 0},
}};

MacAddr backend_mac(std::uint32_t id) {
  return MacAddr{0x02, 0x00, 0x00, 0x00, 0x02, static_cast<std::uint8_t>(id)};
}

ballast_egress second_egress() {
  ballast_egress e = default_egress(mac_lb_second, v4_lb_second);
  e.ifindex = 1;  // lo: any existing device makes a valid devmap entry
  std::memcpy(e.src6, v6_lb_second.octets.data(), sizeof(e.src6));
  return e;
}

std::unique_ptr<BalancerHarness> build_world() {
  auto lb = std::make_unique<BalancerHarness>();
  lb->set_egress(1, second_egress());
  lb->set_tx_port(1, 1);
  for (const Vip& v : kVips) {
    auto key = [&](std::uint16_t port) {
      return v.family == 4 ? vip_key_v4(v4_vip_one, port, v.proto)
                           : vip_key_v6(v6_vip_one, port, v.proto);
    };
    const std::uint16_t gue = (v.flags & BALLAST_VIP_F_ENCAP_GUE) ? port_gue : 0;
    if (v.flags & BALLAST_VIP_F_FRAGMENTS) lb->add_vip(key(0), v.id, v.flags, gue);
    lb->add_vip(key(v.port), v.id, v.flags & ~BALLAST_VIP_F_FRAGMENTS, gue);
    std::vector<std::uint32_t> ids;
    for (std::uint32_t k = 0; k < kBackendsPerVip; ++k) {
      const std::uint32_t id = v.id * 4 + k;
      ballast_backend slot =
          v.backend_family == 4
              ? backend_slot_v4(Ipv4Addr{{10, 202, static_cast<std::uint8_t>(v.id),
                                          static_cast<std::uint8_t>(k + 1)}},
                                backend_mac(id), v.id)
              : backend_slot_v6(Ipv6Addr{{0xfd, 0x00, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0, static_cast<std::uint8_t>(v.id),
                                          static_cast<std::uint8_t>(k + 1)}},
                                backend_mac(id), v.id);
      slot.egress = v.egress;
      lb->set_backend(id, slot);
      ids.push_back(id);
    }
    lb->install_maglev_table(v.id, round_robin_table(ids));
  }
  return lb;
}

// libFuzzer sees the coverage of this process, not of the BPF program: a
// new path through the program shows here only as what it did. Each
// input's (reason, action, how the length changed, the backend it went to)
// bumps one of these counters, which libFuzzer reads as coverage
// (-fsanitize=fuzzer's extra counters), so an input that makes the program
// do something new is kept.
__attribute__((used, section("__libfuzzer_extra_counters"))) std::uint8_t
    behaviour_counters[1 << 14];

void count_behaviour(std::uint32_t reason, std::uint32_t action, long length_change,
                     std::uint8_t backend) {
  std::uint32_t h = reason * 0x9e3779b1u;
  h ^= action * 0x85ebca6bu;
  h ^= static_cast<std::uint32_t>(length_change + 4096) * 0xc2b2ae35u;
  h ^= backend * 0x27d4eb2fu;
  h ^= h >> 15;
  std::uint8_t& c = behaviour_counters[h % sizeof(behaviour_counters)];
  if (c < 255) ++c;
}

BalancerHarness& world() {
  static std::unique_ptr<BalancerHarness> lb = build_world();
  return *lb;
}

[[noreturn]] void broken(const std::string& what, const Bytes& in, const Bytes& out) {
  std::fprintf(stderr, "packet_fuzz: %s\n--- input ---\n%s--- output ---\n%s", what.c_str(),
               hex_dump(in).c_str(), hex_dump(out).c_str());
  std::abort();
}

std::array<std::uint64_t, BALLAST_REASON_COUNT> reason_packets(const BalancerHarness& lb) {
  std::array<std::uint64_t, BALLAST_REASON_COUNT> out{};
  for (std::uint32_t r = 0; r < BALLAST_REASON_COUNT; ++r)
    out[r] = lb.reason_counters(static_cast<ballast_reason>(r)).packets;
  return out;
}



using ballast::fuzz::be16;

bool ipv4_header_checksum_ok(const std::uint8_t* ip, std::size_t ihl_bytes) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < ihl_bytes; i += 2) sum += be16(ip + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

// The input's IP packet as its header says (without Ethernet padding), or
// empty when the frame is not IPv4/IPv6 or its lengths do not fit.
Bytes ip_packet(const Bytes& frame) {
  if (frame.size() < 14) return {};
  const std::uint16_t type = be16(&frame[12]);
  if (type == ethertype_ipv4 && frame.size() >= 34) {
    const std::size_t total = be16(&frame[16]);
    if (total >= 20 && 14 + total <= frame.size()) return Bytes(frame.begin() + 14, frame.begin() + 14 + total);
  } else if (type == ethertype_ipv6 && frame.size() >= 54) {
    const std::size_t total = 40 + be16(&frame[18]);
    if (14 + total <= frame.size()) return Bytes(frame.begin() + 14, frame.begin() + 14 + total);
  }
  return {};
}

bool addressed_to_vip(const Bytes& frame) {
  if (frame.size() < 14) return false;
  const std::uint16_t type = be16(&frame[12]);
  if (type == ethertype_ipv4 && frame.size() >= 34)
    return std::equal(v4_vip_one.octets.begin(), v4_vip_one.octets.end(), frame.begin() + 30);
  if (type == ethertype_ipv6 && frame.size() >= 54)
    return std::equal(v6_vip_one.octets.begin(), v6_vip_one.octets.end(), frame.begin() + 38);
  return false;
}

bool is_backend_mac(const std::uint8_t* mac) {
  for (const Vip& v : kVips)
    for (std::uint32_t k = 0; k < kBackendsPerVip; ++k) {
      const MacAddr m = backend_mac(v.id * 4 + k);
      if (std::equal(m.begin(), m.end(), mac)) return true;
    }
  return false;
}

// An encapsulated frame: its outer headers, then the input's IP packet,
// then whatever followed that packet in the input frame (Ethernet padding
// of a short frame is carried, not trimmed: the receiver reads the outer
// lengths, as it would read the inner ones of the unencapsulated frame).
void check_encapsulated(const Bytes& in, const Bytes& out, const Bytes& inner) {
  const std::uint16_t type = be16(&out[12]);
  std::size_t at = 14, end = 0;
  std::uint8_t next = 0;
  if (type == ethertype_ipv4) {
    if (out.size() < at + 20 || (out[at] >> 4) != 4 || (out[at] & 0xf) != 5)
      broken("encapsulated: the outer IPv4 header is not a plain 20 bytes", in, out);
    end = at + be16(&out[at + 2]);
    if (!ipv4_header_checksum_ok(&out[at], 20))
      broken("encapsulated: the outer IPv4 header checksum is wrong", in, out);
    next = out[at + 9];
    at += 20;
  } else if (type == ethertype_ipv6) {
    if (out.size() < at + 40 || (out[at] >> 4) != 6)
      broken("encapsulated: the outer IPv6 header is cut", in, out);
    end = at + 40 + be16(&out[at + 4]);
    next = out[at + 6];
    at += 40;
  } else {
    broken("encapsulated: the outer header is neither IPv4 nor IPv6", in, out);
  }
  if (end > out.size()) broken("encapsulated: the outer length runs past the frame", in, out);
  const std::size_t carried = in.size() - 14 - inner.size();
  if (out.size() - end != carried ||
      !std::equal(in.end() - static_cast<std::ptrdiff_t>(carried), in.end(),
                  out.begin() + static_cast<std::ptrdiff_t>(end)))
    broken("encapsulated: the outer length does not end where the input's packet did", in, out);
  if (next == ipproto_udp) {  // gue: UDP to the VIP's GUE port, then the packet
    if (end < at + 8) broken("gue: the UDP header is cut", in, out);
    if (be16(&out[at + 2]) != port_gue) broken("gue: not sent to the GUE port", in, out);
    if (be16(&out[at + 4]) != end - at) broken("gue: the UDP length is not the packet's", in, out);
    at += 8;
  } else if (next != ipproto_ipip && next != ipproto_ipv6) {
    broken("encapsulated: the outer protocol is neither ipip, ipv6 nor UDP", in, out);
  }
  if (end - at != inner.size() ||
      !std::equal(inner.begin(), inner.end(), out.begin() + static_cast<std::ptrdiff_t>(at)))
    broken("encapsulated: the inner packet is not the input's IP packet byte for byte", in, out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 9000) return 0;
  BalancerHarness& lb = world();
  const Bytes in(data, data + size);
  const auto before = reason_packets(lb);
  const RunResult r = lb.run(in);
  const auto after = reason_packets(lb);
  if (r.error != 0) {
    // The kernel refuses frames shorter than an Ethernet header: nothing ran.
    if (size < 14 && after == before) return 0;
    broken("BPF_PROG_TEST_RUN failed: " + std::to_string(r.error), in, {});
  }
  const Bytes& out = r.frame;

  const auto counted = ballast::fuzz::one_reason_moved(before, after);
  if (const auto* wrong = std::get_if<std::string>(&counted)) broken(*wrong, in, out);
  const int moved = std::get<int>(counted);
  // FUZZ_SHOW=1: what each input did (to see what a corpus covers).
  static const bool show = std::getenv("FUZZ_SHOW") != nullptr;
  if (show) std::fprintf(stderr, "packet_fuzz: action %u, %s\n", r.action,
                         std::string(ballast::reason_name(static_cast<std::uint32_t>(moved))).c_str());
  count_behaviour(static_cast<std::uint32_t>(moved), r.action,
                  static_cast<long>(out.size()) - static_cast<long>(in.size()),
                  out.size() >= 6 ? out[5] : 0);
  const std::string verdict(ballast::reason_verdict(static_cast<std::uint32_t>(moved)));
  const bool sent = r.action == XDP_TX || r.action == XDP_REDIRECT;
  if ((verdict == "tx") != sent || (verdict == "pass") != (r.action == XDP_PASS) ||
      (verdict == "drop") != (r.action == XDP_DROP))
    broken("action " + std::to_string(r.action) + " counted under a '" + verdict + "' reason", in,
           out);

  if (r.action == XDP_PASS && out != in) broken("a passed frame was changed", in, out);
  if (!sent) return 0;

  if (!addressed_to_vip(in)) broken("a frame not addressed to a VIP was sent on", in, out);
  if (out.size() < 14) broken("a sent frame shorter than Ethernet", in, out);
  if (moved == BALLAST_REASON_TX_ICMP_TOO_BIG) {
    if (!std::equal(in.begin() + 6, in.begin() + 12, out.begin()))
      broken("an ICMP too-big answer not sent back to the frame's sender", in, out);
    return 0;
  }
  if (!is_backend_mac(out.data())) broken("sent to a MAC that is no backend's", in, out);
  const bool second = r.action == XDP_REDIRECT;
  const MacAddr& own = second ? mac_lb_second : mac_lb;
  if (!std::equal(own.begin(), own.end(), out.begin() + 6))
    broken("sent from a MAC that is not the egress interface's", in, out);
  const Bytes inner = ip_packet(in);
  if (inner.empty()) broken("sent a frame whose IP lengths do not fit it", in, out);
  if (moved == BALLAST_REASON_TX_ENCAP_IPIP || moved == BALLAST_REASON_TX_ENCAP_GUE ||
      out.size() != in.size() || !std::equal(in.begin() + 12, in.end(), out.begin() + 12)) {
    // Not the input with new MACs: it must be an encapsulation of it.
    check_encapsulated(in, out, inner);
  }
  return 0;
}

// Half of the mutations get their IPv4 total length and header checksum,
// IPv6 payload length and UDP length made consistent again, so the
// mutations reach past the checks that would refuse them first.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  size = LLVMFuzzerMutate(data, size, max_size);
  if ((seed & 1) || size < 14) return size;
  const std::uint16_t type = be16(data + 12);
  std::uint8_t* ip = data + 14;
  const std::size_t ip_len = size - 14;
  std::uint8_t proto = 0;
  std::size_t l4 = 0;
  if (type == ethertype_ipv4 && ip_len >= 20 && (ip[0] >> 4) == 4) {
    const std::size_t ihl = (ip[0] & 0xf) * 4u;
    if (ihl < 20 || ihl > ip_len) return size;
    ip[2] = static_cast<std::uint8_t>(ip_len >> 8);
    ip[3] = static_cast<std::uint8_t>(ip_len);
    ip[10] = ip[11] = 0;
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < ihl; i += 2) sum += be16(ip + i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    const std::uint16_t csum = static_cast<std::uint16_t>(~sum);
    ip[10] = static_cast<std::uint8_t>(csum >> 8);
    ip[11] = static_cast<std::uint8_t>(csum);
    proto = ip[9];
    l4 = ihl;
  } else if (type == ethertype_ipv6 && ip_len >= 40) {
    ip[4] = static_cast<std::uint8_t>((ip_len - 40) >> 8);
    ip[5] = static_cast<std::uint8_t>(ip_len - 40);
    proto = ip[6];
    l4 = 40;
  } else {
    return size;
  }
  if (proto == ipproto_udp && ip_len >= l4 + 8) {
    const std::size_t udp_len = ip_len - l4;
    ip[l4 + 4] = static_cast<std::uint8_t>(udp_len >> 8);
    ip[l4 + 5] = static_cast<std::uint8_t>(udp_len);
  }
  return size;
}
