#include "vip_filter_writer.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <string>

#include "error.h"

namespace ballast {

void VipFilter::rebuild(const std::vector<ballast_vip_key>& keys) {
  std::vector<uint64_t> want(BALLAST_VIP_FILTER_WORDS, 0);
  keys_per_bit_.clear();
  for (const auto& key : keys) {
    const uint32_t bit = ballast_vip_filter_bit(&key.addr);
    keys_per_bit_[bit]++;
    want[bit >> 6] |= uint64_t{1} << (bit & 63);
  }
  words_ = read_vip_filter(fd_);
  for (uint32_t w = 0; w < BALLAST_VIP_FILTER_WORDS; w++) {
    if (words_[w] == want[w]) continue;
    words_[w] = want[w];
    write_word(w);
  }
}

void VipFilter::add(const ballast_vip_key& key, bool new_key) {
  const uint32_t bit = ballast_vip_filter_bit(&key.addr);
  if (new_key) keys_per_bit_[bit]++;
  words_[bit >> 6] |= uint64_t{1} << (bit & 63);
  write_word(bit >> 6);
}

void VipFilter::remove(const ballast_vip_key& key) {
  const uint32_t bit = ballast_vip_filter_bit(&key.addr);
  auto it = keys_per_bit_.find(bit);
  if (it == keys_per_bit_.end()) return;  // never added: nothing to clear
  if (--it->second > 0) return;
  keys_per_bit_.erase(it);
  words_[bit >> 6] &= ~(uint64_t{1} << (bit & 63));
  write_word(bit >> 6);
}

void VipFilter::write_word(uint32_t word) {
  if (bpf_map_update_elem(fd_, &word, &words_[word], BPF_ANY) < 0)
    throw Error(errno_message("writing vip_filter word " + std::to_string(word), errno));
}

std::vector<uint64_t> read_vip_filter(int fd) {
  std::vector<uint64_t> words(BALLAST_VIP_FILTER_WORDS, 0);
  for (uint32_t w = 0; w < BALLAST_VIP_FILTER_WORDS; w++)
    if (bpf_map_lookup_elem(fd, &w, &words[w]) < 0)
      throw Error(errno_message("reading vip_filter word " + std::to_string(w), errno));
  return words;
}

}  // namespace ballast
