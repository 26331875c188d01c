#include "log_limiter.h"

#include <algorithm>

namespace ballast {

bool LogLimiter::allow(time_point now) {
  if (refilled_ != time_point{})
    tokens_ = std::min(
        burst_, tokens_ + per_second_ * std::chrono::duration<double>(now - refilled_).count());
  refilled_ = now;
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  if (!held_back_++) first_held_back_ = now;
  return false;
}

std::optional<LogLimiter::HeldBack> LogLimiter::summary(time_point now) {
  if (!held_back_ || now - first_held_back_ < summary_every_) return std::nullopt;
  HeldBack out{held_back_, std::chrono::duration<double>(now - first_held_back_).count()};
  held_back_ = 0;
  return out;
}

}  // namespace ballast
