// metrics.h: the Prometheus text exposition (format 0.0.4) of Ballast's
// state: per VIP and backend counters, shares, skew, weight, health and
// drain; per reason verdict counters; skew settings; audit findings; the
// program's attachment and the build. docs/observability.md lists every
// family. Pure: everything comes in as plain data, so a unit test checks the
// text and `promtool check metrics` checks the format.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "announce.h"
#include "balancer_state.h"
#include "dataplane.h"
#include "skew.h"

namespace ballast {

struct MetricsInput {
  const std::vector<VipView>* vips = nullptr;
  const std::vector<VipSkew>* skew = nullptr;  // report() for the same vips
  DataPlane* dataplane = nullptr;              // counters and reasons
  SkewSettings skew_settings;
  std::string interface;
  std::string attach_mode;
  bool program_attached = false;
  // Errors ballastd caught and survived, by the step of its loop that met
  // them (every step listed, 0 when none).
  std::map<std::string, uint64_t> daemon_errors;
  // (check id, severity) -> findings now; every check id listed, 0 when clean.
  std::map<std::pair<std::string, std::string>, int> audit_findings;
  // Route health injection; null or not enabled: no announce families.
  const Announcer* announcer = nullptr;
};

std::string render_metrics(const MetricsInput& in);

// The version ballastd reports (build info, `ballast status`).
extern const char* const kBallastVersion;

}  // namespace ballast
