// state_driver.h: drives a BalancerState the way the change pipeline does
// (plan, then execute) without the audit and the change log, for tests of
// the state itself; each returns the executed changes as text.
#pragma once

#include <string>
#include <vector>

#include "balancer_state.h"

namespace ballast {

inline std::vector<std::string> run(BalancerState& state, const ChangeRequest& request) {
  return describe(state.execute(state.plan(request)));
}
inline std::vector<std::string> apply(BalancerState& state, const Config& desired) {
  return run(state, ConfigRequest{desired});
}
// What apply(@desired) would change, changing nothing.
inline std::vector<std::string> plan_text(const BalancerState& state, const Config& desired) {
  return describe(state.plan(ConfigRequest{desired}).changes());
}
inline std::vector<std::string> set_health(BalancerState& state, uint32_t id, Health health,
                                           const std::string& detail) {
  return run(state, HealthRequest{id, health, detail});
}
inline std::vector<std::string> set_drained(BalancerState& state, const VipKey& vip,
                                            const IpAddress& backend, bool drained) {
  return run(state, DrainRequest{vip, backend, drained});
}
inline std::vector<std::string> follow_host(BalancerState& state) {
  return run(state, HostRequest{});
}
inline std::vector<std::string> repair(BalancerState& state, const LiveSnapshot& live) {
  return run(state, RepairRequest{live});
}

}  // namespace ballast
