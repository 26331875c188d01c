// backend list|add|del|set-weight|drain|undrain, and drain --wait.
#include <chrono>
#include <thread>

#include "cli.h"
#include "config.h"
#include "error.h"
#include "format.h"
#include "table.h"

namespace ballast::cli {
namespace {

void print_backends(const std::vector<api::BackendEntry>& backends) {
  Table t({"VIP", "BACKEND", "WEIGHT", "HEALTH", "DRAINED", "MAC", "TABLE ENTRIES", "LAST CHECK"});
  for (const auto& b : backends)
    t.add({b.vip.str(), b.address.str(), std::to_string(b.weight), std::string(health_name(b.health)),
           b.drained ? "yes" : "no", b.mac ? *b.mac : "unresolved", std::to_string(b.table_entries),
           b.last_check});
  t.print();
}

// The arguments every backend edit takes; set-weight and add a weight too.
struct BackendArgs {
  std::string vip, address;
  std::string weight = "1";  // text: CLI11 would read 0x10 as 16 and 1e23 as INT64_MAX
  bool force = false;
  // drain --wait
  bool wait = false;
  std::string timeout = "300s", idle = "5s";
  int64_t timeout_ms = 0, idle_ms = 0;
};

CLI::App* add_target(CLI::App* backend, const char* name, const char* help, BackendArgs& args) {
  auto* cmd = backend->add_subcommand(name, help);
  cmd->add_option("VIP", args.vip, kVipHelp)->required();
  cmd->add_option("ADDRESS", args.address, "backend IP address")->required();
  return cmd;
}

// The typed request of an edit, from the command line's words.
template <typename Request>
Request edit_request(const BackendArgs& args) {
  Request request;
  request.vip = vip_arg(args.vip);
  request.address = address_arg(args.address);
  request.force = args.force;
  if constexpr (requires { request.weight; }) request.weight = weight_arg(args.weight);
  return request;
}

template <typename Request>
void on_edit(CLI::App* cmd, Action& action, std::shared_ptr<BackendArgs> args) {
  cmd->add_flag("--force", args->force, kForceHelp);
  cmd->callback([&action, args] {
    action = [args](const Globals& g) {
      show(g, edit_request<Request>(*args), print_changes);
      return 0;
    };
  });
}

// drain --wait: asks for the backend's active flows once a second until
// none are left or the timeout passes. ballastd counts them in the
// background (a walk of the connection table): the first answers may be
// "not counted yet".
int wait_for_drain(const Globals& g, const BackendArgs& args) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(args.timeout_ms);
  api::BackendFlows request;
  request.vip = vip_arg(args.vip);
  request.address = address_arg(args.address);
  request.idle_ms = static_cast<uint64_t>(args.idle_ms);
  for (;;) {
    const auto flows = call(g.socket, request).flows;
    if (flows == 0u) {
      std::cout << "drained: no active flows\n";
      return 0;
    }
    if (Clock::now() >= deadline) {
      std::cerr << "ballast: "
                << (flows ? "up to " + std::to_string(*flows) + " active flows left"
                          : std::string("flows not counted yet"))
                << " after " << args.timeout_ms / 1000.0 << " s\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace

void add_backend_commands(CLI::App& app, Action& action) {
  auto* backend = app.add_subcommand("backend", "list, add, delete or reweight backends");
  backend->require_subcommand(1);

  auto list_vip = std::make_shared<std::string>();
  auto* list = backend->add_subcommand("list", "list backends (of one VIP, or all)");
  list->add_option("VIP", *list_vip, kVipHelp);
  list->callback([&action, list_vip] {
    action = [list_vip](const Globals& g) {
      api::BackendList request;
      if (!list_vip->empty()) request.vip = vip_arg(*list_vip);
      show(g, request, print_backends);
      return 0;
    };
  });

  auto add_args = std::make_shared<BackendArgs>();
  auto* add = add_target(backend, "add", "add a backend to a VIP", *add_args);
  add->add_option("-w,--weight", add_args->weight, "weight, 0..65535 (0: no new flows)")
      ->type_name("INT")
      ->capture_default_str();
  on_edit<api::BackendAdd>(add, action, add_args);

  auto del_args = std::make_shared<BackendArgs>();
  on_edit<api::BackendDel>(
      add_target(backend, "del", "remove a backend; its flows move to others", *del_args), action,
      del_args);

  auto weight_args = std::make_shared<BackendArgs>();
  auto* set_weight = add_target(
      backend, "set-weight", "change a backend's weight on live traffic (new flows follow it)",
      *weight_args);
  set_weight->add_option("WEIGHT", weight_args->weight, "0..65535 (0: no new flows)")
      ->type_name("INT")
      ->required();
  on_edit<api::BackendSetWeight>(set_weight, action, weight_args);

  auto drain_args = std::make_shared<BackendArgs>();
  auto* drain = add_target(
      backend, "drain", "no new flows to a backend; its established flows go on until they end",
      *drain_args);
  drain->add_flag("--wait", drain_args->wait,
                  "return once the backend has no active flows (exit 1 after --timeout)");
  drain->add_option("--timeout", drain_args->timeout, "how long --wait waits")
      ->capture_default_str();
  drain->add_option("--idle", drain_args->idle, "a flow with no packet for this long is over")
      ->capture_default_str();
  drain->add_flag("--force", drain_args->force, kForceHelp);
  drain->callback([&action, drain_args] {
    // Both durations are checked before anything is drained: a typo in
    // --timeout must not leave a backend drained and the command failed.
    drain_args->timeout_ms = duration_ms(drain_args->timeout);
    drain_args->idle_ms = duration_ms(drain_args->idle);
    action = [drain_args](const Globals& g) {
      show(g, edit_request<api::BackendDrain>(*drain_args), print_changes);
      return drain_args->wait ? wait_for_drain(g, *drain_args) : 0;
    };
  });

  auto undrain_args = std::make_shared<BackendArgs>();
  on_edit<api::BackendUndrain>(
      add_target(backend, "undrain", "let a drained backend take new flows again", *undrain_args),
      action, undrain_args);
}

}  // namespace ballast::cli
