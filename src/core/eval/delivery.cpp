// Delivery policies: holding messages at their instant, then deciding them by priority.

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::hold(due_action d, const delivery_policy* policy, timer retry) -> void {
  const auto on = *channel_of(d.kind);
  held_at_ = d.ts;
  held_.push_back({std::move(d), retry, policy, on});
}

// Decides the held messages of one instant: highest priority first, ties in the order they
// were emitted; each one sent counts against the caps of those after it. A decided workflow
// message moves its run on, which may hold new messages at the same instant: they go to a
// fresh list, decided by the caller's next round.
auto evaluator::flush_held() -> void {
  if (held_.empty()) {
    return;
  }
  std::vector<held_message> now = std::move(held_);
  held_.clear();
  std::stable_sort(now.begin(), now.end(), [](const held_message& a, const held_message& b) {
    return a.policy->priority > b.policy->priority;
  });
  for (auto& m : now) {
    decide(m);
  }
  drain();
}

// A rule's message is counted for the rule; a workflow step's (retry.kind workflow_step) for
// the step, and its run, resting at the step meanwhile, moves on once the message is sent or
// dropped.
auto evaluator::decide(held_message& m) -> void {
  const time_point now = m.action.ts;
  const std::uint32_t source = m.retry.rule;
  const bool of_step = m.retry.kind == timer_kind::workflow_step;
  std::size_t run = s_.runs.size();
  std::uint32_t step = static_cast<std::uint32_t>(m.retry.action);
  timeline_source kind = timeline_source::rule;
  if (of_step) {
    run = find_run(m.retry.trigger_ordinal);
    if (run == s_.runs.size() || s_.runs[run].step != step || s_.runs[run].phase != 2) {
      return;  // a goal at this instant ended the run: its message is not sent
    }
    kind = timeline_source::workflow;
    step = c_.workflows[source].steps[step].stat;
  }
  const verdict v = judge(*m.policy, m.on, now);
  if (v.reason == timeline_reason::none) {
    if (const auto keep = c_.delivery.keep[static_cast<std::size_t>(m.on)]; keep > 0) {
      auto& log = s_.channel_sends[static_cast<std::uint8_t>(m.on)];
      if (log.size() == keep) {
        log.erase(log.begin());
      }
      log.push_back(now);
    }
    out_.actions.push_back(std::move(m.action));
    note(timeline_what::action_emitted, source, now, step, timeline_reason::none, timeline_none,
         min_time, kind);
    if (of_step) {
      step_decided(run, now, true);
    }
    return;
  }
  const bool hours =
      v.reason == timeline_reason::quiet_hours || v.reason == timeline_reason::send_window;
  if (v.retry_at) {
    timer t = m.retry;
    t.due_at = *v.retry_at;
    t.deferred = true;
    schedule(t);
    if (of_step) {
      note(source, m.retry.action, hours ? wk::deferred_hours : wk::deferred_cap, now);
    } else {
      out_.outcomes.note(
          source, hours ? rule_outcome_kind::deferred_hours : rule_outcome_kind::deferred_cap, now);
    }
    note(timeline_what::action_deferred, source, now, step, v.reason, v.cap, *v.retry_at, kind);
    return;
  }
  const bool consent = v.reason == timeline_reason::no_consent;
  if (of_step) {
    note(source, m.retry.action,
         consent ? wk::blocked_no_consent
         : hours ? wk::blocked_hours
                 : wk::blocked_cap,
         now);
  } else {
    out_.outcomes.note(source,
                       consent ? rule_outcome_kind::blocked_no_consent
                       : hours ? rule_outcome_kind::blocked_hours
                               : rule_outcome_kind::blocked_cap,
                       now);
  }
  note(timeline_what::action_suppressed, source, now, step, v.reason, v.cap, min_time, kind);
  if (of_step) {
    step_decided(run, now, false);
  }
}

auto evaluator::judge(const delivery_policy& p, channel on, time_point now) const -> verdict {
  verdict v;
  if (p.require_consent) {
    auto it = s_.contact.consent.find(channel_name(on));
    if (it == s_.contact.consent.end() || !it->second) {
      v.reason = timeline_reason::no_consent;
      return v;
    }
  }
  // Caps: the first instant every cap has room again.
  time_point free_at = now;
  const std::vector<time_point>* log = nullptr;
  if (auto it = s_.channel_sends.find(static_cast<std::uint8_t>(on));
      it != s_.channel_sends.end()) {
    log = &it->second;
  }
  for (std::size_t k = 0; k < p.caps.size(); ++k) {
    const channel_cap& cap = p.caps[k];
    if (cap.on != on || log == nullptr) {
      continue;
    }
    const time_point from = now - cap.per;
    std::int64_t in_window = 0;
    for (auto t = log->rbegin(); t != log->rend() && *t > from; ++t) {
      ++in_window;
    }
    if (in_window >= cap.max_messages) {
      // The max-th latest send leaves the window at its time + per.
      const time_point frees =
          (*log)[log->size() - static_cast<std::size_t>(cap.max_messages)] + cap.per;
      if (v.reason == timeline_reason::none) {
        v.reason = timeline_reason::channel_cap;
        v.cap = static_cast<std::uint32_t>(k);
      }
      free_at = std::max(free_at, frees);
    }
  }
  if (v.reason == timeline_reason::channel_cap) {
    if (p.on_cap == on_refusal::defer) {
      v.retry_at = next_allowed(p, free_at);
    }
    return v;
  }
  if (const auto why = hours_refusal(p, now); why != timeline_reason::none) {
    v.reason = why;
    if (p.on_quiet_hours == on_refusal::defer) {
      v.retry_at = next_allowed(p, now);
    }
  }
  return v;
}

}  // namespace nudge::eval
