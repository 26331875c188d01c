// decap_fuzz.cpp: libFuzzer target for the backends' decap program
// (bpf/decap.bpf.c), each input one Ethernet frame through
// BPF_PROG_TEST_RUN, with v4_vip_one and v6_vip_one as the host's VIPs and
// GUE on port_gue. On every input:
//   - the program passes the frame (it never drops or sends: what it does
//     not strip, the kernel sees as it came);
//   - exactly one decap reason counter moves, by one;
//   - a frame not counted as decapsulated leaves unchanged;
//   - a decapsulated one is the input's MACs, the inner family's
//     EtherType, then the packet that followed the outer IP header (and,
//     for GUE, its UDP header) to the end of the outer packet, and that
//     packet is addressed to one of the host's VIPs.
// Seeds: tests/fuzz/corpus/decap/ (build/fuzz/packet_seeds writes them).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "ballast_abi.h"
#include "fuzz_checks.h"
#include "balancer_fixture.h"
#include "decap.skel.h"
#include "packet_builder.h"

namespace {

using namespace ballast::test;

[[noreturn]] void fail_setup(const char* what) {
  std::fprintf(stderr, "decap_fuzz: %s failed\n", what);
  std::abort();
}

struct DecapWorld {
  decap* skel = nullptr;
  int prog = -1, stats = -1;

  DecapWorld() {
    skel = decap::open_and_load();
    if (!skel) fail_setup("decap::open_and_load");
    prog = bpf_program__fd(skel->progs.ballast_decap);
    stats = bpf_map__fd(bpf_object__find_map_by_name(skel->obj, "decap_stats"));
    const bpf_map* vips = bpf_object__find_map_by_name(skel->obj, "decap_vips");
    auto add = [&](std::uint8_t family, const std::uint8_t* addr, std::size_t len) {
      ballast_decap_vip key{};
      std::memcpy(key.addr.bytes, addr, len);
      key.family = family;
      std::vector<std::uint8_t> value(bpf_map__value_size(vips), 0);
      value.at(0) = 1;
      if (bpf_map_update_elem(bpf_map__fd(vips), &key, value.data(), BPF_ANY) != 0)
        fail_setup("decap_vips update");
    };
    add(BALLAST_AF_INET, v4_vip_one.octets.data(), 4);
    add(BALLAST_AF_INET6, v6_vip_one.octets.data(), 16);
    const std::uint32_t zero = 0;
    ballast_decap_config config{};
    config.gue_port = htons(port_gue);
    if (bpf_map_update_elem(bpf_map__fd(bpf_object__find_map_by_name(skel->obj, "decap_config")),
                            &zero, &config, BPF_ANY) != 0)
      fail_setup("decap_config update");
  }

  std::array<std::uint64_t, BALLAST_DECAP_REASON_COUNT> counted() const {
    std::array<std::uint64_t, BALLAST_DECAP_REASON_COUNT> out{};
    std::vector<ballast_reason_counters> per_cpu(
        static_cast<std::size_t>(libbpf_num_possible_cpus()));
    for (std::uint32_t r = 0; r < BALLAST_DECAP_REASON_COUNT; ++r) {
      if (bpf_map_lookup_elem(stats, &r, per_cpu.data()) != 0) fail_setup("decap_stats lookup");
      for (const auto& c : per_cpu) out[r] += c.packets;
    }
    return out;
  }
};

// What the program did, as coverage libFuzzer can see (it cannot see the
// BPF program's own): reason, outer EtherType and protocol, length change.
__attribute__((used, section("__libfuzzer_extra_counters"))) std::uint8_t
    behaviour_counters[1 << 12];

void count_behaviour(int reason, const Bytes& in, const Bytes& out) {
  std::uint32_t h = static_cast<std::uint32_t>(reason) * 0x9e3779b1u;
  if (in.size() >= 14) h ^= static_cast<std::uint32_t>(in[12] << 8 | in[13]) * 0x85ebca6bu;
  if (in.size() >= 24) h ^= in[23] * 0xc2b2ae35u;  // IPv4 protocol
  if (in.size() >= 21) h ^= in[20] * 0x27d4eb2fu;  // IPv6 next header
  h ^= static_cast<std::uint32_t>(static_cast<long>(in.size()) - static_cast<long>(out.size()) + 512);
  h ^= h >> 15;
  std::uint8_t& c = behaviour_counters[h % sizeof(behaviour_counters)];
  if (c < 255) ++c;
}

[[noreturn]] void broken(const std::string& what, const Bytes& in, const Bytes& out) {
  std::fprintf(stderr, "decap_fuzz: %s\n--- input ---\n%s--- output ---\n%s", what.c_str(),
               hex_dump(in).c_str(), hex_dump(out).c_str());
  std::abort();
}

using ballast::fuzz::be16;

// What a decapsulated frame must be, from the input alone: where the inner
// packet starts and ends, or nothing when the input is no tunnel packet
// the program may strip.
struct Tunnel {
  std::size_t inner_at = 0, inner_end = 0;
};

std::optional<Tunnel> tunnel_of(const Bytes& in) {
  if (in.size() < 14) return std::nullopt;
  const std::uint16_t type = be16(&in[12]);
  std::size_t at = 14, end = 0;
  std::uint8_t next = 0;
  if (type == ethertype_ipv4 && in.size() >= at + 20) {
    const std::size_t ihl = (in[at] & 0xf) * 4u;
    end = at + be16(&in[at + 2]);
    next = in[at + 9];
    at += ihl;
  } else if (type == ethertype_ipv6 && in.size() >= at + 40) {
    end = at + 40 + be16(&in[at + 4]);
    next = in[at + 6];
    at += 40;  // the program strips only a plain IPv6 header (no extension headers)
  } else {
    return std::nullopt;
  }
  if (next == ipproto_udp) at += 8;
  if (end > in.size() || at >= end) return std::nullopt;
  return Tunnel{at, end};
}

bool to_local_vip(const Bytes& in, std::size_t at) {
  const std::uint8_t version = in[at] >> 4;
  if (version == 4 && in.size() >= at + 20)
    return std::equal(v4_vip_one.octets.begin(), v4_vip_one.octets.end(), in.begin() + static_cast<std::ptrdiff_t>(at + 16));
  if (version == 6 && in.size() >= at + 40)
    return std::equal(v6_vip_one.octets.begin(), v6_vip_one.octets.end(), in.begin() + static_cast<std::ptrdiff_t>(at + 24));
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 9000) return 0;
  static DecapWorld world;
  const Bytes in(data, data + size);
  const auto before = world.counted();
  const RunResult r = test_run(world.prog, in);
  const auto after = world.counted();
  if (r.error != 0) {
    if (size < 14 && after == before) return 0;
    broken("BPF_PROG_TEST_RUN failed: " + std::to_string(r.error), in, {});
  }
  const Bytes& out = r.frame;
  if (r.action != XDP_PASS) broken("the decap program did not pass the frame", in, out);
  const auto counted = ballast::fuzz::one_reason_moved(before, after);
  if (const auto* wrong = std::get_if<std::string>(&counted)) broken(*wrong, in, out);
  const int moved = std::get<int>(counted);
  static const bool show = std::getenv("FUZZ_SHOW") != nullptr;  // what each input did
  if (show) std::fprintf(stderr, "decap_fuzz: reason %d\n", moved);
  count_behaviour(moved, in, out);
  if (moved != BALLAST_DECAP_DECAPPED) {
    if (out != in) broken("a frame not decapsulated was changed", in, out);
    return 0;
  }
  const auto t = tunnel_of(in);
  if (!t) broken("decapsulated a frame that is no tunnel packet", in, out);
  if (!to_local_vip(in, t->inner_at)) broken("decapsulated a packet for no local VIP", in, out);
  const bool inner_v6 = in[t->inner_at] >> 4 == 6;
  const std::size_t inner_len = t->inner_end - t->inner_at;
  if (out.size() < 14 || !std::equal(in.begin(), in.begin() + 12, out.begin()) ||
      be16(&out[12]) != (inner_v6 ? ethertype_ipv6 : ethertype_ipv4))
    broken("decapsulated: not the input's MACs and the inner family's EtherType", in, out);
  if (out.size() - 14 < inner_len ||
      !std::equal(in.begin() + static_cast<std::ptrdiff_t>(t->inner_at),
                  in.begin() + static_cast<std::ptrdiff_t>(t->inner_end), out.begin() + 14))
    broken("decapsulated: the inner packet is not the one the tunnel carried", in, out);
  return 0;
}
