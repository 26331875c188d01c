// scaling_bench.cpp: how Ballast's ns/packet grows with the number of VIPs,
// backends per VIP and flows in the connection table (issue #6).
//
// A repeated BPF_PROG_TEST_RUN frame is the same flow every time, so every
// map entry it touches stays in cache and no table size would show. Here
// each repetition is another flow: bench/xdp_spread.bpf.c rewrites the
// client address and port and the VIP address from a counter, then
// tail-calls the program under test. The floor program (bench/xdp_floor)
// behind the same wrapper is measured alternately in the same round, so the
// ratio is Ballast's cost over the floor's with the wrapper's share in both.
//
// Every run checks what it measured: Ballast's tx_forwarded count moved by
// exactly the repetitions, and (where the table is seeded) no packet was a
// new flow, or the fraction that was is reported; in a full table, every
// new flow went where the replacement rule sends it (conn_stats).
//
// The connection table is seeded through its memory (the array map is
// BPF_F_MMAPABLE), each flow's way written where conn_record would put it
// in a table that held only the flows seeded before it: a million flows in
// a fraction of a second, where a bpf(2) call per bucket would take longer
// than the measurement.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "balancer_fixture.h"
#include "conn_hash.h"
#include "fd.h"
#include "packet_builder.h"
#include "xdp_floor.skel.h"
#include "xdp_spread.skel.h"

namespace ballast::test {
namespace {

std::uint32_t repeats = 1'000'000;
int rounds = 5;
bool quick = false;

// The wrapper's flow numbering (xdp_spread.bpf.c).
constexpr std::uint32_t ports_per_client = 50'000;
constexpr std::uint32_t first_port = 10'000;
constexpr std::uint32_t vip_base = 0x0ac80000;     // 10.200.0.0
constexpr std::uint32_t client_base = 0x0ac90000;  // 10.201.0.0

Ipv4Addr v4_of(std::uint32_t host_order) {
  return Ipv4Addr{
      {static_cast<std::uint8_t>(host_order >> 24), static_cast<std::uint8_t>(host_order >> 16),
       static_cast<std::uint8_t>(host_order >> 8), static_cast<std::uint8_t>(host_order)}};
}

// The connection table's memory: BALLAST_CONN_BUCKETS buckets of one cache
// line, BALLAST_CONN_WAYS ways each.
constexpr std::size_t table_bytes = std::size_t{BALLAST_CONN_BUCKETS} * sizeof(ballast_conn_bucket);
static_assert(sizeof(ballast_conn_bucket) == 64 && sizeof(ballast_conn_way) == 16);

// What the connection table holds before the measured runs.
enum class Table {
  seeded,            // the scenario's flows, established (confirmed, seen now)
  full_live,         // every way a confirmed flow seen now, none of the scenario's
  full_unconfirmed,  // every way an unconfirmed flow seen now, none of the scenario's
};

struct Scenario {
  std::uint32_t vips;
  std::uint32_t backends_per_vip;
  std::uint32_t flows;
  Table table;
};

struct Result {
  double ballast_ns;
  double floor_ns;
  double ratio;
  double new_flow_share;  // of Ballast's packets, 0..1
  std::uint64_t tracked;  // ways in use after the runs
  double second_share;    // of the seeded flows: in their second bucket, 0..1
  double unplaced_share;  // of the seeded flows: both buckets full, 0..1
};

// A BalancerHarness's connection table, mapped into this process.
class ConnTableView {
 public:
  explicit ConnTableView(int map_fd) {
    void* p = mmap(nullptr, table_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
    if (p == MAP_FAILED)
      throw std::runtime_error(std::string("mmap(conn_table): ") + std::strerror(errno));
    buckets_ = static_cast<ballast_conn_bucket*>(p);
  }
  ~ConnTableView() { munmap(buckets_, table_bytes); }
  ConnTableView(const ConnTableView&) = delete;
  ConnTableView& operator=(const ConnTableView&) = delete;

  enum class Placed { first, second, none };

  // Writes @flow's way as conn_record does for a flow it has not seen
  // (conn_table.h, conn_place): the first bucket while it has two empty
  // ways or more, else the one with more empty ways (the first on a tie).
  Placed place(const ballast_flow_key& flow, std::uint32_t backend_id, std::uint32_t seen,
               std::uint32_t flags) {
    const std::uint64_t hash = ballast_conn_hash(&flow);
    const std::uint64_t tag = ballast_conn_fingerprint(hash) | backend_id;
    ballast_conn_bucket& a = buckets_[ballast_conn_bucket_a(hash)];
    ballast_conn_bucket& b = buckets_[ballast_conn_bucket_b(hash)];
    auto empty = [](ballast_conn_bucket& bucket, ballast_conn_way** first) {
      int n = 0;
      *first = nullptr;
      for (auto& way : bucket.way)
        if (way.tag == 0 && n++ == 0) *first = &way;
      return n;
    };
    ballast_conn_way *first_a, *first_b;
    const int free_a = empty(a, &first_a);
    const int free_b = empty(b, &first_b);
    ballast_conn_way* way = free_a >= 2 || (free_a && free_a >= free_b) ? first_a : first_b;
    if (!way) return Placed::none;
    *way = ballast_conn_way{tag, seen, flags};
    return way == first_a ? Placed::first : Placed::second;
  }

  // Fills every empty way with a flow of no scenario: a fingerprint made
  // from the way's position (a real flow's is 48 hashed bits), @flags.
  void fill(std::uint32_t backend_id, std::uint32_t seen, std::uint32_t flags) {
    for (std::uint32_t b = 0; b < BALLAST_CONN_BUCKETS; b++)
      for (std::uint32_t w = 0; w < BALLAST_CONN_WAYS; w++)
        if (buckets_[b].way[w].tag == 0)
          buckets_[b].way[w] = ballast_conn_way{
              (std::uint64_t{b} * BALLAST_CONN_WAYS + w + 1) << 16 | backend_id, seen, flags};
  }

  std::uint64_t ways_used() const {
    std::uint64_t n = 0;
    for (std::uint32_t b = 0; b < BALLAST_CONN_BUCKETS; b++)
      for (const auto& way : buckets_[b].way) n += way.tag != 0;
    return n;
  }

 private:
  ballast_conn_bucket* buckets_ = nullptr;
};

struct SpreadDeleter {
  void operator()(xdp_spread* s) const { xdp_spread::destroy(s); }
};
struct FloorDeleter {
  void operator()(xdp_floor* s) const { xdp_floor::destroy(s); }
};

// A wrapper whose slot 0 is @target_fd, cycling through @s's flows.
std::unique_ptr<xdp_spread, SpreadDeleter> spread_to(int target_fd, const Scenario& s) {
  std::unique_ptr<xdp_spread, SpreadDeleter> w(xdp_spread::open_and_load());
  if (!w) throw std::runtime_error("xdp_spread::open_and_load failed");
  const std::uint32_t zero = 0;
  struct {
    std::uint32_t flows, vips, vip_base, client_base;
    MacAddr dst_mac;  // the balancer's (xdp_spread.bpf.c)
    std::uint8_t pad[2];
  } cfg{s.flows, s.vips, vip_base, client_base, mac_lb, {}};
  static_assert(sizeof(cfg) == 24);
  if (bpf_map_update_elem(bpf_map__fd(w->maps.spread_config), &zero, &cfg, BPF_ANY) ||
      bpf_map_update_elem(bpf_map__fd(w->maps.spread_target), &zero, &target_fd, BPF_ANY))
    throw std::runtime_error("xdp_spread: seeding its maps failed");
  return w;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Result measure(const Scenario& s, int floor_fd) {
  BalancerHarness lb;
  // VIP v: 10.200.0.0 + v, port 80/tcp, id v + 1; its backends are slots
  // (v * B) .. (v * B + B - 1), each with a MAC of its own.
  for (std::uint32_t v = 0; v < s.vips; v++) {
    const std::uint32_t id = v + 1;
    lb.add_vip(vip_key_v4(v4_of(vip_base + v), port_http, ipproto_tcp), id);
    std::vector<std::uint32_t> ids;
    for (std::uint32_t b = 0; b < s.backends_per_vip; b++) {
      const std::uint32_t slot = v * s.backends_per_vip + b;
      const MacAddr mac{{0x02, 0xbe, static_cast<std::uint8_t>(slot >> 16),
                         static_cast<std::uint8_t>(slot >> 8), static_cast<std::uint8_t>(slot), 1}};
      lb.set_backend(slot, backend_slot_v4(v4_of(0x0aca0000 + slot), mac, id));
      ids.push_back(slot);
    }
    // Tables cost 0.5 MiB each: only where new flows need one.
    if (s.table != Table::seeded || s.vips == 1)
      lb.install_maglev_table(id, round_robin_table(ids));
  }
  ConnTableView table(lb.map_fd("conn_table"));
  const auto now = static_cast<std::uint32_t>(coarse_now_ns() >> BALLAST_CONN_SEEN_SHIFT);
  // Seeded flows that found both their buckets full of others: left
  // unrecorded, as the program leaves them (every way taken is a confirmed
  // flow seen now), so each of their packets is a new flow.
  std::uint32_t in_second = 0, unplaced = 0;
  if (s.table == Table::seeded) {
    for (std::uint32_t f = 0; f < s.flows; f++) {
      const std::uint32_t v = f % s.vips;
      const ballast_flow_key flow =
          flow_key_v4(v4_of(client_base + f / ports_per_client),
                      static_cast<std::uint16_t>(first_port + f % ports_per_client),
                      v4_of(vip_base + v), port_http, ipproto_tcp);
      const std::uint32_t backend = v * s.backends_per_vip + (f / s.vips) % s.backends_per_vip;
      switch (table.place(flow, backend, now, BALLAST_CONN_F_CONFIRMED)) {
        case ConnTableView::Placed::first:
          break;
        case ConnTableView::Placed::second:
          in_second++;
          break;
        case ConnTableView::Placed::none:
          unplaced++;
          break;
      }
    }
  } else if (s.table == Table::full_live) {
    table.fill(0, now, BALLAST_CONN_F_CONFIRMED);
  } else if (s.table == Table::full_unconfirmed) {
    table.fill(0, now, 0);
  }

  const Bytes frame = PacketBuilder()
                          .eth(mac_router, mac_lb)
                          .ipv4(v4_of(client_base), v4_of(vip_base))
                          .tcp(first_port, port_http, tcp_ack | tcp_psh)
                          .payload("GET / HTTP/1.1")
                          .build();
  auto to_ballast = spread_to(lb.program_fd(), s);
  auto to_floor = spread_to(floor_fd, s);
  const int ballast_fd = bpf_program__fd(to_ballast->progs.xdp_spread);
  const int floor_wrapped_fd = bpf_program__fd(to_floor->progs.xdp_spread);

  // One pass over every seeded flow first, so they are in cache as far as
  // they fit. In a full table every flow is new, and goes where the
  // replacement rule sends it (bpf/conn_table.h): one run of new flows
  // first, as every other row has one (the first run after loading costs
  // more than the rest).
  const bool seeded = s.table == Table::seeded;
  const std::uint32_t warm_up = seeded ? s.flows : repeats;
  for (std::uint32_t done = 0; done < warm_up; done += repeats)
    if (test_run(ballast_fd, frame, std::min(repeats, warm_up - done)).action != XDP_TX)
      throw std::runtime_error("warm-up pass: not XDP_TX");

  std::vector<double> b_ns, f_ns, ratio, fresh;
  for (int r = 0; r < rounds; r++) {
    const auto tx0 = lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets;
    const ballast_conn_counters conn0 = lb.conn_counters();
    std::uint64_t new0 = 0;
    for (std::uint32_t v = 1; v <= std::min<std::uint32_t>(s.vips, 16); v++)
      new0 += lb.vip_counters(v).new_flows;
    const RunResult fr = test_run(floor_wrapped_fd, frame, repeats);
    const RunResult br = test_run(ballast_fd, frame, repeats);
    if (fr.error || fr.action != XDP_TX || br.error || br.action != XDP_TX)
      throw std::runtime_error("verdict not XDP_TX (floor " + std::to_string(fr.action) +
                               ", Ballast " + std::to_string(br.action) + ")");
    const auto tx = lb.reason_counters(BALLAST_REASON_TX_FORWARDED).packets - tx0;
    if (tx != repeats)
      throw std::runtime_error("tx_forwarded moved by " + std::to_string(tx) + ", expected " +
                               std::to_string(repeats));
    std::uint64_t new1 = 0;
    for (std::uint32_t v = 1; v <= std::min<std::uint32_t>(s.vips, 16); v++)
      new1 += lb.vip_counters(v).new_flows;
    // Seeded: no packet took a way (each flow found its own, or none it
    // may take), and the new flows are the unplaced ones, unrecorded.
    if (seeded) {
      const ballast_conn_counters conn1 = lb.conn_counters();
      const std::uint64_t unrecorded = conn1.unrecorded - conn0.unrecorded;
      if (conn1.recorded != conn0.recorded ||
          conn1.replaced_embryonic != conn0.replaced_embryonic ||
          conn1.replaced_idle != conn0.replaced_idle || (unplaced == 0 && unrecorded != 0) ||
          (s.vips <= 16 && unrecorded != new1 - new0))
        throw std::runtime_error(
            "seeded flows: " + std::to_string(new1 - new0) + " new flows, conn_stats recorded " +
            std::to_string(conn1.recorded - conn0.recorded) + ", replaced_embryonic " +
            std::to_string(conn1.replaced_embryonic - conn0.replaced_embryonic) +
            ", replaced_idle " + std::to_string(conn1.replaced_idle - conn0.replaced_idle) +
            ", unrecorded " + std::to_string(unrecorded) + " (" + std::to_string(unplaced) +
            " flows unplaced)");
    }
    // A full table: each packet a flow never seen, none of them recorded in
    // an empty way, and each where the replacement rule sends it.
    if (s.table == Table::full_live || s.table == Table::full_unconfirmed) {
      const ballast_conn_counters conn1 = lb.conn_counters();
      const std::uint64_t want_unrecorded = s.table == Table::full_live ? repeats : 0;
      const std::uint64_t want_replaced = s.table == Table::full_unconfirmed ? repeats : 0;
      if (new1 - new0 != repeats || conn1.recorded != conn0.recorded ||
          conn1.replaced_idle != conn0.replaced_idle ||
          conn1.unrecorded - conn0.unrecorded != want_unrecorded ||
          conn1.replaced_embryonic - conn0.replaced_embryonic != want_replaced)
        throw std::runtime_error(
            "full table: of " + std::to_string(repeats) + " packets, " +
            std::to_string(new1 - new0) + " new flows, conn_stats recorded " +
            std::to_string(conn1.recorded - conn0.recorded) + ", replaced_embryonic " +
            std::to_string(conn1.replaced_embryonic - conn0.replaced_embryonic) +
            ", replaced_idle " + std::to_string(conn1.replaced_idle - conn0.replaced_idle) +
            ", unrecorded " + std::to_string(conn1.unrecorded - conn0.unrecorded));
    }
    b_ns.push_back(br.duration_ns);
    f_ns.push_back(fr.duration_ns);
    ratio.push_back(static_cast<double>(br.duration_ns) /
                    std::max<std::uint32_t>(fr.duration_ns, 1));
    // Counted over the first 16 VIPs only (reading 10,000 per-CPU
    // counters would take longer than the run); the sweeps that report
    // it have one VIP.
    fresh.push_back(static_cast<double>(new1 - new0) / repeats);
  }
  if (seeded && unplaced == 0 && median(fresh) > 0)
    throw std::runtime_error("seeded flows were treated as new: " + std::to_string(median(fresh)));
  const double seeded_flows = seeded && s.flows ? s.flows : 1;
  return {median(b_ns),           median(f_ns),      median(ratio),
          median(fresh),          table.ways_used(), in_second / seeded_flows,
          unplaced / seeded_flows};
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

struct Sweep {
  std::string heading, text, xlabel, column, plot_file;
  std::vector<std::pair<std::uint32_t, Scenario>> points;
  bool fill;  // the connection-table fill sweep: more columns
};

// A scenario's row label.
std::string label_of(std::uint32_t x, const Scenario& s) {
  switch (s.table) {
    case Table::seeded:
      return std::to_string(x);
    case Table::full_live:
      return "new, table full of live flows (unrecorded)";
    case Table::full_unconfirmed:
      return "new, table full of unconfirmed flows (replaces one)";
  }
  return "";
}

int run(const char* json_path) {
  // On one CPU: the wrapper numbers flows per CPU (xdp_spread.bpf.c), and a
  // test run that moved to another CPU would send flows again that another
  // run already sent, which the full-table rows must not see.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  if (sched_setaffinity(0, sizeof(one), &one))
    throw std::runtime_error(std::string("sched_setaffinity: ") + std::strerror(errno));

  std::unique_ptr<xdp_floor, FloorDeleter> floor(xdp_floor::open_and_load());
  if (!floor) throw std::runtime_error("xdp_floor::open_and_load failed");
  const int floor_fd = bpf_program__fd(floor->progs.xdp_floor);

  const std::uint32_t ways = BALLAST_CONN_TABLE_SIZE;
  std::vector<Sweep> sweeps = {
      {"Number of VIPs",
       "Established TCP flows (10,000 of them, seeded in the connection table) spread over N VIPs, "
       "two backends each; every packet is another flow and, in turn, another VIP.",
       "VIPs",
       "VIPs",
       "scaling_vips.png",
       {},
       false},
      {"Backends per VIP",
       "One VIP with N backends; 10,000 established flows spread over them, every packet another "
       "flow and so another backend slot and counter.",
       "backends per VIP",
       "backends",
       "scaling_backends.png",
       {},
       false},
      {"Connection-table fill",
       "One VIP with 10 backends and N established flows seeded in the connection table, every "
       "packet another flow. The table (bpf/conn_table.h) is an array of " +
           fmt("%.0f", BALLAST_CONN_BUCKETS) + " buckets of one 64-byte cache line, each of " +
           std::to_string(BALLAST_CONN_WAYS) +
           " 16-byte ways (fingerprint and backend id, last "
           "seen, flags; no key): " +
           fmt("%.0f", ways) + " ways, " + fmt("%.0f", table_bytes) +
           " bytes. A flow may sit in either of two buckets (two-choice hashing); a lookup reads "
           "its first bucket, and its second only when the flow is not in the first. Each flow "
           "is seeded where the program would record it (its first bucket while that has two "
           "empty ways or more, else the bucket with more empty ways); \"2nd bucket\" is the share "
           "of the seeded flows placed in their "
           "second bucket, whose lookups read two cache lines, and \"no way\" the share that "
           "found both buckets full of flows seeded before them: as in the program, those are "
           "left unrecorded (every way is a live flow, which the replacement rule does not take) "
           "and forwarded by their Maglev entry alone, so their packets are the row's new flows "
           "(checked: conn_stats counts each as unrecorded). \"bytes/flow\" is the table's "
           "memory over the flows it holds after the run (" +
           std::to_string(sizeof(ballast_conn_way)) +
           " bytes when every way is taken; the table is allocated whole, whatever it holds). "
           "The last two rows send flows never seen into a table whose every way is already "
           "taken, by flows of no row. Full of live flows (confirmed, seen within the last " +
           fmt("%.0f", BALLAST_CONN_PROTECT_NS / 1e9) +
           " s): the replacement rule takes none of them, so each new flow is forwarded by its "
           "Maglev entry alone and left unrecorded. Full of unconfirmed flows (recorded by one "
           "packet each, as a SYN flood or lost handshakes leave them): each new flow takes the "
           "oldest of them in its two buckets. Both are checked per run in conn_stats (every "
           "packet a new flow, none recorded in an empty way, each unrecorded or replacing an "
           "unconfirmed flow as the row says).",
       "flows",
       "flows",
       "scaling_flows.png",
       {},
       true},
  };
  const std::vector<std::uint32_t> vip_counts =
      quick ? std::vector<std::uint32_t>{100} : std::vector<std::uint32_t>{1, 10, 100, 1000, 10000};
  for (auto n : vip_counts) sweeps[0].points.push_back({n, {n, 2, 10'000, Table::seeded}});
  const std::vector<std::uint32_t> be_counts =
      quick ? std::vector<std::uint32_t>{100} : std::vector<std::uint32_t>{2, 10, 100, 1000};
  for (auto n : be_counts) sweeps[1].points.push_back({n, {1, n, 10'000, Table::seeded}});
  const std::vector<std::uint32_t> flow_counts =
      quick ? std::vector<std::uint32_t>{10'000, 1'000'000}
            : std::vector<std::uint32_t>{1, 1'000, 10'000, 100'000, 1'000'000};
  for (auto n : flow_counts) sweeps[2].points.push_back({n, {1, 10, n, Table::seeded}});
  // Flows never seen: more of them than all the runs (warm-up included)
  // send, so that none comes back.
  for (Table t : {Table::full_live, Table::full_unconfirmed})
    sweeps[2].points.push_back({ways, {1, 10, 4 * ways, t}});

  nlohmann::json sections = nlohmann::json::array();
  sections.push_back(
      {{"text",
        "Each repetition of BPF_PROG_TEST_RUN is another flow: a wrapper program "
        "(bench/xdp_spread.bpf.c) rewrites the client address and port and the VIP address from a "
        "counter and tail-calls the program under test, so table sizes show as cache misses, which "
        "one repeated frame would hide. The floor program behind the same wrapper is measured "
        "alternately in the same run; \"x floor\" is the median of the per-round ratios (" +
            std::to_string(repeats) + " repetitions, " + std::to_string(rounds) +
            " rounds). Both columns include the wrapper and the tail call. Once the flows no "
            "longer "
            "fit in the CPU's caches these rows measure memory, and on a shared VM how much of "
            "the L3 the neighbours leave: the same 10,000-flow case gave 141 ns in one run and "
            "313 ns in another a few minutes later, with the floor (which touches no Ballast "
            "map) steady. Read the growth within one table, not across runs."}});
  std::printf(
      "Scaling: %u repetitions per run, median of %d rounds, each repetition another flow\n",
      repeats, rounds);
  std::printf("Connection table: %u buckets of %zu bytes, %u ways: %zu bytes, %zu bytes per way\n",
              BALLAST_CONN_BUCKETS, sizeof(ballast_conn_bucket), ways, table_bytes,
              table_bytes / ways);
  for (const auto& sw : sweeps) {
    std::printf("\n%s\n%-52s %10s %10s %8s%s\n", sw.heading.c_str(), sw.column.c_str(),
                "Ballast ns", "floor ns", "x floor",
                sw.fill ? "  new flows  2nd bucket    no way  bytes/flow" : "");
    nlohmann::json rows = nlohmann::json::array();
    std::vector<double> xs, ys, fl;
    for (const auto& [x, scenario] : sw.points) {
      const Result r = measure(scenario, floor_fd);
      // The harness just destroyed freed its connection table (table_bytes):
      // let the kernel's deferred free (and its TLB flushes) finish before
      // the next scenario measures.
      if (!quick) std::this_thread::sleep_for(std::chrono::seconds(2));
      const bool established = scenario.table == Table::seeded;
      const std::string label = label_of(x, scenario);
      const double per_flow = r.tracked ? double(table_bytes) / r.tracked : 0;
      const std::string second = established ? fmt("%.1f%%", 100 * r.second_share) : "";
      const std::string unplaced = established ? fmt("%.2f%%", 100 * r.unplaced_share) : "";
      std::printf("%-52s %10.0f %10.0f %8.2f", label.c_str(), r.ballast_ns, r.floor_ns, r.ratio);
      if (sw.fill)
        std::printf("  %8.1f%%  %10s  %8s  %10.1f", 100 * r.new_flow_share, second.c_str(),
                    unplaced.c_str(), per_flow);
      std::printf("\n");
      std::fflush(stdout);
      nlohmann::json row = {label, fmt("%.0f", r.ballast_ns), fmt("%.0f", r.floor_ns),
                            fmt("%.2f", r.ratio)};
      if (sw.fill) {
        row.push_back(fmt("%.1f%%", 100 * r.new_flow_share));
        row.push_back(second);
        row.push_back(unplaced);
        row.push_back(fmt("%.1f", per_flow));
      }
      rows.push_back(row);
      if (established) {
        xs.push_back(x);
        ys.push_back(r.ballast_ns);
        fl.push_back(r.floor_ns);
      }
    }
    nlohmann::json columns = {sw.column, "Ballast ns/packet", "floor ns/packet", "x floor"};
    if (sw.fill) {
      columns.push_back("new flows");
      columns.push_back("2nd bucket");
      columns.push_back("no way");
      columns.push_back("bytes/flow");
    }
    sections.push_back({{"heading", sw.heading},
                        {"text", sw.text},
                        {"table", {{"columns", columns}, {"rows", rows}}},
                        {"plot",
                         {{"file", sw.plot_file},
                          {"title", "ns/packet against " + sw.xlabel},
                          {"xlabel", sw.xlabel},
                          {"ylabel", "ns/packet"},
                          {"xlog", true},
                          {"series",
                           {{{"label", "Ballast (established)"}, {"x", xs}, {"y", ys}},
                            {{"label", "floor"}, {"x", xs}, {"y", fl}}}}}}});
  }
  if (json_path) {
    const nlohmann::json out = {{"bench", "scaling"},
                                {"title", "Data plane: how the cost grows"},
                                {"command", "build/bench_scaling"},
                                {"order", 15},
                                {"sections", sections}};
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace ballast::test

int main(int argc, char** argv) {
  const char* json = nullptr;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--quick") {
      ballast::test::quick = true;
      ballast::test::repeats = 20'000;
      ballast::test::rounds = 1;
    } else if (a == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_scaling [--quick] [--json FILE]\n");
      return 2;
    }
  }
  try {
    return ballast::test::run(json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_scaling: %s\n", e.what());
    return 1;
  }
}
