// cli.h: what the files of the `ballast` command share. main.cpp builds the
// CLI11 app and runs what was parsed; each command group adds its
// subcommands from its own file (status_cmd.cpp: status, audit, log;
// vip_cmd.cpp; backend_cmd.cpp; apply_cmd.cpp; traffic_cmd.cpp: stats,
// skew, top; decap_cmd.cpp; doctor_cmd.cpp; fleet_cmd.cpp). A subcommand's callback only
// records what to run: the typed request (api_messages.h) is built and sent
// once parsing is over, so a bad VIP or address is one error line and exit 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "api.h"
#include "api_messages.h"

namespace ballast::cli {

struct Globals {
  std::string socket = kDefaultSocket;
  std::string output = "table";  // "table" or "json"
  bool json() const { return output == "json"; }
};

// What the parsed subcommand does; returns the exit status.
using Action = std::function<int(const Globals&)>;

// Each group adds its subcommands to @app; the one parsed sets @action.
void add_status_commands(CLI::App& app, Action& action);   // status, audit, log
void add_vip_commands(CLI::App& app, Action& action);      // vip list|add|del
void add_backend_commands(CLI::App& app, Action& action);  // backend list|add|...|drain
void add_apply_command(CLI::App& app, Action& action);     // apply
void add_traffic_commands(CLI::App& app, Action& action);  // stats, skew, top
void add_decap_commands(CLI::App& app, Action& action);    // decap attach|detach|status
void add_doctor_commands(CLI::App& app, Action& action);   // doctor backend|balancer
void add_fleet_commands(CLI::App& app, Action& action);    // fleet diff

// Sends @request and prints its reply: as JSON (-o json) or with @print.
template <typename Request, typename Print>
typename Request::Reply show(const Globals& g, const Request& request, Print&& print) {
  auto reply = call(g.socket, request);
  if (g.json())
    std::cout << nlohmann::json(reply).dump(2) << "\n";
  else
    print(reply);
  return reply;
}

// The callback of a subcommand that sends @Request (it takes no
// arguments) and prints its reply with @print.
template <typename Request, typename Print>
std::function<void()> sends(Action& action, Print print) {
  return [&action, print] {
    action = [print](const Globals& g) {
      show(g, Request{}, print);
      return 0;
    };
  };
}

// Command-line words into typed values; Error naming what is wrong.
VipKey vip_arg(const std::string& text);
IpAddress address_arg(const std::string& text);
// A weight in decimal digits, 0..kMaxWeight (as the config reads it).
uint32_t weight_arg(const std::string& text);
// "30s", "5m", "500ms", "2h" -> milliseconds; CLI::ValidationError otherwise
// (so it is refused while parsing, before anything is sent).
int64_t duration_ms(const std::string& text);

constexpr const char* kVipHelp = "ADDRESS:PORT/PROTOCOL";
constexpr const char* kForceHelp = "apply even when the pre-apply audit finds an error";

}  // namespace ballast::cli
