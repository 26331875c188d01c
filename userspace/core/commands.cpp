#include "commands.h"

#include <algorithm>
#include <chrono>

#include "error.h"
#include "log.h"
#include "maglev.h"
#include "stats.h"

namespace ballast {
namespace {

using nlohmann::json;

const VipConfig& find_vip_or_throw(const BalancerState& state, const VipKey& key) {
  const VipConfig* vip = state.desired_vip(key);
  if (!vip) throw Error("VIP " + key.str() + " is not configured");
  return *vip;
}

BackendConfig& find_backend_or_throw(VipConfig& vip, const IpAddress& address) {
  for (auto& b : vip.backends)
    if (b.address == address) return b;
  throw Error("backend " + address.str() + " is not in VIP " + vip.key.str());
}

api::BackendEntry backend_entry(const VipView& vip, const BackendView& b, std::string last_check) {
  return {.vip = vip.key,
          .address = b.address,
          .weight = b.weight,
          .id = b.id,
          .mac = b.mac ? std::optional<std::string>(mac_str(*b.mac)) : std::nullopt,
          .health = b.health,
          .drained = b.drained,
          .takes_new_flows = b.takes_new_flows,
          .table_entries = b.table_entries,
          .check = check_description(b.check),
          .last_check = std::move(last_check)};
}

std::string actor(const PeerCred& peer) {
  return "uid=" + std::to_string(peer.uid) + " pid=" + std::to_string(peer.pid);
}

}  // namespace

Commands::Commands(ChangePipeline& pipeline, DataPlane& dataplane, const ChangeLog& log,
                   StatusFn status, LastCheckFn last_check, const SkewTracker* skew, AuditFn audit,
                   FlowCensus* census)
    : pipeline_(pipeline),
      state_(pipeline.state()),
      dataplane_(dataplane),
      log_(log),
      status_(std::move(status)),
      last_check_(std::move(last_check)),
      skew_(skew),
      audit_(std::move(audit)),
      census_(census) {
  // One route per request type: a request without a serve() does not
  // compile.
  api::for_each_request([this](auto request) {
    using Request = decltype(request);
    routes_.emplace(std::string(Request::kCommand), [this](const json& args, const PeerCred& peer) {
      return json(serve(api::decode_request<Request>(args), peer));
    });
  });
}

api::ChangeReply Commands::submit(const ChangeRequest& request, const PeerCred& peer, bool force,
                                  const std::string& what, bool dry_run) {
  const ChangeOutcome outcome =
      dry_run ? pipeline_.dry_run(request)
              : pipeline_.submit(request, ChangeSource{actor(peer) + what,
                                                       ChangeLog::Origin::operator_request, force});
  return {.changes = describe(outcome.changes),
          .findings = outcome.audit.all,
          .new_findings = outcome.audit.added,
          .applied = outcome.applied};
}

api::StatusReply Commands::serve(const api::Status&, const PeerCred&) { return status_(); }

api::StatsReply Commands::serve(const api::Stats&, const PeerCred&) {
  return stats_reply(state_.view(), dataplane_);
}

api::AuditReply Commands::serve(const api::Audit&, const PeerCred&) {
  if (!audit_) throw Error("audits are not run here");
  return api::AuditReply::of(audit_());
}

api::SkewReply Commands::serve(const api::Skew&, const PeerCred&) {
  if (!skew_) throw Error("skew is not tracked here");
  const auto vips = state_.view();
  return skew_reply(vips, skew_->report(vips, &dataplane_), skew_->settings());
}

std::vector<api::VipEntry> Commands::serve(const api::VipList&, const PeerCred&) {
  std::vector<api::VipEntry> out;
  for (const auto& vip : state_.view()) {
    api::VipEntry entry{.vip = vip.key,
                        .id = vip.id,
                        .fail_open = vip.fail_open,
                        .failing_open = vip.failing_open,
                        .backends = {},
                        .table_digest = vip.table ? maglev::digest_hex(vip.table_digest) : "",
                        .hash_seed = vip.hash_seed,
                        .table_format = maglev::kTableFormat,
                        .announced = std::nullopt,
                        .announce_reason = ""};
    for (const auto& b : vip.backends)
      entry.backends.push_back(backend_entry(vip, b, last_check_(b.id)));
    if (announcer_ && announcer_->enabled()) {
      entry.announced = announcer_->announced(vip.key.address);
      for (const auto& v : announcer_->verdicts())
        if (v.address == vip.key.address) entry.announce_reason = v.reason;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

std::vector<api::BackendEntry> Commands::backends_of(const std::optional<VipKey>& only) const {
  if (only) find_vip_or_throw(state_, *only);
  std::vector<api::BackendEntry> out;
  for (const auto& vip : state_.view()) {
    if (only && vip.key != *only) continue;
    for (const auto& b : vip.backends) out.push_back(backend_entry(vip, b, last_check_(b.id)));
  }
  return out;
}

std::vector<api::BackendEntry> Commands::serve(const api::BackendList& r, const PeerCred&) {
  return backends_of(r.vip);
}

api::FlowsReply Commands::serve(const api::BackendFlows& r, const PeerCred&) {
  const uint32_t id = state_.backend_id(r.vip, r.address);
  if (!census_) throw Error("flows are not counted here");
  // From the last finished walk of the connection table; none while the
  // first one runs (the CLI asks again).
  const auto counted =
      census_->flows(id, r.idle_ms * 1000000ull, std::chrono::steady_clock::now());
  if (!counted) return {.flows = std::nullopt, .idle_ms = r.idle_ms, .counted_ms_ago = std::nullopt};
  return {.flows = counted->flows,
          .idle_ms = r.idle_ms,
          .counted_ms_ago =
              std::chrono::duration_cast<std::chrono::milliseconds>(counted->age).count()};
}

std::vector<api::LogEntry> Commands::serve(const api::Log& r, const PeerCred&) {
  using namespace std::chrono;
  std::vector<api::LogEntry> out;
  for (const auto& e : log_.since(system_clock::time_point(milliseconds(r.since_unix_ms))))
    out.push_back({.unix_ms = duration_cast<milliseconds>(e.time.time_since_epoch()).count(),
                   .actor = e.actor,
                   .change = e.change});
  return out;
}

// A whole config file, as one change. The interface and attach mode belong
// to the running program: changing them needs a restart. A dry run is never
// refused: it shows the findings; the CLI exits 1 on errors.
api::ChangeReply Commands::serve(const api::Apply& r, const PeerCred& peer) {
  Config next = parse_config(r.config, r.source);
  const Config& live = state_.desired();
  if (next.interface != live.interface)
    throw Error(r.source + ": interface: cannot change from " + live.interface + " to " +
                next.interface + " while running; restart ballastd");
  if (next.attach_mode != live.attach_mode)
    throw Error(r.source + ": attach_mode: cannot change while running; restart ballastd");
  return submit(ConfigRequest{std::move(next)}, peer, r.force, " apply " + r.source, r.dry_run);
}

// Edits of one VIP: its whole config after the edit, checked and planned
// against that VIP alone.
api::ChangeReply Commands::serve(const api::VipAdd& r, const PeerCred& peer) {
  if (state_.desired_vip(r.vip)) throw Error("VIP " + r.vip.str() + " already exists");
  return submit(VipRequest{r.vip, empty_vip(r.vip)}, peer, r.force);
}

api::ChangeReply Commands::serve(const api::VipDel& r, const PeerCred& peer) {
  find_vip_or_throw(state_, r.vip);
  return submit(VipRequest{r.vip, std::nullopt}, peer, r.force);
}

api::ChangeReply Commands::edit_vip(const VipKey& key, const PeerCred& peer, bool force,
                                    const std::function<void(VipConfig&)>& edit) {
  VipConfig vip = find_vip_or_throw(state_, key);
  edit(vip);
  return submit(VipRequest{key, std::move(vip)}, peer, force);
}

api::ChangeReply Commands::serve(const api::BackendAdd& r, const PeerCred& peer) {
  return edit_vip(r.vip, peer, r.force, [&](VipConfig& vip) {
    if (vip.find_backend(r.address))
      throw Error("backend " + r.address.str() + " is already in VIP " + vip.key.str());
    vip.backends.push_back(BackendConfig{r.address, r.weight, vip.check});
  });
}

api::ChangeReply Commands::serve(const api::BackendDel& r, const PeerCred& peer) {
  return edit_vip(r.vip, peer, r.force, [&](VipConfig& vip) {
    find_backend_or_throw(vip, r.address);
    std::erase_if(vip.backends, [&](const BackendConfig& b) { return b.address == r.address; });
  });
}

api::ChangeReply Commands::serve(const api::BackendSetWeight& r, const PeerCred& peer) {
  return edit_vip(r.vip, peer, r.force,
                  [&](VipConfig& vip) { find_backend_or_throw(vip, r.address).weight = r.weight; });
}

// A drain takes a backend out of the new flows as a weight of 0 would: the
// same audit, refused for new errors unless forced.
api::ChangeReply Commands::serve(const api::BackendDrain& r, const PeerCred& peer) {
  return submit(DrainRequest{r.vip, r.address, true}, peer, r.force);
}

api::ChangeReply Commands::serve(const api::FleetLeave&, const PeerCred& peer) {
  if (!fleet_) throw Error("fleet leave is not served here");
  return {.changes = describe(fleet_(true, actor(peer))), .findings = {}, .new_findings = {}};
}

api::ChangeReply Commands::serve(const api::FleetJoin&, const PeerCred& peer) {
  if (!fleet_) throw Error("fleet join is not served here");
  return {.changes = describe(fleet_(false, actor(peer))), .findings = {}, .new_findings = {}};
}

api::ChangeReply Commands::serve(const api::BackendUndrain& r, const PeerCred& peer) {
  return submit(DrainRequest{r.vip, r.address, false}, peer, r.force);
}

void Commands::flush_log() {
  const auto held = refusal_lines_.summary(std::chrono::system_clock::now());
  if (!held) return;
  log_line(LogLevel::warning, "control: " + std::to_string(held->lines) +
                                  " more refused requests in " +
                                  std::to_string(static_cast<long>(held->seconds)) +
                                  " s not logged one by one");
}

json Commands::handle(const json& request, const PeerCred& peer) {
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
    throw Error("request must be an object with a \"command\" string");
  const std::string cmd = request["command"];
  // Who may send it is checked before its arguments are read: a stranger
  // learns nothing from an error about them.
  const bool reads = api::is_read_only_command(cmd);
  if (!(reads ? access_.may_read(peer) : access_.may_change(peer))) {
    const std::string why = std::string("permission denied: ") + peer_text(peer) +
                            (reads ? " may not read ballastd's state (root and the read group only)"
                                   : " may not change ballastd (root and the admin group only)");
    // A client retrying in a loop must not flood the log: a burst, then a
    // rate, then a count (flush_log()).
    if (refusal_lines_.allow(std::chrono::system_clock::now()))
      log_line(LogLevel::warning, "control: refused '" + cmd + "' from " + peer_text(peer));
    throw Error(why);
  }
  const auto route = routes_.find(cmd);
  if (route == routes_.end()) throw Error("unknown command '" + cmd + "'");
  return route->second(request.contains("args") ? request["args"] : json::object(), peer);
}

}  // namespace ballast
