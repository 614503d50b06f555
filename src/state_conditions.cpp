// Conditions on the contact's workflow state: "is in workflow X (at step Y)", "has completed /
// exited workflow X" (docs/rules.md, "Workflow state").
#include <algorithm>

#include <nudge/detail/state_conditions.hpp>

namespace nudge::detail {

bool workflow_state_holds(const node& nd, const contact_state& s, const compiled_program& c) {
  const std::uint32_t w = nd.slot;
  switch (nd.kind) {
    case condition::kind::in_workflow:
      // A run on a kept older version is at the step with the same id (compiled_step::stat).
      return std::any_of(s.runs.begin(), s.runs.end(), [&](const workflow_run& r) {
        return r.workflow == w && (nd.step == none || c.workflows[w].steps[r.step].stat == nd.step);
      });
    case condition::kind::completed_workflow:
    case condition::kind::exited_workflow: {
      const auto it = s.workflow_history.find(w);
      if (it == s.workflow_history.end()) {
        return false;
      }
      return (nd.kind == condition::kind::completed_workflow ? it->second.completed
                                                             : it->second.exited) > 0;
    }
    default:
      return false;
  }
}

}  // namespace nudge::detail
