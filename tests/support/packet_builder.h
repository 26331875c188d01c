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

// Either family, where a helper takes both (the outer header of a tunnel).
using IpAddr = std::variant<Ipv4Addr, Ipv6Addr>;

// EtherTypes and IP protocol numbers the tests name.
inline constexpr std::uint16_t ethertype_ipv4 = 0x0800;
inline constexpr std::uint16_t ethertype_arp = 0x0806;
inline constexpr std::uint16_t ethertype_ipv6 = 0x86dd;
inline constexpr std::uint16_t ethertype_vlan = 0x8100;  // 802.1Q
inline constexpr std::uint16_t ethertype_qinq = 0x88a8;  // 802.1ad
inline constexpr std::uint8_t ipproto_hopopts = 0;
inline constexpr std::uint8_t ipproto_icmp = 1;
inline constexpr std::uint8_t ipproto_ipip = 4;  // IPv4 inside
inline constexpr std::uint8_t ipproto_tcp = 6;
inline constexpr std::uint8_t ipproto_udp = 17;
inline constexpr std::uint8_t ipproto_ipv6 = 41;  // IPv6 inside
inline constexpr std::uint8_t ipproto_routing = 43;
inline constexpr std::uint8_t ipproto_fragment = 44;
inline constexpr std::uint8_t ipproto_icmpv6 = 58;
inline constexpr std::uint8_t ipproto_dstopts = 60;

// ICMP types and codes the tests name (RFC 792, RFC 4443).
inline constexpr std::uint8_t icmp_dest_unreachable = 3;
inline constexpr std::uint8_t icmp_time_exceeded = 11;
inline constexpr std::uint8_t icmp_code_port_unreachable = 3;
inline constexpr std::uint8_t icmp_code_frag_needed = 4;
inline constexpr std::uint8_t icmp6_dest_unreachable = 1;
inline constexpr std::uint8_t icmp6_packet_too_big = 2;
inline constexpr std::uint8_t icmp6_time_exceeded = 3;

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
// The balancer's second interface (egress 1): outer sources of its tunnels.
inline constexpr Ipv4Addr v4_lb_second{{10, 206, 0, 2}};
// An address the balancer serves nothing on.
inline constexpr Ipv4Addr v4_other_host{{10, 203, 0, 1}};

// IPv6 twins in fd00:2xx::/32, the same last digits as their IPv4 names.
inline constexpr Ipv6Addr v6_client_one{
    {0xfd, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
inline constexpr Ipv6Addr v6_client_two{
    {0xfd, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}};
inline constexpr Ipv6Addr v6_vip_one{{0xfd, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
inline constexpr Ipv6Addr v6_vip_two{{0xfd, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}};
inline constexpr Ipv6Addr v6_backend_one{
    {0xfd, 0x00, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
inline constexpr Ipv6Addr v6_backend_two{
    {0xfd, 0x00, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}};
inline constexpr Ipv6Addr v6_backend_three{
    {0xfd, 0x00, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}};
// The balancer's own IPv6 address: the outer source of IPv6 tunnels.
inline constexpr Ipv6Addr v6_lb{{0xfd, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x02}};
inline constexpr Ipv6Addr v6_lb_second{
    {0xfd, 0x00, 0x02, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}};
inline constexpr Ipv6Addr v6_other_host{
    {0xfd, 0x00, 0x02, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
// A router on the path back to the client: the source of ICMP errors.
inline constexpr Ipv4Addr v4_router{{10, 205, 0, 1}};
inline constexpr Ipv6Addr v6_router{{0xfd, 0x00, 0x02, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};

inline constexpr std::uint16_t port_http = 80;
inline constexpr std::uint16_t port_dns = 53;
inline constexpr std::uint16_t port_https = 443;
inline constexpr std::uint16_t port_client_one = 40001;
inline constexpr std::uint16_t port_client_two = 40002;
// The UDP port GUE tunnels arrive on at the backends.
inline constexpr std::uint16_t port_gue = 6080;

// The router that hands client traffic to the balancer.
inline constexpr MacAddr mac_router{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
// The balancer's own interface (egress 0's MAC).
inline constexpr MacAddr mac_lb{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}};
inline constexpr MacAddr mac_backend_one{{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}};
inline constexpr MacAddr mac_backend_two{{0x02, 0x00, 0x00, 0x00, 0x01, 0x02}};
inline constexpr MacAddr mac_backend_three{{0x02, 0x00, 0x00, 0x00, 0x01, 0x03}};
// The balancer's second interface (egress 1, left by XDP_REDIRECT).
inline constexpr MacAddr mac_lb_second{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0c}};
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
  // An 802.1Q tag (or 802.1ad with @tpid = ethertype_qinq) between the MACs
  // and the EtherType: TPID, then the tag control information (PCP, DEI, VID).
  PacketBuilder& vlan(std::uint16_t tci, std::uint16_t tpid = ethertype_vlan);

  PacketBuilder& ipv4(Ipv4Addr src, Ipv4Addr dst);
  PacketBuilder& ipv6(Ipv6Addr src, Ipv6Addr dst);
  // An ARP who-has for @target, asked by @sender_mac/@sender.
  PacketBuilder& arp_request(MacAddr sender_mac, Ipv4Addr sender, Ipv4Addr target);

  PacketBuilder& tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags);
  PacketBuilder& udp(std::uint16_t sport, std::uint16_t dport);
  PacketBuilder& icmp_echo_request(std::uint16_t id, std::uint16_t sequence);
  PacketBuilder& icmp6_echo_request(std::uint16_t id, std::uint16_t sequence);
  // An ICMP (IPv4) error: type, code, the 4 bytes after the checksum (e.g.
  // the next-hop MTU of "fragmentation needed" in its low 16 bits), then
  // @quoted, the start of the packet the error is about.
  PacketBuilder& icmp_error(std::uint8_t type, std::uint8_t code, std::uint32_t rest_of_header,
                            std::span<const std::uint8_t> quoted);
  // The same for ICMPv6 (the MTU of "packet too big" is all 4 bytes); the
  // checksum covers the IPv6 pseudo-header.
  PacketBuilder& icmp6_error(std::uint8_t type, std::uint8_t code, std::uint32_t rest_of_header,
                             std::span<const std::uint8_t> quoted);
  PacketBuilder& payload(std::string_view text);
  PacketBuilder& payload(std::span<const std::uint8_t> bytes);

  // Zero bytes after the network-layer packet, as Ethernet padding adds to
  // short frames: the frame is longer than the IPv4 total length says.
  PacketBuilder& eth_padding(std::size_t bytes);

  // IPv4 header knobs (valid packets).
  PacketBuilder& ip_options(std::span<const std::uint8_t> options);  // multiple of 4
  // @offset_bytes is a multiple of 8, as the header stores it in 8-byte units.
  PacketBuilder& ip_fragment(std::uint16_t offset_bytes, bool more_fragments);
  PacketBuilder& ip_dont_fragment(bool set = true);
  PacketBuilder& ip_tos(std::uint8_t tos);
  PacketBuilder& ip_id(std::uint16_t id);  // 1 unless set

  // IPv6 header knobs (valid packets).
  PacketBuilder& ipv6_traffic_class(std::uint8_t traffic_class);
  PacketBuilder& ipv6_flow_label(std::uint32_t label);  // low 20 bits
  // Extension headers, in the order called, between the fixed header and
  // the transport header; build() chains their next-header fields. Hop-by-
  // hop and destination options are padded with PadN to 8 * (1 + @len_units)
  // bytes; the routing header is type 253 (RFC 4727, experimental) with no
  // segments left, which every node ignores.
  PacketBuilder& ipv6_hop_by_hop(std::uint8_t len_units = 0);
  PacketBuilder& ipv6_routing(std::uint8_t len_units = 0);
  PacketBuilder& ipv6_dest_opts(std::uint8_t len_units = 0);
  // @offset_bytes is a multiple of 8; @more: the M flag.
  PacketBuilder& ipv6_fragment(std::uint16_t offset_bytes, bool more, std::uint32_t id);

  // Malformations: each sets one field to the given value instead of the
  // computed one.
  PacketBuilder& ip_version(std::uint8_t version);  // IPv4 or IPv6
  PacketBuilder& ip_ihl(std::uint8_t words);
  PacketBuilder& ip_total_length(std::uint16_t bytes);
  PacketBuilder& ipv6_payload_length(std::uint16_t bytes);
  // The hdr ext len field of the last extension header added, leaving its
  // size as built: the header claims more (or less) than it holds.
  PacketBuilder& ipv6_ext_len_field(std::uint8_t len_units);
  // The protocol field (IPv4) or the last next-header field (IPv6), instead
  // of the one the transport layer implies (e.g. a later fragment: TCP's
  // number, but no TCP header in it; or 4 / 41 before an inner packet given
  // as payload).
  PacketBuilder& ip_protocol(std::uint8_t protocol);
  PacketBuilder& tcp_doff(std::uint8_t words);
  PacketBuilder& udp_length(std::uint16_t bytes);
  // The UDP checksum field as given (0: none, as tunnels send) instead of
  // the computed one.
  PacketBuilder& udp_checksum(std::uint16_t checksum);
  // Keeps only the first @bytes of the L4 segment (header + payload), with
  // the IP lengths and checksum consistent with the cut: a transport header
  // that is short inside a well-formed IP packet.
  PacketBuilder& cut_l4_to(std::size_t bytes);
  // Cuts the built frame to its first @bytes, every length field left as
  // built: a frame that ends before its headers say it does.
  PacketBuilder& truncate(std::size_t bytes);

  Bytes build() const;

 private:
  struct Eth {
    MacAddr src{};
    MacAddr dst{};
  };
  struct Vlan {
    std::uint16_t tpid = 0;
    std::uint16_t tci = 0;
  };
  struct Ipv4 {
    Ipv4Addr src{};
    Ipv4Addr dst{};
    Bytes options;
    std::uint16_t frag_field = 0;  // flags + offset, host order
    std::uint8_t tos = 0;
    std::uint16_t id = 1;
    std::optional<std::uint8_t> version;
    std::optional<std::uint8_t> ihl;
    std::optional<std::uint16_t> total_length;
    std::optional<std::uint8_t> protocol;
  };
  struct Ipv6Ext {
    std::uint8_t type = 0;  // its own protocol number (0, 43, 44, 60)
    Bytes body;             // the header with its next-header field still 0
  };
  struct Ipv6 {
    Ipv6Addr src{};
    Ipv6Addr dst{};
    std::uint8_t traffic_class = 0;
    std::uint32_t flow_label = 0;
    std::vector<Ipv6Ext> ext;
    std::optional<std::uint8_t> version;
    std::optional<std::uint16_t> payload_length;
    std::optional<std::uint8_t> protocol;
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
    std::optional<std::uint16_t> checksum;
  };
  // ICMP or ICMPv6 header: type, code, checksum, 4 bytes (echo: id and
  // sequence), then the payload (an error's quoted packet).
  struct Icmp {
    bool v6 = false;
    std::uint8_t type = 0;
    std::uint8_t code = 0;
    std::uint32_t rest = 0;
  };

  Ipv4& ipv4_layer(const char* knob);
  Ipv6& ipv6_layer(const char* knob);
  PacketBuilder& ipv6_ext(std::uint8_t type, Bytes body);
  Bytes build_l4(std::uint8_t* protocol) const;
  void finish_l4(Bytes& l4, std::uint8_t protocol, std::uint32_t pseudo_sum) const;
  Bytes build_l3(Bytes l4, std::uint8_t protocol, std::uint16_t* ethertype) const;

  Eth eth_;
  std::optional<Vlan> vlan_;
  std::optional<std::uint16_t> ethertype_;
  std::variant<std::monostate, Ipv4, Ipv6, Arp> l3_;
  std::variant<std::monostate, Tcp, Udp, Icmp> l4_;
  Bytes payload_;
  std::optional<std::size_t> l4_cut_;
  std::size_t eth_padding_ = 0;
  std::optional<std::size_t> truncate_;
};

// --- Expected outputs ------------------------------------------------------------
// What the balancer sends, built from docs/dataplane.md's rules (not from the
// program), around a client's frame as it arrived.

// The outer header of a tunnel to a backend: Ethernet from our egress MAC to
// the next hop's, then an outer IP header of @src's family (@dst the same).
struct Outer {
  MacAddr src_mac{};
  MacAddr dst_mac{};
  IpAddr src;
  IpAddr dst;
  // The flow's hash: the IPv6 flow label (its low 20 bits) and the GUE
  // source port.
  std::uint32_t flow_hash = 0;
};

// ipip: [Ethernet][outer IP][the client's IP packet, byte for byte].
// Outer IPv4: IHL 5, TOS and DF from an inner IPv4 (TOS from an inner IPv6's
// traffic class, DF set: IPv6 is never fragmented on the way), ID 0, TTL 64,
// protocol 4 or 41, checksum set.
// Outer IPv6: traffic class from the inner TOS / traffic class, flow label =
// the flow hash's low 20 bits, next header 4 or 41, hop limit 64.
// @frame: the client's frame; everything after its 14-byte Ethernet header
// is the inner packet.
Bytes encapsulate_ipip(std::span<const std::uint8_t> frame, const Outer& outer);
// gue: as ipip with protocol / next header 17, then UDP from
// gue_source_port(flow hash) to @gue_port, checksum 0, then the client's IP
// packet (GUE variant 1).
Bytes encapsulate_gue(std::span<const std::uint8_t> frame, const Outer& outer,
                      std::uint16_t gue_port);
// gue with Ballast's second-chance header between the UDP header and the
// client's packet (docs/fleet.md): GUE variant 0, hlen 5, proto 4 or 41
// (the inner version), flags 0, then magic 0xba11, the family of @prev (4
// or 6), @hops and @prev's 16 address bytes (an IPv4 address in the first
// four, the rest zero).
Bytes encapsulate_gue_second_chance(std::span<const std::uint8_t> frame, const Outer& outer,
                                    std::uint16_t gue_port, const IpAddr& prev,
                                    std::uint8_t hops);
// 49152 + (hash mod 16384).
std::uint16_t gue_source_port(std::uint32_t flow_hash);

// The balancer's answer to a packet it cannot encapsulate within the egress
// MTU: from the VIP (the client packet's destination) to the client, out the
// way the frame came (MACs swapped). IPv4: ICMP type 3 code 4, next-hop MTU
// @mtu, quoting the first 68 bytes of the client's IP packet; IPv4 header TOS
// 0, ID 0, no flags, TTL 64. IPv6: ICMPv6 type 2, MTU @mtu, quoting the first
// 128 bytes; traffic class 0, flow label 0, hop limit 64.
Bytes icmp_too_big_reply(std::span<const std::uint8_t> frame, std::uint16_t mtu);

// The IP packet of an Ethernet frame (everything after its 14 bytes).
Bytes ip_packet_of(std::span<const std::uint8_t> frame);

// RFC 1071 Internet checksum of @bytes, added to a running 32-bit @sum.
std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::uint8_t> bytes);
// Folds a running sum into the 16-bit ones' complement checksum.
std::uint16_t checksum_fold(std::uint32_t sum);

// Offsets and rows of 16 bytes, for failure messages.
std::string hex_dump(std::span<const std::uint8_t> frame);

}  // namespace ballast::test
