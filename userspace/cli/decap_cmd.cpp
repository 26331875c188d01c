// decap attach|detach|status: runs here, on a backend host, without
// ballastd.
#include "cli.h"
#include "decap.h"
#include "error.h"
#include "table.h"

namespace ballast::cli {
namespace {

struct DecapArgs {
  std::string interface;
  std::vector<std::string> vips;
  bool skb = false;
  uint16_t gue_port = kDefaultGuePort;
};

int attach(const DecapArgs& args) {
  std::vector<IpAddress> vips;
  for (const auto& text : args.vips) {
    const auto a = IpAddress::parse(text);
    if (!a) throw Error("--vip '" + text + "' is not an IP address");
    vips.push_back(*a);
  }
  if (vips.empty()) vips = local_vips();
  const uint32_t id = decap_attach(args.interface, vips,
                                   args.skb ? AttachMode::skb : AttachMode::native, args.gue_port);
  std::string list;
  for (const auto& v : vips) list += (list.empty() ? "" : ", ") + v.str();
  std::cout << "decap program " << id << " attached to " << args.interface << " for " << list
            << (args.gue_port ? ", GUE on UDP port " + std::to_string(args.gue_port)
                              : std::string(", no GUE"))
            << "\n";
  return 0;
}

int status(const Globals& g, const DecapArgs& args) {
  const auto st = decap_status(args.interface);
  nlohmann::json out = {
      {"interface", args.interface}, {"program_id", st.program_id}, {"gue_port", st.gue_port}};
  out["vips"] = nlohmann::json::array();
  for (const auto& v : st.vips) out["vips"].push_back(v.str());
  out["counters"] = nlohmann::json::array();
  for (const auto& [name, c] : st.counters)
    out["counters"].push_back({{"reason", name}, {"packets", c.first}, {"bytes", c.second}});
  if (g.json()) {
    std::cout << out.dump(2) << "\n";
  } else if (!st.program_id) {
    std::cout << "no decap program on " << args.interface << "\n";
  } else {
    std::cout << "decap program " << st.program_id << " on " << args.interface << " for "
              << out["vips"].dump() << ", GUE port "
              << (st.gue_port ? std::to_string(st.gue_port) : std::string("none")) << "\n";
    Table t({"REASON", "PACKETS", "BYTES"});
    for (const auto& [name, c] : st.counters)
      t.add({name, std::to_string(c.first), std::to_string(c.second)});
    t.print();
  }
  return 0;
}

}  // namespace

void add_decap_commands(CLI::App& app, Action& action) {
  auto args = std::make_shared<DecapArgs>();
  auto* decap = app.add_subcommand(
      "decap",
      "on a backend: the XDP program that strips ipip and gue from packets for this host's VIPs");
  decap->require_subcommand(1);
  auto* attach_cmd = decap->add_subcommand(
      "attach", "load and attach it (replacing an earlier one in one step); VIPs: those on lo");
  attach_cmd->add_option("IFACE", args->interface, "the backend's interface")->required();
  attach_cmd->add_option("--vip", args->vips,
                         "a VIP to decapsulate for (repeatable; default: the addresses on lo)");
  attach_cmd->add_flag("--skb", args->skb, "generic (skb) mode instead of native");
  attach_cmd
      ->add_option("--gue-port", args->gue_port,
                   "UDP port GUE packets arrive on: the VIPs' gue_port (0: no GUE)")
      ->default_val(kDefaultGuePort)
      ->check(CLI::Range(0, 65535));
  attach_cmd->callback([&action, args] { action = [args](const Globals&) { return attach(*args); }; });

  auto* detach_cmd = decap->add_subcommand("detach", "detach it");
  detach_cmd->add_option("IFACE", args->interface, "the backend's interface")->required();
  detach_cmd->callback([&action, args] {
    action = [args](const Globals&) {
      decap_detach(args->interface);
      std::cout << "decap program detached from " << args->interface << "\n";
      return 0;
    };
  });

  auto* status_cmd =
      decap->add_subcommand("status", "what is attached, for which VIPs, and its counters");
  status_cmd->add_option("IFACE", args->interface, "the backend's interface")->required();
  status_cmd->callback(
      [&action, args] { action = [args](const Globals& g) { return status(g, *args); }; });
}

}  // namespace ballast::cli
