// packet_builder.cpp: serializes a PacketBuilder description into a frame.
// Header layouts are written out here byte by byte from the RFCs rather than
// through the kernel's structs, so the tests do not share the program's view
// of a header with the program they test.
#include "packet_builder.h"

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
constexpr std::size_t icmp_echo_header_len = 8;

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

// Fills the checksum of a TCP, UDP or ICMP segment (left as is when the
// segment is too short to hold one).
void set_l4_checksum(Bytes& l4, std::uint8_t protocol, std::uint32_t pseudo_sum) {
  if (protocol == ipproto_tcp && l4.size() >= tcp_header_len) {
    store_be16(l4, tcp_checksum_offset, checksum_fold(checksum_add(pseudo_sum, l4)));
  } else if (protocol == ipproto_udp && l4.size() >= udp_header_len) {
    std::uint16_t sum = checksum_fold(checksum_add(pseudo_sum, l4));
    // Zero means "no checksum" in UDP; a computed zero is sent as all ones.
    store_be16(l4, udp_checksum_offset, sum == 0 ? 0xffff : sum);
  } else if (protocol == ipproto_icmp && l4.size() >= icmp_echo_header_len) {
    store_be16(l4, icmp_checksum_offset, checksum_fold(checksum_add(0, l4)));
  }
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

PacketBuilder& PacketBuilder::ipv4(Ipv4Addr src, Ipv4Addr dst) {
  Ipv4 ip;
  ip.src = src;
  ip.dst = dst;
  l3_ = ip;
  return *this;
}

PacketBuilder& PacketBuilder::ipv6(Ipv6Addr src, Ipv6Addr dst) {
  l3_ = Ipv6{src, dst};
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
  l4_ = IcmpEcho{id, sequence};
  return *this;
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

PacketBuilder& PacketBuilder::ip_version(std::uint8_t version) {
  ipv4_layer("ip_version").version = version;
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

PacketBuilder& PacketBuilder::cut_l4_to(std::size_t bytes) {
  l4_cut_ = bytes;
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
    put_be16(l4, 0);  // checksum
    *protocol = ipproto_udp;
  } else if (const auto* echo = std::get_if<IcmpEcho>(&l4_)) {
    put_u8(l4, icmp_echo_request_type);
    put_u8(l4, 0);    // code
    put_be16(l4, 0);  // checksum
    put_be16(l4, echo->id);
    put_be16(l4, echo->sequence);
    *protocol = ipproto_icmp;
  } else {
    // No transport header: the payload rides directly on L3. Protocol
    // 253 is reserved for experimentation (RFC 3692).
    *protocol = 253;
  }
  put_bytes(l4, payload_);
  return l4;
}

// The network-layer packet around @l4; *ethertype gets the type it implies.
Bytes PacketBuilder::build_l3(Bytes l4, std::uint8_t protocol, std::uint16_t* ethertype) const {
  Bytes l3;
  if (const auto* ip = std::get_if<Ipv4>(&l3_)) {
    const std::size_t header_len = ipv4_header_len + ip->options.size();
    set_l4_checksum(l4, protocol, ipv4_pseudo_header_sum(ip->src, ip->dst, protocol, l4.size()));
    if (l4_cut_ && *l4_cut_ < l4.size()) l4.resize(*l4_cut_);
    const std::uint8_t version = ip->version.value_or(4);
    const std::uint8_t ihl = ip->ihl.value_or(static_cast<std::uint8_t>(header_len / 4));
    put_u8(l3, static_cast<std::uint8_t>(version << 4 | (ihl & 0x0f)));
    put_u8(l3, 0);  // DSCP/ECN
    put_be16(l3,
             ip->total_length.value_or(checked_u16(header_len + l4.size(), "IPv4 total length")));
    put_be16(l3, 1);  // identification
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
    set_l4_checksum(l4, protocol, ipv6_pseudo_header_sum(ip6->src, ip6->dst, protocol, l4.size()));
    if (l4_cut_ && *l4_cut_ < l4.size()) l4.resize(*l4_cut_);
    put_be32(l3, 6u << 28);  // version, traffic class, flow label
    put_be16(l3, checked_u16(l4.size(), "IPv6 payload length"));
    put_u8(l3, protocol);
    put_u8(l3, default_ttl);
    put_bytes(l3, ip6->src.octets);
    put_bytes(l3, ip6->dst.octets);
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
  put_be16(frame, ethertype_.value_or(implied_ethertype));
  put_bytes(frame, l3);
  frame.resize(frame.size() + eth_padding_, 0);
  return frame;
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
