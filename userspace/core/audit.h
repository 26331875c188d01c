// audit.h: Ballast checks itself. Each finding has a severity, a stable
// check id, one sentence naming the VIP, the backend and the numbers, and a
// hint at the fix. Three kinds of checks, all pure (plain data in,
// findings out), so unit tests drive them without maps or sockets:
//
//   config (before a change is applied, and of the running config):
//     share-limit       one backend would get more than max_share of a VIP's
//                       new flows by weight while others take traffic (error)
//     single-backend    only one backend of several has weight > 0, or none
//                       has (error); a VIP with one backend or none (warning)
//     duplicate-backend the same address twice in one VIP (error)
//     backend-is-vip    a backend address that is also a VIP address (error)
//   live (the running state):
//     unresolved-backend a backend without a MAC takes no traffic (error)
//     ring-share        a backend's share of the live Maglev table is off its
//                       expected share (error past 2x or under 0.5x, warning
//                       past 10%); table entries naming no backend of the VIP
//     traffic-skew      skewed (SkewTracker) for at least the hold (error)
//     backend-down      a backend failing its health check (warning)
//     vip-near-down     no usable backend (error), one of several (warning)
//   drift (maps against what ballastd wrote):
//     drift             VIPs, backend slots or tables differ from what the
//                       state wrote, or the XDP program is not ours (error)
//   announce (announce.h, with fleet.announce):
//     announce          an address announced though short of usable
//                       backends (error), withdrawn though it qualifies
//                       (warning; info after `ballast fleet leave`)
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "balancer_state.h"
#include "config.h"
#include "dataplane.h"
#include "skew.h"

namespace ballast {

enum class Severity { info, warning, error };
std::string_view severity_name(Severity s);

// What ballastd can do about a finding by itself.
enum class Repair {
  none,
  rewrite_maps,  // map drift: rewritten from the state with `reconcile: true`
};

struct Finding {
  Severity severity = Severity::warning;
  std::string check;  // a stable id (above)
  std::string vip;    // "" when not about one VIP
  std::string backend;
  std::string message;  // one sentence with the numbers
  std::string hint;     // what to do about it
  Repair repair = Repair::none;
  bool operator==(const Finding&) const = default;
};

// Every check id, in the order above (metrics export each, 0 when clean).
const std::vector<std::string>& audit_check_ids();

// The config checks of @config. @live supplies what is known of running
// backends (health, drain), by VIP and address: a backend known down or
// drained does not count among those taking traffic; one not running yet
// counts as up.
std::vector<Finding> audit_config(const Config& config, const std::vector<VipView>& live);
// The same checks of the VIPs in @scope alone (each VIP's findings are
// what audit_config of the whole config says of it).
std::vector<Finding> audit_config(const ConfigAuditScope& scope);

// The live checks. @skew is SkewTracker::report(@vips, live tables).
std::vector<Finding> audit_live(const std::vector<VipView>& vips, const std::vector<VipSkew>& skew,
                                const SkewSettings& settings);

// Drift of @live (DataPlane::snapshot()) from @expected
// (BalancerState::expected()); @program_attached: our program is the one on
// @interface. @vips names VIP ids in the messages.
std::vector<Finding> audit_drift(const LiveSnapshot& expected, const LiveSnapshot& live,
                                 const std::vector<VipView>& vips, bool program_attached,
                                 const std::string& interface);

// Findings in @after whose (check, vip, backend, severity) is not in
// @before (the sentence too when it names neither a VIP nor a backend):
// what a change would add. A change is refused for new errors only, so a risky
// state forced earlier does not block every later edit.
std::vector<Finding> new_findings(const std::vector<Finding>& before,
                                  const std::vector<Finding>& after);

// The pre-apply audit of a change (change_pipeline.h): every finding of
// the VIPs it touches once applied, and the ones it adds. A change whose
// added findings hold an error is refused unless forced.
struct ChangeAudit {
  std::vector<Finding> all, added;
  std::vector<Finding> added_errors() const;
};

bool has_errors(const std::vector<Finding>& findings);
// "error share-limit: <message> (hint: <hint>)", one per line.
std::string findings_text(const std::vector<Finding>& findings);

}  // namespace ballast
