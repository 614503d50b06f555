// nudge/detail/evaluate_into.hpp: the evaluation step as the engine runs it. Not part of the API.
#pragma once

#include <span>
#include <vector>

#include <nudge/evaluate.hpp>

namespace nudge::detail {

/// evaluate(), but mutating `state` in place and appending to batch-wide lists, so a batch over
/// many contacts builds no per-contact vectors. On an exception `state` and the lists may hold
/// partial changes: the caller discards them (the engine works on copies loaded from the store).
void evaluate_into(const program& program, contact_state& state,
                   std::span<const event* const> events, time_point now,
                   round_robin_counters* counters, std::vector<due_action>& actions,
                   std::vector<rule_outcome>& outcomes);

}  // namespace nudge::detail
