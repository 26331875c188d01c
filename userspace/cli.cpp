// ballast: the command-line client of ballastd's control API. It only talks
// to the API: every rule and every change lives in the daemon.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "api.h"
#include "config.h"
#include "error.h"
#include "table.h"

namespace {

using nlohmann::json;
using ballast::Table;

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
  for (const char* k : {"interface", "attach_mode", "program_id", "pin_dir", "config", "vips",
                        "backends", "uptime_seconds"})
    t.add({k, text(s[k])});
  std::string unresolved;
  for (const auto& u : s["unresolved_backends"]) unresolved += (unresolved.empty() ? "" : ", ") + text(u);
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
  Table t({"VIP", "BACKEND", "WEIGHT", "STATE", "MAC", "TABLE ENTRIES"});
  for (const auto& b : backends)
    t.add({text(b["vip"]), text(b["address"]), text(b["weight"]), text(b["state"]), text(b["mac"]),
           text(b["table_entries"])});
  t.print();
}

void print_stats(const json& stats) {
  Table t({"VIP", "BACKEND", "WEIGHT", "PACKETS", "BYTES", "NEW FLOWS", "EXPECTED", "OBSERVED",
           "SKEW"});
  for (const auto& v : stats["vips"]) {
    t.add({text(v["vip"]), "(all)", "", text(v["packets"]), text(v["bytes"]), text(v["new_flows"]),
           "", "", ""});
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

void print_changes(const json& result) {
  if (result["changes"].empty()) std::cout << "no change\n";
  for (const auto& c : result["changes"]) std::cout << text(c) << "\n";
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

  auto* status = app.add_subcommand("status", "the daemon: interface, program, VIP and backend counts");
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
  auto* vip_add = vip->add_subcommand("add", "add a VIP (no backends yet: it drops until one is added)");
  vip_add->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  vip_add->callback([&] {
    request = {{"command", "vip.add"}, {"args", {{"vip", vip_arg}}}};
    print = print_changes;
  });
  auto* vip_del = vip->add_subcommand("del", "delete a VIP; its traffic is no longer balanced");
  vip_del->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
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
  backend_add->callback([&] {
    request = {{"command", "backend.add"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}, {"weight", weight_arg}}}};
    print = print_changes;
  });
  auto* backend_del = backend->add_subcommand("del", "remove a backend; its flows move to others");
  backend_del->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  backend_del->add_option("ADDRESS", address_arg, "backend IP address")->required();
  backend_del->callback([&] {
    request = {{"command", "backend.del"}, {"args", {{"vip", vip_arg}, {"address", address_arg}}}};
    print = print_changes;
  });
  auto* set_weight = backend->add_subcommand(
      "set-weight", "change a backend's weight on live traffic (new flows follow it)");
  set_weight->add_option("VIP", vip_arg, "ADDRESS:PORT/PROTOCOL")->required();
  set_weight->add_option("ADDRESS", address_arg, "backend IP address")->required();
  set_weight->add_option("WEIGHT", weight_arg, "0..65535 (0: no new flows)")->required();
  set_weight->callback([&] {
    request = {{"command", "backend.set_weight"},
               {"args", {{"vip", vip_arg}, {"address", address_arg}, {"weight", weight_arg}}}};
    print = print_changes;
  });

  app.add_subcommand("stats",
                     "packets, bytes and new flows per VIP and backend, with expected and observed "
                     "shares and skew; packets per verdict reason")
      ->callback([&] {
        request = {{"command", "stats"}};
        print = print_stats;
      });

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
    json result = ballast::api_call(g.socket, request);
    if (g.output == "json")
      std::cout << result.dump(2) << "\n";
    else
      print(result);
  } catch (const std::exception& e) {
    std::cerr << "ballast: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
