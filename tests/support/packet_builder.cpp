// packet_builder.cpp: serializes a PacketBuilder description into a frame.
// Header layouts are written out here byte by byte from the RFCs rather than
// through the kernel's structs, so the tests do not share the program's view
// of a header with the program they test.
#include "packet_builder.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace ballast::test {

namespace {

constexpr std::size_t eth_header_len = 14;
constexpr std::size_t ipv4_header_len = 20;
constexpr std::size_t tcp_header_len = 20;
constexpr std::size_t udp_header_len = 8;
constexpr std::size_t icmp_header_len = 8;
constexpr std::size_t ipv6_ext_unit = 8;

constexpr std::uint16_t ip_dont_fragment_bit = 0x4000;
constexpr std::uint8_t icmp6_echo_request_type = 128;
// The routing type the builder's routing header carries (RFC 4727).
constexpr std::uint8_t routing_type_experimental = 253;
// IPv6 option types (RFC 8200 section 4.2).
constexpr std::uint8_t ipv6_option_pad1 = 0;
constexpr std::uint8_t ipv6_option_padn = 1;
// GUE source ports: 49152 on (docs/dataplane.md).
constexpr std::uint16_t gue_source_port_base = 49152;
constexpr std::uint16_t gue_source_port_count = 16384;
// The quoted part of the client's packet in a "too big" reply.
constexpr std::size_t icmp4_quote_len = 68;
constexpr std::size_t icmp6_quote_len = 128;

constexpr std::uint16_t ip_more_fragments = 0x2000;
constexpr std::uint8_t default_ttl = 64;
constexpr std::uint32_t default_tcp_seq = 1000;
constexpr std::uint32_t default_tcp_ack_seq = 2000;
constexpr std::uint16_t default_tcp_window = 64240;
constexpr std::uint8_t icmp_echo_request_type = 8;

void put_u8(Bytes& out, std::uint8_t value) { out.push_back(value); }

void put_be16(Bytes& out, std::uint16_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

void put_be32(Bytes& out, std::uint32_t value) {
  put_be16(out, static_cast<std::uint16_t>(value >> 16));
  put_be16(out, static_cast<std::uint16_t>(value));
}

void put_bytes(Bytes& out, std::span<const std::uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void store_be16(Bytes& out, std::size_t offset, std::uint16_t value) {
  out.at(offset) = static_cast<std::uint8_t>(value >> 8);
  out.at(offset + 1) = static_cast<std::uint8_t>(value);
}

std::uint16_t checked_u16(std::size_t value, const char* what) {
  if (value > 0xffff) throw std::length_error(std::string(what) + " does not fit 16 bits");
  return static_cast<std::uint16_t>(value);
}

// Sum of the IPv4 pseudo-header that TCP and UDP checksums cover (RFC 793).
std::uint32_t ipv4_pseudo_header_sum(Ipv4Addr src, Ipv4Addr dst, std::uint8_t protocol,
                                     std::size_t l4_len) {
  Bytes pseudo;
  put_bytes(pseudo, src.octets);
  put_bytes(pseudo, dst.octets);
  put_u8(pseudo, 0);
  put_u8(pseudo, protocol);
  put_be16(pseudo, checked_u16(l4_len, "L4 length"));
  return checksum_add(0, pseudo);
}

// The IPv6 pseudo-header (RFC 8200 section 8.1).
std::uint32_t ipv6_pseudo_header_sum(const Ipv6Addr& src, const Ipv6Addr& dst,
                                     std::uint8_t next_header, std::size_t l4_len) {
  Bytes pseudo;
  put_bytes(pseudo, src.octets);
  put_bytes(pseudo, dst.octets);
  put_be32(pseudo, static_cast<std::uint32_t>(l4_len));
  put_bytes(pseudo, std::array<std::uint8_t, 3>{});
  put_u8(pseudo, next_header);
  return checksum_add(0, pseudo);
}

// Offset of the checksum field inside each L4 header.
constexpr std::size_t tcp_checksum_offset = 16;
constexpr std::size_t udp_checksum_offset = 6;
constexpr std::size_t icmp_checksum_offset = 2;
constexpr std::size_t ipv4_checksum_offset = 10;

// Fills the checksum of a TCP, UDP, ICMP or ICMPv6 segment (left as is when
// the segment is too short to hold one). ICMP (IPv4) has no pseudo-header.
void set_l4_checksum(Bytes& l4, std::uint8_t protocol, std::uint32_t pseudo_sum) {
  if (protocol == ipproto_tcp && l4.size() >= tcp_header_len) {
    store_be16(l4, tcp_checksum_offset, checksum_fold(checksum_add(pseudo_sum, l4)));
  } else if (protocol == ipproto_udp && l4.size() >= udp_header_len) {
    std::uint16_t sum = checksum_fold(checksum_add(pseudo_sum, l4));
    // Zero means "no checksum" in UDP; a computed zero is sent as all ones.
    store_be16(l4, udp_checksum_offset, sum == 0 ? 0xffff : sum);
  } else if (protocol == ipproto_icmp && l4.size() >= icmp_header_len) {
    store_be16(l4, icmp_checksum_offset, checksum_fold(checksum_add(0, l4)));
  } else if (protocol == ipproto_icmpv6 && l4.size() >= icmp_header_len) {
    store_be16(l4, icmp_checksum_offset, checksum_fold(checksum_add(pseudo_sum, l4)));
  }
}

// An 8-byte-unit options header (hop-by-hop, destination options): next
// header (filled in by build()), hdr ext len, then PadN options filling it.
Bytes options_header(std::uint8_t len_units) {
  const std::size_t size = ipv6_ext_unit * (1 + len_units);
  Bytes body;
  put_u8(body, 0);  // next header
  put_u8(body, len_units);
  // PadN carries at most 255 data bytes; one per 256 bytes of room.
  for (std::size_t left = size - 2; left > 0;) {
    if (left == 1) {
      put_u8(body, ipv6_option_pad1);
      break;
    }
    const std::size_t data = std::min<std::size_t>(left - 2, 255);
    put_u8(body, ipv6_option_padn);
    put_u8(body, static_cast<std::uint8_t>(data));
    body.resize(body.size() + data, 0);
    left -= 2 + data;
  }
  return body;
}

std::uint8_t inner_tos_of(std::span<const std::uint8_t> inner) {
  if (inner.size() < 2) throw std::invalid_argument("inner packet shorter than 2 bytes");
  if (inner[0] >> 4 == 6) return static_cast<std::uint8_t>((inner[0] & 0x0f) << 4 | inner[1] >> 4);
  return inner[1];
}

bool inner_is_ipv6(std::span<const std::uint8_t> inner) {
  if (inner.empty()) throw std::invalid_argument("empty inner packet");
  return inner[0] >> 4 == 6;
}

// The outer IPv4's DF: an inner IPv4's own; set for an inner IPv6, which
// routers never fragment (RFC 8200 section 5): the path MTU is the client's
// to learn, from the balancer's "packet too big".
bool inner_dont_fragment(std::span<const std::uint8_t> inner) {
  if (inner_is_ipv6(inner)) return true;
  if (inner.size() < ipv4_header_len) throw std::invalid_argument("inner IPv4 header cut short");
  return inner[6] & 0x40;
}

// The outer IP layer of a tunnel, on @builder, carrying @inner.
PacketBuilder& outer_ip(PacketBuilder& builder, const Outer& outer,
                        std::span<const std::uint8_t> inner) {
  builder.eth(outer.src_mac, outer.dst_mac);
  const std::uint8_t tos = inner_tos_of(inner);
  if (const auto* src4 = std::get_if<Ipv4Addr>(&outer.src)) {
    builder.ipv4(*src4, std::get<Ipv4Addr>(outer.dst))
        .ip_tos(tos)
        .ip_id(0)
        .ip_dont_fragment(inner_dont_fragment(inner));
  } else {
    builder.ipv6(std::get<Ipv6Addr>(outer.src), std::get<Ipv6Addr>(outer.dst))
        .ipv6_traffic_class(tos)
        .ipv6_flow_label(outer.flow_hash);
  }
  return builder;
}

}  // namespace

std::uint32_t Ipv4Addr::be32() const {
  std::uint32_t value;
  std::memcpy(&value, octets.data(), sizeof(value));
  return value;
}

std::uint32_t checksum_add(std::uint32_t sum, std::span<const std::uint8_t> bytes) {
  std::size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2)
    sum += static_cast<std::uint32_t>(bytes[i] << 8 | bytes[i + 1]);
  if (i < bytes.size()) sum += static_cast<std::uint32_t>(bytes[i] << 8);
  return sum;
}

std::uint16_t checksum_fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

PacketBuilder& PacketBuilder::eth(MacAddr src, MacAddr dst) {
  eth_ = {src, dst};
  return *this;
}

PacketBuilder& PacketBuilder::ethertype(std::uint16_t type) {
  ethertype_ = type;
  return *this;
}

PacketBuilder& PacketBuilder::vlan(std::uint16_t tci, std::uint16_t tpid) {
  vlan_ = Vlan{tpid, tci};
  return *this;
}

PacketBuilder& PacketBuilder::ipv4(Ipv4Addr src, Ipv4Addr dst) {
  Ipv4 ip;
  ip.src = src;
  ip.dst = dst;
  l3_ = ip;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6(Ipv6Addr src, Ipv6Addr dst) {
  Ipv6 ip;
  ip.src = src;
  ip.dst = dst;
  l3_ = ip;
  return *this;
}

PacketBuilder& PacketBuilder::arp_request(MacAddr sender_mac, Ipv4Addr sender, Ipv4Addr target) {
  l3_ = Arp{sender_mac, sender, target};
  return *this;
}

PacketBuilder& PacketBuilder::tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
  Tcp tcp;
  tcp.sport = sport;
  tcp.dport = dport;
  tcp.flags = flags;
  l4_ = tcp;
  return *this;
}

PacketBuilder& PacketBuilder::udp(std::uint16_t sport, std::uint16_t dport) {
  Udp udp;
  udp.sport = sport;
  udp.dport = dport;
  l4_ = udp;
  return *this;
}

PacketBuilder& PacketBuilder::icmp_echo_request(std::uint16_t id, std::uint16_t sequence) {
  l4_ = Icmp{false, icmp_echo_request_type, 0, static_cast<std::uint32_t>(id) << 16 | sequence};
  return *this;
}

PacketBuilder& PacketBuilder::icmp6_echo_request(std::uint16_t id, std::uint16_t sequence) {
  l4_ = Icmp{true, icmp6_echo_request_type, 0, static_cast<std::uint32_t>(id) << 16 | sequence};
  return *this;
}

PacketBuilder& PacketBuilder::icmp_error(std::uint8_t type, std::uint8_t code,
                                         std::uint32_t rest_of_header,
                                         std::span<const std::uint8_t> quoted) {
  l4_ = Icmp{false, type, code, rest_of_header};
  return payload(quoted);
}

PacketBuilder& PacketBuilder::icmp6_error(std::uint8_t type, std::uint8_t code,
                                          std::uint32_t rest_of_header,
                                          std::span<const std::uint8_t> quoted) {
  l4_ = Icmp{true, type, code, rest_of_header};
  return payload(quoted);
}

PacketBuilder& PacketBuilder::payload(std::string_view text) {
  payload_.assign(text.begin(), text.end());
  return *this;
}

PacketBuilder& PacketBuilder::payload(std::span<const std::uint8_t> bytes) {
  payload_.assign(bytes.begin(), bytes.end());
  return *this;
}

PacketBuilder& PacketBuilder::eth_padding(std::size_t bytes) {
  eth_padding_ = bytes;
  return *this;
}

PacketBuilder::Ipv4& PacketBuilder::ipv4_layer(const char* knob) {
  auto* ip = std::get_if<Ipv4>(&l3_);
  if (!ip) throw std::logic_error(std::string("PacketBuilder::") + knob + " needs ipv4() first");
  return *ip;
}

PacketBuilder& PacketBuilder::ip_options(std::span<const std::uint8_t> options) {
  if (options.size() % 4 != 0 || options.size() > 40)
    throw std::invalid_argument("IPv4 options: a multiple of 4 bytes, at most 40");
  ipv4_layer("ip_options").options.assign(options.begin(), options.end());
  return *this;
}

PacketBuilder& PacketBuilder::ip_fragment(std::uint16_t offset_bytes, bool more_fragments) {
  if (offset_bytes % 8 != 0)
    throw std::invalid_argument("IPv4 fragment offset: a multiple of 8 bytes");
  ipv4_layer("ip_fragment").frag_field =
      static_cast<std::uint16_t>(offset_bytes / 8 | (more_fragments ? ip_more_fragments : 0));
  return *this;
}

PacketBuilder& PacketBuilder::ip_dont_fragment(bool set) {
  Ipv4& ip = ipv4_layer("ip_dont_fragment");
  ip.frag_field = static_cast<std::uint16_t>(set ? ip.frag_field | ip_dont_fragment_bit
                                                 : ip.frag_field & ~ip_dont_fragment_bit);
  return *this;
}

PacketBuilder& PacketBuilder::ip_tos(std::uint8_t tos) {
  ipv4_layer("ip_tos").tos = tos;
  return *this;
}

PacketBuilder& PacketBuilder::ip_id(std::uint16_t id) {
  ipv4_layer("ip_id").id = id;
  return *this;
}

PacketBuilder::Ipv6& PacketBuilder::ipv6_layer(const char* knob) {
  auto* ip = std::get_if<Ipv6>(&l3_);
  if (!ip) throw std::logic_error(std::string("PacketBuilder::") + knob + " needs ipv6() first");
  return *ip;
}

PacketBuilder& PacketBuilder::ipv6_traffic_class(std::uint8_t traffic_class) {
  ipv6_layer("ipv6_traffic_class").traffic_class = traffic_class;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_flow_label(std::uint32_t label) {
  ipv6_layer("ipv6_flow_label").flow_label = label & 0xfffff;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_ext(std::uint8_t type, Bytes body) {
  ipv6_layer("ipv6 extension header").ext.push_back(Ipv6Ext{type, std::move(body)});
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_hop_by_hop(std::uint8_t len_units) {
  return ipv6_ext(ipproto_hopopts, options_header(len_units));
}

PacketBuilder& PacketBuilder::ipv6_dest_opts(std::uint8_t len_units) {
  return ipv6_ext(ipproto_dstopts, options_header(len_units));
}

PacketBuilder& PacketBuilder::ipv6_routing(std::uint8_t len_units) {
  Bytes body;
  put_u8(body, 0);  // next header
  put_u8(body, len_units);
  put_u8(body, routing_type_experimental);
  put_u8(body, 0);  // segments left
  body.resize(ipv6_ext_unit * (1 + len_units), 0);
  return ipv6_ext(ipproto_routing, std::move(body));
}

PacketBuilder& PacketBuilder::ipv6_fragment(std::uint16_t offset_bytes, bool more,
                                            std::uint32_t id) {
  if (offset_bytes % 8 != 0)
    throw std::invalid_argument("IPv6 fragment offset: a multiple of 8 bytes");
  Bytes body;
  put_u8(body, 0);  // next header
  put_u8(body, 0);  // reserved
  // Offset in 8-byte units in the top 13 bits, then two reserved bits, M.
  put_be16(body, static_cast<std::uint16_t>(offset_bytes / 8 << 3 | (more ? 1 : 0)));
  put_be32(body, id);
  return ipv6_ext(ipproto_fragment, std::move(body));
}

PacketBuilder& PacketBuilder::ip_version(std::uint8_t version) {
  if (auto* ip6 = std::get_if<Ipv6>(&l3_))
    ip6->version = version;
  else
    ipv4_layer("ip_version").version = version;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_payload_length(std::uint16_t bytes) {
  ipv6_layer("ipv6_payload_length").payload_length = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6_ext_len_field(std::uint8_t len_units) {
  Ipv6& ip = ipv6_layer("ipv6_ext_len_field");
  if (ip.ext.empty() || ip.ext.back().type == ipproto_fragment)
    throw std::logic_error("PacketBuilder::ipv6_ext_len_field needs an options or routing header");
  ip.ext.back().body.at(1) = len_units;
  return *this;
}

PacketBuilder& PacketBuilder::ip_ihl(std::uint8_t words) {
  ipv4_layer("ip_ihl").ihl = words;
  return *this;
}

PacketBuilder& PacketBuilder::ip_total_length(std::uint16_t bytes) {
  ipv4_layer("ip_total_length").total_length = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::ip_protocol(std::uint8_t protocol) {
  if (auto* ip6 = std::get_if<Ipv6>(&l3_))
    ip6->protocol = protocol;
  else
    ipv4_layer("ip_protocol").protocol = protocol;
  return *this;
}

PacketBuilder& PacketBuilder::tcp_doff(std::uint8_t words) {
  auto* tcp = std::get_if<Tcp>(&l4_);
  if (!tcp) throw std::logic_error("PacketBuilder::tcp_doff needs tcp() first");
  tcp->doff = words;
  return *this;
}

PacketBuilder& PacketBuilder::udp_length(std::uint16_t bytes) {
  auto* udp = std::get_if<Udp>(&l4_);
  if (!udp) throw std::logic_error("PacketBuilder::udp_length needs udp() first");
  udp->length = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::udp_checksum(std::uint16_t checksum) {
  auto* udp = std::get_if<Udp>(&l4_);
  if (!udp) throw std::logic_error("PacketBuilder::udp_checksum needs udp() first");
  udp->checksum = checksum;
  return *this;
}

PacketBuilder& PacketBuilder::cut_l4_to(std::size_t bytes) {
  l4_cut_ = bytes;
  return *this;
}

PacketBuilder& PacketBuilder::truncate(std::size_t bytes) {
  truncate_ = bytes;
  return *this;
}

// The L4 segment with its checksum field still zero; *protocol gets its IP
// protocol number.
Bytes PacketBuilder::build_l4(std::uint8_t* protocol) const {
  Bytes l4;
  if (const auto* tcp = std::get_if<Tcp>(&l4_)) {
    const std::uint8_t doff = tcp->doff.value_or(tcp_header_len / 4);
    const bool has_ack = tcp->flags & tcp_ack;
    put_be16(l4, tcp->sport);
    put_be16(l4, tcp->dport);
    put_be32(l4, default_tcp_seq);
    put_be32(l4, has_ack ? default_tcp_ack_seq : 0);
    put_u8(l4, static_cast<std::uint8_t>(doff << 4));
    put_u8(l4, tcp->flags);
    put_be16(l4, default_tcp_window);
    put_be16(l4, 0);  // checksum
    put_be16(l4, 0);  // urgent pointer
    *protocol = ipproto_tcp;
  } else if (const auto* udp = std::get_if<Udp>(&l4_)) {
    const std::size_t length = udp_header_len + payload_.size();
    put_be16(l4, udp->sport);
    put_be16(l4, udp->dport);
    put_be16(l4, udp->length.value_or(checked_u16(length, "UDP length")));
    put_be16(l4, 0);  // checksum, filled in by build_l3 unless given
    *protocol = ipproto_udp;
  } else if (const auto* icmp = std::get_if<Icmp>(&l4_)) {
    put_u8(l4, icmp->type);
    put_u8(l4, icmp->code);
    put_be16(l4, 0);  // checksum
    put_be32(l4, icmp->rest);
    *protocol = icmp->v6 ? ipproto_icmpv6 : ipproto_icmp;
  } else {
    // No transport header: the payload rides directly on L3. Protocol
    // 253 is reserved for experimentation (RFC 3692).
    *protocol = 253;
  }
  put_bytes(l4, payload_);
  return l4;
}

// Checksum (or the one given), then the cut, of the L4 segment @l4.
void PacketBuilder::finish_l4(Bytes& l4, std::uint8_t protocol, std::uint32_t pseudo_sum) const {
  set_l4_checksum(l4, protocol, pseudo_sum);
  if (const auto* udp = std::get_if<Udp>(&l4_); udp && udp->checksum && l4.size() >= udp_header_len)
    store_be16(l4, udp_checksum_offset, *udp->checksum);
  if (l4_cut_ && *l4_cut_ < l4.size()) l4.resize(*l4_cut_);
}

// The network-layer packet around @l4; *ethertype gets the type it implies.
Bytes PacketBuilder::build_l3(Bytes l4, std::uint8_t protocol, std::uint16_t* ethertype) const {
  Bytes l3;
  if (const auto* ip = std::get_if<Ipv4>(&l3_)) {
    const std::size_t header_len = ipv4_header_len + ip->options.size();
    finish_l4(l4, protocol, ipv4_pseudo_header_sum(ip->src, ip->dst, protocol, l4.size()));
    const std::uint8_t version = ip->version.value_or(4);
    const std::uint8_t ihl = ip->ihl.value_or(static_cast<std::uint8_t>(header_len / 4));
    put_u8(l3, static_cast<std::uint8_t>(version << 4 | (ihl & 0x0f)));
    put_u8(l3, ip->tos);  // DSCP/ECN
    put_be16(l3,
             ip->total_length.value_or(checked_u16(header_len + l4.size(), "IPv4 total length")));
    put_be16(l3, ip->id);
    put_be16(l3, ip->frag_field);
    put_u8(l3, default_ttl);
    put_u8(l3, ip->protocol.value_or(protocol));
    put_be16(l3, 0);  // header checksum
    put_bytes(l3, ip->src.octets);
    put_bytes(l3, ip->dst.octets);
    put_bytes(l3, ip->options);
    store_be16(l3, ipv4_checksum_offset, checksum_fold(checksum_add(0, l3)));
    put_bytes(l3, l4);
    *ethertype = ethertype_ipv4;
  } else if (const auto* ip6 = std::get_if<Ipv6>(&l3_)) {
    finish_l4(l4, protocol, ipv6_pseudo_header_sum(ip6->src, ip6->dst, protocol, l4.size()));
    // Extension headers, each's next header naming the one after it.
    Bytes ext;
    const std::uint8_t last_protocol = ip6->protocol.value_or(protocol);
    for (std::size_t i = 0; i < ip6->ext.size(); i++) {
      Bytes body = ip6->ext[i].body;
      body.at(0) = i + 1 < ip6->ext.size() ? ip6->ext[i + 1].type : last_protocol;
      put_bytes(ext, body);
    }
    const std::uint8_t version = ip6->version.value_or(6);
    put_be32(l3, static_cast<std::uint32_t>(version) << 28 |
                     static_cast<std::uint32_t>(ip6->traffic_class) << 20 | ip6->flow_label);
    put_be16(l3, ip6->payload_length.value_or(
                     checked_u16(ext.size() + l4.size(), "IPv6 payload length")));
    put_u8(l3, ip6->ext.empty() ? last_protocol : ip6->ext.front().type);
    put_u8(l3, default_ttl);
    put_bytes(l3, ip6->src.octets);
    put_bytes(l3, ip6->dst.octets);
    put_bytes(l3, ext);
    put_bytes(l3, l4);
    *ethertype = ethertype_ipv6;
  } else if (const auto* arp = std::get_if<Arp>(&l3_)) {
    put_be16(l3, 1);  // hardware: Ethernet
    put_be16(l3, ethertype_ipv4);
    put_u8(l3, 6);
    put_u8(l3, 4);
    put_be16(l3, 1);  // operation: request
    put_bytes(l3, arp->sender_mac);
    put_bytes(l3, arp->sender.octets);
    put_bytes(l3, MacAddr{});  // target MAC: unknown, asked for
    put_bytes(l3, arp->target.octets);
    *ethertype = ethertype_arp;
  } else {
    put_bytes(l3, l4);
    *ethertype = 0;
  }
  return l3;
}

Bytes PacketBuilder::build() const {
  std::uint8_t protocol = 0;
  std::uint16_t implied_ethertype = 0;
  Bytes l4 = build_l4(&protocol);
  Bytes l3 = build_l3(std::move(l4), protocol, &implied_ethertype);

  Bytes frame;
  frame.reserve(eth_header_len + l3.size() + eth_padding_);
  put_bytes(frame, eth_.dst);
  put_bytes(frame, eth_.src);
  if (vlan_) {
    put_be16(frame, vlan_->tpid);
    put_be16(frame, vlan_->tci);
  }
  put_be16(frame, ethertype_.value_or(implied_ethertype));
  put_bytes(frame, l3);
  frame.resize(frame.size() + eth_padding_, 0);
  if (truncate_ && *truncate_ < frame.size()) frame.resize(*truncate_);
  return frame;
}

Bytes ip_packet_of(std::span<const std::uint8_t> frame) {
  if (frame.size() < eth_header_len) throw std::invalid_argument("frame shorter than Ethernet");
  return Bytes(frame.begin() + eth_header_len, frame.end());
}

std::uint16_t gue_source_port(std::uint32_t flow_hash) {
  return static_cast<std::uint16_t>(gue_source_port_base + flow_hash % gue_source_port_count);
}

Bytes encapsulate_ipip(std::span<const std::uint8_t> frame, const Outer& outer) {
  const Bytes inner = ip_packet_of(frame);
  PacketBuilder builder;
  outer_ip(builder, outer, inner)
      .ip_protocol(inner_is_ipv6(inner) ? ipproto_ipv6 : ipproto_ipip)
      .payload(inner);
  return builder.build();
}

Bytes encapsulate_gue(std::span<const std::uint8_t> frame, const Outer& outer,
                      std::uint16_t gue_port) {
  const Bytes inner = ip_packet_of(frame);
  PacketBuilder builder;
  outer_ip(builder, outer, inner)
      .udp(gue_source_port(outer.flow_hash), gue_port)
      .udp_checksum(0)
      .payload(inner);
  return builder.build();
}

Bytes encapsulate_gue_second_chance(std::span<const std::uint8_t> frame, const Outer& outer,
                                    std::uint16_t gue_port, const IpAddr& prev, std::uint8_t hops) {
  constexpr std::uint8_t gue_variant0_hlen5 = 5;  // version 0, C 0, 5 words of options
  constexpr std::uint16_t second_chance_magic = 0xba11;
  const Bytes inner = ip_packet_of(frame);
  Bytes gue;
  put_u8(gue, gue_variant0_hlen5);
  put_u8(gue, inner_is_ipv6(inner) ? ipproto_ipv6 : ipproto_ipip);
  put_be16(gue, 0);  // flags
  put_be16(gue, second_chance_magic);
  Bytes address(16, 0);
  if (const auto* v4 = std::get_if<Ipv4Addr>(&prev)) {
    put_u8(gue, 4);
    std::copy(v4->octets.begin(), v4->octets.end(), address.begin());
  } else {
    put_u8(gue, 6);
    const auto& v6 = std::get<Ipv6Addr>(prev);
    std::copy(v6.octets.begin(), v6.octets.end(), address.begin());
  }
  put_u8(gue, hops);
  gue.insert(gue.end(), address.begin(), address.end());
  gue.insert(gue.end(), inner.begin(), inner.end());
  PacketBuilder builder;
  outer_ip(builder, outer, inner)  // TOS and DF from the client's packet
      .udp(gue_source_port(outer.flow_hash), gue_port)
      .udp_checksum(0)
      .payload(gue);
  return builder.build();
}

Bytes icmp_too_big_reply(std::span<const std::uint8_t> frame, std::uint16_t mtu) {
  const Bytes packet = ip_packet_of(frame);
  MacAddr frame_dst{}, frame_src{};
  std::copy_n(frame.begin(), 6, frame_dst.begin());
  std::copy_n(frame.begin() + 6, 6, frame_src.begin());
  PacketBuilder reply;
  reply.eth(frame_dst, frame_src);
  if (inner_is_ipv6(packet)) {
    Ipv6Addr client{}, vip{};
    std::copy_n(packet.begin() + 8, 16, client.octets.begin());
    std::copy_n(packet.begin() + 24, 16, vip.octets.begin());
    const std::size_t quoted = std::min(packet.size(), icmp6_quote_len);
    reply.ipv6(vip, client)
        .icmp6_error(icmp6_packet_too_big, 0, mtu, std::span(packet).first(quoted));
  } else {
    Ipv4Addr client{}, vip{};
    std::copy_n(packet.begin() + 12, 4, client.octets.begin());
    std::copy_n(packet.begin() + 16, 4, vip.octets.begin());
    const std::size_t quoted = std::min(packet.size(), icmp4_quote_len);
    reply.ipv4(vip, client)
        .ip_id(0)
        .icmp_error(icmp_dest_unreachable, icmp_code_frag_needed, mtu,
                    std::span(packet).first(quoted));
  }
  return reply.build();
}

std::string hex_dump(std::span<const std::uint8_t> frame) {
  constexpr std::size_t row_len = 16;
  std::string out;
  char cell[24];
  for (std::size_t row = 0; row < frame.size(); row += row_len) {
    std::snprintf(cell, sizeof(cell), "%04zx:", row);
    out += cell;
    for (std::size_t i = row; i < row + row_len && i < frame.size(); i++) {
      std::snprintf(cell, sizeof(cell), " %02x", frame[i]);
      out += cell;
    }
    out += '\n';
  }
  if (frame.empty()) out = "(empty)\n";
  return out;
}

}  // namespace ballast::test
