// Workflow runs: entering, steps, waits, goals and exits.

#include <fmt/format.h>

#include "evaluator.hpp"

namespace nudge::eval {

// A run of workflow `w` entered, moved, completed or exited: remember the ends for
// completed_workflow / exited_workflow, and have the segments reading the workflow
// re-evaluated once the cascade at `at` is over (drain).
auto evaluator::run_moved(std::uint32_t w, wk k, time_point at) -> void {
  if (k == wk::completed) {
    ++s_.workflow_history[w].completed;
  } else if (k == wk::exited) {
    ++s_.workflow_history[w].exited;
  }
  if (!c_.segment_reads.by_workflow.empty() && !c_.segment_reads.by_workflow[w].empty()) {
    touch_segments(c_.segment_reads.by_workflow[w]);
    runs_moved_ = true;
    runs_moved_at_ = at;
  }
}

// `step` is a step table index: statistics and the timeline name the current version's step
// with the same id (none for a step only a kept older version has).
auto evaluator::note(std::uint32_t w, std::uint32_t step, wk k, time_point at) -> void {
  if (k == wk::entered || k == wk::reached || k == wk::completed || k == wk::exited) {
    run_moved(w, k, at);
  }
  if (step != none) {
    step = c_.workflows[w].steps[step].stat;
  }
  out_.outcomes.note(workflow_outcome{w, step, k, at});
  if (timeline_size_ != 0) {
    timeline_what what = timeline_what::workflow_step;
    switch (k) {
      case wk::entered:
        what = timeline_what::workflow_entered;
        break;
      case wk::reached:
        what = timeline_what::workflow_step;
        break;
      case wk::exited:
        what = timeline_what::workflow_exited;
        break;
      case wk::completed:
        what = timeline_what::workflow_completed;
        break;
      default:
        return;  // sends are recorded as actions; opens, clicks and waits are statistics
    }
    note(what, w, at, step == none ? timeline_none : step, timeline_reason::none, timeline_none,
         min_time, timeline_source::workflow);
  }
}

auto evaluator::key_matches(const event_match& m, std::string_view key) -> bool {
  switch (m.match) {
    case key_match::any:
      return true;
    case key_match::exact:
      return key == m.key;
    case key_match::prefix:
      return key.starts_with(m.key);
  }
  return false;
}

auto evaluator::cancel_timers(std::uint64_t run_id) -> void {
  std::erase_if(s_.timers, [&](const timer& t) {
    return t.kind == timer_kind::workflow_step && t.trigger_ordinal == run_id;
  });
}

auto evaluator::schedule_wait(const workflow_run& r, time_point due) -> void {
  timer t;
  t.kind = timer_kind::workflow_step;
  t.due_at = due;
  t.rule = r.workflow;
  t.action = static_cast<std::int32_t>(r.step);
  t.triggered_at = r.entered_at;
  t.trigger_ordinal = r.id;
  schedule(t);
}

// The (workflow, step) indices an email_open / email_click names, or none: its props
// `workflow` and `step`, or else a key "<workflow id>/<step id>" (event logs without props).
auto evaluator::attribution(const name_map<value>* props, std::string_view key) const
    -> std::pair<std::uint32_t, std::uint32_t> {
  auto find = [&](std::string_view wid, std::string_view sid) {
    const auto wi = p_.find_workflow(wid);
    if (wi) {
      const auto& steps = wf(static_cast<std::uint32_t>(*wi)).steps;
      for (std::uint32_t j = 0; j < steps.size(); ++j) {
        if (steps[j].id == sid) {
          return std::pair{static_cast<std::uint32_t>(*wi), j};
        }
      }
    }
    return std::pair{none, none};
  };
  if (props != nullptr) {
    auto w = props->find(workflow_props::workflow);
    auto st = props->find(workflow_props::step);
    if (w != props->end() && st != props->end()) {
      const auto* wid = std::get_if<std::string>(&w->second);
      const auto* sid = std::get_if<std::string>(&st->second);
      return wid != nullptr && sid != nullptr ? find(*wid, *sid) : std::pair{none, none};
    }
  }
  for (auto slash = key.find('/'); slash != std::string_view::npos;
       slash = key.find('/', slash + 1)) {
    if (auto found = find(key.substr(0, slash), key.substr(slash + 1)); found.first != none) {
      return found;
    }
  }
  return {none, none};
}

auto evaluator::on_workflow_event(std::uint32_t type, std::string_view key, time_point at,
                                  std::uint64_t ordinal, const cascade_ctx& ctx,
                                  const name_map<value>* props) -> void {
  std::pair<std::uint32_t, std::uint32_t> source{none, none};
  const bool opened = type == c_.email_open_type, clicked = type == c_.email_click_type;
  if (opened || clicked) {
    source = attribution(props, key);
    if (source.first != none) {
      note(source.first, source.second, opened ? wk::opened : wk::clicked, at);
      for (auto& r : s_.runs) {
        if (r.workflow == source.first && r.last_send >= 0 &&
            c_.workflows[r.workflow].steps[static_cast<std::size_t>(r.last_send)].stat ==
                source.second) {
          time_point& first = opened ? r.last_opened_at : r.last_clicked_at;
          if (first == min_time) {
            first = at;
          }
        }
      }
    }
  }
  if (!s_.runs.empty()) {
    boost::container::small_vector<std::uint64_t, 4> ids;
    for (const auto& r : s_.runs) {
      ids.push_back(r.id);
    }
    for (auto id : ids) {
      auto i = find_run(id);
      if (i == s_.runs.size()) {
        continue;
      }
      workflow_run& r = s_.runs[i];
      const auto& cw = c_.workflows[r.workflow];
      bool exits = false;
      for (const auto& [exit_type, match] : cw.exits) {
        exits = exits || (exit_type == type && key_matches(*match, key));
      }
      if (exits) {
        end_run(i, at, true);
        continue;
      }
      if (!cw.runs || r.held) {
        continue;  // paused: the run holds where it is
      }
      const detail::compiled_step& cs = cw.steps[r.step];
      const workflow_step& st = *cs.def;
      const bool of_previous =
          source.first == r.workflow && r.last_send >= 0 &&
          cw.steps[static_cast<std::size_t>(r.last_send)].stat == source.second;
      if (st.kind == step_kind::wait_for && cs.event_type == type && key_matches(st.event, key) &&
          (!st.from_previous_message || of_previous)) {
        leave_wait(r, at);
        go(id, cs.yes, at, &ctx);
      } else if (st.kind == step_kind::wait && st.wait == wait_kind::after_message &&
                 st.moment != message_moment::delivered && r.phase == 0 && cs.event_type == type &&
                 of_previous) {
        cancel_timers(id);
        r.phase = 1;
        if (st.length > duration{0}) {
          schedule_wait(r, at + st.length);
        } else {
          leave_wait(r, at);
          go(id, cs.next, at, &ctx);
        }
      }
    }
  }
  if (type < c_.workflow_entries.size()) {
    for (auto w : c_.workflow_entries[type]) {
      if (key_matches(wf(w).entry.on, key)) {
        try_enter(w, at, ordinal, &ctx);
      }
    }
  }
  if (type == c_.detail_set_type && !c_.date_workflows.empty()) {
    sync_dates(at, &key);
  }
  check_exit_conditions(at);
}

// Goals given as conditions end runs whenever the contact is evaluated and they hold.
auto evaluator::check_exit_conditions(time_point at) -> void {
  for (std::size_t i = 0; i < s_.runs.size();) {
    const auto& r = s_.runs[i];
    const auto cond = c_.workflows[r.workflow].exit_condition;
    if (cond != none && wf(r.workflow).status != workflow_status::draft &&
        eval(cond, at, r.entered_at)) {
      end_run(i, at, true);
    } else {
      ++i;
    }
  }
}

auto evaluator::try_enter(std::uint32_t w, time_point at, std::uint64_t ordinal,
                          const cascade_ctx* ctx) -> void {
  const workflow& def = wf(w);
  const auto& cw = c_.workflows[w];
  if (!cw.runs) {
    return;  // draft, paused, archived: nobody enters (a paused yearly date passes unused)
  }
  if (cw.entry_condition != none && !eval(cw.entry_condition, at, at)) {
    return;
  }
  auto mem = s_.workflow_history.find(w);
  if (mem != s_.workflow_history.end() && mem->second.entries > 0) {
    if (def.reentry == workflow_reentry::never) {
      return;
    }
    if (def.reentry == workflow_reentry::cool_down && mem->second.last_entry > at - def.cool_down) {
      return;
    }
  }
  std::uint32_t inside = 0;
  for (const auto& r : s_.runs) {
    inside += r.workflow == w ? 1 : 0;
  }
  if (inside >= def.max_active_runs) {
    return;
  }
  workflow_memory& m = s_.workflow_history[w];
  ++m.entries;
  m.last_entry = at;
  workflow_run r;
  r.workflow = w;
  r.version = def.version;
  r.id = s_.runs_started++;
  r.entry_ordinal = ordinal;
  r.entered_at = r.step_at = at;
  s_.runs.push_back(r);
  note(w, none, wk::entered, at);
  go(r.id, 0, at, ctx);
}

// A wait's end (or an awaited event) moves the run on: counted as a wait that ended.
auto evaluator::leave_wait(const workflow_run& r, time_point at) -> void {
  cancel_timers(r.id);
  note(r.workflow, r.step, wk::wait_ended, at);
}

// Removes run `i`: a goal ended it (at rest, so it was waiting) or it completed.
auto evaluator::end_run(std::size_t i, time_point at, bool by_goal) -> void {
  const workflow_run r = s_.runs[i];
  if (by_goal) {
    leave_wait(r, at);
    note(r.workflow, r.step, wk::exited, at);
  } else {
    note(r.workflow, r.step, wk::completed, at);
  }
  s_.runs.erase(s_.runs.begin() + static_cast<std::ptrdiff_t>(i));
}

auto evaluator::complete(std::size_t i, time_point at, const cascade_ctx* ctx) -> void {
  const std::uint32_t w = s_.runs[i].workflow;
  const workflow& def = wf(w);
  end_run(i, at, false);
  emission src;
  src.source = def.id;
  src.index = w;
  src.chain_id = static_cast<std::uint32_t>(p_.rule_count()) + w;
  src.kind = timeline_source::workflow;
  if (!def.complete_from_group.empty()) {
    perform(make_action(action_kind::remove_from_group, def.complete_from_group), src, at, ctx);
  }
  if (!def.complete_to_group.empty()) {
    perform(make_action(action_kind::add_to_group, def.complete_to_group), src, at, ctx);
  }
}

// What run `r`'s current send or act step emits: the same key each time it is asked (a
// deferred message keeps its idempotency key).
auto evaluator::step_emission(const workflow_run& r) const -> emission {
  const std::uint32_t w = r.workflow;
  const auto& cw = c_.workflows[w];
  const detail::compiled_step& cs = cw.steps[r.step];
  emission src;
  src.source = wf(w).id;
  src.step = cs.def->id;
  src.index = w;
  src.chain_id = static_cast<std::uint32_t>(p_.rule_count()) + w;
  src.owner_group = cs.owner_group;
  src.round_robin = cs.round_robin;
  src.key = mix(mix(mix(mix(contact_hash_, cw.id_hash), r.id), r.step), r.steps_taken);
  src.kind = timeline_source::workflow;
  src.timeline_step = cs.stat;
  if (!c_.delivery.workflow_policy.empty()) [[unlikely]] {
    src.policy = c_.delivery.workflow_policy[w];
    src.retry.kind = timer_kind::workflow_step;
    src.retry.rule = w;
    src.retry.action = static_cast<std::int32_t>(r.step);
    src.retry.triggered_at = r.entered_at;
    src.retry.trigger_ordinal = r.id;
  }
  return src;
}

// The held message of run `i` (at a send step, phase 2) was sent or dropped: the run moves on.
auto evaluator::step_decided(std::size_t i, time_point now, bool sent) -> void {
  workflow_run& r = s_.runs[i];
  const std::uint32_t w = r.workflow, step = r.step;
  r.phase = 0;
  note(w, step, wk::wait_ended, now);
  if (sent) {
    r.last_send = static_cast<std::int32_t>(step);
    r.last_send_at = now;
    r.last_opened_at = r.last_clicked_at = min_time;
    note(w, step, wk::sent, now);
  }
  go(r.id, c_.workflows[w].steps[step].next, now, nullptr);
}

// Moves run `id` to step `target` (none: completes) and runs steps until one waits.
auto evaluator::go(std::uint64_t id, std::uint32_t target, time_point now, const cascade_ctx* ctx)
    -> void {
  std::size_t guard = 0;
  for (;;) {
    const auto i = find_run(id);
    if (i == s_.runs.size()) {
      return;
    }
    if (target == none) {
      complete(i, now, ctx);
      return;
    }
    workflow_run& r = s_.runs[i];
    const std::uint32_t w = r.workflow;
    const auto& cw = c_.workflows[w];
    const workflow& def = wf(w);
    if (++guard > 2 * cw.steps.size() + 2) {
      // Validation rejects cycles without a wait; this only guards the contact's budget.
      throw rule_cycle_error(s_.contact.id, {"workflow " + def.id});
    }
    r.step = target;
    r.step_at = now;
    r.phase = 0;
    ++r.steps_taken;
    note(w, target, wk::reached, now);
    if (cw.exit_condition != none && eval(cw.exit_condition, now, r.entered_at)) {
      note(w, target, wk::exited, now);
      s_.runs.erase(s_.runs.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
    const detail::compiled_step& cs = cw.steps[target];
    const workflow_step& st = *cs.def;
    switch (st.kind) {
      case step_kind::send:
      case step_kind::act: {
        if (cs.action_condition == none || eval(cs.action_condition, now, r.entered_at)) {
          const emission src = step_emission(r);
          const std::uint64_t run_id = r.id;
          if (governed(st.act, src)) [[unlikely]] {
            // The policy decides when the instant is over; the run rests here until then
            // (and, if the message is deferred, until it goes out or is dropped).
            perform(st.act, src, now, ctx);
            s_.runs[find_run(run_id)].phase = 2;
            note(w, target, wk::wait_started, now);
            return;
          }
          if (perform(st.act, src, now, ctx) && st.kind == step_kind::send) {
            workflow_run& again = s_.runs[find_run(run_id)];
            again.last_send = static_cast<std::int32_t>(target);
            again.last_send_at = now;
            again.last_opened_at = again.last_clicked_at = min_time;
            note(w, target, wk::sent, now);
          }
        }
        target = cs.next;
        break;
      }
      case step_kind::branch:
        target = cs.condition == none || eval(cs.condition, now, r.entered_at) ? cs.yes : cs.no;
        break;
      case step_kind::split: {
        const auto b = bucket(w);
        target = none;
        for (const auto& [bound, step] : cs.paths) {
          if (b < bound) {
            target = step;
            break;
          }
        }
        break;
      }
      case step_kind::end:
        target = none;
        break;
      case step_kind::wait_for:
        note(w, target, wk::wait_started, now);
        if (st.timeout > duration{0}) {
          schedule_wait(r, now + st.timeout);
        }
        return;
      case step_kind::wait: {
        const auto due = wait_due(r, st, now);
        if (!due) {  // no message to wait for, or the timeout already passed
          target = cs.no != none ? cs.no : cs.next;
          break;
        }
        if (*due <= now) {
          target = cs.next;
          break;
        }
        note(w, target, wk::wait_started, now);
        schedule_if_finite(r, *due);
        return;
      }
    }
  }
}

// When a wait step that a run just reached ends: a time (at or before `now`: at once), max_time
// for "until the awaited event, without a limit", or nullopt for "take the timeout path now".
auto evaluator::wait_due(workflow_run& r, const workflow_step& st, time_point now)
    -> std::optional<time_point> {
  switch (st.wait) {
    case wait_kind::fixed:
      return st.length_months == 0 ? now + st.length
                                   : detail::add_months(now, st.length_months, local_zone());
    case wait_kind::after_message: {
      if (st.moment == message_moment::delivered) {
        return (r.last_send >= 0 ? r.last_send_at : now) + st.length;
      }
      if (r.last_send < 0) {
        return std::nullopt;
      }
      const time_point seen =
          st.moment == message_moment::opened ? r.last_opened_at : r.last_clicked_at;
      if (seen != min_time) {
        r.phase = 1;
        return seen + st.length;
      }
      if (st.timeout == duration{0}) {
        return max_time;  // no timer: only the event moves it
      }
      const time_point limit = r.last_send_at + st.timeout;
      if (limit <= now) {
        return std::nullopt;
      }
      return limit;
    }
    case wait_kind::time_of_day:
      return next_time_of_day(now, st.time_of_day, st.weekdays);
    case wait_kind::date: {
      const auto date = month_day(s_.contact.detail(st.detail));
      if (!date) {
        return now;  // no such date: nothing to wait for
      }
      auto t = next_yearly(*date, 0, 0, now - st.length);
      return t ? std::optional{*t + st.length} : std::optional{now};
    }
  }
  return now;
}

auto evaluator::schedule_if_finite(const workflow_run& r, time_point due) -> void {
  if (due != max_time) {
    schedule_wait(r, due);
  }
}

// A run's timer came due: its wait is over, or its timeout passed.
auto evaluator::wait_over(const timer& tm) -> void {
  const auto i = find_run(tm.trigger_ordinal);
  if (i == s_.runs.size() || s_.runs[i].step != static_cast<std::uint32_t>(tm.action)) {
    return;  // cancelled timers are removed; this guards a state edited by hand
  }
  workflow_run& r = s_.runs[i];
  const auto& cw = c_.workflows[r.workflow];
  if (!cw.runs) {
    r.held = true;  // paused: continue when the workflow is active again
    return;
  }
  const detail::compiled_step& cs = cw.steps[r.step];
  const workflow_step& st = *cs.def;
  if (r.phase == 2 && st.kind == step_kind::send) {
    // A deferred message (or one held when the workflow was paused): decided again.
    const emission src = step_emission(r);
    if (src.policy != nullptr) {
      hold(make_due(st.act, src, tm.due_at, st.act.arg), src.policy, src.retry);
      return;
    }
    // A program change left the step without a policy: the message goes out now.
    const auto id = r.id;
    perform(st.act, src, tm.due_at, nullptr);
    step_decided(find_run(id), tm.due_at, true);
    return;
  }
  std::uint32_t target = cs.next;
  if (st.kind == step_kind::wait_for ||
      (st.kind == step_kind::wait && st.wait == wait_kind::after_message &&
       st.moment != message_moment::delivered && r.phase == 0)) {
    target = st.kind == step_kind::wait_for || cs.no != none ? cs.no : cs.next;
  }
  const auto id = r.id;
  leave_wait(r, tm.due_at);
  go(id, target, tm.due_at, nullptr);
}

}  // namespace nudge::eval
