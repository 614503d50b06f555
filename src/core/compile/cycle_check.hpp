// Internal: rule cycles that compilation can see (src/core/compile/cycle_check.cpp).
#pragma once

#include <vector>

#include <nudge/error.hpp>
#include <nudge/rule.hpp>

namespace nudge::detail {

/// Adds a "rule_cycle" diagnostic (at the first rule's linking action) for each cycle of
/// unconditional rules (no "if", "reentry" always, no "cap", no delay) whose internal actions
/// without delay or condition trigger the next rule and change the contact every time round:
/// add_score (non-zero points) on score_changed, set_stage / set_status / set_detail when the
/// previous value set on that field along the cycle differs. Such a cycle would end only at
/// program_limits::max_cascade_depth, with a rule_cycle_error, for every contact reaching it.
void find_rule_cycles(const std::vector<rule>& rules, std::vector<diagnostic>& problems);

}  // namespace nudge::detail
