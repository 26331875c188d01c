// change_pipeline.h: the one path of every change to the live state:
//
//   plan     BalancerState::plan(request): typed changes, nothing written.
//   audit    an operator's change (a config: file, reload, CLI edits; a
//            drain) passes the pre-apply audit: the config checks of the
//            state after the plan against those of now; new errors refuse
//            it (AuditRefused) unless forced. What the world did (a
//            health-check result, the host's routes and neighbours, the
//            interface re-created, a repair of drifted maps) is not
//            refusable: the maps must say what is true; the daemon's next
//            audit (soon after any change) reports what it made of it.
//   execute  BalancerState::execute(plan): the ordered map writes.
//   record   the change log, with who asked; then the listeners (the
//            daemon's health checker, skew settings, next audit).
//
// A dry run is plan and audit only: no map, no neighbour solicitation.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "audit.h"
#include "balancer_state.h"
#include "change.h"
#include "changelog.h"
#include "error.h"

namespace ballast {

// Who asked, for the change log: "uid=0 pid=12", "config FILE",
// "reload FILE", "health-check", "neighbour table", "reconcile", ...
struct ChangeSource {
  std::string actor;
  ChangeLog::Origin origin = ChangeLog::Origin::operator_request;
  bool force = false;  // applied even when the audit finds new errors
  // false: the audit reports but never refuses (the config a daemon starts
  // with: better balanced than not, loudly).
  bool refusable = true;
};

// The pre-apply audit refused a change: nothing was written.
class AuditRefused : public Error {
 public:
  explicit AuditRefused(std::vector<Finding> errors);
  const std::vector<Finding>& errors() const { return errors_; }

 private:
  std::vector<Finding> errors_;
};

struct ChangeOutcome {
  std::vector<Change> changes;  // executed (or, for a dry run, planned)
  ChangeAudit audit;            // operator changes only: every finding, and the new ones
  bool applied = false;
};

class ChangePipeline {
 public:
  using Listener = std::function<void(const std::vector<Change>&)>;

  ChangePipeline(BalancerState& state, ChangeLog& log);

  // plan → audit → execute → record. Throws Error when the request cannot
  // be planned, AuditRefused when the audit refuses it: nothing changed
  // either way.
  ChangeOutcome submit(const ChangeRequest& request, const ChangeSource& source);
  // plan → audit; never refused, never executed.
  ChangeOutcome dry_run(const ChangeRequest& request) const;
  // Called after every executed change that changed something.
  void add_listener(Listener listener) { listeners_.push_back(std::move(listener)); }

  const BalancerState& state() const { return state_; }

 private:
  ChangeAudit audit(const BalancerState::Plan& plan) const;

  BalancerState& state_;
  ChangeLog& log_;
  std::vector<Listener> listeners_;
};

}  // namespace ballast
