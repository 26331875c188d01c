#include "address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "error.h"

namespace ballast {

std::string errno_message(const std::string& what, int errno_value) {
  if (errno_value < 0) errno_value = -errno_value;
  return what + ": " + std::strerror(errno_value);
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = BALLAST_AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = BALLAST_AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::optional<ListenAddress> parse_listen_address(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  auto addr = IpAddress::parse(host);
  if (!addr || addr->is_v4() == bracketed) return std::nullopt;  // IPv6 needs brackets
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
    return std::nullopt;
  return ListenAddress{*addr, static_cast<uint16_t>(port)};
}

std::optional<IpPrefix> IpPrefix::parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = IpAddress::parse(text.substr(0, slash));
  if (!addr) return std::nullopt;
  const std::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  const unsigned max = addr->is_v4() ? 32 : 128;
  if (ec != std::errc() || end != len_text.data() + len_text.size() || len > max)
    return std::nullopt;
  for (unsigned bit = len; bit < max; bit++)  // host bits must be zero
    if (addr->bytes[bit / 8] & (0x80 >> (bit % 8))) return std::nullopt;
  return IpPrefix{*addr, static_cast<uint8_t>(len)};
}

std::string IpPrefix::str() const { return address.str() + "/" + std::to_string(length); }

std::optional<std::string> unusable_address(const IpAddress& a) {
  const auto& b = a.bytes;
  if (a.is_v4()) {
    if (b[0] == 0) return "in 0.0.0.0/8, the unspecified network";
    if (b[0] == 127) return "a loopback address (127.0.0.0/8)";
    if (b[0] >= 224 && b[0] <= 239) return "a multicast address (224.0.0.0/4)";
    if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) return "the broadcast address";
    return std::nullopt;
  }
  const bool zero10 = std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; });
  const bool zero15 = zero10 && std::all_of(b.begin() + 10, b.end() - 1, [](uint8_t x) { return x == 0; });
  if (zero15 && b[15] == 0) return "the unspecified address (::)";
  if (zero15 && b[15] == 1) return "the loopback address (::1)";
  if (b[0] == 0xff) return "a multicast address (ff00::/8)";
  if (zero10 && b[10] == 0xff && b[11] == 0xff)
    return "an IPv4-mapped IPv6 address (::ffff:0:0/96); write the IPv4 address";
  return std::nullopt;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

ballast_addr IpAddress::to_abi() const {
  ballast_addr out{};
  std::memcpy(out.bytes, bytes.data(), is_v4() ? 4 : 16);
  return out;
}

std::optional<Protocol> parse_protocol(std::string_view text) {
  if (text == "tcp") return Protocol::tcp;
  if (text == "udp") return Protocol::udp;
  return std::nullopt;
}

std::string_view protocol_name(Protocol p) { return p == Protocol::tcp ? "tcp" : "udp"; }

VipKey VipKey::parse(std::string_view text) {
  const std::string shown(text);
  auto slash = text.rfind('/');
  if (slash == std::string_view::npos)
    throw Error("VIP '" + shown + "': expected ADDRESS:PORT/PROTOCOL, e.g. 10.0.0.100:80/tcp");
  auto proto = parse_protocol(text.substr(slash + 1));
  if (!proto) throw Error("VIP '" + shown + "': protocol must be tcp or udp");
  std::string_view hostport = text.substr(0, slash);
  auto colon = hostport.rfind(':');
  if (colon == std::string_view::npos) throw Error("VIP '" + shown + "': missing :PORT");
  std::string_view host = hostport.substr(0, colon);
  std::string_view port_text = hostport.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  VipKey key;
  auto addr = IpAddress::parse(host);
  if (!addr) throw Error("VIP '" + shown + "': '" + std::string(host) + "' is not an IP address");
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535)
    throw Error("VIP '" + shown + "': port must be 1..65535");
  key.address = *addr;
  key.port = static_cast<uint16_t>(port);
  key.protocol = *proto;
  return key;
}

std::string VipKey::str() const {
  std::string host = address.is_v4() ? address.str() : "[" + address.str() + "]";
  return host + ":" + std::to_string(port) + "/" + std::string(protocol_name(protocol));
}

IpAddress IpAddress::from_abi(const ballast_addr& addr, uint8_t family) {
  IpAddress a;
  a.family = family;
  std::memcpy(a.bytes.data(), addr.bytes, family == BALLAST_AF_INET ? 4 : 16);
  return a;
}

VipKey VipKey::from_abi(const ballast_vip_key& k) {
  VipKey key;
  key.address = IpAddress::from_abi(k.addr, k.family);
  key.port = ntohs(k.port);
  key.protocol = static_cast<Protocol>(k.proto);
  return key;
}

ballast_vip_key VipKey::to_abi() const {
  ballast_vip_key k{};
  k.addr = address.to_abi();
  k.port = htons(port);
  k.proto = static_cast<uint8_t>(protocol);
  k.family = address.family;
  return k;
}

std::string mac_str(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

}  // namespace ballast
