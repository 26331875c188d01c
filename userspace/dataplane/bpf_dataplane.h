// bpf_dataplane.h: DataPlane over the balancer's BPF maps (by fd), plus the
// static_asserts that keep the shared ABI structs' layout fixed.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <set>
#include <vector>

#include "dataplane.h"
#include "fd.h"
#include "vip_filter_writer.h"

namespace ballast {

static_assert(sizeof(ballast_addr) == 16);
static_assert(sizeof(ballast_vip_key) == 20);
static_assert(sizeof(ballast_vip_info) == 12);
static_assert(sizeof(ballast_vip_entry) == 32);
static_assert(offsetof(ballast_vip_info, gue_port) == 8);
static_assert(sizeof(ballast_egress) == 40);
static_assert(offsetof(ballast_egress, src6) == 20);
static_assert(offsetof(ballast_backend, egress) == 23);
static_assert(sizeof(ballast_backend) == 32);
static_assert(offsetof(ballast_backend, mac) == 16);
static_assert(sizeof(ballast_flow_key) == 40);  // the flow hash reads its first 9 words (select.h)
static_assert(sizeof(ballast_conn_way) == 16);
static_assert(sizeof(ballast_conn_bucket) == 64);  // one cache line (bpf/conn_table.h)
static_assert(sizeof(ballast_conn_counters) == 32);
static_assert(sizeof(ballast_traffic_counters) == 24);
static_assert(sizeof(ballast_reason_counters) == 16);

struct MapFds {
  int vips = -1;
  int vip_by_id = -1;
  int backends = -1;
  int maglev_tables = -1;
  int conn_table = -1;
  int vip_stats = -1;
  int backend_stats = -1;
  int reason_stats = -1;
  int egress = -1;
  int tx_ports = -1;
  int vip_filter = -1;
  int vip_fleet_stats = -1;
  int maglev_prev_tables = -1;
  int conn_stats = -1;
};

class BpfDataPlane : public DataPlane {
 public:
  explicit BpfDataPlane(MapFds fds);
  ~BpfDataPlane() override;
  BpfDataPlane(const BpfDataPlane&) = delete;
  BpfDataPlane& operator=(const BpfDataPlane&) = delete;

  // What must hold before the program sees its first packet, on maps
  // adopted from a running (or older) ballastd too: the VIP address filter
  // agrees with vips. The loader runs it between loading and attaching.
  static void prepare_maps(const MapFds& fds);

  void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) override;
  void delete_vip(const ballast_vip_key& key) override;
  void put_backend(uint32_t id, const ballast_backend& backend) override;
  void install_table(uint32_t vip_id, TablePtr entries) override;
  void remove_table(uint32_t vip_id) override;
  void put_egress(uint32_t id, const ballast_egress& egress) override;
  ballast_traffic_counters read_counters(CounterMap map, uint32_t id) override;
  ballast_fleet_counters read_fleet_counters(uint32_t vip_id) override;
  void keep_previous_table(uint32_t vip_id) override;
  void remove_previous_table(uint32_t vip_id) override;
  // Removes every previous table kept before @before (ballastd's
  // fleet.second_chance_keep); returns how many.
  size_t expire_previous_tables(std::chrono::steady_clock::time_point before);
  void reset_counters(CounterMap map, uint32_t id) override;
  std::vector<ballast_reason_counters> read_reasons() override;
  ballast_conn_counters read_conn_counters() override;
  void walk_flows(FlowWalk& walk, size_t max,
                  const std::function<void(uint32_t, uint64_t)>& visit) override;
  uint64_t flow_clock_ns() override;
  LiveSnapshot snapshot() override;
  std::optional<LiveTable> live_table(uint32_t vip_id) override;

 private:
  int counter_fd(CounterMap map) const;
  // Another map's entries (one swapped in by hand, or a previous
  // ballastd's), opened by id and frozen so they stay what is read; null
  // when this process may not open it.
  TablePtr read_foreign_table(uint32_t map_id);

  MapFds fds_;
  int ncpus_;
  VipFilter vip_filter_;
  // Each VIP's table as installed or last read here, by vip id: while the
  // outer map names the same map id, the entries are these (frozen).
  std::map<uint32_t, LiveTable> known_;
  // When each VIP's previous table was kept (second chance).
  std::map<uint32_t, std::chrono::steady_clock::time_point> previous_since_;
  static UniqueFd frozen_table(const std::vector<uint32_t>& entries);
  // The backend slots this data plane wrote with a backend, and those in
  // use that it did not write (strays, as the last full read found them):
  // snapshot() reads these alone between full reads of every slot.
  static constexpr auto kFullSlotScanEvery = std::chrono::seconds(30);
  std::set<uint32_t> slots_written_, strays_;
  // The connection table mapped read-only into our memory (walk_flows):
  // a walk reads it in place, with no copy and no system call.
  const ballast_conn_bucket* conn_buckets_ = nullptr;
  std::chrono::steady_clock::time_point full_slot_scan_{};
};

}  // namespace ballast
