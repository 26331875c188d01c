// dataplane_bench.cpp: ns/packet of Ballast's XDP paths under
// BPF_PROG_TEST_RUN, each as a ratio to a floor program (bench/xdp_floor.bpf.c:
// parse, swap MACs, XDP_TX) measured in the same process.
//
// Absolute times on shared VMs swing by 2x from run to run, so the ratio is
// the number to compare. Each run repeats one frame `repeats` times in the
// kernel, which reports the average per repetition in whole ns; paths take
// turns within a round so drift hits them alike, and the table shows the
// median of the rounds (the ratio is the median of each round's ratio).
//
// Repeating a frame runs the program on its own previous output, so each
// path below says why that output takes the same path again, and its
// counters are checked after every run to prove it did. Paths that rewrite
// more than MACs (the encapsulating modes, ICMP too big) cannot repeat: they
// are measured one frame per call (`calls` test runs of repeat 1, the mean
// of the kernel's per-run times) in a second table, against the floor
// measured the same way, since a single run's timing includes the kernel's
// timer reads that a million repeats share out.
//
// Ballast forwards only frames addressed to its own MAC (egress 0's), and
// its DSR rewrite addresses each frame to the backend's: so that a repeated
// frame stays addressed to the balancer, the backends here carry the
// balancer's MAC. The program does the same work whatever the MAC is.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "balancer_fixture.h"
#include "conn_hash.h"
#include "fd.h"
#include "packet_builder.h"
#include "xdp_floor.skel.h"
#include "xdp_parts.skel.h"

namespace ballast::test {
namespace {

// The full measurement; `--quick` (make test's smoke run) only proves every
// path still runs and counts as it should.
std::uint32_t repeats = 1'000'000;
const char* json_path = nullptr;  // --json FILE: bench/report.py's format
std::uint32_t calls = 20'000;
int rounds = 5;

constexpr std::uint32_t vip_web = 1;
constexpr std::uint32_t backend_ids[] = {10, 11, 12};
// The balancer's own MAC (see the top): a rewritten frame repeats as itself.
constexpr MacAddr backend_macs[] = {mac_lb, mac_lb, mac_lb};
constexpr Ipv4Addr backend_addrs[] = {v4_backend_one, v4_backend_two, v4_backend_three};

struct FloorDeleter {
  void operator()(xdp_floor* skel) const { xdp_floor::destroy(skel); }
};

std::unique_ptr<xdp_floor, FloorDeleter> load_floor() {
  std::unique_ptr<xdp_floor, FloorDeleter> skel(xdp_floor::open_and_load());
  if (!skel) throw std::runtime_error("xdp_floor::open_and_load failed");
  return skel;
}

// A client port of the second-bucket flow (run_bench).
constexpr std::uint16_t port_second_bucket = 40003;

// Fills @flow's first bucket with four confirmed flows seen now, none of
// them @flow (their fingerprints differ from its in one bit each): @flow's
// way then goes to its second bucket, and its lookup reads both.
void fill_first_bucket(BalancerHarness& lb, const ballast_flow_key& flow) {
  const std::uint64_t hash = ballast_conn_hash(&flow);
  const std::uint64_t fp = ballast_conn_fingerprint(hash);
  const auto seen = static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT);
  ballast_conn_bucket bucket{};
  for (int i = 0; i < BALLAST_CONN_WAYS; i++)
    bucket.way[i] = {(fp ^ (std::uint64_t{1} << (16 + i))) | backend_ids[0], seen,
                     BALLAST_CONN_F_CONFIRMED};
  lb.set_conn_bucket(ballast_conn_bucket_a(hash), bucket);
}

void seed_web_vip(BalancerHarness& lb) {
  lb.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), vip_web);
  for (std::size_t i = 0; i < std::size(backend_ids); i++)
    lb.set_backend(backend_ids[i], backend_slot_v4(backend_addrs[i], backend_macs[i], vip_web));
  lb.install_maglev_table(vip_web, round_robin_table(backend_ids));
}

// One VIP per (family, protocol, mode) the bench measures, each with three
// backends of @backend_v6's family.
struct VipSpec {
  std::uint32_t vip_id;
  bool vip_v6;
  std::uint8_t proto;
  std::uint16_t port;
  std::uint32_t flags;
  bool backend_v6;
};

void seed_vip(BalancerHarness& lb, const VipSpec& v) {
  const auto key =
      v.vip_v6 ? vip_key_v6(v6_vip_one, v.port, v.proto) : vip_key_v4(v4_vip_one, v.port, v.proto);
  lb.add_vip(key, v.vip_id, v.flags, (v.flags & BALLAST_VIP_F_ENCAP_GUE) ? port_gue : 0);
  const Ipv6Addr v6[] = {v6_backend_one, v6_backend_two, v6_backend_three};
  std::vector<std::uint32_t> ids;
  for (std::uint32_t i = 0; i < 3; i++) {
    const std::uint32_t id = v.vip_id * 10 + i;
    lb.set_backend(id, v.backend_v6 ? backend_slot_v6(v6[i], backend_macs[i], v.vip_id)
                                    : backend_slot_v4(backend_addrs[i], backend_macs[i], v.vip_id));
    ids.push_back(id);
  }
  lb.install_maglev_table(v.vip_id, round_robin_table(ids));
}

// A client's TCP frame to VIP one (v4 or v6) on @port.
Bytes client_tcp(bool v6, std::uint16_t port, std::uint8_t flags, std::size_t payload = 14) {
  PacketBuilder b;
  b.eth(mac_router, mac_lb);
  if (v6)
    b.ipv6(v6_client_one, v6_vip_one);
  else
    b.ipv4(v4_client_one, v4_vip_one);
  return b.tcp(port_client_one, port, flags).payload(std::string(payload, 'x')).build();
}

// Mean ns of @n test runs of one repetition each over @frame (each call
// starts from @frame again), checked for @action.
double per_call_ns(int prog_fd, const Bytes& frame, std::uint32_t action, const std::string& path) {
  const std::uint32_t n = calls;
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < n; i++) {
    const RunResult r = test_run(prog_fd, frame, 1);
    if (r.error || r.action != action)
      throw std::runtime_error(path + ": error " + std::to_string(r.error) + ", verdict " +
                               std::to_string(r.action) + ", expected " + std::to_string(action));
    total += r.duration_ns;
  }
  return static_cast<double>(total) / n;
}

// The run must have succeeded with @action; returns its ns/packet.
std::uint32_t checked_duration(const RunResult& result, std::uint32_t action,
                               const std::string& path) {
  if (result.error)
    throw std::runtime_error(path + ": bpf_prog_test_run_opts failed, error " +
                             std::to_string(result.error));
  if (result.action != action)
    throw std::runtime_error(path + ": verdict " + std::to_string(result.action) + ", expected " +
                             std::to_string(action));
  return result.duration_ns;
}

// A counter must have moved by exactly @expected during one run.
void expect_delta(std::uint64_t before, std::uint64_t after, std::uint64_t expected,
                  const std::string& what) {
  if (after - before != expected)
    throw std::runtime_error(what + " moved by " + std::to_string(after - before) + ", expected " +
                             std::to_string(expected));
}

struct BenchPath {
  std::string name;
  std::function<std::uint32_t()> measure;  // one run of `repeats`; returns ns/packet
};

struct Samples {
  std::vector<double> ns_per_packet;
  std::vector<double> ratio_to_floor;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Where the time goes: each step of Ballast's path added alone to a base
// that parses like Ballast and swaps MACs (bench/xdp_parts.bpf.c), on maps
// seeded so that every lookup hits. Returns the rows (name, ns, ns over base).
struct PartRow {
  std::string name;
  double ns;
  double over_base;
};

std::vector<PartRow> measure_parts(const Bytes& established_ack) {
  struct PartsDeleter {
    void operator()(xdp_parts* skel) const { xdp_parts::destroy(skel); }
  };
  std::unique_ptr<xdp_parts, PartsDeleter> skel(xdp_parts::open_and_load());
  if (!skel) throw std::runtime_error("xdp_parts::open_and_load failed");
  auto& m = skel->maps;
  auto put = [](bpf_map* map, const void* key, const void* value, const char* what) {
    if (bpf_map__update_elem(map, key, bpf_map__key_size(map), value, bpf_map__value_size(map),
                             BPF_ANY))
      throw std::runtime_error(std::string("xdp_parts: seeding ") + what + " failed");
  };
  constexpr std::uint32_t vip_id = 1, backend_id = 10, egress_id = 0;
  const ballast_vip_key vkey = vip_key_v4(v4_vip_one, port_http, ipproto_tcp);
  const ballast_vip_info vinfo{vip_id, 0, 0, 0};
  put(m.vips, &vkey, &vinfo, "vips");
  const ballast_flow_key flow =
      flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_http, ipproto_tcp);
  // The flow's way in its first bucket, as conn_record writes it.
  const std::uint64_t hash = ballast_conn_hash(&flow);
  const std::uint32_t bucket_index = ballast_conn_bucket_a(hash);
  ballast_conn_bucket bucket{};
  bucket.way[0] = {ballast_conn_fingerprint(hash) | backend_id,
                   static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT),
                   BALLAST_CONN_F_CONFIRMED};
  put(m.conn_table, &bucket_index, &bucket, "conn_table");
  const ballast_backend slot = backend_slot_v4(v4_backend_one, mac_backend_one, vip_id);
  put(m.backends, &backend_id, &slot, "backends");
  ballast_egress eg{};
  eg.ifindex = 1;
  put(m.egress, &egress_id, &eg, "egress");
  ballast::UniqueFd table(bpf_map_create(BPF_MAP_TYPE_ARRAY, "maglev_table", sizeof(std::uint32_t),
                                         sizeof(std::uint32_t), BALLAST_MAGLEV_SIZE, nullptr));
  if (table.get() < 0) throw std::runtime_error("xdp_parts: maglev table create failed");
  for (std::uint32_t i = 0; i < BALLAST_MAGLEV_SIZE; i++)
    if (bpf_map_update_elem(table.get(), &i, &backend_id, BPF_ANY))
      throw std::runtime_error("xdp_parts: maglev table fill failed");
  const int table_fd = table.get();
  put(m.maglev_tables, &vip_id, &table_fd, "maglev_tables");

  struct Part {
    std::string name;
    bpf_program* prog;
  };
  const std::vector<Part> parts = {
      {"base: Ballast's parse + MAC swap", skel->progs.part_base},
      {"+ VIP lookup (hash, 20-byte key)", skel->progs.part_vip_lookup},
      {"+ conn hash (conn_hash.h, IPv4)", skel->progs.part_conn_hash},
      {"+ conn_table lookup (hash, 1 bucket, 4 tags)", skel->progs.part_conn_lookup},
      {"+ backend, vip_by_id, egress (arrays)", skel->progs.part_backend_egress},
      {"+ clock read (bpf_ktime_get_coarse_ns)", skel->progs.part_clock},
      {"+ clock read once per tick (coarse_now_ns)", skel->progs.part_clock_cached},
      {"+ 3 per-CPU counter updates", skel->progs.part_counters},
      {"+ flow hash (jhash, 3 words)", skel->progs.part_flow_hash},
      {"+ Maglev entry (outer + inner array)", skel->progs.part_maglev},
      {"+ conn_table write (lookup, way rewritten)", skel->progs.part_conn_write},
  };
  std::vector<Samples> samples(parts.size());
  for (int round = 0; round < rounds; round++) {
    double base = 0;
    for (std::size_t i = 0; i < parts.size(); i++) {
      const double ns =
          checked_duration(test_run(bpf_program__fd(parts[i].prog), established_ack, repeats),
                           XDP_TX, parts[i].name);
      if (i == 0) base = ns;
      samples[i].ns_per_packet.push_back(ns);
      samples[i].ratio_to_floor.push_back(ns - base);
    }
  }
  std::vector<PartRow> rows;
  for (std::size_t i = 0; i < parts.size(); i++)
    rows.push_back(
        {parts[i].name, median(samples[i].ns_per_packet), median(samples[i].ratio_to_floor)});
  return rows;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// What "Where the time goes" shows on this host, from its own rows: what a
// call into the kernel (the VIP's hash-map lookup) added against the arrays
// the verifier inlines, which the connection table is made of. The price of a call differs between
// hosts with their speculation mitigations, which bench/report.py lists with the machine. Row names
// are the ones measure_parts gives.
std::string parts_finding(const std::vector<PartRow>& parts) {
  auto over = [&](const std::string& prefix) {
    for (const auto& r : parts)
      if (r.name.rfind(prefix, 0) == 0) return r.over_base;
    throw std::logic_error("no part row " + prefix);
  };
  return "Here the VIP's hash-map lookup, a call into the kernel, added " +
         fmt("%.0f", over("+ VIP lookup")) +
         " ns, while three array lookups, which the verifier inlines, added " +
         fmt("%.0f", over("+ backend, vip_by_id, egress")) +
         " ns. The connection table is such an array (bpf/conn_table.h): its lookup, the conn "
         "hash and then the four tags of one 64-byte bucket, added " +
         fmt("%.0f", over("+ conn_table lookup")) + " ns, of which the hash alone " +
         fmt("%.0f", over("+ conn hash")) +
         " ns, and a new flow's write (the lookup, then the "
         "way's three stores) " +
         fmt("%.0f", over("+ conn_table write")) +
         " ns. What a call costs depends on the host's speculation mitigations (listed with the "
         "machine at the top). The changes in docs/dataplane.md (\"Where the time goes\") act on "
         "these costs.";
}

// The three tables in bench/report.py's format, with how they were made.
void write_json(const nlohmann::json& repeat_rows, const nlohmann::json& part_rows,
                const std::string& parts_text, const nlohmann::json& call_rows) {
  const nlohmann::json cols = {"path", "ns/packet", "x floor"};
  nlohmann::json sections = nlohmann::json::array();
  sections.push_back(
      {{"heading", "Per packet, against the floor"},
       {"text",
        "BPF_PROG_TEST_RUN repeats one frame " + std::to_string(repeats) +
            " times in the kernel, which reports the mean per repetition; the paths take turns "
            "within a round and the table shows the median of " +
            std::to_string(rounds) +
            " rounds (the ratio is the median of each round's ratio). The floor "
            "(bench/xdp_floor.bpf.c) parses Ethernet, IPv4 and TCP with the same bounds checks, "
            "swaps the MACs and returns XDP_TX. Each path's reason counter is checked to have "
            "moved by exactly the repetitions, so every row is the path it names. The backends "
            "carry the balancer's own MAC, so that a forwarded frame is again addressed to the "
            "balancer and its repetition takes the same path (Ballast passes frames addressed to "
            "another host). An established flow repeats one packet, so its way in the connection "
            "table (bpf/conn_table.h: 64-byte buckets of four 16-byte ways) stays in cache: the "
            "rows measure the table's instructions, not memory (bench_scaling does). The first "
            "row's flow sits in its first bucket, one cache line read; the second-bucket row's "
            "first bucket is full of other flows, so its lookup compares four tags there and "
            "reads a second line, what a flow placed in its second bucket, or a packet that finds "
            "no entry, costs. Targets (issue #6): established flow <= 1.3x the floor, new flow "
            "<= 2x."},
       {"table", {{"columns", cols}, {"rows", repeat_rows}}}});
  sections.push_back(
      {{"heading", "Where the time goes"},
       {"text",
        "Each step of Ballast's path alone, added to a base that parses like Ballast and swaps "
        "MACs (bench/xdp_parts.bpf.c, on Ballast's own map definitions, every lookup a hit). " +
            parts_text},
       {"table", {{"columns", {"step", "ns/packet", "ns over base"}}, {"rows", part_rows}}}});
  sections.push_back(
      {{"heading", "One frame per call"},
       {"text",
        "The paths that rewrite more than MACs cannot repeat over their own output, so they run " +
            std::to_string(calls) +
            " times with one repetition each (the mean of the kernel's per-run times), against "
            "the floor measured the same way. A single run includes the kernel's timer reads "
            "around it, which is why this floor is higher than the repeated one."},
       {"table", {{"columns", cols}, {"rows", call_rows}}}});
  const nlohmann::json out = {{"bench", "dataplane"},
                              {"title", "Data plane: ns per packet"},
                              {"command", "build/bench_dataplane"},
                              {"order", 10},
                              {"sections", sections}};
  std::ofstream(json_path) << out.dump(2) << "\n";
}

int run_bench() {
  auto floor = load_floor();
  BalancerHarness lb;
  seed_web_vip(lb);

  const Bytes established_ack = PacketBuilder()
                                    .eth(mac_router, mac_lb)
                                    .ipv4(v4_client_one, v4_vip_one)
                                    .tcp(port_client_one, port_http, tcp_ack | tcp_psh)
                                    .payload("GET / HTTP/1.1")
                                    .build();
  // An established flow whose way sits in its second bucket: its first
  // bucket is full of other flows (tags that match none of this bench's).
  const ballast_flow_key second_flow =
      flow_key_v4(v4_client_one, port_second_bucket, v4_vip_one, port_http, ipproto_tcp);
  const Bytes second_bucket_ack = PacketBuilder()
                                      .eth(mac_router, mac_lb)
                                      .ipv4(v4_client_one, v4_vip_one)
                                      .tcp(port_second_bucket, port_http, tcp_ack | tcp_psh)
                                      .payload("GET / HTTP/1.1")
                                      .build();
  fill_first_bucket(lb, second_flow);
  lb.set_conn(second_flow, backend_ids[0]);
  // A different client port: the SYN path rewrites its own conn entry
  // every time and must not touch the established flow's.
  const Bytes syn = PacketBuilder()
                        .eth(mac_router, mac_lb)
                        .ipv4(v4_client_one, v4_vip_one)
                        .tcp(port_client_two, port_http, tcp_syn)
                        .build();
  const Bytes not_vip = PacketBuilder()
                            .eth(mac_router, mac_lb)
                            .ipv4(v4_client_one, v4_other_host)
                            .tcp(port_client_one, port_http, tcp_ack)
                            .build();

  // One run makes the established flow's way (in its first bucket, which
  // is not the other flow's full one).
  const auto established = [&] {
    if (lb.run(established_ack).action != XDP_TX) return std::optional<ConnEntry>();
    return lb.conn(flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_http, ipproto_tcp));
  }();
  if (!established || established->in_second_bucket)
    throw std::runtime_error("seeding the established flow in its first bucket failed");
  const auto second = lb.conn(second_flow);
  if (!second || !second->in_second_bucket)
    throw std::runtime_error("seeding the second-bucket flow failed");

  const int floor_fd = bpf_program__fd(floor->progs.xdp_floor);
  std::vector<BenchPath> paths;
  // The swapped MACs of one run are swapped back by the next: same path.
  paths.push_back({"floor: parse + MAC swap, TCP", [&] {
                     return checked_duration(test_run(floor_fd, established_ack, repeats), XDP_TX,
                                             "floor");
                   }});
  // The DSR rewrite changes only MACs, which the program never reads:
  // every repeat is the same established lookup.
  paths.push_back({"established flow, TCP ACK", [&] {
                     const std::string path = "established flow";
                     const auto tx = lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets;
                     const auto new_flows = lb.vip_counters(vip_web).new_flows;
                     const auto ns =
                         checked_duration(lb.run(established_ack, repeats), XDP_TX, path);
                     expect_delta(tx, lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets,
                                  repeats, path + ": reason_stats[tx_forwarded].packets");
                     expect_delta(new_flows, lb.vip_counters(vip_web).new_flows, 0,
                                  path + ": vip_stats.new_flows");
                     return ns;
                   }});
  // The same as the first, its flow in the second bucket.
  paths.push_back({"established flow, way in its second bucket", [&] {
                     const std::string path = "established flow, second bucket";
                     const auto tx = lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets;
                     const auto new_flows = lb.vip_counters(vip_web).new_flows;
                     const auto ns =
                         checked_duration(lb.run(second_bucket_ack, repeats), XDP_TX, path);
                     expect_delta(tx, lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets,
                                  repeats, path + ": reason_stats[tx_forwarded].packets");
                     expect_delta(new_flows, lb.vip_counters(vip_web).new_flows, 0,
                                  path + ": vip_stats.new_flows");
                     return ns;
                   }});
  // A new flow's first packet would need the conn entry removed before
  // every repeat; a SYN always consults Maglev and writes conn_table, so
  // it is the new-flow path and repeats as such.
  paths.push_back({"new flow, TCP SYN (Maglev + conn write)", [&] {
                     const std::string path = "new flow (SYN)";
                     const auto tx = lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets;
                     const auto new_flows = lb.vip_counters(vip_web).new_flows;
                     const auto ns = checked_duration(lb.run(syn, repeats), XDP_TX, path);
                     expect_delta(tx, lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets,
                                  repeats, path + ": reason_stats[tx_forwarded].packets");
                     expect_delta(new_flows, lb.vip_counters(vip_web).new_flows, repeats,
                                  path + ": vip_stats.new_flows");
                     return ns;
                   }});
  // Passed frames are not modified at all.
  paths.push_back({"non-VIP pass, TCP to another host", [&] {
                     const std::string path = "non-VIP pass";
                     const auto passed = lb.reason_counters(BALLAST_REASON_PASS_NOT_VIP).packets;
                     const auto ns = checked_duration(lb.run(not_vip, repeats), XDP_PASS, path);
                     expect_delta(passed, lb.reason_counters(BALLAST_REASON_PASS_NOT_VIP).packets,
                                  repeats, path + ": reason_stats[pass_not_vip].packets");
                     return ns;
                   }});

  // More paths that repeat as themselves: the reason counter proves it.
  constexpr std::uint32_t vip_v6_dsr = 2, vip_v4_udp = 3;
  seed_vip(lb, {vip_v6_dsr, true, ipproto_tcp, port_http, 0, true});
  seed_vip(lb, {vip_v4_udp, false, ipproto_udp, port_dns, 0, false});
  const Bytes v6_ack = client_tcp(true, port_http, tcp_ack | tcp_psh);
  const Bytes v6_syn = PacketBuilder()
                           .eth(mac_router, mac_lb)
                           .ipv6(v6_client_one, v6_vip_one)
                           .tcp(port_client_two, port_http, tcp_syn)
                           .build();
  const Bytes udp = PacketBuilder()
                        .eth(mac_router, mac_lb)
                        .ipv4(v4_client_one, v4_vip_one)
                        .udp(port_client_one, port_dns)
                        .payload("query")
                        .build();
  // The backend's answer (VIP -> client) as a router quotes it.
  const Bytes answer = PacketBuilder()
                           .eth(mac_lb, mac_router)
                           .ipv4(v4_vip_one, v4_client_one)
                           .tcp(port_http, port_client_one, tcp_ack)
                           .build();
  const Bytes icmp_error = PacketBuilder()
                               .eth(mac_router, mac_lb)
                               .ipv4(v4_router, v4_vip_one)
                               .icmp_error(icmp_dest_unreachable, icmp_code_frag_needed, 1400,
                                           std::span(answer).subspan(14, 28))
                               .build();
  // A TCP header cut to 10 bytes inside a well-formed IPv4 packet.
  const Bytes truncated_tcp = PacketBuilder()
                                  .eth(mac_router, mac_lb)
                                  .ipv4(v4_client_one, v4_vip_one)
                                  .tcp(port_client_one, port_http, tcp_ack)
                                  .cut_l4_to(10)
                                  .build();
  for (const Bytes* f : {&v6_ack, &udp})
    if (lb.run(*f).action != XDP_TX) throw std::runtime_error("seeding a flow failed");
  auto repeated = [&](std::string name, const Bytes& frame, std::uint32_t action,
                      ballast_reason reason) {
    paths.push_back({name, [&lb, &frame, action, reason, n = name] {
                       const auto before = lb.reason_counters(reason).packets;
                       const auto ns = checked_duration(lb.run(frame, repeats), action, n);
                       expect_delta(before, lb.reason_counters(reason).packets, repeats,
                                    n + ": reason_stats[" + reason_name(reason) + "]");
                       return ns;
                     }});
  };
  repeated("IPv6 established flow, TCP ACK", v6_ack, XDP_TX, BALLAST_REASON_TX_FORWARDED);
  repeated("IPv6 new flow, TCP SYN", v6_syn, XDP_TX, BALLAST_REASON_TX_FORWARDED);
  repeated("UDP established flow", udp, XDP_TX, BALLAST_REASON_TX_FORWARDED);
  repeated("ICMP frag-needed to the flow's backend", icmp_error, XDP_TX,
           BALLAST_REASON_TX_ICMP_ERROR);
  repeated("malformed: TCP header cut short", truncated_tcp, XDP_DROP,
           BALLAST_REASON_DROP_MALFORMED_TCP);

  // paths[0] is the floor: each round's ratios are to that round's floor.
  std::vector<Samples> samples(paths.size());
  for (int round = 0; round < rounds; round++) {
    const double floor_ns = paths.front().measure();
    if (floor_ns <= 0) throw std::runtime_error("floor: the kernel reported 0 ns/packet");
    samples.front().ns_per_packet.push_back(floor_ns);
    samples.front().ratio_to_floor.push_back(1.0);
    for (std::size_t i = 1; i < paths.size(); i++) {
      const double ns = paths[i].measure();
      samples[i].ns_per_packet.push_back(ns);
      samples[i].ratio_to_floor.push_back(ns / floor_ns);
    }
  }

  std::printf(
      "Ballast XDP paths, BPF_PROG_TEST_RUN, %u repeats per run, median of %d alternating runs\n\n",
      repeats, rounds);
  std::printf("%-42s %10s %10s\n", "path", "ns/packet", "x floor");
  nlohmann::json repeat_rows = nlohmann::json::array();
  for (std::size_t i = 0; i < paths.size(); i++) {
    std::printf("%-42s %10.0f %10.2f\n", paths[i].name.c_str(), median(samples[i].ns_per_packet),
                median(samples[i].ratio_to_floor));
    repeat_rows.push_back({paths[i].name, fmt("%.0f", median(samples[i].ns_per_packet)),
                           fmt("%.2f", median(samples[i].ratio_to_floor))});
  }

  const auto part_rows = measure_parts(established_ack);
  std::printf("\nWhere the time goes: each step alone on a base that parses like Ballast\n\n");
  std::printf("%-46s %10s %10s\n", "step", "ns/packet", "ns over base");
  nlohmann::json part_json = nlohmann::json::array();
  for (const auto& r : part_rows) {
    std::printf("%-46s %10.0f %10.0f\n", r.name.c_str(), r.ns, r.over_base);
    part_json.push_back({r.name, fmt("%.0f", r.ns), fmt("%+.0f", r.over_base)});
  }

  // One frame per call: the paths that rewrite more than MACs.
  struct CallPath {
    std::string name;
    Bytes frame;
    std::uint32_t action;
    ballast_reason reason;
  };
  constexpr std::uint32_t vip_ipip4 = 4, vip_ipip6 = 5, vip_gue4 = 6, vip_gue6 = 7, vip_ipip46 = 8,
                          vip_mtu = 9;
  constexpr std::uint16_t port_ipip = 8001, port_gue4 = 8002, port_ipip46 = 8003, port_mtu = 8004;
  seed_vip(lb, {vip_ipip4, false, ipproto_tcp, port_ipip, BALLAST_VIP_F_ENCAP_IPIP, false});
  seed_vip(lb, {vip_ipip6, true, ipproto_tcp, port_ipip, BALLAST_VIP_F_ENCAP_IPIP, true});
  seed_vip(lb, {vip_gue4, false, ipproto_tcp, port_gue4, BALLAST_VIP_F_ENCAP_GUE, false});
  seed_vip(lb, {vip_gue6, true, ipproto_tcp, port_gue4, BALLAST_VIP_F_ENCAP_GUE, true});
  seed_vip(lb, {vip_ipip46, false, ipproto_tcp, port_ipip46, BALLAST_VIP_F_ENCAP_IPIP, true});
  seed_vip(lb, {vip_mtu, false, ipproto_tcp, port_mtu, BALLAST_VIP_F_ENCAP_IPIP, false});
  std::vector<CallPath> call_paths = {
      {"floor: parse + MAC swap, TCP", established_ack, XDP_TX, BALLAST_REASON_COUNT},
      {"dsr established, TCP (as above, per call)", established_ack, XDP_TX,
       BALLAST_REASON_TX_FORWARDED},
      {"ipip IPv4-in-IPv4 established", client_tcp(false, port_ipip, tcp_ack), XDP_TX,
       BALLAST_REASON_TX_ENCAP_IPIP},
      {"ipip IPv6-in-IPv6 established", client_tcp(true, port_ipip, tcp_ack), XDP_TX,
       BALLAST_REASON_TX_ENCAP_IPIP},
      {"ipip IPv4-in-IPv6 established", client_tcp(false, port_ipip46, tcp_ack), XDP_TX,
       BALLAST_REASON_TX_ENCAP_IPIP},
      {"gue over IPv4 established", client_tcp(false, port_gue4, tcp_ack), XDP_TX,
       BALLAST_REASON_TX_ENCAP_GUE},
      {"gue over IPv6 established", client_tcp(true, port_gue4, tcp_ack), XDP_TX,
       BALLAST_REASON_TX_ENCAP_GUE},
      {"ipip over the MTU: ICMP too big reply", client_tcp(false, port_mtu, tcp_ack, 1460), XDP_TX,
       BALLAST_REASON_TX_ICMP_TOO_BIG},
  };
  // A separate egress for the MTU VIP's backends: MTU 1400, so a 1500-byte
  // packet + 20 does not fit.
  ballast_egress small = lb.egress(0);
  small.mtu = 1400;
  lb.set_egress(1, small);
  for (std::uint32_t i = 0; i < 3; i++) {
    ballast_backend slot = lb.backend(vip_mtu * 10 + i);
    slot.egress = 1;
    lb.set_backend(vip_mtu * 10 + i, slot);
  }
  for (std::size_t i = 2; i + 1 < call_paths.size(); i++)  // establish the flows
    if (lb.run(call_paths[i].frame).action != XDP_TX)
      throw std::runtime_error(call_paths[i].name + ": seeding the flow failed");

  const int lb_fd = lb.program_fd();
  std::vector<Samples> call_samples(call_paths.size());
  for (int round = 0; round < rounds; round++) {
    const double floor_ns = per_call_ns(floor_fd, call_paths[0].frame, XDP_TX, call_paths[0].name);
    call_samples[0].ns_per_packet.push_back(floor_ns);
    call_samples[0].ratio_to_floor.push_back(1.0);
    for (std::size_t i = 1; i < call_paths.size(); i++) {
      const auto& c = call_paths[i];
      const auto before = lb.reason_counters(c.reason).packets;
      const double ns = per_call_ns(lb_fd, c.frame, c.action, c.name);
      expect_delta(before, lb.reason_counters(c.reason).packets, calls,
                   c.name + ": reason_stats[" + reason_name(c.reason) + "]");
      call_samples[i].ns_per_packet.push_back(ns);
      call_samples[i].ratio_to_floor.push_back(ns / floor_ns);
    }
  }
  std::printf(
      "\nOne frame per call (paths that rewrite more than MACs), %u calls of 1 run, "
      "median of %d alternating rounds\n\n",
      calls, rounds);
  std::printf("%-42s %10s %10s\n", "path", "ns/packet", "x floor");
  nlohmann::json call_rows = nlohmann::json::array();
  for (std::size_t i = 0; i < call_paths.size(); i++) {
    std::printf("%-42s %10.0f %10.2f\n", call_paths[i].name.c_str(),
                median(call_samples[i].ns_per_packet), median(call_samples[i].ratio_to_floor));
    call_rows.push_back({call_paths[i].name, fmt("%.0f", median(call_samples[i].ns_per_packet)),
                         fmt("%.2f", median(call_samples[i].ratio_to_floor))});
  }
  if (json_path) write_json(repeat_rows, part_json, parts_finding(part_rows), call_rows);
  return 0;
}

}  // namespace
}  // namespace ballast::test

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--quick") {
      ballast::test::repeats = 10'000;
      ballast::test::calls = 200;
      ballast::test::rounds = 1;
    } else if (a == "--json" && i + 1 < argc) {
      ballast::test::json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_dataplane [--quick] [--json FILE]\n");
      return 2;
    }
  }
  try {
    return ballast::test::run_bench();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dataplane: %s\n", e.what());
    return 1;
  }
}
