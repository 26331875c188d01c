#include "change.h"

namespace ballast {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string on_off(bool on) { return on ? "on" : "off"; }

std::string backend_name(const VipKey& vip, const IpAddress& backend) {
  return vip.str() + " " + backend.str();
}

// "mode dsr -> gue, fragments on": what differs, "" when nothing does.
std::string option_changes(const VipOptions& from, const VipOptions& to) {
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  if (from.mode != to.mode)
    add("mode " + forward_mode_name(from.mode) + " -> " + forward_mode_name(to.mode));
  if (to.mode == ForwardMode::gue && from.gue_port != to.gue_port)
    add("gue_port " + std::to_string(from.gue_port) + " -> " + std::to_string(to.gue_port));
  if (from.ignore_source_port != to.ignore_source_port)
    add("ignore_source_port " + on_off(to.ignore_source_port));
  if (from.fragments != to.fragments) add("fragments " + on_off(to.fragments));
  if (from.second_chance != to.second_chance) add("second_chance " + on_off(to.second_chance));
  return out;
}

std::string setting_name(SettingChanged::Which which) {
  switch (which) {
    case SettingChanged::Which::skew:
      return "skew";
    case SettingChanged::Which::audit:
      return "audit";
    case SettingChanged::Which::encap:
      return "encap";
    case SettingChanged::Which::reconcile:
      return "reconcile";
    case SettingChanged::Which::fleet:
      return "fleet";
  }
  return "?";
}

std::string repair_text(const MapRepaired& r) {
  const std::string id = std::to_string(r.id);
  const std::string vip = r.vip ? r.vip->str() : "?";
  switch (r.what) {
    case MapRepaired::What::egress_slot:
      return "repair egress slot " + id;
    case MapRepaired::What::backend_slot:
      return "repair backend slot " + id;
    case MapRepaired::What::table:
      return "repair Maglev table of vip id " + id;
    case MapRepaired::What::vip:
      return "repair vip " + vip;
    case MapRepaired::What::stray_vip:
      return "remove stray vip " + vip;
    case MapRepaired::What::stray_backend_slot:
      return "clear stray backend slot " + id;
  }
  return "repair ?";
}

}  // namespace

bool VipOptions::takes_effect_over(const VipOptions& from) const {
  return !option_changes(from, *this).empty();
}

std::string describe(const Change& change) {
  return std::visit(
      Overloaded{
          [](const VipAdded& c) { return "vip add " + c.vip.str(); },
          [](const VipRemoved& c) { return "vip del " + c.vip.str(); },
          [](const VipOptionsChanged& c) {
            return "vip options " + c.vip.str() + ": " + option_changes(c.from, c.to);
          },
          [](const VipFailOpenChanged& c) {
            return "vip fail-open " + c.vip.str() + " " + on_off(c.on);
          },
          [](const VipAdopted& c) {
            return "adopt vip " + c.vip.str() + " id " + std::to_string(c.id) + " with " +
                   std::to_string(c.backends) + " backends";
          },
          [](const BackendAdded& c) {
            return "backend add " + backend_name(c.vip, c.backend) + " weight " +
                   std::to_string(c.weight);
          },
          [](const BackendRemoved& c) { return "backend del " + backend_name(c.vip, c.backend); },
          [](const WeightChanged& c) {
            return "backend set-weight " + backend_name(c.vip, c.backend) + " " +
                   std::to_string(c.from) + " -> " + std::to_string(c.to);
          },
          [](const CheckChanged& c) {
            return "backend check " + backend_name(c.vip, c.backend) + ": " +
                   check_description(c.to);
          },
          [](const HealthChanged& c) {
            return "backend health " + backend_name(c.vip, c.backend) + " " +
                   std::string(health_name(c.from)) + " -> " + std::string(health_name(c.to)) +
                   (c.detail.empty() ? "" : " (" + c.detail + ")");
          },
          [](const DrainChanged& c) {
            return std::string(c.drained ? "backend drain " : "backend undrain ") +
                   backend_name(c.vip, c.backend);
          },
          [](const NextHopChanged& c) {
            return "backend next-hop " + backend_name(c.vip, c.backend) + " " + c.from.str() +
                   " -> " + c.to.str();
          },
          [](const MacChanged& c) {
            return "backend mac " + backend_name(c.vip, c.backend) + " " +
                   (c.from ? mac_str(*c.from) : std::string("unresolved")) + " -> " +
                   mac_str(c.to);
          },
          [](const BackendUnreachable& c) {
            return "backend unreachable " + backend_name(c.vip, c.backend) + ": " + c.reason;
          },
          [](const EgressChanged& c) {
            if (!c.interface.empty()) return "egress " + c.interface + " updated";
            return "egress slots rewritten: " + std::to_string(c.slots) +
                   " (an interface's MTU, MAC or address changed)";
          },
          [](const InterfaceMoved& c) {
            return "interface " + c.interface + " index " + std::to_string(c.from) + " -> " +
                   std::to_string(c.to) + ": egress slot 0 and " + std::to_string(c.next_hops) +
                   " next hops follow it";
          },
          [](const ProgramReattached& c) {
            return "program " + std::to_string(c.program_id) + " on " + c.interface + ": " + c.how;
          },
          [](const SettingChanged& c) {
            if (c.which == SettingChanged::Which::reconcile) return "reconcile " + on_off(c.on);
            return setting_name(c.which) + " settings changed";
          },
          [](const MapRepaired& c) { return repair_text(c); },
          [](const AnnounceChanged& c) {
            return std::string(c.announced ? "announce " : "withdraw ") + c.address.str() +
                   " (table " + std::to_string(c.table) + "): " + c.reason;
          },
      },
      change);
}

std::vector<std::string> describe(const std::vector<Change>& changes) {
  std::vector<std::string> out;
  out.reserve(changes.size());
  for (const auto& c : changes) out.push_back(describe(c));
  return out;
}

}  // namespace ballast
