#include "config.h"

#include <net/if.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "error.h"

namespace ballast {

const BackendConfig* VipConfig::find_backend(const IpAddress& a) const {
  for (const auto& b : backends)
    if (b.address == a) return &b;
  return nullptr;
}

VipConfig empty_vip(const VipKey& key) {
  VipConfig v;
  v.key = key;
  v.check.port = key.port;
  return v;
}

const VipConfig* Config::find_vip(const VipKey& k) const {
  for (const auto& v : vips)
    if (v.key == k) return &v;
  return nullptr;
}

VipConfig* Config::find_vip(const VipKey& k) {
  for (auto& v : vips)
    if (v.key == k) return &v;
  return nullptr;
}

std::string attach_mode_name(AttachMode m) { return m == AttachMode::native ? "native" : "skb"; }


namespace {

// A message stays one line whatever the file held: control characters (a
// newline in a quoted value) are written as escapes.
std::string one_line(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), c == '\n' ? "\\n" : "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

// Collects problems while the YAML tree is walked, each prefixed with the
// file, the line and the field path so the operator can go straight to it.
class Problems {
 public:
  explicit Problems(std::string source) : source_(std::move(source)) {}

  // @reason empty: @field already holds "field: reason".
  void add(const YAML::Node& at, const std::string& field, const std::string& reason) {
    list_.push_back(source_ + ":" + std::to_string(line_of(at)) + ": " +
                    one_line(field + (reason.empty() ? "" : ": " + reason)));
  }
  // Remembers where @path is, for the messages of the whole-config rules,
  // which come after the walk and know only paths.
  void locate(const std::string& path, const YAML::Node& at) { lines_.emplace(path, line_of(at)); }
  // @line starts with a field path ("vips[1].backends[0].address: ..."):
  // placed on the line of the deepest part of that path that was seen
  // (line 1 for a rule about the whole file).
  void add_located(const std::string& line) {
    size_t best = 0;
    int at = 1;
    for (const auto& [path, l] : lines_)
      if (path.size() > best && line.size() > path.size() && line.compare(0, path.size(), path) == 0 &&
          std::string_view(".:[ ").find(line[path.size()]) != std::string_view::npos) {
        best = path.size();
        at = l;
      }
    list_.push_back(source_ + ":" + std::to_string(at) + ": " + one_line(line));
  }
  bool empty() const { return list_.empty(); }
  std::string joined() const {
    std::string out;
    for (const auto& l : list_) out += (out.empty() ? "" : "\n") + l;
    return out;
  }

 private:
  static int line_of(const YAML::Node& at) {
    return at.IsDefined() && at.Mark().line >= 0 ? at.Mark().line + 1 : 1;
  }

  std::string source_;
  std::vector<std::string> list_;
  std::map<std::string, int> lines_;  // field path -> line
};

void check_known_keys(const YAML::Node& map, const std::string& path,
                      const std::set<std::string>& known, Problems& problems) {
  // yaml-cpp keeps every pair of a mapping but node[key] finds the first:
  // a key given twice would silently lose its second value.
  std::map<std::string, int> first_line;
  for (const auto& kv : map) {
    auto key = kv.first.as<std::string>("");
    problems.locate(path.empty() ? key : path + "." + key, kv.first);
    const auto [first, fresh] = first_line.emplace(key, kv.first.Mark().line + 1);
    if (!fresh)
      problems.add(kv.first, path.empty() ? key : path + "." + key,
                   "given twice (first on line " + std::to_string(first->second) + ")");
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      problems.add(kv.first, path.empty() ? key : path + "." + key,
                   "unknown field (known: " + list + ")");
    }
  }
}

// Reads a scalar as an unsigned integer within [lo, hi]; reports and returns
// false otherwise.
bool read_uint(const YAML::Node& node, const std::string& field, uint64_t lo, uint64_t hi,
               uint64_t& out, Problems& problems) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!node.IsScalar()) {
    problems.add(node, field, "must be an integer " + range);
    return false;
  }
  const std::string text = node.Scalar();
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < static_cast<long long>(lo) ||
      value > static_cast<long long>(hi)) {
    problems.add(node, field, "must be an integer " + range + ", got '" + text + "'");
    return false;
  }
  out = static_cast<uint64_t>(value);
  return true;
}

std::string scalar_or_empty(const YAML::Node& node) { return node.IsScalar() ? node.Scalar() : ""; }

// A number in [lo, hi] (decimal point allowed); reports and returns false
// otherwise.
bool read_double(const YAML::Node& node, const std::string& field, double lo, double hi,
                 double& out, Problems& problems) {
  const std::string text = scalar_or_empty(node);
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(value >= lo && value <= hi)) {
    std::ostringstream range;
    range << lo << ".." << hi;
    problems.add(node, field, "must be a number " + range.str() + ", got '" + text + "'");
    return false;
  }
  out = value;
  return true;
}

// A duration of whole seconds from 1 s to 1 h ("10s", "2m"); reports and
// leaves @out alone otherwise.
void read_seconds(const YAML::Node& node, const std::string& field, std::chrono::seconds& out,
                  Problems& problems) {
  const auto ms = parse_duration(scalar_or_empty(node));
  if (ms && *ms >= std::chrono::seconds(1) && *ms <= std::chrono::hours(1) &&
      ms->count() % 1000 == 0)
    out = std::chrono::duration_cast<std::chrono::seconds>(*ms);
  else
    problems.add(node, field,
                 "must be whole seconds from 1s to 3600s, got '" + scalar_or_empty(node) + "'");
}

// The skew mapping: window, min_new_flows, z_min, threshold, hold.
SkewSettings parse_skew(const YAML::Node& node, Problems& problems) {
  SkewSettings s;
  if (!node.IsMap()) {
    problems.add(node, "skew", "must be a mapping like {window: 10s, threshold: 2}");
    return s;
  }
  check_known_keys(node, "skew", {"window", "min_new_flows", "z_min", "threshold", "hold"},
                   problems);
  if (const auto d = node["window"]) read_seconds(d, "skew.window", s.window, problems);
  if (const auto d = node["hold"]) read_seconds(d, "skew.hold", s.hold, problems);
  uint64_t v = 0;
  if (const auto n = node["min_new_flows"];
      n && read_uint(n, "skew.min_new_flows", 1, 1000000000, v, problems))
    s.min_new_flows = v;
  if (const auto n = node["z_min"]) read_double(n, "skew.z_min", 0, 100, s.z_min, problems);
  if (const auto n = node["threshold"])
    read_double(n, "skew.threshold", 1, 1000, s.threshold, problems);
  return s;
}

// The audit mapping: interval, max_share.
AuditSettings parse_audit(const YAML::Node& node, Problems& problems) {
  AuditSettings a;
  if (!node.IsMap()) {
    problems.add(node, "audit", "must be a mapping like {interval: 30s, max_share: 0.5}");
    return a;
  }
  check_known_keys(node, "audit", {"interval", "max_share"}, problems);
  if (const auto d = node["interval"]) read_seconds(d, "audit.interval", a.interval, problems);
  if (const auto n = node["max_share"])
    read_double(n, "audit.max_share", 0.01, 1, a.max_share, problems);
  return a;
}

// A health_check mapping, its fields over @base (the VIP's check for a
// backend's override, the defaults for a VIP's).
CheckSpec parse_check(const YAML::Node& node, const std::string& path, CheckSpec base,
                      uint16_t vip_port, Problems& problems) {
  CheckSpec c = std::move(base);
  if (!node.IsMap()) {
    problems.add(node, path, "must be a mapping like {type: http, path: /healthz}");
    return c;
  }
  check_known_keys(node, path,
                   {"type", "port", "path", "host", "expect_status", "payload", "expect",
                    "interval", "timeout", "rise", "fall"},
                   problems);
  if (const auto t = node["type"]) {
    if (auto type = parse_check_type(scalar_or_empty(t)))
      c.type = *type;
    else
      problems.add(t, path + ".type",
                   "must be none, tcp, http or udp, got '" + scalar_or_empty(t) + "'");
  }
  uint64_t v = 0;
  if (const auto p = node["port"]; p && read_uint(p, path + ".port", 1, 65535, v, problems))
    c.port = static_cast<uint16_t>(v);
  if (const auto p = node["path"]) {
    c.http_path = scalar_or_empty(p);
    if (c.http_path.empty() || c.http_path[0] != '/')
      problems.add(p, path + ".path", "must start with /, got '" + c.http_path + "'");
  }
  if (const auto h = node["host"]) c.http_host = scalar_or_empty(h);
  if (const auto e = node["expect_status"]) {
    c.http_expect.clear();
    auto add = [&](const YAML::Node& n) {
      if (read_uint(n, path + ".expect_status", 100, 599, v, problems))
        c.http_expect.push_back(static_cast<uint16_t>(v));
    };
    if (e.IsSequence())
      for (const auto& n : e) add(n);
    else
      add(e);
  }
  if (const auto p = node["payload"]) c.udp_payload = scalar_or_empty(p);
  if (const auto e = node["expect"]) c.udp_expect = scalar_or_empty(e);
  for (auto [key, field] : {std::pair{"interval", &c.interval}, std::pair{"timeout", &c.timeout}}) {
    if (const auto d = node[key]) {
      if (auto ms = parse_duration(scalar_or_empty(d)))
        *field = *ms;
      else
        problems.add(d, path + "." + key,
                     "must be a duration like 500ms, 1s or 2.5s, got '" + scalar_or_empty(d) + "'");
    }
  }
  for (auto [key, field] : {std::pair{"rise", &c.rise}, std::pair{"fall", &c.fall}})
    if (const auto n = node[key]; n && read_uint(n, path + "." + key, 1, 100, v, problems))
      *field = static_cast<uint32_t>(v);
  if (c.port == 0) c.port = vip_port;
  // Rules across fields (a zero interval, a Host with a space), with this
  // mapping's line.
  if (auto err = check_spec_error(c); !err.empty()) problems.add(node, path + "." + err, "");
  return c;
}

BackendConfig parse_backend(const YAML::Node& node, const std::string& path, const VipConfig& vip,
                            Problems& problems) {
  BackendConfig b;
  b.check = vip.check;
  problems.locate(path, node);
  if (!node.IsMap()) {
    problems.add(node, path, "must be a mapping like {address: 10.0.0.11, weight: 1}");
    return b;
  }
  check_known_keys(node, path, {"address", "weight", "health_check"}, problems);
  if (const auto hc = node["health_check"])
    b.check = parse_check(hc, path + ".health_check", vip.check, vip.key.port, problems);
  const auto addr = node["address"];
  if (!addr) {
    problems.add(node, path + ".address", "is required");
  } else if (auto a = IpAddress::parse(scalar_or_empty(addr))) {
    b.address = *a;
    if (const auto why = unusable_address(*a))
      problems.add(addr, path + ".address", "'" + a->str() + "' cannot be a backend: it is " + *why);
  } else {
    problems.add(addr, path + ".address", "'" + scalar_or_empty(addr) + "' is not an IP address");
  }
  if (const auto w = node["weight"]) {
    uint64_t v = 0;
    if (read_uint(w, path + ".weight", 0, kMaxWeight, v, problems))
      b.weight = static_cast<uint32_t>(v);
  }
  return b;
}

// Optional boolean field @name of @node into @out.
void read_bool(const YAML::Node& node, const std::string& name, const std::string& path, bool& out,
               Problems& problems) {
  const auto field = node[name];
  if (!field) return;
  const std::string text = scalar_or_empty(field);
  if (text == "true" || text == "false")
    out = text == "true";
  else
    problems.add(field, path + "." + name, "must be true or false, got '" + text + "'");
}

// YAML `fleet: {announce: {table: 100, min_usable: 1}}`.
AnnounceSettings parse_announce(const YAML::Node& node, Problems& problems) {
  AnnounceSettings out;
  if (node.IsNull()) return out;  // `announce:` alone: the defaults
  if (!node.IsMap()) {
    problems.add(node, "fleet.announce", "must be a mapping like {table: 100, min_usable: 1}");
    return out;
  }
  check_known_keys(node, "fleet.announce", {"table", "min_usable"}, problems);
  if (const auto t = node["table"]) {
    uint64_t v = 0;
    if (read_uint(t, "fleet.announce.table", 1, 0xffffffffull, v, problems)) {
      if (reserved_route_table(v))
        problems.add(t, "fleet.announce.table",
                     "must not be one of the kernel's own tables (0, 252 compat, 253 default, "
                     "254 main, 255 local): forwarding uses those; got " +
                         std::to_string(v));
      else
        out.table = static_cast<uint32_t>(v);
    }
  }
  if (const auto m = node["min_usable"]) {
    uint64_t v = 0;
    if (read_uint(m, "fleet.announce.min_usable", 0, BALLAST_MAX_BACKENDS, v, problems))
      out.min_usable = static_cast<uint32_t>(v);
  }
  return out;
}

// YAML `fleet: {hash_seed: 12345, announce: {...}}`.
FleetSettings parse_fleet(const YAML::Node& node, Problems& problems) {
  FleetSettings out;
  if (!node.IsMap()) {
    problems.add(node, "fleet", "must be a mapping like {hash_seed: 12345}");
    return out;
  }
  check_known_keys(node, "fleet", {"hash_seed", "announce", "second_chance_keep"}, problems);
  if (const auto d = node["second_chance_keep"])
    read_seconds(d, "fleet.second_chance_keep", out.second_chance_keep, problems);
  if (const auto seed = node["hash_seed"]) {
    uint64_t v = 0;
    if (read_uint(seed, "fleet.hash_seed", 0, 0xffffffffull, v, problems))
      out.hash_seed = static_cast<uint32_t>(v);
  }
  if (const auto a = node["announce"]) out.announce = parse_announce(a, problems);
  return out;
}

// YAML `encap: {source_prefix_v4: 10.255.0.0/16, source_prefix_v6: fd00:ff::/96}`.
EncapSettings parse_encap(const YAML::Node& node, Problems& problems) {
  EncapSettings out;
  if (!node.IsMap()) {
    problems.add(node, "encap", "must be a mapping like {source_prefix_v4: 10.255.0.0/16}");
    return out;
  }
  check_known_keys(node, "encap",
                   {"source_prefix_v4", "source_prefix_v6", "next_hop_v4", "next_hop_v6"},
                   problems);
  auto read = [&](const char* name, bool v4, std::optional<IpPrefix>& into) {
    const auto field = node[name];
    if (!field) return;
    const std::string text = scalar_or_empty(field);
    const auto prefix = IpPrefix::parse(text);
    const std::string field_path = std::string("encap.") + name;
    if (!prefix)
      problems.add(field, field_path,
                   "must be a prefix ADDRESS/LENGTH with its host bits zero, got '" + text + "'");
    else if (prefix->address.is_v4() != v4)
      problems.add(
          field, field_path,
          std::string("must be an ") + (v4 ? "IPv4" : "IPv6") + " prefix, got '" + text + "'");
    else if (!v4 && prefix->length < 96)
      problems.add(field, field_path,
                   "must be /96 or longer (at most the last 32 bits come from the flow hash), "
                   "got '" +
                       text + "'");
    else
      into = prefix;
  };
  read("source_prefix_v4", true, out.source_v4);
  read("source_prefix_v6", false, out.source_v6);
  auto read_hop = [&](const char* name, bool v4, std::optional<IpAddress>& into) {
    const auto field = node[name];
    if (!field) return;
    const std::string text = scalar_or_empty(field);
    const auto addr = IpAddress::parse(text);
    if (!addr || addr->is_v4() != v4)
      problems.add(
          field, std::string("encap.") + name,
          std::string("must be an ") + (v4 ? "IPv4" : "IPv6") + " address, got '" + text + "'");
    else
      into = addr;
  };
  read_hop("next_hop_v4", true, out.next_hop_v4);
  read_hop("next_hop_v6", false, out.next_hop_v6);
  return out;
}

VipConfig parse_vip(const YAML::Node& node, const std::string& path, Problems& problems) {
  VipConfig vip;
  problems.locate(path, node);
  if (!node.IsMap()) {
    problems.add(node, path, "must be a mapping with address, port, protocol, backends");
    return vip;
  }
  check_known_keys(node, path,
                   {"address", "port", "protocol", "backends", "fail_open", "health_check",
                    "max_share", "mode", "gue_port", "ignore_source_port", "fragments",
                    "min_usable", "second_chance"},
                   problems);
  if (const auto m = node["mode"]) {
    const std::string text = scalar_or_empty(m);
    if (const auto mode = parse_forward_mode(text))
      vip.mode = *mode;
    else
      problems.add(m, path + ".mode", "must be dsr, ipip or gue, got '" + text + "'");
  }
  if (const auto gp = node["gue_port"]) {
    uint64_t v = 0;
    if (read_uint(gp, path + ".gue_port", 1, 65535, v, problems))
      vip.gue_port = static_cast<uint16_t>(v);
  }
  read_bool(node, "ignore_source_port", path, vip.ignore_source_port, problems);
  read_bool(node, "fragments", path, vip.fragments, problems);
  read_bool(node, "second_chance", path, vip.second_chance, problems);
  if (const auto ms = node["max_share"]) {
    double v = 0;
    if (read_double(ms, path + ".max_share", 0.01, 1, v, problems)) vip.max_share = v;
  }
  if (const auto mu = node["min_usable"]) {
    uint64_t v = 0;
    if (read_uint(mu, path + ".min_usable", 0, BALLAST_MAX_BACKENDS, v, problems))
      vip.min_usable = static_cast<uint32_t>(v);
  }
  const auto addr = node["address"];
  if (!addr) {
    problems.add(node, path + ".address", "is required");
  } else if (auto a = IpAddress::parse(scalar_or_empty(addr))) {
    vip.key.address = *a;
    if (const auto why = unusable_address(*a))
      problems.add(addr, path + ".address", "'" + a->str() + "' cannot be a VIP: it is " + *why);
  } else {
    problems.add(addr, path + ".address", "'" + scalar_or_empty(addr) + "' is not an IP address");
  }
  const auto port = node["port"];
  uint64_t v = 0;
  if (!port)
    problems.add(node, path + ".port", "is required");
  else if (read_uint(port, path + ".port", 1, 65535, v, problems))
    vip.key.port = static_cast<uint16_t>(v);
  const auto proto = node["protocol"];
  if (!proto) {
    problems.add(node, path + ".protocol", "is required (tcp or udp)");
  } else if (auto p = parse_protocol(scalar_or_empty(proto))) {
    vip.key.protocol = *p;
  } else {
    problems.add(proto, path + ".protocol",
                 "must be tcp or udp, got '" + scalar_or_empty(proto) + "'");
  }
  read_bool(node, "fail_open", path, vip.fail_open, problems);
  vip.check.port = vip.key.port;
  if (const auto hc = node["health_check"])
    vip.check = parse_check(hc, path + ".health_check", CheckSpec{}, vip.key.port, problems);
  const auto backends = node["backends"];
  if (backends && !backends.IsSequence() && !backends.IsNull()) {
    problems.add(backends, path + ".backends", "must be a list");
  } else if (backends && backends.IsSequence()) {
    for (size_t i = 0; i < backends.size(); i++)
      vip.backends.push_back(
          parse_backend(backends[i], path + ".backends[" + std::to_string(i) + "]", vip, problems));
  }
  return vip;
}

}  // namespace

void validate_vip(const VipConfig& vip, const std::string& path, std::vector<std::string>& out) {
  if (vip.ignore_source_port && vip.key.protocol != Protocol::udp)
    out.push_back(path + ".ignore_source_port: only for udp VIPs (" + vip.key.str() +
                  " is tcp: a TCP connection never changes its source port)");
  if (const auto why = unusable_address(vip.key.address))
    out.push_back(path + ".address: '" + vip.key.address.str() + "' cannot be a VIP: it is " + *why);
  if (vip.key.port == 0) out.push_back(path + ".port: must be 1..65535");
  if (vip.second_chance && (vip.mode != ForwardMode::gue || vip.key.protocol != Protocol::tcp))
    out.push_back(path + ".second_chance: only for tcp VIPs in mode gue (the previous backend "
                         "travels in the GUE header; a backend finds a flow by its TCP socket)");
  if (auto err = check_spec_error(vip.check); !err.empty())
    out.push_back(path + ".health_check." + err);
  std::map<IpAddress, size_t> seen_backends;
  for (size_t j = 0; j < vip.backends.size(); j++) {
    const auto& b = vip.backends[j];
    const std::string bpath = path + ".backends[" + std::to_string(j) + "]";
    if (const auto why = unusable_address(b.address))
      out.push_back(bpath + ".address: '" + b.address.str() + "' cannot be a backend: it is " +
                    *why);
    if (b.address.family != vip.key.address.family && !mode_encapsulates(vip.mode))
      out.push_back(bpath + ".address: " + b.address.str() +
                    ": must be the VIP's address family in mode dsr (direct server return "
                    "rewrites only MACs; ipip and gue carry either family)");
    if (b.weight > kMaxWeight)
      out.push_back(bpath + ".weight: must be 0.." + std::to_string(kMaxWeight) + ", got " +
                    std::to_string(b.weight));
    if (b.check != vip.check)
      if (auto err = check_spec_error(b.check); !err.empty())
        out.push_back(bpath + ".health_check." + err);
    auto [bit, bfresh] = seen_backends.emplace(b.address, j);
    if (!bfresh)
      out.push_back(bpath + ".address: duplicate backend " + b.address.str() + " (also " + path +
                    ".backends[" + std::to_string(bit->second) + "])");
  }
}

std::string fragments_taken(const std::string& path, size_t owner, const VipKey& key) {
  return path + ".fragments: vips[" + std::to_string(owner) + "] already takes the fragments to " +
         key.address.str() + " " + std::string(protocol_name(key.protocol)) +
         " (one VIP per address and protocol)";
}

std::vector<std::string> validate_config(const Config& config) {
  std::vector<std::string> out;
  if (config.interface.empty())
    out.push_back("interface: is required");
  else if (config.interface.size() >= IFNAMSIZ)
    out.push_back("interface: '" + config.interface + "' is longer than " +
                  std::to_string(IFNAMSIZ - 1) + " characters");
  if (config.vips.size() > BALLAST_MAX_VIPS) out.push_back(too_many_vips(config.vips.size()));
  std::map<VipKey, size_t> seen_vips;
  std::map<VipKey, size_t> fragment_owner;  // (address, port 0, protocol) -> VIP index
  size_t total_backends = 0;
  for (size_t i = 0; i < config.vips.size(); i++) {
    const auto& vip = config.vips[i];
    const std::string path = "vips[" + std::to_string(i) + "]";
    if (vip.fragments) {
      VipKey frag_key = vip.key;
      frag_key.port = 0;
      auto [fit, ffresh] = fragment_owner.emplace(frag_key, i);
      if (!ffresh) out.push_back(fragments_taken(path, fit->second, vip.key));
    }
    auto [it, fresh] = seen_vips.emplace(vip.key, i);
    if (!fresh)
      out.push_back(path + ": duplicate VIP " + vip.key.str() + " (also vips[" +
                    std::to_string(it->second) + "])");
    validate_vip(vip, path, out);
    if (vip.min_usable && !config.fleet.announce)
      out.push_back(path + ".min_usable: only means something with fleet.announce (ballastd "
                           "announces nothing without it)");
    total_backends += vip.backends.size();
  }
  if (config.fleet.announce && reserved_route_table(config.fleet.announce->table))
    out.push_back("fleet.announce.table: must not be one of the kernel's own tables (0, 252, "
                  "253, 254, 255), got " +
                  std::to_string(config.fleet.announce->table));
  if (total_backends > BALLAST_MAX_BACKENDS) out.push_back(too_many_backends(total_backends));
  return out;
}

bool reserved_route_table(uint64_t table) { return table == 0 || (table >= 252 && table <= 255); }

std::string too_many_backends(size_t total) {
  return "vips: at most " + std::to_string(BALLAST_MAX_BACKENDS) + " backends over all VIPs, got " +
         std::to_string(total);
}

std::string too_many_vips(size_t total) {
  return "vips: at most " + std::to_string(BALLAST_MAX_VIPS) + " VIPs, got " +
         std::to_string(total);
}

void require_valid(const Config& config) {
  auto problems = validate_config(config);
  if (problems.empty()) return;
  std::string msg;
  for (const auto& p : problems) msg += (msg.empty() ? "" : "\n") + p;
  throw Error(msg);
}

Config parse_config(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw Error(source + ":" + std::to_string(std::max(e.mark.line, 0) + 1) +
                ": not valid YAML: " + one_line(e.msg));
  }
  Problems problems(source);
  Config config;
  if (!root.IsMap()) {
    problems.add_located("top level must be a mapping with interface and vips");
    throw Error(problems.joined());
  }
  check_known_keys(
      root, "",
      {"interface", "attach_mode", "vips", "skew", "metrics", "audit", "reconcile", "encap", "fleet"},
      problems);
  if (const auto encap = root["encap"]) config.encap = parse_encap(encap, problems);
  if (const auto fleet = root["fleet"]) config.fleet = parse_fleet(fleet, problems);
  if (const auto audit = root["audit"]) config.audit = parse_audit(audit, problems);
  if (const auto rc = root["reconcile"]) {
    const std::string text = scalar_or_empty(rc);
    if (text == "true" || text == "false")
      config.reconcile = text == "true";
    else
      problems.add(rc, "reconcile", "must be true or false, got '" + text + "'");
  }
  if (const auto skew = root["skew"]) config.skew = parse_skew(skew, problems);
  if (const auto metrics = root["metrics"]) {
    if (!metrics.IsMap()) {
      problems.add(metrics, "metrics", "must be a mapping like {listen: 127.0.0.1:9469}");
    } else {
      check_known_keys(metrics, "metrics", {"listen"}, problems);
      if (const auto listen = metrics["listen"]) {
        const std::string text = scalar_or_empty(listen);
        if (text == "off" || text == "")
          config.metrics_listen.clear();
        else if (!parse_listen_address(text))
          problems.add(listen, "metrics.listen",
                       "must be ADDRESS:PORT (IPv6 as [ADDRESS]:PORT) or off, got '" + text + "'");
        else
          config.metrics_listen = text;
      }
    }
  }
  if (const auto iface = root["interface"]; iface && iface.IsScalar())
    config.interface = iface.Scalar();
  else if (iface)
    problems.add(iface, "interface", "must be an interface name");
  if (const auto mode = root["attach_mode"]) {
    const std::string m = scalar_or_empty(mode);
    if (m == "native")
      config.attach_mode = AttachMode::native;
    else if (m == "skb")
      config.attach_mode = AttachMode::skb;
    else
      problems.add(mode, "attach_mode", "must be native or skb, got '" + m + "'");
  }
  const auto vips = root["vips"];
  if (!vips) {
    problems.add(root, "vips", "is required (a list, may be empty: vips: [])");
  } else if (vips.IsSequence()) {
    for (size_t i = 0; i < vips.size(); i++)
      config.vips.push_back(parse_vip(vips[i], "vips[" + std::to_string(i) + "]", problems));
  } else if (!vips.IsNull()) {
    problems.add(vips, "vips", "must be a list");
  }
  // Whole-config rules (duplicates, families, limits) once the fields parsed.
  if (problems.empty())
    for (const auto& p : validate_config(config)) problems.add_located(p);
  if (!problems.empty()) throw Error(problems.joined());
  return config;
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(errno_message("cannot read config " + path, errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace ballast
