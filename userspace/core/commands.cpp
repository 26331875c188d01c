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
      census_(census) {}

json Commands::submit(const ChangeRequest& request, const PeerCred& peer, bool force,
                      const std::string& what, bool dry_run) {
  const ChangeOutcome outcome =
      dry_run ? pipeline_.dry_run(request)
              : pipeline_.submit(request, ChangeSource{actor(peer) + what,
                                                       ChangeLog::Origin::operator_request, force});
  return {{"findings", findings_json(outcome.audit.all)},
          {"new_findings", findings_json(outcome.audit.added)},
          {"changes", describe(outcome.changes)},
          {"applied", outcome.applied}};
}

// A whole config file, as one change. The interface and attach mode belong
// to the running program: changing them needs a restart. A dry run is never
// refused: it shows the findings; the CLI exits 1 on errors.
json Commands::apply_file(const json& args, const PeerCred& peer) {
  const std::string source = args.value("source", std::string("apply"));
  Config next = parse_config(arg_string(args, "config"), source);
  const Config& live = state_.desired();
  if (next.interface != live.interface)
    throw Error(source + ": interface: cannot change from " + live.interface + " to " +
                next.interface + " while running; restart ballastd");
  if (next.attach_mode != live.attach_mode)
    throw Error(source + ": attach_mode: cannot change while running; restart ballastd");
  return submit(ConfigRequest{std::move(next)}, peer, args.value("force", false), " apply " + source,
                args.value("dry_run", false));
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
    find_vip_or_throw(state_, *only);
  }
  json out = json::array();
  for (const auto& vip : state_.view()) {
    if (only && vip.key != *only) continue;
    for (const auto& b : vip.backends) out.push_back(backend_json(vip, b, last_check_(b.id)));
  }
  return out;
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
  const json args = request.value("args", json::object());
  const bool reads = is_read_only_command(cmd);
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
    // A drain takes a backend out of the new flows as a weight of 0
    // would: the same audit, refused for new errors unless forced.
    return submit(DrainRequest{key, address, cmd == "backend.drain"}, peer,
                  args.value("force", false));
  }
  if (cmd == "backend.flows") {
    const uint32_t id =
        state_.backend_id(VipKey::parse(arg_string(args, "vip")), arg_address(args));
    const uint64_t idle_ms = arg_ms(args, "idle_ms", 5000);
    if (!census_) throw Error("flows are not counted here");
    // From the last finished walk of the connection table; null while the
    // first one runs (the CLI asks again).
    const auto counted =
        census_->flows(id, idle_ms * 1000000ull, std::chrono::steady_clock::now());
    if (!counted) return {{"flows", nullptr}, {"idle_ms", idle_ms}};
    return {{"flows", counted->flows},
            {"idle_ms", idle_ms},
            {"counted_ms_ago",
             std::chrono::duration_cast<std::chrono::milliseconds>(counted->age).count()}};
  }

  // Edits of one VIP: its whole config after the edit, checked and
  // planned against that VIP alone.
  const bool force = args.value("force", false);
  if (cmd == "vip.add") {
    const auto key = VipKey::parse(arg_string(args, "vip"));
    if (state_.desired_vip(key)) throw Error("VIP " + key.str() + " already exists");
    return submit(VipRequest{key, empty_vip(key)}, peer, force);
  }
  if (cmd == "vip.del") {
    const auto key = VipKey::parse(arg_string(args, "vip"));
    find_vip_or_throw(state_, key);
    return submit(VipRequest{key, std::nullopt}, peer, force);
  }
  if (cmd != "backend.add" && cmd != "backend.del" && cmd != "backend.set_weight")
    throw Error("unknown command '" + cmd + "'");
  VipConfig vip = find_vip_or_throw(state_, VipKey::parse(arg_string(args, "vip")));
  if (cmd == "backend.add") {
    const auto address = arg_address(args);
    if (vip.find_backend(address))
      throw Error("backend " + address.str() + " is already in VIP " + vip.key.str());
    vip.backends.push_back(BackendConfig{address, arg_weight(args), vip.check});
  } else if (cmd == "backend.del") {
    const auto address = arg_address(args);
    find_backend_or_throw(vip, address);
    std::erase_if(vip.backends, [&](const BackendConfig& b) { return b.address == address; });
  } else {
    if (!args.contains("weight")) throw Error("missing argument 'weight'");
    const uint32_t weight = arg_weight(args);
    find_backend_or_throw(vip, arg_address(args)).weight = weight;
  }
  const VipKey key = vip.key;
  return submit(VipRequest{key, std::move(vip)}, peer, force);
}

}  // namespace ballast
