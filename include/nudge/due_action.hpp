// nudge/due_action.hpp: an action that has come due for a contact.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nudge/action.hpp>
#include <nudge/time.hpp>

namespace nudge {

struct owned_action;

/// One action to deliver (external) or to report (internal with notify: those reach the sink
/// too, in the same batch and order as the external ones).
///
/// Lifetime: `rule`, `step`, `arg` and `definition` point into the program that produced the
/// action (its rule set), not into the engine or the batch: they stay valid while that program
/// lives — the engine holds it by shared_ptr (engine::shared_program), so keep that pointer
/// alongside actions you keep, including after engine::change_program or once the engine is
/// gone. A sink that queues actions beyond that (another thread, a retry queue, a process that
/// reloads the rules) should store to_owned() copies, which own every string.
struct due_action {
  std::string contact;           ///< the contact's id
  time_point ts;                 ///< the event's time, or the timer's due time
  std::string_view rule;         ///< id of the producing rule (of the workflow, for its steps)
  std::uint32_t rule_index = 0;  ///< its index in the program (of the workflow, for its steps)
  /// The producing workflow step's id; empty for actions of rules.
  std::string_view step;
  action_kind kind = action_kind::send_email;
  /// The main parameter as delivered: the template, tag, ..., or the owner picked.
  std::string_view arg;
  const nudge::action* definition = nullptr;  ///< the action as written (params, ...)
  /// Same for the same input replayed, different for every action; a host delivering
  /// at-least-once drops duplicates by it.
  std::uint64_t idempotency_key = 0;

  /// What the action does, as in rule files and the CSV column `action`: "send_email", ...
  std::string_view action() const noexcept { return action_name(kind); }
  /// True for a workflow step's action: `rule` is then the workflow's id, `rule_index` its
  /// index among the program's workflows, and `step` the step's id.
  bool from_workflow() const noexcept { return !step.empty(); }
  friend bool operator==(const due_action& a, const due_action& b) noexcept {
    return a.contact == b.contact && a.ts == b.ts && a.rule == b.rule && a.kind == b.kind &&
           a.arg == b.arg && a.idempotency_key == b.idempotency_key && a.step == b.step;
  }
  /// A copy that owns its strings and the action's params, valid without the program.
  owned_action to_owned() const;
};

/// A due_action that owns everything it holds (due_action::to_owned): for queues and threads
/// that outlive the program.
///
///     std::vector<nudge::owned_action> queue;
///     nudge::function_sink sink{[&](auto actions) {
///       for (const auto& a : actions) queue.push_back(a.to_owned());
///     }};
struct owned_action {
  std::string contact;
  time_point ts;
  std::string rule;              ///< the rule's id (the workflow's, for its steps)
  std::uint32_t rule_index = 0;  ///< as due_action::rule_index
  std::string step;              ///< the workflow step's id; empty for rules
  action_kind kind = action_kind::send_email;
  std::string arg;
  name_map<std::string> params;  ///< the action's params as written (action::params)
  std::uint64_t idempotency_key = 0;

  std::string_view action() const noexcept { return action_name(kind); }  ///< as due_action::action
  bool from_workflow() const noexcept { return !step.empty(); }
  friend bool operator==(const owned_action&, const owned_action&) = default;
};

inline owned_action due_action::to_owned() const {
  owned_action o;
  o.contact = contact;
  o.ts = ts;
  o.rule = std::string{rule};
  o.rule_index = rule_index;
  o.step = std::string{step};
  o.kind = kind;
  o.arg = std::string{arg};
  if (definition != nullptr) {
    o.params = definition->params;
  }
  o.idempotency_key = idempotency_key;
  return o;
}

/// The order of due actions wherever nudge returns several: by ts, then by contact id
/// (bytewise). Actions of one contact due at the same second are equivalent under it, so sort
/// stably (std::stable_sort, std::inplace_merge) to keep them in the order they were emitted:
/// that stable order is what engine::process, engine::upsert_contacts and replay return, and
/// what lets the actions of several batches be merged into the order of one.
///
///     std::stable_sort(actions.begin(), actions.end(), nudge::due_order);
///     bool out_of_order = nudge::due_order(next, previous);   // next belongs before previous
inline constexpr struct due_order_fn {
  bool operator()(const due_action& a, const due_action& b) const noexcept {
    return a.ts != b.ts ? a.ts < b.ts : a.contact < b.contact;
  }
} due_order{};

}  // namespace nudge
