// ballast: the command-line client of ballastd's control API. It only talks
// to the API: every rule and every change lives in the daemon. The commands
// live one group per file (cli.h).
#include <iostream>

#include "cli.h"

int main(int argc, char** argv) {
  using namespace ballast::cli;
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

  Action action;
  add_status_commands(app, action);
  add_vip_commands(app, action);
  add_backend_commands(app, action);
  add_apply_command(app, action);
  add_traffic_commands(app, action);
  add_decap_commands(app, action);
  add_doctor_commands(app, action);
  add_fleet_commands(app, action);

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
    return action(g);
  } catch (const std::exception& e) {
    std::cerr << "ballast: " << e.what() << "\n";
    return 1;
  }
}
