// packet_builder.h: frames for BPF_PROG_TEST_RUN, built field by field and
// never pasted as hex, plus the named addresses the data-plane tests and the
// bench speak in (after cilium's bpf/tests/pktgen.h).
//
// A frame is described layer by layer and serialized by build(), which fills
// in every length, the EtherType, the IPv4 header checksum and the L4
// checksum. The malformation knobs (ip_ihl, tcp_doff, ...) each break one
// field and leave everything else computed as usual, so a test breaks exactly
// the rule it names.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ballast::test {

using Bytes = std::vector<std::uint8_t>;
using MacAddr = std::array<std::uint8_t, 6>;

// Addresses hold their octets in wire order.
struct Ipv4Addr {
  std::array<std::uint8_t, 4> octets;

  // The address as a __be32 field holds it (network order in memory).
  std::uint32_t be32() const;
};

struct Ipv6Addr {
  std::array<std::uint8_t, 16> octets;
};

// EtherTypes and IP protocol numbers the tests name.
inline constexpr std::uint16_t ethertype_ipv4 = 0x0800;
inline constexpr std::uint16_t ethertype_arp = 0x0806;
inline constexpr std::uint16_t ethertype_ipv6 = 0x86dd;
inline constexpr std::uint8_t ipproto_icmp = 1;
inline constexpr std::uint8_t ipproto_tcp = 6;
inline constexpr std::uint8_t ipproto_udp = 17;

// TCP flag bits, OR them together: tcp_syn | tcp_ack.
inline constexpr std::uint8_t tcp_fin = 1u << 0;
inline constexpr std::uint8_t tcp_syn = 1u << 1;
inline constexpr std::uint8_t tcp_rst = 1u << 2;
inline constexpr std::uint8_t tcp_psh = 1u << 3;
inline constexpr std::uint8_t tcp_ack = 1u << 4;

// --- Test vocabulary ---------------------------------------------------------
// Private 10.2xx.0.0/16 ranges and locally administered MACs (02:...): they
// never leave the test run, but read as what they stand for in a hex dump.

inline constexpr Ipv4Addr v4_vip_one{{10, 200, 0, 1}};
inline constexpr Ipv4Addr v4_vip_two{{10, 200, 0, 2}};
inline constexpr Ipv4Addr v4_client_one{{10, 201, 0, 1}};
inline constexpr Ipv4Addr v4_client_two{{10, 201, 0, 2}};
inline constexpr Ipv4Addr v4_backend_one{{10, 202, 0, 1}};
inline constexpr Ipv4Addr v4_backend_two{{10, 202, 0, 2}};
inline constexpr Ipv4Addr v4_backend_three{{10, 202, 0, 3}};
// The balancer's own address: the outer source of ipip packets.
inline constexpr Ipv4Addr v4_lb{{10, 200, 0, 2}};
// An address the balancer serves nothing on.
inline constexpr Ipv4Addr v4_other_host{{10, 203, 0, 1}};

inline constexpr Ipv6Addr v6_client_one{
    {0xfd, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
inline constexpr Ipv6Addr v6_vip_one{{0xfd, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};

inline constexpr std::uint16_t port_http = 80;
inline constexpr std::uint16_t port_dns = 53;
inline constexpr std::uint16_t port_https = 443;
inline constexpr std::uint16_t port_client_one = 40001;
inline constexpr std::uint16_t port_client_two = 40002;

// The router that hands client traffic to the balancer.
inline constexpr MacAddr mac_router{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
// The balancer's own interface (the program's lb_mac).
inline constexpr MacAddr mac_lb{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}};
inline constexpr MacAddr mac_backend_one{{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}};
inline constexpr MacAddr mac_backend_two{{0x02, 0x00, 0x00, 0x00, 0x01, 0x02}};
inline constexpr MacAddr mac_backend_three{{0x02, 0x00, 0x00, 0x00, 0x01, 0x03}};
inline constexpr MacAddr mac_broadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};

// --- Builder -------------------------------------------------------------------

// Fluent description of one frame. Ports, lengths and other numbers are given
// in host order; build() writes them in network order.
//
//   Bytes syn = PacketBuilder()
//                   .eth(mac_router, mac_lb)
//                   .ipv4(v4_client_one, v4_vip_one)
//                   .tcp(port_client_one, port_http, tcp_syn)
//                   .payload("hello")
//                   .build();
class PacketBuilder {
 public:
  PacketBuilder& eth(MacAddr src, MacAddr dst);
  // Overrides the EtherType the network layer would imply.
  PacketBuilder& ethertype(std::uint16_t type);

  PacketBuilder& ipv4(Ipv4Addr src, Ipv4Addr dst);
  PacketBuilder& ipv6(Ipv6Addr src, Ipv6Addr dst);
  // An ARP who-has for @target, asked by @sender_mac/@sender.
  PacketBuilder& arp_request(MacAddr sender_mac, Ipv4Addr sender, Ipv4Addr target);

  PacketBuilder& tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags);
  PacketBuilder& udp(std::uint16_t sport, std::uint16_t dport);
  PacketBuilder& icmp_echo_request(std::uint16_t id, std::uint16_t sequence);
  PacketBuilder& payload(std::string_view text);
  PacketBuilder& payload(std::span<const std::uint8_t> bytes);

  // Zero bytes after the network-layer packet, as Ethernet padding adds to
  // short frames: the frame is longer than the IPv4 total length says.
  PacketBuilder& eth_padding(std::size_t bytes);

  // IPv4 header knobs (valid packets).
  PacketBuilder& ip_options(std::span<const std::uint8_t> options);  // multiple of 4
  // @offset_bytes is a multiple of 8, as the header stores it in 8-byte units.
  PacketBuilder& ip_fragment(std::uint16_t offset_bytes, bool more_fragments);

  // Malformations: each sets one field to the given value instead of the
  // computed one.
  PacketBuilder& ip_version(std::uint8_t version);
  PacketBuilder& ip_ihl(std::uint8_t words);
  PacketBuilder& ip_total_length(std::uint16_t bytes);
  // The protocol field, instead of the one the transport layer implies
  // (e.g. a later fragment: TCP's number, but no TCP header in it).
  PacketBuilder& ip_protocol(std::uint8_t protocol);
  PacketBuilder& tcp_doff(std::uint8_t words);
  PacketBuilder& udp_length(std::uint16_t bytes);
  // Keeps only the first @bytes of the L4 segment (header + payload), with
  // the IP lengths and checksum consistent with the cut: a transport header
  // that is short inside a well-formed IP packet.
  PacketBuilder& cut_l4_to(std::size_t bytes);

  Bytes build() const;

 private:
  struct Eth {
    MacAddr src{};
    MacAddr dst{};
  };
  struct Ipv4 {
    Ipv4Addr src{};
    Ipv4Addr dst{};
    Bytes options;
    std::uint16_t frag_field = 0;  // flags + offset, host order
    std::optional<std::uint8_t> version;
    std::optional<std::uint8_t> ihl;
    std::optional<std::uint16_t> total_length;
    std::optional<std::uint8_t> protocol;
  };
  struct Ipv6 {
    Ipv6Addr src{};
    Ipv6Addr dst{};
  };
  struct Arp {
    MacAddr sender_mac{};
    Ipv4Addr sender{};
    Ipv4Addr target{};
  };
  struct Tcp {
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    std::uint8_t flags = 0;
    std::optional<std::uint8_t> doff;
  };
  struct Udp {
    std::uint16_t sport = 0;
    std::uint16_t dport = 0;
    std::optional<std::uint16_t> length;
  };
  struct IcmpEcho {
    std::uint16_t id = 0;
    std::uint16_t sequence = 0;
  };

  Ipv4& ipv4_layer(const char* knob);
  Bytes build_l4(std::uint8_t* protocol) const;
  Bytes build_l3(Bytes l4, std::uint8_t protocol, std::uint16_t* ethertype) const;

  Eth eth_;
  std::optional<std::uint16_t> ethertype_;
  std::variant<std::monostate, Ipv4, Ipv6, Arp> l3_;
  std::variant<std::monostate, Tcp, Udp, IcmpEcho> l4_;
  Bytes payload_;
  std::optional<std::size_t> l4_cut_;
  std::size_t eth_padding_ = 0;
};

// RFC 1071 Internet checksum of @bytes, added to a running 32-bit @sum.
std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::uint8_t> bytes);
// Folds a running sum into the 16-bit ones' complement checksum.
std::uint16_t checksum_fold(std::uint32_t sum);

// Offsets and rows of 16 bytes, for failure messages.
std::string hex_dump(std::span<const std::uint8_t> frame);

}  // namespace ballast::test
