// vip list|add|del.
#include "cli.h"
#include "format.h"
#include "table.h"

namespace ballast::cli {
namespace {

void print_vips(const std::vector<api::VipEntry>& vips) {
  Table t({"VIP", "ID", "BACKENDS", "TOTAL WEIGHT", "TABLE DIGEST", "ANNOUNCED"});
  for (const auto& v : vips) {
    uint64_t weight = 0;
    for (const auto& b : v.backends) weight += b.weight;
    t.add({v.vip.str(), std::to_string(v.id), std::to_string(v.backends.size()),
           std::to_string(weight), v.table_digest.empty() ? "-" : v.table_digest,
           !v.announced ? "-" : (*v.announced ? "yes" : "no: " + v.announce_reason)});
  }
  t.print();
}

struct VipArgs {
  std::string vip;
  bool force = false;
};

// vip add|del VIP [--force].
template <typename Request>
void add_vip_edit(CLI::App* vip, const char* name, const char* help, Action& action) {
  auto args = std::make_shared<VipArgs>();
  auto* cmd = vip->add_subcommand(name, help);
  cmd->add_option("VIP", args->vip, kVipHelp)->required();
  cmd->add_flag("--force", args->force, kForceHelp);
  cmd->callback([&action, args] {
    action = [args](const Globals& g) {
      Request request;
      request.vip = vip_arg(args->vip);
      request.force = args->force;
      show(g, request, print_changes);
      return 0;
    };
  });
}

}  // namespace

void add_vip_commands(CLI::App& app, Action& action) {
  auto* vip = app.add_subcommand("vip", "list, add or delete VIPs");
  vip->require_subcommand(1);
  vip->add_subcommand("list", "list VIPs")->callback(sends<api::VipList>(action, print_vips));
  add_vip_edit<api::VipAdd>(vip, "add",
                            "add a VIP (no backends yet: it drops until one is added)", action);
  add_vip_edit<api::VipDel>(vip, "del", "delete a VIP; its traffic is no longer balanced", action);
}

}  // namespace ballast::cli
