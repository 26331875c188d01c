// format.h: how the CLI writes numbers, findings and changes for people.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "api_messages.h"

namespace ballast::cli {

std::string share(std::optional<double> v);      // "33.3%", "-" for none
std::string ratio(std::optional<double> v);      // "1.02", "-" for none
std::string per_second(double v);                // "1520"
std::string or_dash(const std::string& text);    // "-" for ""

// Findings of an audit, one block each: severity, check id, the sentence,
// the hint.
void print_findings(const std::vector<Finding>& findings);
size_t count_errors(const std::vector<Finding>& findings);
// What a change did, and what its audit found.
void print_changes(const api::ChangeReply& reply);

}  // namespace ballast::cli
