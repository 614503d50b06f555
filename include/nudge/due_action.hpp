// nudge/due_action.hpp: an action that has come due for a contact.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nudge/action.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// One action to deliver (external) or to report (internal with notify).
///
/// The string views and `definition` point into the program that produced the action: they stay
/// valid while that program lives (engines hold their program by shared_ptr).
struct due_action {
  std::string contact;           ///< the contact's id
  time_point due_at;             ///< the event's time, or the timer's due time
  std::string_view rule;         ///< id of the producing rule (of the workflow, for its steps)
  std::uint32_t rule_index = 0;  ///< its index in the program (of the workflow, for its steps)
  /// The producing workflow step's id; empty for actions of rules.
  std::string_view step;
  action_kind kind = action_kind::send_email;
  /// The main parameter as delivered: the template, tag, ..., or the owner picked.
  std::string_view arg;
  const action* definition = nullptr;  ///< the action as written (params, ...)
  /// Same for the same input replayed, different for every action; a host delivering
  /// at-least-once drops duplicates by it.
  std::uint64_t idempotency_key = 0;

  std::string_view verb() const noexcept { return action_name(kind); }
  /// True for a workflow step's action: `rule` is then the workflow's id, `rule_index` its
  /// index among the program's workflows, and `step` the step's id.
  bool from_workflow() const noexcept { return !step.empty(); }
  friend bool operator==(const due_action& a, const due_action& b) noexcept {
    return a.contact == b.contact && a.due_at == b.due_at && a.rule == b.rule && a.kind == b.kind &&
           a.arg == b.arg && a.idempotency_key == b.idempotency_key && a.step == b.step;
  }
};

}  // namespace nudge
