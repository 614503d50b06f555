// nudge/stats.hpp: per-rule and per-workflow statistics the engine keeps.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nudge/time.hpp>

namespace nudge {

/// What the delivery policy (delivery.hpp) did to a rule's, a workflow's or a step's messages:
/// dropped, by reason, and postponed.
struct delivery_counts {
  std::uint64_t no_consent = 0;      ///< dropped: no consent for the channel
  std::uint64_t capped = 0;          ///< dropped: a channel cap (on_cap = skip)
  std::uint64_t off_hours = 0;       ///< dropped: quiet hours / send window (on_quiet_hours = skip)
  std::uint64_t deferred_cap = 0;    ///< postponed by a channel cap (each postponement counts)
  std::uint64_t deferred_hours = 0;  ///< postponed by quiet hours / send window
  delivery_counts& operator+=(const delivery_counts& o) noexcept {
    no_consent += o.no_consent;
    capped += o.capped;
    off_hours += o.off_hours;
    deferred_cap += o.deferred_cap;
    deferred_hours += o.deferred_hours;
    return *this;
  }
  friend bool operator==(const delivery_counts&, const delivery_counts&) = default;
};

/// Counts for one rule since the engine started (or since its snapshot).
struct rule_stats {
  std::string rule;                 ///< the rule's id
  std::uint64_t triggered = 0;      ///< trigger events matched
  std::uint64_t passed = 0;         ///< checks whose condition held and that ran
  std::uint64_t failed = 0;         ///< checks whose condition did not hold
  std::uint64_t suppressed = 0;     ///< held, but re-entry policy or cap refused
  std::uint64_t emitted = 0;        ///< due actions produced (external, or internal with notify)
  delivery_counts delivery;         ///< its messages the delivery policy dropped or postponed
  std::optional<time_point> first;  ///< first operation (trigger, check or emission)
  std::optional<time_point> last;   ///< last operation
  friend bool operator==(const rule_stats&, const rule_stats&) = default;
};

/// Counts for one workflow step.
struct workflow_step_stats {
  std::string step;           ///< the step's id
  std::uint64_t reached = 0;  ///< runs that arrived at the step
  std::uint64_t sent = 0;     ///< messages the step emitted
  std::uint64_t opened = 0;   ///< email_open events attributed to the step
  std::uint64_t clicked = 0;  ///< email_click events attributed to the step
  std::int64_t waiting = 0;   ///< runs waiting at the step now (where contacts are stuck)
  std::uint64_t ended = 0;    ///< runs a program change ended here (lifecycle.hpp)
  delivery_counts delivery;   ///< the step's messages the delivery policy dropped or postponed
  std::optional<time_point> first, last;  ///< first and last operation at the step
  friend bool operator==(const workflow_step_stats&, const workflow_step_stats&) = default;
};

/// Counts for one workflow since the engine started (or since its snapshot).
struct workflow_stats {
  std::string workflow;         ///< the workflow's id
  std::uint64_t entered = 0;    ///< runs started
  std::uint64_t completed = 0;  ///< runs that walked to the end
  std::uint64_t exited = 0;     ///< runs ended by a goal (exit event or condition)
  /// Runs a program change ended: the workflow archived (or set back to draft), or the run's
  /// step missing from a new version (lifecycle.hpp). Counted apart from goals and completions.
  std::uint64_t ended = 0;
  std::uint64_t sent = 0;                 ///< messages emitted by its steps
  std::uint64_t opened = 0;               ///< opens attributed to its steps
  std::uint64_t clicked = 0;              ///< clicks attributed to its steps
  std::int64_t active = 0;                ///< runs inside now
  delivery_counts delivery;               ///< its messages the delivery policy dropped or postponed
  std::optional<time_point> first, last;  ///< first and last operation
  std::vector<workflow_step_stats> steps;  ///< in step order
  friend bool operator==(const workflow_stats&, const workflow_stats&) = default;
};

}  // namespace nudge
