// nudge/evaluate.hpp: the pure evaluation step. No I/O, no clock: `now` is an argument.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/due_action.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// What happened to a rule during an evaluation, for statistics.
enum class rule_outcome_kind : std::uint8_t {
  triggered,   ///< an event matched the trigger
  passed,      ///< the check ran and the condition held
  failed,      ///< the check ran and the condition did not hold
  suppressed,  ///< the condition held but re-entry policy or frequency cap refused the run
  // The delivery policy on one message of the rule (delivery.hpp):
  blocked_no_consent,  ///< dropped: no consent for the channel
  blocked_cap,         ///< dropped: a channel cap
  blocked_hours,       ///< dropped: quiet hours or send window
  deferred_cap,        ///< postponed: a channel cap
  deferred_hours,      ///< postponed: quiet hours or send window
};

struct rule_outcome {
  std::uint32_t rule = 0;  ///< index in the program
  rule_outcome_kind kind = rule_outcome_kind::triggered;
  time_point ts;
  friend bool operator==(const rule_outcome&, const rule_outcome&) = default;
};

/// What happened in a workflow during an evaluation, for statistics.
enum class workflow_outcome_kind : std::uint8_t {
  entered,       ///< a run started (step: none)
  completed,     ///< a run walked to the end (step: the last step it ran)
  exited,        ///< a goal ended a run (step: where it was)
  reached,       ///< a run arrived at the step
  sent,          ///< the step emitted a message
  opened,        ///< an email_open attributed to the step
  clicked,       ///< an email_click attributed to the step
  wait_started,  ///< a run began waiting at the step
  wait_ended,    ///< a run stopped waiting at the step (moved on or ended)
  ended,         ///< a program change ended the run (archived, or its step is gone)
  // The delivery policy on the step's message (delivery.hpp), as for rules:
  blocked_no_consent,  ///< dropped: no consent for the channel
  blocked_cap,         ///< dropped: a channel cap
  blocked_hours,       ///< dropped: quiet hours or send window
  deferred_cap,        ///< postponed: a channel cap
  deferred_hours,      ///< postponed: quiet hours or send window
};

struct workflow_outcome {
  std::uint32_t workflow = 0;        ///< index in the program's workflows
  std::uint32_t step = 0xffffffffU;  ///< step index; 0xffffffff: the workflow as a whole
  workflow_outcome_kind kind = workflow_outcome_kind::entered;
  time_point ts;
  friend bool operator==(const workflow_outcome&, const workflow_outcome&) = default;
};

/// The result of evaluating one contact.
struct evaluation {
  contact_state state;              ///< the contact after the events and due timers
  std::vector<due_action> actions;  ///< in emission order (non-decreasing ts)
  std::vector<rule_outcome> outcomes;
  std::vector<workflow_outcome> workflow_outcomes;
};

/// Cross-contact counters for round-robin owner assignment; the engine keeps one and passes it.
using round_robin_counters = std::vector<std::uint64_t>;

/// Applies `events` (all for `state.contact.id`, in time order) to `state`, then fires every
/// timer due at or before `now`; returns the due actions and the new state.
///
/// Clock semantics: an event stamped T is applied before timers due at T fire; timers due at one
/// instant fire in the order they were scheduled; a timer due before an event fires before it.
///
/// Example:
///
///     auto out = nudge::evaluate(*program, std::move(state), events, now);
///     for (const auto& a : out.actions) deliver(a);
///
/// @throws nudge::input_error if an event belongs to another contact, is older than the
///   contact's clock or the previous event, is after `now` or outside [min_time, max_time], has
///   a type the program does not know, or a non-finite decimal prop (NaN, infinity);
///   nudge::rule_cycle_error if internal actions cascade past the program's depth limit.
///   Either way nothing is returned: the caller's state is untouched (it was passed by value).
/// Thread-safety: safe to call concurrently for different contacts (with separate counters).
/// Complexity: O(events x rules each event triggers + timers fired).
evaluation evaluate(const program& program, contact_state state, std::span<const event> events,
                    time_point now, round_robin_counters* counters = nullptr);

/// The same over events given by pointer, as the engine holds them after grouping by contact.
/// `first_index` of input_error is the position in `events`.
evaluation evaluate(const program& program, contact_state state,
                    std::span<const event* const> events, time_point now,
                    round_robin_counters* counters = nullptr);

/// The contact's owner pick by hash: fnv1a64 over the bytes of `contact_id` then `salt`.
std::uint64_t fnv1a64(std::string_view bytes,
                      std::uint64_t seed = 14695981039346656037ULL) noexcept;

}  // namespace nudge
