// commands.h: serves the control API's requests (api_messages.h: one typed
// request and reply per command; a request is decoded, strictly, only
// after its peer was found allowed to send it). Each edit builds a whole new
// desired config from the live one (or parses a whole file, for apply),
// validates it whole and submits it to the change pipeline
// (change_pipeline.h), the path a config file, a reload and a drain take
// too; a bad edit throws before anything is written. Every change is
// recorded in the change log with the peer's uid and pid. No sockets, no
// libbpf: unit tests drive it with fakes.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "access.h"
#include "announce.h"
#include "api_messages.h"
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
  using StatusFn = std::function<api::StatusReply()>;
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

  // One request, typed (what handle() calls once it has decoded it).
  api::StatusReply serve(const api::Status&, const PeerCred&);
  api::StatsReply serve(const api::Stats&, const PeerCred&);
  api::AuditReply serve(const api::Audit&, const PeerCred&);
  api::SkewReply serve(const api::Skew&, const PeerCred&);
  std::vector<api::VipEntry> serve(const api::VipList&, const PeerCred&);
  std::vector<api::BackendEntry> serve(const api::BackendList&, const PeerCred&);
  api::FlowsReply serve(const api::BackendFlows&, const PeerCred&);
  std::vector<api::LogEntry> serve(const api::Log&, const PeerCred&);
  api::ChangeReply serve(const api::Apply&, const PeerCred&);
  api::ChangeReply serve(const api::VipAdd&, const PeerCred&);
  api::ChangeReply serve(const api::VipDel&, const PeerCred&);
  api::ChangeReply serve(const api::BackendAdd&, const PeerCred&);
  api::ChangeReply serve(const api::BackendDel&, const PeerCred&);
  api::ChangeReply serve(const api::BackendSetWeight&, const PeerCred&);
  api::ChangeReply serve(const api::BackendDrain&, const PeerCred&);
  api::ChangeReply serve(const api::BackendUndrain&, const PeerCred&);
  api::ChangeReply serve(const api::FleetLeave&, const PeerCred&);
  api::ChangeReply serve(const api::FleetJoin&, const PeerCred&);

  // Leaves (@leave) or joins the fleet for @actor, recorded and applied:
  // the daemon's, which owns the routes. Returns the announce changes.
  using FleetFn = std::function<std::vector<Change>(bool leave, const std::string& actor)>;
  // @announcer: what vip.list says of each VIP's announcement (null: off);
  // @fleet: fleet.leave and fleet.join (unset: they fail).
  void set_fleet(const Announcer* announcer, FleetFn fleet) {
    announcer_ = announcer;
    fleet_ = std::move(fleet);
  }

  // Who may read and who may change (default: root only).
  void set_access(ControlAccess access) { access_ = std::move(access); }
  // Refusals are logged up to a burst of kRefusalBurst lines, then
  // kRefusalsPerSecond; this says how many were not (call it every second).
  void flush_log();
  static constexpr double kRefusalBurst = 20, kRefusalsPerSecond = 5;

 private:
  // Submits @request for @peer (dry run: plans and audits only); the
  // reply: findings, new findings, changes, applied.
  api::ChangeReply submit(const ChangeRequest& request, const PeerCred& peer, bool force,
                         const std::string& what = "", bool dry_run = false);
  // A backend edit: the VIP's whole config after @edit changed its copy.
  api::ChangeReply edit_vip(const VipKey& key, const PeerCred& peer, bool force,
                            const std::function<void(VipConfig&)>& edit);
  std::vector<api::BackendEntry> backends_of(const std::optional<VipKey>& only) const;

  using Route = std::function<nlohmann::json(const nlohmann::json& args, const PeerCred&)>;
  std::map<std::string, Route, std::less<>> routes_;  // by command, one per api request

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
  const Announcer* announcer_ = nullptr;
  FleetFn fleet_;
  LogLimiter refusal_lines_{kRefusalBurst, kRefusalsPerSecond, std::chrono::seconds(10)};
};

}  // namespace ballast
