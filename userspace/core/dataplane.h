// dataplane.h: what the policy code (userspace/core/balancer_state.h) may do to
// the data plane, as an interface over the ABI structs. The real one writes
// BPF maps (userspace/dataplane/bpf_dataplane.h); unit tests use a fake, so policy code
// never includes libbpf.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "ballast_abi.h"

namespace ballast {

enum class CounterMap { vip, backend };

// The balancer's maps ballastd pins, by name under its pin directory
// (bpf/maps.h): the loader pins them, `ballast doctor` looks for them.
inline constexpr const char* kPinnedMaps[] = {
    "vips",          "vip_by_id",    "backends", "maglev_tables", "conn_table", "vip_stats",
    "backend_stats", "reason_stats", "egress",   "tx_ports",      "vip_filter", "meta",
    "vip_fleet_stats", "maglev_prev_tables", "conn_stats"};

// A VIP's Maglev table: its BALLAST_MAGLEV_SIZE backend ids, shared (the
// state, the data plane and a snapshot hold the same one, not copies).
using TablePtr = std::shared_ptr<const std::vector<uint32_t>>;

// A VIP's Maglev table as the program sees it. The maps ballastd installs
// are frozen (no process can write them), so a table can change only by
// being swapped for another map: @entries is then that map's, read once.
struct LiveTable {
  uint32_t map_id = 0;
  // The entries; the very pointer the data plane was given when it
  // installed this map (compare pointers before contents). Null: another
  // map was swapped in and this process may not open it (opening a map it
  // did not create takes CAP_SYS_ADMIN, which ballastd's unit does not have).
  TablePtr entries;
};

// Whether two ABI values (map keys or values, fixed-width and padded
// explicitly: ballast_abi.h) hold the same bytes.
template <typename T>
bool same_bytes(const T& a, const T& b) {
  static_assert(std::is_trivially_copyable_v<T>);
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// Whether @live holds @want's entries: the same pointer (the table the
// data plane was given), or a readable map with equal entries.
inline bool same_entries(const LiveTable& live, const LiveTable& want) {
  if (!live.entries || !want.entries) return false;
  return live.entries == want.entries || *live.entries == *want.entries;
}

// What the pinned maps hold: read by a restarted ballastd to adopt the live
// state instead of rebuilding it.
struct LiveSnapshot {
  std::vector<std::pair<ballast_vip_key, ballast_vip_info>> vips;
  std::map<uint32_t, ballast_backend> backends;      // slots in use (family != 0)
  std::map<uint32_t, LiveTable> tables;  // vip_id -> Maglev table
  std::map<uint32_t, ballast_egress> egress;         // egress slots in use (ifindex != 0)
  // vip_by_id at the id of every port entry in vips, as read (zeroed when
  // unused). Empty from a source that does not read it (unit-test fakes):
  // the audit compares only what is here.
  std::map<uint32_t, ballast_vip_entry> vip_by_id;
  // The VIP address filter's words (bpf/vip_filter.h), as read. Empty
  // from a source that does not read it.
  std::vector<uint64_t> vip_filter;
};

// Whether @words (LiveSnapshot::vip_filter, as read) hold @addr's bit.
inline bool vip_filter_has(const std::vector<uint64_t>& words, const ballast_addr& addr) {
  const uint32_t bit = ballast_vip_filter_bit(&addr);
  return (bit >> 6) < words.size() && (words[bit >> 6] >> (bit & 63) & 1);
}

// Where a walk over the connection table is (DataPlane::walk_flows).
struct FlowWalk {
  bool started = false;
  bool done = false;
  uint64_t token = 0;  // the data plane's place in the table
};

class DataPlane {
 public:
  virtual ~DataPlane() = default;

  virtual void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) = 0;
  virtual void delete_vip(const ballast_vip_key& key) = 0;
  virtual void put_backend(uint32_t id, const ballast_backend& backend) = 0;
  // Replaces the VIP's whole Maglev table in one step: packets see the old
  // table or the new one, never a mix. @entries has BALLAST_MAGLEV_SIZE ids;
  // the data plane keeps the pointer (live_table() gives it back).
  virtual void install_table(uint32_t vip_id, TablePtr entries) = 0;
  virtual void remove_table(uint32_t vip_id) = 0;
  // Egress slot @id: the interface frames leave by, its MAC, MTU and the
  // outer source addresses (ballast_abi.h).
  virtual void put_egress(uint32_t id, const ballast_egress& egress) = 0;

  // Counters are summed over CPUs.
  virtual ballast_traffic_counters read_counters(CounterMap map, uint32_t id) = 0;
  // Resets vip_fleet_stats too for CounterMap::vip.
  virtual void reset_counters(CounterMap map, uint32_t id) = 0;
  // VIP @vip_id's mid-flow pick-ups and second-chance packets (bpf/maps.h
  // vip_fleet_stats).
  virtual ballast_fleet_counters read_fleet_counters(uint32_t vip_id) = 0;
  // Second chance (docs/fleet.md): the table VIP @vip_id has now becomes
  // its previous table (maglev_prev_tables), the one pick-ups are checked
  // against, until the next call or remove_previous_table(). Call before
  // install_table() replaces it; nothing when the VIP has no table.
  virtual void keep_previous_table(uint32_t vip_id) = 0;
  virtual void remove_previous_table(uint32_t vip_id) = 0;
  virtual std::vector<ballast_reason_counters> read_reasons() = 0;
  // Where new flows' connection-table entries went, summed over CPUs
  // (bpf/conn_table.h, conn_stats). None by default: a data plane without
  // a connection table.
  virtual ballast_conn_counters read_conn_counters() { return {}; }

  // The next (up to) @max ways of a walk over the connection table, each
  // flow's given to @visit(backend id, last_seen_ns); @walk.done once the
  // last was given. Entries added or removed meanwhile may be missed or
  // seen twice (a census, not a snapshot).
  virtual void walk_flows(FlowWalk& walk, size_t max,
                          const std::function<void(uint32_t, uint64_t)>& visit) = 0;
  // Now, on the clock of the entries' last_seen_ns.
  virtual uint64_t flow_clock_ns() = 0;
  virtual LiveSnapshot snapshot() = 0;
  // The VIP's live Maglev table as the program sees it now (nullopt: none).
  // One map lookup when it is a table this data plane installed or has
  // read before: the loop may call it for every VIP every second.
  virtual std::optional<LiveTable> live_table(uint32_t vip_id) = 0;
};

}  // namespace ballast
