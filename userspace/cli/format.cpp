#include "format.h"

#include <cctype>
#include <cstdio>
#include <iostream>

namespace ballast::cli {

std::string share(std::optional<double> v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", *v * 100);
  return buf;
}

std::string ratio(std::optional<double> v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", *v);
  return buf;
}

std::string per_second(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f", v);
  return buf;
}

std::string or_dash(const std::string& text) { return text.empty() ? "-" : text; }

void print_findings(const std::vector<Finding>& findings) {
  for (const auto& f : findings) {
    std::string sev(severity_name(f.severity));
    for (auto& c : sev) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::printf("%-7s %-18s %s\n        hint: %s\n", sev.c_str(), f.check.c_str(),
                f.message.c_str(), f.hint.c_str());
  }
}

size_t count_errors(const std::vector<Finding>& findings) {
  size_t n = 0;
  for (const auto& f : findings) n += f.severity == Severity::error;
  return n;
}

void print_changes(const api::ChangeReply& reply) {
  if (reply.changes.empty()) std::cout << "no change\n";
  for (const auto& c : reply.changes) std::cout << c << "\n";
  if (!reply.applied) std::cout << "(dry run: nothing was changed)\n";
  // A dry run shows every finding of the config it would apply; a change
  // shows what it added (the rest is in `ballast audit`).
  const auto& findings = reply.applied ? reply.new_findings : reply.findings;
  if (!findings.empty()) {
    std::cout << "\naudit of the " << (reply.applied ? "change" : "new config") << ":\n";
    print_findings(findings);
  }
}

}  // namespace ballast::cli
