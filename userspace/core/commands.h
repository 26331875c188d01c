// commands.h: the control API's commands. Each edit builds a whole new
// desired config from the live one (or parses a whole file, for apply),
// validates it whole and submits it to the change pipeline
// (change_pipeline.h), the path a config file, a reload and a drain take
// too; a bad edit throws before anything is written. Every change is
// recorded in the change log with the peer's uid and pid. No sockets, no
// libbpf: unit tests drive it with fakes.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "access.h"
#include "audit.h"
#include "balancer_state.h"
#include "change_pipeline.h"
#include "changelog.h"
#include "dataplane.h"
#include "flow_census.h"
#include "log_limiter.h"
#include "skew.h"

namespace ballast {

class Commands {
 public:
  using StatusFn = std::function<nlohmann::json()>;
  // The last health-check result of a backend slot ("ok 1.2 ms").
  using LastCheckFn = std::function<std::string(uint32_t backend_id)>;

  // A fresh full audit (config, live and drift checks).
  using AuditFn = std::function<std::vector<Finding>()>;

  // @skew: the daemon's tracker for the `skew` command; @audit runs the
  // `audit` command; @census counts flows for `backend.flows` (any
  // missing: that command fails).
  Commands(
      ChangePipeline& pipeline, DataPlane& dataplane, const ChangeLog& log, StatusFn status,
      LastCheckFn last_check = [](uint32_t) { return std::string(); },
      const SkewTracker* skew = nullptr, AuditFn audit = nullptr, FlowCensus* census = nullptr);

  // Dispatches {"command": ..., "args": {...}}; throws Error on a bad
  // command, bad arguments, a change that does not validate, or a peer that
  // may not do it (refusals are logged with its uid and pid).
  nlohmann::json handle(const nlohmann::json& request, const PeerCred& peer);

  // Who may read and who may change (default: root only).
  void set_access(ControlAccess access) { access_ = std::move(access); }
  // Refusals are logged up to a burst of kRefusalBurst lines, then
  // kRefusalsPerSecond; this says how many were not (call it every second).
  void flush_log();
  static constexpr double kRefusalBurst = 20, kRefusalsPerSecond = 5;

 private:
  // Submits @request for @peer (dry run: plans and audits only); the
  // reply: findings, new findings, changes, applied.
  nlohmann::json submit(const ChangeRequest& request, const PeerCred& peer, bool force,
                        const std::string& what = "", bool dry_run = false);
  nlohmann::json apply_file(const nlohmann::json& args, const PeerCred& peer);
  nlohmann::json vip_list() const;
  nlohmann::json backend_list(const nlohmann::json& args) const;

  ChangePipeline& pipeline_;
  const BalancerState& state_;
  DataPlane& dataplane_;
  const ChangeLog& log_;
  StatusFn status_;
  LastCheckFn last_check_;
  const SkewTracker* skew_;
  AuditFn audit_;
  FlowCensus* census_;
  ControlAccess access_;
  LogLimiter refusal_lines_{kRefusalBurst, kRefusalsPerSecond, std::chrono::seconds(10)};
};

}  // namespace ballast
