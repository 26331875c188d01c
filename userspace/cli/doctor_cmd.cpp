// doctor backend|balancer: runs here, on a backend or the balancer host, and
// checks what that host needs to forward (docs/operations.md, "ballast
// doctor").
#include "cli.h"
#include "doctor.h"
#include "forward_mode.h"

namespace ballast::cli {

void add_doctor_commands(CLI::App& app, Action& action) {
  auto request = std::make_shared<doctor::Request>();
  auto* doctor = app.add_subcommand(
      "doctor",
      "check this host: each finding ok/warn/error, its numbers and the command that fixes it; "
      "exit 1 when any is an error");
  doctor->require_subcommand(1);
  const auto run = [&action, request](const char* role) {
    return [&action, request, role] {
      request->role = role;
      action = [request](const Globals& g) { return doctor::run(*request, g.socket, g.json()); };
    };
  };

  std::vector<std::string> modes;  // forward_mode.h's
  for (ForwardMode m : kForwardModes) modes.push_back(forward_mode_name(m));
  auto* backend = doctor->add_subcommand(
      "backend", "on a backend host: VIPs on lo, ARP and rp_filter sysctls, decap, MTU headroom");
  backend->add_option("--mode", request->mode, "the VIPs' forwarding mode")
      ->required()
      ->check(CLI::IsMember(modes));
  backend->add_option("--vip", request->vips,
                      "a VIP this backend serves (repeatable; default: the addresses on lo)");
  backend->add_option("--interface", request->interface,
                      "where the balancer's packets arrive (default: the default route's)");
  backend->add_option("--gue-port", request->gue_port, "gue: the VIPs' gue_port")
      ->check(CLI::Range(1, 65535));
  backend->callback(run("backend"));

  auto* balancer = doctor->add_subcommand(
      "balancer",
      "on the balancer host: bpffs, the XDP program and mode, pinned maps, routes and MACs of the "
      "backends, MTU, the veth peer, ballastd's socket");
  balancer->add_option("--interface", request->interface,
                       "the balancer's interface (default: the config's)");
  balancer->add_option("--config", request->config,
                       "ballastd's config (default: ballastd's own, else "
                       "/etc/ballast/ballast.yaml)");
  balancer->callback(run("balancer"));
}

}  // namespace ballast::cli
