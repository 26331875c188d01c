// status, audit, log: the daemon itself, what it finds about itself, and
// what was changed.
#include <chrono>

#include "changelog.h"
#include "cli.h"
#include "format.h"
#include "table.h"

namespace ballast::cli {
namespace {

void print_status(const api::StatusReply& s) {
  Table t({"FIELD", "VALUE"});
  t.add({"version", s.version});
  t.add({"interface", s.interface});
  t.add({"attach_mode", s.attach_mode});
  t.add({"program_id", std::to_string(s.program_id)});
  t.add({"pin_dir", s.pin_dir});
  t.add({"config", s.config});
  t.add({"metrics", s.metrics});
  t.add({"vips", std::to_string(s.vips)});
  t.add({"backends", std::to_string(s.backends)});
  t.add({"uptime_seconds", std::to_string(s.uptime_seconds)});
  std::string unresolved;
  for (const auto& u : s.unresolved_backends) unresolved += (unresolved.empty() ? "" : ", ") + u;
  t.add({"unresolved_backends", unresolved.empty() ? "none" : unresolved});
  std::string announced;
  for (const auto& a : s.announced) announced += (announced.empty() ? "" : ", ") + a;
  if (!s.announce_table)
    t.add({"announce", "off (no fleet.announce)"});
  else
    t.add({"announce", "table " + std::to_string(*s.announce_table) +
                           (s.fleet_left ? ", left the fleet (ballast fleet join to return)" : "") +
                           ": " + (announced.empty() ? "nothing announced" : announced)});
  t.print();
}

void print_audit(const api::AuditReply& r) {
  print_findings(r.findings);
  if (r.findings.empty())
    std::cout << "no findings\n";
  else
    std::cout << r.errors << " errors, " << r.warnings << " warnings\n";
}

void print_log(const std::vector<api::LogEntry>& entries) {
  Table t({"TIME", "BY", "CHANGE"});
  for (const auto& e : entries)
    t.add({iso8601_utc(std::chrono::system_clock::time_point(std::chrono::milliseconds(e.unix_ms))),
           e.actor, e.change});
  t.print();
}

}  // namespace

void add_status_commands(CLI::App& app, Action& action) {
  app.add_subcommand("status", "the daemon: interface, program, VIP and backend counts")
      ->callback(sends<api::Status>(action, print_status));

  app.add_subcommand("audit",
                     "ballastd checks itself: risky config, ring share, traffic skew, health, "
                     "drift of the maps; exit 1 when any finding is an error")
      ->callback([&action] {
        action = [](const Globals& g) { return show(g, api::Audit{}, print_audit).errors ? 1 : 0; };
      });

  auto since = std::make_shared<std::string>();
  auto* log = app.add_subcommand("log", "the change log: who changed what, when (newest last)");
  log->add_option("--since", *since, "only the last DURATION (e.g. 10m, 2h)");
  log->callback([&action, since] {
    api::Log request;
    if (!since->empty()) {
      const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      request.since_unix_ms = static_cast<uint64_t>(std::max<int64_t>(0, now_ms - duration_ms(*since)));
    }
    action = [request](const Globals& g) {
      show(g, request, print_log);
      return 0;
    };
  });
}

}  // namespace ballast::cli
