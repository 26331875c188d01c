// dataplane.h: what the policy code (userspace/balancer.h) may do to the
// data plane, as an interface over the ABI structs. The real one writes BPF
// maps (userspace/bpf_dataplane.h); unit tests use a fake, so policy code
// never includes libbpf.
#pragma once

#include <cstdint>
#include <vector>

#include "ballast_abi.h"

namespace ballast {

enum class CounterMap { vip, backend };

class DataPlane {
 public:
  virtual ~DataPlane() = default;

  virtual void put_vip(const ballast_vip_key& key, const ballast_vip_info& info) = 0;
  virtual void delete_vip(const ballast_vip_key& key) = 0;
  virtual void put_backend(uint32_t id, const ballast_backend& backend) = 0;
  // Replaces the VIP's whole Maglev table in one step: packets see the old
  // table or the new one, never a mix. @entries has BALLAST_MAGLEV_SIZE ids.
  virtual void install_table(uint32_t vip_id, const std::vector<uint32_t>& entries) = 0;
  virtual void remove_table(uint32_t vip_id) = 0;

  // Counters are summed over CPUs.
  virtual ballast_traffic_counters read_counters(CounterMap map, uint32_t id) = 0;
  virtual void reset_counters(CounterMap map, uint32_t id) = 0;
  virtual std::vector<ballast_reason_counters> read_reasons() = 0;
};

}  // namespace ballast
