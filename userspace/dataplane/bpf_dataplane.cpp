#include "bpf_dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "conn_hash.h"
#include "error.h"
#include "fd.h"

namespace ballast {
namespace {

void check(int ret, const std::string& what) {
  if (ret < 0) throw Error(errno_message(what, ret == -1 ? errno : ret));
}

// Reads a whole hash map with batch lookups, calling @visit per entry.
template <typename K, typename V, typename F>
void for_each_entry(int fd, const std::string& what, F visit) {
  constexpr uint32_t kBatch = 4096;
  std::vector<K> keys(kBatch);
  std::vector<V> values(kBatch);
  K out_batch{};
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    int ret = bpf_map_lookup_batch(fd, first ? nullptr : &out_batch, &out_batch, keys.data(),
                                   values.data(), &count, nullptr);
    const int err = ret < 0 ? errno : 0;
    if (ret < 0 && err != ENOENT) throw Error(errno_message("reading " + what, err));
    for (uint32_t i = 0; i < count; i++) visit(keys[i], values[i]);
    if (err == ENOENT) return;  // the last batch
    first = false;
  }
}

// Every element of the ARRAY map @fd (@n of @value_size bytes) into
// @values, in key order, with batch lookups (the kernel may return fewer per
// call: go on from where it stopped).
void read_array(int fd, uint32_t* keys, void* values, size_t value_size, uint32_t n,
                const std::string& what) {
  uint32_t done = 0, next = 0;
  bool first = true;
  while (done < n) {
    uint32_t count = n - done;
    const int err =
        bpf_map_lookup_batch(fd, first ? nullptr : &next, &next, keys + done,
                             static_cast<char*>(values) + done * value_size, &count, nullptr);
    first = false;
    done += count;
    if (err == -ENOENT) break;  // the end of the array
    check(err, what);
  }
  if (done != n) throw Error(what + ": short read");
  for (uint32_t i = 0; i < n; i++)
    if (keys[i] != i) throw Error(what + ": keys out of order");
}

}  // namespace

namespace {

std::vector<ballast_vip_key> vip_keys(int vips_fd) {
  std::vector<ballast_vip_key> keys;
  for_each_entry<ballast_vip_key, ballast_vip_info>(
      vips_fd, "vips",
      [&](const ballast_vip_key& k, const ballast_vip_info&) { keys.push_back(k); });
  return keys;
}

}  // namespace

void BpfDataPlane::prepare_maps(const MapFds& fds) {
  VipFilter(fds.vip_filter).rebuild(vip_keys(fds.vips));
}

namespace {

constexpr size_t kConnTableBytes = size_t(BALLAST_CONN_BUCKETS) * sizeof(ballast_conn_bucket);

}  // namespace

BpfDataPlane::BpfDataPlane(MapFds fds)
    : fds_(fds), ncpus_(libbpf_num_possible_cpus()), vip_filter_(fds.vip_filter) {
  if (ncpus_ <= 0) throw Error(errno_message("counting possible CPUs", ncpus_));
  if (fds_.conn_table >= 0) {  // tests of other maps pass none
    void* mapped = mmap(nullptr, kConnTableBytes, PROT_READ, MAP_SHARED, fds_.conn_table, 0);
    if (mapped == MAP_FAILED) throw Error(errno_message("mapping conn_table", errno));
    conn_buckets_ = static_cast<const ballast_conn_bucket*>(mapped);
  }
  vip_filter_.rebuild(vip_keys(fds_.vips));
  // Adopted pins from a version without vip_by_id (or a crash between the
  // two writes) leave it short: bring it in line with vips. Until then
  // established flows only take the slower vips-first path.
  for_each_entry<ballast_vip_key, ballast_vip_info>(
      fds_.vips, "vips", [&](const ballast_vip_key& k, const ballast_vip_info& v) {
        if (k.port == 0) return;
        ballast_vip_entry have{};
        const ballast_vip_entry want{.key = k, .info = v};
        if (bpf_map_lookup_elem(fds_.vip_by_id, &v.vip_id, &have) != 0 ||
            std::memcmp(&have, &want, sizeof(want)) != 0)
          check(bpf_map_update_elem(fds_.vip_by_id, &v.vip_id, &want, BPF_ANY),
                "writing vip_by_id map");
      });
}

// vip_by_id (ballast_abi.h) mirrors vips for port entries, so established
// flows find their VIP by id. Written before the vips entry and cleared after
// it, so that whenever vips maps a key to an id, vip_by_id agrees; the data
// plane also checks the key, so a stale entry is never used for another VIP.
// The VIP address filter's bit goes first of all, and is cleared (when no
// other key needs it) only after the key is gone: a VIP's packets never
// meet a clear bit.
void BpfDataPlane::put_vip(const ballast_vip_key& key, const ballast_vip_info& info) {
  ballast_vip_info old{};
  vip_filter_.add(key, bpf_map_lookup_elem(fds_.vips, &key, &old) != 0);
  if (key.port != 0) {
    const ballast_vip_entry entry{.key = key, .info = info};
    check(bpf_map_update_elem(fds_.vip_by_id, &info.vip_id, &entry, BPF_ANY),
          "writing vip_by_id map");
  }
  check(bpf_map_update_elem(fds_.vips, &key, &info, BPF_ANY), "writing vips map");
}

void BpfDataPlane::delete_vip(const ballast_vip_key& key) {
  ballast_vip_info info{};
  const bool had = bpf_map_lookup_elem(fds_.vips, &key, &info) == 0;
  int ret = bpf_map_delete_elem(fds_.vips, &key);
  if (ret < 0 && errno != ENOENT) check(ret, "deleting from vips map");
  if (had) vip_filter_.remove(key);
  if (!had || key.port == 0) return;
  ballast_vip_entry entry{};
  if (bpf_map_lookup_elem(fds_.vip_by_id, &info.vip_id, &entry) == 0 &&
      std::memcmp(&entry.key, &key, sizeof(key)) == 0) {
    const ballast_vip_entry unused{};
    check(bpf_map_update_elem(fds_.vip_by_id, &info.vip_id, &unused, BPF_ANY),
          "clearing vip_by_id entry");
  }
}

void BpfDataPlane::put_backend(uint32_t id, const ballast_backend& backend) {
  check(bpf_map_update_elem(fds_.backends, &id, &backend, BPF_ANY), "writing backends map");
  if (backend.family != 0)
    slots_written_.insert(id);
  else
    slots_written_.erase(id);
  strays_.erase(id);
}

// A new inner table map holding @entries, frozen: no process can write it
// from now on.
UniqueFd BpfDataPlane::frozen_table(const std::vector<uint32_t>& entries) {
  UniqueFd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, "maglev_table", sizeof(uint32_t),
                                sizeof(uint32_t), BALLAST_MAGLEV_SIZE, nullptr));
  if (!inner.valid()) throw Error(errno_message("creating Maglev table map", errno));
  std::vector<uint32_t> keys(entries.size());
  for (uint32_t i = 0; i < keys.size(); i++) keys[i] = i;
  uint32_t count = entries.size();
  check(bpf_map_update_batch(inner.get(), keys.data(), entries.data(), &count, nullptr),
        "filling Maglev table");
  if (count != entries.size()) throw Error("filling Maglev table: short batch write");
  check(bpf_map_freeze(inner.get()), "freezing Maglev table");
  return inner;
}

void BpfDataPlane::install_table(uint32_t vip_id, TablePtr entries) {
  if (!entries || entries->size() != BALLAST_MAGLEV_SIZE)
    throw Error("Maglev table has " + std::to_string(entries ? entries->size() : 0) +
                " entries, want " + std::to_string(BALLAST_MAGLEV_SIZE));
  // Fill a fresh inner map completely, freeze it (no process can write it
  // from now on: the entries stay the ones written here, so live_table()
  // never reads it back), then publish it with one update of the outer
  // map: the swap is atomic for the data plane.
  UniqueFd inner = frozen_table(*entries);
  bpf_map_info info{};
  uint32_t info_len = sizeof(info);
  check(bpf_obj_get_info_by_fd(inner.get(), &info, &info_len), "reading Maglev table map id");
  int inner_fd = inner.get();
  check(bpf_map_update_elem(fds_.maglev_tables, &vip_id, &inner_fd, BPF_ANY),
        "swapping Maglev table into maglev_tables");
  known_[vip_id] = LiveTable{info.id, std::move(entries)};
  // The outer map now holds the table; our fd closes here.
}

void BpfDataPlane::remove_table(uint32_t vip_id) {
  int ret = bpf_map_delete_elem(fds_.maglev_tables, &vip_id);
  if (ret < 0 && errno != ENOENT) check(ret, "removing Maglev table");
  known_.erase(vip_id);
}

int BpfDataPlane::counter_fd(CounterMap map) const {
  return map == CounterMap::vip ? fds_.vip_stats : fds_.backend_stats;
}

ballast_traffic_counters BpfDataPlane::read_counters(CounterMap map, uint32_t id) {
  std::vector<ballast_traffic_counters> per_cpu(ncpus_);
  check(bpf_map_lookup_elem(counter_fd(map), &id, per_cpu.data()), "reading counters");
  ballast_traffic_counters sum{};
  for (const auto& c : per_cpu) {
    sum.packets += c.packets;
    sum.bytes += c.bytes;
    sum.new_flows += c.new_flows;
  }
  return sum;
}

void BpfDataPlane::reset_counters(CounterMap map, uint32_t id) {
  std::vector<ballast_traffic_counters> zero(ncpus_);
  check(bpf_map_update_elem(counter_fd(map), &id, zero.data(), BPF_ANY), "resetting counters");
  if (map != CounterMap::vip) return;
  std::vector<ballast_fleet_counters> none(ncpus_);
  check(bpf_map_update_elem(fds_.vip_fleet_stats, &id, none.data(), BPF_ANY),
        "resetting fleet counters");
}

ballast_fleet_counters BpfDataPlane::read_fleet_counters(uint32_t vip_id) {
  std::vector<ballast_fleet_counters> per_cpu(ncpus_);
  check(bpf_map_lookup_elem(fds_.vip_fleet_stats, &vip_id, per_cpu.data()),
        "reading fleet counters");
  ballast_fleet_counters sum{};
  for (const auto& c : per_cpu) {
    sum.pickups += c.pickups;
    sum.second_chance += c.second_chance;
  }
  return sum;
}

void BpfDataPlane::keep_previous_table(uint32_t vip_id) {
  const auto known = known_.find(vip_id);
  // A table this process did not install and could not read: nothing to
  // keep (pick-ups get no second chance until the next change).
  if (known == known_.end() || !known->second.entries) return;
  UniqueFd inner = frozen_table(*known->second.entries);
  int inner_fd = inner.get();
  check(bpf_map_update_elem(fds_.maglev_prev_tables, &vip_id, &inner_fd, BPF_ANY),
        "keeping the previous Maglev table");
  previous_since_[vip_id] = std::chrono::steady_clock::now();
}

void BpfDataPlane::remove_previous_table(uint32_t vip_id) {
  int ret = bpf_map_delete_elem(fds_.maglev_prev_tables, &vip_id);
  if (ret < 0 && errno != ENOENT) check(ret, "removing the previous Maglev table");
  previous_since_.erase(vip_id);
}

size_t BpfDataPlane::expire_previous_tables(std::chrono::steady_clock::time_point before) {
  std::vector<uint32_t> old;
  for (const auto& [vip_id, since] : previous_since_)
    if (since < before) old.push_back(vip_id);
  for (const uint32_t vip_id : old) remove_previous_table(vip_id);
  return old.size();
}

std::vector<ballast_reason_counters> BpfDataPlane::read_reasons() {
  std::vector<ballast_reason_counters> out(BALLAST_REASON_COUNT);
  std::vector<ballast_reason_counters> per_cpu(ncpus_);
  for (uint32_t r = 0; r < BALLAST_REASON_COUNT; r++) {
    check(bpf_map_lookup_elem(fds_.reason_stats, &r, per_cpu.data()), "reading reason counters");
    for (const auto& c : per_cpu) {
      out[r].packets += c.packets;
      out[r].bytes += c.bytes;
    }
  }
  return out;
}

namespace {

uint64_t monotonic_coarse_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

}  // namespace

BpfDataPlane::~BpfDataPlane() {
  if (conn_buckets_) munmap(const_cast<ballast_conn_bucket*>(conn_buckets_), kConnTableBytes);
}

ballast_conn_counters BpfDataPlane::read_conn_counters() {
  std::vector<ballast_conn_counters> per_cpu(ncpus_);
  const uint32_t key = 0;
  check(bpf_map_lookup_elem(fds_.conn_stats, &key, per_cpu.data()), "reading conn_stats");
  ballast_conn_counters out{};
  for (const auto& c : per_cpu) {
    out.recorded += c.recorded;
    out.replaced_embryonic += c.replaced_embryonic;
    out.replaced_idle += c.replaced_idle;
    out.unrecorded += c.unrecorded;
  }
  return out;
}

void BpfDataPlane::walk_flows(FlowWalk& walk, size_t max,
                              const std::function<void(uint32_t, uint64_t)>& visit) {
  // The token is the next bucket. Ways are read as the data plane writes
  // them, tag first (a whole word): a way being rewritten meanwhile is
  // seen old or new, and its seen field may lag by one write.
  const uint64_t now = monotonic_coarse_ns();
  uint64_t bucket = walk.started ? walk.token : 0;
  if (!conn_buckets_) bucket = BALLAST_CONN_BUCKETS;
  const uint64_t end = std::min<uint64_t>(BALLAST_CONN_BUCKETS,
                                          bucket + std::max<size_t>(1, max / BALLAST_CONN_WAYS));
  for (; bucket < end; bucket++) {
    for (const ballast_conn_way& way : conn_buckets_[bucket].way) {
      const uint64_t tag = __atomic_load_n(&way.tag, __ATOMIC_RELAXED);
      if (!tag) continue;
      const uint64_t age_ns =
          ballast_conn_age_ns(__atomic_load_n(&way.seen, __ATOMIC_RELAXED), now);
      visit(static_cast<uint32_t>(tag & BALLAST_CONN_ID_MASK), age_ns > now ? 0 : now - age_ns);
    }
  }
  walk.started = true;
  walk.token = bucket;
  walk.done = bucket >= BALLAST_CONN_BUCKETS;
}

uint64_t BpfDataPlane::flow_clock_ns() { return monotonic_coarse_ns(); }

void BpfDataPlane::put_egress(uint32_t id, const ballast_egress& egress) {
  // Another interface's slot: the devmap entry first, so a backend naming
  // the slot never redirects to nothing.
  if (id != 0) {
    if (egress.ifindex == 0) {
      if (bpf_map_delete_elem(fds_.tx_ports, &id) < 0 && errno != ENOENT)
        throw Error(errno_message("clearing tx_ports entry " + std::to_string(id), errno));
    } else {
      const uint32_t ifindex = egress.ifindex;
      if (bpf_map_update_elem(fds_.tx_ports, &id, &ifindex, BPF_ANY) < 0)
        throw Error(errno_message("writing tx_ports entry " + std::to_string(id), errno));
    }
  }
  if (bpf_map_update_elem(fds_.egress, &id, &egress, BPF_ANY) < 0)
    throw Error(errno_message("writing egress slot " + std::to_string(id), errno));
}

LiveSnapshot BpfDataPlane::snapshot() {
  LiveSnapshot snap;
  for_each_entry<ballast_vip_key, ballast_vip_info>(
      fds_.vips, "vips",
      [&](const ballast_vip_key& k, const ballast_vip_info& v) { snap.vips.emplace_back(k, v); });
  // Every slot (a 2 MiB batch read that cost an audit ~10 ms) only at
  // first, then at most every kFullSlotScanEvery to find slots written
  // behind ballastd's back; in between, the slots in use as last seen.
  const auto now = std::chrono::steady_clock::now();
  const size_t known = slots_written_.size() + strays_.size();
  if (full_slot_scan_ == std::chrono::steady_clock::time_point{} ||
      now - full_slot_scan_ >= kFullSlotScanEvery || known > BALLAST_MAX_BACKENDS / 16) {
    std::vector<uint32_t> keys(BALLAST_MAX_BACKENDS);
    std::vector<ballast_backend> slots(BALLAST_MAX_BACKENDS);
    read_array(fds_.backends, keys.data(), slots.data(), sizeof(ballast_backend),
               BALLAST_MAX_BACKENDS, "reading backends map");
    strays_.clear();
    for (uint32_t i = 0; i < BALLAST_MAX_BACKENDS; i++) {
      if (slots[i].family == 0) continue;
      snap.backends[i] = slots[i];
      if (!slots_written_.count(i)) strays_.insert(i);
    }
    full_slot_scan_ = now;
  } else {
    auto read_slot = [&](uint32_t id) {
      ballast_backend slot{};
      check(bpf_map_lookup_elem(fds_.backends, &id, &slot), "reading backends map");
      if (slot.family != 0) snap.backends[id] = slot;
    };
    for (uint32_t id : slots_written_) read_slot(id);
    for (uint32_t id : strays_) read_slot(id);
  }
  for (const auto& [key, info] : snap.vips) {
    if (key.port == 0) continue;
    ballast_vip_entry entry{};
    if (bpf_map_lookup_elem(fds_.vip_by_id, &info.vip_id, &entry) < 0)
      throw Error(errno_message("reading vip_by_id map", errno));
    snap.vip_by_id[info.vip_id] = entry;
  }
  snap.vip_filter = read_vip_filter(fds_.vip_filter);
  for (const auto& [key, info] : snap.vips)
    if (!snap.tables.count(info.vip_id))
      if (auto table = live_table(info.vip_id)) snap.tables[info.vip_id] = std::move(*table);
  for (uint32_t id = 0; id < BALLAST_MAX_EGRESS; id++) {
    ballast_egress e{};
    if (bpf_map_lookup_elem(fds_.egress, &id, &e) == 0 && e.ifindex != 0) snap.egress[id] = e;
  }
  return snap;
}

std::optional<LiveTable> BpfDataPlane::live_table(uint32_t vip_id) {
  uint32_t map_id = 0;
  if (bpf_map_lookup_elem(fds_.maglev_tables, &vip_id, &map_id) < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw Error(errno_message("reading maglev_tables", errno));
  }
  if (auto it = known_.find(vip_id); it != known_.end() && it->second.map_id == map_id)
    return it->second;
  LiveTable table{map_id, read_foreign_table(map_id)};
  if (table.entries) known_[vip_id] = table;
  return table;
}

TablePtr BpfDataPlane::read_foreign_table(uint32_t map_id) {
  UniqueFd inner(bpf_map_get_fd_by_id(map_id));
  if (!inner.valid()) {
    if (errno == EPERM) return nullptr;  // not ours to open without CAP_SYS_ADMIN
    throw Error(errno_message("opening Maglev table map id " + std::to_string(map_id), errno));
  }
  // Frozen before it is read, so that what is read stays true for the
  // map's life. A frozen map refuses a second freeze with EPERM (a frozen
  // map grants no write, which freezing needs), or EBUSY.
  if (bpf_map_freeze(inner.get()) < 0 && errno != EPERM && errno != EBUSY)
    throw Error(errno_message("freezing Maglev table map id " + std::to_string(map_id), errno));
  std::vector<uint32_t> keys(BALLAST_MAGLEV_SIZE), table(BALLAST_MAGLEV_SIZE);
  read_array(inner.get(), keys.data(), table.data(), sizeof(uint32_t), BALLAST_MAGLEV_SIZE,
             "reading Maglev table");
  return std::make_shared<const std::vector<uint32_t>>(std::move(table));
}

}  // namespace ballast
