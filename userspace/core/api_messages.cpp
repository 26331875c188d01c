#include "api_messages.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "changelog.h"
#include "config.h"
#include "error.h"

namespace ballast {
namespace {

using nlohmann::json;

std::optional<Severity> parse_severity(std::string_view text) {
  for (Severity s : {Severity::info, Severity::warning, Severity::error})
    if (severity_name(s) == text) return s;
  return std::nullopt;
}

// A non-negative integer: parsed text says "unsigned", a C++ caller's
// literal "integer".
std::optional<uint64_t> non_negative(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

std::optional<Health> parse_health(std::string_view text) {
  for (Health h : {Health::unknown, Health::up, Health::down})
    if (health_name(h) == text) return h;
  return std::nullopt;
}

// The fields of one JSON object, read by name. For a request (strict) a
// field nobody read is an error once finish() runs; for a reply it is
// ignored. Every error names the field and says what it must be.
class Fields {
 public:
  Fields(const json& j, bool strict) : j_(j), strict_(strict) {
    if (!j.is_object() && !(strict && j.is_null()))
      throw Error(strict ? "arguments must be a JSON object, got " + j.dump(-1).substr(0, 80)
                         : "reply: expected an object, got " + j.dump(-1).substr(0, 80));
  }

  // Reads @name into @out; absent (or null for an optional): left as is
  // unless @required.
  template <typename T>
  void get(const char* name, T& out, bool required = false) {
    known_.push_back(name);
    if (j_.is_object()) {
      const auto it = j_.find(name);
      if (it != j_.end()) {
        read(*it, name, out);
        return;
      }
    }
    if (required) missing(name);
  }

  // A required field is absent. A request says so at finish(), after any
  // field it does not know: "unknown argument 'wieght'" helps more than
  // "missing argument 'weight'".
  void missing(const char* name) {
    if (!strict_) throw Error(std::string("reply: missing field '") + name + "'");
    if (missing_.empty()) missing_ = name;
  }
  template <typename T>
  void need(const char* name, T& out) {
    get(name, out, true);
  }

  // The field as it is (nullptr when absent), for checks of their own.
  const json* raw(const char* name) {
    known_.push_back(name);
    if (!j_.is_object()) return nullptr;
    const auto it = j_.find(name);
    return it == j_.end() ? nullptr : &*it;
  }

  // Strict: no field left unread, none missing.
  void finish(std::string_view command) const {
    if (!strict_) return;
    for (const auto& [key, value] : j_.items()) {  // an object, or null: no fields
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string takes;
      for (const auto& k : known_) takes += (takes.empty() ? "" : ", ") + k;
      throw Error("unknown argument '" + key + "' for " + std::string(command) + " (it takes " +
                  (takes.empty() ? std::string("none") : takes) + ")");
    }
    if (!missing_.empty()) throw Error("missing argument '" + missing_ + "'");
  }

 private:
  [[noreturn]] static void wrong(const char* name, const char* must, const json& v) {
    throw Error(std::string("'") + name + "' must be " + must + ", got " +
                v.dump(-1).substr(0, 80));
  }
  static void read(const json& v, const char* name, std::string& out) {
    if (!v.is_string()) wrong(name, "a string", v);
    out = v.get<std::string>();
  }
  static void read(const json& v, const char* name, bool& out) {
    if (!v.is_boolean()) wrong(name, "true or false", v);
    out = v.get<bool>();
  }
  static void read(const json& v, const char* name, double& out) {
    if (!v.is_number()) wrong(name, "a number", v);
    out = v.get<double>();
  }
  template <typename T>
    requires std::is_integral_v<T>
  static void read(const json& v, const char* name, T& out) {
    if (std::is_unsigned_v<T>) {
      const auto n = non_negative(v);
      if (!n || *n > std::numeric_limits<T>::max())
        wrong(name, ("an integer 0.." + std::to_string(std::numeric_limits<T>::max())).c_str(), v);
      out = static_cast<T>(*n);
    } else {
      if (!v.is_number_integer()) wrong(name, "an integer", v);
      out = static_cast<T>(v.get<int64_t>());
    }
  }
  static void read(const json& v, const char* name, VipKey& out) {
    std::string text;
    read(v, name, text);
    out = VipKey::parse(text);
  }
  static void read(const json& v, const char* name, IpAddress& out) {
    std::string text;
    read(v, name, text);
    const auto a = IpAddress::parse(text);
    if (!a) throw Error("'" + text + "' is not an IP address");
    out = *a;
  }
  static void read(const json& v, const char* name, Health& out) {
    std::string text;
    read(v, name, text);
    const auto h = parse_health(text);
    if (!h) wrong(name, "unknown, up or down", v);
    out = *h;
  }
  static void read(const json& v, const char* name, ForwardMode& out) {
    std::string text;
    read(v, name, text);
    const auto m = parse_forward_mode(text);
    if (!m) wrong(name, "a forwarding mode", v);
    out = *m;
  }
  static void read(const json& v, const char* name, std::chrono::seconds& out) {
    int64_t s = 0;
    read(v, name, s);
    out = std::chrono::seconds(s);
  }
  static void read(const json& v, const char* name, TrafficCounts& out) {
    Fields f(v, false);
    f.need("packets", out.packets);
    f.need("bytes", out.bytes);
    f.need("new_flows", out.new_flows);
    (void)name;
  }
  template <typename T>
  static void read(const json& v, const char* name, std::optional<T>& out) {
    if (v.is_null()) {
      out.reset();
      return;
    }
    T value{};
    read(v, name, value);
    out = std::move(value);
  }
  template <typename T>
  static void read(const json& v, const char* name, std::vector<T>& out) {
    if (!v.is_array()) wrong(name, "an array", v);
    out.clear();
    for (const auto& e : v) {
      T value{};
      if constexpr (std::is_class_v<T> && !std::is_same_v<T, std::string> &&
                    !std::is_same_v<T, IpAddress> && !std::is_same_v<T, VipKey>)
        from_json(e, value);
      else
        read(e, name, value);
      out.push_back(std::move(value));
    }
  }
  static void read(const json& v, const char* name, std::map<std::string, uint64_t>& out) {
    if (!v.is_object()) wrong(name, "an object", v);
    out.clear();
    for (const auto& [key, value] : v.items()) read(value, name, out[key]);
  }

  const json& j_;
  bool strict_;
  std::vector<std::string> known_;
  std::string missing_;  // the first required field found absent
};

json counts_json(const TrafficCounts& c) {
  return {{"packets", c.packets}, {"bytes", c.bytes}, {"new_flows", c.new_flows}};
}

json optional_json(const auto& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

void to_json(json& j, const Finding& f) {
  j = {{"severity", severity_name(f.severity)},
       {"check", f.check},
       {"vip", f.vip},
       {"backend", f.backend},
       {"message", f.message},
       {"hint", f.hint}};
}

void from_json(const json& j, Finding& f) {
  Fields in(j, false);
  std::string severity;
  in.need("severity", severity);
  const auto s = parse_severity(severity);
  if (!s) throw Error("reply: unknown severity '" + severity + "'");
  f.severity = *s;
  in.need("check", f.check);
  in.get("vip", f.vip);
  in.get("backend", f.backend);
  in.need("message", f.message);
  in.get("hint", f.hint);
}

namespace api {

AuditReply AuditReply::of(std::vector<Finding> findings) {
  AuditReply r;
  for (const auto& f : findings) {
    r.errors += f.severity == Severity::error;
    r.warnings += f.severity == Severity::warning;
  }
  r.findings = std::move(findings);
  return r;
}

bool is_read_only_command(std::string_view command) {
  bool reads = false;
  for_each_request([&](const auto& r) {
    if (r.kCommand == command) reads = r.kReadOnly;
  });
  return reads;
}

// ---- Replies ----

void to_json(json& j, const StatusReply& s) {
  j = {{"interface", s.interface},
       {"ifindex", s.ifindex},
       {"attach_mode", s.attach_mode},
       {"program_id", s.program_id},
       {"pin_dir", s.pin_dir},
       {"config", s.config},
       {"vips", s.vips},
       {"backends", s.backends},
       {"unresolved_backends", s.unresolved_backends},
       {"version", s.version},
       {"metrics", s.metrics},
       {"errors", s.errors},
       {"uptime_seconds", s.uptime_seconds},
       {"announce_table", optional_json(s.announce_table)},
       {"fleet_left", s.fleet_left},
       {"announced", s.announced}};
}

void from_json(const json& j, StatusReply& s) {
  Fields in(j, false);
  in.need("interface", s.interface);
  in.get("ifindex", s.ifindex);
  in.get("attach_mode", s.attach_mode);
  in.need("program_id", s.program_id);
  in.need("pin_dir", s.pin_dir);
  in.get("config", s.config);
  in.get("vips", s.vips);
  in.get("backends", s.backends);
  in.get("unresolved_backends", s.unresolved_backends);
  in.get("version", s.version);
  in.get("metrics", s.metrics);
  in.get("errors", s.errors);
  in.get("uptime_seconds", s.uptime_seconds);
  in.get("announce_table", s.announce_table);
  in.get("fleet_left", s.fleet_left);
  in.get("announced", s.announced);
}

void to_json(json& j, const ChangeReply& r) {
  j = {{"changes", r.changes},
       {"findings", r.findings},
       {"new_findings", r.new_findings},
       {"applied", r.applied}};
}

void from_json(const json& j, ChangeReply& r) {
  Fields in(j, false);
  in.need("changes", r.changes);
  in.get("findings", r.findings);
  in.get("new_findings", r.new_findings);
  in.get("applied", r.applied);
}

void to_json(json& j, const AuditReply& r) {
  j = {{"findings", r.findings}, {"errors", r.errors}, {"warnings", r.warnings}};
}

void from_json(const json& j, AuditReply& r) {
  Fields in(j, false);
  in.need("findings", r.findings);
  in.get("errors", r.errors);
  in.get("warnings", r.warnings);
}

void to_json(json& j, const BackendEntry& b) {
  j = {{"vip", b.vip.str()},
       {"address", b.address.str()},
       {"weight", b.weight},
       {"id", b.id},
       {"mac", optional_json(b.mac)},
       {"resolved", b.mac.has_value()},
       {"health", health_name(b.health)},
       {"drained", b.drained},
       {"takes_new_flows", b.takes_new_flows},
       {"table_entries", b.table_entries},
       {"check", b.check},
       {"last_check", b.last_check}};
}

void from_json(const json& j, BackendEntry& b) {
  Fields in(j, false);
  in.need("vip", b.vip);
  in.need("address", b.address);
  in.need("weight", b.weight);
  in.get("id", b.id);
  in.get("mac", b.mac);
  in.get("health", b.health);
  in.get("drained", b.drained);
  in.get("takes_new_flows", b.takes_new_flows);
  in.get("table_entries", b.table_entries);
  in.get("check", b.check);
  in.get("last_check", b.last_check);
}

void to_json(json& j, const VipEntry& v) {
  j = {{"vip", v.vip.str()},
       {"address", v.vip.address.str()},
       {"port", v.vip.port},
       {"protocol", protocol_name(v.vip.protocol)},
       {"id", v.id},
       {"fail_open", v.fail_open},
       {"failing_open", v.failing_open},
       {"table_digest", v.table_digest},
       {"hash_seed", v.hash_seed},
       {"table_format", v.table_format},
       {"announced", optional_json(v.announced)},
       {"announce_reason", v.announce_reason},
       {"backends", v.backends}};
}

void from_json(const json& j, VipEntry& v) {
  Fields in(j, false);
  in.need("vip", v.vip);
  in.get("id", v.id);
  in.get("fail_open", v.fail_open);
  in.get("failing_open", v.failing_open);
  in.get("table_digest", v.table_digest);
  in.get("hash_seed", v.hash_seed);
  in.get("table_format", v.table_format);
  in.get("announced", v.announced);
  in.get("announce_reason", v.announce_reason);
  in.get("backends", v.backends);
}

void to_json(json& j, const LogEntry& e) {
  j = {{"time", iso8601_utc(std::chrono::system_clock::time_point(
                    std::chrono::milliseconds(e.unix_ms)))},
       {"unix_ms", e.unix_ms},
       {"actor", e.actor},
       {"change", e.change}};
}

void from_json(const json& j, LogEntry& e) {
  Fields in(j, false);
  in.need("unix_ms", e.unix_ms);
  in.need("actor", e.actor);
  in.need("change", e.change);
}

void to_json(json& j, const FlowsReply& r) {
  j = {{"flows", optional_json(r.flows)}, {"idle_ms", r.idle_ms}};
  if (r.counted_ms_ago) j["counted_ms_ago"] = *r.counted_ms_ago;
}

void from_json(const json& j, FlowsReply& r) {
  Fields in(j, false);
  in.need("flows", r.flows);
  in.get("idle_ms", r.idle_ms);
  in.get("counted_ms_ago", r.counted_ms_ago);
}

void to_json(json& j, const StatsReply& s) {
  j = {{"vips", json::array()}, {"reasons", json::array()}};
  for (const auto& v : s.vips) {
    json backends = json::array();
    for (const auto& b : v.backends)
      backends.push_back({{"address", b.address.str()},
                          {"weight", b.weight},
                          {"resolved", b.resolved},
                          {"health", health_name(b.health)},
                          {"drained", b.drained},
                          {"packets", b.counts.packets},
                          {"bytes", b.counts.bytes},
                          {"new_flows", b.counts.new_flows},
                          {"expected_share", b.expected_share},
                          {"observed_share", b.observed_share},
                          {"skew", optional_json(b.skew)}});
    j["vips"].push_back({{"vip", v.vip.str()},
                         {"address", v.vip.address.str()},
                         {"port", v.vip.port},
                         {"protocol", protocol_name(v.vip.protocol)},
                         {"mode", forward_mode_name(v.mode)},
                         {"packets", v.counts.packets},
                         {"bytes", v.counts.bytes},
                         {"new_flows", v.counts.new_flows},
                         {"pickups", v.pickups},
                         {"second_chance", v.second_chance},
                         {"backends", backends}});
  }
  for (const auto& r : s.reasons)
    j["reasons"].push_back({{"reason", r.reason},
                            {"verdict", r.verdict},
                            {"packets", r.packets},
                            {"bytes", r.bytes}});
  j["conn_table"] = {{"capacity", s.conn_table.capacity},
                     {"recorded", s.conn_table.recorded},
                     {"replaced_embryonic", s.conn_table.replaced_embryonic},
                     {"replaced_idle", s.conn_table.replaced_idle},
                     {"unrecorded", s.conn_table.unrecorded}};
}

void from_json(const json& j, StatsReply::ConnTable& c) {
  Fields in(j, false);
  in.get("capacity", c.capacity);
  in.get("recorded", c.recorded);
  in.get("replaced_embryonic", c.replaced_embryonic);
  in.get("replaced_idle", c.replaced_idle);
  in.get("unrecorded", c.unrecorded);
}

void from_json(const json& j, StatsReply::Backend& b) {
  Fields in(j, false);
  in.need("address", b.address);
  in.get("weight", b.weight);
  in.get("resolved", b.resolved);
  in.get("health", b.health);
  in.get("drained", b.drained);
  in.need("packets", b.counts.packets);
  in.need("bytes", b.counts.bytes);
  in.need("new_flows", b.counts.new_flows);
  in.get("expected_share", b.expected_share);
  in.get("observed_share", b.observed_share);
  in.get("skew", b.skew);
}

void from_json(const json& j, StatsReply::Vip& v) {
  Fields in(j, false);
  in.need("vip", v.vip);
  in.get("mode", v.mode);
  in.need("packets", v.counts.packets);
  in.need("bytes", v.counts.bytes);
  in.need("new_flows", v.counts.new_flows);
  in.get("pickups", v.pickups);
  in.get("second_chance", v.second_chance);
  in.get("backends", v.backends);
}

void from_json(const json& j, StatsReply::Reason& r) {
  Fields in(j, false);
  in.need("reason", r.reason);
  in.get("verdict", r.verdict);
  in.need("packets", r.packets);
  in.need("bytes", r.bytes);
}

void from_json(const json& j, StatsReply& s) {
  Fields in(j, false);
  in.need("vips", s.vips);
  in.get("reasons", s.reasons);
  if (const auto it = j.find("conn_table"); it != j.end()) from_json(*it, s.conn_table);
}

void to_json(json& j, const SkewReply& s) {
  j = {{"window_seconds", s.settings.window.count()},
       {"min_new_flows", s.settings.min_new_flows},
       {"z_min", s.settings.z_min},
       {"threshold", s.settings.threshold},
       {"hold_seconds", s.settings.hold.count()},
       {"vips", json::array()}};
  for (const auto& v : s.vips) {
    json backends = json::array();
    for (const auto& b : v.backends)
      backends.push_back({{"address", b.address.str()},
                          {"weight", b.weight},
                          {"health", health_name(b.health)},
                          {"drained", b.drained},
                          {"takes_new_flows", b.takes_new_flows},
                          {"window", counts_json(b.window)},
                          {"pps", b.pps},
                          {"expected_share", b.expected_share},
                          {"observed_share",
                           {{"new_flows", b.observed_share.new_flows},
                            {"packets", b.observed_share.packets},
                            {"bytes", b.observed_share.bytes}}},
                          {"skew",
                           {{"new_flows", optional_json(b.skew.new_flows)},
                            {"packets", optional_json(b.skew.packets)},
                            {"bytes", optional_json(b.skew.bytes)}}},
                          {"z", b.z},
                          {"significant", b.significant},
                          {"skewed_seconds", optional_json(b.skewed_seconds)},
                          {"ring_share", b.ring_share},
                          {"ring_skew", optional_json(b.ring_skew)}});
    j["vips"].push_back({{"vip", v.vip.str()},
                         {"window_seconds", v.window_seconds},
                         {"window", counts_json(v.window)},
                         {"pps", v.pps},
                         {"confident", v.confident},
                         {"skew", optional_json(v.skew)},
                         {"ring_foreign_share", v.ring_foreign_share},
                         {"backends", backends}});
  }
}

void from_json(const json& j, SkewReply::Shares& s) {
  Fields in(j, false);
  in.get("new_flows", s.new_flows);
  in.get("packets", s.packets);
  in.get("bytes", s.bytes);
}

void from_json(const json& j, SkewReply::Skews& s) {
  Fields in(j, false);
  in.get("new_flows", s.new_flows);
  in.get("packets", s.packets);
  in.get("bytes", s.bytes);
}

void from_json(const json& j, SkewReply::Backend& b) {
  Fields in(j, false);
  in.need("address", b.address);
  in.get("weight", b.weight);
  in.get("health", b.health);
  in.get("drained", b.drained);
  in.get("takes_new_flows", b.takes_new_flows);
  in.need("window", b.window);
  in.get("pps", b.pps);
  in.get("expected_share", b.expected_share);
  if (j.contains("observed_share")) from_json(j["observed_share"], b.observed_share);
  if (j.contains("skew")) from_json(j["skew"], b.skew);
  in.get("z", b.z);
  in.get("significant", b.significant);
  in.get("skewed_seconds", b.skewed_seconds);
  in.get("ring_share", b.ring_share);
  in.get("ring_skew", b.ring_skew);
}

void from_json(const json& j, SkewReply::Vip& v) {
  Fields in(j, false);
  in.need("vip", v.vip);
  in.get("window_seconds", v.window_seconds);
  in.need("window", v.window);
  in.get("pps", v.pps);
  in.get("confident", v.confident);
  in.get("skew", v.skew);
  in.get("ring_foreign_share", v.ring_foreign_share);
  in.get("backends", v.backends);
}

void from_json(const json& j, SkewReply& s) {
  Fields in(j, false);
  in.need("window_seconds", s.settings.window);
  in.get("min_new_flows", s.settings.min_new_flows);
  in.get("z_min", s.settings.z_min);
  in.get("threshold", s.settings.threshold);
  in.get("hold_seconds", s.settings.hold);
  in.need("vips", s.vips);
}

// ---- Requests ----

namespace {

// The requests without arguments take none.
template <typename Request>
void no_arguments(const json& j) {
  Fields(j, true).finish(Request::kCommand);
}

}  // namespace

#define BALLAST_NO_ARGS(T)                                         \
  void to_json(json& j, const T&) { j = json::object(); }         \
  void from_json(const json& j, T&) { no_arguments<T>(j); }
BALLAST_NO_ARGS(Status)
BALLAST_NO_ARGS(Stats)
BALLAST_NO_ARGS(Audit)
BALLAST_NO_ARGS(Skew)
BALLAST_NO_ARGS(VipList)
BALLAST_NO_ARGS(FleetLeave)
BALLAST_NO_ARGS(FleetJoin)
#undef BALLAST_NO_ARGS

void to_json(json& j, const BackendList& r) {
  j = json::object();
  if (r.vip) j["vip"] = r.vip->str();
}

void from_json(const json& j, BackendList& r) {
  Fields in(j, true);
  in.get("vip", r.vip);
  in.finish(BackendList::kCommand);
}

void to_json(json& j, const BackendFlows& r) {
  j = {{"vip", r.vip.str()}, {"address", r.address.str()}, {"idle_ms", r.idle_ms}};
}

void from_json(const json& j, BackendFlows& r) {
  Fields in(j, true);
  in.need("vip", r.vip);
  in.need("address", r.address);
  in.get("idle_ms", r.idle_ms);
  in.finish(BackendFlows::kCommand);
}

void to_json(json& j, const Log& r) {
  j = json::object();
  if (r.since_unix_ms) j["since_unix_ms"] = r.since_unix_ms;
}

void from_json(const json& j, Log& r) {
  Fields in(j, true);
  in.get("since_unix_ms", r.since_unix_ms);
  in.finish(Log::kCommand);
}

void to_json(json& j, const Apply& r) {
  j = {{"config", r.config}, {"source", r.source}, {"dry_run", r.dry_run}, {"force", r.force}};
}

void from_json(const json& j, Apply& r) {
  Fields in(j, true);
  in.need("config", r.config);
  in.get("source", r.source);
  in.get("dry_run", r.dry_run);
  in.get("force", r.force);
  in.finish(Apply::kCommand);
}

// VIP edits: the VIP and --force.
#define BALLAST_VIP_EDIT(T)                                        \
  void to_json(json& j, const T& r) {                              \
    j = {{"vip", r.vip.str()}, {"force", r.force}};                \
  }                                                                \
  void from_json(const json& j, T& r) {                            \
    Fields in(j, true);                                            \
    in.need("vip", r.vip);                                         \
    in.get("force", r.force);                                      \
    in.finish(T::kCommand);                                        \
  }
BALLAST_VIP_EDIT(VipAdd)
BALLAST_VIP_EDIT(VipDel)
#undef BALLAST_VIP_EDIT

// Backend edits: the VIP, the backend's address, --force; a weight for
// add (default 1) and set-weight (required).
template <typename T>
void encode_backend_edit(json& j, const T& r) {
  j = {{"vip", r.vip.str()}, {"address", r.address.str()}, {"force", r.force}};
  if constexpr (requires { r.weight; }) j["weight"] = r.weight;
}

template <typename T>
void decode_backend_edit(const json& j, T& r) {
  Fields in(j, true);
  in.need("vip", r.vip);
  in.need("address", r.address);
  in.get("force", r.force);
  if constexpr (requires { r.weight; }) {
    const json* w = in.raw("weight");
    if (!w && std::is_same_v<T, BackendSetWeight>) in.missing("weight");
    if (w) {
      const auto n = non_negative(*w);
      if (!n || *n > kMaxWeight)
        throw Error("weight must be an integer 0.." + std::to_string(kMaxWeight) + ", got " +
                    w->dump(-1).substr(0, 80));
      r.weight = static_cast<uint32_t>(*n);
    }
  }
  in.finish(T::kCommand);
}

#define BALLAST_BACKEND_EDIT(T)                                            \
  void to_json(json& j, const T& r) { encode_backend_edit(j, r); }         \
  void from_json(const json& j, T& r) { decode_backend_edit(j, r); }
BALLAST_BACKEND_EDIT(BackendAdd)
BALLAST_BACKEND_EDIT(BackendSetWeight)
BALLAST_BACKEND_EDIT(BackendDel)
BALLAST_BACKEND_EDIT(BackendDrain)
BALLAST_BACKEND_EDIT(BackendUndrain)
#undef BALLAST_BACKEND_EDIT

}  // namespace api
}  // namespace ballast
