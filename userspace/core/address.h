// address.h: IP addresses, MACs and VIP keys as the config, the CLI and the
// maps see them, with parsing and formatting. No BPF, no I/O.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ballast_abi.h"

namespace ballast {

struct IpAddress {
  uint8_t family = BALLAST_AF_INET;  // enum ballast_family
  std::array<uint8_t, 16> bytes{};   // IPv4: first 4 bytes, rest zero

  static std::optional<IpAddress> parse(std::string_view text);
  std::string str() const;
  bool is_v4() const { return family == BALLAST_AF_INET; }
  ballast_addr to_abi() const;
  // From a map's address and family (IPv4 in the first 4 bytes).
  static IpAddress from_abi(const ballast_addr& addr, uint8_t family);

  auto operator<=>(const IpAddress&) const = default;
};

// Why @a can be neither a VIP's nor a backend's address ("the unspecified
// address", "a multicast address (224.0.0.0/4)", ...); nullopt when it
// can. Refused: unspecified (0.0.0.0/8, ::), loopback (127.0.0.0/8, ::1),
// multicast (224.0.0.0/4, ff00::/8), the broadcast address and
// IPv4-mapped IPv6 (::ffff:0:0/96: written as IPv4, it is one VIP, not two).
std::optional<std::string> unusable_address(const IpAddress& a);

// A listening address, ADDR:PORT or [ADDR6]:PORT (port 1..65535).
struct ListenAddress {
  IpAddress address;
  uint16_t port = 0;
};
std::optional<ListenAddress> parse_listen_address(std::string_view text);

enum class Protocol : uint8_t { tcp = 6, udp = 17 };  // IPPROTO_* values

std::optional<Protocol> parse_protocol(std::string_view text);
std::string_view protocol_name(Protocol p);

// A VIP is matched on (address, port, protocol). Written ADDR:PORT/PROTO,
// IPv6 in brackets: 10.0.0.100:80/tcp, [2001:db8::1]:443/tcp.
struct VipKey {
  IpAddress address;
  uint16_t port = 0;
  Protocol protocol = Protocol::tcp;

  // Throws Error naming what is wrong with @text.
  static VipKey parse(std::string_view text);
  std::string str() const;
  ballast_vip_key to_abi() const;
  static VipKey from_abi(const ballast_vip_key& k);

  auto operator<=>(const VipKey&) const = default;
};

// A prefix, ADDR/LEN (e.g. 10.255.0.0/16, fd00:ff::/96). The host bits of
// address are zero.
struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;

  static std::optional<IpPrefix> parse(std::string_view text);
  std::string str() const;
  bool operator==(const IpPrefix&) const = default;
};

using MacAddress = std::array<uint8_t, 6>;
std::string mac_str(const MacAddress& mac);

}  // namespace ballast
