// The contact's timers: firing them in order, scheduling, and the limits on them.

#include <fmt/format.h>

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::fire_timers_through(time_point t) -> void {
  for (;;) {
    if (!s_.timers.empty() && s_.timers.front().due_at <= t) {
      if (!held_.empty() && s_.timers.front().due_at > held_at_) [[unlikely]] {
        flush_held();
      } else {
        fire_front();
      }
    } else if (!held_.empty()) [[unlikely]] {
      flush_held();
    } else {
      return;
    }
  }
}

auto evaluator::fire_front() -> void {
  const timer tm = s_.timers.front();
  s_.timers.erase(s_.timers.begin());
  s_.clock = std::max(s_.clock, tm.due_at);
  if (tm.kind == timer_kind::workflow_step) {
    wait_over(tm);
  } else if (tm.kind == timer_kind::workflow_date) {
    date_due(tm);
  } else if (tm.action == timer::segment_flip) {
    refresh_segments(tm.due_at, 0, nullptr);
  } else if (tm.action == timer::score_decay) {
    apply_decay(tm.due_at);
  } else if (tm.deferred) {
    // A message the policy postponed: it goes through the policy again, not its condition.
    const auto i = static_cast<std::size_t>(tm.action);
    const action& a = p_.rules().rules[tm.rule].actions[i];
    const emission src = rule_emission(tm.rule, i, tm.triggered_at, tm.trigger_ordinal);
    hold(make_due(a, src, tm.due_at, a.arg), src.policy, src.retry);
  } else if (tm.action < 0) {
    run_check(tm.rule, tm.due_at, tm.triggered_at, tm.trigger_ordinal, nullptr);
  } else {
    run_action(tm.rule, static_cast<std::size_t>(tm.action), tm.due_at, tm.triggered_at,
               tm.trigger_ordinal, nullptr);
  }
  drain();
}

// Inputs end at max_input_time, 200 years before max_time, and one timer reaches at most
// max_delay past its batch's `now`: only a host that raised program_limits::max_delay gets
// here. The batch fails (nothing is stored) rather than store a time nothing can read back.
auto evaluator::throw_timer_out_of_range(const timer& t) const -> void {
  throw input_error(
      s_.contact.id, 0,
      fmt::format("a timer would be due at epoch {}, after {} (the latest time nudge can "
                  "store); program_limits::max_delay must stay at most 100 years",
                  to_epoch(t.due_at), format_time(max_time)));
}

// Names the rules holding the pending timers, most timers first (ties by rule order).
auto evaluator::throw_too_many_timers() const -> void {
  std::vector<std::size_t> per_rule(p_.rule_count(), 0);
  for (const timer& t : s_.timers) {
    // The engine's own segment and decay timers belong to no rule.
    if (t.kind == timer_kind::rule && t.action >= timer::check && t.rule < per_rule.size()) {
      ++per_rule[t.rule];
    }
  }
  std::vector<std::uint32_t> order;
  for (std::uint32_t r = 0; r < per_rule.size(); ++r) {
    if (per_rule[r] > 0) {
      order.push_back(r);
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return per_rule[a] > per_rule[b]; });
  std::vector<std::string> rules;
  std::vector<std::size_t> counts;
  for (std::uint32_t r : order) {
    rules.push_back(p_.rules().rules[r].id);
    counts.push_back(per_rule[r]);
  }
  throw rule_cycle_error::pending_timers(s_.contact.id, std::move(rules), counts,
                                         p_.limits().max_pending_timers);
}

}  // namespace nudge::eval
