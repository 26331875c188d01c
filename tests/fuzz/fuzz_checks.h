// fuzz_checks.h: what packet_fuzz and decap_fuzz both check and read.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

namespace ballast::fuzz {

inline std::uint16_t be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

// The one reason counter a run moved, by exactly one; or what is wrong
// (none moved, several, or one by more than one).
template <std::size_t N>
std::variant<int, std::string> one_reason_moved(const std::array<std::uint64_t, N>& before,
                                                const std::array<std::uint64_t, N>& after) {
  int moved = -1;
  for (std::size_t i = 0; i < N; ++i) {
    if (after[i] == before[i]) continue;
    if (moved >= 0 || after[i] != before[i] + 1)
      return std::string("more than one reason counted, or one counted twice");
    moved = static_cast<int>(i);
  }
  if (moved < 0) return std::string("no reason counted");
  return moved;
}

}  // namespace ballast::fuzz
