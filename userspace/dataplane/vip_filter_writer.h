// vip_filter_writer.h: ballastd's side of the VIP address filter (ballast_abi.h,
// BALLAST_VIP_FILTER_BITS; bpf/vip_filter.h reads it). The data plane passes
// a packet whose destination's bit is clear without looking anything up, so
// a VIP's bit must be set before its vips entry exists and stay set while
// any VIP key has an address with that bit: VipFilter counts the keys per
// bit and writes a word only when one of its bits changes.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "ballast_abi.h"
#include "dataplane.h"

namespace ballast {

class VipFilter {
 public:
  // @fd: the vip_filter map. Holds no bits until rebuild().
  explicit VipFilter(int fd) : fd_(fd) {}

  // Counts @keys (every key of vips) afresh and writes each word of the
  // map that differs: missing bits are set, bits no key needs cleared.
  void rebuild(const std::vector<ballast_vip_key>& keys);
  // Before a key is written to vips: counts it when @new_key, and writes
  // its bit's word either way (so a rewrite repairs a bit cleared behind
  // ballastd's back).
  void add(const ballast_vip_key& key, bool new_key);
  // After a key was deleted from vips.
  void remove(const ballast_vip_key& key);

 private:
  void write_word(uint32_t word);

  int fd_;
  std::vector<uint64_t> words_ = std::vector<uint64_t>(BALLAST_VIP_FILTER_WORDS, 0);
  std::unordered_map<uint32_t, uint32_t> keys_per_bit_;
};

// The vip_filter map's words, in order.
std::vector<uint64_t> read_vip_filter(int fd);
// vip_filter_has(): core/dataplane.h.

}  // namespace ballast
