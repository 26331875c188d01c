// packet_seeds.cpp: writes packet_fuzz's seed corpus (tests/fuzz/corpus/
// packet/seed-*), one frame per file, built with tests/support/
// packet_builder.h for the VIPs of packet_fuzz.cpp's world: a new flow to
// each VIP, both families, ICMP errors about a VIP's flow, fragments, IPv6
// extension headers, a frame too big for the tunnel, VLAN, ARP and frames
// cut at each header. The fuzzer mutates from these.
//
// With a second DIR, also decap_fuzz's (tests/fuzz/corpus/decap/seed-*):
// the balancer's tunnels of every kind to the backend, and frames that are
// no tunnel.
//
// Usage: packet_seeds PACKET_DIR [DECAP_DIR]
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "packet_builder.h"

using namespace ballast::test;

namespace {

// Client one's first packet of a flow to the VIP of @family on @port.
PacketBuilder to_vip(int family, std::uint8_t proto, std::uint16_t port) {
  PacketBuilder p;
  p.eth(mac_router, mac_lb);
  if (family == 4)
    p.ipv4(v4_client_one, v4_vip_one);
  else
    p.ipv6(v6_client_one, v6_vip_one);
  if (proto == ipproto_tcp)
    p.tcp(port_client_one, port, tcp_syn);
  else
    p.udp(port_client_one, port);
  return p;
}

PacketBuilder v4(std::uint8_t proto, std::uint16_t port) { return to_vip(4, proto, port); }
PacketBuilder v6(std::uint8_t proto, std::uint16_t port) { return to_vip(6, proto, port); }

bool write_all(const std::string& dir, const std::vector<std::pair<std::string, Bytes>>& frames) {
  for (const auto& [name, frame] : frames) {
    std::ofstream out(dir + "/seed-" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
    if (!out) {
      std::fprintf(stderr, "packet_seeds: cannot write %s/seed-%s\n", dir.c_str(), name.c_str());
      return false;
    }
  }
  std::printf("packet_seeds: %zu frames in %s\n", frames.size(), dir.c_str());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: packet_seeds PACKET_DIR [DECAP_DIR]\n");
    return 2;
  }
  std::vector<std::pair<std::string, Bytes>> seeds = {
      {"v4-tcp-dsr", v4(ipproto_tcp, port_http).payload("GET / HTTP/1.1\r\n").build()},
      {"v4-tcp-dsr-ack", PacketBuilder()
                             .eth(mac_router, mac_lb)
                             .ipv4(v4_client_two, v4_vip_one)
                             .tcp(port_client_two, port_http, tcp_ack)
                             .payload("data")
                             .build()},
      {"v4-udp-ipip-no-src-port", v4(ipproto_udp, port_dns).payload("query").build()},
      {"v6-tcp-gue", v6(ipproto_tcp, port_https).build()},
      {"v6-udp-ipip-v4-backends", v6(ipproto_udp, port_dns).payload("query").build()},
      {"v4-tcp-gue-v6-backends", v4(ipproto_tcp, port_https).build()},
      {"v6-udp-fragments-first",
       v6(ipproto_udp, 5353).ipv6_fragment(0, true, 0x5eed).payload("first part").build()},
      {"v6-udp-fragments-later", PacketBuilder()
                                     .eth(mac_router, mac_lb)
                                     .ipv6(v6_client_one, v6_vip_one)
                                     .ipv6_fragment(1232, false, 0x5eed)
                                     .ip_protocol(ipproto_udp)
                                     .payload("later part")
                                     .build()},
      {"v6-tcp-gue-ext-headers",
       v6(ipproto_tcp, port_https).ipv6_hop_by_hop().ipv6_routing().ipv6_dest_opts().build()},
      {"v4-tcp-dsr-options", v4(ipproto_tcp, port_http)
                                 .ip_options(std::vector<std::uint8_t>{1, 1, 1, 0})
                                 .build()},
      {"v4-udp-too-big", v4(ipproto_udp, port_dns)
                             .ip_dont_fragment()
                             .payload(std::string(1472, 'x'))
                             .build()},
      {"v6-tcp-too-big", v6(ipproto_tcp, port_https).payload(std::string(1440, 'x')).build()},
      {"v4-padding", v4(ipproto_udp, port_dns).eth_padding(12).build()},
      {"vlan", v4(ipproto_tcp, port_http).vlan(100).build()},
      {"arp", PacketBuilder()
                  .eth(mac_router, mac_broadcast)
                  .arp_request(mac_router, v4_client_one, v4_vip_one)
                  .build()},
      {"v4-not-vip", PacketBuilder()
                         .eth(mac_router, mac_lb)
                         .ipv4(v4_client_one, v4_other_host)
                         .tcp(port_client_one, port_http, tcp_syn)
                         .build()},
      {"v4-icmp-echo",
       PacketBuilder().eth(mac_router, mac_lb).ipv4(v4_client_one, v4_vip_one).icmp_echo_request(1, 1).build()},
  };
  // ICMP errors from a router about a VIP's reply to a client (what a
  // backend sent from the VIP): they go to the flow's backend.
  const Bytes reply4 = ip_packet_of(PacketBuilder()
                                        .ipv4(v4_vip_one, v4_client_one)
                                        .tcp(port_http, port_client_one, tcp_ack)
                                        .payload("the answer")
                                        .build());
  const Bytes quoted4(reply4.begin(), reply4.begin() + 28);
  seeds.push_back({"v4-icmp-frag-needed", PacketBuilder()
                                              .eth(mac_router, mac_lb)
                                              .ipv4(v4_router, v4_vip_one)
                                              .icmp_error(icmp_dest_unreachable,
                                                          icmp_code_frag_needed, 1400, quoted4)
                                              .build()});
  const Bytes reply6 = ip_packet_of(PacketBuilder()
                                        .ipv6(v6_vip_one, v6_client_one)
                                        .udp(port_dns, port_client_one)
                                        .payload("the answer")
                                        .build());
  const Bytes quoted6(reply6.begin(), reply6.begin() + 48);
  seeds.push_back({"v6-icmp-too-big", PacketBuilder()
                                          .eth(mac_router, mac_lb)
                                          .ipv6(v6_router, v6_vip_one)
                                          .icmp6_error(icmp6_packet_too_big, 0, 1280, quoted6)
                                          .build()});
  // Cut at every header boundary of a v4 and a v6 new flow.
  for (const std::size_t cut : {13u, 20u, 33u, 40u, 53u})
    seeds.push_back({"v4-cut-" + std::to_string(cut), v4(ipproto_tcp, port_http).truncate(cut).build()});
  for (const std::size_t cut : {30u, 53u, 60u, 73u})
    seeds.push_back({"v6-cut-" + std::to_string(cut), v6(ipproto_udp, port_dns).truncate(cut).build()});

  if (!write_all(argv[1], seeds)) return 1;
  if (argc == 2) return 0;

  std::vector<std::pair<std::string, Bytes>> decap_seeds;
  for (const int outer : {4, 6})
    for (const int inner : {4, 6})
      for (const bool gue : {false, true}) {
        const Bytes client = inner == 4 ? v4(ipproto_tcp, port_http).payload("hello").build()
                                        : v6(ipproto_tcp, port_http).payload("hello").build();
        const Outer o = outer == 4
                            ? Outer{mac_lb, mac_backend_one, v4_lb, v4_backend_one, 0x12345}
                            : Outer{mac_lb, mac_backend_one, v6_lb, v6_backend_one, 0x12345};
        const std::string name = std::string(gue ? "gue" : "ipip") + "-v" + std::to_string(inner) +
                                 "-in-v" + std::to_string(outer);
        decap_seeds.push_back({name, gue ? encapsulate_gue(client, o, port_gue)
                                         : encapsulate_ipip(client, o)});
      }
  const Bytes elsewhere = PacketBuilder()
                              .eth(mac_router, mac_lb)
                              .ipv4(v4_client_one, v4_other_host)
                              .tcp(port_client_one, port_http, tcp_syn)
                              .build();
  decap_seeds.push_back({"ipip-not-local-vip",
                         encapsulate_ipip(elsewhere, Outer{mac_lb, mac_backend_one, v4_lb,
                                                           v4_backend_one, 1})});
  decap_seeds.push_back({"plain-tcp", v4(ipproto_tcp, port_http).build()});
  decap_seeds.push_back({"plain-udp-v6", v6(ipproto_udp, port_dns).build()});
  return write_all(argv[2], decap_seeds) ? 0 : 1;
}
