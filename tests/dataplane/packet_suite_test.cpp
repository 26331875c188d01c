// packet_suite_test.cpp: every packet path of docs/dataplane.md, one table
// row each, through the balancer's real XDP entry point (BPF_PROG_TEST_RUN).
//
// A row (SuiteCase) is: a name, extra map setup on top of a fixed world,
// packets sent first (an established flow's first packet), a change made
// after them, the input frame, and what must come out: the syscall's error,
// the XDP action, the reason counted (exactly one count, under exactly that
// reason), the output frame byte for byte, the VIP / backend counters and the
// connection table. Expected frames are built from the spec's rules by
// packet_builder (encapsulate_ipip, encapsulate_gue, icmp_too_big_reply),
// never from the program's code.
//
// The world: for each VIP family (IPv4, IPv6), protocol (TCP, UDP) and mode
// (dsr, ipip, gue) a VIP on its own port with three backends of the VIP's
// family, plus ipip and gue VIPs whose backends are of the other family.
// Tables are round_robin_table of the three, so the backend of a flow is
// known: entry maglev_index(flow) is backend maglev_index(flow) % 3.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <ostream>
#include <string>

#include "balancer_fixture.h"
#include "packet_builder.h"

namespace ballast::test {
namespace {

// --- The world ------------------------------------------------------------------

enum class Mode { dsr, ipip, gue };

struct Service {
  std::uint32_t vip_id;
  int family;  // the VIP's: 4 or 6
  std::uint8_t proto;
  Mode mode;
  int backend_family;
  std::uint16_t port;
};

// One port per mode, the same for TCP and UDP (the protocol tells them apart).
constexpr std::uint16_t port_dsr = 80;
constexpr std::uint16_t port_ipip = 8001;
constexpr std::uint16_t port_gue_vip = 8002;
constexpr std::uint16_t port_ipip_cross = 8003;  // backends of the other family
constexpr std::uint16_t port_gue_cross = 8004;
// Added by rows that need it: a UDP VIP keyed without source ports.
constexpr std::uint16_t port_no_src_port = 5353;
constexpr std::uint32_t vip_no_src_port = 100;
constexpr std::uint32_t vip_no_src_port_gue = 101;

constexpr std::uint32_t backends_per_vip = 3;
constexpr std::size_t eth_header_len = 14;
constexpr std::size_t ipv4_header_len = 20;
constexpr std::size_t ipv6_header_len = 40;
constexpr std::size_t tcp_header_len = 20;
constexpr std::size_t udp_header_len = 8;

std::uint32_t backend_id(std::uint32_t vip_id, std::uint32_t k) { return vip_id * 4 + k; }

MacAddr backend_mac(std::uint32_t k) {
  constexpr MacAddr macs[] = {mac_backend_one, mac_backend_two, mac_backend_three};
  return macs[k];
}

IpAddr backend_addr(int family, std::uint32_t k) {
  constexpr Ipv4Addr v4[] = {v4_backend_one, v4_backend_two, v4_backend_three};
  constexpr Ipv6Addr v6[] = {v6_backend_one, v6_backend_two, v6_backend_three};
  if (family == 4) return v4[k];
  return v6[k];
}

const std::vector<Service>& world() {
  static const std::vector<Service> services = [] {
    std::vector<Service> out;
    std::uint32_t id = 1;
    for (int family : {4, 6})
      for (std::uint8_t proto : {ipproto_tcp, ipproto_udp}) {
        out.push_back({id++, family, proto, Mode::dsr, family, port_dsr});
        out.push_back({id++, family, proto, Mode::ipip, family, port_ipip});
        out.push_back({id++, family, proto, Mode::gue, family, port_gue_vip});
        const int other = family == 4 ? 6 : 4;
        out.push_back({id++, family, proto, Mode::ipip, other, port_ipip_cross});
        out.push_back({id++, family, proto, Mode::gue, other, port_gue_cross});
      }
    return out;
  }();
  return services;
}

const Service& service(int family, std::uint8_t proto, Mode mode, bool cross = false) {
  for (const Service& s : world())
    if (s.family == family && s.proto == proto && s.mode == mode &&
        (s.backend_family != s.family) == cross)
      return s;
  throw std::out_of_range("no such service in the world");
}

std::uint32_t mode_flags(Mode mode) {
  switch (mode) {
    case Mode::ipip:
      return BALLAST_VIP_F_ENCAP_IPIP;
    case Mode::gue:
      return BALLAST_VIP_F_ENCAP_GUE;
    case Mode::dsr:
      break;
  }
  return 0;
}

ballast_vip_key vip_key(int family, std::uint16_t port, std::uint8_t proto) {
  return family == 4 ? vip_key_v4(v4_vip_one, port, proto) : vip_key_v6(v6_vip_one, port, proto);
}

ballast_backend backend_slot(int family, std::uint32_t k, std::uint32_t vip_id) {
  const IpAddr addr = backend_addr(family, k);
  if (family == 4) return backend_slot_v4(std::get<Ipv4Addr>(addr), backend_mac(k), vip_id);
  return backend_slot_v6(std::get<Ipv6Addr>(addr), backend_mac(k), vip_id);
}

std::vector<std::uint32_t> backend_ids(std::uint32_t vip_id) {
  std::vector<std::uint32_t> ids;
  for (std::uint32_t k = 0; k < backends_per_vip; k++) ids.push_back(backend_id(vip_id, k));
  return ids;
}

void install_table(BalancerHarness& lb, const Service& s) {
  lb.install_maglev_table(s.vip_id, round_robin_table(backend_ids(s.vip_id)));
}

// A VIP with its three backends and its round-robin table.
void add_service(BalancerHarness& lb, const Service& s, std::uint32_t extra_flags = 0) {
  lb.add_vip(vip_key(s.family, s.port, s.proto), s.vip_id, mode_flags(s.mode) | extra_flags,
             s.mode == Mode::gue ? port_gue : 0);
  for (std::uint32_t k = 0; k < backends_per_vip; k++)
    lb.set_backend(backend_id(s.vip_id, k), backend_slot(s.backend_family, k, s.vip_id));
  install_table(lb, s);
}

// Every VIP and backend of the world; Maglev tables (65,537 entries each,
// most of a row's set-up time) only for the VIPs in @tables: a packet that
// reaches any other VIP's table finds none and is dropped, which fails the
// row as surely as a wrong backend would.
void seed_world(BalancerHarness& lb, std::span<const std::uint32_t> tables) {
  for (const Service& s : world()) {
    lb.add_vip(vip_key(s.family, s.port, s.proto), s.vip_id, mode_flags(s.mode),
               s.mode == Mode::gue ? port_gue : 0);
    for (std::uint32_t k = 0; k < backends_per_vip; k++)
      lb.set_backend(backend_id(s.vip_id, k), backend_slot(s.backend_family, k, s.vip_id));
    if (std::find(tables.begin(), tables.end(), s.vip_id) != tables.end()) install_table(lb, s);
  }
}

// The rows' extra VIPs: UDP without source ports, in dsr and gue.
Service no_src_port_service(Mode mode) {
  return mode == Mode::dsr
             ? Service{vip_no_src_port, 4, ipproto_udp, Mode::dsr, 4, port_no_src_port}
             : Service{vip_no_src_port_gue, 6, ipproto_udp, Mode::gue, 6, port_no_src_port};
}

// The backend (0..2) the world's table gives @flow.
std::uint32_t table_choice(const ballast_flow_key& flow) {
  return maglev_index(flow) % backends_per_vip;
}

// --- What the balancer sends ----------------------------------------------------

// The outer source for @family from @egress: its address, the bits of the
// hash mask taken from the flow hash. Reading of the spec ("that prefix with
// the host bits taken from the flow hash"): the address's host bits are the
// hash's low bits, i.e. (src & ~mask) | (htonl(hash) & mask).
IpAddr egress_source(const ballast_egress& egress, int family, std::uint32_t hash) {
  if (family == 4) {
    const std::uint32_t be =
        (egress.src4 & ~egress.src4_hash_mask) | (htonl(hash) & egress.src4_hash_mask);
    Ipv4Addr addr{};
    std::memcpy(addr.octets.data(), &be, 4);
    return addr;
  }
  std::uint32_t words[4];
  std::memcpy(words, egress.src6, sizeof(words));
  words[3] = (words[3] & ~egress.src6_hash_mask) | (htonl(hash) & egress.src6_hash_mask);
  Ipv6Addr addr{};
  std::memcpy(addr.octets.data(), words, sizeof(words));
  return addr;
}

MacAddr mac_of(const ballast_egress& egress) {
  MacAddr mac{};
  std::copy(std::begin(egress.mac), std::end(egress.mac), mac.begin());
  return mac;
}

Bytes with_macs(Bytes frame, MacAddr src, MacAddr dst) {
  std::copy(dst.begin(), dst.end(), frame.begin());
  std::copy(src.begin(), src.end(), frame.begin() + 6);
  return frame;
}

// @in as it leaves for backend @k of @s, through @egress, for a flow hashing
// to @hash.
Bytes sent_to_backend(const Service& s, const Bytes& in, std::uint32_t k, std::uint32_t hash,
                      const ballast_egress& egress = default_egress()) {
  const Outer outer{mac_of(egress), backend_mac(k), egress_source(egress, s.backend_family, hash),
                    backend_addr(s.backend_family, k), hash};
  switch (s.mode) {
    case Mode::ipip:
      return encapsulate_ipip(in, outer);
    case Mode::gue:
      return encapsulate_gue(in, outer, port_gue);
    case Mode::dsr:
      break;
  }
  return with_macs(in, mac_of(egress), backend_mac(k));
}

ballast_reason forward_reason(Mode mode) {
  switch (mode) {
    case Mode::ipip:
      return BALLAST_REASON_TX_ENCAP_IPIP;
    case Mode::gue:
      return BALLAST_REASON_TX_ENCAP_GUE;
    case Mode::dsr:
      break;
  }
  return BALLAST_REASON_TX_FORWARDED;
}

// Bytes the encapsulation adds in front of the client's packet.
std::uint16_t encap_overhead(const Service& s) {
  const std::uint16_t ip = s.backend_family == 4 ? ipv4_header_len : ipv6_header_len;
  return s.mode == Mode::gue ? ip + udp_header_len : ip;
}

// --- Client packets -------------------------------------------------------------

PacketBuilder from_router() { return PacketBuilder().eth(mac_router, mac_lb); }

// Client one's packet to @s's VIP: TCP with @flags, or UDP.
PacketBuilder to_service(const Service& s, std::uint8_t tcp_flags = tcp_syn,
                         std::uint16_t sport = port_client_one) {
  PacketBuilder p = from_router();
  if (s.family == 4)
    p.ipv4(v4_client_one, v4_vip_one);
  else
    p.ipv6(v6_client_one, v6_vip_one);
  if (s.proto == ipproto_tcp)
    p.tcp(sport, s.port, tcp_flags);
  else
    p.udp(sport, s.port);
  return p;
}

ballast_flow_key flow_of(const Service& s, std::uint16_t sport = port_client_one) {
  if (s.family == 4) return flow_key_v4(v4_client_one, sport, v4_vip_one, s.port, s.proto);
  return flow_key_v6(v6_client_one, sport, v6_vip_one, s.port, s.proto);
}

// The key fragments are hashed on: addresses and protocol, no ports.
ballast_flow_key fragment_key(int family, std::uint8_t proto) {
  if (family == 4) return flow_key_v4(v4_client_one, 0, v4_vip_one, 0, proto);
  return flow_key_v6(v6_client_one, 0, v6_vip_one, 0, proto);
}

// --- Rows -----------------------------------------------------------------------

// Counter deltas of a packet sent to a backend.
struct Counted {
  std::uint32_t vip_id;
  std::uint32_t backend_id;
  // Whether it counts as a new flow; nothing means the spec leaves it open
  // (ICMP errors, "too big" replies) and it is not checked.
  std::optional<bool> new_flow;
};

// The connection table after the input: @key holds @backend_id, or (nothing)
// has no entry. A way holds no flow hash: the encapsulating modes compute it
// per packet, which the expected output frames check byte for byte.
struct ConnExpect {
  ballast_flow_key key;
  std::optional<std::uint32_t> backend_id;
  std::optional<std::uint32_t> flags;  // BALLAST_CONN_F_*, checked when set
};

struct SuiteCase {
  std::string name;
  std::function<void(BalancerHarness&)> setup;  // on top of the world
  std::vector<std::uint32_t> tables;            // VIPs whose tables the world installs
  std::vector<Bytes> prelude;                   // sent before the input
  std::function<void(BalancerHarness&)> after_prelude;
  Bytes input;
  int error = 0;  // of the syscall; nonzero: the program never ran
  std::uint32_t action = XDP_PASS;
  ballast_reason reason = BALLAST_REASON_COUNT;
  Bytes expected;
  // Counter deltas: set for packets sent to a backend; nothing with
  // check_no_traffic: no VIP or backend counted anything.
  std::optional<Counted> counted;
  bool check_no_traffic = true;
  std::vector<ConnExpect> conns;
};

void PrintTo(const SuiteCase& row, std::ostream* os) { *os << row.name; }

// A row whose input leaves exactly as it came (passed or dropped).
SuiteCase unchanged(std::string name, const Bytes& input, std::uint32_t action,
                    ballast_reason reason) {
  SuiteCase row;
  row.name = std::move(name);
  row.input = input;
  row.action = action;
  row.reason = reason;
  row.expected = input;
  return row;
}

std::string family_name(int family) { return family == 4 ? "Ipv4" : "Ipv6"; }
std::string proto_name(std::uint8_t proto) { return proto == ipproto_tcp ? "Tcp" : "Udp"; }
std::string mode_name(Mode mode) {
  return mode == Mode::dsr ? "Dsr" : mode == Mode::ipip ? "Ipip" : "Gue";
}
std::string service_name(const Service& s) {
  std::string name = family_name(s.family) + proto_name(s.proto) + mode_name(s.mode);
  if (s.backend_family != s.family) name += "To" + family_name(s.backend_family) + "Backends";
  return name;
}

// A table that sends every flow of @s to backend @k.
std::function<void(BalancerHarness&)> swap_table_to(const Service& s, std::uint32_t k) {
  return [s, k](BalancerHarness& lb) {
    const std::uint32_t only[] = {backend_id(s.vip_id, k)};
    lb.install_maglev_table(s.vip_id, round_robin_table(only));
  };
}

// New flow: a SYN or a first datagram takes the Maglev table's backend and
// creates a connection-table entry, unconfirmed (no packet followed yet).
SuiteCase new_flow_row(const Service& s) {
  const ballast_flow_key flow = flow_of(s);
  const std::uint32_t k = table_choice(flow);
  const std::uint32_t hash = flow_hash(flow);
  SuiteCase row;
  row.name = service_name(s) + (s.proto == ipproto_tcp ? "Syn" : "FirstDatagram");
  row.tables = {s.vip_id};
  row.input = to_service(s, tcp_syn).payload(s.proto == ipproto_udp ? "query" : "").build();
  row.action = XDP_TX;
  row.reason = forward_reason(s.mode);
  row.expected = sent_to_backend(s, row.input, k, hash);
  row.counted = Counted{s.vip_id, backend_id(s.vip_id, k), true};
  row.conns = {{flow, backend_id(s.vip_id, k), 0u}};
  return row;
}

// Established flow: after its first packet the table is swapped to another
// backend; the second packet (an ACK with data, a second datagram) must
// still go where the first went, with the same outer header, and confirms
// the flow's way.
SuiteCase established_row(const Service& s) {
  const ballast_flow_key flow = flow_of(s);
  const std::uint32_t k = table_choice(flow);
  SuiteCase row;
  row.name = service_name(s) + (s.proto == ipproto_tcp ? "EstablishedAck" : "SecondDatagram");
  row.tables = {s.vip_id};
  row.prelude = {to_service(s, tcp_syn).payload(s.proto == ipproto_udp ? "query" : "").build()};
  row.after_prelude = swap_table_to(s, (k + 1) % backends_per_vip);
  row.input = to_service(s, tcp_ack | tcp_psh).payload("second packet").build();
  row.action = XDP_TX;
  row.reason = forward_reason(s.mode);
  row.expected = sent_to_backend(s, row.input, k, flow_hash(flow));
  row.counted = Counted{s.vip_id, backend_id(s.vip_id, k), false};
  row.conns = {{flow, backend_id(s.vip_id, k), BALLAST_CONN_F_CONFIRMED}};
  return row;
}

// IPv4 options: three NOPs and an end-of-list, one 4-byte word.
constexpr std::uint8_t nop_options[] = {1, 1, 1, 0};

std::vector<SuiteCase> forwarding_rows() {
  std::vector<SuiteCase> rows;
  for (const Service& s : world()) {
    rows.push_back(new_flow_row(s));
    rows.push_back(established_row(s));
  }
  // The client's packet rides inside byte for byte, options, TOS and DF
  // included; the outer header has none of its options.
  for (Mode mode : {Mode::ipip, Mode::gue}) {
    const Service& s = service(4, ipproto_tcp, mode);
    SuiteCase row = new_flow_row(s);
    row.name = service_name(s) + "SynWithIpOptionsTosAndDf";
    row.input =
        to_service(s, tcp_syn).ip_options(nop_options).ip_tos(0xb8).ip_dont_fragment().build();
    const ballast_flow_key flow = flow_of(s);
    row.expected = sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow));
    rows.push_back(row);
  }
  {
    const Service& s = service(6, ipproto_udp, Mode::ipip, true);
    SuiteCase row = new_flow_row(s);
    row.name = service_name(s) + "DatagramWithTrafficClass";
    row.input = to_service(s).ipv6_traffic_class(0x2e).payload("query").build();
    const ballast_flow_key flow = flow_of(s);
    row.expected = sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow));
    rows.push_back(row);
  }
  // A SYN always asks the table: a reused 5-tuple follows the new one, and
  // its entry is rewritten, unconfirmed again.
  {
    const Service& s = service(6, ipproto_tcp, Mode::gue);
    const ballast_flow_key flow = flow_of(s);
    const std::uint32_t moved = (table_choice(flow) + 1) % backends_per_vip;
    SuiteCase row = new_flow_row(s);
    row.name = service_name(s) + "SynAfterTableSwapFollowsNewTable";
    row.prelude = {row.input};
    row.after_prelude = swap_table_to(s, moved);
    row.expected = sent_to_backend(s, row.input, moved, flow_hash(flow));
    row.counted = Counted{s.vip_id, backend_id(s.vip_id, moved), true};
    row.conns = {{flow, backend_id(s.vip_id, moved), 0u}};
    rows.push_back(row);
  }
  // An established flow whose backend left (no longer ACTIVE) takes the
  // table again, as a new flow, and its entry is rewritten in place with its
  // flags kept (the first datagram left it unconfirmed).
  {
    const Service& s = service(6, ipproto_udp, Mode::ipip);
    const ballast_flow_key flow = flow_of(s);
    const std::uint32_t left = table_choice(flow);
    const std::uint32_t moved = (left + 1) % backends_per_vip;
    SuiteCase row = established_row(s);
    row.name = service_name(s) + "DatagramAfterItsBackendLeftReselects";
    row.after_prelude = [s, left, moved](BalancerHarness& lb) {
      ballast_backend slot = backend_slot(s.backend_family, left, s.vip_id);
      slot.flags &= ~BALLAST_BACKEND_F_ACTIVE;
      lb.set_backend(backend_id(s.vip_id, left), slot);
      swap_table_to(s, moved)(lb);
    };
    row.expected = sent_to_backend(s, row.input, moved, flow_hash(flow));
    row.counted = Counted{s.vip_id, backend_id(s.vip_id, moved), true};
    row.conns = {{flow, backend_id(s.vip_id, moved), 0u}};
    rows.push_back(row);
  }
  // Every weight 0: the table holds no backend.
  {
    const Service& s = service(6, ipproto_tcp, Mode::dsr);
    SuiteCase row =
        unchanged(service_name(s) + "SynToVipWithoutBackendsDrops", to_service(s, tcp_syn).build(),
                  XDP_DROP, BALLAST_REASON_DROP_NO_BACKEND);
    row.setup = [s](BalancerHarness& lb) {
      lb.install_maglev_table(s.vip_id, round_robin_table({}));
    };
    row.conns = {{flow_of(s), std::nullopt, std::nullopt}};
    rows.push_back(row);
  }
  {
    const Service& s = service(4, ipproto_tcp, Mode::dsr);
    SuiteCase row = new_flow_row(s);
    row.name = "Ipv4TcpDsrSynWithDontFragmentIsNoFragment";
    row.input = to_service(s, tcp_syn).ip_dont_fragment().build();
    row.expected = sent_to_backend(s, row.input, table_choice(flow_of(s)), 0);
    rows.push_back(row);
  }
  return rows;
}

// --- ICMP errors ----------------------------------------------------------------

// The start of a backend's answer to client one (from the VIP), as a router
// quotes it: the IP header and the first 8 bytes of TCP / UDP.
Bytes answer_quote(const Service& s) {
  PacketBuilder answer;
  if (s.family == 4)
    answer.ipv4(v4_vip_one, v4_client_one);
  else
    answer.ipv6(v6_vip_one, v6_client_one);
  if (s.proto == ipproto_tcp)
    answer.tcp(s.port, port_client_one, tcp_ack | tcp_psh);
  else
    answer.udp(s.port, port_client_one);
  const Bytes packet = ip_packet_of(answer.payload("the answer, longer than 8 bytes").build());
  const std::size_t ip_len = s.family == 4 ? ipv4_header_len : ipv6_header_len;
  return Bytes(packet.begin(), packet.begin() + ip_len + 8);
}

// An ICMP (IPv4) or ICMPv6 error from a router to the VIP quoting @quoted.
Bytes icmp_from_router(int family, std::uint8_t type, std::uint8_t code, std::uint32_t rest,
                       const Bytes& quoted) {
  if (family == 4)
    return from_router().ipv4(v4_router, v4_vip_one).icmp_error(type, code, rest, quoted).build();
  return from_router().ipv6(v6_router, v6_vip_one).icmp6_error(type, code, rest, quoted).build();
}

// An error about @s's flow of client one: to the flow's backend in the VIP's
// mode; neither the table lookup nor the send adds a connection entry.
SuiteCase icmp_error_row(std::string name, const Service& s, std::uint8_t type, std::uint8_t code,
                         std::uint32_t rest) {
  const ballast_flow_key flow = flow_of(s);
  const std::uint32_t k = table_choice(flow);
  SuiteCase row;
  row.name = std::move(name);
  row.tables = {s.vip_id};
  row.input = icmp_from_router(s.family, type, code, rest, answer_quote(s));
  row.action = XDP_TX;
  row.reason = BALLAST_REASON_TX_ICMP_ERROR;
  row.expected = sent_to_backend(s, row.input, k, flow_hash(flow));
  row.counted = Counted{s.vip_id, backend_id(s.vip_id, k), std::nullopt};
  row.conns = {{flow, std::nullopt, std::nullopt}};
  return row;
}

std::vector<SuiteCase> icmp_rows() {
  constexpr std::uint32_t next_hop_mtu = 1400;
  constexpr std::uint32_t ipv6_min_mtu = 1280;
  std::vector<SuiteCase> rows;
  rows.push_back(icmp_error_row("Ipv4FragNeededAboutTcpDsrFlow", service(4, ipproto_tcp, Mode::dsr),
                                icmp_dest_unreachable, icmp_code_frag_needed, next_hop_mtu));
  rows.push_back(icmp_error_row("Ipv4PortUnreachableAboutUdpIpipFlow",
                                service(4, ipproto_udp, Mode::ipip), icmp_dest_unreachable,
                                icmp_code_port_unreachable, 0));
  rows.push_back(icmp_error_row("Ipv4TimeExceededAboutTcpGueFlow",
                                service(4, ipproto_tcp, Mode::gue), icmp_time_exceeded, 0, 0));
  rows.push_back(icmp_error_row("Ipv6PacketTooBigAboutTcpDsrFlow",
                                service(6, ipproto_tcp, Mode::dsr), icmp6_packet_too_big, 0,
                                ipv6_min_mtu));
  rows.push_back(icmp_error_row("Ipv6PacketTooBigAboutTcpGueFlow",
                                service(6, ipproto_tcp, Mode::gue), icmp6_packet_too_big, 0,
                                ipv6_min_mtu));
  rows.push_back(icmp_error_row("Ipv6DestUnreachableAboutUdpIpipToIpv4BackendsFlow",
                                service(6, ipproto_udp, Mode::ipip, true), icmp6_dest_unreachable,
                                4 /* port unreachable */, 0));
  rows.push_back(icmp_error_row("Ipv4FragNeededAboutUdpGueToIpv6BackendsFlow",
                                service(4, ipproto_udp, Mode::gue, true), icmp_dest_unreachable,
                                icmp_code_frag_needed, next_hop_mtu));

  // Established: the error follows the connection table, not the table.
  {
    const Service& s = service(4, ipproto_tcp, Mode::dsr);
    const ballast_flow_key flow = flow_of(s);
    const std::uint32_t k = table_choice(flow);
    SuiteCase row = icmp_error_row("Ipv4FragNeededAboutEstablishedFlowFollowsItsBackend", s,
                                   icmp_dest_unreachable, icmp_code_frag_needed, next_hop_mtu);
    row.prelude = {to_service(s, tcp_syn).build()};
    row.after_prelude = swap_table_to(s, (k + 1) % backends_per_vip);
    row.conns = {{flow, backend_id(s.vip_id, k), std::nullopt}};
    rows.push_back(row);
  }

  // About a flow that is no VIP's: the quoted answer came from another host.
  {
    Bytes quote = answer_quote(service(4, ipproto_tcp, Mode::dsr));
    std::copy(v4_other_host.octets.begin(), v4_other_host.octets.end(), quote.begin() + 12);
    rows.push_back(
        unchanged("Ipv4FragNeededAboutNonVipFlowPasses",
                  from_router()
                      .ipv4(v4_router, v4_other_host)
                      .icmp_error(icmp_dest_unreachable, icmp_code_frag_needed, next_hop_mtu, quote)
                      .build(),
                  XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW));
  }
  // A VIP address but a port no VIP serves.
  {
    Service unserved = service(6, ipproto_tcp, Mode::dsr);
    unserved.port = port_https;
    rows.push_back(unchanged(
        "Ipv6PacketTooBigAboutUnservedPortPasses",
        icmp_from_router(6, icmp6_packet_too_big, 0, ipv6_min_mtu, answer_quote(unserved)),
        XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW));
  }
  rows.push_back(unchanged("Ipv6EchoRequestToVipPasses",
                           from_router()
                               .ipv6(v6_client_one, v6_vip_one)
                               .icmp6_echo_request(7, 1)
                               .payload("ping")
                               .build(),
                           XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW));
  rows.push_back(unchanged(
      "Ipv4EchoRequestToVipPasses",
      from_router().ipv4(v4_client_one, v4_vip_one).icmp_echo_request(7, 1).payload("ping").build(),
      XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW));
  // The quote stops 2 bytes into TCP: no destination port.
  {
    const Bytes quote = answer_quote(service(4, ipproto_tcp, Mode::dsr));
    rows.push_back(
        unchanged("Ipv4FragNeededQuotingTooLittlePassesMalformed",
                  icmp_from_router(4, icmp_dest_unreachable, icmp_code_frag_needed, next_hop_mtu,
                                   Bytes(quote.begin(), quote.begin() + ipv4_header_len + 2)),
                  XDP_PASS, BALLAST_REASON_PASS_MALFORMED_ICMP));
  }
  // The ports but not the 8 bytes an error quotes at least (RFC 792, RFC
  // 4443): the backend's kernel would drop it.
  {
    const Bytes quote = answer_quote(service(4, ipproto_tcp, Mode::dsr));
    rows.push_back(
        unchanged("Ipv4FragNeededQuotingOnlyThePortsPassesMalformed",
                  icmp_from_router(4, icmp_dest_unreachable, icmp_code_frag_needed, next_hop_mtu,
                                   Bytes(quote.begin(), quote.begin() + ipv4_header_len + 4)),
                  XDP_PASS, BALLAST_REASON_PASS_MALFORMED_ICMP));
  }
  {
    const Bytes quote = answer_quote(service(6, ipproto_udp, Mode::dsr));
    rows.push_back(
        unchanged("Ipv6PacketTooBigQuotingOnlyThePortsPassesMalformed",
                  icmp_from_router(6, icmp6_packet_too_big, 0, ipv6_min_mtu,
                                   Bytes(quote.begin(), quote.begin() + ipv6_header_len + 7)),
                  XDP_PASS, BALLAST_REASON_PASS_MALFORMED_ICMP));
  }
  {
    const Bytes quote = answer_quote(service(6, ipproto_udp, Mode::dsr));
    rows.push_back(
        unchanged("Ipv6PacketTooBigQuotingOnlyAnIpv6HeaderPassesMalformed",
                  icmp_from_router(6, icmp6_packet_too_big, 0, ipv6_min_mtu,
                                   Bytes(quote.begin(), quote.begin() + ipv6_header_len)),
                  XDP_PASS, BALLAST_REASON_PASS_MALFORMED_ICMP));
  }
  return rows;
}

// --- Fragments ------------------------------------------------------------------

// The port-0 entry a `fragments: true` VIP adds for its address and protocol.
std::function<void(BalancerHarness&)> fragments_vip(const Service& s) {
  return [s](BalancerHarness& lb) {
    lb.add_vip(vip_key(s.family, 0, s.proto), s.vip_id,
               mode_flags(s.mode) | BALLAST_VIP_F_FRAGMENTS, s.mode == Mode::gue ? port_gue : 0);
  };
}

constexpr std::uint16_t later_fragment_offset = 1232;
constexpr std::uint32_t fragment_id = 0x5eed;

// Client one's fragments of one UDP datagram to @s's VIP.
Bytes first_fragment(const Service& s) {
  PacketBuilder p = to_service(s).payload("the first part of a long datagram");
  if (s.family == 4)
    p.ip_fragment(0, true);
  else
    p.ipv6_fragment(0, true, fragment_id);
  return p.build();
}

Bytes later_fragment(const Service& s, bool last) {
  PacketBuilder p = from_router();
  if (s.family == 4)
    p.ipv4(v4_client_one, v4_vip_one).ip_fragment(later_fragment_offset, !last);
  else
    p.ipv6(v6_client_one, v6_vip_one).ipv6_fragment(later_fragment_offset, !last, fragment_id);
  return p.ip_protocol(s.proto).payload("the rest of the datagram").build();
}

SuiteCase fragment_row(std::string name, const Service& s, const Bytes& input) {
  const ballast_flow_key key = fragment_key(s.family, s.proto);
  const std::uint32_t k = table_choice(key);
  SuiteCase row;
  row.name = std::move(name);
  row.setup = fragments_vip(s);
  row.tables = {s.vip_id};
  row.input = input;
  row.action = XDP_TX;
  row.reason = BALLAST_REASON_TX_FRAGMENT;
  row.expected = sent_to_backend(s, input, k, flow_hash(key));
  row.counted = Counted{s.vip_id, backend_id(s.vip_id, k), false};
  // No state: neither the 5-tuple nor the 3-tuple gets an entry.
  row.conns = {{key, std::nullopt, std::nullopt}, {flow_of(s), std::nullopt, std::nullopt}};
  return row;
}

std::vector<SuiteCase> fragment_rows() {
  const Service& v4_dsr = service(4, ipproto_udp, Mode::dsr);
  const Service& v4_ipip = service(4, ipproto_udp, Mode::ipip);
  const Service& v6_gue = service(6, ipproto_udp, Mode::gue);
  const Service& v6_dsr_tcp = service(6, ipproto_tcp, Mode::dsr);
  std::vector<SuiteCase> rows = {
      fragment_row("Ipv4FirstFragmentToFragmentsVipDsr", v4_dsr, first_fragment(v4_dsr)),
      fragment_row("Ipv4MiddleFragmentToFragmentsVipDsr", v4_dsr, later_fragment(v4_dsr, false)),
      fragment_row("Ipv4LastFragmentToFragmentsVipDsr", v4_dsr, later_fragment(v4_dsr, true)),
      fragment_row("Ipv4FirstFragmentToFragmentsVipIpip", v4_ipip, first_fragment(v4_ipip)),
      fragment_row("Ipv4LastFragmentToFragmentsVipIpip", v4_ipip, later_fragment(v4_ipip, true)),
      fragment_row("Ipv6FirstFragmentToFragmentsVipGue", v6_gue, first_fragment(v6_gue)),
      fragment_row("Ipv6LastFragmentToFragmentsVipGue", v6_gue, later_fragment(v6_gue, true)),
      unchanged("Ipv4FirstFragmentWithoutFragmentsVipPasses", first_fragment(v4_dsr), XDP_PASS,
                BALLAST_REASON_PASS_IP_FRAGMENT),
      unchanged("Ipv4LaterFragmentWithoutFragmentsVipPasses", later_fragment(v4_dsr, true),
                XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT),
      unchanged("Ipv6FirstFragmentWithoutFragmentsVipPasses", first_fragment(v6_gue), XDP_PASS,
                BALLAST_REASON_PASS_IP_FRAGMENT),
      unchanged("Ipv6LaterFragmentWithoutFragmentsVipPasses", later_fragment(v6_gue, true),
                XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT),
  };
  // The fragments entry is per protocol: a TCP fragment to the address of a
  // UDP fragments VIP is the kernel's.
  {
    SuiteCase row = unchanged("Ipv4TcpFragmentToUdpFragmentsVipPasses",
                              first_fragment(service(4, ipproto_tcp, Mode::dsr)), XDP_PASS,
                              BALLAST_REASON_PASS_IP_FRAGMENT);
    row.setup = fragments_vip(v4_dsr);
    rows.push_back(row);
  }
  // An atomic fragment (offset 0, no M) is a whole packet: its transport
  // header is right after the fragment header.
  {
    const Bytes input =
        to_service(v6_dsr_tcp, tcp_syn).ipv6_fragment(0, false, fragment_id).build();
    const ballast_flow_key flow = flow_of(v6_dsr_tcp);
    const std::uint32_t k = table_choice(flow);
    SuiteCase row;
    row.name = "Ipv6AtomicFragmentTcpSynForwardedAsWholePacket";
    row.tables = {v6_dsr_tcp.vip_id};
    row.input = input;
    row.action = XDP_TX;
    row.reason = BALLAST_REASON_TX_FORWARDED;
    row.expected = sent_to_backend(v6_dsr_tcp, input, k, flow_hash(flow));
    row.counted = Counted{v6_dsr_tcp.vip_id, backend_id(v6_dsr_tcp.vip_id, k), true};
    row.conns = {{flow, backend_id(v6_dsr_tcp.vip_id, k), std::nullopt}};
    rows.push_back(row);
  }
  return rows;
}

// --- IPv6 extension headers -----------------------------------------------------

// A TCP SYN with extension headers, forwarded to the flow's backend.
SuiteCase ext_forwarded_row(std::string name, const Service& s, PacketBuilder packet) {
  const ballast_flow_key flow = flow_of(s);
  const std::uint32_t k = table_choice(flow);
  SuiteCase row;
  row.name = std::move(name);
  row.tables = {s.vip_id};
  row.input = packet.build();
  row.action = XDP_TX;
  row.reason = forward_reason(s.mode);
  row.expected = sent_to_backend(s, row.input, k, flow_hash(flow));
  row.counted = Counted{s.vip_id, backend_id(s.vip_id, k), true};
  row.conns = {{flow, backend_id(s.vip_id, k), std::nullopt}};
  return row;
}

// An IPv6 packet to @s's VIP with extension headers added by @ext, then the
// SYN (the builder places extension headers before the transport header
// whatever the call order).
PacketBuilder v6_syn_with(const Service& s, const std::function<void(PacketBuilder&)>& ext) {
  PacketBuilder p = from_router().ipv6(v6_client_one, v6_vip_one);
  ext(p);
  return p.tcp(port_client_one, s.port, tcp_syn);
}

std::vector<SuiteCase> ext_header_rows() {
  const Service& dsr = service(6, ipproto_tcp, Mode::dsr);
  const Service& gue = service(6, ipproto_tcp, Mode::gue);
  std::vector<SuiteCase> rows = {
      ext_forwarded_row(
          "Ipv6HopByHopAndDestOptsBeforeTcpDsr", dsr,
          v6_syn_with(dsr, [](PacketBuilder& p) { p.ipv6_hop_by_hop().ipv6_dest_opts(1); })),
      ext_forwarded_row(
          "Ipv6HopByHopAndDestOptsBeforeTcpGue", gue,
          v6_syn_with(gue, [](PacketBuilder& p) { p.ipv6_hop_by_hop().ipv6_dest_opts(); })),
      ext_forwarded_row(
          "Ipv6FourExtensionHeadersForwarded", dsr,
          v6_syn_with(dsr,
                      [](PacketBuilder& p) {
                        p.ipv6_hop_by_hop().ipv6_dest_opts().ipv6_routing(1).ipv6_dest_opts();
                      })),
      [] {
        const Service& s = service(6, ipproto_udp, Mode::ipip);
        SuiteCase row = new_flow_row(s);
        row.name = "Ipv6RoutingHeaderBeforeUdpIpip";
        row.input = from_router()
                        .ipv6(v6_client_one, v6_vip_one)
                        .ipv6_routing()
                        .udp(port_client_one, s.port)
                        .payload("query")
                        .build();
        const ballast_flow_key flow = flow_of(s);
        row.expected = sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow));
        return row;
      }(),
      unchanged("Ipv6FiveExtensionHeadersPassesExtLimit",
                v6_syn_with(dsr,
                            [](PacketBuilder& p) {
                              p.ipv6_hop_by_hop()
                                  .ipv6_dest_opts()
                                  .ipv6_routing()
                                  .ipv6_dest_opts()
                                  .ipv6_dest_opts();
                            })
                    .build(),
                XDP_PASS, BALLAST_REASON_PASS_IPV6_EXT_LIMIT),
      // Claims 8 * (1 + 5) = 48 bytes; 8 of its own and 20 of TCP follow.
      unchanged(
          "Ipv6HopByHopLongerThanThePayloadDrops",
          v6_syn_with(dsr, [](PacketBuilder& p) { p.ipv6_hop_by_hop().ipv6_ext_len_field(5); })
              .build(),
          XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6_EXT),
      // The payload length (and the frame) end 4 bytes into a hop-by-hop
      // header: IPv6 itself is consistent, the extension header is cut.
      unchanged("Ipv6FrameEndsInsideHopByHopDrops",
                from_router()
                    .ipv6(v6_client_one, v6_vip_one)
                    .ipv6_hop_by_hop()
                    .tcp(port_client_one, dsr.port, tcp_syn)
                    .ipv6_payload_length(4)
                    .truncate(eth_header_len + ipv6_header_len + 4)
                    .build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6_EXT),
      // The fixed header says a hop-by-hop header follows; nothing does.
      unchanged("Ipv6FrameEndsAtExtensionHeaderBoundaryDrops",
                from_router()
                    .ipv6(v6_client_one, v6_vip_one)
                    .ipv6_hop_by_hop()
                    .ipv6_payload_length(0)
                    .truncate(eth_header_len + ipv6_header_len)
                    .build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6_EXT),
  };
  return rows;
}

// --- Source ports, source prefixes, MTU, egress -----------------------------------

// Two source ports of client one whose 5-tuples take different backends
// when the port is hashed: a program hashing it cannot pass both rows.
std::pair<std::uint16_t, std::uint16_t> ports_on_different_backends(const Service& s) {
  const std::uint32_t k0 = table_choice(flow_of(s, port_client_one));
  for (std::uint16_t port = port_client_two;; port++)
    if (table_choice(flow_of(s, port)) != k0) return {port_client_one, port};
}

std::vector<SuiteCase> no_src_port_rows() {
  std::vector<SuiteCase> rows;
  for (Mode mode : {Mode::dsr, Mode::gue}) {
    const Service s = no_src_port_service(mode);
    const auto [first_port, second_port] = ports_on_different_backends(s);
    const ballast_flow_key key = flow_of(s, 0);
    const std::uint32_t k = table_choice(key);
    const std::string name = "NoSrcPort" + family_name(s.family) + "Udp" + mode_name(mode);
    auto setup = [s](BalancerHarness& lb) { add_service(lb, s, BALLAST_VIP_F_NO_SRC_PORT); };

    SuiteCase first;
    first.name = name + "FirstPortKeyedWithoutPort";
    first.setup = setup;
    first.input = to_service(s, 0, first_port).payload("query").build();
    first.action = XDP_TX;
    first.reason = forward_reason(mode);
    first.expected = sent_to_backend(s, first.input, k, flow_hash(key));
    first.counted = Counted{s.vip_id, backend_id(s.vip_id, k), true};
    first.conns = {{key, backend_id(s.vip_id, k), std::nullopt},
                   {flow_of(s, first_port), std::nullopt, std::nullopt}};
    rows.push_back(first);

    // The second port finds the first port's entry (the table has moved
    // since: only the entry can say where the flow was).
    SuiteCase second = first;
    second.name = name + "SecondPortSameBackend";
    second.prelude = {first.input};
    second.after_prelude = swap_table_to(s, (k + 1) % backends_per_vip);
    second.input = to_service(s, 0, second_port).payload("query").build();
    second.expected = sent_to_backend(s, second.input, k, flow_hash(key));
    second.counted = Counted{s.vip_id, backend_id(s.vip_id, k), false};
    second.conns = {{key, backend_id(s.vip_id, k), std::nullopt},
                    {flow_of(s, second_port), std::nullopt, std::nullopt}};
    rows.push_back(second);

    // An ICMP error about the flow finds the same entry: the quoted answer's
    // client port is left out of the key as the client's own packets' is.
    SuiteCase icmp;
    icmp.name = name + "IcmpErrorFollowsPortlessEntry";
    icmp.setup = setup;
    icmp.prelude = {first.input};
    icmp.after_prelude = swap_table_to(s, (k + 1) % backends_per_vip);
    icmp.input = s.family == 4 ? icmp_from_router(4, icmp_dest_unreachable,
                                                  icmp_code_port_unreachable, 0, answer_quote(s))
                               : icmp_from_router(6, icmp6_dest_unreachable, 4, 0, answer_quote(s));
    icmp.action = XDP_TX;
    icmp.reason = BALLAST_REASON_TX_ICMP_ERROR;
    icmp.expected = sent_to_backend(s, icmp.input, k, flow_hash(key));
    icmp.counted = Counted{s.vip_id, backend_id(s.vip_id, k), std::nullopt};
    icmp.conns = {{key, backend_id(s.vip_id, k), std::nullopt}};
    rows.push_back(icmp);
  }
  return rows;
}

ballast_egress hashed_source_egress() {
  ballast_egress egress = default_egress();
  egress.src4 = Ipv4Addr{{10, 204, 0, 0}}.be32();
  egress.src4_hash_mask = htonl(0x0000ffff);
  const Ipv6Addr prefix{{0xfd, 0x00, 0x02, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
  std::memcpy(egress.src6, prefix.octets.data(), sizeof(egress.src6));
  egress.src6_hash_mask = htonl(0xffffffff);
  return egress;
}

std::vector<SuiteCase> source_prefix_rows() {
  std::vector<SuiteCase> rows;
  const Service services[] = {
      service(4, ipproto_tcp, Mode::gue), service(4, ipproto_tcp, Mode::ipip),
      service(6, ipproto_tcp, Mode::gue), service(6, ipproto_udp, Mode::ipip, true)};
  for (const Service& s : services) {
    SuiteCase row = new_flow_row(s);
    row.name = service_name(s) + "OuterSourceFromHashPrefix";
    row.setup = [](BalancerHarness& lb) { lb.set_egress(0, hashed_source_egress()); };
    const ballast_flow_key flow = flow_of(s);
    row.expected =
        sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow), hashed_source_egress());
    rows.push_back(row);
  }
  return rows;
}

std::function<void(BalancerHarness&)> egress_mtu(std::uint16_t mtu) {
  return [mtu](BalancerHarness& lb) {
    ballast_egress egress = default_egress();
    egress.mtu = mtu;
    lb.set_egress(0, egress);
  };
}

constexpr std::size_t mtu_test_payload = 200;

// @input to tunnelled service @s with the egress MTU one byte short of its
// tunnel: the client is answered "too big" with the MTU that fits.
SuiteCase one_byte_over_mtu_row(const Service& s, const Bytes& input, std::string name) {
  const auto outer_len =
      static_cast<std::uint16_t>(input.size() - eth_header_len + encap_overhead(s));
  SuiteCase too_big;
  too_big.name = std::move(name);
  too_big.setup = egress_mtu(outer_len - 1);
  too_big.tables = {s.vip_id};
  too_big.input = input;
  too_big.action = XDP_TX;
  too_big.reason = BALLAST_REASON_TX_ICMP_TOO_BIG;
  too_big.expected = icmp_too_big_reply(input, outer_len - 1 - encap_overhead(s));
  too_big.check_no_traffic = false;  // whether the VIP counts it: open
  return too_big;
}

std::vector<SuiteCase> mtu_rows() {
  std::vector<SuiteCase> rows;
  const Service services[] = {
      service(4, ipproto_tcp, Mode::ipip),       service(4, ipproto_tcp, Mode::gue),
      service(6, ipproto_tcp, Mode::ipip),       service(6, ipproto_tcp, Mode::gue),
      service(4, ipproto_udp, Mode::ipip, true), service(6, ipproto_udp, Mode::gue, true)};
  const Bytes payload(mtu_test_payload, 'x');
  for (const Service& s : services) {
    const Bytes input = to_service(s, tcp_ack | tcp_psh).payload(payload).build();
    const auto outer_len =
        static_cast<std::uint16_t>(input.size() - eth_header_len + encap_overhead(s));

    // One byte over: the client is told the MTU that fits.
    rows.push_back(
        one_byte_over_mtu_row(s, input, service_name(s) + "OneByteOverMtuAnswersTooBig"));

    // Exactly the MTU: forwarded.
    const ballast_flow_key flow = flow_of(s);
    const std::uint32_t k = table_choice(flow);
    SuiteCase fits;
    fits.name = service_name(s) + "ExactlyAtMtuForwarded";
    fits.setup = egress_mtu(outer_len);
    fits.tables = {s.vip_id};
    fits.input = input;
    fits.action = XDP_TX;
    fits.reason = forward_reason(s.mode);
    fits.expected = sent_to_backend(s, input, k, flow_hash(flow));
    fits.counted = Counted{s.vip_id, backend_id(s.vip_id, k), true};
    rows.push_back(fits);
  }
  // dsr never grows a packet: no MTU check even on a tiny MTU.
  {
    const Service& s = service(4, ipproto_tcp, Mode::dsr);
    SuiteCase row = new_flow_row(s);
    row.name = "Ipv4TcpDsrIgnoresEgressMtu";
    row.setup = egress_mtu(68);
    row.input = to_service(s, tcp_syn).payload(Bytes(mtu_test_payload, 'x')).build();
    row.expected = sent_to_backend(s, row.input, table_choice(flow_of(s)), 0);
    rows.push_back(row);
  }
  return rows;
}

// Multi-buffer frames: BPF_PROG_TEST_RUN hands an xdp.frags program a frame
// longer than a page's linear part (about 3.5 KiB) as a linear part plus
// fragments, as a NIC or veth hands it a jumbo or GRO-sized frame. Each is
// forwarded whole (the output frame compared byte for byte, fragments
// included), counted with its whole length, answered "too big" when its
// tunnel would not fit, and refused when its IP length claims more than
// the whole frame holds.
constexpr std::size_t jumbo_frame = 9000;  // Ethernet included
constexpr std::uint16_t jumbo_mtu = 9216;

std::vector<SuiteCase> multibuffer_rows() {
  std::vector<SuiteCase> rows;
  const Service services[] = {
      service(4, ipproto_tcp, Mode::dsr),        service(6, ipproto_tcp, Mode::dsr),
      service(4, ipproto_tcp, Mode::ipip),       service(4, ipproto_tcp, Mode::gue),
      service(6, ipproto_tcp, Mode::ipip),       service(6, ipproto_tcp, Mode::gue),
      service(4, ipproto_udp, Mode::ipip, true), service(6, ipproto_udp, Mode::gue, true)};
  for (const Service& s : services) {
    const std::size_t headers = to_service(s, tcp_ack | tcp_psh).build().size();
    const Bytes input =
        to_service(s, tcp_ack | tcp_psh).payload(Bytes(jumbo_frame - headers, 'j')).build();
    const ballast_flow_key flow = flow_of(s);
    const std::uint32_t k = table_choice(flow);

    // After its first packet, a jumbo one of an established flow: to the
    // flow's backend, whole.
    SuiteCase row = established_row(s);
    row.name = service_name(s) + "JumboEstablishedForwardedWhole";
    row.setup = egress_mtu(jumbo_mtu);
    row.input = input;
    row.expected = sent_to_backend(s, input, k, flow_hash(flow));
    rows.push_back(row);

    if (s.mode == Mode::dsr) continue;
    // A tunnel one byte over the egress MTU: "too big", quoting the start
    // of the frame (its fragments trimmed away).
    rows.push_back(
        one_byte_over_mtu_row(s, input, service_name(s) + "JumboOneByteOverMtuAnswersTooBig"));
  }
  // An IP length one byte longer than the whole multi-buffer frame.
  for (int family : {4, 6}) {
    const Service& s = service(family, ipproto_tcp, Mode::dsr);
    const std::size_t headers = to_service(s, tcp_ack).build().size();
    const Bytes whole = to_service(s, tcp_ack).payload(Bytes(jumbo_frame - headers, 'j')).build();
    rows.push_back(unchanged(
        family_name(family) + "JumboCutOneByteShortDrops", Bytes(whole.begin(), whole.end() - 1),
        XDP_DROP,
        family == 4 ? BALLAST_REASON_DROP_MALFORMED_IPV4 : BALLAST_REASON_DROP_MALFORMED_IPV6));
  }
  return rows;
}

// Egress 1: a second interface, reached by XDP_REDIRECT through tx_ports.
ballast_egress second_egress() {
  ballast_egress egress{};
  egress.ifindex = 1;  // lo: any existing device makes a valid devmap entry
  std::copy(mac_lb_second.begin(), mac_lb_second.end(), egress.mac);
  egress.mtu = 1500;
  egress.src4 = v4_lb_second.be32();
  std::memcpy(egress.src6, v6_lb_second.octets.data(), sizeof(egress.src6));
  return egress;
}

// Every backend of @s leaves through @egress_id.
void move_backends_to_egress(BalancerHarness& lb, const Service& s, std::uint8_t egress_id) {
  for (std::uint32_t k = 0; k < backends_per_vip; k++) {
    ballast_backend slot = backend_slot(s.backend_family, k, s.vip_id);
    slot.egress = egress_id;
    lb.set_backend(backend_id(s.vip_id, k), slot);
  }
}

std::vector<SuiteCase> egress_rows() {
  std::vector<SuiteCase> rows;
  // BPF_PROG_TEST_RUN without BPF_F_TEST_XDP_LIVE_FRAMES only runs the
  // program: bpf_redirect_map() finds the devmap entry and returns
  // XDP_REDIRECT, which comes back as the run's action with no error; no
  // device transmits anything. The frame is as the program left it.
  for (const Service& s : {service(4, ipproto_tcp, Mode::dsr), service(6, ipproto_udp, Mode::ipip),
                           service(4, ipproto_tcp, Mode::gue, true)}) {
    SuiteCase row = new_flow_row(s);
    row.name = service_name(s) + "ThroughSecondInterfaceRedirects";
    row.setup = [s](BalancerHarness& lb) {
      lb.set_egress(1, second_egress());
      lb.set_tx_port(1, second_egress().ifindex);
      move_backends_to_egress(lb, s, 1);
    };
    row.action = XDP_REDIRECT;
    const ballast_flow_key flow = flow_of(s);
    row.expected =
        sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow), second_egress());
    rows.push_back(row);
  }
  for (const Service& s :
       {service(4, ipproto_tcp, Mode::dsr), service(6, ipproto_tcp, Mode::gue)}) {
    SuiteCase row =
        unchanged(service_name(s) + "BackendOnUnusedEgressDrops", to_service(s, tcp_syn).build(),
                  XDP_DROP, BALLAST_REASON_DROP_NO_EGRESS);
    row.setup = [s](BalancerHarness& lb) { move_backends_to_egress(lb, s, 2); };
    row.tables = {s.vip_id};
    rows.push_back(row);
  }
  // The MTU checked is the backend's egress's, not the receiving one's.
  {
    const Service& s = service(4, ipproto_tcp, Mode::ipip);
    SuiteCase row = new_flow_row(s);
    row.name = "Ipv4TcpIpipChecksBackendsEgressMtuNotIngress";
    row.setup = [s](BalancerHarness& lb) {
      ballast_egress ingress = default_egress();
      ingress.mtu = 68;
      lb.set_egress(0, ingress);
      lb.set_egress(1, second_egress());
      lb.set_tx_port(1, second_egress().ifindex);
      move_backends_to_egress(lb, s, 1);
    };
    row.action = XDP_REDIRECT;
    const ballast_flow_key flow = flow_of(s);
    row.expected =
        sent_to_backend(s, row.input, table_choice(flow), flow_hash(flow), second_egress());
    rows.push_back(row);
  }
  // "Too big" goes back out the interface the packet came in on (XDP_TX,
  // the frame's own MACs swapped), even when its backend is behind another.
  {
    const Service& s = service(6, ipproto_tcp, Mode::gue);
    constexpr std::uint16_t second_mtu = 1280;
    // One byte more than second_mtu holds once encapsulated.
    const std::size_t payload =
        second_mtu - encap_overhead(s) - ipv6_header_len - tcp_header_len + 1;
    SuiteCase row;
    row.name = "Ipv6TcpGueTooBigOnSecondInterfaceAnswersOutTheFirst";
    row.tables = {s.vip_id};
    row.setup = [s](BalancerHarness& lb) {
      ballast_egress second = second_egress();
      second.mtu = second_mtu;
      lb.set_egress(1, second);
      lb.set_tx_port(1, second.ifindex);
      move_backends_to_egress(lb, s, 1);
    };
    row.input = to_service(s, tcp_ack).payload(Bytes(payload, 'x')).build();
    row.action = XDP_TX;
    row.reason = BALLAST_REASON_TX_ICMP_TOO_BIG;
    row.expected = icmp_too_big_reply(row.input, second_mtu - encap_overhead(s));
    row.check_no_traffic = false;
    rows.push_back(row);
  }
  return rows;
}

// --- Malformed and other input --------------------------------------------------

std::vector<SuiteCase> malformed_rows() {
  const Service& v4_tcp = service(4, ipproto_tcp, Mode::dsr);
  const Service& v6_tcp = service(6, ipproto_tcp, Mode::dsr);
  const Service& v4_udp = service(4, ipproto_udp, Mode::dsr);
  const Service& v6_udp = service(6, ipproto_udp, Mode::dsr);
  const std::size_t v4_syn_len = eth_header_len + ipv4_header_len + tcp_header_len;
  const std::size_t v6_syn_len = eth_header_len + ipv6_header_len + tcp_header_len;
  std::vector<SuiteCase> rows = {
      // Ethernet: the kernel refuses frames under 14 bytes before the
      // program runs (bpf_test_init(): EINVAL), so drop_malformed_eth is
      // out of a test's reach; a bare 14-byte header reaches the IP checks.
      [&] {
        SuiteCase row =
            unchanged("EthernetCutTo13BytesRefusedByTestRun",
                      to_service(v4_tcp).truncate(13).build(), XDP_PASS, BALLAST_REASON_COUNT);
        row.error = -EINVAL;
        row.expected.clear();
        return row;
      }(),
      unchanged("EthernetHeaderOnlyIpv4Drops", to_service(v4_tcp).truncate(eth_header_len).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("EthernetHeaderOnlyIpv6Drops", to_service(v6_tcp).truncate(eth_header_len).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6),
      unchanged("Ipv4HeaderCutAt19BytesDrops",
                to_service(v4_tcp).truncate(eth_header_len + ipv4_header_len - 1).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV4),
      // A header whose checksum is wrong changed on the way: a backend's
      // kernel would drop it, so the balancer does (RFC 1812 5.2.2).
      [&] {
        Bytes frame = to_service(v4_tcp).build();
        frame[eth_header_len + 10] ^= 0x5a;
        return unchanged("Ipv4HeaderChecksumWrongDrops", frame, XDP_DROP,
                         BALLAST_REASON_DROP_MALFORMED_IPV4);
      }(),
      [&] {
        const std::array<std::uint8_t, 4> nop_options = {1, 1, 1, 1};
        Bytes frame = to_service(v4_tcp).ip_options(nop_options).build();
        frame[eth_header_len + 22] ^= 0x01;  // an option byte: the checksum covers options
        return unchanged("Ipv4OptionChangedAfterChecksumDrops", frame, XDP_DROP,
                         BALLAST_REASON_DROP_MALFORMED_IPV4);
      }(),
      unchanged("Ipv4FrameEndsAfterIpHeaderDrops",
                to_service(v4_tcp).truncate(eth_header_len + ipv4_header_len).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Ipv6HeaderCutAt39BytesDrops",
                to_service(v6_tcp).truncate(eth_header_len + ipv6_header_len - 1).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV6),
      unchanged("Ipv6FrameEndsAfterIpHeaderDrops",
                to_service(v6_tcp).truncate(eth_header_len + ipv6_header_len).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV6),
      unchanged("Ipv4TcpHeaderCutAt19BytesDrops", to_service(v4_tcp).cut_l4_to(19).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv6TcpHeaderCutAt19BytesDrops", to_service(v6_tcp).cut_l4_to(19).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv4TcpWithNoTcpHeaderDrops", to_service(v4_tcp).cut_l4_to(0).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv4UdpHeaderCutAt7BytesDrops", to_service(v4_udp).cut_l4_to(7).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged("Ipv6UdpHeaderCutAt7BytesDrops", to_service(v6_udp).cut_l4_to(7).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged("Ipv6TcpDataOffset4Drops", to_service(v6_tcp).tcp_doff(4).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv6TcpDataOffsetPastPacketDrops", to_service(v6_tcp).tcp_doff(6).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv4UdpLength7Drops", to_service(v4_udp).payload("q").udp_length(7).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged("Ipv6UdpLengthPastPacketDrops",
                to_service(v6_udp).payload("query").udp_length(udp_header_len + 6).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged("Ipv4Ihl4Drops", to_service(v4_tcp).ip_ihl(4).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Ipv4Ihl15PastFrameDrops", to_service(v4_tcp).ip_ihl(15).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Ipv4EtherTypeWithVersion6Drops", to_service(v4_tcp).ip_version(6).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Ipv6EtherTypeWithVersion4Drops", to_service(v6_tcp).ip_version(4).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6),
      unchanged("Ipv4TotalLengthPastFrameDrops",
                to_service(v4_tcp).ip_total_length(v4_syn_len - eth_header_len + 1).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Ipv6PayloadLengthPastFrameDrops",
                to_service(v6_tcp)
                    .ipv6_payload_length(v6_syn_len - eth_header_len - ipv6_header_len + 1)
                    .build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6),
      // Headers inside the frame but past the end the IP header gives
      // (the rest reads as Ethernet padding): each is cut short.
      unchanged("Ipv4TcpHeaderPastTotalLengthDrops",
                to_service(v4_tcp).ip_total_length(ipv4_header_len + 10).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv6TcpHeaderPastPayloadLengthDrops",
                to_service(v6_tcp).ipv6_payload_length(10).build(), XDP_DROP,
                BALLAST_REASON_DROP_MALFORMED_TCP),
      unchanged("Ipv4UdpHeaderPastTotalLengthDrops",
                to_service(v4_udp).payload("query").ip_total_length(ipv4_header_len + 4).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_UDP),
      unchanged("Ipv6HopByHopPastPayloadLengthInsideFrameDrops",
                from_router()
                    .ipv6(v6_client_one, v6_vip_one)
                    .ipv6_hop_by_hop()
                    .ipv6_ext_len_field(1)
                    .tcp(port_client_one, v6_tcp.port, tcp_syn)
                    .ipv6_payload_length(8)
                    .build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6_EXT),
      unchanged("Ipv4TotalLengthShorterThanHeaderWithOptionsDrops",
                to_service(v4_tcp).ip_options(nop_options).ip_total_length(ipv4_header_len).build(),
                XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4),
      unchanged("Vlan8021QTaggedPasses", to_service(v4_tcp).vlan(100).build(), XDP_PASS,
                BALLAST_REASON_PASS_VLAN),
      unchanged("Vlan8021adTaggedPasses", to_service(v6_tcp).vlan(100, ethertype_qinq).build(),
                XDP_PASS, BALLAST_REASON_PASS_VLAN),
      // A unicast ARP request (a neighbour refreshing its entry) is ours
      // and no IP; a broadcast one is no frame to us (checked first).
      unchanged("ArpPasses",
                PacketBuilder()
                    .eth(mac_router, mac_lb)
                    .arp_request(mac_router, v4_client_one, v4_vip_one)
                    .build(),
                XDP_PASS, BALLAST_REASON_PASS_NOT_IP),
      unchanged("BroadcastArpPassesAsNotOurMac",
                PacketBuilder()
                    .eth(mac_router, mac_broadcast)
                    .arp_request(mac_router, v4_client_one, v4_vip_one)
                    .build(),
                XDP_PASS, BALLAST_REASON_PASS_NOT_OUR_MAC),
      unchanged("Ipv4OtherProtocolToVipPasses",
                from_router().ipv4(v4_client_one, v4_vip_one).payload("raw").build(), XDP_PASS,
                BALLAST_REASON_PASS_NOT_TCP_UDP),
      unchanged("Ipv6OtherProtocolToVipPasses",
                from_router().ipv6(v6_client_one, v6_vip_one).payload("raw").build(), XDP_PASS,
                BALLAST_REASON_PASS_NOT_TCP_UDP),
      unchanged("Ipv6TcpToNonVipPasses",
                from_router()
                    .ipv6(v6_client_one, v6_other_host)
                    .tcp(port_client_one, port_dsr, tcp_syn)
                    .build(),
                XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
      unchanged("Ipv6UdpToVipOnUnservedPortPasses",
                from_router().ipv6(v6_client_one, v6_vip_one).udp(port_client_one, 9).build(),
                XDP_PASS, BALLAST_REASON_PASS_NOT_VIP),
  };
  // Valid edge cases: an empty payload, Ethernet padding after IPv6.
  {
    SuiteCase row = new_flow_row(v4_udp);
    row.name = "Ipv4UdpZeroLengthPayloadForwarded";
    row.input = to_service(v4_udp).build();
    row.expected = sent_to_backend(v4_udp, row.input, table_choice(flow_of(v4_udp)), 0);
    rows.push_back(row);
  }
  {
    const Service& gue = service(6, ipproto_udp, Mode::gue);
    SuiteCase row = new_flow_row(gue);
    row.name = "Ipv6UdpZeroLengthPayloadGueForwarded";
    row.input = to_service(gue).build();
    const ballast_flow_key flow = flow_of(gue);
    row.expected = sent_to_backend(gue, row.input, table_choice(flow), flow_hash(flow));
    rows.push_back(row);
  }
  {
    SuiteCase row = new_flow_row(v6_tcp);
    row.name = "Ipv6TcpSynWithEthernetPaddingForwarded";
    row.input = to_service(v6_tcp).eth_padding(6).build();
    row.expected = sent_to_backend(v6_tcp, row.input, table_choice(flow_of(v6_tcp)), 0);
    rows.push_back(row);
  }
  return rows;
}

// --- The runner -----------------------------------------------------------------

::testing::AssertionResult frames_equal(std::span<const std::uint8_t> expected,
                                        std::span<const std::uint8_t> actual) {
  if (auto mismatch = frame_mismatch(expected, actual))
    return ::testing::AssertionFailure() << *mismatch;
  return ::testing::AssertionSuccess();
}

struct Snapshot {
  std::vector<ballast_reason_counters> reasons;
  std::map<std::uint32_t, ballast_traffic_counters> vips;
  std::map<std::uint32_t, ballast_traffic_counters> backends;
};

std::vector<std::uint32_t> all_vip_ids() {
  std::vector<std::uint32_t> ids;
  for (const Service& s : world()) ids.push_back(s.vip_id);
  ids.push_back(vip_no_src_port);
  ids.push_back(vip_no_src_port_gue);
  return ids;
}

Snapshot snapshot(const BalancerHarness& lb) {
  Snapshot snap;
  for (std::uint32_t r = 0; r < BALLAST_REASON_COUNT; r++)
    snap.reasons.push_back(lb.reason_counters(static_cast<ballast_reason>(r)));
  for (std::uint32_t vip_id : all_vip_ids()) {
    snap.vips[vip_id] = lb.vip_counters(vip_id);
    for (std::uint32_t id : backend_ids(vip_id)) snap.backends[id] = lb.backend_counters(id);
  }
  return snap;
}

void expect_traffic(const ballast_traffic_counters& before, const ballast_traffic_counters& after,
                    std::uint64_t packets, std::uint64_t bytes, std::optional<bool> new_flow,
                    const std::string& what) {
  EXPECT_EQ(after.packets - before.packets, packets) << what << ".packets";
  EXPECT_EQ(after.bytes - before.bytes, bytes) << what << ".bytes";
  if (new_flow) {
    EXPECT_EQ(after.new_flows - before.new_flows, *new_flow ? 1u : 0u) << what << ".new_flows";
  }
}

class PacketSuiteTest : public ::testing::TestWithParam<SuiteCase> {};

TEST_P(PacketSuiteTest, ActionReasonOutputCountersAndConnTable) {
  const SuiteCase& row = GetParam();
  BalancerHarness lb;
  seed_world(lb, row.tables);
  if (row.setup) row.setup(lb);
  for (std::size_t i = 0; i < row.prelude.size(); i++) {
    const RunResult r = lb.run(row.prelude[i]);
    ASSERT_EQ(r.error, 0) << "prelude packet " << i << ": bpf_prog_test_run_opts";
  }
  if (row.after_prelude) row.after_prelude(lb);

  const Snapshot before = snapshot(lb);
  const RunResult result = lb.run(row.input);
  const Snapshot after = snapshot(lb);

  ASSERT_EQ(result.error, row.error) << "bpf_prog_test_run_opts: " << std::strerror(-result.error);
  std::uint64_t counted = 0;
  for (std::uint32_t r = 0; r < BALLAST_REASON_COUNT; r++)
    counted += after.reasons[r].packets - before.reasons[r].packets;
  if (row.error) {
    EXPECT_EQ(counted, 0u) << "reason_stats: the program never ran";
    return;
  }

  EXPECT_STREQ(action_name(result.action), action_name(row.action)) << "action";
  EXPECT_TRUE(frames_equal(row.expected, result.frame)) << "output frame";
  const char* reason = reason_name(row.reason);
  EXPECT_EQ(after.reasons[row.reason].packets - before.reasons[row.reason].packets, 1u)
      << "reason_stats[" << reason << "].packets";
  EXPECT_EQ(after.reasons[row.reason].bytes - before.reasons[row.reason].bytes, row.input.size())
      << "reason_stats[" << reason << "].bytes";
  EXPECT_EQ(counted, 1u) << "reason_stats summed over every reason: one exit, one count";

  if (row.counted) {
    const Counted& c = *row.counted;
    expect_traffic(before.vips.at(c.vip_id), after.vips.at(c.vip_id), 1, row.input.size(),
                   c.new_flow, "vip_stats[" + std::to_string(c.vip_id) + "]");
    expect_traffic(before.backends.at(c.backend_id), after.backends.at(c.backend_id), 1,
                   row.input.size(), c.new_flow,
                   "backend_stats[" + std::to_string(c.backend_id) + "]");
    for (const auto& [id, counters] : after.backends) {
      if (id != c.backend_id) {
        EXPECT_EQ(counters.packets, before.backends.at(id).packets)
            << "backend_stats[" << id << "].packets: only the chosen backend counts";
      }
    }
  } else if (row.check_no_traffic) {
    for (const auto& [id, counters] : after.vips) {
      EXPECT_EQ(counters.packets, before.vips.at(id).packets)
          << "vip_stats[" << id << "].packets: nothing was sent to a backend";
    }
  }

  // Every way the row wrote was seen during the row (1 s of slack).
  const std::uint32_t now_units =
      static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT);
  for (std::size_t i = 0; i < row.conns.size(); i++) {
    const ConnExpect& want = row.conns[i];
    const std::optional<ConnEntry> conn = lb.conn(want.key);
    if (!want.backend_id) {
      EXPECT_FALSE(conn.has_value()) << "conn_table[" << i << "]: no entry";
      continue;
    }
    ASSERT_TRUE(conn.has_value()) << "conn_table[" << i << "]: an entry";
    EXPECT_EQ(conn->backend_id, *want.backend_id) << "conn_table[" << i << "].backend_id";
    EXPECT_LE(now_units - conn->seen, 1000u) << "conn_table[" << i << "].seen: now";
    if (want.flags) {
      EXPECT_EQ(conn->flags, *want.flags) << "conn_table[" << i << "].flags";
    }
  }
}

std::string row_name(const ::testing::TestParamInfo<SuiteCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Forwarding, PacketSuiteTest, ::testing::ValuesIn(forwarding_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(IcmpErrors, PacketSuiteTest, ::testing::ValuesIn(icmp_rows()), row_name);
INSTANTIATE_TEST_SUITE_P(Fragments, PacketSuiteTest, ::testing::ValuesIn(fragment_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(Ipv6ExtensionHeaders, PacketSuiteTest,
                         ::testing::ValuesIn(ext_header_rows()), row_name);
INSTANTIATE_TEST_SUITE_P(NoSrcPort, PacketSuiteTest, ::testing::ValuesIn(no_src_port_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(SourcePrefix, PacketSuiteTest, ::testing::ValuesIn(source_prefix_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(Mtu, PacketSuiteTest, ::testing::ValuesIn(mtu_rows()), row_name);
INSTANTIATE_TEST_SUITE_P(MultiBuffer, PacketSuiteTest, ::testing::ValuesIn(multibuffer_rows()),
                         row_name);
INSTANTIATE_TEST_SUITE_P(Egress, PacketSuiteTest, ::testing::ValuesIn(egress_rows()), row_name);
INSTANTIATE_TEST_SUITE_P(Malformed, PacketSuiteTest, ::testing::ValuesIn(malformed_rows()),
                         row_name);

// --- Across packets -------------------------------------------------------------

// Every fragment of one datagram, in any order, reaches the backend the
// 3-tuple picks, and so does the next datagram of the same client.
TEST(PacketSuiteFragments, AllFragmentsOfADatagramChooseOneBackend) {
  for (const Service& s :
       {service(4, ipproto_udp, Mode::dsr), service(6, ipproto_udp, Mode::dsr)}) {
    const std::string label = service_name(s);
    BalancerHarness lb;
    const std::uint32_t tables[] = {s.vip_id};
    seed_world(lb, tables);
    fragments_vip(s)(lb);
    const std::uint32_t k = table_choice(fragment_key(s.family, s.proto));
    const Bytes in_order[] = {later_fragment(s, true), first_fragment(s), later_fragment(s, false)};
    for (const Bytes& fragment : in_order) {
      const RunResult r = lb.run(fragment);
      ASSERT_EQ(r.error, 0) << label << ": bpf_prog_test_run_opts";
      EXPECT_STREQ(action_name(r.action), "XDP_TX") << label << ": action";
      EXPECT_EQ(dst_mac_of(r.frame), backend_mac(k)) << label << ": every fragment's backend";
    }
    EXPECT_EQ(lb.reason_counters(BALLAST_REASON_TX_FRAGMENT).packets, 3u)
        << label << ": reason_stats[tx_fragment].packets";
    EXPECT_EQ(lb.vip_counters(s.vip_id).new_flows, 0u)
        << label << ": vip_stats.new_flows: fragments are no new flows";
  }
}

}  // namespace
}  // namespace ballast::test
