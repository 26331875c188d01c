// balancer_fixture.h: the balancer's XDP program, loaded for real, with its
// maps seeded from the test and its entry point run by BPF_PROG_TEST_RUN
// (after cilium's bpf/tests and Katran's BpfTester).
//
// BalancerHarness owns the skeleton (opened, loaded, egress 0 seeded;
// destroyed in its destructor). Every step that fails throws std::system_error naming the
// step, which GoogleTest reports as the test's failure. No GoogleTest here:
// the bench links this file too.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ballast_abi.h"
#include "packet_builder.h"

struct balancer;

namespace ballast::test {

// What one BPF_PROG_TEST_RUN call reported.
struct RunResult {
  int error = 0;                  // 0, or the negative errno of the syscall
  std::uint32_t action = 0;       // the program's return value (XDP_*)
  Bytes frame;                    // the frame as the program left it
  std::uint32_t duration_ns = 0;  // the kernel's average per repetition
};

// Runs the XDP program @prog_fd once over @frame, or @repeat times over the
// same buffer (each run sees the previous run's output).
RunResult test_run(int prog_fd, std::span<const std::uint8_t> frame, std::uint32_t repeat = 1);

// What the harness writes to egress[0] unless a test overrides it: the
// interface the program runs on (ifindex 1), @lb_mac, MTU 1500, outer sources
// @lb_ip4 and v6_lb, no hash masks.
ballast_egress default_egress(MacAddr lb_mac = mac_lb, Ipv4Addr lb_ip4 = v4_lb);

// What the connection table holds for a flow (bpf/conn_table.h): its way,
// where it is, and what it says.
struct ConnEntry {
  std::uint32_t backend_id = 0;
  std::uint32_t seen = 0;   // BALLAST_CONN_SEEN_SHIFT units
  std::uint32_t flags = 0;  // BALLAST_CONN_F_*
  std::uint32_t bucket = 0;
  int way = 0;
  bool in_second_bucket = false;
};

// CLOCK_MONOTONIC_COARSE in ns: the data plane's clock.
std::uint64_t coarse_now_ns();

// Where a flow may sit in the connection table (bpf/conn_hash.h): its first
// and second bucket, and the fingerprint (tag bits 16-63) its way carries.
struct ConnPlace {
  std::uint32_t bucket_a = 0;
  std::uint32_t bucket_b = 0;
  std::uint64_t fingerprint = 0;
};
ConnPlace conn_place(const ballast_flow_key& flow);

class BalancerHarness {
 public:
  // Loads the program and writes egress[0] = default_egress(@lb_mac, @lb_ip4):
  // @lb_mac the source of the frames it sends, @lb_ip4 the outer source of
  // IPv4 tunnels.
  explicit BalancerHarness(MacAddr lb_mac = mac_lb, Ipv4Addr lb_ip4 = v4_lb);
  ~BalancerHarness();
  BalancerHarness(const BalancerHarness&) = delete;
  BalancerHarness& operator=(const BalancerHarness&) = delete;

  // @flags: BALLAST_VIP_F_* (no ENCAP flag: dsr); @gue_port_host_order: the
  // GUE destination port of a BALLAST_VIP_F_ENCAP_GUE VIP.
  void add_vip(const ballast_vip_key& key, std::uint32_t vip_id, std::uint32_t flags = 0,
               std::uint16_t gue_port_host_order = 0);
  // add_vip writes vip_by_id as ballastd does; these read and overwrite it
  // (tests of what the data plane does when it disagrees with vips).
  ballast_vip_entry vip_entry(std::uint32_t vip_id) const;
  // Sets or clears @addr's bit in the VIP address filter (add_vip sets it).
  void set_vip_filter_bit(const ballast_addr& addr, bool set);
  void set_vip_entry(std::uint32_t vip_id, const ballast_vip_entry& entry);
  void set_backend(std::uint32_t backend_id, const ballast_backend& slot);
  void set_egress(std::uint32_t egress_id, const ballast_egress& egress);
  ballast_egress egress(std::uint32_t egress_id) const;
  // tx_ports[@egress_id] = @ifindex: where XDP_REDIRECT sends that egress's
  // frames.
  void set_tx_port(std::uint32_t egress_id, std::uint32_t ifindex);
  ballast_backend backend(std::uint32_t backend_id) const;
  // Builds a new inner table holding @entries (BALLAST_MAGLEV_SIZE of
  // them) and swaps it into maglev_tables[vip_id] in one update, as the
  // daemon does.
  void install_maglev_table(std::uint32_t vip_id, std::span<const std::uint32_t> entries);
  // The same into maglev_prev_tables: the VIP's previous table (second
  // chance).
  void install_previous_table(std::uint32_t vip_id, std::span<const std::uint32_t> entries);
  // @flow's way in the connection table, found as the program finds it.
  std::optional<ConnEntry> conn(const ballast_flow_key& flow) const;
  // Writes @flow's way from userspace as the program would record it: its
  // existing way, else the empty way conn_place (bpf/conn_table.h) gives
  // (none: throws).
  // @seen_ns: coarse clock ns (default: now).
  void set_conn(const ballast_flow_key& flow, std::uint32_t backend_id,
                std::uint32_t flags = BALLAST_CONN_F_CONFIRMED, std::uint64_t seen_ns = 0);
  // Empties @flow's way (if any): its next packet finds no entry, as on
  // another balancer.
  void forget_flow(const ballast_flow_key& flow);
  // A bucket of the connection table, read or written whole.
  ballast_conn_bucket conn_bucket(std::uint32_t index) const;
  void set_conn_bucket(std::uint32_t index, const ballast_conn_bucket& bucket);
  // conn_stats summed over every possible CPU.
  ballast_conn_counters conn_counters() const;

  // test_run() on the balancer's entry point.
  RunResult run(std::span<const std::uint8_t> frame, std::uint32_t repeat = 1) const;
  // The entry point's fd, for test_run() directly (the bench).
  int program_fd() const;

  // Counters summed over every possible CPU.
  ballast_reason_counters reason_counters(ballast_reason reason) const;
  ballast_traffic_counters vip_counters(std::uint32_t vip_id) const;
  ballast_traffic_counters backend_counters(std::uint32_t backend_id) const;
  ballast_fleet_counters fleet_counters(std::uint32_t vip_id) const;

  // The fd of the map called @name. By name, not through the skeleton's
  // members, so that this file builds against any version of the program.
  int map_fd(const char* name) const;

 private:
  void install_table_in(const char* outer, std::uint32_t vip_id,
                        std::span<const std::uint32_t> entries);
  balancer* skel_ = nullptr;
};

// Map keys and values, built the way the program builds them.
ballast_vip_key vip_key_v4(Ipv4Addr addr, std::uint16_t port, std::uint8_t proto);
ballast_backend backend_slot_v4(Ipv4Addr addr, MacAddr mac, std::uint32_t vip_id,
                                std::uint32_t flags = BALLAST_BACKEND_F_ACTIVE);
ballast_flow_key flow_key_v4(Ipv4Addr src, std::uint16_t sport, Ipv4Addr dst, std::uint16_t dport,
                             std::uint8_t proto);
ballast_vip_key vip_key_v6(const Ipv6Addr& addr, std::uint16_t port, std::uint8_t proto);
ballast_backend backend_slot_v6(const Ipv6Addr& addr, MacAddr mac, std::uint32_t vip_id,
                                std::uint32_t flags = BALLAST_BACKEND_F_ACTIVE);
ballast_flow_key flow_key_v6(const Ipv6Addr& src, std::uint16_t sport, const Ipv6Addr& dst,
                             std::uint16_t dport, std::uint8_t proto);

// The flow hash select.h computes: jhash of the whole key as 32-bit words.
std::uint32_t flow_hash(const ballast_flow_key& flow);
// The Maglev table index select.h computes for @flow: flow_hash % table size.
std::uint32_t maglev_index(const ballast_flow_key& flow);

// A table whose entry i is backend_ids[i % n]: every backend owns a known,
// even share of entries. An empty list gives a table of BALLAST_NO_BACKEND.
std::vector<std::uint32_t> round_robin_table(std::span<const std::uint32_t> backend_ids);

// The two frames in hex and the first offset where they differ, or nothing
// when they are equal.
std::optional<std::string> frame_mismatch(std::span<const std::uint8_t> expected,
                                          std::span<const std::uint8_t> actual);

// The destination MAC of an Ethernet frame (zeros when it is shorter).
MacAddr dst_mac_of(std::span<const std::uint8_t> frame);

// "XDP_TX", "XDP_PASS", ... for failure messages.
const char* action_name(std::uint32_t action);

// "tx_forwarded", "drop_no_backend", ... as ballast_abi.h names them.
const char* reason_name(ballast_reason reason);

}  // namespace ballast::test
