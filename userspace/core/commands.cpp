#include "commands.h"

#include <algorithm>
#include <chrono>

#include "error.h"
#include "log.h"
#include "stats.h"

namespace ballast {
namespace {

using nlohmann::json;

std::string arg_string(const json& args, const char* name) {
  if (!args.is_object() || !args.contains(name) || !args[name].is_string())
    throw Error(std::string("missing argument '") + name + "'");
  return args[name].get<std::string>();
}

uint32_t arg_weight(const json& args) {
  if (!args.contains("weight")) return 1;
  const auto& w = args["weight"];
  if (!w.is_number_integer() || w.get<long long>() < 0 || w.get<long long>() > kMaxWeight)
    throw Error("weight must be an integer 0.." + std::to_string(kMaxWeight) + ", got " + w.dump());
  return w.get<uint32_t>();
}

IpAddress arg_address(const json& args) {
  const std::string text = arg_string(args, "address");
  auto a = IpAddress::parse(text);
  if (!a) throw Error("'" + text + "' is not an IP address");
  return *a;
}

VipConfig& find_vip_or_throw(Config& config, const VipKey& key) {
  auto* vip = config.find_vip(key);
  if (!vip) throw Error("VIP " + key.str() + " is not configured");
  return *vip;
}

BackendConfig& find_backend_or_throw(VipConfig& vip, const IpAddress& address) {
  for (auto& b : vip.backends)
    if (b.address == address) return b;
  throw Error("backend " + address.str() + " is not in VIP " + vip.key.str());
}

json backend_json(const VipView& vip, const BackendView& b, const std::string& last_check) {
  return {{"vip", vip.key.str()},
          {"address", b.address.str()},
          {"weight", b.weight},
          {"id", b.id},
          {"mac", b.mac ? json(mac_str(*b.mac)) : json(nullptr)},
          {"resolved", b.mac.has_value()},
          {"health", health_name(b.health)},
          {"drained", b.drained},
          {"takes_new_flows", b.takes_new_flows},
          {"table_entries", b.table_entries},
          {"check", check_description(b.check)},
          {"last_check", last_check}};
}

std::string actor(const PeerCred& peer) {
  return "uid=" + std::to_string(peer.uid) + " pid=" + std::to_string(peer.pid);
}

uint64_t arg_ms(const json& args, const char* name, uint64_t fallback) {
  if (!args.contains(name)) return fallback;
  const auto& v = args[name];
  if (!v.is_number_unsigned()) throw Error(std::string(name) + " must be a number of milliseconds");
  return v.get<uint64_t>();
}

}  // namespace

Commands::Commands(BalancerState& state, DataPlane& dataplane, ChangeLog& log, StatusFn status,
                   LastCheckFn last_check, const SkewTracker* skew, AuditFn audit)
    : state_(state),
      dataplane_(dataplane),
      log_(log),
      status_(std::move(status)),
      last_check_(std::move(last_check)),
      skew_(skew),
      audit_(std::move(audit)) {}

json Commands::pre_apply_audit(const Config& next, bool force) const {
  const ChangeAudit audit = audit_change(state_.desired(), next, state_.view());
  if (!force && !audit.added_errors().empty())
    throw Error("refused by the pre-apply audit (nothing changed; --force applies it anyway):\n" +
                findings_text(audit.added_errors()));
  return {{"findings", findings_json(audit.all)}, {"new_findings", findings_json(audit.added)}};
}

// A drain takes a backend out of the new flows as a weight of 0 would, so
// it passes the same audit: the config checks against the live state with
// the backend drained (or undrained), refused for new errors unless forced.
json Commands::pre_drain_audit(const VipKey& key, const IpAddress& address, bool drain,
                               bool force) const {
  const auto now = state_.view();
  auto next = now;
  bool found = false;
  for (auto& vip : next)
    if (vip.key == key)
      for (auto& b : vip.backends)
        if (b.address == address) {
          b.drained = drain;
          found = true;
        }
  if (!found) {
    const VipConfig* vip = state_.desired().find_vip(key);
    if (!vip) throw Error("VIP " + key.str() + " is not configured");
    throw Error("backend " + address.str() + " is not in VIP " + key.str());
  }
  const auto before = audit_config(state_.desired(), now);
  const auto after = audit_config(state_.desired(), next);
  const auto added = new_findings(before, after);
  std::vector<Finding> errors;
  for (const auto& f : added)
    if (f.severity == Severity::error) errors.push_back(f);
  if (!force && !errors.empty())
    throw Error("refused by the pre-apply audit (nothing changed; --force applies it anyway):\n" +
                findings_text(errors));
  return {{"findings", findings_json(after)}, {"new_findings", findings_json(added)}};
}

json Commands::apply_edit(Config next, const PeerCred& peer, bool force) {
  require_valid(next);
  json out = pre_apply_audit(next, force);
  auto changes = state_.apply(next);
  log_.record(actor(peer) + (force ? " (forced)" : ""), changes);
  out["changes"] = changes;
  out["applied"] = true;
  return out;
}

// A whole config file, as one change. The interface and attach mode belong
// to the running program: changing them needs a restart.
json Commands::apply_file(const json& args, const PeerCred& peer) {
  const std::string source = args.value("source", std::string("apply"));
  Config next = parse_config(arg_string(args, "config"), source);
  const Config& live = state_.desired();
  if (next.interface != live.interface)
    throw Error(source + ": interface: cannot change from " + live.interface + " to " +
                next.interface + " while running; restart ballastd");
  if (next.attach_mode != live.attach_mode)
    throw Error(source + ": attach_mode: cannot change while running; restart ballastd");
  const bool force = args.value("force", false);
  if (args.value("dry_run", false)) {
    // Never refused: a dry run shows the findings; the CLI exits 1 on errors.
    json out = pre_apply_audit(next, /*force=*/true);
    out["changes"] = state_.plan(next);
    out["applied"] = false;
    return out;
  }
  json out = pre_apply_audit(next, force);
  auto changes = state_.apply(next);
  log_.record(actor(peer) + " apply " + source + (force ? " (forced)" : ""), changes);
  out["changes"] = changes;
  out["applied"] = true;
  return out;
}

json Commands::vip_list() const {
  json out = json::array();
  for (const auto& vip : state_.view()) {
    json backends = json::array();
    for (const auto& b : vip.backends) backends.push_back(backend_json(vip, b, last_check_(b.id)));
    out.push_back({{"vip", vip.key.str()},
                   {"address", vip.key.address.str()},
                   {"port", vip.key.port},
                   {"protocol", protocol_name(vip.key.protocol)},
                   {"id", vip.id},
                   {"fail_open", vip.fail_open},
                   {"failing_open", vip.failing_open},
                   {"backends", backends}});
  }
  return out;
}

json Commands::backend_list(const json& args) const {
  std::optional<VipKey> only;
  if (args.is_object() && args.contains("vip")) {
    only = VipKey::parse(arg_string(args, "vip"));
    if (!state_.desired().find_vip(*only)) throw Error("VIP " + only->str() + " is not configured");
  }
  json out = json::array();
  for (const auto& vip : state_.view()) {
    if (only && vip.key != *only) continue;
    for (const auto& b : vip.backends) out.push_back(backend_json(vip, b, last_check_(b.id)));
  }
  return out;
}

json Commands::handle(const json& request, const PeerCred& peer) {
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string())
    throw Error("request must be an object with a \"command\" string");
  const std::string cmd = request["command"];
  const json args = request.value("args", json::object());
  const bool reads = is_read_only_command(cmd);
  if (!(reads ? access_.may_read(peer) : access_.may_change(peer))) {
    const std::string why = std::string("permission denied: ") + peer_text(peer) +
                            (reads ? " may not read ballastd's state (root and the read group only)"
                                   : " may not change ballastd (root and the admin group only)");
    log_line(LogLevel::warning, "control: refused '" + cmd + "' from " + peer_text(peer));
    throw Error(why);
  }

  if (cmd == "status") return status_();
  if (cmd == "stats") return stats_json(state_.view(), dataplane_);
  if (cmd == "audit") {
    if (!audit_) throw Error("audits are not run here");
    const auto findings = audit_();
    size_t errors = 0, warnings = 0;
    for (const auto& f : findings) {
      errors += f.severity == Severity::error;
      warnings += f.severity == Severity::warning;
    }
    return {{"findings", findings_json(findings)}, {"errors", errors}, {"warnings", warnings}};
  }
  if (cmd == "skew") {
    if (!skew_) throw Error("skew is not tracked here");
    const auto vips = state_.view();
    return skew_json(vips, skew_->report(vips, &dataplane_), skew_->settings());
  }
  if (cmd == "vip.list") return vip_list();
  if (cmd == "backend.list") return backend_list(args);
  if (cmd == "apply") return apply_file(args, peer);
  if (cmd == "log") {
    const auto since = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(arg_ms(args, "since_unix_ms", 0)));
    json out = json::array();
    for (const auto& e : log_.since(since))
      out.push_back({{"time", iso8601_utc(e.time)},
                     {"unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                     e.time.time_since_epoch())
                                     .count()},
                     {"actor", e.actor},
                     {"change", e.change}});
    return out;
  }
  if (cmd == "backend.drain" || cmd == "backend.undrain") {
    const auto key = VipKey::parse(arg_string(args, "vip"));
    const auto address = arg_address(args);
    const bool drain = cmd == "backend.drain", force = args.value("force", false);
    json out = pre_drain_audit(key, address, drain, force);
    auto changes = state_.set_drained(key, address, drain);
    log_.record(actor(peer) + (force ? " (forced)" : ""), changes);
    out["changes"] = changes;
    out["applied"] = true;
    return out;
  }
  if (cmd == "backend.flows") {
    const uint32_t id =
        state_.backend_id(VipKey::parse(arg_string(args, "vip")), arg_address(args));
    const uint64_t idle_ms = arg_ms(args, "idle_ms", 5000);
    const auto flows = dataplane_.active_flows(idle_ms * 1000000ull);
    auto it = flows.find(id);
    return {{"flows", it == flows.end() ? 0 : it->second}, {"idle_ms", idle_ms}};
  }

  Config next = state_.desired();
  if (cmd == "vip.add") {
    const auto key = VipKey::parse(arg_string(args, "vip"));
    if (next.find_vip(key)) throw Error("VIP " + key.str() + " already exists");
    next.vips.push_back(empty_vip(key));
  } else if (cmd == "vip.del") {
    const auto key = VipKey::parse(arg_string(args, "vip"));
    find_vip_or_throw(next, key);
    std::erase_if(next.vips, [&](const VipConfig& v) { return v.key == key; });
  } else if (cmd == "backend.add") {
    auto& vip = find_vip_or_throw(next, VipKey::parse(arg_string(args, "vip")));
    const auto address = arg_address(args);
    if (vip.find_backend(address))
      throw Error("backend " + address.str() + " is already in VIP " + vip.key.str());
    vip.backends.push_back(BackendConfig{address, arg_weight(args), vip.check});
  } else if (cmd == "backend.del") {
    auto& vip = find_vip_or_throw(next, VipKey::parse(arg_string(args, "vip")));
    const auto address = arg_address(args);
    find_backend_or_throw(vip, address);
    std::erase_if(vip.backends, [&](const BackendConfig& b) { return b.address == address; });
  } else if (cmd == "backend.set_weight") {
    auto& vip = find_vip_or_throw(next, VipKey::parse(arg_string(args, "vip")));
    if (!args.contains("weight")) throw Error("missing argument 'weight'");
    const uint32_t weight = arg_weight(args);
    find_backend_or_throw(vip, arg_address(args)).weight = weight;
  } else {
    throw Error("unknown command '" + cmd + "'");
  }
  return apply_edit(std::move(next), peer, args.value("force", false));
}

}  // namespace ballast
