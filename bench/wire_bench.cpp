// wire_bench.cpp: build/bench_wire, the measuring half of bench/wire_bench.py
// (the script builds the namespaces and runs ballastd; read its header for
// the topology and the method). One run measures one cell: one program on
// the balancer's interface, one flow count.
//
//   bench_wire --gen-ns NS --lb-ns NS --lb-prog gen-only|drop|floor|keep
//              --flows N --vip A.B.C.D --port P --client A.B.C.D
//              --expect-mac XX[,YY...]|none [--ballast-pins DIR]
//              [--warmup-s S] [--warm-passes K] [--window-s S] [--cpus C[,C...]]
//
// In the generator's namespace it attaches the receiver (wire_count) to
// eth0; on the balancer's eth0 it attaches wire_drop (drop) or xdp_floor
// (floor), or leaves ballastd's program alone (keep; ballastd's pinned
// counters under --ballast-pins are read too); gen-only attaches nothing
// there and has the generator drop its own frames, which measures what
// generating costs. A thread pinned to each CPU C (default: the last) then
// sends frames from wire_gen by BPF_PROG_TEST_RUN with live frames (out of
// the generator's eth0, into the balancer's), each CPU its own share of the
// flows. veth hands a frame to the receiving side's queue of the sending
// CPU and polls it there, so with as many queues as generating CPUs every
// CPU carries its own generator, balancer and receiver: the multi-core case
// of bench/wire_bench.py. After the warm-up (at least S seconds and K
// passes over the N flows) it reads every counter, waits the window, reads
// them again, stops the generator and prints one JSON object: the window's
// deltas (frames generated; frames the balancer's interface saw and its XDP
// verdicts, from veth's ethtool counters; frames the receiver counted, by
// destination MAC; Ballast's counters; CPU time by CPU) and the mpps that
// the case is measured by.
//
// It fails (exit 1, a message on stderr) when a step fails, when nothing
// was counted, and when the receiver counted frames whose destination MAC
// is not one of --expect-mac (last bytes of MACs, hex; "none": nothing may
// arrive), more than 0.1% of those counted: frames counted must be frames
// sent where they were meant to go.
// With ballastd (keep), the receiver must have counted at least 95% of what
// Ballast counted as tx_forwarded in the window, and tx_forwarded must be at
// least 95% of the frames that reached the balancer's interface: the rate
// is of packets Ballast forwarded, not of packets it passed or dropped. The
// floor's frames must have arrived too (95% of veth's rx_xdp_tx).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ballast_abi.h"
#include "fd.h"
#include "live_frames.h"
#include "option_args.h"
#include "packet_builder.h"
#include "wire_count.skel.h"
#include "wire_gen.skel.h"
#include "xdp_floor.skel.h"

namespace ballast::test {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// wire_count.bpf.c's slots: one per last MAC byte, then the runts.
constexpr std::uint32_t kCountSlots = 257;
// Live frames per test run: as many as the kernel takes (about 1000 s of
// frames); the generator is stopped by a signal instead. Each test run
// swaps the program into the kernel's XDP dispatcher and out again, and
// each swap waits for an RCU grace period: tens of ms on a busy VM, in which
// nothing is sent. Runs of 64k frames spent most of a window in those waits.
constexpr int kRepeatPerRun = INT_MAX;
// The warm-up never lasts longer than this, whatever --warm-passes asks.
constexpr double kMaxWarmupS = 30;

struct Options {
  std::string gen_ns, lb_ns, lb_prog, ballast_pins;
  std::uint32_t flows = 1;
  std::string vip, client;
  std::uint16_t port = 0;
  std::set<std::uint32_t> expect_macs;  // last bytes; empty: nothing may arrive
  double warmup_s = 1, window_s = 5;
  double warm_passes = 0;
  std::vector<int> cpus;  // empty: the last CPU
};

[[noreturn]] void usage(const std::string& why) {
  throw std::runtime_error(why +
                           "\nusage: bench_wire --gen-ns NS --lb-ns NS "
                           "--lb-prog gen-only|drop|floor|keep --flows N --vip ADDR --port P "
                           "--client ADDR --expect-mac XX[,YY]|none [--ballast-pins DIR] "
                           "[--warmup-s S] [--warm-passes K] [--window-s S] [--cpus C[,C...]]");
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto u32 = [](const std::string& v) { return static_cast<std::uint32_t>(std::stoul(v)); };
  const std::map<std::string, std::function<void(const std::string&)>> setters = {
      {"--gen-ns", [&](const std::string& v) { o.gen_ns = v; }},
      {"--lb-ns", [&](const std::string& v) { o.lb_ns = v; }},
      {"--lb-prog", [&](const std::string& v) { o.lb_prog = v; }},
      {"--flows", [&](const std::string& v) { o.flows = u32(v); }},
      {"--vip", [&](const std::string& v) { o.vip = v; }},
      {"--port", [&](const std::string& v) { o.port = static_cast<std::uint16_t>(u32(v)); }},
      {"--client", [&](const std::string& v) { o.client = v; }},
      {"--ballast-pins", [&](const std::string& v) { o.ballast_pins = v; }},
      {"--warmup-s", [&](const std::string& v) { o.warmup_s = std::stod(v); }},
      {"--warm-passes", [&](const std::string& v) { o.warm_passes = std::stod(v); }},
      {"--window-s", [&](const std::string& v) { o.window_s = std::stod(v); }},
      {"--cpus",
       [&](const std::string& v) {
         std::stringstream ss(v);
         std::string cpu;
         while (std::getline(ss, cpu, ',')) o.cpus.push_back(std::stoi(cpu));
       }},
      {"--expect-mac",
       [&](const std::string& v) {
         if (v == "none") return;
         std::stringstream ss(v);
         std::string byte;
         while (std::getline(ss, byte, ',')) o.expect_macs.insert(std::stoul(byte, nullptr, 16));
       }},
  };
  ballast::bench::apply_options(argc, argv, setters, usage);
  if (o.gen_ns.empty() || o.lb_ns.empty() || o.vip.empty() || o.client.empty() || !o.port)
    usage("--gen-ns, --lb-ns, --vip, --port and --client are required");
  if (o.lb_prog != "gen-only" && o.lb_prog != "drop" && o.lb_prog != "floor" && o.lb_prog != "keep")
    usage("--lb-prog must be gen-only, drop, floor or keep");
  if (o.lb_prog == "keep" && o.ballast_pins.empty()) usage("--lb-prog keep needs --ballast-pins");
  if (o.flows < 1) usage("--flows must be at least 1");
  if (o.window_s <= 0) usage("--window-s must be positive");
  if (o.cpus.empty()) o.cpus.push_back(static_cast<int>(std::thread::hardware_concurrency()) - 1);
  if (std::set<int>(o.cpus.begin(), o.cpus.end()).size() != o.cpus.size())
    usage("--cpus: a CPU twice");
  for (int cpu : o.cpus)
    if (cpu < 0 || cpu > 255) usage("--cpus: no CPU " + std::to_string(cpu));
  return o;
}

std::string errno_text(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

// --- Namespaces and interfaces -------------------------------------------------

// Moves this thread into a named network namespace (/run/netns/NAME).
void enter_netns(const std::string& name) {
  UniqueFd fd(::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw std::runtime_error(errno_text("opening netns " + name, errno));
  if (setns(fd.get(), CLONE_NEWNET) < 0)
    throw std::runtime_error(errno_text("entering netns " + name, errno));
}

// One interface of one namespace, reached through a socket opened there: a
// socket keeps the namespace it was made in, whatever this thread enters
// later, so ioctls on it (ethtool) need no further setns.
struct Interface {
  std::string netns, name;
  UniqueFd sock;
  int ifindex = 0;
  MacAddr mac{};
};

Interface open_interface(const std::string& netns, const std::string& name) {
  Interface ifc;
  ifc.netns = netns;
  ifc.name = name;
  enter_netns(netns);
  ifc.sock = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ifc.sock.valid()) throw std::runtime_error(errno_text("socket in " + netns, errno));
  ifreq req{};
  std::snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", name.c_str());
  if (ioctl(ifc.sock.get(), SIOCGIFINDEX, &req) < 0)
    throw std::runtime_error(errno_text(netns + " " + name + ": SIOCGIFINDEX", errno));
  ifc.ifindex = req.ifr_ifindex;
  if (ioctl(ifc.sock.get(), SIOCGIFHWADDR, &req) < 0)
    throw std::runtime_error(errno_text(netns + " " + name + ": SIOCGIFHWADDR", errno));
  std::memcpy(ifc.mac.data(), req.ifr_hwaddr.sa_data, ifc.mac.size());
  return ifc;
}

// veth's counters (ethtool -S), summed over queues: "rx_queue_0_xdp_tx" and
// "rx_queue_1_xdp_tx" both count under "rx_xdp_tx".
std::map<std::string, std::uint64_t> read_ethtool(const Interface& ifc) {
  auto call = [&](void* data, const char* what) {
    ifreq req{};
    std::snprintf(req.ifr_name, sizeof(req.ifr_name), "%s", ifc.name.c_str());
    req.ifr_data = static_cast<char*>(data);
    if (ioctl(ifc.sock.get(), SIOCETHTOOL, &req) < 0)
      throw std::runtime_error(errno_text(ifc.netns + " " + ifc.name + ": " + what, errno));
  };
  // ethtool_sset_info ends in a flexible array: one u32 per set asked for.
  std::vector<std::uint8_t> sset(sizeof(ethtool_sset_info) + sizeof(std::uint32_t));
  auto* info = reinterpret_cast<ethtool_sset_info*>(sset.data());
  info->cmd = ETHTOOL_GSSET_INFO;
  info->sset_mask = 1ull << ETH_SS_STATS;
  call(info, "ETHTOOL_GSSET_INFO");
  const std::uint32_t n = info->data[0];

  std::vector<std::uint8_t> strings(sizeof(ethtool_gstrings) + n * ETH_GSTRING_LEN);
  auto* gs = reinterpret_cast<ethtool_gstrings*>(strings.data());
  gs->cmd = ETHTOOL_GSTRINGS;
  gs->string_set = ETH_SS_STATS;
  gs->len = n;
  call(gs, "ETHTOOL_GSTRINGS");

  std::vector<std::uint8_t> values(sizeof(struct ethtool_stats) + n * sizeof(std::uint64_t));
  auto* st = reinterpret_cast<struct ethtool_stats*>(values.data());
  st->cmd = ETHTOOL_GSTATS;
  st->n_stats = n;
  call(st, "ETHTOOL_GSTATS");

  std::map<std::string, std::uint64_t> out;
  for (std::uint32_t i = 0; i < n; i++) {
    std::string name(
        reinterpret_cast<const char*>(gs->data) + i * ETH_GSTRING_LEN,
        strnlen(reinterpret_cast<const char*>(gs->data) + i * ETH_GSTRING_LEN, ETH_GSTRING_LEN));
    // "rx_queue_3_xdp_tx" -> "rx_xdp_tx"
    const auto q = name.find("_queue_");
    if (q != std::string::npos) {
      const auto rest = name.find('_', q + 7);
      if (rest != std::string::npos) name = name.substr(0, q) + name.substr(rest);
    }
    out[name] += st->data[i];
  }
  return out;
}

// --- Programs ------------------------------------------------------------------

template <typename Skel>
struct SkelDeleter {
  void operator()(Skel* s) const { Skel::destroy(s); }
};
template <typename Skel>
using SkelPtr = std::unique_ptr<Skel, SkelDeleter<Skel>>;

struct LinkDeleter {
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;

// Attaches @prog to @ifc as an XDP link (native mode: veth has a driver
// hook). A link, not a netlink attachment: it goes with its fd, so even a
// killed bench leaves no program behind.
LinkPtr attach_xdp(bpf_program* prog, const Interface& ifc) {
  // The kernel resolves the ifindex in the caller's namespace.
  enter_netns(ifc.netns);
  LinkPtr link(bpf_program__attach_xdp(prog, ifc.ifindex));
  if (!link)
    throw std::runtime_error(errno_text(
        std::string("attaching ") + bpf_program__name(prog) + " to " + ifc.netns + " " + ifc.name,
        errno));
  return link;
}

// Sum over CPUs of a per-CPU u64 array's slot @key.
std::uint64_t percpu_sum(int map_fd, std::uint32_t key, std::vector<std::uint64_t>& buf) {
  if (bpf_map_lookup_elem(map_fd, &key, buf.data()) < 0)
    throw std::runtime_error(errno_text("reading a per-CPU counter", errno));
  std::uint64_t sum = 0;
  for (auto v : buf) sum += v;
  return sum;
}

// Slot @key of a per-CPU array of @T, a struct of u64s (so the kernel's
// per-CPU stride, a multiple of 8 bytes, is sizeof(T)): summed over CPUs,
// or over the CPUs in @only alone (when not empty). Summed as u64 words and
// copied out: no pointer of another type into a T.
template <typename T>
T percpu_struct_sum(int map_fd, std::uint32_t key, int ncpus, const std::set<int>& only = {}) {
  static_assert(sizeof(T) % 8 == 0);
  constexpr std::size_t words = sizeof(T) / 8;
  std::vector<std::uint64_t> values(ncpus * words);
  if (bpf_map_lookup_elem(map_fd, &key, values.data()) < 0)
    throw std::runtime_error(errno_text("reading a pinned Ballast counter", errno));
  std::uint64_t sum[words] = {};
  for (std::size_t i = 0; i < values.size(); i++)
    if (only.empty() || only.count(static_cast<int>(i / words)))
      sum[i % words] += values[i];
  T out;
  std::memcpy(&out, sum, sizeof(out));
  return out;
}

// ballastd's counters, from its pinned maps (the maps `ballast stats`
// reads): forwarded packets, every verdict, the VIPs' new flows (the
// packets that found no connection-table entry) and where the connection
// table put those (conn_stats).
// tx_forwarded_on_cpu: on the generators' CPUs, which is where veth runs the
// balancer's program when the generators' sends raise its NAPI poll.
struct BallastCounters {
  std::uint64_t tx_forwarded = 0, tx_forwarded_on_cpu = 0, verdicts = 0, vip_packets = 0,
                new_flows = 0;
  std::vector<std::uint64_t> tx_forwarded_by_cpu;  // one per possible CPU
  ballast_conn_counters conn{};
};

class BallastPins {
 public:
  BallastPins(const std::string& dir, int ncpus, const std::vector<int>& gen_cpus)
      : ncpus_(ncpus), gen_cpus_(gen_cpus.begin(), gen_cpus.end()) {
    reasons_ = open_pin(dir + "/reason_stats");
    vips_ = open_pin(dir + "/vip_stats");
    conn_ = open_pin(dir + "/conn_stats");
  }
  BallastCounters read() const {
    BallastCounters c;
    for (std::uint32_t r = 0; r < BALLAST_REASON_COUNT; r++) {
      const auto n = percpu_struct_sum<ballast_reason_counters>(reasons_.get(), r, ncpus_);
      c.verdicts += n.packets;
      if (r == BALLAST_REASON_TX_FORWARDED) c.tx_forwarded = n.packets;
    }
    c.tx_forwarded_on_cpu = percpu_struct_sum<ballast_reason_counters>(
                                reasons_.get(), BALLAST_REASON_TX_FORWARDED, ncpus_, gen_cpus_)
                                .packets;
    for (int cpu = 0; cpu < ncpus_; cpu++)
      c.tx_forwarded_by_cpu.push_back(
          percpu_struct_sum<ballast_reason_counters>(reasons_.get(), BALLAST_REASON_TX_FORWARDED,
                                                     ncpus_, {cpu})
              .packets);
    for (std::uint32_t v = 0; v < BALLAST_MAX_VIPS; v++) {
      const auto n = percpu_struct_sum<ballast_traffic_counters>(vips_.get(), v, ncpus_);
      c.vip_packets += n.packets;
      c.new_flows += n.new_flows;
    }
    c.conn = percpu_struct_sum<ballast_conn_counters>(conn_.get(), 0, ncpus_);
    return c;
  }

 private:
  static UniqueFd open_pin(const std::string& path) {
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd.valid()) throw std::runtime_error(errno_text("opening pinned map " + path, errno));
    return fd;
  }
  int ncpus_;
  std::set<int> gen_cpus_;
  UniqueFd reasons_, vips_, conn_;
};

// --- CPU time ------------------------------------------------------------------

// /proc/stat's per-CPU jiffies: busy (user, nice, system, irq, softirq,
// steal), softirq alone, which is where the veth NAPI (the balancer's and
// the receiver's XDP) runs, and steal alone: time the VM's host gave the
// virtual CPU to something else.
struct CpuTimes {
  std::vector<std::uint64_t> busy, softirq, steal, total;
};

CpuTimes cpu_times() {
  std::ifstream f("/proc/stat");
  CpuTimes t;
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || line[3] == ' ') continue;
    std::istringstream is(line);
    std::string name;
    std::uint64_t user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, soft = 0, steal = 0;
    is >> name >> user >> nice >> sys >> idle >> iowait >> irq >> soft >> steal;
    t.busy.push_back(user + nice + sys + irq + soft + steal);
    t.softirq.push_back(soft);
    t.steal.push_back(steal);
    t.total.push_back(user + nice + sys + idle + iowait + irq + soft + steal);
  }
  return t;
}

// --- The generator -------------------------------------------------------------

// SIGUSR1 ends the generator's test run (the kernel checks for a pending
// signal between batches and returns EINTR); the handler itself has nothing
// to do.
void on_stop_signal(int) {}

// Sends live frames until told to stop, on one pinned CPU.
class Generator {
 public:
  Generator(int prog_fd, Bytes frame, int ifindex, int cpu)
      : prog_fd_(prog_fd), frame_(std::move(frame)), ifindex_(ifindex), cpu_(cpu) {}
  ~Generator() { stop(); }

  void start() {
    // No SA_RESTART: the interrupted bpf() call must return.
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, nullptr) < 0)
      throw std::runtime_error(errno_text("sigaction(SIGUSR1)", errno));
    thread_ = std::thread([this] { loop(); });
  }
  // Stops the thread; failed() says whether it had stopped on an error
  // before, error() which. The signal is repeated until the thread is out:
  // one sent just before it enters the kernel would find nothing to end.
  void stop() {
    stop_ = true;
    while (thread_.joinable() && !done_) {
      pthread_kill(thread_.native_handle(), SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (thread_.joinable()) thread_.join();
  }
  bool failed() const { return failed_; }
  std::string error() const { return error_; }
  // The thread's id, once it runs (0 before).
  pid_t tid() const { return tid_; }

 private:
  void loop() {
    run();
    done_ = true;
  }
  void run() {
    tid_ = gettid();
    if (int err = ballast::bench::pin_this_thread(cpu_)) {
      fail(errno_text("pinning the generator to CPU " + std::to_string(cpu_), err));
      return;
    }
    // The frames are received on the generator's eth0 (queue 0) as far as
    // the kernel is concerned, and XDP_TX sends them out of it.
    if (int err =
            ballast::bench::send_live_frames(prog_fd_, frame_, ifindex_, kRepeatPerRun, stop_))
      fail(errno_text("BPF_PROG_TEST_RUN (live frames)", err));
  }
  void fail(std::string why) {
    error_ = std::move(why);
    failed_ = true;
  }

  int prog_fd_;
  Bytes frame_;
  int ifindex_, cpu_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, failed_{false}, done_{false};
  std::atomic<pid_t> tid_{0};
  std::string error_;
};

// The scheduler's account of one thread of this process
// (/proc/self/task/TID/schedstat): ns on a CPU, and ns runnable but waiting
// for one. Exact, unlike /proc/stat's tick samples.
struct SchedStat {
  std::uint64_t run_ns = 0, wait_ns = 0;
};

SchedStat sched_stat(pid_t tid) {
  SchedStat s;
  if (!tid) return s;
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/schedstat");
  f >> s.run_ns >> s.wait_ns;
  return s;
}

Ipv4Addr parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1)
    throw std::runtime_error("not an IPv4 address: " + text);
  Ipv4Addr out{};
  std::memcpy(out.octets.data(), &a, 4);
  return out;
}

std::string mac_text(const MacAddr& m) {
  char buf[18];
  std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

// --- One cell ------------------------------------------------------------------

// Every counter the cell compares, read at one moment.
struct Snapshot {
  Clock::time_point at;
  std::uint64_t generated = 0;
  std::vector<std::uint64_t> received;  // by slot
  std::map<std::string, std::uint64_t> lb, gen;
  CpuTimes cpu;
  std::vector<SchedStat> gen_threads;  // one per generator
  BallastCounters ballast;
};

class Cell {
 public:
  explicit Cell(Options o) : o_(std::move(o)) {}

  json run() {
    lb_ = open_interface(o_.lb_ns, "eth0");
    gen_ = open_interface(o_.gen_ns, "eth0");  // last: this thread stays in gen_ns
    const int ncpus = libbpf_num_possible_cpus();
    if (ncpus <= 0) throw std::runtime_error("libbpf_num_possible_cpus failed");
    percpu_.assign(ncpus, 0);
    if (o_.lb_prog == "keep") ballast_.emplace(o_.ballast_pins, ncpus, o_.cpus);

    load_programs();
    received_fd_ = bpf_map__fd(count_->maps.received);
    generated_fd_ = bpf_map__fd(gen_skel_->maps.sent);
    // The receiver first: a frame the balancer sends back before it is
    // there would be lost as an XDP_TX error on the balancer's side.
    receiver_ = attach_xdp(count_->progs.wire_count, gen_);
    if (o_.lb_prog == "drop") lb_link_ = attach_xdp(count_->progs.wire_drop, lb_);
    if (o_.lb_prog == "floor") lb_link_ = attach_xdp(floor_->progs.xdp_floor, lb_);
    enter_netns(o_.gen_ns);

    // The generator's template: to the balancer's MAC and the VIP, from the
    // first client address and port; wire_gen varies the source per flow.
    const Bytes frame = PacketBuilder()
                            .eth(gen_.mac, lb_.mac)
                            .ipv4(parse_ipv4(o_.client), parse_ipv4(o_.vip))
                            .udp(kBaseSport, o_.port)
                            .udp_checksum(0)
                            .payload(std::string(18, 'w'))  // 60 bytes: Ethernet's minimum
                            .build();
    const Snapshot attached = snapshot();
    std::vector<std::unique_ptr<Generator>> gens;
    for (int cpu : o_.cpus)
      gens.push_back(std::make_unique<Generator>(bpf_program__fd(gen_skel_->progs.wire_gen),
                                                 frame, gen_.ifindex, cpu));
    for (auto& gen : gens) gen->start();
    generators_ = &gens;
    auto any_failed = [&gens]() -> const Generator* {
      for (const auto& gen : gens)
        if (gen->failed()) return gen.get();
      return nullptr;
    };

    // Warm-up: the programs' caches and, for many flows, Ballast's
    // connection table reach their steady state.
    const auto t0 = Clock::now();
    const double warm_frames = o_.warm_passes * o_.flows;
    while (!any_failed()) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      if (elapsed >= kMaxWarmupS) break;
      if (elapsed >= o_.warmup_s && percpu_sum(generated_fd_, 0, percpu_) >= warm_frames) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const double warmup_s = std::chrono::duration<double>(Clock::now() - t0).count();

    const Snapshot a = snapshot();
    std::this_thread::sleep_for(std::chrono::duration<double>(o_.window_s));
    const Snapshot b = snapshot();
    for (auto& gen : gens) gen->stop();
    generators_ = nullptr;
    if (const Generator* failed = any_failed())
      throw std::runtime_error("generator: " + failed->error());
    const Snapshot end = drained();

    json out = window_json(a, b);
    out["warmup_s"] = warmup_s;
    out["lb_mac"] = mac_text(lb_.mac);
    out["gen_mac"] = mac_text(gen_.mac);
    out["since_attach"] = {{"generated", end.generated - attached.generated},
                           {"received", sum_expected(attached, end)},
                           {"received_other", sum_other(attached, end)},
                           {"lb_xdp_tx", delta(attached.lb, end.lb, "rx_xdp_tx")}};
    check(out);
    return out;
  }

 private:
  static constexpr std::uint16_t kBaseSport = 1024;

  void load_programs() {
    gen_skel_.reset(wire_gen::open());
    if (!gen_skel_) throw std::runtime_error(errno_text("wire_gen::open", errno));
    gen_skel_->rodata->flows = o_.flows;
    gen_skel_->rodata->ports_per_addr = 16384;
    gen_skel_->rodata->base_saddr = ntohl(parse_ipv4(o_.client).be32());
    gen_skel_->rodata->base_sport = kBaseSport;
    gen_skel_->rodata->verdict = o_.lb_prog == "gen-only" ? XDP_DROP : XDP_TX;
    // Each generating CPU its own 1/k of the flows (wire_gen.bpf.c).
    gen_skel_->rodata->cpu_stride = static_cast<std::uint32_t>(o_.cpus.size());
    for (std::size_t i = 0; i < o_.cpus.size(); i++)
      gen_skel_->rodata->cpu_slot[o_.cpus[i]] = static_cast<std::uint8_t>(i);
    std::memcpy(gen_skel_->rodata->dst_mac, lb_.mac.data(), 6);
    std::memcpy(gen_skel_->rodata->src_mac, gen_.mac.data(), 6);
    if (wire_gen::load(gen_skel_.get()))
      throw std::runtime_error(errno_text("wire_gen::load", errno));
    count_.reset(wire_count::open_and_load());
    if (!count_) throw std::runtime_error(errno_text("wire_count::open_and_load", errno));
    if (o_.lb_prog == "floor") {
      floor_.reset(xdp_floor::open_and_load());
      if (!floor_) throw std::runtime_error(errno_text("xdp_floor::open_and_load", errno));
    }
  }

  // The totals once the last frames are through the rings: the receiver's
  // counts stood still for 20 ms (two reads 10 ms apart), or 200 ms passed.
  Snapshot drained() {
    auto received = [](const Snapshot& s) {
      std::uint64_t n = 0;
      for (auto v : s.received) n += v;
      return n;
    };
    Snapshot last = snapshot();
    int still = 0;
    for (int i = 0; i < 20 && still < 2; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      Snapshot now = snapshot();
      still = received(now) == received(last) ? still + 1 : 0;
      last = std::move(now);
    }
    return last;
  }

  Snapshot snapshot() {
    Snapshot s;
    s.at = Clock::now();
    s.generated = percpu_sum(generated_fd_, 0, percpu_);
    s.received.resize(kCountSlots);
    for (std::uint32_t k = 0; k < kCountSlots; k++)
      s.received[k] = percpu_sum(received_fd_, k, percpu_);
    s.lb = read_ethtool(lb_);
    s.gen = read_ethtool(gen_);
    s.cpu = cpu_times();
    if (ballast_) s.ballast = ballast_->read();
    if (generators_)
      for (const auto& gen : *generators_) s.gen_threads.push_back(sched_stat(gen->tid()));
    return s;
  }

  static std::uint64_t delta(const std::map<std::string, std::uint64_t>& a,
                             const std::map<std::string, std::uint64_t>& b, const std::string& k) {
    const auto ia = a.find(k), ib = b.find(k);
    if (ia == a.end() || ib == b.end()) throw std::runtime_error("no ethtool counter " + k);
    return ib->second - ia->second;
  }
  std::uint64_t sum_expected(const Snapshot& a, const Snapshot& b) const {
    std::uint64_t n = 0;
    for (auto k : o_.expect_macs) n += b.received[k] - a.received[k];
    return n;
  }
  std::uint64_t sum_other(const Snapshot& a, const Snapshot& b) const {
    std::uint64_t n = 0;
    for (std::uint32_t k = 0; k < kCountSlots; k++)
      if (!o_.expect_macs.count(k)) n += b.received[k] - a.received[k];
    return n;
  }

  json window_json(const Snapshot& a, const Snapshot& b) const {
    const double s = std::chrono::duration<double>(b.at - a.at).count();
    json by_mac = json::object();
    for (std::uint32_t k = 0; k < kCountSlots; k++)
      if (b.received[k] != a.received[k]) {
        char name[8];
        std::snprintf(name, sizeof(name), k < 256 ? "%02x" : "runt", k);
        by_mac[name] = b.received[k] - a.received[k];
      }
    json lb = json::object(), gen = json::object();
    for (const auto& [k, v] : b.lb) lb[k] = v - a.lb.at(k);
    for (const auto& [k, v] : b.gen) gen[k] = v - a.gen.at(k);
    json cpus = json::array();
    for (std::size_t i = 0; i < b.cpu.total.size() && i < a.cpu.total.size(); i++) {
      const double total = static_cast<double>(b.cpu.total[i] - a.cpu.total[i]);
      cpus.push_back({{"cpu", i},
                      {"busy", total ? (b.cpu.busy[i] - a.cpu.busy[i]) / total : 0.0},
                      {"softirq", total ? (b.cpu.softirq[i] - a.cpu.softirq[i]) / total : 0.0},
                      {"steal", total ? (b.cpu.steal[i] - a.cpu.steal[i]) / total : 0.0}});
    }
    const std::uint64_t received = sum_expected(a, b);
    // The rate: frames the receiver counted at the MACs expected, or, with
    // nothing sent back, frames the balancer's program dropped (drop) or
    // frames generated (gen-only, which drops them itself).
    std::uint64_t counted = received;
    if (o_.lb_prog == "drop") counted = delta(a.lb, b.lb, "rx_xdp_drops");
    if (o_.lb_prog == "gen-only") counted = b.generated - a.generated;
    json threads = json::array();
    for (std::size_t i = 0; i < a.gen_threads.size() && i < b.gen_threads.size(); i++)
      threads.push_back(
          {{"cpu", o_.cpus[i]},
           {"run", (b.gen_threads[i].run_ns - a.gen_threads[i].run_ns) / (s * 1e9)},
           {"wait", (b.gen_threads[i].wait_ns - a.gen_threads[i].wait_ns) / (s * 1e9)}});
    auto mean = [&threads](const char* key) {
      double sum = 0;
      for (const auto& t : threads) sum += t[key].get<double>();
      return threads.empty() ? 0.0 : sum / threads.size();
    };
    json ballast = nullptr, by_cpu = json::array();
    for (std::size_t i = 0; i < b.ballast.tx_forwarded_by_cpu.size(); i++)
      by_cpu.push_back(b.ballast.tx_forwarded_by_cpu[i] -
                       (i < a.ballast.tx_forwarded_by_cpu.size() ? a.ballast.tx_forwarded_by_cpu[i]
                                                                 : 0));
    if (ballast_)
      ballast = {
          {"tx_forwarded", b.ballast.tx_forwarded - a.ballast.tx_forwarded},
          {"tx_forwarded_on_gen_cpu",
           b.ballast.tx_forwarded_on_cpu - a.ballast.tx_forwarded_on_cpu},
          {"tx_forwarded_by_cpu", by_cpu},
          {"verdicts", b.ballast.verdicts - a.ballast.verdicts},
          {"vip_packets", b.ballast.vip_packets - a.ballast.vip_packets},
          {"new_flows", b.ballast.new_flows - a.ballast.new_flows},
          {"conn_recorded", b.ballast.conn.recorded - a.ballast.conn.recorded},
          {"conn_replaced_embryonic",
           b.ballast.conn.replaced_embryonic - a.ballast.conn.replaced_embryonic},
          {"conn_replaced_idle", b.ballast.conn.replaced_idle - a.ballast.conn.replaced_idle},
          {"conn_unrecorded", b.ballast.conn.unrecorded - a.ballast.conn.unrecorded}};
    return {{"lb_prog", o_.lb_prog},
            {"conn_table_size", BALLAST_CONN_TABLE_SIZE},  // ways
            {"conn_table_buckets", BALLAST_CONN_BUCKETS},
            {"conn_table_bytes", std::uint64_t{BALLAST_CONN_BUCKETS} * sizeof(ballast_conn_bucket)},
            {"conn_protect_s", BALLAST_CONN_PROTECT_NS / 1e9},
            {"ballast", ballast},
            {"flows", o_.flows},
            {"gen_cpu", o_.cpus.front()},
            {"gen_cpus", o_.cpus},
            {"cores", o_.cpus.size()},
            {"window_s", s},
            {"generated", b.generated - a.generated},
            {"received", received},
            {"received_other", sum_other(a, b)},
            {"received_by_mac", by_mac},
            {"counted", counted},
            {"mpps", counted / s / 1e6},
            {"lb_ethtool", lb},
            {"gen_ethtool", gen},
            {"cpus", cpus},
            // The generators' threads: the share of the window each ran,
            // and the share it was runnable but waited for its CPU
            // (gen_thread: their mean).
            {"gen_threads", threads},
            {"gen_thread", {{"run", mean("run")}, {"wait", mean("wait")}}}};
  }

  // What was counted must be what was meant: frames went where the case
  // sends them, and nothing else arrived.
  void check(const json& out) const {
    const std::uint64_t counted = out["counted"], other = out["received_other"];
    if (!counted) throw std::runtime_error("nothing counted in the window: " + out.dump());
    // A stray frame of a namespace's own stack may pass; the generator's
    // frames at a wrong MAC (thousands a millisecond) may not.
    if (other > counted / 1000)
      throw std::runtime_error(std::to_string(other) +
                               " frames reached the receiver with an unexpected destination MAC "
                               "(received_by_mac): " +
                               out.dump());
    if (o_.lb_prog == "keep") {
      const std::uint64_t fwd = out["ballast"]["tx_forwarded"], got = out["received"],
                          arrived = out["lb_ethtool"]["rx_xdp_packets"];
      if (got < fwd * 0.95)
        throw std::runtime_error("ballast: the receiver counted " + std::to_string(got) +
                                 " frames in the window, tx_forwarded says " + std::to_string(fwd) +
                                 ": " + out.dump());
      if (fwd < arrived * 0.95)
        throw std::runtime_error("ballast: tx_forwarded " + std::to_string(fwd) + " of " +
                                 std::to_string(arrived) +
                                 " frames that reached the balancer in the window: " + out.dump());
    }
    if (o_.lb_prog == "floor") {
      // Everything the floor sent back arrived (5% slack for the frames
      // still in flight when the counters were read).
      const std::uint64_t tx = out["since_attach"]["lb_xdp_tx"],
                          got = out["since_attach"]["received"];
      if (got < tx * 0.95)
        throw std::runtime_error("floor: the receiver counted " + std::to_string(got) + " of " +
                                 std::to_string(tx) + " frames the balancer sent: " + out.dump());
    }
  }

  Options o_;
  Interface lb_, gen_;
  std::vector<std::uint64_t> percpu_;
  SkelPtr<wire_gen> gen_skel_;
  SkelPtr<wire_count> count_;
  SkelPtr<xdp_floor> floor_;
  LinkPtr receiver_, lb_link_;
  std::optional<BallastPins> ballast_;
  // While they run (run()'s local).
  const std::vector<std::unique_ptr<Generator>>* generators_ = nullptr;
  int received_fd_ = -1, generated_fd_ = -1;
};

}  // namespace
}  // namespace ballast::test

int main(int argc, char** argv) {
  try {
    auto options = ballast::test::parse_args(argc, argv);
    ballast::test::Cell cell(std::move(options));
    std::printf("%s\n", cell.run().dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_wire: %s\n", e.what());
    return 1;
  }
}
