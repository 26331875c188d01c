// balancer_fixture.cpp: loading, seeding and running the balancer for tests.
#include "balancer_fixture.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <system_error>

#include "balancer.skel.h"
#include "conn_hash.h"
#include "fd.h"
#include "jhash.h"

namespace ballast::test {

namespace {

// Room past the input frame for the program to grow it (the largest growth
// is an IPv6 GUE header, 48 bytes, or a "too big" reply); the kernel fails
// the run with ENOSPC rather than truncate.
constexpr std::size_t out_frame_slack = 256;
constexpr std::uint16_t default_mtu = 1500;
// The interface the program runs on, as far as egress[0] says: any nonzero
// ifindex marks the slot used; 1 (lo) always exists.
constexpr std::uint32_t default_ifindex = 1;

[[noreturn]] void fail(int negative_errno, const std::string& step) {
  throw std::system_error(-negative_errno, std::generic_category(), step);
}

void add(ballast_reason_counters& total, const ballast_reason_counters& cpu) {
  total.packets += cpu.packets;
  total.bytes += cpu.bytes;
}

void add(ballast_fleet_counters& total, const ballast_fleet_counters& cpu) {
  total.pickups += cpu.pickups;
  total.second_chance += cpu.second_chance;
}

void add(ballast_conn_counters& total, const ballast_conn_counters& cpu) {
  total.recorded += cpu.recorded;
  total.replaced_embryonic += cpu.replaced_embryonic;
  total.replaced_idle += cpu.replaced_idle;
  total.unrecorded += cpu.unrecorded;
}

void add(ballast_traffic_counters& total, const ballast_traffic_counters& cpu) {
  total.packets += cpu.packets;
  total.bytes += cpu.bytes;
  total.new_flows += cpu.new_flows;
}

// Per-CPU values come back one per possible CPU, each rounded up to 8 bytes.
template <typename Counters>
Counters sum_per_cpu(int map_fd, const char* map_name, std::uint32_t key) {
  static_assert(sizeof(Counters) % 8 == 0, "per-CPU values are 8-byte aligned");
  const int cpus = libbpf_num_possible_cpus();
  if (cpus < 0) fail(cpus, "libbpf_num_possible_cpus");
  std::vector<Counters> per_cpu(static_cast<std::size_t>(cpus));
  if (int err = bpf_map_lookup_elem(map_fd, &key, per_cpu.data()); err)
    fail(err, std::string("bpf_map_lookup_elem(") + map_name + ")");
  Counters total{};
  for (const Counters& cpu : per_cpu) add(total, cpu);
  return total;
}

#define BALLAST_REASON_NAME(name, str, verdict) str,
constexpr const char* reason_names[] = {BALLAST_REASONS(BALLAST_REASON_NAME)};
#undef BALLAST_REASON_NAME
static_assert(std::size(reason_names) == BALLAST_REASON_COUNT);

}  // namespace

RunResult test_run(int prog_fd, std::span<const std::uint8_t> frame, std::uint32_t repeat) {
  RunResult result;
  result.frame.resize(frame.size() + out_frame_slack);
  // Every field, in declaration order: C++20 designated initializers must
  // follow it, and GCC's -Wextra flags any field left out.
  bpf_test_run_opts opts{
      .sz = sizeof(opts),
      .data_in = frame.data(),
      .data_out = result.frame.data(),
      .data_size_in = static_cast<std::uint32_t>(frame.size()),
      .data_size_out = static_cast<std::uint32_t>(result.frame.size()),
      .ctx_in = nullptr,
      .ctx_out = nullptr,
      .ctx_size_in = 0,
      .ctx_size_out = 0,
      .retval = 0,
      .repeat = static_cast<int>(repeat),
      .duration = 0,
      .flags = 0,
      .cpu = 0,
      .batch_size = 0,
  };
  result.error = bpf_prog_test_run_opts(prog_fd, &opts);
  result.action = opts.retval;
  result.duration_ns = opts.duration;
  result.frame.resize(result.error ? 0 : opts.data_size_out);
  return result;
}

ballast_egress default_egress(MacAddr lb_mac, Ipv4Addr lb_ip4) {
  ballast_egress egress{};
  egress.ifindex = default_ifindex;
  std::copy(lb_mac.begin(), lb_mac.end(), egress.mac);
  egress.mtu = default_mtu;
  egress.src4 = lb_ip4.be32();
  std::memcpy(egress.src6, v6_lb.octets.data(), sizeof(egress.src6));
  return egress;
}

BalancerHarness::BalancerHarness(MacAddr lb_mac, Ipv4Addr lb_ip4) {
  skel_ = balancer::open();
  if (!skel_) fail(-errno, "balancer::open");
  // BPF_PROG_TEST_RUN refuses device-bound programs: the one for any device
  // (balancer.bpf.c), and only it (the bound one loads only bound).
  bpf_program__set_autoload(skel_->progs.ballast_xdp, false);
  if (int err = balancer::load(skel_); err) {
    balancer::destroy(skel_);
    fail(err, "balancer::load");
  }
  try {
    set_egress(0, default_egress(lb_mac, lb_ip4));
  } catch (...) {
    balancer::destroy(skel_);
    throw;
  }
}

BalancerHarness::~BalancerHarness() { balancer::destroy(skel_); }

int BalancerHarness::map_fd(const char* name) const {
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
  if (!map) fail(-ENOENT, std::string("the balancer has no map ") + name);
  return bpf_map__fd(map);
}

void BalancerHarness::add_vip(const ballast_vip_key& key, std::uint32_t vip_id, std::uint32_t flags,
                              std::uint16_t gue_port_host_order) {
  const ballast_vip_info info{
      .vip_id = vip_id, .flags = flags, .gue_port = htons(gue_port_host_order), .pad = 0};
  // As ballastd does (BpfDataPlane::put_vip): the address's bit in the VIP
  // filter, the id's entry, then the key.
  set_vip_filter_bit(key.addr, true);
  if (key.port != 0) {
    const ballast_vip_entry entry{.key = key, .info = info};
    if (int err = bpf_map_update_elem(map_fd("vip_by_id"), &vip_id, &entry, BPF_ANY); err)
      fail(err, "bpf_map_update_elem(vip_by_id)");
  }
  if (int err = bpf_map_update_elem(map_fd("vips"), &key, &info, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(vips)");
}

void BalancerHarness::set_vip_filter_bit(const ballast_addr& addr, bool set) {
  const std::uint32_t bit = ballast_vip_filter_bit(&addr), word = bit >> 6;
  std::uint64_t bits = 0;
  if (int err = bpf_map_lookup_elem(map_fd("vip_filter"), &word, &bits); err)
    fail(err, "bpf_map_lookup_elem(vip_filter)");
  const std::uint64_t mask = std::uint64_t{1} << (bit & 63);
  bits = set ? bits | mask : bits & ~mask;
  if (int err = bpf_map_update_elem(map_fd("vip_filter"), &word, &bits, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(vip_filter)");
}

ballast_vip_entry BalancerHarness::vip_entry(std::uint32_t vip_id) const {
  ballast_vip_entry entry{};
  if (int err = bpf_map_lookup_elem(map_fd("vip_by_id"), &vip_id, &entry); err)
    fail(err, "bpf_map_lookup_elem(vip_by_id)");
  return entry;
}

void BalancerHarness::set_vip_entry(std::uint32_t vip_id, const ballast_vip_entry& entry) {
  if (int err = bpf_map_update_elem(map_fd("vip_by_id"), &vip_id, &entry, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(vip_by_id)");
}

void BalancerHarness::set_egress(std::uint32_t egress_id, const ballast_egress& egress) {
  if (int err = bpf_map_update_elem(map_fd("egress"), &egress_id, &egress, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(egress)");
}

ballast_egress BalancerHarness::egress(std::uint32_t egress_id) const {
  ballast_egress egress{};
  if (int err = bpf_map_lookup_elem(map_fd("egress"), &egress_id, &egress); err)
    fail(err, "bpf_map_lookup_elem(egress)");
  return egress;
}

void BalancerHarness::set_tx_port(std::uint32_t egress_id, std::uint32_t ifindex) {
  const int fd = map_fd("tx_ports");
  // A devmap value is the ifindex, optionally followed by a program fd
  // (struct bpf_devmap_val); zero there means "no program".
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, "tx_ports");
  std::vector<std::uint8_t> value(bpf_map__value_size(map), 0);
  if (value.size() < sizeof(ifindex)) fail(-EINVAL, "tx_ports: value smaller than an ifindex");
  std::memcpy(value.data(), &ifindex, sizeof(ifindex));
  if (int err = bpf_map_update_elem(fd, &egress_id, value.data(), BPF_ANY); err)
    fail(err, "bpf_map_update_elem(tx_ports)");
}

void BalancerHarness::set_backend(std::uint32_t backend_id, const ballast_backend& slot) {
  if (int err = bpf_map_update_elem(map_fd("backends"), &backend_id, &slot, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(backends)");
}

ballast_backend BalancerHarness::backend(std::uint32_t backend_id) const {
  ballast_backend slot{};
  if (int err = bpf_map_lookup_elem(map_fd("backends"), &backend_id, &slot); err)
    fail(err, "bpf_map_lookup_elem(backends)");
  return slot;
}

void BalancerHarness::install_maglev_table(std::uint32_t vip_id,
                                           std::span<const std::uint32_t> entries) {
  install_table_in("maglev_tables", vip_id, entries);
}

void BalancerHarness::install_previous_table(std::uint32_t vip_id,
                                             std::span<const std::uint32_t> entries) {
  install_table_in("maglev_prev_tables", vip_id, entries);
}

void BalancerHarness::install_table_in(const char* outer, std::uint32_t vip_id,
                                       std::span<const std::uint32_t> entries) {
  if (entries.size() != BALLAST_MAGLEV_SIZE)
    throw std::invalid_argument(
        "install_maglev_table: a table has BALLAST_MAGLEV_SIZE entries, got " +
        std::to_string(entries.size()));
  // Key, value and size must match the inner map declared in maps.h, or
  // the kernel refuses the fd in maglev_tables.
  ballast::UniqueFd table(bpf_map_create(BPF_MAP_TYPE_ARRAY, "maglev_table", sizeof(std::uint32_t),
                                         sizeof(std::uint32_t), BALLAST_MAGLEV_SIZE, nullptr));
  if (table.get() < 0) fail(table.get(), "bpf_map_create(maglev_table)");

  std::vector<std::uint32_t> keys(entries.size());
  for (std::uint32_t i = 0; i < keys.size(); i++) keys[i] = i;
  auto count = static_cast<std::uint32_t>(entries.size());
  if (int err = bpf_map_update_batch(table.get(), keys.data(), entries.data(), &count, nullptr);
      err)
    fail(err, "bpf_map_update_batch(maglev_table)");

  // The outer map holds its own reference; ours closes with `table`.
  const int table_fd = table.get();
  if (int err = bpf_map_update_elem(map_fd(outer), &vip_id, &table_fd, BPF_ANY); err)
    fail(err, std::string("bpf_map_update_elem(") + outer + ")");
}

std::uint64_t coarse_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::uint64_t(ts.tv_sec) * 1000000000ull + std::uint64_t(ts.tv_nsec);
}

ConnPlace conn_place(const ballast_flow_key& flow) {
  const std::uint64_t hash = ballast_conn_hash(&flow);
  return ConnPlace{.bucket_a = ballast_conn_bucket_a(hash),
                   .bucket_b = ballast_conn_bucket_b(hash),
                   .fingerprint = ballast_conn_fingerprint(hash)};
}

ballast_conn_bucket BalancerHarness::conn_bucket(std::uint32_t index) const {
  ballast_conn_bucket bucket{};
  if (int err = bpf_map_lookup_elem(map_fd("conn_table"), &index, &bucket); err)
    fail(err, "bpf_map_lookup_elem(conn_table)");
  return bucket;
}

void BalancerHarness::set_conn_bucket(std::uint32_t index, const ballast_conn_bucket& bucket) {
  if (int err = bpf_map_update_elem(map_fd("conn_table"), &index, &bucket, BPF_ANY); err)
    fail(err, "bpf_map_update_elem(conn_table)");
}

std::optional<ConnEntry> BalancerHarness::conn(const ballast_flow_key& flow) const {
  const std::uint64_t hash = ballast_conn_hash(&flow);
  const std::uint64_t fp = ballast_conn_fingerprint(hash);
  const std::uint32_t buckets[2] = {ballast_conn_bucket_a(hash), ballast_conn_bucket_b(hash)};
  for (int which = 0; which < 2; which++) {
    const ballast_conn_bucket bucket = conn_bucket(buckets[which]);
    for (int i = 0; i < BALLAST_CONN_WAYS; i++) {
      const ballast_conn_way& way = bucket.way[i];
      if ((way.tag & BALLAST_CONN_FP_MASK) != fp) continue;
      return ConnEntry{.backend_id = static_cast<std::uint32_t>(way.tag & BALLAST_CONN_ID_MASK),
                       .seen = way.seen,
                       .flags = way.flags,
                       .bucket = buckets[which],
                       .way = i,
                       .in_second_bucket = which == 1};
    }
  }
  return std::nullopt;
}

void BalancerHarness::set_conn(const ballast_flow_key& flow, std::uint32_t backend_id,
                               std::uint32_t flags, std::uint64_t seen_ns) {
  const std::uint64_t hash = ballast_conn_hash(&flow);
  const std::uint64_t tag = ballast_conn_fingerprint(hash) | backend_id;
  const std::uint32_t seen =
      static_cast<std::uint32_t>((seen_ns ? seen_ns : coarse_now_ns()) >> BALLAST_CONN_SEEN_SHIFT);
  auto write = [&](std::uint32_t index, int way) {
    ballast_conn_bucket bucket = conn_bucket(index);
    bucket.way[way] = ballast_conn_way{.tag = tag, .seen = seen, .flags = flags};
    set_conn_bucket(index, bucket);
  };
  if (const auto found = conn(flow)) return write(found->bucket, found->way);
  // conn_table.h, conn_place: the first bucket while it has two empty ways
  // or more, else the one with more (the first on a tie).
  struct Empty {
    std::uint32_t index;
    int count = 0, first = -1;
  };
  auto empty_ways = [&](std::uint32_t index) {
    Empty e{.index = index};
    const ballast_conn_bucket bucket = conn_bucket(index);
    for (int i = 0; i < BALLAST_CONN_WAYS; i++)
      if (bucket.way[i].tag == 0 && e.count++ == 0) e.first = i;
    return e;
  };
  const Empty a = empty_ways(ballast_conn_bucket_a(hash));
  if (a.count >= 2) return write(a.index, a.first);
  const Empty b = empty_ways(ballast_conn_bucket_b(hash));
  if (b.count > a.count) return write(b.index, b.first);
  if (a.count) return write(a.index, a.first);
  throw std::runtime_error("set_conn: both of the flow's buckets are full");
}

void BalancerHarness::forget_flow(const ballast_flow_key& flow) {
  const auto found = conn(flow);
  if (!found) return;
  ballast_conn_bucket bucket = conn_bucket(found->bucket);
  bucket.way[found->way] = ballast_conn_way{};
  set_conn_bucket(found->bucket, bucket);
}

RunResult BalancerHarness::run(std::span<const std::uint8_t> frame, std::uint32_t repeat) const {
  return test_run(program_fd(), frame, repeat);
}

int BalancerHarness::program_fd() const { return bpf_program__fd(skel_->progs.ballast_xdp_any); }

ballast_reason_counters BalancerHarness::reason_counters(ballast_reason reason) const {
  return sum_per_cpu<ballast_reason_counters>(map_fd("reason_stats"), "reason_stats", reason);
}

ballast_traffic_counters BalancerHarness::vip_counters(std::uint32_t vip_id) const {
  return sum_per_cpu<ballast_traffic_counters>(map_fd("vip_stats"), "vip_stats", vip_id);
}

ballast_conn_counters BalancerHarness::conn_counters() const {
  return sum_per_cpu<ballast_conn_counters>(map_fd("conn_stats"), "conn_stats", 0);
}

ballast_fleet_counters BalancerHarness::fleet_counters(std::uint32_t vip_id) const {
  return sum_per_cpu<ballast_fleet_counters>(map_fd("vip_fleet_stats"), "vip_fleet_stats", vip_id);
}

ballast_traffic_counters BalancerHarness::backend_counters(std::uint32_t backend_id) const {
  return sum_per_cpu<ballast_traffic_counters>(map_fd("backend_stats"), "backend_stats",
                                               backend_id);
}

ballast_vip_key vip_key_v4(Ipv4Addr addr, std::uint16_t port, std::uint8_t proto) {
  ballast_vip_key key{};
  key.addr.v4 = addr.be32();
  key.port = htons(port);
  key.proto = proto;
  key.family = BALLAST_AF_INET;
  return key;
}

ballast_backend backend_slot_v4(Ipv4Addr addr, MacAddr mac, std::uint32_t vip_id,
                                std::uint32_t flags) {
  ballast_backend slot{};
  slot.addr.v4 = addr.be32();
  std::copy(mac.begin(), mac.end(), slot.mac);
  slot.family = BALLAST_AF_INET;
  slot.flags = flags;
  slot.vip_id = vip_id;
  return slot;
}

ballast_flow_key flow_key_v4(Ipv4Addr src, std::uint16_t sport, Ipv4Addr dst, std::uint16_t dport,
                             std::uint8_t proto) {
  ballast_flow_key flow{};
  flow.src.v4 = src.be32();
  flow.dst.v4 = dst.be32();
  flow.sport = htons(sport);
  flow.dport = htons(dport);
  flow.proto = proto;
  flow.family = BALLAST_AF_INET;
  return flow;
}

ballast_vip_key vip_key_v6(const Ipv6Addr& addr, std::uint16_t port, std::uint8_t proto) {
  ballast_vip_key key{};
  std::memcpy(key.addr.bytes, addr.octets.data(), sizeof(key.addr.bytes));
  key.port = htons(port);
  key.proto = proto;
  key.family = BALLAST_AF_INET6;
  return key;
}

ballast_backend backend_slot_v6(const Ipv6Addr& addr, MacAddr mac, std::uint32_t vip_id,
                                std::uint32_t flags) {
  ballast_backend slot{};
  std::memcpy(slot.addr.bytes, addr.octets.data(), sizeof(slot.addr.bytes));
  std::copy(mac.begin(), mac.end(), slot.mac);
  slot.family = BALLAST_AF_INET6;
  slot.flags = flags;
  slot.vip_id = vip_id;
  return slot;
}

ballast_flow_key flow_key_v6(const Ipv6Addr& src, std::uint16_t sport, const Ipv6Addr& dst,
                             std::uint16_t dport, std::uint8_t proto) {
  ballast_flow_key flow{};
  std::memcpy(flow.src.bytes, src.octets.data(), sizeof(flow.src.bytes));
  std::memcpy(flow.dst.bytes, dst.octets.data(), sizeof(flow.dst.bytes));
  flow.sport = htons(sport);
  flow.dport = htons(dport);
  flow.proto = proto;
  flow.family = BALLAST_AF_INET6;
  return flow;
}

std::uint32_t flow_hash(const ballast_flow_key& flow) {
  // select.h: an IPv4 flow's addresses and ports (3 words), an IPv6 flow's
  // (the key's first 9 words), seeded with the protocol.
  static_assert(offsetof(ballast_flow_key, dport) == offsetof(ballast_flow_key, sport) + 2);
  static_assert(offsetof(ballast_flow_key, sport) == 9 * 4 - 4);
  std::uint32_t ports;
  std::memcpy(&ports, &flow.sport, sizeof(ports));
  if (flow.family == BALLAST_AF_INET) {
    const std::uint32_t words[3] = {flow.src.v4, flow.dst.v4, ports};
    return ballast_jhash2(words, 3, flow.proto);
  }
  std::uint32_t words[9];
  std::memcpy(words, &flow, sizeof(words));
  return ballast_jhash2(words, 9, flow.proto);
}

std::uint32_t maglev_index(const ballast_flow_key& flow) {
  return flow_hash(flow) % BALLAST_MAGLEV_SIZE;
}

std::vector<std::uint32_t> round_robin_table(std::span<const std::uint32_t> backend_ids) {
  std::vector<std::uint32_t> table(BALLAST_MAGLEV_SIZE, BALLAST_NO_BACKEND);
  if (!backend_ids.empty())
    for (std::size_t i = 0; i < table.size(); i++) table[i] = backend_ids[i % backend_ids.size()];
  return table;
}

std::optional<std::string> frame_mismatch(std::span<const std::uint8_t> expected,
                                          std::span<const std::uint8_t> actual) {
  auto [exp_it, act_it] =
      std::mismatch(expected.begin(), expected.end(), actual.begin(), actual.end());
  if (exp_it == expected.end() && act_it == actual.end()) return std::nullopt;
  const auto offset = static_cast<std::size_t>(exp_it - expected.begin());
  return "frames differ at offset " + std::to_string(offset) + " (expected " +
         std::to_string(expected.size()) + " bytes, got " + std::to_string(actual.size()) +
         ")\nexpected:\n" + hex_dump(expected) + "actual:\n" + hex_dump(actual);
}

MacAddr dst_mac_of(std::span<const std::uint8_t> frame) {
  MacAddr mac{};
  if (frame.size() >= mac.size()) std::copy_n(frame.begin(), mac.size(), mac.begin());
  return mac;
}

const char* action_name(std::uint32_t action) {
  switch (action) {
    case XDP_ABORTED:
      return "XDP_ABORTED";
    case XDP_DROP:
      return "XDP_DROP";
    case XDP_PASS:
      return "XDP_PASS";
    case XDP_TX:
      return "XDP_TX";
    case XDP_REDIRECT:
      return "XDP_REDIRECT";
    default:
      return "(unknown XDP action)";
  }
}

const char* reason_name(ballast_reason reason) {
  return reason < BALLAST_REASON_COUNT ? reason_names[reason] : "(unknown reason)";
}

}  // namespace ballast::test
