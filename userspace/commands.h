// commands.h: the control API's commands. Each edit builds a whole new
// desired config from the live one, validates it whole and applies it
// through BalancerState::apply, the same path a config file takes; a bad
// edit throws before anything is written. No sockets, no libbpf: unit
// tests drive it with fakes.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "api.h"
#include "balancer_state.h"
#include "dataplane.h"

namespace ballast {

class Commands {
 public:
  using StatusFn = std::function<nlohmann::json()>;

  Commands(BalancerState& state, DataPlane& dataplane, StatusFn status);

  // Dispatches {"command": ..., "args": {...}}; throws Error on a bad
  // command, bad arguments or a change that does not validate.
  nlohmann::json handle(const nlohmann::json& request, const PeerCred& peer);

 private:
  nlohmann::json apply_edit(Config next, const PeerCred& peer);
  nlohmann::json vip_list() const;
  nlohmann::json backend_list(const nlohmann::json& args) const;

  BalancerState& state_;
  DataPlane& dataplane_;
  StatusFn status_;
};

}  // namespace ballast
