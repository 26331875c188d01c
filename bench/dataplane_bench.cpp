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
// counters are checked after every run to prove it did.
#include <linux/bpf.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "balancer_fixture.h"
#include "packet_builder.h"
#include "xdp_floor.skel.h"

namespace ballast::test {
namespace {

constexpr std::uint32_t repeats = 1'000'000;
constexpr int rounds = 5;

constexpr std::uint32_t vip_web = 1;
constexpr std::uint32_t backend_ids[] = {10, 11, 12};
constexpr MacAddr backend_macs[] = {mac_backend_one, mac_backend_two, mac_backend_three};
constexpr Ipv4Addr backend_addrs[] = {v4_backend_one, v4_backend_two, v4_backend_three};

struct FloorDeleter {
  void operator()(xdp_floor* skel) const { xdp_floor::destroy(skel); }
};

std::unique_ptr<xdp_floor, FloorDeleter> load_floor() {
  std::unique_ptr<xdp_floor, FloorDeleter> skel(xdp_floor::open_and_load());
  if (!skel) throw std::runtime_error("xdp_floor::open_and_load failed");
  return skel;
}

void seed_web_vip(BalancerHarness& lb) {
  lb.add_vip(vip_key_v4(v4_vip_one, port_http, ipproto_tcp), vip_web);
  for (std::size_t i = 0; i < std::size(backend_ids); i++)
    lb.set_backend(backend_ids[i], backend_slot_v4(backend_addrs[i], backend_macs[i], vip_web));
  lb.install_maglev_table(vip_web, round_robin_table(backend_ids));
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

  // One run makes the established flow's conn_table entry.
  if (lb.run(established_ack).action != XDP_TX ||
      !lb.conn(flow_key_v4(v4_client_one, port_client_one, v4_vip_one, port_http, ipproto_tcp)))
    throw std::runtime_error("seeding the established flow failed");

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
  for (std::size_t i = 0; i < paths.size(); i++)
    std::printf("%-42s %10.0f %10.2f\n", paths[i].name.c_str(), median(samples[i].ns_per_packet),
                median(samples[i].ratio_to_floor));
  return 0;
}

}  // namespace
}  // namespace ballast::test

int main() {
  try {
    return ballast::test::run_bench();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dataplane: %s\n", e.what());
    return 1;
  }
}
