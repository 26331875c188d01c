// syn_flood: a flood of spoofed TCP SYNs, each a new flow, at the fastest
// rate one core makes, for tests/e2e/test_faults.py (the SYN-flood guard).
//
//   syn_flood --obj BUILD/bpf/wire_gen.bpf.o --netns NS --dev IF
//             --src-mac MAC --dst-mac MAC --src A.B.C.D --dst A.B.C.D --dport P
//             [--frames N --min-s S] [--max-s S] [--cpu C]
//
// The generator is bench/wire_gen.bpf.c with l4_proto IPPROTO_TCP, run by
// BPF_PROG_TEST_RUN with live frames (as build/bench_wire runs it): each run
// of the program rewrites a SYN template's source address and port (and its
// checksums) from a per-CPU counter and returns XDP_TX, and the kernel sends
// the frame out of IF in namespace NS. Frame n comes from source address
// --src + n / 64512 and port 1024 + n % 64512 (1024..65535), so no two of
// the 2^28 flows it cycles through share a 5-tuple. veth delivers XDP_TX
// only to a peer that runs XDP: sent out of the peer of the balancer's
// interface, that program is the balancer itself.
//
// Frames go out as fast as one core makes them (8 Mpps here, the balancer's
// program not counted); what the peer's receive ring has no room for, veth
// refuses (IF's tx_queue_N_xdp_xmit_errors; taken: tx_queue_N_xdp_xmit).
//
// The object is loaded from its file and its load-time options set through
// its BTF (no skeleton: the Makefile builds bench/tools/*.cpp on their own).
// One thread pinned to CPU C (default: the last) generates, until SIGTERM
// or SIGINT, until it has sent N frames and S seconds have passed (with
// --frames), or after --max-s seconds (default 60) whatever it sent. Prints
// "flooding" once the first frame is out, then, at the end, one JSON
// object: {"generated", "elapsed_s", "rate_pps", "flows", "cpu",
// "stopped_by"}. Exit 1 (a message on stderr) when a step fails.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../live_frames.h"
#include "../option_args.h"
#include "fd.h"

namespace {

using Clock = std::chrono::steady_clock;

// 2^28 flows: more than any flood here sends, so every frame is a new flow.
constexpr std::uint32_t kFlows = 1u << 28;
constexpr std::uint16_t kBaseSport = 1024;
constexpr std::uint32_t kPortsPerAddr = 65536 - kBaseSport;
// As bench_wire: as many frames per test run as the kernel takes; the run is
// ended by a signal (each run costs an RCU grace period to start).
constexpr int kRepeatPerRun = INT_MAX;

struct Options {
  std::string obj, netns, dev, src_mac, dst_mac, src, dst;
  std::uint16_t dport = 0;
  std::uint64_t frames = 0;
  double min_s = 0, max_s = 60;
  int cpu = -1;
};

std::string errno_text(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

[[noreturn]] void usage(const std::string& why) {
  throw std::runtime_error(why +
                           "\nusage: syn_flood --obj WIRE_GEN_BPF_O --netns NS --dev IF "
                           "--src-mac MAC --dst-mac MAC --src A.B.C.D --dst A.B.C.D --dport P "
                           "[--frames N --min-s S] [--max-s S] [--cpu C]");
}

Options parse_args(int argc, char** argv) {
  Options o;
  const std::map<std::string, std::function<void(const std::string&)>> setters = {
      {"--obj", [&](const std::string& v) { o.obj = v; }},
      {"--netns", [&](const std::string& v) { o.netns = v; }},
      {"--dev", [&](const std::string& v) { o.dev = v; }},
      {"--src-mac", [&](const std::string& v) { o.src_mac = v; }},
      {"--dst-mac", [&](const std::string& v) { o.dst_mac = v; }},
      {"--src", [&](const std::string& v) { o.src = v; }},
      {"--dst", [&](const std::string& v) { o.dst = v; }},
      {"--dport",
       [&](const std::string& v) { o.dport = static_cast<std::uint16_t>(std::stoul(v)); }},
      {"--frames", [&](const std::string& v) { o.frames = std::stoull(v); }},
      {"--min-s", [&](const std::string& v) { o.min_s = std::stod(v); }},
      {"--max-s", [&](const std::string& v) { o.max_s = std::stod(v); }},
      {"--cpu", [&](const std::string& v) { o.cpu = std::stoi(v); }},
  };
  ballast::bench::apply_options(argc, argv, setters, usage);
  if (o.obj.empty() || o.netns.empty() || o.dev.empty() || o.src_mac.empty() || o.dst_mac.empty() ||
      o.src.empty() || o.dst.empty() || !o.dport)
    usage("--obj, --netns, --dev, --src-mac, --dst-mac, --src, --dst and --dport are required");
  if (o.max_s <= 0 || o.min_s > o.max_s) usage("need 0 <= --min-s <= --max-s, --max-s > 0");
  return o;
}

std::array<std::uint8_t, ETH_ALEN> parse_mac(const std::string& text) {
  std::array<unsigned, ETH_ALEN> b{};
  char tail = 0;
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                  &tail) != ETH_ALEN)
    throw std::runtime_error("not a MAC address: " + text);
  std::array<std::uint8_t, ETH_ALEN> mac{};
  for (int i = 0; i < ETH_ALEN; i++) {
    if (b[i] > 0xff) throw std::runtime_error("not a MAC address: " + text);
    mac[i] = static_cast<std::uint8_t>(b[i]);
  }
  return mac;
}

in_addr parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1)
    throw std::runtime_error("not an IPv4 address: " + text);
  return a;
}

// --- The SYN template ----------------------------------------------------------

// One's complement sum of @len bytes as 16-bit words in memory order.
std::uint32_t csum_add(std::uint32_t sum, const void* data, std::size_t len) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::size_t i = 0; i + 1 < len; i += 2) {
    std::uint16_t w;
    std::memcpy(&w, p + i, 2);
    sum += w;
  }
  if (len % 2) sum += p[len - 1];  // little-endian host: the byte is the word's first
  return sum;
}

std::uint16_t csum_fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

// A SYN as a client's kernel sends one (MSS, SACK permitted), from @src port
// kBaseSport to @dst:@dport, with both checksums right: wire_gen keeps them
// right as it changes the source.
std::vector<std::uint8_t> syn_template(const std::array<std::uint8_t, ETH_ALEN>& src_mac,
                                       const std::array<std::uint8_t, ETH_ALEN>& dst_mac,
                                       in_addr src, in_addr dst, std::uint16_t dport) {
  static constexpr std::uint8_t kOptions[] = {2, 4, 0x05, 0xb4, 1, 1, 4, 2};  // MSS 1460, SACK
  ethhdr eth{};
  std::memcpy(eth.h_dest, dst_mac.data(), ETH_ALEN);
  std::memcpy(eth.h_source, src_mac.data(), ETH_ALEN);
  eth.h_proto = htons(ETH_P_IP);

  const std::size_t tcp_len = sizeof(tcphdr) + sizeof(kOptions);
  iphdr ip{};
  ip.version = 4;
  ip.ihl = 5;
  ip.tot_len = htons(static_cast<std::uint16_t>(sizeof(iphdr) + tcp_len));
  ip.id = htons(1);
  ip.frag_off = htons(0x4000);  // DF
  ip.ttl = 64;
  ip.protocol = IPPROTO_TCP;
  ip.saddr = src.s_addr;
  ip.daddr = dst.s_addr;
  ip.check = csum_fold(csum_add(0, &ip, sizeof(ip)));

  tcphdr tcp{};
  tcp.source = htons(kBaseSport);
  tcp.dest = htons(dport);
  tcp.seq = htonl(0x5f3759df);
  tcp.doff = static_cast<std::uint16_t>(tcp_len / 4);
  tcp.syn = 1;
  tcp.window = htons(64240);
  const struct {
    std::uint32_t saddr, daddr;
    std::uint8_t zero, proto;
    std::uint16_t len;
  } pseudo = {ip.saddr, ip.daddr, 0, IPPROTO_TCP, htons(static_cast<std::uint16_t>(tcp_len))};
  std::uint32_t sum = csum_add(0, &pseudo, sizeof(pseudo));
  sum = csum_add(sum, &tcp, sizeof(tcp));
  sum = csum_add(sum, kOptions, sizeof(kOptions));
  tcp.check = csum_fold(sum);

  std::vector<std::uint8_t> frame(sizeof(eth) + sizeof(ip) + tcp_len);
  std::uint8_t* p = frame.data();
  std::memcpy(p, &eth, sizeof(eth));
  std::memcpy(p += sizeof(eth), &ip, sizeof(ip));
  std::memcpy(p += sizeof(ip), &tcp, sizeof(tcp));
  std::memcpy(p + sizeof(tcp), kOptions, sizeof(kOptions));
  return frame;
}

// --- The generator program -----------------------------------------------------

struct ObjectDeleter {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectDeleter>;

// The load-time options (const volatiles in .rodata) of an opened, not yet
// loaded object: each found by name in the object's BTF, written into a copy
// of the section, which apply() hands back to libbpf.
class Rodata {
 public:
  explicit Rodata(bpf_object* obj) : obj_(obj) {
    bpf_map* map;
    bpf_object__for_each_map(map, obj) {
      const std::string n = bpf_map__name(map);
      if (bpf_map__is_internal(map) && n.ends_with(".rodata")) map_ = map;
    }
    std::size_t size = 0;
    const void* initial = map_ ? bpf_map__initial_value(map_, &size) : nullptr;
    if (!initial || !bpf_object__btf(obj))
      throw std::runtime_error("wire_gen: no .rodata or no BTF in the object");
    data_.assign(static_cast<const std::uint8_t*>(initial),
                 static_cast<const std::uint8_t*>(initial) + size);
  }

  void set(const std::string& name, const void* value, std::size_t size) {
    const btf* btf = bpf_object__btf(obj_);
    const int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
    if (sec_id < 0) throw std::runtime_error("wire_gen: no .rodata section in its BTF");
    const btf_type* sec = btf__type_by_id(btf, sec_id);
    const btf_var_secinfo* vars = btf_var_secinfos(sec);
    for (int i = 0; i < btf_vlen(sec); i++) {
      const btf_type* var = btf__type_by_id(btf, vars[i].type);
      if (name != btf__name_by_offset(btf, var->name_off)) continue;
      if (vars[i].size != size || vars[i].offset + size > data_.size())
        throw std::runtime_error("wire_gen: option " + name + " is " +
                                 std::to_string(vars[i].size) + " bytes, " + std::to_string(size) +
                                 " given");
      std::memcpy(data_.data() + vars[i].offset, value, size);
      return;
    }
    throw std::runtime_error("wire_gen: no option " + name + " (an older wire_gen.bpf.o?)");
  }

  template <typename T>
  void set(const std::string& name, T value) {
    set(name, &value, sizeof(value));
  }

  void apply() {
    if (int err = bpf_map__set_initial_value(map_, data_.data(), data_.size()))
      throw std::runtime_error(errno_text("wire_gen: setting its options", -err));
  }

 private:
  bpf_object* obj_;
  bpf_map* map_ = nullptr;
  std::vector<std::uint8_t> data_;
};

// --- Running it ----------------------------------------------------------------

std::atomic<bool> g_stop_requested{false};

// SIGUSR1 ends the generator's test run (the kernel checks for a pending
// signal between batches and returns EINTR); the handler has nothing to do.
void on_usr1(int) {}
void on_term(int) { g_stop_requested = true; }

std::uint64_t frames_sent(int map_fd, std::vector<std::uint64_t>& percpu) {
  const std::uint32_t key = 0;
  if (bpf_map_lookup_elem(map_fd, &key, percpu.data()) < 0)
    throw std::runtime_error(errno_text("reading wire_gen's sent counter", errno));
  std::uint64_t n = 0;
  for (auto v : percpu) n += v;
  return n;
}

int run(const Options& o) {
  const auto src_mac = parse_mac(o.src_mac), dst_mac = parse_mac(o.dst_mac);
  const in_addr src = parse_ipv4(o.src), dst = parse_ipv4(o.dst);

  // This thread's namespace is the one the generator's thread inherits, and
  // the one the test run's ifindex is resolved in.
  {
    const ballast::UniqueFd ns(::open(("/run/netns/" + o.netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) throw std::runtime_error(errno_text("opening netns " + o.netns, errno));
    if (setns(ns.get(), CLONE_NEWNET) < 0)
      throw std::runtime_error(errno_text("entering netns " + o.netns, errno));
  }
  const int ifindex = static_cast<int>(if_nametoindex(o.dev.c_str()));
  if (!ifindex) throw std::runtime_error(errno_text(o.netns + " " + o.dev, errno));

  ObjectPtr obj(bpf_object__open_file(o.obj.c_str(), nullptr));
  if (!obj) throw std::runtime_error(errno_text("opening " + o.obj, errno));
  Rodata options(obj.get());
  options.set<std::uint32_t>("flows", kFlows);
  options.set<std::uint32_t>("ports_per_addr", kPortsPerAddr);
  options.set<std::uint32_t>("base_saddr", ntohl(src.s_addr));
  options.set<std::uint16_t>("base_sport", kBaseSport);
  options.set<std::uint32_t>("verdict", XDP_TX);
  options.set<std::uint8_t>("l4_proto", IPPROTO_TCP);
  options.set("dst_mac", dst_mac.data(), ETH_ALEN);
  options.set("src_mac", src_mac.data(), ETH_ALEN);
  options.apply();
  if (bpf_object__load(obj.get())) throw std::runtime_error(errno_text("loading wire_gen", errno));
  bpf_program* prog = bpf_object__find_program_by_name(obj.get(), "wire_gen");
  bpf_map* sent = bpf_object__find_map_by_name(obj.get(), "sent");
  if (!prog || !sent) throw std::runtime_error("wire_gen: no program wire_gen or map sent");
  const int prog_fd = bpf_program__fd(prog), sent_fd = bpf_map__fd(sent);
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) throw std::runtime_error("libbpf_num_possible_cpus failed");
  std::vector<std::uint64_t> percpu(ncpus);
  const int cpu = o.cpu >= 0 ? o.cpu : static_cast<int>(std::thread::hardware_concurrency()) - 1;

  const std::vector<std::uint8_t> frame = syn_template(src_mac, dst_mac, src, dst, o.dport);
  struct sigaction sa {};
  sa.sa_handler = on_usr1;  // no SA_RESTART: the interrupted bpf() call must return
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, nullptr) < 0)
    throw std::runtime_error(errno_text("sigaction(SIGUSR1)", errno));
  sa.sa_handler = on_term;
  if (sigaction(SIGTERM, &sa, nullptr) < 0 || sigaction(SIGINT, &sa, nullptr) < 0)
    throw std::runtime_error(errno_text("sigaction(SIGTERM)", errno));

  std::atomic<bool> stop{false}, done{false};
  std::string error;
  std::thread gen([&] {
    if (int err = ballast::bench::pin_this_thread(cpu))
      error = errno_text("pinning the generator to CPU " + std::to_string(cpu), err);
    else if (int err =
                 ballast::bench::send_live_frames(prog_fd, frame, ifindex, kRepeatPerRun, stop))
      error = errno_text("BPF_PROG_TEST_RUN (live frames) out of " + o.dev, err);
    done = true;
  });

  // Stops the generator however this function ends. The signal is repeated:
  // one sent just before the thread enters the kernel ends nothing.
  auto end_generator = [&] {
    stop = true;
    while (!done) {
      pthread_kill(gen.native_handle(), SIGUSR1);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (gen.joinable()) gen.join();
  };
  struct Finally {
    std::function<void()> f;
    ~Finally() { f(); }
  } stop_generator{end_generator};

  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::string stopped_by = "max_s";
  bool said = false;
  std::uint64_t n = 0;
  while (!done && elapsed() < o.max_s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    n = frames_sent(sent_fd, percpu);
    if (n && !said) {
      std::printf("flooding\n");
      std::fflush(stdout);
      said = true;
    }
    if (g_stop_requested) {
      stopped_by = "signal";
      break;
    }
    if (o.frames && n >= o.frames && elapsed() >= o.min_s) {
      stopped_by = "frames";
      break;
    }
  }
  end_generator();
  const double s = elapsed();
  if (!error.empty()) throw std::runtime_error(error);
  n = frames_sent(sent_fd, percpu);
  std::printf(
      "{\"generated\": %llu, \"elapsed_s\": %.3f, \"rate_pps\": %.0f, \"flows\": %u, \"cpu\": %d, "
      "\"stopped_by\": \"%s\"}\n",
      static_cast<unsigned long long>(n), s, n / s, kFlows, cpu, stopped_by.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "syn_flood: %s\n", e.what());
    return 1;
  }
}
