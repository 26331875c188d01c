// ballast: the command-line client of ballastd's control API. It only talks
// to the API: every rule and every change lives in the daemon.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "api.h"
#include "config.h"
#include "decap.h"
#include "doctor.h"
#include "error.h"
#include "health_model.h"
#include "table.h"

namespace {

// The modes `doctor backend --mode` takes: forward_mode.h's.
std::vector<std::string> forward_mode_names() {
  std::vector<std::string> out;
  for (ballast::ForwardMode m : ballast::kForwardModes) out.push_back(ballast::forward_mode_name(m));
  return out;
}

using ballast::Table;
using nlohmann::json;

struct Globals {
  std::string socket = ballast::kDefaultSocket;
  std::string output = "table";
};

std::string share(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", v.get<double>() * 100);
  return buf;
}

std::string ratio(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v.get<double>());
  return buf;
}

std::string text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

void print_status(const json& s) {
  Table t({"FIELD", "VALUE"});
  for (const char* k : {"version", "interface", "attach_mode", "program_id", "pin_dir", "config",
                        "metrics", "vips", "backends", "uptime_seconds"})
    t.add({k, text(s[k])});
  std::string unresolved;
  for (const auto& u : s["unresolved_backends"])
    unresolved += (unresolved.empty() ? "" : ", ") + text(u);
  t.add({"unresolved_backends", unresolved.empty() ? "none" : unresolved});
  t.print();
}

void print_vips(const json& vips) {
  Table t({"VIP", "ID", "BACKENDS", "TOTAL WEIGHT"});
  for (const auto& v : vips) {
    uint64_t weight = 0;
    for (const auto& b : v["backends"]) weight += b["weight"].get<uint64_t>();
    t.add({text(v["vip"]), text(v["id"]), std::to_string(v["backends"].size()),
           std::to_string(weight)});
  }
  t.print();
}

void print_backends(const json& backends) {
  Table t({"VIP", "BACKEND", "WEIGHT", "HEALTH", "DRAINED", "MAC", "TABLE ENTRIES", "LAST CHECK"});
  for (const auto& b : backends)
    t.add({text(b["vip"]), text(b["address"]), text(b["weight"]), text(b["health"]),
           b["drained"].get<bool>() ? "yes" : "no",
           b["resolved"].get<bool>() ? text(b["mac"]) : "unresolved", text(b["table_entries"]),
           text(b["last_check"])});
  t.print();
}

void print_log(const json& entries) {
  Table t({"TIME", "BY", "CHANGE"});
  for (const auto& e : entries) t.add({text(e["time"]), text(e["actor"]), text(e["change"])});
  t.print();
}

// "30s", "5m", "500ms", "2h" -> milliseconds; throws CLI::ValidationError.
int64_t duration_ms(const std::string& text) {
  auto ms = ballast::parse_duration(text);
  if (!ms) throw CLI::ValidationError("'" + text + "' is not a duration (e.g. 500ms, 30s, 5m, 2h)");
  return ms->count();
}

void print_stats(const json& stats) {
  Table t({"VIP", "BACKEND", "WEIGHT", "PACKETS", "BYTES", "NEW FLOWS", "EXPECTED", "OBSERVED",
           "SKEW"});
  for (const auto& v : stats["vips"]) {
    t.add({text(v["vip"]) + " " + text(v["mode"]), "(all)", "", text(v["packets"]),
           text(v["bytes"]), text(v["new_flows"]), "", "", ""});
    for (const auto& b : v["backends"])
      t.add({"", text(b["address"]), text(b["weight"]), text(b["packets"]), text(b["bytes"]),
             text(b["new_flows"]), share(b["expected_share"]), share(b["observed_share"]),
             ratio(b["skew"])});
  }
  t.print();
  std::cout << "\n";
  Table r({"REASON", "VERDICT", "PACKETS", "BYTES"});
  for (const auto& x : stats["reasons"])
    r.add({text(x["reason"]), text(x["verdict"]), text(x["packets"]), text(x["bytes"])});
  r.print();
}

// One backend's verdict in `skew` and `top`.
std::string skew_status(const json& vip, const json& b) {
  if (!b["skew"]["new_flows"].is_number())
    return b["takes_new_flows"].get<bool>() ? "-" : "no share";
  if (!b["skewed_seconds"].is_null()) return "SKEWED " + text(b["skewed_seconds"]) + "s";
  if (!vip["confident"].get<bool>()) return "low sample";
  if (b["significant"].get<bool>()) return "significant";
  return "ok";
}

std::string per_second(const json& v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f", v.is_number() ? v.get<double>() : 0.0);
  return buf;
}

void print_skew(const json& s) {
  std::printf(
      "window %s s, confident from %s new flows per VIP, skewed above %.2f for %s s "
      "(|z| >= %.1f)\n\n",
      text(s["window_seconds"]).c_str(), text(s["min_new_flows"]).c_str(),
      s["threshold"].get<double>(), text(s["hold_seconds"]).c_str(), s["z_min"].get<double>());
  Table t({"VIP", "BACKEND", "HEALTH", "WEIGHT", "EXPECTED", "NEW FLOWS", "OBSERVED", "SKEW",
           "PKT SKEW", "Z", "RING", "RING SKEW", "STATUS"});
  for (const auto& v : s["vips"]) {
    t.add({text(v["vip"]), "(all)", "", "", "", text(v["window"]["new_flows"]), "",
           ratio(v["skew"]), "", "", "", "",
           v["confident"].get<bool>() ? "confident" : "low sample"});
    for (const auto& b : v["backends"])
      t.add({"", text(b["address"]),
             text(b["health"]) + (b["drained"].get<bool>() ? ",drained" : ""), text(b["weight"]),
             share(b["expected_share"]), text(b["window"]["new_flows"]),
             share(b["observed_share"]["new_flows"]), ratio(b["skew"]["new_flows"]),
             ratio(b["skew"]["packets"]), ratio(b["z"]), share(b["ring_share"]),
             ratio(b["ring_skew"]), skew_status(v, b)});
  }
  t.print();
}

// `top`: a bar of the observed new-flow share ('#') with the expected
// share marked ('|'), @width characters for 100%.
std::string share_bar(double observed, double expected, size_t width) {
  std::string bar(width, ' ');
  const auto fill = static_cast<size_t>(std::min(1.0, std::max(0.0, observed)) * width + 0.5);
  for (size_t i = 0; i < fill; ++i) bar[i] = '#';
  if (expected > 0) {
    const auto mark = std::min(width - 1, static_cast<size_t>(expected * width));
    bar[mark] = '|';
  }
  return "[" + bar + "]";
}

void print_top(const json& s, bool clear) {
  if (clear) std::cout << "\033[H\033[2J";
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char when[32];
  std::strftime(when, sizeof(when), "%H:%M:%S", std::localtime(&now));
  std::printf(
      "ballast top  %s  window %s s  bar: # observed new-flow share, | expected  "
      "(Ctrl-C quits)\n",
      when, text(s["window_seconds"]).c_str());
  for (const auto& v : s["vips"]) {
    std::printf("\n%s  %s pps  %s new flows in window  skew %s  %s\n", text(v["vip"]).c_str(),
                per_second(v["pps"]).c_str(), text(v["window"]["new_flows"]).c_str(),
                ratio(v["skew"]).c_str(), v["confident"].get<bool>() ? "" : "(low sample)");
    Table t({"  BACKEND", "SHARE", "OBSERVED", "EXPECTED", "SKEW", "PPS", "HEALTH", "STATUS"});
    for (const auto& b : v["backends"])
      t.add({"  " + text(b["address"]),
             share_bar(b["observed_share"]["new_flows"].get<double>(),
                       b["expected_share"].get<double>(), 30),
             share(b["observed_share"]["new_flows"]), share(b["expected_share"]),
             ratio(b["skew"]["new_flows"]), per_second(b["pps"]),
             text(b["health"]) + (b["drained"].get<bool>() ? ",drained" : ""), skew_status(v, b)});
    t.print();
  }
  std::cout.flush();
}

// Findings of an audit, one block each: severity, check id, the sentence,
// the hint.
void print_findings(const json& findings) {
  for (const auto& f : findings) {
    std::string sev = text(f["severity"]);
    for (auto& c : sev) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::printf("%-7s %-18s %s\n        hint: %s\n", sev.c_str(), text(f["check"]).c_str(),
                text(f["message"]).c_str(), text(f["hint"]).c_str());
  }
}

size_t count_errors(const json& findings) {
  size_t n = 0;
  for (const auto& f : findings) n += f["severity"] == "error";
  return n;
}

void print_changes(const json& result) {
  if (result["changes"].empty()) std::cout << "no change\n";
  for (const auto& c : result["changes"]) std::cout << text(c) << "\n";
  if (!result.value("applied", true)) std::cout << "(dry run: nothing was changed)\n";
  // A dry run shows every finding of the config it would apply; a change
  // shows what it added (the rest is in `ballast audit`).
  const json& findings = result.value("applied", true) ? result.value("new_findings", json::array())
                                                       : result.value("findings", json::array());
  if (!findings.empty()) {
    std::cout << "\naudit of the " << (result.value("applied", true) ? "change" : "new config")
              << ":\n";
    print_findings(findings);
  }
}

void print_audit(const json& result) {
  print_findings(result["findings"]);
  if (result["findings"].empty())
    std::cout << "no findings\n";
  else
    std::cout << text(result["errors"]) << " errors, " << text(result["warnings"]) << " warnings\n";
}

// drain --wait: asks for the backend's active flows once a second until
// none are left or the timeout passes. ballastd counts them in the
// background (a walk of the connection table): the first answers may be
// "not counted yet" (null).
int wait_for_drain(const std::string& socket, json args, int64_t timeout_ms, int64_t idle_ms) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  args["idle_ms"] = idle_ms;
  for (;;) {
    const json flows =
        ballast::api_call(socket, {{"command", "backend.flows"}, {"args", args}})["flows"];
    if (flows == 0) {
      std::cout << "drained: no active flows\n";
      return 0;
    }
    if (Clock::now() >= deadline) {
      std::cerr << "ballast: "
                << (flows.is_null() ? std::string("flows not counted yet")
                                    : "up to " + flows.dump() + " active flows left")
                << " after " << timeout_ms / 1000.0 << " s\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Globals g;
  CLI::App app{
      "ballast: control a running ballastd (the Ballast XDP load balancer).\n"
      "VIPs are written ADDRESS:PORT/PROTOCOL, e.g. 10.0.0.100:80/tcp."};
  app.require_subcommand(1);
  app.fallthrough();  // --socket and -o also work after the subcommand
  app.add_option("-s,--socket", g.socket, "ballastd's control socket")->capture_default_str();
  app.add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();

  // Each command: the API request it sends and how its answer is printed.
  json request;
  std::function<void(const json&)> print;

  auto* status =
      app.add_subcommand("status", "the daemon: interface, program, VIP and backend counts");
  status->callback([&] {
    request = {{"command", "status"}};
    print = print_status;
  });

  auto* vip = app.add_subcommand("vip", "list, add or delete VIPs");
  vip->require_subcommand(1);
  vip->add_subcommand("list", "list VIPs")->callback([&] {
    request = {{"command", "vip.list"}};
    print = print_vips;
  });
  std::string vip_arg, address_arg;
  int64_t weight_arg = 1;
  bool force = false;
  const char* force_help = "apply even when the pre-apply audit finds an error";
  auto* vip_add =
      vip->add_subcommand("add", "add a VIP (no backends yet: it drops until one is added)");
  vip_add->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  vip_add->add_flag("--force", force, force_help);
  vip_add->callback([&] {
    request = {{"command", "vip.add"}, {"args", {{"vip", vip_arg}}}};
    print = print_changes;
  });
  auto* vip_del = vip->add_subcommand("del", "delete a VIP; its traffic is no longer balanced");
  vip_del->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  vip_del->add_flag("--force", force, force_help);
  vip_del->callback([&] {
    request = {{"command", "vip.del"}, {"args", {{"vip", vip_arg}}}};
    print = print_changes;
  });

  auto* backend = app.add_subcommand("backend", "list, add, delete or reweight backends");
  backend->require_subcommand(1);
  auto* backend_list = backend->add_subcommand("list", "list backends (of one VIP, or all)");
  backend_list->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL");
  backend_list->callback([&] {
    request = {{"command", "backend.list"}, {"args", json::object()}};
    if (!vip_arg.empty()) request["args"]["vip"] = vip_arg;
    print = print_backends;
  });
  auto* backend_add = backend->add_subcommand("add", "add a backend to a VIP");
  backend_add->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  backend_add->add_option("ADDRESS", address_arg, "backend IP address")->required();
  backend_add->add_option("-w,--weight", weight_arg, "weight, 0..65535 (0: no new flows)")
      ->capture_default_str();
  backend_add->add_flag("--force", force, force_help);
  backend_add->callback([&] {
    request = {{"command", "backend.add"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}, {"weight", weight_arg}}}};
    print = print_changes;
  });
  auto* backend_del = backend->add_subcommand("del", "remove a backend; its flows move to others");
  backend_del->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  backend_del->add_option("ADDRESS", address_arg, "backend IP address")->required();
  backend_del->add_flag("--force", force, force_help);
  backend_del->callback([&] {
    request = {{"command", "backend.del"}, {"args", {{"vip", vip_arg}, {"address", address_arg}}}};
    print = print_changes;
  });
  auto* set_weight = backend->add_subcommand(
      "set-weight", "change a backend's weight on live traffic (new flows follow it)");
  set_weight->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  set_weight->add_option("ADDRESS", address_arg, "backend IP address")->required();
  set_weight->add_option("WEIGHT", weight_arg, "0..65535 (0: no new flows)")->required();
  set_weight->add_flag("--force", force, force_help);
  set_weight->callback([&] {
    request = {{"command", "backend.set_weight"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}, {"weight", weight_arg}}}};
    print = print_changes;
  });

  std::string wait_timeout = "300s", wait_idle = "5s";
  bool wait_flag = false;
  auto* drain = backend->add_subcommand(
      "drain", "no new flows to a backend; its established flows go on until they end");
  drain->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  drain->add_option("ADDRESS", address_arg, "backend IP address")->required();
  drain->add_flag("--wait", wait_flag,
                  "return once the backend has no active flows (exit 1 after --timeout)");
  drain->add_option("--timeout", wait_timeout, "how long --wait waits")->capture_default_str();
  drain->add_option("--idle", wait_idle, "a flow with no packet for this long is over")
      ->capture_default_str();
  drain->add_flag("--force", force, force_help);
  int64_t wait_timeout_ms = 0, wait_idle_ms = 0;
  drain->callback([&] {
    // Both durations are checked before anything is drained: a typo in
    // --timeout must not leave a backend drained and the command failed.
    wait_timeout_ms = duration_ms(wait_timeout);
    wait_idle_ms = duration_ms(wait_idle);
    request = {{"command", "backend.drain"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}}}};
    print = print_changes;
  });
  auto* undrain = backend->add_subcommand("undrain", "let a drained backend take new flows again");
  undrain->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  undrain->add_option("ADDRESS", address_arg, "backend IP address")->required();
  undrain->add_flag("--force", force, force_help);
  undrain->callback([&] {
    request = {{"command", "backend.undrain"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}}}};
    print = print_changes;
  });

  std::string apply_file;
  bool dry_run = false;
  auto* apply = app.add_subcommand(
      "apply", "apply a whole config file as one change (validated whole; prints what changes)");
  apply->add_option("-f,--file", apply_file, "YAML config file")
      ->required()
      ->check(CLI::ExistingFile);
  apply->add_flag("--dry-run", dry_run,
                  "print what would change and the audit of the new config, change nothing "
                  "(exit 1 when the audit finds an error)");
  apply->add_flag("--force", force, force_help);
  apply->callback([&] {
    std::ifstream in(apply_file);
    std::stringstream ss;
    ss << in.rdbuf();
    request = {
        {"command", "apply"},
        {"args",
         {{"config", ss.str()}, {"source", apply_file}, {"dry_run", dry_run}, {"force", force}}}};
    print = print_changes;
  });

  std::string since;
  auto* log = app.add_subcommand("log", "the change log: who changed what, when (newest last)");
  log->add_option("--since", since, "only the last DURATION (e.g. 10m, 2h)");
  log->callback([&] {
    request = {{"command", "log"}, {"args", json::object()}};
    if (!since.empty()) {
      const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      request["args"]["since_unix_ms"] = now_ms - duration_ms(since);
    }
    print = print_log;
  });

  app.add_subcommand("stats",
                     "packets, bytes and new flows per VIP and backend, with expected and observed "
                     "shares and skew; packets per verdict reason")
      ->callback([&] {
        request = {{"command", "stats"}};
        print = print_stats;
      });

  app.add_subcommand("audit",
                     "ballastd checks itself: risky config, ring share, traffic skew, health, "
                     "drift of the maps; exit 1 when any finding is an error")
      ->callback([&] {
        request = {{"command", "audit"}};
        print = print_audit;
      });
  app.add_subcommand("skew",
                     "each backend's observed share of new flows (and packets) in the sliding "
                     "window against its expected share; ring share of the live Maglev table")
      ->callback([&] {
        request = {{"command", "skew"}};
        print = print_skew;
      });
  std::string top_interval = "1s";
  int top_count = 0;
  auto* top = app.add_subcommand(
      "top", "live view, one line per backend: share bar, expected share, skew, pps, health");
  top->add_option("-i,--interval", top_interval, "refresh period")->capture_default_str();
  top->add_option("-n,--count", top_count, "frames to show, then exit (0: until Ctrl-C)")
      ->capture_default_str();
  top->callback([&] {
    request = {{"command", "skew"}};
    print = [](const json& s) { print_top(s, false); };
  });

  // decap: runs here, on a backend host, without ballastd.
  auto* decap = app.add_subcommand(
      "decap",
      "on a backend: the XDP program that strips ipip and gue from packets for this host's VIPs");
  decap->require_subcommand(1);
  std::string decap_iface;
  std::vector<std::string> decap_vip_args;
  bool decap_skb = false;
  uint16_t decap_gue_port = ballast::kDefaultGuePort;
  auto* decap_attach_cmd = decap->add_subcommand(
      "attach", "load and attach it (replacing an earlier one in one step); VIPs: those on lo");
  decap_attach_cmd->add_option("IFACE", decap_iface, "the backend's interface")->required();
  decap_attach_cmd->add_option("--vip", decap_vip_args,
                               "a VIP to decapsulate for (repeatable; "
                               "default: the addresses on lo)");
  decap_attach_cmd->add_flag("--skb", decap_skb, "generic (skb) mode instead of native");
  decap_attach_cmd
      ->add_option("--gue-port", decap_gue_port,
                   "UDP port GUE packets arrive on: the VIPs' gue_port (0: no GUE)")
      ->default_val(ballast::kDefaultGuePort)
      ->check(CLI::Range(0, 65535));
  auto* decap_detach_cmd = decap->add_subcommand("detach", "detach it");
  decap_detach_cmd->add_option("IFACE", decap_iface, "the backend's interface")->required();
  auto* decap_status_cmd =
      decap->add_subcommand("status", "what is attached, for which VIPs, and its counters");
  decap_status_cmd->add_option("IFACE", decap_iface, "the backend's interface")->required();

  // doctor: runs here, on a backend or the balancer host, and checks what
  // that host needs to forward (docs/operations.md, "ballast doctor").
  ballast::doctor::Request doctor_req;
  auto* doctor = app.add_subcommand(
      "doctor",
      "check this host: each finding ok/warn/error, its numbers and the command that fixes it; "
      "exit 1 when any is an error");
  doctor->require_subcommand(1);
  auto* doctor_backend = doctor->add_subcommand(
      "backend", "on a backend host: VIPs on lo, ARP and rp_filter sysctls, decap, MTU headroom");
  doctor_backend->add_option("--mode", doctor_req.mode, "the VIPs' forwarding mode")
      ->required()
      ->check(CLI::IsMember(forward_mode_names()));
  doctor_backend->add_option(
      "--vip", doctor_req.vips,
      "a VIP this backend serves (repeatable; default: the addresses on lo)");
  doctor_backend->add_option("--interface", doctor_req.interface,
                             "where the balancer's packets arrive (default: the default route's)");
  doctor_backend->add_option("--gue-port", doctor_req.gue_port, "gue: the VIPs' gue_port")
      ->check(CLI::Range(1, 65535));
  doctor_backend->callback([&] { doctor_req.role = "backend"; });
  auto* doctor_balancer = doctor->add_subcommand(
      "balancer",
      "on the balancer host: bpffs, the XDP program and mode, pinned maps, routes and MACs of the "
      "backends, MTU, the veth peer, ballastd's socket");
  doctor_balancer->add_option("--interface", doctor_req.interface,
                              "the balancer's interface (default: the config's)");
  doctor_balancer->add_option("--config", doctor_req.config,
                              "ballastd's config (default: ballastd's own, else "
                              "/etc/ballast/ballast.yaml)");
  doctor_balancer->callback([&] { doctor_req.role = "balancer"; });

  // Subcommand help shows their own options only; name the shared ones.
  std::function<void(CLI::App*)> add_footer = [&](CLI::App* cmd) {
    for (auto* sub : cmd->get_subcommands({})) {
      sub->footer("Every command also takes -s,--socket PATH (default " +
                  std::string(ballast::kDefaultSocket) +
                  ") and -o,--output table|json.\nErrors: one line on stderr, exit status 1.");
      add_footer(sub);
    }
  };
  add_footer(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "ballast: " << e.what() << " (see ballast --help)\n";
    return 1;
  }
  try {
    if (doctor->parsed()) return ballast::doctor::run(doctor_req, g.socket, g.output == "json");
    if (decap->parsed()) {
      if (decap_attach_cmd->parsed()) {
        std::vector<ballast::IpAddress> vips;
        for (const auto& text : decap_vip_args) {
          auto a = ballast::IpAddress::parse(text);
          if (!a) throw ballast::Error("--vip '" + text + "' is not an IP address");
          vips.push_back(*a);
        }
        if (vips.empty()) vips = ballast::local_vips();
        const uint32_t id = ballast::decap_attach(
            decap_iface, vips, decap_skb ? ballast::AttachMode::skb : ballast::AttachMode::native,
            decap_gue_port);
        std::string list;
        for (const auto& v : vips) list += (list.empty() ? "" : ", ") + v.str();
        std::cout << "decap program " << id << " attached to " << decap_iface << " for " << list
                  << (decap_gue_port ? ", GUE on UDP port " + std::to_string(decap_gue_port)
                                     : std::string(", no GUE"))
                  << "\n";
      } else if (decap_detach_cmd->parsed()) {
        ballast::decap_detach(decap_iface);
        std::cout << "decap program detached from " << decap_iface << "\n";
      } else {
        const auto st = ballast::decap_status(decap_iface);
        json out = {
            {"interface", decap_iface}, {"program_id", st.program_id}, {"gue_port", st.gue_port}};
        out["vips"] = json::array();
        for (const auto& v : st.vips) out["vips"].push_back(v.str());
        out["counters"] = json::array();
        for (const auto& [name, c] : st.counters)
          out["counters"].push_back({{"reason", name}, {"packets", c.first}, {"bytes", c.second}});
        if (g.output == "json") {
          std::cout << out.dump(2) << "\n";
        } else if (!st.program_id) {
          std::cout << "no decap program on " << decap_iface << "\n";
        } else {
          std::cout << "decap program " << st.program_id << " on " << decap_iface << " for "
                    << out["vips"].dump() << ", GUE port "
                    << (st.gue_port ? std::to_string(st.gue_port) : std::string("none")) << "\n";
          Table t({"REASON", "PACKETS", "BYTES"});
          for (const auto& c : out["counters"])
            t.add({text(c["reason"]), text(c["packets"]), text(c["bytes"])});
          t.print();
        }
      }
      return 0;
    }
    if (top->parsed() && g.output == "table") {
      // Refreshes in place on a terminal; frames one after another otherwise.
      const bool tty = isatty(STDOUT_FILENO);
      const auto period = std::chrono::milliseconds(duration_ms(top_interval));
      for (int frame = 0; top_count == 0 || frame < top_count; ++frame) {
        if (frame > 0) std::this_thread::sleep_for(period);
        print_top(ballast::api_call(g.socket, request), tty);
      }
      return 0;
    }
    if (force && request.contains("args")) request["args"]["force"] = true;
    json result = ballast::api_call(g.socket, request);
    if (g.output == "json")
      std::cout << result.dump(2) << "\n";
    else
      print(result);
    // An audit, or a dry run whose config the audit finds an error in.
    if (request["command"] == "audit" && result.value("errors", 0) > 0) return 1;
    if (request["command"] == "apply" && !result.value("applied", true) &&
        count_errors(result.value("findings", json::array())) > 0)
      return 1;
    if (drain->parsed() && wait_flag)
      return wait_for_drain(g.socket, request["args"], wait_timeout_ms, wait_idle_ms);
  } catch (const std::exception& e) {
    std::cerr << "ballast: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
