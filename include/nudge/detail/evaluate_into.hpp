// nudge/detail/evaluate_into.hpp: the evaluation step as the engine runs it. Not part of the API.
#pragma once

#include <span>
#include <vector>

#include <nudge/evaluate.hpp>
#include <nudge/stats.hpp>

namespace nudge::detail {

/// Where rule outcomes go: a list of records (the public evaluate), or counters per rule that
/// the engine folds into its statistics (a batch of a million events then builds no list).
struct outcome_recorder {
  std::vector<rule_outcome>* list = nullptr;
  std::vector<rule_stats>* counts = nullptr;  ///< indexed by rule

  void note(std::uint32_t rule, rule_outcome_kind kind, time_point at) const {
    if (list != nullptr) {
      list->push_back({rule, kind, at});
      return;
    }
    rule_stats& s = (*counts)[rule];
    switch (kind) {
      case rule_outcome_kind::triggered:
        ++s.triggered;
        break;
      case rule_outcome_kind::passed:
        ++s.passed;
        break;
      case rule_outcome_kind::failed:
        ++s.failed;
        break;
      case rule_outcome_kind::suppressed:
        ++s.suppressed;
        break;
    }
    if (!s.first || at < *s.first) {
      s.first = at;
    }
    if (!s.last || at > *s.last) {
      s.last = at;
    }
  }
};

/// evaluate(), but mutating `state` in place and appending to batch-wide lists, so a batch over
/// many contacts builds no per-contact vectors. On an exception `state` and the lists may hold
/// partial changes: the caller discards them (the engine works on copies loaded from the store).
void evaluate_into(const program& program, contact_state& state,
                   std::span<const event* const> events, time_point now,
                   round_robin_counters* counters, std::vector<due_action>& actions,
                   const outcome_recorder& outcomes);

}  // namespace nudge::detail
