#include "metrics.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "maglev.h"
#include "stats.h"

namespace ballast {

const char* const kBallastVersion = "0.4.0";

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Label values escaped as the exposition format asks: \\, \" and \n.
std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += {'\\', c};
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];  // the shortest text that reads back as the same double
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

// Writes families one at a time: HELP and TYPE once, then the samples.
class Writer {
 public:
  void family(const std::string& name, const std::string& type, const std::string& help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    name_ = name;
  }
  void sample(const Labels& labels, double value) {
    out_ += name_;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i)
        out_ += (i ? "," : "") + labels[i].first + "=\"" + escape(labels[i].second) + "\"";
      out_ += '}';
    }
    out_ += ' ' + number(value) + '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_, name_;
};

Labels vip_labels(const VipView& v) { return {{"vip", v.key.str()}}; }
Labels backend_labels(const VipView& v, const BackendView& b) {
  return {{"vip", v.key.str()}, {"backend", b.address.str()}};
}
Labels with(Labels l, const std::string& k, const std::string& v) {
  l.emplace_back(k, v);
  return l;
}

}  // namespace

std::string render_metrics(const MetricsInput& in) {
  const auto& vips = *in.vips;
  std::map<uint32_t, const VipSkew*> skew_of;
  for (const auto& s : *in.skew) skew_of[s.id] = &s;
  auto backend_skew = [&](const VipView& v, const BackendView& b) -> const BackendSkew* {
    auto it = skew_of.find(v.id);
    if (it == skew_of.end()) return nullptr;
    for (const auto& s : it->second->backends)
      if (s.id == b.id) return &s;
    return nullptr;
  };
  std::map<uint32_t, ballast_traffic_counters> vip_counters, backend_counters;
  for (const auto& v : vips) {
    vip_counters[v.id] = in.dataplane->read_counters(CounterMap::vip, v.id);
    for (const auto& b : v.backends)
      backend_counters[b.id] = in.dataplane->read_counters(CounterMap::backend, b.id);
  }

  Writer w;
  w.family("ballast_build_info", "gauge", "Ballast's version; always 1.");
  w.sample({{"version", kBallastVersion}}, 1.0);
  w.family("ballast_xdp_program_attached", "gauge",
           "1 while ballastd's XDP program is the one attached to its interface, else 0.");
  w.sample({{"interface", in.interface}, {"mode", in.attach_mode}},
           in.program_attached ? 1.0 : 0.0);
  w.family("ballast_daemon_errors_total", "counter",
           "Errors ballastd met in a step of its loop, logged and survived (forwarding "
           "never depends on the loop).");
  for (const auto& [step, n] : in.daemon_errors)
    w.sample({{"step", step}}, static_cast<double>(n));
  w.family("ballast_skew_window_seconds", "gauge",
           "Length of the sliding window skew is computed over.");
  w.sample({}, static_cast<double>(in.skew_settings.window.count()));
  w.family("ballast_skew_threshold_ratio", "gauge",
           "Skew (observed / expected share) above which a backend counts as skewed.");
  w.sample({}, in.skew_settings.threshold);
  w.family("ballast_skew_min_new_flows", "gauge",
           "New flows a VIP needs in the window before its skew is trusted.");
  w.sample({}, static_cast<double>(in.skew_settings.min_new_flows));

  // Per VIP.
  struct Counter {
    const char* name;
    const char* help;
    decltype(ballast_traffic_counters::packets) ballast_traffic_counters::*field;
  };
  const Counter counters[] = {
      {"packets_total", "packets forwarded", &ballast_traffic_counters::packets},
      {"bytes_total", "bytes forwarded (whole frames as received)",
       &ballast_traffic_counters::bytes},
      {"new_flows_total", "new flows (Maglev lookups that picked a backend)",
       &ballast_traffic_counters::new_flows},
  };
  for (const auto& c : counters) {
    w.family(std::string("ballast_vip_") + c.name, "counter", std::string("VIP: ") + c.help + ".");
    for (const auto& v : vips) w.sample(vip_labels(v), vip_counters[v.id].*c.field);
  }
  w.family("ballast_vip_pickups_total", "counter",
           "VIP: mid-flow pick-ups, TCP packets without SYN that found no connection-table "
           "entry (a flow moved here from another balancer, or an entry lost); among its new "
           "flows.");
  std::map<uint32_t, ballast_fleet_counters> fleet;
  for (const auto& v : vips) fleet[v.id] = in.dataplane->read_fleet_counters(v.id);
  for (const auto& v : vips) w.sample(vip_labels(v), fleet[v.id].pickups);
  w.family("ballast_vip_second_chance_total", "counter",
           "VIP: packets sent with the flow's previous backend in their GUE header (second "
           "chance: a pick-up the previous table placed on another backend).");
  for (const auto& v : vips) w.sample(vip_labels(v), fleet[v.id].second_chance);
  w.family("ballast_vip_backends", "gauge", "Backends configured for the VIP.");
  for (const auto& v : vips) w.sample(vip_labels(v), static_cast<uint64_t>(v.backends.size()));
  w.family("ballast_vip_backends_usable", "gauge",
           "Backends taking new flows: up, undrained, weight above 0, MAC resolved.");
  for (const auto& v : vips) {
    uint64_t n = 0;
    for (const auto& b : v.backends) n += b.takes_new_flows && b.health == Health::up;
    w.sample(vip_labels(v), n);
  }
  // Info-style: the digest is a label, so that Prometheus can count the
  // distinct digests of one VIP across a fleet (the alert
  // BallastFleetTablesDisagree); a 64-bit digest would not survive a float.
  w.family("ballast_vip_table_info", "gauge",
           "1 per VIP with a table: its fleet digest (same on every balancer that sends each "
           "flow to the same backend), the fleet hash_seed and the table format.");
  for (const auto& v : vips) {
    if (!v.table) continue;
    Labels labels = vip_labels(v);
    labels.push_back({"digest", maglev::digest_hex(v.table_digest)});
    labels.push_back({"hash_seed", std::to_string(v.hash_seed)});
    labels.push_back({"format", std::to_string(maglev::kTableFormat)});
    w.sample(labels, 1.0);
  }
  if (in.announcer && in.announcer->enabled()) {
    w.family("ballast_vip_announced", "gauge",
             "1 while the VIP's address is announced to the routers (fleet.announce: its route "
             "is in the announce table), 0 while withdrawn.");
    for (const auto& v : vips)
      w.sample(vip_labels(v), in.announcer->announced(v.key.address) ? 1.0 : 0.0);
    w.family("ballast_fleet_left", "gauge",
             "1 while `ballast fleet leave` keeps every VIP withdrawn.");
    w.sample({}, in.announcer->left() ? 1.0 : 0.0);
  }
  w.family("ballast_vip_failing_open", "gauge",
           "1 when no backend is up and fail_open sends new flows to all of them.");
  for (const auto& v : vips) w.sample(vip_labels(v), v.failing_open ? 1.0 : 0.0);
  w.family("ballast_vip_window_new_flows", "gauge", "New flows the VIP saw in the skew window.");
  for (const auto& v : vips)
    if (auto it = skew_of.find(v.id); it != skew_of.end())
      w.sample(vip_labels(v), it->second->window.new_flows);
  w.family("ballast_vip_skew_confident", "gauge",
           "1 when the window holds at least ballast_skew_min_new_flows new flows.");
  for (const auto& v : vips)
    if (auto it = skew_of.find(v.id); it != skew_of.end())
      w.sample(vip_labels(v), it->second->confident ? 1.0 : 0.0);
  w.family("ballast_vip_skew_ratio", "gauge",
           "Largest new-flow skew (observed / expected share) of the VIP's backends.");
  for (const auto& v : vips)
    if (auto it = skew_of.find(v.id); it != skew_of.end() && it->second->skew)
      w.sample(vip_labels(v), *it->second->skew);

  w.family("ballast_vip_ring_foreign_share_ratio", "gauge",
           "Share of the VIP's live Maglev table entries that name none of its backends.");
  for (const auto& v : vips)
    if (auto it = skew_of.find(v.id); it != skew_of.end())
      w.sample(vip_labels(v), it->second->ring_foreign_share);

  // Per backend.
  for (const auto& c : counters) {
    w.family(std::string("ballast_backend_") + c.name, "counter",
             std::string("Backend: ") + c.help + ".");
    for (const auto& v : vips)
      for (const auto& b : v.backends)
        w.sample(backend_labels(v, b), backend_counters[b.id].*c.field);
  }
  w.family("ballast_backend_weight", "gauge", "Configured weight.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      w.sample(backend_labels(v, b), static_cast<uint64_t>(b.weight));
  w.family("ballast_backend_health", "gauge",
           "1 for the backend's health-check state (up, down or unknown), 0 for the others.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      for (Health h : {Health::up, Health::down, Health::unknown})
        w.sample(with(backend_labels(v, b), "state", std::string(health_name(h))),
                 b.health == h ? 1.0 : 0.0);
  w.family("ballast_backend_drained", "gauge", "1 while drained (no new flows), else 0.");
  for (const auto& v : vips)
    for (const auto& b : v.backends) w.sample(backend_labels(v, b), b.drained ? 1.0 : 0.0);
  w.family("ballast_backend_share_expected_ratio", "gauge",
           "Weight over the weight of the VIP's backends taking new flows; 0 when it takes none.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b)) w.sample(backend_labels(v, b), s->expected_share);
  struct Measure {
    const char* name;
    double BackendSkew::*observed;
    std::optional<double> BackendSkew::*skew;
  };
  const Measure measures[] = {
      {"new_flows", &BackendSkew::observed_new_flows, &BackendSkew::skew_new_flows},
      {"packets", &BackendSkew::observed_packets, &BackendSkew::skew_packets},
      {"bytes", &BackendSkew::observed_bytes, &BackendSkew::skew_bytes},
  };
  w.family("ballast_backend_share_observed_ratio", "gauge",
           "Share of the VIP's new flows, packets or bytes (measure) in the skew window.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b))
        for (const auto& m : measures)
          w.sample(with(backend_labels(v, b), "measure", m.name), s->*m.observed);
  w.family("ballast_backend_skew_ratio", "gauge",
           "Observed share over expected share in the skew window (1 = as configured); "
           "absent when nothing is expected of the backend.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b))
        for (const auto& m : measures)
          if (const auto& k = s->*m.skew)
            w.sample(with(backend_labels(v, b), "measure", m.name), *k);
  w.family("ballast_backend_skew_significant", "gauge",
           "1 when the window is confident and the backend's new-flow count is at least z_min "
           "standard deviations from its expected share.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b))
        w.sample(backend_labels(v, b), s->significant ? 1.0 : 0.0);
  w.family(
      "ballast_backend_skewed_seconds", "gauge",
      "How long the backend has been skewed (significant and above the threshold); 0 when not.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b))
        w.sample(backend_labels(v, b),
                 s->skewed_for ? static_cast<double>(s->skewed_for->count()) : 0.0);
  w.family("ballast_backend_ring_share_ratio", "gauge",
           "Share of the VIP's live Maglev table entries that name the backend.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b)) w.sample(backend_labels(v, b), s->ring_share);
  w.family("ballast_backend_ring_skew_ratio", "gauge",
           "Ring share over expected share; absent when nothing is expected of the backend.");
  for (const auto& v : vips)
    for (const auto& b : v.backends)
      if (const auto* s = backend_skew(v, b); s && s->ring_skew)
        w.sample(backend_labels(v, b), *s->ring_skew);

  // Per reason: every verdict the program returned and why.
  const auto reasons = in.dataplane->read_reasons();
  w.family("ballast_xdp_packets_total", "counter",
           "Packets by the program's verdict (tx, pass, drop) and reason.");
  for (uint32_t r = 0; r < reasons.size(); ++r)
    w.sample({{"reason", std::string(reason_name(r))}, {"verdict", std::string(reason_verdict(r))}},
             reasons[r].packets);
  w.family("ballast_xdp_bytes_total", "counter", "Bytes by the program's verdict and reason.");
  for (uint32_t r = 0; r < reasons.size(); ++r)
    w.sample({{"reason", std::string(reason_name(r))}, {"verdict", std::string(reason_verdict(r))}},
             reasons[r].bytes);

  // The connection table: where each new flow's entry went (the SYN-flood
  // guard leaves flows unrecorded rather than replace a live one).
  const ballast_conn_counters conn = in.dataplane->read_conn_counters();
  w.family("ballast_conn_table_new_flows_total", "counter",
           "New flows by where their connection-table entry went: an empty way (recorded), an "
           "unconfirmed flow's way (replaced_embryonic), a confirmed flow's way idle past the "
           "guard (replaced_idle), or none (unrecorded: placed by the Maglev table alone).");
  w.sample({{"placement", "recorded"}}, conn.recorded);
  w.sample({{"placement", "replaced_embryonic"}}, conn.replaced_embryonic);
  w.sample({{"placement", "replaced_idle"}}, conn.replaced_idle);
  w.sample({{"placement", "unrecorded"}}, conn.unrecorded);
  w.family("ballast_conn_table_capacity", "gauge",
           "Flows the connection table holds at most (its ways).");
  w.sample({}, static_cast<uint64_t>(BALLAST_CONN_TABLE_SIZE));

  if (!in.audit_findings.empty()) {
    w.family("ballast_audit_findings", "gauge",
             "Findings of the last audit by check id and severity (0 when the check is clean).");
    for (const auto& [key, count] : in.audit_findings)
      w.sample({{"check", key.first}, {"severity", key.second}}, static_cast<uint64_t>(count));
  }
  return w.take();
}

}  // namespace ballast
