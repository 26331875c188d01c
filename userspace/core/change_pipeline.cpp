#include "change_pipeline.h"

namespace ballast {

AuditRefused::AuditRefused(std::vector<Finding> errors)
    : Error("refused by the pre-apply audit (nothing changed; --force applies it anyway):\n" +
            findings_text(errors)),
      errors_(std::move(errors)) {}

ChangePipeline::ChangePipeline(BalancerState& state, ChangeLog& log) : state_(state), log_(log) {}

ChangeAudit ChangePipeline::audit(const BalancerState::Plan& plan) const {
  ChangeAudit out;
  if (!plan.operator_change()) return out;
  out.all = audit_config(state_.audit_scope(plan, /*after=*/true));
  out.added = new_findings(audit_config(state_.audit_scope(plan, /*after=*/false)), out.all);
  return out;
}

ChangeOutcome ChangePipeline::dry_run(const ChangeRequest& request) const {
  const auto plan = state_.plan(request);
  return {plan.changes(), audit(plan), false};
}

ChangeOutcome ChangePipeline::submit(const ChangeRequest& request, const ChangeSource& source) {
  auto plan = state_.plan(request);
  ChangeOutcome out{{}, audit(plan), false};
  if (auto errors = out.audit.added_errors(); !errors.empty() && !source.force && source.refusable)
    throw AuditRefused(std::move(errors));
  out.changes = state_.execute(std::move(plan));
  out.applied = true;
  if (out.changes.empty()) return out;
  log_.record(source.actor + (source.force ? " (forced)" : ""), out.changes, source.origin);
  for (const auto& listener : listeners_) listener(out.changes);
  return out;
}

}  // namespace ballast
